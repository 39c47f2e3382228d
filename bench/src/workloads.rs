//! The workloads of issue 8. Each function is one run: it starts the servers it needs as child
//! processes, drives them from this process, and returns its figures.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::{FutureExt, SinkExt, StreamExt};
use hdrhistogram::Histogram;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::client::{self, Crowd, End, Inbound, Link, Plan};
use crate::procs::{Binaries, Server, Settings, Target, listen_counters};
use crate::report::{Goal, Measure};

/// Sizes and durations of every workload: [`Scale::full`] for the benchmark, [`Scale::smoke`]
/// for the CI smoke test.
#[derive(Debug, Clone)]
pub struct Scale {
    /// Sessions held, stormed, vanished and cycled (19,000).
    pub sessions: usize,
    /// Handshakes in flight while a crowd gathers (except in the storm, which is unpaced).
    pub concurrency: usize,
    /// How long the hold lasts (60 s).
    pub hold: Duration,
    /// Heartbeat period while holding (10 s).
    pub hold_heartbeat: Duration,
    /// Clients that vanish in the first detection round (1,000).
    pub vanish_small: usize,
    /// Idle timeout of the detection workload (3 s).
    pub detect_idle: Duration,
    /// Heartbeat of the detection workload (1 s).
    pub detect_heartbeat: Duration,
    /// Pipelined connections (100).
    pub pipelined: usize,
    /// Inputs in flight per pipelined connection.
    pub window: u64,
    /// Unpipelined clients (1,000).
    pub round_trippers: usize,
    /// How long each throughput figure is measured.
    pub measure: Duration,
    /// Scraped / unscraped phase pairs in the metrics-cost workload.
    pub metric_phases: usize,
    /// Connect-and-drop cycles (10).
    pub cycles: usize,
    /// Rooms in the rooms workload.
    pub rooms: usize,
    /// Players per room (100).
    pub room_size: usize,
    /// Each player sends one input this often.
    pub input_every: Duration,
    /// Rooms in the fan-out workload (1,000).
    pub fanout_rooms: usize,
    /// Players per fan-out room (10).
    pub fanout_size: usize,
    /// Each fan-out player sends one input this often (50 ms: 20 a second).
    pub fanout_every: Duration,
    /// Rooms in the burst workload.
    pub burst_rooms: usize,
    /// Slow readers per burst room.
    pub burst_readers: usize,
    /// Most inputs each burst room's feeder sends (it stops once the server holds about 1 MiB
    /// for each slow reader).
    pub burst_inputs: u64,
    /// Payload bytes of each burst input.
    pub burst_input_bytes: usize,
}

impl Scale {
    /// The benchmark of issue 8.
    pub fn full() -> Scale {
        Scale {
            sessions: 19_000,
            concurrency: 1024,
            hold: Duration::from_secs(60),
            hold_heartbeat: Duration::from_secs(10),
            vanish_small: 1000,
            detect_idle: Duration::from_secs(3),
            detect_heartbeat: Duration::from_secs(1),
            pipelined: 100,
            window: 32,
            round_trippers: 1000,
            measure: Duration::from_secs(5),
            metric_phases: 2,
            cycles: 10,
            rooms: 10,
            room_size: 100,
            input_every: Duration::from_secs(1),
            fanout_rooms: 1000,
            fanout_size: 10,
            fanout_every: Duration::from_millis(50),
            burst_rooms: 4,
            burst_readers: 50,
            burst_inputs: 3000,
            burst_input_bytes: 4096,
        }
    }

    /// Every workload at a size that runs in seconds on a debug build.
    pub fn smoke() -> Scale {
        Scale {
            sessions: 50,
            concurrency: 50,
            hold: Duration::from_secs(1),
            hold_heartbeat: Duration::from_millis(300),
            vanish_small: 20,
            detect_idle: Duration::from_secs(1),
            detect_heartbeat: Duration::from_millis(300),
            pipelined: 5,
            window: 8,
            round_trippers: 10,
            measure: Duration::from_millis(500),
            metric_phases: 1,
            cycles: 2,
            rooms: 2,
            room_size: 5,
            input_every: Duration::from_millis(100),
            fanout_rooms: 3,
            fanout_size: 10,
            fanout_every: Duration::from_millis(50),
            burst_rooms: 2,
            burst_readers: 5,
            burst_inputs: 100,
            burst_input_bytes: 1024,
        }
    }
}

/// The workloads, by name, in the order `all` runs them.
pub const WORKLOADS: [&str; 10] = [
    "hold",
    "detect",
    "storm",
    "throughput",
    "metrics",
    "cycles",
    "rooms",
    "fanout",
    "burst",
    "transports",
];

/// Runs one workload once.
pub async fn run(
    name: &str,
    bins: &Binaries,
    scale: &Scale,
    run: usize,
) -> anyhow::Result<Vec<Measure>> {
    match name {
        "hold" => hold(bins, scale).await,
        "detect" => detect(bins, scale).await,
        "storm" => storm(bins, scale).await,
        "throughput" => throughput(bins, scale, run).await,
        "metrics" => metrics_cost(bins, scale, run).await,
        "cycles" => cycles(bins, scale).await,
        "rooms" => rooms(bins, scale, run).await,
        "fanout" => fanout(bins, scale, run).await,
        "burst" => burst(bins, scale, run).await,
        "transports" => transports(bins, scale, run).await,
        other => bail!("unknown workload {other}; known: {}", WORKLOADS.join(", ")),
    }
}

const TARGETS: [Target; 2] = [Target::Ours, Target::Baseline];

/// Clients that are not pipelining acknowledge their events at most this often, with their next
/// input (PROTOCOL.md asks for about once per heartbeat).
const ACK_EVERY: Duration = Duration::from_secs(1);

/// Rate limits high enough that pipelined inputs are never throttled (the defaults allow 100
/// frames/s per session).
fn unthrottled() -> Vec<(String, String)> {
    vec![
        (
            "GAMESERVER__SESSION__RATE_LIMIT_PER_SEC".to_owned(),
            "4000000000".to_owned(),
        ),
        (
            "GAMESERVER__SESSION__RATE_LIMIT_BURST".to_owned(),
            "4000000000".to_owned(),
        ),
    ]
}

fn heartbeat_env(period: Duration) -> (String, String) {
    (
        "GAMESERVER__SESSION__HEARTBEAT_INTERVAL".to_owned(),
        format!("{}ms", period.as_millis()),
    )
}

/// The game server's heartbeat for clients that ping every `period` themselves: a little longer
/// (+20%), so that it never needs to ping them, only to answer (PROTOCOL.md). Both servers then
/// receive and answer one frame per client per period.
fn server_heartbeat(period: Duration) -> Duration {
    period.mul_f64(1.2)
}

/// How the report names mosquitto when it is the "baseline" of a row.
fn mosquitto_note(command: &str, clients: &str) -> String {
    format!(
        "The baseline column of this row is mosquitto, not the bare Tokio baseline: {command}. {clients}"
    )
}

fn kib(bytes_kib: u64) -> f64 {
    bytes_kib as f64
}

fn histogram() -> Histogram<u64> {
    // Microseconds, up to ten minutes, three significant digits.
    match Histogram::new_with_bounds(1, 600_000_000, 3) {
        Ok(h) => h,
        Err(error) => panic!("histogram bounds: {error}"),
    }
}

fn ms_at(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

/// 1: hold sessions with a heartbeat; RSS per session and CPU; /metrics response time.
async fn hold(bins: &Binaries, scale: &Scale) -> anyhow::Result<Vec<Measure>> {
    let mut rss = [None, None];
    let mut cpu = [None, None];
    let mut scrape = Vec::new();
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
    let scrape_p50 = crate::report::median(&mut scrape);
    let scrape_max = scrape
        .iter()
        .copied()
        .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
    let mut out = vec![
        Measure::ours("1 hold", "user-space RSS per session", "KiB")
            .baseline(rss[1])
            .goal(Goal::AtMost(4.0)),
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
    if let (Some(p50), Some(max)) = (scrape_p50, scrape_max) {
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
        crate::mqtt::Idle::gather(broker.addr, n, scale.concurrency, 10, every, "hold").await;
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

/// 2: clients vanish at once; how long past the idle timeout until the server resets them.
async fn detect(bins: &Binaries, scale: &Scale) -> anyhow::Result<Vec<Measure>> {
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

/// 3: every client connects at once; handshakes per second and listen queue overflows.
async fn storm(bins: &Binaries, scale: &Scale) -> anyhow::Result<Vec<Measure>> {
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

/// Pipelined connections that keep `window` inputs in flight and count the replies.
struct Pumps {
    replies: Arc<AtomicU64>,
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Pumps {
    async fn start(
        target: Target,
        addr: std::net::SocketAddr,
        n: usize,
        window: u64,
        name: &str,
    ) -> anyhow::Result<Pumps> {
        let replies = Arc::new(AtomicU64::new(0));
        let stop = CancellationToken::new();
        let mut links = Vec::with_capacity(n);
        for i in 0..n {
            // A room of one each: the game server's echo path.
            let player = format!("{name}-{i}");
            links.push(client::join(target, addr, i, &player, &player).await?);
        }
        let epoch = Instant::now();
        let tasks = links
            .into_iter()
            .map(|link| {
                tokio::spawn(pump(
                    target,
                    link,
                    window,
                    epoch,
                    replies.clone(),
                    stop.clone(),
                ))
            })
            .collect();
        Ok(Pumps {
            replies,
            stop,
            tasks,
        })
    }

    /// Replies per second over the next `period`.
    async fn rate(&self, period: Duration) -> f64 {
        let before = self.replies.load(Ordering::Relaxed);
        let started = Instant::now();
        tokio::time::sleep(period).await;
        let after = self.replies.load(Ordering::Relaxed);
        (after - before) as f64 / started.elapsed().as_secs_f64()
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.stop.cancel();
        for task in self.tasks {
            task.await??;
        }
        Ok(())
    }
}

async fn pump(
    target: Target,
    mut link: Link,
    window: u64,
    epoch: Instant,
    replies: Arc<AtomicU64>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let mut sent = 0u64;
    let mut got = 0u64;
    let mut acks = client::Acks::new(target);
    loop {
        // One Ack with each window of inputs, for the events received since the last one.
        if let Some(ack) = acks.take() {
            link.feed(ack).await?;
        }
        while sent - got < window {
            sent += 1;
            link.feed(client::input(sent, epoch)).await?;
        }
        SinkExt::<bytes::Bytes>::flush(&mut link).await?;
        let frame = tokio::select! {
            () = stop.cancelled() => break,
            frame = link.next() => frame,
        };
        let mut batch = 0;
        let mut next = frame;
        while let Some(frame) = next {
            let frame = frame?;
            acks.note(&frame);
            match client::classify(target, frame) {
                Inbound::Reply { .. } => batch += 1,
                inbound @ Inbound::Ping(_) => {
                    client::answer(&mut link, &inbound).await?;
                }
                Inbound::Bye => bail!("the server said Bye"),
                _ => {}
            }
            next = link.next().now_or_never().flatten();
        }
        got += batch;
        replies.fetch_add(batch, Ordering::Relaxed);
    }
    client::abort(link);
    Ok(())
}

/// 4: pipelined echo throughput, and unpipelined round trips.
async fn throughput(bins: &Binaries, scale: &Scale, run: usize) -> anyhow::Result<Vec<Measure>> {
    let mut rate = [None, None];
    let mut rtt: [Option<Histogram<u64>>; 2] = [None, None];
    let settings = Settings {
        idle_timeout: None,
        env: unthrottled(),
        broadcast: false,
    };
    for (t, target) in TARGETS.into_iter().enumerate() {
        let server = Server::start(bins, target, &settings, "throughput").await?;
        let pumps = Pumps::start(
            target,
            server.addr,
            scale.pipelined,
            scale.window,
            &format!("tp{run}"),
        )
        .await?;
        tokio::time::sleep(Duration::from_secs(1).min(scale.measure)).await;
        let r = pumps.rate(scale.measure).await;
        pumps.stop().await?;
        rate[t] = Some(r);
        let h = round_trips(target, &server, scale, &format!("rt{run}")).await?;
        eprintln!(
            "bench: throughput {}: {r:.0} frames/s pipelined; round trips p50 {:.3} ms p99 {:.3} ms ({} samples)",
            target.name(),
            ms_at(&h, 0.5),
            ms_at(&h, 0.99),
            h.len()
        );
        rtt[t] = Some(h);
    }
    let q = |t: usize, q: f64| rtt[t].as_ref().map(|h| ms_at(h, q));
    let mut out = vec![
        Measure::ours(
            "4 throughput",
            "pipelined 32-byte inputs, 100 connections",
            "frames/s",
        )
        .baseline(rate[1])
        .goal(Goal::RatioAtLeast(0.9)),
        Measure::ours(
            "4 throughput",
            "unpipelined round trip at 1,000 clients, p50",
            "ms",
        )
        .baseline(q(1, 0.5)),
        Measure::ours(
            "4 throughput",
            "unpipelined round trip at 1,000 clients, p99",
            "ms",
        )
        .baseline(q(1, 0.99))
        .goal(Goal::RatioAtMost(1.2)),
    ];
    out[0].ours = rate[0];
    out[1].ours = q(0, 0.5);
    out[2].ours = q(0, 0.99);
    Ok(out)
}

/// Clients that send one input, wait for it to come back, and repeat.
async fn round_trips(
    target: Target,
    server: &Server,
    scale: &Scale,
    name: &str,
) -> anyhow::Result<Histogram<u64>> {
    let n = scale.round_trippers;
    let start = Arc::new(tokio::sync::Barrier::new(n + 1));
    let mut tasks = Vec::with_capacity(n);
    let addr = server.addr;
    for i in 0..n {
        let start = start.clone();
        let player = format!("{name}-{i}");
        let measure = scale.measure;
        tasks.push(tokio::spawn(async move {
            let joined = client::join(target, addr, i, &player, &player).await;
            start.wait().await;
            let mut link = joined?;
            let mut h = histogram();
            let epoch = Instant::now();
            let mut seq = 0u64;
            let mut acks = client::Acks::new(target);
            while epoch.elapsed() < measure {
                seq += 1;
                // An Ack of the events received, at most once a second, with the input.
                if let Some(ack) = acks.due(ACK_EVERY) {
                    link.feed(ack).await?;
                }
                let sent = Instant::now();
                link.send(client::input(seq, epoch)).await?;
                loop {
                    let frame = link.next().await.context("closed")??;
                    acks.note(&frame);
                    match client::classify(target, frame) {
                        Inbound::Reply { seq: s, .. } if s == seq => break,
                        inbound @ Inbound::Ping(_) => {
                            client::answer(&mut link, &inbound).await?;
                        }
                        Inbound::Bye => bail!("the server said Bye"),
                        _ => {}
                    }
                }
                h.saturating_record(sent.elapsed().as_micros() as u64);
            }
            client::abort(link);
            Ok::<_, anyhow::Error>(h)
        }));
    }
    start.wait().await;
    let mut all = histogram();
    for task in tasks {
        all.add(task.await??)?;
    }
    Ok(all)
}

/// 5: pipelined throughput with /metrics scraped every second, against not scraped.
async fn metrics_cost(bins: &Binaries, scale: &Scale, run: usize) -> anyhow::Result<Vec<Measure>> {
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
async fn scraped_rate(
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

/// 6: sessions connect and quit, over and over; does the server's RSS come back?
async fn cycles(bins: &Binaries, scale: &Scale) -> anyhow::Result<Vec<Measure>> {
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
    let mib = |kib: f64| kib / 1024.0;
    Ok(vec![
        Measure::ours("6 memory", "RSS at the first peak", "MiB").value(mib(first)),
        Measure::ours("6 memory", "RSS at the last peak", "MiB").value(mib(last)),
        Measure::ours("6 memory", "RSS after the last cycle", "MiB").value(mib(after as f64)),
        Measure::ours("6 memory", "RSS after the last cycle / first peak", "ratio")
            .value(after as f64 / first)
            .goal(Goal::AtMost(1.2)),
        Measure::ours("6 memory", "last peak / first peak", "ratio").value(last / first),
    ])
}

/// 7: rooms of players relaying inputs at the server's tick rate; relay latency.
async fn rooms(bins: &Binaries, scale: &Scale, run: usize) -> anyhow::Result<Vec<Measure>> {
    let server = Server::start(bins, Target::Ours, &Settings::default(), "rooms").await?;
    let n = scale.rooms * scale.room_size;
    let start = Arc::new(tokio::sync::Barrier::new(n + 1));
    let epoch = Instant::now();
    let addr = server.addr;
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let start = start.clone();
        let player = format!("room{run}-p{i}");
        let room = format!("room{run}-{}", i % scale.rooms);
        let measure = scale.measure * 2;
        let every = scale.input_every;
        // Spread the players' inputs evenly over the period.
        let offset = every.mul_f64((i / scale.rooms) as f64 / scale.room_size as f64);
        tasks.push(tokio::spawn(async move {
            let joined = client::join(Target::Ours, addr, i, &player, &room).await;
            start.wait().await;
            let mut link = joined?;
            let mut h = histogram();
            let began = Instant::now();
            let mut inputs = tokio::time::interval_at(began + offset, every);
            let mut seq = 0u64;
            let mut acks = client::Acks::new(Target::Ours);
            loop {
                tokio::select! {
                    _ = inputs.tick() => {
                        if began.elapsed() >= measure {
                            break;
                        }
                        seq += 1;
                        if let Some(ack) = acks.due(ACK_EVERY) {
                            link.feed(ack).await?;
                        }
                        link.send(client::input(seq, epoch)).await?;
                    }
                    frame = link.next() => {
                        let frame = frame.context("closed")??;
                        acks.note(&frame);
                        match client::classify(Target::Ours, frame) {
                            Inbound::Reply { sent_ns, .. } => {
                                let now = epoch.elapsed().as_nanos() as u64;
                                h.saturating_record(now.saturating_sub(sent_ns) / 1000);
                            }
                            inbound @ Inbound::Ping(_) => {
                                client::answer(&mut link, &inbound).await?;
                            }
                            Inbound::Bye => bail!("the server said Bye"),
                            _ => {}
                        }
                    }
                }
            }
            client::abort(link);
            Ok::<_, anyhow::Error>(h)
        }));
    }
    start.wait().await;
    let mut all = histogram();
    for task in tasks {
        all.add(task.await??)?;
    }
    eprintln!(
        "bench: rooms: {} deliveries, p50 {:.2} ms p99 {:.2} ms max {:.2} ms",
        all.len(),
        ms_at(&all, 0.5),
        ms_at(&all, 0.99),
        all.max() as f64 / 1000.0
    );
    Ok(vec![
        Measure::ours("7 rooms", "relay latency to every member, p50", "ms")
            .value(ms_at(&all, 0.5)),
        Measure::ours("7 rooms", "relay latency to every member, p99", "ms")
            .value(ms_at(&all, 0.99)),
    ])
}

/// A room's relay latencies in microseconds, shared by its members' readers: two significant
/// digits keep 1,000 of them small.
type Latencies = Arc<std::sync::Mutex<Histogram<u64>>>;

fn latencies() -> Latencies {
    match Histogram::new_with_bounds(1, 60_000_000, 2) {
        Ok(h) => Arc::new(std::sync::Mutex::new(h)),
        Err(error) => panic!("histogram bounds: {error}"),
    }
}

/// What the fan-out clients share.
#[derive(Clone)]
struct Fan {
    target: Target,
    epoch: Instant,
    /// Events received by every client.
    deliveries: Arc<AtomicU64>,
    /// Relay latencies are recorded while set.
    recording: Arc<std::sync::atomic::AtomicBool>,
    stop: CancellationToken,
}

/// 8: fan-out: rooms of players each sending inputs at 20 a second, every input relayed to the
/// whole room, plus the room's 20 Hz state; deliveries per second and relay latency.
async fn fanout(bins: &Binaries, scale: &Scale, run: usize) -> anyhow::Result<Vec<Measure>> {
    let mut rate = [None, None];
    let mut lat: [Option<Histogram<u64>>; 2] = [None, None];
    let mut light_rate = [None, None];
    let mut light_lat: [Option<Histogram<u64>>; 2] = [None, None];
    // The full load saturates this machine's two cores (servers and load generator together),
    // so a tenth of the rooms as well: a load both servers carry, where latency is not queueing.
    let light_rooms = scale.fanout_rooms / 10;
    for (t, target) in TARGETS.into_iter().enumerate() {
        let settings = Settings {
            idle_timeout: None,
            env: Vec::new(),
            broadcast: target == Target::Baseline,
        };
        for rooms in [scale.fanout_rooms, light_rooms] {
            if rooms == 0 {
                continue;
            }
            let server = Server::start(bins, target, &settings, "fanout").await?;
            let (r, h) = fan(target, &server, scale, rooms, run).await?;
            eprintln!(
                "bench: fanout {} ({rooms} rooms): {r:.0} deliveries/s; relay latency p50 {:.2} ms p99 {:.2} ms max {:.2} ms ({} relays)",
                target.name(),
                ms_at(&h, 0.5),
                ms_at(&h, 0.99),
                h.max() as f64 / 1000.0,
                h.len()
            );
            if rooms == scale.fanout_rooms {
                rate[t] = Some(r);
                lat[t] = Some(h);
            } else {
                light_rate[t] = Some(r);
                light_lat[t] = Some(h);
            }
        }
    }
    let players = scale.fanout_rooms * scale.fanout_size;
    let per_second = 1.0 / scale.fanout_every.as_secs_f64();
    // Every input to every member of its room, and each room's state to its members.
    let offered = players as f64 * per_second * (scale.fanout_size as f64 + 1.0);
    let q = |t: usize, q: f64| lat[t].as_ref().map(|h| ms_at(h, q));
    let mut out = vec![
        Measure::ours(
            "8 fanout",
            "fan-out deliveries offered (inputs x room + state)",
            "1/s",
        )
        .value(offered),
        Measure::ours("8 fanout", "fan-out deliveries per second", "1/s")
            .baseline(rate[1])
            .goal(Goal::RatioAtLeast(0.8)),
        Measure::ours("8 fanout", "fan-out delivery latency p50", "ms").baseline(q(1, 0.5)),
        Measure::ours("8 fanout", "fan-out delivery latency p99", "ms")
            .baseline(q(1, 0.99))
            .goal(Goal::RatioAtMost(2.0)),
    ];
    out[1].ours = rate[0];
    out[2].ours = q(0, 0.5);
    out[3].ours = q(0, 0.99);
    if light_rooms > 0 {
        let q = |t: usize, q: f64| light_lat[t].as_ref().map(|h| ms_at(h, q));
        let mut light = vec![
            Measure::ours(
                "8 fanout",
                "a tenth of the rooms: deliveries per second",
                "1/s",
            )
            .baseline(light_rate[1]),
            Measure::ours(
                "8 fanout",
                "a tenth of the rooms: delivery latency p50",
                "ms",
            )
            .baseline(q(1, 0.5)),
            Measure::ours(
                "8 fanout",
                "a tenth of the rooms: delivery latency p99",
                "ms",
            )
            .baseline(q(1, 0.99)),
        ];
        light[0].ours = light_rate[0];
        light[1].ours = q(0, 0.5);
        light[2].ours = q(0, 0.99);
        out.extend(light);
    }
    Ok(out)
}

/// One fan-out run against one server: deliveries per second over `scale.measure`, and the
/// relay latencies received meanwhile.
async fn fan(
    target: Target,
    server: &Server,
    scale: &Scale,
    rooms: usize,
    run: usize,
) -> anyhow::Result<(f64, Histogram<u64>)> {
    let n = rooms * scale.fanout_size;
    let addr = server.addr;
    let gate = Arc::new(tokio::sync::Semaphore::new(scale.concurrency.max(1)));
    let mut joins = Vec::with_capacity(n);
    for i in 0..n {
        let gate = gate.clone();
        let player = format!("fan{run}-{i}");
        let room = format!("fan{run}-r{}", i % rooms);
        joins.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await;
            client::join(target, addr, i, &player, &room).await
        }));
    }
    let mut links = Vec::with_capacity(n);
    for join in joins {
        links.push(join.await??);
    }
    let fan = Fan {
        target,
        epoch: Instant::now(),
        deliveries: Arc::new(AtomicU64::new(0)),
        recording: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        stop: CancellationToken::new(),
    };
    let hists: Vec<Latencies> = (0..rooms).map(|_| latencies()).collect();
    let mut tasks = Vec::with_capacity(n);
    for (i, link) in links.into_iter().enumerate() {
        let (reader, writer) = client::split(link);
        let highest = Arc::new(AtomicU64::new(0));
        let (pongs, pong_rx) = tokio::sync::mpsc::unbounded_channel();
        // Inputs spread evenly over the period.
        let offset = scale.fanout_every.mul_f64(i as f64 / n as f64);
        let read = tokio::spawn(fan_read(
            fan.clone(),
            reader,
            hists[i % rooms].clone(),
            highest.clone(),
            pongs,
        ));
        let write = tokio::spawn(fan_write(
            fan.clone(),
            writer,
            scale.fanout_every,
            offset,
            highest,
            pong_rx,
        ));
        tasks.push((read, write));
    }
    tokio::time::sleep(Duration::from_secs(2).min(scale.measure)).await;
    let before = fan.deliveries.load(Ordering::Relaxed);
    let started = Instant::now();
    fan.recording.store(true, Ordering::Relaxed);
    tokio::time::sleep(scale.measure).await;
    fan.recording.store(false, Ordering::Relaxed);
    let after = fan.deliveries.load(Ordering::Relaxed);
    let rate = (after - before) as f64 / started.elapsed().as_secs_f64();
    fan.stop.cancel();
    let mut failed = None;
    for (read, write) in tasks {
        match (read.await?, write.await?) {
            (Ok(reader), Ok(writer)) => client::abort_split(reader, writer),
            (Err(error), _) | (_, Err(error)) => failed = Some(error),
        }
    }
    if let Some(error) = failed {
        return Err(error.context("a fan-out client failed"));
    }
    let mut all = Histogram::new_with_bounds(1, 60_000_000, 2)?;
    for h in hists {
        all.add(&*h.lock().unwrap_or_else(|p| p.into_inner()))?;
    }
    Ok((rate, all))
}

/// A fan-out client's reading half: counts every event, records relay latencies while the
/// measurement runs, notes the highest event for the writer's Acks, hands pings to the writer.
async fn fan_read(
    fan: Fan,
    mut reader: client::Reader,
    hist: Latencies,
    highest: Arc<AtomicU64>,
    pongs: tokio::sync::mpsc::UnboundedSender<u64>,
) -> anyhow::Result<client::Reader> {
    let mut acks = client::Acks::new(fan.target);
    let mut batch = Vec::new();
    loop {
        let frame = tokio::select! {
            () = fan.stop.cancelled() => return Ok(reader),
            frame = reader.next() => frame.context("the server closed the connection")?,
        };
        let now = fan.epoch.elapsed().as_nanos() as u64;
        let mut events = 0;
        let mut next = Some(frame);
        while let Some(frame) = next {
            let frame = frame?;
            acks.note(&frame);
            match frame.first().copied().and_then(protocol::Kind::from_u8) {
                Some(protocol::Kind::Event) => {
                    events += 1;
                    if let Some((_, sent)) = client::relay(&frame) {
                        batch.push(now.saturating_sub(sent) / 1000);
                    }
                }
                Some(protocol::Kind::Ping) if frame.len() >= 9 => {
                    let nonce = u64::from_be_bytes(frame[1..9].try_into().unwrap_or_default());
                    let _ = pongs.send(nonce);
                }
                Some(protocol::Kind::Bye) => bail!("the server said Bye"),
                _ => {}
            }
            next = reader.next().now_or_never().flatten();
        }
        fan.deliveries.fetch_add(events, Ordering::Relaxed);
        highest.store(acks.highest(), Ordering::Relaxed);
        if fan.recording.load(Ordering::Relaxed) && !batch.is_empty() {
            let mut h = hist.lock().unwrap_or_else(|p| p.into_inner());
            for micros in batch.drain(..) {
                h.saturating_record(micros);
            }
        } else {
            batch.clear();
        }
    }
}

/// A fan-out client's writing half: an input every period (with an Ack at most once a second),
/// and the pongs its reader asks for.
async fn fan_write(
    fan: Fan,
    mut writer: client::Writer,
    every: Duration,
    offset: Duration,
    highest: Arc<AtomicU64>,
    mut pongs: tokio::sync::mpsc::UnboundedReceiver<u64>,
) -> anyhow::Result<client::Writer> {
    let mut ticks = tokio::time::interval_at(Instant::now() + offset, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seq = 0u64;
    let mut acked = 0u64;
    let mut last_ack = Instant::now();
    loop {
        tokio::select! {
            () = fan.stop.cancelled() => return Ok(writer),
            Some(nonce) = pongs.recv() => {
                writer
                    .send(client::body(&protocol::ClientMessage::Pong { nonce }))
                    .await?;
            }
            _ = ticks.tick() => {
                let high = highest.load(Ordering::Relaxed);
                if high > acked && last_ack.elapsed() >= ACK_EVERY {
                    writer.feed(client::ack(high)).await?;
                    acked = high;
                    last_ack = Instant::now();
                }
                seq += 1;
                writer.send(client::input(seq, fan.epoch)).await?;
            }
        }
    }
}

/// Bytes the burst queues in the server for each slow reader, about.
const BURST_QUEUED: f64 = 1024.0 * 1024.0;
/// Inputs a burst feeder sends between two looks at the server's queues.
const BURST_CHUNK: u64 = 64;

/// The receive buffer of a burst's slow readers.
const SLOW_READER_RCVBUF: u32 = 16 * 1024;

/// An `Input` of `len` payload bytes starting with the send time, as [`client::input`].
fn big_input(seq: u64, epoch: Instant, len: usize) -> bytes::Bytes {
    let mut payload = vec![0u8; len.max(8)];
    let sent = epoch.elapsed().as_nanos() as u64;
    payload[..8].copy_from_slice(&sent.to_be_bytes());
    client::body(&protocol::ClientMessage::Input {
        seq,
        payload: bytes::Bytes::from(payload),
    })
}

/// 9: a burst: slow readers stop reading while a feeder in each room sends large inputs that
/// are relayed to them, so each queues about 1 MiB; then they read everything. Does the server's
/// RSS return to what the same sessions held idle before?
async fn burst(bins: &Binaries, scale: &Scale, run: usize) -> anyhow::Result<Vec<Measure>> {
    let period = Duration::from_secs(1);
    let heartbeat = server_heartbeat(period);
    let mut env = unthrottled();
    env.push(heartbeat_env(heartbeat));
    // Caps above the burst (so no slow reader is closed) and a write timeout longer than the
    // stall; the user timeout must exceed the write timeout.
    for (key, value) in [
        ("GAMESERVER__SESSION__OUTBOUND_QUEUE", "4096"),
        ("GAMESERVER__SESSION__OUTBOUND_QUEUE_BYTES", "8MiB"),
        ("GAMESERVER__SESSION__WRITE_TIMEOUT", "30s"),
        ("GAMESERVER__TCP__USER_TIMEOUT", "60s"),
    ] {
        env.push((key.to_owned(), value.to_owned()));
    }
    let settings = Settings {
        idle_timeout: Some(Duration::from_secs(15)),
        env,
        broadcast: false,
    };
    let server = Server::start(bins, Target::Ours, &settings, "burst").await?;
    let addr = server.addr;
    let admin = server.admin_client().context("admin port")?;
    let stall = CancellationToken::new();
    let drain = CancellationToken::new();
    let stop = CancellationToken::new();
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    let readers = scale.burst_rooms * scale.burst_readers;
    // How many inputs each feeder sent: known once the backlog is built.
    let expect = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for i in 0..readers {
        let room = format!("burst{run}-{}", i % scale.burst_rooms);
        let player = format!("burst{run}-r{i}");
        // A small receive buffer: what a slow reader does not read queues in the server.
        let link = client::join_with(
            Target::Ours,
            addr,
            i,
            &player,
            &room,
            Some(SLOW_READER_RCVBUF),
        )
        .await?;
        tasks.push(tokio::spawn(slow_reader(
            link,
            expect.clone(),
            period,
            [stall.clone(), drain.clone(), stop.clone()],
            done_tx.clone(),
        )));
    }
    let mut feeders = Vec::new();
    for r in 0..scale.burst_rooms {
        let room = format!("burst{run}-{r}");
        let player = format!("burst{run}-f{r}");
        feeders.push(client::join(Target::Ours, addr, readers + r, &player, &room).await?);
    }
    // Idle: every session joined, state events acknowledged, a couple of heartbeats.
    tokio::time::sleep(heartbeat * 2 + Duration::from_millis(500)).await;
    let before = server.rss_kib()?;
    stall.cancel();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let epoch = Instant::now();
    let mut orders = Vec::new();
    let (fed_tx, mut fed_rx) = tokio::sync::mpsc::unbounded_channel();
    for link in feeders {
        let bytes = scale.burst_input_bytes;
        let behaviour = client::Behaviour {
            heartbeat: Some(period),
            vanish: CancellationToken::new(),
            stop: stop.clone(),
            quit_with_bye: false,
        };
        let (order_tx, order_rx) = tokio::sync::mpsc::unbounded_channel();
        orders.push(order_tx);
        tasks.push(tokio::spawn(feeder(
            link,
            bytes,
            epoch,
            order_rx,
            fed_tx.clone(),
            behaviour,
        )));
    }
    // Every feeder sends a chunk of inputs and waits for them to come back (by then they are
    // queued for every member), until the server holds about 1 MiB for each slow reader: the
    // kernel's send buffers take a varying share first.
    let queued_bytes = || async {
        let body = admin.get_ok("/metrics").await?;
        body.lines()
            .find_map(|l| l.strip_prefix("gameserver_queued_bytes "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .context("no gameserver_queued_bytes in /metrics")
    };
    let mut per_feeder = 0;
    let mut queued = 0.0;
    while per_feeder < scale.burst_inputs && queued < BURST_QUEUED * readers as f64 {
        let chunk = BURST_CHUNK.min(scale.burst_inputs - per_feeder);
        for order in &orders {
            order.send(chunk).context("a feeder ended")?;
        }
        for _ in &orders {
            tokio::time::timeout(Duration::from_secs(60), fed_rx.recv())
                .await
                .context("a feeder took over 60 s")?
                .context("a feeder ended")??;
        }
        per_feeder += chunk;
        // The gauge is sampled every 100 ms (the memory budget's watch).
        tokio::time::sleep(Duration::from_millis(150)).await;
        queued = queued_bytes().await?;
    }
    drop(orders);
    expect.store(per_feeder, Ordering::Relaxed);
    let fed = epoch.elapsed();
    let peak = server.rss_kib()?;
    drain.cancel();
    for _ in 0..readers {
        tokio::time::timeout(Duration::from_secs(60), done_rx.recv())
            .await
            .context("slow readers took over 60 s to drain")?
            .context("a slow reader ended")?;
    }
    let drained = epoch.elapsed();
    // The allocator gives freed memory back to the system on its own schedule (jemalloc: pages
    // unused for about 10 s): sample until the RSS is back within the target, or the window ends.
    let settle_window = if scale.sessions >= 1000 {
        Duration::from_secs(30)
    } else {
        Duration::from_secs(3)
    };
    let settle_started = Instant::now();
    let mut after = server.rss_kib()?;
    while (after as f64) > before as f64 * 1.2 && settle_started.elapsed() < settle_window {
        tokio::time::sleep(Duration::from_millis(500)).await;
        after = server.rss_kib()?;
    }
    let settled = settle_started.elapsed();
    stop.cancel();
    let mut failed = 0;
    for task in tasks {
        if matches!(task.await, Ok(End::Failed) | Err(_)) {
            failed += 1;
        }
    }
    let per_reader = queued / readers as f64 / 1024.0;
    eprintln!(
        "bench: burst: {readers} slow readers, {per_feeder} inputs from each feeder, fed in {fed:?}, {per_reader:.0} KiB queued per reader, drained at {drained:?}; RSS idle {before} KiB, peak {peak} KiB, {after} KiB {settled:?} after the drain; {failed} clients failed"
    );
    if failed > 0 {
        bail!("{failed} burst clients failed");
    }
    let mib = |kib: u64| kib as f64 / 1024.0;
    Ok(vec![
        Measure::ours(
            "9 burst",
            "events queued per slow reader at the peak",
            "KiB",
        )
        .value(per_reader),
        Measure::ours("9 burst", "RSS with the sessions idle, before", "MiB").value(mib(before)),
        Measure::ours("9 burst", "RSS at the peak", "MiB").value(mib(peak)),
        Measure::ours(
            "9 burst",
            "RSS after the drain (once within 1.2x, at most 30 s later)",
            "MiB",
        )
        .value(mib(after)),
        Measure::ours("9 burst", "time from the drain to that RSS", "s")
            .value(settled.as_secs_f64()),
        Measure::ours("9 burst", "RSS after the burst / idle before", "ratio")
            .value(after as f64 / before as f64)
            .goal(Goal::AtMost(1.2)),
    ])
}

/// A burst feeder: for each order, sends that many more inputs and reports on `fed` once they
/// all came back to it; when the orders end, lives on (pings every period) until told to stop.
async fn feeder(
    mut link: Link,
    bytes: usize,
    epoch: Instant,
    mut orders: tokio::sync::mpsc::UnboundedReceiver<u64>,
    fed: tokio::sync::mpsc::UnboundedSender<anyhow::Result<()>>,
    behaviour: client::Behaviour,
) -> End {
    let mut sent = 0u64;
    let mut back = 0u64;
    let mut acks = client::Acks::new(Target::Ours);
    while let Some(more) = orders.recv().await {
        let result = feed(
            &mut link,
            &mut acks,
            [&mut sent, &mut back],
            more,
            bytes,
            epoch,
        )
        .await;
        let failed = result.is_err();
        let _ = fed.send(result);
        if failed {
            return End::Failed;
        }
    }
    client::live(Target::Ours, link, &behaviour).await
}

/// Sends `more` inputs of `bytes` bytes, pipelined, and reads until every input sent came back:
/// by then the room has queued each one for every member.
async fn feed(
    link: &mut Link,
    acks: &mut client::Acks,
    [sent, back]: [&mut u64; 2],
    more: u64,
    bytes: usize,
    epoch: Instant,
) -> anyhow::Result<()> {
    let n = *sent + more;
    while *back < n {
        if *sent < n {
            let chunk = (n - *sent).min(32);
            for _ in 0..chunk {
                *sent += 1;
                link.feed(big_input(*sent, epoch, bytes)).await?;
            }
            if let Some(ack) = acks.take() {
                link.feed(ack).await?;
            }
            SinkExt::<bytes::Bytes>::flush(link).await?;
        }
        let wait = if *sent < n {
            Duration::ZERO
        } else {
            Duration::from_secs(30)
        };
        let mut next = match tokio::time::timeout(wait, link.next()).await {
            Ok(frame) => Some(frame.context("closed")?),
            Err(_) if *sent < n => None,
            Err(_) => bail!("the feeder's own inputs did not come back"),
        };
        while let Some(frame) = next {
            let frame = frame?;
            acks.note(&frame);
            match client::classify(Target::Ours, frame) {
                Inbound::Reply { .. } => *back += 1,
                inbound @ Inbound::Ping(_) => {
                    client::answer(link, &inbound).await?;
                }
                Inbound::Bye => bail!("the server said Bye to a feeder"),
                _ => {}
            }
            next = link.next().now_or_never().flatten();
        }
    }
    if let Some(ack) = acks.take() {
        link.send(ack).await?;
    }
    Ok(())
}

/// A slow reader: reads and pings until `stall`, then neither reads nor writes until `drain`,
/// then reads until `expect` relays came, acknowledges them, says so on `done`, and lives on
/// (pings every period) until `stop`.
async fn slow_reader(
    mut link: Link,
    expect: Arc<AtomicU64>,
    period: Duration,
    [stall, drain, stop]: [CancellationToken; 3],
    done: tokio::sync::mpsc::UnboundedSender<()>,
) -> End {
    let behaviour = client::Behaviour {
        heartbeat: Some(period),
        vanish: CancellationToken::new(),
        stop: stall,
        quit_with_bye: false,
    };
    let mut acks = client::Acks::new(Target::Ours);
    let mut beat = tokio::time::interval_at(Instant::now() + period, period);
    let mut nonce = 0u64;
    loop {
        tokio::select! {
            () = behaviour.stop.cancelled() => break,
            _ = beat.tick() => {
                nonce += 1;
                if let Some(ack) = acks.take()
                    && link.feed(ack).await.is_err()
                {
                    return End::Failed;
                }
                let ping = client::body(&protocol::ClientMessage::Ping { nonce });
                if link.send(ping).await.is_err() {
                    return End::Failed;
                }
            }
            frame = link.next() => {
                let Some(Ok(frame)) = frame else { return End::Failed };
                acks.note(&frame);
                if !matches!(client::answer(&mut link, &client::classify(Target::Ours, frame)).await, Ok(true)) {
                    return End::Failed;
                }
            }
        }
    }
    drain.cancelled().await;
    let expect = expect.load(Ordering::Relaxed);
    let mut relays = 0;
    while relays < expect {
        let frame = match tokio::time::timeout(Duration::from_secs(30), link.next()).await {
            Ok(Some(Ok(frame))) => frame,
            _ => return End::Failed,
        };
        acks.note(&frame);
        let inbound = client::classify(Target::Ours, frame);
        if let Inbound::Reply { .. } = inbound {
            relays += 1;
        }
        if !matches!(client::answer(&mut link, &inbound).await, Ok(true)) {
            return End::Failed;
        }
    }
    if let Some(ack) = acks.take()
        && link.send(ack).await.is_err()
    {
        return End::Failed;
    }
    let _ = done.send(());
    let behaviour = client::Behaviour { stop, ..behaviour };
    client::live(Target::Ours, link, &behaviour).await
}

/// Sessions each transport holds in [`transports`]: enough for per-session figures to stand
/// out of the process's own, few enough that 4 x 5,000 TLS handshakes stay quick.
const TRANSPORT_SESSIONS: usize = 5_000;

/// 10: the game server over TLS, WebSocket and WebSocket over TLS (wss), against itself over
/// plain TCP: what each holding session costs (user-space RSS, CPU) and pipelined throughput.
/// The baseline column of these rows is plain TCP on the same server, not the bare baseline.
async fn transports(bins: &Binaries, scale: &Scale, run: usize) -> anyhow::Result<Vec<Measure>> {
    const KINDS: [(&str, bool, bool); 4] = [
        ("tcp", false, false),
        ("tls", true, false),
        ("websocket", false, true),
        ("wss", true, true),
    ];
    let pair = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
        .context("generate a certificate")?;
    let cert = bins.log_dir.join("bench-cert.pem");
    let key = bins.log_dir.join("bench-key.pem");
    std::fs::write(&cert, pair.cert.pem()).context("write the certificate")?;
    std::fs::write(&key, pair.signing_key.serialize_pem()).context("write the key")?;
    let tls = game_client::Tls::trusting(Some(&cert), "localhost")?;
    let n = scale.sessions.min(TRANSPORT_SESSIONS);
    let mut rss = Vec::new();
    let mut cpu = Vec::new();
    let mut rate = Vec::new();
    for (name, over_tls, websocket) in KINDS {
        let mut env = unthrottled();
        env.push(heartbeat_env(server_heartbeat(scale.hold_heartbeat)));
        if over_tls {
            env.push((
                "GAMESERVER__TLS__CERT_FILE".into(),
                cert.display().to_string(),
            ));
            env.push((
                "GAMESERVER__TLS__KEY_FILE".into(),
                key.display().to_string(),
            ));
        }
        let ws = crate::procs::free_port()?;
        if websocket {
            env.push((
                "GAMESERVER__SERVER__WEBSOCKET_LISTEN".into(),
                ws.to_string(),
            ));
        }
        let settings = Settings {
            idle_timeout: Some(Duration::from_secs(15)),
            env,
            broadcast: false,
        };
        let server =
            Server::start(bins, Target::Ours, &settings, &format!("transport-{name}")).await?;
        let addr = if websocket { ws } else { server.addr };
        let scheme = if over_tls { "wss" } else { "ws" };
        client::speak(
            addr,
            client::Layers {
                tls: over_tls.then(|| tls.clone()),
                websocket: websocket.then(|| format!("{scheme}://localhost:{}/", addr.port())),
            },
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        let idle_rss = server.rss_kib()?;
        let plan = Plan {
            n,
            concurrency: scale.concurrency,
            name: format!("hold-{name}-{run}"),
            heartbeat: Some(scale.hold_heartbeat),
            quit_with_bye: false,
        };
        let crowd = Crowd::gather(Target::Ours, addr, &plan).await;
        let joined = crowd.joined();
        if joined == 0 {
            bail!("transports: no client joined over {name}");
        }
        tokio::time::sleep(scale.hold_heartbeat.min(Duration::from_secs(2))).await;
        let cpu_start = server.cpu()?;
        tokio::time::sleep(scale.hold).await;
        let cpu_used = server.cpu()?.saturating_sub(cpu_start);
        let held_rss = server.rss_kib()?;
        let per_session = kib(held_rss.saturating_sub(idle_rss)) / joined as f64;
        let percent = cpu_used.as_secs_f64() / scale.hold.as_secs_f64() * 100.0;
        crowd.disperse().await;
        let pumps = Pumps::start(
            Target::Ours,
            addr,
            scale.pipelined,
            scale.window,
            &format!("tp-{name}-{run}"),
        )
        .await?;
        tokio::time::sleep(Duration::from_secs(1).min(scale.measure)).await;
        let r = pumps.rate(scale.measure).await;
        pumps.stop().await?;
        eprintln!(
            "bench: transport {name}: {joined} sessions, RSS {idle_rss} -> {held_rss} KiB \
             ({per_session:.2} KiB each), CPU {percent:.2}% over {:?}; {r:.0} frames/s pipelined",
            scale.hold
        );
        rss.push(per_session);
        cpu.push(percent);
        rate.push(r);
    }
    let note = "The baseline column of the transport rows is the same game server over plain \
                TCP in the same run (5,000 held sessions, heartbeat and pipelining as in 1 and \
                4), not the bare Tokio baseline; TLS is rustls with the ring provider, TLS 1.3, \
                a self-signed ECDSA P-256 certificate; WebSocket is tokio-tungstenite, one frame \
                per binary message.";
    // Row names per transport (TLS, WebSocket, wss) and figure (RSS, CPU, pipelined).
    const METRICS: [[&str; 3]; 3] = [
        [
            "over TLS: user-space RSS per held session",
            "over TLS: server CPU while holding",
            "over TLS: pipelined 32-byte inputs, 100 connections",
        ],
        [
            "over WebSocket: user-space RSS per held session",
            "over WebSocket: server CPU while holding",
            "over WebSocket: pipelined 32-byte inputs, 100 connections",
        ],
        [
            "over wss: user-space RSS per held session",
            "over wss: server CPU while holding",
            "over wss: pipelined 32-byte inputs, 100 connections",
        ],
    ];
    const UNITS: [&str; 3] = ["KiB", "% of a core", "frames/s"];
    let figures = [&rss, &cpu, &rate];
    let mut out = Vec::new();
    for (k, names) in METRICS.iter().enumerate() {
        for (f, metric) in names.iter().enumerate() {
            out.push(
                Measure::ours("10 transports", metric, UNITS[f])
                    .value(figures[f][k + 1])
                    .baseline(Some(figures[f][0]))
                    .note(note),
            );
        }
    }
    Ok(out)
}
