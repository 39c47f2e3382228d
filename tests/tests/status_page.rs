//! The status page (`/status` on the admin port) and `game-server status`, against the real
//! binary: the page in Debian's headless Chromium while client-sim plays its mix (the page's
//! closes by reason match `/closes`, a surge of vanished clients shows within 5 s, screenshots
//! at rest and during the surge), the kick button with and without the token, and the terminal
//! summary's exit status while the server is ready and while it drains.

use std::time::{Duration, Instant};

use client_sim::{Mix, Options, ProgressMode};
use serde_json::Value;
use system_tests::browser::{Browser, Tab, screenshot_path};
use system_tests::process::{ServerProcess, game_server_binary, run_async};
use system_tests::{PATIENCE, RawClient, need_tools, poll_until};

/// Heartbeat and idle timeout short enough for vanished clients to be found in 2 s.
const CONFIG: &str = "[session]\nheartbeat_interval = \"500ms\"\nidle_timeout = \"2s\"\n";

/// Bounds for the page to get somewhere, generous for a loaded 2-core machine with a browser.
const PAGE_PATIENCE: Duration = Duration::from_secs(30);

/// Clients that vanish together: the surge.
const SURGE: usize = 40;

fn status_url(server: &ServerProcess) -> String {
    format!("http://{}/status", server.admin)
}

/// The page's closes table: reason to (last 10 s, last minute, total).
async fn closes_on_page(browser: &Browser, tab: &Tab) -> Result<Value, String> {
    browser
        .evaluate(
            tab,
            "Object.fromEntries([...document.querySelectorAll('#closes tbody tr')].map(r => \
             [r.dataset.reason, {surge: r.className === 'surge', \
             last10s: +r.querySelector('[data-field=last10s]').textContent, \
             minute: +r.querySelector('[data-field=minute]').textContent, \
             total: +r.querySelector('[data-field=total]').textContent}]))",
        )
        .await
}

async fn text_of(browser: &Browser, tab: &Tab, id: &str) -> String {
    browser
        .evaluate(tab, &format!("document.getElementById('{id}').textContent"))
        .await
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Waits until the page has loaded and shown its first reading.
async fn first_reading(browser: &Browser, tab: &Tab) {
    poll_until("the page's first reading", PAGE_PATIENCE, || async {
        match text_of(browser, tab, "ready").await.as_str() {
            "ready" => Ok(()),
            other => Err(other.to_owned()),
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(has_chromium), ignore = "needs chromium")]
async fn the_status_page_shows_sessions_closes_that_match_and_a_surge_within_five_seconds() {
    need_tools(&[Browser::PROGRAM], "apt-get install chromium");
    let server = ServerProcess::loopback(CONFIG).await;
    let browser = Browser::launch().await;
    let tab = browser.open(&status_url(&server)).await;
    first_reading(&browser, &tab).await;

    // 1. client-sim plays its mix; meanwhile the page shows the sessions it holds.
    let mix = tokio::spawn(client_sim::run(Options {
        server: server.addr.to_string(),
        clients: 24,
        mix: Mix::all(),
        metrics_url: Some(format!("http://{}/metrics", server.admin)),
        admin_token: Some(system_tests::TEST_ADMIN_TOKEN.to_owned()),
        progress: ProgressMode::Off,
        crash_exe: Some(env!("CARGO_BIN_EXE_crash-child").into()),
        ..Options::default()
    }));
    let shown = poll_until("sessions on the page", PAGE_PATIENCE, || async {
        let shown: u64 = text_of(&browser, &tab, "sessions-total")
            .await
            .parse()
            .unwrap_or(0);
        if shown > 0 {
            Ok(shown)
        } else {
            Err("no session shown".to_owned())
        }
    })
    .await;
    eprintln!("measured: the page showed {shown} sessions while the mix ran");
    let report = mix
        .await
        .expect("client-sim task")
        .expect("client-sim runs");
    assert!(report.passed(), "{}", report.render());

    // 2. Every close of the run, by reason, as /closes counts them.
    let counted = server.closes("").await;
    assert!(
        counted.values().sum::<u64>() >= 24,
        "the mix closed its sessions: {counted:?}"
    );
    let page = poll_until(
        "the page's closes to match /closes",
        PAGE_PATIENCE,
        || async {
            let page = closes_on_page(&browser, &tab).await?;
            let on_page: std::collections::BTreeMap<String, u64> = page
                .as_object()
                .map(|rows| {
                    rows.iter()
                        .map(|(reason, row)| (reason.clone(), row["total"].as_u64().unwrap_or(0)))
                        .collect()
                })
                .unwrap_or_default();
            if on_page == counted {
                Ok(page)
            } else {
                Err(format!("page {on_page:?}, /closes {counted:?}"))
            }
        },
    )
    .await;
    eprintln!("measured: closes on the page {page}");
    let rest = screenshot_path("status-page-rest");
    assert!(browser.screenshot(&tab, &rest).await > 10_000);

    // 3. A surge: SURGE clients join and then go silent. The server finds them after
    // idle_timeout (2 s); the page flags idle_timeout as surging within 5 s of the silence.
    let mut silent = Vec::new();
    for i in 0..SURGE {
        let (client, _) = RawClient::join(server.addr, &format!("surge-{i}")).await;
        silent.push(client);
    }
    let vanished = Instant::now();
    let seen = poll_until("the surge on the page", PAGE_PATIENCE, || async {
        let page = closes_on_page(&browser, &tab).await?;
        let row = &page["idle_timeout"];
        if row["surge"] == true && row["minute"].as_u64().unwrap_or(0) >= SURGE as u64 {
            Ok(vanished.elapsed())
        } else {
            Err(page.to_string())
        }
    })
    .await;
    eprintln!(
        "measured: {SURGE} vanished clients flagged on the page {seen:?} after they went silent"
    );
    assert!(
        seen <= Duration::from_secs(5),
        "the surge took {seen:?} to show"
    );
    let surge = screenshot_path("status-page-surge");
    assert!(browser.screenshot(&tab, &surge).await > 10_000);
    drop(silent);

    // 4. "Why did surge-7 drop?": the page finds its close, with the kernel's view.
    browser
        .evaluate(
            &tab,
            "document.getElementById('why-player').value = 'surge-7'; \
             document.getElementById('why-find').click(); true",
        )
        .await
        .expect("search");
    let why = poll_until(
        "the close of surge-7 on the page",
        PAGE_PATIENCE,
        || async {
            let rows = browser
                .evaluate(
                    &tab,
                    "[...document.querySelectorAll('#why tbody tr')].map(r => r.innerText)",
                )
                .await?;
            match rows.as_array() {
                Some(rows) if rows.len() == 1 => {
                    Ok(rows[0].as_str().unwrap_or_default().to_owned())
                }
                _ => Err(rows.to_string()),
            }
        },
    )
    .await;
    assert!(
        why.contains("idle_timeout") && why.contains("established"),
        "the close and the kernel's view of it: {why}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(has_chromium), ignore = "needs chromium")]
async fn the_kick_button_needs_the_token() {
    need_tools(&[Browser::PROGRAM], "apt-get install chromium");
    // The client answers no ping until the first refusal: its session must outlive however long
    // the browser takes to get there (it idled out at the shared 2 s on a loaded machine).
    let server = ServerProcess::loopback(
        "[session]\nheartbeat_interval = \"500ms\"\nidle_timeout = \"60s\"\n",
    )
    .await;
    let (mut client, _) = RawClient::join(server.addr, "kick-me").await;
    let browser = Browser::launch().await;
    let tab = browser.open(&status_url(&server)).await;
    first_reading(&browser, &tab).await;
    let click = "document.getElementById('session-player').value = 'kick-me'; \
                 document.getElementById('session-find').click(); true";
    let kick = "document.querySelector('#sessions button[data-session]').click(); true";
    let press = |script: &'static str| {
        let browser = &browser;
        let tab = &tab;
        async move {
            browser
                .evaluate(tab, script)
                .await
                .expect("the page runs it")
        }
    };
    press(click).await;
    poll_until("kick-me listed", PAGE_PATIENCE, || async {
        match browser
            .evaluate(
                &tab,
                "document.querySelectorAll('#sessions button[data-session]').length",
            )
            .await?
            .as_u64()
        {
            Some(1) => Ok(()),
            other => Err(format!("{other:?} rows")),
        }
    })
    .await;

    // Without the token: refused, and the player plays on.
    press(kick).await;
    let note = poll_until("the refusal", PAGE_PATIENCE, || async {
        let note = text_of(&browser, &tab, "session-note").await;
        if note.starts_with("kick") {
            Ok(note)
        } else {
            Err(note)
        }
    })
    .await;
    assert!(note.contains("401"), "{note}");
    client.ping_pong(1).await;

    // With it: the player is kicked.
    browser
        .evaluate(
            &tab,
            &format!(
                "const t = document.getElementById('token'); t.value = '{}'; \
                 t.dispatchEvent(new Event('input')); true",
                system_tests::TEST_ADMIN_TOKEN
            ),
        )
        .await
        .expect("type the token");
    press(kick).await;
    let bye = client.expect_bye(protocol::ByeCode::Kicked).await;
    eprintln!("kicked from the page: {bye:?}");
    // The page loaded nothing from outside the server: its policy allows its own origin only.
    let (status, _) = server.http("GET", "/status").await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn game_server_status_prints_the_summary_and_fails_while_the_server_drains() {
    let server = ServerProcess::loopback(
        "[session]\nlinger_timeout = \"20s\"\n[shutdown]\ndrain_timeout = \"30s\"\n",
    )
    .await;
    let (_held, _) = RawClient::join(server.addr, "status-held").await;
    let url = format!("http://{}", server.admin);
    let status = || {
        let url = url.clone();
        async move {
            run_async(
                tokio::process::Command::new(game_server_binary())
                    .args(["status", "--url", &url])
                    .env_remove("GAMESERVER__ADMIN__TOKEN"),
            )
            .await
        }
    };
    let ready = status().await;
    let printed = ready.stdout.clone();
    assert!(ready.status.success(), "{ready}");
    assert!(printed.contains("READY"), "{printed}");
    assert!(printed.contains("sessions 1 (tcp 1)"), "{printed}");
    eprintln!("{printed}");

    // The held player never reads its Bye nor closes: the drain lasts its linger timeout.
    server.signal("TERM");
    let draining = poll_until("status to fail while draining", PATIENCE, || async {
        let ran = status().await;
        if ran.status.success() {
            Err(ran.stdout)
        } else {
            Ok(ran)
        }
    })
    .await;
    assert_eq!(draining.status.code(), Some(1), "{draining}");
    assert!(draining.stdout.contains("DRAINING"), "{draining}");

    // Nothing listening: a clear error and a failure.
    let nowhere = run_async(tokio::process::Command::new(game_server_binary()).args([
        "status",
        "--url",
        "http://127.0.0.1:9",
    ]))
    .await;
    assert_eq!(nowhere.status.code(), Some(1), "{nowhere}");
    assert!(
        nowhere
            .stderr
            .contains("status http://127.0.0.1:9/status/data"),
        "{nowhere}"
    );
}
