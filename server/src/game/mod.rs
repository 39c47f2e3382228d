//! Where game logic goes. The server calls a [`Game`] at four points of a player's life and
//! never waits on it: every call is synchronous, and events go out through [`Player::send`],
//! which queues without blocking.

mod rooms;

use bytes::Bytes;

pub use rooms::Rooms;

use crate::close::CloseReason;
use crate::registry::Player;

/// The hooks a game implements. Implementations are shared by every session task, so they keep
/// their state behind their own locks and must not block for long.
pub trait Game: Send + Sync + 'static {
    /// A player completed the handshake (`requested_room` from `Hello`, possibly empty) or sent
    /// `Join`. Returns the room the player is now in, which the server reports to the client.
    fn join(&self, player: &Player, requested_room: &str) -> String;

    /// A player's input, in sequence order, each sequence number once.
    fn input(&self, player: &Player, seq: u64, payload: Bytes);

    /// The player's session ended for good, with the reason the server recorded for the
    /// connection that ended it. Called once per player session: after the connection closed, or
    /// for a parked session when the grace window passed without a resume.
    fn leave(&self, player: &Player, reason: CloseReason);

    /// The player's connection broke and the session is parked for `session.resume_grace`: the
    /// player has not left. Events sent meanwhile are queued and replayed if it comes back.
    fn disconnected(&self, _player: &Player, _reason: CloseReason) {}

    /// A parked player resumed on a new connection.
    fn reconnected(&self, _player: &Player) {}

    /// Called `game.tick_rate_hz` times a second with an increasing tick number.
    fn tick(&self, tick: u64);
}
