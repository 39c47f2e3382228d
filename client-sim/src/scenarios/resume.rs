//! What the three resume scenarios share: play, break the connection in the middle of a stream,
//! come back on a new connection with the resume token, and check that the session went on with
//! nothing lost and nothing repeated.
//!
//! The player plays in a private room, so every event it receives is its own: the relays of its
//! numbered inputs (the demo relays each applied input back to its sender) and the room's `State`
//! events. Continuity is then checkable exactly:
//!
//! - events: the first event on the new connection must be the last one received plus one, and
//!   the stream over both connections must run 1, 2, 3, ... with no gap and no repeat;
//! - inputs: each input must come back as a relay exactly once and in order, whichever
//!   connection it was sent on and whether or not it was resent after the resume;
//! - the server's last `Ack` before its `Bye{client_quit}` must cover every input.
//!
//! The break comes mid-flight: the client plays half of `--inputs`, acknowledges the events so
//! far, writes a burst of inputs in one go and breaks the connection right away, so some inputs
//! may not have been applied and their relays are unread. `Welcome.last_input_seq` of the resumed
//! session says what the server applied; the client resends the rest, plays the other half and
//! quits gracefully.
//!
//! A server with resume off (`session.resume_grace = "0s"`) sends an all-zero token, and a client
//! that received one must not try to resume: the instance quits at once (the server records
//! `client_quit`) and fails with one line saying so.

use std::time::Duration;

use bytes::Bytes;
use protocol::ByeCode;

use super::{During, Failure, GRACE, Instance, Verdict, errors_of, play_inputs, quit_and_check};
use crate::conn::{ClientError, ErrorKind};
use crate::player::{INPUT_FILL, Kept, Player};
use crate::reconcile::{Expect, Reason};
use crate::stats::{AwaitingDetection, add};

/// Inputs written in one go right before the break: some are still in flight when it comes.
const BURST: u32 = 10;
/// How long a reset client waits before it reconnects, as a real client backs off before a
/// retry. It also lets the server read the reset first: a resume that arrives while the server
/// still thinks the old connection alive takes it over as `replaced` (that is `roam`).
const RECONNECT_AFTER: Duration = Duration::from_millis(250);

/// How the connection breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Break {
    /// `SO_LINGER {on, 0}` and close: the kernel sends RST. The server records `peer_reset`.
    Reset,
    /// Neither read nor write, the socket left open, until the server's idle timeout resets the
    /// connection. The server records `idle_timeout`.
    Vanish,
    /// Leave the old socket open and silent and resume at once, before the server noticed
    /// anything: it closes the old connection as `replaced`.
    Roam,
}

impl Break {
    /// What the server records for the connection that broke.
    fn reason(self) -> Reason {
        match self {
            Break::Reset => Reason::PeerReset,
            Break::Vanish => Reason::IdleTimeout,
            Break::Roam => Reason::Replaced,
        }
    }
}

/// The connection that broke, as far as the rest of the instance needs it.
struct Broken {
    kept: Kept,
    errors: Vec<ErrorKind>,
    /// `roam` only: the old connection, still open.
    old: Option<Player>,
}

pub(crate) async fn run(inst: &Instance, how: Break) -> Verdict {
    let mut p = match inst.open(inst.private_room()).await {
        Ok(p) => p,
        Err(verdict) => return verdict,
    };
    if p.welcome.resume_token.is_none() {
        return resume_off(inst, &mut p).await;
    }
    let first_half = inst.opts().inputs / 2;
    let before = async {
        play_inputs(&mut p, first_half, inst.opts().input_bytes).await?;
        p.ack_events().await.during("acknowledging events")?;
        let payload = Bytes::from(vec![INPUT_FILL; inst.opts().input_bytes]);
        p.send_inputs(BURST, payload)
            .await
            .during("sending a burst of inputs")
    }
    .await;
    if let Err(failure) = before {
        // The break did not happen: how the server ends this connection is anyone's guess.
        return inst.verdict(Expect::Unknown, &errors_of(&p), Err(failure));
    }
    match break_off(inst, p, how).await {
        Ok(broken) => come_back(inst, how, broken).await,
        Err(verdict) => verdict,
    }
}

/// The server has resume off: quit, and fail with one line that says so.
async fn resume_off(inst: &Instance, p: &mut Player) -> Verdict {
    add(&inst.ctx.stats.resume_off, 1);
    let mut line = "the server has resume off: its Welcome carries an all-zero resume token \
                    (session.resume_grace = \"0s\"), so this client cannot resume"
        .to_owned();
    if let Err(failure) = quit_and_check(p).await {
        line.push_str(&format!("; quitting failed too: {failure}"));
    }
    inst.verdict(
        Expect::Exact(Reason::ClientQuit),
        &errors_of(p),
        Err(Failure::Check(line)),
    )
}

/// Breaks the connection the chosen way, keeping what a client needs to resume. A break that
/// did not go as planned is the instance's verdict.
async fn break_off(inst: &Instance, mut p: Player, how: Break) -> Result<Broken, Verdict> {
    match how {
        Break::Reset => {
            let kept = p.keep();
            let errors = errors_of(&p);
            if let Err(failure) = p.conn.abort().during("setting SO_LINGER {on, 0}") {
                return Err(inst.verdict(Expect::Unknown, &errors, Err(failure)));
            }
            tokio::time::sleep(RECONNECT_AFTER).await;
            Ok(Broken {
                kept,
                errors,
                old: None,
            })
        }
        Break::Vanish => {
            // Silent from the last write: the server's idle timer started there. Read nothing
            // until it must have run out, then read what is left, up to the reset.
            let waiting = AwaitingDetection::new(&inst.ctx.stats);
            tokio::time::sleep_until(p.conn.last_write() + p.idle).await;
            let limit = p.heartbeat + GRACE;
            let drained = p.drain(limit, "the server to drop a silent client").await;
            drop(waiting);
            let reaped = match drained.end {
                Ok(())
                | Err(ClientError::Io {
                    kind: ErrorKind::ConnReset,
                    ..
                }) => match p.bye_code() {
                    None | Some(ByeCode::IdleTimeout) => Ok(()),
                    Some(code) => Err(Failure::Check(format!(
                        "the server dropped a silent client with Bye{{{code}}}, not idle_timeout"
                    ))),
                },
                Err(error) => Err(Failure::Client {
                    during: "waiting, silent, for the server to drop the connection",
                    error,
                }),
            };
            let errors = errors_of(&p);
            match reaped {
                Ok(()) => Ok(Broken {
                    kept: p.keep(),
                    errors,
                    old: None,
                }),
                Err(failure) => Err(inst.verdict(Expect::Unknown, &errors, Err(failure))),
            }
        }
        Break::Roam => Ok(Broken {
            kept: p.keep(),
            errors: Vec::new(),
            old: Some(p),
        }),
    }
}

/// Resumes on a new connection, checks the server's `Welcome`, resends what the server had not
/// applied, plays on and quits; then checks continuity across both connections.
async fn come_back(inst: &Instance, how: Break, broken: Broken) -> Verdict {
    let Broken {
        kept,
        mut errors,
        mut old,
    } = broken;
    let stats = &inst.ctx.stats;
    add(&stats.resumes_attempted, 1);
    // The kept core says Hello with the resume token and the last event received; after the
    // resumed Welcome it resends, by itself, every input the server had not applied.
    let mut q = match inst.open_with(kept.core.clone()).await {
        Ok(q) => q,
        Err(mut verdict) => {
            // A roaming client's old connection is taken over only by a resume that works.
            let first = match how {
                Break::Roam => Expect::Unknown,
                Break::Reset => inst.reset_expect(),
                _ => Expect::Exact(how.reason()),
            };
            verdict.expects.insert(0, first);
            errors.append(&mut verdict.errors);
            verdict.errors = errors;
            verdict.failure = verdict.failure.map(|f| format!("resuming: {f}"));
            return verdict;
        }
    };
    let broke = match how {
        Break::Reset => inst.reset_expect(),
        _ => Expect::Exact(how.reason()),
    };
    let expects = vec![broke, Expect::Exact(Reason::ClientQuit)];
    if let Err(failure) = check_welcome(&q, &kept) {
        let _ = q.quit(q.idle + GRACE).await;
        errors.extend(errors_of(&q));
        return verdict_of(expects, errors, Err(failure));
    }
    add(&stats.resumes_succeeded, 1);
    q.carry_on(&kept);
    let result = async {
        if let Some(old) = old.as_mut() {
            check_replaced(old).await?;
        }
        let second_half = inst.opts().inputs - inst.opts().inputs / 2;
        play_inputs(&mut q, second_half, inst.opts().input_bytes).await?;
        quit_and_check(&mut q).await?;
        match q.first_event {
            Some(seq) if seq == kept.event_seq + 1 => Ok(()),
            first => Err(Failure::Check(format!(
                "the first event after the resume was {}, but the client had received up to {}: \
                 the replay must start at {}",
                first.map_or("none".to_owned(), |s| format!("seq {s}")),
                kept.event_seq,
                kept.event_seq + 1
            ))),
        }
    }
    .await;
    let c = q.continuity;
    let inputs_lost = c.inputs_skipped + q.input_seq.saturating_sub(q.relayed_upto);
    add(&stats.events_lost, c.events_lost);
    add(&stats.events_duplicated, c.events_repeated);
    add(&stats.inputs_applied_twice, c.inputs_repeated);
    add(&stats.inputs_lost, inputs_lost);
    let whole = if c.events_lost + c.events_repeated + c.inputs_repeated + inputs_lost == 0 {
        Ok(())
    } else {
        Err(Failure::Check(format!(
            "across the resume: {} events lost, {} duplicated; {} inputs applied twice, {} lost",
            c.events_lost, c.events_repeated, c.inputs_repeated, inputs_lost
        )))
    };
    if let Some(old) = &old {
        errors.extend(errors_of(old));
    }
    errors.extend(errors_of(&q));
    verdict_of(expects, errors, result.and(whole))
}

fn verdict_of(
    expects: Vec<Expect>,
    errors: Vec<ErrorKind>,
    result: Result<(), Failure>,
) -> Verdict {
    Verdict {
        expects,
        failure: result.err().map(|f| f.to_string()),
        errors,
    }
}

/// The resumed session must be the same one, on a fresh token, with a believable input count.
fn check_welcome(q: &Player, kept: &Kept) -> Result<(), Failure> {
    let w = &q.welcome;
    let wrong = |why: String| Err(Failure::Check(why));
    if !w.resumed {
        return wrong(
            "the server answered the resume Hello with a fresh session (Welcome.resumed = 0)"
                .to_owned(),
        );
    }
    if w.session_id != kept.session_id {
        return wrong(format!(
            "the resumed Welcome names session {}, the broken connection's was {}",
            w.session_id, kept.session_id
        ));
    }
    if w.resume_token == kept.token || w.resume_token.is_none() {
        return wrong("the resumed Welcome did not carry a new resume token".to_owned());
    }
    if w.last_input_seq < kept.server_ack || w.last_input_seq > kept.input_seq {
        return wrong(format!(
            "the resumed Welcome says input {} was the last applied, but the server had \
             acknowledged {} and the client sent {}",
            w.last_input_seq, kept.server_ack, kept.input_seq
        ));
    }
    if w.room != kept.room {
        return wrong(format!(
            "the resumed session is in room {:?}, the player was in {:?}",
            w.room, kept.room
        ));
    }
    Ok(())
}

/// `roam`: the old connection, read at last, must end with `Bye{replaced}` and the server's
/// close. What it carried besides is not counted: the resumed connection replays it.
async fn check_replaced(old: &mut Player) -> Result<(), Failure> {
    let drained = old
        .drain(old.idle + GRACE, "the old connection's Bye{replaced}")
        .await;
    match drained.end {
        Ok(())
        | Err(ClientError::Io {
            kind: ErrorKind::ConnReset,
            ..
        }) => {}
        Err(error) => {
            return Err(Failure::Client {
                during: "reading the old connection after the resume",
                error,
            });
        }
    }
    match old.bye_code() {
        Some(ByeCode::Replaced) => Ok(()),
        other => Err(Failure::Check(format!(
            "the old connection ended with {} after the resume, expected Bye{{replaced}}",
            other.map_or("no Bye".to_owned(), |c| format!("Bye{{{c}}}"))
        ))),
    }
}
