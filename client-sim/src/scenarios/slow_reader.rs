//! `slow-reader`: a client that stays alive but stops reading: a frozen render loop, a phone in
//! a tunnel that still ACKs. The server's writes back up until its outbound queue overflows or a
//! write stays blocked for `session.write_timeout`.
//!
//! In a private room, the client sends large inputs (32 KiB, which the demo relays back to it)
//! at 50 per second, well within the rate limit, and never reads. The server must record
//! `slow_consumer`. The client learns of it when its own sends start failing (ECONNRESET or
//! EPIPE) once the server has given up on the connection.

use std::time::Duration;

use bytes::Bytes;
use tokio::time::MissedTickBehavior;

use super::{Failure, Instance, Verdict, errors_of};
use crate::conn::{ClientError, ErrorKind};
use crate::reconcile::{Expect, Reason};

/// Payload of each input: big, so buffers fill in seconds, yet well under the 64 KiB frame limit
/// after the relay's own header.
const INPUT_BYTES: usize = 32 * 1024;
/// Time between inputs: 50 per second, half the default rate limit.
const EVERY: Duration = Duration::from_millis(20);
/// The shortest the client keeps trying before it calls the server's detection missing.
const MIN_LIMIT: Duration = Duration::from_secs(30);

pub(crate) async fn run(inst: &Instance) -> Verdict {
    let mut p = match inst.open(inst.private_room()).await {
        Ok(p) => p,
        Err(verdict) => return verdict,
    };
    let limit = MIN_LIMIT.max(p.idle * 4);
    let payload = Bytes::from(vec![0x5au8; INPUT_BYTES]);
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let deadline = tokio::time::sleep(limit);
    tokio::pin!(deadline);
    let result = loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = &mut deadline => {
                break Err(Failure::Check(format!(
                    "sent large inputs without reading for {limit:?} and the server never gave up on the connection"
                )));
            }
        }
        let sent = tokio::select! {
            sent = p.send_input(payload.clone()) => sent,
            () = &mut deadline => {
                break Err(Failure::Check(format!(
                    "a send blocked until {limit:?} had passed: the server stopped reading but never closed"
                )));
            }
        };
        match sent {
            Ok(()) => {}
            Err(ClientError::Io {
                kind: ErrorKind::ConnReset | ErrorKind::BrokenPipe,
                ..
            }) => break Ok(()),
            Err(error) => {
                break Err(Failure::Client {
                    during: "sending large inputs without reading",
                    error,
                });
            }
        }
    };
    inst.verdict(Expect::Exact(Reason::SlowConsumer), &errors_of(&p), result)
}
