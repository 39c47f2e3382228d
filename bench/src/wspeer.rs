//! Node's `ws`, the most used WebSocket server library, as a peer over WebSocket: it holds idle
//! connections with a keepalive (a ping every interval, as its README recommends) while the
//! bench's clients hold as many connections to it as the game server's sessions, so its memory
//! per idle connection sits beside ours in the same run. It runs as a child process
//! (`node bench/peers/ws-hold.cjs`), `ws` taken from the TypeScript client's `node_modules`
//! (`npm ci` in clients/typescript installs it).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::client::IdleLinks;
use crate::procs::children;

/// The script, and the directory whose `node_modules` holds `ws`; `None` (with the reason) when
/// Node or the package is not there.
pub fn available() -> Result<(PathBuf, PathBuf), String> {
    let root = crate::workspace_root();
    let script = root.join("bench/peers/ws-hold.cjs");
    let modules = root.join("clients/typescript");
    if !modules.join("node_modules/ws/package.json").is_file() {
        return Err(format!(
            "no ws package in {}/node_modules (npm ci there)",
            modules.display()
        ));
    }
    match Command::new("node").arg("--version").output() {
        Ok(output) if output.status.success() => Ok((script, modules)),
        _ => Err("node is not installed".to_owned()),
    }
}

/// The `ws` server, killed and reaped on drop.
#[derive(Debug)]
pub struct WsServer {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// How it was run, for the report.
    pub command: String,
}

impl WsServer {
    /// Starts it with a keepalive ping every `interval` and waits until it listens.
    pub fn start(interval: Duration) -> anyhow::Result<WsServer> {
        let (script, modules) = available().map_err(anyhow::Error::msg)?;
        let node_version = Command::new("node")
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        let ws_version = std::fs::read_to_string(modules.join("node_modules/ws/package.json"))
            .ok()
            .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
            .and_then(|package| package["version"].as_str().map(str::to_owned))
            .unwrap_or_default();
        let mut child = Command::new("node")
            .arg(&script)
            .arg(&modules)
            .arg(interval.as_millis().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("cannot start node")?;
        children().push(child.id());
        let stdout = child.stdout.take().context("node's stdout")?;
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .context("read node's first line")?;
        let port: u16 = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|port| port.parse().ok())
            .with_context(|| format!("node said {line:?}, not `listening PORT`"))?;
        Ok(WsServer {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            command: format!(
                "Node {node_version} with ws {ws_version}, run as `node bench/peers/ws-hold.cjs \
                 clients/typescript {}` (a `WebSocketServer` on 127.0.0.1, a ping to every \
                 client every {}, a client that did not answer the last one terminated)",
                interval.as_millis(),
                humantime::format_duration(interval)
            ),
        })
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

impl Drop for WsServer {
    fn drop(&mut self) {
        let pid = self.child.id();
        children().retain(|p| *p != pid);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Connects `n` idle WebSocket clients to the peer, answering its pings (the WebSocket layer
/// does) and sending nothing, at most `concurrency` connecting at once.
pub async fn idle(addr: SocketAddr, n: usize, concurrency: usize) -> anyhow::Result<IdleLinks> {
    let url = format!("ws://127.0.0.1:{}/", addr.port());
    let clients = IdleLinks::gather(n, concurrency, None, |i| {
        let url = url.clone();
        async move {
            let stream = crate::client::dial(addr, i).await?;
            Ok(game_client::open(stream, None, Some(&url)).await?)
        }
    })
    .await;
    if clients.joined == 0 {
        bail!("no WebSocket client connected to the ws peer");
    }
    Ok(clients)
}
