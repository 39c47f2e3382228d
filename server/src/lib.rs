#![deny(missing_docs)]
//! A disconnect-aware game-server engine: it notices every way a player's connection can die,
//! closes it without losing data, lets the player resume, and tells operators why each session
//! ended.
//!
//! Data flows one way:
//!
//! ```text
//! acceptor -> session (codec + watchdog) -> reaper -> metrics / game hook
//!                 ^                                        |
//!                 +----------- outbound queue <------------+
//! ```
//!
//! A game is a crate that implements [`Game`] and its [`Room`]s; [`App`] runs it as a program
//! (command line, configuration, logging, signals), and [`Server`] embeds it in a program of
//! one's own: it takes bound [`Listeners`], the [`Config`], the game and a [`Shutdown`] handle,
//! so that tests bind port 0 and read the port back. [`testkit`] (feature `testkit`) runs a
//! game's rooms and sessions in tests.

mod api;
#[cfg(feature = "app")]
pub mod app;
pub mod config;
mod memory;
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
#[cfg(feature = "app")]
pub use crate::app::App;
pub use crate::config::Config;
pub use crate::config::GameConfig;
pub use crate::server::{Listeners, Server, ServerError};
pub use crate::session::close::CloseReason;
pub use crate::shutdown::Shutdown;
