//! Metrics: what a scrape every second costs the pumps' throughput.

use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::procs::{Binaries, Server, Settings, Target};
use crate::report::{Goal, Measure};

use super::throughput::Pumps;
use super::{Scale, unthrottled};

/// 5: pipelined throughput with /metrics scraped every second, against not scraped.
pub(super) async fn metrics_cost(
    bins: &Binaries,
    scale: &Scale,
    run: usize,
) -> anyhow::Result<Vec<Measure>> {
    let settings = Settings {
        idle_timeout: None,
        env: unthrottled(),
        broadcast: false,
    };
    let server = Server::start(bins, Target::Ours, &settings, "metrics").await?;
    let admin = server.admin_client().context("admin port")?;
    let pumps = Pumps::start(
        Target::Ours,
        server.addr,
        scale.pipelined,
        scale.window,
        &format!("mc{run}"),
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(1).min(scale.measure)).await;
    let mut quiet = Vec::new();
    let mut scraped = Vec::new();
    // Pairs in the order quiet-scraped, scraped-quiet, ...: a drift over the run does not
    // favour either side.
    for pair in 0..scale.metric_phases {
        for scrape in [pair % 2 == 1, pair % 2 == 0] {
            if scrape {
                scraped.push(scraped_rate(&pumps, admin.clone(), scale.measure).await?);
            } else {
                quiet.push(pumps.rate(scale.measure).await);
            }
        }
    }
    pumps.stop().await?;
    let quiet = crate::report::median(&mut quiet).context("no phase")?;
    let scraped = crate::report::median(&mut scraped).context("no phase")?;
    eprintln!("bench: metrics cost: {quiet:.0} frames/s unscraped, {scraped:.0} scraped");
    Ok(vec![
        Measure::ours("5 metrics", "pipelined throughput, not scraped", "frames/s").value(quiet),
        Measure::ours(
            "5 metrics",
            "pipelined throughput, /metrics scraped every second",
            "frames/s",
        )
        .value(scraped),
        Measure::ours("5 metrics", "scraped / not scraped", "ratio")
            .value(scraped / quiet)
            .goal(Goal::AtLeast(0.97)),
    ])
}

/// The pumps' rate while `/metrics` is fetched every second.
pub(super) async fn scraped_rate(
    pumps: &Pumps,
    admin: client_sim::metrics::Admin,
    period: Duration,
) -> anyhow::Result<f64> {
    let stop = CancellationToken::new();
    let scraper = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    () = stop.cancelled() => return Ok::<(), anyhow::Error>(()),
                    _ = every.tick() => {
                        admin.get_ok("/metrics").await?;
                    }
                }
            }
        })
    };
    let rate = pumps.rate(period).await;
    stop.cancel();
    scraper.await??;
    Ok(rate)
}
