//! Throughput: pipelined inputs pumped through the server, and round trips one at a time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::{FutureExt, SinkExt, StreamExt};
use hdrhistogram::Histogram;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{ACK_EVERY, Scale, TARGETS, histogram, ms_at, unthrottled};
use crate::client::{self, Inbound, Link};
use crate::procs::{Binaries, Server, Settings, Target};
use crate::report::{Goal, Measure};

/// Read buffer of each pipelined connection.
const PUMP_READ_BUFFER: usize = 64 * 1024;

/// Pipelined connections that keep `window` inputs in flight and count the replies.
pub(super) struct Pumps {
    replies: Arc<AtomicU64>,
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Pumps {
    pub(super) async fn start(
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
            let mut link = client::join(target, addr, i, &player, &player).await?;
            // Room for a window of replies in one read: the bench's 1 KiB default, kept small
            // for the 19,000 clients of other workloads, would take several reads for each
            // window (the more, the larger the server's reply frames).
            link.read_buffer_mut().reserve(PUMP_READ_BUFFER);
            links.push(link);
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
    pub(super) async fn rate(&self, period: Duration) -> f64 {
        let before = self.replies.load(Ordering::Relaxed);
        let started = Instant::now();
        tokio::time::sleep(period).await;
        let after = self.replies.load(Ordering::Relaxed);
        (after - before) as f64 / started.elapsed().as_secs_f64()
    }

    pub(super) async fn stop(self) -> anyhow::Result<()> {
        self.stop.cancel();
        for task in self.tasks {
            task.await??;
        }
        Ok(())
    }
}

pub(super) async fn pump(
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

/// Pipelined frames/s of each server in `servers`, measured in `scale.turns` turns that
/// alternate between them (forward, then backward, and so on), so that a slow or a fast moment of
/// this shared machine falls on each server alike: the median of each server's turns.
pub(super) async fn pipelined_turns(
    servers: &[(Target, std::net::SocketAddr, &str)],
    scale: &Scale,
    label: &str,
) -> anyhow::Result<Vec<f64>> {
    let mut turns = vec![Vec::with_capacity(scale.turns); servers.len()];
    for turn in 0..scale.turns {
        let order = turn_order(turn, servers.len());
        for s in order {
            let (target, addr, name) = servers[s];
            let pumps = Pumps::start(
                target,
                addr,
                scale.pipelined,
                scale.window,
                &format!("{label}-{turn}-{s}"),
            )
            .await?;
            tokio::time::sleep(Duration::from_secs(1).min(scale.measure)).await;
            let r = pumps.rate(scale.measure).await;
            pumps.stop().await?;
            eprintln!("bench: {label} {name}, turn {turn}: {r:.0} frames/s pipelined");
            turns[s].push(r);
        }
    }
    Ok(turns
        .iter_mut()
        .map(|rates| crate::report::median(rates).unwrap_or(0.0))
        .collect())
}

/// The order of `n` servers in turn number `turn`: forward, backward, forward...
fn turn_order(turn: usize, n: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    if turn % 2 == 1 {
        order.reverse();
    }
    order
}

/// 4: pipelined echo throughput, and unpipelined round trips; both servers up together and
/// measured in alternating turns.
pub(super) async fn throughput(
    bins: &Binaries,
    scale: &Scale,
    run: usize,
) -> anyhow::Result<Vec<Measure>> {
    let settings = Settings {
        idle_timeout: None,
        env: unthrottled(),
        broadcast: false,
    };
    let mut servers = Vec::with_capacity(TARGETS.len());
    for target in TARGETS {
        servers.push(Server::start(bins, target, &settings, "throughput").await?);
    }
    let pumped: Vec<_> = servers
        .iter()
        .map(|server| (server.target, server.addr, server.target.name()))
        .collect();
    let rate = pipelined_turns(&pumped, scale, &format!("throughput{run}")).await?;
    let mut rtt: Vec<Histogram<u64>> = servers.iter().map(|_| histogram()).collect();
    for turn in 0..scale.turns {
        let order = turn_order(turn, servers.len());
        for t in order {
            let server = &servers[t];
            let h = round_trips(server.target, server, scale, &format!("rt{run}-{turn}")).await?;
            eprintln!(
                "bench: throughput {}, turn {turn}: round trips p50 {:.3} ms p99 {:.3} ms ({} \
                 samples)",
                server.target.name(),
                ms_at(&h, 0.5),
                ms_at(&h, 0.99),
                h.len()
            );
            rtt[t].add(h)?;
        }
    }
    for (t, server) in servers.iter().enumerate() {
        eprintln!(
            "bench: throughput {}: {:.0} frames/s pipelined (median of {} turns); round trips p50 \
             {:.3} ms p99 {:.3} ms ({} samples)",
            server.target.name(),
            rate[t],
            scale.turns,
            ms_at(&rtt[t], 0.5),
            ms_at(&rtt[t], 0.99),
            rtt[t].len()
        );
    }
    let q = |t: usize, q: f64| ms_at(&rtt[t], q);
    let mut out = vec![
        Measure::ours(
            "4 throughput",
            "pipelined 32-byte inputs, 100 connections",
            "frames/s",
        )
        .baseline(Some(rate[1]))
        .goal(Goal::RatioAtLeast(0.9)),
        Measure::ours(
            "4 throughput",
            "unpipelined round trip at 1,000 clients, p50",
            "ms",
        )
        .baseline(Some(q(1, 0.5)))
        .goal(Goal::RatioAtMost(1.5)),
        Measure::ours(
            "4 throughput",
            "unpipelined round trip at 1,000 clients, p99",
            "ms",
        )
        .baseline(Some(q(1, 0.99)))
        .goal(Goal::RatioAtMost(1.2)),
    ];
    out[0].ours = Some(rate[0]);
    out[1].ours = Some(q(0, 0.5));
    out[2].ours = Some(q(0, 0.99));
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
