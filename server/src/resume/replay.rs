//! The events a session sent and the client has not acknowledged, kept so that a resume can
//! replay them: bounded in count and bytes, and given back as acknowledgements arrive.

use std::collections::VecDeque;

use bytes::Bytes;

use crate::resume::refusal::Refusal;

/// Under memory pressure a session keeps at most this many bytes for replay: resume insurance is
/// the first thing the server gives up (see [`crate::memory::budget`]).
pub const PRESSURE_REPLAY_BYTES: u64 = 64 * 1024;

/// Events sent to the client and not yet acknowledged, kept for replay after a resume.
#[derive(Debug)]
pub(crate) struct Replay {
    sent: VecDeque<(u64, Bytes)>,
    last_seq: u64,
    capacity: usize,
    max_bytes: u64,
    bytes: u64,
}

/// Replay slots a session keeps once a burst is acknowledged, until a quiet moment finds the
/// replay empty (see [`Replay::release_if_empty`]): enough for the events a pipelining client
/// has in flight between two of its acknowledgements (a window, and the next one already on
/// its way when the acknowledgement leaves), so that a steady exchange does not give its slots
/// back at each acknowledgement and grow them again for the next window.
const REPLAY_KEEP_SLOTS: usize = 128;

impl Replay {
    /// Keeps at most `capacity` unacknowledged events and `max_bytes` of them (a capacity of 0
    /// keeps none: resume off).
    pub(crate) fn new(capacity: usize, max_bytes: u64) -> Replay {
        Replay {
            sent: VecDeque::new(),
            last_seq: 0,
            capacity,
            max_bytes,
            bytes: 0,
        }
    }

    /// The number the next event pushed gets.
    pub(crate) fn next_seq(&self) -> u64 {
        self.last_seq + 1
    }

    /// Numbers the next event and keeps it for replay (the payload itself, not a second
    /// reference to it), dropping the oldest beyond the limits (under memory pressure, beyond
    /// [`PRESSURE_REPLAY_BYTES`]). Returns its sequence number.
    pub(crate) fn push(&mut self, payload: Bytes, pressure: bool) -> u64 {
        self.last_seq += 1;
        if self.capacity > 0 {
            self.bytes += payload.len() as u64;
            self.sent.push_back((self.last_seq, payload));
            let max_bytes = if pressure {
                self.max_bytes.min(PRESSURE_REPLAY_BYTES)
            } else {
                self.max_bytes
            };
            while self.sent.len() > self.capacity || self.bytes > max_bytes {
                match self.sent.pop_front() {
                    Some((_, dropped)) => self.bytes -= dropped.len() as u64,
                    None => break,
                }
            }
        }
        self.last_seq
    }

    /// Bytes of events kept.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Drops the oldest events until at most `max_bytes` are kept (under memory pressure).
    pub(crate) fn trim(&mut self, max_bytes: u64) {
        while self.bytes > max_bytes {
            match self.sent.pop_front() {
                Some((_, dropped)) => self.bytes -= dropped.len() as u64,
                None => break,
            }
        }
    }

    /// The number of the last event sent (0 before the first).
    pub(crate) fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// The client has every event up to `seq`: they need not be kept.
    pub(crate) fn ack(&mut self, seq: u64) {
        while self.sent.front().is_some_and(|(s, _)| *s <= seq) {
            if let Some((_, acked)) = self.sent.pop_front() {
                self.bytes -= acked.len() as u64;
            }
        }
        self.shrink();
    }

    /// After a burst has been acknowledged, gives back most of the room it needed: a session
    /// that once kept thousands of events does not keep their slots for the rest of its life.
    fn shrink(&mut self) {
        if self.sent.capacity() > REPLAY_KEEP_SLOTS && self.sent.len() * 4 < self.sent.capacity() {
            self.sent
                .shrink_to((self.sent.len() * 2).max(REPLAY_KEEP_SLOTS));
        }
    }

    /// Gives back the slots of a replay that keeps nothing: called at a quiet moment (the
    /// session's timer, or the client's own ping), so a quiet session whose events were all
    /// acknowledged holds no memory for replay, while a busy one keeps its slots between
    /// acknowledgements.
    pub(crate) fn release_if_empty(&mut self) {
        if self.sent.is_empty() && self.sent.capacity() > 0 {
            self.sent = VecDeque::new();
        }
    }

    /// Slots the replay holds, used or not.
    #[cfg(test)]
    pub(crate) fn sent_capacity(&self) -> usize {
        self.sent.capacity()
    }

    /// The events after `last_received`, or why they cannot all be replayed.
    pub(crate) fn after(&self, last_received: u64) -> Result<Vec<(u64, Bytes)>, Refusal> {
        if last_received > self.last_seq {
            return Err(Refusal::SeqGap);
        }
        let oldest_kept = self.sent.front().map_or(self.last_seq + 1, |(s, _)| *s);
        if last_received + 1 < oldest_kept {
            return Err(Refusal::SeqGap);
        }
        Ok(self
            .sent
            .iter()
            .filter(|(s, _)| *s > last_received)
            .cloned()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_keeps_unacknowledged_events_up_to_its_capacity() {
        let mut replay = Replay::new(3, u64::MAX);
        for n in 1..=5u8 {
            assert_eq!(replay.push(Bytes::from(vec![n]), false), u64::from(n));
        }
        // 1 and 2 fell out; 3, 4, 5 are kept.
        assert_eq!(replay.after(1), Err(Refusal::SeqGap));
        let seqs = |r: &Replay, after| {
            r.after(after)
                .map(|v| v.iter().map(|(s, _)| *s).collect::<Vec<_>>())
        };
        assert_eq!(seqs(&replay, 2), Ok(vec![3, 4, 5]));
        assert_eq!(seqs(&replay, 4), Ok(vec![5]));
        assert_eq!(seqs(&replay, 5), Ok(vec![]));
        assert_eq!(replay.after(6), Err(Refusal::SeqGap));
        replay.ack(4);
        assert_eq!(seqs(&replay, 4), Ok(vec![5]));
        assert_eq!(replay.after(3), Err(Refusal::SeqGap));
    }

    #[test]
    fn an_acknowledged_burst_gives_its_room_back() {
        let mut replay = Replay::new(4096, u64::MAX);
        for _ in 0..4000 {
            replay.push(Bytes::from_static(b"event"), false);
        }
        assert!(replay.sent.capacity() >= 4000);
        replay.ack(3995);
        assert_eq!(replay.sent.len(), 5);
        assert!(
            replay.sent.capacity() <= REPLAY_KEEP_SLOTS,
            "{} slots kept for 5 events",
            replay.sent.capacity()
        );
    }

    /// A client pipelining a window of inputs acknowledges the events of each window with its
    /// next one: the replay keeps the slots of a window between acknowledgements instead of
    /// giving them back at each one and growing them again (a reallocation and a copy per step).
    #[test]
    fn a_steady_window_keeps_its_slots_between_acknowledgements() {
        let mut replay = Replay::new(4096, u64::MAX);
        let mut slots = None;
        for _ in 0..4 {
            for _ in 0..48 {
                replay.push(Bytes::from_static(b"event"), false);
            }
            let grown = replay.sent_capacity();
            assert!(grown >= 48);
            assert_eq!(
                *slots.get_or_insert(grown),
                grown,
                "no regrowth for the same window"
            );
            replay.ack(replay.last_seq());
            assert_eq!(replay.sent_capacity(), grown, "the window's slots kept");
        }
    }

    /// The same with part of each window still in flight when its acknowledgement arrives, so
    /// that the events kept peak above one window.
    #[test]
    fn a_window_with_events_in_flight_at_each_acknowledgement_keeps_its_slots() {
        let mut replay = Replay::new(4096, u64::MAX);
        let mut slots = None;
        for window in 0..5 {
            for _ in 0..60 {
                replay.push(Bytes::from_static(b"event"), false);
            }
            replay.ack(replay.last_seq() - 10);
            if window > 0 {
                // The first window never held more than 60; each later one peaks at 70.
                let kept = replay.sent_capacity();
                assert!(kept >= 70);
                assert_eq!(
                    *slots.get_or_insert(kept),
                    kept,
                    "no regrowth between windows"
                );
            }
        }
    }

    #[test]
    fn a_replay_with_everything_acknowledged_gives_its_slots_back_when_asked() {
        let mut replay = Replay::new(64, u64::MAX);
        replay.push(Bytes::from_static(b"joined"), false);
        replay.push(Bytes::from_static(b"state"), false);
        replay.release_if_empty();
        assert_eq!(
            replay.after(0).map(|v| v.len()),
            Ok(2),
            "unacknowledged: kept"
        );
        replay.ack(2);
        assert!(
            replay.sent.capacity() > 0,
            "slots kept between acknowledgements"
        );
        replay.release_if_empty();
        assert_eq!(replay.sent.capacity(), 0);
        // Numbering goes on where it was.
        assert_eq!(replay.push(Bytes::from_static(b"later"), false), 3);
        assert_eq!(replay.after(2).map(|v| v.len()), Ok(1));
    }

    #[test]
    fn replay_keeps_at_most_its_bytes() {
        let mut replay = Replay::new(100, 10);
        for n in 1..=4u8 {
            replay.push(Bytes::from(vec![n; 4]), false);
        }
        // 16 bytes were pushed; only the newest two events (8 bytes) fit in 10.
        assert_eq!(replay.bytes(), 8);
        assert_eq!(replay.after(2).map(|v| v.len()), Ok(2));
        assert_eq!(replay.after(1), Err(Refusal::SeqGap));
        replay.ack(3);
        assert_eq!(replay.bytes(), 4);
    }

    #[test]
    fn under_pressure_replay_keeps_little() {
        let mut replay = Replay::new(1000, 1 << 20);
        let event = Bytes::from(vec![0u8; 16 * 1024]);
        for _ in 0..32 {
            replay.push(event.clone(), false);
        }
        assert_eq!(replay.bytes(), 512 * 1024);
        replay.push(event, true);
        assert_eq!(replay.bytes(), PRESSURE_REPLAY_BYTES);
    }

    #[test]
    fn replay_without_capacity_only_counts() {
        let mut replay = Replay::new(0, u64::MAX);
        assert_eq!(replay.push(Bytes::from_static(b"x"), false), 1);
        assert_eq!(replay.push(Bytes::from_static(b"y"), false), 2);
        assert_eq!(replay.after(2), Ok(vec![]));
        assert_eq!(replay.after(1), Err(Refusal::SeqGap));
    }
}
