//! The client library (`game-client`) against the real `game-server` binary: every way the
//! server's side can go, and what the game is told. The pulled cable runs the library in a
//! network namespace (through `netclient session`); the other cases run it in this process.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use game_client::{ByeCode, Client, ClientConfig, Config, End, Lost, Notice, Transport};
use game_engine::CloseReason;
use rooms::payload::DemoEvent;
use system_tests::netns::Pair;
use system_tests::process::{NetClient, ServerProcess, ServerSpec};
use system_tests::{Metrics, PATIENCE, need_tools};

/// Slack for a loaded 2-core machine.
const MARGIN: Duration = Duration::from_secs(1);

/// Short timers, so that each case takes seconds.
const QUICK: &str = "[session]\nheartbeat_interval = \"500ms\"\nidle_timeout = \"2s\"\n\
                     resume_grace = \"30s\"\n";

fn client(server: &ServerProcess, player: &str, room: &str) -> Client {
    let mut config = ClientConfig::new(server.addr.to_string(), Config::new(player, room));
    config.reconnect_min = Duration::from_millis(50);
    config.reconnect_max = Duration::from_millis(500);
    config.connect_timeout = Duration::from_secs(2);
    config.max_attempts = None;
    Client::start(config)
}

/// Reads notices until one matches; returns it with everything before it.
async fn until(
    client: &mut Client,
    within: Duration,
    what: &str,
    matches: impl Fn(&Notice) -> bool,
) -> (Notice, Vec<Notice>) {
    let mut seen = Vec::new();
    let found = tokio::time::timeout(within, async {
        while let Some(notice) = client.next().await {
            if matches(&notice) {
                return Some(notice);
            }
            seen.push(notice);
        }
        None
    })
    .await;
    match found {
        Ok(Some(notice)) => (notice, seen),
        Ok(None) => panic!("the client closed before {what}: {seen:?}"),
        Err(_) => panic!("no {what} within {within:?}: {seen:?}"),
    }
}

async fn welcomed(client: &mut Client) -> (u64, bool) {
    match until(client, PATIENCE, "Welcome", |n| {
        matches!(n, Notice::Welcome { .. })
    })
    .await
    .0
    {
        Notice::Welcome {
            session_id,
            resumed,
            ..
        } => (session_id, resumed),
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn inputs_come_back_as_events_and_a_quit_is_a_lingering_close_with_every_input_acknowledged()
{
    let server = ServerProcess::loopback(QUICK).await;
    let before = server.scrape().await;
    let mut alice = client(&server, "alice", "library-quit");
    welcomed(&mut alice).await;
    for i in 0..20u8 {
        alice.input(vec![i]).expect("input");
    }
    let mut relayed = Vec::new();
    while relayed.len() < 20 {
        if let (Notice::Event { payload, .. }, _) = until(&mut alice, PATIENCE, "an event", |n| {
            matches!(n, Notice::Event { .. })
        })
        .await
            && let Ok(DemoEvent::Relay { input_seq, .. }) = DemoEvent::from_bytes(payload)
        {
            relayed.push(input_seq);
        }
    }
    assert_eq!(relayed, (1..=20).collect::<Vec<_>>());
    alice.quit();
    let (closed, _) = until(&mut alice, PATIENCE, "Closed", |n| {
        matches!(n, Notice::Closed { .. })
    })
    .await;
    assert_eq!(closed, Notice::Closed { acked_input: 20 });
    server.expect_close(&before, CloseReason::ClientQuit).await;
}

/// The server stops (SIGSTOP): nothing arrives, nothing fails. The client's own watchdog
/// declares it silent after the idle timeout the server announced, then gets the session back
/// once the server runs again.
#[tokio::test]
async fn a_frozen_server_is_declared_silent_within_its_idle_timeout_and_the_session_comes_back() {
    let server = ServerProcess::loopback(QUICK).await;
    let mut bob = client(&server, "bob", "library-frozen");
    let (session, _) = welcomed(&mut bob).await;
    // A couple of heartbeats, so that the last frame heard is recent.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    server.signal("STOP");
    let stopped = Instant::now();
    let (end, _) = until(&mut bob, Duration::from_secs(10), "Disconnected", |n| {
        matches!(n, Notice::Disconnected(_))
    })
    .await;
    let noticed = stopped.elapsed();
    server.signal("CONT");
    assert_eq!(
        end,
        Notice::Disconnected(End::ServerSilent(Duration::from_secs(2)))
    );
    // The last Pong came at most one client heartbeat (0.45 s) before the stop.
    assert!(
        noticed + Duration::from_millis(500) >= Duration::from_secs(2)
            && noticed <= Duration::from_secs(2) + MARGIN,
        "declared silent {noticed:?} after the stop"
    );
    let (again, resumed) = welcomed(&mut bob).await;
    assert!(resumed, "the same session, taken back");
    assert_eq!(again, session);
}

/// A drain says `Bye{server_shutdown}`: the session is over, and the game is told so.
#[tokio::test]
async fn a_draining_server_ends_the_session_and_the_game_is_told_it_is_lost() {
    let server = ServerProcess::loopback(QUICK).await;
    let mut carol = client(&server, "carol", "library-drain");
    welcomed(&mut carol).await;
    server.signal("TERM");
    let (lost, seen) = until(&mut carol, PATIENCE, "Lost", |n| {
        matches!(n, Notice::Lost(_))
    })
    .await;
    let shutdown = End::Bye {
        code: ByeCode::ServerShutdown,
        text: String::new(),
    };
    let said = |end: &End| {
        matches!(
            end,
            End::Bye {
                code: ByeCode::ServerShutdown,
                ..
            }
        )
    };
    assert!(
        matches!(&lost, Notice::Lost(Lost::Ended(end)) if said(end)),
        "{lost:?} (expected {shutdown:?})"
    );
    assert!(
        seen.iter()
            .any(|n| matches!(n, Notice::Disconnected(end) if said(end))),
        "{seen:?}"
    );
}

/// The server is killed and another starts on the same port: the client reconnects by itself,
/// its resume is refused (a new process knows no token), the game is told the session is lost,
/// and a new session starts when the game asks.
#[tokio::test]
async fn a_killed_and_restarted_server_refuses_the_resume_and_a_new_session_starts_when_asked() {
    let mut first = ServerProcess::loopback(QUICK).await;
    let addr = first.addr;
    let mut dave = client(&first, "dave", "library-restart");
    welcomed(&mut dave).await;
    dave.input(&b"before the crash"[..]).expect("input");
    first.signal("KILL");
    first.wait_exit(PATIENCE).await;
    let (broke, _) = until(&mut dave, PATIENCE, "Disconnected", |n| {
        matches!(n, Notice::Disconnected(_))
    })
    .await;
    assert!(
        matches!(
            broke,
            Notice::Disconnected(End::Transport(Transport::PeerEof | Transport::PeerReset))
        ),
        "{broke:?}"
    );
    // Nothing listens for a moment: refused connects, retried.
    let (refused, _) = until(&mut dave, PATIENCE, "a refused connect", |n| {
        matches!(n, Notice::Disconnected(End::Transport(Transport::Refused)))
    })
    .await;
    drop(refused);
    let spec = ServerSpec {
        listen: addr.to_string(),
        ..ServerSpec::loopback(QUICK)
    };
    let _second = ServerProcess::start(spec).await;
    let (lost, _) = until(&mut dave, PATIENCE, "Lost", |n| {
        matches!(n, Notice::Lost(_))
    })
    .await;
    assert!(
        matches!(&lost, Notice::Lost(Lost::ResumeRefused(text)) if text.contains("unknown")),
        "{lost:?}"
    );
    assert!(
        dave.input(&b"into nothing"[..]).is_err(),
        "no session to play in"
    );
    dave.new_session();
    let (_, resumed) = welcomed(&mut dave).await;
    assert!(!resumed, "a new session");
    assert_eq!(dave.input(&b"first of the new session"[..]), Ok(1));
}

/// Field report, client side: the server closes with the client's data unread (naive close,
/// `session.lingering_close = false`). Whatever reaches the client first, the game is told in
/// typed values: the `Bye{kicked}`, or the reset that destroyed it; never an untyped error.
#[tokio::test]
async fn a_server_that_resets_over_unread_data_surfaces_as_a_typed_end() {
    let server = ServerProcess::loopback(&format!("{QUICK}lingering_close = false\n")).await;
    let mut erin = client(&server, "erin", "library-naive");
    let (session, _) = welcomed(&mut erin).await;
    // Inputs in flight (within the rate limit's burst), then the operator kicks.
    for _ in 0..50 {
        erin.input(&b"busy"[..]).expect("input");
    }
    let (status, _) = server
        .http("POST", &format!("/sessions/{session}/kick"))
        .await;
    assert_eq!(status, 202);
    let (lost, seen) = until(&mut erin, PATIENCE, "Lost", |n| {
        matches!(n, Notice::Lost(_))
    })
    .await;
    let ends: Vec<&End> = seen
        .iter()
        .filter_map(|n| match n {
            Notice::Disconnected(end) => Some(end),
            _ => None,
        })
        .collect();
    let first = ends.first().expect("a Disconnected before the Lost");
    assert!(
        matches!(
            first,
            End::Bye {
                code: ByeCode::Kicked,
                ..
            } | End::Transport(Transport::PeerReset | Transport::PeerEof)
        ),
        "{first:?}"
    );
    // A kicked session is over: either the Bye said so, or the resume after the reset is
    // refused.
    assert!(
        matches!(
            &lost,
            Notice::Lost(Lost::Ended(End::Bye {
                code: ByeCode::Kicked,
                ..
            })) | Notice::Lost(Lost::ResumeRefused(_))
        ),
        "{lost:?}"
    );
}

/// The field report's pulled cable, with the library on the client's side: the cable is pulled
/// for longer than the idle timeout while another player keeps playing in the room and this one
/// keeps typing; once it is plugged back, the library resumes by itself. The game saw every
/// event once, in order, and every input it typed was applied once.
#[tokio::test]
#[cfg_attr(
    not(all(is_root, has_ip, has_nft)),
    ignore = "needs root, ip and nft: a real pulled cable in network namespaces"
)]
async fn after_a_pulled_cable_the_library_resumes_and_nothing_is_lost_or_repeated() {
    let pair = Pair::new("lib-resume");
    need_tools(&["nft"], "nftables: dropping packets");
    let server = pair.start_server(QUICK).await;
    let addr = server.addr.to_string();
    let mut player = NetClient::spawn_with(
        &pair.client_prefix(),
        "session",
        &[
            "--server",
            &addr,
            "--player",
            "traveller",
            "--room",
            "cable",
            "--connect-timeout",
            "1000",
        ],
    );
    player.expect("welcome", PATIENCE).await;
    let mut feeder = NetClient::player(
        &pair.server_prefix(),
        server.addr,
        "feeder",
        &["--room", "cable"],
    );
    feeder.welcome().await;
    feeder.send("every 50 1").await;
    player.send("every 100 1").await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    pair.drop_packets();
    // The library notices by itself (its watchdog: 2 s), then keeps trying to reconnect.
    player
        .expect("disconnected", Duration::from_secs(2) + MARGIN * 2)
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    pair.stop_dropping();
    let welcome = player.expect("welcome", PATIENCE).await;
    assert_eq!(
        welcome.get(2).map(String::as_str),
        Some("resumed"),
        "{welcome:?}"
    );

    tokio::time::sleep(Duration::from_millis(500)).await;
    feeder.send("stop").await;
    let fed: u64 = feeder.expect("sent", PATIENCE).await[0]
        .parse()
        .expect("feeder's last seq");
    player.send("stop").await;
    let typed: u64 = player.expect("sent", PATIENCE).await[0]
        .parse()
        .expect("player's last seq");
    // Everything relayed before the quit.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let lines = player.out.all();
        let mut last = BTreeMap::new();
        for line in &lines {
            let w: Vec<&str> = line.split_whitespace().collect();
            if w.first() == Some(&"relay") {
                last.insert(w[1].to_owned(), w[2].parse::<u64>().unwrap_or(0));
            }
        }
        if last.get("feeder") == Some(&fed) && last.get("traveller") == Some(&typed) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not everything came back: {last:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    player.send("quit").await;
    player.expect("closed", PATIENCE).await;

    let lines = player.out.all();
    let mut seqs = Vec::new();
    let mut relays: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for line in &lines {
        let w: Vec<&str> = line.split_whitespace().collect();
        match w.first() {
            Some(&"relay") => {
                relays
                    .entry(w[1].to_owned())
                    .or_default()
                    .push(w[2].parse().expect("input seq"));
                seqs.push(w[3].parse::<u64>().expect("event seq"));
            }
            Some(&"state") | Some(&"presence") => {
                seqs.push(w.last().and_then(|s| s.parse().ok()).expect("event seq"));
            }
            _ => {}
        }
    }
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "every event once, in order"
    );
    assert_eq!(
        relays.get("feeder"),
        Some(&(1..=fed).collect::<Vec<_>>()),
        "the other player's inputs, each once"
    );
    assert_eq!(
        relays.get("traveller"),
        Some(&(1..=typed).collect::<Vec<_>>()),
        "this player's inputs, typed through the outage, each applied once"
    );
    let resumes = lines.iter().filter(|l| l.ends_with(" resumed")).count();
    assert_eq!(resumes, 1, "{lines:#?}");
}

/// The library over WebSocket with TLS (wss): it plays, takes its session back after the
/// server froze (its own watchdog notices), and quits with a lingering close, the server
/// counting every session as `wss`.
#[tokio::test]
async fn over_wss_the_library_plays_resumes_after_a_freeze_and_quits() {
    let cert = system_tests::tls::TestCert::new("library-wss");
    let config = format!(
        "{QUICK}[server]\nwebsocket_listen = \"127.0.0.1:0\"\n{}",
        cert.config()
    );
    let server = ServerProcess::loopback(&config).await;
    let ws = server.websocket.expect("the WebSocket listener");
    let before = server.scrape().await;
    let mut config = ClientConfig::new(ws.to_string(), Config::new("wes", "library-wss"));
    config.tls = Some(cert.client());
    config.websocket = Some(format!("wss://localhost:{}/", ws.port()));
    config.reconnect_min = Duration::from_millis(50);
    config.reconnect_max = Duration::from_millis(500);
    config.max_attempts = None;
    let mut wes = Client::start(config);
    let (session, _) = welcomed(&mut wes).await;
    wes.input(vec![1]).expect("input");
    until(&mut wes, PATIENCE, "the relay", |n| {
        matches!(n, Notice::Event { .. })
    })
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    server.signal("STOP");
    let (end, _) = until(&mut wes, Duration::from_secs(10), "Disconnected", |n| {
        matches!(n, Notice::Disconnected(_))
    })
    .await;
    server.signal("CONT");
    assert_eq!(
        end,
        Notice::Disconnected(End::ServerSilent(Duration::from_secs(2)))
    );
    let (again, resumed) = welcomed(&mut wes).await;
    assert!(
        resumed,
        "the same session, taken back over a new wss connection"
    );
    assert_eq!(again, session);
    wes.input(vec![2]).expect("input");
    wes.quit();
    let (closed, _) = until(&mut wes, PATIENCE, "Closed", |n| {
        matches!(n, Notice::Closed { .. })
    })
    .await;
    assert_eq!(closed, Notice::Closed { acked_input: 2 });
    // The frozen connection's close (whatever the server made of it) and the quit, which the
    // server counts when its lingering close ends.
    let after = system_tests::poll_until("the quit counted", PATIENCE, || async {
        let after = server.scrape().await;
        let quits = after.closed(CloseReason::ClientQuit) - before.closed(CloseReason::ClientQuit);
        match quits {
            1 => Ok(after),
            n => Err(format!("{n} client_quit closes")),
        }
    })
    .await;
    assert_eq!(after.accepted_since(&before, "wss"), 2.0);
}

/// Over TLS the server turns a connection away by closing it in its handshake (no plaintext
/// `Bye`): the library tells that apart from a server it must not trust. A client refused for
/// the session cap is told the connection closed while opening and tries again until a slot
/// frees; a client that does not trust the certificate is told so at its first attempt and
/// makes no second one.
#[tokio::test]
async fn over_tls_a_full_server_is_retried_and_an_untrusted_one_is_not() {
    let cert = system_tests::tls::TestCert::new("library-tls-refusals");
    let config = format!("{QUICK}[server]\nmax_sessions = 1\n{}", cert.config());
    let server = ServerProcess::loopback(&config).await;
    let tls_client = |player: &str, tls: game_client::Tls| {
        let mut config = ClientConfig::new(server.addr.to_string(), Config::new(player, "tls"));
        config.tls = Some(tls);
        config.reconnect_min = Duration::from_millis(50);
        config.reconnect_max = Duration::from_millis(200);
        config.max_attempts = None;
        Client::start(config)
    };
    let before = server.scrape().await;
    let rejected =
        |scrape: &system_tests::Scrape, reason: &str| scrape.rejected_since(&before, reason);

    let mut first = tls_client("first", cert.client());
    welcomed(&mut first).await;
    let mut second = tls_client("second", cert.client());
    let (turned_away, _) = until(&mut second, PATIENCE, "a refusal", |n| {
        matches!(n, Notice::Disconnected(_))
    })
    .await;
    assert!(
        matches!(
            &turned_away,
            Notice::Disconnected(End::Transport(Transport::ClosedWhileOpening(_)))
        ),
        "{turned_away:?}"
    );
    // It keeps trying (each attempt a rejection) until the first player leaves.
    until(&mut second, PATIENCE, "a third attempt", |n| {
        matches!(n, Notice::Connecting { attempt: 3.. })
    })
    .await;
    assert!(rejected(&server.scrape().await, "server_full") >= 2.0);
    first.quit();
    until(&mut first, PATIENCE, "Closed", |n| {
        matches!(n, Notice::Closed { .. })
    })
    .await;
    let (_, resumed) = welcomed(&mut second).await;
    assert!(!resumed, "a new session once a slot is free");
    second.quit();
    until(&mut second, PATIENCE, "Closed", |n| {
        matches!(n, Notice::Closed { .. })
    })
    .await;

    // The second player's session is over on the server's side too (its lingering close reads
    // the client's FIN after the client saw its own close): the one slot is free again, so
    // the next connection cannot be turned away as full.
    system_tests::poll_until("the slot free", PATIENCE, || async {
        match server.scrape().await.get("gameserver_sessions_active", &[]) {
            0.0 => Ok(()),
            n => Err(format!("{n} sessions active")),
        }
    })
    .await;
    // A client trusting another certificate: one attempt, lost for good, and the server counts
    // the failed handshake.
    let stranger = system_tests::tls::TestCert::new("library-tls-stranger");
    let mut wary = tls_client("wary", stranger.client());
    let (lost, seen) = until(&mut wary, PATIENCE, "the session lost", |n| {
        matches!(n, Notice::Lost(_))
    })
    .await;
    match &lost {
        Notice::Lost(Lost::Ended(End::Opening(text))) => {
            assert!(text.contains("certificate"), "{text}");
        }
        other => panic!("expected an untrusted certificate, got {other:?}"),
    }
    let attempts = seen
        .iter()
        .filter(|n| matches!(n, Notice::Connecting { .. }))
        .count();
    assert_eq!(attempts, 1, "{seen:?}");
    assert!(
        tokio::time::timeout(Duration::from_secs(1), wary.next())
            .await
            .is_err(),
        "no second attempt after an untrusted certificate"
    );
    system_tests::poll_until("the failed handshake counted", PATIENCE, || async {
        match rejected(&server.scrape().await, "tls_handshake") {
            1.0 => Ok(()),
            n => Err(format!("{n} tls_handshake rejections")),
        }
    })
    .await;
}
