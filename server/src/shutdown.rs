//! Graceful shutdown in two steps: drain (stop accepting, let the rooms have their last word,
//! flush, say Bye) and abort (stop waiting). The app turns signals into them (see
//! `app::signals`); an embedding program calls [`Shutdown::drain`] itself.

use tokio_util::sync::CancellationToken;

/// The shutdown state shared by the acceptor, every session and the admin listener.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    drain: CancellationToken,
    /// The sessions close: after the rooms' drain hooks, or at once on abort.
    close: CancellationToken,
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
        self.close.cancel();
        self.abort.cancel();
    }

    /// The drain reaches the sessions: they flush and say `Bye{server_shutdown}`.
    pub(crate) fn close_sessions(&self) {
        self.close.cancel();
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
