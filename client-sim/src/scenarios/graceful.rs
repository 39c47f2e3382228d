//! `graceful`: the field report's server-side case 2, "sent many messages, then closed
//! gracefully: every message arrived, then read() returned 0".
//!
//! The client plays, sends `--inputs` inputs, waits until each came back as a relay, says
//! `Bye{client_quit}`, and reads the server's `Ack` and `Bye` until EOF. The server must record
//! `client_quit`, and its final `Ack` must cover every input: nothing lost.

use super::{Instance, Verdict, errors_of, play_inputs, quit_and_check};
use crate::reconcile::{Expect, Reason};

pub(crate) async fn run(inst: &Instance) -> Verdict {
    let mut p = match inst.open(inst.shared_room()).await {
        Ok(p) => p,
        Err(verdict) => return verdict,
    };
    let result = async {
        play_inputs(&mut p, inst.opts().inputs, inst.opts().input_bytes).await?;
        quit_and_check(&mut p).await
    }
    .await;
    inst.verdict(Expect::Exact(Reason::ClientQuit), &errors_of(&p), result)
}
