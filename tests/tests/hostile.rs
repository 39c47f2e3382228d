//! The server attacked as a hostile player and a careless operator would, each attack beside a
//! well-behaved player who must keep playing: memory floods and reset churn against the
//! budgets, oversized prefixes before Hello, shutdown against half-open connections, a broken
//! log pipe, the admin port, the server's own stall, per-source limits, and the small holes.
//!
//! The heavy attacks run one at a time (they share two cores), each bounded in time and count.
//! Every attack prints a `measured:` line with the figures the closing note and BENCHMARKS.md
//! quote.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use game_engine::CloseReason;
use protocol::{ByeCode, ClientMessage, Hello, PROTOCOL_VERSION, Resume, ServerMessage};
use system_tests::good::GoodPlayer;
use system_tests::measure::{RssPeak, rss};
use system_tests::process::{Reading, ServerProcess, ServerSpec, game_server_binary};
use system_tests::{PATIENCE, RawClient, Scrape, TestServer, hello, hello_in};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// The heavy attacks take turns.
static HEAVY: Mutex<()> = Mutex::const_new(());

/// What the server process holds before any player, as its memory budget counts it (its resident
/// set at start-up), in whole MiB rounded up. The budgets below are this plus the players'
/// share, so that a larger binary or allocator arena does not eat into what the attacks are
/// measured against (a debug build holds about 21 MiB with jemalloc, 13 MiB with the system
/// allocator).
async fn baseline_mib() -> u64 {
    let probe = ServerProcess::start(ServerSpec::loopback("")).await;
    (probe.first_memory_estimate().await as u64).div_ceil(1 << 20)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn resume_hello(
    player: &str,
    room: &str,
    token: protocol::ResumeToken,
    last: u64,
) -> ClientMessage {
    ClientMessage::Hello(Hello {
        version: PROTOCOL_VERSION,
        player_id: player.to_owned(),
        room: room.to_owned(),
        auth_token: None,
        resume: Some(Resume {
            token,
            last_event_seq: last,
        }),
    })
}

/// Closes with RST: the server sees peer_reset and parks the session.
fn reset(stream: TcpStream) {
    let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    drop(stream);
}

/// An attacker that sends maximum-size inputs as fast as the rate limit allows, reads every
/// relay but never acknowledges one, then resets. Returns its resume token.
async fn unacked_flood(addr: SocketAddr, n: usize, pump_for: Duration) -> protocol::ResumeToken {
    let player = format!("flood-{n}");
    let mut client = RawClient::connect(addr).await;
    let welcome = client
        .hello(hello_in(&player, &format!("flood-room-{n}")))
        .await;
    let payload = Bytes::from(vec![0xAB; FLOOD_INPUT]);
    let mut framed = client.framed;
    let mut pace = tokio::time::interval(Duration::from_millis(12));
    let until = Instant::now() + pump_for;
    let mut seq = 0;
    while Instant::now() < until {
        tokio::select! {
            _ = pace.tick() => {
                seq += 1;
                if framed.send(ClientMessage::Input { seq, payload: payload.clone() }).await.is_err() {
                    break;
                }
            }
            message = framed.next() => if message.is_none() { break },
        }
    }
    reset(framed.into_inner());
    welcome.resume_token
}

/// The largest input whose relay still fits in a frame: 65,536 minus the event's own header
/// (kind, seq) and the relay's (tag, sender id, input seq), with room for an id of 64 bytes.
const FLOOD_INPUT: usize = 60_000;

#[tokio::test]
async fn memory_stays_under_the_budget_under_unacked_floods_and_reset_churn() {
    let _turn = HEAVY.lock().await;
    // The budget counts the whole process: its own start-up memory, then what players may use.
    let budget_mib = baseline_mib().await + 53;
    const MAX_PARKED: u64 = 500;
    let server = ServerProcess::start(ServerSpec::loopback(&format!(
        "[server]\nmemory_budget = \"{budget_mib}MiB\"\n\
         [session]\nheartbeat_interval = \"500ms\"\nidle_timeout = \"3s\"\nresume_grace = \"60s\"\n\
         max_parked = {MAX_PARKED}\nmax_parked_bytes = \"1MiB\"\n"
    )))
    .await;
    let budget = budget_mib << 20;
    let before = rss(server.pid);
    let peak = RssPeak::start(server.pid);
    let good = GoodPlayer::start(server.addr, "steady").await;

    // 40 sessions pump maximum-size inputs without acknowledging a single relay, then reset.
    let floods: Vec<_> = (0..40)
        .map(|n| tokio::spawn(unacked_flood(server.addr, n, Duration::from_secs(3))))
        .collect();
    for flood in floods {
        flood.await.expect("flood task");
    }
    // Parked, the floods hold more than session.max_parked_bytes: the oldest go.
    let deadline = Instant::now() + PATIENCE;
    let after_floods = loop {
        let scrape = server.scrape().await;
        if scrape.get(
            "gameserver_parked_evicted_total",
            &[("cause", "parked_bytes")],
        ) >= 1.0
            || Instant::now() >= deadline
        {
            break scrape;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    // Then a churn of connections that reset right after their Welcome, each leaving a parked
    // session behind.
    const CHURN: usize = 3000;
    let addr = server.addr;
    // The very first churn session, parked before thousands of others: certainly evicted.
    let first_churn = {
        let mut client = RawClient::connect(addr).await;
        let welcome = client.hello(hello("churn-first")).await;
        reset(client.framed.into_inner());
        welcome.resume_token
    };
    let workers: Vec<_> = (0..30)
        .map(|w| {
            tokio::spawn(async move {
                for i in 0..CHURN / 30 {
                    let mut client = RawClient::connect(addr).await;
                    client.hello(hello(&format!("churn-{w}-{i}"))).await;
                    reset(client.framed.into_inner());
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("churn worker");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = server.scrape().await;
    let peak = peak.finish().await;
    let outcome = good.finish().await;

    // The first churn session was evicted to make room: its resume is refused, and says why.
    let mut refused = RawClient::connect(server.addr).await;
    refused
        .send(resume_hello("churn-first", "", first_churn, 0))
        .await;
    let (_, bye) = refused.until_bye().await;
    assert_eq!(bye.code, ByeCode::ResumeRejected, "{}", bye.text);
    assert!(bye.text.contains("needed the room"), "{}", bye.text);
    let end = server.scrape().await;

    let evicted =
        |s: &Scrape, cause: &str| s.get("gameserver_parked_evicted_total", &[("cause", cause)]);
    eprintln!(
        "measured: unacked floods + {CHURN} resets: RSS {:.1} MiB before, peak {:.1} MiB (budget \
         {budget_mib} MiB); estimate after floods {:.1} MiB; evicted {} for bytes, {} for count, \
         {} for the budget; refused for the budget {}; parked {}; good player p50 {:?} p99 {:?} \
         over {} inputs",
        mib(before),
        mib(peak),
        mib(after_floods.get("gameserver_memory_used_bytes", &[]) as u64),
        evicted(&after, "parked_bytes"),
        evicted(&after, "max_parked"),
        evicted(&after, "memory_budget"),
        after.get(
            "gameserver_connections_rejected_total",
            &[("reason", "memory_budget")]
        ),
        after.get("gameserver_sessions_parked", &[]),
        outcome.percentile(50.0),
        outcome.percentile(99.0),
        outcome.sent,
    );
    assert!(
        peak < budget,
        "RSS peaked at {:.1} MiB over the {budget_mib} MiB budget",
        mib(peak)
    );
    assert!(
        evicted(&after, "parked_bytes") >= 1.0,
        "parked bytes were bounded"
    );
    assert!(
        evicted(&after, "max_parked") >= 1.0,
        "the parked count was bounded"
    );
    assert!(after.get("gameserver_sessions_parked", &[]) <= MAX_PARKED as f64);
    assert!(
        end.get("gameserver_resume_rejected_total", &[("reason", "evicted")]) >= 1.0,
        "the evicted session's resume is counted as evicted"
    );
    outcome.assert_played(50, Duration::from_secs(2));
}

#[tokio::test]
async fn at_the_memory_budget_newcomers_wait_and_parked_sessions_go_first() {
    let _turn = HEAVY.lock().await;
    // As above: the process before any player, then room for about ten parked floods.
    let budget_mib = baseline_mib().await + 21;
    let server = ServerProcess::start(ServerSpec::loopback(&format!(
        "[server]\nmemory_budget = \"{budget_mib}MiB\"\n\
         [session]\nheartbeat_interval = \"500ms\"\nidle_timeout = \"3s\"\nresume_grace = \"60s\"\n"
    )))
    .await;
    let good = GoodPlayer::start(server.addr, "steady").await;
    let peak = RssPeak::start(server.pid);
    let before = server.scrape().await;
    // A first wave floods, resets and stays parked.
    let first: Vec<_> = (0..10)
        .map(|n| tokio::spawn(unacked_flood(server.addr, 100 + n, Duration::from_secs(2))))
        .collect();
    for flood in first {
        flood.await.expect("flood task");
    }
    // A second wave pushes the server over its budget: the parked sessions go first.
    let floods: Vec<_> = (0..40)
        .map(|n| tokio::spawn(unacked_flood(server.addr, n, Duration::from_secs(3))))
        .collect();
    // Newcomers knock while the floods fill the budget.
    let mut refused = 0;
    let mut admitted = 0;
    for i in 0..40 {
        tokio::time::sleep(Duration::from_millis(75)).await;
        let mut client = RawClient::connect(server.addr).await;
        client.send(hello(&format!("newcomer-{i}"))).await;
        match client.recv().await {
            Some(Ok(ServerMessage::Welcome(_))) => admitted += 1,
            Some(Ok(ServerMessage::Bye(bye))) => {
                assert_eq!(bye.code, ByeCode::ServerFull, "{}", bye.text);
                assert!(bye.text.contains("out of room"), "{}", bye.text);
                refused += 1;
            }
            other => panic!("unexpected answer: {other:?}"),
        }
    }
    for flood in floods {
        flood.await.expect("flood task");
    }
    // Once the floods are gone the server takes newcomers again.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let scrape = server.scrape().await;
        if scrape.get("gameserver_memory_used_bytes", &[]) < (budget_mib << 20) as f64 * 0.8 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the server stayed over its budget"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deadline = Instant::now() + PATIENCE;
    let _late = loop {
        let mut client = RawClient::connect(server.addr).await;
        client.send(hello("late-newcomer")).await;
        match client.recv().await {
            Some(Ok(ServerMessage::Welcome(_))) => break client,
            other => assert!(
                Instant::now() < deadline,
                "the server never took newcomers again: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let after = server.scrape().await;
    let peak = peak.finish().await;
    let outcome = good.finish().await;
    let rejected = after.get(
        "gameserver_connections_rejected_total",
        &[("reason", "memory_budget")],
    ) - before.get(
        "gameserver_connections_rejected_total",
        &[("reason", "memory_budget")],
    );
    let evicted = after.get(
        "gameserver_parked_evicted_total",
        &[("cause", "memory_budget")],
    );
    eprintln!(
        "measured: memory budget {budget_mib} MiB under 40 unacked floods: {refused} of 40 \
         newcomers refused ({admitted} admitted), {evicted} parked sessions evicted for the \
         budget, RSS peak {:.1} MiB, good player p99 {:?}",
        mib(peak),
        outcome.percentile(99.0)
    );
    assert!(
        peak < budget_mib << 20,
        "RSS peaked at {:.1} MiB over the {budget_mib} MiB budget",
        mib(peak)
    );
    assert!(refused >= 1, "no newcomer was refused at the budget");
    assert_eq!(rejected, refused as f64);
    assert!(
        evicted >= 1.0,
        "no parked session was evicted for the budget"
    );
    outcome.assert_played(50, Duration::from_secs(2));
}

/// Opens `n` connections that each send `bytes` and then hold, `parallel` at a time.
async fn hold_connections(addr: SocketAddr, n: usize, bytes: &'static [u8]) -> Vec<TcpStream> {
    let mut held = Vec::with_capacity(n);
    for chunk in 0..n.div_ceil(200) {
        let batch = (chunk * 200..(n.min((chunk + 1) * 200))).map(|_| async move {
            let mut stream = TcpStream::connect(addr).await.expect("connect");
            stream.write_all(bytes).await.expect("write");
            stream
        });
        held.extend(futures_util::future::join_all(batch).await);
    }
    held
}

/// Reads each stream to its end (or error), `parallel` at a time.
async fn read_to_end_all(streams: &mut [TcpStream]) {
    for chunk in streams.chunks_mut(500) {
        let reads = chunk.iter_mut().map(|stream| async move {
            let mut sink = [0u8; 256];
            let _ = tokio::time::timeout(PATIENCE, async {
                while let Ok(n) = stream.read(&mut sink).await {
                    if n == 0 {
                        break;
                    }
                }
            })
            .await;
        });
        futures_util::future::join_all(reads).await;
    }
}

#[tokio::test]
async fn length_prefixes_before_hello_cost_the_server_almost_nothing() {
    let _turn = HEAVY.lock().await;
    let server = ServerProcess::start(ServerSpec::loopback(
        "[session]\nhandshake_timeout = \"60s\"\nlinger_timeout = \"60s\"\n",
    ))
    .await;
    let good = GoodPlayer::start(server.addr, "steady").await;
    const N: usize = 5000;

    // A 64 KiB prefix: refused at once as a protocol error, nothing reserved for it. Measured
    // while all of them linger (Bye sent, waiting for the client's FIN).
    let before = rss(server.pid);
    let mut huge = hold_connections(server.addr, N, &[0x00, 0x01, 0x00, 0x00]).await;
    read_to_end_all(&mut huge).await;
    let grown_huge = rss(server.pid).saturating_sub(before);
    let scrape_before = server.scrape().await;
    drop(huge);
    server
        .expect_closes(
            &scrape_before,
            &[(CloseReason::ProtocolError, N as u64)],
            Duration::from_secs(60),
        )
        .await;

    // The largest Hello's prefix, a few bytes of body, then nothing: held until the handshake
    // timeout, each with at most a Hello's worth reserved.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = rss(server.pid);
    let held = hold_connections(server.addr, N, &[0x00, 0x00, 0x02, 0xa3, 0x01, 0x00]).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let grown_held = rss(server.pid).saturating_sub(before);
    let outcome = good.finish().await;
    drop(held);

    let per_huge = grown_huge / N as u64;
    let per_held = grown_held / N as u64;
    eprintln!(
        "measured: {N} connections with a 64 KiB prefix before Hello, lingering after their \
         Bye: RSS +{per_huge} B each; {N} holding a Hello-sized prefix: RSS +{per_held} B each; \
         good player p99 {:?}",
        outcome.percentile(99.0)
    );
    assert!(per_huge < 10 * 1024, "{per_huge} bytes per connection");
    assert!(per_held < 10 * 1024, "{per_held} bytes per connection");
    outcome.assert_played(20, Duration::from_secs(2));
}

/// Starts an admin request and never finishes its headers.
async fn half_sent_admin_request(admin: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(admin).await.expect("connect admin");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .expect("write");
    stream
}

#[tokio::test]
async fn sigterm_exits_within_the_drain_timeout_whatever_connections_do() {
    let _turn = HEAVY.lock().await;
    let mut server = ServerProcess::start(ServerSpec::loopback(
        "[shutdown]\ndrain_timeout = \"2s\"\n[admin]\nheader_read_timeout = \"30s\"\n",
    ))
    .await;
    let _admins = [
        half_sent_admin_request(server.admin).await,
        half_sent_admin_request(server.admin).await,
        half_sent_admin_request(server.admin).await,
    ];
    // A player that never reads and never closes: its lingering close never completes.
    let (stubborn, _) = RawClient::join(server.addr, "stubborn").await;
    let signalled = Instant::now();
    server.signal("TERM");
    let status = server
        .wait_exit(Duration::from_secs(2) + game_engine::Shutdown::EXIT_MARGIN + PATIENCE)
        .await;
    let took = signalled.elapsed();
    eprintln!(
        "measured: SIGTERM with 3 half-sent admin requests and a stubborn client: exit {status} after {took:?}"
    );
    assert!(status.success(), "{status}");
    assert!(
        took <= Duration::from_secs(2) + game_engine::Shutdown::EXIT_MARGIN,
        "took {took:?}"
    );
    drop(stubborn);
}

#[tokio::test]
async fn a_second_signal_exits_at_once() {
    let mut server = ServerProcess::start(ServerSpec::loopback(
        "[shutdown]\ndrain_timeout = \"60s\"\n[session]\nlinger_timeout = \"60s\"\n",
    ))
    .await;
    let _admin = half_sent_admin_request(server.admin).await;
    let (stubborn, _) = RawClient::join(server.addr, "stubborn").await;
    server.signal("TERM");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let signalled = Instant::now();
    server.signal("TERM");
    let status = server.wait_exit(PATIENCE).await;
    let took = signalled.elapsed();
    eprintln!("measured: second SIGTERM: exit {status} after {took:?}");
    assert!(took < Duration::from_millis(1500), "took {took:?}");
    assert!(
        status.success(),
        "the forced shutdown finished by itself, before its deadline: {status}"
    );
    drop(stubborn);
}

#[tokio::test]
async fn half_sent_admin_requests_are_closed_and_cannot_exhaust_descriptors() {
    let server = ServerProcess::start(ServerSpec::loopback(
        "[admin]\nheader_read_timeout = \"1s\"\nmax_connections = 8\n",
    ))
    .await;
    let mut slow = half_sent_admin_request(server.admin).await;
    let started = Instant::now();
    let mut sink = [0u8; 256];
    let read = tokio::time::timeout(PATIENCE, async {
        loop {
            match slow.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(_) => continue,
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the half-sent request was never closed");
    let closed_after = started.elapsed();
    assert!(closed_after < Duration::from_secs(4), "{closed_after:?}");

    // Past the cap, new admin connections are closed at accept (with a reset: their request
    // is unread), while the first eight wait for their header timeout.
    let mut held =
        futures_util::future::join_all((0..50).map(|_| half_sent_admin_request(server.admin)))
            .await;
    let closed = futures_util::future::join_all(held.iter_mut().map(|stream| async move {
        let mut sink = [0u8; 64];
        matches!(
            tokio::time::timeout(Duration::from_millis(300), stream.read(&mut sink)).await,
            Ok(Ok(0) | Err(_))
        )
    }))
    .await;
    let refused = closed.iter().filter(|c| **c).count();
    drop(held);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let scrape = server.scrape().await;
    eprintln!(
        "measured: a half-sent admin request was closed after {closed_after:?}; {refused} of 50 \
         connections past admin.max_connections = 8 were closed at once"
    );
    assert!(refused >= 40, "only {refused} connections were refused");
    assert!(scrape.get("gameserver_admin_connections_rejected_total", &[]) >= 40.0);
}

/// Plays `n` short sessions that quit cleanly.
async fn short_sessions(addr: SocketAddr, n: usize, tag: &str) {
    for i in 0..n {
        let (mut client, _) = RawClient::join(addr, &format!("{tag}-{i}")).await;
        client
            .send(ClientMessage::Bye(protocol::Bye::new(
                ByeCode::ClientQuit,
                "",
            )))
            .await;
        let _ = client.until_bye().await;
    }
}

#[tokio::test]
async fn a_closed_or_stuck_log_pipe_neither_stops_the_bookkeeping_nor_the_shutdown() {
    for (reading, name) in [(Reading::Closed, "closed"), (Reading::Paused, "full")] {
        let mut server =
            ServerProcess::start(ServerSpec::loopback("[shutdown]\ndrain_timeout = \"3s\"\n"))
                .await;
        let good = GoodPlayer::start(server.addr, "steady").await;
        server.logs.set_reading(reading);
        let before = server.scrape().await;
        // Each close logs a line: 300 of them are far more than a pipe holds (64 KiB).
        short_sessions(server.addr, 300, name).await;
        server
            .expect_closes(&before, &[(CloseReason::ClientQuit, 300)], PATIENCE)
            .await;
        let (_, sessions) = server.http("GET", "/sessions").await;
        let sessions: serde_json::Value = serde_json::from_str(&sessions).expect("JSON");
        assert_eq!(
            sessions["total"], 1,
            "only the good player is left: {sessions}"
        );
        // The good player keeps playing while nobody reads the log.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let outcome = good.finish().await;
        let scrape = server.scrape().await;
        let dropped = scrape.get("gameserver_log_lines_dropped_total", &[]);
        server.signal("TERM");
        let started = Instant::now();
        let status = server.wait_exit(PATIENCE).await;
        eprintln!(
            "measured: log pipe {name}: 300 closes counted, {dropped} log lines dropped, exit \
             {status} {:?} after SIGTERM, good player p99 {:?}",
            started.elapsed(),
            outcome.percentile(99.0)
        );
        if reading == Reading::Closed {
            // A full pipe only fills the writer's queue (16,384 lines); a closed one loses them.
            assert!(dropped > 0.0, "lines were lost and must be counted");
        }
        assert!(status.success(), "{status}");
        outcome.assert_played(30, Duration::from_secs(2));
    }
}

#[tokio::test]
async fn the_admin_port_refuses_cross_site_and_unauthenticated_kicks() {
    let server = TestServer::start(|_| {}).await;
    let (mut victim, welcome) = RawClient::join(server.addr, "victim").await;
    let http = reqwest::Client::new();
    let url = format!(
        "{}/sessions/{}/kick",
        server.admin_url(),
        welcome.session_id
    );
    // A cross-site "simple" POST, as a web page would send it.
    let cross_site = http
        .post(&url)
        .header("Origin", "http://evil.example")
        .header("Content-Type", "text/plain")
        .body("x")
        .send()
        .await
        .expect("post");
    assert_eq!(cross_site.status().as_u16(), 401);
    let cross_site_with_token = http
        .post(&url)
        .bearer_auth(system_tests::TEST_ADMIN_TOKEN)
        .header("Origin", "http://evil.example")
        .send()
        .await
        .expect("post");
    assert_eq!(cross_site_with_token.status().as_u16(), 403);
    let wrong_token = http
        .post(&url)
        .bearer_auth("not-the-token-at-all")
        .send()
        .await
        .expect("post");
    assert_eq!(wrong_token.status().as_u16(), 401);
    // A rebound DNS name cannot read the sessions without the token.
    let rebound = http
        .get(format!("{}/sessions", server.admin_url()))
        .header("Host", "evil.example")
        .send()
        .await
        .expect("get");
    assert_eq!(rebound.status().as_u16(), 403);
    victim.send(ClientMessage::Ping { nonce: 1 }).await;
    while !matches!(
        victim.recv().await,
        Some(Ok(ServerMessage::Pong { nonce: 1 }))
    ) {}
    // With the token it works.
    server.kick(welcome.session_id).await;
    let (_, bye) = victim.until_bye().await;
    assert_eq!(bye.code, ByeCode::Kicked);
    server.stop().await;

    // Without a token configured, kicking is off altogether.
    let open = TestServer::start(|c| c.admin.token.clear()).await;
    let (_, welcome) = RawClient::join(open.addr, "safe").await;
    let response = http
        .post(format!(
            "{}/sessions/{}/kick",
            open.admin_url(),
            welcome.session_id
        ))
        .send()
        .await
        .expect("post");
    assert_eq!(response.status().as_u16(), 403);
    open.stop().await;
}

#[tokio::test]
async fn the_server_refuses_to_start_with_a_public_admin_port_and_no_token() {
    let output = tokio::process::Command::new(game_server_binary())
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "0.0.0.0:0"])
        .env_remove("GAMESERVER__ADMIN__TOKEN")
        .output()
        .await
        .expect("run game-server");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("admin.token"), "{stderr}");
    assert!(stderr.contains("not a loopback address"), "{stderr}");
}

#[tokio::test]
async fn sessions_are_listed_a_bounded_page_at_a_time() {
    let server = TestServer::start(|_| {}).await;
    let mut clients = Vec::new();
    for i in 0..25 {
        clients.push(RawClient::join(server.addr, &format!("paged-{i}")).await.0);
    }
    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let (status, body) = server
            .get(&format!("/sessions?limit=10&after={after}"))
            .await;
        assert_eq!(status, 200);
        let page: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(page["total"], 25);
        let sessions = page["sessions"].as_array().expect("sessions");
        assert!(sessions.len() <= 10);
        seen.extend(sessions.iter().map(|s| s["id"].as_u64().expect("id")));
        match page["next_after"].as_u64() {
            Some(next) => after = next,
            None => break,
        }
    }
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 25, "{seen:?}");
    server.stop().await;
}

/// A client that sends a ping every `every` and answers the server's pings, until stopped;
/// returns how its session ended, if it did.
async fn chatty(
    addr: SocketAddr,
    player: String,
    every: Duration,
    stop: Arc<AtomicBool>,
) -> Option<String> {
    let (client, _) = RawClient::join(addr, &player).await;
    let mut framed = client.framed;
    let mut tick = tokio::time::interval(every);
    let mut nonce = 0;
    while !stop.load(Ordering::Relaxed) {
        tokio::select! {
            _ = tick.tick() => {
                nonce += 1;
                if framed.send(ClientMessage::Ping { nonce }).await.is_err() {
                    return Some("send failed".into());
                }
            }
            message = framed.next() => match message {
                Some(Ok(ServerMessage::Ping { nonce })) => {
                    let _ = framed.send(ClientMessage::Pong { nonce }).await;
                }
                Some(Ok(ServerMessage::Bye(bye))) => return Some(format!("{:?}", bye.code)),
                Some(Ok(_)) => {}
                other => return Some(format!("{other:?}")),
            }
        }
    }
    None
}

#[tokio::test]
async fn a_stopped_server_charges_its_stall_to_nobody() {
    let _turn = HEAVY.lock().await;
    let server = ServerProcess::start(ServerSpec::loopback(
        "[session]\nheartbeat_interval = \"1s\"\nidle_timeout = \"3s\"\n",
    ))
    .await;
    let good = GoodPlayer::start(server.addr, "steady").await;
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..200)
        .map(|i| {
            tokio::spawn(chatty(
                server.addr,
                format!("chatty-{i}"),
                Duration::from_millis(250),
                stop.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = server.scrape().await;
    server.signal("STOP");
    tokio::time::sleep(Duration::from_secs(10)).await;
    server.signal("CONT");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = server.scrape().await;
    stop.store(true, Ordering::Relaxed);
    let outcome = good.finish().await;
    let mut ended = Vec::new();
    for client in clients {
        if let Some(end) = client.await.expect("chatty task") {
            ended.push(end);
        }
    }
    let stall = after.get("gameserver_server_stall_seconds_total", &[]);
    eprintln!(
        "measured: SIGSTOP 10 s: stall recorded {stall:.2} s; closes meanwhile {:?}; good player \
         (20 inputs/s) p50 {:?} p99 {:?} max {:?}",
        after.close_deltas(&before),
        outcome.percentile(50.0),
        outcome.percentile(99.0),
        outcome.percentile(100.0),
    );
    assert!(
        after.close_deltas(&before).is_empty(),
        "{:?}",
        after.close_deltas(&before)
    );
    assert!(ended.is_empty(), "chatty clients were cut: {ended:?}");
    assert!(stall >= 9.0, "the stall was not recorded: {stall}");
    outcome.assert_played(100, Duration::from_secs(12));
}

#[tokio::test]
async fn a_source_reconnecting_in_a_loop_is_refused_for_its_rate() {
    let server = TestServer::start(|c| {
        c.server.source_exempt.clear();
        c.server.connect_rate_per_source = 1;
        c.server.connect_burst_per_source = 3;
    })
    .await;
    let before = server.scrape().await;
    let mut held = Vec::new();
    for i in 0..3 {
        held.push(RawClient::join(server.addr, &format!("burst-{i}")).await.0);
    }
    let mut next = RawClient::connect(server.addr).await;
    let (_, bye) = next.until_bye().await;
    assert_eq!(bye.code, ByeCode::ServerFull);
    assert!(bye.text.contains("too many connections"), "{}", bye.text);
    // The bucket refills at one connection a second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    held.push(RawClient::join(server.addr, "later").await.0);
    let after = server.scrape().await;
    let rejected = |reason: &str| {
        after.get(
            "gameserver_connections_rejected_total",
            &[("reason", reason)],
        ) - before.get(
            "gameserver_connections_rejected_total",
            &[("reason", reason)],
        )
    };
    assert_eq!(rejected("connect_rate"), 1.0);
    server.stop().await;
}

#[tokio::test]
async fn sources_are_limited_in_sessions_and_failed_logins() {
    let secret = "0123456789abcdef-hostile";
    let server = TestServer::start(|c| {
        c.server.source_exempt.clear();
        c.server.max_sessions_per_source = 3;
        c.server.connect_rate_per_source = 0;
        c.auth.mode = game_engine::config::AuthMode::Hmac;
        c.auth.secret = secret.into();
        c.auth.max_failures_per_source = 3;
    })
    .await;
    let auth = game_engine::testkit::Tokens::new(secret);
    let with_token = |player: &str, token: String| {
        ClientMessage::Hello(Hello {
            auth_token: Some(token),
            ..match hello(player) {
                ClientMessage::Hello(h) => h,
                _ => unreachable!(),
            }
        })
    };
    let signed = |player: &str| {
        let token = auth.mint(player, Duration::from_secs(60));
        with_token(player, token)
    };
    let before = server.scrape().await;
    // Three sessions fit; the fourth is turned away.
    let mut held = Vec::new();
    for i in 0..3 {
        let mut client = RawClient::connect(server.addr).await;
        client.hello(signed(&format!("house-{i}"))).await;
        held.push(client);
    }
    let mut fourth = RawClient::connect(server.addr).await;
    let (_, bye) = fourth.until_bye().await;
    assert_eq!(bye.code, ByeCode::ServerFull);
    assert!(bye.text.contains("too many sessions"), "{}", bye.text);
    drop(held);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Three failed logins use up the source's allowance; a fourth, valid, login is refused
    // unchecked.
    for i in 0..3 {
        let player = format!("guess-{i}");
        let forged = format!("{player}.99999999999.{}", "0".repeat(64));
        let mut guess = RawClient::connect(server.addr).await;
        guess.send(with_token(&player, forged)).await;
        let (_, bye) = guess.until_bye().await;
        assert_eq!(bye.code, ByeCode::AuthFailed, "{}", bye.text);
    }
    let mut honest = RawClient::connect(server.addr).await;
    honest.send(signed("honest")).await;
    let (_, bye) = honest.until_bye().await;
    assert_eq!(bye.code, ByeCode::AuthFailed);
    assert!(bye.text.contains("too many failed"), "{}", bye.text);
    let after = server.scrape().await;
    let rejected = after.get(
        "gameserver_connections_rejected_total",
        &[("reason", "per_source_limit")],
    ) - before.get(
        "gameserver_connections_rejected_total",
        &[("reason", "per_source_limit")],
    );
    assert_eq!(rejected, 1.0);
    assert_eq!(after.get("gameserver_auth_throttled_total", &[]), 1.0);
    server.stop().await;
}

#[tokio::test]
async fn automatic_rooms_cannot_be_entered_by_name() {
    let server = TestServer::start(|_| {}).await;
    let (_first, welcome) = RawClient::join(server.addr, "placed").await;
    assert!(welcome.room.starts_with("auto-"), "{}", welcome.room);
    let mut squatter = RawClient::connect(server.addr).await;
    squatter.send(hello_in("squatter", &welcome.room)).await;
    let (_, bye) = squatter.until_bye().await;
    assert_eq!(bye.code, ByeCode::ProtocolError);
    assert!(bye.text.contains("reserved"), "{}", bye.text);
    // The same prefix in capitals or in full-width letters is the same prefix to a person.
    let number = welcome.room.trim_start_matches("auto-");
    for spelling in [
        format!("AUTO-{number}"),
        format!("\u{FF41}uto-{number}"),
        format!("Auto\u{FF0D}{number}"),
    ] {
        let mut squatter = RawClient::connect(server.addr).await;
        squatter.send(hello_in("squatter", &spelling)).await;
        let (_, bye) = squatter.until_bye().await;
        assert_eq!(bye.code, ByeCode::ProtocolError, "{spelling}");
        assert!(bye.text.contains("reserved"), "{spelling}: {}", bye.text);
    }
    let (mut mover, _) = RawClient::join(server.addr, "mover").await;
    mover
        .send(ClientMessage::Join {
            room: welcome.room.clone(),
        })
        .await;
    let (_, bye) = mover.until_bye().await;
    assert_eq!(bye.code, ByeCode::ProtocolError);
    let mut newline = RawClient::connect(server.addr).await;
    newline.send(hello("bad\nid")).await;
    let (_, bye) = newline.until_bye().await;
    assert_eq!(bye.code, ByeCode::ProtocolError);
    assert!(bye.text.contains("control characters"), "{}", bye.text);
    server.stop().await;
}

#[tokio::test]
async fn an_absurd_token_lifetime_is_a_clear_error() {
    let output = tokio::process::Command::new(game_server_binary())
        .args(["token", "--player", "p", "--ttl", "584542046090y"])
        .env("GAMESERVER__AUTH__SECRET", "0123456789abcdef-0123")
        .output()
        .await
        .expect("run game-server token");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("auth.max_ttl"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[tokio::test]
async fn a_flood_of_abusive_closes_is_logged_as_summaries() {
    let _turn = HEAVY.lock().await;
    let server = ServerProcess::start(ServerSpec::loopback("")).await;
    let before = server.scrape().await;
    let mark = server.log_mark();
    const N: usize = 400;
    for _ in 0..N / 50 {
        let batch = (0..50).map(|_| async {
            let mut stream = TcpStream::connect(server.addr).await.expect("connect");
            let _ = stream.write_all(b"GET / HTTP/1.1\r\n\r\n").await;
            let mut sink = Vec::new();
            let _ = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut sink)).await;
        });
        futures_util::future::join_all(batch).await;
    }
    server
        .expect_closes(&before, &[(CloseReason::ProtocolError, N as u64)], PATIENCE)
        .await;
    // The summary comes within the summary period.
    let (_, summary) = server
        .logs
        .wait_from(mark, Duration::from_secs(15), "a summary line", |l| {
            l.contains("more protocol_error lines")
        })
        .await;
    let lines = server.logs.all()[mark..]
        .iter()
        .filter(|l| {
            system_tests::process::message(l).as_deref() == Some("session closed")
                && l.contains("protocol_error")
        })
        .count();
    let scrape = server.scrape().await;
    eprintln!("measured: {N} protocol errors logged as {lines} lines and a summary: {summary}");
    assert!(lines < N / 4, "{lines} lines for {N} closes");
    assert!(scrape.get("gameserver_log_lines_suppressed_total", &[]) > 0.0);
}
