//! The one task that learns how every session ended: it records the close metrics, tells the
//! game the player left, and then logs one line per close at a level that fits the reason.
//! Bookkeeping comes first, so that a log that cannot be written never leaves a close uncounted.
//! Reasons a client can cause at will are logged a few lines per second at most, and the rest
//! summarised (see [`crate::logging::Throttle`]).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::close::{Level, policy};
use crate::logging::{ABUSIVE, ORDINARY, Throttle};
use crate::ops::close_log::{Closes, Detail, clip};
use crate::ops::metrics::Metrics;
use crate::player::registry::Registry;
use crate::session::end::SessionEnd;

/// Receives session ends until every sender is gone.
pub(crate) async fn run(
    mut ends: mpsc::Receiver<SessionEnd>,
    metrics: Metrics,
    registry: Arc<Registry>,
    closes: Arc<Closes>,
    throttle: Throttle,
) {
    // Each kind's summary is due SUMMARY_EVERY after its first suppressed line; looking every
    // second keeps it close to that.
    let mut summaries = tokio::time::interval(Duration::from_secs(1));
    summaries.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            end = ends.recv() => match end {
                Some(end) => reap(&end, &metrics, &registry, &closes, &throttle),
                None => break,
            },
            _ = summaries.tick() => throttle.summarize(false),
        }
    }
    throttle.summarize(true);
}

fn reap(
    end: &SessionEnd,
    metrics: &Metrics,
    registry: &Registry,
    closes: &Closes,
    throttle: &Throttle,
) {
    metrics.session_closed(end.reason, end.lifetime, end.detect);
    let player = match &end.player {
        Some(player) => Some(player.player_id_arc()),
        None => end.claimed.clone(),
    };
    closes.record_with(player, end.reason, Some(Box::new(detail_of(end))));
    if end.forced {
        metrics.drain_forced.inc();
    }
    // A parked session was already taken out of the registry when it parked, and its player has
    // not left: the parking lot reports the leave if it never comes back.
    if let Some(player) = &end.player
        && !end.parked
    {
        registry.remove(end.session_id);
        player.left(end.reason);
    }
    let rate = if policy(end.reason).abusive {
        ABUSIVE
    } else {
        ORDINARY
    };
    if throttle.admit(end.reason.as_str(), rate) {
        log(end);
    }
}

/// What the close record keeps of `end` beyond its player and reason.
fn detail_of(end: &SessionEnd) -> Detail {
    let at_unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64);
    Detail {
        at_unix_ms,
        session: end.session_id,
        peer: end.peer,
        transport: end.transport,
        text: end.detail.as_deref().map(clip),
        lifetime_ms: end.lifetime.as_millis() as u64,
        since_last_read_ms: end.detect.as_millis() as u64,
        since_last_write_ms: end.seen.since_last_write.map(|d| d.as_millis() as u64),
        rtts: end.seen.rtts,
        kernel: end.seen.kernel,
        frames_in: end.traffic.frames_in,
        frames_out: end.traffic.frames_out,
        bytes_in: end.traffic.bytes_in,
        bytes_out: end.traffic.bytes_out,
        parked: end.parked,
    }
}

fn log(end: &SessionEnd) {
    let player = match (&end.player, &end.claimed) {
        (Some(player), _) => player.player_id(),
        (None, Some(claimed)) => claimed,
        (None, None) => "",
    };
    let detail = end.detail.as_deref().unwrap_or("");
    macro_rules! line {
        ($level:ident) => {
            tracing::$level!(
                session = end.session_id,
                player,
                peer = %end.peer,
                transport = end.transport.as_str(),
                reason = end.reason.as_str(),
                detail,
                lifetime_ms = end.lifetime.as_millis() as u64,
                detect_ms = end.detect.as_millis() as u64,
                frames_in = end.traffic.frames_in,
                frames_out = end.traffic.frames_out,
                bytes_in = end.traffic.bytes_in,
                bytes_out = end.traffic.bytes_out,
                forced = end.forced,
                parked = end.parked,
                "session closed"
            )
        };
    }
    match policy(end.reason).level {
        Level::Info => line!(info),
        Level::Warn => line!(warn),
        Level::Error => line!(error),
    }
}
