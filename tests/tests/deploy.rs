//! The deployment files checked against the real server: promtool on a live /metrics, the
//! compose file, the Prometheus config and alert rules with their unit tests, the dashboard's
//! queries against what the server exports, and a real Prometheus scraping a real server.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use game_engine::CloseReason;
use system_tests::{RawClient, TestServer, has_tool, require};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gs-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

#[tokio::test]
async fn promtool_accepts_the_live_metrics() {
    if !require(
        has_tool("promtool"),
        "promtool is not installed (apt-get install prometheus)",
    ) {
        return;
    }
    let server = TestServer::start(|_| {}).await;
    let (_client, _) = RawClient::join(server.addr, "someone").await;
    let text = server.scrape().await.text;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("feed promtool");
    let output = child.wait_with_output().expect("promtool");
    assert!(
        output.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    server.stop().await;
}

#[tokio::test]
async fn deployment_files_pass_their_checks_against_the_live_metrics() {
    let tools = ["docker-compose", "promtool", "python3"];
    if !require(
        tools.iter().all(|t| has_tool(t)),
        "docker-compose, promtool or python3 missing (apt-get install docker-compose prometheus)",
    ) {
        return;
    }
    let server = TestServer::start(|_| {}).await;
    let dump = temp_dir("deploy").join("metrics.txt");
    std::fs::write(&dump, server.scrape().await.text).expect("write dump");
    let output = Command::new("bash")
        .arg(repo().join("deploy/check.sh"))
        .arg(&dump)
        .output()
        .expect("run deploy/check.sh");
    assert!(
        output.status.success(),
        "deploy/check.sh failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    server.stop().await;
}

/// A real Prometheus scrapes a real server while client-sim plays a known mix; its HTTP API
/// must report exactly the closes the run produced, by reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_sees_exactly_the_closes_that_happened() {
    if !require(
        has_tool("prometheus"),
        "prometheus is not installed (apt-get install prometheus)",
    ) {
        return;
    }
    let server = TestServer::start(|_| {}).await;
    let dir = temp_dir("prometheus");
    let port = free_port();
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: game-server\n    static_configs:\n      - targets: ['{}']\n",
            server.admin
        ),
    )
    .expect("write prometheus.yml");
    let mut prometheus = Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start prometheus");
    let _guard = KillOnDrop(&mut prometheus);

    // Wait until Prometheus has scraped the server once, so that the run's closes show up as
    // growth from a known zero.
    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/api/v1/query");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while query(&http, &url).await.len() != CloseReason::ALL.len() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "Prometheus never scraped the server"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A known mix played by client-sim, which reconciles it against /metrics itself.
    let report = client_sim::run(client_sim::Options {
        server: server.addr.to_string(),
        clients: 16,
        mix: client_sim::Mix::quick(),
        metrics_url: Some(server.metrics_url()),
        admin_token: Some(system_tests::TEST_ADMIN_TOKEN.to_owned()),
        progress: client_sim::ProgressMode::Off,
        crash_exe: Some(env!("CARGO_BIN_EXE_crash-child").into()),
        ..client_sim::Options::default()
    })
    .await
    .expect("client-sim runs");
    assert!(report.passed(), "{}", report.render());
    let produced: HashMap<String, f64> = report
        .reconciliation
        .as_ref()
        .expect("reconciled")
        .rows
        .iter()
        .map(|row| (row.reason.clone(), row.observed as f64))
        .collect();
    let expected: Vec<(CloseReason, f64)> = CloseReason::ALL
        .iter()
        .map(|r| (*r, produced.get(r.as_str()).copied().unwrap_or(0.0)))
        .collect();
    assert!(
        expected.iter().map(|(_, n)| n).sum::<f64>() >= 17.0,
        "{}",
        report.render()
    );

    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let observed = loop {
        let observed = query(&http, &url).await;
        let matches = CloseReason::ALL.iter().all(|r| {
            let want = expected
                .iter()
                .find(|(e, _)| e == r)
                .map_or(0.0, |(_, n)| *n);
            observed.get(r.as_str()).copied() == Some(want)
        });
        if matches {
            break observed;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "Prometheus reports {observed:?}, expected {expected:?} and zero elsewhere"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(
        observed.len(),
        CloseReason::ALL.len(),
        "every reason is exported from the start"
    );
    server.stop().await;
}

async fn query(http: &reqwest::Client, url: &str) -> HashMap<String, f64> {
    let Ok(response) = http
        .get(url)
        .query(&[("query", "gameserver_sessions_closed_total")])
        .send()
        .await
    else {
        return Default::default();
    };
    let Ok(text) = response.text().await else {
        return Default::default();
    };
    let Ok(body) = serde_json::from_str::<serde_json::Value>(&text) else {
        return Default::default();
    };
    body["data"]["result"]
        .as_array()
        .map(|results| {
            results
                .iter()
                .filter_map(|r| {
                    let reason = r["metric"]["reason"].as_str()?.to_owned();
                    let value: f64 = r["value"][1].as_str()?.parse().ok()?;
                    Some((reason, value))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

struct KillOnDrop<'a>(&'a mut std::process::Child);

impl Drop for KillOnDrop<'_> {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
