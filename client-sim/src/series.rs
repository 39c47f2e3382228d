//! The report's time series: every `--interval`, the run's counters so far and the round trips
//! measured in that interval, so a long run shows when something changed, not only how it ended.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use crate::stats::{Percentiles, Stats, get};

/// One sample. Counters are totals since the start of the run (a consumer takes differences
/// for rates); `rtt_ms` covers only the interval that ends at `t`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Sample {
    /// Seconds since the run started.
    pub t: f64,
    /// Connections open at that moment.
    pub open: u64,
    /// TCP connects that succeeded.
    pub connects_ok: u64,
    /// TCP connects that failed.
    pub connects_failed: u64,
    /// Instances started.
    pub instances_started: u64,
    /// Instances finished.
    pub instances_finished: u64,
    /// Instances whose checks failed.
    pub instances_failed: u64,
    /// Instances the server's drain ended.
    pub drained: u64,
    /// Frames sent.
    pub sent: u64,
    /// Frames received.
    pub received: u64,
    /// Errors the clients observed.
    pub errors: u64,
    /// Clients waiting, silent, for the server to drop them.
    pub awaiting_detection: u64,
    /// Ping round trips measured in this interval.
    pub rtt_ms: Percentiles,
}

/// A running sampler; [`Series::finish`] stops it and returns the samples.
#[derive(Debug)]
pub(crate) struct Series {
    task: JoinHandle<()>,
    samples: Arc<Mutex<Vec<Sample>>>,
    stats: Arc<Stats>,
    started: Instant,
}

fn sample(stats: &Stats, started: Instant) -> Sample {
    Sample {
        t: started.elapsed().as_secs_f64(),
        open: get(&stats.open),
        connects_ok: get(&stats.connect_ok),
        connects_failed: get(&stats.connect_failed),
        instances_started: get(&stats.started),
        instances_finished: get(&stats.finished),
        instances_failed: get(&stats.failed),
        drained: get(&stats.drained),
        sent: get(&stats.sent_msgs),
        received: get(&stats.recv_msgs),
        errors: stats.errors_total(),
        awaiting_detection: get(&stats.awaiting_detection),
        rtt_ms: stats.take_rtt_window(),
    }
}

impl Series {
    /// Samples `stats` every `interval` from now on.
    pub(crate) fn start(stats: Arc<Stats>, interval: Duration) -> Series {
        let started = Instant::now();
        // The round trips measured before the run (the probe's) are not the run's.
        stats.take_rtt_window();
        let samples = Arc::new(Mutex::new(Vec::new()));
        let task = {
            let samples = Arc::clone(&samples);
            let stats = Arc::clone(&stats);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval_at(started + interval, interval);
                tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let next = sample(&stats, started);
                    samples
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(next);
                }
            })
        };
        Series {
            task,
            samples,
            stats,
            started,
        }
    }

    /// Stops sampling, takes a last sample (the end of the run) and returns them all.
    pub(crate) fn finish(self) -> Vec<Sample> {
        self.task.abort();
        let mut samples =
            std::mem::take(&mut *self.samples.lock().unwrap_or_else(PoisonError::into_inner));
        samples.push(sample(&self.stats, self.started));
        samples
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::stats::add;

    #[tokio::test(start_paused = true)]
    async fn samples_come_every_interval_with_that_intervals_round_trips() {
        let stats = Arc::new(Stats::default());
        let series = Series::start(Arc::clone(&stats), Duration::from_secs(1));
        stats.record_rtt(Duration::from_millis(4));
        add(&stats.connect_ok, 3);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        stats.record_rtt(Duration::from_millis(9));
        add(&stats.connect_ok, 2);
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let samples = series.finish();
        // At 1 s, at 2 s, and the last one at 2.5 s.
        assert_eq!(samples.len(), 3, "{samples:?}");
        assert_eq!(samples[0].t, 1.0);
        assert_eq!(samples[0].connects_ok, 3);
        assert_eq!(samples[0].rtt_ms.count, 1);
        assert!((samples[0].rtt_ms.max - 4.0).abs() < 0.01);
        assert_eq!(samples[1].connects_ok, 5);
        assert!((samples[1].rtt_ms.max - 9.0).abs() < 0.01);
        assert_eq!(samples[2].rtt_ms.count, 0, "nothing measured after 2 s");
    }
}
