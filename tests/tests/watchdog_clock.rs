//! The watchdog's timing through a real session, on Tokio's paused clock: time only moves when
//! every task is waiting, so the deadlines can be checked to the millisecond without sleeping.

use std::time::Duration;

use protocol::{ClientMessage, ServerMessage};
use system_tests::{NextMessage, RawClient, TestServer};
use tokio::time::Instant;

fn production_timers(config: &mut game_engine::Config) {
    config.session.heartbeat_interval = Duration::from_secs(5);
    config.session.idle_timeout = Duration::from_secs(15);
    config.session.handshake_timeout = Duration::from_secs(5);
}

fn close_to(actual: Duration, expected: Duration) -> bool {
    actual.abs_diff(expected) <= Duration::from_millis(5)
}

#[tokio::test(start_paused = true)]
async fn a_silent_client_is_pinged_every_interval_and_dropped_at_the_idle_timeout() {
    let server = TestServer::start(production_timers).await;
    let (mut client, _) = RawClient::join(server.addr, "silent").await;
    let start = Instant::now();
    let mut pings = Vec::new();
    let watched = async {
        loop {
            match client.framed.next_message().await {
                Some(Ok(ServerMessage::Ping { .. })) => pings.push(start.elapsed()),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            }
        }
    };
    // Virtual time: a watchdog that never fires fails here instead of hanging the suite.
    tokio::time::timeout(Duration::from_secs(60), watched)
        .await
        .expect("the silent client is dropped within a minute");
    let closed = start.elapsed();
    assert_eq!(pings.len(), 2, "pings at {pings:?}");
    assert!(
        close_to(pings[0], Duration::from_secs(5)),
        "first ping at {:?}",
        pings[0]
    );
    assert!(
        close_to(pings[1], Duration::from_secs(10)),
        "second ping at {:?}",
        pings[1]
    );
    assert!(
        close_to(closed, Duration::from_secs(15)),
        "closed at {closed:?}"
    );
    server.stop().await;
}

#[tokio::test(start_paused = true)]
async fn answering_pings_keeps_a_session_alive_far_past_the_idle_timeout() {
    let server = TestServer::start(production_timers).await;
    let (mut client, _) = RawClient::join(server.addr, "alive").await;
    let start = Instant::now();
    let mut pongs = 0;
    while start.elapsed() < Duration::from_secs(120) {
        match client.framed.next_message().await {
            Some(Ok(ServerMessage::Ping { nonce })) => {
                client.send(ClientMessage::Pong { nonce }).await;
                pongs += 1;
            }
            Some(Ok(_)) => {}
            other => panic!("session ended after {:?}: {other:?}", start.elapsed()),
        }
    }
    assert!(
        pongs >= 23,
        "{pongs} pings in two minutes at a 5 s interval"
    );
    server.stop().await;
}

#[tokio::test(start_paused = true)]
async fn any_frame_refreshes_liveness_not_only_pongs() {
    let server = TestServer::start(production_timers).await;
    let (mut client, _) = RawClient::join(server.addr, "chatty").await;
    let start = Instant::now();
    // Never answer a ping, but send an input every 10 s: well inside the 15 s idle timeout.
    let mut seq = 0;
    let mut next_input = Duration::from_secs(10);
    while start.elapsed() < Duration::from_secs(60) {
        let wait = next_input.saturating_sub(start.elapsed());
        match tokio::time::timeout(wait, client.framed.next_message()).await {
            Err(_) => {
                seq += 1;
                client
                    .send(ClientMessage::Input {
                        seq,
                        payload: bytes::Bytes::from_static(b"."),
                    })
                    .await;
                next_input += Duration::from_secs(10);
            }
            Ok(Some(Ok(_))) => {}
            Ok(other) => panic!("session ended after {:?}: {other:?}", start.elapsed()),
        }
    }
    server.stop().await;
}

#[tokio::test(start_paused = true)]
async fn the_handshake_deadline_does_not_move_with_traffic() {
    let server = TestServer::start(production_timers).await;
    let mut client = RawClient::connect(server.addr).await;
    let start = Instant::now();
    let first = tokio::time::timeout(Duration::from_secs(60), client.framed.next_message()).await;
    match first.expect("the handshake deadline fires") {
        Some(Ok(ServerMessage::Bye(bye))) => {
            assert_eq!(bye.code, protocol::ByeCode::HandshakeTimeout)
        }
        other => panic!("expected Bye, got {other:?}"),
    }
    assert!(
        close_to(start.elapsed(), Duration::from_secs(5)),
        "{:?}",
        start.elapsed()
    );
    server.stop().await;
}

/// A Hello that reached the socket before the handshake deadline, but that a busy runtime had not
/// read when the deadline fired, still completes the handshake. `advance` moves the clock past the
/// deadline before the session task runs again, so the timer and the unread Hello are due together.
#[tokio::test(start_paused = true)]
async fn a_hello_that_arrived_in_time_wins_over_a_deadline_that_fires_with_it() {
    let server = TestServer::start(production_timers).await;
    for attempt in 0..5 {
        let mut client = RawClient::connect(server.addr).await;
        tokio::time::sleep(Duration::from_millis(4900)).await;
        client
            .send(system_tests::hello(&format!("punctual{attempt}")))
            .await;
        tokio::time::advance(Duration::from_millis(200)).await;
        match client.framed.next_message().await {
            Some(Ok(ServerMessage::Welcome(_))) => {}
            other => panic!("attempt {attempt}: expected Welcome, got {other:?}"),
        }
    }
    server.stop().await;
}
