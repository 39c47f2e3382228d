//! The sessions' metrics: traffic, heartbeat round trips, oversized events and throttled
//! authentications.

use prometheus::{Histogram, IntCounter, Registry};

use crate::metric;
use crate::session::outbox::Traffic;

/// The sessions' metrics. Cloning is cheap.
#[derive(Clone, Debug)]
pub(crate) struct SessionMetrics {
    /// Ping to pong round trips measured by the server.
    pub heartbeat_rtt: Histogram,
    /// Events dropped because they did not fit in one frame (a game bug).
    pub events_oversized: IntCounter,
    /// Hellos refused without checking their token, because their source failed too often.
    pub auth_throttled: IntCounter,
    /// Idle deadlines extended because the peer's kernel still answered over a lossy path.
    pub loss_grace: IntCounter,
    /// Frames and bytes, by direction, resolved once.
    pub traffic: TrafficCounters,
}

impl SessionMetrics {
    /// Registers the group in `registry`.
    pub(crate) fn register(registry: &Registry) -> Result<SessionMetrics, prometheus::Error> {
        let frames = metric::counter_vec(
            registry,
            "gameserver_frames_total",
            "Frames, by direction (in, out).",
            "direction",
            ["in", "out"],
        )?;
        let bytes = metric::counter_vec(
            registry,
            "gameserver_bytes_total",
            "Bytes of frames including length prefixes, by direction (in, out).",
            "direction",
            ["in", "out"],
        )?;
        Ok(SessionMetrics {
            heartbeat_rtt: metric::histogram(
                registry,
                "gameserver_heartbeat_rtt_seconds",
                "Round trip from a server Ping to the client's Pong.",
                &[
                    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                    0.5, 1.0, 2.5, 5.0,
                ],
            )?,
            events_oversized: metric::counter(
                registry,
                "gameserver_events_oversized_total",
                "Game events dropped because they did not fit in one frame (a game bug).",
            )?,
            auth_throttled: metric::counter(
                registry,
                "gameserver_auth_throttled_total",
                "Hellos refused unchecked because their source exceeded auth.max_failures_per_source.",
            )?,
            loss_grace: metric::counter(
                registry,
                "gameserver_loss_grace_total",
                "Idle deadlines extended by session.loss_grace: the client was silent, but its kernel still acknowledged the server's pings over a connection that had lost packets.",
            )?,
            traffic: TrafficCounters {
                frames_in: frames.with_label_values(&["in"]),
                frames_out: frames.with_label_values(&["out"]),
                bytes_in: bytes.with_label_values(&["in"]),
                bytes_out: bytes.with_label_values(&["out"]),
            },
        })
    }
}

/// The four traffic counters.
#[derive(Debug, Clone)]
pub(crate) struct TrafficCounters {
    frames_in: IntCounter,
    frames_out: IntCounter,
    bytes_in: IntCounter,
    bytes_out: IntCounter,
}

impl TrafficCounters {
    /// Adds a session's traffic since its last flush (kept locally and added in batches, so
    /// that no frame pays for an atomic on a shared cache line).
    pub(crate) fn add(&self, delta: &Traffic) {
        self.frames_in.inc_by(delta.frames_in);
        self.frames_out.inc_by(delta.frames_out);
        self.bytes_in.inc_by(delta.bytes_in);
        self.bytes_out.inc_by(delta.bytes_out);
    }
}
