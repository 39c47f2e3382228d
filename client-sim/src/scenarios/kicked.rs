//! `kicked-then-send` and `kicked-then-recv`: the field report's client-side cases, where the
//! server closes first. The kick comes from the admin endpoint (`POST /sessions/{id}/kick`, with
//! the session id from `Welcome`); the server must record `kicked` for both.
//!
//! - `kicked-then-send` (client case 1, "the server had closed the socket and the client sent
//!   again: the first send succeeded, the second failed with EPIPE"): the client reads the
//!   server's `Bye{kicked}` and EOF, then keeps sending. Its first send must succeed (the server
//!   is still lingering, or its kernel answers the bytes with RST), and a later one must fail with
//!   EPIPE or ECONNRESET. Rust ignores SIGPIPE, so this is an error value, not a dead process.
//!   Over WebSocket the first send already fails (EPIPE): the server's close frame came with its
//!   `Bye`, and a WebSocket does not send on a closed connection.
//! - `kicked-then-recv` (client case 2, "the server sent data then closed, and the client sent one
//!   packet then read: the client read everything, then a normal EOF"): right after the kick the
//!   client sends one input, then reads. Because the server closes with a lingering close
//!   (shutdown, read and discard until EOF), the client must read every queued event, the
//!   `Bye{kicked}`, then a clean EOF, never a reset.

use std::time::Duration;

use bytes::Bytes;
use protocol::ByeCode;

use super::{During, Failure, GRACE, Instance, Verdict, errors_of, play_inputs, quit_and_check};
use crate::conn::{ClientError, ErrorKind};
use crate::player::Player;
use crate::reconcile::{Expect, Reason};

/// What the client does after the kick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum After {
    /// Keep sending until a send fails.
    Send,
    /// Send one packet, then read to the end.
    Recv,
}

/// Inputs played before the kick, so the session has history.
const INPUTS: u32 = 3;
/// Time between sends after the kick.
const SEND_EVERY: Duration = Duration::from_millis(100);
/// How long the client keeps sending after the kick before it concludes the socket never fails.
const SEND_LIMIT: Duration = Duration::from_secs(15);

fn expect_kicked(p: &Player) -> Result<(), Failure> {
    match p.bye_code() {
        Some(ByeCode::Kicked) => Ok(()),
        other => Err(Failure::Check(format!(
            "expected to read Bye{{kicked}}, got {}",
            other.map_or("no Bye".to_owned(), |c| format!("Bye{{{c}}}"))
        ))),
    }
}

pub(crate) async fn run(inst: &Instance, after: After) -> Verdict {
    let mut p = match inst.open(inst.private_room()).await {
        Ok(p) => p,
        Err(verdict) => return verdict,
    };
    if let Err(failure) = play_inputs(&mut p, INPUTS, inst.opts().input_bytes).await {
        return inst.verdict(Expect::Exact(Reason::Kicked), &errors_of(&p), Err(failure));
    }
    let kicked = match &inst.ctx.admin {
        Some(admin) => admin
            .kick(p.welcome.session_id)
            .await
            .map_err(|e| e.to_string()),
        None => Err("no admin endpoint: pass --metrics-url".to_owned()),
    };
    if let Err(why) = kicked {
        // Not kicked: leave gracefully so that reconciliation stays exact, and report the failure.
        let quit = quit_and_check(&mut p).await;
        let failure = Failure::Check(format!("kick failed: {why}"));
        let result = quit.and(Err(failure));
        return inst.verdict(Expect::Exact(Reason::ClientQuit), &errors_of(&p), result);
    }
    let result = match after {
        After::Send => send_after_kick(&mut p, inst.opts().websocket).await,
        After::Recv => recv_after_kick(&mut p).await,
    };
    inst.verdict(Expect::Exact(Reason::Kicked), &errors_of(&p), result)
}

async fn recv_after_kick(p: &mut Player) -> Result<(), Failure> {
    // The one packet of the field report; it may meet the lingering server or its closed socket.
    let _ = p.send_input(Bytes::from_static(b"after-kick")).await;
    let drained = p
        .drain(p.idle + GRACE, "the server's Bye and EOF after the kick")
        .await;
    match drained.end {
        Ok(()) => expect_kicked(p),
        Err(ClientError::Io {
            kind: ErrorKind::ConnReset,
            ..
        }) => Err(Failure::Check(format!(
            "read a reset instead of a clean EOF after the kick ({}): the server's close destroyed \
             its last messages",
            p.bye_code()
                .map_or("its Bye was lost".to_owned(), |c| format!(
                    "Bye{{{c}}} was read"
                ))
        ))),
        Err(error) => Err(error).during("reading to the end after the kick"),
    }
}

/// Over WebSocket (`websocket`) the first send may fail at once: the client read the server's
/// close frame with its `Bye`, and the WebSocket layer refuses to send on a closed connection.
async fn send_after_kick(p: &mut Player, websocket: bool) -> Result<(), Failure> {
    p.drain(p.idle + GRACE, "the server's Bye and EOF after the kick")
        .await
        .end
        .during("reading the server's Bye after the kick")?;
    expect_kicked(p)?;
    let mut ok_sends = 0u32;
    let mut tick = tokio::time::interval(SEND_EVERY);
    let deadline = tokio::time::Instant::now() + SEND_LIMIT;
    loop {
        tick.tick().await;
        if tokio::time::Instant::now() > deadline {
            return Err(Failure::Check(format!(
                "{ok_sends} sends over {SEND_LIMIT:?} after the server closed, and none failed"
            )));
        }
        match p.send_input(Bytes::from_static(b"after-kick")).await {
            Ok(()) => ok_sends += 1,
            Err(ClientError::Io {
                kind: ErrorKind::BrokenPipe | ErrorKind::ConnReset,
                ..
            }) if ok_sends > 0 => return Ok(()),
            Err(ClientError::Io {
                kind: ErrorKind::BrokenPipe,
                ..
            }) if websocket => return Ok(()),
            Err(error) if ok_sends == 0 => {
                return Err(Failure::Check(format!(
                    "the first send after the server closed failed ({error}); it must succeed"
                )));
            }
            Err(error) => return Err(error).during("sending after the kick"),
        }
    }
}
