//! The room directory and the room tasks.
//!
//! The directory knows every open room by name and how many players hold a place in it. It is
//! touched only when a player enters or leaves a room, never for an input: a session keeps a
//! [`RoomHandle`] and sends its inputs straight to the room's task. A room opens when its first
//! player asks for it (`Game::open`), at most `rooms.max_rooms` at once, and is disposed when its
//! last player leaves. An empty `Hello.room` places the player in an automatic room `auto-N`
//! with fewer than `rooms.auto_room_capacity` players.
//!
//! Each room runs in a task of its own that owns the game's [`Room`] value: it takes commands
//! (join, input, leave, disconnect, reconnect) one at a time, in the order each player sent
//! them, and ticks at the room's rate.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio_util::task::TaskTracker;

use crate::api::game::{Game, Leave, Members, NewRoom, Player, Refusal, Room, RoomContext};
use crate::api::rooms::{self as listing, Answer, RoomInfo, RoomPage, RoomQuery, SignalError};
use crate::api::state::{Listing, MAX_LABEL_BYTES, RoomState};
use crate::close::CloseReason;
use crate::player::place::Place;

/// Room names with this prefix are the directory's automatic rooms: given, never chosen.
pub const AUTO_ROOM_PREFIX: &str = "auto-";

/// What a room's task is asked to do.
#[derive(Debug)]
pub(crate) enum Command {
    Join {
        player: Player,
        /// The session of the same player id this one replaces, if it is a member.
        replaces: Option<u64>,
        /// The player's join options.
        options: Bytes,
        reply: oneshot::Sender<Result<(), Refusal>>,
    },
    Input {
        session: u64,
        seq: u64,
        payload: Bytes,
    },
    /// Inputs one session read together, in order (see [`Inputs`]).
    Inputs {
        session: u64,
        inputs: Vec<(u64, Bytes)>,
    },
    Leave {
        session: u64,
        why: Leave,
        /// The directory removed the room: dispose of it after this.
        last: bool,
    },
    Disconnected {
        session: u64,
        why: CloseReason,
    },
    Reconnected {
        session: u64,
    },
    /// The directory removed the room after a refused join: dispose of it.
    Dispose,
    /// Answers once every command sent before it was handled: a closing session waits for the
    /// consequences of its last inputs before its final flush.
    Settle {
        reply: oneshot::Sender<()>,
    },
    /// The server drains, `left` before its timeout: the room's last word.
    Drain {
        left: Duration,
        reply: oneshot::Sender<()>,
    },
    /// A message from outside the room's players, answered.
    Signal {
        payload: Bytes,
        reply: oneshot::Sender<Bytes>,
    },
}

/// The inputs a session read in one pass, sent to its room as one command: a pipelining
/// client's read takes one slot of the room's queue and one wake-up of its task, not one per
/// input. A player who sends one input per read sends a plain [`Command::Input`].
#[derive(Debug, Default)]
pub(crate) enum Inputs {
    #[default]
    None,
    One(u64, Bytes),
    Many(Vec<(u64, Bytes)>),
}

impl Inputs {
    /// Room for this many inputs when a second one comes (the vector doubles past it).
    const FIRST_CAPACITY: usize = 16;

    /// Adds an input after those already taken.
    pub(crate) fn push(&mut self, seq: u64, payload: Bytes) {
        if let Inputs::Many(many) = self {
            many.push((seq, payload));
            return;
        }
        *self = match std::mem::take(self) {
            Inputs::One(first_seq, first) => {
                let mut many = Vec::with_capacity(Self::FIRST_CAPACITY);
                many.push((first_seq, first));
                many.push((seq, payload));
                Inputs::Many(many)
            }
            Inputs::None | Inputs::Many(_) => Inputs::One(seq, payload),
        };
    }

    /// The command that hands these inputs to the room, if there are any.
    pub(crate) fn into_command(self, session: u64) -> Option<Command> {
        match self {
            Inputs::None => None,
            Inputs::One(seq, payload) => Some(Command::Input {
                session,
                seq,
                payload,
            }),
            Inputs::Many(inputs) => Some(Command::Inputs { session, inputs }),
        }
    }
}

/// One open room as its players reach it: its name, the generation that tells it from an
/// earlier or later room of the same name, and its task's queue. Every place in the room shares
/// it.
#[derive(Debug)]
struct Address {
    name: Arc<str>,
    /// The label the room starts with (an automatic room opened for a label).
    label: Option<Arc<str>>,
    generation: u64,
    commands: mpsc::Sender<Command>,
    directory: Weak<Directory>,
}

/// A place in one room: how a session reaches the room's task.
#[derive(Clone, Debug)]
pub struct RoomHandle(Arc<Address>);

impl RoomHandle {
    /// The room's name.
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// Sends a command, waiting while the room's queue is full (backpressure on the sender).
    pub(crate) async fn send(&self, command: Command) {
        // A send fails only once the room's task has ended; nothing is left to tell then.
        let _ = self.0.commands.send(command).await;
    }

    /// Sends without waiting; gives the command back when the room's queue is full. A room that
    /// has ended takes (and drops) it.
    pub(crate) fn try_send(&self, command: Command) -> Result<(), Command> {
        match self.0.commands.try_send(command) {
            Err(mpsc::error::TrySendError::Full(command)) => Err(command),
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => Ok(()),
        }
    }

    /// Gives back a place the room refused.
    pub(crate) fn refused(&self) {
        if self.0.release(false) {
            self.0.send_now(Command::Dispose);
        }
    }

    /// The place as the player holds it.
    pub(crate) fn place(&self) -> Arc<dyn Place> {
        self.0.clone()
    }

    /// Which room this is: its name and generation.
    pub(crate) fn key(&self) -> (&str, u64) {
        (&self.0.name, self.0.generation)
    }
}

impl Address {
    /// Publishes what the room shows in the listing.
    fn publish(&self, listing: &Listing) {
        if let Some(directory) = self.directory.upgrade() {
            let mut inner = directory.lock();
            if let Some(entry) = inner
                .rooms
                .get_mut(&self.name)
                .filter(|entry| entry.address.generation == self.generation)
            {
                entry.listing = listing.clone();
            }
        }
    }

    /// Tells the room the player left, and to close when it was the last.
    fn leave(&self, session: u64, why: Leave, parked: bool) {
        let last = self.release(parked);
        self.send_now(Command::Leave { session, why, last });
    }

    /// Sends a command from code that cannot wait: at once if the queue has room, else from a
    /// task of its own.
    fn send_now(&self, command: Command) {
        if let Err(mpsc::error::TrySendError::Full(command)) = self.commands.try_send(command) {
            let commands = self.commands.clone();
            tokio::spawn(async move {
                let _ = commands.send(command).await;
            });
        }
    }

    /// Gives a place back to the directory; true when it was the room's last (or the directory
    /// is gone): the room is to be disposed of.
    fn release(&self, parked: bool) -> bool {
        self.directory
            .upgrade()
            .is_none_or(|directory| directory.release(self, parked))
    }
}

impl Place for Address {
    fn name(&self) -> &str {
        &self.name
    }

    fn moved(&self, session: u64) {
        self.leave(session, Leave::Moved, false);
    }

    fn left(&self, session: u64, why: CloseReason, parked: bool) {
        self.leave(session, Leave::Closed(why), parked);
    }

    fn disconnected(&self, session: u64, why: CloseReason) {
        if let Some(directory) = self.directory.upgrade() {
            directory.set_parked(self, true);
        }
        self.send_now(Command::Disconnected { session, why });
    }

    fn reconnected(&self, session: u64) {
        if let Some(directory) = self.directory.upgrade() {
            directory.set_parked(self, false);
        }
        self.send_now(Command::Reconnected { session });
    }
}

/// Opens a game's rooms: the one place that knows the game's types.
trait Opener: Send + Sync {
    fn open(&self, room: &NewRoom<'_>) -> Result<Box<dyn RoomRunner>, Refusal>;
    fn automatic_label(&self, options: &[u8]) -> Option<String>;
}

struct GameOpener<G: Game> {
    game: Arc<G>,
}

impl<G: Game> Opener for GameOpener<G> {
    fn open(&self, room: &NewRoom<'_>) -> Result<Box<dyn RoomRunner>, Refusal> {
        Ok(Box::new(Runner(self.game.open(room)?)))
    }

    fn automatic_label(&self, options: &[u8]) -> Option<String> {
        self.game.automatic_label(options)
    }
}

/// A room, type-erased for the task that runs it.
trait RoomRunner: Send {
    fn run(
        self: Box<Self>,
        address: Arc<Address>,
        commands: mpsc::Receiver<Command>,
        default_tick_hz: u32,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;
}

struct Runner<R: Room>(R);

impl<R: Room> RoomRunner for Runner<R> {
    fn run(
        self: Box<Self>,
        address: Arc<Address>,
        commands: mpsc::Receiver<Command>,
        default_tick_hz: u32,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        Box::pin(run_room(self.0, address, commands, default_tick_hz))
    }
}

/// The directory's settings.
#[derive(Debug, Clone, Copy)]
pub struct DirectoryLimits {
    /// Most rooms open at once (`rooms.max_rooms`).
    pub max_rooms: usize,
    /// Players the directory puts in one automatic room (`rooms.auto_room_capacity`).
    pub auto_room_capacity: usize,
    /// Ticks per second of a room that does not choose (`rooms.tick_rate_hz`).
    pub tick_rate_hz: u32,
    /// Commands a room's queue holds before senders wait (`rooms.queue`).
    pub queue: usize,
}

struct Entry {
    address: Arc<Address>,
    /// What the room publishes in the listing.
    listing: Listing,
    places: usize,
    /// Places held by players parked for resume.
    parked: usize,
    /// Since when (an order, not a time) every place is parked.
    parked_only: Option<u64>,
    auto: Option<u64>,
}

#[derive(Default)]
struct Inner {
    /// Open rooms, in name order (the listing's order).
    rooms: BTreeMap<Arc<str>, Entry>,
    /// Automatic rooms with space, lowest number first.
    auto_open: BTreeSet<u64>,
    next_auto: u64,
    next_generation: u64,
    /// Rooms whose every place is parked, oldest first: the first to give up at
    /// `rooms.max_rooms`.
    parked_only: BTreeMap<u64, Arc<str>>,
    next_order: u64,
    /// Rooms given up for a newcomer, by name and generation, with the places still to leave:
    /// no longer found by name, disposed of when the last of their parked players has left.
    reclaimed: HashMap<(Arc<str>, u64), usize>,
}

/// Ends the parked sessions holding a room the directory gave up (its name and generation):
/// the parking lot's, set once the server has one.
pub(crate) type Reclaimer = Box<dyn Fn(&str, u64) + Send + Sync>;

/// Every open room.
pub struct Directory {
    opener: Box<dyn Opener>,
    limits: DirectoryLimits,
    inner: Mutex<Inner>,
    tasks: TaskTracker,
    gauge: prometheus::IntGauge,
    reclaimer: std::sync::OnceLock<Reclaimer>,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Directory")
            .field("limits", &self.limits)
            .field("open", &self.lock().rooms.len())
            .finish()
    }
}

impl Directory {
    /// A directory of `game`'s rooms, counting them in `gauge` (`gameserver_rooms_active`).
    pub fn new<G: Game>(
        game: Arc<G>,
        limits: DirectoryLimits,
        gauge: prometheus::IntGauge,
    ) -> Arc<Directory> {
        Arc::new(Directory {
            opener: Box::new(GameOpener { game }),
            limits,
            inner: Mutex::new(Inner::default()),
            tasks: TaskTracker::new(),
            gauge,
            reclaimer: std::sync::OnceLock::new(),
        })
    }

    /// Sets what ends the parked sessions of a room given up for a newcomer (see
    /// [`Directory::reserve`]). Without one, a full directory refuses newcomers.
    pub(crate) fn set_reclaimer(&self, reclaimer: Reclaimer) {
        let _ = self.reclaimer.set(reclaimer);
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a place in the room called `requested` (an automatic room when empty), opening it
    /// if needed (with the joining player's `options`). The room itself still decides, when
    /// asked to join.
    ///
    /// At `rooms.max_rooms`, a room held only by parked sessions does not keep a newcomer out:
    /// the oldest such room is given up (no longer found by name) and its parked sessions are
    /// ended (their resume is refused as `evicted`), so that players who are here come before
    /// players who may come back.
    pub fn reserve(
        self: &Arc<Self>,
        requested: &str,
        options: &[u8],
    ) -> Result<RoomHandle, Refusal> {
        let mut reclaimed = None;
        let reserved = self.reserve_locked(requested, options, &mut reclaimed);
        if let Some((name, generation)) = reclaimed
            && let Some(reclaimer) = self.reclaimer.get()
        {
            reclaimer(&name, generation);
        }
        reserved
    }

    fn reserve_locked(
        self: &Arc<Self>,
        requested: &str,
        options: &[u8],
        reclaimed: &mut Option<(Arc<str>, u64)>,
    ) -> Result<RoomHandle, Refusal> {
        let label: Option<Arc<str>> = requested
            .is_empty()
            .then(|| self.opener.automatic_label(options))
            .flatten()
            .map(Arc::from);
        if let Some(label) = label.as_ref().filter(|label| label.len() > MAX_LABEL_BYTES) {
            return Err(Refusal::new(format!(
                "the label these join options ask for is {} bytes, a label is at most \
                 {MAX_LABEL_BYTES}",
                label.len()
            )));
        }
        let mut inner = self.lock();
        let name: Arc<str> = if requested.is_empty() {
            // The first automatic room with space that is not locked (and has the label).
            let open = inner.auto_open.iter().copied().find(|n| {
                inner
                    .rooms
                    .get(format!("{AUTO_ROOM_PREFIX}{n}").as_str())
                    .is_none_or(|entry| {
                        !entry.listing.locked
                            && label
                                .as_ref()
                                .is_none_or(|label| entry.listing.label.as_ref() == Some(label))
                    })
            });
            let n = match open {
                Some(n) => n,
                None => {
                    inner.next_auto += 1;
                    let n = inner.next_auto;
                    inner.auto_open.insert(n);
                    n
                }
            };
            Arc::from(format!("{AUTO_ROOM_PREFIX}{n}"))
        } else {
            Arc::from(requested)
        };
        if !inner.rooms.contains_key(&name) {
            if inner.rooms.len() >= self.limits.max_rooms {
                match self.reclaim_oldest_parked(&mut inner) {
                    Some(gone) => *reclaimed = Some(gone),
                    None => {
                        return Err(Refusal::new(format!(
                            "the server holds as many rooms as it may ({}); join an existing one",
                            self.limits.max_rooms
                        )));
                    }
                }
            }
            let room = match self
                .opener
                .open(&NewRoom::new(&name, requested.is_empty(), options))
            {
                Ok(room) => room,
                Err(refusal) => {
                    if let Some(n) = auto_number(&name) {
                        inner.auto_open.remove(&n);
                    }
                    return Err(refusal);
                }
            };
            let (commands, receiver) = mpsc::channel(self.limits.queue.max(1));
            inner.next_generation += 1;
            let generation = inner.next_generation;
            let address = Arc::new(Address {
                name: name.clone(),
                label: label.clone(),
                generation,
                commands,
                directory: Arc::downgrade(self),
            });
            inner.rooms.insert(
                name.clone(),
                Entry {
                    address: address.clone(),
                    listing: Listing {
                        label,
                        locked: false,
                    },
                    places: 0,
                    parked: 0,
                    parked_only: None,
                    auto: auto_number(&name).filter(|_| requested.is_empty()),
                },
            );
            self.gauge.inc();
            let task = room.run(address, receiver, self.limits.tick_rate_hz);
            let gauge = self.gauge.clone();
            self.tasks.spawn(async move {
                task.await;
                gauge.dec();
            });
        }
        let capacity = self.limits.auto_room_capacity;
        let Inner {
            rooms,
            auto_open,
            parked_only,
            ..
        } = &mut *inner;
        let Some(entry) = rooms.get_mut(&name) else {
            return Err(Refusal::new("the room closed"));
        };
        entry.places += 1;
        if let Some(order) = entry.parked_only.take() {
            // A newcomer in a room of parked players: it is no longer parked-only.
            parked_only.remove(&order);
        }
        if let Some(n) = entry.auto
            && entry.places >= capacity
        {
            auto_open.remove(&n);
        }
        Ok(RoomHandle(entry.address.clone()))
    }

    /// Gives up the oldest room whose every place is parked, if any: it leaves the directory
    /// (its places are counted in `reclaimed` until they have left) and its name and generation
    /// are returned, for its parked sessions to be ended.
    fn reclaim_oldest_parked(&self, inner: &mut Inner) -> Option<(Arc<str>, u64)> {
        let (_, name) = inner.parked_only.pop_first()?;
        let entry = inner.rooms.remove(&name)?;
        if let Some(n) = entry.auto {
            inner.auto_open.remove(&n);
        }
        inner
            .reclaimed
            .insert((name.clone(), entry.address.generation), entry.places);
        Some((name, entry.address.generation))
    }

    /// Counts a place of `handle`'s room as parked or back.
    fn set_parked(&self, handle: &Address, parked: bool) {
        let mut inner = self.lock();
        let Inner {
            rooms,
            parked_only,
            next_order,
            ..
        } = &mut *inner;
        let Some(entry) = rooms
            .get_mut(&handle.name)
            .filter(|e| e.address.generation == handle.generation)
        else {
            return;
        };
        if parked {
            entry.parked += 1;
        } else {
            entry.parked = entry.parked.saturating_sub(1);
        }
        track_parked_only(entry, &handle.name, parked_only, next_order);
    }

    /// Gives a place back. Returns true when it was the last one: the room is removed from the
    /// directory (a later player opens a new one) and must be disposed of.
    fn release(&self, handle: &Address, parked: bool) -> bool {
        let mut inner = self.lock();
        let capacity = self.limits.auto_room_capacity;
        let Inner {
            rooms,
            auto_open,
            parked_only,
            next_order,
            reclaimed,
            ..
        } = &mut *inner;
        let Some(entry) = rooms
            .get_mut(&handle.name)
            .filter(|e| e.address.generation == handle.generation)
        else {
            // A room given up for a newcomer: disposed of when its last place is given back.
            let key = (handle.name.clone(), handle.generation);
            let Some(places) = reclaimed.get_mut(&key) else {
                return false;
            };
            *places = places.saturating_sub(1);
            if *places == 0 {
                reclaimed.remove(&key);
                return true;
            }
            return false;
        };
        entry.places = entry.places.saturating_sub(1);
        if parked {
            entry.parked = entry.parked.saturating_sub(1);
        }
        if entry.places == 0 {
            if let Some(n) = entry.auto {
                auto_open.remove(&n);
            }
            if let Some(order) = entry.parked_only {
                parked_only.remove(&order);
            }
            rooms.remove(&handle.name);
            return true;
        }
        track_parked_only(entry, &handle.name, parked_only, next_order);
        if let Some(n) = entry.auto
            && entry.places < capacity
        {
            auto_open.insert(n);
        }
        false
    }

    /// Tells every open room the server drains, `left` before its timeout, and waits, at most
    /// `within`, for each to have run its [`Room::draining`] hook.
    pub(crate) async fn drain(&self, left: Duration, within: Duration) {
        let addresses: Vec<Arc<Address>> = self
            .lock()
            .rooms
            .values()
            .map(|entry| entry.address.clone())
            .collect();
        let answers: Vec<_> = addresses
            .iter()
            .map(|address| {
                let (reply, answer) = oneshot::channel();
                address.send_now(Command::Drain { left, reply });
                answer
            })
            .collect();
        let _ = tokio::time::timeout(within, futures_util::future::join_all(answers)).await;
    }

    /// Waits, at most `within`, for every room task to end (after the last players left).
    pub async fn closed(&self, within: Duration) {
        self.tasks.close();
        let _ = tokio::time::timeout(within, self.tasks.wait()).await;
    }
}

impl listing::Directory for Directory {
    fn list(&self, query: &RoomQuery) -> RoomPage {
        let size = query.page_size();
        let inner = self.lock();
        let after = query.after.as_deref().unwrap_or("");
        let mut rooms = Vec::with_capacity(size.min(inner.rooms.len()));
        let mut next_after = None;
        let candidates = inner
            .rooms
            .range::<str, _>((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded))
            .filter(|(_, entry)| {
                query
                    .label
                    .as_deref()
                    .is_none_or(|label| entry.listing.label.as_deref() == Some(label))
                    && !(query.unlocked && entry.listing.locked)
            });
        for (name, entry) in candidates {
            if rooms.len() == size {
                next_after = rooms.last().map(|room: &RoomInfo| room.name.clone());
                break;
            }
            rooms.push(RoomInfo {
                name: name.to_string(),
                label: entry.listing.label.as_deref().map(str::to_owned),
                players: entry.places,
                parked: entry.parked,
                locked: entry.listing.locked,
                automatic: entry.auto.is_some(),
            });
        }
        RoomPage {
            total: inner.rooms.len(),
            rooms,
            next_after,
        }
    }

    fn signal(&self, room: &str, payload: Bytes) -> Answer {
        let address = self
            .lock()
            .rooms
            .get(room)
            .map(|entry| entry.address.clone());
        let room = room.to_owned();
        Box::pin(async move {
            let Some(address) = address else {
                return Err(SignalError::NoSuchRoom(room));
            };
            let (reply, answer) = oneshot::channel();
            let asked = async {
                let _ = address
                    .commands
                    .send(Command::Signal { payload, reply })
                    .await;
                answer.await
            };
            match tokio::time::timeout(listing::SIGNAL_WAIT, asked).await {
                Ok(Ok(answer)) => Ok(answer),
                Ok(Err(_)) | Err(_) => Err(SignalError::NoAnswer),
            }
        })
    }
}

/// True when `name` reads as an automatic room's name to a person: its prefix, compared after
/// compatibility normalization (NFKC: a full-width `ａ` is an `a`) and case folding, is
/// [`AUTO_ROOM_PREFIX`]. Names like that are the directory's to give.
pub(crate) fn claims_auto_prefix(name: &str) -> bool {
    use unicode_normalization::UnicodeNormalization;
    let folded = name
        .nfkc()
        .flat_map(char::to_lowercase)
        .take(AUTO_ROOM_PREFIX.chars().count());
    folded.eq(AUTO_ROOM_PREFIX.chars())
}

/// Keeps `parked_only` in step with `entry`: listed (newest last) while every place is parked.
fn track_parked_only(
    entry: &mut Entry,
    name: &Arc<str>,
    parked_only: &mut BTreeMap<u64, Arc<str>>,
    next_order: &mut u64,
) {
    let only_parked = entry.places > 0 && entry.parked >= entry.places;
    match (only_parked, entry.parked_only) {
        (true, None) => {
            *next_order += 1;
            entry.parked_only = Some(*next_order);
            parked_only.insert(*next_order, name.clone());
        }
        (false, Some(order)) => {
            entry.parked_only = None;
            parked_only.remove(&order);
        }
        _ => {}
    }
}

fn auto_number(name: &str) -> Option<u64> {
    name.strip_prefix(AUTO_ROOM_PREFIX)?.parse().ok()
}

/// Waits, at most `within`, until the room behind `handle` has handled everything sent to it
/// before: the events a session's last inputs caused are then in its queue.
pub(crate) async fn settle(handle: &RoomHandle, within: Duration) {
    let (reply, answer) = oneshot::channel();
    let _ = tokio::time::timeout(within, async {
        handle.send(Command::Settle { reply }).await;
        let _ = answer.await;
    })
    .await;
}

/// How long a join waits for the room's answer before it counts as refused.
pub const JOIN_WAIT: Duration = Duration::from_secs(5);

/// Asks the room behind `handle` to take `player` with its join `options`, whose session
/// replaces the session `replaces` of the same player id (see [`RoomContext::replaces`]). On
/// refusal (or no answer within [`JOIN_WAIT`]) the place is given back.
pub(crate) async fn join(
    handle: &RoomHandle,
    player: &Player,
    replaces: Option<u64>,
    options: Bytes,
) -> Result<(), Refusal> {
    let (reply, answer) = oneshot::channel();
    handle
        .send(Command::Join {
            player: player.clone(),
            replaces,
            options,
            reply,
        })
        .await;
    let refusal = match tokio::time::timeout(JOIN_WAIT, answer).await {
        Ok(Ok(Ok(()))) => return Ok(()),
        Ok(Ok(Err(refusal))) => refusal,
        Ok(Err(_)) => Refusal::new("the room closed"),
        Err(_) => Refusal::new("the room did not answer"),
    };
    handle.refused();
    Err(refusal)
}

/// Commands a room handles in one pass before it looks at its tick and timers again.
const COMMANDS_PER_PASS: usize = 32;

/// The task that owns one room.
async fn run_room<R: Room>(
    mut room: R,
    address: Arc<Address>,
    mut commands: mpsc::Receiver<Command>,
    default_tick_hz: u32,
) {
    let name = address.name.clone();
    let mut members = Members::default();
    let opened = tokio::time::Instant::now();
    let mut clock = RoomState::opened_at(opened);
    clock.listing.label = address.label.clone();
    let rate = room.tick_rate_hz().unwrap_or(default_tick_hz);
    let mut ticker = (rate > 0).then(|| {
        let mut interval = tokio::time::interval(Duration::from_secs(1) / rate);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        interval
    });
    let mut asleep = false;
    let mut batch = Vec::new();
    'room: loop {
        if std::mem::take(&mut clock.listing_changed) {
            address.publish(&clock.listing);
        }
        let ticking = ticker.is_some() && room.wants_tick();
        if ticking && asleep {
            // Woken by a command: the next tick is a period from now, as after any tick.
            if let Some(ticker) = ticker.as_mut() {
                ticker.reset();
            }
        }
        asleep = !ticking;
        let next_tick = async {
            match ticker.as_mut() {
                Some(ticker) => ticker.tick().await,
                None => std::future::pending().await,
            }
        };
        let next_timer = clock.next_deadline().map(|deadline| opened + deadline);
        let command = tokio::select! {
            command = commands.recv() => command,
            _ = next_tick, if ticking => {
                clock.tick += 1;
                clock.next_hook();
                let tick = clock.tick;
                room.tick(&mut RoomContext::new(&name, &members, &mut clock), tick);
                continue;
            }
            () = sleep_until(next_timer), if next_timer.is_some() => {
                clock.next_hook();
                while let Some(key) = clock.pop_due() {
                    room.timer(&mut RoomContext::new(&name, &members, &mut clock), key);
                }
                continue;
            }
        };
        let Some(first) = command else {
            break;
        };
        // The commands already queued are handled in this pass, without going back to the
        // wait: a room relaying inputs takes them in batches, as a session reads its frames,
        // and takes each batch off its queue in one go (one release of their slots, not one
        // per command). The batch's buffer is given back when a pass finds nothing queued.
        if commands.is_empty() {
            if batch.capacity() > 0 {
                batch = Vec::new();
            }
        } else {
            take_queued(&mut commands, &mut batch, COMMANDS_PER_PASS - 1).await;
        }
        for command in std::iter::once(first).chain(batch.drain(..)) {
            if std::mem::take(&mut clock.listing_changed) {
                address.publish(&clock.listing);
            }
            clock.next_hook();
            if handle(&mut room, &name, &mut members, &mut clock, command).is_break() {
                break 'room;
            }
        }
    }
    clock.next_hook();
    room.dispose(&mut RoomContext::new(&name, &members, &mut clock));
}

/// Takes up to `limit` commands already queued into `batch`, without waiting for more.
async fn take_queued(
    commands: &mut mpsc::Receiver<Command>,
    batch: &mut Vec<Command>,
    limit: usize,
) {
    std::future::poll_fn(|cx| {
        // Pending only when nothing is queued (or the task's budget is spent): the commands
        // are then taken on the next pass.
        let _ = commands.poll_recv_many(cx, batch, limit);
        Poll::Ready(())
    })
    .await;
}

/// One command to the room. Breaks when the room is to close: told to, or its last member left.
fn handle<R: Room>(
    room: &mut R,
    name: &str,
    members: &mut Members,
    clock: &mut RoomState,
    command: Command,
) -> ControlFlow<()> {
    match command {
        Command::Join {
            player,
            replaces,
            options,
            reply,
        } => {
            // The same player logging in again: its old session is no longer a member
            // (its leave, when it comes, is not the room's), unless the room refuses the
            // new one.
            let old = replaces.and_then(|session| members.remove(&session));
            let mut context = RoomContext::joining(name, members, clock, &player);
            context.replacing = old.as_ref().map(Player::session_id);
            context.options = &options;
            let answer = room.join(&mut context, &player);
            if answer.is_ok() {
                members.insert(player.session_id(), player);
            } else if let Some(old) = old {
                members.insert(old.session_id(), old);
            }
            // A join whose session gave up waiting is still a member: its leave follows.
            let _ = reply.send(answer);
        }
        Command::Input {
            session,
            seq,
            payload,
        } => {
            if let Some(player) = members.get(&session) {
                room.input(
                    &mut RoomContext::new(name, members, clock),
                    player,
                    seq,
                    payload,
                );
            }
        }
        Command::Inputs { session, inputs } => {
            // The room cannot change its members while it takes an input: one lookup.
            if let Some(player) = members.get(&session) {
                for (seq, payload) in inputs {
                    clock.next_hook();
                    room.input(
                        &mut RoomContext::new(name, members, clock),
                        player,
                        seq,
                        payload,
                    );
                }
            }
        }
        Command::Leave { session, why, last } => {
            if let Some(player) = members.remove(&session) {
                room.leave(&mut RoomContext::new(name, members, clock), &player, why);
            }
            if last {
                return ControlFlow::Break(());
            }
        }
        Command::Disconnected { session, why } => {
            if let Some(player) = members.get(&session) {
                room.disconnected(&mut RoomContext::new(name, members, clock), player, why);
            }
        }
        Command::Reconnected { session } => {
            if let Some(player) = members.get(&session) {
                room.reconnected(&mut RoomContext::new(name, members, clock), player);
            }
        }
        Command::Drain { left, reply } => {
            room.draining(&mut RoomContext::new(name, members, clock), left);
            let _ = reply.send(());
        }
        Command::Signal { payload, reply } => {
            let answer = room.signal(&mut RoomContext::new(name, members, clock), payload);
            let _ = reply.send(answer);
        }
        Command::Dispose => return ControlFlow::Break(()),
        Command::Settle { reply } => {
            let _ = reply.send(());
        }
    }
    ControlFlow::Continue(())
}

/// Sleeps until `deadline`, or for ever without one.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use tokio::time::Instant;

    use super::{Command, Inputs, claims_auto_prefix};
    use crate::api::game::{Game, NewRoom, Player, Refusal, Room, RoomContext};
    use crate::testkit::TestServer;

    #[test]
    fn inputs_read_together_go_as_one_command_in_order() {
        assert!(
            Inputs::default().into_command(7).is_none(),
            "no inputs, no command"
        );
        let mut one = Inputs::default();
        one.push(1, Bytes::from_static(b"a"));
        let Some(Command::Input {
            session: 7,
            seq: 1,
            payload,
        }) = one.into_command(7)
        else {
            panic!("one input goes as a plain input");
        };
        assert_eq!(payload, "a");
        let mut many = Inputs::default();
        for seq in 1..=40u64 {
            many.push(seq, Bytes::from(seq.to_string()));
        }
        let Some(Command::Inputs { session, inputs }) = many.into_command(7) else {
            panic!("several inputs go together");
        };
        assert_eq!(session, 7);
        let expected: Vec<(u64, Bytes)> = (1..=40u64)
            .map(|seq| (seq, Bytes::from(seq.to_string())))
            .collect();
        assert_eq!(inputs, expected);
    }

    /// Answers each input with the room's time as the hook read it, and, two seconds after the
    /// first input, a timer's time.
    struct Clocked;
    struct ClockedRoom {
        timer_set: bool,
    }

    fn reading(kind: u8, elapsed: Duration) -> Bytes {
        let mut payload = vec![kind];
        payload.extend_from_slice(&(elapsed.as_nanos() as u64).to_be_bytes());
        Bytes::from(payload)
    }

    fn read(payload: &[u8]) -> (u8, Duration) {
        let nanos = u64::from_be_bytes(payload[1..9].try_into().expect("8 bytes"));
        (payload[0], Duration::from_nanos(nanos))
    }

    impl Room for ClockedRoom {
        fn input(&mut self, room: &mut RoomContext<'_>, from: &Player, _: u64, _: Bytes) {
            room.send(from, reading(b'i', room.elapsed()));
            if !std::mem::replace(&mut self.timer_set, true) {
                room.after(Duration::from_secs(2), 1).expect("one timer");
            }
        }

        fn timer(&mut self, room: &mut RoomContext<'_>, _: u64) {
            room.broadcast(reading(b't', room.elapsed()));
        }
    }

    impl Game for Clocked {
        type Config = ();
        type Room = ClockedRoom;
        fn open(&self, _: &NewRoom<'_>) -> Result<ClockedRoom, Refusal> {
            Ok(ClockedRoom { timer_set: false })
        }
    }

    /// A live room reads its clock once per hook (see `RoomState::elapsed`): each hook sees the
    /// time it runs at, not the time an earlier hook read.
    #[tokio::test(start_paused = true)]
    async fn a_live_room_reads_the_time_each_hook_runs_at() {
        let server = TestServer::start(Clocked, |_| {}).await;
        let start = Instant::now();
        let mut client = server.join("clocked", "clock").await.expect("welcome");
        tokio::time::sleep(Duration::from_secs(3)).await;
        client.input(Bytes::from_static(b"now")).await;
        let (kind, first) = read(&client.next_event().await.expect("an answer"));
        assert_eq!(kind, b'i');
        assert!(
            first >= Duration::from_secs(3) && first <= start.elapsed(),
            "the first input at {first:?}, {:?} after the join began",
            start.elapsed()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        client.input(Bytes::from_static(b"later")).await;
        let (kind, second) = read(&client.next_event().await.expect("an answer"));
        assert_eq!(kind, b'i');
        assert!(
            second >= first + Duration::from_secs(1) && second <= start.elapsed(),
            "the second input at {second:?}, the first at {first:?}"
        );
        let (kind, timer) = read(&client.next_event().await.expect("the timer"));
        assert_eq!(kind, b't');
        let due = first + Duration::from_secs(2);
        assert!(
            timer >= due && timer < due + Duration::from_millis(100),
            "the timer due at {due:?} ran at {timer:?}"
        );
        server.stop().await;
    }

    #[test]
    fn the_automatic_prefix_is_recognised_in_any_case_and_any_compatible_spelling() {
        for claimed in [
            "auto-0",
            "AUTO-0",
            "Auto-x",
            "\u{FF41}uto-0",
            "\u{FF21}\u{FF35}\u{FF34}\u{FF2F}\u{FF0D}7",
        ] {
            assert!(claims_auto_prefix(claimed), "{claimed:?}");
        }
        for free in ["auto", "autumn-1", "lobby", "", "au-to-1", "\u{0430}uto-1"] {
            assert!(!claims_auto_prefix(free), "{free:?}");
        }
    }
}
