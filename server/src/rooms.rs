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

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio_util::task::TaskTracker;

use crate::close::CloseReason;
use crate::game::{Game, Leave, Player, Refusal, Room, RoomContext};

/// Room names with this prefix are the directory's automatic rooms: given, never chosen.
pub const AUTO_ROOM_PREFIX: &str = "auto-";

/// What a room's task is asked to do.
#[derive(Debug)]
pub(crate) enum Command {
    Join {
        player: Player,
        reply: oneshot::Sender<Result<(), Refusal>>,
    },
    Input {
        session: u64,
        seq: u64,
        payload: Bytes,
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
}

/// A place in one room: how a session reaches the room's task.
#[derive(Clone, Debug)]
pub struct RoomHandle {
    name: Arc<str>,
    generation: u64,
    commands: mpsc::Sender<Command>,
    directory: Arc<Directory>,
}

impl RoomHandle {
    /// The room's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sends a command, waiting while the room's queue is full (backpressure on the sender).
    pub(crate) async fn send(&self, command: Command) {
        // A send fails only once the room's task has ended; nothing is left to tell then.
        let _ = self.commands.send(command).await;
    }

    /// Sends without waiting; gives the command back when the room's queue is full. A room that
    /// has ended takes (and drops) it.
    pub(crate) fn try_send(&self, command: Command) -> Result<(), Command> {
        match self.commands.try_send(command) {
            Err(mpsc::error::TrySendError::Full(command)) => Err(command),
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => Ok(()),
        }
    }

    /// Sends a command from code that cannot wait: at once if the queue has room, else from a
    /// task of its own.
    pub(crate) fn send_now(&self, command: Command) {
        if let Err(mpsc::error::TrySendError::Full(command)) = self.commands.try_send(command) {
            let commands = self.commands.clone();
            tokio::spawn(async move {
                let _ = commands.send(command).await;
            });
        }
    }

    /// Gives this place back; tells the room the player left, and to close when it was the last.
    pub(crate) fn leave(&self, session: u64, why: Leave) {
        let last = self.directory.release(self);
        self.send_now(Command::Leave { session, why, last });
    }

    /// Gives back a place the room refused.
    pub(crate) fn refused(&self) {
        if self.directory.release(self) {
            self.send_now(Command::Dispose);
        }
    }
}

/// Opens a game's rooms: the one place that knows the game's types.
trait Opener: Send + Sync {
    fn open(&self, name: &str) -> Result<Box<dyn RoomRunner>, Refusal>;
}

struct GameOpener<G: Game> {
    game: Arc<G>,
}

impl<G: Game> Opener for GameOpener<G> {
    fn open(&self, name: &str) -> Result<Box<dyn RoomRunner>, Refusal> {
        Ok(Box::new(Runner(self.game.open(name)?)))
    }
}

/// A room, type-erased for the task that runs it.
trait RoomRunner: Send {
    fn run(
        self: Box<Self>,
        name: Arc<str>,
        commands: mpsc::Receiver<Command>,
        default_tick_hz: u32,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;
}

struct Runner<R: Room>(R);

impl<R: Room> RoomRunner for Runner<R> {
    fn run(
        self: Box<Self>,
        name: Arc<str>,
        commands: mpsc::Receiver<Command>,
        default_tick_hz: u32,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        Box::pin(run_room(self.0, name, commands, default_tick_hz))
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
    generation: u64,
    commands: mpsc::Sender<Command>,
    places: usize,
    auto: Option<u64>,
}

#[derive(Default)]
struct Inner {
    rooms: HashMap<Arc<str>, Entry>,
    /// Automatic rooms with space, lowest number first.
    auto_open: BTreeSet<u64>,
    next_auto: u64,
    next_generation: u64,
}

/// Every open room.
pub struct Directory {
    opener: Box<dyn Opener>,
    limits: DirectoryLimits,
    inner: Mutex<Inner>,
    tasks: TaskTracker,
    gauge: prometheus::IntGauge,
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
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Rooms open now.
    pub fn len(&self) -> usize {
        self.lock().rooms.len()
    }

    /// True when no room is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes a place in the room called `requested` (an automatic room when empty), opening it
    /// if needed. The room itself still decides, when asked to join.
    pub fn reserve(self: &Arc<Self>, requested: &str) -> Result<RoomHandle, Refusal> {
        let mut inner = self.lock();
        let name: Arc<str> = if requested.is_empty() {
            let n = match inner.auto_open.first() {
                Some(n) => *n,
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
                return Err(Refusal::new(format!(
                    "the server holds as many rooms as it may ({}); join an existing one",
                    self.limits.max_rooms
                )));
            }
            let room = match self.opener.open(&name) {
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
            inner.rooms.insert(
                name.clone(),
                Entry {
                    generation,
                    commands,
                    places: 0,
                    auto: auto_number(&name).filter(|_| requested.is_empty()),
                },
            );
            self.gauge.inc();
            let task = room.run(name.clone(), receiver, self.limits.tick_rate_hz);
            let gauge = self.gauge.clone();
            self.tasks.spawn(async move {
                task.await;
                gauge.dec();
            });
        }
        let capacity = self.limits.auto_room_capacity;
        let Inner {
            rooms, auto_open, ..
        } = &mut *inner;
        let Some(entry) = rooms.get_mut(&name) else {
            return Err(Refusal::new("the room closed"));
        };
        entry.places += 1;
        if let Some(n) = entry.auto
            && entry.places >= capacity
        {
            auto_open.remove(&n);
        }
        Ok(RoomHandle {
            name,
            generation: entry.generation,
            commands: entry.commands.clone(),
            directory: self.clone(),
        })
    }

    /// Gives a place back. Returns true when it was the last one: the room is removed from the
    /// directory (a later player opens a new one) and must be disposed of.
    fn release(&self, handle: &RoomHandle) -> bool {
        let mut inner = self.lock();
        let capacity = self.limits.auto_room_capacity;
        let Inner {
            rooms, auto_open, ..
        } = &mut *inner;
        let Some(entry) = rooms.get_mut(&handle.name) else {
            return false;
        };
        if entry.generation != handle.generation {
            return false;
        }
        entry.places = entry.places.saturating_sub(1);
        if entry.places == 0 {
            if let Some(n) = entry.auto {
                auto_open.remove(&n);
            }
            rooms.remove(&handle.name);
            return true;
        }
        if let Some(n) = entry.auto
            && entry.places < capacity
        {
            auto_open.insert(n);
        }
        false
    }

    /// Waits, at most `within`, for every room task to end (after the last players left).
    pub async fn closed(&self, within: Duration) {
        self.tasks.close();
        let _ = tokio::time::timeout(within, self.tasks.wait()).await;
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

/// Asks the room behind `handle` to take `player`. On refusal (or no answer within
/// [`JOIN_WAIT`]) the place is given back.
pub(crate) async fn join(handle: &RoomHandle, player: &Player) -> Result<(), Refusal> {
    let (reply, answer) = oneshot::channel();
    handle
        .send(Command::Join {
            player: player.clone(),
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

/// The task that owns one room.
async fn run_room<R: Room>(
    mut room: R,
    name: Arc<str>,
    mut commands: mpsc::Receiver<Command>,
    default_tick_hz: u32,
) {
    let mut members: HashMap<u64, Player> = HashMap::new();
    let mut tick = 0u64;
    let rate = room.tick_rate_hz().unwrap_or(default_tick_hz);
    let mut ticker = (rate > 0).then(|| {
        let mut interval = tokio::time::interval(Duration::from_secs(1) / rate);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        interval
    });
    let mut asleep = false;
    loop {
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
        let command = tokio::select! {
            command = commands.recv() => command,
            _ = next_tick, if ticking => {
                tick += 1;
                room.tick(&mut RoomContext::new(&name, &members, tick), tick);
                continue;
            }
        };
        let Some(command) = command else {
            break;
        };
        match command {
            Command::Join { player, reply } => {
                let answer = room.join(&mut RoomContext::new(&name, &members, tick), &player);
                if answer.is_ok() {
                    members.insert(player.session_id(), player);
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
                        &mut RoomContext::new(&name, &members, tick),
                        player,
                        seq,
                        payload,
                    );
                }
            }
            Command::Leave { session, why, last } => {
                if let Some(player) = members.remove(&session) {
                    room.leave(&mut RoomContext::new(&name, &members, tick), &player, why);
                }
                if last {
                    break;
                }
            }
            Command::Disconnected { session, why } => {
                if let Some(player) = members.get(&session) {
                    room.disconnected(&mut RoomContext::new(&name, &members, tick), player, why);
                }
            }
            Command::Reconnected { session } => {
                if let Some(player) = members.get(&session) {
                    room.reconnected(&mut RoomContext::new(&name, &members, tick), player);
                }
            }
            Command::Dispose => break,
            Command::Settle { reply } => {
                let _ = reply.send(());
            }
        }
    }
    room.dispose(&mut RoomContext::new(&name, &members, tick));
}
