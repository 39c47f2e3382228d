//! The `game-server` command line as an operator meets it: configuration mistakes named with
//! their key and variable, the healthcheck's answer either way, and logs without terminal colour
//! when they go to a file or a pipe.

use std::time::{Duration, Instant};

use system_tests::process::{ServerProcess, game_server_binary, run_game_server};

#[test]
fn a_misspelt_log_level_is_refused_naming_the_key_and_the_variable() {
    let level = ("GAMESERVER__LOG__LEVEL", "verbose");
    let stderr = run_game_server(&["--print-config"], &[level]).expect_exit(2);
    assert!(stderr.contains("log.level"), "{stderr}");
    assert!(stderr.contains("GAMESERVER__LOG__LEVEL"), "{stderr}");
}

#[test]
fn a_variable_that_looks_like_ours_but_is_not_read_is_reported() {
    let unread = ("GAMESERVER_SESSION__IDLE_TIMEOUT", "3s");
    let stderr = run_game_server(&["--print-config"], &[unread]).expect_exit(2);
    assert!(
        stderr.contains("GAMESERVER_SESSION__IDLE_TIMEOUT"),
        "{stderr}"
    );
}

/// Runs the healthcheck against `url` and expects it to fail within `bound`, saying `says`.
fn expect_healthcheck_failure(url: &str, says: &str, bound: Duration) {
    let started = Instant::now();
    let stderr = run_game_server(&["healthcheck", "--url", url], &[]).expect_exit(1);
    assert!(stderr.contains(says), "{stderr}");
    assert!(started.elapsed() < bound, "{:?}", started.elapsed());
}

#[tokio::test]
async fn the_healthcheck_says_why_it_fails_and_answers_within_its_timeout() {
    let server = ServerProcess::loopback("").await;
    let live = format!("http://{}/healthz", server.admin);
    run_game_server(&["healthcheck", "--url", &live], &[]).expect_success();
    // A path that is not 200.
    let missing = format!("http://{}/nothing-here", server.admin);
    let stderr = run_game_server(&["healthcheck", "--url", &missing], &[]).expect_exit(1);
    assert!(stderr.contains("404"), "{stderr}");
    drop(server);
    // A listener that never answers (the kernel accepts, nobody reads): the timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_url = format!("http://{}/healthz", silent.local_addr().expect("addr"));
    expect_healthcheck_failure(&silent_url, "no answer within 3s", Duration::from_secs(6));
    drop(silent);
    // A port where nothing listens: refused at once.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead_url = format!("http://{}/healthz", dead.local_addr().expect("addr"));
    drop(dead);
    expect_healthcheck_failure(&dead_url, "refused", Duration::from_secs(4));
}

#[tokio::test]
async fn pretty_logs_into_a_pipe_carry_no_terminal_colours() {
    let mut child = tokio::process::Command::new(game_server_binary())
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .env_remove("RUST_LOG")
        .env("GAMESERVER__LOG__FORMAT", "pretty")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let mut stderr = child.stderr.take().expect("stderr");
    let mut seen = Vec::new();
    let read = tokio::time::timeout(system_tests::PATIENCE, async {
        use tokio::io::AsyncReadExt;
        let mut chunk = [0u8; 4096];
        while !String::from_utf8_lossy(&seen).contains("serving") {
            let n = stderr.read(&mut chunk).await.expect("read stderr");
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&chunk[..n]);
        }
    })
    .await;
    let text = String::from_utf8_lossy(&seen).into_owned();
    assert!(read.is_ok() && text.contains("serving"), "{text}");
    assert!(!text.contains('\u{1b}'), "escape codes in a pipe: {text:?}");
    child.kill().await.expect("kill");
}

/// The configuration baked into the image must load with this build: a key renamed in the engine
/// would otherwise stop every container at start.
#[test]
fn the_container_configuration_loads_and_differs_from_the_defaults_where_it_says() {
    let dir = std::env::temp_dir().join(format!("container-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let token = dir.join("admin-token");
    std::fs::write(&token, "a-container-token-of-some-length\n").expect("token");
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/docker.toml");
    let token_file = (
        "GAMESERVER__ADMIN__TOKEN_FILE",
        token.to_str().expect("utf-8"),
    );
    let stdout =
        run_game_server(&["--config", config, "--print-config"], &[token_file]).expect_success();
    let effective: toml::Value = toml::from_str(&stdout).expect("--print-config prints TOML");
    assert_eq!(effective["admin"]["listen"].as_str(), Some("0.0.0.0:9100"));
    assert_eq!(effective["log"]["format"].as_str(), Some("json"));
    let exempt = effective["server"]["source_exempt"]
        .as_array()
        .expect("source_exempt");
    assert!(
        exempt
            .iter()
            .any(|net| net.as_str() == Some("172.28.0.0/24")),
        "{exempt:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `token` refuses what a `Hello` would be refused for: a player id with control characters
/// (it would forge log lines wherever the id is written), and `auth.max_ttl` over its bound is a
/// configuration error naming the key.
#[test]
fn token_refuses_ids_a_hello_could_not_carry_and_the_lifetime_is_bounded() {
    let secret = [("GAMESERVER__AUTH__SECRET", "0123456789abcdef-cli")];
    let stderr =
        run_game_server(&["token", "--player", "bad\nid", "--ttl", "1h"], &secret).expect_failure();
    assert!(stderr.contains("control characters"), "{stderr}");
    let fine = ["token", "--player", "fine", "--ttl", "1h"];
    run_game_server(&fine, &secret).expect_success();
    let mut long = secret.to_vec();
    long.push(("GAMESERVER__AUTH__MAX_TTL", "90d"));
    let stderr = run_game_server(&fine, &long).expect_exit(2);
    assert!(stderr.contains("auth.max_ttl"), "{stderr}");
    assert!(stderr.contains("GAMESERVER__AUTH__MAX_TTL"), "{stderr}");
}
