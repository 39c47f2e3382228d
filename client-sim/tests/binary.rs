//! The client-sim binary itself: its one-line errors and the crash scenario's child process.

use std::process::{Command, Stdio};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use protocol::{ClientMessage, ResumeToken, ServerCodec, ServerMessage, Welcome};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_util::codec::Framed;

const EXE: &str = env!("CARGO_BIN_EXE_client-sim");

#[test]
fn a_server_that_is_not_running_is_one_line_and_a_non_zero_exit() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let out = Command::new(EXE)
        .args(["--server", &addr.to_string(), "--quiet"])
        .output()
        .expect("run client-sim");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("nothing is listening"), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn kick_scenarios_without_a_metrics_url_are_refused_before_connecting() {
    let out = Command::new(EXE)
        .args([
            "--server",
            "127.0.0.1:9",
            "--mix",
            "graceful=1,kicked-then-recv=1",
        ])
        .output()
        .expect("run client-sim");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--metrics-url"));
}

/// The crash child handshakes with whatever answers, reports its session, and keeps writing
/// frames split across writes: what the server sees when it is killed is a stream cut inside a
/// frame (or a reset), never a clean end between frames.
#[tokio::test]
async fn the_crash_child_reports_its_session_and_stops_inside_a_frame_when_killed() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.expect("accept");
        let mut framed = Framed::new(socket, ServerCodec::default());
        let Some(Ok(ClientMessage::Hello(hello))) = framed.next().await else {
            panic!("expected Hello");
        };
        let welcome = Welcome {
            session_id: 77,
            heartbeat_interval_ms: 1000,
            idle_timeout_ms: 3000,
            resume_token: ResumeToken::NONE,
            resumed: false,
            last_input_seq: 0,
            room: hello.room,
        };
        framed
            .send(ServerMessage::Welcome(welcome))
            .await
            .expect("send Welcome");
        // Read until the child dies; count whole inputs and see how the stream ends.
        let mut inputs = 0u64;
        loop {
            match framed.next().await {
                Some(Ok(ClientMessage::Input { seq, .. })) => {
                    inputs += 1;
                    assert_eq!(seq, inputs);
                }
                Some(Ok(_)) => {}
                Some(Err(error)) => return (inputs, Some(error.to_string())),
                None => return (inputs, None),
            }
        }
    });
    let mut child = tokio::process::Command::new(EXE)
        .args([
            "__crash-child",
            "--server",
            &addr.to_string(),
            "--player",
            "p1",
            "--room",
            "r1",
        ])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("stdout");
    let line = tokio::time::timeout(
        Duration::from_secs(10),
        BufReader::new(stdout).lines().next_line(),
    )
    .await
    .expect("child reports in time")
    .expect("read")
    .expect("a line");
    assert_eq!(line, "ready 77");
    tokio::time::sleep(Duration::from_millis(300)).await;
    child.kill().await.expect("kill");
    let (inputs, end) = tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("server sees the end")
        .expect("server task");
    assert!(inputs >= 3, "the child sent {inputs} inputs");
    let end = end.expect("a killed child's stream must not end cleanly between frames");
    assert!(
        end.contains("inside a frame") || end.contains("reset"),
        "unexpected end: {end}"
    );
}

/// A game server in this process, on loopback ports of its own.
async fn start_server() -> (std::net::SocketAddr, String, game_engine::Shutdown) {
    let mut config = game_engine::testkit::test_config();
    config.server.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let listeners = game_engine::Listeners::bind(&config)
        .await
        .expect("bind the test ports");
    let addr = listeners.game.local_addr().expect("game address");
    let metrics = format!(
        "http://{}/metrics",
        listeners.admin.local_addr().expect("admin address")
    );
    let shutdown = game_engine::Shutdown::new();
    let server =
        game_engine::Server::new(rooms::Rooms::default(), config).shutdown(shutdown.clone());
    tokio::spawn(server.run(listeners));
    (addr, metrics, shutdown)
}

/// Runs the binary against the server with `--json -` and `extra`; returns the exit status, the
/// parsed report and standard error.
async fn run_json(
    addr: std::net::SocketAddr,
    metrics: &str,
    extra: &[&str],
) -> (Option<i32>, serde_json::Value, String) {
    let out = tokio::process::Command::new(EXE)
        .args([
            "--server",
            &addr.to_string(),
            "--metrics-url",
            metrics,
            "--mix",
            "graceful=2,close-no-bye=1",
            "--clients",
            "3",
            "--interval",
            "200ms",
            "--json",
            "-",
        ])
        .args(extra)
        .output()
        .await
        .expect("run client-sim");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("standard output is not the JSON report ({e}): {stderr}"));
    (out.status.code(), report, stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_threshold_that_cannot_hold_fails_the_run_with_its_own_status_and_names_itself() {
    let (addr, metrics, shutdown) = start_server().await;
    let (status, report, stderr) = run_json(
        addr,
        &metrics,
        &[
            "--threshold",
            "rtt.p95<0.001ms",
            "--threshold",
            "connect.fail_rate<1%",
        ],
    )
    .await;
    assert_eq!(status, Some(3), "{stderr}");
    assert_eq!(report["verdict"], "threshold", "{stderr}");
    let thresholds = report["thresholds"].as_array().expect("thresholds");
    assert_eq!(thresholds.len(), 2);
    assert_eq!(thresholds[0]["threshold"], "rtt.p95<0.001ms");
    assert_eq!(thresholds[0]["passed"], false);
    assert_eq!(thresholds[1]["passed"], true);
    let failed_line = stderr
        .lines()
        .find(|l| l.contains("rtt.p95<0.001ms"))
        .unwrap_or_else(|| panic!("no line for the threshold: {stderr}"));
    assert!(failed_line.contains("FAILED"), "{failed_line}");
    // Everything else about the run passed: only the threshold decided the status.
    assert_eq!(report["failed_instances"], 0, "{stderr}");
    assert_eq!(report["reconciliation"]["ok"], true, "{stderr}");

    let (status, report, stderr) = run_json(addr, &metrics, &["--threshold", "rtt.p95<60s"]).await;
    assert_eq!(status, Some(0), "{stderr}");
    assert_eq!(report["verdict"], "pass");
    shutdown.drain();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_json_report_carries_its_schema_version_start_time_and_a_time_series() {
    let (addr, metrics, shutdown) = start_server().await;
    let (status, report, stderr) = run_json(addr, &metrics, &["--inputs", "30"]).await;
    assert_eq!(status, Some(0), "{stderr}");
    assert_eq!(report["schema_version"], 2);
    let started = report["started_at"].as_str().expect("started_at");
    assert!(
        humantime::parse_rfc3339(started).is_ok(),
        "started_at {started:?} is not RFC 3339"
    );
    assert_eq!(
        report["reconciliation"]["method"], "closes by player prefix",
        "{stderr}"
    );
    // 30 inputs at 20 Hz take 1.5 s: several 200 ms samples, counters that never go down, and
    // a last sample that has every instance finished.
    let series = report["series"].as_array().expect("series");
    assert!(series.len() >= 5, "{} samples", series.len());
    let finished: Vec<u64> = series
        .iter()
        .map(|s| s["instances_finished"].as_u64().expect("a count"))
        .collect();
    assert!(finished.windows(2).all(|w| w[0] <= w[1]), "{finished:?}");
    assert_eq!(finished.last(), Some(&3));
    let rtts: u64 = series
        .iter()
        .map(|s| s["rtt_ms"]["count"].as_u64().expect("a count"))
        .sum();
    let total = report["latency"]["rtt_ms"]["count"]
        .as_u64()
        .expect("a count");
    // The run's figure also holds the probe connection's round trip (at most one), measured
    // before the series began.
    assert!(
        rtts >= 3 && total - rtts <= 1,
        "the intervals hold {rtts} round trips, the run {total}"
    );
    shutdown.drain();
}
