//! Counters and latency histograms shared by every connection of a run.
//!
//! Counters are atomics so that 19,000 connections can bump them without a lock; histograms sit
//! behind one mutex each, taken only for a single `record` (a few per connection per heartbeat).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::error_kind::ErrorKind;
use crate::scenario::Scenario;

/// Largest latency a histogram records, in microseconds (one hour); longer values are clamped.
const MAX_MICROS: u64 = 3_600_000_000;

/// Live counters of a run; the progress reporter reads them every second.
#[derive(Debug)]
pub struct Stats {
    /// TCP connects that succeeded.
    pub connect_ok: AtomicU64,
    /// TCP connects that failed (refused, timed out, no descriptors, no ports).
    pub connect_failed: AtomicU64,
    /// Frames written.
    pub sent_msgs: AtomicU64,
    /// Frames read.
    pub recv_msgs: AtomicU64,
    /// Bytes written.
    pub sent_bytes: AtomicU64,
    /// Bytes read.
    pub recv_bytes: AtomicU64,
    /// Connections open right now.
    pub open: AtomicU64,
    /// Scenario instances started.
    pub started: AtomicU64,
    /// Scenario instances finished (passed or failed).
    pub finished: AtomicU64,
    /// Scenario instances whose client-side checks failed.
    pub failed: AtomicU64,
    /// Instances whose session the server ended with its drain (`Bye{server_shutdown}`).
    pub drained: AtomicU64,
    /// `Bye{server_shutdown}` messages read: the server is draining.
    pub drain_byes: AtomicU64,
    /// Clients silent on purpose right now, waiting for the server to drop them.
    pub awaiting_detection: AtomicU64,
    /// Resume `Hello`s sent by the resume scenarios.
    pub resumes_attempted: AtomicU64,
    /// Resumes the server accepted (`Welcome.resumed`, the same session id).
    pub resumes_succeeded: AtomicU64,
    /// Resume-scenario instances that found resume turned off (an all-zero token).
    pub resume_off: AtomicU64,
    /// Events the resume scenarios never received (gaps in the sequence numbers).
    pub events_lost: AtomicU64,
    /// Events the resume scenarios received twice.
    pub events_duplicated: AtomicU64,
    /// Inputs of the resume scenarios relayed back twice: applied twice.
    pub inputs_applied_twice: AtomicU64,
    /// Inputs of the resume scenarios never relayed back: not applied.
    pub inputs_lost: AtomicU64,
    /// Errors observed, by kind: `[kind][0]` during instances that passed (the scenario provoked
    /// them on purpose), `[kind][1]` during instances that failed.
    errors: [[AtomicU64; 2]; ErrorKind::ALL.len()],
    connect_us: Hist,
    rtt_us: Hist,
    /// Round trips since the time series' last sample.
    rtt_window_us: Hist,
    detect_us: Hist,
    per_scenario: Mutex<BTreeMap<Scenario, ScenarioCounts>>,
    /// Distinct failure descriptions, with how often each occurred.
    failures: Mutex<Vec<(String, u64)>>,
}

/// How many instances of one scenario ran and how they fared.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ScenarioCounts {
    /// Instances finished.
    pub run: u64,
    /// Instances whose client-side checks passed.
    pub passed: u64,
    /// Instances whose client-side checks failed.
    pub failed: u64,
}

/// Percentiles of one histogram, in milliseconds (all zero when `count` is 0: the summary shows
/// "-" then).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Percentiles {
    /// Samples recorded.
    pub count: u64,
    /// Smallest sample.
    pub min: f64,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest sample.
    pub max: f64,
}

/// At most this many distinct failure descriptions are kept for the summary; the counts stay
/// exact.
const MAX_FAILURE_EXAMPLES: usize = 20;

/// A histogram slot. `None` only if construction failed, which the constant bounds rule out;
/// keeping the `Option` keeps the code panic-free all the same.
type Hist = Mutex<Option<Histogram<u64>>>;

fn new_histogram() -> Hist {
    Mutex::new(Histogram::new_with_bounds(1, MAX_MICROS, 3).ok())
}

fn record(hist: &Hist, value: Duration) {
    let micros = u64::try_from(value.as_micros())
        .unwrap_or(MAX_MICROS)
        .clamp(1, MAX_MICROS);
    if let Some(hist) = hist.lock().unwrap_or_else(PoisonError::into_inner).as_mut() {
        hist.saturating_record(micros);
    }
}

fn percentiles(hist: &Hist) -> Percentiles {
    let hist = hist.lock().unwrap_or_else(PoisonError::into_inner);
    hist.as_ref().map(percentiles_of).unwrap_or_default()
}

/// The percentiles of `hist`, then emptied: one interval's figures.
fn take_percentiles(hist: &Hist) -> Percentiles {
    let mut hist = hist.lock().unwrap_or_else(PoisonError::into_inner);
    let Some(hist) = hist.as_mut() else {
        return Percentiles::default();
    };
    let figures = percentiles_of(hist);
    hist.reset();
    figures
}

fn percentiles_of(hist: &Histogram<u64>) -> Percentiles {
    if hist.is_empty() {
        return Percentiles::default();
    }
    let ms = |micros: u64| micros as f64 / 1000.0;
    Percentiles {
        count: hist.len(),
        min: ms(hist.min()),
        mean: hist.mean() / 1000.0,
        p50: ms(hist.value_at_quantile(0.5)),
        p90: ms(hist.value_at_quantile(0.9)),
        p95: ms(hist.value_at_quantile(0.95)),
        p99: ms(hist.value_at_quantile(0.99)),
        p999: ms(hist.value_at_quantile(0.999)),
        max: ms(hist.max()),
    }
}

impl Default for Stats {
    fn default() -> Stats {
        Stats {
            connect_ok: AtomicU64::new(0),
            connect_failed: AtomicU64::new(0),
            sent_msgs: AtomicU64::new(0),
            recv_msgs: AtomicU64::new(0),
            sent_bytes: AtomicU64::new(0),
            recv_bytes: AtomicU64::new(0),
            open: AtomicU64::new(0),
            started: AtomicU64::new(0),
            finished: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            drained: AtomicU64::new(0),
            awaiting_detection: AtomicU64::new(0),
            drain_byes: AtomicU64::new(0),
            resumes_attempted: AtomicU64::new(0),
            resumes_succeeded: AtomicU64::new(0),
            resume_off: AtomicU64::new(0),
            events_lost: AtomicU64::new(0),
            events_duplicated: AtomicU64::new(0),
            inputs_applied_twice: AtomicU64::new(0),
            inputs_lost: AtomicU64::new(0),
            errors: std::array::from_fn(|_| [AtomicU64::new(0), AtomicU64::new(0)]),
            connect_us: new_histogram(),
            rtt_us: new_histogram(),
            rtt_window_us: new_histogram(),
            detect_us: new_histogram(),
            per_scenario: Mutex::new(BTreeMap::new()),
            failures: Mutex::new(Vec::new()),
        }
    }
}

/// Counts one silent client waiting for the server to drop it, until dropped.
#[derive(Debug)]
pub(crate) struct AwaitingDetection<'a>(&'a Stats);

impl<'a> AwaitingDetection<'a> {
    pub(crate) fn new(stats: &'a Stats) -> AwaitingDetection<'a> {
        add(&stats.awaiting_detection, 1);
        AwaitingDetection(stats)
    }
}

impl Drop for AwaitingDetection<'_> {
    fn drop(&mut self) {
        self.0.awaiting_detection.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Reads a counter.
pub(crate) fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// Adds to a counter.
pub(crate) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl Stats {
    /// Records how long a TCP connect took.
    pub(crate) fn record_connect(&self, took: Duration) {
        record(&self.connect_us, took);
    }

    /// Records a ping round trip.
    pub(crate) fn record_rtt(&self, rtt: Duration) {
        record(&self.rtt_us, rtt);
        record(&self.rtt_window_us, rtt);
    }

    /// The round trips recorded since the last call, for the time series.
    pub(crate) fn take_rtt_window(&self) -> Percentiles {
        take_percentiles(&self.rtt_window_us)
    }

    /// Records how long the server took to drop a silent client, as the client saw it.
    pub(crate) fn record_detection(&self, took: Duration) {
        record(&self.detect_us, took);
    }

    /// Records the end of one instance: its errors, and whether its checks passed.
    pub(crate) fn record_outcome(
        &self,
        scenario: Option<Scenario>,
        errors: &[ErrorKind],
        failure: Option<&str>,
    ) {
        let column = usize::from(failure.is_some());
        for kind in errors {
            self.errors[kind.index()][column].fetch_add(1, Ordering::Relaxed);
        }
        add(&self.finished, 1);
        if let Some(scenario) = scenario {
            let mut map = self
                .per_scenario
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let counts = map.entry(scenario).or_default();
            counts.run += 1;
            if failure.is_some() {
                counts.failed += 1;
            } else {
                counts.passed += 1;
            }
        }
        if let Some(failure) = failure {
            add(&self.failed, 1);
            let mut examples = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
            let room = examples.len() < MAX_FAILURE_EXAMPLES;
            match examples.iter_mut().find(|(text, _)| text == failure) {
                Some((_, count)) => *count += 1,
                None if room => examples.push((failure.to_owned(), 1)),
                None => {}
            }
        }
    }

    /// Errors observed so far, all kinds together.
    pub(crate) fn errors_total(&self) -> u64 {
        self.errors.iter().flatten().map(get).sum()
    }

    /// Errors by kind: (during passing instances, during failing instances). Kinds never seen are
    /// left out.
    pub(crate) fn errors_by_kind(&self) -> BTreeMap<String, (u64, u64)> {
        ErrorKind::ALL
            .into_iter()
            .filter_map(|kind| {
                let [ok, bad] = &self.errors[kind.index()];
                let (ok, bad) = (get(ok), get(bad));
                (ok + bad > 0).then(|| (kind.as_str().to_owned(), (ok, bad)))
            })
            .collect()
    }

    /// Percentiles of connect time, ping round trip and detection time.
    pub(crate) fn latencies(&self) -> (Percentiles, Percentiles, Percentiles) {
        (
            percentiles(&self.connect_us),
            percentiles(&self.rtt_us),
            percentiles(&self.detect_us),
        )
    }

    /// Per-scenario counts.
    pub(crate) fn scenario_counts(&self) -> BTreeMap<Scenario, ScenarioCounts> {
        self.per_scenario
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The first few distinct failure descriptions, each followed by how often it occurred when
    /// more than once (a server with resume off fails every resume instance the same way).
    pub(crate) fn failure_examples(&self) -> Vec<String> {
        self.failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(text, count)| match count {
                1 => text.clone(),
                n => format!("{text} ({n} times)"),
            })
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_reported_in_milliseconds() {
        let stats = Stats::default();
        for ms in 1..=100 {
            stats.record_rtt(Duration::from_millis(ms));
        }
        let (_, rtt, detect) = stats.latencies();
        assert_eq!(rtt.count, 100);
        assert!((49.0..=51.0).contains(&rtt.p50), "{rtt:?}");
        assert!((99.0..=101.0).contains(&rtt.max), "{rtt:?}");
        assert_eq!(detect, Percentiles::default());
    }

    #[test]
    fn errors_are_split_by_whether_the_instance_passed() {
        let stats = Stats::default();
        stats.record_outcome(Some(Scenario::Vanish), &[ErrorKind::ConnReset], None);
        stats.record_outcome(
            Some(Scenario::Graceful),
            &[ErrorKind::ConnReset],
            Some("lost inputs"),
        );
        let errors = stats.errors_by_kind();
        assert_eq!(errors.get("ECONNRESET"), Some(&(1, 1)));
        assert_eq!(errors.len(), 1);
        assert_eq!(get(&stats.failed), 1);
        assert_eq!(stats.failure_examples(), vec!["lost inputs".to_owned()]);
        assert_eq!(stats.scenario_counts()[&Scenario::Graceful].failed, 1);
        stats.record_outcome(Some(Scenario::Graceful), &[], Some("lost inputs"));
        stats.record_outcome(Some(Scenario::Abort), &[], Some("another reason"));
        assert_eq!(
            stats.failure_examples(),
            vec![
                "lost inputs (2 times)".to_owned(),
                "another reason".to_owned()
            ]
        );
    }
}
