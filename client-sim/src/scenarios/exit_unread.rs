//! `exit-unread`: the field report's server-side case 3, "sent many messages and exited without
//! closing the socket: part of the messages, then connection reset by peer".
//!
//! In a private room (so that every event it provokes is its own), the client sends a burst of
//! inputs, stops reading, waits until the relays sit unread in its kernel's receive buffer, and
//! closes. Closing a socket with unread data makes the kernel send RST rather than FIN, so the
//! server must record `peer_reset`.

use std::time::Duration;

use super::{During, Failure, Instance, Verdict, errors_of};

/// Inputs in the burst: well within the rate limiter's burst of 200.
const BURST: u32 = 20;
/// Time for the rest of the relays to land after the first unread byte is seen.
const SETTLE: Duration = Duration::from_millis(100);

pub(crate) async fn run(inst: &Instance) -> Verdict {
    let mut p = match inst.open(inst.private_room()).await {
        Ok(p) => p,
        Err(verdict) => return verdict,
    };
    let result = async {
        let payload = bytes::Bytes::from(vec![0x21u8; inst.opts().input_bytes]);
        p.send_inputs(BURST, payload)
            .await
            .during("sending the burst")?;
        if !p.conn.wait_unread(p.idle).await {
            return Err(Failure::Check(format!(
                "nothing arrived within {:?} to leave unread: the server did not relay the burst",
                p.idle
            )));
        }
        tokio::time::sleep(SETTLE).await;
        Ok(())
    }
    .await;
    let errors = errors_of(&p);
    // Dropping the player closes the socket with the relays unread: RST.
    drop(p);
    inst.verdict(inst.reset_expect(), &errors, result)
}
