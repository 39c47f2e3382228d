//! client-sim's command line: parse, run, print the summary, exit non-zero on any disagreement.

use std::process::ExitCode;

use std::io::Write as _;

use clap::Parser;
use client_sim::cli::{Cli, Internal};
use client_sim::report::{EXIT_CANNOT_RUN, EXIT_FAIL};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Internal::CrashChild(args)) = cli.internal {
        return client_sim::child_main(args);
    }
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CLIENT_SIM_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let opts = cli.options();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let report = match runtime.block_on(client_sim::run(opts)) {
        Ok(report) => report,
        Err(error) => {
            eprintln!("error: {error:#}");
            return ExitCode::from(EXIT_CANNOT_RUN);
        }
    };
    if cli.json_to_stdout() {
        eprint!("{}", report.render());
    } else {
        print!("{}", report.render());
    }
    if let Some(path) = &cli.json {
        let written = serde_json::to_vec_pretty(&report)
            .map_err(std::io::Error::other)
            .and_then(|mut json| {
                if cli.json_to_stdout() {
                    json.push(b'\n');
                    std::io::stdout().write_all(&json)
                } else {
                    std::fs::write(path, json)
                }
            });
        if let Err(error) = written {
            eprintln!("error: cannot write {}: {error}", path.display());
            return ExitCode::from(EXIT_FAIL);
        }
    }
    ExitCode::from(report.exit_code())
}
