//! Fanout: one input relayed to every member of a room, and the latency of the relays.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::{FutureExt, SinkExt, StreamExt};
use hdrhistogram::Histogram;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{ACK_EVERY, Scale, TARGETS, ms_at};
use crate::client::{self};
use crate::procs::{Binaries, Server, Settings, Target};
use crate::report::{Goal, Measure};

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
pub(super) async fn fanout(
    bins: &Binaries,
    scale: &Scale,
    run: usize,
) -> anyhow::Result<Vec<Measure>> {
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
