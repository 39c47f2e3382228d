//! `bench`: runs the workloads of issue 8 against the game server and the baseline, each a child
//! process, and writes the results table into BENCHMARKS.md.

use std::path::PathBuf;
use std::process::ExitCode;

use bench::procs::{Binaries, Build};
use bench::report;
use bench::workloads::{Scale, WORKLOADS};
use clap::Parser;

/// Benchmarks the game server against a bare Tokio baseline on loopback.
#[derive(Debug, Parser)]
#[command(about)]
struct Cli {
    /// Workloads to run: all, or any of hold, detect, storm, throughput, metrics, cycles, rooms, fanout, burst, transports, listing. Or `soak` alone: the hour at 15,000 sessions (not part of all), its report written between the bench:soak markers.
    #[arg(default_value = "all")]
    workloads: Vec<String>,
    /// soak: how long players keep coming (default 1h).
    #[arg(long, value_parser = humantime::parse_duration)]
    soak_duration: Option<std::time::Duration>,
    /// soak: sessions held at once (default 15000).
    #[arg(long)]
    soak_sessions: Option<usize>,
    /// Runs of each short workload; each figure is the median.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Runs of the minute-long workloads (hold, cycles, transports).
    #[arg(long, default_value_t = 3)]
    long_runs: usize,
    /// The file whose results section is replaced (between the bench:results markers).
    #[arg(long, value_name = "FILE")]
    write: Option<PathBuf>,
    /// Do not write any file; print the table only.
    #[arg(long)]
    no_write: bool,
    /// Tiny sizes and durations (what the CI smoke test runs).
    #[arg(long)]
    smoke: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.workloads.iter().any(|w| w == "soak") {
        return soak(cli);
    }
    let names: Vec<String> = if cli.workloads.iter().any(|w| w == "all") {
        WORKLOADS.iter().map(|w| (*w).to_owned()).collect()
    } else {
        cli.workloads.clone()
    };
    if let Some(unknown) = names.iter().find(|n| !WORKLOADS.contains(&n.as_str())) {
        eprintln!(
            "bench: unknown workload {unknown}; known: all, {}",
            WORKLOADS.join(", ")
        );
        return ExitCode::from(2);
    }
    match bench::raise_fd_limit() {
        Ok(limit) => eprintln!("bench: descriptor limit {limit}"),
        Err(error) => eprintln!("bench: cannot raise the descriptor limit: {error}"),
    }
    let bins = match Binaries::beside_current_exe(None, Build::Always) {
        Ok(bins) => bins,
        Err(error) => {
            eprintln!("bench: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    let scale = if cli.smoke {
        Scale::smoke()
    } else {
        Scale::full()
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("bench: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    // Interrupted: no destructor runs, so kill the server children here.
    runtime.spawn(async {
        use tokio::signal::unix::{SignalKind, signal};
        if let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            bench::procs::kill_children();
            std::process::exit(130);
        }
    });
    let started = std::time::Instant::now();
    let (measures, errors) = runtime.block_on(bench::run_all(
        &names,
        &bins,
        &scale,
        cli.runs,
        cli.long_runs,
    ));
    let rows = report::summarize(&measures);
    let mut section = format!(
        "Measured {} (UTC) at commit {} on {}.\n\
         Command: `cargo run --release -p bench -- {}` (runs {}, long runs {}), {:.0} s in all.\n\n",
        report::command_line("date", &["-u", "+%Y-%m-%d %H:%M"]),
        report::command_line("git", &["rev-parse", "--short", "HEAD"]),
        report::machine(),
        cli.workloads.join(" "),
        cli.runs,
        cli.long_runs,
        started.elapsed().as_secs_f64(),
    );
    section.push_str(&report::table(&rows));
    if !errors.is_empty() {
        section.push_str("\nWorkload runs that failed (their figures are missing above):\n\n");
        for error in &errors {
            section.push_str(&format!("- {error}\n"));
        }
    }
    println!("{section}");
    if !cli.no_write {
        let path = cli
            .write
            .unwrap_or_else(|| bench::workspace_root().join("BENCHMARKS.md"));
        if let Err(error) = report::write_between_markers(&path, &section) {
            eprintln!("bench: {error:#}");
            return ExitCode::FAILURE;
        }
        eprintln!("bench: wrote {}", path.display());
    }
    if errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `bench soak`: one long run, its report printed and written between the soak markers.
fn soak(cli: Cli) -> ExitCode {
    if cli.workloads.len() != 1 {
        eprintln!("bench: soak runs alone (got {})", cli.workloads.join(" "));
        return ExitCode::from(2);
    }
    let mut plan = bench::soak::Plan::hour();
    if let Some(duration) = cli.soak_duration {
        plan = plan.lasting(duration);
    }
    if let Some(sessions) = cli.soak_sessions {
        plan.sessions = sessions;
    }
    match bench::raise_fd_limit() {
        Ok(limit) => eprintln!("bench: descriptor limit {limit}"),
        Err(error) => eprintln!("bench: cannot raise the descriptor limit: {error}"),
    }
    let bins = match Binaries::beside_current_exe(None, Build::Always) {
        Ok(bins) => bins,
        Err(error) => {
            eprintln!("bench: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("bench: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = match runtime.block_on(bench::soak::soak(&bins, &plan)) {
        Ok(outcome) => outcome,
        Err(error) => {
            eprintln!("bench: soak failed: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    let table_every = (plan.duration / 12).max(plan.every);
    let section = format!(
        "Measured {} (UTC) at commit {} on {}.\nCommand: `cargo run --release -p bench -- soak{}{}`.\n\n{}",
        report::command_line("date", &["-u", "+%Y-%m-%d %H:%M"]),
        report::command_line("git", &["rev-parse", "--short", "HEAD"]),
        report::machine(),
        cli.soak_duration
            .map(|d| format!(" --soak-duration {}", humantime::format_duration(d)))
            .unwrap_or_default(),
        cli.soak_sessions
            .map(|n| format!(" --soak-sessions {n}"))
            .unwrap_or_default(),
        bench::soak::render(&outcome, table_every),
    );
    println!("{section}");
    let csv = bins.log_dir.join("soak-samples.csv");
    if let Err(error) = std::fs::write(&csv, bench::soak::csv(&outcome.samples)) {
        eprintln!("bench: cannot write {}: {error}", csv.display());
    } else {
        eprintln!("bench: every sample in {}", csv.display());
    }
    if !cli.no_write {
        let path = cli
            .write
            .unwrap_or_else(|| bench::workspace_root().join("BENCHMARKS.md"));
        if let Err(error) = report::write_section(&path, "soak", &section) {
            eprintln!("bench: {error:#}");
            return ExitCode::FAILURE;
        }
        eprintln!("bench: wrote {}", path.display());
    }
    if outcome.pass() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
