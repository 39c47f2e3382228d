//! Rooms: many rooms at once, each with its players.

use std::sync::Arc;

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use tokio::time::Instant;

use super::{ACK_EVERY, Scale, histogram, ms_at};
use crate::client::{self, Inbound};
use crate::procs::{Binaries, Server, Settings, Target};
use crate::report::Measure;

/// 7: rooms of players relaying inputs at the server's tick rate; relay latency.
pub(super) async fn rooms(
    bins: &Binaries,
    scale: &Scale,
    run: usize,
) -> anyhow::Result<Vec<Measure>> {
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
