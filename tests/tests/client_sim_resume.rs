//! client-sim's resume scenarios against a real server: every broken connection comes back,
//! nothing is lost or repeated, the server counts two closes per instance, and its
//! `gameserver_sessions_resumed_total` grows by one per resume.

use std::time::Duration;

use client_sim::{Mix, Options, ProgressMode, Report};
use system_tests::{Scrape, TestServer};

fn options(server: &TestServer, clients: usize, mix: &str) -> Options {
    Options {
        server: server.addr.to_string(),
        clients,
        mix: mix.parse::<Mix>().expect("mix"),
        metrics_url: Some(server.metrics_url()),
        admin_token: Some(system_tests::TEST_ADMIN_TOKEN.to_owned()),
        progress: ProgressMode::Off,
        crash_exe: Some(env!("CARGO_BIN_EXE_crash-child").into()),
        ..Options::default()
    }
}

fn resumed_total(scrape: &Scrape) -> u64 {
    scrape.get("gameserver_sessions_resumed_total", &[]) as u64
}

/// Runs the mix and checks everything a resume run promises: all instances passed, the
/// server's close counts match, `resumes` resumes succeeded with nothing lost or repeated, and
/// the server counted exactly those resumes. Returns the report.
async fn run_and_check(server: &TestServer, clients: usize, mix: &str, resumes: u64) -> Report {
    let before = server.scrape().await;
    let report = client_sim::run(options(server, clients, mix))
        .await
        .expect("client-sim runs");
    let rendered = report.render();
    eprintln!("{rendered}");
    assert_eq!(report.instances, clients as u64, "{rendered}");
    assert_eq!(report.failed_instances, 0, "{rendered}");
    assert!(report.reconciled_ok(), "{rendered}");
    assert!(report.passed(), "{rendered}");
    let r = report.resume;
    assert_eq!((r.attempted, r.succeeded), (resumes, resumes), "{rendered}");
    assert_eq!(r.events_lost, 0, "{rendered}");
    assert_eq!(r.events_duplicated, 0, "{rendered}");
    assert_eq!(r.inputs_applied_twice, 0, "{rendered}");
    assert_eq!(r.inputs_lost, 0, "{rendered}");
    assert!(rendered.contains("nothing lost"), "{rendered}");
    let after = server.scrape().await;
    assert_eq!(
        resumed_total(&after) - resumed_total(&before),
        resumes,
        "the server counted one resume per instance"
    );
    report
}

/// After a run of resume scenarios alone, no session is left parked: every one came back.
async fn assert_none_parked(server: &TestServer) {
    let parked = server.scrape().await.get("gameserver_sessions_parked", &[]);
    assert_eq!(parked, 0.0, "sessions left parked");
}

/// The close counts a report reconciled, by reason.
fn observed(report: &Report, reason: &str) -> i64 {
    report
        .reconciliation
        .as_ref()
        .expect("reconciled")
        .rows
        .iter()
        .find(|row| row.reason == reason)
        .map_or(0, |row| row.observed)
}

/// Runs `clients` instances of one resume scenario on a fresh server ([`run_and_check`], one
/// resume each), then checks the closes reconciled by reason and that none is left parked.
async fn check_scenario(clients: usize, scenario: &str, closes: &[(&str, i64)]) -> Report {
    let server = TestServer::start(|_| {}).await;
    let report = run_and_check(&server, clients, scenario, clients as u64).await;
    for &(reason, count) in closes {
        assert_eq!(observed(&report, reason), count, "{reason} closes");
    }
    assert_none_parked(&server).await;
    server.stop().await;
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_and_return_resumes_every_instance_with_nothing_lost() {
    // Two closes per instance (the reset connection, the resumed one's quit) and the probe.
    check_scenario(
        6,
        "reset-and-return",
        &[("peer_reset", 6), ("client_quit", 7)],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vanish_and_return_comes_back_after_the_idle_timeout_with_nothing_lost() {
    let closes = [("idle_timeout", 4), ("client_quit", 5)];
    let report = check_scenario(4, "vanish-and-return", &closes).await;
    // The silent connections waited out the server's 2 s idle timeout.
    assert!(report.elapsed_secs >= 2.0, "{}", report.render());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roam_takes_over_a_connection_the_server_still_thinks_alive() {
    check_scenario(4, "roam", &[("replaced", 4), ("client_quit", 5)]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_mixed_run_with_resumes_reconciles_exactly() {
    let server = TestServer::start(|_| {}).await;
    let mix = "reset-and-return=3,vanish-and-return=2,roam=2,graceful=2,soak=2,abort=1,crash=1";
    let report = run_and_check(&server, 13, mix, 7).await;
    let rec = report.reconciliation.as_ref().expect("reconciled");
    // 13 instances, 7 of them with two connections, and the probe.
    assert_eq!(rec.expected_total, 13 + 7 + 1, "{}", report.render());
    assert_eq!(rec.observed_total, 13 + 7 + 1, "{}", report.render());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_resume_off_each_instance_fails_with_one_clear_line_and_quits() {
    let server = TestServer::start(|c| c.session.resume_grace = Duration::ZERO).await;
    let report = tokio::time::timeout(
        Duration::from_secs(30),
        client_sim::run(options(
            &server,
            3,
            "reset-and-return=1,vanish-and-return=1,roam=1",
        )),
    )
    .await
    .expect("does not hang")
    .expect("client-sim runs");
    let rendered = report.render();
    eprintln!("{rendered}");
    assert_eq!(report.failed_instances, 3, "{rendered}");
    assert!(!report.passed(), "{rendered}");
    assert_eq!(report.resume.resume_off, 3, "{rendered}");
    assert_eq!(report.resume.attempted, 0, "{rendered}");
    assert_eq!(report.failures.len(), 1, "one distinct line: {rendered}");
    let line = &report.failures[0];
    assert!(
        line.contains("the server has resume off") && line.contains("(3 times)"),
        "{line}"
    );
    assert!(!line.contains('\n'), "{line}");
    // Each quit gracefully, so the server's account still matches.
    assert!(report.reconciled_ok(), "{rendered}");
    assert_eq!(observed(&report, "client_quit"), 4);
    server.stop().await;
}
