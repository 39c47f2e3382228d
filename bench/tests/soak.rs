//! The soak in two minutes (the hour's `bench soak` at a smaller crowd, against the debug
//! game server): while a thousand players come and go, resume and read slowly, the server's
//! memory and descriptors stay flat, its closes reconcile exactly with what the players did,
//! nothing a resume carried is lost or repeated, and no close is an `io_error`.

use std::path::PathBuf;
use std::time::Duration;

use bench::procs::{Binaries, Build};
use bench::soak::{Plan, render, soak};

#[test]
fn two_minutes_of_players_coming_and_going_leave_nothing_drifting() {
    let _ = bench::raise_fd_limit();
    let bins = Binaries::beside_current_exe(
        Some(PathBuf::from(env!("CARGO_BIN_EXE_baseline"))),
        Build::IfMissing,
    )
    .expect("server binaries");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let plan = Plan::short(1000);
    let outcome = runtime.block_on(soak(&bins, &plan)).expect("the soak ran");
    let report = render(&outcome, Duration::from_secs(10));
    eprintln!("{report}");
    // Players were replaced while it ran: far more sessions than the crowd came and went.
    let end = outcome.samples.last().expect("samples");
    assert!(
        end.accepted >= plan.sessions as u64 * 2,
        "only {} sessions in two minutes\n{report}",
        end.accepted
    );
    assert!(outcome.pass(), "a check missed:\n{report}");
}
