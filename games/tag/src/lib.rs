//! "tag": a game of tag on the engine, written only against its documented API.
//!
//! One player in each room is "it". It tags another player by session id; the tagged player
//! becomes it, and the tagger scores; no tag-backs for `tag_back_immunity_ms`. A player whose
//! connection broke is away (the engine parks its session for resume): it cannot be tagged, and
//! if it was it, another player becomes it until it is back. A player who logs in again without
//! resuming keeps its score. A player away longer than `reconnect_grace_ms` (0: not at all) is
//! ended by the room, and its resume is refused with the room's reason; the server's
//! `session.resume_grace` bounds the wait in any case. With `round_seconds` set, a round ends on time (a room timer), the
//! most tags win, and the scores start over; when the server drains, the round ends there.
//!
//! Payloads are UTF-8 text, one command or event per message:
//! - input: `tag SESSION`;
//! - events: `it SESSION` (who is it now; also the first event a newcomer gets), `joined SESSION
//!   PLAYER`, `rejoined OLD NEW` (the same player on a new session), `tagged BY SESSION`, `away
//!   SESSION`, `back SESSION`, `left SESSION`, `round N won SESSION TAGS` (or `round N won
//!   nobody 0`), and to the sender alone `refused WHY`.
//!
//! A malformed input ends the sender's session with the game's reason.
//!
//! Each room publishes the label `tag` in the room listing, and locks itself while it is full.
//! Signals: `standings` answers `SESSION TAGS` lines, best first; `end-round` ends the round at
//! once and answers its result line.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;
use game_engine::config::Problem;
use game_engine::{
    CloseReason, Game, GameConfig, Leave, NewRoom, Player, Refusal, Room, RoomContext,
};
use serde::{Deserialize, Serialize};

/// The `[game]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagConfig {
    /// Most players in one room.
    pub players_per_room: usize,
    /// Length of a round in seconds; 0 = endless.
    pub round_seconds: u32,
    /// How long a tagged player may not tag back the player who tagged it, in milliseconds.
    pub tag_back_immunity_ms: u32,
    /// How long the room waits for a player whose connection broke, in milliseconds; 0 ends it
    /// at once. The server's `session.resume_grace` bounds it.
    pub reconnect_grace_ms: u32,
}

impl Default for TagConfig {
    fn default() -> Self {
        TagConfig {
            players_per_room: 16,
            round_seconds: 120,
            tag_back_immunity_ms: 1000,
            reconnect_grace_ms: 60_000,
        }
    }
}

impl GameConfig for TagConfig {
    const DEFAULT_TOML: &'static str = r#"
[game]
# Tag. Most players in one room; the next is refused ("the room is full").
players_per_room = 16
# A round lasts this long; then the most tags win and the scores start over. 0 = endless.
round_seconds = 120
# A tagged player may not tag back the player who tagged it for this long.
tag_back_immunity_ms = 1000
# How long the room waits for a player whose connection broke; 0 ends it at once (its resume is
# refused with the room's reason). session.resume_grace bounds it.
reconnect_grace_ms = 60000
"#;

    fn validate(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        if self.players_per_room < 2 {
            problems.push(Problem {
                key: "game.players_per_room".to_owned(),
                message: "must be at least 2: tag needs someone to tag".to_owned(),
            });
        }
        if self.round_seconds > 86_400 {
            problems.push(Problem {
                key: "game.round_seconds".to_owned(),
                message: "must be at most 86400 (a day)".to_owned(),
            });
        }
        if self.reconnect_grace_ms > 3_600_000 {
            problems.push(Problem {
                key: "game.reconnect_grace_ms".to_owned(),
                message: "must be at most 3600000 (an hour)".to_owned(),
            });
        }
        if self.tag_back_immunity_ms > 60_000 {
            problems.push(Problem {
                key: "game.tag_back_immunity_ms".to_owned(),
                message: "must be at most 60000 (a minute)".to_owned(),
            });
        }
        problems
    }
}

/// A player's command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Tag the player with this session id.
    Tag(u64),
}

impl Command {
    /// Parses an input payload.
    pub fn parse(payload: &[u8]) -> Result<Command, String> {
        let text = std::str::from_utf8(payload).map_err(|_| "an input is UTF-8 text")?;
        match text.split_once(' ') {
            Some(("tag", target)) => target
                .parse()
                .map(Command::Tag)
                .map_err(|_| format!("not a session id: {target:?}")),
            _ => Err(format!("unknown command {text:?}; expected `tag SESSION`")),
        }
    }

    /// The input payload.
    pub fn to_bytes(self) -> Bytes {
        match self {
            Command::Tag(target) => Bytes::from(format!("tag {target}")),
        }
    }
}

/// The room's timers, by key: the round's, the tag-back immunity's, and one per away player
/// (this bit and its session id).
const ROUND_OVER: u64 = 1;
const IMMUNITY_OVER: u64 = 2;
const AWAY_TOO_LONG: u64 = 1 << 63;

/// What a player away longer than the room waits is told when it tries to resume.
pub const AWAY_TOO_LONG_REASON: &str = "you were away longer than this room waits";

/// The game of tag.
#[derive(Debug, Clone, Default)]
pub struct Tag {
    config: TagConfig,
}

impl Tag {
    /// The game with its configuration.
    pub fn new(config: TagConfig) -> Tag {
        Tag { config }
    }
}

impl Game for Tag {
    type Config = TagConfig;
    type Room = TagRoom;

    fn open(&self, _room: &NewRoom<'_>) -> Result<TagRoom, Refusal> {
        Ok(TagRoom {
            config: self.config.clone(),
            it: None,
            immune: None,
            away: BTreeSet::new(),
            scores: BTreeMap::new(),
            round: 1,
        })
    }
}

/// One room of tag.
#[derive(Debug)]
pub struct TagRoom {
    config: TagConfig,
    /// Who is it.
    it: Option<u64>,
    /// Who it may not tag back yet.
    immune: Option<u64>,
    /// Members whose connection broke: parked, not gone.
    away: BTreeSet<u64>,
    /// Tags this round, by member.
    scores: BTreeMap<u64, u32>,
    round: u64,
}

impl TagRoom {
    /// Who is it now.
    pub fn it(&self) -> Option<u64> {
        self.it
    }

    /// A member's tags this round.
    pub fn score(&self, session: u64) -> u32 {
        self.scores.get(&session).copied().unwrap_or(0)
    }

    /// Makes the first member who is here (lowest session id) it, or nobody.
    fn pass_it(&mut self, room: &mut RoomContext<'_>, except: u64) {
        let next = self
            .scores
            .keys()
            .copied()
            .find(|session| *session != except && !self.away.contains(session));
        self.it = next;
        if let Some(it) = next {
            room.broadcast(text(format!("it {it}")));
        }
    }

    fn tag(&mut self, room: &mut RoomContext<'_>, player: &Player, target: u64) {
        let refuse = |why: &str| {
            room.send(player, text(format!("refused {why}")));
        };
        if self.it != Some(player.session_id()) {
            return refuse("only it can tag");
        }
        if target == player.session_id() {
            return refuse("it cannot tag itself");
        }
        if room.member(target).is_none() {
            return refuse("no such player in this room");
        }
        if self.away.contains(&target) {
            return refuse("that player is away");
        }
        if self.immune == Some(target) {
            return refuse("no tag-backs yet");
        }
        *self.scores.entry(player.session_id()).or_default() += 1;
        self.it = Some(target);
        room.cancel(IMMUNITY_OVER);
        self.immune = None;
        if self.config.tag_back_immunity_ms > 0 {
            self.immune = Some(player.session_id());
            let immunity = Duration::from_millis(u64::from(self.config.tag_back_immunity_ms));
            // At most two timers are ever pending: the bound cannot be reached.
            let _ = room.after(immunity, IMMUNITY_OVER);
        }
        room.broadcast(text(format!("tagged {} {target}", player.session_id())));
        room.broadcast(text(format!("it {target}")));
    }
}

impl TagRoom {
    /// Ends the round: the most tags win (the lowest session id among equals), scores start
    /// over.
    fn end_round(&mut self, room: &mut RoomContext<'_>) -> String {
        let best = self
            .scores
            .iter()
            .max_by_key(|(session, tags)| (**tags, std::cmp::Reverse(**session)))
            .filter(|(_, tags)| **tags > 0);
        let line = match best {
            Some((session, tags)) => format!("round {} won {session} {tags}", self.round),
            None => format!("round {} won nobody 0", self.round),
        };
        room.broadcast(text(line.clone()));
        self.scores.values_mut().for_each(|tags| *tags = 0);
        self.round += 1;
        line
    }

    /// The listing: the label `tag`, locked while `members` fill the room.
    fn publish(&self, room: &mut RoomContext<'_>, members: usize) {
        if room.label().is_none() {
            // A short constant: within the bound.
            let _ = room.set_label("tag");
        }
        room.set_locked(members >= self.config.players_per_room);
    }

    fn start_round_clock(&self, room: &mut RoomContext<'_>) {
        if self.config.round_seconds > 0 && !room.pending(ROUND_OVER) {
            let _ = room.after(
                Duration::from_secs(u64::from(self.config.round_seconds)),
                ROUND_OVER,
            );
        }
    }
}

fn text(line: String) -> Bytes {
    Bytes::from(line)
}

impl Room for TagRoom {
    fn join(&mut self, room: &mut RoomContext<'_>, player: &Player) -> Result<(), Refusal> {
        if room.len() >= self.config.players_per_room {
            return Err(Refusal::new(format!(
                "the room is full ({} players)",
                self.config.players_per_room
            )));
        }
        let session = player.session_id();
        match room.replaces() {
            // The same player on a new session: it keeps its score, and its turn as it.
            Some(old) => {
                let score = self.scores.remove(&old).unwrap_or(0);
                self.scores.insert(session, score);
                self.away.remove(&old);
                if self.it == Some(old) {
                    self.it = Some(session);
                }
                if self.immune == Some(old) {
                    self.immune = Some(session);
                }
                room.broadcast(text(format!("rejoined {old} {session}")));
            }
            None => {
                self.scores.insert(session, 0);
                room.broadcast(text(format!("joined {session} {}", player.player_id())));
            }
        }
        let it = *self.it.get_or_insert(session);
        room.send(player, text(format!("it {it}")));
        self.start_round_clock(room);
        self.publish(room, room.len() + 1);
        Ok(())
    }

    fn input(&mut self, room: &mut RoomContext<'_>, player: &Player, _seq: u64, payload: Bytes) {
        match Command::parse(&payload) {
            Ok(Command::Tag(target)) => self.tag(room, player, target),
            Err(why) => room.end(player, format!("invalid input: {why}")),
        }
    }

    fn leave(&mut self, room: &mut RoomContext<'_>, player: &Player, _why: Leave) {
        self.publish(room, room.len());
        let session = player.session_id();
        self.scores.remove(&session);
        self.away.remove(&session);
        if self.immune == Some(session) {
            self.immune = None;
        }
        room.broadcast(text(format!("left {session}")));
        if self.it == Some(session) {
            self.pass_it(room, session);
        }
    }

    fn disconnected(&mut self, room: &mut RoomContext<'_>, player: &Player, _why: CloseReason) {
        let session = player.session_id();
        match self.config.reconnect_grace_ms {
            0 => room.end(player, AWAY_TOO_LONG_REASON),
            grace => {
                // One timer per away player: the room's bound of timers is far above its cap of
                // players.
                let _ = room.after(
                    Duration::from_millis(u64::from(grace)),
                    AWAY_TOO_LONG | session,
                );
            }
        }
        self.away.insert(session);
        room.broadcast_except(player, text(format!("away {session}")));
        if self.it == Some(session) {
            self.pass_it(room, session);
        }
    }

    fn reconnected(&mut self, room: &mut RoomContext<'_>, player: &Player) {
        let session = player.session_id();
        room.cancel(AWAY_TOO_LONG | session);
        self.away.remove(&session);
        room.broadcast(text(format!("back {session}")));
        if self.it.is_none() {
            self.it = Some(session);
        }
        if let Some(it) = self.it {
            room.send(player, text(format!("it {it}")));
        }
    }

    fn timer(&mut self, room: &mut RoomContext<'_>, key: u64) {
        match key {
            ROUND_OVER => {
                let _ = self.end_round(room);
                if !room.is_empty() {
                    self.start_round_clock(room);
                }
            }
            IMMUNITY_OVER => self.immune = None,
            away if away & AWAY_TOO_LONG != 0 => {
                if let Some(player) = room.member(away & !AWAY_TOO_LONG).cloned() {
                    room.end(&player, AWAY_TOO_LONG_REASON);
                }
            }
            _ => {}
        }
    }

    fn signal(&mut self, room: &mut RoomContext<'_>, payload: Bytes) -> Bytes {
        match &payload[..] {
            b"standings" => {
                let mut standings: Vec<(u64, u32)> =
                    self.scores.iter().map(|(s, t)| (*s, *t)).collect();
                standings.sort_by_key(|(session, tags)| (std::cmp::Reverse(*tags), *session));
                let lines: Vec<String> = standings
                    .iter()
                    .map(|(session, tags)| format!("{session} {tags}"))
                    .collect();
                text(lines.join("\n"))
            }
            b"end-round" => {
                room.cancel(ROUND_OVER);
                let line = self.end_round(room);
                if !room.is_empty() {
                    self.start_round_clock(room);
                }
                text(line)
            }
            _ => text("unknown signal; known: standings, end-round".to_owned()),
        }
    }

    fn draining(&mut self, room: &mut RoomContext<'_>, _left: Duration) {
        // The server is going away: the round ends here, and everybody hears who won.
        room.cancel(ROUND_OVER);
        let _ = self.end_round(room);
    }

    fn tick_rate_hz(&self) -> Option<u32> {
        Some(0)
    }
}
