//! Graceful shutdown in two steps: drain (stop accepting, flush, say Bye) and abort (stop
//! waiting). The first SIGTERM or SIGINT drains; a second one, or the drain timeout, aborts.

use tokio_util::sync::CancellationToken;

/// The shutdown state shared by the acceptor, every session and the admin listener.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    drain: CancellationToken,
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
        self.abort.cancel();
    }

    /// True once the drain started.
    pub fn is_draining(&self) -> bool {
        self.drain.is_cancelled()
    }

    /// Completes when the drain starts.
    pub async fn draining(&self) {
        self.drain.cancelled().await;
    }

    /// Completes when the shutdown is forced.
    pub async fn aborted(&self) {
        self.abort.cancelled().await;
    }
}

/// Turns SIGTERM and SIGINT into drain (first) and abort (second). Runs until the second signal.
pub async fn watch_signals(shutdown: Shutdown) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    for step in 0..2 {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        if step == 0 {
            tracing::info!(
                signal = name,
                "draining: no new players; sessions flush and say Bye (a second signal skips the wait)"
            );
            shutdown.drain();
        } else {
            tracing::warn!(
                signal = name,
                "second signal: closing every remaining session now"
            );
            shutdown.abort();
        }
    }
    Ok(())
}
