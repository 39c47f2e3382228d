//! The parking lot: the resume tokens of live sessions, the parked sessions, and the tombstones
//! that say why a token no longer resumes.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ipnet::IpNet;
use protocol::ResumeToken;
use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;

use crate::close::CloseReason;
use crate::memory::budget::Totals;
use crate::player::registry::Player;
use crate::resume::metrics::ResumeMetrics;
use crate::resume::refusal::{Eviction, Refusal};
use crate::resume::replay::Replay;
use crate::rooms::RoomHandle;

/// What a parked session carries over to the connection that resumes it.
#[derive(Debug)]
pub(crate) struct Carried {
    /// The player, as the game knows it.
    pub player: Player,
    /// The room it holds a place in.
    pub room: Option<RoomHandle>,
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
    /// The game's reason, for the tombstones of parked sessions a room ended.
    game_reasons: HashMap<ResumeToken, Arc<str>>,
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
            let tombstones = &self.tombstones;
            self.game_reasons
                .retain(|buried, _| *buried == token || tombstones.contains_key(buried));
        }
        self.tombstones.insert(token, (why, now));
    }

    fn unpark(&mut self, token: &ResumeToken) -> Option<Parked> {
        let parked = self.parked.remove(token)?;
        parked.carried.player.footprint_changed();
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
    metrics: ResumeMetrics,
    throttle: crate::logging::Throttle,
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
        metrics: ResumeMetrics,
        throttle: crate::logging::Throttle,
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
        player.hold(carried.replay.bytes(), 0);
        let (stop, stopped) = oneshot::channel();
        // One critical section: make room, reset the close request (a resume's `Replaced`
        // request is made under this lock too, so it lands before or after, never between),
        // park, and tell the room: whatever the room asks in return (ending the player) lands
        // after the reset, where the supervisor below sees it.
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
            player.parked(reason);
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
            player.footprint_changed();
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
            self.metrics.parked_evicted(cause);
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
                    CloseReason::GameEnded => {
                        // The room ended it: a later resume is refused with the room's reason.
                        if let Some(text) = player.control().text() {
                            parking.lock().game_reasons.insert(token, Arc::from(text));
                        }
                        Refusal::Ended
                    }
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
            .admit("parked_ended", crate::logging::ORDINARY)
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
        self.metrics.parked_evicted(cause);
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
                        .room
                        .as_ref()
                        .is_some_and(|room| room.key() == (name, generation))
                })
                .map(|(token, _)| *token)
                .collect()
        };
        for token in tokens {
            self.metrics.parked_evicted(Eviction::Rooms);
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

    /// What a client whose resume with `token` was refused for `refusal` is told: the room's
    /// own reason when a room ended the parked session.
    pub(crate) fn explain(&self, token: &ResumeToken, refusal: Refusal) -> String {
        match self.lock().game_reasons.get(token) {
            Some(text) if refusal == Refusal::Ended => {
                format!("the game ended your session: {text}; start a new session")
            }
            _ => refusal.explain().to_owned(),
        }
    }

    /// The session `player_id` left parked, if any.
    pub(crate) fn parked_session_of(&self, player_id: &str) -> Option<u64> {
        let inner = self.lock();
        let token = inner.parked_by_player.get(player_id)?;
        Some(inner.parked.get(token)?.carried.player.session_id())
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
            Err(refusal) => self.metrics.resume_rejected(*refusal),
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
