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
