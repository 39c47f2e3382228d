//! Live sessions that completed their handshake: the game's handle on each player, the lookup
//! that enforces one session per player id, and what the admin listener lists and kicks.
//!
//! [`Player`] is also the one owner of a player's life in the game: it holds the player's place
//! in its room, and every part of the server (the session, the reaper, the parking lot) reports
//! into it. It tells the room the player left exactly once, whoever reports first, and tells it
//! about a park and a resume in between.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::Notify;

use crate::close::CloseReason;
use crate::memory::budget::{Footprint, PRESSURE_QUEUE_BYTES, Pressure, Totals};
use crate::player::outbound::{Outbound, Refused};
use crate::player::place::Place;

/// The game's handle on one connected player. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Player(Arc<PlayerInner>);

#[derive(Debug)]
struct PlayerInner {
    session_id: u64,
    player_id: Arc<str>,
    peer: Mutex<SocketAddr>,
    started: Instant,
    /// Events the game queued for the player, until its session writes them.
    queue: Outbound,
    control: Control,
    /// The player's place in its room; `None` before it joined one and after it left.
    room: Mutex<Option<Arc<dyn Place>>>,
    /// [`LIVE`], [`PARKED`] or [`LEFT`].
    life: AtomicU8,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    footprint: Footprint,
    limit: QueueLimit,
}

/// What bounds one player's queue beyond its length: its bytes, and the server's memory pressure.
#[derive(Debug, Clone)]
pub struct QueueLimit {
    /// Most bytes of queued events (`session.outbound_queue_bytes`).
    pub max_bytes: u64,
    /// Under pressure a session with a backlog gets no more events (see [`crate::memory::budget`]).
    pub pressure: Pressure,
}

impl Default for QueueLimit {
    fn default() -> Self {
        QueueLimit {
            max_bytes: u64::MAX,
            pressure: Pressure::default(),
        }
    }
}

const LIVE: u8 = 0;
const PARKED: u8 = 1;
const LEFT: u8 = 2;

/// A one-shot request, from outside the session task, to end the session with a reason.
#[derive(Debug, Default)]
pub(crate) struct Control {
    reason: AtomicU8,
    notify: Notify,
    /// The game's own words when it ends the session (`game_ended`). A boxed `str`, not a
    /// `String`: every player holds the field, and its 8 bytes kept a player's allocation in
    /// the size class above.
    text: Mutex<Option<Box<str>>>,
}

impl Control {
    /// Records the reason (the first request wins) and wakes the session.
    fn request(&self, reason: CloseReason) {
        let code = CloseReason::ALL
            .iter()
            .position(|r| *r == reason)
            .map_or(0, |i| i as u8 + 1);
        if self
            .reason
            .compare_exchange(0, code, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.notify.notify_one();
        }
    }

    /// The requested reason, if any.
    pub(crate) fn requested(&self) -> Option<CloseReason> {
        let code = self.reason.load(Ordering::Acquire);
        CloseReason::ALL
            .get(usize::from(code).checked_sub(1)?)
            .copied()
    }

    /// Forgets a request that has been acted on (a session parked for resume starts afresh).
    pub(crate) fn reset(&self) {
        self.reason.store(0, Ordering::Release);
    }

    /// The text that came with the request, if any.
    pub(crate) fn text(&self) -> Option<String> {
        lock(&self.text).as_deref().map(str::to_owned)
    }

    /// Completes when a close is requested (immediately if one already was).
    pub(crate) async fn wait(&self) -> CloseReason {
        loop {
            if let Some(reason) = self.requested() {
                return reason;
            }
            self.notify.notified().await;
        }
    }
}

impl Player {
    /// A player whose queue holds at most `queue` events. The engine makes one per session; the
    /// test kit makes them to drive a room directly.
    pub(crate) fn new(
        session_id: u64,
        player_id: Arc<str>,
        peer: SocketAddr,
        queue: usize,
        limit: QueueLimit,
    ) -> Player {
        Player(Arc::new(PlayerInner {
            session_id,
            player_id,
            peer: Mutex::new(peer),
            started: Instant::now(),
            queue: Outbound::new(queue),
            control: Control::default(),
            room: Mutex::new(None),
            life: AtomicU8::new(LIVE),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            footprint: Footprint::default(),
            limit,
        }))
    }

    /// The server's id for this session.
    pub fn session_id(&self) -> u64 {
        self.0.session_id
    }

    /// The player id from `Hello`.
    pub fn player_id(&self) -> &str {
        &self.0.player_id
    }

    /// The player id, shared.
    pub fn player_id_arc(&self) -> Arc<str> {
        Arc::clone(&self.0.player_id)
    }

    /// The player's address (of its current connection).
    pub fn peer(&self) -> SocketAddr {
        *lock(&self.0.peer)
    }

    /// The room the player is in ("" before it joined one).
    pub fn room(&self) -> String {
        lock(&self.0.room)
            .as_ref()
            .map(|room| room.name().to_owned())
            .unwrap_or_default()
    }

    pub(crate) fn set_peer(&self, peer: SocketAddr) {
        *lock(&self.0.peer) = peer;
    }

    /// Queues an event payload for the player without ever waiting. When the player's queue is
    /// full the session ends as `slow_consumer` and the event is dropped; returns false then, or
    /// when the session has already ended. (A room sends through [`crate::RoomContext`], which
    /// sends only to its members.)
    pub(crate) fn send(&self, payload: Bytes) -> bool {
        let len = payload.len() as u64;
        let queued = self.0.footprint.enqueue(len);
        if queued > self.0.limit.max_bytes
            || (queued > PRESSURE_QUEUE_BYTES && self.0.limit.pressure.on())
        {
            self.dequeued(len);
            self.close(CloseReason::SlowConsumer);
            return false;
        }
        match self.0.queue.push(payload) {
            Ok(()) => {
                self.footprint_changed();
                true
            }
            Err(Refused::Full) => {
                self.dequeued(len);
                self.close(CloseReason::SlowConsumer);
                false
            }
            Err(Refused::Closed) => {
                self.dequeued(len);
                false
            }
        }
    }

    /// The session took `bytes` of queued events (or a send was refused).
    pub(crate) fn dequeued(&self, bytes: u64) {
        self.0.footprint.dequeue(bytes);
        self.footprint_changed();
    }

    /// Publishes what the session holds itself: bytes kept for replay and buffers.
    pub(crate) fn hold(&self, replay: u64, buffers: u64) {
        self.0.footprint.set_held(replay, buffers);
        self.footprint_changed();
    }

    /// Tells the budget's sampler that the player's footprint changed, or that it came or went
    /// from the live or parked sessions: its next sample adds them up again.
    pub(crate) fn footprint_changed(&self) {
        self.0.limit.pressure.note_change();
    }

    /// The events queued for the player, for its session to write.
    pub(crate) fn queue(&self) -> &Outbound {
        &self.0.queue
    }

    /// The bytes this player's session holds, for the memory budget.
    pub(crate) fn footprint(&self) -> &Footprint {
        &self.0.footprint
    }

    /// Ends the session with `Bye{kicked}` after its queued events (an operator's kick).
    pub(crate) fn kick(&self) {
        self.close(CloseReason::Kicked);
    }

    /// Ends the session by the game's own rules: `Bye{game_ended}` with `reason` as its text,
    /// after the queued events; counted as `game_ended`.
    pub(crate) fn end(&self, reason: impl Into<String>) {
        *lock(&self.0.control.text) = Some(reason.into().into_boxed_str());
        self.close(CloseReason::GameEnded);
    }

    /// The player now holds a place in a room; the room it was in hears it moved.
    pub(crate) fn entered(&self, place: Arc<dyn Place>) {
        let previous = lock(&self.0.room).replace(place);
        if let Some(previous) = previous {
            previous.moved(self.session_id());
        }
    }

    /// The player's connection broke and its session is parked: its room hears it.
    pub(crate) fn parked(&self, why: CloseReason) {
        if self
            .0
            .life
            .compare_exchange(LIVE, PARKED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
            && let Some(place) = lock(&self.0.room).clone()
        {
            place.disconnected(self.session_id(), why);
        }
    }

    /// A parked player came back: its room hears it. False if it had already left.
    pub(crate) fn resumed(&self) -> bool {
        let back = self
            .0
            .life
            .compare_exchange(PARKED, LIVE, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if back && let Some(place) = lock(&self.0.room).clone() {
            place.reconnected(self.session_id());
        }
        back
    }

    /// The player left the game for good: its room hears it once, whoever reports it first (the
    /// reaper for a closed session, the parking lot for a parked one that did not come back).
    /// Returns true for the report that counted.
    pub(crate) fn left(&self, why: CloseReason) -> bool {
        let was = self.0.life.swap(LEFT, Ordering::AcqRel);
        if was == LEFT {
            return false;
        }
        // Nobody will write what is queued: refuse more, and let go of what is there.
        self.0.queue.close();
        while self.0.queue.try_pop().is_some() {}
        if let Some(room) = lock(&self.0.room).take() {
            room.left(self.session_id(), why, was == PARKED);
        }
        true
    }

    /// Asks the session to end with `reason`; the first request wins.
    pub(crate) fn close(&self, reason: CloseReason) {
        self.0.control.request(reason);
    }

    pub(crate) fn control(&self) -> &Control {
        &self.0.control
    }

    /// Completes when a close is requested (at once if one already was). Owns what it needs, so
    /// that a session creates it once and keeps it.
    pub(crate) fn close_requested(
        &self,
    ) -> impl std::future::Future<Output = CloseReason> + Send + 'static {
        let player = self.clone();
        async move { player.0.control.wait().await }
    }

    pub(crate) fn add_traffic(&self, bytes_in: u64, bytes_out: u64) {
        self.0.bytes_in.fetch_add(bytes_in, Ordering::Relaxed);
        self.0.bytes_out.fetch_add(bytes_out, Ordering::Relaxed);
    }

    fn info(&self) -> SessionInfo {
        SessionInfo {
            id: self.0.session_id,
            player: self.0.player_id.to_string(),
            peer: self.peer().to_string(),
            age_secs: self.0.started.elapsed().as_secs_f64(),
            room: self.room(),
            bytes_in: self.0.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.0.bytes_out.load(Ordering::Relaxed),
        }
    }
}

/// Which sessions a page lists.
#[derive(Debug, Clone, Default)]
pub struct SessionFilter {
    /// Only players whose id starts with this.
    pub player_prefix: String,
    /// Only players in this room.
    pub room: Option<String>,
}

/// One live session as the admin listener shows it.
#[derive(Debug, Clone, Serialize)]
pub struct SessionInfo {
    /// Session id (use it to kick).
    pub id: u64,
    /// Player id.
    pub player: String,
    /// Peer address.
    pub peer: String,
    /// Seconds since the handshake.
    pub age_secs: f64,
    /// Current room.
    pub room: String,
    /// Bytes received (brought up to date at least every 5 s).
    pub bytes_in: u64,
    /// Bytes sent (brought up to date at least every 5 s).
    pub bytes_out: u64,
}

/// The live sessions, by session id and by player id.
#[derive(Debug, Default)]
pub struct Registry {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    by_id: BTreeMap<u64, Player>,
    by_player: HashMap<Arc<str>, u64>,
}

/// One page of the live sessions.
#[derive(Debug, Clone, Serialize)]
pub struct SessionPage {
    /// Live sessions past their handshake, in all.
    pub total: usize,
    /// The sessions on this page, by id.
    pub sessions: Vec<SessionInfo>,
    /// The `after` that fetches the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_after: Option<u64>,
}

/// Lock a mutex, recovering the data if a panicking thread poisoned it: the maps stay
/// consistent because every update is a single insert or remove.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Registry {
    /// Live players.
    #[cfg(test)]
    fn len(&self) -> usize {
        lock(&self.inner).by_id.len()
    }

    /// Adds a player. If the same player id already has a session, that session is asked to
    /// close as `replaced` and returned.
    pub(crate) fn register(&self, player: Player) -> Option<Player> {
        let mut inner = lock(&self.inner);
        let previous = inner
            .by_player
            .insert(player.0.player_id.clone(), player.session_id())
            .and_then(|old| inner.by_id.get(&old).cloned());
        player.footprint_changed();
        inner.by_id.insert(player.session_id(), player);
        if let Some(old) = &previous {
            old.close(CloseReason::Replaced);
        }
        previous
    }

    /// The live session of `player_id`, if it has one.
    pub(crate) fn session_of(&self, player_id: &str) -> Option<u64> {
        lock(&self.inner).by_player.get(player_id).copied()
    }

    /// Removes a session; the player id mapping goes only if it still points at this session.
    pub(crate) fn remove(&self, session_id: u64) {
        let mut inner = lock(&self.inner);
        let Some(player) = inner.by_id.remove(&session_id) else {
            return;
        };
        player.footprint_changed();
        if inner.by_player.get(player.player_id()) == Some(&session_id) {
            inner.by_player.remove(player.player_id());
        }
    }

    /// The session with this id, if it is live.
    pub fn get(&self, session_id: u64) -> Option<Player> {
        lock(&self.inner).by_id.get(&session_id).cloned()
    }

    /// Up to `limit` live sessions with ids above `after`, by id. The lock is held only to
    /// clone `limit` handles; the page is built after it is released.
    #[cfg(test)]
    pub fn page(&self, after: u64, limit: usize) -> SessionPage {
        self.page_where(after, limit, &SessionFilter::default())
    }

    /// Like [`Registry::page`], only the sessions `filter` lets through. The registry is walked
    /// a chunk at a time, each chunk's sessions looked at outside its lock.
    pub fn page_where(&self, after: u64, limit: usize, filter: &SessionFilter) -> SessionPage {
        const CHUNK: usize = 1024;
        let mut sessions = Vec::new();
        let mut cursor = after;
        let mut total;
        let mut more = false;
        loop {
            let (chunk, rest) = {
                let inner = lock(&self.inner);
                total = inner.by_id.len();
                let mut range = inner
                    .by_id
                    .range((
                        std::ops::Bound::Excluded(cursor),
                        std::ops::Bound::Unbounded,
                    ))
                    .filter(|(_, p)| p.player_id().starts_with(&filter.player_prefix));
                let chunk: Vec<Player> =
                    range.by_ref().take(CHUNK).map(|(_, p)| p.clone()).collect();
                let rest = range.next().is_some();
                (chunk, rest)
            };
            let Some(last) = chunk.last().map(Player::session_id) else {
                break;
            };
            for player in &chunk {
                let info = player.info();
                if filter.room.as_ref().is_none_or(|room| *room == info.room) {
                    if sessions.len() == limit {
                        more = true;
                        break;
                    }
                    sessions.push(info);
                }
            }
            if more || !rest {
                break;
            }
            cursor = last;
        }
        let next_after = if more {
            sessions.last().map(|s| s.id)
        } else {
            None
        };
        SessionPage {
            total,
            sessions,
            next_after,
        }
    }

    /// The footprints of every live session, added up.
    pub fn footprints(&self) -> Totals {
        let inner = lock(&self.inner);
        let mut totals = Totals::default();
        for player in inner.by_id.values() {
            totals.add(player.footprint());
        }
        totals
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every held session keeps one player: with the `Arc`'s two counts it fits jemalloc's
    /// 320-byte class (at 328 bytes it took 384).
    #[test]
    fn a_player_fits_its_allocator_size_class() {
        let size = 2 * std::mem::size_of::<usize>() + std::mem::size_of::<PlayerInner>();
        assert!(size <= 320, "a player's allocation is {size} bytes");
    }

    fn player(id: u64, name: &str) -> Player {
        let peer = "127.0.0.1:5000".parse().expect("addr");
        Player::new(id, Arc::from(name), peer, 2, QueueLimit::default())
    }

    #[test]
    fn a_second_session_for_a_player_replaces_the_first() {
        let registry = Registry::default();
        let first = player(1, "alice");
        let second = player(2, "alice");
        assert!(registry.register(first.clone()).is_none());
        let replaced = registry.register(second).expect("first is replaced");
        assert_eq!(replaced.session_id(), 1);
        assert_eq!(first.control().requested(), Some(CloseReason::Replaced));
        // The old session's late removal must not unmap the new one.
        registry.remove(1);
        assert_eq!(registry.len(), 1);
        let third = player(3, "alice");
        assert_eq!(registry.register(third).map(|p| p.session_id()), Some(2));
    }

    #[test]
    fn a_queue_over_its_bytes_closes_the_session_as_slow_consumer() {
        let peer = "127.0.0.1:5000".parse().expect("addr");
        let limit = QueueLimit {
            max_bytes: 10,
            pressure: Pressure::default(),
        };
        let p = Player::new(1, Arc::from("big"), peer, 100, limit);
        assert!(p.send(Bytes::from_static(b"123456")));
        assert_eq!(p.footprint().queued(), 6);
        assert!(!p.send(Bytes::from_static(b"123456")));
        assert_eq!(
            p.footprint().queued(),
            6,
            "the refused event is not counted"
        );
        assert_eq!(p.control().requested(), Some(CloseReason::SlowConsumer));
    }

    #[test]
    fn pages_walk_every_session_once() {
        let registry = Registry::default();
        for id in 1..=25 {
            registry.register(player(id, &format!("p{id}")));
        }
        let mut seen = Vec::new();
        let mut after = 0;
        loop {
            let page = registry.page(after, 10);
            assert_eq!(page.total, 25);
            assert!(page.sessions.len() <= 10);
            seen.extend(page.sessions.iter().map(|s| s.id));
            match page.next_after {
                Some(next) => after = next,
                None => break,
            }
        }
        assert_eq!(seen, (1..=25).collect::<Vec<_>>());
    }

    #[test]
    fn a_filtered_page_lists_only_the_matching_players_and_pages_on() {
        let registry = Registry::default();
        for id in 1..=3000 {
            let name = if id % 3 == 0 { "ann" } else { "bob" };
            registry.register(player(id, &format!("{name}-{id}")));
        }
        let filter = SessionFilter {
            player_prefix: "ann-".to_owned(),
            room: None,
        };
        let mut seen = Vec::new();
        let mut after = 0;
        loop {
            let page = registry.page_where(after, 400, &filter);
            assert_eq!(page.total, 3000, "the total counts every session");
            assert!(page.sessions.iter().all(|s| s.player.starts_with("ann-")));
            seen.extend(page.sessions.iter().map(|s| s.id));
            match page.next_after {
                Some(next) => after = next,
                None => break,
            }
        }
        assert_eq!(seen, (1..=1000).map(|n| n * 3).collect::<Vec<_>>());
        let rooms = SessionFilter {
            player_prefix: String::new(),
            room: Some("nowhere".to_owned()),
        };
        assert!(registry.page_where(0, 10, &rooms).sessions.is_empty());
    }

    #[test]
    fn a_full_queue_closes_the_session_as_slow_consumer() {
        let p = player(1, "bob");
        assert!(p.send(Bytes::from_static(b"1")));
        assert!(p.send(Bytes::from_static(b"2")));
        assert!(!p.send(Bytes::from_static(b"3")));
        assert_eq!(p.control().requested(), Some(CloseReason::SlowConsumer));
        // The first reason wins.
        p.kick();
        assert_eq!(p.control().requested(), Some(CloseReason::SlowConsumer));
    }
}
