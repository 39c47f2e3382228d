//! Where a player is: the room it holds a place in, as the player sees it. The player tells its
//! place when its connection breaks, when it comes back and when it leaves for good; the room
//! directory gives the place (see `crate::rooms`).

use std::fmt::Debug;

use crate::close::CloseReason;

/// A place in a room, shared by every player in that room.
pub(crate) trait Place: Debug + Send + Sync {
    /// The room's name.
    fn name(&self) -> &str;
    /// The session `session` moved to another room.
    fn moved(&self, session: u64);
    /// The session `session` left for good: it ended for `why`; `parked`: it was parked for
    /// resume and did not come back.
    fn left(&self, session: u64, why: CloseReason, parked: bool);
    /// The session's connection broke and it is parked for resume.
    fn disconnected(&self, session: u64, why: CloseReason);
    /// The parked session came back.
    fn reconnected(&self, session: u64);
}
