//! What the server holds for its players, in bytes: each session's footprint and the budget.

pub(crate) mod budget;
