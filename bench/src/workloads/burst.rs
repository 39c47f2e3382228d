//! Burst: slow readers behind a burst of large events, against the queue and memory budgets.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Scale, heartbeat_env, server_heartbeat, unthrottled};
use crate::client::{self, End, Inbound, Link};
use crate::procs::{Binaries, Server, Settings, Target};
use crate::report::{Goal, Measure};

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
pub(super) async fn burst(
    bins: &Binaries,
    scale: &Scale,
    run: usize,
) -> anyhow::Result<Vec<Measure>> {
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
    client::live(Target::Ours, link, &behaviour, None).await
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
    client::live(Target::Ours, link, &behaviour, None).await
}
