//! Session resume: a player whose connection breaks abnormally is parked for
//! `session.resume_grace` instead of leaving. Events keep queueing for the player; a `Hello`
//! carrying the session's resume token and the last event the client received takes the session
//! over on a new connection, replays every event after that one, and continues.
//!
//! Tokens are 128 random bits, single use, rotated on every resume and bound to the player id.
//! A token that can no longer resume (used, expired, overflowed, ended) leaves a tombstone for a
//! while, so that the refusal says why.

pub(crate) mod metrics;
pub(crate) mod parking;
pub(crate) mod refusal;
pub(crate) mod replay;

pub(crate) use metrics::ResumeMetrics;
pub(crate) use parking::{Carried, Parking, ParkingLimits};
pub(crate) use refusal::Eviction;
pub(crate) use replay::{PRESSURE_REPLAY_BYTES, Replay};
