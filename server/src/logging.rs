//! Logging that a flood cannot turn into a flood of lines.
//!
//! (Where the lines go is the app's: [`crate::app`] writes them through a bounded, lossy queue;
//! an embedding program installs its own subscriber.) A flood of abusive connections must not become a flood of log lines either: [`Throttle`] lets
//! a few lines per second through for each kind of event and folds the rest into one summary
//! line per kind every [`SUMMARY_EVERY`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::time::Instant;

/// How often suppressed lines are summarised.
pub const SUMMARY_EVERY: Duration = Duration::from_secs(10);

/// Where lost log lines are counted, once a writer that can lose them is installed.
static LOST_LINES: OnceLock<fn() -> u64> = OnceLock::new();

/// Log lines lost so far (dropped from a full queue, or failed to write), as the installed
/// writer counts them; 0 without one.
pub fn dropped_lines() -> u64 {
    LOST_LINES.get().map_or(0, |count| count())
}

/// Names the counter of lost lines; the app's writer calls it when it is installed.
#[cfg_attr(not(feature = "app"), allow(dead_code))]
pub(crate) fn count_lost_lines_with(count: fn() -> u64) {
    let _ = LOST_LINES.set(count);
}

/// Lines per second a kind of event may log, and the burst above that.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    /// Steady lines per second.
    pub per_sec: f64,
    /// Lines allowed at once.
    pub burst: f64,
}

/// For events an attacker can cause at will (handshake timeouts, protocol errors, rate limits,
/// failed authentications, rejections).
pub const ABUSIVE: Rate = Rate {
    per_sec: 5.0,
    burst: 20.0,
};
/// For everything else: a safety valve that an ordinary server never reaches.
pub const ORDINARY: Rate = Rate {
    per_sec: 100.0,
    burst: 200.0,
};

#[derive(Debug)]
struct Key {
    tokens: f64,
    updated: Instant,
    suppressed: u64,
    suppressed_since: Option<Instant>,
}

/// Per-kind log rate limits with periodic summaries. Cheap to clone; shared by the tasks that
/// log closes and rejections.
#[derive(Debug, Clone, Default)]
pub struct Throttle {
    keys: Arc<Mutex<HashMap<&'static str, Key>>>,
    suppressed_total: Option<prometheus::IntCounter>,
}

impl Throttle {
    /// A throttle that counts what it suppresses in `suppressed`.
    pub fn new(suppressed: prometheus::IntCounter) -> Throttle {
        Throttle {
            keys: Arc::default(),
            suppressed_total: Some(suppressed),
        }
    }

    /// True when a line of kind `key` may be logged now; otherwise the line is counted for the
    /// next summary.
    pub fn admit(&self, key: &'static str, rate: Rate) -> bool {
        let now = Instant::now();
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        let state = keys.entry(key).or_insert(Key {
            tokens: rate.burst,
            updated: now,
            suppressed: 0,
            suppressed_since: None,
        });
        let elapsed = now.saturating_duration_since(state.updated).as_secs_f64();
        state.updated = now;
        state.tokens = (state.tokens + elapsed * rate.per_sec).min(rate.burst);
        if state.tokens >= 1.0 {
            state.tokens -= 1.0;
            return true;
        }
        state.suppressed += 1;
        state.suppressed_since.get_or_insert(now);
        if let Some(counter) = &self.suppressed_total {
            counter.inc();
        }
        false
    }

    /// Takes the summaries that are due: each kind with lines suppressed for at least
    /// [`SUMMARY_EVERY`], or every kind with any when `all`. Returns (kind, lines, over).
    pub fn due(&self, all: bool) -> Vec<(&'static str, u64, Duration)> {
        let now = Instant::now();
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        let mut due = Vec::new();
        for (key, state) in keys.iter_mut() {
            let Some(since) = state.suppressed_since else {
                continue;
            };
            let over = now.saturating_duration_since(since);
            if all || over >= SUMMARY_EVERY {
                due.push((*key, state.suppressed, over));
                state.suppressed = 0;
                state.suppressed_since = None;
            }
        }
        due.sort();
        due
    }

    /// Logs the due summaries, one line each.
    pub fn summarize(&self, all: bool) {
        for (kind, lines, over) in self.due(all) {
            tracing::warn!(
                kind,
                suppressed = lines,
                over_ms = over.as_millis() as u64,
                "{lines} more {kind} lines not logged one by one (too many per second)"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_flood_is_cut_to_a_few_lines_and_a_summary() {
        let counter = prometheus::IntCounter::new("s", "s").expect("counter");
        let throttle = Throttle::new(counter.clone());
        let logged = (0..1000)
            .filter(|_| throttle.admit("protocol_error", ABUSIVE))
            .count();
        assert_eq!(logged, 20, "the burst");
        assert_eq!(counter.get(), 980);
        assert!(throttle.due(false).is_empty(), "not due before the period");
        tokio::time::advance(SUMMARY_EVERY).await;
        assert_eq!(
            throttle.due(false),
            [("protocol_error", 980, SUMMARY_EVERY)]
        );
        // The bucket refilled meanwhile; the summary was taken once.
        assert!(throttle.admit("protocol_error", ABUSIVE));
        assert!(throttle.due(true).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn kinds_are_limited_separately() {
        let throttle = Throttle::default();
        assert_eq!((0..30).filter(|_| throttle.admit("a", ABUSIVE)).count(), 20);
        assert!(throttle.admit("b", ABUSIVE));
        assert_eq!(
            (0..300).filter(|_| throttle.admit("c", ORDINARY)).count(),
            200
        );
    }
}
