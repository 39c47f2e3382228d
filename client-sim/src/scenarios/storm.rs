//! `storm`: everyone reconnecting at once, as after a server restart or a network blip.
//!
//! Storm instances never wait for the connect pacer, so all of them hit the server's accept
//! queue together; each then handshakes, plays two inputs and quits gracefully. The server must
//! record `client_quit` for every one: a storm must not turn into resets or handshake timeouts.

use super::{Instance, Verdict, errors_of, play_inputs, quit_and_check};
use crate::reconcile::{Expect, Reason};

/// Inputs a storm client plays before leaving: enough to prove the session works.
const STORM_INPUTS: u32 = 2;

pub(crate) async fn run(inst: &Instance) -> Verdict {
    let mut p = match inst.open(inst.shared_room()).await {
        Ok(p) => p,
        Err(verdict) => return verdict,
    };
    let result = async {
        play_inputs(&mut p, STORM_INPUTS, inst.opts().input_bytes).await?;
        quit_and_check(&mut p).await
    }
    .await;
    inst.verdict(Expect::Exact(Reason::ClientQuit), &errors_of(&p), result)
}
