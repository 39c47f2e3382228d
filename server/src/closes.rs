//! A bounded record of the most recent closes and whose they were, so that a client can read
//! back how its own players' sessions ended (`GET /closes?player_prefix=...` on the admin port)
//! without a metric label per player. A load generator whose player ids share a prefix of its
//! own reconciles exactly this way while other traffic runs on the same server.
//!
//! Every close the reaper counts in `gameserver_sessions_closed_total` is recorded here too,
//! numbered from 1, with the player id the client gave in its `Hello` (none when it never sent
//! one). The record keeps the last [`CLOSES_KEPT`] closes; a reader that asks from a number on
//! learns whether any close from there on has already been dropped.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use crate::close::CloseReason;

/// Closes kept, at most: about 32 bytes each plus the player id (which a live session's record
/// shares with the session).
pub const CLOSES_KEPT: usize = 65_536;

/// The record; shared by the reaper, which writes, and the admin listener, which reads.
#[derive(Debug)]
pub struct Closes {
    inner: Mutex<Inner>,
    capacity: usize,
}

#[derive(Debug)]
struct Inner {
    entries: VecDeque<Entry>,
    /// The number the next close gets.
    next: u64,
    /// The highest number dropped to make room (0: none yet).
    dropped_upto: u64,
}

#[derive(Debug)]
struct Entry {
    seq: u64,
    player: Option<Arc<str>>,
    reason: CloseReason,
}

/// How the closes of a set of players ended, as `/closes` answers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CloseCounts {
    /// The prefix asked for ("" for every close, those without a player id included).
    pub player_prefix: String,
    /// Closes numbered from this one on are counted.
    pub since: u64,
    /// The number the next close will get: a reader that passes it as `since` later counts
    /// exactly the closes after this answer.
    pub next: u64,
    /// False when some close numbered `since` or later was dropped from the record: the counts
    /// then miss it.
    pub complete: bool,
    /// The most closes the record keeps.
    pub capacity: usize,
    /// Closes counted.
    pub matched: u64,
    /// Closes counted, by reason (the labels of `gameserver_sessions_closed_total`).
    pub reasons: BTreeMap<String, u64>,
}

impl Closes {
    /// An empty record of at most `capacity` closes.
    pub fn new(capacity: usize) -> Arc<Closes> {
        Arc::new(Closes {
            inner: Mutex::new(Inner {
                entries: VecDeque::new(),
                next: 1,
                dropped_upto: 0,
            }),
            capacity: capacity.max(1),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Nothing under the lock can leave the record half-written.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records one close.
    pub fn record(&self, player: Option<Arc<str>>, reason: CloseReason) {
        let mut inner = self.lock();
        if inner.entries.len() == self.capacity
            && let Some(old) = inner.entries.pop_front()
        {
            inner.dropped_upto = old.seq;
        }
        let seq = inner.next;
        inner.next += 1;
        inner.entries.push_back(Entry {
            seq,
            player,
            reason,
        });
    }

    /// Counts, by reason, the closes numbered `since` or later of players whose id starts with
    /// `prefix`.
    pub fn count(&self, prefix: &str, since: u64) -> CloseCounts {
        let mut reasons = BTreeMap::<&'static str, u64>::new();
        let mut matched = 0;
        let inner = self.lock();
        // Numbers are consecutive: the entries from `since` on are a suffix.
        let first = inner.entries.front().map_or(inner.next, |e| e.seq);
        let skip = usize::try_from(since.saturating_sub(first)).unwrap_or(usize::MAX);
        for entry in inner.entries.iter().skip(skip) {
            let theirs = match &entry.player {
                Some(player) => player.starts_with(prefix),
                None => prefix.is_empty(),
            };
            if theirs {
                matched += 1;
                *reasons.entry(entry.reason.as_str()).or_default() += 1;
            }
        }
        CloseCounts {
            player_prefix: prefix.to_owned(),
            since,
            next: inner.next,
            complete: inner.dropped_upto < since.max(1),
            capacity: self.capacity,
            matched,
            reasons: reasons
                .into_iter()
                .map(|(reason, n)| (reason.to_owned(), n))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> Option<Arc<str>> {
        Some(Arc::from(s))
    }

    #[test]
    fn counts_only_the_prefix_and_the_closes_since() {
        let closes = Closes::new(100);
        closes.record(id("run1-a"), CloseReason::ClientQuit);
        let mark = closes.count("run1-", 0).next;
        assert_eq!(mark, 2);
        closes.record(id("run1-b"), CloseReason::PeerReset);
        closes.record(id("run2-a"), CloseReason::PeerReset);
        closes.record(None, CloseReason::HandshakeTimeout);
        closes.record(id("run1-c"), CloseReason::PeerReset);

        let mine = closes.count("run1-", mark);
        assert_eq!(mine.matched, 2);
        assert_eq!(mine.reasons.get("peer_reset"), Some(&2));
        assert_eq!(mine.reasons.get("client_quit"), None);
        assert!(mine.complete);
        assert_eq!(mine.next, 6);

        let all = closes.count("", 0);
        assert_eq!(all.matched, 5);
        assert_eq!(all.reasons.get("handshake_timeout"), Some(&1));
    }

    #[test]
    fn a_reader_learns_when_its_closes_were_dropped() {
        let closes = Closes::new(3);
        let mark = closes.count("p", 0).next;
        for _ in 0..3 {
            closes.record(id("p1"), CloseReason::ClientQuit);
        }
        assert!(closes.count("p", mark).complete);
        closes.record(id("p1"), CloseReason::PeerEof);
        let counts = closes.count("p", mark);
        assert!(!counts.complete, "close 1 was dropped");
        assert_eq!(counts.matched, 3);
        // Asking only from the oldest kept close on is complete again.
        assert!(closes.count("p", 2).complete);
    }
}
