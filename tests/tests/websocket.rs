//! The WebSocket listener against the real binary: the same sessions as over TCP, one protocol
//! frame per binary message. Play, the lingering close, the idle timeout, a text message, an
//! upgrade that never comes, and a session that breaks over TCP and resumes over WebSocket.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use protocol::{
    Bye, ByeCode, ClientMessage, CloseReason, Hello, PROTOCOL_VERSION, Resume, ServerMessage,
};
use system_tests::process::ServerProcess;
use system_tests::{Metrics, PATIENCE, RawClient, hello_in, relay, ws_message as message};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

const CONFIG: &str = "[server]\nwebsocket_listen = \"127.0.0.1:0\"\n\
                      [session]\nheartbeat_interval = \"500ms\"\nidle_timeout = \"2s\"\n\
                      handshake_timeout = \"1s\"\n";

type Ws = WebSocketStream<TcpStream>;

async fn connect(addr: SocketAddr) -> Ws {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (ws, _) = tokio_tungstenite::client_async(format!("ws://{addr}/"), stream)
        .await
        .expect("the WebSocket upgrade");
    ws
}

/// The next protocol message, or `None` when the WebSocket closed (the close frame is
/// returned as `Err`).
async fn next(ws: &mut Ws) -> Result<ServerMessage, Option<Message>> {
    loop {
        let received = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("the server answers in time");
        match received {
            Some(Ok(Message::Binary(body))) => return Ok(system_tests::ws_decode(&body)),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(close @ Message::Close(_))) => return Err(Some(close)),
            Some(Ok(other)) => panic!("unexpected WebSocket message {other:?}"),
            Some(Err(error)) => {
                eprintln!("WebSocket error: {error}");
                return Err(None);
            }
            None => return Err(None),
        }
    }
}

/// Reads to the end of the WebSocket: a `Bye{protocol_error}`, then a close frame with `code`;
/// then answers the close (as the WebSocket layer does on the next read) and reads on: the
/// server, having read the answer, ends the connection with FIN, not with a reset.
async fn expect_protocol_error(ws: &mut Ws, code: u16) {
    let mut bye = None;
    let close = loop {
        match next(ws).await {
            Ok(ServerMessage::Bye(b)) => bye = Some(b.code),
            Ok(_) => {}
            Err(close) => break close,
        }
    };
    assert_eq!(bye, Some(ByeCode::ProtocolError));
    match close {
        Some(Message::Close(Some(frame))) => assert_eq!(u16::from(frame.code), code),
        other => panic!("expected a close frame with code {code}, got {other:?}"),
    }
    let end = tokio::time::timeout(PATIENCE, ws.next())
        .await
        .expect("the server ends the connection after the close handshake");
    assert!(
        end.is_none(),
        "the connection ended with {end:?} instead of a clean end (FIN)"
    );
}

async fn start() -> ServerProcess {
    ServerProcess::loopback(CONFIG).await
}

fn websocket_addr(server: &ServerProcess) -> SocketAddr {
    server
        .websocket
        .expect("the server reports its WebSocket listener")
}

#[tokio::test]
async fn a_player_over_websocket_plays_and_its_lingering_close_delivers_everything() {
    let server = start().await;
    let before = server.scrape().await;
    let mark = server.log_mark();
    let mut ws = connect(websocket_addr(&server)).await;
    ws.send(message(hello_in("browser", "room-browser")))
        .await
        .expect("send Hello");
    let welcome = match next(&mut ws).await {
        Ok(ServerMessage::Welcome(welcome)) => welcome,
        other => panic!("expected Welcome, got {other:?}"),
    };
    assert!(welcome.session_id > 0);
    for seq in 1..=10 {
        ws.send(message(ClientMessage::Input {
            seq,
            payload: Bytes::from_static(b"click"),
        }))
        .await
        .expect("send an input");
    }
    ws.send(message(ClientMessage::Bye(Bye::new(
        ByeCode::ClientQuit,
        "",
    ))))
    .await
    .expect("send Bye");
    // Everything owed, the Ack, the Bye, then the server's close frame.
    let mut relays = Vec::new();
    let mut acked = 0;
    let bye = loop {
        match next(&mut ws).await {
            Ok(ServerMessage::Bye(bye)) => break bye,
            Ok(ServerMessage::Ack { seq }) => acked = acked.max(seq),
            Ok(other) => relays.extend(relay(&other).map(|(_, seq)| seq)),
            Err(close) => panic!("closed before the Bye: {close:?}"),
        }
    };
    assert_eq!(bye.code, ByeCode::ClientQuit);
    assert_eq!(acked, 10);
    assert_eq!(relays, (1..=10).collect::<Vec<u64>>());
    assert!(
        matches!(next(&mut ws).await, Err(Some(Message::Close(_)))),
        "the server's close frame follows its Bye"
    );
    let after = server.expect_close(&before, CloseReason::ClientQuit).await;
    // Counted and logged as a WebSocket session.
    assert_eq!(after.accepted_since(&before, "websocket"), 1.0);
    assert_eq!(after.accepted_since(&before, "tcp"), 0.0);
    let (_, line) = server.next_close(mark, Duration::from_secs(10)).await;
    assert_eq!(line["transport"], "websocket", "{line}");
    assert_eq!(line["player"], "browser", "{line}");
}

#[tokio::test]
async fn a_silent_websocket_player_is_dropped_at_the_idle_timeout() {
    let server = start().await;
    let before = server.scrape().await;
    let mut ws = connect(websocket_addr(&server)).await;
    ws.send(message(hello_in("silent-browser", "room-silent")))
        .await
        .expect("send Hello");
    // Read (the server's pings too) but never answer.
    let mut bye = None;
    while let Ok(received) = next(&mut ws).await {
        if let ServerMessage::Bye(b) = received {
            bye = Some(b.code);
        }
    }
    assert_eq!(bye, Some(ByeCode::IdleTimeout));
    server.expect_close(&before, CloseReason::IdleTimeout).await;
}

#[tokio::test]
async fn a_text_or_oversized_message_is_a_protocol_error_and_an_upgrade_that_fails_is_a_rejection()
{
    let server = start().await;
    let before = server.scrape().await;
    // A text message, then a binary one over the 65,536-byte limit: each a protocol error,
    // said with a Bye and with the close frame's code (1003, 1009).
    let refusals = [
        (Message::Text("{\"hello\": true}".into()), 1003u16),
        (Message::Binary(vec![5u8; 70_000].into()), 1009),
    ];
    for (refused, code) in refusals {
        let mut ws = connect(websocket_addr(&server)).await;
        ws.send(refused).await.expect("send");
        expect_protocol_error(&mut ws, code).await;
    }
    // A TCP connection to the WebSocket port that never upgrades, and one that sends a request
    // that is not an upgrade: no session, refused (the second answered in HTTP).
    let _idle = TcpStream::connect(websocket_addr(&server))
        .await
        .expect("connect");
    let mut plain_http = TcpStream::connect(websocket_addr(&server))
        .await
        .expect("connect");
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        plain_http
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("send a plain request");
        let mut answer = String::new();
        tokio::time::timeout(PATIENCE, plain_http.read_to_string(&mut answer))
            .await
            .expect("answered and closed")
            .expect("read the answer");
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    }
    server
        .expect_closes(
            &before,
            &[(CloseReason::ProtocolError, 2)],
            Duration::from_secs(10),
        )
        .await;
    server
        .expect_rejections(
            &before,
            &[("websocket_upgrade", 2)],
            Duration::from_secs(10),
        )
        .await;
}

/// Before `Hello` a client cannot make the server hold a large message: the first message is
/// capped at the largest `Hello` and refused at its frame header, before its payload arrives
/// (a `Bye{protocol_error}` and 1009, not a wait for the payload until the handshake deadline).
/// After `Welcome` the full limit applies again.
#[tokio::test]
async fn the_first_message_is_capped_at_a_hello_and_refused_at_its_header() {
    use tokio::io::AsyncWriteExt;
    let server = start().await;
    let before = server.scrape().await;
    let mut ws = connect(websocket_addr(&server)).await;
    // A masked binary frame announcing 60,000 bytes, and only its first 100.
    let mut raw = vec![0x82, 0x80 | 126];
    raw.extend(60_000u16.to_be_bytes());
    raw.extend([1, 2, 3, 4]);
    raw.extend([0u8; 100]);
    ws.get_mut().write_all(&raw).await.expect("write");
    expect_protocol_error(&mut ws, 1009).await;
    // Past Hello, an input of 60,000 bytes is played and relayed back.
    let mut ws = connect(websocket_addr(&server)).await;
    ws.send(message(hello_in("large", "room-large")))
        .await
        .expect("send Hello");
    assert!(matches!(next(&mut ws).await, Ok(ServerMessage::Welcome(_))));
    ws.send(message(ClientMessage::Input {
        seq: 1,
        payload: Bytes::from(vec![7u8; 60_000]),
    }))
    .await
    .expect("send a large input");
    loop {
        match next(&mut ws).await {
            Ok(m) if relay(&m) == Some(("large".to_owned(), 1)) => break,
            Ok(_) => {}
            Err(close) => panic!("closed instead of relaying the input: {close:?}"),
        }
    }
    // The refused client sent only part of what it announced: the server cannot tell its close
    // frame from the rest of that payload, and ends the connection at session.linger_timeout.
    // The player who played quits.
    ws.send(message(ClientMessage::Bye(protocol::Bye::new(
        ByeCode::ClientQuit,
        "",
    ))))
    .await
    .expect("send Bye");
    while let Ok(Some(_)) = tokio::time::timeout(PATIENCE, ws.next()).await {}
    server
        .expect_closes(
            &before,
            &[
                (CloseReason::ProtocolError, 1),
                (CloseReason::ClientQuit, 1),
            ],
            Duration::from_secs(10),
        )
        .await;
}

#[tokio::test]
async fn a_session_broken_over_tcp_resumes_over_websocket() {
    let server = start().await;
    let (mut tcp, welcome) = {
        let mut client = RawClient::connect(server.addr).await;
        let welcome = client.hello(hello_in("roaming", "room-roaming")).await;
        (client, welcome)
    };
    tcp.send(ClientMessage::Input {
        seq: 1,
        payload: Bytes::from_static(b"before"),
    })
    .await;
    // Its relay comes back over TCP, then the connection breaks.
    let last_event = loop {
        match tcp.recv().await {
            Some(Ok(event @ ServerMessage::Event { .. })) => {
                if let (Some(_), ServerMessage::Event { seq, .. }) = (relay(&event), &event) {
                    break *seq;
                }
            }
            Some(Ok(_)) => {}
            other => panic!("expected the relay over TCP: {other:?}"),
        }
    };
    tcp.abort();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut ws = connect(websocket_addr(&server)).await;
    ws.send(message(ClientMessage::Hello(Box::new(Hello {
        version: PROTOCOL_VERSION,
        player_id: "roaming".to_owned(),
        room: "room-roaming".to_owned(),
        auth_token: None,
        resume: Some(Resume {
            token: welcome.resume_token,
            last_event_seq: last_event,
        }),
        options: Default::default(),
    }))))
    .await
    .expect("send the resume Hello");
    let resumed = match next(&mut ws).await {
        Ok(ServerMessage::Welcome(welcome)) => welcome,
        other => panic!("expected the resumed Welcome, got {other:?}"),
    };
    assert!(resumed.resumed, "{resumed:?}");
    assert_eq!(resumed.session_id, welcome.session_id);
    assert_eq!(resumed.last_input_seq, 1);
    // The session goes on over WebSocket: the next input is relayed with the next number.
    ws.send(message(ClientMessage::Input {
        seq: 2,
        payload: Bytes::from_static(b"after"),
    }))
    .await
    .expect("send an input");
    loop {
        match next(&mut ws).await {
            Ok(event @ ServerMessage::Event { .. }) => {
                if let Some((_, input)) = relay(&event) {
                    assert_eq!(input, 2);
                    break;
                }
            }
            Ok(_) => {}
            Err(close) => panic!("closed: {close:?}"),
        }
    }
}

/// `server.max_sessions` counts the sessions of every listener together: with one slot held
/// over TCP, a WebSocket client is turned away (closed before its upgrade, counted as
/// `server_full`), and the slot serves a WebSocket player once the TCP one quits.
#[tokio::test]
async fn the_session_cap_is_shared_by_the_tcp_and_websocket_listeners() {
    let config = CONFIG.replace("[session]", "max_sessions = 1\n[session]");
    let server = ServerProcess::loopback(&config).await;
    let before = server.scrape().await;
    let (mut tcp, _) = RawClient::join(server.addr, "tina").await;
    let stream = TcpStream::connect(websocket_addr(&server))
        .await
        .expect("connect");
    let refused =
        tokio_tungstenite::client_async(format!("ws://{}/", websocket_addr(&server)), stream).await;
    assert!(refused.is_err(), "no upgrade past max_sessions");
    let full = server.scrape().await;
    assert_eq!(
        full.get(
            "gameserver_connections_rejected_total",
            &[("reason", "server_full")]
        ) - before.get(
            "gameserver_connections_rejected_total",
            &[("reason", "server_full")]
        ),
        1.0
    );
    tcp.send(ClientMessage::Bye(Bye::new(ByeCode::ClientQuit, "")))
        .await;
    tcp.until_bye().await;
    assert!(tcp.until_end().await.is_none());
    server.expect_close(&before, CloseReason::ClientQuit).await;
    let mut ws = connect(websocket_addr(&server)).await;
    ws.send(message(hello_in("wanda", "cap-room")))
        .await
        .expect("send Hello");
    assert!(
        matches!(next(&mut ws).await, Ok(ServerMessage::Welcome(_))),
        "the freed slot serves a WebSocket player"
    );
}

/// The memory budget counts a WebSocket session as what it holds: the server frames WebSocket
/// itself in the session's own buffers, so a held WebSocket session costs what a TCP one does
/// (12 KiB estimated, budget::CONNECTION_ESTIMATE, and a decoder of about a hundred bytes), not
/// the 19 KiB more a WebSocket library's buffers took (BENCHMARKS.md, "10 transports").
#[tokio::test]
async fn the_memory_budget_counts_a_websocket_session_like_a_tcp_one() {
    // Idle long enough that the silent session stays live while the estimate is read.
    let config = CONFIG.replace("idle_timeout = \"2s\"", "idle_timeout = \"60s\"");
    let server = ServerProcess::loopback(&config).await;
    let before = server.first_memory_estimate().await;
    let mut ws = connect(websocket_addr(&server)).await;
    ws.send(message(hello_in("budget-ws", "budget-room")))
        .await
        .expect("send Hello");
    assert!(matches!(next(&mut ws).await, Ok(ServerMessage::Welcome(_))));
    // A TCP session is estimated at 12 KiB plus its buffers (budget::CONNECTION_ESTIMATE), and a
    // WebSocket one too: uncounted it would add nothing, with a library's buffers 19 KiB more.
    let counted = |costs: f64| (12.0 * 1024.0..=16.0 * 1024.0).contains(&costs);
    system_tests::poll_until("the session in the estimate", PATIENCE, || async {
        let costs = server.memory_used().await - before;
        match counted(costs) {
            true => Ok(()),
            false => Err(format!("{costs} bytes counted for it")),
        }
    })
    .await;
}
