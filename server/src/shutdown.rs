//! Graceful shutdown in two steps: drain (stop accepting, let the rooms have their last word,
//! flush, say Bye) and abort (stop waiting). The app turns signals into them (see
//! `app::signals`); an embedding program calls [`Shutdown::drain`] itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio_util::sync::CancellationToken;

/// The shutdown state shared by the acceptor, every session and the admin listener.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    drain: CancellationToken,
    /// The sessions close: after the rooms' drain hooks, or at once on abort.
    close: CancellationToken,
    /// Raised before `close` is cancelled: what every session reads on each wake-up, one load
    /// (a token's own flag is behind its lock).
    sessions_closing: Arc<AtomicBool>,
    abort: CancellationToken,
}

impl Shutdown {
    /// A server that is running.
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// Starts the graceful drain.
    pub fn drain(&self) {
        self.drain.cancel();
    }

    /// Stops waiting: sessions still closing are reset. Implies a drain.
    pub fn abort(&self) {
        self.drain.cancel();
        self.sessions_closing.store(true, Ordering::Release);
        self.close.cancel();
        self.abort.cancel();
    }

    /// The drain reaches the sessions: they flush and say `Bye{server_shutdown}`.
    pub(crate) fn close_sessions(&self) {
        self.sessions_closing.store(true, Ordering::Release);
        self.close.cancel();
    }

    /// True once the sessions are to close (what [`Shutdown::closing`] waits for).
    pub(crate) fn sessions_closing(&self) -> bool {
        self.sessions_closing.load(Ordering::Acquire)
    }

    /// Completes when the sessions are to close.
    pub(crate) async fn closing(&self) {
        self.close.cancelled().await;
    }

    /// True once the drain started.
    pub fn is_draining(&self) -> bool {
        self.drain.is_cancelled()
    }

    /// True once the shutdown was forced.
    pub fn is_aborted(&self) -> bool {
        self.abort.is_cancelled()
    }

    /// Completes when the drain starts.
    pub async fn draining(&self) {
        self.drain.cancelled().await;
    }

    /// Completes when the shutdown is forced.
    pub async fn aborted(&self) {
        self.abort.cancelled().await;
    }

    /// How long the process may take to exit after the drain timeout (the shipped binaries
    /// exit with status 1 past it): an orchestrator's grace period must exceed
    /// `shutdown.drain_timeout` plus this.
    pub const EXIT_MARGIN: std::time::Duration = EXIT_MARGIN;
}

/// Time allowed after the drain timeout for the rest of the exit: closing the admin listener
/// ([`crate::ops::admin`] gives its connections one second), recording the last closes, flushing logs.
pub(crate) const EXIT_MARGIN: std::time::Duration = std::time::Duration::from_secs(5);
