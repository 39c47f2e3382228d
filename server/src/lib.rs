#![deny(missing_docs)]
//! A disconnect-aware game-server engine: it notices every way a player's connection can die,
//! closes it without losing data, lets the player resume, and tells operators why each session
//! ended.
//!
//! A connection flows one way through the engine:
//!
//! ```text
//! socket -> server::listener -> transport (admission, slot, PROXY, TLS, WebSocket upgrade)
//!        -> session::driver: bytes -> core -> Hello / Join / Input -> handshake / room task
//!           room task -> RoomContext::send -> the player's outbound queue -> driver -> bytes
//!        -> the end: driver -> SessionEnd -> ops::reaper -> metrics, close log; the room hears
//!           Leave. A broken connection is parked (resume) until a Hello with its token comes.
//! ```
//!
//! Each module uses only the modules below it: `app`, `server`, `ops`, `session`, `resume`,
//! `rooms`, `api`, `transport`, `player`, and on the ground `config`, `memory`, `close`,
//! `logging`, `metric`, `shutdown`. Memory is the one value that travels back up: sessions
//! publish their footprints, the sampler adds them up against the budget, and the budget's
//! pressure flag is read where events are queued and connections admitted.
//!
//! A game is a crate that implements [`Game`] and its [`Room`]s; [`App`] runs it as a program
//! (command line, configuration, logging, signals), and [`Server`] embeds it in a program of
//! one's own: it takes bound [`Listeners`], the [`Config`], the game and a [`Shutdown`] handle,
//! so that tests bind port 0 and read the port back. `testkit` (feature `testkit`) runs a
//! game's rooms and sessions in tests.

mod api;
#[cfg(feature = "app")]
pub mod app;
mod close;
pub mod config;
mod logging;
mod memory;
mod metric;
mod ops;
mod player;
mod resume;
mod rooms;
mod server;
mod session;
mod shutdown;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
mod transport;

pub use crate::api::game::{Game, Leave, NewRoom, Player, Refusal, Room, RoomContext};
pub use crate::api::page;
pub use crate::api::rooms::{
    DEFAULT_ROOM_PAGE, MAX_ROOM_PAGE, MAX_SIGNAL_BYTES, RoomInfo, RoomPage, RoomQuery, Rooms,
    SIGNAL_WAIT, SignalError,
};
pub use crate::api::state::{LabelTooLong, MAX_LABEL_BYTES};
pub use crate::api::state::{MAX_TIMERS, TooManyTimers};
#[cfg(feature = "app")]
pub use crate::app::App;
pub use crate::close::CloseReason;
pub use crate::config::Config;
pub use crate::config::GameConfig;
pub use crate::server::{Listeners, Server, ServerError};
pub use crate::shutdown::Shutdown;
/// The most bytes of join options a client can send with a join.
pub use protocol::MAX_OPTIONS_BYTES;
