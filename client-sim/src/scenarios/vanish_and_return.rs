//! `vanish-and-return`: the field report's server-side case 1, "had its cable pulled: nothing at
//! all; only a timeout ends the connection", with the cable plugged back in after the server
//! gave up, as far as loopback can show it.
//!
//! In a private room the client plays, acknowledges the events, writes a burst of inputs, then
//! neither reads nor writes with the socket open. It waits out the idle timeout the server
//! announced in `Welcome` (no hard-coded time), then reads what is left up to the server's reset
//! (or EOF). It reconnects with its resume token and the last event it read, must get
//! `Welcome{resumed}` for the same session, resends every input above `Welcome.last_input_seq`,
//! plays on and quits with `Bye`, checking that no event was lost or repeated and every input
//! came back exactly once.
//!
//! The server must record two closes: `idle_timeout` for the silent connection (the session is
//! parked, not ended, so the resume finds it) and `client_quit` for the resumed one.

use super::resume::{self, Break};
use super::{Instance, Verdict};

pub(crate) async fn run(inst: &Instance) -> Verdict {
    resume::run(inst, Break::Vanish).await
}
