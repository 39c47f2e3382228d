//! The player as the engine shares it between its session, its room and the operators: its
//! outbound queue, its close requests, and the registry of live players.

pub(crate) mod outbound;
pub(crate) mod place;
pub(crate) mod registry;
