//! `game-server status`: the status page's summary in a terminal, for hosts reached over SSH
//! only. It reads `/status/data` from the admin listener, prints it, and exits 0 while the
//! server is ready, 1 while it drains or cannot be read.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;

/// How long one reading waits for the admin listener.
pub const STATUS_TIMEOUT: Duration = Duration::from_secs(5);

/// How often `--watch` reads again.
pub const WATCH_EVERY: Duration = Duration::from_secs(2);

/// Runs the command: one summary, or (`watch`) one every [`WATCH_EVERY`] until interrupted.
pub fn run(name: &str, url: &str, token: Option<&str>, watch: bool) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("{name}: status: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let data_url = format!("{}/status/data", url.trim_end_matches('/'));
    runtime.block_on(async {
        loop {
            let outcome = read(&data_url, token).await;
            if watch {
                // Clear the screen and go home, as `watch` does.
                print!("\x1b[2J\x1b[H");
            }
            let ready = match &outcome {
                Ok(data) => {
                    print!("{}", summary(data));
                    data["ready"].as_bool().unwrap_or(false)
                }
                Err(why) => {
                    eprintln!("{name}: status {data_url}: {why}");
                    false
                }
            };
            if !watch {
                return if ready {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                };
            }
            tokio::time::sleep(WATCH_EVERY).await;
        }
    })
}

async fn read(url: &str, token: Option<&str>) -> Result<Value, String> {
    let client = reqwest::Client::builder()
        .timeout(STATUS_TIMEOUT)
        .connect_timeout(STATUS_TIMEOUT)
        .no_proxy()
        .build()
        .map_err(|e| e.to_string())?;
    let mut request = client.get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.map_err(|e| {
        let mut cause: &dyn std::error::Error = &e;
        while let Some(inner) = cause.source() {
            cause = inner;
        }
        cause.to_string()
    })?;
    let status = response.status();
    let body = response.bytes().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!(
            "answered {status}: {}",
            String::from_utf8_lossy(&body).trim()
        ));
    }
    serde_json::from_slice(&body).map_err(|e| format!("not a status answer: {e}"))
}

/// The series of `family` in a map of `family{label}` keys, by label ("" for an unlabelled one).
fn family<'a>(map: &'a Value, name: &str) -> BTreeMap<&'a str, &'a Value> {
    let mut out = BTreeMap::new();
    if let Some(map) = map.as_object() {
        for (key, value) in map {
            if key == name {
                out.insert("", value);
            } else if let Some(label) = key
                .strip_prefix(name)
                .and_then(|rest| rest.strip_prefix('{'))
                .and_then(|rest| rest.strip_suffix('}'))
            {
                out.insert(label, value);
            }
        }
    }
    out
}

fn sum(series: Option<&&Value>) -> f64 {
    series
        .and_then(|s| s.as_array())
        .map_or(0.0, |points| points.iter().filter_map(Value::as_f64).sum())
}

/// A number as an operator reads it: whole ones without a fraction.
fn num(value: &Value) -> String {
    match value.as_f64() {
        Some(n) if n.fract() == 0.0 && n.abs() < 1e15 => format!("{}", n as i64),
        Some(n) => format!("{n:.3}"),
        None => "0".to_owned(),
    }
}

fn mib(bytes: f64) -> String {
    format!("{:.1} MiB", bytes / 1_048_576.0)
}

/// The summary as printed.
pub fn summary(data: &Value) -> String {
    let mut out = String::new();
    let gauges = &data["gauges"];
    let totals = &data["totals"];
    let gauge = |name: &str| gauges[name].as_f64().unwrap_or(0.0);
    let _ = writeln!(
        out,
        "game-server {} (protocol {}), up {} s: {}",
        data["version"].as_str().unwrap_or("?"),
        num(&data["protocol"]),
        num(&data["uptime_secs"]),
        if data["ready"].as_bool().unwrap_or(false) {
            "READY"
        } else {
            "DRAINING (not ready)"
        }
    );
    let by_transport: Vec<String> = family(gauges, "gameserver_transport_sessions_active")
        .into_iter()
        .filter(|(_, n)| n.as_f64().unwrap_or(0.0) > 0.0)
        .map(|(t, n)| format!("{t} {}", num(n)))
        .collect();
    let _ = writeln!(
        out,
        "sessions {} ({}), parked {}, rooms {}",
        num(&gauges["gameserver_sessions_active"]),
        if by_transport.is_empty() {
            "none".to_owned()
        } else {
            by_transport.join(", ")
        },
        num(&gauges["gameserver_sessions_parked"]),
        num(&gauges["gameserver_rooms_active"]),
    );
    let budget = gauge("gameserver_memory_budget_bytes");
    let used = gauge("gameserver_memory_used_bytes");
    let _ = writeln!(
        out,
        "memory {} of {}{}; queued {}, replay {}, parked {}",
        mib(used),
        if budget > 0.0 {
            mib(budget)
        } else {
            "no budget".to_owned()
        },
        if budget > 0.0 {
            format!(" ({:.0}%)", 100.0 * used / budget)
        } else {
            String::new()
        },
        mib(gauge("gameserver_queued_bytes")),
        mib(gauge("gameserver_replay_bytes")),
        mib(gauge("gameserver_parked_bytes")),
    );
    let closed = family(totals, "gameserver_sessions_closed_total");
    let minute = family(&data["last_minute"], "gameserver_sessions_closed_total");
    let hour = family(&data["last_hour"], "gameserver_sessions_closed_total");
    let _ = writeln!(
        out,
        "closes by reason: last 10 s / last minute / last hour / since start"
    );
    let mut reasons: Vec<(&str, f64)> = closed
        .iter()
        .map(|(reason, total)| (*reason, total.as_f64().unwrap_or(0.0)))
        .filter(|(_, total)| *total > 0.0)
        .collect();
    reasons.sort_by(|a, b| {
        sum(minute.get(b.0))
            .total_cmp(&sum(minute.get(a.0)))
            .then(b.1.total_cmp(&a.1))
    });
    if reasons.is_empty() {
        let _ = writeln!(out, "  none yet");
    }
    for (reason, total) in reasons {
        let last10: f64 = minute
            .get(reason)
            .and_then(|s| s.as_array())
            .map_or(0.0, |points| {
                points.iter().rev().take(10).filter_map(Value::as_f64).sum()
            });
        let _ = writeln!(
            out,
            "  {reason:<20} {last10:>7} {:>8} {:>8} {total:>9}",
            sum(minute.get(reason)),
            sum(hour.get(reason)),
        );
    }
    for (title, name) in [
        ("accepted", "gameserver_sessions_accepted_total"),
        ("rejected", "gameserver_connections_rejected_total"),
        ("resume refused", "gameserver_resume_rejected_total"),
    ] {
        let moved: Vec<String> = family(totals, name)
            .into_iter()
            .filter(|(_, n)| n.as_f64().unwrap_or(0.0) > 0.0)
            .map(|(label, n)| {
                let last = sum(family(&data["last_minute"], name).get(label));
                format!("{label} {} ({last} last minute)", num(n))
            })
            .collect();
        if !moved.is_empty() {
            let _ = writeln!(out, "{title}: {}", moved.join(", "));
        }
    }
    let _ = writeln!(
        out,
        "resumed {}, resume expired {}, server stalls {:.3} s",
        num(&totals["gameserver_sessions_resumed_total"]),
        num(&totals["gameserver_resume_expired_total"]),
        totals["gameserver_server_stall_seconds_total"]
            .as_f64()
            .unwrap_or(0.0),
    );
    if let Some(detection) = data["detection"].as_object()
        && !detection.is_empty()
    {
        let _ = writeln!(out, "close detection (last frame to close), p50 / p99 ms:");
        for (reason, d) in detection {
            let _ = writeln!(
                out,
                "  {reason:<20} {:>8} / {:>8}  ({} closes)",
                num(&d["ms"]["p50"]),
                num(&d["ms"]["p99"]),
                num(&d["count"])
            );
        }
    }
    out
}
