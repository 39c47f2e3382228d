//! `vanish`: the field report's server-side case 1, "had its cable pulled: nothing at all; only
//! a timeout ends the connection", as far as loopback can show it.
//!
//! After the handshake the client never writes again (no pongs, no inputs) but keeps the socket
//! open and keeps reading, so it observes the server's abortive close. The server must record
//! `idle_timeout` within its idle timeout plus a heartbeat and a small margin. The client measures
//! the detection time, from its own last write to the reset (or EOF) it observes, and reports it
//! in the summary's detection histogram.

use std::time::Duration;

use super::{Failure, GRACE, Instance, Verdict, errors_of};
use crate::conn::{ClientError, ErrorKind};
use crate::reconcile::{Expect, Reason};
use crate::stats::AwaitingDetection;

/// Slack for scheduling on a busy 2-core machine.
const MARGIN: Duration = Duration::from_secs(2);

pub(crate) async fn run(inst: &Instance) -> Verdict {
    let mut p = match inst.open(inst.private_room()).await {
        Ok(p) => p,
        Err(verdict) => return verdict,
    };
    let silent_since = p.conn.last_write();
    let limit = p.idle + p.heartbeat + GRACE;
    let waiting = AwaitingDetection::new(&inst.ctx.stats);
    let drained = p.drain(limit, "the server to drop a silent client").await;
    drop(waiting);
    let took = drained.at.saturating_duration_since(silent_since);
    let result = match drained.end {
        Ok(())
        | Err(ClientError::Io {
            kind: ErrorKind::ConnReset,
            ..
        }) => {
            inst.ctx.stats.record_detection(took);
            if took > p.idle + p.heartbeat + MARGIN {
                Err(Failure::Check(format!(
                    "the server took {took:?} to drop a silent client; its idle timeout is {:?}",
                    p.idle
                )))
            } else if took + Duration::from_millis(200) < p.idle {
                Err(Failure::Check(format!(
                    "the server dropped a silent client after {took:?}, before its idle timeout of {:?}",
                    p.idle
                )))
            } else {
                Ok(())
            }
        }
        Err(error) => Err(Failure::Client {
            during: "waiting, silent, for the server to drop the connection",
            error,
        }),
    };
    inst.verdict(Expect::Exact(Reason::IdleTimeout), &errors_of(&p), result)
}
