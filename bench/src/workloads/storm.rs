//! Storm: a crowd that connects at once.

use std::time::Duration;

use anyhow::Context;

use super::{Scale, TARGETS, heartbeat_env, server_heartbeat};
use crate::client::{Crowd, Plan};
use crate::procs::{Binaries, Server, Settings, listen_counters};
use crate::report::{Goal, Measure};

/// 3: every client connects at once; handshakes per second and listen queue overflows.
pub(super) async fn storm(bins: &Binaries, scale: &Scale) -> anyhow::Result<Vec<Measure>> {
    let mut rate = [None, None];
    let mut total = [None, None];
    let mut overflows = [None, None];
    let mut drops = [None, None];
    for (t, target) in TARGETS.into_iter().enumerate() {
        let period = Duration::from_secs(5);
        let settings = Settings {
            env: vec![heartbeat_env(server_heartbeat(period))],
            ..Settings::default()
        };
        let server = Server::start(bins, target, &settings, "storm").await?;
        let (o0, d0) = listen_counters()?;
        let plan = Plan {
            n: scale.sessions,
            concurrency: scale.sessions,
            name: "storm".to_owned(),
            heartbeat: Some(period),
            quit_with_bye: false,
            spread_pings: false,
        };
        let crowd = Crowd::gather(target, server.addr, &plan).await;
        let (o1, d1) = listen_counters()?;
        let joined = crowd.joined();
        let took = crowd
            .last_ready()
            .map(|last| last.saturating_duration_since(crowd.started))
            .context("storm: nobody joined")?;
        rate[t] = Some(joined as f64 / took.as_secs_f64());
        total[t] = Some(took.as_secs_f64());
        overflows[t] = Some(o1.saturating_sub(o0) as f64);
        drops[t] = Some(d1.saturating_sub(d0) as f64);
        eprintln!(
            "bench: storm {}: {joined}/{} joined in {took:?}, ListenOverflows +{}, ListenDrops +{}",
            target.name(),
            scale.sessions,
            o1 - o0,
            d1 - d0
        );
        crowd.disperse().await;
    }
    let mut out = vec![
        Measure::ours("3 storm", "completed handshakes per second", "1/s")
            .baseline(rate[1])
            .goal(Goal::AtLeast(5000.0)),
        Measure::ours(
            "3 storm",
            "ListenOverflows during the storm, worst run",
            "count",
        )
        .baseline(overflows[1])
        .goal(Goal::AtMost(0.0))
        .worst_of_runs(),
        Measure::ours(
            "3 storm",
            "ListenDrops during the storm, worst run",
            "count",
        )
        .baseline(drops[1])
        .worst_of_runs(),
        Measure::ours("3 storm", "whole storm absorbed", "s")
            .baseline(total[1])
            .goal(Goal::AtMost(5.0)),
    ];
    out[0].ours = rate[0];
    out[1].ours = overflows[0];
    out[2].ours = drops[0];
    out[3].ours = total[0];
    Ok(out)
}
