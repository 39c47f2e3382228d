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
        }
    }
}

/// The workloads, by name, in the order `all` runs them.
pub const WORKLOADS: [&str; 7] = [
    "hold",
    "detect",
    "storm",
    "throughput",
    "metrics",
    "cycles",
    "rooms",
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
        other => bail!("unknown workload {other}; known: {}", WORKLOADS.join(", ")),
    }
}

const TARGETS: [Target; 2] = [Target::Ours, Target::Baseline];

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

/// The game server pings by itself; baseline clients send a frame every period instead.
fn client_heartbeat(target: Target, period: Duration) -> Option<Duration> {
    (target == Target::Baseline).then_some(period)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(f).await?
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
            env: vec![heartbeat_env(scale.hold_heartbeat)],
        };
        let server = Server::start(bins, target, &settings, "hold")?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let idle_rss = server.rss_kib()?;
        let plan = Plan {
            n: scale.sessions,
            concurrency: scale.concurrency,
            name: "hold".to_owned(),
            heartbeat: client_heartbeat(target, scale.hold_heartbeat),
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
                let admin = server.admin.context("admin port")?;
                let (_, took) = blocking(move || crate::procs::http_get(admin, "/metrics")).await?;
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

/// 2: clients vanish at once; how long past the idle timeout until the server resets them.
async fn detect(bins: &Binaries, scale: &Scale) -> anyhow::Result<Vec<Measure>> {
    let idle = scale.detect_idle;
    let mut small: [Option<Histogram<u64>>; 2] = [None, None];
    let mut big = [None, None];
    let mut missed = [None, None];
    for (t, target) in TARGETS.into_iter().enumerate() {
        let settings = Settings {
            idle_timeout: Some(idle),
            env: vec![heartbeat_env(scale.detect_heartbeat)],
        };
        let server = Server::start(bins, target, &settings, "detect")?;
        for (round, n) in [scale.vanish_small, scale.sessions].into_iter().enumerate() {
            let plan = Plan {
                n,
                concurrency: scale.concurrency,
                name: format!("detect{round}"),
                heartbeat: client_heartbeat(target, scale.detect_heartbeat),
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
            } else {
                big[t] = Some(longest.as_secs_f64());
                missed[t] = Some((joined.saturating_sub(reaped)) as f64);
            }
        }
    }
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
        .goal(Goal::AtMost(100.0)),
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
    out[2].ours = max(0);
    out[3].ours = big[0];
    out[4].ours = missed[0];
    Ok(out)
}

/// 3: every client connects at once; handshakes per second and listen queue overflows.
async fn storm(bins: &Binaries, scale: &Scale) -> anyhow::Result<Vec<Measure>> {
    let mut rate = [None, None];
    let mut total = [None, None];
    let mut overflows = [None, None];
    let mut drops = [None, None];
    for (t, target) in TARGETS.into_iter().enumerate() {
        let server = Server::start(bins, target, &Settings::default(), "storm")?;
        let (o0, d0) = listen_counters()?;
        let plan = Plan {
            n: scale.sessions,
            concurrency: scale.sessions,
            name: "storm".to_owned(),
            heartbeat: client_heartbeat(target, Duration::from_secs(5)),
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
        server: &Server,
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
            links.push(client::join(target, server.addr, i, &player, &player).await?);
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
    loop {
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
            match client::classify(target, frame?) {
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
    };
    for (t, target) in TARGETS.into_iter().enumerate() {
        let server = Server::start(bins, target, &settings, "throughput")?;
        let pumps = Pumps::start(
            target,
            &server,
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
        .baseline(q(1, 0.99)),
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
            while epoch.elapsed() < measure {
                seq += 1;
                let sent = Instant::now();
                link.send(client::input(seq, epoch)).await?;
                loop {
                    let frame = link.next().await.context("closed")??;
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
    };
    let server = Server::start(bins, Target::Ours, &settings, "metrics")?;
    let admin = server.admin.context("admin port")?;
    let pumps = Pumps::start(
        Target::Ours,
        &server,
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
                scraped.push(scraped_rate(&pumps, admin, scale.measure).await?);
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
    admin: std::net::SocketAddr,
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
                        blocking(move || crate::procs::http_get(admin, "/metrics")).await?;
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
    let server = Server::start(bins, Target::Ours, &Settings::default(), "cycles")?;
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
            let active = {
                let admin = server.admin.context("admin port")?;
                blocking(move || {
                    let (body, _) = crate::procs::http_get(admin, "/metrics")?;
                    Ok(body
                        .lines()
                        .find_map(|l| l.strip_prefix("gameserver_sessions_active "))
                        .and_then(|v| v.trim().parse::<f64>().ok())
                        .unwrap_or(f64::NAN))
                })
                .await?
            };
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
    let server = Server::start(bins, Target::Ours, &Settings::default(), "rooms")?;
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
            loop {
                tokio::select! {
                    _ = inputs.tick() => {
                        if began.elapsed() >= measure {
                            break;
                        }
                        seq += 1;
                        link.send(client::input(seq, epoch)).await?;
                    }
                    frame = link.next() => {
                        let frame = frame.context("closed")??;
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
