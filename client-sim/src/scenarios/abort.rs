//! `abort`: an abortive close. The client sets `SO_LINGER {on, 0}` and closes, so its kernel
//! discards anything unsent and sends RST instead of FIN.
//!
//! "Bytes already sent are delivered, then ECONNRESET": the server must read the inputs, then
//! observe the reset and record `peer_reset`.

use super::{During, Instance, Verdict, errors_of, play_inputs};

/// At most this many inputs before the reset.
const MAX_INPUTS: u32 = 10;

pub(crate) async fn run(inst: &Instance) -> Verdict {
    let mut p = match inst.open(inst.shared_room()).await {
        Ok(p) => p,
        Err(verdict) => return verdict,
    };
    let played = play_inputs(
        &mut p,
        inst.opts().inputs.min(MAX_INPUTS),
        inst.opts().input_bytes,
    )
    .await;
    let errors = errors_of(&p);
    let result = played.and_then(|()| p.conn.abort().during("setting SO_LINGER {on, 0}"));
    inst.verdict(inst.reset_expect(), &errors, result)
}
