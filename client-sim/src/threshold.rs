//! Pass/fail thresholds on a run's figures, written the way load tools write them:
//! `rtt.p95<50ms`, `connect.fail_rate<0.01`, `detection.p99<=3.2s`.
//!
//! A threshold names a figure of the summary and a bound. The figures:
//!
//! - latencies, `connect`, `rtt` (the clients' own ping round trips) and `detection` (how long
//!   the server took to drop a silent client), each with `min`, `mean`, `p50`, `p90`, `p95`,
//!   `p99`, `p99.9` (or `p999`), `max` and `count`; a bound on a latency carries its unit (`us`,
//!   `ms` or `s`), a bound on `count` none;
//! - rates between 0 and 1: `connect.fail_rate` (failed connects of all connects) and
//!   `instances.fail_rate` (instances whose checks failed of all instances); a bound may also be
//!   written as a percentage (`1%`).
//!
//! A threshold whose figure has no samples (`detection.p99` in a run without a vanishing client)
//! fails: it cannot be shown to hold.

use crate::report::Report;
pub use crate::report::ThresholdResult;
use crate::stats::Percentiles;

/// Why a threshold does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad threshold {text:?}: {why}")]
pub struct ThresholdError {
    text: String,
    why: String,
}

/// One parsed `--threshold`.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    text: String,
    figure: Figure,
    op: Op,
    /// Milliseconds for a latency, a fraction for a rate, a number for a count.
    bound: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Figure {
    Latency(Latency, Stat),
    ConnectFailRate,
    InstanceFailRate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Latency {
    Connect,
    Rtt,
    Detection,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stat {
    Count,
    Min,
    Mean,
    P50,
    P90,
    P95,
    P99,
    P999,
    Max,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Lt,
    Le,
    Gt,
    Ge,
}

impl Op {
    fn holds(self, value: f64, bound: f64) -> bool {
        match self {
            Op::Lt => value < bound,
            Op::Le => value <= bound,
            Op::Gt => value > bound,
            Op::Ge => value >= bound,
        }
    }
}

impl std::str::FromStr for Threshold {
    type Err = ThresholdError;

    fn from_str(text: &str) -> Result<Threshold, ThresholdError> {
        let bad = |why: &str| ThresholdError {
            text: text.to_owned(),
            why: why.to_owned(),
        };
        let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        let at = compact
            .find(['<', '>'])
            .ok_or_else(|| bad("no comparison: write FIGURE<BOUND, <=, > or >="))?;
        let (name, rest) = compact.split_at(at);
        let (op, bound) = match rest.as_bytes() {
            [b'<', b'=', ..] => (Op::Le, &rest[2..]),
            [b'>', b'=', ..] => (Op::Ge, &rest[2..]),
            [b'<', ..] => (Op::Lt, &rest[1..]),
            _ => (Op::Gt, &rest[1..]),
        };
        let figure = match name {
            "connect.fail_rate" => Figure::ConnectFailRate,
            "instances.fail_rate" => Figure::InstanceFailRate,
            _ => {
                let (latency, stat) = name.split_once('.').ok_or_else(|| {
                    bad(
                        "unknown figure: connect, rtt or detection with a statistic (rtt.p95), \
                         or connect.fail_rate, instances.fail_rate",
                    )
                })?;
                let latency = match latency {
                    "connect" => Latency::Connect,
                    "rtt" => Latency::Rtt,
                    "detection" => Latency::Detection,
                    _ => return Err(bad("unknown latency: connect, rtt or detection")),
                };
                let stat = match stat {
                    "count" => Stat::Count,
                    "min" => Stat::Min,
                    "mean" | "avg" => Stat::Mean,
                    "p50" | "med" => Stat::P50,
                    "p90" => Stat::P90,
                    "p95" => Stat::P95,
                    "p99" => Stat::P99,
                    "p99.9" | "p999" => Stat::P999,
                    "max" => Stat::Max,
                    _ => {
                        return Err(bad(
                            "unknown statistic: min, mean, p50, p90, p95, p99, p99.9, max or count",
                        ));
                    }
                };
                Figure::Latency(latency, stat)
            }
        };
        let bound = match figure {
            Figure::Latency(_, Stat::Count) => bound
                .parse::<f64>()
                .map_err(|_| bad("a count's bound is a plain number"))?,
            Figure::Latency(..) => millis(bound)
                .ok_or_else(|| bad("a latency's bound needs a unit: 250us, 50ms or 3.2s"))?,
            Figure::ConnectFailRate | Figure::InstanceFailRate => {
                let fraction = match bound.strip_suffix('%') {
                    Some(percent) => percent.parse::<f64>().map(|p| p / 100.0),
                    None => bound.parse::<f64>(),
                }
                .map_err(|_| bad("a rate's bound is a fraction (0.01) or a percentage (1%)"))?;
                if !(0.0..=1.0).contains(&fraction) {
                    return Err(bad("a rate is between 0 and 1 (0% and 100%)"));
                }
                fraction
            }
        };
        if !bound.is_finite() {
            return Err(bad("the bound is not a finite number"));
        }
        Ok(Threshold {
            text: text.trim().to_owned(),
            figure,
            op,
            bound,
        })
    }
}

/// `250us`, `50ms`, `3.2s` in milliseconds.
fn millis(text: &str) -> Option<f64> {
    let (number, scale) = if let Some(n) = text.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1000.0)
    } else {
        return None;
    };
    let value = number.parse::<f64>().ok()?;
    (value >= 0.0).then_some(value * scale)
}

fn stat(p: &Percentiles, stat: Stat) -> Option<f64> {
    if stat == Stat::Count {
        return Some(p.count as f64);
    }
    if p.count == 0 {
        return None;
    }
    Some(match stat {
        Stat::Count => p.count as f64,
        Stat::Min => p.min,
        Stat::Mean => p.mean,
        Stat::P50 => p.p50,
        Stat::P90 => p.p90,
        Stat::P95 => p.p95,
        Stat::P99 => p.p99,
        Stat::P999 => p.p999,
        Stat::Max => p.max,
    })
}

fn rate(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

impl Threshold {
    /// Checks the threshold against a run's report.
    pub fn check(&self, report: &Report) -> ThresholdResult {
        let value = match self.figure {
            Figure::Latency(latency, which) => {
                let figures = match latency {
                    Latency::Connect => &report.latency.connect_ms,
                    Latency::Rtt => &report.latency.rtt_ms,
                    Latency::Detection => &report.latency.detection_ms,
                };
                stat(figures, which)
            }
            Figure::ConnectFailRate => rate(
                report.connects.failed,
                report.connects.ok + report.connects.failed,
            ),
            Figure::InstanceFailRate => rate(report.failed_instances, report.instances),
        };
        ThresholdResult {
            threshold: self.text.clone(),
            value,
            passed: value.is_some_and(|v| self.op.holds(v, self.bound)),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_parse_with_units_percentages_and_every_operator() {
        let t: Threshold = "rtt.p95<50ms".parse().unwrap();
        assert_eq!(t.figure, Figure::Latency(Latency::Rtt, Stat::P95));
        assert_eq!((t.op, t.bound), (Op::Lt, 50.0));
        let t: Threshold = "detection.p99 <= 3.2s".parse().unwrap();
        assert_eq!((t.op, t.bound), (Op::Le, 3200.0));
        let t: Threshold = "connect.max>=250us".parse().unwrap();
        assert_eq!((t.op, t.bound), (Op::Ge, 0.25));
        let t: Threshold = "connect.fail_rate<1%".parse().unwrap();
        assert_eq!((t.figure, t.bound), (Figure::ConnectFailRate, 0.01));
        let t: Threshold = "rtt.count>100".parse().unwrap();
        assert_eq!((t.op, t.bound), (Op::Gt, 100.0));
    }

    #[test]
    fn bad_thresholds_say_what_is_wrong() {
        for (text, says) in [
            ("rtt.p95", "no comparison"),
            ("rtt.p42<5ms", "unknown statistic"),
            ("latency.p95<5ms", "unknown latency"),
            ("rtt.p95<50", "needs a unit"),
            ("connect.fail_rate<2", "between 0 and 1"),
            ("errors<3", "unknown figure"),
        ] {
            let error = text.parse::<Threshold>().unwrap_err().to_string();
            assert!(error.contains(says), "{text}: {error}");
        }
    }
}
