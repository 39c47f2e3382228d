//! Why a player left a room.

use crate::close::CloseReason;

/// Why a player left a room for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leave {
    /// Its session ended, for this reason (a parked session that was never resumed carries the
    /// reason its connection broke with).
    Closed(CloseReason),
    /// It moved to another room with `Join`.
    Moved,
}
