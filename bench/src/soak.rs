//! The soak: the game server held at a steady crowd for a long time while its players come and
//! go, resume and read slowly, with the process sampled every few seconds, to show whether
//! anything drifts (memory, descriptors, parked sessions, the close record, the counters).
//!
//! `bench soak` runs the hour at 15,000 sessions ([`Plan::hour`]); the suite runs
//! [`Plan::short`], two minutes of the same mix at a smaller crowd. The players are client-sim's
//! (in this process), so every close is reconciled exactly with what the players did.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use client_sim::{Mix, Options, ProgressMode, Report};

use crate::procs::{Binaries, Server, Settings, Target};

/// How a soak runs.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Sessions held at once (client slots).
    pub sessions: usize,
    /// How long players keep coming.
    pub duration: Duration,
    /// Samples before this much time has passed show the crowd gathering and are not judged.
    pub warm_up: Duration,
    /// How often the server is sampled.
    pub every: Duration,
    /// Each player plays between these two (uniformly drawn): their mean over the run's length
    /// sets the share replaced per minute.
    pub play_time: (Duration, Duration),
    /// Inputs per second of each playing player (each relayed to its room).
    pub input_rate: f64,
    /// Players per room (the server's `rooms.auto_room_capacity`).
    pub room_size: usize,
    /// The scenario mix: mostly players who play and leave, with resumes and slow readers.
    pub mix: &'static str,
    /// New connections per second.
    pub connect_rate: f64,
    /// The server's `session.resume_grace`: how long a session closed without `Bye` stays
    /// parked, which bounds how many can be parked at once.
    pub resume_grace: Duration,
}

/// The mix of every soak: nine players in ten play and leave (one in ten of those without
/// `Bye`); the rest break their connection and resume, or stop reading until the server drops
/// them as slow consumers.
const MIX: &str = "soak=90,reset-and-return=5,roam=2,slow-reader=3";

impl Plan {
    /// The hour of issue 29: 15,000 sessions, each playing 10 to 30 minutes (about 5% of them
    /// replaced a minute once the first leave, at 10 minutes), sampled every 10 s, judged after
    /// 15 minutes.
    pub fn hour() -> Plan {
        Plan {
            sessions: 15_000,
            duration: Duration::from_secs(3600),
            warm_up: Duration::from_secs(900),
            every: Duration::from_secs(10),
            play_time: (Duration::from_secs(600), Duration::from_secs(1800)),
            input_rate: 0.5,
            room_size: 10,
            mix: MIX,
            connect_rate: 500.0,
            resume_grace: Duration::from_secs(30),
        }
    }

    /// The same soak in two minutes at `sessions` (the suite's), play times scaled so that the
    /// crowd is replaced about as often relative to the run.
    pub fn short(sessions: usize) -> Plan {
        Plan {
            sessions,
            duration: Duration::from_secs(120),
            warm_up: Duration::from_secs(60),
            every: Duration::from_secs(2),
            play_time: (Duration::from_secs(20), Duration::from_secs(60)),
            input_rate: 0.5,
            room_size: 10,
            mix: MIX,
            connect_rate: 500.0,
            resume_grace: Duration::from_secs(30),
        }
    }

    /// The same plan for `duration`, scaled as the hour is: players play a sixth to a half of
    /// it (about 5% of them replaced each sixtieth of it), warm-up a quarter of it (at least
    /// 30 s).
    pub fn lasting(mut self, duration: Duration) -> Plan {
        self.play_time = (duration / 6, duration / 2);
        self.warm_up = (duration / 4).max(Duration::from_secs(30));
        self.duration = duration;
        self
    }
}

/// One look at the server.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    /// Seconds since the first player connected.
    pub t: f64,
    /// Resident set, KiB.
    pub rss_kib: u64,
    /// Open descriptors.
    pub fds: u64,
    /// `gameserver_sessions_active`.
    pub sessions: u64,
    /// `gameserver_sessions_parked`.
    pub parked: u64,
    /// `gameserver_rooms_active`.
    pub rooms: u64,
    /// Closes the close record keeps (its oldest dropped past its capacity).
    pub close_record: u64,
    /// The most it keeps.
    pub close_capacity: u64,
    /// Closes whose detail the record keeps at most (`/closes/recent`'s `details_kept`).
    pub details_kept: u64,
    /// `gameserver_sessions_accepted_total`.
    pub accepted: u64,
    /// `gameserver_sessions_closed_total`, all reasons.
    pub closed: u64,
    /// `gameserver_sessions_resumed_total`.
    pub resumed: u64,
    /// `gameserver_memory_used_bytes`.
    pub budget_used: u64,
}

/// One pass/fail judgement of a soak.
#[derive(Debug, Clone)]
pub struct Check {
    /// What is judged.
    pub what: String,
    /// Whether it held.
    pub pass: bool,
    /// The figures behind it.
    pub detail: String,
}

/// What a soak saw.
#[derive(Debug)]
pub struct Outcome {
    /// The plan it ran.
    pub plan: Plan,
    /// Every sample, in order.
    pub samples: Vec<Sample>,
    /// client-sim's report (its reconciliation, resumes and latencies).
    pub players: Report,
    /// Closes by reason over the whole run (the server's counters).
    pub closes: BTreeMap<String, u64>,
    /// The judgements.
    pub checks: Vec<Check>,
    /// Wall time of the run.
    pub elapsed: Duration,
}

impl Outcome {
    /// True when every check held.
    pub fn pass(&self) -> bool {
        self.checks.iter().all(|c| c.pass)
    }
}

/// The metric families read at each sample, by name (labels summed).
fn family_sums(body: &str) -> BTreeMap<&str, f64> {
    let mut sums = BTreeMap::new();
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let name = series.split('{').next().unwrap_or(series);
        if let Ok(value) = value.parse::<f64>() {
            *sums.entry(name).or_insert(0.0) += value;
        }
    }
    sums
}

/// `gameserver_sessions_closed_total` by reason.
fn closes_by_reason(body: &str) -> BTreeMap<String, u64> {
    body.lines()
        .filter_map(|l| l.strip_prefix("gameserver_sessions_closed_total{"))
        .filter_map(|rest| {
            let (labels, value) = rest.split_once("} ")?;
            let reason = labels
                .split(',')
                .find_map(|l| l.strip_prefix("reason=\""))?
                .trim_end_matches('"');
            Some((reason.to_owned(), value.trim().parse::<f64>().ok()? as u64))
        })
        .collect()
}

fn open_fds(pid: u32) -> anyhow::Result<u64> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))
        .context("cannot list the server's descriptors")?
        .count() as u64)
}

async fn sample(server: &Server, t: f64) -> anyhow::Result<Sample> {
    let (body, _) = server.get("/metrics").await?;
    let sums = family_sums(&body);
    let get = |name: &str| sums.get(name).copied().unwrap_or(0.0) as u64;
    let (closes, _) = server.get("/closes?since=18446744073709551615").await?;
    let record: serde_json::Value = serde_json::from_str(&closes).context("/closes")?;
    let next = record["next"].as_u64().unwrap_or(1);
    let (recent, _) = server.get("/closes/recent?limit=1").await?;
    let recent: serde_json::Value = serde_json::from_str(&recent).context("/closes/recent")?;
    let details_kept = recent["details_kept"].as_u64().unwrap_or(0);
    let capacity = record["capacity"].as_u64().unwrap_or(0);
    Ok(Sample {
        t,
        rss_kib: server.rss_kib()?,
        fds: open_fds(server.pid())?,
        sessions: get("gameserver_sessions_active"),
        parked: get("gameserver_sessions_parked"),
        rooms: get("gameserver_rooms_active"),
        close_record: (next - 1).min(capacity),
        close_capacity: capacity,
        details_kept,
        accepted: get("gameserver_sessions_accepted_total"),
        closed: get("gameserver_sessions_closed_total"),
        resumed: get("gameserver_sessions_resumed_total"),
        budget_used: get("gameserver_memory_used_bytes"),
    })
}

/// Runs one soak against a fresh game server.
pub async fn soak(bins: &Binaries, plan: &Plan) -> anyhow::Result<Outcome> {
    let settings = Settings {
        env: vec![
            (
                "GAMESERVER__ROOMS__AUTO_ROOM_CAPACITY".to_owned(),
                plan.room_size.to_string(),
            ),
            (
                "GAMESERVER__SESSION__RESUME_GRACE".to_owned(),
                format!("{}ms", plan.resume_grace.as_millis()),
            ),
        ],
        ..Settings::default()
    };
    let server = Server::start(bins, Target::Ours, &settings, "soak").await?;
    let admin = server.admin.context("the game server has no admin port")?;
    let before = closes_by_reason(&server.get("/metrics").await?.0);
    let options = Options {
        server: server.addr.to_string(),
        clients: plan.sessions,
        connect_rate: plan.connect_rate,
        duration: Some(plan.duration),
        mix: plan
            .mix
            .parse::<Mix>()
            .map_err(|e| anyhow::anyhow!("{e}"))?,
        metrics_url: Some(format!("http://{admin}/metrics")),
        play_time: Some(plan.play_time.0),
        play_time_max: Some(plan.play_time.1),
        soak_input_rate: plan.input_rate,
        progress: ProgressMode::Off,
        player_prefix: "soak".to_owned(),
        interval: plan.every,
        ..Options::default()
    };
    let started = Instant::now();
    let players = tokio::spawn(client_sim::run(options));
    let mut samples = Vec::new();
    let mut ticks = tokio::time::interval(plan.every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_report = Instant::now();
    while !players.is_finished() {
        ticks.tick().await;
        match sample(&server, started.elapsed().as_secs_f64()).await {
            Ok(s) => {
                if last_report.elapsed() >= Duration::from_secs(60) {
                    last_report = Instant::now();
                    eprintln!(
                        "bench: soak {:>5.0} s: {} sessions, RSS {} KiB, {} descriptors, {} parked, {} closed",
                        s.t, s.sessions, s.rss_kib, s.fds, s.parked, s.closed
                    );
                }
                samples.push(s);
            }
            Err(error) => eprintln!("bench: soak sample failed: {error:#}"),
        }
    }
    let players = players
        .await
        .context("the players' task")?
        .context("client-sim")?;
    let elapsed = started.elapsed();
    let after = closes_by_reason(&server.get("/metrics").await?.0);
    let closes: BTreeMap<String, u64> = after
        .iter()
        .map(|(reason, n)| (reason.clone(), n - before.get(reason).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect();
    let end = sample(&server, elapsed.as_secs_f64()).await?;
    let checks = judge(plan, &samples, &end, &players, &closes);
    samples.push(end);
    Ok(Outcome {
        plan: plan.clone(),
        samples,
        players,
        closes,
        checks,
        elapsed,
    })
}

/// Smallest and largest of a figure across `samples`.
fn range(samples: &[&Sample], figure: impl Fn(&Sample) -> u64) -> (u64, u64) {
    let low = samples.iter().map(|s| figure(s)).min().unwrap_or(0);
    let high = samples.iter().map(|s| figure(s)).max().unwrap_or(0);
    (low, high)
}

/// How a figure moved across the samples after warm-up: the median of their first third and of
/// their last third, and the second over the first. Medians, so that a moment's burst (a slow
/// reader's queue at its limit when a sample is taken) is not read as a drift, while a leak
/// that grows through the run is.
fn drift(samples: &[&Sample], figure: impl Fn(&Sample) -> u64) -> (u64, u64, f64) {
    let third = (samples.len() / 3).max(1);
    let median = |part: &[&Sample]| {
        let mut values: Vec<u64> = part.iter().map(|s| figure(s)).collect();
        values.sort_unstable();
        values.get(values.len() / 2).copied().unwrap_or(0)
    };
    let early = median(&samples[..third.min(samples.len())]);
    let late = median(&samples[samples.len().saturating_sub(third)..]);
    (early, late, late as f64 / early.max(1) as f64)
}

/// The check that `figure` drifted by at most 5% after warm-up.
fn flat(what: &str, unit: &str, steady: &[&Sample], figure: impl Fn(&Sample) -> u64) -> Check {
    let (early, late, ratio) = drift(steady, &figure);
    let (low, high) = range(steady, &figure);
    Check {
        what: format!("{what} flat after warm-up (within 5%)"),
        pass: (0.95..=1.05).contains(&ratio),
        detail: format!(
            "median {early} {unit} in the first third, {late} in the last ({:+.1}%); {low} to {high} in all",
            (ratio - 1.0) * 100.0
        ),
    }
}

fn judge(
    plan: &Plan,
    samples: &[Sample],
    end: &Sample,
    players: &Report,
    closes: &BTreeMap<String, u64>,
) -> Vec<Check> {
    let mut checks = judge_samples(plan, samples, end);
    judge_players(&mut checks, players, closes);
    checks
}

/// Whether the server's own figures stayed flat and bounded.
fn judge_samples(plan: &Plan, samples: &[Sample], end: &Sample) -> Vec<Check> {
    let mut checks = Vec::new();
    // Warm until the plan says, and until the close record keeps as many details as it ever
    // will (it grows to that bound by design: 16,384 closes, about 4 MiB, reached after about
    // 25 minutes of the hour's churn); a run too short to fill it is judged from the plan's
    // warm-up.
    let filled = samples
        .iter()
        .find(|s| s.details_kept > 0 && s.close_record >= s.details_kept)
        .map_or(0.0, |s| s.t);
    // Nor before the first players to leave without `Bye` have had their grace: until then
    // parked sessions, and the memory they hold, only grow.
    let settled = (plan.play_time.0 + plan.resume_grace).as_secs_f64();
    let warm_up = plan.warm_up.as_secs_f64().max(settled).max(filled);
    let steady: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.t >= warm_up && s.t <= plan.duration.as_secs_f64() - 1.0)
        .collect();
    checks.push(Check {
        what: "sampled after warm-up".into(),
        pass: steady.len() >= 5,
        detail: format!(
            "{} samples between {warm_up:.0} s and {:?} (the close details filled at {})",
            steady.len(),
            plan.duration,
            if filled > 0.0 {
                format!("{filled:.0} s")
            } else {
                "no point of the run".to_owned()
            }
        ),
    });
    checks.push(flat("RSS", "KiB", &steady, |s| s.rss_kib));
    checks.push(flat("descriptors", "", &steady, |s| s.fds));
    let (low, high) = range(&steady, |s| s.sessions);
    checks.push(Check {
        what: "the crowd held".into(),
        pass: low as f64 >= plan.sessions as f64 * 0.9,
        detail: format!("{low} to {high} sessions of {}", plan.sessions),
    });
    checks.push(parked_bounded(plan, samples, &steady));
    checks.push(Check {
        what: "every player gone at the end".into(),
        pass: end.sessions == 0,
        // Those who left without Bye stay parked for their resume grace.
        detail: format!(
            "{} sessions left ({} parked for resume)",
            end.sessions, end.parked
        ),
    });
    checks
}

/// Whether parked sessions leave when their grace ends: a session parks only when it closes,
/// and stays at most `resume_grace`, so at any sample no more can be parked than the closes of
/// the grace before it (plus a few seconds for sampling). A parked session that never left would
/// break that bound as the run goes on, whatever the churn.
fn parked_bounded(plan: &Plan, samples: &[Sample], steady: &[&Sample]) -> Check {
    let window = plan.resume_grace.as_secs_f64() + plan.every.as_secs_f64() + 2.0;
    let mut worst: Option<(f64, u64, u64)> = None;
    let mut pass = true;
    for s in steady {
        // The last sample at least a window back; closes only grow, so an earlier one only
        // loosens the bound.
        let before = samples
            .iter()
            .rev()
            .find(|u| u.t <= s.t - window)
            .map_or(0, |u| u.closed);
        let bound = s.closed.saturating_sub(before);
        pass &= s.parked <= bound;
        let share = s.parked as f64 / bound.max(1) as f64;
        if worst.is_none_or(|(w, _, _)| share > w) {
            worst = Some((share, s.parked, bound));
        }
    }
    let (_, high) = range(steady, |s| s.parked);
    Check {
        what: "parked sessions bounded by the resume grace".into(),
        pass,
        detail: match worst {
            Some((_, parked, bound)) => format!(
                "at most {high} parked; closest to the bound: {parked} parked of {bound} closed \
                 in the {window:.0} s before"
            ),
            None => "no samples".to_owned(),
        },
    }
}

/// Whether the players' account and the server's agree, and nothing was lost.
fn judge_players(checks: &mut Vec<Check>, players: &Report, closes: &BTreeMap<String, u64>) {
    checks.push(Check {
        what: "the server's closes reconcile exactly with the players' ledger".into(),
        pass: players.reconciled_ok() && players.verdict == "pass",
        detail: format!(
            "client-sim verdict {}, {} instances, {} failed",
            players.verdict, players.instances, players.failed_instances
        ),
    });
    checks.push(Check {
        what: "resumes lost and repeated nothing".into(),
        pass: players.resume.lossless() && players.resume.succeeded > 0,
        detail: format!(
            "{} of {} resumes, {} events lost, {} repeated, {} inputs lost, {} applied twice",
            players.resume.succeeded,
            players.resume.attempted,
            players.resume.events_lost,
            players.resume.events_duplicated,
            players.resume.inputs_lost,
            players.resume.inputs_applied_twice
        ),
    });
    let io_errors = closes.get("io_error").copied().unwrap_or(0);
    checks.push(Check {
        what: "no io_error".into(),
        pass: io_errors == 0,
        detail: format!("{io_errors} io_error closes"),
    });
}

/// The soak's report in Markdown: the plan, the checks, the closes, and the samples every
/// `table_every`.
pub fn render(outcome: &Outcome, table_every: Duration) -> String {
    let plan = &outcome.plan;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} sessions for {:?} ({:.0} s with the last players' exits); players play {:?} to {:?} \
         at {} inputs/s in rooms of {}; mix `{}`; sampled every {:?}, judged after {:?}.\n",
        plan.sessions,
        plan.duration,
        outcome.elapsed.as_secs_f64(),
        plan.play_time.0,
        plan.play_time.1,
        plan.input_rate,
        plan.room_size,
        plan.mix,
        plan.every,
        plan.warm_up
    );
    let _ = writeln!(out, "| check | result | figures |\n|---|---|---|");
    for check in &outcome.checks {
        let _ = writeln!(
            out,
            "| {} | {} | {} |",
            check.what,
            if check.pass { "pass" } else { "**miss**" },
            check.detail
        );
    }
    let closes: Vec<String> = outcome
        .closes
        .iter()
        .map(|(reason, n)| format!("{reason} {n}"))
        .collect();
    let p = &outcome.players;
    let _ = writeln!(
        out,
        "\nCloses: {}. Instances {} ({} failed); resumes {}; ping round trip p50 {:.1} ms, p99 \
         {:.1} ms.\n",
        closes.join(", "),
        p.instances,
        p.failed_instances,
        p.resume.succeeded,
        p.latency.rtt_ms.p50,
        p.latency.rtt_ms.p99
    );
    let _ = writeln!(
        out,
        "| t (s) | sessions | parked | rooms | RSS (KiB) | descriptors | close record | accepted | closed | resumed | budget used (KiB) |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    let mut next = 0.0;
    let last = outcome.samples.len().saturating_sub(1);
    for (i, s) in outcome.samples.iter().enumerate() {
        if s.t + 0.5 < next && i != last {
            continue;
        }
        next = s.t + table_every.as_secs_f64();
        let _ = writeln!(
            out,
            "| {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            s.t,
            s.sessions,
            s.parked,
            s.rooms,
            s.rss_kib,
            s.fds,
            s.close_record,
            s.accepted,
            s.closed,
            s.resumed,
            s.budget_used / 1024
        );
    }
    out
}

/// Every sample as CSV, one line each.
pub fn csv(samples: &[Sample]) -> String {
    let mut out = String::from(
        "t,sessions,parked,rooms,rss_kib,fds,close_record,accepted,closed,resumed,budget_used\n",
    );
    for s in samples {
        let _ = writeln!(
            out,
            "{:.1},{},{},{},{},{},{},{},{},{},{}",
            s.t,
            s.sessions,
            s.parked,
            s.rooms,
            s.rss_kib,
            s.fds,
            s.close_record,
            s.accepted,
            s.closed,
            s.resumed,
            s.budget_used
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shorter_soak_is_the_hour_scaled() {
        let hour = Plan::hour();
        let same = Plan::hour().lasting(Duration::from_secs(3600));
        assert_eq!(same.play_time, hour.play_time);
        assert_eq!(same.warm_up, hour.warm_up);
        let ten = Plan::hour().lasting(Duration::from_secs(600));
        assert_eq!(
            ten.play_time,
            (Duration::from_secs(100), Duration::from_secs(300))
        );
        assert_eq!(ten.warm_up, Duration::from_secs(150));
        assert_eq!(ten.sessions, hour.sessions);
    }

    #[test]
    fn metric_families_sum_their_labels_and_closes_split_by_reason() {
        let body = "# HELP x\n\
            gameserver_sessions_active 12\n\
            gameserver_sessions_closed_total{reason=\"client_quit\"} 7\n\
            gameserver_sessions_closed_total{reason=\"io_error\"} 0\n\
            gameserver_sessions_closed_total{reason=\"peer_eof\"} 3\n";
        let sums = family_sums(body);
        assert_eq!(sums["gameserver_sessions_active"], 12.0);
        assert_eq!(sums["gameserver_sessions_closed_total"], 10.0);
        let closes = closes_by_reason(body);
        assert_eq!(closes["client_quit"], 7);
        assert_eq!(closes["io_error"], 0);
        assert_eq!(closes.len(), 3);
    }

    #[test]
    fn a_drift_past_five_percent_is_a_miss() {
        let at = |t: f64, rss_kib: u64| Sample {
            t,
            rss_kib,
            fds: 100,
            sessions: 100,
            ..Sample::default()
        };
        let plan = Plan::short(100);
        let flat: Vec<Sample> = (0..60).map(|i| at(i as f64 * 2.0, 1000 + i % 3)).collect();
        let end = Sample::default();
        let rss = |samples: &[Sample]| {
            let steady: Vec<&Sample> = samples.iter().filter(|s| s.t >= 40.0).collect();
            drift(&steady, |s| s.rss_kib).2
        };
        assert!(rss(&flat) <= 1.05);
        // A burst now and then is not a drift.
        let bursty: Vec<Sample> = (0..60)
            .map(|i| at(i as f64 * 2.0, if i % 7 == 0 { 1300 } else { 1000 }))
            .collect();
        assert!(rss(&bursty) <= 1.05);
        let growing: Vec<Sample> = (0..60).map(|i| at(i as f64 * 2.0, 1000 + i * 3)).collect();
        assert!(rss(&growing) > 1.05);
        let checks = judge_samples(&plan, &growing, &end);
        let rss_check = checks
            .iter()
            .find(|c| c.what.starts_with("RSS"))
            .expect("an RSS check");
        assert!(!rss_check.pass, "{rss_check:?}");
        let flat_checks = judge_samples(&plan, &flat, &end);
        assert!(
            flat_checks
                .iter()
                .find(|c| c.what.starts_with("RSS"))
                .is_some_and(|c| c.pass)
        );
    }

    #[test]
    fn parked_sessions_are_bounded_by_the_closes_of_one_grace() {
        let plan = Plan::short(1000);
        // 25 closes a second, and a fifth of them park for the 30 s grace: about 150 parked,
        // more than a tenth of the crowd and well inside the bound.
        let at = |t: f64, parked: u64| Sample {
            t,
            sessions: 1000,
            parked,
            closed: (t * 25.0) as u64,
            ..Sample::default()
        };
        let steady_state: Vec<Sample> = (0..60).map(|i| at(i as f64 * 2.0, 150)).collect();
        let check = |samples: &[Sample]| {
            let steady: Vec<&Sample> = samples.iter().filter(|s| s.t >= 40.0).collect();
            parked_bounded(&plan, samples, &steady)
        };
        assert!(check(&steady_state).pass, "{:?}", check(&steady_state));
        // Parked entries that never leave pile past what one grace of closes can hold.
        let leaking: Vec<Sample> = (0..60).map(|i| at(i as f64 * 2.0, i as u64 * 40)).collect();
        assert!(!check(&leaking).pass, "{:?}", check(&leaking));
        // So do entries still parked once the closes have stopped for longer than the grace.
        let mut stuck = steady_state.clone();
        for s in stuck.iter_mut().filter(|s| s.t >= 60.0) {
            s.closed = 1500;
        }
        assert!(!check(&stuck).pass, "{:?}", check(&stuck));
    }
}
