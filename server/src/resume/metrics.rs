//! Resume's metrics: sessions parked, resumed, expired and evicted, and resumes refused.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Registry};

use crate::metric;
use crate::resume::refusal::{Eviction, Refusal};

/// Resume's metrics. Cloning is cheap.
#[derive(Clone, Debug)]
pub(crate) struct ResumeMetrics {
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
}

impl ResumeMetrics {
    /// Registers the group in `registry`, every label value at zero.
    pub(crate) fn register(registry: &Registry) -> Result<ResumeMetrics, prometheus::Error> {
        Ok(ResumeMetrics {
            sessions_resumed: metric::counter(
                registry,
                "gameserver_sessions_resumed_total",
                "Parked sessions taken over by a new connection with their resume token.",
            )?,
            resume_expired: metric::counter(
                registry,
                "gameserver_resume_expired_total",
                "Parked sessions whose player did not come back within session.resume_grace.",
            )?,
            resume_rejected: metric::counter_vec(
                registry,
                "gameserver_resume_rejected_total",
                "Resume attempts refused, by reason.",
                "reason",
                Refusal::ALL.map(Refusal::as_str),
            )?,
            sessions_parked: metric::gauge(
                registry,
                "gameserver_sessions_parked",
                "Sessions whose connection broke, parked for session.resume_grace.",
            )?,
            parked_evicted: metric::counter_vec(
                registry,
                "gameserver_parked_evicted_total",
                "Parked sessions ended before their grace window to stay within a limit, by cause.",
                "cause",
                Eviction::ALL.map(Eviction::as_str),
            )?,
        })
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
}
