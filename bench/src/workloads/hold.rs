//! Hold: idle sessions held for a minute, their memory and CPU, and /metrics while they are held;
//! mosquitto holding as many MQTT clients for comparison.

use std::time::Duration;

use anyhow::bail;

use super::{Scale, TARGETS, heartbeat_env, kib, mosquitto_note, server_heartbeat};
use crate::client::{Crowd, Plan};
use crate::procs::{Binaries, Server, Settings, Target};
use crate::report::{Goal, Measure};

/// 1: hold sessions with a heartbeat; RSS per session and CPU; /metrics response time.
pub(super) async fn hold(bins: &Binaries, scale: &Scale) -> anyhow::Result<Vec<Measure>> {
    let mut rss = [None, None];
    let mut cpu = [None, None];
    let mut scrape = Vec::new();
    let mut status = Vec::new();
    for (t, target) in TARGETS.into_iter().enumerate() {
        let settings = Settings {
            idle_timeout: Some(Duration::from_secs(15)),
            env: vec![heartbeat_env(server_heartbeat(scale.hold_heartbeat))],
            broadcast: false,
        };
        let server = Server::start(bins, target, &settings, "hold").await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let idle_rss = server.rss_kib()?;
        let plan = Plan {
            n: scale.sessions,
            concurrency: scale.concurrency,
            name: "hold".to_owned(),
            heartbeat: Some(scale.hold_heartbeat),
            quit_with_bye: false,
            spread_pings: false,
        };
        let crowd = Crowd::gather(target, server.addr, &plan).await;
        let joined = crowd.joined();
        if joined == 0 {
            bail!("hold: no client joined {}", target.name());
        }
        tokio::time::sleep(scale.hold_heartbeat.min(Duration::from_secs(2))).await;
        let cpu_start = server.cpu()?;
        tokio::time::sleep(scale.hold).await;
        let cpu_used = server.cpu()?.saturating_sub(cpu_start);
        let held_rss = server.rss_kib()?;
        rss[t] = Some(kib(held_rss.saturating_sub(idle_rss)) / joined as f64);
        cpu[t] = Some(cpu_used.as_secs_f64() / scale.hold.as_secs_f64() * 100.0);
        if target == Target::Ours {
            for _ in 0..10 {
                let (_, took) = server.get("/metrics").await?;
                scrape.push(took.as_secs_f64() * 1000.0);
                // The status page's reading, as the page makes it every second (a server from
                // before the page has none: BENCH_GAME_SERVER for a before-and-after).
                if let Ok((_, took)) = server.get("/status/data").await {
                    status.push(took.as_secs_f64() * 1000.0);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        eprintln!(
            "bench: hold {}: {joined} sessions, RSS {idle_rss} -> {held_rss} KiB, CPU {:?} over {:?}",
            target.name(),
            cpu_used,
            scale.hold
        );
        crowd.disperse().await;
    }
    let mosquitto = hold_mosquitto(bins, scale).await?;
    let mut out = vec![
        Measure::ours("1 hold", "user-space RSS per session", "KiB")
            .baseline(rss[1])
            .goal(Goal::AtMost(3.0)),
        Measure::ours("1 hold", "server CPU while holding", "% of a core")
            .baseline(cpu[1])
            .goal(Goal::AtMost(5.0)),
        Measure::ours("1 hold", "server CPU vs baseline", "% of a core")
            .baseline(cpu[1])
            .goal(Goal::RatioAtMost(1.2)),
    ];
    out[0].ours = rss[0];
    out[1].ours = cpu[0];
    out[2].ours = cpu[0];
    let mut vs = Measure::ours("1 hold", "user-space RSS per session vs baseline", "KiB")
        .baseline(rss[1])
        .goal(Goal::RatioAtMost(1.0));
    vs.ours = rss[0];
    let mut stretch = Measure::ours("1 hold", "user-space RSS per session, stretch", "KiB")
        .baseline(rss[1])
        .goal(Goal::AtMost(2.0));
    stretch.ours = rss[0];
    out.insert(1, stretch);
    out.insert(1, vs);
    if let Some((per_connection, command)) = mosquitto {
        let mut row = Measure::ours(
            "1 hold",
            "mosquitto: user-space RSS per idle connection (ours: per session)",
            "KiB",
        )
        .baseline(Some(per_connection))
        .note(mosquitto_note(
            &command,
            "Held: as many MQTT 3.1.1 connections as the hold's sessions, keepalive 10 s, each \
             client sending PINGREQ every 10 s; RSS after minus RSS before, per connection.",
        ));
        row.ours = rss[0];
        out.push(row);
    }
    if let Some((p50, max)) = median_and_max(&mut status) {
        out.push(
            Measure::ours(
                "5 metrics",
                "/status/data response at full hold, median of 10",
                "ms",
            )
            .value(p50)
            .goal(Goal::AtMost(10.0)),
        );
        out.push(
            Measure::ours(
                "5 metrics",
                "/status/data response at full hold, max of 10",
                "ms",
            )
            .value(max)
            .goal(Goal::AtMost(10.0)),
        );
    }
    if let Some((p50, max)) = median_and_max(&mut scrape) {
        out.push(
            Measure::ours(
                "5 metrics",
                "/metrics response at full hold, median of 10",
                "ms",
            )
            .value(p50)
            .goal(Goal::AtMost(10.0)),
        );
        out.push(
            Measure::ours(
                "5 metrics",
                "/metrics response at full hold, max of 10",
                "ms",
            )
            .value(max),
        );
    }
    Ok(out)
}

/// The median and the largest of `readings`; `None` without any.
fn median_and_max(readings: &mut [f64]) -> Option<(f64, f64)> {
    let max = readings.iter().copied().reduce(f64::max)?;
    Some((crate::report::median(readings)?, max))
}

/// Mosquitto holding the hold's number of idle MQTT connections (keepalive 10 s, a PINGREQ
/// from each client every 10 s): user-space RSS per connection, and how mosquitto ran. `None`
/// when it is not installed.
async fn hold_mosquitto(bins: &Binaries, scale: &Scale) -> anyhow::Result<Option<(f64, String)>> {
    let Some(path) = crate::mqtt::mosquitto() else {
        eprintln!(
            "bench: mosquitto is not installed (apt-get install mosquitto): its rows are skipped"
        );
        return Ok(None);
    };
    let n = scale.sessions;
    let broker = crate::mqtt::Broker::start(&path, &bins.log_dir, "hold", n as u64 + 64)?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle_rss = broker.rss_kib()?;
    let every = Duration::from_secs(10).min(scale.hold_heartbeat);
    let clients =
        crate::mqtt::idle(broker.addr, n, scale.concurrency, 10, every, "hold", None).await;
    if clients.joined == 0 {
        bail!("hold: no MQTT client connected to mosquitto");
    }
    // Two keepalive periods: every client has pinged twice.
    tokio::time::sleep(scale.hold.min(every * 2)).await;
    let held_rss = broker.rss_kib()?;
    let joined = clients.joined;
    clients.disperse().await;
    eprintln!("bench: hold mosquitto: {joined} connections, RSS {idle_rss} -> {held_rss} KiB");
    Ok(Some((
        kib(held_rss.saturating_sub(idle_rss)) / joined as f64,
        broker.command.clone(),
    )))
}
