//! The sampler: adds up what every session and parked session holds, evicts parked sessions
//! while the estimate is over the limit, and publishes the figures.

use std::sync::Arc;

use crate::memory::budget::{Budget, SAMPLE_EVERY, SAMPLE_RELAXED, Sample, Totals};
use crate::ops::metrics::Metrics;
use crate::player::registry::Registry;
use crate::resume::Parking;

/// Adds up the footprints every [`SAMPLE_EVERY`] or [`SAMPLE_RELAXED`] (when any changed:
/// a server of quiet sessions is not walked), enforces the parked and server-wide budgets, and
/// updates the gauges. Runs until dropped.
pub(crate) async fn watch(
    budget: Arc<Budget>,
    registry: Arc<Registry>,
    parking: Arc<Parking>,
    metrics: Metrics,
) {
    metrics.memory_budget.set(gauge(budget.configured()));
    let mut sums = Sums::default();
    loop {
        let every = if budget.relaxed() {
            SAMPLE_RELAXED
        } else {
            SAMPLE_EVERY
        };
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = budget.crossed() => {}
        }
        enforce(&budget, &registry, &parking, &metrics, &mut sums);
    }
}

/// The live and parked sessions' footprints as last added up.
#[derive(Debug, Default)]
pub(crate) struct Sums {
    live: Totals,
    parked: Totals,
}

/// One round: sample (adding the footprints up again only if one changed since `sums` were
/// taken), evict what must go, publish.
pub(crate) fn enforce(
    budget: &Budget,
    registry: &Registry,
    parking: &Parking,
    metrics: &Metrics,
    sums: &mut Sums,
) {
    if budget.take_change() {
        parking.enforce_bytes();
        *sums = Sums {
            live: registry.footprints(),
            parked: parking.footprints(),
        };
    }
    let mut sample = Sample {
        live: sums.live,
        parked: sums.parked,
        connections: u64::try_from(metrics.sessions_active.get()).unwrap_or(0),
        layers: budget.layers(),
    };
    while budget.exceeded_by(&sample) && sample.parked.count > 0 {
        let Some(freed) = parking.evict_oldest(crate::resume::Eviction::MemoryBudget) else {
            break;
        };
        // Close enough for the loop; the next sample recounts exactly.
        sample.parked.count -= 1;
        let from_queued = freed.min(sample.parked.queued);
        sample.parked.queued -= from_queued;
        sample.parked.replay = sample.parked.replay.saturating_sub(freed - from_queued);
    }
    let (estimate, changed) = budget.settle(&sample);
    if let Some(pressure) = changed {
        if pressure {
            tracing::warn!(
                used = estimate,
                budget = budget.configured(),
                "over server.memory_budget with no parked session left to evict: refusing new \
                 players and closing sessions with a backlog as slow consumers"
            );
        } else {
            tracing::info!(
                used = estimate,
                budget = budget.configured(),
                "back under server.memory_budget"
            );
        }
    }
    metrics.memory_used.set(gauge(estimate));
    metrics
        .queued_bytes
        .set(gauge(sample.live.queued + sample.parked.queued));
    metrics
        .replay_bytes
        .set(gauge(sample.live.replay + sample.parked.replay));
    metrics.parked_bytes.set(gauge(sample.parked.bytes()));
}

fn gauge(bytes: u64) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;
    use crate::logging::Throttle;
    use crate::player::registry::{Player, QueueLimit};
    use crate::resume::ParkingLimits;

    struct Server {
        budget: Arc<Budget>,
        registry: Registry,
        parking: Arc<Parking>,
        metrics: Metrics,
        sums: Sums,
    }

    impl Server {
        fn new() -> Server {
            let metrics = Metrics::new().expect("metrics");
            let parking = Parking::new(
                Duration::from_secs(10),
                ParkingLimits {
                    max_parked: 10,
                    max_bytes: u64::MAX,
                    per_source: 0,
                },
                metrics.resume.clone(),
                Throttle::new(metrics.log_lines_suppressed.clone()),
            );
            Server {
                budget: Budget::new(1 << 30, 0),
                registry: Registry::default(),
                parking,
                metrics,
                sums: Sums::default(),
            }
        }

        fn player(&self, id: u64) -> Player {
            let limit = QueueLimit {
                max_bytes: u64::MAX,
                pressure: self.budget.pressure_flag(),
            };
            let peer = "127.0.0.1:5000".parse().expect("addr");
            Player::new(id, Arc::from(format!("p{id}")), peer, 8, limit)
        }

        /// One round; the queued bytes it published.
        fn round(&mut self) -> i64 {
            enforce(
                &self.budget,
                &self.registry,
                &self.parking,
                &self.metrics,
                &mut self.sums,
            );
            self.metrics.queued_bytes.get()
        }
    }

    #[test]
    fn the_sampler_adds_up_again_after_each_change_and_only_then() {
        let mut server = Server::new();
        let player = server.player(1);
        assert!(server.registry.register(player.clone()).is_none());
        assert_eq!(server.round(), 0);
        assert!(player.send(Bytes::from_static(b"twelve bytes")));
        assert_eq!(server.round(), 12, "a queued event is counted");
        // A change nobody told the budget about is not seen: the round did not walk.
        player.footprint().enqueue(100);
        assert_eq!(
            server.round(),
            12,
            "nothing changed as far as the sampler knows"
        );
        player.dequeued(100);
        player.dequeued(12);
        assert_eq!(server.round(), 0, "taken by the session");
        assert!(player.send(Bytes::from_static(b"seven b")));
        assert_eq!(server.round(), 7);
        server.registry.remove(1);
        assert_eq!(server.round(), 0, "a session that went counts no more");
    }
}
