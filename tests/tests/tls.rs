//! TLS on the game port and the WebSocket listener, against the real binary: players play over
//! TLS and wss; a plaintext client and a stalled handshake are refused and counted within the
//! handshake timeout while a player keeps playing; SIGHUP swaps the certificate for new
//! handshakes and keeps the sessions open; a pair that fails to load is refused by name.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use protocol::{Bye, ByeCode, ClientMessage, CloseReason};
use system_tests::process::{ServerProcess, run_game_server};
use system_tests::tls::{self as test_tls, TestCert};
use system_tests::{Metrics, RawClient, Scrape, hello_in, relay};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_util::codec::Encoder;

const SESSION: &str = "[session]\nhandshake_timeout = \"3s\"\nheartbeat_interval = \"1s\"\n\
                       idle_timeout = \"5s\"\n";

type TlsClient = RawClient<TlsStream<TcpStream>>;

async fn start(cert: &TestCert, extra: &str) -> ServerProcess {
    let config = format!("{SESSION}{}{extra}", cert.config());
    ServerProcess::loopback(&config).await
}

async fn join(addr: std::net::SocketAddr, pem: &str, player: &str) -> TlsClient {
    let stream = test_tls::connect(addr, pem)
        .await
        .expect("a TLS handshake with the server");
    let mut client = RawClient::over(stream);
    client.hello(hello_in(player, "tls-room")).await;
    client
}

fn rejected_tls(scrape: &Scrape) -> f64 {
    scrape.get(
        "gameserver_connections_rejected_total",
        &[("reason", "tls_handshake")],
    )
}

/// Reads until the server closes the connection; returns what came and how long it took.
async fn read_until_closed(stream: &mut TcpStream) -> (Vec<u8>, Duration) {
    let started = Instant::now();
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (seen, started.elapsed()),
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
            Err(_) => panic!("the server kept the connection open for 10 s"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_and_stalled_handshakes_are_refused_while_tls_players_play() {
    let cert = TestCert::new("tls-refuse");
    let server = start(&cert, "").await;
    let before = server.scrape().await;

    let mut alice = join(server.addr, &cert.pem, "alice").await;
    alice.play("alice", 1).await;

    // A client speaking the protocol in the clear: its Hello is not a TLS record. Refused at
    // once (a TLS alert at most), never answered with a Welcome.
    let mut plain = TcpStream::connect(server.addr).await.expect("connect");
    let mut hello = bytes::BytesMut::new();
    protocol::ClientCodec::default()
        .encode(hello_in("mallory", "tls-room"), &mut hello)
        .expect("encode");
    plain
        .write_all(&hello)
        .await
        .expect("send a plaintext Hello");
    let (answer, took) = read_until_closed(&mut plain).await;
    assert!(
        took < Duration::from_secs(2),
        "a plaintext Hello is refused at once, well within the 3 s handshake timeout; took {took:?}"
    );
    // Whatever came back is a TLS alert record (content type 21), not a protocol frame.
    assert!(
        answer.is_empty() || answer[0] == 21,
        "expected nothing or a TLS alert, got {answer:?}"
    );

    // A client that connects and says nothing: closed when the handshake timeout (3 s) ends.
    let mut silent = TcpStream::connect(server.addr).await.expect("connect");
    let (_, took) = read_until_closed(&mut silent).await;
    assert!(
        took >= Duration::from_millis(2900) && took < Duration::from_secs(8),
        "a stalled handshake is closed at the handshake timeout (3 s), took {took:?}"
    );

    // Alice played on through both.
    alice.play("alice", 2).await;
    let during = server.scrape().await;
    assert_eq!(rejected_tls(&during) - rejected_tls(&before), 2.0);
    assert_eq!(during.accepted_since(&before, "tls"), 1.0);
    assert_eq!(
        during.accepted_since(&before, "tcp"),
        0.0,
        "no plaintext session on a TLS port"
    );
    // Neither refused connection became a session: no close was recorded for them.
    assert!(
        during.close_deltas(&before).is_empty(),
        "{:?}",
        during.close_deltas(&before)
    );

    let mark = server.log_mark();
    alice.quit_cleanly().await;
    let (_, close) = server.next_close(mark, Duration::from_secs(10)).await;
    assert_eq!(close["reason"], "client_quit");
    assert_eq!(close["transport"], "tls");
    server.expect_close(&before, CloseReason::ClientQuit).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_certificate_and_keeps_the_sessions_open() {
    let cert = TestCert::new("tls-reload");
    let mut server = start(&cert, "").await;
    let before = server.scrape().await;
    let first = cert.pem.clone();
    let mut alice = join(server.addr, &first, "alice").await;
    alice.play("alice", 1).await;

    // A new pair in the same files, then SIGHUP.
    let second = TestCert::write_new(&cert.cert, &cert.key);
    assert_ne!(first, second);
    let mark = server.log_mark();
    server.signal("HUP");
    server
        .logs
        .wait_from(mark, Duration::from_secs(10), "the reload line", |line| {
            line.contains("TLS certificate reloaded")
        })
        .await;

    // New handshakes get the new certificate: a client trusting only the old one fails, one
    // trusting only the new one plays.
    let refused = test_tls::connect(server.addr, &first).await;
    assert!(
        refused.is_err(),
        "the old certificate is no longer served to new handshakes"
    );
    let mut bob = join(server.addr, &second, "bob").await;
    bob.play("bob", 1).await;
    // Alice's session, opened under the old certificate, goes on.
    alice.play("alice", 2).await;

    // A broken pair is refused and the current one kept.
    std::fs::write(&cert.key, "not a key").expect("write");
    let mark = server.log_mark();
    server.signal("HUP");
    let (_, line) = server
        .logs
        .wait_from(mark, Duration::from_secs(10), "the failed reload", |line| {
            line.contains("not reloaded")
        })
        .await;
    assert!(line.contains("tls.key_file"), "{line}");
    let mut carol = join(server.addr, &second, "carol").await;
    carol.play("carol", 1).await;

    let after = server.scrape().await;
    let reloads = |result: &str| {
        after.get("gameserver_tls_reloads_total", &[("result", result)])
            - before.get("gameserver_tls_reloads_total", &[("result", result)])
    };
    assert_eq!(reloads("ok"), 1.0);
    assert_eq!(reloads("error"), 1.0);
    // The process is still the same one: SIGHUP did not end it.
    alice.quit_cleanly().await;
    bob.quit_cleanly().await;
    carol.quit_cleanly().await;
    server
        .expect_closes(
            &before,
            &[(CloseReason::ClientQuit, 3)],
            Duration::from_secs(10),
        )
        .await;
    server.signal("TERM");
    assert!(server.wait_exit(Duration::from_secs(10)).await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_over_tls_plays_and_quits() {
    use tokio_tungstenite::tungstenite::Message;
    let cert = TestCert::new("tls-wss");
    let server = start(&cert, "[server]\nwebsocket_listen = \"127.0.0.1:0\"\n").await;
    let ws_addr = server.websocket.expect("the WebSocket listener's address");
    let before = server.scrape().await;
    let stream = test_tls::connect(ws_addr, &cert.pem)
        .await
        .expect("a TLS handshake on the WebSocket port");
    let (mut ws, _) =
        tokio_tungstenite::client_async(format!("wss://localhost:{}/", ws_addr.port()), stream)
            .await
            .expect("the WebSocket upgrade over TLS");
    let body = system_tests::ws_message;
    ws.send(body(hello_in("wendy", "wss-room")))
        .await
        .expect("send Hello");
    let first = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("an answer in time");
    match first {
        Some(Ok(Message::Binary(bytes))) => assert_eq!(bytes[0], 0x02, "a Welcome"),
        other => panic!("expected a Welcome, got {other:?}"),
    }
    ws.send(body(ClientMessage::Bye(Bye::new(ByeCode::ClientQuit, ""))))
        .await
        .expect("send Bye");
    // Read to the server's close frame, then answer it.
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Close(_)))) | Ok(None) => break,
            Ok(Some(Ok(_))) => continue,
            other => panic!("expected the server's close frame, got {other:?}"),
        }
    }
    let after = server.expect_close(&before, CloseReason::ClientQuit).await;
    assert_eq!(after.accepted_since(&before, "wss"), 1.0);
}

#[tokio::test]
async fn a_missing_or_broken_pair_stops_the_start_naming_each_key() {
    let dir = system_tests::process::ScratchDir::new("tls-bad");
    let cert = dir.path().join("cert.pem");
    std::fs::write(&cert, "no certificate here").expect("write");
    let key = dir.path().join("absent-key.pem");
    let (cert, key) = (cert.to_str().expect("utf-8"), key.to_str().expect("utf-8"));
    let env = [
        ("GAMESERVER__TLS__CERT_FILE", cert),
        ("GAMESERVER__TLS__KEY_FILE", key),
        ("GAMESERVER__SERVER__LISTEN", "127.0.0.1:0"),
        ("GAMESERVER__ADMIN__LISTEN", "127.0.0.1:0"),
    ];
    let stderr = run_game_server(&[], &env).expect_failure();
    // Both problems, each with its key, in one go.
    assert!(
        stderr.contains("tls.cert_file") && stderr.contains("BEGIN CERTIFICATE"),
        "{stderr}"
    );
    assert!(
        stderr.contains("tls.key_file") && stderr.contains("absent-key.pem"),
        "{stderr}"
    );
    // Half a pair is a configuration error.
    let half = ("GAMESERVER__TLS__CERT_FILE", cert);
    let stderr = run_game_server(&["--print-config"], &[half]).expect_failure();
    assert!(
        stderr.contains("tls.key_file") && stderr.contains("GAMESERVER__TLS__CERT_FILE"),
        "{stderr}"
    );
}

/// A burst larger than the socket's buffers reaches a player who reads it late, to the last
/// byte and at once: what TLS holds back when the socket is full is flushed as soon as the
/// socket drains, not at the server's next write (the next heartbeat is 30 s away here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_read_late_over_tls_arrives_whole_without_waiting_for_the_next_write() {
    const INPUTS: u64 = 600;
    let cert = TestCert::new("tls-burst");
    let config = format!(
        "[session]\nheartbeat_interval = \"30s\"\nidle_timeout = \"60s\"\n\
         write_timeout = \"20s\"\noutbound_queue = 4096\noutbound_queue_bytes = \"64MiB\"\n\
         rate_limit_per_sec = 100000\nrate_limit_burst = 100000\n{}",
        cert.config()
    );
    let server = ServerProcess::loopback(&config).await;
    let mut reader = join(server.addr, &cert.pem, "late-reader").await;
    let mut sender = join(server.addr, &cert.pem, "sender").await;
    // 600 inputs of 32 KiB: 19 MiB relayed to the reader, who does not read yet: more than the
    // kernel buffers of both ends hold.
    let payload = bytes::Bytes::from(vec![7u8; 32 * 1024]);
    for seq in 1..=INPUTS {
        sender
            .send(ClientMessage::Input {
                seq,
                payload: payload.clone(),
            })
            .await;
        loop {
            let message = sender.recv().await;
            if let Some(Ok(message)) = &message
                && relay(message) == Some(("sender".to_owned(), seq))
            {
                break;
            }
            assert!(
                matches!(message, Some(Ok(_))),
                "the sender's stream ended: {message:?}"
            );
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let mut last = 0;
    while last < INPUTS {
        // `recv` allows 10 s for each message, a third of the heartbeat.
        match reader.recv().await {
            Some(Ok(message)) => {
                if let Some((from, seq)) = relay(&message)
                    && from == "sender"
                {
                    assert_eq!(seq, last + 1, "relays in order");
                    last = seq;
                }
            }
            other => panic!("the reader's stream ended after relay {last}: {other:?}"),
        }
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "the burst took {took:?} to read"
    );
    reader.quit_cleanly().await;
    sender.quit_cleanly().await;
}

/// A connection in its TLS handshake is charged to the memory budget what it holds (a silent one
/// 12 KiB, measured: 12.1 KiB of RSS each; what its client sends is added as it arrives, see
/// `hostile_layers.rs`), and given back when it goes: connections that open and never finish
/// their handshake cannot hold memory the budget does not see.
#[tokio::test]
async fn connections_in_their_tls_handshake_are_charged_to_the_memory_budget() {
    let cert = TestCert::new("tls-budget");
    let config = format!(
        "{}{}",
        SESSION.replace("handshake_timeout = \"3s\"", "handshake_timeout = \"60s\""),
        cert.config()
    );
    let server = ServerProcess::loopback(&config).await;
    // 12 KiB each; nothing without the charge.
    server
        .expect_silent_connections_charged(20, 10.0..=14.0)
        .await;
}
