//! Detect: how soon a dead peer is noticed, by heartbeat and by keepalive; mosquitto's
//! keepalive for comparison.

use std::time::Duration;

use anyhow::bail;
use hdrhistogram::Histogram;

use super::{Scale, TARGETS, heartbeat_env, histogram, mosquitto_note, ms_at, server_heartbeat};
use crate::client::{Crowd, End, Plan};
use crate::procs::{Binaries, Server, Settings};
use crate::report::{Goal, Measure};

/// 2: clients vanish at once; how long past the idle timeout until the server resets them.
pub(super) async fn detect(bins: &Binaries, scale: &Scale) -> anyhow::Result<Vec<Measure>> {
    let idle = scale.detect_idle;
    let mut small: [Option<Histogram<u64>>; 2] = [None, None];
    let mut big = [None, None];
    let mut missed = [None, None];
    let mut small_missed = [None, None];
    for (t, target) in TARGETS.into_iter().enumerate() {
        let settings = Settings {
            idle_timeout: Some(idle),
            env: vec![heartbeat_env(server_heartbeat(scale.detect_heartbeat))],
            broadcast: false,
        };
        let server = Server::start(bins, target, &settings, "detect").await?;
        for (round, n) in [scale.vanish_small, scale.sessions].into_iter().enumerate() {
            let plan = Plan {
                n,
                concurrency: scale.concurrency,
                name: format!("detect{round}"),
                heartbeat: Some(scale.detect_heartbeat),
                quit_with_bye: false,
                spread_pings: false,
            };
            let crowd = Crowd::gather(target, server.addr, &plan).await;
            let joined = crowd.joined();
            // A few heartbeats first, so the sessions are in their steady state.
            tokio::time::sleep(scale.detect_heartbeat * 2).await;
            crowd.vanish();
            let ends = crowd.wait_ended(idle + Duration::from_secs(10)).await;
            let mut h = histogram();
            let mut longest = Duration::ZERO;
            let mut reaped = 0usize;
            for end in &ends {
                if let End::Reaped { silent, closed } = end {
                    let took = closed.saturating_duration_since(*silent);
                    longest = longest.max(took);
                    let beyond = took.saturating_sub(idle);
                    h.saturating_record(beyond.as_micros() as u64);
                    reaped += 1;
                }
            }
            eprintln!(
                "bench: detect {} round {round}: {joined} joined, {reaped} reaped, beyond idle p50 {:.1} ms p99 {:.1} ms max {:.1} ms",
                target.name(),
                ms_at(&h, 0.5),
                ms_at(&h, 0.99),
                h.max() as f64 / 1000.0
            );
            if round == 0 {
                small[t] = Some(h);
                small_missed[t] = Some((joined.saturating_sub(reaped)) as f64);
            } else {
                big[t] = Some(longest.as_secs_f64());
                missed[t] = Some((joined.saturating_sub(reaped)) as f64);
            }
        }
    }
    let mosquitto = detect_mosquitto(bins, scale).await?;
    let q = |t: usize, q: f64| small[t].as_ref().map(|h| ms_at(h, q));
    let max = |t: usize| small[t].as_ref().map(|h| h.max() as f64 / 1000.0);
    let limit = (idle + Duration::from_secs(2)).as_secs_f64();
    let mut out = vec![
        Measure::ours(
            "2 detect",
            "1,000 vanish: detection beyond idle_timeout, p50",
            "ms",
        )
        .baseline(q(1, 0.5)),
        Measure::ours(
            "2 detect",
            "1,000 vanish: detection beyond idle_timeout, p99",
            "ms",
        )
        .baseline(q(1, 0.99))
        .goal(Goal::AtMost(50.0)),
        Measure::ours(
            "2 detect",
            "1,000 vanish: detection beyond idle_timeout, p99 vs baseline",
            "ms",
        )
        .baseline(q(1, 0.99))
        .goal(Goal::RatioAtMost(2.0)),
        Measure::ours(
            "2 detect",
            "1,000 vanish: detection beyond idle_timeout, max",
            "ms",
        )
        .baseline(max(1))
        .goal(Goal::AtMost(1000.0)),
        Measure::ours("2 detect", "19,000 vanish: silence to last reset", "s")
            .baseline(big[1])
            .goal(Goal::AtMost(limit)),
        Measure::ours(
            "2 detect",
            "19,000 vanish: sessions not reaped, worst run",
            "sessions",
        )
        .baseline(missed[1])
        .goal(Goal::AtMost(0.0))
        .worst_of_runs(),
    ];
    out[0].ours = q(0, 0.5);
    out[1].ours = q(0, 0.99);
    out[2].ours = q(0, 0.99);
    out[3].ours = max(0);
    out[4].ours = big[0];
    out[5].ours = missed[0];
    if let Some((h, command, not_closed)) = mosquitto {
        let note = mosquitto_note(
            &command,
            "Detection: 1,000 MQTT 3.1.1 clients with keepalive 2 s exchange two \
             PINGREQ/PINGRESP, then go silent together without closing; mosquitto closes a client \
             1.5 x keepalive = 3 s after its last packet. Its figure: the close the client sees \
             (end of stream or reset) minus its last packet minus 3 s. Ours: the 1,000 vanishing \
             clients above, beyond idle_timeout.",
        );
        for (metric, quantile, goal) in [
            (
                "detection beyond the timeout p50, ours vs mosquitto",
                0.5,
                Goal::None,
            ),
            (
                "detection beyond the timeout p99, ours vs mosquitto",
                0.99,
                Goal::RatioAtMost(1.0),
            ),
            (
                "detection beyond the timeout max, ours vs mosquitto",
                1.0,
                Goal::None,
            ),
        ] {
            let mut row = Measure::ours("2 detect", metric, "ms")
                .baseline(Some(ms_at(&h, quantile)))
                .goal(goal)
                .note(note.clone());
            row.ours = q(0, quantile);
            out.push(row);
        }
        let mut row = Measure::ours(
            "2 detect",
            "1,000 silent: not closed within 30 s more, ours vs mosquitto, worst run",
            "clients",
        )
        .baseline(Some(not_closed))
        .worst_of_runs()
        .note(note);
        row.ours = small_missed[0];
        out.push(row);
    }
    Ok(out)
}

/// Mosquitto's detection of 1,000 silent clients (keepalive 2 s): beyond 1.5 x keepalive, in
/// microseconds, how mosquitto ran, and how many it did not close within 30 s more (or that
/// failed to connect). `None` when it is not installed.
async fn detect_mosquitto(
    bins: &Binaries,
    scale: &Scale,
) -> anyhow::Result<Option<(Histogram<u64>, String, f64)>> {
    let Some(path) = crate::mqtt::mosquitto() else {
        eprintln!(
            "bench: mosquitto is not installed (apt-get install mosquitto): its rows are skipped"
        );
        return Ok(None);
    };
    let n = scale.vanish_small;
    let keepalive = 2u16;
    let timeout = Duration::from_secs(u64::from(keepalive)).mul_f64(1.5);
    let broker = crate::mqtt::Broker::start(&path, &bins.log_dir, "detect", n as u64 + 64)?;
    let ends = crate::mqtt::silent(
        broker.addr,
        n,
        scale.concurrency,
        keepalive,
        "detect",
        timeout + Duration::from_secs(30),
    )
    .await;
    let mut h = histogram();
    let (mut reaped, mut failed, mut open) = (0usize, 0usize, 0usize);
    for end in &ends {
        match end {
            End::Reaped { silent, closed } => {
                let beyond = closed
                    .saturating_duration_since(*silent)
                    .saturating_sub(timeout);
                h.saturating_record(beyond.as_micros() as u64);
                reaped += 1;
            }
            End::NotReaped => open += 1,
            _ => failed += 1,
        }
    }
    eprintln!(
        "bench: detect mosquitto: {n} silent, {reaped} closed, {open} still open, {failed} failed to connect or ping; beyond 1.5 x keepalive p50 {:.1} ms p99 {:.1} ms max {:.1} ms",
        ms_at(&h, 0.5),
        ms_at(&h, 0.99),
        h.max() as f64 / 1000.0
    );
    if reaped == 0 {
        bail!(
            "mosquitto closed none of {n} silent clients ({open} still open after {:?}, {failed} failed to connect or ping)",
            timeout + Duration::from_secs(30)
        );
    }
    Ok(Some((h, broker.command.clone(), (n - reaped) as f64)))
}
