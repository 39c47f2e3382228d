//! The demo game "rooms", the game `game-server` serves: players join a room, every input is
//! relayed to everyone in the room (sender included, so a room of one is an echo path), and on
//! the tick after anything changed the room broadcasts its state. Small, but it exercises every
//! path a real game uses: fan-out through bounded queues, a tick loop, joins and leaves.
//!
//! A player that opens a named room with the join options `password=...` makes it private:
//! others get in only with the same options. Rooms publish the label `private` or `public`, so
//! the admin port's `GET /rooms?label=public` lists the ones anybody may join. A player who
//! names no room and sends `lobby=NAME` is placed in an automatic room of that lobby (labelled
//! `lobby=NAME`), with the players who asked for the same. With
//! `game.room_seconds` set, a named room's players are ended after that long (a timer the room
//! sets when its first player arrives); when the server drains, a room with news sends its last
//! `State` before the `Bye`.
//!
//! It is built only on the engine's public API, like any game. Its payload format is in
//! [`payload`], shared with client-sim and the test clients.

pub mod payload;

use std::time::Duration;

use bytes::Bytes;
use game_engine::{Game, GameConfig, Leave, NewRoom, Player, Refusal, Room, RoomContext};
use serde::{Deserialize, Serialize};

use crate::payload::DemoEvent;

/// The browser client `game-server` serves at `/play` on its admin port (with
/// `server.websocket_listen` set): one HTML file whose inline script is the TypeScript client
/// package and the page's own code (`clients/typescript/page/play.ts`), bundled by `npm run page`
/// from `static/play.src.html`; nothing is built at run time. It plays the
/// demo over WebSocket, shows its connection, resumes after a network blip, and exposes
/// `window.game` (`state`, `sessionId`, `leave()`, `snapshot()`) for tests. `?player=`, `?room=`,
/// `?token=` and `?ws=` override its defaults.
pub const PLAY_PAGE: &str = include_str!("../static/play.html");

/// The demo's `[game]` section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoomsConfig {
    /// Send a `Presence` event to the room when a player joins or leaves.
    pub announce_presence: bool,
    /// Most players in a room a client names itself; 0 = no limit. (Automatic rooms hold
    /// `rooms.auto_room_capacity`.)
    pub named_room_capacity: usize,
    /// A named room's lifetime in seconds, from its first player: then every member is ended
    /// with "the room's time is up"; 0 = no limit.
    pub room_seconds: u64,
}

impl GameConfig for RoomsConfig {
    const DEFAULT_TOML: &'static str = r#"
[game]
# The demo game "rooms" (the game game-server serves). true: every member gets a Presence
# event when a player joins or leaves its room (membership also shows in State events).
announce_presence = false
# Most players in a room that clients name themselves; a Hello or Join past it is refused
# ("the room is full"). 0 = no limit.
named_room_capacity = 0
# A named room's lifetime in seconds from its first player: then every member gets
# Bye{game_ended} "the room's time is up". 0 = no limit.
room_seconds = 0
"#;
}

/// The demo game.
#[derive(Debug, Clone, Default)]
pub struct Rooms {
    config: RoomsConfig,
}

impl Rooms {
    /// The demo with its configuration.
    pub fn new(config: RoomsConfig) -> Rooms {
        Rooms { config }
    }
}

impl Game for Rooms {
    type Config = RoomsConfig;
    type Room = DemoRoom;

    fn automatic_label(&self, options: &[u8]) -> Option<String> {
        options
            .starts_with(LOBBY)
            .then(|| String::from_utf8_lossy(options).into_owned())
    }

    fn open(&self, room: &NewRoom<'_>) -> Result<DemoRoom, Refusal> {
        let named = !room.is_automatic();
        Ok(DemoRoom {
            config: self.config.clone(),
            capacity: if named {
                self.config.named_room_capacity
            } else {
                0
            },
            password: (named && room.options().starts_with(PASSWORD))
                .then(|| room.options().to_vec()),
            lifetime: (named && self.config.room_seconds > 0)
                .then(|| Duration::from_secs(self.config.room_seconds)),
            changed: false,
            inputs_since_tick: 0,
        })
    }
}

/// Join options that make the named room they open private: `password=...`.
pub const PASSWORD: &[u8] = b"password=";

/// Join options that choose the automatic rooms of one lobby: `lobby=...`.
pub const LOBBY: &[u8] = b"lobby=";

/// The key of the timer that ends a room's lifetime.
const TIME_UP: u64 = 1;

/// One room of the demo.
#[derive(Debug)]
pub struct DemoRoom {
    config: RoomsConfig,
    capacity: usize,
    /// A private room's join options, which every joiner must present.
    password: Option<Vec<u8>>,
    lifetime: Option<Duration>,
    /// Something changed since the last State event.
    changed: bool,
    inputs_since_tick: u32,
}

impl DemoRoom {
    fn presence(&self, room: &RoomContext<'_>, player: &Player, joined: bool) {
        if self.config.announce_presence {
            room.broadcast(
                DemoEvent::Presence {
                    joined,
                    player: player.player_id().to_owned(),
                }
                .to_bytes(),
            );
        }
    }
}

impl Room for DemoRoom {
    fn join(&mut self, room: &mut RoomContext<'_>, player: &Player) -> Result<(), Refusal> {
        if self.capacity > 0 && room.len() >= self.capacity {
            return Err(Refusal::new(format!(
                "the room is full ({} players)",
                self.capacity
            )));
        }
        if self
            .password
            .as_deref()
            .is_some_and(|password| room.options() != password)
        {
            return Err(Refusal::new(
                "the room is private: its password is missing or wrong",
            ));
        }
        if room.is_empty() {
            // An automatic room opened for a lobby keeps the lobby's label.
            if room.label().is_none() {
                let label = if self.password.is_some() {
                    "private"
                } else {
                    "public"
                };
                room.set_label(label).expect("a short label");
            }
            if let Some(lifetime) = self.lifetime
                && !room.pending(TIME_UP)
            {
                room.after(lifetime, TIME_UP).expect("one timer");
            }
        }
        self.changed = true;
        self.presence(room, player, true);
        Ok(())
    }

    fn input(&mut self, room: &mut RoomContext<'_>, player: &Player, seq: u64, data: Bytes) {
        self.inputs_since_tick = self.inputs_since_tick.saturating_add(1);
        self.changed = true;
        room.broadcast(payload::relay(player.player_id(), seq, &data));
    }

    fn leave(&mut self, room: &mut RoomContext<'_>, player: &Player, _why: Leave) {
        self.changed = true;
        self.presence(room, player, false);
    }

    fn timer(&mut self, room: &mut RoomContext<'_>, key: u64) {
        if key == TIME_UP {
            for member in room.members() {
                room.end(member, "the room's time is up");
            }
        }
    }

    fn draining(&mut self, room: &mut RoomContext<'_>, _left: Duration) {
        // What the next tick would have said, said before the Bye.
        let tick = room.tick() + 1;
        self.tick(room, tick);
    }

    fn wants_tick(&self) -> bool {
        // Nothing to report: no ticks until a player joins, plays or leaves.
        self.changed
    }

    fn tick(&mut self, room: &mut RoomContext<'_>, tick: u64) {
        if !std::mem::take(&mut self.changed) {
            return;
        }
        room.broadcast(
            DemoEvent::State {
                tick,
                members: u32::try_from(room.len()).unwrap_or(u32::MAX),
                inputs: std::mem::take(&mut self.inputs_since_tick),
            }
            .to_bytes(),
        );
    }
}
