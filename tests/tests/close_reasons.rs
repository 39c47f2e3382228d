//! Every close reason that loopback can produce, each checked against /metrics: the reason's
//! counter moves by exactly one and no other reason moves.

use std::io::Write;
use std::time::{Duration, Instant};

use game_engine::CloseReason;
use protocol::{ByeCode, ClientMessage, ServerMessage};
use system_tests::{Metrics, PATIENCE, RawClient, TestServer, client_quit, hello, hello_in, input};
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn client_quit_after_bye_acknowledges_every_input() {
    let server = TestServer::start(|_| {}).await;
    let before = server.scrape().await;
    let (mut client, _) = RawClient::join(server.addr, "quitter").await;
    for seq in 1..=25 {
        client.send(input(seq, "move")).await;
    }
    client.send(client_quit()).await;
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
    client.expect_clean_end("a clean EOF follows the Bye").await;
    server.expect_close(&before, CloseReason::ClientQuit).await;
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
    client
        .expect_clean_end("the server's side ends with FIN too")
        .await;
    server.expect_close(&before, CloseReason::PeerEof).await;
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
        .expect_close(&before, CloseReason::TruncatedFrame)
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
    server.expect_close(&before, CloseReason::PeerReset).await;
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
        // A client closing under the server's writes gives broken_pipe or peer_reset.
        let allowed = [CloseReason::BrokenPipe, CloseReason::PeerReset];
        let reason = server.expect_one_close(&before, &allowed, PATIENCE).await;
        outcomes.push(reason);
        if reason == CloseReason::BrokenPipe {
            break;
        }
    }
    assert!(
        outcomes.contains(&CloseReason::BrokenPipe),
        "never saw EPIPE in {outcomes:?}"
    );
    server.stop().await;
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
    let after = server.expect_close(&before, CloseReason::IdleTimeout).await;
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
    client.expect_bye(ByeCode::HandshakeTimeout).await;
    let waited = started.elapsed();
    let limit = server.config.session.handshake_timeout;
    assert!(
        waited >= limit - Duration::from_millis(50) && waited < limit + Duration::from_secs(2),
        "{waited:?}"
    );
    client.expect_clean_end("a clean EOF follows the Bye").await;
    server
        .expect_close(&before, CloseReason::HandshakeTimeout)
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
    let bye = client.expect_bye(ByeCode::ProtocolError).await;
    assert!(
        bye.text.contains("0x7f"),
        "the Bye says what was wrong: {:?}",
        bye.text
    );
    client.expect_clean_end("the Bye ends the stream").await;
    // Closing ends the server's lingering close at once.
    drop(client);
    server
        .expect_close(&before, CloseReason::ProtocolError)
        .await;
    // The bystander still plays.
    bystander.ping_pong(42).await;
    server.stop().await;
}

#[tokio::test]
async fn server_full_rejects_with_bye_and_counts_the_rejection() {
    let server = TestServer::start(|c| c.server.max_sessions = 1).await;
    let before = server.scrape().await;
    let (_first, _) = RawClient::join(server.addr, "first").await;
    let mut second = RawClient::connect(server.addr).await;
    second.send(hello("second")).await;
    second.expect_bye(ByeCode::ServerFull).await;
    second
        .expect_clean_end("the rejection is a lingering close: EOF, no reset")
        .await;
    let after = server.scrape().await;
    assert_eq!(after.rejected_since(&before, "server_full"), 1.0);
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
    let (mut occupant, _) = RawClient::join_room(server.addr, "occupant", "solo").await;
    let before = server.scrape().await;
    let mut late = RawClient::connect(server.addr).await;
    late.send(hello_in("late", "solo")).await;
    let bye = late.expect_bye(ByeCode::JoinRefused).await;
    assert!(bye.text.contains("the room is full"), "{}", bye.text);
    late.expect_clean_end("a lingering close").await;
    drop(late);
    server.expect_close(&before, CloseReason::JoinRefused).await;
    occupant.ping_pong(1).await;
    server.stop().await;
}
