//! Every metric the server exports, registered once in its own registry: the groups each part
//! of the server keeps ([`TransportMetrics`], [`SessionMetrics`], [`ResumeMetrics`]) and what the
//! server as a whole reports (sessions open and closed, memory, readiness, logging, stalls).
//!
//! Labels are aggregate only (reason, direction, kind): never a label per session or player.
//! Every close reason and rejection reason is initialised to zero at start so that `rate()`
//! works from the first scrape.

use std::time::Duration;

use prometheus::{
    Encoder, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::close::{CloseReason, policy};
use crate::metric;
use crate::resume::ResumeMetrics;
use crate::session::metrics::SessionMetrics;
use crate::transport::metrics::TransportMetrics;

/// Handles to every metric. Cloning is cheap (each handle is an `Arc`).
#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Registry,
    /// The process collector's own registry: reading it lists the process's descriptors, a
    /// cost the status sampler, which reads the server's own metrics every second, does not pay.
    process: Registry,
    /// The transport's: accepted, rejected, accept errors, PROXY headers, certificate reloads.
    pub transport: TransportMetrics,
    /// The sessions': traffic, heartbeats, oversized events, throttled authentications.
    pub session: SessionMetrics,
    /// Resume's: parked, resumed, expired, evicted, refused.
    pub resume: ResumeMetrics,
    /// Sessions admitted and not yet closed.
    pub sessions_active: IntGauge,
    /// Closed sessions, by close reason.
    sessions_closed: IntCounterVec,
    /// Session lifetimes, by close reason.
    session_duration: HistogramVec,
    /// Time from the last inbound byte to the close decision, by close reason.
    close_detect: HistogramVec,
    /// 1 while the server accepts players, 0 while it drains.
    pub ready: IntGauge,
    /// Sessions still open when the drain timeout expired and that were closed by force.
    pub drain_forced: IntCounter,
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
    /// Registers every metric in a fresh registry, and the process collector in its own.
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let r = &registry;
        let reasons = || CloseReason::ALL.map(CloseReason::as_str);
        let detected = || {
            CloseReason::ALL
                .into_iter()
                .filter(|reason| policy(*reason).detect)
                .map(CloseReason::as_str)
        };
        let sessions_closed = metric::counter_vec(
            r,
            "gameserver_sessions_closed_total",
            "Sessions closed, by the first fatal event each observed.",
            "reason",
            reasons(),
        )?;
        let session_duration = metric::histogram_vec(
            r,
            "gameserver_session_duration_seconds",
            "How long sessions lasted, by close reason.",
            "reason",
            &[
                0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0,
            ],
        )?;
        let close_detect = metric::histogram_vec(
            r,
            "gameserver_close_detect_seconds",
            "Time from the last inbound frame to the close decision, for the reasons where a gone peer can linger.",
            "reason",
            &[
                0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 15.0, 20.0,
                30.0, 60.0, 120.0,
            ],
        )?;
        for reason in reasons() {
            session_duration.with_label_values(&[reason]);
        }
        for reason in detected() {
            close_detect.with_label_values(&[reason]);
        }
        let server_stall = prometheus::Counter::new(
            "gameserver_server_stall_seconds_total",
            "Time the server could not run its tasks (stopped, frozen, overloaded); not charged to clients.",
        )?;
        r.register(Box::new(server_stall.clone()))?;
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
        r.register(Box::new(build))?;
        let process = Registry::new();
        process.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        Ok(Metrics {
            transport: TransportMetrics::register(r)?,
            session: SessionMetrics::register(r)?,
            resume: ResumeMetrics::register(r)?,
            sessions_active: metric::gauge(
                r,
                "gameserver_sessions_active",
                "Sessions admitted and not yet closed.",
            )?,
            sessions_closed,
            session_duration,
            close_detect,
            ready: metric::gauge(
                r,
                "gameserver_ready",
                "1 while the server accepts players, 0 while it drains for shutdown.",
            )?,
            drain_forced: metric::counter(
                r,
                "gameserver_drain_forced_total",
                "Sessions still open when shutdown.drain_timeout expired, closed by force.",
            )?,
            memory_budget: metric::gauge(
                r,
                "gameserver_memory_budget_bytes",
                "server.memory_budget: above it new players are refused and parked sessions evicted.",
            )?,
            memory_used: metric::gauge(
                r,
                "gameserver_memory_used_bytes",
                "The server's estimate of its memory: what it used at start plus what it holds for players.",
            )?,
            queued_bytes: metric::gauge(
                r,
                "gameserver_queued_bytes",
                "Bytes of events queued for players, live and parked (session.outbound_queue_bytes each).",
            )?,
            replay_bytes: metric::gauge(
                r,
                "gameserver_replay_bytes",
                "Bytes of sent events kept for replay, live and parked (session.resume_buffer_bytes each).",
            )?,
            parked_bytes: metric::gauge(
                r,
                "gameserver_parked_bytes",
                "Bytes held by parked sessions (session.max_parked_bytes in all).",
            )?,
            log_lines_dropped: metric::counter(
                r,
                "gameserver_log_lines_dropped_total",
                "Log lines lost because the log writer could not keep up or writing failed.",
            )?,
            log_lines_suppressed: metric::counter(
                r,
                "gameserver_log_lines_suppressed_total",
                "Close and rejection log lines folded into periodic per-reason summaries.",
            )?,
            server_stall,
            admin_rejected: metric::counter(
                r,
                "gameserver_admin_connections_rejected_total",
                "Admin connections closed at accept because admin.max_connections were open.",
            )?,
            rooms_active: metric::gauge(
                r,
                "gameserver_rooms_active",
                "Rooms open (rooms.max_rooms at most).",
            )?,
            registry,
            process,
        })
    }

    /// A session closed for `reason` after `lifetime`, `detect` after its peer's last frame.
    pub(crate) fn session_closed(&self, reason: CloseReason, lifetime: Duration, detect: Duration) {
        let label = reason.as_str();
        self.sessions_closed.with_label_values(&[label]).inc();
        self.session_duration
            .with_label_values(&[label])
            .observe(lifetime.as_secs_f64());
        if policy(reason).detect {
            self.close_detect
                .with_label_values(&[label])
                .observe(detect.as_secs_f64());
        }
    }

    /// The current value of every metric the server keeps itself (the process's own, which
    /// cost a walk of its descriptors, are left out).
    pub(crate) fn gather_own(&self) -> Vec<prometheus::proto::MetricFamily> {
        self.registry.gather()
    }

    /// Every metric's current value, the process's included.
    pub(crate) fn gather(&self) -> Vec<prometheus::proto::MetricFamily> {
        let mut families = self.registry.gather();
        families.extend(self.process.gather());
        families
    }

    /// The registry in Prometheus text format.
    pub fn render(&self) -> String {
        let dropped = crate::logging::dropped_lines();
        let counted = self.log_lines_dropped.get();
        if dropped > counted {
            self.log_lines_dropped.inc_by(dropped - counted);
        }
        let mut out = Vec::with_capacity(16 * 1024);
        if let Err(error) = TextEncoder::new().encode(&self.gather(), &mut out) {
            tracing::error!(%error, "cannot encode metrics");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}
