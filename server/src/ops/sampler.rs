//! The sampler: adds up what every session and parked session holds, evicts parked sessions
//! while the estimate is over the limit, and publishes the figures.

use std::sync::Arc;

use crate::memory::budget::{Budget, SAMPLE_EVERY, SAMPLE_RELAXED, Sample};
use crate::ops::metrics::Metrics;
use crate::player::registry::Registry;
use crate::resume::Parking;

/// Adds up the footprints every [`SAMPLE_EVERY`] or [`SAMPLE_RELAXED`], enforces the parked and server-wide budgets,
/// and updates the gauges. Runs until dropped.
pub(crate) async fn watch(
    budget: Arc<Budget>,
    registry: Arc<Registry>,
    parking: Arc<Parking>,
    metrics: Metrics,
) {
    metrics.memory_budget.set(gauge(budget.configured()));
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
        enforce(&budget, &registry, &parking, &metrics);
    }
}

/// One round: sample, evict what must go, publish.
pub(crate) fn enforce(budget: &Budget, registry: &Registry, parking: &Parking, metrics: &Metrics) {
    parking.enforce_bytes();
    let mut sample = Sample {
        live: registry.footprints(),
        parked: parking.footprints(),
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
