//! The game API: what a game implements, and the handles the engine gives it.
//!
//! A game is a factory of rooms. Each room is owned by one task: its state is plain fields of
//! the game's [`Room`] type, no lock is shared between rooms, and two busy rooms run on two
//! cores. The engine calls the room's hooks in order, one at a time:
//!
//! - [`Room::join`] when a player asks to enter (from `Hello` or `Join`); the room may refuse
//!   with a reason the client receives;
//! - [`Room::input`] for each input, in sequence order, exactly once (also across a resume);
//! - [`Room::disconnected`] / [`Room::reconnected`] around a resume: the player is parked, not
//!   gone;
//! - [`Room::leave`] exactly once, when the player left for good (its session closed, or it
//!   moved to another room), with the reason;
//! - [`Room::tick`] at the room's own rate, and [`Room::timer`] when a timer it set with
//!   [`RoomContext::after`] is due;
//! - [`Room::draining`] once, when the server starts to drain: the time left to save the match,
//!   send final events and end players with the game's own reason;
//! - [`Room::dispose`] when the last player left, before the room's task ends.
//!
//! The engine decides everything about connections (queues, slow consumers, heartbeats,
//! resume); a room never sees a socket. It sends through [`RoomContext`], which puts events in
//! each player's bounded queue, and it can end a player's session with a reason of its own
//! ([`RoomContext::end`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::api::state::{LabelTooLong, MAX_LABEL_BYTES, RoomState, TooManyTimers};

pub use crate::api::leave::Leave;
use crate::api::rooms::Rooms;
use crate::close::CloseReason;
use crate::config::GameConfig;
pub use crate::player::registry::Player;

/// A game: it opens rooms.
pub trait Game: Send + Sync + 'static {
    /// The game's own configuration: the `[game]` section.
    type Config: GameConfig;
    /// One room of this game.
    type Room: Room;

    /// Opens `room` for the first player who asks for it. Refusing keeps the room closed, and
    /// the player gets the reason. Runs while the room directory is locked: keep it quick.
    fn open(&self, room: &NewRoom<'_>) -> Result<Self::Room, Refusal>;

    /// The server started: `rooms` lists the rooms and signals them, for the game's own code
    /// (a matchmaker, an HTTP hook of its own). Keep it if needed; it does not keep the server
    /// alive.
    fn started(&self, _rooms: Rooms) {}

    /// The label of the automatic room for a player who named no room, read from its join
    /// options (a mode, a region, a skill band): the engine places it in an automatic room that
    /// publishes this label, is not locked and has space, or opens one that starts with this
    /// label ([`RoomContext::label`]; the room may change it). `None`, the default: any
    /// automatic room that is not locked and has space. A label longer than
    /// [`MAX_LABEL_BYTES`](crate::MAX_LABEL_BYTES) refuses the player (`Bye{join_refused}`).
    fn automatic_label(&self, _options: &[u8]) -> Option<String> {
        None
    }
}

/// A room about to open: its name, whether the engine named it (an automatic room, for a
/// player who asked for none) or a player did, and the join options of the player whose join
/// opens it.
#[derive(Debug, Clone, Copy)]
pub struct NewRoom<'a> {
    name: &'a str,
    automatic: bool,
    options: &'a [u8],
}

impl<'a> NewRoom<'a> {
    pub(crate) fn new(name: &'a str, automatic: bool, options: &'a [u8]) -> NewRoom<'a> {
        NewRoom {
            name,
            automatic,
            options,
        }
    }

    /// The join options of the player whose join opens the room (from its `Hello` or `Join`,
    /// at most [`crate::MAX_OPTIONS_BYTES`]; empty when it sent none): a map, a mode, a
    /// private room's password. The room's [`Room::join`] sees them again for that player
    /// ([`RoomContext::options`]).
    pub fn options(&self) -> &'a [u8] {
        self.options
    }

    /// The room's name.
    pub fn name(&self) -> &'a str {
        self.name
    }

    /// True for a room the engine opened to place players who named none.
    pub fn is_automatic(&self) -> bool {
        self.automatic
    }
}

/// Why a room refused a player (or a game refused to open a room). The text reaches the client:
/// in `Bye{join_refused}` when it came with `Hello`, in `JoinRefused` when it came with `Join`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal(String);

impl Refusal {
    /// A refusal with a reason for people.
    pub fn new(reason: impl Into<String>) -> Refusal {
        Refusal(reason.into())
    }

    /// The reason.
    pub fn reason(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One room of a game, owned by one task. Every hook gets the room's context: its name, its
/// members, and the ways to reach them.
pub trait Room: Send + 'static {
    /// A player asks to enter. Refuse with [`Refusal`] (a full room, a private room); the
    /// player then stays where it was, or its session ends if it came with `Hello`.
    fn join(&mut self, _room: &mut RoomContext<'_>, _player: &Player) -> Result<(), Refusal> {
        Ok(())
    }

    /// An input of a member, in its sequence order, each sequence number once.
    fn input(&mut self, room: &mut RoomContext<'_>, player: &Player, seq: u64, payload: Bytes);

    /// A member left for good. Called exactly once per join. The player is no longer among
    /// [`RoomContext::members`].
    fn leave(&mut self, _room: &mut RoomContext<'_>, _player: &Player, _why: Leave) {}

    /// A member's connection broke and its session is parked for `session.resume_grace`: it is
    /// still a member, and events sent to it are kept for it.
    fn disconnected(&mut self, _room: &mut RoomContext<'_>, _player: &Player, _why: CloseReason) {}

    /// A parked member came back on a new connection.
    fn reconnected(&mut self, _room: &mut RoomContext<'_>, _player: &Player) {}

    /// Called at the room's tick rate with an increasing tick number.
    fn tick(&mut self, _room: &mut RoomContext<'_>, _tick: u64) {}

    /// A timer the room set with [`RoomContext::after`] is due; `key` is the one it gave.
    fn timer(&mut self, _room: &mut RoomContext<'_>, _key: u64) {}

    /// A message for the room from outside its players: the game's own code
    /// ([`Rooms::signal`](crate::Rooms::signal)) or an operator (`POST /rooms/{name}/signal`
    /// on the admin port). What the hook returns is the answer.
    fn signal(&mut self, _room: &mut RoomContext<'_>, _payload: Bytes) -> Bytes {
        Bytes::new()
    }

    /// The server started to drain: `left` is the time until the drain timeout. What the room
    /// sends now reaches its players before their `Bye{server_shutdown}`, and a player it ends
    /// ([`RoomContext::end`]) gets the game's reason instead. The engine waits for this hook
    /// (at most half of `left`) before it closes the sessions.
    fn draining(&mut self, _room: &mut RoomContext<'_>, _left: Duration) {}

    /// The last member left: the room is closing. Nothing can be sent any more.
    fn dispose(&mut self, _room: &mut RoomContext<'_>) {}

    /// Ticks per second for this room; `None` uses `rooms.tick_rate_hz`, `Some(0)` never ticks.
    fn tick_rate_hz(&self) -> Option<u32> {
        None
    }

    /// Asked after every hook: false lets the room sleep, without ticks, until its next command
    /// (a join, an input, a leave), after which it ticks again from one period later. A room
    /// that only reports changes should say whether it has one to report: a server of many quiet
    /// rooms then spends nothing on them. The tick number counts the ticks that ran.
    fn wants_tick(&self) -> bool {
        true
    }
}

/// A room's members by session id. The ids are the server's own sequence, chosen by no peer, so
/// the map hashes them with a fast unkeyed hash: a member is looked up for every input.
pub(crate) type Members = HashMap<u64, Player, rustc_hash::FxBuildHasher>;

/// A room's view of itself while a hook runs: its name, its members and the ways to reach them.
/// Every send goes through the member's bounded queue: a member that cannot keep up is closed as
/// `slow_consumer` by the engine, never waited for.
#[derive(Debug)]
pub struct RoomContext<'a> {
    name: &'a str,
    members: &'a Members,
    clock: &'a mut RoomState,
    /// In [`Room::join`], the player asking to enter: not a member yet, but the room may send
    /// to it (what it needs to know on arrival) or end it.
    joining: Option<u64>,
    /// In [`Room::join`], the member session the joining one replaces (see
    /// [`RoomContext::replaces`]).
    pub(crate) replacing: Option<u64>,
    /// In [`Room::join`], the joining player's join options.
    pub(crate) options: &'a [u8],
}

/// Sends `payload` to each of `members`: shared among them, the last one taking it without a
/// clone, so that an event for a single player is never shared at all.
fn send_each<'p>(members: impl Iterator<Item = &'p Player>, payload: Bytes) {
    let mut members = members.peekable();
    while let Some(member) = members.next() {
        if members.peek().is_none() {
            member.send(payload);
            return;
        }
        member.send(payload.clone());
    }
}

impl<'a> RoomContext<'a> {
    pub(crate) fn new(name: &'a str, members: &'a Members, clock: &'a mut RoomState) -> Self {
        RoomContext {
            name,
            members,
            clock,
            joining: None,
            replacing: None,
            options: &[],
        }
    }

    /// The context of [`Room::join`] for `player`.
    pub(crate) fn joining(
        name: &'a str,
        members: &'a Members,
        clock: &'a mut RoomState,
        player: &Player,
    ) -> Self {
        RoomContext {
            joining: Some(player.session_id()),
            ..RoomContext::new(name, members, clock)
        }
    }

    /// `player` as this room holds it: a member, or the player asking to join.
    fn reach<'p>(&'p self, player: &'p Player) -> Option<&'p Player> {
        let id = player.session_id();
        self.members
            .get(&id)
            .or((self.joining == Some(id)).then_some(player))
    }

    /// The room's name.
    pub fn name(&self) -> &str {
        self.name
    }

    /// In [`Room::join`]: the joining player's join options (from its `Hello` or `Join`, at most
    /// [`crate::MAX_OPTIONS_BYTES`]), opaque to the engine: a character, a team, a
    /// password. Empty when it sent none, and outside [`Room::join`].
    pub fn options(&self) -> &[u8] {
        self.options
    }

    /// In [`Room::join`]: the session of this room that the joining player's new session
    /// replaces. The same player id logged in again without resuming while its old session was
    /// still live or parked here; that session is no longer a member, and its
    /// [`Room::leave`] will not be called. The room may carry the player's state over to the new
    /// session id (as after a resume) or start it afresh. If the room refuses the join, the old
    /// session stays a member.
    pub fn replaces(&self) -> Option<u64> {
        self.replacing
    }

    /// The last tick number (0 before the first tick).
    pub fn tick(&self) -> u64 {
        self.clock.tick
    }

    /// Time since the room opened, on the engine's clock (Tokio's: a paused clock in a test
    /// pauses it; in the test kit's `RoomHarness`, the harness's own).
    pub fn elapsed(&self) -> Duration {
        self.clock.elapsed()
    }

    /// Calls [`Room::timer`] with `key` after `delay`. Several timers may share a key; a room
    /// has at most [`MAX_TIMERS`](crate::MAX_TIMERS) pending. Timers go with the room.
    pub fn after(&mut self, delay: Duration, key: u64) -> Result<(), TooManyTimers> {
        self.clock.schedule(delay, key)
    }

    /// Cancels every pending timer with `key`; returns how many there were.
    pub fn cancel(&mut self, key: u64) -> usize {
        self.clock.cancel(key)
    }

    /// True while a timer with `key` is pending.
    pub fn pending(&self, key: u64) -> bool {
        self.clock.pending(key)
    }

    /// Publishes a label for this room in the room listing (`GET /rooms` on the admin port,
    /// [`Rooms::list`](crate::Rooms::list)): the game mode, the map, whatever a lobby or a
    /// matchmaker filters rooms by. At most [`MAX_LABEL_BYTES`](crate::MAX_LABEL_BYTES).
    pub fn set_label(&mut self, label: impl Into<String>) -> Result<(), LabelTooLong> {
        let label = label.into();
        if label.len() > MAX_LABEL_BYTES {
            return Err(LabelTooLong(label.len()));
        }
        self.clock.listing.label = Some(Arc::from(label));
        self.clock.listing_changed = true;
        Ok(())
    }

    /// The label this room publishes.
    pub fn label(&self) -> Option<&str> {
        self.clock.listing.label.as_deref()
    }

    /// Locks or unlocks the room: a locked room is listed as such and the engine places no
    /// player in it automatically; a player naming it still reaches [`Room::join`].
    pub fn set_locked(&mut self, locked: bool) {
        if self.clock.listing.locked != locked {
            self.clock.listing.locked = locked;
            self.clock.listing_changed = true;
        }
    }

    /// True while the room is locked.
    pub fn is_locked(&self) -> bool {
        self.clock.listing.locked
    }

    /// The members, in no particular order.
    pub fn members(&self) -> impl Iterator<Item = &Player> {
        self.members.values()
    }

    /// How many members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// True when the room has no member.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The member with this session id.
    pub fn member(&self, session_id: u64) -> Option<&Player> {
        self.members.get(&session_id)
    }

    /// Sends an event to one member (or, in [`Room::join`], to the player joining). False when
    /// it was not queued: the player is not in this room (it moved, or left), its queue is full
    /// (which closes it as a slow consumer), or its session has ended.
    pub fn send(&self, player: &Player, payload: Bytes) -> bool {
        self.reach(player)
            .is_some_and(|member| member.send(payload))
    }

    /// Sends an event to every member. The payload is shared, not copied.
    pub fn broadcast(&self, payload: Bytes) {
        send_each(self.members.values(), payload);
    }

    /// Sends an event to every member but one.
    pub fn broadcast_except(&self, except: &Player, payload: Bytes) {
        let others = self
            .members
            .values()
            .filter(|member| member.session_id() != except.session_id());
        send_each(others, payload);
    }

    /// Ends a member's session by the game's own rules: after its queued events it gets
    /// `Bye{game_ended}` with `reason` as the text, and the close is counted as `game_ended`.
    /// A parked member's session ends for good: its resume is then refused. Does nothing for a
    /// player that is not in this room.
    pub fn end(&self, player: &Player, reason: impl Into<String>) {
        if let Some(member) = self.reach(player) {
            member.end(reason);
        }
    }
}
