//! Progress while a run goes on: a bar on a terminal, one line per counter per second otherwise.
//!
//! The bar's line fits 80 columns: elapsed time, instances (or seconds) done of all, then open
//! connections, connects, frames sent and received per second and failed instances; when every
//! connection left is a silent client waiting for the server's idle timeout, it says so instead,
//! so that a run that seems stuck is seen to be waiting on the server.
//!
//! The line format follows the load-tool convention operators grep for:
//! `5s connect_succ total=1000 rate=200.00/sec`, then `connect_fail`, `sent`, `recv`, `errors`.
//! Only counters that moved in the last second are printed, so a quiet run stays quiet.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use crate::options::ProgressMode;
use crate::stats::{Stats, get};

/// A running progress display; [`Progress::finish`] stops it.
#[derive(Debug)]
pub(crate) struct Progress {
    task: Option<JoinHandle<()>>,
    bar: Option<ProgressBar>,
}

impl Progress {
    /// Starts the display. `total` is the number of instances when known (no `--duration`).
    pub(crate) fn start(
        mode: ProgressMode,
        stats: Arc<Stats>,
        total: Option<u64>,
        duration: Option<Duration>,
    ) -> Progress {
        let bar = match mode {
            ProgressMode::Bar => true,
            ProgressMode::Auto => std::io::stdout().is_terminal(),
            ProgressMode::Lines | ProgressMode::Off => false,
        };
        if mode == ProgressMode::Off {
            return Progress {
                task: None,
                bar: None,
            };
        }
        if bar {
            let len = duration.map_or(total.unwrap_or(0), |d| d.as_secs().max(1));
            let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stdout());
            if let Ok(style) =
                ProgressStyle::with_template("{elapsed_precise} {pos:>5}/{len:5} {wide_msg}")
            {
                bar.set_style(style);
            }
            let shown = bar.clone();
            let started = Instant::now();
            let task = tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
                let mut last = (Instant::now(), [0u64; 3]);
                loop {
                    tick.tick().await;
                    let pos = match duration {
                        Some(d) => started.elapsed().min(d).as_secs(),
                        None => get(&stats.finished),
                    };
                    shown.set_position(pos);
                    let now = Instant::now();
                    let counts = [
                        get(&stats.connect_ok),
                        get(&stats.sent_msgs),
                        get(&stats.recv_msgs),
                    ];
                    let secs = now.duration_since(last.0).as_secs_f64().max(0.001);
                    let before = last.1;
                    let rate = |i: usize| short((counts[i] - before[i]) as f64 / secs);
                    last = (now, counts);
                    let open = get(&stats.open);
                    let silent = get(&stats.awaiting_detection);
                    shown.set_message(if silent > 0 && silent >= open {
                        format!("waiting for the server to drop {silent} silent")
                    } else {
                        format!(
                            "open {} conn {}/s tx {}/s rx {}/s failed {}",
                            short(open as f64),
                            rate(0),
                            rate(1),
                            rate(2),
                            short(get(&stats.failed) as f64),
                        )
                    });
                }
            });
            return Progress {
                task: Some(task),
                bar: Some(bar),
            };
        }
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let mut last = [0u64; 5];
            let mut tick =
                tokio::time::interval_at(started + Duration::from_secs(1), Duration::from_secs(1));
            tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
            let mut previous = started;
            loop {
                tick.tick().await;
                let now = Instant::now();
                let secs = now.duration_since(previous).as_secs_f64().max(0.001);
                previous = now;
                let current = [
                    get(&stats.connect_ok),
                    get(&stats.connect_failed),
                    get(&stats.sent_msgs),
                    get(&stats.recv_msgs),
                    stats.errors_total(),
                ];
                let elapsed = now.duration_since(started).as_secs();
                let names = ["connect_succ", "connect_fail", "sent", "recv", "errors"];
                for i in 0..names.len() {
                    if current[i] != last[i] {
                        let rate = (current[i] - last[i]) as f64 / secs;
                        println!(
                            "{elapsed}s {} total={} rate={rate:.2}/sec",
                            names[i], current[i]
                        );
                    }
                }
                last = current;
            }
        });
        Progress {
            task: Some(task),
            bar: None,
        }
    }

    /// Stops the display and clears the bar.
    pub(crate) fn finish(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

/// A count in at most five characters: 999, 12.3k, 4.5M.
fn short(value: f64) -> String {
    if value < 1000.0 {
        format!("{value:.0}")
    } else if value < 1_000_000.0 {
        format!("{:.1}k", value / 1000.0)
    } else {
        format!("{:.1}M", value / 1_000_000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_line_fits_80_columns_at_large_counts() {
        // "HH:MM:SS " + "12345/12345 " and the message.
        let message = format!(
            "open {} conn {}/s tx {}/s rx {}/s failed {}",
            short(19_000.0),
            short(999.0),
            short(1_234_567.0),
            short(2_345_678.0),
            short(12_345.0)
        );
        let line = 9 + "12345/12345 ".len() + message.len();
        assert!(line <= 80, "{line} columns: {message}");
        assert_eq!(short(12_345.0), "12.3k");
    }
}
