//! Shutdown and the server's own troubles, attacked: SIGTERM against half-open connections, a
//! second signal, a closed or stuck log pipe, and a stopped server that must charge its stall
//! to no client.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use game_engine::CloseReason;
use system_tests::attack::{chatty, half_sent_admin_request, short_sessions};
use system_tests::good::GoodPlayer;
use system_tests::process::{Reading, ServerProcess};
use system_tests::{Metrics, PATIENCE, RawClient};
use tokio::sync::Mutex;
use tokio::time::Instant;

/// The heavy attacks take turns.
static HEAVY: Mutex<()> = Mutex::const_new(());

#[tokio::test]
async fn sigterm_exits_within_the_drain_timeout_whatever_connections_do() {
    let _turn = HEAVY.lock().await;
    let mut server = ServerProcess::loopback(
        "[shutdown]\ndrain_timeout = \"2s\"\n[admin]\nheader_read_timeout = \"30s\"\n",
    )
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
    let mut server = ServerProcess::loopback(
        "[shutdown]\ndrain_timeout = \"60s\"\n[session]\nlinger_timeout = \"60s\"\n",
    )
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
async fn a_closed_or_stuck_log_pipe_neither_stops_the_bookkeeping_nor_the_shutdown() {
    for (reading, name) in [(Reading::Closed, "closed"), (Reading::Paused, "full")] {
        let mut server = ServerProcess::loopback("[shutdown]\ndrain_timeout = \"3s\"\n").await;
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
async fn a_stopped_server_charges_its_stall_to_nobody() {
    let _turn = HEAVY.lock().await;
    let server =
        ServerProcess::loopback("[session]\nheartbeat_interval = \"1s\"\nidle_timeout = \"3s\"\n")
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
