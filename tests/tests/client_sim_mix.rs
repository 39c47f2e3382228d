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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_reconciles_exactly_with_the_servers_close_counters() {
    let server = TestServer::start(|_| {}).await;
    // 24 instances over the fifteen scenarios; the three resume scenarios close two connections
    // each (the broken one and the resumed one).
    let report = client_sim::run(options(&server, 24, Mix::all()))
        .await
        .expect("client-sim runs");
    let rendered = report.render();
    eprintln!("{rendered}");
    assert_eq!(report.instances, 24, "{rendered}");
    assert_eq!(report.failed_instances, 0, "{rendered}");
    assert!(report.reconciled_ok(), "{rendered}");
    assert!(report.passed(), "{rendered}");
    let reconciliation = report
        .reconciliation
        .as_ref()
        .expect("reconciled against /metrics");
    // The probe connection, one close per instance, one more per resume instance.
    assert_eq!(reconciliation.expected_total, 28, "{rendered}");
    assert_eq!(reconciliation.observed_total, 28, "{rendered}");
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
    let rtts = server
        .scrape()
        .await
        .text
        .lines()
        .find_map(|l| l.strip_prefix("gameserver_heartbeat_rtt_seconds_count "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    let before_rtts = before
        .text
        .lines()
        .find_map(|l| l.strip_prefix("gameserver_heartbeat_rtt_seconds_count "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(
        rtts - before_rtts >= 10.0,
        "{} round trips for 10 one-second sessions",
        rtts - before_rtts
    );
    server.stop().await;
}
