//! `network-profiles`: measures the server on each network profile (see
//! `system_tests::profile`), with the embedded defaults and with the settings recommended for
//! the profile, and prints the table of BENCHMARKS.md. Needs root, `ip`, `nft` and `tc`; the
//! game server binary of the same build (`cargo build -p game-server` first, or `--release`
//! for both).

use std::time::Duration;

use clap::Parser;
use system_tests::profile::{PROFILES, Row, Settings, Size, profile, recommended, run};

/// Measures disconnect handling on bad networks in network namespaces.
#[derive(Debug, Parser)]
struct Cli {
    /// Profiles to run (default: all): lan, broadband, wifi, mobile, loss10, loss20.
    profiles: Vec<String>,
    /// Players on the link.
    #[arg(long, default_value_t = 200)]
    players: usize,
    /// How long they play before links are cut.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    play: Duration,
    /// Players whose links are then cut.
    #[arg(long, default_value_t = 20)]
    cut: usize,
    /// Which settings: defaults, recommended or both.
    #[arg(long, default_value = "both")]
    settings: String,
    /// Instead, these: a heartbeat interval (with --idle-timeout).
    #[arg(long, value_parser = humantime::parse_duration, requires = "idle_timeout")]
    heartbeat: Option<Duration>,
    /// Instead, these: an idle timeout (with --heartbeat).
    #[arg(long, value_parser = humantime::parse_duration, requires = "heartbeat")]
    idle_timeout: Option<Duration>,
    /// And this `session.loss_grace` (0s: off) with whichever settings run.
    #[arg(long, value_parser = humantime::parse_duration)]
    loss_grace: Option<Duration>,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let cli = Cli::parse();
    if !system_tests::is_root() {
        eprintln!("network-profiles: needs root (network namespaces, nftables, tc)");
        std::process::exit(2);
    }
    if let Some(missing) = ["ip", "nft", "tc"]
        .into_iter()
        .find(|tool| !system_tests::has_tool(tool))
    {
        eprintln!("network-profiles: {missing} is missing (apt-get install iproute2 nftables)");
        std::process::exit(2);
    }
    let names: Vec<String> = if cli.profiles.is_empty() {
        PROFILES.iter().map(|p| p.name.to_owned()).collect()
    } else {
        cli.profiles.clone()
    };
    let size = Size {
        players: cli.players,
        play: cli.play,
        cut: cli.cut.min(cli.players),
    };
    println!("{}", Row::header());
    for name in names {
        let Some(profile) = profile(&name) else {
            eprintln!("network-profiles: no profile {name}");
            std::process::exit(2);
        };
        let mut settings = Vec::new();
        if let (Some(heartbeat), Some(idle)) = (cli.heartbeat, cli.idle_timeout) {
            let name = format!(
                "heartbeat {}, idle timeout {}",
                humantime::format_duration(heartbeat),
                humantime::format_duration(idle)
            );
            settings.push(Settings::timing(&name, heartbeat, idle));
        } else if cli.settings != "recommended" {
            settings.push(Settings::defaults());
        }
        if cli.heartbeat.is_none() && cli.settings != "defaults" {
            settings.push(recommended(&profile));
        }
        for mut settings in settings {
            if let Some(grace) = cli.loss_grace {
                settings = settings.with_loss_grace(grace);
            }
            eprintln!("network-profiles: {} with {}", profile.name, settings.name);
            let row = run(&profile, &settings, size).await;
            if let Some((down, up)) = row.bulk_kbit {
                eprintln!(
                    "network-profiles: the bulk transfers reached {down} kbit/s down, {up} up"
                );
            }
            println!("{}", row.markdown());
        }
    }
}
