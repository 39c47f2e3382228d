//! The real binaries as child processes: the `game-server` executable started with a config file
//! (optionally inside a network namespace or under `prlimit`), and the `netclient` test client.
//!
//! A child runs behind a command prefix such as `ip netns exec NS` or `prlimit --nofile=N:N`;
//! both exec the program, so the child's pid is the server's own. The server logs JSON to stderr;
//! the harness keeps every line, reads the bound ports from the `serving` line (listeners bind
//! port 0), and lets tests await a log line instead of sleeping. The admin endpoints are reached
//! with `netclient http` run behind the same prefix, so a server inside a namespace is scraped
//! from inside it while the test process stays in the host's namespace.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::watch;

use crate::{PATIENCE, Scrape};

/// The directory cargo puts this package's binaries in: the test executable lives in its
/// `deps/` subdirectory.
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().expect("an executable inside target/<profile>");
    // Tests run from target/<profile>/deps, this package's binaries from target/<profile>.
    match dir.file_name() {
        Some(name) if name == "deps" => dir.parent().unwrap_or(dir).to_path_buf(),
        _ => dir.to_path_buf(),
    }
}

/// Cargo's target directory (`target/` unless configured otherwise): where a test leaves
/// artefacts worth looking at after the run, such as screenshots.
pub fn target_dir() -> PathBuf {
    let dir = bin_dir();
    dir.parent().map_or(dir.clone(), Path::to_path_buf)
}

/// The `netclient` binary of this package (cargo builds a package's binaries before its
/// integration tests).
pub fn netclient_binary() -> PathBuf {
    let path = bin_dir().join("netclient");
    assert!(
        path.exists(),
        "{} is missing: cargo builds it with the system tests",
        path.display()
    );
    path
}

/// The `game-server` binary, built once per test process so that it matches the source even when
/// only this package's tests were asked for. Cargo cannot name another package's binary to an
/// integration test, so the harness asks cargo itself, into the same target directory.
pub fn game_server_binary() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let dir = bin_dir();
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
            let mut command = std::process::Command::new(cargo);
            // With the Agones integration, which tests/tests/agones.rs runs.
            command.args([
                "build",
                "--quiet",
                "-p",
                "game-server",
                "--features",
                "agones",
                "--bin",
                "game-server",
            ]);
            command.arg("--manifest-path").arg(&manifest);
            if let Some(target_dir) = dir.parent() {
                command.arg("--target-dir").arg(target_dir);
            }
            if dir.file_name().is_some_and(|n| n == "release") {
                command.arg("--release");
            }
            let status = command.status().expect("run cargo build for game-server");
            assert!(status.success(), "cargo build -p game-server failed");
            let path = dir.join("game-server");
            assert!(
                path.exists(),
                "{} is missing after the build",
                path.display()
            );
            path
        })
        .clone()
}

/// What a command that ran to its end left: how it exited and what it wrote, as text.
#[derive(Debug)]
pub struct Ran {
    /// The command, as failure messages name it.
    pub command: String,
    /// How it exited.
    pub status: ExitStatus,
    /// What it wrote to stdout.
    pub stdout: String,
    /// What it wrote to stderr.
    pub stderr: String,
}

impl Ran {
    fn new(command: String, output: std::process::Output) -> Ran {
        Ran {
            command,
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Panics, with the command and all it wrote, unless it exited with success; returns its
    /// stdout.
    pub fn expect_success(self) -> String {
        assert!(self.status.success(), "{} failed: {self}", self.command);
        self.stdout
    }

    /// Panics, with the command and all it wrote, unless it exited with `code`; returns its
    /// stderr.
    pub fn expect_exit(self, code: i32) -> String {
        assert_eq!(self.status.code(), Some(code), "{}: {self}", self.command);
        self.stderr
    }

    /// Panics, with the command and all it wrote, if it exited with success; returns its stderr.
    pub fn expect_failure(self) -> String {
        assert!(!self.status.success(), "{} succeeded: {self}", self.command);
        self.stderr
    }
}

impl std::fmt::Display for Ran {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}\n{}{}", self.status, self.stdout, self.stderr)
    }
}

/// Runs `command` to its end, stdin closed.
pub fn run(command: &mut std::process::Command) -> Ran {
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|error| panic!("cannot run {command:?}: {error}"));
    Ran::new(format!("{command:?}"), output)
}

/// Runs `command` to its end, stdin closed, without blocking the runtime: for a command that
/// talks to a server in this process.
pub async fn run_async(command: &mut Command) -> Ran {
    let output = command
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap_or_else(|error| panic!("cannot run {:?}: {error}", command.as_std()));
    Ran::new(format!("{:?}", command.as_std()), output)
}

/// Runs `game-server` with `args` to its end, configured by `env` alone: the test's own
/// `GAMESERVER_` variables and `RUST_LOG` are removed.
pub fn run_game_server(args: &[&str], env: &[(&str, &str)]) -> Ran {
    let mut command = std::process::Command::new(game_server_binary());
    command.args(args).env_remove("RUST_LOG");
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("GAMESERVER_") {
            command.env_remove(key);
        }
    }
    run(command.envs(env.iter().copied()))
}

static NEXT_DIR: AtomicU32 = AtomicU32::new(0);

/// A scratch directory removed on drop.
#[derive(Debug)]
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    /// A new empty directory under the system's temporary directory.
    pub fn new(tag: &str) -> ScratchDir {
        let n = NEXT_DIR.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("gs-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create scratch dir");
        ScratchDir(path)
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Every line a child wrote to one of its pipes, kept for waiting and for failure messages.
#[derive(Debug, Clone)]
pub struct Lines {
    lines: Arc<Mutex<Vec<String>>>,
    count: watch::Receiver<usize>,
    reading: Arc<watch::Sender<Reading>>,
}

/// What the collector does with the pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// Reads every line.
    On,
    /// Stops reading but keeps the pipe open: the child's writes fill it, then block.
    Paused,
    /// Closes the read end: the child's writes fail with EPIPE.
    Closed,
}

impl Lines {
    /// Collects the lines of `pipe` in a task; `echo` prefixes copies sent to the test's output.
    fn collect(pipe: impl AsyncRead + Unpin + Send + 'static, echo: String) -> Lines {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, count) = watch::channel(0);
        let (reading, mut mode) = watch::channel(Reading::On);
        let store = lines.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(pipe).lines();
            loop {
                let current = *mode.borrow_and_update();
                match current {
                    Reading::Closed => return,
                    Reading::Paused => {
                        if mode.changed().await.is_err() {
                            return;
                        }
                        continue;
                    }
                    Reading::On => {}
                }
                let line = tokio::select! {
                    line = reader.next_line() => line,
                    changed = mode.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        continue;
                    }
                };
                let Ok(Some(line)) = line else {
                    return;
                };
                eprintln!("{echo}{line}");
                let n = {
                    let mut store = store.lock().unwrap_or_else(|p| p.into_inner());
                    store.push(line);
                    store.len()
                };
                tx.send_replace(n);
            }
        });
        Lines {
            lines,
            count,
            reading: Arc::new(reading),
        }
    }

    /// Changes what the collector does with the pipe.
    pub fn set_reading(&self, reading: Reading) {
        self.reading.send_replace(reading);
    }

    /// A copy of every line so far.
    pub fn all(&self) -> Vec<String> {
        self.lines.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Waits for the first line at index `from` or later that `matches`; returns its index and
    /// the line. Panics with the lines seen if none comes within `within` or the pipe closes.
    pub async fn wait_from(
        &self,
        from: usize,
        within: Duration,
        what: &str,
        matches: impl Fn(&str) -> bool,
    ) -> (usize, String) {
        let mut count = self.count.clone();
        let deadline = tokio::time::Instant::now() + within;
        let mut next = from;
        loop {
            {
                let lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
                while next < lines.len() {
                    if matches(&lines[next]) {
                        return (next, lines[next].clone());
                    }
                    next += 1;
                }
            }
            match tokio::time::timeout_at(deadline, count.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => panic!("the pipe closed before {what}; lines:\n{}", self.tail()),
                Err(_) => panic!("no {what} within {within:?}; last lines:\n{}", self.tail()),
            }
        }
    }

    fn tail(&self) -> String {
        let lines = self.all();
        let start = lines.len().saturating_sub(40);
        lines[start..].join("\n")
    }
}

/// How to start a server process.
#[derive(Debug, Clone)]
pub struct ServerSpec {
    /// Extra TOML layered over the embedded defaults (JSON logs and the listen addresses are
    /// added by the harness unless given here).
    pub config: String,
    /// Words run before the binary, such as `["ip", "netns", "exec", NS]`; they must exec it.
    pub prefix: Vec<String>,
    /// The game listener (port 0 picks one).
    pub listen: String,
    /// The admin listener (port 0 picks one).
    pub admin: String,
    /// Environment variables for the server besides the harness's own.
    pub env: Vec<(String, String)>,
}

impl ServerSpec {
    /// A server on loopback, with `config` layered over the defaults.
    pub fn loopback(config: &str) -> ServerSpec {
        ServerSpec {
            config: config.to_owned(),
            prefix: Vec::new(),
            listen: "127.0.0.1:0".to_owned(),
            admin: "127.0.0.1:0".to_owned(),
            env: Vec::new(),
        }
    }

    /// The same, with `key=value` in the server's environment.
    pub fn with_env(mut self, key: &str, value: &str) -> ServerSpec {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// A server inside network namespace `ns`, listening on `ip`; its admin listener stays on the
    /// namespace's own loopback.
    pub fn in_namespace(ns: &str, ip: std::net::Ipv4Addr, config: &str) -> ServerSpec {
        ServerSpec {
            config: config.to_owned(),
            prefix: vec!["ip".into(), "netns".into(), "exec".into(), ns.into()],
            listen: format!("{ip}:0"),
            admin: "127.0.0.1:0".to_owned(),
            env: Vec::new(),
        }
    }

    /// Runs the server behind another prefix word list first (e.g. `prlimit --nofile=64:64`).
    pub fn wrapped(mut self, words: &[&str]) -> ServerSpec {
        let mut prefix: Vec<String> = words.iter().map(|w| (*w).to_owned()).collect();
        prefix.append(&mut self.prefix);
        self.prefix = prefix;
        self
    }
}

/// A `game-server` process. Killed on drop if still running.
#[derive(Debug)]
pub struct ServerProcess {
    /// The game port.
    pub addr: SocketAddr,
    /// The admin port (reachable behind the same prefix).
    pub admin: SocketAddr,
    /// The WebSocket port, when the configuration opens one.
    pub websocket: Option<SocketAddr>,
    /// The server's pid.
    pub pid: u32,
    /// Its stderr: one JSON log line each.
    pub logs: Lines,
    child: Child,
    prefix: Vec<String>,
    netclient: PathBuf,
    _dir: ScratchDir,
}

impl ServerProcess {
    /// Starts the server and waits until it serves.
    pub async fn start(spec: ServerSpec) -> ServerProcess {
        let dir = ScratchDir::new("server");
        let config_path = dir.path().join("server.toml");
        let text = format!(
            "{}\n\n# Added by the test harness.\n[log]\nformat = \"json\"\nlevel = \"info\"\n",
            spec.config
        );
        std::fs::write(&config_path, text).expect("write the server config");
        let binary = game_server_binary();
        let mut words: Vec<String> = spec.prefix.clone();
        words.push(binary.display().to_string());
        let mut command = Command::new(&words[0]);
        command
            .args(&words[1..])
            .arg("--config")
            .arg(&config_path)
            .args(["--listen", &spec.listen, "--admin-listen", &spec.admin])
            .env("RUST_LOG", "info")
            .env("GAMESERVER__ADMIN__TOKEN", crate::TEST_ADMIN_TOKEN)
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("spawn game-server");
        let pid = child.id().expect("server pid");
        let logs = Lines::collect(
            child.stderr.take().expect("server stderr"),
            format!("[server {pid}] "),
        );
        let (_, serving) = logs
            .wait_from(0, PATIENCE, "`serving` log line", |l| {
                message(l).as_deref() == Some("serving")
            })
            .await;
        let fields = fields(&serving);
        let addr = fields["game"].as_str().and_then(|a| a.parse().ok());
        let admin = fields["admin"].as_str().and_then(|a| a.parse().ok());
        let websocket = fields["websocket"].as_str().and_then(|a| a.parse().ok());
        ServerProcess {
            addr: addr.expect("game address in the serving line"),
            admin: admin.expect("admin address in the serving line"),
            websocket,
            pid,
            logs,
            child,
            prefix: spec.prefix,
            netclient: netclient_binary(),
            _dir: dir,
        }
    }

    /// Starts a server on loopback with `config` layered over the defaults
    /// ([`ServerSpec::loopback`]) and waits until it serves.
    pub async fn loopback(config: &str) -> ServerProcess {
        ServerProcess::start(ServerSpec::loopback(config)).await
    }

    /// One admin request, made with `netclient http` behind the server's prefix (so from inside
    /// its namespace). Returns the status and the body.
    pub async fn http(&self, method: &str, path: &str) -> (u16, String) {
        let mut words = self.prefix.clone();
        words.push(self.netclient.display().to_string());
        let url = format!("http://{}{path}", self.admin);
        let output = Command::new(&words[0])
            .args(&words[1..])
            .args(["http", method, &url])
            .env("NETCLIENT_TOKEN", crate::TEST_ADMIN_TOKEN)
            .stdin(Stdio::null())
            .output()
            .await
            .expect("run netclient http");
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "{method} {url} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let (status, body) = text.split_once('\n').unwrap_or((&text, ""));
        let status = status
            .strip_prefix("status ")
            .and_then(|s| s.parse().ok())
            .expect("netclient prints the status first");
        (status, body.to_owned())
    }

    /// GETs an admin path that answers JSON; panics unless it answers 200 with JSON.
    pub async fn get_json(&self, path: &str) -> Value {
        let (status, body) = self.http("GET", path).await;
        assert_eq!(status, 200, "{path} answered {status}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path} is not JSON ({e}): {body}"))
    }

    /// One scrape of /metrics.
    pub async fn scrape(&self) -> Scrape {
        let (status, body) = self.http("GET", "/metrics").await;
        assert_eq!(status, 200, "/metrics answered {status}");
        Scrape::parse(&body)
    }

    /// The memory budget's last estimate (`gameserver_memory_used_bytes`); 0 before the first.
    pub async fn memory_used(&self) -> f64 {
        self.scrape().await.get("gameserver_memory_used_bytes", &[])
    }

    /// Opens `count` connections to the game port that send nothing, and checks that while they
    /// wait (no session yet) the memory estimate charges each between `each_kib` bounds, and that
    /// the charge is given back once they close.
    pub async fn expect_silent_connections_charged(
        &self,
        count: usize,
        each_kib: std::ops::RangeInclusive<f64>,
    ) {
        let before = self.first_memory_estimate().await;
        let mut silent = Vec::with_capacity(count);
        for _ in 0..count {
            silent.push(
                tokio::net::TcpStream::connect(self.addr)
                    .await
                    .expect("connect"),
            );
        }
        let per_connection = |bytes: f64| bytes / count as f64 / 1024.0;
        crate::poll_until(
            "the silent connections in the estimate",
            PATIENCE,
            || async {
                let each = per_connection(self.memory_used().await - before);
                match each_kib.contains(&each) {
                    true => Ok(()),
                    false => Err(format!(
                        "{each:.1} KiB counted for each silent connection, not {each_kib:?}"
                    )),
                }
            },
        )
        .await;
        assert_eq!(
            self.scrape().await.get("gameserver_sessions_active", &[]),
            0.0,
            "no session yet"
        );
        drop(silent);
        crate::poll_until("the charge given back", PATIENCE, || async {
            let each = per_connection(self.memory_used().await - before);
            match each < 1.0 {
                true => Ok(()),
                false => Err(format!("{each:.1} KiB still counted for each")),
            }
        })
        .await;
    }

    /// The budget's first estimate, once it is made (within a second of the start: the estimate
    /// is recounted every second while far below the budget, and the gauge shows each recount).
    pub async fn first_memory_estimate(&self) -> f64 {
        crate::poll_until("the first memory estimate", PATIENCE, || async {
            match self.memory_used().await {
                0.0 => Err("no estimate yet".to_owned()),
                bytes => Ok(bytes),
            }
        })
        .await
    }

    /// How the recent sessions of players whose id starts with `prefix` ended, from the
    /// admin's `/closes`: the count for each close reason.
    pub async fn closes(&self, prefix: &str) -> std::collections::BTreeMap<String, u64> {
        let closes = self
            .get_json(&format!("/closes?player_prefix={prefix}"))
            .await;
        closes["reasons"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(reason, n)| (reason.clone(), n.as_u64().unwrap_or(0)))
            .collect()
    }

    /// The live session of `player` in `/sessions`, if there is one.
    pub async fn session_of(&self, player: &str) -> Option<Value> {
        let page = self.get_json("/sessions?limit=1000").await;
        page["sessions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["player"] == player)
            .cloned()
    }

    /// Waits for the next `session closed` log line after line `from` and returns its index and
    /// fields.
    pub async fn next_close(&self, from: usize, within: Duration) -> (usize, Value) {
        let (index, line) = self
            .logs
            .wait_from(from, within, "`session closed` log line", |l| {
                message(l).as_deref() == Some("session closed")
            })
            .await;
        (index, fields(&line))
    }

    /// The number of log lines so far: pass it to [`ServerProcess::next_close`] to wait for a
    /// close that happens after this point.
    pub fn log_mark(&self) -> usize {
        self.logs.all().len()
    }

    /// Sends a signal (`"TERM"`, `"INT"`, `"KILL"`) with kill(1).
    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args(["-s", signal, &self.pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -s {signal} {} failed", self.pid);
    }

    /// Waits for the process to exit.
    pub async fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        tokio::time::timeout(within, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("the server did not exit within {within:?}"))
            .expect("wait for the server")
    }

    /// User plus system CPU time the process has used, from /proc/PID/stat.
    pub fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).expect("proc stat");
        // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let fields: Vec<u64> = rest
            .split_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect();
        let ticks = fields[11] + fields[12];
        Duration::from_millis(ticks * 1000 / clock_ticks())
    }
}

impl crate::Metrics for ServerProcess {
    fn scrape(&self) -> impl Future<Output = Scrape> {
        ServerProcess::scrape(self)
    }
}

fn clock_ticks() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100)
}

/// The `message` of a JSON log line.
pub fn message(line: &str) -> Option<String> {
    let value: Value = serde_json::from_str(line).ok()?;
    value["fields"]["message"].as_str().map(str::to_owned)
}

/// The `fields` object of a JSON log line (`Null` if the line is not JSON).
pub fn fields(line: &str) -> Value {
    serde_json::from_str::<Value>(line)
        .map(|v| v["fields"].clone())
        .unwrap_or(Value::Null)
}

/// A `netclient play` process: commands go to its stdin, observations come back as lines.
#[derive(Debug)]
pub struct NetClient {
    /// Everything it printed.
    pub out: Lines,
    /// The next line index [`NetClient::expect`] looks at.
    pub cursor: usize,
    child: Child,
    stdin: Option<ChildStdin>,
}

impl NetClient {
    /// Starts `netclient play` behind `prefix` (e.g. `ip netns exec NS`) with `args`.
    pub fn spawn(prefix: &[&str], args: &[&str]) -> NetClient {
        NetClient::spawn_with(prefix, "play", args)
    }

    /// Starts `netclient play` behind `prefix` as `player` of the server at `server`, with more
    /// `args` (`--room ROOM`, `--no-read`, ...).
    pub fn player(prefix: &[&str], server: SocketAddr, player: &str, args: &[&str]) -> NetClient {
        let server = server.to_string();
        let mut all = vec!["--server", &server, "--player", player];
        all.extend_from_slice(args);
        NetClient::spawn(prefix, &all)
    }

    /// Starts `netclient MODE` (`play`, or `session`: the client library) behind `prefix`.
    pub fn spawn_with(prefix: &[&str], mode: &str, args: &[&str]) -> NetClient {
        let mut words: Vec<String> = prefix.iter().map(|w| (*w).to_owned()).collect();
        words.push(netclient_binary().display().to_string());
        let mut command = Command::new(&words[0]);
        command
            .args(&words[1..])
            .arg(mode)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("spawn netclient");
        let pid = child.id().unwrap_or(0);
        let out = Lines::collect(
            child.stdout.take().expect("netclient stdout"),
            format!("[netclient {pid}] "),
        );
        let stdin = child.stdin.take();
        NetClient {
            out,
            cursor: 0,
            child,
            stdin,
        }
    }

    /// The client's pid.
    pub fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    /// Sends one command line.
    pub async fn send(&mut self, command: &str) {
        let stdin = self.stdin.as_mut().expect("netclient stdin open");
        stdin
            .write_all(format!("{command}\n").as_bytes())
            .await
            .expect("write a netclient command");
        stdin.flush().await.expect("flush a netclient command");
    }

    /// Waits for the next line (after the cursor) whose first word is `kind`, moves the cursor
    /// past it and returns its remaining words.
    pub async fn expect(&mut self, kind: &str, within: Duration) -> Vec<String> {
        let (index, line) = self
            .out
            .wait_from(
                self.cursor,
                within,
                &format!("`{kind}` from netclient"),
                |l| l.split_whitespace().next() == Some(kind),
            )
            .await;
        self.cursor = index + 1;
        line.split_whitespace().skip(1).map(str::to_owned).collect()
    }

    /// Waits for `welcome` and returns the session id.
    pub async fn welcome(&mut self) -> u64 {
        let words = self.expect("welcome", PATIENCE).await;
        words[0].parse().expect("session id")
    }

    /// Kills the process with SIGKILL and reaps it.
    pub async fn kill(&mut self) {
        self.child.kill().await.expect("kill netclient");
    }

    /// Waits for the process to exit.
    pub async fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        self.stdin.take();
        tokio::time::timeout(within, self.child.wait())
            .await
            .expect("netclient exits")
            .expect("wait for netclient")
    }
}

/// One HTTP/1.1 keep-alive connection to the admin listener, opened ahead of time: it keeps
/// working when the server can no longer accept new connections (out of file descriptors).
#[derive(Debug)]
pub struct AdminConnection {
    stream: BufReader<tokio::net::TcpStream>,
    host: SocketAddr,
}

impl AdminConnection {
    /// Connects to the admin listener.
    pub async fn connect(admin: SocketAddr) -> AdminConnection {
        let stream = tokio::net::TcpStream::connect(admin)
            .await
            .expect("connect to the admin listener");
        AdminConnection {
            stream: BufReader::new(stream),
            host: admin,
        }
    }

    /// `GET path` on this connection; returns the status and body.
    pub async fn get(&mut self, path: &str) -> (u16, String) {
        tokio::time::timeout(PATIENCE, self.exchange(path))
            .await
            .expect("the admin listener answers within the patience bound")
    }

    async fn exchange(&mut self, path: &str) -> (u16, String) {
        let request = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n", self.host);
        self.stream
            .get_mut()
            .write_all(request.as_bytes())
            .await
            .expect("send the request");
        let mut status = 0;
        let mut length = None;
        let mut chunked = false;
        let mut line = String::new();
        loop {
            line.clear();
            let n = self
                .stream
                .read_line(&mut line)
                .await
                .expect("read a header");
            assert!(n > 0, "the admin listener closed the connection");
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if header.starts_with("HTTP/") {
                status = header
                    .split_whitespace()
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
            } else if let Some((name, value)) = header.split_once(':') {
                let value = value.trim();
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.parse::<usize>().ok();
                } else if name.eq_ignore_ascii_case("transfer-encoding") {
                    chunked = value.eq_ignore_ascii_case("chunked");
                }
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                line.clear();
                self.stream.read_line(&mut line).await.expect("chunk size");
                let size = usize::from_str_radix(line.trim(), 16).expect("chunk size");
                let mut chunk = vec![0; size + 2];
                self.stream.read_exact(&mut chunk).await.expect("chunk");
                body.extend_from_slice(&chunk[..size]);
                if size == 0 {
                    break;
                }
            }
        } else {
            let mut chunk = vec![0; length.expect("a Content-Length")];
            self.stream.read_exact(&mut chunk).await.expect("body");
            body = chunk;
        }
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    /// One scrape of /metrics.
    pub async fn scrape(&mut self) -> Scrape {
        let (status, body) = self.get("/metrics").await;
        assert_eq!(status, 200, "/metrics answered {status}");
        Scrape::parse(&body)
    }
}
