//! Signals, for the app: the first SIGTERM or SIGINT drains, a second one aborts. The process
//! exit is bounded whatever clients or admin connections do: the first signal arms a deadline
//! of `shutdown.drain_timeout` plus [`EXIT_MARGIN`], the second one of [`SECOND_SIGNAL_EXIT`];
//! past it the process exits with status 1. The deadline runs on a thread of its own, so that it
//! holds even if the runtime is wedged.

use crate::shutdown::{EXIT_MARGIN, Shutdown};

/// Time a second signal leaves for the abort to record its closes before the process exits.
pub(crate) const SECOND_SIGNAL_EXIT: std::time::Duration = std::time::Duration::from_millis(500);

/// Exits the process with status 1 after `after`, from a thread of its own. The reason goes to
/// the log and, from yet another thread, to standard error; the exit waits for neither, since
/// a full or stuck pipe must not hold it up.
pub(crate) fn exit_after(after: std::time::Duration, why: &'static str) {
    let spawned = std::thread::Builder::new()
        .name("game-server-exit".into())
        .spawn(move || {
            std::thread::sleep(after);
            tracing::error!("{why}; exiting now");
            let _ = std::thread::Builder::new().spawn(move || {
                let _ = std::io::Write::write_all(
                    &mut std::io::stderr(),
                    format!("game-server: {why}; exiting now\n").as_bytes(),
                );
            });
            std::thread::sleep(std::time::Duration::from_millis(50));
            std::process::exit(1);
        });
    if spawned.is_err() {
        std::process::exit(1);
    }
}

/// Turns SIGTERM and SIGINT into drain (first) and abort (second), and bounds the exit: the first
/// signal arms an exit deadline of `drain_timeout` plus [`EXIT_MARGIN`], the second one of
/// [`SECOND_SIGNAL_EXIT`]. Runs until the second signal.
pub(crate) async fn watch_signals(
    shutdown: Shutdown,
    drain_timeout: std::time::Duration,
) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    for step in 0..2 {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        // Act first, log second: a log that cannot be written must not delay the drain.
        if step == 0 {
            shutdown.drain();
            exit_after(
                drain_timeout + EXIT_MARGIN,
                "the drain did not finish within shutdown.drain_timeout and its margin",
            );
            tracing::info!(
                signal = name,
                "draining: no new players; sessions flush and say Bye (a second signal exits at once)"
            );
        } else {
            shutdown.abort();
            exit_after(SECOND_SIGNAL_EXIT, "second signal");
            tracing::warn!(
                signal = name,
                "second signal: closing every remaining session now"
            );
        }
    }
    Ok(())
}
