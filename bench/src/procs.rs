//! The servers under test, as child processes killed on drop, and what `/proc` says about them.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};

use client_sim::metrics::Admin;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Which server a workload drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The game server (`game-server`), speaking the real protocol.
    Ours,
    /// The bare Tokio echo server (`baseline`).
    Baseline,
}

impl Target {
    /// Short name for logs and the report.
    pub fn name(self) -> &'static str {
        match self {
            Target::Ours => "game-server",
            Target::Baseline => "baseline",
        }
    }
}

/// Where the two server binaries are.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// The `game-server` executable.
    pub game_server: PathBuf,
    /// The `baseline` executable.
    pub baseline: PathBuf,
    /// Where server logs go.
    pub log_dir: PathBuf,
}

impl Binaries {
    /// The binaries of the cargo profile directory that holds this executable (`target/release`
    /// for `cargo run --release -p bench`, `target/debug` for tests). Both are built with one
    /// `cargo build [--release] -p game-server -p bench --bin game-server --bin baseline` (at
    /// most once per process), always or only when one is missing, so the bench works from a
    /// fresh clone. `BENCH_GAME_SERVER=PATH` runs another game-server binary instead (to compare
    /// two builds); it is then never rebuilt, and `baseline` only when missing.
    pub fn beside_current_exe(baseline: Option<PathBuf>, build: Build) -> anyhow::Result<Binaries> {
        let build = if std::env::var_os("BENCH_GAME_SERVER").is_some() {
            Build::IfMissing
        } else {
            build
        };
        let exe = std::env::current_exe().context("cannot locate this executable")?;
        let profile_dir = exe
            .ancestors()
            .skip(1)
            .find(|dir| {
                matches!(
                    dir.file_name().and_then(|n| n.to_str()),
                    Some("release" | "debug")
                )
            })
            .context("this executable is not inside target/<profile>")?
            .to_path_buf();
        let release = profile_dir.file_name().and_then(|n| n.to_str()) == Some("release");
        let game_server = match std::env::var_os("BENCH_GAME_SERVER") {
            Some(path) => PathBuf::from(path),
            None => profile_dir.join("game-server"),
        };
        let baseline = baseline.unwrap_or_else(|| profile_dir.join("baseline"));
        if build == Build::Always || !game_server.exists() || !baseline.exists() {
            build_servers(release)?;
        }
        for binary in [&game_server, &baseline] {
            if !binary.exists() {
                bail!("{} is still missing after the build", binary.display());
            }
        }
        let log_dir = profile_dir.join("bench-logs");
        std::fs::create_dir_all(&log_dir)?;
        Ok(Binaries {
            game_server,
            baseline,
            log_dir,
        })
    }
}

/// When to build the servers before a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Build {
    /// Always (cargo does nothing when it is current): the figures then belong to the checked
    /// out commit.
    Always,
    /// Only when the binary is missing.
    IfMissing,
}

/// Runs `cargo build [--release] -p game-server -p bench --bin game-server --bin baseline` at
/// most once per process.
fn build_servers(release: bool) -> anyhow::Result<()> {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
            let mut command = Command::new(cargo);
            command.args([
                "build",
                "-p",
                "game-server",
                "-p",
                "bench",
                "--bin",
                "game-server",
                "--bin",
                "baseline",
            ]);
            if release {
                command.arg("--release");
            }
            // The workspace this bench belongs to, wherever it is run from.
            command.current_dir(crate::workspace_root());
            eprintln!("bench: building the servers ({command:?})");
            match command.status() {
                Ok(status) if status.success() => Ok(()),
                Ok(status) => Err(format!("{command:?} failed: {status}")),
                Err(error) => Err(format!("cannot run cargo: {error}")),
            }
        })
        .clone()
        .map_err(anyhow::Error::msg)
}

/// Process ids of the live server children, for [`kill_children`].
static CHILDREN: std::sync::Mutex<Vec<u32>> = std::sync::Mutex::new(Vec::new());

/// The live server children's ids (add a child's id when starting it, remove it when it is
/// reaped).
pub fn children() -> std::sync::MutexGuard<'static, Vec<u32>> {
    CHILDREN.lock().unwrap_or_else(|p| p.into_inner())
}

/// Kills every live server child. For a signal handler: `Drop` does not run when the bench is
/// interrupted.
pub fn kill_children() {
    let pids: Vec<String> = children().iter().map(u32::to_string).collect();
    if !pids.is_empty() {
        let _ = Command::new("kill").arg("-KILL").args(&pids).status();
    }
}

/// A server child process. Killed (SIGKILL) and reaped on drop, so no server outlives the bench.
#[derive(Debug)]
pub struct Server {
    child: Child,
    /// Which server it is.
    pub target: Target,
    /// The game (or echo) port.
    pub addr: SocketAddr,
    /// The admin port (the game server only).
    pub admin: Option<SocketAddr>,
}

/// Settings for one server start.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Idle timeout (both servers).
    pub idle_timeout: Option<Duration>,
    /// Extra `GAMESERVER__SECTION__KEY` variables for the game server.
    pub env: Vec<(String, String)>,
    /// The baseline in its broadcast (fan-out) mode instead of echoing.
    pub broadcast: bool,
}

impl Server {
    /// Starts `target` on loopback and waits until it serves.
    pub async fn start(
        bins: &Binaries,
        target: Target,
        settings: &Settings,
        label: &str,
    ) -> anyhow::Result<Server> {
        let log_path = bins.log_dir.join(format!("{}-{label}.log", target.name()));
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("cannot create {}", log_path.display()))?;
        match target {
            Target::Ours => {
                let addr = free_port()?;
                let admin = free_port()?;
                let mut command = Command::new(&bins.game_server);
                command
                    .args(["--listen", &addr.to_string()])
                    .args(["--admin-listen", &admin.to_string()])
                    // Room for every client of a workload plus a few spare.
                    .env("GAMESERVER__SERVER__MAX_SESSIONS", "19900")
                    .env_remove("RUST_LOG")
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(log);
                if let Some(idle) = settings.idle_timeout {
                    command.env(
                        "GAMESERVER__SESSION__IDLE_TIMEOUT",
                        format!("{}ms", idle.as_millis()),
                    );
                }
                for (key, value) in &settings.env {
                    command.env(key, value);
                }
                let child = command
                    .spawn()
                    .with_context(|| format!("cannot start {}", bins.game_server.display()))?;
                children().push(child.id());
                let mut server = Server {
                    child,
                    target,
                    addr,
                    admin: Some(admin),
                };
                server.wait_ready(&log_path).await?;
                Ok(server)
            }
            Target::Baseline => {
                let mut command = Command::new(&bins.baseline);
                command
                    .args(["--listen", "127.0.0.1:0"])
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(log);
                if let Some(idle) = settings.idle_timeout {
                    command.args(["--idle-timeout", &format!("{}ms", idle.as_millis())]);
                }
                if settings.broadcast {
                    command.arg("--broadcast");
                }
                let mut child = command
                    .spawn()
                    .with_context(|| format!("cannot start {}", bins.baseline.display()))?;
                children().push(child.id());
                let stdout = child.stdout.take().context("baseline stdout")?;
                let mut line = String::new();
                BufReader::new(stdout).read_line(&mut line)?;
                let addr = line
                    .trim()
                    .strip_prefix("listening on ")
                    .and_then(|a| a.parse().ok());
                let Some(addr) = addr else {
                    let _ = child.kill();
                    let _ = child.wait();
                    bail!("baseline did not say where it listens: {line:?}");
                };
                Ok(Server {
                    child,
                    target,
                    addr,
                    admin: None,
                })
            }
        }
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    async fn wait_ready(&mut self, log: &Path) -> anyhow::Result<()> {
        let admin = self
            .admin_client()
            .context("this server has no admin port")?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "game-server exited at start ({status}); see {}",
                    log.display()
                );
            }
            if admin.get_ok("/healthz").await.is_ok() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("game-server not ready within 20 s; see {}", log.display())
    }

    /// A client of the admin port (none for the baseline), opening a fresh connection for each
    /// request, as a scraper that comes every few seconds does.
    pub fn admin_client(&self) -> Option<Admin> {
        Some(Admin::at(self.admin?, None).without_keepalive())
    }

    /// `GET path` on the admin port: the body, and the time from connect to the last byte.
    pub async fn get(&self, path: &str) -> anyhow::Result<(String, Duration)> {
        let admin = self
            .admin_client()
            .context("this server has no admin port")?;
        let started = Instant::now();
        let body = admin.get_ok(path).await?;
        Ok((body, started.elapsed()))
    }

    /// Resident set size, KiB (VmRSS).
    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        rss_kib(self.pid())
    }

    /// User plus system CPU time so far.
    pub fn cpu(&self) -> anyhow::Result<Duration> {
        cpu_time(self.pid())
    }

    /// A gauge or counter of the game server's `/metrics` without labels.
    pub async fn metric(&self, name: &str) -> anyhow::Result<f64> {
        let (body, _) = self.get("/metrics").await?;
        body.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .with_context(|| format!("no {name} in /metrics"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let pid = self.child.id();
        children().retain(|p| *p != pid);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> anyhow::Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// VmRSS of a process, KiB.
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS in /proc/<pid>/status")
}

/// utime + stime of a process (fields 14 and 15 of /proc/<pid>/stat, in USER_HZ = 100 ticks).
pub fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may contain spaces; fields are counted after its closing parenthesis.
    let rest = stat.rsplit_once(')').context("malformed stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> anyhow::Result<u64> {
        Ok(fields.get(i).context("short stat")?.parse::<u64>()?)
    };
    // After the name, field 3 (state) is index 0: utime (14) is index 11, stime (15) index 12.
    let total = ticks(11)? + ticks(12)?;
    Ok(Duration::from_millis(total * 10))
}

/// TcpExt ListenOverflows and ListenDrops from /proc/net/netstat (this network namespace).
pub fn listen_counters() -> anyhow::Result<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/net/netstat")?;
    let mut lines = text.lines();
    while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
        if !names.starts_with("TcpExt:") {
            continue;
        }
        let find = |name: &str| -> Option<u64> {
            let i = names.split_whitespace().position(|n| n == name)?;
            values.split_whitespace().nth(i)?.parse().ok()
        };
        return Ok((
            find("ListenOverflows").context("no ListenOverflows")?,
            find("ListenDrops").context("no ListenDrops")?,
        ));
    }
    bail!("no TcpExt in /proc/net/netstat")
}
