//! A bounded record of the most recent closes and whose they were, so that a client can read
//! back how its own players' sessions ended (`GET /closes?player_prefix=...` on the admin port)
//! without a metric label per player. A load generator whose player ids share a prefix of its
//! own reconciles exactly this way while other traffic runs on the same server.
//!
//! Every close the reaper counts in `gameserver_sessions_closed_total` is recorded here too,
//! numbered from 1, with the player id the client gave in its `Hello` (none when it never sent
//! one). The record keeps the last [`CLOSES_KEPT`] closes; a reader that asks from a number on
//! learns whether any close from there on has already been dropped.
//!
//! The newest [`DETAILS_KEPT`] closes also keep what tells a bad network from a crashed client
//! (`GET /closes/recent?player_prefix=...`): the kernel's view of the connection at the close
//! decision (`TCP_INFO`), the last heartbeat round trips, and how long before the close the
//! session last read and wrote. A close's detail costs about [`DETAIL_BYTES`].

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::ops::Bound;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::close::CloseReason;
use crate::session::end::{RTT_SAMPLES, RTT_UNIT};
use crate::transport::kernel::TcpView;
use crate::transport::labels::TransportName;

/// Closes kept, at most: about 32 bytes each in the record and 40 in the index by player, plus
/// the player id (which a live session's record shares with the session).
pub const CLOSES_KEPT: usize = 65_536;

/// Closes whose detail is kept: the newest ones. [`DETAIL_BYTES`] each, 3.4 MiB in all, plus
/// their error texts (at most [`MAX_DETAIL_TEXT`] bytes each).
pub const DETAILS_KEPT: usize = 16_384;

/// What one close's detail costs in memory, its allocation's header included (the error text a
/// close carries, at most [`MAX_DETAIL_TEXT`] bytes, comes on top).
pub const DETAIL_BYTES: usize = std::mem::size_of::<Detail>() + 16;

/// Longest error text kept with a close's detail.
pub const MAX_DETAIL_TEXT: usize = 160;

/// Most closes one `/closes/recent` answer lists.
pub const MAX_RECENT: usize = 500;

/// Readings counted at once; further readers wait their turn. A reading walks at most the
/// closes of the players it asks about, a chunk at a time.
pub const CONCURRENT_READERS: usize = 2;

/// Index entries a reading walks per hold of the lock: the reaper, which records every close,
/// waits for at most one chunk.
const CHUNK: usize = 2048;

/// Closes per block of the running counts by reason, which answer a reading of every player
/// without walking the record.
const BLOCK: u64 = 1024;

const REASONS: usize = CloseReason::ALL.len();

/// The record; shared by the reaper, which writes, and the admin listener, which reads.
#[derive(Debug)]
pub struct Closes {
    inner: Mutex<Inner>,
    capacity: usize,
    readers: tokio::sync::Semaphore,
}

#[derive(Debug)]
struct Inner {
    /// Oldest first; numbers are consecutive.
    entries: VecDeque<Entry>,
    /// (player id, number) of every kept close with a player id: the closes of the players
    /// whose id starts with a prefix are a range of it.
    by_player: BTreeSet<(Arc<str>, u64)>,
    /// The number the next close gets.
    next: u64,
    /// The highest number dropped to make room (0: none yet).
    dropped_upto: u64,
    /// Closes recorded so far, by reason (index into [`CloseReason::ALL`]).
    totals: [u64; REASONS],
    /// Closes dropped from the record so far, by reason.
    dropped: [u64; REASONS],
    /// For each block of kept closes: its first number and the totals before it.
    marks: VecDeque<(u64, [u64; REASONS])>,
}

#[derive(Debug)]
struct Entry {
    player: Option<Arc<str>>,
    reason: CloseReason,
    /// Kept for the newest [`DETAILS_KEPT`] closes.
    detail: Option<Box<Detail>>,
}

/// What the record keeps of one close beyond its player and reason; serialized as
/// `/closes/recent` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Detail {
    /// Wall-clock time of the close, milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    /// The session's id.
    pub session: u64,
    /// Its peer.
    pub peer: SocketAddr,
    /// What it ran over (`tcp`, `tls`, `websocket` or `wss`).
    #[serde(serialize_with = "transport_name")]
    pub transport: TransportName,
    /// The error or violation, as the close's log line gives it (cut at [`MAX_DETAIL_TEXT`]).
    #[serde(rename = "detail")]
    pub text: Option<Box<str>>,
    /// From accept to the close decision.
    pub lifetime_ms: u64,
    /// From the last frame read to the close decision.
    pub since_last_read_ms: u64,
    /// From the last write to the socket to the close decision (none: nothing written).
    pub since_last_write_ms: Option<u64>,
    /// The last heartbeat round trips, in [`RTT_UNIT`]s, oldest first (0: none); shown as
    /// `rtts_ms`, the measured ones in milliseconds.
    #[serde(rename = "rtts_ms", serialize_with = "rtts_ms")]
    pub rtts: [u16; RTT_SAMPLES],
    /// The kernel's view of the connection at the close decision.
    pub kernel: Option<TcpView>,
    /// Frames read.
    pub frames_in: u64,
    /// Frames written.
    pub frames_out: u64,
    /// Bytes read.
    pub bytes_in: u64,
    /// Bytes written.
    pub bytes_out: u64,
    /// Parked for resume rather than ended.
    pub parked: bool,
}

fn transport_name<S: serde::Serializer>(
    name: &TransportName,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(name.as_str())
}

fn rtts_ms<S: serde::Serializer>(
    rtts: &[u16; RTT_SAMPLES],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(
        rtts.iter()
            .filter(|units| **units > 0)
            .map(|units| f64::from(*units) * RTT_UNIT.as_secs_f64() * 1000.0),
    )
}

/// One close as `/closes/recent` lists it: its number, player and reason, and its detail.
#[derive(Debug, Clone, Serialize)]
pub struct CloseRecord {
    /// Its number in the record.
    pub seq: u64,
    /// The player id, if the session had one.
    pub player: Option<String>,
    /// The close reason (a label of `gameserver_sessions_closed_total`).
    pub reason: &'static str,
    /// The rest.
    #[serde(flatten)]
    pub detail: Detail,
}

/// The answer of `/closes/recent`: the newest closes first.
#[derive(Debug, Clone, Serialize)]
pub struct RecentCloses {
    /// The prefix asked for.
    pub player_prefix: String,
    /// Closes whose detail the record keeps, at most.
    pub details_kept: usize,
    /// What one close's detail costs in memory, bytes (its error text on top).
    pub detail_bytes: usize,
    /// The closes, newest first; those older than the kept details are left out.
    pub closes: Vec<CloseRecord>,
}

/// `text` cut at [`MAX_DETAIL_TEXT`] bytes, on a character boundary.
pub fn clip(text: &str) -> Box<str> {
    let mut end = text.len().min(MAX_DETAIL_TEXT);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Box::from(&text[..end])
}

fn index_of(reason: CloseReason) -> usize {
    CloseReason::ALL
        .iter()
        .position(|r| *r == reason)
        .unwrap_or(0)
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

impl Inner {
    fn first(&self) -> u64 {
        self.next - self.entries.len() as u64
    }

    fn reason_of(&self, seq: u64) -> Option<CloseReason> {
        let at = usize::try_from(seq.checked_sub(self.first())?).ok()?;
        self.entries.get(at).map(|entry| entry.reason)
    }

    /// Counts by reason of the kept closes numbered below `seq`: from the running counts at
    /// the latest block that starts among the kept closes at or before `seq`, then a walk of at
    /// most one block.
    fn kept_below(&self, seq: u64) -> [u64; REASONS] {
        let first = self.first();
        let seq = seq.clamp(first, self.next);
        let at = self.marks.partition_point(|(start, _)| *start <= seq);
        let mark = at
            .checked_sub(1)
            .and_then(|i| self.marks.get(i))
            .filter(|(start, _)| *start >= first);
        let (mut counts, from) = match mark {
            Some((start, before)) => {
                // Every close before the block is either dropped or kept.
                let mut kept = [0u64; REASONS];
                for (kept, (before, dropped)) in
                    kept.iter_mut().zip(before.iter().zip(self.dropped))
                {
                    *kept = before - dropped;
                }
                (kept, *start)
            }
            None => ([0u64; REASONS], first),
        };
        for n in from..seq {
            if let Some(reason) = self.reason_of(n) {
                counts[index_of(reason)] += 1;
            }
        }
        counts
    }
}

impl Closes {
    /// An empty record of at most `capacity` closes.
    pub fn new(capacity: usize) -> Arc<Closes> {
        Arc::new(Closes {
            inner: Mutex::new(Inner {
                entries: VecDeque::new(),
                by_player: BTreeSet::new(),
                next: 1,
                dropped_upto: 0,
                totals: [0; REASONS],
                dropped: [0; REASONS],
                marks: VecDeque::new(),
            }),
            capacity: capacity.max(1),
            readers: tokio::sync::Semaphore::new(CONCURRENT_READERS),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Nothing under the lock can leave the record half-written.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records one close without detail.
    #[cfg(test)]
    pub fn record(&self, player: Option<Arc<str>>, reason: CloseReason) {
        self.record_with(player, reason, None);
    }

    /// Records one close and its detail.
    pub fn record_with(
        &self,
        player: Option<Arc<str>>,
        reason: CloseReason,
        detail: Option<Box<Detail>>,
    ) {
        let mut inner = self.lock();
        if inner.entries.len() == self.capacity {
            let first = inner.first();
            if let Some(old) = inner.entries.pop_front() {
                inner.dropped_upto = first;
                inner.dropped[index_of(old.reason)] += 1;
                if let Some(player) = old.player {
                    inner.by_player.remove(&(player, first));
                }
                while inner
                    .marks
                    .front()
                    .is_some_and(|(start, _)| *start <= first)
                {
                    inner.marks.pop_front();
                }
            }
        }
        let seq = inner.next;
        if (seq - 1) % BLOCK == 0 {
            let totals = inner.totals;
            inner.marks.push_back((seq, totals));
        }
        inner.next += 1;
        inner.totals[index_of(reason)] += 1;
        if let Some(player) = &player {
            inner.by_player.insert((player.clone(), seq));
        }
        inner.entries.push_back(Entry {
            player,
            reason,
            detail,
        });
        // The detail that just fell out of the window is freed.
        if let Some(old) = inner
            .entries
            .len()
            .checked_sub(DETAILS_KEPT + 1)
            .and_then(|at| inner.entries.get_mut(at))
        {
            old.detail = None;
        }
    }

    /// The newest closes (at most `limit`, at most [`MAX_RECENT`]) of players whose id starts
    /// with `prefix` (every close for ""), newest first, with their detail; closes whose detail
    /// is no longer kept are left out.
    pub async fn recent(&self, prefix: &str, limit: usize) -> RecentCloses {
        let _turn = self.readers.acquire().await;
        let limit = limit.clamp(1, MAX_RECENT);
        let inner = self.lock();
        let first = inner.first();
        let oldest_detail = inner.next.saturating_sub(DETAILS_KEPT as u64).max(first);
        let seqs: Vec<u64> = if prefix.is_empty() {
            (oldest_detail..inner.next).rev().take(limit).collect()
        } else {
            let mut seqs: Vec<u64> = inner
                .by_player
                .range((Arc::<str>::from(prefix), 0)..)
                .take_while(|(player, _)| player.starts_with(prefix))
                .map(|(_, seq)| *seq)
                .filter(|seq| *seq >= oldest_detail)
                .collect();
            seqs.sort_unstable_by(|a, b| b.cmp(a));
            seqs.truncate(limit);
            seqs
        };
        let closes = seqs
            .into_iter()
            .filter_map(|seq| {
                let entry = inner.entries.get(usize::try_from(seq - first).ok()?)?;
                Some(CloseRecord {
                    seq,
                    player: entry.player.as_deref().map(str::to_owned),
                    reason: entry.reason.as_str(),
                    detail: (**entry.detail.as_ref()?).clone(),
                })
            })
            .collect();
        RecentCloses {
            player_prefix: prefix.to_owned(),
            details_kept: DETAILS_KEPT,
            detail_bytes: DETAIL_BYTES,
            closes,
        }
    }

    /// Counts, by reason, the closes numbered `since` or later of players whose id starts with
    /// `prefix`. At most [`CONCURRENT_READERS`] count at once. Every close is answered from the
    /// running counts, without walking the record; a prefix walks the closes of its players a
    /// chunk at a time, so that recording closes never waits long for a reading.
    pub async fn count(&self, prefix: &str, since: u64) -> CloseCounts {
        // The semaphore is never closed.
        let _turn = self.readers.acquire().await;
        let mut counts = [0u64; REASONS];
        let next = {
            let inner = self.lock();
            let next = inner.next;
            if prefix.is_empty() {
                let below = inner.kept_below(since);
                for (i, count) in counts.iter_mut().enumerate() {
                    *count = inner.totals[i] - inner.dropped[i] - below[i];
                }
            }
            next
        };
        if !prefix.is_empty() {
            let mut from = Bound::Included((Arc::<str>::from(prefix), 0));
            loop {
                let last = {
                    let inner = self.lock();
                    let mut last = None;
                    for (player, seq) in inner
                        .by_player
                        .range((from.clone(), Bound::Unbounded))
                        .take(CHUNK)
                    {
                        if !player.starts_with(prefix) {
                            break;
                        }
                        if *seq >= since
                            && *seq < next
                            && let Some(reason) = inner.reason_of(*seq)
                        {
                            counts[index_of(reason)] += 1;
                        }
                        last = Some((player.clone(), *seq));
                    }
                    last
                };
                let Some(last) = last else { break };
                from = Bound::Excluded(last);
                tokio::task::yield_now().await;
            }
        }
        let dropped_upto = self.lock().dropped_upto;
        let mut reasons = BTreeMap::new();
        let mut matched = 0;
        for (reason, count) in CloseReason::ALL.iter().zip(counts) {
            if count > 0 {
                matched += count;
                reasons.insert(reason.as_str().to_owned(), count);
            }
        }
        CloseCounts {
            player_prefix: prefix.to_owned(),
            since,
            next,
            complete: dropped_upto < since.max(1),
            capacity: self.capacity,
            matched,
            reasons,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> Option<Arc<str>> {
        Some(Arc::from(s))
    }

    #[tokio::test]
    async fn counts_only_the_prefix_and_the_closes_since() {
        let closes = Closes::new(100);
        closes.record(id("run1-a"), CloseReason::ClientQuit);
        let mark = closes.count("run1-", 0).await.next;
        assert_eq!(mark, 2);
        closes.record(id("run1-b"), CloseReason::PeerReset);
        closes.record(id("run2-a"), CloseReason::PeerReset);
        closes.record(None, CloseReason::HandshakeTimeout);
        closes.record(id("run1-c"), CloseReason::PeerReset);

        let mine = closes.count("run1-", mark).await;
        assert_eq!(mine.matched, 2);
        assert_eq!(mine.reasons.get("peer_reset"), Some(&2));
        assert_eq!(mine.reasons.get("client_quit"), None);
        assert!(mine.complete);
        assert_eq!(mine.next, 6);

        let all = closes.count("", 0).await;
        assert_eq!(all.matched, 5);
        assert_eq!(all.reasons.get("handshake_timeout"), Some(&1));
    }

    fn detail(session: u64) -> Option<Box<Detail>> {
        Some(Box::new(Detail {
            at_unix_ms: 1,
            session,
            peer: SocketAddr::from(([127, 0, 0, 1], 4000)),
            transport: TransportName::Tcp,
            text: Some(clip(&"x".repeat(1000))),
            lifetime_ms: 10,
            since_last_read_ms: 5,
            since_last_write_ms: None,
            rtts: [0, 0, 15, 25],
            kernel: None,
            frames_in: 1,
            frames_out: 2,
            bytes_in: 3,
            bytes_out: 4,
            parked: false,
        }))
    }

    #[tokio::test]
    async fn recent_closes_list_a_players_newest_first_with_their_detail() {
        let closes = Closes::new(DETAILS_KEPT + 100);
        closes.record_with(id("ann"), CloseReason::PeerReset, detail(1));
        closes.record_with(id("bob"), CloseReason::IdleTimeout, detail(2));
        closes.record_with(id("ann"), CloseReason::ClientQuit, detail(3));
        let ann = closes.recent("ann", 10).await;
        let sessions: Vec<u64> = ann.closes.iter().map(|c| c.detail.session).collect();
        assert_eq!(sessions, vec![3, 1], "newest first");
        let shown = serde_json::to_value(&ann.closes[1]).expect("json");
        assert_eq!(shown["player"], "ann");
        assert_eq!(shown["reason"], "peer_reset");
        assert_eq!(shown["transport"], "tcp");
        assert_eq!(shown["peer"], "127.0.0.1:4000");
        assert_eq!(shown["rtts_ms"], serde_json::json!([1.5, 2.5]));
        assert_eq!(
            shown["detail"].as_str().map(str::len),
            Some(MAX_DETAIL_TEXT)
        );
        assert_eq!(closes.recent("", 2).await.closes.len(), 2);
        // Past DETAILS_KEPT newer closes, a close keeps its count but not its detail.
        for n in 0..DETAILS_KEPT as u64 {
            closes.record_with(id("zed"), CloseReason::ClientQuit, detail(10 + n));
        }
        assert!(closes.recent("ann", 10).await.closes.is_empty());
        assert_eq!(closes.count("ann", 0).await.matched, 2);
        let inner = closes.lock();
        let with_detail = inner.entries.iter().filter(|e| e.detail.is_some()).count();
        assert_eq!(with_detail, DETAILS_KEPT);
    }

    #[tokio::test]
    async fn a_reader_learns_when_its_closes_were_dropped() {
        let closes = Closes::new(3);
        let mark = closes.count("p", 0).await.next;
        for _ in 0..3 {
            closes.record(id("p1"), CloseReason::ClientQuit);
        }
        assert!(closes.count("p", mark).await.complete);
        closes.record(id("p1"), CloseReason::PeerEof);
        let counts = closes.count("p", mark).await;
        assert!(!counts.complete, "close 1 was dropped");
        assert_eq!(counts.matched, 3);
        // Asking only from the oldest kept close on is complete again.
        assert!(closes.count("p", 2).await.complete);
    }

    /// The running counts and the index answer exactly what a walk of the whole record would,
    /// for every prefix and cursor, across drops and block boundaries.
    #[tokio::test]
    async fn every_reading_matches_a_walk_of_the_record() {
        let capacity = 3000;
        let closes = Closes::new(capacity);
        let mut all: Vec<(u64, Option<Arc<str>>, CloseReason)> = Vec::new();
        let players = ["ann-1", "ann-2", "bob-1", "an", "b"];
        let mut state = 7u64;
        for seq in 1..=7500u64 {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let pick = (state >> 33) as usize;
            let player = (pick % 7 < 5).then(|| Arc::<str>::from(players[pick % 5]));
            let reason = CloseReason::ALL[pick % CloseReason::ALL.len()];
            closes.record(player.clone(), reason);
            all.push((seq, player, reason));
            if seq % 1499 == 0 || seq == 7500 {
                let kept = &all[all.len().saturating_sub(capacity)..];
                for prefix in ["", "ann", "ann-1", "b", "zzz", "an"] {
                    for since in [0, 1, seq / 3, seq.saturating_sub(2000), seq - 5, seq + 1] {
                        let mut want = BTreeMap::<String, u64>::new();
                        for (n, player, reason) in kept {
                            let theirs = match player {
                                Some(p) => p.starts_with(prefix),
                                None => prefix.is_empty(),
                            };
                            if *n >= since && theirs {
                                *want.entry(reason.as_str().to_owned()).or_default() += 1;
                            }
                        }
                        let got = closes.count(prefix, since).await;
                        assert_eq!(
                            got.reasons, want,
                            "prefix {prefix:?} since {since} at {seq}"
                        );
                        assert_eq!(got.matched, want.values().sum::<u64>());
                    }
                }
            }
        }
    }
}
