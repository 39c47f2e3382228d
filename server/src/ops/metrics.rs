//! Every metric the server exports, registered once in its own registry.
//!
//! Labels are aggregate only (reason, direction, kind): never a label per session or player.
//! Every close reason and rejection reason is initialised to zero at start so that `rate()`
//! works from the first scrape.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use std::time::Duration;

use crate::resume::refusal::{Eviction, Refusal};
use crate::session::close::CloseReason;
use crate::session::outbox::Traffic;
use crate::transport::labels::{AcceptError, ProxyResult, Rejection, ReloadResult, TransportName};

/// Handles to every metric. Cloning is cheap (each handle is an `Arc`).
#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Registry,
    /// Sessions admitted and not yet closed.
    pub sessions_active: IntGauge,
    /// Connections admitted as sessions.
    sessions_accepted: IntCounterVec,
    /// Connections turned away, by reason.
    connections_rejected: IntCounterVec,
    /// accept() failures, by kind.
    accept_errors: IntCounterVec,
    /// PROXY protocol headers, by result.
    proxy_headers: IntCounterVec,
    /// Certificate reloads, by result.
    tls_reloads: IntCounterVec,
    /// Closed sessions, by close reason.
    sessions_closed: IntCounterVec,
    /// Session lifetimes, by close reason.
    session_duration: HistogramVec,
    /// Time from the last inbound byte to the close decision, by close reason.
    close_detect: HistogramVec,
    /// Ping to pong round trips measured by the server.
    pub heartbeat_rtt: Histogram,
    /// Frames, by direction.
    frames: IntCounterVec,
    /// Bytes on the wire (frames including their length prefix), by direction.
    bytes: IntCounterVec,
    /// 1 while the server accepts players, 0 while it drains.
    pub ready: IntGauge,
    /// Sessions still open when the drain timeout expired and that were closed by force.
    pub drain_forced: IntCounter,
    /// Events dropped because they did not fit in one frame (a game bug).
    pub events_oversized: IntCounter,
    /// Parked sessions taken over by a new connection.
    pub sessions_resumed: IntCounter,
    /// Parked sessions whose grace window passed.
    pub resume_expired: IntCounter,
    /// Resume attempts refused, by reason.
    resume_rejected: IntCounterVec,
    /// Sessions parked, waiting for their player to come back.
    pub sessions_parked: IntGauge,
    /// Parked sessions ended early to stay within a limit, by cause.
    parked_evicted: IntCounterVec,
    /// `server.memory_budget`.
    pub memory_budget: IntGauge,
    /// The server's estimate of the memory it uses (what the budget is compared with).
    pub memory_used: IntGauge,
    /// Bytes of events queued for players, live and parked.
    pub queued_bytes: IntGauge,
    /// Bytes of events kept for replay, live and parked.
    pub replay_bytes: IntGauge,
    /// Bytes held by parked sessions.
    pub parked_bytes: IntGauge,
    /// Hellos refused without checking their token, because their source failed too often.
    pub auth_throttled: IntCounter,
    /// Log lines lost: the log writer could not keep up, or writing failed.
    pub log_lines_dropped: IntCounter,
    /// Close and rejection log lines folded into periodic summaries.
    pub log_lines_suppressed: IntCounter,
    /// Time the server itself could not run (stopped, frozen or overloaded), which it does not
    /// charge to clients' deadlines or rate limits.
    pub server_stall: prometheus::Counter,
    /// Admin connections closed at accept because `admin.max_connections` were open.
    pub admin_rejected: IntCounter,
    /// Rooms open.
    pub rooms_active: IntGauge,
}

impl Metrics {
    /// Registers every metric, plus the process collector, in a fresh registry.
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let counter = |name: &str, help: &str| -> Result<IntCounter, prometheus::Error> {
            let c = IntCounter::new(name, help)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let counter_vec =
            |name: &str, help: &str, label: &str| -> Result<IntCounterVec, prometheus::Error> {
                let c = IntCounterVec::new(Opts::new(name, help), &[label])?;
                registry.register(Box::new(c.clone()))?;
                Ok(c)
            };
        let histogram_vec =
            |name: &str, help: &str, buckets: &[f64]| -> Result<HistogramVec, prometheus::Error> {
                let h = HistogramVec::new(
                    HistogramOpts::new(name, help).buckets(buckets.to_vec()),
                    &["reason"],
                )?;
                registry.register(Box::new(h.clone()))?;
                Ok(h)
            };
        let gauge = |name: &str, help: &str| -> Result<IntGauge, prometheus::Error> {
            let g = IntGauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };

        let heartbeat_rtt = Histogram::with_opts(
            HistogramOpts::new(
                "gameserver_heartbeat_rtt_seconds",
                "Round trip from a server Ping to the client's Pong.",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0, 2.5, 5.0,
            ]),
        )?;
        registry.register(Box::new(heartbeat_rtt.clone()))?;

        let metrics = Metrics {
            sessions_active: gauge(
                "gameserver_sessions_active",
                "Sessions admitted and not yet closed.",
            )?,
            sessions_accepted: counter_vec(
                "gameserver_sessions_accepted_total",
                "Connections admitted as sessions, by transport (tcp, websocket).",
                "transport",
            )?,
            connections_rejected: counter_vec(
                "gameserver_connections_rejected_total",
                "Connections turned away with Bye{server_full} before becoming sessions, by reason.",
                "reason",
            )?,
            accept_errors: counter_vec(
                "gameserver_accept_errors_total",
                "accept() failures, by kind (emfile, enfile, enobufs, enomem, other).",
                "kind",
            )?,
            proxy_headers: counter_vec(
                "gameserver_proxy_headers_total",
                "PROXY protocol headers on the game port, by result: ok, missing (a trusted \
                 balancer's connection without one), invalid, untrusted (one from an address not \
                 in net.proxy_protocol.trusted).",
                "result",
            )?,
            tls_reloads: counter_vec(
                "gameserver_tls_reloads_total",
                "TLS certificate reloads on SIGHUP, by result: ok, error (the old pair is kept).",
                "result",
            )?,
            sessions_closed: counter_vec(
                "gameserver_sessions_closed_total",
                "Sessions closed, by the first fatal event each observed.",
                "reason",
            )?,
            session_duration: histogram_vec(
                "gameserver_session_duration_seconds",
                "How long sessions lasted, by close reason.",
                &[
                    0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0,
                    14400.0,
                ],
            )?,
            close_detect: histogram_vec(
                "gameserver_close_detect_seconds",
                "Time from the last inbound frame to the close decision, for the reasons where a gone peer can linger.",
                &[
                    0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 15.0, 20.0,
                    30.0, 60.0, 120.0,
                ],
            )?,
            heartbeat_rtt,
            frames: counter_vec(
                "gameserver_frames_total",
                "Frames, by direction (in, out).",
                "direction",
            )?,
            bytes: counter_vec(
                "gameserver_bytes_total",
                "Bytes of frames including length prefixes, by direction (in, out).",
                "direction",
            )?,
            ready: gauge(
                "gameserver_ready",
                "1 while the server accepts players, 0 while it drains for shutdown.",
            )?,
            drain_forced: counter(
                "gameserver_drain_forced_total",
                "Sessions still open when shutdown.drain_timeout expired, closed by force.",
            )?,
            events_oversized: counter(
                "gameserver_events_oversized_total",
                "Game events dropped because they did not fit in one frame (a game bug).",
            )?,
            sessions_resumed: counter(
                "gameserver_sessions_resumed_total",
                "Parked sessions taken over by a new connection with their resume token.",
            )?,
            resume_expired: counter(
                "gameserver_resume_expired_total",
                "Parked sessions whose player did not come back within session.resume_grace.",
            )?,
            resume_rejected: counter_vec(
                "gameserver_resume_rejected_total",
                "Resume attempts refused, by reason.",
                "reason",
            )?,
            sessions_parked: gauge(
                "gameserver_sessions_parked",
                "Sessions whose connection broke, parked for session.resume_grace.",
            )?,
            parked_evicted: counter_vec(
                "gameserver_parked_evicted_total",
                "Parked sessions ended before their grace window to stay within a limit, by cause.",
                "cause",
            )?,
            memory_budget: gauge(
                "gameserver_memory_budget_bytes",
                "server.memory_budget: above it new players are refused and parked sessions evicted.",
            )?,
            memory_used: gauge(
                "gameserver_memory_used_bytes",
                "The server's estimate of its memory: what it used at start plus what it holds for players.",
            )?,
            queued_bytes: gauge(
                "gameserver_queued_bytes",
                "Bytes of events queued for players, live and parked (session.outbound_queue_bytes each).",
            )?,
            replay_bytes: gauge(
                "gameserver_replay_bytes",
                "Bytes of sent events kept for replay, live and parked (session.resume_buffer_bytes each).",
            )?,
            parked_bytes: gauge(
                "gameserver_parked_bytes",
                "Bytes held by parked sessions (session.max_parked_bytes in all).",
            )?,
            auth_throttled: counter(
                "gameserver_auth_throttled_total",
                "Hellos refused unchecked because their source exceeded auth.max_failures_per_source.",
            )?,
            log_lines_dropped: counter(
                "gameserver_log_lines_dropped_total",
                "Log lines lost because the log writer could not keep up or writing failed.",
            )?,
            log_lines_suppressed: counter(
                "gameserver_log_lines_suppressed_total",
                "Close and rejection log lines folded into periodic per-reason summaries.",
            )?,
            server_stall: {
                let c = prometheus::Counter::new(
                    "gameserver_server_stall_seconds_total",
                    "Time the server could not run its tasks (stopped, frozen, overloaded); not charged to clients.",
                )?;
                registry.register(Box::new(c.clone()))?;
                c
            },
            admin_rejected: counter(
                "gameserver_admin_connections_rejected_total",
                "Admin connections closed at accept because admin.max_connections were open.",
            )?,
            rooms_active: gauge(
                "gameserver_rooms_active",
                "Rooms open (rooms.max_rooms at most).",
            )?,
            registry,
        };
        for eviction in Eviction::ALL {
            metrics
                .parked_evicted
                .with_label_values(&[eviction.as_str()]);
        }
        for refusal in Refusal::ALL {
            metrics
                .resume_rejected
                .with_label_values(&[refusal.as_str()]);
        }

        for reason in CloseReason::ALL {
            let label = reason.as_str();
            metrics.sessions_closed.with_label_values(&[label]);
            metrics.session_duration.with_label_values(&[label]);
            if crate::session::close::policy(reason).detect {
                metrics.close_detect.with_label_values(&[label]);
            }
        }
        let build = IntGaugeVec::new(
            Opts::new(
                "gameserver_build_info",
                "1, labelled with the engine's version and the protocol version it speaks.",
            ),
            &["version", "protocol"],
        )?;
        build
            .with_label_values(&[
                env!("CARGO_PKG_VERSION"),
                &protocol::PROTOCOL_VERSION.to_string(),
            ])
            .set(1);
        metrics.registry.register(Box::new(build))?;
        for rejection in Rejection::ALL {
            metrics
                .connections_rejected
                .with_label_values(&[rejection.as_str()]);
        }
        for result in ReloadResult::ALL {
            metrics.tls_reloads.with_label_values(&[result.as_str()]);
        }
        for transport in TransportName::ALL {
            metrics
                .sessions_accepted
                .with_label_values(&[transport.as_str()]);
        }
        for kind in AcceptError::ALL {
            metrics.accept_errors.with_label_values(&[kind.as_str()]);
        }
        for result in ProxyResult::ALL {
            metrics.proxy_headers.with_label_values(&[result.as_str()]);
        }
        for direction in ["in", "out"] {
            metrics.frames.with_label_values(&[direction]);
            metrics.bytes.with_label_values(&[direction]);
        }
        metrics.registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        Ok(metrics)
    }

    /// A connection became a session over `transport`.
    pub(crate) fn session_accepted(&self, transport: TransportName) {
        self.sessions_accepted
            .with_label_values(&[transport.as_str()])
            .inc();
    }

    /// A connection was turned away before it became a session.
    pub(crate) fn rejected(&self, rejection: Rejection) {
        self.connections_rejected
            .with_label_values(&[rejection.as_str()])
            .inc();
    }

    /// `accept()` failed for a reason that is not one connection's.
    pub(crate) fn accept_error(&self, kind: AcceptError) {
        self.accept_errors.with_label_values(&[kind.as_str()]).inc();
    }

    /// What came of a PROXY header.
    pub(crate) fn proxy_header(&self, result: ProxyResult) {
        self.proxy_headers
            .with_label_values(&[result.as_str()])
            .inc();
    }

    /// What came of a certificate reload.
    #[cfg_attr(not(feature = "app"), allow(dead_code))]
    pub(crate) fn tls_reload(&self, result: ReloadResult) {
        self.tls_reloads.with_label_values(&[result.as_str()]).inc();
    }

    /// A session closed for `reason` after `lifetime`, `detect` after its peer's last frame.
    pub(crate) fn session_closed(&self, reason: CloseReason, lifetime: Duration, detect: Duration) {
        let label = reason.as_str();
        self.sessions_closed.with_label_values(&[label]).inc();
        self.session_duration
            .with_label_values(&[label])
            .observe(lifetime.as_secs_f64());
        if crate::session::close::policy(reason).detect {
            self.close_detect
                .with_label_values(&[label])
                .observe(detect.as_secs_f64());
        }
    }

    /// A resume was refused.
    pub(crate) fn resume_rejected(&self, refusal: Refusal) {
        self.resume_rejected
            .with_label_values(&[refusal.as_str()])
            .inc();
    }

    /// A parked session was ended before its grace window.
    pub(crate) fn parked_evicted(&self, cause: Eviction) {
        self.parked_evicted
            .with_label_values(&[cause.as_str()])
            .inc();
    }

    /// The registry in Prometheus text format.
    pub fn render(&self) -> String {
        let dropped = crate::ops::logging::dropped_lines();
        let counted = self.log_lines_dropped.get();
        if dropped > counted {
            self.log_lines_dropped.inc_by(dropped - counted);
        }
        let mut out = Vec::with_capacity(16 * 1024);
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(%error, "cannot encode metrics");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

/// Cached handles to the four traffic counters.
#[derive(Debug, Clone)]
pub struct TrafficCounters {
    frames_in: IntCounter,
    frames_out: IntCounter,
    bytes_in: IntCounter,
    bytes_out: IntCounter,
}

impl TrafficCounters {
    /// Resolves the labelled counters once.
    pub fn new(metrics: &Metrics) -> Self {
        TrafficCounters {
            frames_in: metrics.frames.with_label_values(&["in"]),
            frames_out: metrics.frames.with_label_values(&["out"]),
            bytes_in: metrics.bytes.with_label_values(&["in"]),
            bytes_out: metrics.bytes.with_label_values(&["out"]),
        }
    }

    /// Adds a session's traffic since its last flush (kept locally and added in batches, so
    /// that no frame pays for an atomic on a shared cache line).
    pub fn add(&self, delta: &Traffic) {
        self.frames_in.inc_by(delta.frames_in);
        self.frames_out.inc_by(delta.frames_out);
        self.bytes_in.inc_by(delta.bytes_in);
        self.bytes_out.inc_by(delta.bytes_out);
    }
}
