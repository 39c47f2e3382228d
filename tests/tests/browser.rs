//! The demo's browser page (`/play` on the admin port) in a real browser: Debian's headless
//! Chromium, driven over the DevTools protocol, against the real `game-server` with its
//! WebSocket listener. The page connects and plays (the server's `/sessions` shows its player),
//! a screenshot of it is written under the target directory, a network blip (its connection
//! destroyed under it with `ss -K`) is resumed, leaving with a `Bye` and closing the tab counts
//! `client_quit`, and killing the browser counts a reset or an EOF, never `io_error`.

use std::time::Duration;

use game_engine::CloseReason;
use serde_json::Value;
use system_tests::browser::{Browser, Tab, screenshot_path};
use system_tests::process::ServerProcess;
use system_tests::{Metrics, has_tool, is_root, need, need_tools, poll_until};

/// The WebSocket listener on; the server acknowledges inputs within a second.
const CONFIG: &str = "[server]\nwebsocket_listen = \"127.0.0.1:0\"\n\
                      [session]\nheartbeat_interval = \"1s\"\n";

/// Bounds for a page to get somewhere, generous for a loaded 2-core machine running a browser.
const PAGE_PATIENCE: Duration = Duration::from_secs(30);

/// What `window.game.snapshot()` says, once the page has defined it.
async fn snapshot(browser: &Browser, tab: &Tab) -> Result<Value, String> {
    browser.evaluate(tab, "window.game.snapshot()").await
}

/// Waits until the page's snapshot satisfies `ok`; returns it.
async fn page_until(
    browser: &Browser,
    tab: &Tab,
    what: &str,
    ok: impl Fn(&Value) -> bool,
) -> Value {
    poll_until(what, PAGE_PATIENCE, || async {
        let seen = snapshot(browser, tab).await?;
        if ok(&seen) {
            Ok(seen)
        } else {
            Err(seen.to_string())
        }
    })
    .await
}

fn number(value: &Value, field: &str) -> u64 {
    value[field].as_u64().unwrap_or(0)
}

/// Waits until the page plays and has received at least `events` events.
async fn playing(browser: &Browser, tab: &Tab, events: u64) -> Value {
    page_until(
        browser,
        tab,
        &format!("page playing with {events} events"),
        |s| s["state"] == "playing" && number(s, "eventsReceived") >= events,
    )
    .await
}

/// Waits until `/closes` counts exactly `total` closes for `player`; returns them by reason.
async fn closes_of(
    server: &ServerProcess,
    player: &str,
    total: u64,
) -> std::collections::BTreeMap<String, u64> {
    poll_until(
        &format!("{total} closes of {player} in /closes"),
        PAGE_PATIENCE,
        || async {
            let closes = server.closes(player).await;
            if closes.values().sum::<u64>() == total {
                Ok(closes)
            } else {
                Err(format!("{closes:?}"))
            }
        },
    )
    .await
}

fn page_url(server: &ServerProcess, player: &str) -> String {
    format!("http://{}/play?player={player}", server.admin)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(all(has_chromium, is_root, has_ss)),
    ignore = "needs chromium, and root and ss to destroy the page's socket"
)]
async fn the_demo_page_plays_in_chromium_resumes_after_a_blip_and_every_close_has_its_reason() {
    need_tools(&[Browser::PROGRAM], "apt-get install chromium");
    let server = ServerProcess::loopback(CONFIG).await;
    let websocket = server
        .websocket
        .expect("the server reports its WebSocket listener");
    let mut browser = Browser::launch().await;
    let id = std::process::id();

    // 1. The page connects and plays: the server lists its player, under the page's session.
    let player = format!("web-play-{id}");
    let tab = browser.open(&page_url(&server, &player)).await;
    let seen = playing(&browser, &tab, 3).await;
    assert_eq!(seen["player"], player.as_str(), "{seen}");
    assert!(
        number(&seen, "inputsSent") >= 1,
        "the page sends inputs: {seen}"
    );
    let listed = poll_until(&format!("{player} in /sessions"), PAGE_PATIENCE, || async {
        server
            .session_of(&player)
            .await
            .ok_or_else(|| "not listed".to_owned())
    })
    .await;
    assert_eq!(
        listed["id"].to_string(),
        seen["sessionId"].as_str().unwrap_or_default(),
        "the page shows the session the server holds: {listed}"
    );
    // The server applies its inputs and says so (its Ack), and every event decodes.
    let seen = page_until(&browser, &tab, "an acknowledged input", |s| {
        number(s, "inputsApplied") >= 1
    })
    .await;
    assert_eq!(seen["invalidPayloads"], 0, "{seen}");

    // 2. A screenshot of the page playing.
    let shot = screenshot_path("demo-page");
    let size = browser.screenshot(&tab, &shot).await;
    let png = std::fs::read(&shot).expect("read the screenshot back");
    assert_eq!(png.len(), size);
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is not a PNG",
        shot.display()
    );
    assert!(
        size > 10_000,
        "a {size}-byte screenshot shows next to nothing"
    );
    println!("screenshot of the demo page: {}", shot.display());

    // 3. A network blip: the page's connection destroyed under it (the browser sees it abort,
    // the server a reset). The page comes back on the same session; the server counts the
    // reset and the resume.
    need(
        is_root() && has_tool("ss"),
        "root and ss (iproute2) to destroy a socket",
    );
    let before = server.scrape().await;
    let session = seen["sessionId"].clone();
    let applied = number(&seen, "inputsApplied");
    let killed = std::process::Command::new("ss")
        .args(["-K", "-t", "state", "established", "dst", "127.0.0.1"])
        .args(["dport", "=", &format!(":{}", websocket.port())])
        .output()
        .expect("run ss -K");
    assert!(killed.status.success(), "ss -K failed: {killed:?}");
    let seen = page_until(&browser, &tab, "the page resumed", |s| {
        s["state"] == "playing" && s["resumed"] == true && number(s, "resumes") == 1
    })
    .await;
    assert_eq!(
        seen["sessionId"], session,
        "resumed, not a new session: {seen}"
    );
    assert_eq!(
        browser
            .evaluate(&tab, "document.getElementById('resumed').hidden")
            .await,
        Ok(Value::Bool(false)),
        "the page shows that it resumed"
    );
    // Every event arrived once, those the server replayed included.
    let seen = page_until(&browser, &tab, "events after the resume", |s| {
        number(s, "lastEventSeq") > number(&seen, "lastEventSeq")
    })
    .await;
    assert_eq!(seen["eventsReceived"], seen["lastEventSeq"], "{seen}");
    server
        .expect_closes(&before, &[(CloseReason::PeerReset, 1)], PAGE_PATIENCE)
        .await;
    let resumed =
        |scrape: &system_tests::Scrape| scrape.get("gameserver_sessions_resumed_total", &[]);
    let after = server.scrape().await;
    assert_eq!(
        resumed(&after) - resumed(&before),
        1.0,
        "one resume counted"
    );
    // The session goes on: inputs after the resume are applied.
    page_until(&browser, &tab, "inputs applied after the resume", |s| {
        number(s, "inputsApplied") > applied + 1
    })
    .await;

    // 4. Leaving: Bye{client_quit}, the server's Bye and close frame, then the tab closes.
    let before = server.scrape().await;
    let reason = browser
        .evaluate(&tab, "window.game.leave()")
        .await
        .expect("leave()");
    assert_eq!(reason, "client_quit", "the page's reason for closing");
    let seen = snapshot(&browser, &tab).await.expect("snapshot");
    assert_eq!(seen["state"], "closed", "{seen}");
    assert_eq!(seen["lastBye"]["name"], "client_quit", "{seen}");
    browser.close(&tab).await;
    server
        .expect_closes(&before, &[(CloseReason::ClientQuit, 1)], PAGE_PATIENCE)
        .await;
    // The player's whole story: the blip's reset, then the quit.
    let closes = closes_of(&server, &player, 2).await;
    assert_eq!(closes.get("client_quit"), Some(&1), "{closes:?}");
    assert_eq!(closes.get("peer_reset"), Some(&1), "{closes:?}");
    assert!(
        server.session_of(&player).await.is_none(),
        "the player left the server"
    );

    // 5. The browser killed while a page plays: a reset or an EOF, never io_error.
    let victim = format!("web-kill-{id}");
    let tab = browser.open(&page_url(&server, &victim)).await;
    playing(&browser, &tab, 2).await;
    let before = server.scrape().await;
    browser.kill().await;
    let reason = server
        .expect_one_close(
            &before,
            &[CloseReason::PeerEof, CloseReason::PeerReset],
            PAGE_PATIENCE,
        )
        .await;
    let closes = closes_of(&server, &victim, 1).await;
    assert_eq!(closes.get(reason.as_str()), Some(&1), "{closes:?}");
}

/// With `[tls]` set the page is told `wss` and plays over WebSocket with TLS (the browser told
/// to accept the test's self-signed certificate), and leaves with `client_quit`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(has_chromium),
    ignore = "needs chromium (apt-get install chromium)"
)]
async fn over_tls_the_demo_page_plays_over_wss() {
    need_tools(&[Browser::PROGRAM], "apt-get install chromium");
    let cert = system_tests::tls::TestCert::new("browser-wss");
    let server = ServerProcess::loopback(&format!("{CONFIG}{}", cert.config())).await;
    let browser = Browser::launch_with(&["--ignore-certificate-errors"]).await;
    let player = format!("web-wss-{}", std::process::id());
    let before = server.scrape().await;
    let tab = browser.open(&page_url(&server, &player)).await;
    let seen = playing(&browser, &tab, 3).await;
    assert_eq!(seen["player"], player.as_str(), "{seen}");
    let during = server.scrape().await;
    assert_eq!(during.accepted_since(&before, "wss"), 1.0);
    assert_eq!(during.accepted_since(&before, "websocket"), 0.0);
    let reason = browser
        .evaluate(&tab, "window.game.leave()")
        .await
        .expect("leave()");
    assert_eq!(reason, "client_quit");
    browser.close(&tab).await;
    server
        .expect_closes(&before, &[(CloseReason::ClientQuit, 1)], PAGE_PATIENCE)
        .await;
}

/// A link that points the page at another WebSocket server (`?ws=`) cannot make it send its
/// `Hello` (and its token) there: by default the page refuses and says why, and the browser
/// never connects; an origin the operator lists in `admin.page_websocket_origins` is used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(has_chromium),
    ignore = "needs chromium (apt-get install chromium)"
)]
async fn the_page_connects_only_to_its_own_server_unless_the_operator_allows_another() {
    need_tools(&[Browser::PROGRAM], "apt-get install chromium");
    // Stands for the other server: it must see no connection.
    let elsewhere = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let other = format!(
        "ws://127.0.0.1:{}",
        elsewhere.local_addr().expect("addr").port()
    );
    let server = ServerProcess::loopback(CONFIG).await;
    let browser = Browser::launch().await;
    let url = format!(
        "http://{}/play?player=lured-{}&ws={other}/",
        server.admin,
        std::process::id()
    );
    let tab = browser.open(&url).await;
    let seen = page_until(&browser, &tab, "the page refusing the link", |s| {
        s["state"] == "closed"
    })
    .await;
    let reason = seen["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("not this server"), "{seen}");
    let lured = tokio::time::timeout(Duration::from_secs(2), elsewhere.accept()).await;
    assert!(lured.is_err(), "the page connected to {other}");
    browser.close(&tab).await;

    // Allowed by the operator: the page (and its Content-Security-Policy) let it through.
    let allowing = ServerProcess::loopback(&format!(
        "{CONFIG}[admin]\npage_websocket_origins = [\"{other}\"]\n"
    ))
    .await;
    let url = format!(
        "http://{}/play?player=sent-{}&ws={other}/",
        allowing.admin,
        std::process::id()
    );
    let tab = browser.open(&url).await;
    tokio::time::timeout(PAGE_PATIENCE, elsewhere.accept())
        .await
        .expect("the page connects to the allowed origin")
        .expect("accept");
    browser.close(&tab).await;
}
