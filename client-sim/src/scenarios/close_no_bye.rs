//! `close-no-bye`: a client that closes its socket without the application's goodbye (a crash
//! handler that flushes and closes, a game that exits without its quit message).
//!
//! It plays, waits until its inputs came back (so the server has applied them all), then sends
//! FIN with `shutdown(SHUT_WR)` and reads to the server's EOF before closing, so that it never
//! closes with unread data (which would make its kernel send RST instead). The server sees a clean
//! end of stream between frames and must record `peer_eof`, and must not answer with a `Bye`.

use super::{Instance, Verdict, close_without_bye, errors_of, play_inputs};
use crate::reconcile::{Expect, Reason};

/// At most this many inputs before the close: the point is the ending, not the play.
const MAX_INPUTS: u32 = 10;

pub(crate) async fn run(inst: &Instance) -> Verdict {
    let mut p = match inst.open(inst.shared_room()).await {
        Ok(p) => p,
        Err(verdict) => return verdict,
    };
    let result = async {
        play_inputs(
            &mut p,
            inst.opts().inputs.min(MAX_INPUTS),
            inst.opts().input_bytes,
        )
        .await?;
        close_without_bye(&mut p).await
    }
    .await;
    inst.verdict(Expect::Exact(Reason::PeerEof), &errors_of(&p), result)
}
