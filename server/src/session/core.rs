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
    Bye, ByeCode, ClientMessage, HEADER_LEN, Hello, PROTOCOL_VERSION, ResumeToken, ServerMessage,
    Welcome, WireMessage, max_input_payload,
};
use tokio::time::Instant;

use crate::config::SessionConfig;
use crate::memory::budget::GROWTH_STEP;
use crate::resume::Replay;
use crate::rooms::claims_auto_prefix;
use crate::session::close::{CloseReason, Ending};
use crate::session::outbox::{Outbox, Traffic};
use crate::session::reader::Inbound;
use crate::session::watchdog::{Expiry, RateLimit, Timeouts, Watchdog};

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
    /// session, and answer with [`Core::welcome`] or the end.
    Hello(Hello),
    /// A `Join`: move the player, and answer with [`Core::joined`].
    Join(String),
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

    /// When the last frame arrived (or the connection was accepted).
    pub(crate) fn last_inbound(&self) -> Instant {
        self.watchdog.last_inbound()
    }

    /// True (once) when a deadline may have moved since the timer was armed.
    pub(crate) fn take_rearm(&mut self) -> bool {
        std::mem::take(&mut self.rearm)
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
        self.out.wbuf = bytes::BytesMut::new();
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
    /// busy one.
    pub(crate) fn on_timer(&mut self, now: Instant, pressure: bool) -> Result<(), Ending> {
        self.largest_recent = 0;
        if pressure {
            self.replay.trim(crate::resume::PRESSURE_REPLAY_BYTES);
        }
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
            ClientMessage::Join { room } => {
                check_room(&room)?;
                return Ok(Some(Request::Join(room)));
            }
        }
        Ok(None)
    }

    /// What the core can judge of a `Hello` by itself: the version, control characters, and the
    /// automatic rooms' reserved names (a resume keeps the session's room whatever the `Hello`
    /// names, so an automatic room's name from the `Welcome` is no attempt to steer placement).
    fn check_hello(&self, hello: &Hello) -> Result<(), Ending> {
        if hello.version != PROTOCOL_VERSION {
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
        let seq = self.replay.push(&payload, pressure);
        self.out.queue(&ServerMessage::Event { seq, payload });
        true
    }

    /// What the session holds, when it changed since last asked: replay bytes, and its buffers
    /// (the read buffer's capacity, the write buffer's, and about three copies of the largest
    /// frame in flight: the read buffer it arrived in, the event it produced, and that event
    /// encoded). Growth in small steps adds up until it is worth reporting to the budget.
    pub(crate) fn held(&mut self, read_buffer: usize) -> Option<Held> {
        let held = (
            self.replay.bytes(),
            (read_buffer + self.out.wbuf.capacity() + 3 * self.largest_recent) as u64,
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
