//! Session resume: a player whose connection breaks abnormally is parked for
//! `session.resume_grace` instead of leaving. Events keep queueing for the player; a `Hello`
//! carrying the session's resume token and the last event the client received takes the session
//! over on a new connection, replays every event after that one, and continues.
//!
//! Tokens are 128 random bits, single use, rotated on every resume and bound to the player id.
//! A token that can no longer resume (used, expired, overflowed, ended) leaves a tombstone for a
//! while, so that the refusal says why.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

use ipnet::IpNet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use protocol::ResumeToken;
use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;

use crate::memory::budget::Totals;
use crate::ops::metrics::{Eviction, Metrics};
use crate::player::registry::Player;
use crate::session::close::CloseReason;

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

/// Why a resume was refused; the `reason` label of `gameserver_resume_rejected_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The token was never issued by this server process.
    Unknown,
    /// The token was already used to resume.
    Reused,
    /// The grace window passed before the player came back.
    Expired,
    /// Events for the parked player overflowed the queue while it was away.
    BufferOverflow,
    /// The session ended for good (the player quit, was kicked, or logged in afresh).
    Ended,
    /// The token belongs to another player id.
    WrongPlayer,
    /// The client's last event is older than what the server kept, or newer than what it sent.
    SeqGap,
    /// The session's previous connection did not hand it over in time; retrying may work.
    NotReady,
    /// The parked session was ended early to stay within a memory limit.
    Evicted,
}

impl Refusal {
    /// Every refusal, for initialising the metric labels.
    pub const ALL: [Refusal; 9] = [
        Refusal::Unknown,
        Refusal::Reused,
        Refusal::Expired,
        Refusal::BufferOverflow,
        Refusal::Ended,
        Refusal::WrongPlayer,
        Refusal::SeqGap,
        Refusal::NotReady,
        Refusal::Evicted,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Unknown => "unknown",
            Refusal::Reused => "reused",
            Refusal::Expired => "expired",
            Refusal::BufferOverflow => "buffer_overflow",
            Refusal::Ended => "ended",
            Refusal::WrongPlayer => "wrong_player",
            Refusal::SeqGap => "seq_gap",
            Refusal::NotReady => "not_ready",
            Refusal::Evicted => "evicted",
        }
    }

    /// The `Bye{resume_rejected}` text: what the client should know.
    pub fn explain(self) -> &'static str {
        match self {
            Refusal::Unknown => "unknown resume token; start a new session",
            Refusal::Reused => "this resume token was already used; start a new session",
            Refusal::Expired => "the session expired before you came back; start a new session",
            Refusal::BufferOverflow => {
                "too many events piled up while you were away; the session ended; start a new session"
            }
            Refusal::Ended => "the session already ended; start a new session",
            Refusal::WrongPlayer => "this resume token belongs to another player",
            Refusal::SeqGap => {
                "the server no longer holds every event after your last one; start a new session"
            }
            Refusal::NotReady => {
                "the session's previous connection is still closing; retry the resume"
            }
            Refusal::Evicted => {
                "the server needed the room or the memory and ended your parked session; start a \
                 new session"
            }
        }
    }
}

/// Replay slots a session keeps however quiet it is.
const REPLAY_KEEP_SLOTS: usize = 16;

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

    /// Numbers the next event and keeps it for replay, dropping the oldest beyond the limits
    /// (under memory pressure, beyond [`PRESSURE_REPLAY_BYTES`]). Returns its sequence number.
    pub(crate) fn push(&mut self, payload: &Bytes, pressure: bool) -> u64 {
        self.last_seq += 1;
        if self.capacity > 0 {
            self.bytes += payload.len() as u64;
            self.sent.push_back((self.last_seq, payload.clone()));
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

/// What a parked session carries over to the connection that resumes it.
#[derive(Debug)]
pub(crate) struct Carried {
    /// The player, as the game knows it.
    pub player: Player,
    /// Events sent and not yet acknowledged.
    pub replay: Replay,
    /// The highest input applied.
    pub last_input_seq: u64,
}

#[derive(Debug)]
struct Parked {
    carried: Carried,
    reason: CloseReason,
    /// Position in the parking order: lower parked earlier.
    order: u64,
    /// The source (see [`crate::transport::admission`]) the session's connection came from, when limited.
    source: Option<IpNet>,
    _supervisor: oneshot::Sender<()>,
}

#[derive(Debug)]
struct Live {
    player_id: Arc<str>,
    player: Player,
}

#[derive(Debug, Default)]
struct Inner {
    live: HashMap<ResumeToken, Live>,
    parked: HashMap<ResumeToken, Parked>,
    parked_by_player: HashMap<Arc<str>, ResumeToken>,
    claimed: HashSet<ResumeToken>,
    tombstones: HashMap<ResumeToken, (Refusal, Instant)>,
    next_purge: usize,
    /// Parked tokens, oldest first.
    order: BTreeMap<u64, ResumeToken>,
    next_order: u64,
    /// The parking orders of each limited source's parked sessions.
    by_source: HashMap<IpNet, BTreeSet<u64>>,
}

impl Inner {
    fn bury(&mut self, token: ResumeToken, why: Refusal, keep: Duration) {
        let now = Instant::now();
        if self.tombstones.len() >= self.next_purge {
            self.tombstones
                .retain(|_, (_, at)| now.saturating_duration_since(*at) < keep);
            self.next_purge = (2 * self.tombstones.len()).max(1024);
        }
        self.tombstones.insert(token, (why, now));
    }

    fn unpark(&mut self, token: &ResumeToken) -> Option<Parked> {
        let parked = self.parked.remove(token)?;
        self.order.remove(&parked.order);
        if let Some(source) = parked.source
            && let Some(orders) = self.by_source.get_mut(&source)
        {
            orders.remove(&parked.order);
            if orders.is_empty() {
                self.by_source.remove(&source);
            }
        }
        let player_id = parked.carried.player.player_id();
        if self.parked_by_player.get(player_id) == Some(token) {
            self.parked_by_player.remove(player_id);
        }
        Some(parked)
    }
}

/// The resume tokens of live sessions, the parked sessions, and the tombstones.
pub(crate) struct Parking {
    inner: Mutex<Inner>,
    parked_signal: Notify,
    grace: Duration,
    limits: ParkingLimits,
    metrics: Metrics,
    throttle: crate::ops::logging::Throttle,
}

/// How many sessions, and how many bytes, the parking lot holds at most.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ParkingLimits {
    /// `session.max_parked`.
    pub max_parked: usize,
    /// `session.max_parked_bytes`.
    pub max_bytes: u64,
    /// Most sessions one source may have parked (`server.max_sessions_per_source`; 0: no
    /// limit): as many as it may hold live, so that a source cannot hold rooms (and memory)
    /// through parked sessions beyond what it may hold through live ones.
    pub per_source: usize,
}

impl std::fmt::Debug for Parking {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parking")
            .field("grace", &self.grace)
            .finish_non_exhaustive()
    }
}

/// How long a resume waits for a session's still-live connection to hand it over.
const HANDOVER_WAIT: Duration = Duration::from_secs(2);

/// How long a tombstone explains a refusal: past any reconnect loop of a client that was parked,
/// but short enough that a server churning through many sessions does not accumulate them.
fn tombstone_life(grace: Duration) -> Duration {
    (grace * 2).max(Duration::from_secs(60))
}

impl Parking {
    pub(crate) fn new(
        grace: Duration,
        limits: ParkingLimits,
        metrics: Metrics,
        throttle: crate::ops::logging::Throttle,
    ) -> Arc<Parking> {
        Arc::new(Parking {
            inner: Mutex::new(Inner::default()),
            parked_signal: Notify::new(),
            grace,
            limits,
            metrics,
            throttle,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Resume is on (a grace window above zero).
    pub(crate) fn enabled(&self) -> bool {
        !self.grace.is_zero()
    }

    /// A fresh token for a session that just completed its handshake.
    pub(crate) fn issue(&self, player: &Player) -> ResumeToken {
        let token = ResumeToken(rand::random());
        self.lock().live.insert(
            token,
            Live {
                player_id: Arc::from(player.player_id()),
                player: player.clone(),
            },
        );
        token
    }

    /// True when a resuming connection claimed this live session: it must park, whatever ended it.
    pub(crate) fn is_claimed(&self, token: &ResumeToken) -> bool {
        self.lock().claimed.contains(token)
    }

    /// The session ended for good: its token can no longer resume.
    pub(crate) fn retire(&self, token: ResumeToken) {
        let mut inner = self.lock();
        inner.live.remove(&token);
        inner.claimed.remove(&token);
        inner.bury(token, Refusal::Ended, tombstone_life(self.grace));
    }

    /// Parks a session whose connection broke. Its room hears the player disconnected; the
    /// player leaves for good if nobody resumes within the grace window, or if its queue
    /// overflows or it is kicked meanwhile.
    pub(crate) fn park(
        self: &Arc<Self>,
        token: ResumeToken,
        carried: Carried,
        reason: CloseReason,
        source: Option<IpNet>,
    ) {
        let player = carried.player.clone();
        player.footprint().set_held(carried.replay.bytes(), 0);
        player.parked(reason);
        let (stop, stopped) = oneshot::channel();
        // One critical section: make room, reset the close request (a resume's `Replaced`
        // request is made under this lock too, so it lands before or after, never between),
        // and park.
        let evicted = {
            let mut inner = self.lock();
            let mut evicted = Vec::new();
            while inner.parked.len() >= self.limits.max_parked {
                let Some(oldest) = inner.order.values().next().copied() else {
                    break;
                };
                if let Some(gone) = inner.unpark(&oldest) {
                    inner.bury(oldest, Refusal::Evicted, tombstone_life(self.grace));
                    evicted.push((gone, Eviction::MaxParked));
                }
            }
            if let Some(source) = source
                && self.limits.per_source > 0
            {
                // The source's own oldest go first: its share, not everybody's.
                while inner
                    .by_source
                    .get(&source)
                    .is_some_and(|orders| orders.len() >= self.limits.per_source)
                {
                    let oldest = inner
                        .by_source
                        .get(&source)
                        .and_then(|orders| orders.first())
                        .and_then(|order| inner.order.get(order))
                        .copied();
                    let Some(oldest) = oldest else { break };
                    if let Some(gone) = inner.unpark(&oldest) {
                        inner.bury(oldest, Refusal::Evicted, tombstone_life(self.grace));
                        evicted.push((gone, Eviction::PerSource));
                    }
                }
            }
            player.control().reset();
            inner.live.remove(&token);
            inner.claimed.remove(&token);
            let player_id: Arc<str> = Arc::from(player.player_id());
            inner.parked_by_player.insert(player_id, token);
            let order = inner.next_order;
            inner.next_order += 1;
            inner.order.insert(order, token);
            let source = source.filter(|_| self.limits.per_source > 0);
            if let Some(source) = source {
                inner.by_source.entry(source).or_default().insert(order);
            }
            inner.parked.insert(
                token,
                Parked {
                    carried,
                    reason,
                    order,
                    source,
                    _supervisor: stop,
                },
            );
            evicted
        };
        for (gone, cause) in evicted {
            self.metrics
                .parked_evicted
                .with_label_values(&[cause.as_str()])
                .inc();
            self.ended(gone, Refusal::Evicted);
        }
        self.metrics.sessions_parked.inc();
        self.parked_signal.notify_waiters();
        let parking = self.clone();
        tokio::spawn(async move {
            let why = tokio::select! {
                () = tokio::time::sleep(parking.grace) => Refusal::Expired,
                ended = player.close_requested() => match ended {
                    CloseReason::SlowConsumer => Refusal::BufferOverflow,
                    _ => Refusal::Ended,
                },
                _ = stopped => return,
            };
            parking.end(token, why);
        });
    }

    /// Ends a parked session for good: the player leaves its room with the original reason.
    fn end(&self, token: ResumeToken, why: Refusal) {
        let parked = {
            let mut inner = self.lock();
            let parked = inner.unpark(&token);
            if parked.is_some() {
                inner.bury(token, why, tombstone_life(self.grace));
            }
            parked
        };
        if let Some(parked) = parked {
            self.ended(parked, why);
        }
    }

    /// The bookkeeping, then the log line, for a parked session that ended for good.
    fn ended(&self, parked: Parked, why: Refusal) {
        self.metrics.sessions_parked.dec();
        if why == Refusal::Expired {
            self.metrics.resume_expired.inc();
        }
        parked.carried.player.left(parked.reason);
        if self
            .throttle
            .admit("parked_ended", crate::ops::logging::ORDINARY)
        {
            tracing::info!(
                session = parked.carried.player.session_id(),
                player = parked.carried.player.player_id(),
                reason = parked.reason.as_str(),
                why = why.as_str(),
                "parked session ended for good"
            );
        }
    }

    /// Ends the oldest parked session to stay within a limit. Returns the bytes it held, or
    /// `None` when none is parked.
    pub(crate) fn evict_oldest(&self, cause: Eviction) -> Option<u64> {
        let (token, bytes) = {
            let inner = self.lock();
            let token = *inner.order.values().next()?;
            let mut held = Totals::default();
            if let Some(parked) = inner.parked.get(&token) {
                held.add(parked.carried.player.footprint());
            }
            (token, held.bytes())
        };
        self.metrics
            .parked_evicted
            .with_label_values(&[cause.as_str()])
            .inc();
        self.end(token, Refusal::Evicted);
        Some(bytes)
    }

    /// Ends every session parked in the room `name` of `generation`: the directory gave the
    /// room up for a newcomer at `rooms.max_rooms` (see [`crate::rooms::Directory::reserve`]).
    pub(crate) fn evict_room(&self, name: &str, generation: u64) {
        let tokens: Vec<ResumeToken> = {
            let inner = self.lock();
            inner
                .parked
                .iter()
                .filter(|(_, parked)| {
                    parked
                        .carried
                        .player
                        .room_handle()
                        .is_some_and(|room| room.key() == (name, generation))
                })
                .map(|(token, _)| *token)
                .collect()
        };
        for token in tokens {
            self.metrics
                .parked_evicted
                .with_label_values(&[Eviction::Rooms.as_str()])
                .inc();
            self.end(token, Refusal::Evicted);
        }
    }

    /// Every parked session's footprint, added up.
    pub(crate) fn footprints(&self) -> Totals {
        let inner = self.lock();
        let mut totals = Totals::default();
        for parked in inner.parked.values() {
            totals.add(parked.carried.player.footprint());
        }
        totals
    }

    /// Evicts the oldest parked sessions while they hold more than `session.max_parked_bytes`.
    pub(crate) fn enforce_bytes(&self) {
        let mut held = self.footprints().bytes();
        while held > self.limits.max_bytes {
            match self.evict_oldest(Eviction::ParkedBytes) {
                Some(freed) => held = held.saturating_sub(freed),
                None => break,
            }
        }
    }

    /// A player logged in afresh (no resume): any session it left parked ends for good.
    pub(crate) fn discard_player(&self, player_id: &str) {
        let token = self.lock().parked_by_player.get(player_id).copied();
        if let Some(token) = token {
            self.end(token, Refusal::Ended);
        }
    }

    /// Takes a parked session over for a `Hello` carrying `token`. A session that is still live
    /// (the server has not noticed its connection died) is closed as `replaced` and parked first.
    pub(crate) async fn resume(
        &self,
        token: ResumeToken,
        player_id: &str,
        last_event_seq: u64,
    ) -> Result<Carried, Refusal> {
        let result = self.try_resume(token, player_id, last_event_seq).await;
        match &result {
            Ok(_) => self.metrics.sessions_resumed.inc(),
            Err(refusal) => self
                .metrics
                .resume_rejected
                .with_label_values(&[refusal.as_str()])
                .inc(),
        }
        result
    }

    async fn try_resume(
        &self,
        token: ResumeToken,
        player_id: &str,
        last_event_seq: u64,
    ) -> Result<Carried, Refusal> {
        // The old connection reacts to the close request at once; bound the wait anyway.
        let deadline = Instant::now() + HANDOVER_WAIT;
        let mut claimed = false;
        loop {
            // Armed before looking, so that a park between the look and the wait is not missed.
            // Any session parking wakes every waiter; each looks again for its own token.
            let signal = self.parked_signal.notified();
            tokio::pin!(signal);
            signal.as_mut().enable();
            {
                let mut inner = self.lock();
                if let Some(parked) = inner.parked.get(&token) {
                    if parked.carried.player.player_id() != player_id {
                        return Err(Refusal::WrongPlayer);
                    }
                    if let Err(refusal) = parked.carried.replay.after(last_event_seq) {
                        drop(inner);
                        self.end(token, refusal);
                        return Err(refusal);
                    }
                    let parked = inner.unpark(&token).ok_or(Refusal::Unknown)?;
                    inner.bury(token, Refusal::Reused, tombstone_life(self.grace));
                    drop(inner);
                    self.metrics.sessions_parked.dec();
                    return Ok(parked.carried);
                }
                if let Some((why, _)) = inner.tombstones.get(&token) {
                    return Err(*why);
                }
                let Some(live) = inner.live.get(&token) else {
                    return Err(Refusal::Unknown);
                };
                if &*live.player_id != player_id {
                    return Err(Refusal::WrongPlayer);
                }
                if !claimed {
                    claimed = true;
                    // Under the lock, so that parking this session resets it or comes after.
                    live.player.close(CloseReason::Replaced);
                    inner.claimed.insert(token);
                }
            }
            if tokio::time::timeout_at(deadline, signal).await.is_err() {
                return Err(Refusal::NotReady);
            }
        }
    }

    /// At shutdown: every parked player leaves with its original reason.
    pub(crate) fn clear(&self) {
        let tokens: Vec<ResumeToken> = self.lock().parked.keys().copied().collect();
        for token in tokens {
            self.end(token, Refusal::Ended);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_keeps_unacknowledged_events_up_to_its_capacity() {
        let mut replay = Replay::new(3, u64::MAX);
        for n in 1..=5u8 {
            assert_eq!(replay.push(&Bytes::from(vec![n]), false), u64::from(n));
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
            replay.push(&Bytes::from_static(b"event"), false);
        }
        assert!(replay.sent.capacity() >= 4000);
        replay.ack(3995);
        assert_eq!(replay.sent.len(), 5);
        assert!(
            replay.sent.capacity() <= 64,
            "{} slots kept for 5 events",
            replay.sent.capacity()
        );
    }

    #[test]
    fn replay_keeps_at_most_its_bytes() {
        let mut replay = Replay::new(100, 10);
        for n in 1..=4u8 {
            replay.push(&Bytes::from(vec![n; 4]), false);
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
            replay.push(&event, false);
        }
        assert_eq!(replay.bytes(), 512 * 1024);
        replay.push(&event, true);
        assert_eq!(replay.bytes(), PRESSURE_REPLAY_BYTES);
    }

    #[test]
    fn replay_without_capacity_only_counts() {
        let mut replay = Replay::new(0, u64::MAX);
        assert_eq!(replay.push(&Bytes::from_static(b"x"), false), 1);
        assert_eq!(replay.push(&Bytes::from_static(b"y"), false), 2);
        assert_eq!(replay.after(2), Ok(vec![]));
        assert_eq!(replay.after(1), Err(Refusal::SeqGap));
    }
}
