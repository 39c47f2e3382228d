//! Every close reason that loopback can produce, each checked against /metrics: the reason's
//! counter moves by exactly one and no other reason moves.

use std::io::Write;
use std::time::{Duration, Instant};

use bytes::Bytes;
use game_engine::CloseReason;
use protocol::{Bye, ByeCode, ClientMessage, ServerMessage};
use system_tests::{PATIENCE, RawClient, TestServer, hello};
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn client_quit_after_bye_acknowledges_every_input() {
    let server = TestServer::start(|_| {}).await;
    let before = server.scrape().await;
    let (mut client, _) = RawClient::join(server.addr, "quitter").await;
    for seq in 1..=25 {
        client
            .send(ClientMessage::Input {
                seq,
                payload: Bytes::from_static(b"move"),
            })
            .await;
    }
    client
        .send(ClientMessage::Bye(Bye::new(ByeCode::ClientQuit, "")))
        .await;
    let (messages, bye) = client.until_bye().await;
    assert_eq!(bye.code, ByeCode::ClientQuit);
    assert!(
        matches!(messages.last(), Some(ServerMessage::Ack { seq: 25 })),
        "the last message before Bye acknowledges all 25 inputs: {:?}",
        messages.last()
    );
    let relays = messages
        .iter()
        .filter(
            |m| matches!(m, ServerMessage::Event { payload, .. } if payload.first() == Some(&1)),
        )
        .count();
    assert_eq!(relays, 25, "every input was applied and relayed back");
    assert!(
        client.until_end().await.is_none(),
        "a clean EOF follows the Bye"
    );
    server
        .expect_closes(&before, &[(CloseReason::ClientQuit, 1)], PATIENCE)
        .await;
    server.stop().await;
}

#[tokio::test]
async fn peer_eof_when_the_client_closes_without_bye() {
    let server = TestServer::start(|_| {}).await;
    let before = server.scrape().await;
    let (mut client, _) = RawClient::join(server.addr, "leaver").await;
    client
        .framed
        .get_mut()
        .shutdown()
        .await
        .expect("half-close");
    assert!(client.until_end().await.is_none());
    server
        .expect_closes(&before, &[(CloseReason::PeerEof, 1)], PATIENCE)
        .await;
    server.stop().await;
}

#[tokio::test]
async fn truncated_frame_when_the_stream_ends_inside_a_frame() {
    let server = TestServer::start(|_| {}).await;
    let before = server.scrape().await;
    let (mut client, _) = RawClient::join(server.addr, "killed").await;
    // A length prefix announcing 20 bytes, then only 5 of them, then the end of the stream:
    // what a process killed mid-send leaves behind.
    let stream = client.framed.get_mut();
    stream
        .write_all(&[0, 0, 0, 20, 5, 0, 0, 0, 0])
        .await
        .expect("partial frame");
    stream.shutdown().await.expect("half-close");
    client.until_end().await;
    server
        .expect_closes(&before, &[(CloseReason::TruncatedFrame, 1)], PATIENCE)
        .await;
    server.stop().await;
}

#[tokio::test]
async fn peer_reset_when_the_client_aborts() {
    let server = TestServer::start(|_| {}).await;
    let before = server.scrape().await;
    let (client, _) = RawClient::join(server.addr, "aborter").await;
    let stream = client.framed.into_inner();
    stream.set_zero_linger().expect("SO_LINGER 0");
    drop(stream);
    server
        .expect_closes(&before, &[(CloseReason::PeerReset, 1)], PATIENCE)
        .await;
    server.stop().await;
}

/// The client sends its Hello and a burst of pings, then closes normally before any answer
/// arrives. The server is in CLOSE_WAIT with frames still buffered; its first write provokes an
/// RST, after which this kernel reports EPIPE to the next write while reads still drain the
/// buffered frames. If an answer reaches the client before its close, the client's kernel resets
/// instead (`peer_reset`): that is the only other allowed outcome, and the attempt is repeated.
#[tokio::test]
async fn broken_pipe_when_the_client_closes_while_the_server_writes() {
    let server = TestServer::start(|_| {}).await;
    let mut codec = protocol::ClientCodec::default();
    let mut burst = bytes::BytesMut::new();
    use tokio_util::codec::Encoder;
    codec.encode(hello("writer"), &mut burst).expect("encode");
    for nonce in 0..150 {
        codec
            .encode(ClientMessage::Ping { nonce }, &mut burst)
            .expect("encode");
    }
    let mut outcomes = Vec::new();
    for _ in 0..10 {
        let before = server.scrape().await;
        let mut socket = std::net::TcpStream::connect(server.addr).expect("connect");
        socket.write_all(&burst).expect("burst");
        drop(socket);
        let after = wait_for_one_close(&server, &before).await;
        let reason = *after.keys().next().expect("one close");
        assert!(
            reason == "broken_pipe" || reason == "peer_reset",
            "a client closing under the server's writes gives broken_pipe or peer_reset, got {reason}"
        );
        outcomes.push(reason);
        if reason == "broken_pipe" {
            break;
        }
    }
    assert!(
        outcomes.contains(&"broken_pipe"),
        "never saw EPIPE in {outcomes:?}"
    );
    server.stop().await;
}

async fn wait_for_one_close(
    server: &TestServer,
    before: &system_tests::Scrape,
) -> std::collections::HashMap<&'static str, u64> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let deltas = server.scrape().await.close_deltas(before);
        let total: u64 = deltas.values().sum();
        if total == 1 {
            return deltas;
        }
        assert!(
            total == 0 && tokio::time::Instant::now() < deadline,
            "closes moved by {deltas:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn idle_timeout_when_the_client_goes_silent() {
    let server = TestServer::start(|_| {}).await;
    let idle = server.config.session.idle_timeout;
    let before = server.scrape().await;
    let (mut client, welcome) = RawClient::join(server.addr, "silent").await;
    assert_eq!(u128::from(welcome.idle_timeout_ms), idle.as_millis());
    let silent_since = Instant::now();
    // Read (the kernel would ACK anyway) but never answer: pings go unanswered.
    let mut pings = 0;
    loop {
        match client.recv().await {
            Some(Ok(ServerMessage::Ping { .. })) => pings += 1,
            Some(Ok(_)) => {}
            Some(Err(_)) | None => break,
        }
    }
    let detected = silent_since.elapsed();
    assert!(
        detected >= idle - Duration::from_millis(50),
        "closed early, after {detected:?}"
    );
    assert!(
        detected < idle + Duration::from_secs(2),
        "closed late, after {detected:?}"
    );
    assert!(
        pings >= 2,
        "the server pinged every heartbeat interval: {pings} pings"
    );
    let after = server
        .expect_closes(&before, &[(CloseReason::IdleTimeout, 1)], PATIENCE)
        .await;
    let detect_sum = after.get(
        "gameserver_close_detect_seconds_sum",
        &[("reason", "idle_timeout")],
    );
    assert!(
        detect_sum >= idle.as_secs_f64() - 0.05 && detect_sum < idle.as_secs_f64() + 1.0,
        "detection time recorded as {detect_sum}s"
    );
    server.stop().await;
}

#[tokio::test]
async fn handshake_timeout_when_hello_never_comes() {
    let server = TestServer::start(|_| {}).await;
    let before = server.scrape().await;
    let started = Instant::now();
    let mut client = RawClient::connect(server.addr).await;
    let (_, bye) = client.until_bye().await;
    assert_eq!(bye.code, ByeCode::HandshakeTimeout);
    let waited = started.elapsed();
    let limit = server.config.session.handshake_timeout;
    assert!(
        waited >= limit - Duration::from_millis(50) && waited < limit + Duration::from_secs(2),
        "{waited:?}"
    );
    assert!(
        client.until_end().await.is_none(),
        "a clean EOF follows the Bye"
    );
    server
        .expect_closes(&before, &[(CloseReason::HandshakeTimeout, 1)], PATIENCE)
        .await;
    server.stop().await;
}

#[tokio::test]
async fn protocol_error_on_an_unknown_kind_and_other_players_keep_playing() {
    let server = TestServer::start(|_| {}).await;
    let before = server.scrape().await;
    let (mut bystander, _) = RawClient::join(server.addr, "bystander").await;
    let (mut client, _) = RawClient::join(server.addr, "garbler").await;
    client
        .framed
        .get_mut()
        .write_all(&[0, 0, 0, 3, 0x7f, 1, 2])
        .await
        .expect("garbage");
    let (_, bye) = client.until_bye().await;
    assert_eq!(bye.code, ByeCode::ProtocolError);
    assert!(
        bye.text.contains("0x7f"),
        "the Bye says what was wrong: {:?}",
        bye.text
    );
    assert!(client.until_end().await.is_none());
    // Closing ends the server's lingering close at once.
    drop(client);
    server
        .expect_closes(&before, &[(CloseReason::ProtocolError, 1)], PATIENCE)
        .await;
    // The bystander still plays.
    bystander.send(ClientMessage::Ping { nonce: 42 }).await;
    loop {
        match bystander.recv().await {
            Some(Ok(ServerMessage::Pong { nonce: 42 })) => break,
            Some(Ok(_)) => continue,
            other => panic!("bystander lost its session: {other:?}"),
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn server_full_rejects_with_bye_and_counts_the_rejection() {
    let server = TestServer::start(|c| c.server.max_sessions = 1).await;
    let before = server.scrape().await;
    let (_first, _) = RawClient::join(server.addr, "first").await;
    let mut second = RawClient::connect(server.addr).await;
    second.send(hello("second")).await;
    let (_, bye) = second.until_bye().await;
    assert_eq!(bye.code, ByeCode::ServerFull);
    assert!(
        second.until_end().await.is_none(),
        "the rejection is a lingering close: EOF, no reset"
    );
    let after = server.scrape().await;
    let rejected = |s: &system_tests::Scrape| {
        s.get(
            "gameserver_connections_rejected_total",
            &[("reason", "server_full")],
        )
    };
    assert_eq!(rejected(&after) - rejected(&before), 1.0);
    assert_eq!(after.get("gameserver_sessions_active", &[]), 1.0);
    assert!(
        after.close_deltas(&before).is_empty(),
        "a rejection is not a session close"
    );
    server.stop().await;
}

/// A room that refuses a player who came with `Hello` ends the session with `Bye{join_refused}`,
/// counted as `join_refused`; the room's occupant plays on.
#[tokio::test]
async fn join_refused_when_the_room_named_in_hello_is_full() {
    let game = rooms::Rooms::new(rooms::RoomsConfig {
        named_room_capacity: 1,
        ..rooms::RoomsConfig::default()
    });
    let server = TestServer::start_game(game, |_| {}).await;
    let mut occupant = RawClient::connect(server.addr).await;
    occupant
        .hello(system_tests::hello_in("occupant", "solo"))
        .await;
    let before = server.scrape().await;
    let mut late = RawClient::connect(server.addr).await;
    late.send(system_tests::hello_in("late", "solo")).await;
    let (_, bye) = late.until_bye().await;
    assert_eq!(bye.code, ByeCode::JoinRefused);
    assert!(bye.text.contains("the room is full"), "{}", bye.text);
    assert!(late.until_end().await.is_none(), "a lingering close");
    drop(late);
    server
        .expect_closes(&before, &[(CloseReason::JoinRefused, 1)], PATIENCE)
        .await;
    occupant.send(ClientMessage::Ping { nonce: 1 }).await;
    while !matches!(
        occupant.recv().await,
        Some(Ok(ServerMessage::Pong { nonce: 1 }))
    ) {}
    server.stop().await;
}
