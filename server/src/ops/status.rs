//! What the status page (`/status`) and `game-server status` show: one answer (`/status/data`)
//! with the server's state now, its counters' history over the last minute (per second) and the
//! last hour (per minute), and a summary of its configuration with secrets left out.
//!
//! A task samples the counters once a second into two small rings, so the history is there when
//! an operator first opens the page in an incident. An answer costs what a Prometheus scrape
//! costs, whatever the number of sessions: it walks no session.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus::proto::{MetricFamily, MetricType};
use serde::Serialize;
use serde_json::Value;

use crate::ops::metrics::Metrics;
use crate::shutdown::Shutdown;

/// Points in each history: a minute of seconds, an hour of minutes.
pub const POINTS: usize = 60;

/// The counters the history keeps, by family; each label value is a series.
const TRACKED: [&str; 9] = [
    "gameserver_sessions_closed_total",
    "gameserver_sessions_accepted_total",
    "gameserver_connections_rejected_total",
    "gameserver_sessions_resumed_total",
    "gameserver_resume_rejected_total",
    "gameserver_resume_expired_total",
    "gameserver_parked_evicted_total",
    "gameserver_drain_forced_total",
    "gameserver_server_stall_seconds_total",
];

/// The state behind the status page. One per server.
#[derive(Debug)]
pub(crate) struct Status {
    metrics: Metrics,
    shutdown: Shutdown,
    started: Instant,
    config: Value,
    history: Mutex<History>,
}

/// Snapshots of the tracked counters: the newest `POINTS + 1` a second apart, and the newest
/// `POINTS` a minute apart.
#[derive(Debug, Default)]
struct History {
    /// Series name (`family` or `family{value}`) to its index in a snapshot.
    index: HashMap<String, usize>,
    names: Vec<String>,
    seconds: VecDeque<Vec<f64>>,
    minutes: VecDeque<Vec<f64>>,
    taken: u64,
}

/// `/status/data`.
#[derive(Debug, Serialize)]
pub struct StatusData {
    /// The engine's version.
    pub version: &'static str,
    /// The newest protocol version it speaks.
    pub protocol: u16,
    /// Seconds since the server started.
    pub uptime_secs: u64,
    /// False while the server drains for shutdown.
    pub ready: bool,
    /// Every gauge of the server, by name (labelled ones by `name{value}`).
    pub gauges: BTreeMap<String, f64>,
    /// Every counter since start, by name (labelled ones by `name{value}`).
    pub totals: BTreeMap<String, f64>,
    /// The tracked counters' increase in each of the last 60 seconds, oldest first; series
    /// that did not move are left out.
    pub last_minute: BTreeMap<String, Vec<f64>>,
    /// Their increase in each of the last 60 minutes, oldest first (the current minute last, so
    /// far); series that did not move are left out.
    pub last_hour: BTreeMap<String, Vec<f64>>,
    /// Per close reason where a gone peer can linger: closes counted and the time from the last
    /// frame to the close decision, p50 and p99 (estimated from the histogram's buckets), since
    /// start.
    pub detection: BTreeMap<String, Detection>,
    /// The heartbeat round trip since start: p50 and p99, milliseconds.
    pub heartbeat_rtt_ms: Option<Quantiles>,
    /// The configuration, secrets replaced by whether they are set.
    pub config: Value,
}

/// Close detection for one reason.
#[derive(Debug, Serialize)]
pub struct Detection {
    /// Closes counted.
    pub count: u64,
    /// Milliseconds from the last frame to the close decision.
    pub ms: Quantiles,
}

/// Two quantiles of a histogram.
#[derive(Debug, Serialize)]
pub struct Quantiles {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
}

impl Status {
    pub(crate) fn new(metrics: Metrics, shutdown: Shutdown, config: Value) -> Arc<Status> {
        Arc::new(Status {
            metrics,
            shutdown,
            started: Instant::now(),
            config: redacted(config),
            history: Mutex::new(History::default()),
        })
    }

    fn history(&self) -> std::sync::MutexGuard<'_, History> {
        self.history
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes one snapshot; called once a second.
    pub(crate) fn sample(&self) {
        let families = self.metrics.gather_own();
        let mut history = self.history();
        let mut snapshot = vec![0.0; history.names.len()];
        for family in families.iter().filter(|f| TRACKED.contains(&f.name())) {
            for (name, value) in series(family) {
                let at = match history.index.get(&name) {
                    Some(at) => *at,
                    None => {
                        let at = history.names.len();
                        history.index.insert(name.clone(), at);
                        history.names.push(name);
                        snapshot.push(0.0);
                        at
                    }
                };
                snapshot[at] = value;
            }
        }
        if history.taken % 60 == 0 {
            // With the newest second, the current minute so far: POINTS points in all.
            push(&mut history.minutes, snapshot.clone(), POINTS);
        }
        push(&mut history.seconds, snapshot, POINTS + 1);
        history.taken += 1;
    }

    /// The answer of `/status/data`.
    pub(crate) fn data(&self) -> StatusData {
        let families = self.metrics.gather();
        let mut gauges = BTreeMap::new();
        let mut totals = BTreeMap::new();
        let mut detection = BTreeMap::new();
        let mut heartbeat_rtt_ms = None;
        for family in &families {
            match family.get_field_type() {
                MetricType::GAUGE => gauges.extend(series(family)),
                MetricType::COUNTER => totals.extend(series(family)),
                MetricType::HISTOGRAM if family.name() == "gameserver_close_detect_seconds" => {
                    for metric in family.get_metric() {
                        let reason = metric
                            .get_label()
                            .first()
                            .map(|l| l.value().to_owned())
                            .unwrap_or_default();
                        let histogram = metric.get_histogram();
                        if histogram.get_sample_count() > 0 {
                            detection.insert(
                                reason,
                                Detection {
                                    count: histogram.get_sample_count(),
                                    ms: quantiles_ms(histogram),
                                },
                            );
                        }
                    }
                }
                MetricType::HISTOGRAM if family.name() == "gameserver_heartbeat_rtt_seconds" => {
                    heartbeat_rtt_ms = family
                        .get_metric()
                        .first()
                        .map(|m| m.get_histogram())
                        .filter(|h| h.get_sample_count() > 0)
                        .map(quantiles_ms);
                }
                _ => {}
            }
        }
        let (last_minute, last_hour) = {
            let history = self.history();
            // The current minute so far: from its snapshot to the newest second.
            let mut minutes: Vec<&Vec<f64>> = history.minutes.iter().collect();
            if let Some(newest) = history.seconds.back() {
                minutes.push(newest);
            }
            let seconds: Vec<&Vec<f64>> = history.seconds.iter().collect();
            (
                increases(&history.names, &seconds),
                increases(&history.names, &minutes),
            )
        };
        StatusData {
            version: env!("CARGO_PKG_VERSION"),
            protocol: protocol::PROTOCOL_VERSION,
            uptime_secs: self.started.elapsed().as_secs(),
            ready: !self.shutdown.is_draining(),
            gauges,
            totals,
            last_minute,
            last_hour,
            detection,
            heartbeat_rtt_ms,
            config: self.config.clone(),
        }
    }
}

/// Samples `status` once a second until dropped.
pub(crate) async fn sample(status: Arc<Status>) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        status.sample();
    }
}

fn push(ring: &mut VecDeque<Vec<f64>>, snapshot: Vec<f64>, keep: usize) {
    if ring.len() == keep {
        ring.pop_front();
    }
    ring.push_back(snapshot);
}

/// Each series of a family with its value: `name` alone, or `name{value}` for its one label.
fn series(family: &MetricFamily) -> Vec<(String, f64)> {
    family
        .get_metric()
        .iter()
        .map(|metric| {
            let value = match family.get_field_type() {
                MetricType::COUNTER => metric.get_counter().get_value(),
                MetricType::GAUGE => metric.get_gauge().get_value(),
                _ => 0.0,
            };
            let name = match metric.get_label() {
                [] => family.name().to_owned(),
                labels => format!(
                    "{}{{{}}}",
                    family.name(),
                    labels
                        .iter()
                        .map(|l| l.value())
                        .collect::<Vec<_>>()
                        .join(",")
                ),
            };
            (name, value)
        })
        .collect()
}

/// The increase of each series between consecutive snapshots, for the series that moved.
fn increases(names: &[String], snapshots: &[&Vec<f64>]) -> BTreeMap<String, Vec<f64>> {
    let mut out = BTreeMap::new();
    for (at, name) in names.iter().enumerate() {
        let value = |s: &Vec<f64>| s.get(at).copied().unwrap_or(0.0);
        let steps: Vec<f64> = snapshots
            .windows(2)
            .map(|pair| (value(pair[1]) - value(pair[0])).max(0.0))
            .collect();
        if steps.iter().any(|step| *step > 0.0) {
            out.insert(name.clone(), steps);
        }
    }
    out
}

/// p50 and p99 in milliseconds of a Prometheus histogram, interpolated within the bucket where
/// each falls (the last finite bound where it falls beyond).
fn quantiles_ms(histogram: &prometheus::proto::Histogram) -> Quantiles {
    let at = |q: f64| {
        let total = histogram.get_sample_count() as f64;
        let rank = q * total;
        let mut below = 0.0;
        let mut lower = 0.0;
        for bucket in histogram.get_bucket() {
            let count = bucket.cumulative_count() as f64;
            let upper = bucket.upper_bound();
            if count >= rank {
                let within = count - below;
                let share = if within > 0.0 {
                    (rank - below) / within
                } else {
                    1.0
                };
                return (lower + (upper - lower) * share) * 1000.0;
            }
            below = count;
            lower = upper;
        }
        lower * 1000.0
    };
    Quantiles {
        p50: round(at(0.5)),
        p99: round(at(0.99)),
    }
}

fn round(ms: f64) -> f64 {
    (ms * 10.0).round() / 10.0
}

/// The configuration with every secret (a key naming a token or a secret) replaced by whether
/// it is set.
fn redacted(mut config: Value) -> Value {
    fn walk(value: &mut Value) {
        if let Value::Object(map) = value {
            for (key, value) in map.iter_mut() {
                if (key.contains("token") || key.contains("secret")) && !key.ends_with("_file") {
                    let set = match value {
                        Value::String(s) => !s.is_empty(),
                        Value::Null => false,
                        _ => true,
                    };
                    *value = Value::String(if set { "<set>" } else { "<unset>" }.to_owned());
                } else {
                    walk(value);
                }
            }
        }
    }
    walk(&mut config);
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_replaced_by_whether_they_are_set() {
        let config = serde_json::json!({
            "admin": {"token": "hunter2", "token_file": "/run/token", "listen": "127.0.0.1:9100"},
            "auth": {"secret": "", "mode": "off"},
        });
        let shown = redacted(config).to_string();
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains(r#""token":"<set>""#), "{shown}");
        assert!(shown.contains(r#""secret":"<unset>""#), "{shown}");
        assert!(shown.contains("/run/token"), "{shown}");
    }

    #[test]
    fn the_history_gives_each_interval_its_increase_and_leaves_out_what_did_not_move() {
        let metrics = Metrics::new().expect("metrics");
        let status = Status::new(metrics.clone(), Shutdown::new(), Value::Null);
        status.sample();
        let close = |reason| {
            metrics.session_closed(reason, Duration::from_secs(1), Duration::from_millis(40));
        };
        for _ in 0..3 {
            close(crate::CloseReason::PeerReset);
        }
        status.sample();
        close(crate::CloseReason::IdleTimeout);
        status.sample();
        let data = status.data();
        assert_eq!(
            data.last_minute["gameserver_sessions_closed_total{peer_reset}"],
            vec![3.0, 0.0]
        );
        assert_eq!(
            data.last_minute["gameserver_sessions_closed_total{idle_timeout}"],
            vec![0.0, 1.0]
        );
        assert!(
            !data
                .last_minute
                .contains_key("gameserver_sessions_closed_total{client_quit}")
        );
        // One minute snapshot (the first) and the newest second: the minute so far.
        assert_eq!(
            data.last_hour["gameserver_sessions_closed_total{peer_reset}"],
            vec![3.0]
        );
        assert_eq!(
            data.totals["gameserver_sessions_closed_total{peer_reset}"],
            3.0
        );
        let detection = &data.detection["idle_timeout"];
        assert_eq!(detection.count, 1);
        assert!(
            (10.0..=50.0).contains(&detection.ms.p50),
            "40 ms falls in the 10-50 ms bucket: {:?}",
            detection.ms
        );
    }
}
