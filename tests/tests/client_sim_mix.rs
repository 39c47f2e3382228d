//! client-sim plays every scenario against a real server and its account of what happened must
//! match the server's close counters exactly.

use client_sim::{Mix, Options, ProgressMode};
use system_tests::TestServer;

fn options(server: &TestServer, clients: usize, mix: Mix) -> Options {
    Options {
        server: server.addr.to_string(),
        clients,
        mix,
        metrics_url: Some(server.metrics_url()),
        admin_token: Some(system_tests::TEST_ADMIN_TOKEN.to_owned()),
        progress: ProgressMode::Off,
        crash_exe: Some(env!("CARGO_BIN_EXE_crash-child").into()),
        ..Options::default()
    }
}

/// Checks a run of the full mix (24 instances over the fifteen scenarios): every instance
/// passed and the server's closes match exactly, 28 of them (the probe connection, one close per
/// instance, one more per resume instance: the three resume scenarios close the broken
/// connection and the resumed one). Returns the rendered summary for further messages.
fn assert_full_mix_reconciled(report: &client_sim::Report) -> String {
    let rendered = report.render();
    eprintln!("{rendered}");
    assert_eq!(report.instances, 24, "{rendered}");
    assert_eq!(report.failed_instances, 0, "{rendered}");
    assert!(report.reconciled_ok(), "{rendered}");
    assert!(report.passed(), "{rendered}");
    let reconciliation = report
        .reconciliation
        .as_ref()
        .expect("reconciled against the server");
    assert_eq!(reconciliation.expected_total, 28, "{rendered}");
    assert_eq!(reconciliation.observed_total, 28, "{rendered}");
    rendered
}

/// client-sim's TLS options trusting the test certificate.
fn trusting(cert: &system_tests::tls::TestCert) -> Option<client_sim::TlsOptions> {
    Some(client_sim::TlsOptions {
        ca_file: Some(cert.cert.clone()),
        server_name: Some("localhost".to_owned()),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_reconciles_exactly_with_the_servers_close_counters() {
    let server = TestServer::start(|_| {}).await;
    let report = client_sim::run(options(&server, 24, Mix::all()))
        .await
        .expect("client-sim runs");
    assert_full_mix_reconciled(&report);
    server.stop().await;
}

/// Sessions much shorter than a heartbeat (the compose stack's load plays 1 to 5 s against a 5 s
/// heartbeat) still each measure a round trip: the server pings with its Welcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_shorter_than_a_heartbeat_still_measure_a_round_trip() {
    let server = TestServer::start(|c| {
        c.session.heartbeat_interval = std::time::Duration::from_secs(5);
        c.session.idle_timeout = std::time::Duration::from_secs(15);
    })
    .await;
    let before = server.scrape().await;
    let report = client_sim::run(Options {
        play_time: Some(std::time::Duration::from_secs(1)),
        ..options(&server, 10, "soak=1".parse().expect("mix"))
    })
    .await
    .expect("client-sim runs");
    assert!(report.passed(), "{}", report.render());
    const RTTS: &str = "gameserver_heartbeat_rtt_seconds_count";
    let rtts = server.scrape().await.raw(RTTS);
    let before_rtts = before.raw(RTTS);
    assert!(
        rtts - before_rtts >= 10.0,
        "{} round trips for 10 one-second sessions",
        rtts - before_rtts
    );
    server.stop().await;
}

/// Two runs against one server at once: each reads back only its own players' closes from the
/// server's `/closes` record, so each reconciles exactly although the server's counters hold
/// both runs' closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_at_once_each_reconcile_exactly_with_their_own_closes() {
    let server = TestServer::start(|_| {}).await;
    let before = server.scrape().await;
    let mix: Mix = "graceful=3,close-no-bye=2,abort=2,exit-unread=2,crash=1,flood=1,\
                    kicked-then-recv=1,reset-and-return=1"
        .parse()
        .expect("mix");
    let (first, second) = tokio::join!(
        client_sim::run(options(&server, 13, mix.clone())),
        client_sim::run(options(&server, 13, mix)),
    );
    for report in [first, second] {
        let report = report.expect("client-sim runs");
        let rendered = report.render();
        eprintln!("{rendered}");
        assert!(report.passed(), "{rendered}");
        let reconciliation = report.reconciliation.as_ref().expect("reconciled");
        assert_eq!(
            reconciliation.method,
            client_sim::reconcile::METHOD_CLOSES,
            "{rendered}"
        );
        // The probe, 13 instances, one more for the resume instance: this run's closes only.
        assert_eq!(reconciliation.expected_total, 15, "{rendered}");
        assert_eq!(reconciliation.observed_total, 15, "{rendered}");
    }
    // The server's own counter holds both runs: compared by counter deltas, each run would
    // have seen the other's closes as extra.
    let deltas = server.scrape().await.close_deltas(&before);
    assert_eq!(deltas.values().sum::<u64>(), 30, "{deltas:?}");
    server.stop().await;
}

/// A drain in the middle of a run is an outcome of its own: the sessions it ends are counted,
/// reconciled as `server_shutdown` (read while the server drained), and do not fail the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_during_a_run_is_counted_and_reconciled_not_failed() {
    const CLIENTS: usize = 6;
    let server = TestServer::start(|_| {}).await;
    let run = tokio::spawn(client_sim::run(Options {
        play_time: Some(std::time::Duration::from_secs(60)),
        duration: Some(std::time::Duration::from_secs(60)),
        ..options(&server, CLIENTS, "soak=1".parse().expect("mix"))
    }));
    // Every player in its game, then the drain.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let active = server.scrape().await.raw("gameserver_sessions_active");
        if active >= CLIENTS as f64 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{active} sessions after 20 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    server.shutdown.drain();
    let report = tokio::time::timeout(std::time::Duration::from_secs(60), run)
        .await
        .expect("the run ends soon after the drain")
        .expect("run task")
        .expect("client-sim runs");
    let rendered = report.render();
    eprintln!("{rendered}");
    assert_eq!(report.drained, CLIENTS as u64, "{rendered}");
    assert_eq!(
        report.instances, CLIENTS as u64,
        "no instance after the drain: {rendered}"
    );
    assert!(report.passed(), "{rendered}");
    let reconciliation = report.reconciliation.as_ref().expect("reconciled");
    let shutdown_row = reconciliation
        .rows
        .iter()
        .find(|r| r.reason == "server_shutdown")
        .unwrap_or_else(|| panic!("no server_shutdown row: {rendered}"));
    assert_eq!(shutdown_row.observed, CLIENTS as i64, "{rendered}");
    assert!(rendered.contains("drained: 6 instance(s)"), "{rendered}");
}

/// The standard mix over TLS: every scenario, each way of ending a connection included (a reset,
/// a FIN with unread data, a crash of the child process), ends as the server records it when
/// the bytes travel inside TLS, and the run reconciles exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_reconciles_exactly_over_tls() {
    let cert = system_tests::tls::TestCert::new("sim-tls");
    let (cert_file, key_file) = (cert.cert.clone(), cert.key.clone());
    let server = TestServer::start(move |c| {
        c.tls.cert_file = cert_file.display().to_string();
        c.tls.key_file = key_file.display().to_string();
    })
    .await;
    let before = server.scrape().await;
    let report = client_sim::run(Options {
        tls: trusting(&cert),
        ..options(&server, 24, Mix::all())
    })
    .await
    .expect("client-sim runs over TLS");
    let rendered = assert_full_mix_reconciled(&report);
    // Every session came over TLS; none in the clear, no failed handshake.
    let after = server.scrape().await;
    let accepted = |transport: &str| after.accepted_since(&before, transport);
    assert_eq!(accepted("tls"), 28.0, "{rendered}");
    assert_eq!(accepted("tcp"), 0.0, "{rendered}");
    assert_eq!(
        after.get(
            "gameserver_connections_rejected_total",
            &[("reason", "tls_handshake")]
        ),
        0.0
    );
    server.stop().await;
}

/// The same mix over WebSocket with TLS (wss), against the server binary's WebSocket listener:
/// a close frame, a reset and a crash under WebSocket and TLS end as the server records them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_reconciles_exactly_over_websocket_with_tls() {
    use system_tests::process::ServerProcess;
    let cert = system_tests::tls::TestCert::new("sim-wss");
    let config = format!(
        "[server]\nwebsocket_listen = \"127.0.0.1:0\"\n\
         [session]\nhandshake_timeout = \"2s\"\nheartbeat_interval = \"500ms\"\n\
         idle_timeout = \"2s\"\nwrite_timeout = \"1s\"\nlinger_timeout = \"2s\"\n{}",
        cert.config()
    );
    let server = ServerProcess::loopback(&config).await;
    let ws = server.websocket.expect("the WebSocket listener");
    let before = server.scrape().await;
    let report = client_sim::run(Options {
        server: ws.to_string(),
        websocket: true,
        tls: trusting(&cert),
        clients: 24,
        mix: Mix::all(),
        metrics_url: Some(format!("http://{}/metrics", server.admin)),
        admin_token: Some(system_tests::TEST_ADMIN_TOKEN.to_owned()),
        progress: ProgressMode::Off,
        crash_exe: Some(env!("CARGO_BIN_EXE_crash-child").into()),
        ..Options::default()
    })
    .await
    .expect("client-sim runs over wss");
    let rendered = assert_full_mix_reconciled(&report);
    let after = server.scrape().await;
    let accepted = |transport: &str| after.accepted_since(&before, transport);
    assert_eq!(accepted("wss"), 28.0, "{rendered}");
}
