//! A session's protocol state, without sockets: the handshake (with auth and resume), the
//! dispatch of every client message, input and event numbering, acknowledgements and replay,
//! the heartbeat and the deadlines. [`crate::session::driver`] owns the transport and drives it; the
//! session writes what it says into an [`Outbox`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use protocol::{
    Bye, ByeCode, ClientMessage, CodecError, HEADER_LEN, Hello, PROTOCOL_VERSION, ResumeToken,
    ServerCodec, ServerMessage, Welcome, WireMessage, max_input_payload,
};
use tokio::time::Instant;
use tokio_util::codec::Encoder;

use crate::memory::budget::GROWTH_STEP;
use crate::ops::metrics::Traffic;
use crate::ops::reaper::SessionEnd;
use crate::player::registry::{Player, QueueLimit};
use crate::resume::{Carried, Replay};
use crate::rooms::{self, AUTO_ROOM_PREFIX, Command, RoomHandle};
use crate::server::Shared;
use crate::session::close::{CloseReason, Direction, Park, classify_codec, classify_io, policy};
use crate::session::reader::Inbound;
use crate::session::watchdog::{Expiry, RateLimit, Timeouts, Watchdog};
use crate::transport::slots::Slot;

/// Why a session ended, decided at the first fatal event.
#[derive(Debug)]
pub(crate) struct Ending {
    pub reason: CloseReason,
    /// The `Bye` code when it differs from the reason's own (a version mismatch is a
    /// `protocol_error` that says `version_mismatch`).
    pub bye: Option<ByeCode>,
    pub detail: Option<String>,
    pub decided: Instant,
    /// The player id of a refused `Hello`, for the close record and the log.
    pub claimed: Option<Arc<str>>,
}

impl Ending {
    pub fn new(reason: CloseReason) -> Ending {
        Ending {
            reason,
            bye: policy(reason).bye,
            detail: None,
            decided: Instant::now(),
            claimed: None,
        }
    }

    pub fn because(reason: CloseReason, detail: impl Into<String>) -> Ending {
        Ending {
            detail: Some(detail.into()),
            ..Ending::new(reason)
        }
    }

    pub fn io(error: &std::io::Error, direction: Direction) -> Ending {
        // An OS error's text already ends with "(os error N)": the errno is in the log line.
        Ending::because(classify_io(error), format!("{direction:?} failed: {error}"))
    }

    pub fn codec(error: CodecError) -> Ending {
        match error {
            CodecError::Io(io) => Ending::io(&io, Direction::Read),
            other => Ending::because(classify_codec(&other), other.to_string()),
        }
    }
}

/// Where a session writes what it says: the encoder, the write buffer the connection drains,
/// and the traffic counts.
#[derive(Debug)]
pub(crate) struct Outbox {
    codec: ServerCodec,
    pub wbuf: BytesMut,
    pub traffic: Traffic,
    /// What was last added to the shared counters.
    pub flushed: Traffic,
    /// Over WebSocket: the code the server's close frame will carry (`None`: not WebSocket, or
    /// the close frame was written).
    websocket: Option<u16>,
    is_websocket: bool,
}

impl Outbox {
    /// An outbox for frames of at most `max_frame` bytes, in WebSocket messages when
    /// `websocket`.
    pub fn new(max_frame: usize, websocket: bool) -> Outbox {
        Outbox {
            codec: ServerCodec::new(max_frame),
            wbuf: BytesMut::new(),
            traffic: Traffic::default(),
            flushed: Traffic::default(),
            websocket: websocket.then_some(crate::transport::websocket::close_code::NORMAL),
            is_websocket: websocket,
        }
    }

    /// True when the session speaks WebSocket.
    pub fn is_websocket(&self) -> bool {
        self.is_websocket
    }

    /// Over WebSocket, the code the close frame will carry (why the client's frames were
    /// refused, or the client's own code when answering its close).
    pub fn set_close_code(&mut self, code: u16) {
        if self.websocket.is_some() {
            self.websocket = Some(code);
        }
    }

    /// Over WebSocket, the server's close frame, once; nothing over TCP.
    pub fn close_frame(&mut self) {
        if let Some(code) = self.websocket.take() {
            crate::transport::websocket::encode_close(code, &mut self.wbuf);
        }
    }

    /// Over WebSocket, the pong answering a ping.
    pub fn pong(&mut self, payload: &[u8]) {
        if self.is_websocket {
            crate::transport::websocket::encode_pong(payload, &mut self.wbuf);
        }
    }

    /// Encodes a message into the write buffer. False when it does not fit in a frame (then
    /// nothing was written).
    pub fn queue(&mut self, message: &ServerMessage) -> bool {
        if self.wbuf.capacity() == 0 {
            // The buffer is given back whenever it drains; start the next one at a size that
            // holds a batch of small messages without regrowing.
            self.wbuf.reserve(WRITE_START);
        }
        let before = self.wbuf.len();
        let encoded = match self.is_websocket {
            true => {
                crate::transport::websocket::encode(message, self.codec.max_frame(), &mut self.wbuf)
            }
            false => self.codec.encode(message, &mut self.wbuf),
        };
        match encoded {
            Ok(()) => {
                self.traffic.frames_out += 1;
                self.traffic.bytes_out += (self.wbuf.len() - before) as u64;
                true
            }
            Err(error) => {
                tracing::error!(%error, kind = ?message.kind(), "message dropped: it does not fit in a frame");
                false
            }
        }
    }

    /// The largest frame body the codec produces.
    pub fn max_frame(&self) -> usize {
        self.codec.max_frame()
    }
}

/// The protocol state of one session.
pub(crate) struct Session<'a> {
    shared: &'a Shared,
    /// The session id (the parked session's own after a resume).
    pub id: u64,
    pub peer: SocketAddr,
    accepted: Instant,
    watchdog: Watchdog,
    /// Set when a deadline may have moved earlier, so the timer must be re-armed.
    pub rearm: bool,
    /// The write buffer drained into a transport that holds bytes back until flushed
    /// ([`crate::session::driver::Transport::BUFFERED`]).
    pub unflushed: bool,
    rate: RateLimit,
    player: Option<Player>,
    /// The player's room, for its inputs (a copy of the player's own place).
    room: Option<RoomHandle>,
    /// The session was parked for resume: its queue and replay buffer went with it.
    parked: bool,
    /// Numbers outgoing events and keeps the unacknowledged ones for replay after a resume.
    replay: Replay,
    /// This session's resume token, once the handshake issued one.
    token: Option<ResumeToken>,
    last_input_seq: u64,
    acked_input_seq: u64,
    ping: Option<(u64, Instant)>,
    next_nonce: u64,
    /// The server's stall clock as this session last accounted for it.
    stall_seen: Duration,
    /// What the footprint last published: replay bytes and buffer bytes.
    published: (u64, u64),
    /// Growth since the last report to the budget.
    unreported: u64,
    /// The largest frame read or event queued since the last timer: buffers in flight that the
    /// buffers' current capacities no longer show (the allocator keeps them all the same).
    largest_recent: usize,
    /// When the traffic counts are next added to the shared counters (at least once per
    /// heartbeat, whether or not the timer fires).
    flush_due: Instant,
    /// The session's slot under `server.max_sessions` (see [`crate::transport::slots`]).
    slot: Slot,
}

/// What a client message still needs once [`Session::on_message`] has returned.
#[derive(Debug)]
pub(crate) enum Wait {
    /// Handled.
    Nothing,
    /// A `Hello`: authentication, the room, a resume.
    Handshake(Hello),
    /// A `Join`: the room's answer.
    Join(String),
    /// An input for a room whose command queue is full: the session waits for room in it.
    RoomQueue(Command),
}

/// The write buffer's first allocation after it was given back.
const WRITE_START: usize = 1024;

/// Longest a session's traffic counts wait before they reach `/sessions` and the metrics.
const FLUSH_EVERY: Duration = Duration::from_secs(5);

/// Stop taking events from the queue while this much is waiting to be written: the queue then
/// fills, and a client that cannot keep up is closed as `slow_consumer` instead of growing the
/// buffer without bound.
pub(crate) const WRITE_HIGH_WATER: usize = 64 * 1024;

impl<'a> Session<'a> {
    /// A session whose connection was accepted at `accepted` (its handshake deadline counts
    /// from there: time spent reading a PROXY header is part of it), holding `slot`.
    pub fn new(
        shared: &'a Shared,
        id: u64,
        peer: SocketAddr,
        accepted: Instant,
        slot: Slot,
    ) -> Self {
        let cfg = &shared.config.session;
        let now = accepted;
        Session {
            shared,
            id,
            peer,
            accepted: now,
            watchdog: Watchdog::new(
                Timeouts {
                    handshake: cfg.handshake_timeout,
                    heartbeat: cfg.heartbeat_interval,
                    idle: cfg.idle_timeout,
                    write: cfg.write_timeout,
                },
                now,
            ),
            rearm: false,
            unflushed: false,
            rate: RateLimit::new(
                cfg.rate_limit_per_sec,
                cfg.rate_limit_burst,
                now,
                shared.stalls.recorded(),
            ),
            player: None,
            room: None,
            parked: false,
            replay: Replay::new(
                if shared.parking.enabled() {
                    cfg.resume_buffer
                } else {
                    0
                },
                cfg.resume_buffer_bytes,
            ),
            token: None,
            last_input_seq: 0,
            acked_input_seq: 0,
            ping: None,
            next_nonce: 1,
            stall_seen: shared.stalls.recorded(),
            published: (0, 0),
            unreported: 0,
            largest_recent: 0,
            flush_due: now + FLUSH_EVERY,
            slot,
        }
    }

    /// Completes when the session's slot, still pending, went to a newcomer.
    pub fn slot_evicted(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        self.slot.evicted()
    }

    /// The handshake is done: the slot is the session's for good.
    pub fn complete_slot(&mut self) {
        self.slot.complete();
    }

    /// The player, once the handshake is done.
    pub fn player(&self) -> Option<&Player> {
        self.player.as_ref()
    }

    /// The next event the game queued for the player; never completes before the handshake.
    /// Cancel-safe.
    pub async fn next_event(&self) -> Option<Bytes> {
        match &self.player {
            Some(player) => player.queue().pop().await,
            None => std::future::pending().await,
        }
    }

    /// When the timer must fire next.
    pub fn next_deadline(&self) -> Instant {
        self.watchdog.next_deadline()
    }

    /// True when the handshake or idle deadline has passed.
    pub fn silence_due(&self, now: Instant) -> bool {
        self.watchdog.silence_due(now)
    }

    /// A write left bytes unsent: the stall clock runs.
    pub fn write_blocked(&mut self, now: Instant) {
        self.watchdog.write_blocked(now);
        self.rearm = true;
    }

    /// The write buffer drained: the stall clock stops, and the buffer is given back, so that a
    /// session between messages holds none.
    pub fn write_drained(&mut self, out: &mut Outbox) {
        self.watchdog.write_drained();
        out.wbuf = BytesMut::new();
    }

    /// Moves this session's deadlines later by the server's own stalls since it last looked:
    /// the client could not be heard while the server stood still.
    pub fn forgive_stalls(&mut self) {
        let total = self.shared.stalls.observe();
        if total > self.stall_seen {
            self.watchdog.forgive(total - self.stall_seen);
            self.stall_seen = total;
        }
    }

    /// The timer fired: sends the pings that are due, or decides the end.
    pub fn on_timer(&mut self, now: Instant, out: &mut Outbox) -> Result<(), Ending> {
        self.largest_recent = 0;
        self.flush_traffic(out);
        if self.shared.budget.under_pressure() {
            // A quiet session gives back what it holds for replay, not only a busy one.
            self.replay.trim(crate::resume::PRESSURE_REPLAY_BYTES);
        }
        if let Some(player) = &self.player {
            player.queue().shrink();
        }
        while let Some(expiry) = self.watchdog.expired(now) {
            let cfg = &self.shared.config.session;
            return Err(match expiry {
                Expiry::Ping => {
                    self.send_ping(now, out);
                    continue;
                }
                Expiry::Ack => {
                    self.send_ack(out);
                    continue;
                }
                Expiry::Handshake => Ending::because(
                    CloseReason::HandshakeTimeout,
                    format!(
                        "no Hello within {}",
                        humantime::format_duration(cfg.handshake_timeout)
                    ),
                ),
                Expiry::Idle => Ending::because(
                    CloseReason::IdleTimeout,
                    format!(
                        "nothing received for {}",
                        humantime::format_duration(cfg.idle_timeout)
                    ),
                ),
                Expiry::WriteStall => Ending::because(
                    CloseReason::SlowConsumer,
                    format!(
                        "socket backed up for {} with {} bytes unsent",
                        humantime::format_duration(cfg.write_timeout),
                        out.wbuf.len()
                    ),
                ),
            });
        }
        Ok(())
    }

    /// Handles one message from the client. What has to wait (the handshake, a room change, an
    /// input for a room whose queue is full) is returned as [`Wait`] for [`Session::wait`], so
    /// that the common messages are handled without a future.
    /// `now` is when the batch the message came in was read.
    pub fn on_message(
        &mut self,
        message: ClientMessage,
        now: Instant,
        out: &mut Outbox,
    ) -> Result<Wait, Ending> {
        // A stall that ended before this frame moves the other deadlines (handshake, write
        // stall) too; the frame itself restarts the idle one.
        let recorded = self.shared.stalls.recorded();
        if recorded > self.stall_seen {
            self.watchdog.forgive(recorded - self.stall_seen);
            self.stall_seen = recorded;
        }
        self.watchdog.inbound(now);
        // The deadlines moved later: the timer follows them.
        self.rearm = true;
        if now >= self.flush_due {
            // A client that keeps the session busy may never let the timer fire.
            self.flush_traffic(out);
        }
        out.traffic.frames_in += 1;
        let len = wire_len(&message);
        out.traffic.bytes_in += len;
        self.largest_recent = self.largest_recent.max(len as usize);
        self.take_rate(now)?;
        let Some(session_id) = self.player.as_ref().map(Player::session_id) else {
            return match message {
                ClientMessage::Hello(hello) => Ok(Wait::Handshake(hello)),
                other => Err(Ending::because(
                    CloseReason::ProtocolError,
                    format!("expected Hello, got {:?}", other.kind()),
                )),
            };
        };
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
                    self.send_ack(out);
                }
                out.queue(&ServerMessage::Pong { nonce });
            }
            ClientMessage::Pong { nonce } => {
                // A Pong that answers no outstanding Ping is ignored.
                if let Some((sent_nonce, sent_at)) = self.ping
                    && sent_nonce == nonce
                {
                    self.ping = None;
                    self.shared
                        .metrics
                        .heartbeat_rtt
                        .observe(now.saturating_duration_since(sent_at).as_secs_f64());
                }
            }
            ClientMessage::Input { seq, payload } => {
                let max = max_input_payload(out.max_frame());
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
                    if let Some(room) = &self.room
                        && let Err(command) = room.try_send(Command::Input {
                            session: session_id,
                            seq,
                            payload,
                        })
                    {
                        return Ok(Wait::RoomQueue(command));
                    }
                }
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
                return Ok(Wait::Join(room));
            }
        }
        Ok(Wait::Nothing)
    }

    /// A frame of the transport's own from the client (a WebSocket ping, pong or fragment): it
    /// counts against the rate limit like a protocol frame, but does not restart the idle timer
    /// (only a whole protocol frame shows the client is playing). A ping is answered.
    pub fn on_transport_frame(
        &mut self,
        frame: &Inbound,
        now: Instant,
        out: &mut Outbox,
    ) -> Result<(), Ending> {
        self.take_rate(now)?;
        if let Inbound::Ping(payload) = frame {
            out.pong(payload);
        }
        Ok(())
    }

    /// Takes a token from the rate limit, or decides the end. The limit looks for a stall of
    /// the server itself only before refusing.
    fn take_rate(&mut self, now: Instant) -> Result<(), Ending> {
        if !self.rate.take(now, self.shared.stalls.recorded())
            && !self.rate.take(now, self.shared.stalls.observe())
        {
            let cfg = &self.shared.config.session;
            return Err(Ending::because(
                CloseReason::RateLimited,
                format!(
                    "more than {} frames/s (burst {})",
                    cfg.rate_limit_per_sec, cfg.rate_limit_burst
                ),
            ));
        }
        Ok(())
    }

    /// Finishes what [`Session::on_message`] could not do without waiting.
    pub async fn wait(&mut self, wait: Wait, out: &mut Outbox) -> Result<(), Ending> {
        match wait {
            Wait::Nothing => {}
            Wait::Handshake(hello) => {
                // The one copy of the id: the player's if the handshake succeeds, the close
                // record's if it does not.
                let claimed: Arc<str> = Arc::from(hello.player_id.as_str());
                self.handshake(hello, Arc::clone(&claimed), out)
                    .await
                    .map_err(|ending| Ending {
                        claimed: Some(claimed),
                        ..ending
                    })?;
            }
            Wait::Join(room) => {
                if let Some(player) = self.player.clone() {
                    self.join(&player, &room, out).await;
                }
            }
            Wait::RoomQueue(command) => {
                if let Some(room) = &self.room {
                    room.send(command).await;
                }
            }
        }
        Ok(())
    }

    /// Moves the player to another room, or tells it the room refused.
    async fn join(&mut self, player: &Player, name: &str, out: &mut Outbox) {
        if self.room.as_ref().is_some_and(|room| room.name() == name) {
            // Already there: nothing changes.
            out.queue(&ServerMessage::Joined {
                room: name.to_owned(),
            });
            return;
        }
        let refusal = match self.shared.rooms.reserve(name) {
            Ok(handle) => match rooms::join(&handle, player).await {
                Ok(()) => {
                    player.entered(handle.clone());
                    self.room = Some(handle);
                    out.queue(&ServerMessage::Joined {
                        room: name.to_owned(),
                    });
                    return;
                }
                Err(refusal) => refusal,
            },
            Err(refusal) => refusal,
        };
        out.queue(&ServerMessage::JoinRefused {
            room: name.to_owned(),
            text: refusal.reason().to_owned(),
        });
    }

    async fn handshake(
        &mut self,
        hello: Hello,
        player_id: Arc<str>,
        out: &mut Outbox,
    ) -> Result<(), Ending> {
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
        // A resume keeps the session's room whatever the Hello names: an automatic room's name
        // (from the Welcome) is no attempt to steer placement there.
        match hello.resume {
            Some(_) => check_room_chars(&hello.room)?,
            None => check_room(&hello.room)?,
        }
        if let Some(auth) = &self.shared.auth {
            let source = self.peer.ip();
            if self.shared.admission.auth_throttled(source).is_err() {
                self.shared.metrics.auth_throttled.inc();
                return Err(Ending::because(
                    CloseReason::AuthFailed,
                    "too many failed authentications from your network; retry later",
                ));
            }
            if let Err(error) = auth.verify(
                hello.auth_token.as_deref(),
                &hello.player_id,
                SystemTime::now(),
            ) {
                self.shared.admission.auth_failed(source);
                return Err(Ending::because(CloseReason::AuthFailed, error.to_string()));
            }
        }
        let parking = &self.shared.parking;
        let resume = hello.resume.filter(|_| parking.enabled());
        let (player, replay_after) = match resume {
            Some(resume) => match parking
                .resume(resume.token, &hello.player_id, resume.last_event_seq)
                .await
            {
                Ok(carried) => (self.adopt(carried), Some(resume.last_event_seq)),
                Err(refusal) => {
                    return Err(Ending::because(
                        CloseReason::ResumeRejected,
                        refusal.explain(),
                    ));
                }
            },
            None => (self.start(hello, player_id).await?, None),
        };
        self.token = parking.enabled().then(|| parking.issue(&player));
        self.watchdog.handshake_done(Instant::now());
        self.rearm = true;
        let cfg = &self.shared.config.session;
        out.queue(&ServerMessage::Welcome(Welcome {
            session_id: player.session_id(),
            heartbeat_interval_ms: millis(cfg.heartbeat_interval),
            idle_timeout_ms: millis(cfg.idle_timeout),
            resume_token: self.token.unwrap_or(ResumeToken::NONE),
            resumed: replay_after.is_some(),
            last_input_seq: self.last_input_seq,
            room: player.room(),
        }));
        if let Some(last) = replay_after {
            // Checked by the parking lot before it handed the session over.
            for (seq, payload) in self.replay.after(last).unwrap_or_default() {
                out.queue(&ServerMessage::Event { seq, payload });
            }
        }
        self.player = Some(player);
        if !cfg.heartbeat_interval.is_zero() {
            // One round trip measured at once: a session shorter than a heartbeat yields a
            // sample too.
            self.send_ping(Instant::now(), out);
        }
        Ok(())
    }

    /// A fresh session: the player enters the room it asked for, then replaces any older
    /// session of the same player id.
    async fn start(&mut self, hello: Hello, player_id: Arc<str>) -> Result<Player, Ending> {
        let parking = &self.shared.parking;
        if parking.enabled() {
            parking.discard_player(&hello.player_id);
        }
        let limit = QueueLimit {
            max_bytes: self.shared.config.session.outbound_queue_bytes,
            pressure: self.shared.budget.pressure_flag(),
        };
        let player = Player::new(
            self.id,
            player_id,
            self.peer,
            self.shared.config.session.outbound_queue,
            limit,
        );
        let joined = match self.shared.rooms.reserve(&hello.room) {
            Ok(handle) => rooms::join(&handle, &player).await.map(|()| handle),
            Err(refusal) => Err(refusal),
        };
        let handle = joined.map_err(|refusal| {
            Ending::because(CloseReason::JoinRefused, refusal.reason().to_owned())
        })?;
        player.entered(handle.clone());
        self.room = Some(handle);
        if let Some(old) = self.shared.registry.register(player.clone())
            && self
                .shared
                .throttle
                .admit("replaced", crate::ops::logging::ORDINARY)
        {
            tracing::info!(
                session = player.session_id(),
                old_session = old.session_id(),
                "player connected again; the older session is replaced"
            );
        }
        Ok(player)
    }

    /// Takes over a parked session: its player, its queued events, its replay buffer and its
    /// input position. The connection inherits the session's id.
    fn adopt(&mut self, carried: Carried) -> Player {
        let player = carried.player;
        player.set_peer(self.peer);
        self.id = player.session_id();
        self.replay = carried.replay;
        self.last_input_seq = carried.last_input_seq;
        self.acked_input_seq = carried.last_input_seq;
        self.room = player.room_handle();
        self.shared.registry.register(player.clone());
        player.resumed();
        tracing::debug!(session = player.session_id(), "session resumed");
        player
    }

    /// After an abnormal end, parks the session for resume instead of letting the player leave.
    /// Returns true when it parked.
    pub fn park(&mut self, ending: &Ending) -> bool {
        let (Some(token), Some(player)) = (self.token, &self.player) else {
            return false;
        };
        let parking = &self.shared.parking;
        let parkable = match policy(ending.reason).park {
            Park::Yes => true,
            Park::IfSlowConsumersResume => self.shared.config.session.resume_after_slow_consumer,
            // A resuming connection claimed this session while it still looked alive.
            Park::No => parking.is_claimed(&token),
        };
        if !parkable {
            parking.retire(token);
            return false;
        }
        self.shared.registry.remove(player.session_id());
        self.parked = true;
        let carried = Carried {
            player: player.clone(),
            replay: std::mem::replace(&mut self.replay, Replay::new(0, 0)),
            last_input_seq: self.last_input_seq,
        };
        parking.park(
            token,
            carried,
            ending.reason,
            self.shared.admission.source_key(self.peer.ip()),
        );
        true
    }

    fn send_ping(&mut self, now: Instant, out: &mut Outbox) {
        if self.player.is_none() {
            return;
        }
        self.send_ack(out);
        let nonce = self.next_nonce;
        self.next_nonce += 1;
        self.ping = Some((nonce, now));
        out.queue(&ServerMessage::Ping { nonce });
    }

    /// Acknowledges inputs applied since the last acknowledgement.
    fn send_ack(&mut self, out: &mut Outbox) {
        self.watchdog.acked();
        if self.last_input_seq != self.acked_input_seq {
            self.acked_input_seq = self.last_input_seq;
            out.queue(&ServerMessage::Ack {
                seq: self.last_input_seq,
            });
        }
    }

    /// Feeds everything already queued (up to the high-water mark), so that it is written at once.
    pub fn take_queued_events(&mut self, out: &mut Outbox) {
        let Some(player) = self.player.clone() else {
            return;
        };
        if self.parked {
            return;
        }
        // A few at a time, so that the queue's lock is taken once per batch, not per event.
        let mut batch: [Option<Bytes>; 16] = Default::default();
        while out.wbuf.len() < WRITE_HIGH_WATER {
            let taken = player.queue().pop_many(&mut batch);
            for payload in batch[..taken].iter_mut().filter_map(Option::take) {
                self.push_event(payload, out);
            }
            if taken < batch.len() {
                break;
            }
        }
    }

    /// Numbers an event from the queue and writes it. An event too large for a frame is a game
    /// bug: it is dropped before it gets a number, so the client never sees a gap.
    pub fn push_event(&mut self, payload: Bytes, out: &mut Outbox) {
        if let Some(player) = &self.player {
            player.footprint().dequeue(payload.len() as u64);
        }
        if 1 + 8 + payload.len() > out.max_frame() {
            self.shared.metrics.events_oversized.inc();
            if self
                .shared
                .throttle
                .admit("event_oversized", crate::ops::logging::ABUSIVE)
            {
                tracing::error!(
                    bytes = payload.len(),
                    "the game sent an event too large for a frame; dropped before it was numbered"
                );
            }
            return;
        }
        self.largest_recent = self.largest_recent.max(payload.len());
        let seq = self
            .replay
            .push(&payload, self.shared.budget.under_pressure());
        out.queue(&ServerMessage::Event { seq, payload });
    }

    /// Publishes what this session holds for the memory budget, when it changed.
    pub fn publish_footprint(&mut self, read_buffer: usize, out: &Outbox) {
        let Some(player) = &self.player else {
            return;
        };
        // A large frame in flight costs about three copies: the read buffer it arrived in,
        // the event it produced, and that event encoded in the write buffer.
        let held = (
            self.replay.bytes(),
            (read_buffer + out.wbuf.capacity() + 3 * self.largest_recent) as u64,
        );
        if held != self.published {
            let before = self.published.0 + self.published.1;
            let now = held.0 + held.1;
            // Growth in small steps adds up until it is worth reporting.
            self.unreported = if now >= before {
                self.unreported + (now - before)
            } else {
                self.unreported.saturating_sub(before - now)
            };
            if self.unreported >= GROWTH_STEP {
                self.shared
                    .budget
                    .grew(std::mem::take(&mut self.unreported));
            }
            self.published = held;
            player.footprint().set_held(held.0, held.1);
        }
    }

    /// Waits (at most `within`) until the player's room has handled its last inputs, so that the
    /// events they caused are queued before the final flush.
    pub async fn settle(&self, within: Duration) {
        if let Some(room) = &self.room {
            rooms::settle(room, within).await;
        }
    }

    /// Writes the end of the conversation for a graceful close: the queued events (unless the
    /// client is the one not reading them), the acknowledgement of every applied input, and
    /// the `Bye`.
    pub fn farewell(&mut self, ending: &Ending, code: ByeCode, with_queue: bool, out: &mut Outbox) {
        if with_queue
            && !self.parked
            && let Some(player) = self.player.clone()
        {
            player.queue().close();
            while let Some(payload) = player.queue().try_pop() {
                self.push_event(payload, out);
            }
        }
        // Always acknowledge before the Bye, even if unchanged: the client then knows exactly
        // which of its inputs were applied.
        if self.player.is_some() {
            self.acked_input_seq = self.last_input_seq;
            out.queue(&ServerMessage::Ack {
                seq: self.last_input_seq,
            });
        }
        out.queue(&ServerMessage::Bye(Bye::new(code, self.bye_text(ending))));
    }

    /// The `Bye` alone, for an abortive close.
    pub fn last_word(&mut self, ending: &Ending, code: ByeCode, out: &mut Outbox) {
        out.queue(&ServerMessage::Bye(Bye::new(code, self.bye_text(ending))));
    }

    fn bye_text(&self, ending: &Ending) -> String {
        ending.detail.clone().unwrap_or_default()
    }

    /// The game's words, when it ended the session.
    pub fn game_reason(&self) -> Option<String> {
        self.player.as_ref().and_then(|p| p.control().text())
    }

    /// Adds this session's traffic to the shared counters and to its player.
    pub fn flush_traffic(&mut self, out: &mut Outbox) {
        self.flush_due = Instant::now() + FLUSH_EVERY;
        let delta_in = out.traffic.bytes_in - out.flushed.bytes_in;
        let delta_out = out.traffic.bytes_out - out.flushed.bytes_out;
        if let Some(player) = &self.player {
            player.add_traffic(delta_in, delta_out);
        }
        self.shared.traffic.flush(&out.traffic, &mut out.flushed);
    }

    /// What the reaper records.
    pub fn end(
        self,
        ending: Ending,
        forced: bool,
        parked: bool,
        out: &Outbox,
        transport: &'static str,
    ) -> SessionEnd {
        SessionEnd {
            transport,
            session_id: self.player.as_ref().map_or(self.id, Player::session_id),
            player: self.player,
            claimed: ending.claimed,
            peer: self.peer,
            reason: ending.reason,
            detail: ending.detail,
            lifetime: ending.decided.saturating_duration_since(self.accepted),
            detect: ending
                .decided
                .saturating_duration_since(self.watchdog.last_inbound()),
            traffic: out.traffic,
            forced,
            parked,
        }
    }
}

/// Refuses room names that are not for clients to choose: names with control characters, and
/// the automatic rooms' namespace (a client naming `auto-3` must not steer automatic placement).
fn check_room(room: &str) -> Result<(), Ending> {
    check_room_chars(room)?;
    if rooms::claims_auto_prefix(room) {
        return Err(Ending::because(
            CloseReason::ProtocolError,
            format!(
                "room names starting with {AUTO_ROOM_PREFIX:?} are reserved for automatic placement"
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

fn wire_len(message: &ClientMessage) -> u64 {
    (HEADER_LEN + 1 + message.fields_len()) as u64
}

fn millis(duration: Duration) -> u32 {
    u32::try_from(duration.as_millis()).unwrap_or(u32::MAX)
}
