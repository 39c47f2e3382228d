//! What the engine keeps for a room beside the game's own state: its clock (the time since the
//! room opened, on the engine's clock: Tokio's, so a paused clock in tests pauses it too), the
//! timers the room schedules (delivered to [`crate::Room::timer`] and dropped with the room),
//! and what it publishes in the room listing (a label, a lock).

use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

/// Timers one room may have pending at once.
pub const MAX_TIMERS: usize = 4096;

/// A room already has [`MAX_TIMERS`] pending: no more can be scheduled until some fire or are
/// cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the room has {MAX_TIMERS} timers pending already")]
pub struct TooManyTimers;

/// The longest label a room may publish, in bytes.
pub const MAX_LABEL_BYTES: usize = 256;

/// A label longer than [`MAX_LABEL_BYTES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a room label is at most {MAX_LABEL_BYTES} bytes, this one is {0}")]
pub struct LabelTooLong(pub usize);

/// What a room publishes in the listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Listing {
    pub(crate) label: Option<Arc<str>>,
    pub(crate) locked: bool,
}

/// The state of one room the engine keeps, by its task (or the test kit's harness).
#[derive(Debug, Default)]
pub(crate) struct RoomState {
    /// What the room publishes; `listing_changed` until the task has published it.
    pub(crate) listing: Listing,
    pub(crate) listing_changed: bool,
    /// The last tick number.
    pub(crate) tick: u64,
    /// When the room opened, on the engine's clock; `None` in the test kit's harness, whose
    /// time moves only when the test moves it.
    opened: Option<Instant>,
    /// Time since the room opened as of the hook that runs: read from the clock the first time
    /// the hook needs it, then the same for the rest of the hook. A room that never asks (a
    /// relay) reads no clock per input.
    elapsed: Cell<Option<Duration>>,
    /// Pending timers by deadline (time since the room opened) and order of scheduling: the
    /// game's key for each.
    timers: BTreeMap<(Duration, u64), u64>,
    scheduled: u64,
}

impl RoomState {
    /// The state of a room that opened at `opened`: its time follows the engine's clock.
    pub(crate) fn opened_at(opened: Instant) -> RoomState {
        RoomState {
            opened: Some(opened),
            ..RoomState::default()
        }
    }

    /// Time since the room opened, as of the hook that runs.
    pub(crate) fn elapsed(&self) -> Duration {
        if let Some(elapsed) = self.elapsed.get() {
            return elapsed;
        }
        let elapsed = self
            .opened
            .map_or(Duration::ZERO, |opened| opened.elapsed());
        self.elapsed.set(Some(elapsed));
        elapsed
    }

    /// A new hook begins: its time is read afresh when it first asks. (In the harness, whose
    /// time the test sets, nothing changes.)
    pub(crate) fn next_hook(&mut self) {
        if self.opened.is_some() {
            self.elapsed.set(None);
        }
    }

    /// Sets the time of a room without a clock of its own (the test kit's harness).
    #[cfg(any(test, feature = "testkit"))]
    pub(crate) fn set_elapsed(&mut self, elapsed: Duration) {
        debug_assert!(self.opened.is_none(), "a room on the engine's clock");
        self.elapsed.set(Some(elapsed));
    }

    /// The earliest pending deadline.
    pub(crate) fn next_deadline(&self) -> Option<Duration> {
        self.timers.keys().next().map(|(deadline, _)| *deadline)
    }

    /// Takes the earliest timer due by [`RoomState::elapsed`]: its key.
    pub(crate) fn pop_due(&mut self) -> Option<u64> {
        let elapsed = self.elapsed();
        let entry = self.timers.first_entry()?;
        if entry.key().0 > elapsed {
            return None;
        }
        Some(entry.remove())
    }

    pub(crate) fn schedule(&mut self, delay: Duration, key: u64) -> Result<(), TooManyTimers> {
        if self.timers.len() >= MAX_TIMERS {
            return Err(TooManyTimers);
        }
        self.scheduled += 1;
        let deadline = self.elapsed().saturating_add(delay);
        self.timers.insert((deadline, self.scheduled), key);
        Ok(())
    }

    pub(crate) fn cancel(&mut self, key: u64) -> usize {
        let before = self.timers.len();
        self.timers.retain(|_, pending| *pending != key);
        before - self.timers.len()
    }

    pub(crate) fn pending(&self, key: u64) -> bool {
        self.timers.values().any(|pending| *pending == key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_fire_in_deadline_order_then_scheduling_order_and_cancel_by_key() {
        let mut clock = RoomState::default();
        clock.schedule(Duration::from_secs(2), 20).expect("room");
        clock.schedule(Duration::from_secs(1), 10).expect("room");
        clock.schedule(Duration::from_secs(1), 11).expect("room");
        clock.schedule(Duration::from_secs(3), 30).expect("room");
        assert_eq!(clock.next_deadline(), Some(Duration::from_secs(1)));
        assert_eq!(clock.pop_due(), None, "nothing is due at 0 s");
        clock.set_elapsed(Duration::from_secs(2));
        assert_eq!(clock.cancel(20), 1);
        assert!(!clock.pending(20));
        assert_eq!(clock.pop_due(), Some(10));
        assert_eq!(clock.pop_due(), Some(11));
        assert_eq!(clock.pop_due(), None, "30 is due at 3 s");
        assert!(clock.pending(30));
    }

    #[test]
    fn a_room_cannot_pile_up_timers_without_bound() {
        let mut clock = RoomState::default();
        for key in 0..MAX_TIMERS as u64 {
            clock
                .schedule(Duration::from_secs(60), key)
                .expect("under the bound");
        }
        assert_eq!(clock.schedule(Duration::ZERO, 0), Err(TooManyTimers));
        clock.cancel(0);
        assert_eq!(clock.schedule(Duration::ZERO, 0), Ok(()));
    }
}
