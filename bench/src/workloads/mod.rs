//! The workloads of issue 8, one module each. Each is one run: it starts the servers it needs
//! as child processes, drives them from this process, and returns its figures.

mod burst;
mod cycles;
mod detect;
mod fanout;
mod hold;
mod listing;
mod metrics_cost;
mod rooms;
mod storm;
mod throughput;
mod transports;

use std::time::Duration;

use anyhow::bail;
use hdrhistogram::Histogram;

use crate::procs::{Binaries, Target};
use crate::report::Measure;

/// Sizes and durations of every workload: [`Scale::full`] for the benchmark, [`Scale::smoke`]
/// for the CI smoke test.
#[derive(Debug, Clone)]
pub struct Scale {
    /// Sessions held, stormed, vanished and cycled (19,000).
    pub sessions: usize,
    /// Handshakes in flight while a crowd gathers (except in the storm, which is unpaced).
    pub concurrency: usize,
    /// How long the hold lasts (60 s).
    pub hold: Duration,
    /// Heartbeat period while holding (10 s).
    pub hold_heartbeat: Duration,
    /// Clients that vanish in the first detection round (1,000).
    pub vanish_small: usize,
    /// Idle timeout of the detection workload (3 s).
    pub detect_idle: Duration,
    /// Heartbeat of the detection workload (1 s).
    pub detect_heartbeat: Duration,
    /// Pipelined connections (100).
    pub pipelined: usize,
    /// Inputs in flight per pipelined connection.
    pub window: u64,
    /// Unpipelined clients (1,000).
    pub round_trippers: usize,
    /// How long each throughput figure is measured.
    pub measure: Duration,
    /// Turns of the throughput figures compared between servers: each server measured this many
    /// times, in alternation with the others (3).
    pub turns: usize,
    /// Scraped / unscraped phase pairs in the metrics-cost workload.
    pub metric_phases: usize,
    /// Connect-and-drop cycles (10).
    pub cycles: usize,
    /// Rooms in the rooms workload.
    pub rooms: usize,
    /// Players per room (100).
    pub room_size: usize,
    /// Each player sends one input this often.
    pub input_every: Duration,
    /// Rooms in the fan-out workload (1,000).
    pub fanout_rooms: usize,
    /// Players per fan-out room (10).
    pub fanout_size: usize,
    /// Each fan-out player sends one input this often (50 ms: 20 a second).
    pub fanout_every: Duration,
    /// Rooms in the burst workload.
    pub burst_rooms: usize,
    /// Slow readers per burst room.
    pub burst_readers: usize,
    /// Most inputs each burst room's feeder sends (it stops once the server holds about 1 MiB
    /// for each slow reader).
    pub burst_inputs: u64,
    /// Payload bytes of each burst input.
    pub burst_input_bytes: usize,
    /// Rooms open while the listing is read (10,000).
    pub listing_rooms: usize,
    /// Readings of each listing page.
    pub listings: usize,
}

impl Scale {
    /// The benchmark of issue 8.
    pub fn full() -> Scale {
        Scale {
            sessions: 19_000,
            concurrency: 1024,
            hold: Duration::from_secs(60),
            hold_heartbeat: Duration::from_secs(10),
            vanish_small: 1000,
            detect_idle: Duration::from_secs(3),
            detect_heartbeat: Duration::from_secs(1),
            pipelined: 100,
            window: 32,
            round_trippers: 1000,
            measure: Duration::from_secs(5),
            turns: 3,
            metric_phases: 2,
            cycles: 10,
            rooms: 10,
            room_size: 100,
            input_every: Duration::from_secs(1),
            fanout_rooms: 1000,
            fanout_size: 10,
            fanout_every: Duration::from_millis(50),
            burst_rooms: 4,
            burst_readers: 50,
            burst_inputs: 3000,
            burst_input_bytes: 4096,
            listing_rooms: 10_000,
            listings: 200,
        }
    }

    /// Every workload at a size that runs in seconds on a debug build.
    pub fn smoke() -> Scale {
        Scale {
            sessions: 50,
            concurrency: 50,
            hold: Duration::from_secs(1),
            hold_heartbeat: Duration::from_millis(300),
            vanish_small: 20,
            detect_idle: Duration::from_secs(1),
            detect_heartbeat: Duration::from_millis(300),
            pipelined: 5,
            window: 8,
            round_trippers: 10,
            measure: Duration::from_millis(500),
            turns: 2,
            metric_phases: 1,
            cycles: 2,
            rooms: 2,
            room_size: 5,
            input_every: Duration::from_millis(100),
            fanout_rooms: 3,
            fanout_size: 10,
            fanout_every: Duration::from_millis(50),
            burst_rooms: 2,
            burst_readers: 5,
            burst_inputs: 100,
            burst_input_bytes: 1024,
            listing_rooms: 30,
            listings: 5,
        }
    }
}

/// The workloads, by name, in the order `all` runs them.
pub const WORKLOADS: [&str; 11] = [
    "hold",
    "detect",
    "storm",
    "throughput",
    "metrics",
    "cycles",
    "rooms",
    "fanout",
    "burst",
    "transports",
    "listing",
];

/// Runs one workload once.
pub async fn run(
    name: &str,
    bins: &Binaries,
    scale: &Scale,
    run: usize,
) -> anyhow::Result<Vec<Measure>> {
    match name {
        "hold" => hold::hold(bins, scale).await,
        "detect" => detect::detect(bins, scale).await,
        "storm" => storm::storm(bins, scale).await,
        "throughput" => throughput::throughput(bins, scale, run).await,
        "metrics" => metrics_cost::metrics_cost(bins, scale, run).await,
        "cycles" => cycles::cycles(bins, scale).await,
        "rooms" => rooms::rooms(bins, scale, run).await,
        "fanout" => fanout::fanout(bins, scale, run).await,
        "burst" => burst::burst(bins, scale, run).await,
        "transports" => transports::transports(bins, scale, run).await,
        "listing" => listing::listing(bins, scale, run).await,
        other => bail!("unknown workload {other}; known: {}", WORKLOADS.join(", ")),
    }
}

const TARGETS: [Target; 2] = [Target::Ours, Target::Baseline];

/// Clients that are not pipelining acknowledge their events at most this often, with their next
/// input (PROTOCOL.md asks for about once per heartbeat).
const ACK_EVERY: Duration = Duration::from_secs(1);

/// Rate limits high enough that pipelined inputs are never throttled (the defaults allow 100
/// frames/s per session).
fn unthrottled() -> Vec<(String, String)> {
    vec![
        (
            "GAMESERVER__SESSION__RATE_LIMIT_PER_SEC".to_owned(),
            "4000000000".to_owned(),
        ),
        (
            "GAMESERVER__SESSION__RATE_LIMIT_BURST".to_owned(),
            "4000000000".to_owned(),
        ),
    ]
}

fn heartbeat_env(period: Duration) -> (String, String) {
    (
        "GAMESERVER__SESSION__HEARTBEAT_INTERVAL".to_owned(),
        format!("{}ms", period.as_millis()),
    )
}

/// The game server's heartbeat for clients that ping every `period` themselves: a little longer
/// (+20%), so that it never needs to ping them, only to answer (PROTOCOL.md). Both servers then
/// receive and answer one frame per client per period.
fn server_heartbeat(period: Duration) -> Duration {
    period.mul_f64(1.2)
}

/// How the report names mosquitto when it is the "baseline" of a row.
fn mosquitto_note(command: &str, clients: &str) -> String {
    format!(
        "The baseline column of this row is mosquitto, not the bare Tokio baseline: {command}. {clients}"
    )
}

fn kib(bytes_kib: u64) -> f64 {
    bytes_kib as f64
}

fn histogram() -> Histogram<u64> {
    // Microseconds, up to ten minutes, three significant digits.
    match Histogram::new_with_bounds(1, 600_000_000, 3) {
        Ok(h) => h,
        Err(error) => panic!("histogram bounds: {error}"),
    }
}

fn ms_at(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}
