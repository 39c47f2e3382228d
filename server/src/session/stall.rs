//! The server's own stalls: spans of time in which it could not run its tasks, because the
//! process was stopped (SIGSTOP, a debugger), the machine or VM froze, or the runtime was too
//! busy to wake its timers on time.
//!
//! A client cannot be blamed for those. While the server stood still, an honest client kept
//! sending at its usual pace and its frames piled up in the socket; when the server runs again
//! they all arrive at once, and its deadlines have all passed. The session therefore does not
//! charge stall time to clients: idle and handshake deadlines move later by the stall, and the
//! rate limit grants the tokens the client earned meanwhile (see [`crate::session::watchdog`]).
//!
//! A beat task touches a timestamp every [`PERIOD`]. Whoever looks at the clock
//! ([`Stalls::observe`]) first checks that timestamp: if it is older than [`PERIOD`] plus
//! [`THRESHOLD`], the server stood still since, and the looker records the stall itself. So a
//! session judging a client right after the process resumes sees the stall even if the beat task
//! has not run yet.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// How often the beat task touches the clock.
pub const PERIOD: Duration = Duration::from_millis(50);
/// Lateness below this is ordinary scheduling jitter, not a stall.
pub const THRESHOLD: Duration = Duration::from_millis(25);

#[derive(Debug)]
struct Inner {
    origin: Instant,
    /// Nanoseconds from `origin` of the last beat (or recorded stall end).
    beat: AtomicU64,
    /// Nanoseconds of stall recorded so far.
    total: AtomicU64,
    counter: Option<prometheus::Counter>,
}

/// The total time the server stalled since it started. Cheap to clone and to read.
#[derive(Debug, Clone)]
pub struct Stalls(Arc<Inner>);

impl Default for Stalls {
    fn default() -> Self {
        Stalls::new(None)
    }
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

impl Stalls {
    /// A clock that has seen no stall, counting the seconds it records in `counter`.
    pub fn new(counter: Option<prometheus::Counter>) -> Stalls {
        Stalls(Arc::new(Inner {
            origin: Instant::now(),
            beat: AtomicU64::new(0),
            total: AtomicU64::new(0),
            counter,
        }))
    }

    /// Total stall time recorded so far, without looking for a stall in progress. One atomic
    /// load: for hot paths.
    pub fn recorded(&self) -> Duration {
        Duration::from_nanos(self.0.total.load(Ordering::Relaxed))
    }

    /// Total stall time, after recording one that just ended if the beat is overdue.
    pub fn observe(&self) -> Duration {
        let now = nanos(Instant::now().saturating_duration_since(self.0.origin));
        let overdue = nanos(PERIOD + THRESHOLD);
        let mut beat = self.0.beat.load(Ordering::Acquire);
        while now.saturating_sub(beat) > overdue {
            match self
                .0
                .beat
                .compare_exchange(beat, now, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    let stall = now - beat - nanos(PERIOD);
                    self.0.total.fetch_add(stall, Ordering::Relaxed);
                    let stall = Duration::from_nanos(stall);
                    if let Some(counter) = &self.0.counter {
                        counter.inc_by(stall.as_secs_f64());
                    }
                    if stall >= Duration::from_secs(1) {
                        tracing::warn!(
                            stalled_ms = stall.as_millis() as u64,
                            "the server stood still; clients' deadlines and rate limits move by as much"
                        );
                    }
                    break;
                }
                Err(current) => beat = current,
            }
        }
        self.recorded()
    }

    fn beat(&self) {
        self.observe();
        let now = nanos(Instant::now().saturating_duration_since(self.0.origin));
        self.0.beat.fetch_max(now, Ordering::AcqRel);
    }
}

/// Keeps the clock's beat until dropped.
pub async fn watch(stalls: Stalls) {
    loop {
        stalls.beat();
        tokio::time::sleep(PERIOD).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_late_beat_counts_as_a_stall_and_jitter_does_not() {
        let counter = prometheus::Counter::new("t", "t").expect("counter");
        let stalls = Stalls::new(Some(counter.clone()));
        let task = tokio::spawn(watch(stalls.clone()));
        for _ in 0..10 {
            tokio::time::sleep(PERIOD + Duration::from_millis(10)).await;
        }
        assert_eq!(stalls.observe(), Duration::ZERO);
        // Nothing runs for 10 s (the paused clock jumps, as a stopped process sees it).
        tokio::time::advance(Duration::from_secs(10)).await;
        // A session looks before the beat task has run again: it sees the stall anyway.
        let seen = stalls.observe();
        assert!(
            seen >= Duration::from_millis(9_900) && seen <= Duration::from_secs(10),
            "{seen:?}"
        );
        // The beat task then runs and does not count it twice.
        tokio::time::sleep(PERIOD).await;
        assert_eq!(stalls.observe(), seen);
        assert!((counter.get() - seen.as_secs_f64()).abs() < 1e-6);
        task.abort();
    }
}
