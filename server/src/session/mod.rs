//! One player's session: its protocol state, its deadlines, how it reads and writes, and how it
//! ends.

pub(crate) mod auth;
pub(crate) mod close;
pub(crate) mod core;
pub(crate) mod driver;
pub(crate) mod reader;
pub(crate) mod stall;
pub(crate) mod watchdog;
