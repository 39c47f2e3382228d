//! A real browser for tests: Debian's `chromium`, headless, driven over the Chrome DevTools
//! Protocol (CDP) on a WebSocket.
//!
//! Chromium starts in a process group of its own with a scratch profile and
//! `--remote-debugging-port=0`; the port it picked is read from the profile's
//! `DevToolsActivePort`. Each tab is a target the harness attaches to with a flat session, so
//! one WebSocket carries every command. [`Browser::kill`] (and the drop of a [`Browser`]) sends
//! SIGKILL to the whole group: the browser, its renderers and its network service, which holds
//! the pages' sockets.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::sync::Mutex;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use crate::process::ScratchDir;

/// How long Chromium may take to start and open its DevTools port on a loaded machine.
pub const LAUNCH_PATIENCE: Duration = Duration::from_secs(60);
/// How long one DevTools command may take (a screenshot renders the page).
pub const COMMAND_PATIENCE: Duration = Duration::from_secs(30);

/// The browser's viewport, and so the screenshot's size.
const WINDOW: (u32, u32) = (1000, 760);

/// A headless Chromium. Killed, with every process of its group, on drop.
#[derive(Debug)]
pub struct Browser {
    // Dropped in this order: the group killed first, the profile removed last.
    group: Group,
    child: Child,
    devtools: Mutex<DevTools>,
    _profile: ScratchDir,
}

/// A process group, sent SIGKILL when dropped (whatever path the test took).
#[derive(Debug)]
struct Group {
    /// The group's id: its leader's pid.
    id: u32,
    alive: bool,
}

impl Group {
    /// SIGKILL to every process of the group, with kill(1).
    fn kill(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-s", "KILL", "--", &format!("-{}", self.id)])
            .stderr(Stdio::null())
            .status();
        self.alive = false;
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if self.alive {
            self.kill();
        }
    }
}

/// One tab, attached.
#[derive(Debug, Clone)]
pub struct Tab {
    target: String,
    session: String,
}

/// The browser-wide DevTools connection: commands go out numbered, and the answer with the
/// same number comes back among events, which are skipped.
#[derive(Debug)]
struct DevTools {
    ws: WebSocketStream<TcpStream>,
    next_id: u64,
}

impl Browser {
    /// The program the harness runs.
    pub const PROGRAM: &str = "chromium";

    /// Starts Chromium and connects to its DevTools port. As root (CI) it needs
    /// `--no-sandbox`.
    pub async fn launch() -> Browser {
        Browser::launch_with(&[]).await
    }

    /// [`Browser::launch`] with more command-line switches (such as
    /// `--ignore-certificate-errors`, for a server with a self-signed certificate).
    pub async fn launch_with(switches: &[&str]) -> Browser {
        let profile = ScratchDir::new("chromium");
        let data_dir = profile.path().join("profile");
        let log_path = profile.path().join("chromium.log");
        let log = std::fs::File::create(&log_path).expect("create the chromium log");
        let mut command = Command::new(Browser::PROGRAM);
        command
            .args([
                "--headless=new",
                "--no-sandbox",
                "--remote-debugging-port=0",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-extensions",
                "--disable-background-networking",
                // The page's timers (its input every second, its watchdog) keep their pace in
                // a tab the headless browser does not show.
                "--disable-background-timer-throttling",
                "--disable-backgrounding-occluded-windows",
                "--disable-renderer-backgrounding",
                &format!("--window-size={},{}", WINDOW.0, WINDOW.1),
            ])
            .args(switches)
            .arg(format!("--user-data-dir={}", data_dir.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .process_group(0)
            .kill_on_drop(true);
        let child = command.spawn().expect("spawn chromium");
        let group = Group {
            id: child.id().expect("chromium's pid"),
            alive: true,
        };
        let port_file = data_dir.join("DevToolsActivePort");
        let endpoint =
            crate::poll_until("DevToolsActivePort from chromium", LAUNCH_PATIENCE, || {
                devtools_endpoint(&port_file, &log_path)
            })
            .await;
        let stream = TcpStream::connect(endpoint.0)
            .await
            .expect("connect to the DevTools port");
        let (ws, _) = tokio_tungstenite::client_async(endpoint.1, stream)
            .await
            .expect("the DevTools WebSocket upgrade");
        Browser {
            group,
            child,
            devtools: Mutex::new(DevTools { ws, next_id: 1 }),
            _profile: profile,
        }
    }

    /// Opens `url` in a new tab and attaches to it.
    pub async fn open(&self, url: &str) -> Tab {
        let created = self
            .call(None, "Target.createTarget", json!({"url": url}))
            .await;
        let target = created["targetId"]
            .as_str()
            .expect("a target id")
            .to_owned();
        let attached = self
            .call(
                None,
                "Target.attachToTarget",
                json!({"targetId": target, "flatten": true}),
            )
            .await;
        let session = attached["sessionId"]
            .as_str()
            .expect("a session id")
            .to_owned();
        Tab { target, session }
    }

    /// Evaluates `expression` in the tab, awaiting it if it is a promise; its value as JSON, or
    /// the exception it threw (a page still loading has not defined its globals yet).
    pub async fn evaluate(&self, tab: &Tab, expression: &str) -> Result<Value, String> {
        let answer = self
            .call(
                Some(&tab.session),
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
            )
            .await;
        if let Some(exception) = answer.get("exceptionDetails") {
            return Err(exception["exception"]["description"]
                .as_str()
                .map_or_else(|| exception.to_string(), str::to_owned));
        }
        Ok(answer["result"]["value"].clone())
    }

    /// Writes a PNG screenshot of the tab to `path` (its directory created); returns its size.
    pub async fn screenshot(&self, tab: &Tab, path: &Path) -> usize {
        let shot = self
            .call(
                Some(&tab.session),
                "Page.captureScreenshot",
                json!({"format": "png"}),
            )
            .await;
        let png = decode_base64(shot["data"].as_str().expect("screenshot data"))
            .expect("the screenshot is base64");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("create the screenshot's directory");
        }
        std::fs::write(path, &png).expect("write the screenshot");
        png.len()
    }

    /// Closes the tab, as a player closing it would.
    pub async fn close(&self, tab: &Tab) {
        self.call(None, "Target.closeTarget", json!({"targetId": tab.target}))
            .await;
    }

    /// SIGKILL to every process of the browser's group, as a crash or `kill -9` of the browser
    /// would; then reaps it.
    pub async fn kill(&mut self) {
        self.group.kill();
        tokio::time::timeout(COMMAND_PATIENCE, self.child.wait())
            .await
            .expect("chromium dies at once")
            .expect("reap chromium");
    }

    /// Sends one command (to a tab's session, or to the browser) and returns its result.
    async fn call(&self, session: Option<&str>, method: &str, params: Value) -> Value {
        let mut devtools = self.devtools.lock().await;
        let id = devtools.next_id;
        devtools.next_id += 1;
        let mut command = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            command["sessionId"] = json!(session);
        }
        let exchange = async {
            devtools
                .ws
                .send(Message::Text(command.to_string().into()))
                .await
                .expect("send a DevTools command");
            loop {
                let message = devtools
                    .ws
                    .next()
                    .await
                    .expect("the DevTools connection stays open")
                    .expect("read from DevTools");
                let Message::Text(text) = message else {
                    continue;
                };
                let answer: Value = serde_json::from_str(&text).expect("DevTools sends JSON");
                if answer["id"] != id {
                    continue; // an event, or nothing this command waits for
                }
                if let Some(error) = answer.get("error") {
                    panic!("DevTools {method} failed: {error}");
                }
                return answer["result"].clone();
            }
        };
        tokio::time::timeout(COMMAND_PATIENCE, exchange)
            .await
            .unwrap_or_else(|_| panic!("DevTools {method}: no answer within {COMMAND_PATIENCE:?}"))
    }
}

/// The DevTools address and WebSocket URL from `DevToolsActivePort` (the port, then the
/// browser target's path), once Chromium has written it; otherwise the end of its log.
async fn devtools_endpoint(
    port_file: &Path,
    log: &Path,
) -> Result<(std::net::SocketAddr, String), String> {
    let text = std::fs::read_to_string(port_file).unwrap_or_default();
    let mut lines = text.lines();
    match (
        lines.next().and_then(|p| p.trim().parse::<u16>().ok()),
        lines.next(),
    ) {
        (Some(port), Some(path)) => Ok((
            std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            format!("ws://127.0.0.1:{port}{}", path.trim()),
        )),
        _ => {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            Err(format!(
                "no DevTools port yet; chromium's log ends:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            ))
        }
    }
}

/// Standard base64 (RFC 4648, with padding), as DevTools sends binary data.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        Some(u32::from(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        }))
    }
    let bytes = text.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut word = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            word |= value(*c)? << (18 - 6 * i);
        }
        let whole = (chunk.len() * 6) / 8;
        out.extend_from_slice(&word.to_be_bytes()[1..=whole]);
    }
    Some(out)
}

/// Where a test's screenshot goes: `<target>/browser/<name>.png`, kept after the run.
pub fn screenshot_path(name: &str) -> PathBuf {
    crate::process::target_dir()
        .join("browser")
        .join(format!("{name}.png"))
}

#[cfg(test)]
mod tests {
    use super::decode_base64;

    #[test]
    fn base64_decodes_with_and_without_padding() {
        assert_eq!(decode_base64("aGVsbG8=").as_deref(), Some(&b"hello"[..]));
        assert_eq!(decode_base64("aGVsbG8h").as_deref(), Some(&b"hello!"[..]));
        assert_eq!(decode_base64("aGk=").as_deref(), Some(&b"hi"[..]));
        assert_eq!(
            decode_base64("iVBORw0KGgo=").as_deref(),
            Some(&b"\x89PNG\r\n\x1a\n"[..])
        );
        assert_eq!(decode_base64("a*b="), None);
    }
}
