//! Hostile and broken clients: each produces its close reason and metric while a well-behaved
//! player keeps being served; slow consumers are cut off without slowing anyone else; dead peers
//! are released at once.

use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use game_engine::CloseReason;
use game_engine::testkit::Tokens;
use protocol::{ByeCode, ClientMessage, Hello, PROTOCOL_VERSION, ServerMessage};
use system_tests::{Metrics, PATIENCE, RawClient, TestServer, hello};
use tokio::io::AsyncWriteExt;
use tokio::task::JoinHandle;

/// A player in its own room sending an input every 20 ms and timing each relay back. It fails
/// the test if its session ends or a relay takes longer than `max_latency`.
struct Bystander {
    task: JoinHandle<Duration>,
    stop: tokio::sync::oneshot::Sender<()>,
}

impl Bystander {
    async fn start(server: &TestServer, max_latency: Duration) -> Bystander {
        let mut client = RawClient::connect(server.addr).await;
        client
            .hello(ClientMessage::Hello(Box::new(Hello {
                room: "bystander-room".into(),
                ..hello_struct("bystander")
            })))
            .await;
        Bystander::play(client, max_latency)
    }

    /// Keeps a joined player busy in the background: an input every 20 ms, each relay timed,
    /// pings answered.
    fn play(mut client: RawClient, max_latency: Duration) -> Bystander {
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut worst = Duration::ZERO;
            let mut seq = 0;
            loop {
                seq += 1;
                let sent = Instant::now();
                client
                    .send(ClientMessage::Input {
                        seq,
                        payload: Bytes::from_static(b"still here"),
                    })
                    .await;
                loop {
                    match client.recv_answering_pings().await {
                        Some(Ok(ServerMessage::Event { payload, .. }))
                            if payload.first() == Some(&1) =>
                        {
                            break;
                        }
                        Some(Ok(_)) => {}
                        other => panic!("the bystander lost its session: {other:?}"),
                    }
                }
                let latency = sent.elapsed();
                assert!(
                    latency < max_latency,
                    "a relay to the bystander took {latency:?}"
                );
                worst = worst.max(latency);
                tokio::select! {
                    _ = &mut stopped => return worst,
                    () = tokio::time::sleep(Duration::from_millis(20)) => {}
                }
            }
        });
        Bystander { task, stop }
    }

    /// Stops it and returns the worst relay latency it saw.
    async fn finish(self) -> Duration {
        let _ = self.stop.send(());
        self.task.await.expect("bystander task")
    }
}

fn hello_struct(player: &str) -> Hello {
    match hello(player) {
        ClientMessage::Hello(h) => *h,
        _ => unreachable!(),
    }
}

async fn expect_bye(client: &mut RawClient, code: ByeCode) -> String {
    let (_, bye) = client.until_bye().await;
    assert_eq!(bye.code, code, "Bye text: {}", bye.text);
    bye.text
}

#[tokio::test]
async fn hostile_and_broken_clients_each_get_their_reason_while_a_good_player_plays_on() {
    let secret = "0123456789abcdef-test-secret";
    let server = TestServer::start(|c| {
        c.auth.mode = game_engine::config::AuthMode::Hmac;
        c.auth.secret = secret.into();
    })
    .await;
    let auth = Tokens::new(secret);
    let bystander_hello = |player: &str| {
        ClientMessage::Hello(Box::new(Hello {
            auth_token: Some(auth.mint(player, Duration::from_secs(60))),
            ..hello_struct(player)
        }))
    };
    // The bystander needs a token too.
    let bystander = {
        let mut client = RawClient::connect(server.addr).await;
        client.hello(bystander_hello("good")).await;
        client
    };
    let bystander = Bystander::play(bystander, Duration::from_secs(2));
    let before = server.scrape().await;

    // Slowloris: a Hello dribbled a byte at a time never completes in time.
    let mut slow = RawClient::connect(server.addr).await;
    for byte in [0u8, 0, 0] {
        slow.framed
            .get_mut()
            .write_all(&[byte])
            .await
            .expect("dribble");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    expect_bye(&mut slow, ByeCode::HandshakeTimeout).await;
    drop(slow);

    // A length prefix far beyond the maximum: rejected before anything is reserved for it.
    let mut huge = RawClient::connect(server.addr).await;
    huge.framed
        .get_mut()
        .write_all(&[0x7f, 0xff, 0xff, 0xff, 1, 2, 3])
        .await
        .expect("prefix");
    let text = expect_bye(&mut huge, ByeCode::ProtocolError).await;
    assert!(text.contains("before Hello"), "{text}");
    drop(huge);

    // Garbage before Hello (an HTTP request on the game port).
    let mut http = RawClient::connect(server.addr).await;
    http.framed
        .get_mut()
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("garbage");
    expect_bye(&mut http, ByeCode::ProtocolError).await;
    drop(http);

    // A message before Hello.
    let mut early = RawClient::connect(server.addr).await;
    early.send(ClientMessage::Ping { nonce: 1 }).await;
    let text = expect_bye(&mut early, ByeCode::ProtocolError).await;
    assert!(text.contains("expected Hello"), "{text}");
    drop(early);

    // A second Hello.
    let mut twice = RawClient::connect(server.addr).await;
    twice.hello(bystander_hello("twice")).await;
    twice.send(bystander_hello("twice")).await;
    let text = expect_bye(&mut twice, ByeCode::ProtocolError).await;
    assert!(text.contains("duplicate Hello"), "{text}");
    drop(twice);

    // A version this server does not speak.
    let mut future = RawClient::connect(server.addr).await;
    future
        .send(ClientMessage::Hello(Box::new(Hello {
            version: PROTOCOL_VERSION + 1,
            ..hello_struct("from-the-future")
        })))
        .await;
    let text = expect_bye(&mut future, ByeCode::VersionMismatch).await;
    assert!(
        text.contains(&format!("version {PROTOCOL_VERSION}")),
        "{text}"
    );
    drop(future);

    // Tokens: missing, signed with another secret, expired, for another player.
    let foreign = Tokens::new("not-the-server-secret").mint("mallory", Duration::from_secs(60));
    let expired = auth.mint_at(
        "late",
        Duration::from_secs(1),
        SystemTime::now() - Duration::from_secs(10),
    );
    let stolen = auth.mint("alice", Duration::from_secs(60));
    for (player, token, says) in [
        ("nobody", None, "required"),
        ("mallory", Some(foreign), "signature"),
        ("late", Some(expired), "expired"),
        ("eve", Some(stolen), "another player"),
    ] {
        let mut client = RawClient::connect(server.addr).await;
        client
            .send(ClientMessage::Hello(Box::new(Hello {
                auth_token: token,
                ..hello_struct(player)
            })))
            .await;
        let text = expect_bye(&mut client, ByeCode::AuthFailed).await;
        assert!(text.contains(says), "{player}: {text}");
    }

    // A flood of pings past the rate limit (burst 200).
    let mut flood = RawClient::connect(server.addr).await;
    flood.hello(bystander_hello("flooder")).await;
    let mut burst = bytes::BytesMut::new();
    let mut codec = protocol::ClientCodec::default();
    use tokio_util::codec::Encoder;
    for nonce in 0..1000 {
        codec
            .encode(ClientMessage::Ping { nonce }, &mut burst)
            .expect("encode");
    }
    flood
        .framed
        .get_mut()
        .write_all(&burst)
        .await
        .expect("flood");
    expect_bye(&mut flood, ByeCode::RateLimited).await;
    drop(flood);

    server
        .expect_closes(
            &before,
            &[
                (CloseReason::HandshakeTimeout, 1),
                (CloseReason::ProtocolError, 5),
                (CloseReason::AuthFailed, 4),
                (CloseReason::RateLimited, 1),
            ],
            PATIENCE,
        )
        .await;
    let worst = bystander.finish().await;
    eprintln!("bystander worst relay latency: {worst:?}");
    server.stop().await;
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off_as_slow_consumer_without_slowing_others() {
    // The rate limit is lifted so that the client can pile up a backlog as fast as loopback
    // allows: what is measured is the server's reaction, not the time to fill kernel buffers.
    let server = TestServer::start(|c| {
        c.session.rate_limit_per_sec = 1_000_000;
        c.session.rate_limit_burst = 1_000_000;
    })
    .await;
    let write_timeout = server.config.session.write_timeout;
    let bystander = Bystander::start(&server, Duration::from_millis(500)).await;
    let before = server.scrape().await;

    let (mut slow, _) = RawClient::join(server.addr, "slow").await;
    slow.send(ClientMessage::Join {
        room: "slow-room".into(),
        options: Bytes::new(),
    })
    .await;
    // 16 KiB inputs, each relayed back to the sender, never read.
    let payload = Bytes::from(vec![7u8; 16 * 1024]);
    let started = Instant::now();
    let writer = tokio::spawn(async move {
        let mut seq = 0;
        loop {
            seq += 1;
            let input = frame(&ClientMessage::Input {
                seq,
                payload: payload.clone(),
            });
            if slow.framed.get_mut().write_all(&input).await.is_err() {
                return;
            }
        }
    });
    server
        .expect_closes(
            &before,
            &[(CloseReason::SlowConsumer, 1)],
            write_timeout + Duration::from_secs(2),
        )
        .await;
    let cut_off = started.elapsed();
    writer.abort();
    let worst = bystander.finish().await;
    eprintln!("slow consumer cut off after {cut_off:?}; bystander worst relay latency {worst:?}");
    server.stop().await;
}

fn frame(message: &ClientMessage) -> bytes::BytesMut {
    use tokio_util::codec::Encoder;
    let mut out = bytes::BytesMut::new();
    protocol::ClientCodec::default()
        .encode(message.clone(), &mut out)
        .expect("encode");
    out
}

#[tokio::test]
async fn the_same_player_connecting_again_replaces_the_old_session() {
    let server = TestServer::start(|_| {}).await;
    let before = server.scrape().await;
    let (mut old, first) = RawClient::join(server.addr, "twin").await;
    let (mut new, second) = RawClient::join(server.addr, "twin").await;
    assert_ne!(first.session_id, second.session_id);
    expect_bye(&mut old, ByeCode::Replaced).await;
    assert!(old.until_end().await.is_none());
    drop(old);
    server.expect_close(&before, CloseReason::Replaced).await;
    // The new session plays, and is the one the admin listener shows.
    new.send(ClientMessage::Ping { nonce: 9 }).await;
    while !matches!(new.recv().await, Some(Ok(ServerMessage::Pong { nonce: 9 }))) {}
    let (status, body) = server.get("/sessions").await;
    assert_eq!(status, 200);
    let sessions: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let listed: Vec<u64> = sessions["sessions"]
        .as_array()
        .expect("array")
        .iter()
        .filter(|s| s["player"] == "twin")
        .map(|s| s["id"].as_u64().expect("id"))
        .collect();
    assert_eq!(listed, [second.session_id]);
    server.stop().await;
}

#[tokio::test]
async fn operators_list_and_kick_sessions() {
    let server = TestServer::start(|_| {}).await;
    let before = server.scrape().await;
    let (mut client, welcome) = RawClient::join(server.addr, "kickme").await;
    let (status, body) = server.get("/sessions").await;
    assert_eq!(status, 200);
    let sessions: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(sessions["total"], 1);
    let me = &sessions["sessions"][0];
    assert_eq!(me["id"], welcome.session_id);
    assert_eq!(me["player"], "kickme");
    assert_eq!(me["room"], welcome.room.as_str());
    assert!(me["peer"].as_str().expect("peer").starts_with("127.0.0.1:"));
    assert_eq!(server.post("/sessions/999999/kick").await, 404);
    server.kick(welcome.session_id).await;
    expect_bye(&mut client, ByeCode::Kicked).await;
    assert!(client.until_end().await.is_none());
    drop(client);
    server.expect_close(&before, CloseReason::Kicked).await;
    let (_, body) = server.get("/sessions").await;
    let sessions: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(sessions["total"], 0, "{body}");
    assert_eq!(sessions["sessions"], serde_json::json!([]), "{body}");
    server.stop().await;
}

/// An idle-timeout close is abortive: the server's socket is gone at once, not left in
/// FIN-WAIT-1 retransmitting to a peer that will never answer (or FIN-WAIT-2 waiting for one).
#[tokio::test]
#[cfg_attr(not(has_ss), ignore = "needs ss (iproute2)")]
async fn an_idle_timeout_close_leaves_no_socket_behind() {
    system_tests::need_tools(&["ss"], "iproute2");
    let server = TestServer::start(|_| {}).await;
    let before = server.scrape().await;
    let (client, _) = RawClient::join(server.addr, "ghost").await;
    let client_port = client.stream().local_addr().expect("addr").port();
    let filter = format!(
        "( sport = :{} and dport = :{client_port} )",
        server.addr.port()
    );
    let server_side = || {
        system_tests::process::run(std::process::Command::new("ss").args(["-Htan", &filter]))
            .expect_success()
    };
    assert!(
        server_side().contains("ESTAB"),
        "the filter finds the live connection"
    );
    // The client neither reads nor writes again, but keeps its socket open.
    server.expect_close(&before, CloseReason::IdleTimeout).await;
    let sockets = server_side();
    assert!(
        sockets.trim().is_empty(),
        "the server's side of the connection should be gone, found:\n{sockets}"
    );
    drop(client);
    server.stop().await;
}
