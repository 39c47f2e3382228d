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

    /// The player's session ended, with the reason the server recorded. Called once per joined
    /// session, after the connection is closed.
    fn leave(&self, player: &Player, reason: CloseReason);

    /// Called `game.tick_rate_hz` times a second with an increasing tick number.
    fn tick(&self, tick: u64);
}
