//! `reset-and-return`: a connection reset in the middle of a stream (a crashed router, a NAT
//! that dropped the mapping, a phone whose radio reset), and a player who comes straight back.
//!
//! In a private room the client plays numbered inputs while reading their relays and the room's
//! `State` events, acknowledges the events, writes a burst of inputs and closes at once with
//! `SO_LINGER {on, 0}`: RST, with inputs in flight and relays unread. After a short backoff it
//! reconnects with `Hello{resume: token, last_event_seq}`, must get `Welcome{resumed}` for the
//! same session, resends every input above `Welcome.last_input_seq`, plays on and quits with
//! `Bye`. It checks that the events over both connections run without a gap or a repeat (the
//! first replayed one is `last_event_seq + 1`) and that every input came back exactly once.
//!
//! The server must record two closes: `peer_reset` for the connection that broke (the session is
//! parked, not ended) and `client_quit` for the resumed one.

use super::resume::{self, Break};
use super::{Instance, Verdict};

pub(crate) async fn run(inst: &Instance) -> Verdict {
    resume::run(inst, Break::Reset).await
}
