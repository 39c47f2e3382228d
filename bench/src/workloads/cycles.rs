//! Cycles: sessions opened and closed in a loop, and what the server keeps afterwards.

use std::time::Duration;

use anyhow::Context;
use tokio::time::Instant;

use super::Scale;
use crate::client::{Crowd, Plan};
use crate::procs::{Binaries, Server, Settings, Target};
use crate::report::{Goal, Measure};

/// 6: sessions connect and quit, over and over; does the server's RSS come back?
pub(super) async fn cycles(bins: &Binaries, scale: &Scale) -> anyhow::Result<Vec<Measure>> {
    let server = Server::start(bins, Target::Ours, &Settings::default(), "cycles").await?;
    let mut peaks = Vec::new();
    let mut after = 0;
    for cycle in 0..scale.cycles {
        let plan = Plan {
            n: scale.sessions,
            concurrency: scale.concurrency,
            name: format!("cycle{cycle}"),
            heartbeat: None,
            quit_with_bye: true,
            spread_pings: false,
        };
        let crowd = Crowd::gather(Target::Ours, server.addr, &plan).await;
        let joined = crowd.joined();
        let peak = server.rss_kib()?;
        crowd.disperse().await;
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let active = server
                .metric("gameserver_sessions_active")
                .await
                .unwrap_or(f64::NAN);
            if active == 0.0 || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        after = server.rss_kib()?;
        eprintln!(
            "bench: cycle {cycle}: {joined} joined, RSS peak {peak} KiB, after quitting {after} KiB"
        );
        peaks.push(peak);
    }
    let first = *peaks.first().context("no cycle ran")? as f64;
    let last = *peaks.last().context("no cycle ran")? as f64;
    // The allocator gives freed pages back on its own schedule (jemalloc: pages unused for about
    // 10 s, from its background thread), as in the burst workload: sample until the RSS is back
    // within the target, or the window ends.
    let settle_window = if scale.sessions >= 1000 {
        Duration::from_secs(30)
    } else {
        Duration::from_secs(3)
    };
    let settle_started = Instant::now();
    let mut settled_rss = after;
    while settled_rss as f64 > first * 1.2 && settle_started.elapsed() < settle_window {
        tokio::time::sleep(Duration::from_millis(500)).await;
        settled_rss = server.rss_kib()?;
    }
    let settled = settle_started.elapsed();
    eprintln!(
        "bench: cycles: RSS {after} KiB when the last sessions were gone, {settled_rss} KiB \
         {settled:?} later"
    );
    let mib = |kib: f64| kib / 1024.0;
    Ok(vec![
        Measure::ours("6 memory", "RSS at the first peak", "MiB").value(mib(first)),
        Measure::ours("6 memory", "RSS at the last peak", "MiB").value(mib(last)),
        Measure::ours(
            "6 memory",
            "RSS the moment the last cycle's sessions are gone",
            "MiB",
        )
        .value(mib(after as f64)),
        Measure::ours(
            "6 memory",
            "RSS after the last cycle (once within 1.2x of the first peak, at most 30 s later)",
            "MiB",
        )
        .value(mib(settled_rss as f64)),
        Measure::ours(
            "6 memory",
            "time from the last cycle's end to that RSS",
            "s",
        )
        .value(settled.as_secs_f64()),
        Measure::ours("6 memory", "RSS after the last cycle / first peak", "ratio")
            .value(settled_rss as f64 / first)
            .goal(Goal::AtMost(1.2)),
        Measure::ours("6 memory", "last peak / first peak", "ratio").value(last / first),
    ])
}
