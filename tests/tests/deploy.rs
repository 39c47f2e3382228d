//! The deployment files checked against the real server: promtool on a live /metrics, the
//! compose file, the Prometheus config and alert rules with their unit tests, the dashboard's
//! queries against what the server exports, and a real Prometheus scraping a real server.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use game_engine::CloseReason;
use system_tests::process::{Ran, run};
use system_tests::{RawClient, TestServer, need_tools};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gs-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

#[tokio::test]
#[cfg_attr(
    not(has_promtool),
    ignore = "needs promtool (apt-get install prometheus)"
)]
async fn promtool_accepts_the_live_metrics() {
    need_tools(&["promtool"], "apt-get install prometheus");
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
#[cfg_attr(
    not(all(has_docker_compose, has_promtool, has_python3)),
    ignore = "needs docker-compose, promtool and python3"
)]
async fn deployment_files_pass_their_checks() {
    let tools = ["docker-compose", "promtool", "python3"];
    need_tools(&tools, "apt-get install docker-compose prometheus");
    run(Command::new("bash").arg(repo().join("deploy/check.sh"))).expect_success();
}

/// The compose file as docker-compose resolves it (anchors merged, variables substituted).
fn resolved_compose(env: &[(&str, &str)]) -> Ran {
    let mut command = Command::new("docker-compose");
    command
        .current_dir(repo())
        .args(["-f", "docker-compose.yml", "config"])
        .env_remove("GRAFANA_ADMIN_PASSWORD");
    for (key, value) in env {
        command.env(key, value);
    }
    run(&mut command)
}

#[test]
#[cfg_attr(
    not(has_docker_compose),
    ignore = "needs docker-compose (apt-get install docker-compose)"
)]
fn every_compose_service_is_limited_rotated_and_unprivileged() {
    need_tools(&["docker-compose"], "apt-get install docker-compose");
    let resolved = resolved_compose(&[("GRAFANA_ADMIN_PASSWORD", "a-password")]).expect_success();
    let compose: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&resolved).expect("compose config is YAML");
    let services = compose["services"].as_mapping().expect("services");
    assert!(services.len() >= 4, "{services:?}");
    let mut problems = Vec::new();
    for (name, service) in services {
        let name = name.as_str().expect("service name");
        let has = |key: &str| !service[key].is_null();
        let lists = |key: &str, item: &str| {
            service[key]
                .as_sequence()
                .is_some_and(|items| items.iter().any(|i| i.as_str() == Some(item)))
        };
        for key in ["mem_limit", "cpus"] {
            if !has(key) {
                problems.push(format!("{name}: no {key}"));
            }
        }
        if service["logging"]["options"]["max-size"].is_null() {
            problems.push(format!("{name}: logs are not rotated"));
        }
        if !lists("security_opt", "no-new-privileges:true") {
            problems.push(format!("{name}: no no-new-privileges"));
        }
        if !lists("cap_drop", "ALL") {
            problems.push(format!("{name}: capabilities not dropped"));
        }
        // Everything but the load generator is a dependency someone waits on.
        if name != "client-sim" && !has("healthcheck") {
            problems.push(format!("{name}: no healthcheck"));
        }
    }
    if services["client-sim"]["init"].as_bool() != Some(true) {
        problems.push("client-sim: no init to reap its crash children".to_owned());
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
#[cfg_attr(
    not(has_docker_compose),
    ignore = "needs docker-compose (apt-get install docker-compose)"
)]
fn grafana_has_no_default_admin_password() {
    need_tools(&["docker-compose"], "apt-get install docker-compose");
    let ran = resolved_compose(&[]);
    assert!(!ran.status.success(), "compose started without a password");
    assert!(
        ran.stderr.contains("GRAFANA_ADMIN_PASSWORD"),
        "{}",
        ran.stderr
    );
}

#[test]
fn the_dockerfile_builds_with_the_classic_builder() {
    // BuildKit-only syntax: a `# syntax=` parser directive, RUN flags (--mount, --network,
    // --security), heredocs.
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).expect("Dockerfile");
    let mut problems = Vec::new();
    for (number, line) in dockerfile.lines().enumerate() {
        let line = line.trim_start();
        let lower = line.to_ascii_lowercase();
        if lower.starts_with("# syntax=") || lower.starts_with("#syntax=") {
            problems.push(format!("line {}: {line}", number + 1));
        }
        if lower.starts_with("run --") || line.contains("<<EOF") || line.contains("<<-EOF") {
            problems.push(format!("line {}: {line}", number + 1));
        }
    }
    assert!(problems.is_empty(), "BuildKit-only syntax: {problems:#?}");
}

/// One rules file, as far as the checks need it.
#[derive(Debug, serde::Deserialize)]
struct RuleFile {
    groups: Vec<RuleGroup>,
}

#[derive(Debug, serde::Deserialize)]
struct RuleGroup {
    rules: Vec<Rule>,
}

#[derive(Debug, serde::Deserialize)]
struct Rule {
    alert: Option<String>,
    record: Option<String>,
    expr: String,
}

/// Every PromQL expression of the deployment, named by where it is: alert and recording rules,
/// and every dashboard query (Grafana's variables replaced by values of their kind).
fn deployment_queries() -> (Vec<(String, String)>, Vec<String>) {
    let rules: RuleFile = serde_yaml_ng::from_str(
        &std::fs::read_to_string(repo().join("config/alerts.yml")).expect("alerts.yml"),
    )
    .expect("alerts.yml is YAML of rule groups");
    let mut queries = Vec::new();
    let mut recorded = Vec::new();
    for rule in rules.groups.iter().flat_map(|g| &g.rules) {
        let name = rule
            .alert
            .clone()
            .or(rule.record.clone())
            .unwrap_or_default();
        if let Some(record) = &rule.record {
            recorded.push(record.clone());
        }
        queries.push((format!("config/alerts.yml: {name}"), rule.expr.clone()));
    }
    let dashboards =
        std::fs::read_dir(repo().join("config/grafana/dashboards")).expect("dashboards");
    for entry in dashboards {
        let path = entry.expect("entry").path();
        let dashboard: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("dashboard"))
                .expect("dashboard JSON");
        for panel in dashboard["panels"].as_array().into_iter().flatten() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                let expr = target["expr"].as_str().unwrap_or_default();
                queries.push((
                    format!("{}: panel {}", path.display(), panel["title"]),
                    expr.replace("$__rate_interval", "5m")
                        .replace("$__interval", "15s")
                        .replace("$instance", ".*"),
                ));
            }
        }
    }
    (queries, recorded)
}

/// The metric names a PromQL expression selects.
fn metric_names(expr: &promql_parser::parser::Expr, out: &mut Vec<String>) {
    use promql_parser::parser::Expr;
    match expr {
        Expr::VectorSelector(vs) => out.extend(vs.name.clone()),
        Expr::MatrixSelector(ms) => out.extend(ms.vs.name.clone()),
        Expr::Aggregate(a) => {
            metric_names(&a.expr, out);
            if let Some(param) = &a.param {
                metric_names(param, out);
            }
        }
        Expr::Unary(u) => metric_names(&u.expr, out),
        Expr::Binary(b) => {
            metric_names(&b.lhs, out);
            metric_names(&b.rhs, out);
        }
        Expr::Paren(p) => metric_names(&p.expr, out),
        Expr::Subquery(s) => metric_names(&s.expr, out),
        Expr::Call(c) => c.args.args.iter().for_each(|a| metric_names(a, out)),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
}

/// Every name an exposition text exports, histograms' series included.
fn exported(text: &str) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if let (Some("#"), Some("TYPE"), Some(name), Some(kind)) =
            (words.next(), words.next(), words.next(), words.next())
        {
            names.insert(name.to_owned());
            if kind == "histogram" || kind == "summary" {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
        }
    }
    names
}

/// The problems: queries that do not parse, and metrics no one exports.
fn query_problems(
    queries: &[(String, String)],
    known: &std::collections::BTreeSet<String>,
) -> Vec<String> {
    let mut problems = Vec::new();
    for (where_, expr) in queries {
        match promql_parser::parser::parse(expr) {
            Ok(ast) => {
                let mut names = Vec::new();
                metric_names(&ast, &mut names);
                for name in names.into_iter().filter(|n| !known.contains(n)) {
                    problems.push(format!("{where_}: {name} is not exported"));
                }
            }
            Err(error) => problems.push(format!("{where_}: does not parse: {error}")),
        }
    }
    problems
}

/// Every metric the alert rules and the dashboard query is one the server exports (or one the
/// rules record, or Prometheus's own), checked with a real PromQL parser: a misspelt metric in a
/// panel or an alert fails here.
#[tokio::test]
async fn every_query_names_metrics_the_server_exports() {
    let server = TestServer::start(|_| {}).await;
    let (client, _) = RawClient::join(server.addr, "someone").await;
    let mut known = exported(&server.scrape().await.text);
    drop(client);
    server.stop().await;
    let (queries, recorded) = deployment_queries();
    known.extend(recorded);
    known.extend(["up".to_owned(), "ALERTS".to_owned()]);
    assert!(queries.len() > 40, "only {} queries found", queries.len());
    let problems = query_problems(&queries, &known);
    assert!(problems.is_empty(), "{problems:#?}");
    // The check itself: one misspelt metric in one panel is caught.
    let mut broken = queries.clone();
    let index = broken
        .iter()
        .position(|(where_, expr)| where_.contains("panel") && expr.contains("gameserver_"))
        .expect("a dashboard query");
    broken[index].1 = broken[index].1.replacen("gameserver_", "gameserver_x", 1);
    let found = query_problems(&broken, &known);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(found[0].contains("gameserver_x"), "{found:#?}");
}

/// A real Prometheus scrapes a real server while client-sim plays a known mix; its HTTP API
/// must report exactly the closes the run produced, by reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(has_prometheus),
    ignore = "needs prometheus (apt-get install prometheus)"
)]
async fn a_real_prometheus_sees_exactly_the_closes_that_happened() {
    need_tools(&["prometheus"], "apt-get install prometheus");
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
