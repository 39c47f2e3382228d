//! "arena": an authoritative, tick-based example game on the engine.
//!
//! Players steer; the server moves them. An input is the direction a player wants to go; every
//! tick the room integrates each player's position from its last direction at `max_speed`,
//! keeps it inside the arena, and broadcasts a snapshot of every position. Clients never say
//! where they are, so they cannot teleport. An arena holds `players_per_arena` players (more are
//! refused), and with `match_seconds` set the match ends for everyone with the game's own
//! reason, on a timer the room sets when its first player arrives. A malformed input ends the
//! sender's session, also with the game's reason. When the server drains, every player gets a
//! last snapshot (marked final) before its `Bye`.
//!
//! A player's join options choose its side: `team=red` appears in the left half, `team=blue` in
//! the right; anything else is refused with the reason. Arenas publish the label `arena` and lock
//! themselves while full or over, so a lobby lists the open ones
//! (`GET /rooms?label=arena&unlocked=true` on the admin port) and automatic placement skips them.
//!
//! Payloads (big-endian, like the protocol):
//! - input: `i16 dx, i16 dy`, each -1000..=1000, the share of `max_speed` along each axis;
//! - event: tag `1` snapshot (tag `2` for the final one, when the server drains): `u64 tick`,
//!   `u16 count`, then per player `u64 session_id, f32 x, f32 y`.

use std::collections::HashMap;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use game_engine::config::Problem;
use game_engine::{Game, GameConfig, Leave, Player, Refusal, Room, RoomContext};
use serde::{Deserialize, Serialize};

/// The arena's `[game]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArenaConfig {
    /// Most players in one arena.
    pub players_per_arena: usize,
    /// The arena is a square of this side, in units.
    pub arena_size: f32,
    /// Units per second at full deflection.
    pub max_speed: f32,
    /// Simulation steps (and snapshots) per second.
    pub tick_rate_hz: u32,
    /// Length of a match in seconds; 0 = endless.
    pub match_seconds: u32,
}

impl Default for ArenaConfig {
    fn default() -> Self {
        ArenaConfig {
            players_per_arena: 8,
            arena_size: 1000.0,
            max_speed: 200.0,
            tick_rate_hz: 20,
            match_seconds: 0,
        }
    }
}

impl GameConfig for ArenaConfig {
    const DEFAULT_TOML: &'static str = r#"
[game]
# The arena example. Most players in one arena; the next is refused ("the arena is full").
players_per_arena = 8
# The arena is a square of this side, in units.
arena_size = 1000.0
# Units per second at full deflection of an input.
max_speed = 200.0
# Simulation steps per second; every step broadcasts a snapshot.
tick_rate_hz = 20
# Length of a match in seconds: then every player gets Bye{game_ended} "the match is over".
# 0 = endless.
match_seconds = 0
"#;

    fn validate(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut check = |ok: bool, key: &str, message: &str| {
            if !ok {
                problems.push(Problem {
                    key: key.to_owned(),
                    message: message.to_owned(),
                });
            }
        };
        check(
            self.players_per_arena >= 1,
            "game.players_per_arena",
            "must be at least 1",
        );
        check(
            self.arena_size.is_finite() && self.arena_size > 0.0,
            "game.arena_size",
            "must be a positive number",
        );
        check(
            self.max_speed.is_finite() && self.max_speed >= 0.0,
            "game.max_speed",
            "must be zero or a positive number",
        );
        check(
            (1..=1000).contains(&self.tick_rate_hz),
            "game.tick_rate_hz",
            "must be between 1 and 1000",
        );
        problems
    }
}

/// A steering input, as a client sends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Steer {
    /// Share of the maximum speed along x, -1000..=1000.
    pub dx: i16,
    /// Share of the maximum speed along y, -1000..=1000.
    pub dy: i16,
}

/// Why an input is not a steering input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadInput {
    /// Not four bytes.
    #[error("an input is 4 bytes, got {0}")]
    Length(usize),
    /// A component beyond ±1000.
    #[error("a direction component is out of -1000..=1000")]
    Range,
}

impl Steer {
    /// Encodes the input payload.
    pub fn to_bytes(self) -> Bytes {
        let mut out = BytesMut::with_capacity(4);
        out.put_i16(self.dx);
        out.put_i16(self.dy);
        out.freeze()
    }

    /// Decodes an input payload.
    pub fn from_bytes(mut payload: Bytes) -> Result<Steer, BadInput> {
        if payload.len() != 4 {
            return Err(BadInput::Length(payload.len()));
        }
        let steer = Steer {
            dx: payload.get_i16(),
            dy: payload.get_i16(),
        };
        if steer.dx.unsigned_abs() > 1000 || steer.dy.unsigned_abs() > 1000 {
            return Err(BadInput::Range);
        }
        Ok(steer)
    }
}

/// One player's place in a snapshot.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Position {
    /// Whose.
    pub session_id: u64,
    /// Units from the left edge.
    pub x: f32,
    /// Units from the top edge.
    pub y: f32,
}

/// The label every arena publishes in the room listing.
pub const LABEL: &str = "arena";

/// The key of the timer that ends the match.
const MATCH_OVER: u64 = 1;

/// The side a player chose with its join options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Team {
    /// `team=red`: appears in the left half.
    Red,
    /// `team=blue`: appears in the right half.
    Blue,
}

impl Team {
    /// The team join options name: none (empty options) or `team=red` / `team=blue`.
    pub fn from_options(options: &[u8]) -> Result<Option<Team>, Refusal> {
        match options {
            b"" => Ok(None),
            b"team=red" => Ok(Some(Team::Red)),
            b"team=blue" => Ok(Some(Team::Blue)),
            _ => Err(Refusal::new(
                "join options are team=red, team=blue or nothing",
            )),
        }
    }

    /// The join options that choose this team.
    pub fn options(self) -> &'static [u8] {
        match self {
            Team::Red => b"team=red",
            Team::Blue => b"team=blue",
        }
    }
}

/// The positions of everybody in the arena after a tick.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// The room's tick.
    pub tick: u64,
    /// Everybody, by session id.
    pub positions: Vec<Position>,
    /// The last snapshot of the match: the server is draining.
    pub last: bool,
}

impl Snapshot {
    /// Encodes the event payload.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(11 + 16 * self.positions.len());
        out.put_u8(if self.last { 2 } else { 1 });
        out.put_u64(self.tick);
        out.put_u16(u16::try_from(self.positions.len()).unwrap_or(u16::MAX));
        for p in self.positions.iter().take(usize::from(u16::MAX)) {
            out.put_u64(p.session_id);
            out.put_f32(p.x);
            out.put_f32(p.y);
        }
        out.freeze()
    }

    /// Decodes an event payload; `None` if it is not a snapshot.
    pub fn from_bytes(mut payload: Bytes) -> Option<Snapshot> {
        if payload.remaining() < 11 {
            return None;
        }
        let last = match payload.get_u8() {
            1 => false,
            2 => true,
            _ => return None,
        };
        let tick = payload.get_u64();
        let count = usize::from(payload.get_u16());
        if payload.remaining() != 16 * count {
            return None;
        }
        let positions = (0..count)
            .map(|_| Position {
                session_id: payload.get_u64(),
                x: payload.get_f32(),
                y: payload.get_f32(),
            })
            .collect();
        Some(Snapshot {
            tick,
            positions,
            last,
        })
    }

    /// The position of one player.
    pub fn of(&self, session_id: u64) -> Option<Position> {
        self.positions
            .iter()
            .copied()
            .find(|p| p.session_id == session_id)
    }
}

/// The arena game.
#[derive(Debug, Clone, Default)]
pub struct Arena {
    config: ArenaConfig,
}

impl Arena {
    /// The game with its configuration.
    pub fn new(config: ArenaConfig) -> Arena {
        Arena { config }
    }
}

impl Game for Arena {
    type Config = ArenaConfig;
    type Room = ArenaRoom;

    fn open(&self, _room: &game_engine::NewRoom<'_>) -> Result<ArenaRoom, Refusal> {
        Ok(ArenaRoom {
            config: self.config.clone(),
            bodies: HashMap::new(),
            over: false,
        })
    }
}

#[derive(Debug, Clone, Copy)]
struct Body {
    x: f32,
    y: f32,
    steer: Steer,
}

/// One arena: the bodies it simulates.
#[derive(Debug)]
pub struct ArenaRoom {
    config: ArenaConfig,
    bodies: HashMap<u64, Body>,
    over: bool,
}

impl ArenaRoom {
    /// Where a newcomer appears: spread over the arena (over its team's half), the same place
    /// for the same session.
    fn spawn_point(&self, session_id: u64, team: Option<Team>) -> (f32, f32) {
        let size = self.config.arena_size;
        let a = (session_id.wrapping_mul(7919) % 1000) as f32 / 1000.0;
        let b = (session_id.wrapping_mul(104_729) % 1000) as f32 / 1000.0;
        let x = match team {
            None => a,
            Some(Team::Red) => a / 2.0,
            Some(Team::Blue) => 0.5 + a / 2.0,
        };
        (x * size, b * size)
    }

    fn snapshot(&self, tick: u64, last: bool) -> Bytes {
        let mut positions: Vec<Position> = self
            .bodies
            .iter()
            .map(|(session_id, body)| Position {
                session_id: *session_id,
                x: body.x,
                y: body.y,
            })
            .collect();
        positions.sort_by_key(|p| p.session_id);
        Snapshot {
            tick,
            positions,
            last,
        }
        .to_bytes()
    }

    /// Full arenas and finished matches take nobody from automatic placement.
    fn publish(&self, room: &mut RoomContext<'_>) {
        room.set_locked(self.over || room.len() >= self.config.players_per_arena);
    }
}

impl Room for ArenaRoom {
    fn join(&mut self, room: &mut RoomContext<'_>, player: &Player) -> Result<(), Refusal> {
        if self.over {
            return Err(Refusal::new("the match is over"));
        }
        if room.len() >= self.config.players_per_arena {
            return Err(Refusal::new(format!(
                "the arena is full ({} players)",
                self.config.players_per_arena
            )));
        }
        let team = Team::from_options(room.options())?;
        if room.is_empty() {
            room.set_label(LABEL).expect("a short label");
            if self.config.match_seconds > 0 && !room.pending(MATCH_OVER) {
                let length = Duration::from_secs(u64::from(self.config.match_seconds));
                room.after(length, MATCH_OVER).expect("one timer");
            }
        }
        let (x, y) = self.spawn_point(player.session_id(), team);
        self.bodies.insert(
            player.session_id(),
            Body {
                x,
                y,
                steer: Steer { dx: 0, dy: 0 },
            },
        );
        // The joining player is not counted by `len` yet.
        room.set_locked(room.len() + 1 >= self.config.players_per_arena);
        Ok(())
    }

    fn input(&mut self, room: &mut RoomContext<'_>, player: &Player, _seq: u64, payload: Bytes) {
        match Steer::from_bytes(payload) {
            Ok(steer) => {
                if let Some(body) = self.bodies.get_mut(&player.session_id()) {
                    body.steer = steer;
                }
            }
            Err(error) => room.end(player, format!("invalid input: {error}")),
        }
    }

    fn leave(&mut self, room: &mut RoomContext<'_>, player: &Player, _why: Leave) {
        self.bodies.remove(&player.session_id());
        self.publish(room);
    }

    fn timer(&mut self, room: &mut RoomContext<'_>, key: u64) {
        if key == MATCH_OVER {
            self.over = true;
            self.publish(room);
            for member in room.members() {
                room.end(member, "the match is over");
            }
        }
    }

    fn draining(&mut self, room: &mut RoomContext<'_>, _left: Duration) {
        room.broadcast(self.snapshot(room.tick(), true));
    }

    fn tick(&mut self, room: &mut RoomContext<'_>, tick: u64) {
        if self.over {
            return;
        }
        let dt = 1.0 / self.config.tick_rate_hz as f32;
        let step = self.config.max_speed * dt / 1000.0;
        let size = self.config.arena_size;
        for body in self.bodies.values_mut() {
            body.x = (body.x + f32::from(body.steer.dx) * step).clamp(0.0, size);
            body.y = (body.y + f32::from(body.steer.dy) * step).clamp(0.0, size);
        }
        room.broadcast(self.snapshot(tick, false));
    }

    fn tick_rate_hz(&self) -> Option<u32> {
        Some(self.config.tick_rate_hz)
    }
}
