//! Logging that can neither kill nor stall the server: lines go to standard error through a
//! bounded queue and a dedicated writer thread, so a task that logs never waits on the pipe.
//! When the queue is full (the reader of stderr is slow or stuck) lines are dropped and counted;
//! when writing fails (the reader went away: EPIPE) the line is dropped and counted too, and
//! nothing panics. `gameserver_log_lines_dropped_total` reports both.

use std::io::{IsTerminal, Write};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};

use crate::config::{LogConfig, LogFormat};

/// Lines the writer queue holds before it drops.
pub const QUEUE_LINES: usize = 16 * 1024;

static WRITE_FAILURES: AtomicU64 = AtomicU64::new(0);
static QUEUE_DROPS: OnceLock<ErrorCounter> = OnceLock::new();

/// Log lines lost so far: dropped from a full queue or failed to write.
fn dropped_lines() -> u64 {
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
pub(crate) fn init(config: &LogConfig) -> LogGuard {
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(QUEUE_LINES)
        .thread_name("game-server-log")
        .finish(Stderr);
    let _ = QUEUE_DROPS.set(writer.error_counter());
    crate::logging::count_lost_lines_with(dropped_lines);
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
