//! Listing: the admin port's room listing while rooms play.

use std::sync::Arc;

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use tokio::time::Instant;

use super::{ACK_EVERY, Scale, histogram, ms_at};
use crate::client::{self, Inbound};
use crate::procs::{Binaries, Server, Settings, Target};
use crate::report::Measure;

/// One room in this many is private (the demo's `private` label), the listing's filter.
const PRIVATE_EVERY: usize = 10;

/// 11: `scale.listing_rooms` rooms of one player each, every player sending an input every
/// `scale.input_every`; meanwhile `GET /rooms?label=private` (a filtered page of 100) and an
/// unfiltered page deep in the listing, each `scale.listings` times. The time from connect to
/// the last byte of the answer, as an operator's tool or a matchmaker sees it.
pub(super) async fn listing(
    bins: &Binaries,
    scale: &Scale,
    run: usize,
) -> anyhow::Result<Vec<Measure>> {
    let rooms = scale.listing_rooms;
    let settings = Settings {
        env: vec![(
            "GAMESERVER__ROOMS__MAX_ROOMS".to_owned(),
            rooms.max(1).to_string(),
        )],
        ..Settings::default()
    };
    let server = Server::start(bins, Target::Ours, &settings, "listing").await?;
    let addr = server.addr;
    let opened = Arc::new(tokio::sync::Barrier::new(rooms + 1));
    let stop = tokio_util::sync::CancellationToken::new();
    let epoch = Instant::now();
    let mut players = Vec::with_capacity(rooms);
    for i in 0..rooms {
        let opened = opened.clone();
        let stop = stop.clone();
        let every = scale.input_every;
        // Spread the inputs evenly over the period.
        let offset = every.mul_f64(i as f64 / rooms as f64);
        players.push(tokio::spawn(async move {
            let room = format!("list{run}-{i:05}");
            let options: &[u8] = if i % PRIVATE_EVERY == 0 {
                b"password=bench"
            } else {
                b""
            };
            let joined =
                client::join_with_options(addr, i, &format!("lister{run}-{i}"), &room, options)
                    .await;
            opened.wait().await;
            let mut link = joined?;
            let mut inputs = tokio::time::interval_at(Instant::now() + offset, every);
            let mut seq = 0u64;
            let mut acks = client::Acks::new(Target::Ours);
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    _ = inputs.tick() => {
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
            Ok::<_, anyhow::Error>(())
        }));
    }
    opened.wait().await;
    let private = rooms.div_ceil(PRIVATE_EVERY);
    let (body, _) = server.get("/rooms?limit=1").await?;
    let total: serde_json::Value = serde_json::from_str(&body).context("the listing is JSON")?;
    if total["total"].as_u64() != Some(rooms as u64) {
        bail!("{rooms} rooms opened, the listing says {body}");
    }
    let deep = format!("/rooms?limit=100&after=list{run}-{:05}", rooms / 2);
    let mut filtered = histogram();
    let mut unfiltered = histogram();
    for _ in 0..scale.listings {
        let (body, took) = server.get("/rooms?label=private&limit=100").await?;
        let page: serde_json::Value = serde_json::from_str(&body).context("JSON")?;
        let listed = page["rooms"].as_array().map_or(0, Vec::len);
        if listed != private.min(100) {
            bail!(
                "a page of private rooms lists {listed}, expected {}",
                private.min(100)
            );
        }
        filtered.saturating_record(took.as_micros() as u64);
        let (_, took) = server.get(&deep).await?;
        unfiltered.saturating_record(took.as_micros() as u64);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    stop.cancel();
    for player in players {
        player.await??;
    }
    eprintln!(
        "bench: listing: {rooms} rooms; a filtered page p50 {:.2} ms p99 {:.2} ms; a deep page \
         p50 {:.2} ms p99 {:.2} ms",
        ms_at(&filtered, 0.5),
        ms_at(&filtered, 0.99),
        ms_at(&unfiltered, 0.5),
        ms_at(&unfiltered, 0.99)
    );
    let row = "11 room listing";
    Ok(vec![
        Measure::ours(row, "GET /rooms?label=private&limit=100, p50", "ms")
            .value(ms_at(&filtered, 0.5)),
        Measure::ours(row, "GET /rooms?label=private&limit=100, p99", "ms")
            .value(ms_at(&filtered, 0.99)),
        Measure::ours(row, "GET /rooms?limit=100&after=(the middle), p99", "ms")
            .value(ms_at(&unfiltered, 0.99)),
    ])
}
