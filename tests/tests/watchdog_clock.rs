//! The watchdog's timing through a real session, on Tokio's paused clock: time only moves when
//! every task is waiting, so the deadlines can be checked to the millisecond without sleeping.

use std::time::Duration;

use protocol::{ClientMessage, ServerMessage};
use system_tests::{NextMessage, RawClient, TestServer, input};
use tokio::time::Instant;

fn production_timers(config: &mut game_engine::Config) {
    config.session.heartbeat_interval = Duration::from_secs(5);
    config.session.idle_timeout = Duration::from_secs(15);
    config.session.handshake_timeout = Duration::from_secs(5);
}

/// Asserts that `actual` is within 5 ms of `expected`, saying what was measured if not.
fn assert_near(actual: Duration, expected: Duration, what: &str) {
    assert!(
        actual.abs_diff(expected) <= Duration::from_millis(5),
        "{actual:?} is not {expected:?} ± 5 ms: {what}"
    );
}

/// A server with production timers, and a client that joined it as `player`.
async fn joined(player: &str) -> (TestServer, RawClient) {
    let server = TestServer::start(production_timers).await;
    let (client, _) = RawClient::join(server.addr, player).await;
    (server, client)
}

/// The next message; panics, saying how long after `start`, if the session ends.
async fn next_message(client: &mut RawClient, start: Instant) -> ServerMessage {
    match client.framed.next_message().await {
        Some(Ok(message)) => message,
        other => panic!("session ended after {:?}: {other:?}", start.elapsed()),
    }
}

/// The next message if it comes before `due` (time since `start`), `None` if `due` comes first.
async fn message_before(
    client: &mut RawClient,
    start: Instant,
    due: Duration,
) -> Option<ServerMessage> {
    let wait = due.saturating_sub(start.elapsed());
    tokio::time::timeout(wait, next_message(client, start))
        .await
        .ok()
}

#[tokio::test(start_paused = true)]
async fn a_silent_client_is_pinged_every_interval_and_dropped_at_the_idle_timeout() {
    let (server, mut client) = joined("silent").await;
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
    // One with the Welcome, then one per heartbeat of silence.
    assert_eq!(pings.len(), 3, "pings at {pings:?}");
    for (ping, expected) in pings.iter().zip([0, 5, 10]) {
        assert_near(
            *ping,
            Duration::from_secs(expected),
            &format!("pings at {pings:?}"),
        );
    }
    assert_near(closed, Duration::from_secs(15), "closed");
    server.stop().await;
}

#[tokio::test(start_paused = true)]
async fn answering_pings_keeps_a_session_alive_far_past_the_idle_timeout() {
    let (server, mut client) = joined("alive").await;
    let start = Instant::now();
    let mut pongs = 0;
    while start.elapsed() < Duration::from_secs(120) {
        if let ServerMessage::Ping { nonce } = next_message(&mut client, start).await {
            client.send(ClientMessage::Pong { nonce }).await;
            pongs += 1;
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
    let (server, mut client) = joined("chatty").await;
    let start = Instant::now();
    // Never answer a ping, but send an input every 10 s: well inside the 15 s idle timeout.
    let mut seq = 0;
    let mut next_input = Duration::from_secs(10);
    while start.elapsed() < Duration::from_secs(60) {
        if message_before(&mut client, start, next_input)
            .await
            .is_none()
        {
            seq += 1;
            client.send(input(seq, ".")).await;
            next_input += Duration::from_secs(10);
        }
    }
    server.stop().await;
}

/// A client with a heartbeat of its own (a Ping every 4 s against the server's 5 s) is answered,
/// never pinged after the Ping that follows the Welcome; inputs without pings are acknowledged
/// within a heartbeat all the same.
#[tokio::test(start_paused = true)]
async fn a_client_that_pings_is_answered_not_pinged_and_its_inputs_are_acknowledged() {
    let (server, mut client) = joined("pinger").await;
    let start = Instant::now();
    let mut server_pings = Vec::new();
    let mut pongs = 0;
    let mut acks = Vec::new();
    let mut nonce = 0;
    let mut next_ping = Duration::from_secs(4);
    while start.elapsed() < Duration::from_secs(60) {
        match message_before(&mut client, start, next_ping).await {
            None => {
                nonce += 1;
                client.send(ClientMessage::Ping { nonce }).await;
                if nonce == 5 {
                    // One input between two pings: its Ack comes with the next Pong.
                    client.send(input(1, ".")).await;
                }
                next_ping += Duration::from_secs(4);
            }
            Some(ServerMessage::Ping { nonce }) => {
                server_pings.push(start.elapsed());
                client.send(ClientMessage::Pong { nonce }).await;
            }
            Some(ServerMessage::Pong { .. }) => pongs += 1,
            Some(ServerMessage::Ack { seq }) => acks.push((seq, start.elapsed())),
            Some(_) => {}
        }
    }
    assert_eq!(
        server_pings,
        [Duration::ZERO],
        "only the Ping with the Welcome"
    );
    assert!(pongs >= 14, "{pongs} answers to 15 pings");
    assert_eq!(acks.len(), 1, "{acks:?}");
    assert_eq!(acks[0].0, 1);
    let with_pong = format!("acknowledged with the next Pong: {acks:?}");
    assert_near(acks[0].1, Duration::from_secs(24), &with_pong);
    // Inputs alone, no pings: the server stays quiet but acknowledges within a heartbeat.
    let sent = Instant::now();
    client.send(input(2, ".")).await;
    loop {
        match next_message(&mut client, start).await {
            ServerMessage::Ack { seq: 2 } => break,
            ServerMessage::Ping { .. } => panic!("pinged while playing"),
            _ => {}
        }
    }
    assert_near(sent.elapsed(), Duration::from_secs(5), "acknowledged");
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
    assert_near(
        start.elapsed(),
        Duration::from_secs(5),
        "the handshake deadline",
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
