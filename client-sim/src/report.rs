//! The end-of-run summary: what the clients did and saw, and whether the server agrees.
//!
//! [`Report`] is both the printed summary ([`Report::render`]) and the `--json` document.

use std::collections::BTreeMap;

use crate::limits::FdLimit;
use crate::reconcile::Reconciliation;
use crate::series::Sample;
use crate::stats::{Percentiles, ScenarioCounts};

/// The version of the JSON report's layout; it changes when a field changes meaning or goes.
pub const SCHEMA_VERSION: u32 = 2;

/// Exit status of a run that passed.
pub const EXIT_PASS: u8 = 0;
/// Exit status when an instance's checks failed or the server's account disagrees.
pub const EXIT_FAIL: u8 = 1;
/// Exit status when the run could not start (nothing listening, not a game server, bad options).
pub const EXIT_CANNOT_RUN: u8 = 2;
/// Exit status when everything else passed but a `--threshold` did not hold.
pub const EXIT_THRESHOLD: u8 = 3;

/// Connect attempts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Connects {
    /// TCP connects that succeeded.
    pub ok: u64,
    /// TCP connects that failed.
    pub failed: u64,
}

/// Traffic both ways.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Traffic {
    /// Frames sent.
    pub sent: u64,
    /// Frames received.
    pub received: u64,
    /// Frames sent per second of run time.
    pub sent_per_sec: f64,
    /// Frames received per second of run time.
    pub received_per_sec: f64,
    /// Bytes sent.
    pub bytes_sent: u64,
    /// Bytes received.
    pub bytes_received: u64,
}

/// Latency histograms, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Latencies {
    /// TCP connect time.
    pub connect_ms: Percentiles,
    /// Ping round trip, client to server and back.
    pub rtt_ms: Percentiles,
    /// Time for the server to drop a silent (vanish) client, from its last write to the reset it
    /// observed.
    pub detection_ms: Percentiles,
}

/// How often the clients saw one kind of error.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ErrorCount {
    /// Seen by instances that passed: the scenario provoked it on purpose (a vanish client's
    /// reset, a kicked client's EPIPE).
    pub provoked: u64,
    /// Seen by instances that failed.
    pub unexpected: u64,
}

/// What the resume scenarios saw. A run passes only with zero in every loss counter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ResumeStats {
    /// Resume `Hello`s sent.
    pub attempted: u64,
    /// Resumes the server accepted with the same session.
    pub succeeded: u64,
    /// Instances that could not try: the server has resume off.
    pub resume_off: u64,
    /// Events never received: gaps in the event sequence across the breaks.
    pub events_lost: u64,
    /// Events received twice.
    pub events_duplicated: u64,
    /// Inputs the server applied twice (relayed back twice).
    pub inputs_applied_twice: u64,
    /// Inputs the server never applied (never relayed back).
    pub inputs_lost: u64,
}

impl ResumeStats {
    /// True when no resume lost or repeated anything.
    pub fn lossless(&self) -> bool {
        self.events_lost == 0
            && self.events_duplicated == 0
            && self.inputs_applied_twice == 0
            && self.inputs_lost == 0
    }
}

/// Everything a run measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// When the run started, RFC 3339 in UTC.
    pub started_at: String,
    /// `pass`, `fail` (checks or reconciliation) or `threshold` (only thresholds failed): the
    /// exit status in words.
    pub verdict: String,
    /// The server address as given.
    pub server: String,
    /// The mix, as `name=weight,...`.
    pub mix: String,
    /// Client slots.
    pub clients: usize,
    /// Wall time of the run, from the first connect to the last instance's end.
    pub elapsed_secs: f64,
    /// Descriptor limits in force.
    pub fd_limit: FdLimit,
    /// Instances started (the probe not included).
    pub instances: u64,
    /// Instances whose client-side checks failed.
    pub failed_instances: u64,
    /// Per scenario.
    pub scenarios: BTreeMap<String, ScenarioCounts>,
    /// Connect attempts.
    pub connects: Connects,
    /// Traffic.
    pub messages: Traffic,
    /// Latency percentiles.
    pub latency: Latencies,
    /// Errors the clients observed, by kind.
    pub errors: BTreeMap<String, ErrorCount>,
    /// The resume scenarios' account: resumes, and anything lost or repeated across them.
    pub resume: ResumeStats,
    /// Instances whose session the server ended with its drain (`Bye{server_shutdown}`): an
    /// outcome of their own, reconciled as `server_shutdown`, not failures.
    pub drained: u64,
    /// Every `--threshold` and how it fared.
    pub thresholds: Vec<ThresholdResult>,
    /// Every `--interval`: the counters so far and that interval's round trips.
    pub series: Vec<Sample>,
    /// The first few failure descriptions.
    pub failures: Vec<String>,
    /// The server's account, when `--metrics-url` was given.
    pub reconciliation: Option<Reconciliation>,
}

impl Report {
    /// True when reconciliation ran and the server's counts match exactly.
    pub fn reconciled_ok(&self) -> bool {
        self.reconciliation.as_ref().is_some_and(|r| r.ok)
    }

    /// True when every instance passed its client-side checks, no resume lost or repeated
    /// anything, and, if reconciliation ran, it matched.
    pub fn passed(&self) -> bool {
        self.failed_instances == 0
            && self.resume.lossless()
            && self.reconciliation.as_ref().is_none_or(|r| r.ok)
    }

    /// True when every threshold held (or none was given).
    pub fn thresholds_held(&self) -> bool {
        self.thresholds.iter().all(|t| t.passed)
    }

    /// The exit status: [`EXIT_FAIL`] before [`EXIT_THRESHOLD`] before [`EXIT_PASS`].
    pub fn exit_code(&self) -> u8 {
        if !self.passed() {
            EXIT_FAIL
        } else if !self.thresholds_held() {
            EXIT_THRESHOLD
        } else {
            EXIT_PASS
        }
    }

    /// The verdict in words, as the report's `verdict` field says it.
    pub fn verdict_word(&self) -> &'static str {
        match self.exit_code() {
            EXIT_PASS => "pass",
            EXIT_THRESHOLD => "threshold",
            _ => "fail",
        }
    }

    /// The human-readable summary.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let line = |out: &mut String, s: String| {
            out.push_str(&s);
            out.push('\n');
        };
        line(
            &mut out,
            format!("== client-sim summary: {} ==", self.server),
        );
        line(
            &mut out,
            format!(
                "run: {} clients, mix {}, {:.1}s, descriptors {}/{} (soft/hard)",
                self.clients, self.mix, self.elapsed_secs, self.fd_limit.soft, self.fd_limit.hard
            ),
        );
        line(
            &mut out,
            format!(
                "instances: {} run, {} passed, {} failed",
                self.instances,
                self.instances.saturating_sub(self.failed_instances),
                self.failed_instances
            ),
        );
        for (name, counts) in &self.scenarios {
            line(
                &mut out,
                format!(
                    "  {name:<18} {:>7} run {:>7} passed {:>7} failed",
                    counts.run, counts.passed, counts.failed
                ),
            );
        }
        line(
            &mut out,
            format!(
                "connects: {} ok, {} failed",
                self.connects.ok, self.connects.failed
            ),
        );
        let m = &self.messages;
        line(
            &mut out,
            format!(
                "messages: sent {} ({:.1}/s, {} bytes), received {} ({:.1}/s, {} bytes)",
                m.sent,
                m.sent_per_sec,
                m.bytes_sent,
                m.received,
                m.received_per_sec,
                m.bytes_received
            ),
        );
        line(
            &mut out,
            format!(
                "latency (ms)     {:>7} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
                "count", "min", "mean", "p50", "p95", "p99", "p99.9", "max"
            ),
        );
        for (name, p) in [
            ("connect", &self.latency.connect_ms),
            ("ping rtt", &self.latency.rtt_ms),
            ("detection", &self.latency.detection_ms),
        ] {
            let figures = [p.min, p.mean, p.p50, p.p95, p.p99, p.p999, p.max];
            let shown: Vec<String> = figures
                .iter()
                .map(|v| {
                    if p.count == 0 {
                        format!("{:>8}", "-")
                    } else {
                        format!("{v:>8.3}")
                    }
                })
                .collect();
            line(
                &mut out,
                format!("  {name:<14} {:>7} {}", p.count, shown.join(" ")),
            );
        }
        let r = &self.resume;
        if r.attempted + r.resume_off > 0 {
            line(
                &mut out,
                format!(
                    "resume: {} attempted, {} succeeded{}; events lost {}, duplicated {}; inputs \
                     applied twice {}, lost {}: {}",
                    r.attempted,
                    r.succeeded,
                    if r.resume_off > 0 {
                        format!(", {} found the server's resume off", r.resume_off)
                    } else {
                        String::new()
                    },
                    r.events_lost,
                    r.events_duplicated,
                    r.inputs_applied_twice,
                    r.inputs_lost,
                    if !r.lossless() {
                        "LOSS"
                    } else if r.succeeded < r.attempted {
                        "nothing lost, but resumes failed"
                    } else {
                        "nothing lost"
                    }
                ),
            );
        }
        if self.drained > 0 {
            line(
                &mut out,
                format!(
                    "drained: {} instance(s) ended by the server's drain (Bye{{server_shutdown}}); \
                     counted as server_shutdown, not as failures; no instance started after it",
                    self.drained
                ),
            );
        }
        if self.errors.is_empty() {
            line(&mut out, "client-observed errors: none".to_owned());
        } else {
            line(
                &mut out,
                "client-observed errors (provoked on purpose by passing scenarios / unexpected):"
                    .to_owned(),
            );
            for (kind, count) in &self.errors {
                line(
                    &mut out,
                    format!("  {kind:<18} {:>7} {:>7}", count.provoked, count.unexpected),
                );
            }
        }
        if !self.failures.is_empty() {
            line(&mut out, "failures (first few):".to_owned());
            for failure in &self.failures {
                line(&mut out, format!("  - {failure}"));
            }
        }
        match &self.reconciliation {
            Some(rec) => {
                line(
                    &mut out,
                    "reconciliation: the server's closes of this run's sessions, by reason"
                        .to_owned(),
                );
                out.push_str(&rec.render());
            }
            None => line(
                &mut out,
                "reconciliation: skipped (pass --metrics-url to compare with the server's counters)".to_owned(),
            ),
        }
        if !self.thresholds.is_empty() {
            line(&mut out, "thresholds:".to_owned());
            for result in &self.thresholds {
                line(&mut out, format!("  {result}"));
            }
        }
        line(
            &mut out,
            format!(
                "verdict: {}",
                match self.exit_code() {
                    EXIT_PASS => "PASS".to_owned(),
                    EXIT_THRESHOLD => format!(
                        "FAIL: {} threshold(s) did not hold (exit status {EXIT_THRESHOLD})",
                        self.thresholds.iter().filter(|t| !t.passed).count()
                    ),
                    _ => format!("FAIL (exit status {EXIT_FAIL})"),
                }
            ),
        );
        out
    }
}

/// How one threshold fared, for the summary and the JSON report.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ThresholdResult {
    /// The threshold as given.
    pub threshold: String,
    /// The figure's value (milliseconds for a latency), or `None` without samples.
    pub value: Option<f64>,
    /// True when it held.
    pub passed: bool,
}

impl std::fmt::Display for ThresholdResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let value = match self.value {
            Some(v) => format!("{v:.3}"),
            None => "- (no samples)".to_owned(),
        };
        write!(
            f,
            "{:<32} {:>16}  {}",
            self.threshold,
            value,
            if self.passed { "ok" } else { "FAILED" }
        )
    }
}
