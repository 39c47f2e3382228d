//! `flood`: a client far above the rate limit (a bot, a bugged input loop).
//!
//! In a private room, the client writes batches of 100 small inputs every 10 ms (10,000 per
//! second against the default limit of 100 per second with a burst of 200) while reading, until
//! the server's `Bye` arrives; then it reads to EOF. The server must record `rate_limited`, and
//! its lingering close must deliver the `Bye{rate_limited}` intact.

use std::time::Duration;

use bytes::Bytes;
use protocol::ByeCode;
use tokio::time::MissedTickBehavior;

use super::{During, Failure, GRACE, Instance, Verdict, errors_of};
use crate::conn::ClientError;
use crate::reconcile::{Expect, Reason};

/// Inputs per batch.
const BATCH: u32 = 100;
/// Time between batches.
const EVERY: Duration = Duration::from_millis(10);
/// How long the client floods before it concludes the server has no rate limit.
const LIMIT: Duration = Duration::from_secs(10);

pub(crate) async fn run(inst: &Instance) -> Verdict {
    let mut p = match inst.open(inst.private_room()).await {
        Ok(p) => p,
        Err(verdict) => return verdict,
    };
    let result = async {
        let payload = Bytes::from_static(b"spam");
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let deadline = tokio::time::sleep(LIMIT);
        tokio::pin!(deadline);
        enum Step {
            Frame(Result<Option<protocol::ServerMessage>, ClientError>),
            Batch,
            Deadline,
        }
        loop {
            let step = tokio::select! {
                frame = p.conn.recv() => Step::Frame(frame),
                _ = tick.tick() => Step::Batch,
                () = &mut deadline => Step::Deadline,
            };
            match step {
                Step::Frame(Ok(Some(message))) => match p.absorb(message) {
                    Ok(()) => {}
                    Err(ClientError::ServerBye { .. }) => break,
                    Err(error) => return Err(error).during("reading while flooding"),
                },
                Step::Frame(Ok(None)) => return Err(ClientError::Eof).during("flooding"),
                Step::Frame(Err(error)) => return Err(error).during("reading while flooding"),
                Step::Batch => {
                    // A write error here means the server already closed; its Bye is still
                    // in the receive buffer, so keep reading rather than give up.
                    if p.send_inputs(BATCH, payload.clone()).await.is_err() {
                        break;
                    }
                }
                Step::Deadline => {
                    return Err(Failure::Check(format!(
                        "flooded at {} inputs/s for {LIMIT:?} without being rate-limited",
                        BATCH as u64 * 1000 / EVERY.as_millis().max(1) as u64
                    )));
                }
            }
        }
        if p.bye.is_none() {
            p.drain(p.idle + GRACE, "the server's Bye after flooding")
                .await
                .end
                .during("reading the server's Bye after flooding")?;
        } else {
            p.drain(p.idle + GRACE, "the server's EOF after its Bye")
                .await
                .end
                .during("reading to EOF after the server's Bye")?;
        }
        match p.bye_code() {
            Some(ByeCode::RateLimited) => Ok(()),
            other => Err(Failure::Check(format!(
                "expected Bye{{rate_limited}}, got {}",
                other.map_or("no Bye".to_owned(), |c| format!("Bye{{{c}}}"))
            ))),
        }
    }
    .await;
    inst.verdict(Expect::Exact(Reason::RateLimited), &errors_of(&p), result)
}
