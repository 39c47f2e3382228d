//! Logging that can neither kill nor stall the server.
//!
//! Lines go to standard error through a bounded queue and a dedicated writer thread: a task that
//! logs never waits on the pipe. When the queue is full (the reader of stderr is slow or stuck)
//! lines are dropped and counted; when writing fails (the reader went away: EPIPE) the line is
//! dropped and counted too, and nothing panics. `gameserver_log_lines_dropped_total` reports both.
//!
//! A flood of abusive connections must not become a flood of log lines either: [`Throttle`] lets
//! a few lines per second through for each kind of event and folds the rest into one summary
//! line per kind every [`SUMMARY_EVERY`].

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::time::Instant;
use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};

use crate::config::{LogConfig, LogFormat};

/// Lines the writer queue holds before it drops.
pub const QUEUE_LINES: usize = 16 * 1024;
/// How often suppressed lines are summarised.
pub const SUMMARY_EVERY: Duration = Duration::from_secs(10);

static WRITE_FAILURES: AtomicU64 = AtomicU64::new(0);
static QUEUE_DROPS: OnceLock<ErrorCounter> = OnceLock::new();

/// Log lines lost so far: dropped from a full queue or failed to write.
pub fn dropped_lines() -> u64 {
    let queue = QUEUE_DROPS.get().map_or(0, |c| c.dropped_lines() as u64);
    queue + WRITE_FAILURES.load(Ordering::Relaxed)
}

/// Standard error that never fails: a failed write is counted and the line dropped.
struct Stderr;

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if std::io::stderr().lock().write_all(buf).is_err() {
            WRITE_FAILURES.fetch_add(1, Ordering::Relaxed);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().lock().flush();
        Ok(())
    }
}

/// Keeps the writer thread alive; dropping it flushes what is queued, waiting at most
/// [`FLUSH_WAIT`]. The flush runs on a thread of its own, so that a stuck or broken pipe can
/// neither hold up nor fail the exit.
#[derive(Debug)]
pub struct LogGuard(Option<WorkerGuard>);

/// Longest an exit waits for queued log lines to be written.
pub const FLUSH_WAIT: Duration = Duration::from_millis(1500);

impl Drop for LogGuard {
    fn drop(&mut self) {
        let Some(guard) = self.0.take() else {
            return;
        };
        let (done, flushed) = std::sync::mpsc::channel();
        let flusher = std::thread::Builder::new()
            .name("game-server-log-flush".into())
            .spawn(move || {
                drop(guard);
                let _ = done.send(());
            });
        if flusher.is_ok() {
            let _ = flushed.recv_timeout(FLUSH_WAIT);
        }
    }
}

/// The filter the configuration asks for. `RUST_LOG`, when set, wins over `log.level` and the
/// server says so in its first line.
fn filter(config: &LogConfig) -> (tracing_subscriber::EnvFilter, Option<String>) {
    if let Ok(directive) = std::env::var("RUST_LOG")
        && let Ok(filter) = tracing_subscriber::EnvFilter::try_new(&directive)
    {
        return (filter, Some(directive));
    }
    let filter = tracing_subscriber::EnvFilter::try_new(&config.level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    (filter, None)
}

/// Installs the global subscriber: `log.format` to standard error through the non-blocking
/// writer, colour only on a terminal. Does nothing (and returns an empty guard) if a subscriber
/// is already installed, as in tests.
pub fn init(config: &LogConfig) -> LogGuard {
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(QUEUE_LINES)
        .thread_name("game-server-log")
        .finish(Stderr);
    let _ = QUEUE_DROPS.set(writer.error_counter());
    let (filter, from_env) = filter(config);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(std::io::stderr().is_terminal());
    let installed = match config.format {
        LogFormat::Json => builder.json().try_init().is_ok(),
        LogFormat::Pretty => builder.compact().try_init().is_ok(),
    };
    if !installed {
        return LogGuard(None);
    }
    // The default panic hook writes to standard error directly and would wait on a full pipe:
    // panics go through the lossy writer instead.
    std::panic::set_hook(Box::new(|info| {
        tracing::error!(panic = %info, "a thread panicked");
    }));
    if let Some(directive) = from_env {
        tracing::info!(
            rust_log = %directive,
            log_level = %config.level,
            "RUST_LOG is set and overrides log.level"
        );
    }
    LogGuard(Some(guard))
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
