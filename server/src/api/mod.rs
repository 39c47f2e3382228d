//! The game API: what a game implements, and the handles the engine gives it.

pub(crate) mod game;
pub(crate) mod leave;
pub mod page;
pub(crate) mod rooms;
pub(crate) mod state;
