//! Mosquitto, the Debian package, as a peer: an MQTT broker holds idle connections and detects
//! silent clients with the same tools as the game server, so its figures sit beside ours in the
//! same run. It runs as a child process (`mosquitto -c FILE`) on a free loopback port, with a
//! configuration file written by the bench; the clients speak just enough MQTT 3.1.1 by hand:
//! `CONNECT` (clean session, a keepalive, a client id), `CONNACK`, `PINGREQ` and `PINGRESP`.
//!
//! Mosquitto inherits this process's descriptor limit (the bench raises its soft limit to the
//! hard one, 20,000 here), which [`Broker::start`] checks in `/proc/PID/limits`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use game_client::{Link, Tls};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::client::{self, End, IdleLinks};
use crate::procs::{children, free_port};

/// Longest wait for a `CONNACK` or a `PINGRESP`.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// `PINGREQ`, and the `PINGRESP` that answers it.
const PINGREQ: [u8; 2] = [0xc0, 0x00];
const PINGRESP: [u8; 2] = [0xd0, 0x00];

/// The mosquitto executable: `BENCH_MOSQUITTO`, or `mosquitto` on the `PATH` or in `/usr/sbin`
/// (where Debian installs it, outside a non-root `PATH`). `None` when it is not installed.
pub fn mosquitto() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("BENCH_MOSQUITTO") {
        return Some(PathBuf::from(path)).filter(|p| p.exists());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|dir| dir.join("mosquitto"))
        .find(|candidate| candidate.is_file())
}

/// A mosquitto child process, killed and reaped on drop.
#[derive(Debug)]
pub struct Broker {
    child: Child,
    /// Its MQTT listener.
    pub addr: SocketAddr,
    /// How it was run, for the report: version, command line and configuration.
    pub command: String,
}

impl Broker {
    /// Starts mosquitto with a generated configuration (one listener on a free loopback port,
    /// anonymous clients allowed, no persistence, errors and warnings only, to stderr, which goes
    /// to `log_dir/mosquitto-LABEL.log`) and waits until it accepts connections. `fds`: the
    /// descriptors it must be able to open.
    pub fn start(path: &Path, log_dir: &Path, label: &str, fds: u64) -> anyhow::Result<Broker> {
        Broker::start_with(path, log_dir, label, fds, None)
    }

    /// [`Broker::start`], over TLS when `tls` names a certificate and its key (PEM files):
    /// mosquitto's `certfile` and `keyfile` on its listener.
    pub fn start_with(
        path: &Path,
        log_dir: &Path,
        label: &str,
        fds: u64,
        tls: Option<(&Path, &Path)>,
    ) -> anyhow::Result<Broker> {
        let addr = free_port()?;
        let mut settings = vec![format!("listener {} 127.0.0.1", addr.port())];
        if let Some((cert, key)) = tls {
            settings.push(format!("certfile {}", cert.display()));
            settings.push(format!("keyfile {}", key.display()));
        }
        settings.extend([
            "allow_anonymous true".to_owned(),
            "persistence false".to_owned(),
            "log_dest stderr".to_owned(),
            "log_type error".to_owned(),
            "log_type warning".to_owned(),
            "connection_messages false".to_owned(),
        ]);
        let conf = log_dir.join(format!("mosquitto-{label}.conf"));
        std::fs::write(
            &conf,
            format!(
                "# Written by the bench for one run.\n{}\n",
                settings.join("\n")
            ),
        )
        .with_context(|| format!("cannot write {}", conf.display()))?;
        let log_path = log_dir.join(format!("mosquitto-{label}.log"));
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("cannot create {}", log_path.display()))?;
        let version = crate::report::command_line(&path.display().to_string(), &["-h"]);
        let child = Command::new(path)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", path.display()))?;
        children().push(child.id());
        let mut broker = Broker {
            child,
            addr,
            command: format!(
                "{version}, run as `{} -c FILE` with FILE: `{}` (PORT: a free port)",
                path.display(),
                settings
                    .join("; ")
                    .replace(&format!("listener {} ", addr.port()), "listener PORT ")
                    .replace(&log_dir.display().to_string(), "DIR"),
            ),
        };
        broker.wait_ready(&log_path)?;
        let limit = open_files_limit(broker.pid())?;
        if limit < fds {
            bail!("mosquitto may open only {limit} descriptors, {fds} needed");
        }
        Ok(broker)
    }

    fn wait_ready(&mut self, log: &Path) -> anyhow::Result<()> {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "mosquitto exited at start ({status}); see {}",
                    log.display()
                );
            }
            if std::net::TcpStream::connect_timeout(&self.addr, Duration::from_secs(1)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("mosquitto not ready within 20 s; see {}", log.display())
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its resident set size, KiB.
    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        crate::procs::rss_kib(self.pid())
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let pid = self.child.id();
        children().retain(|p| *p != pid);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The soft "Max open files" of a process.
fn open_files_limit(pid: u32) -> anyhow::Result<u64> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits"))?;
    limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no Max open files in /proc/<pid>/limits")
}

/// An MQTT 3.1.1 `CONNECT`: clean session, no will, no credentials.
fn connect_packet(client_id: &str, keepalive: u16) -> Vec<u8> {
    let id = client_id.as_bytes();
    let mut packet = vec![0x10, 0];
    packet.extend_from_slice(&[0, 4, b'M', b'Q', b'T', b'T', 4, 0x02]);
    packet.extend_from_slice(&keepalive.to_be_bytes());
    packet.extend_from_slice(&(id.len() as u16).to_be_bytes());
    packet.extend_from_slice(id);
    // Client ids here are short: the remaining length fits one byte.
    packet[1] = (packet.len() - 2) as u8;
    packet
}

/// Connects client number `i` (from the same source addresses as the game clients), over TLS
/// when `tls` is given, and waits for a `CONNACK` that accepts it.
pub async fn connect(
    addr: SocketAddr,
    i: usize,
    client_id: &str,
    keepalive: u16,
    tls: Option<&Tls>,
) -> anyhow::Result<Link> {
    let stream = client::dial(addr, i).await.context("connect")?;
    let mut stream = game_client::open(stream, tls, None)
        .await
        .context("TLS handshake")?;
    stream
        .write_all(&connect_packet(client_id, keepalive))
        .await?;
    let mut connack = [0u8; 4];
    tokio::time::timeout(ANSWER_TIMEOUT, stream.read_exact(&mut connack))
        .await
        .context("no CONNACK")??;
    if connack[0] != 0x20 || connack[3] != 0 {
        bail!("CONNACK refused: {connack:02x?}");
    }
    Ok(stream)
}

/// One `PINGREQ` and its `PINGRESP`.
pub async fn ping(stream: &mut Link) -> anyhow::Result<()> {
    stream.write_all(&PINGREQ).await?;
    let mut answer = [0u8; 2];
    tokio::time::timeout(ANSWER_TIMEOUT, stream.read_exact(&mut answer))
        .await
        .context("no PINGRESP")??;
    if answer != PINGRESP {
        bail!("expected PINGRESP, got {answer:02x?}");
    }
    Ok(())
}

/// Connects `n` idle MQTT clients with `keepalive` seconds, each sending `PINGREQ` every
/// `every`, at most `concurrency` connecting at once, over TLS when `tls` is given; returns once
/// each has connected or failed.
pub async fn idle(
    addr: SocketAddr,
    n: usize,
    concurrency: usize,
    keepalive: u16,
    every: Duration,
    name: &str,
    tls: Option<Tls>,
) -> IdleLinks {
    IdleLinks::gather(n, concurrency, Some((every, &PINGREQ)), |i| {
        let id = format!("{name}-{i}");
        let tls = tls.clone();
        async move { connect(addr, i, &id, keepalive, tls.as_ref()).await }
    })
    .await
}

/// `n` clients connect with `keepalive` seconds, exchange two `PINGREQ`/`PINGRESP` and then go
/// silent together, without closing; each waits (at most `limit`) until the broker closes its
/// connection. `End::Reaped.silent` is when its last packet was written.
pub async fn silent(
    addr: SocketAddr,
    n: usize,
    concurrency: usize,
    keepalive: u16,
    name: &str,
    limit: Duration,
) -> Vec<End> {
    let gate = Arc::new(Semaphore::new(concurrency.max(1)));
    let start = Arc::new(tokio::sync::Barrier::new(n + 1));
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let gate = gate.clone();
        let start = start.clone();
        let id = format!("{name}-{i}");
        tasks.push(tokio::spawn(async move {
            let permit = gate.acquire_owned().await;
            let connected = connect(addr, i, &id, keepalive, None).await;
            drop(permit);
            start.wait().await;
            let Ok(mut stream) = connected else {
                return End::Failed;
            };
            if ping(&mut stream).await.is_err() {
                return End::Failed;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            if stream.write_all(&PINGREQ).await.is_err() {
                return End::Failed;
            }
            let silent = Instant::now();
            let mut buf = [0u8; 64];
            let closed = tokio::time::timeout(limit, async {
                loop {
                    match stream.read(&mut buf).await {
                        Ok(n) if n > 0 => {}
                        _ => return Instant::now(),
                    }
                }
            })
            .await;
            match closed {
                Ok(closed) => End::Reaped { silent, closed },
                Err(_) => {
                    let _ = stream.set_abortive();
                    End::NotReaped
                }
            }
        }));
    }
    start.wait().await;
    let mut ends = Vec::with_capacity(n);
    for task in tasks {
        ends.push(task.await.unwrap_or(End::Failed));
    }
    ends
}
