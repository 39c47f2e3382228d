//! `roam`: a phone that moved from Wi-Fi to mobile data. The old path went silent without a
//! packet, the client noticed first and reconnects at once, long before the server's idle
//! timeout: the server still thinks the old connection alive.
//!
//! In a private room the client plays, acknowledges the events, writes a burst of inputs, then
//! leaves that socket open and silent and resumes on a new connection right away. It must get
//! `Welcome{resumed}` for the same session, and the old connection, read at last, must end with
//! `Bye{replaced}` and the server's close. It resends every input above
//! `Welcome.last_input_seq`, plays on and quits with `Bye`, checking that no event was lost or
//! repeated and every input came back exactly once.
//!
//! The server must record two closes: `replaced` for the old connection (the resume took it
//! over) and `client_quit` for the new one.

use super::resume::{self, Break};
use super::{Instance, Verdict};

pub(crate) async fn run(inst: &Instance) -> Verdict {
    resume::run(inst, Break::Roam).await
}
