//! A session's protocol state machine, without sockets, tasks or shared state (sans-IO): it takes
//! what the client sent, the time and the answers to its requests, and gives the bytes to write,
//! the next deadline, the requests it needs answered (a `Hello` admitted, a room joined, an input
//! delivered) and, once, the end.
//!
//! The [`crate::session::driver`] does the I/O and the waiting: it reads, feeds [`Core::on_read`]
//! and [`Core::on_timer`], writes what [`Core::outbox`] holds, runs each [`Request`] against the
//! server (the handshake's authentication, resume and room; a `Join`; an input to the room) and
//! hands back the answer ([`Core::welcome`], [`Core::joined`]). The core decides; the driver does.
//! Every path of the protocol is therefore a plain function call, tested without a runtime
//! (below), hook by hook.

use std::time::Duration;

use bytes::Bytes;
use protocol::{
    Bye, ByeCode, ClientMessage, HEADER_LEN, Hello, OLDEST_PROTOCOL_VERSION, PROTOCOL_VERSION,
    ResumeToken, ServerMessage, Welcome, WireMessage, max_input_payload,
};
use tokio::time::Instant;

use crate::close::{CloseReason, Ending};
use crate::config::SessionConfig;
use crate::memory::budget::{BUFFERS_IN_ESTIMATE, GROWTH_STEP};
use crate::resume::Replay;
use crate::rooms::claims_auto_prefix;
use crate::session::outbox::{Outbox, Traffic};
use crate::session::watchdog::{Expiry, RateLimit, Timeouts, Watchdog};
use crate::transport::inbound::Inbound;

/// The server's own stall clock, as the core reads it (see [`crate::session::stall`]).
pub(crate) trait StallClock {
    /// Total stall time recorded so far (cheap).
    fn recorded(&self) -> Duration;
    /// Total stall time, after recording one that just ended.
    fn observe(&self) -> Duration;
}

impl StallClock for crate::session::stall::Stalls {
    fn recorded(&self) -> Duration {
        crate::session::stall::Stalls::recorded(self)
    }

    fn observe(&self) -> Duration {
        crate::session::stall::Stalls::observe(self)
    }
}

/// What the core needs the server to do for it.
#[derive(Debug)]
pub(crate) enum Request {
    /// A `Hello` that passed the core's own checks: authenticate it, resume or start the
    /// session, and answer with [`Core::welcome`] or the end. Boxed: a session's task holds its
    /// request across the handshake's awaits, and every byte of it counts in a held session.
    Hello(Box<Hello>),
    /// A `Join`: move the player, and answer with [`Core::joined`].
    Join { room: String, options: Bytes },
    /// A new input, in sequence: deliver it to the player's room.
    Input {
        /// Its sequence number.
        seq: u64,
        /// What the client sent.
        payload: Bytes,
    },
}

/// The answer to [`Request::Hello`]: the session the connection now carries.
#[derive(Debug)]
pub(crate) struct Welcomed {
    /// The session's id (a resumed session's own).
    pub session_id: u64,
    /// The room the player is in.
    pub room: String,
    /// The session's resume token (`None`: resume is off).
    pub token: Option<ResumeToken>,
    /// The session taken over, when the `Hello` resumed one.
    pub resumed: Option<Resumed>,
}

/// What a resumed session carries over to its new connection.
#[derive(Debug)]
pub(crate) struct Resumed {
    /// The events sent and not acknowledged.
    pub replay: Replay,
    /// The highest input applied.
    pub last_input_seq: u64,
    /// The last event the client says it received: the replay starts after it.
    pub last_event_seq: u64,
}

/// Where the session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the `Hello`.
    Hello,
    /// The `Hello` is being admitted.
    Admitting,
    /// Past the handshake.
    Live,
}

/// Longest a session's traffic counts wait before they reach `/sessions` and the metrics.
pub(crate) const FLUSH_EVERY: Duration = Duration::from_secs(5);

/// The protocol state of one session.
#[derive(Debug)]
pub(crate) struct Core {
    watchdog: Watchdog,
    rate: RateLimit,
    out: Outbox,
    phase: Phase,
    /// Numbers outgoing events and keeps the unacknowledged ones for replay after a resume.
    replay: Replay,
    /// This session's resume token, once the handshake issued one.
    token: Option<ResumeToken>,
    last_input_seq: u64,
    acked_input_seq: u64,
    ping: Option<(u64, Instant)>,
    next_nonce: u64,
    /// A round trip measured since the driver last took it.
    rtt: Option<Duration>,
    /// The server's stall clock as this session last accounted for it.
    stall_seen: Duration,
    /// A deadline may have moved earlier: the driver re-arms its timer.
    rearm: bool,
    /// The write buffer drained into a transport that holds bytes back until flushed.
    unflushed: bool,
    /// A quiet moment (the timer fired, or the client's own heartbeat arrived): the core gave
    /// back its replay's slots if nothing is left to replay, and the driver gives back the
    /// player's queue if it is empty. Idle sessions hold neither.
    quiet: bool,
    /// What the footprint last published: replay bytes and buffer bytes.
    published: (u64, u64),
    /// Growth since the last report to the budget.
    unreported: u64,
    /// The largest frame read or event queued since the last timer: buffers in flight that the
    /// buffers' current capacities no longer show (the allocator keeps them all the same).
    largest_recent: usize,
    /// When the traffic counts are next flushed (at least once per [`FLUSH_EVERY`] of
    /// activity, whether or not the timer fires).
    flush_due: Instant,
}

/// What the session holds, for the memory budget, when it changed: bytes kept for replay, bytes
/// of buffers, and growth worth reporting to the budget at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Held {
    pub replay: u64,
    pub buffers: u64,
    pub grew: Option<u64>,
}

impl Core {
    /// A session whose connection was accepted at `accepted` (its handshake deadline counts from
    /// there), with `config`'s limits, frames of at most `max_frame` bytes (in WebSocket
    /// messages when `websocket`), keeping events for replay when `resume`.
    pub(crate) fn new(
        config: &SessionConfig,
        max_frame: usize,
        websocket: bool,
        resume: bool,
        accepted: Instant,
        stalled: Duration,
    ) -> Core {
        Core {
            watchdog: Watchdog::new(
                Timeouts {
                    handshake: config.handshake_timeout,
                    heartbeat: config.heartbeat_interval,
                    idle: config.idle_timeout,
                    write: config.write_timeout,
                },
                accepted,
            ),
            rate: RateLimit::new(
                config.rate_limit_per_sec,
                config.rate_limit_burst,
                accepted,
                stalled,
            ),
            out: Outbox::new(max_frame, websocket),
            phase: Phase::Hello,
            replay: Replay::new(
                if resume { config.resume_buffer } else { 0 },
                config.resume_buffer_bytes,
            ),
            token: None,
            last_input_seq: 0,
            acked_input_seq: 0,
            ping: None,
            next_nonce: 1,
            rtt: None,
            stall_seen: stalled,
            rearm: false,
            unflushed: false,
            quiet: false,
            published: (0, 0),
            unreported: 0,
            largest_recent: 0,
            flush_due: accepted + FLUSH_EVERY,
        }
    }

    /// What to write, and how the connection writes it.
    pub(crate) fn outbox(&mut self) -> &mut Outbox {
        &mut self.out
    }

    /// True once the handshake is done.
    pub(crate) fn is_live(&self) -> bool {
        self.phase == Phase::Live
    }

    /// When the timer must fire next.
    pub(crate) fn next_deadline(&self) -> Instant {
        self.watchdog.next_deadline()
    }

    /// True when the handshake or idle deadline has passed.
    pub(crate) fn silence_due(&self, now: Instant) -> bool {
        self.watchdog.silence_due(now)
    }

    /// Moves the idle deadline `extra` later, until the client is heard again.
    pub(crate) fn extend_idle(&mut self, extra: Duration) {
        self.watchdog.extend_idle(extra);
    }

    /// The heartbeat interval and idle timeout.
    pub(crate) fn liveness(&self) -> (Duration, Duration) {
        let timeouts = self.watchdog.timeouts();
        (timeouts.heartbeat, timeouts.idle)
    }

    /// When the last frame arrived (or the connection was accepted).
    pub(crate) fn last_inbound(&self) -> Instant {
        self.watchdog.last_inbound()
    }

    /// True (once) when a deadline may have moved since the timer was armed.
    pub(crate) fn take_rearm(&mut self) -> bool {
        std::mem::take(&mut self.rearm)
    }

    /// True once after a quiet moment: the driver gives back the player's queue if it is empty.
    pub(crate) fn take_quiet(&mut self) -> bool {
        std::mem::take(&mut self.quiet)
    }

    /// Gives back the replay's slots if nothing is left to replay (a busy session keeps them
    /// between acknowledgements), and tells the driver to do the same with the player's queue.
    fn quiet_moment(&mut self) {
        self.replay.release_if_empty();
        self.quiet = true;
    }

    /// A round trip measured since the last call, if any.
    pub(crate) fn take_rtt(&mut self) -> Option<Duration> {
        self.rtt.take()
    }

    /// True when the transport holds bytes back until it is flushed.
    pub(crate) fn unflushed(&self) -> bool {
        self.unflushed
    }

    /// A write left bytes unsent: the stall clock runs.
    pub(crate) fn write_blocked(&mut self, now: Instant) {
        self.watchdog.write_blocked(now);
        self.rearm = true;
    }

    /// The write buffer drained into a transport that holds bytes back until flushed: the stall
    /// clock runs until the flush.
    pub(crate) fn written_unflushed(&mut self, now: Instant) {
        self.write_blocked(now);
        self.unflushed = true;
    }

    /// Everything written is out (drained, and flushed where the transport buffers): the stall
    /// clock stops, and the buffer is given back, so that a session between messages holds none.
    pub(crate) fn write_drained(&mut self) {
        self.unflushed = false;
        self.watchdog.write_drained();
        self.out.give_back();
    }

    /// Moves this session's deadlines later by the server's own stalls since it last looked:
    /// the client could not be heard while the server stood still.
    pub(crate) fn forgive_stalls(&mut self, stalls: &impl StallClock) {
        self.account_stalls(stalls.observe());
    }

    fn account_stalls(&mut self, total: Duration) {
        if total > self.stall_seen {
            self.watchdog.forgive(total - self.stall_seen);
            self.stall_seen = total;
        }
    }

    /// The timer fired: sends the pings and acknowledgements that are due, or decides the end.
    /// Under memory `pressure` a quiet session gives back what it holds for replay, not only a
    /// busy one; the timer is a quiet moment (see [`Core::take_quiet`]).
    pub(crate) fn on_timer(&mut self, now: Instant, pressure: bool) -> Result<(), Ending> {
        self.largest_recent = 0;
        if pressure {
            self.replay.trim(crate::resume::PRESSURE_REPLAY_BYTES);
        }
        self.quiet_moment();
        let timeouts = self.watchdog.timeouts();
        while let Some(expiry) = self.watchdog.expired(now) {
            let detail = match expiry {
                Expiry::Ping => {
                    self.send_ping(now);
                    continue;
                }
                Expiry::Ack => {
                    self.send_ack();
                    continue;
                }
                Expiry::Handshake => (
                    CloseReason::HandshakeTimeout,
                    format!(
                        "no Hello within {}",
                        humantime::format_duration(timeouts.handshake)
                    ),
                ),
                Expiry::Idle => (
                    CloseReason::IdleTimeout,
                    format!(
                        "nothing received for {}",
                        humantime::format_duration(timeouts.idle)
                    ),
                ),
                Expiry::WriteStall => (
                    CloseReason::SlowConsumer,
                    format!(
                        "socket backed up for {} with {} bytes unsent",
                        humantime::format_duration(timeouts.write),
                        self.out.wbuf.len()
                    ),
                ),
            };
            return Err(Ending::because(detail.0, detail.1));
        }
        Ok(())
    }

    /// One item the client sent, read at `now` (a batch of them shares one reading of the
    /// clock). What needs the server (a `Hello`, a `Join`, a new input) comes back as a
    /// [`Request`]; the common messages are answered here.
    pub(crate) fn on_read(
        &mut self,
        item: Inbound,
        now: Instant,
        stalls: &impl StallClock,
    ) -> Result<Option<Request>, Ending> {
        match item {
            Inbound::Message(message) => self.on_message(message, now, stalls),
            // A frame of the transport's own (a WebSocket ping, pong or fragment) counts against
            // the rate limit like a protocol frame, but does not restart the idle timer: only a
            // whole protocol frame shows the client is playing. A ping is answered.
            Inbound::Ping(payload) => {
                self.take_rate(now, stalls)?;
                self.out.pong(&payload);
                Ok(None)
            }
            Inbound::Pong | Inbound::Fragment => {
                self.take_rate(now, stalls)?;
                Ok(None)
            }
            Inbound::Closed(code) => {
                // The answer repeats the client's code.
                self.out.set_close_code(
                    code.unwrap_or(crate::transport::websocket::close_code::NORMAL),
                );
                Err(Ending::new(CloseReason::PeerEof))
            }
        }
    }

    /// Takes a token from the rate limit, or decides the end. The limit looks for a stall of the
    /// server itself only before refusing.
    fn take_rate(&mut self, now: Instant, stalls: &impl StallClock) -> Result<(), Ending> {
        if self.rate.take(now, stalls.recorded()) || self.rate.take(now, stalls.observe()) {
            return Ok(());
        }
        let (rate, burst) = self.rate.limits();
        Err(Ending::because(
            CloseReason::RateLimited,
            format!("more than {rate} frames/s (burst {burst})"),
        ))
    }

    fn on_message(
        &mut self,
        message: ClientMessage,
        now: Instant,
        stalls: &impl StallClock,
    ) -> Result<Option<Request>, Ending> {
        // A stall that ended before this frame moves the other deadlines (handshake, write
        // stall) too; the frame itself restarts the idle one.
        self.account_stalls(stalls.recorded());
        self.watchdog.inbound(now);
        // The deadlines moved later: the timer follows them.
        self.rearm = true;
        let len = (HEADER_LEN + 1 + message.fields_len()) as u64;
        self.out.traffic.frames_in += 1;
        self.out.traffic.bytes_in += len;
        self.largest_recent = self.largest_recent.max(len as usize);
        self.take_rate(now, stalls)?;
        match self.phase {
            Phase::Hello => {
                return match message {
                    ClientMessage::Hello(hello) => {
                        self.check_hello(&hello)?;
                        self.phase = Phase::Admitting;
                        Ok(Some(Request::Hello(hello)))
                    }
                    other => Err(Ending::because(
                        CloseReason::ProtocolError,
                        format!("expected Hello, got {:?}", other.kind()),
                    )),
                };
            }
            Phase::Admitting => {
                // The driver answers the Hello before it reads on.
                return Err(Ending::because(
                    CloseReason::ProtocolError,
                    "a frame before the Hello was answered",
                ));
            }
            Phase::Live => {}
        }
        match message {
            ClientMessage::Hello(_) => {
                return Err(Ending::because(
                    CloseReason::ProtocolError,
                    "duplicate Hello",
                ));
            }
            ClientMessage::Ping { nonce } => {
                // A client that sends its own heartbeat gets its acknowledgements with the answer.
                if self.last_input_seq != self.acked_input_seq {
                    self.send_ack();
                }
                self.out.queue(&ServerMessage::Pong { nonce });
                // Its session's timer may never fire (every frame moves the next ping later):
                // the heartbeat is its quiet moment instead.
                self.quiet_moment();
            }
            ClientMessage::Pong { nonce } => {
                // A Pong that answers no outstanding Ping is ignored.
                if let Some((sent_nonce, sent_at)) = self.ping
                    && sent_nonce == nonce
                {
                    self.ping = None;
                    self.rtt = Some(now.saturating_duration_since(sent_at));
                }
            }
            ClientMessage::Input { seq, payload } => {
                let max = max_input_payload(self.out.max_frame());
                if payload.len() > max {
                    return Err(Ending::because(
                        CloseReason::ProtocolError,
                        format!(
                            "an input of {} bytes; inputs carry at most {max}",
                            payload.len()
                        ),
                    ));
                }
                if seq > self.last_input_seq {
                    if seq != self.last_input_seq + 1 {
                        return Err(Ending::because(
                            CloseReason::ProtocolError,
                            format!("input seq {seq} skips {}", self.last_input_seq + 1),
                        ));
                    }
                    self.last_input_seq = seq;
                    self.watchdog.input_applied(now);
                    return Ok(Some(Request::Input { seq, payload }));
                }
                // An input at or below the last one applied is a resend after a resume: it was
                // applied once already.
            }
            ClientMessage::Ack { seq } => {
                if seq > self.replay.last_seq() {
                    return Err(Ending::because(
                        CloseReason::ProtocolError,
                        format!(
                            "ack {seq} of an event never sent (the last is {})",
                            self.replay.last_seq()
                        ),
                    ));
                }
                // An ack below an earlier one changes nothing.
                self.replay.ack(seq);
            }
            ClientMessage::Bye(_) => return Err(Ending::new(CloseReason::ClientQuit)),
            ClientMessage::Join { room, options } => {
                check_room(&room)?;
                return Ok(Some(Request::Join { room, options }));
            }
        }
        Ok(None)
    }

    /// What the core can judge of a `Hello` by itself: the version, control characters, and the
    /// automatic rooms' reserved names (a resume keeps the session's room whatever the `Hello`
    /// names, so an automatic room's name from the `Welcome` is no attempt to steer placement).
    fn check_hello(&self, hello: &Hello) -> Result<(), Ending> {
        if !(OLDEST_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&hello.version) {
            return Err(Ending {
                bye: Some(ByeCode::VersionMismatch),
                ..Ending::because(
                    CloseReason::ProtocolError,
                    format!(
                        "this server speaks protocol version {PROTOCOL_VERSION}, the client sent {}",
                        hello.version
                    ),
                )
            });
        }
        if hello.player_id.chars().any(char::is_control) {
            return Err(Ending::because(
                CloseReason::ProtocolError,
                "the player id contains control characters",
            ));
        }
        match hello.resume {
            Some(_) => check_room_chars(&hello.room),
            None => check_room(&hello.room),
        }
    }

    /// The server admitted the `Hello`: the session is live. Sends the `Welcome`, the events a
    /// resumed client missed, and a first ping (so that a session shorter than a heartbeat
    /// yields a round trip too).
    pub(crate) fn welcome(&mut self, welcomed: Welcomed, now: Instant) {
        let replay_after = welcomed.resumed.map(|resumed| {
            self.replay = resumed.replay;
            self.last_input_seq = resumed.last_input_seq;
            self.acked_input_seq = resumed.last_input_seq;
            resumed.last_event_seq
        });
        self.token = welcomed.token;
        self.phase = Phase::Live;
        self.watchdog.handshake_done(now);
        self.rearm = true;
        let timeouts = self.watchdog.timeouts();
        self.out.queue(&ServerMessage::Welcome(Welcome {
            session_id: welcomed.session_id,
            heartbeat_interval_ms: millis(timeouts.heartbeat),
            idle_timeout_ms: millis(timeouts.idle),
            resume_token: self.token.unwrap_or(ResumeToken::NONE),
            resumed: replay_after.is_some(),
            last_input_seq: self.last_input_seq,
            room: welcomed.room,
        }));
        if let Some(last) = replay_after {
            // Checked by the parking lot before it handed the session over.
            for (seq, payload) in self.replay.after(last).unwrap_or_default() {
                self.out.queue(&ServerMessage::Event { seq, payload });
            }
        }
        if !timeouts.heartbeat.is_zero() {
            self.send_ping(now);
        }
    }

    /// The answer to a `Join`.
    pub(crate) fn joined(&mut self, room: String, refusal: Option<&str>) {
        match refusal {
            None => self.out.queue(&ServerMessage::Joined { room }),
            Some(text) => self.out.queue(&ServerMessage::JoinRefused {
                room,
                text: text.to_owned(),
            }),
        };
    }

    fn send_ping(&mut self, now: Instant) {
        if self.phase != Phase::Live {
            return;
        }
        self.send_ack();
        let nonce = self.next_nonce;
        self.next_nonce += 1;
        self.ping = Some((nonce, now));
        self.out.queue(&ServerMessage::Ping { nonce });
    }

    /// Acknowledges inputs applied since the last acknowledgement.
    fn send_ack(&mut self) {
        self.watchdog.acked();
        if self.last_input_seq != self.acked_input_seq {
            self.acked_input_seq = self.last_input_seq;
            self.out.queue(&ServerMessage::Ack {
                seq: self.last_input_seq,
            });
        }
    }

    /// Numbers an event the game queued for the player and writes it. An event too large for a
    /// frame is a game bug: it is dropped before it gets a number, so the client never sees a
    /// gap; false then. Under memory `pressure` less is kept for replay.
    pub(crate) fn push_event(&mut self, payload: Bytes, pressure: bool) -> bool {
        if 1 + 8 + payload.len() > self.out.max_frame() {
            return false;
        }
        self.largest_recent = self.largest_recent.max(payload.len());
        let event = ServerMessage::Event {
            seq: self.replay.next_seq(),
            payload,
        };
        self.out.queue(&event);
        // The frame written is a copy: the replay takes the payload itself, so an event sent to
        // one player is never shared (no reference count to allocate, raise and drop).
        if let ServerMessage::Event { payload, .. } = event {
            self.replay.push(payload, pressure);
        }
        true
    }

    /// What the session holds, when it changed since last asked: replay bytes, and its buffers
    /// (the read buffer's capacity, the write buffer's, and about three copies of the largest
    /// frame in flight: the read buffer it arrived in, the event it produced, and that event
    /// encoded) beyond what the budget's fixed estimate per connection counts
    /// ([`BUFFERS_IN_ESTIMATE`]). Growth in small steps adds up until it is worth reporting to
    /// the budget.
    pub(crate) fn held(&mut self, read_buffer: usize) -> Option<Held> {
        let buffers = (read_buffer + self.out.wbuf.capacity() + 3 * self.largest_recent) as u64;
        let held = (
            self.replay.bytes(),
            buffers.saturating_sub(BUFFERS_IN_ESTIMATE),
        );
        if held == self.published {
            return None;
        }
        let before = self.published.0 + self.published.1;
        let now = held.0 + held.1;
        self.unreported = if now >= before {
            self.unreported + (now - before)
        } else {
            self.unreported.saturating_sub(before - now)
        };
        let grew = (self.unreported >= GROWTH_STEP).then(|| std::mem::take(&mut self.unreported));
        self.published = held;
        Some(Held {
            replay: held.0,
            buffers: held.1,
            grew,
        })
    }

    /// True when the traffic counts are due to be flushed (a busy session may never let the
    /// timer fire).
    pub(crate) fn flush_due(&self, now: Instant) -> bool {
        now >= self.flush_due
    }

    /// The traffic since the last flush, to add to the shared counters.
    pub(crate) fn flush_traffic(&mut self, now: Instant) -> Traffic {
        self.flush_due = now + FLUSH_EVERY;
        self.out.take_unflushed()
    }

    /// All the session's traffic.
    pub(crate) fn traffic(&self) -> Traffic {
        self.out.traffic
    }

    /// Writes the end of the conversation for a graceful close: the acknowledgement of every
    /// applied input (always, even if unchanged: the client then knows exactly which of its
    /// inputs were applied) and the `Bye`. The driver queued the game's last events first.
    pub(crate) fn farewell(&mut self, code: ByeCode, text: String) {
        if self.phase == Phase::Live {
            self.acked_input_seq = self.last_input_seq;
            self.out.queue(&ServerMessage::Ack {
                seq: self.last_input_seq,
            });
        }
        self.out.queue(&ServerMessage::Bye(Bye::new(code, text)));
        self.out.close_frame();
    }

    /// The `Bye` alone, for an abortive close.
    pub(crate) fn last_word(&mut self, code: ByeCode, text: String) {
        self.out.queue(&ServerMessage::Bye(Bye::new(code, text)));
        self.out.close_frame();
    }

    /// The session's resume token, once the handshake issued one.
    pub(crate) fn token(&self) -> Option<ResumeToken> {
        self.token
    }

    /// What a parked session carries to the connection that resumes it: the events kept for
    /// replay and the highest input applied. The core keeps none.
    pub(crate) fn take_for_parking(&mut self) -> (Replay, u64) {
        (
            std::mem::replace(&mut self.replay, Replay::new(0, 0)),
            self.last_input_seq,
        )
    }
}

/// Refuses room names that are not for clients to choose: names with control characters, and
/// the automatic rooms' namespace (a client naming `auto-3` must not steer automatic placement).
fn check_room(room: &str) -> Result<(), Ending> {
    check_room_chars(room)?;
    if claims_auto_prefix(room) {
        return Err(Ending::because(
            CloseReason::ProtocolError,
            format!(
                "room names starting with {:?} are reserved for automatic placement",
                crate::rooms::AUTO_ROOM_PREFIX
            ),
        ));
    }
    Ok(())
}

/// Refuses room names with control characters (they would forge lines in logs).
fn check_room_chars(room: &str) -> Result<(), Ending> {
    if room.chars().any(char::is_control) {
        return Err(Ending::because(
            CloseReason::ProtocolError,
            "the room name contains control characters",
        ));
    }
    Ok(())
}

fn millis(duration: Duration) -> u32 {
    u32::try_from(duration.as_millis()).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    //! The core hook by hook, without a runtime, a socket or a server: every client message,
    //! every timer, every answer to a request, and what each writes.

    use std::cell::Cell;

    use bytes::BytesMut;
    use protocol::{ClientCodec, Resume};
    use tokio_util::codec::Decoder;

    use super::*;

    /// A stall clock the test moves by hand.
    #[derive(Default)]
    struct Clock(Cell<Duration>);

    impl StallClock for Clock {
        fn recorded(&self) -> Duration {
            self.0.get()
        }
        fn observe(&self) -> Duration {
            self.0.get()
        }
    }

    fn config() -> SessionConfig {
        let mut config = crate::config::Config::default().session;
        config.handshake_timeout = Duration::from_secs(5);
        config.heartbeat_interval = Duration::from_secs(5);
        config.idle_timeout = Duration::from_secs(15);
        config.write_timeout = Duration::from_secs(5);
        config.rate_limit_per_sec = 100;
        config.rate_limit_burst = 200;
        config
    }

    fn core_at(start: Instant) -> Core {
        Core::new(&config(), 65_536, false, true, start, Duration::ZERO)
    }

    /// What the core wrote since the last call, decoded.
    fn sent(core: &mut Core) -> Vec<ServerMessage> {
        let mut codec = ClientCodec::default();
        let mut buf = BytesMut::from(&core.outbox().wbuf[..]);
        core.outbox().wbuf.clear();
        std::iter::from_fn(|| codec.decode(&mut buf).expect("the core writes frames")).collect()
    }

    fn hello(player: &str, room: &str) -> Hello {
        Hello::new(player, room)
    }

    fn read(
        core: &mut Core,
        message: ClientMessage,
        now: Instant,
    ) -> Result<Option<Request>, Ending> {
        core.on_read(Inbound::Message(message), now, &Clock::default())
    }

    fn welcomed(session_id: u64) -> Welcomed {
        Welcomed {
            session_id,
            room: "lobby".into(),
            token: Some(ResumeToken([7; 16])),
            resumed: None,
        }
    }

    /// A core past its handshake, with what the handshake wrote taken.
    fn live() -> (Core, Instant) {
        let start = Instant::now();
        let mut core = core_at(start);
        let request = read(
            &mut core,
            ClientMessage::Hello(Box::new(hello("ann", "lobby"))),
            start,
        );
        assert!(matches!(request, Ok(Some(Request::Hello(_)))));
        core.welcome(welcomed(42), start);
        sent(&mut core);
        (core, start)
    }

    fn reason(result: Result<Option<Request>, Ending>) -> CloseReason {
        match result {
            Err(ending) => ending.reason,
            Ok(other) => panic!("no end: {other:?}"),
        }
    }

    #[test]
    fn a_hello_is_handed_on_and_the_welcome_says_what_the_client_needs() {
        let start = Instant::now();
        let mut core = core_at(start);
        assert!(!core.is_live());
        let request = read(
            &mut core,
            ClientMessage::Hello(Box::new(hello("ann", "lobby"))),
            start,
        );
        let Ok(Some(Request::Hello(hello))) = request else {
            panic!("{request:?}")
        };
        assert_eq!(hello.player_id, "ann");
        assert!(
            sent(&mut core).is_empty(),
            "nothing is said before the answer"
        );
        core.welcome(welcomed(42), start);
        assert!(core.is_live());
        let messages = sent(&mut core);
        let [
            ServerMessage::Welcome(welcome),
            ServerMessage::Ping { nonce: 1 },
        ] = &messages[..]
        else {
            panic!("{messages:?}")
        };
        assert_eq!(welcome.session_id, 42);
        assert_eq!(welcome.heartbeat_interval_ms, 5000);
        assert_eq!(welcome.idle_timeout_ms, 15_000);
        assert_eq!(welcome.resume_token, ResumeToken([7; 16]));
        assert!(!welcome.resumed);
        assert_eq!(welcome.room, "lobby");
        assert_eq!(core.token(), Some(ResumeToken([7; 16])));
    }

    #[test]
    fn hellos_the_core_refuses_by_itself() {
        let start = Instant::now();
        let cases: Vec<(Hello, ByeCode, &str)> = vec![
            (
                Hello {
                    version: 1,
                    ..hello("old", "")
                },
                ByeCode::VersionMismatch,
                "speaks protocol version 3, the client sent 1",
            ),
            (
                Hello {
                    version: 4,
                    ..hello("new", "")
                },
                ByeCode::VersionMismatch,
                "speaks protocol version 3, the client sent 4",
            ),
            (hello("bad\nid", ""), ByeCode::ProtocolError, "player id"),
            (hello("ok", "a\u{7}b"), ByeCode::ProtocolError, "room name"),
            (hello("ok", "AUTO-1"), ByeCode::ProtocolError, "reserved"),
        ];
        for (bad, code, says) in cases {
            let mut core = core_at(start);
            let Err(ending) = read(&mut core, ClientMessage::Hello(Box::new(bad)), start) else {
                panic!("accepted")
            };
            assert_eq!(ending.reason, CloseReason::ProtocolError);
            assert_eq!(ending.bye, Some(code));
            assert!(
                ending.detail.as_deref().unwrap_or("").contains(says),
                "{ending:?}"
            );
        }
        // A resume keeps its room: an automatic room's name is no attempt to steer placement.
        let mut core = core_at(start);
        let resuming = Hello {
            resume: Some(Resume {
                token: ResumeToken([1; 16]),
                last_event_seq: 0,
            }),
            ..hello("back", "auto-3")
        };
        assert!(matches!(
            read(&mut core, ClientMessage::Hello(Box::new(resuming)), start),
            Ok(Some(Request::Hello(_)))
        ));
        // A version-2 client is served: its Hello is a version-3 Hello without options.
        let mut core = core_at(start);
        let older = Hello {
            version: 2,
            ..hello("older", "")
        };
        assert!(matches!(
            read(&mut core, ClientMessage::Hello(Box::new(older)), start),
            Ok(Some(Request::Hello(_)))
        ));
        // Anything else first is a protocol error.
        let mut core = core_at(start);
        let ending = read(&mut core, ClientMessage::Ping { nonce: 1 }, start);
        assert_eq!(reason(ending), CloseReason::ProtocolError);
    }

    #[test]
    fn a_resumed_welcome_carries_the_input_position_and_replays_what_the_client_missed() {
        let start = Instant::now();
        let mut core = core_at(start);
        read(
            &mut core,
            ClientMessage::Hello(Box::new(hello("ann", "lobby"))),
            start,
        )
        .expect("hello");
        let mut replay = Replay::new(16, u64::MAX);
        for n in 1..=3u8 {
            replay.push(Bytes::from(vec![n]), false);
        }
        core.welcome(
            Welcomed {
                resumed: Some(Resumed {
                    replay,
                    last_input_seq: 9,
                    last_event_seq: 1,
                }),
                ..welcomed(7)
            },
            start,
        );
        let messages = sent(&mut core);
        let ServerMessage::Welcome(welcome) = &messages[0] else {
            panic!("{messages:?}")
        };
        assert!(welcome.resumed);
        assert_eq!(welcome.last_input_seq, 9);
        let replayed: Vec<u64> = messages
            .iter()
            .filter_map(|m| match m {
                ServerMessage::Event { seq, .. } => Some(*seq),
                _ => None,
            })
            .collect();
        assert_eq!(
            replayed,
            [2, 3],
            "the events after the client's last, in order"
        );
        // An input resent from before the break is not applied twice.
        assert!(matches!(
            read(
                &mut core,
                ClientMessage::Input {
                    seq: 9,
                    payload: Bytes::new()
                },
                start
            ),
            Ok(None)
        ));
        assert!(matches!(
            read(
                &mut core,
                ClientMessage::Input {
                    seq: 10,
                    payload: Bytes::new()
                },
                start
            ),
            Ok(Some(Request::Input { seq: 10, .. }))
        ));
    }

    #[test]
    fn inputs_are_handed_on_once_in_order_and_acknowledged_within_a_heartbeat() {
        let (mut core, start) = live();
        let input = |seq| ClientMessage::Input {
            seq,
            payload: Bytes::from_static(b"move"),
        };
        assert!(matches!(
            read(&mut core, input(1), start),
            Ok(Some(Request::Input { seq: 1, .. }))
        ));
        assert!(
            matches!(read(&mut core, input(1), start), Ok(None)),
            "a duplicate"
        );
        assert_eq!(
            reason(read(&mut core, input(3), start)),
            CloseReason::ProtocolError
        );
        // The acknowledgement goes out a heartbeat after the input, with nothing else due.
        let later = start + Duration::from_secs(5);
        core.on_timer(later, false).expect("timer");
        assert!(sent(&mut core).contains(&ServerMessage::Ack { seq: 1 }));
        // An input larger than any relay of it could carry is refused.
        let (mut core, start) = live();
        let huge = ClientMessage::Input {
            seq: 1,
            payload: Bytes::from(vec![0; 65_536]),
        };
        assert_eq!(
            reason(read(&mut core, huge, start)),
            CloseReason::ProtocolError
        );
    }

    #[test]
    fn a_client_with_its_own_heartbeat_is_never_pinged_and_gets_its_acks_on_time() {
        let (mut core, start) = live();
        let at = |s: u64| start + Duration::from_secs(s);
        read(
            &mut core,
            ClientMessage::Input {
                seq: 1,
                payload: Bytes::new(),
            },
            at(1),
        )
        .expect("input");
        read(&mut core, ClientMessage::Pong { nonce: 1 }, at(4)).expect("pong");
        // The client was heard at 4 s: no ping before 9 s; the input's Ack is due at 6 s.
        assert_eq!(core.next_deadline(), at(6));
        core.on_timer(at(6), false).expect("timer");
        assert_eq!(sent(&mut core), [ServerMessage::Ack { seq: 1 }]);
        assert_eq!(core.next_deadline(), at(9));
        assert_eq!(core.last_inbound(), at(4));
        assert_eq!(core.traffic().frames_in, 3);
    }

    #[test]
    fn nothing_is_read_while_a_hello_is_being_admitted() {
        let start = Instant::now();
        let mut core = core_at(start);
        read(
            &mut core,
            ClientMessage::Hello(Box::new(hello("ann", ""))),
            start,
        )
        .expect("hello");
        let early = read(&mut core, ClientMessage::Ping { nonce: 1 }, start);
        assert_eq!(reason(early), CloseReason::ProtocolError);
    }

    #[test]
    fn a_client_ping_is_answered_with_its_pong_and_pending_acknowledgements() {
        let (mut core, start) = live();
        read(
            &mut core,
            ClientMessage::Input {
                seq: 1,
                payload: Bytes::new(),
            },
            start,
        )
        .expect("input");
        read(&mut core, ClientMessage::Ping { nonce: 99 }, start).expect("ping");
        assert_eq!(
            sent(&mut core),
            [
                ServerMessage::Ack { seq: 1 },
                ServerMessage::Pong { nonce: 99 }
            ]
        );
        // Nothing pending: the pong alone.
        read(&mut core, ClientMessage::Ping { nonce: 100 }, start).expect("ping");
        assert_eq!(sent(&mut core), [ServerMessage::Pong { nonce: 100 }]);
    }

    #[test]
    fn a_pong_answering_the_servers_ping_measures_the_round_trip_and_others_are_ignored() {
        let (mut core, start) = live();
        // The welcome's ping is nonce 1.
        read(&mut core, ClientMessage::Pong { nonce: 5 }, start).expect("pong");
        assert_eq!(core.take_rtt(), None, "an unsolicited pong");
        let back = start + Duration::from_millis(30);
        read(&mut core, ClientMessage::Pong { nonce: 1 }, back).expect("pong");
        assert_eq!(core.take_rtt(), Some(Duration::from_millis(30)));
        assert_eq!(core.take_rtt(), None, "taken once");
    }

    #[test]
    fn acks_release_replay_and_an_ack_of_the_future_is_refused() {
        let (mut core, start) = live();
        for n in 0..3u8 {
            assert!(core.push_event(Bytes::from(vec![n; 10]), false));
        }
        assert_eq!(core.held(0).map(|h| h.replay), Some(30));
        read(&mut core, ClientMessage::Ack { seq: 2 }, start).expect("ack");
        read(&mut core, ClientMessage::Ack { seq: 1 }, start)
            .expect("a backward ack changes nothing");
        assert_eq!(core.held(0).map(|h| h.replay), Some(10));
        assert_eq!(
            reason(read(&mut core, ClientMessage::Ack { seq: 4 }, start)),
            CloseReason::ProtocolError
        );
    }

    #[test]
    fn bye_join_and_a_second_hello() {
        let (mut core, start) = live();
        assert_eq!(
            reason(read(
                &mut core,
                ClientMessage::Bye(Bye::new(ByeCode::ClientQuit, "")),
                start
            )),
            CloseReason::ClientQuit
        );
        let (mut core, start) = live();
        assert!(matches!(
            read(
                &mut core,
                ClientMessage::Join {
                    room: "arena".into(),
                    options: Bytes::from_static(b"team=red")
                },
                start
            ),
            Ok(Some(Request::Join { room, options })) if room == "arena" && options == "team=red"
        ));
        core.joined("arena".into(), None);
        core.joined("vault".into(), Some("locked"));
        assert_eq!(
            sent(&mut core),
            [
                ServerMessage::Joined {
                    room: "arena".into()
                },
                ServerMessage::JoinRefused {
                    room: "vault".into(),
                    text: "locked".into()
                }
            ]
        );
        assert_eq!(
            reason(read(
                &mut core,
                ClientMessage::Join {
                    room: "auto-1".into(),
                    options: Bytes::new()
                },
                start
            )),
            CloseReason::ProtocolError
        );
        let (mut core, start) = live();
        assert_eq!(
            reason(read(
                &mut core,
                ClientMessage::Hello(Box::new(hello("ann", ""))),
                start
            )),
            CloseReason::ProtocolError
        );
    }

    #[test]
    fn every_frame_counts_against_the_rate_limit_and_a_stall_of_the_server_is_forgiven() {
        let (mut core, start) = live();
        let clock = Clock::default();
        // The Hello took the first of the burst's 200 tokens.
        for n in 0..199 {
            let result = core.on_read(
                Inbound::Message(ClientMessage::Ping { nonce: n }),
                start,
                &clock,
            );
            assert!(result.is_ok(), "frame {n} within the burst");
        }
        let over = core.on_read(Inbound::Pong, start, &clock);
        assert_eq!(reason(over), CloseReason::RateLimited);
        // The same flood after the server stood still for 3 s: the frames that piled up are
        // credited.
        let (mut core, start) = live();
        let clock = Clock::default();
        for n in 0..199 {
            core.on_read(
                Inbound::Message(ClientMessage::Ping { nonce: n }),
                start,
                &clock,
            )
            .expect("within the burst");
        }
        clock.0.set(Duration::from_secs(3));
        for _ in 0..250 {
            core.on_read(Inbound::Fragment, start, &clock)
                .expect("credited by the stall");
        }
    }

    #[test]
    fn websocket_pings_are_answered_and_only_protocol_frames_keep_the_session_alive() {
        let start = Instant::now();
        let mut core = Core::new(&config(), 65_536, true, true, start, Duration::ZERO);
        let clock = Clock::default();
        core.on_read(
            Inbound::Message(ClientMessage::Hello(Box::new(hello("ws", "")))),
            start,
            &clock,
        )
        .expect("hello");
        core.welcome(welcomed(1), start);
        core.outbox().wbuf.clear();
        core.on_read(Inbound::Ping(Bytes::from_static(b"hi")), start, &clock)
            .expect("ping");
        assert_eq!(
            &core.outbox().wbuf[..],
            &[0x8A, 2, b'h', b'i'],
            "a pong with the payload"
        );
        // Pings and fragments for the whole idle timeout do not keep the session alive.
        for second in 1..15 {
            let at = start + Duration::from_secs(second);
            core.on_read(Inbound::Fragment, at, &clock)
                .expect("fragment");
            core.on_read(Inbound::Pong, at, &clock).expect("pong");
        }
        let idle = core.on_timer(start + Duration::from_secs(15), false);
        assert_eq!(idle.map_err(|e| e.reason), Err(CloseReason::IdleTimeout));
        // The client's close frame ends the session as a FIN would; the answer repeats its code.
        let result = core.on_read(Inbound::Closed(Some(1001)), start, &clock);
        assert_eq!(reason(result), CloseReason::PeerEof);
        core.outbox().wbuf.clear();
        core.outbox().close_frame();
        assert_eq!(&core.outbox().wbuf[..], &[0x88, 2, 0x03, 0xE9]);
    }

    #[test]
    fn the_timer_pings_a_silent_client_then_ends_it_and_ends_a_missing_hello() {
        let (mut core, start) = live();
        assert_eq!(core.next_deadline(), start + Duration::from_secs(5));
        core.on_timer(start + Duration::from_secs(5), false)
            .expect("ping");
        assert_eq!(sent(&mut core), [ServerMessage::Ping { nonce: 2 }]);
        assert!(!core.silence_due(start + Duration::from_secs(14)));
        let ending = core.on_timer(start + Duration::from_secs(15), false);
        assert_eq!(ending.map_err(|e| e.reason), Err(CloseReason::IdleTimeout));
        // A frame moves the idle deadline.
        let (mut core, start) = live();
        let at = start + Duration::from_secs(10);
        read(&mut core, ClientMessage::Pong { nonce: 1 }, at).expect("pong");
        assert!(core.take_rearm());
        assert!(
            core.on_timer(start + Duration::from_secs(15), false)
                .is_ok()
        );
        // No Hello in time.
        let start = Instant::now();
        let mut core = core_at(start);
        let ending = core.on_timer(start + Duration::from_secs(5), false);
        assert_eq!(
            ending.map_err(|e| e.reason),
            Err(CloseReason::HandshakeTimeout)
        );
    }

    #[test]
    fn a_stall_of_the_server_moves_the_deadlines_later() {
        let start = Instant::now();
        let mut core = core_at(start);
        let clock = Clock::default();
        clock.0.set(Duration::from_secs(2));
        core.forgive_stalls(&clock);
        assert!(core.on_timer(start + Duration::from_secs(6), false).is_ok());
        assert!(
            core.on_timer(start + Duration::from_secs(7), false)
                .is_err()
        );
    }

    #[test]
    fn a_write_blocked_past_the_write_timeout_is_a_slow_consumer() {
        let (mut core, start) = live();
        core.write_blocked(start);
        assert!(core.take_rearm());
        let ending = core.on_timer(start + Duration::from_secs(5), false);
        assert_eq!(ending.map_err(|e| e.reason), Err(CloseReason::SlowConsumer));
        // Drained in time: nothing.
        let (mut core, start) = live();
        core.write_blocked(start);
        core.write_drained();
        assert_eq!(core.outbox().wbuf.capacity(), 0, "the buffer is given back");
        assert!(core.on_timer(start + Duration::from_secs(5), false).is_ok());
        // A transport that holds bytes back is not drained until flushed.
        let (mut core, start) = live();
        core.written_unflushed(start);
        assert!(core.unflushed());
        core.write_drained();
        assert!(!core.unflushed());
    }

    #[test]
    fn events_are_numbered_an_oversized_one_is_dropped_unnumbered_and_pressure_trims_replay() {
        let (mut core, start) = live();
        assert!(core.push_event(Bytes::from_static(b"one"), false));
        assert!(!core.push_event(Bytes::from(vec![0; 65_536]), false));
        assert!(core.push_event(Bytes::from_static(b"two"), false));
        let seqs: Vec<u64> = sent(&mut core)
            .iter()
            .filter_map(|m| match m {
                ServerMessage::Event { seq, .. } => Some(*seq),
                _ => None,
            })
            .collect();
        assert_eq!(seqs, [1, 2], "the dropped event used no number");
        for _ in 0..40 {
            core.push_event(Bytes::from(vec![0; 4096]), false);
        }
        assert!(core.held(0).expect("held").replay > crate::resume::PRESSURE_REPLAY_BYTES);
        core.on_timer(start + Duration::from_millis(1), true)
            .expect("timer");
        assert!(core.held(0).expect("held").replay <= crate::resume::PRESSURE_REPLAY_BYTES);
    }

    #[test]
    fn quiet_moments_give_back_the_replay_slots_once_everything_is_acknowledged() {
        let (mut core, start) = live();
        core.take_quiet();
        assert!(core.push_event(Bytes::from_static(b"joined"), false));
        sent(&mut core);
        core.on_timer(start + Duration::from_millis(1), false)
            .expect("timer");
        assert!(core.take_quiet(), "the timer is a quiet moment");
        assert!(core.replay.sent_capacity() > 0, "unacknowledged: kept");
        read(&mut core, ClientMessage::Ack { seq: 1 }, start).expect("ack");
        assert!(
            !core.take_quiet(),
            "an acknowledgement is not a quiet moment"
        );
        assert!(
            core.replay.sent_capacity() > 0,
            "kept between acknowledgements"
        );
        // A client with its own heartbeat: its ping is the quiet moment.
        read(&mut core, ClientMessage::Ping { nonce: 7 }, start).expect("ping");
        assert!(core.take_quiet());
        assert_eq!(core.replay.sent_capacity(), 0);
        // A client that only answers pings: the timer.
        assert!(core.push_event(Bytes::from_static(b"state"), false));
        read(&mut core, ClientMessage::Ack { seq: 2 }, start).expect("ack");
        assert!(core.replay.sent_capacity() > 0);
        core.on_timer(start + Duration::from_millis(2), false)
            .expect("timer");
        assert_eq!(core.replay.sent_capacity(), 0);
    }

    #[test]
    fn what_the_session_holds_is_reported_when_it_changes_and_growth_in_steps() {
        let (mut core, _) = live();
        // A quiet session's buffers (the welcome it wrote, a small read) are in the budget's
        // fixed estimate per connection: nothing to report, so nothing for the sampler to walk.
        assert!(core.held(1024).is_none(), "small buffers are not reported");
        let big = (GROWTH_STEP + BUFFERS_IN_ESTIMATE) as usize;
        let held = core.held(big).expect("grew");
        assert!(held.buffers >= GROWTH_STEP, "{held:?}");
        assert!(
            held.grew.is_some(),
            "a growth worth telling the budget at once"
        );
        assert!(core.held(big).is_none(), "nothing changed");
        assert!(core.held(big + 10).expect("grew").grew.is_none());
        assert_eq!(core.held(0).map(|held| held.buffers), Some(0), "given back");
    }

    #[test]
    fn the_farewell_acknowledges_every_input_then_says_bye() {
        let (mut core, start) = live();
        read(
            &mut core,
            ClientMessage::Input {
                seq: 1,
                payload: Bytes::new(),
            },
            start,
        )
        .expect("input");
        core.farewell(ByeCode::ServerShutdown, "draining".into());
        let messages = sent(&mut core);
        assert_eq!(messages[0], ServerMessage::Ack { seq: 1 });
        assert!(
            matches!(&messages[1], ServerMessage::Bye(bye) if bye.code == ByeCode::ServerShutdown && bye.text == "draining")
        );
        // Before the handshake, the Bye alone.
        let mut core = core_at(start);
        core.last_word(ByeCode::HandshakeTimeout, String::new());
        assert!(matches!(&sent(&mut core)[..], [ServerMessage::Bye(_)]));
    }

    #[test]
    fn traffic_is_counted_and_flushed_in_deltas_and_parking_takes_the_replay() {
        let (mut core, start) = live();
        read(&mut core, ClientMessage::Ping { nonce: 1 }, start).expect("ping");
        assert!(!core.flush_due(start + Duration::from_secs(4)));
        assert!(core.flush_due(start + FLUSH_EVERY));
        let delta = core.flush_traffic(start);
        assert_eq!(delta.frames_in, 2, "the Hello and the Ping");
        assert_eq!(
            delta.frames_out, 3,
            "the Welcome, the first Ping and the Pong"
        );
        assert_eq!(core.flush_traffic(start).frames_in, 0, "counted once");
        core.push_event(Bytes::from_static(b"kept"), false);
        read(
            &mut core,
            ClientMessage::Input {
                seq: 1,
                payload: Bytes::new(),
            },
            start,
        )
        .expect("input");
        assert_eq!(core.held(0).map(|h| h.replay), Some(4), "kept for replay");
        let (replay, last_input) = core.take_for_parking();
        assert_eq!(replay.bytes(), 4);
        assert_eq!(last_input, 1);
        assert_eq!(
            core.held(0).map(|h| h.replay),
            Some(0),
            "the core keeps none"
        );
    }
}
