//! Benchmarks of the game server against a bare Tokio baseline (issue 8).
//!
//! The servers run as child processes ([`procs`]); this process is the load generator
//! ([`client`]); [`workloads`] are the measurements and [`report`] turns their figures into the
//! table of BENCHMARKS.md. `cargo run --release -p bench -- all` runs everything.

pub mod client;
pub mod mqtt;
pub mod procs;
pub mod report;
pub mod soak;
pub mod workloads;
pub mod wspeer;

use std::path::PathBuf;

use crate::procs::Binaries;
use crate::report::Measure;
use crate::workloads::Scale;

/// Raises the soft descriptor limit to the hard one: 19,000 client sockets need it.
pub fn raise_fd_limit() -> anyhow::Result<u64> {
    let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE)?;
    rlimit::setrlimit(rlimit::Resource::NOFILE, hard, hard)?;
    Ok(hard)
}

/// Runs the named workloads, each `runs` times (`long_runs` for the minute-long hold, cycles
/// and transports), and returns every figure of every run. A workload that fails is reported on stderr
/// and leaves its figures out; the error list says which.
pub async fn run_all(
    names: &[String],
    bins: &Binaries,
    scale: &Scale,
    runs: usize,
    long_runs: usize,
) -> (Vec<Measure>, Vec<String>) {
    let mut measures = Vec::new();
    let mut errors = Vec::new();
    for name in names {
        let n = if matches!(name.as_str(), "hold" | "cycles" | "transports") {
            long_runs
        } else {
            runs
        };
        for run in 0..n {
            eprintln!("bench: {name}, run {} of {n}", run + 1);
            match workloads::run(name, bins, scale, run).await {
                Ok(figures) => measures.extend(figures),
                Err(error) => {
                    eprintln!("bench: {name} run {} failed: {error:#}", run + 1);
                    errors.push(format!("{name} run {}: {error:#}", run + 1));
                }
            }
        }
    }
    (measures, errors)
}

/// The repository root (the workspace this package belongs to).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), PathBuf::from)
}
