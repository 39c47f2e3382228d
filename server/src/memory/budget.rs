//! Memory budgets in bytes, not only in counts.
//!
//! Each session is bounded on its own (`session.outbound_queue_bytes` in its queue,
//! `session.resume_buffer_bytes` for replay), parked sessions are bounded in number and bytes
//! (`session.max_parked`, `session.max_parked_bytes`), and the whole server by
//! `server.memory_budget`. The last one is an estimate, kept cheap: every session publishes its
//! own [`Footprint`] (counters only it and its senders touch), and one task adds them up every
//! [`SAMPLE_EVERY`] ([`SAMPLE_RELAXED`] while far from the limit), if any changed, together
//! with a fixed estimate per connection and per parked session, what each TLS or WebSocket
//! connection's layer holds from its accept (a [`Charge`]: a connection still in its TLS
//! handshake counts as much as a live one), and what the process used before it held any
//! player; a session whose buffers grow by [`GROWTH_STEP`] reports it at once. The server acts
//! when the estimate reaches [`ACT_AT_PERCENT`] of the budget, keeping the rest as headroom for
//! the allocator:
//!
//! 1. new connections are refused (`gameserver_connections_rejected_total{reason="memory_budget"}`);
//! 2. parked sessions are evicted oldest first (`gameserver_parked_evicted_total`); a later
//!    resume is refused as `evicted`;
//! 3. if that is not enough, the server is under pressure: sessions keep at most
//!    [`crate::resume::PRESSURE_REPLAY_BYTES`] for replay (a resume may then be refused as
//!    `seq_gap`), and an event for a session that already has [`PRESSURE_QUEUE_BYTES`] queued
//!    closes it as `slow_consumer` instead of queueing more.
//!
//! The estimate errs high where a payload is shared: an event broadcast to a room is one
//! allocation, but it counts once in each member's queue and replay buffer.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// How often the server adds up what it holds once the estimate is past half the limit.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// How often it does below half the limit. Adding up walks every session: with 19,000 held it
/// was a sixth of an idle server's CPU at 100 ms. Growth is reported at once in any case
/// ([`GROWTH_STEP`]), and crossing the limit wakes the sampler.
pub const SAMPLE_RELAXED: Duration = Duration::from_secs(1);
/// Estimated memory of one connection beyond what its footprint reports: its task, codec, timer,
/// buffers at their idle size and its entries in the server's maps. An idle held session measures
/// about 3.5 KiB (BENCHMARKS.md); a busy one holds buffers in flight that its footprint reports
/// only in [`GROWTH_STEP`]s, and the allocator keeps some of what it frees: the estimate stays
/// well above the idle figure.
pub const CONNECTION_ESTIMATE: u64 = 12 * 1024;
/// Estimated memory of one parked session beyond its queued and replayable events.
pub const PARKED_ESTIMATE: u64 = 2 * 1024;
/// What [`CONNECTION_ESTIMATE`] already counts of a session's buffers: a session's footprint
/// reports only what it holds beyond this. A quiet session's heartbeat (a ping written from a
/// buffer taken and given back, a pong read) then changes no footprint, and a server of quiet
/// sessions gives the sampler nothing to add up.
pub const BUFFERS_IN_ESTIMATE: u64 = 4 * 1024;
/// Under pressure, a session with this much queued gets no more: it is closed as a slow consumer.
pub const PRESSURE_QUEUE_BYTES: u64 = 64 * 1024;

/// The bytes one session holds, published for the budget. Shared by the session task (which
/// knows its buffers) and the game (which queues events for it), both through the player, which
/// tells the budget after each change ([`Pressure::note_change`]). The counters change in
/// sequentially consistent order (on x86 as cheap as relaxed for these read-modify-writes), so
/// that a change the budget was not told about, because its flag was already up, is one the
/// sampler's next walk sees.
#[derive(Debug, Default)]
pub struct Footprint {
    queued: AtomicU64,
    replay: AtomicU64,
    buffers: AtomicU64,
}

impl Footprint {
    /// Bytes of events queued and not yet taken by the session.
    pub fn queued(&self) -> u64 {
        self.queued.load(Ordering::Relaxed)
    }

    /// Bytes of sent events kept for replay.
    pub fn replay(&self) -> u64 {
        self.replay.load(Ordering::Relaxed)
    }

    /// Bytes of the session's read and write buffers.
    pub fn buffers(&self) -> u64 {
        self.buffers.load(Ordering::Relaxed)
    }

    /// Adds a queued event; returns the new total.
    pub(crate) fn enqueue(&self, bytes: u64) -> u64 {
        self.queued.fetch_add(bytes, Ordering::SeqCst) + bytes
    }

    /// Takes back a queued event (dequeued by the session, or refused).
    pub(crate) fn dequeue(&self, bytes: u64) {
        // Never below zero, even if a count and its correction race.
        let _ = self
            .queued
            .fetch_update(Ordering::SeqCst, Ordering::Relaxed, |q| {
                Some(q.saturating_sub(bytes))
            });
    }

    /// Publishes what the session holds itself.
    pub(crate) fn set_held(&self, replay: u64, buffers: u64) {
        self.replay.store(replay, Ordering::SeqCst);
        self.buffers.store(buffers, Ordering::SeqCst);
    }
}

/// Footprints added up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Sessions added.
    pub count: u64,
    /// Queued bytes.
    pub queued: u64,
    /// Replay bytes.
    pub replay: u64,
    /// Buffer bytes.
    pub buffers: u64,
}

impl Totals {
    /// Adds one footprint.
    pub fn add(&mut self, footprint: &Footprint) {
        self.count += 1;
        self.queued += footprint.queued();
        self.replay += footprint.replay();
        self.buffers += footprint.buffers();
    }

    /// Every byte counted.
    pub fn bytes(&self) -> u64 {
        self.queued + self.replay + self.buffers
    }
}

/// The share of `server.memory_budget` the estimate may reach before the server acts. The rest
/// is headroom for what the estimate cannot see: the allocator's own overhead and the memory it
/// keeps after a burst, and buffers in flight between two samples. Measured under floods of
/// maximum-size events (tests/tests/hostile_memory.rs), the resident set ran up to 15% above the
/// estimate.
pub const ACT_AT_PERCENT: u64 = 80;

/// The server-wide budget: the limit, the last estimate and whether the server is under
/// pressure. Cheap to share.
#[derive(Debug)]
pub struct Budget {
    /// `server.memory_budget`.
    budget: u64,
    /// What the estimate may reach: [`ACT_AT_PERCENT`] of the budget.
    limit: u64,
    baseline: u64,
    /// The last sample plus the growth sessions reported since (see [`Budget::grew`]).
    used: AtomicU64,
    /// The last sample was over the limit with no parked session left to evict.
    pressure: AtomicBool,
    /// Wakes the sampler early when reported growth crosses the limit.
    crossed: tokio::sync::Notify,
    /// What open connections hold that the sample cannot see in sessions: a TLS or WebSocket
    /// layer's own state and buffers, and a connection still in its TLS handshake, not yet
    /// counted as active ([`Charge`]).
    layers: AtomicU64,
    /// A footprint changed, or a session came, went, was parked or left the parked ones, since
    /// the sampler last added them up: until then it reuses its last sums.
    changed: AtomicBool,
}

/// A session reports growth of its own buffers at once, without waiting for the next sample, in
/// steps of at least this much: a flood cannot outrun the sampler by more than one step per
/// session, and a quiet session never touches the shared counter.
pub const GROWTH_STEP: u64 = 64 * 1024;

impl Budget {
    /// A budget of `budget` bytes for a process that used `baseline` bytes before holding
    /// players.
    pub fn new(budget: u64, baseline: u64) -> Arc<Budget> {
        Arc::new(Budget {
            budget,
            limit: budget / 100 * ACT_AT_PERCENT,
            baseline,
            used: AtomicU64::new(baseline),
            pressure: AtomicBool::new(false),
            crossed: tokio::sync::Notify::new(),
            layers: AtomicU64::new(0),
            changed: AtomicBool::new(true),
        })
    }

    /// The last estimate.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// `server.memory_budget`.
    pub(crate) fn configured(&self) -> u64 {
        self.budget
    }

    /// True while the last estimate is below half the limit: the sampler may take its time.
    pub(crate) fn relaxed(&self) -> bool {
        self.used() < self.limit / 2
    }

    /// Waits until reported growth crosses the limit.
    pub(crate) async fn crossed(&self) {
        self.crossed.notified().await;
    }

    /// What open connections hold beyond their sessions (see [`Charge`]).
    pub(crate) fn layers(&self) -> u64 {
        self.layers.load(Ordering::Relaxed)
    }

    /// True when `sample` is over the limit.
    pub(crate) fn exceeded_by(&self, sample: &Sample) -> bool {
        sample.estimate(self.baseline) > self.limit
    }

    /// Takes a sample as the new estimate. Returns the estimate, and `Some(pressure)` when the
    /// server went under pressure (`true`: over the limit with no parked session left to
    /// evict) or came back from it.
    pub(crate) fn settle(&self, sample: &Sample) -> (u64, Option<bool>) {
        let estimate = sample.estimate(self.baseline);
        let pressure = estimate > self.limit;
        let changed = pressure != self.pressure.swap(pressure, Ordering::Relaxed);
        self.used.store(estimate, Ordering::Relaxed);
        (estimate, changed.then_some(pressure))
    }

    /// True when one more connection fits, with `layer` bytes of its own beyond a plain TCP one
    /// (TLS, WebSocket); it is then counted at once, so that a burst of connections between two
    /// samples does not pass the same stale check.
    pub fn admits_connection(&self, layer: u64) -> bool {
        let cost = CONNECTION_ESTIMATE + layer;
        if self.used() + cost > self.limit {
            return false;
        }
        self.grew(cost);
        true
    }

    /// Charges `bytes` a connection holds beyond what the sample sees, until the charge is
    /// dropped (or changed).
    pub(crate) fn charge(self: &Arc<Self>, bytes: u64) -> Charge {
        self.layers.fetch_add(bytes, Ordering::Relaxed);
        Charge {
            budget: self.clone(),
            bytes,
        }
    }

    /// True when the estimate is over the limit and no parked session is left to evict: live
    /// sessions then shed what they can.
    pub fn under_pressure(&self) -> bool {
        self.pressure.load(Ordering::Relaxed)
    }

    /// A session's buffers grew by `bytes` (at least [`GROWTH_STEP`]) since it last reported, or a
    /// connection was admitted: counted at once, until the next sample recounts everything
    /// exactly. Crossing the limit wakes the sampler, so that parked sessions are evicted before
    /// live ones must shed; so does crossing half of it, where the sampler stops being relaxed.
    pub(crate) fn grew(&self, bytes: u64) {
        let before = self.used.fetch_add(bytes, Ordering::Relaxed);
        let after = before + bytes;
        // Past the limit, or past half of it while the sampler is relaxed: recount now.
        let half = self.limit / 2;
        if (before <= self.limit && after > self.limit) || (before < half && after >= half) {
            self.crossed.notify_one();
        }
    }

    /// Something the sampler adds up changed (see [`Budget::take_change`]).
    pub(crate) fn note_change(&self) {
        // Read first: while the flag is up, its cache line stays shared between the cores and
        // the next change costs a plain load.
        if !self.changed.load(Ordering::SeqCst) {
            self.changed.store(true, Ordering::SeqCst);
        }
    }

    /// True when something the sampler adds up changed since the last call. Called before the
    /// walk: a change during it raises the flag again, for the next.
    pub(crate) fn take_change(&self) -> bool {
        self.changed.swap(false, Ordering::SeqCst)
    }

    /// A flag for the hot path that reads [`Budget::under_pressure`].
    pub(crate) fn pressure_flag(self: &Arc<Self>) -> Pressure {
        Pressure(Some(self.clone()))
    }
}

/// Bytes one connection holds beyond what the sample sees in it (its TLS or WebSocket layer; in
/// its TLS handshake, the connection itself), counted in every estimate from the accept until
/// dropped at the close.
#[derive(Debug)]
pub(crate) struct Charge {
    budget: Arc<Budget>,
    bytes: u64,
}

impl Charge {
    /// Charges `bytes` instead.
    pub(crate) fn set(&mut self, bytes: u64) {
        if bytes >= self.bytes {
            self.budget
                .layers
                .fetch_add(bytes - self.bytes, Ordering::Relaxed);
        } else {
            self.budget
                .layers
                .fetch_sub(self.bytes - bytes, Ordering::Relaxed);
        }
        self.bytes = bytes;
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budget.layers.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// Whether the server is under memory pressure, as seen by [`crate::player::registry::Player::send`];
/// also how a player tells the budget that its footprint changed.
#[derive(Debug, Clone, Default)]
pub struct Pressure(Option<Arc<Budget>>);

impl Pressure {
    /// True under pressure.
    pub fn on(&self) -> bool {
        self.0.as_ref().is_some_and(|b| b.under_pressure())
    }

    /// Tells the budget that the player's footprint changed, or that the player came or went
    /// ([`Budget::note_change`]).
    pub(crate) fn note_change(&self) {
        if let Some(budget) = &self.0 {
            budget.note_change();
        }
    }
}

/// What the process uses now (its resident set), read from /proc; 0 where that is unknown.
pub fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|statm| statm.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// What one sample found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sample {
    /// Live sessions past their handshake.
    pub live: Totals,
    /// Parked sessions.
    pub parked: Totals,
    /// Open connections.
    pub connections: u64,
    /// What connections hold beyond that: TLS and WebSocket layers, TLS handshakes.
    pub layers: u64,
}

impl Sample {
    /// The estimate this sample gives over `baseline`.
    pub fn estimate(&self, baseline: u64) -> u64 {
        baseline
            + self.connections * CONNECTION_ESTIMATE
            + self.layers
            + self.live.bytes()
            + self.parked.bytes()
            + self.parked.count * PARKED_ESTIMATE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_estimate_counts_every_holder() {
        let sample = Sample {
            live: Totals {
                count: 3,
                queued: 100,
                replay: 50,
                buffers: 50,
            },
            parked: Totals {
                count: 2,
                queued: 100,
                replay: 200,
                buffers: 0,
            },
            connections: 3,
            layers: 400,
        };
        assert_eq!(
            sample.estimate(1000),
            1000 + 3 * CONNECTION_ESTIMATE + 400 + 200 + 300 + 2 * PARKED_ESTIMATE
        );
    }

    #[test]
    fn a_charge_counts_until_it_is_dropped() {
        let budget = Budget::new(1 << 30, 0);
        let mut handshaking = budget.charge(CONNECTION_ESTIMATE + 21 * 1024);
        let other = budget.charge(19 * 1024);
        assert_eq!(
            budget.layers.load(Ordering::Relaxed),
            CONNECTION_ESTIMATE + 40 * 1024
        );
        // Past its handshake the connection is counted as active: only its layer stays.
        handshaking.set(21 * 1024);
        assert_eq!(budget.layers.load(Ordering::Relaxed), 40 * 1024);
        drop(other);
        drop(handshaking);
        assert_eq!(budget.layers.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_footprint_never_goes_below_zero() {
        let footprint = Footprint::default();
        assert_eq!(footprint.enqueue(10), 10);
        footprint.dequeue(25);
        assert_eq!(footprint.queued(), 0);
    }

    #[test]
    fn the_process_knows_its_resident_set() {
        assert!(resident_bytes() > 1 << 20);
    }
}
