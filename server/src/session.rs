//! One task per connection: the codec, the watchdog, the outbound queue and the close.
//!
//! The task runs one `select!` over the next inbound frame, the write buffer, the outbound
//! queue, the watchdog's single timer, close requests and shutdown. Every branch is cancel-safe:
//! `FramedRead::next`, `write_buf` and `Receiver::recv` lose nothing when another branch wins.
//! The first fatal event decides the [`CloseReason`]; the close that follows (lingering, abortive
//! or none) is chosen by that reason.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use futures_util::{FutureExt, StreamExt};
use protocol::{
    Bye, ByeCode, ClientMessage, CodecError, HEADER_LEN, Hello, MAX_HELLO_BODY, PROTOCOL_VERSION,
    ResumeToken, ServerCodec, ServerMessage, Welcome, WireMessage,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::codec::{Encoder, FramedRead};
use tracing::Instrument;

use crate::Shared;
use crate::budget::GROWTH_STEP;
use crate::close::{CloseReason, Direction, classify_codec, classify_io};
use crate::metrics::Traffic;
use crate::reaper::SessionEnd;
use crate::registry::{Player, QueueLimit};
use crate::resume::{Carried, Replay};
use crate::watchdog::{Expiry, RateLimit, Timeouts, Watchdog};

/// Initial read buffer. Small so that an idle session costs a few KiB; it grows on demand up to
/// one maximum frame.
const READ_BUFFER: usize = 1024;
/// Stop taking events from the queue while this much is waiting to be written: the queue then
/// fills, and a client that cannot keep up is closed as `slow_consumer` instead of growing the
/// buffer without bound.
const WRITE_HIGH_WATER: usize = 64 * 1024;
/// Most buffered frames handled in one pass of the loop, so that timers and writes still get
/// their turn under a flood.
const FRAMES_PER_PASS: usize = 64;
/// How long a silence deadline waits for a frame that is already waiting to be read.
const SILENCE_GRACE: Duration = Duration::from_millis(5);
/// Room names with this prefix are the server's automatic rooms: they are given, never chosen.
pub const AUTO_ROOM_PREFIX: &str = "auto-";

/// Why the session loop ended, decided at the first fatal event.
#[derive(Debug)]
struct Ending {
    reason: CloseReason,
    /// The `Bye` code when it differs from the reason's own (a version mismatch is a
    /// `protocol_error` that says `version_mismatch`).
    bye: Option<ByeCode>,
    detail: Option<String>,
    decided: Instant,
}

impl Ending {
    fn new(reason: CloseReason) -> Ending {
        Ending {
            reason,
            bye: reason.bye_code(),
            detail: None,
            decided: Instant::now(),
        }
    }

    fn because(reason: CloseReason, detail: impl Into<String>) -> Ending {
        Ending {
            detail: Some(detail.into()),
            ..Ending::new(reason)
        }
    }

    fn io(error: &std::io::Error, direction: Direction) -> Ending {
        // An OS error's text already ends with "(os error N)": the errno is in the log line.
        Ending::because(classify_io(error), format!("{direction:?} failed: {error}"))
    }

    fn codec(error: CodecError) -> Ending {
        match error {
            CodecError::Io(io) => Ending::io(&io, Direction::Read),
            other => Ending::because(classify_codec(&other), other.to_string()),
        }
    }
}

/// Runs one session to its end and reports the end to the reaper.
pub(crate) async fn serve(shared: Arc<Shared>, stream: TcpStream, peer: SocketAddr) {
    let id = shared.next_session_id();
    let span = tracing::info_span!("session", id, %peer, player = tracing::field::Empty);
    async {
        let end = Session::new(&shared, id, peer).run(stream).await;
        shared.report(end).await;
    }
    .instrument(span)
    .await;
}

struct Session<'a> {
    shared: &'a Shared,
    id: u64,
    peer: SocketAddr,
    accepted: Instant,
    codec: ServerCodec,
    wbuf: BytesMut,
    watchdog: Watchdog,
    /// Set when a deadline may have moved earlier, so the timer must be re-armed.
    rearm: bool,
    /// The reader already got its one chance before the current silence deadline.
    silence_grace_used: bool,
    rate: RateLimit,
    traffic: Traffic,
    flushed: Traffic,
    player: Option<Player>,
    /// The queue's sending half until the handshake hands it to the [`Player`].
    events_tx: Option<mpsc::Sender<Bytes>>,
    events: mpsc::Receiver<Bytes>,
    /// Numbers outgoing events and keeps the unacknowledged ones for replay after a resume.
    replay: Replay,
    /// This session's resume token, once the handshake issued one.
    token: Option<ResumeToken>,
    parked: bool,
    last_input_seq: u64,
    acked_input_seq: u64,
    ping: Option<(u64, Instant)>,
    next_nonce: u64,
    /// The server's stall clock as this session last accounted for it.
    stall_seen: Duration,
    /// What the footprint last published: replay bytes and buffer bytes.
    published: (u64, u64),
    /// The largest frame read or event queued since the last timer: buffers in flight that the
    /// buffers' current capacities no longer show (the allocator keeps them all the same).
    largest_recent: usize,
}

impl<'a> Session<'a> {
    fn new(shared: &'a Shared, id: u64, peer: SocketAddr) -> Self {
        let cfg = &shared.config.session;
        let now = Instant::now();
        let (events_tx, events) = mpsc::channel(cfg.outbound_queue);
        Session {
            shared,
            id,
            peer,
            accepted: now,
            codec: ServerCodec::new(shared.config.server.max_frame_bytes),
            wbuf: BytesMut::new(),
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
            silence_grace_used: false,
            rate: RateLimit::new(
                cfg.rate_limit_per_sec,
                cfg.rate_limit_burst,
                now,
                shared.stalls.recorded(),
            ),
            traffic: Traffic::default(),
            flushed: Traffic::default(),
            player: None,
            events_tx: Some(events_tx),
            events,
            replay: Replay::new(
                if shared.parking.enabled() {
                    cfg.resume_buffer
                } else {
                    0
                },
                cfg.resume_buffer_bytes,
            ),
            token: None,
            parked: false,
            last_input_seq: 0,
            acked_input_seq: 0,
            ping: None,
            next_nonce: 1,
            stall_seen: shared.stalls.recorded(),
            published: (0, 0),
            largest_recent: 0,
        }
    }

    async fn run(mut self, mut stream: TcpStream) -> SessionEnd {
        let ending = {
            let (read, mut write) = stream.split();
            // Until the handshake, no frame larger than the largest Hello is read: a length prefix
            // from an unknown peer cannot make the server reserve a full frame.
            let mut hello_codec = self.codec.clone();
            hello_codec.set_max_frame(MAX_HELLO_BODY.min(self.codec.max_frame()));
            let mut reader = FramedRead::with_capacity(read, hello_codec, READ_BUFFER);
            self.serve(&mut reader, &mut write).await
        };
        self.parked = self.park(&ending);
        let forced = self.close(&mut stream, &ending).await;
        self.flush_traffic();
        SessionEnd {
            session_id: self.player.as_ref().map_or(self.id, Player::session_id),
            player: self.player,
            peer: self.peer,
            reason: ending.reason,
            detail: ending.detail,
            lifetime: ending.decided.saturating_duration_since(self.accepted),
            detect: ending
                .decided
                .saturating_duration_since(self.watchdog.last_inbound()),
            traffic: self.traffic,
            forced,
            parked: self.parked,
        }
    }

    async fn serve(
        &mut self,
        reader: &mut FramedRead<ReadHalf<'_>, ServerCodec>,
        writer: &mut WriteHalf<'_>,
    ) -> Ending {
        let shutdown = self.shared.shutdown.clone();
        let sleep = tokio::time::sleep_until(self.watchdog.next_deadline());
        tokio::pin!(sleep);
        let mut control: Option<Player> = None;
        loop {
            let take_events = self.player.is_some() && self.wbuf.len() < WRITE_HIGH_WATER;
            let close_requested = async {
                match &control {
                    Some(player) => player.control().wait().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                reason = close_requested => {
                    return Ending::new(reason);
                }
                () = shutdown.draining() => {
                    return Ending::new(CloseReason::ServerShutdown);
                }
                () = &mut sleep => {
                    let now = Instant::now();
                    self.forgive_stalls();
                    if self.watchdog.silence_due(now) && !self.silence_grace_used && input_waiting(reader) {
                        // A frame arrived in time but a busy runtime has not read it yet: read it
                        // before judging the peer silent. Once per deadline, so that a peer
                        // dribbling bytes cannot stretch it.
                        self.silence_grace_used = true;
                        sleep.as_mut().reset(now + SILENCE_GRACE);
                        continue;
                    }
                    if let Some(ending) = self.on_timer() {
                        return ending;
                    }
                    sleep.as_mut().reset(self.watchdog.next_deadline());
                }
                written = writer.write_buf(&mut self.wbuf), if !self.wbuf.is_empty() => match written {
                    Ok(0) => return Ending::because(CloseReason::IoError, "write returned zero bytes"),
                    Ok(_) if self.wbuf.is_empty() => self.watchdog.write_drained(),
                    Ok(_) => {
                        self.watchdog.write_blocked(Instant::now());
                        self.rearm = true;
                    }
                    Err(error) => return Ending::io(&error, Direction::Write),
                },
                frame = reader.next() => {
                    // Handle every frame already buffered before the next write, so that a
                    // pipelining client's answers go out in few large writes, not one per frame.
                    let mut frame = frame;
                    let mut handled = 0;
                    loop {
                        match frame {
                            Some(Ok(message)) => {
                                if let Some(ending) = self.on_message(message).await {
                                    return ending;
                                }
                                if control.is_none() && self.player.is_some() {
                                    control.clone_from(&self.player);
                                    reader.decoder_mut().set_max_frame(self.codec.max_frame());
                                }
                            }
                            Some(Err(CodecError::FrameTooLarge { len, .. })) if self.player.is_none() => {
                                return Ending::because(
                                    CloseReason::ProtocolError,
                                    format!("a frame of {len} bytes before Hello (a Hello is at most {MAX_HELLO_BODY})"),
                                );
                            }
                            Some(Err(error)) => return Ending::codec(error),
                            None => return Ending::new(CloseReason::PeerEof),
                        }
                        handled += 1;
                        if handled >= FRAMES_PER_PASS || reader.read_buffer().is_empty() {
                            break;
                        }
                        match reader.next().now_or_never() {
                            Some(next) => frame = next,
                            None => break,
                        }
                    }
                    if self.player.is_some() {
                        self.take_queued_events();
                    }
                }
                payload = self.events.recv(), if take_events => {
                    if let Some(payload) = payload {
                        self.push_event(payload);
                        self.take_queued_events();
                    }
                }
            }
            if std::mem::take(&mut self.rearm) {
                let deadline = self.watchdog.next_deadline();
                if deadline < sleep.deadline() {
                    sleep.as_mut().reset(deadline);
                }
            }
            self.publish_footprint(reader.read_buffer().capacity());
        }
    }

    /// Moves this session's deadlines later by the server's own stalls since it last looked:
    /// the client could not be heard while the server stood still.
    fn forgive_stalls(&mut self) {
        let total = self.shared.stalls.observe();
        if total > self.stall_seen {
            self.watchdog.forgive(total - self.stall_seen);
            self.stall_seen = total;
        }
    }

    /// Publishes what this session holds for the memory budget, when it changed.
    fn publish_footprint(&mut self, read_buffer: usize) {
        let Some(player) = &self.player else {
            return;
        };
        // A large frame in flight costs about three copies: the read buffer it arrived in,
        // the event it produced, and that event encoded in the write buffer.
        let held = (
            self.replay.bytes(),
            (read_buffer + self.wbuf.capacity() + 3 * self.largest_recent) as u64,
        );
        if held != self.published {
            let growth = (held.0 + held.1).saturating_sub(self.published.0 + self.published.1);
            if growth >= GROWTH_STEP {
                self.shared.budget.grew(growth);
            }
            self.published = held;
            player.footprint().set_held(held.0, held.1);
        }
    }

    fn on_timer(&mut self) -> Option<Ending> {
        let now = Instant::now();
        self.largest_recent = 0;
        self.flush_traffic();
        while let Some(expiry) = self.watchdog.expired(now) {
            let cfg = &self.shared.config.session;
            return Some(match expiry {
                Expiry::Ping => {
                    self.send_ping(now);
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
                        self.wbuf.len()
                    ),
                ),
            });
        }
        None
    }

    async fn on_message(&mut self, message: ClientMessage) -> Option<Ending> {
        let now = Instant::now();
        self.watchdog.inbound(now);
        self.silence_grace_used = false;
        self.stall_seen = self.stall_seen.max(self.shared.stalls.recorded());
        self.traffic.frames_in += 1;
        let len = wire_len(&message);
        self.traffic.bytes_in += len;
        self.largest_recent = self.largest_recent.max(len as usize);
        // The rate limit looks for a stall of the server itself only before refusing.
        if !self.rate.take(now, self.shared.stalls.recorded())
            && !self.rate.take(now, self.shared.stalls.observe())
        {
            let cfg = &self.shared.config.session;
            return Some(Ending::because(
                CloseReason::RateLimited,
                format!(
                    "more than {} frames/s (burst {})",
                    cfg.rate_limit_per_sec, cfg.rate_limit_burst
                ),
            ));
        }
        let Some(player) = &self.player else {
            return match message {
                ClientMessage::Hello(hello) => self.handshake(hello).await,
                other => Some(Ending::because(
                    CloseReason::ProtocolError,
                    format!("expected Hello, got {:?}", other.kind()),
                )),
            };
        };
        match message {
            ClientMessage::Hello(_) => {
                return Some(Ending::because(
                    CloseReason::ProtocolError,
                    "duplicate Hello",
                ));
            }
            ClientMessage::Ping { nonce } => self.queue(&ServerMessage::Pong { nonce }),
            ClientMessage::Pong { nonce } => {
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
                if seq > self.last_input_seq {
                    if seq != self.last_input_seq + 1 {
                        return Some(Ending::because(
                            CloseReason::ProtocolError,
                            format!("input seq {seq} skips {}", self.last_input_seq + 1),
                        ));
                    }
                    self.last_input_seq = seq;
                    self.shared.game.input(player, seq, payload);
                }
            }
            ClientMessage::Ack { seq } => self.replay.ack(seq),
            ClientMessage::Bye(_) => return Some(Ending::new(CloseReason::ClientQuit)),
            ClientMessage::Join { room } => {
                if let Some(ending) = check_room(&room) {
                    return Some(ending);
                }
                let room = self.shared.game.join(player, &room);
                player.set_room(&room);
                self.queue(&ServerMessage::Joined { room });
            }
        }
        None
    }

    async fn handshake(&mut self, hello: Hello) -> Option<Ending> {
        if hello.version != PROTOCOL_VERSION {
            return Some(Ending {
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
            return Some(Ending::because(
                CloseReason::ProtocolError,
                "the player id contains control characters",
            ));
        }
        if let Some(ending) = check_room(&hello.room) {
            return Some(ending);
        }
        if let Some(auth) = &self.shared.auth {
            let source = self.peer.ip();
            if self.shared.admission.auth_throttled(source).is_err() {
                self.shared.metrics.auth_throttled.inc();
                return Some(Ending::because(
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
                return Some(Ending::because(CloseReason::AuthFailed, error.to_string()));
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
                    return Some(Ending {
                        bye: Some(ByeCode::ResumeRejected),
                        ..Ending::because(CloseReason::AuthFailed, refusal.explain())
                    });
                }
            },
            None => {
                if parking.enabled() {
                    parking.discard_player(&hello.player_id);
                }
                let events_tx = self.events_tx.take()?;
                let limit = QueueLimit {
                    max_bytes: self.shared.config.session.outbound_queue_bytes,
                    pressure: self.shared.budget.pressure_flag(),
                };
                let player = Player::new(
                    self.id,
                    Arc::from(hello.player_id),
                    self.peer,
                    events_tx,
                    limit,
                );
                if let Some(old) = self.shared.registry.register(player.clone()) {
                    tracing::info!(
                        old_session = old.session_id(),
                        "player connected again; the older session is replaced"
                    );
                }
                let room = self.shared.game.join(&player, &hello.room);
                player.set_room(&room);
                (player, None)
            }
        };
        tracing::Span::current().record("player", player.player_id());
        self.token = parking.enabled().then(|| parking.issue(&player));
        self.watchdog.handshake_done(Instant::now());
        self.rearm = true;
        let cfg = &self.shared.config.session;
        self.queue(&ServerMessage::Welcome(Welcome {
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
                self.queue(&ServerMessage::Event { seq, payload });
            }
        }
        self.player = Some(player);
        None
    }

    /// Takes over a parked session: its player, its queued events, its replay buffer and its
    /// input position. The connection inherits the session's id.
    fn adopt(&mut self, carried: Carried) -> Player {
        let player = carried.player;
        player.set_peer(self.peer);
        self.id = player.session_id();
        self.events = carried.events;
        self.events_tx = None;
        self.replay = carried.replay;
        self.last_input_seq = carried.last_input_seq;
        self.acked_input_seq = carried.last_input_seq;
        self.shared.registry.register(player.clone());
        self.shared.game.reconnected(&player);
        tracing::info!(session = player.session_id(), "session resumed");
        player
    }

    /// After an abnormal end, parks the session for resume instead of letting the player leave.
    /// Returns true when it parked.
    fn park(&mut self, ending: &Ending) -> bool {
        let (Some(token), Some(player)) = (self.token, &self.player) else {
            return false;
        };
        let parking = &self.shared.parking;
        let parkable = match ending.reason {
            CloseReason::PeerReset
            | CloseReason::PeerEof
            | CloseReason::TruncatedFrame
            | CloseReason::BrokenPipe
            | CloseReason::IdleTimeout
            | CloseReason::TcpTimeout => true,
            CloseReason::SlowConsumer => self.shared.config.session.resume_after_slow_consumer,
            // A resuming connection claimed this session while it still looked alive.
            _ => parking.is_claimed(&token),
        };
        if !parkable {
            parking.retire(token);
            return false;
        }
        self.shared.registry.remove(player.session_id());
        let (_, closed) = mpsc::channel(1);
        let carried = Carried {
            player: player.clone(),
            events: std::mem::replace(&mut self.events, closed),
            replay: std::mem::replace(&mut self.replay, Replay::new(0, 0)),
            last_input_seq: self.last_input_seq,
        };
        parking.park(token, carried, ending.reason);
        true
    }

    fn send_ping(&mut self, now: Instant) {
        if self.player.is_none() {
            return;
        }
        self.send_ack();
        let nonce = self.next_nonce;
        self.next_nonce += 1;
        self.ping = Some((nonce, now));
        self.queue(&ServerMessage::Ping { nonce });
    }

    /// Acknowledges inputs applied since the last acknowledgement.
    fn send_ack(&mut self) {
        if self.last_input_seq != self.acked_input_seq {
            self.acked_input_seq = self.last_input_seq;
            self.queue(&ServerMessage::Ack {
                seq: self.last_input_seq,
            });
        }
    }

    /// Feeds everything already queued (up to the high-water mark), so that it is written at once.
    fn take_queued_events(&mut self) {
        while self.wbuf.len() < WRITE_HIGH_WATER {
            let Ok(payload) = self.events.try_recv() else {
                break;
            };
            self.push_event(payload);
        }
    }

    fn push_event(&mut self, payload: Bytes) {
        self.largest_recent = self.largest_recent.max(payload.len());
        if let Some(player) = &self.player {
            player.footprint().dequeue(payload.len() as u64);
        }
        let seq = self
            .replay
            .push(&payload, self.shared.budget.under_pressure());
        self.queue(&ServerMessage::Event { seq, payload });
    }

    /// Encodes a message into the write buffer; the select loop writes it.
    fn queue(&mut self, message: &ServerMessage) {
        let before = self.wbuf.len();
        match self.codec.encode(message, &mut self.wbuf) {
            Ok(()) => {
                self.traffic.frames_out += 1;
                self.traffic.bytes_out += (self.wbuf.len() - before) as u64;
            }
            Err(error) => {
                self.shared.metrics.events_oversized.inc();
                tracing::error!(%error, kind = ?message.kind(), "message dropped: it does not fit in a frame");
            }
        }
    }

    fn flush_traffic(&mut self) {
        let delta_in = self.traffic.bytes_in - self.flushed.bytes_in;
        let delta_out = self.traffic.bytes_out - self.flushed.bytes_out;
        if let Some(player) = &self.player {
            player.add_traffic(delta_in, delta_out);
        }
        self.shared.traffic.flush(&self.traffic, &mut self.flushed);
    }

    /// Closes the connection the way the reason calls for. Returns true when a graceful close was
    /// cut short by a forced shutdown.
    async fn close(&mut self, stream: &mut TcpStream, ending: &Ending) -> bool {
        let cfg = &self.shared.config.session;
        let reason = ending.reason;
        let abortive = matches!(reason, CloseReason::IdleTimeout | CloseReason::TcpTimeout)
            || (reason == CloseReason::ProtocolError && cfg.abort_on_protocol_error);
        let Some(code) = ending
            .bye
            .filter(|_| !matches!(reason, CloseReason::TcpTimeout))
        else {
            // The peer closed or the connection is dead: nothing can be said. A FIN follows on
            // drop; the receive buffer is empty (we read to EOF or the socket failed), so the
            // kernel has no reason to reset.
            if reason == CloseReason::TcpTimeout {
                abort(stream);
            }
            return false;
        };
        let text = ending.detail.clone().unwrap_or_default();
        if abortive {
            // Best effort: one non-blocking write of the Bye, then RST. A dead peer never reads,
            // so the socket is freed at once instead of retransmitting in FIN-WAIT-1.
            self.queue(&ServerMessage::Bye(Bye::new(code, text)));
            let _ = stream.try_write(&self.wbuf);
            abort(stream);
            return false;
        }
        // Lingering close. Flush what the game queued (unless the client is the one not reading),
        // acknowledge inputs, say Bye, then FIN and read until the client's FIN.
        if reason != CloseReason::SlowConsumer {
            self.events.close();
            while let Ok(payload) = self.events.try_recv() {
                self.push_event(payload);
            }
        }
        // Always acknowledge before the Bye, even if unchanged: the client then knows exactly
        // which of its inputs were applied.
        if self.player.is_some() {
            self.acked_input_seq = self.last_input_seq;
            self.queue(&ServerMessage::Ack {
                seq: self.last_input_seq,
            });
        }
        self.queue(&ServerMessage::Bye(Bye::new(code, text)));
        // During a drain the global drain timeout bounds the flush; otherwise linger_timeout.
        let deadline =
            (reason != CloseReason::ServerShutdown).then(|| Instant::now() + cfg.linger_timeout);
        let outcome = if cfg.lingering_close {
            linger(stream, &mut self.wbuf, deadline, &self.shared.shutdown).await
        } else {
            naive_close(stream, &mut self.wbuf, deadline).await
        };
        match outcome {
            Linger::Clean => false,
            Linger::Failed(error) => {
                tracing::debug!(%error, "lingering close failed; resetting");
                abort(stream);
                false
            }
            Linger::TimedOut => {
                tracing::debug!("lingering close timed out; resetting");
                abort(stream);
                false
            }
            Linger::Forced => {
                abort(stream);
                true
            }
        }
    }
}

/// How a lingering close went.
#[derive(Debug)]
pub(crate) enum Linger {
    /// Everything was written and the client closed its side.
    Clean,
    /// The write or the read failed (the client reset).
    Failed(std::io::Error),
    /// The linger deadline passed first.
    TimedOut,
    /// A forced shutdown cut it short.
    Forced,
}

/// Lingering close: write everything, send FIN, then read and discard until the client's FIN,
/// so that unread client data never makes the kernel reset the connection and destroy the
/// server's last messages.
pub(crate) async fn linger(
    stream: &mut TcpStream,
    wbuf: &mut BytesMut,
    deadline: Option<Instant>,
    shutdown: &crate::shutdown::Shutdown,
) -> Linger {
    let work = async {
        stream.write_all_buf(wbuf).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 1024];
        while stream.read(&mut sink).await? != 0 {}
        Ok::<(), std::io::Error>(())
    };
    let bounded = async {
        match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline, work).await,
            None => Ok(work.await),
        }
    };
    tokio::select! {
        result = bounded => match result {
            Ok(Ok(())) => Linger::Clean,
            Ok(Err(error)) => Linger::Failed(error),
            Err(_) => Linger::TimedOut,
        },
        () = shutdown.aborted() => Linger::Forced,
    }
}

/// The close that lingering close exists to avoid: write, then close at once. If the client's
/// data is still unread, the kernel answers with RST and the client may lose what was written.
/// Only reachable with `session.lingering_close = false`, for demonstrations and tests.
async fn naive_close(
    stream: &mut TcpStream,
    wbuf: &mut BytesMut,
    deadline: Option<Instant>,
) -> Linger {
    let deadline = deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
    match tokio::time::timeout_at(deadline, stream.write_all_buf(wbuf)).await {
        Ok(Ok(())) => Linger::Clean,
        Ok(Err(error)) => Linger::Failed(error),
        Err(_) => Linger::TimedOut,
    }
}

/// Zero linger: the close sends RST and frees the socket at once. Never blocks.
fn abort(stream: &TcpStream) {
    if let Err(error) = stream.set_zero_linger() {
        tracing::debug!(%error, "cannot set zero linger");
    }
}

/// Turns away a connection before it becomes a session, with a `Bye` and a lingering close.
pub(crate) async fn reject(mut stream: TcpStream, bye: Bye, shared: Arc<Shared>) {
    let mut wbuf = BytesMut::new();
    let mut codec = ServerCodec::new(shared.config.server.max_frame_bytes);
    if codec.encode(ServerMessage::Bye(bye), &mut wbuf).is_err() {
        return;
    }
    let deadline = Instant::now() + shared.config.session.linger_timeout;
    if !matches!(
        linger(&mut stream, &mut wbuf, Some(deadline), &shared.shutdown).await,
        Linger::Clean
    ) {
        abort(&stream);
    }
}

/// True when a whole frame is buffered, or bytes wait in the socket: input the session has not
/// processed yet through no fault of the peer. Peeks with a plain non-blocking syscall, because
/// the runtime's readiness cache may not have seen the bytes yet when the runtime is busy.
fn input_waiting(reader: &FramedRead<ReadHalf<'_>, ServerCodec>) -> bool {
    let buffered = reader.read_buffer();
    if let Some(prefix) = buffered.get(..HEADER_LEN) {
        let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
        if buffered.len() >= HEADER_LEN + len {
            return true;
        }
    }
    let socket = socket2::SockRef::from(reader.get_ref().as_ref());
    let mut byte = [std::mem::MaybeUninit::<u8>::uninit(); 1];
    matches!(socket.peek(&mut byte), Ok(n) if n > 0)
}

/// Refuses room names that are not for clients to choose: names with control characters, and
/// the automatic rooms' namespace (a client naming `auto-3` must not steer automatic placement).
fn check_room(room: &str) -> Option<Ending> {
    if room.chars().any(char::is_control) {
        return Some(Ending::because(
            CloseReason::ProtocolError,
            "the room name contains control characters",
        ));
    }
    if room.starts_with(AUTO_ROOM_PREFIX) {
        return Some(Ending::because(
            CloseReason::ProtocolError,
            format!(
                "room names starting with {AUTO_ROOM_PREFIX:?} are reserved for automatic placement"
            ),
        ));
    }
    None
}

fn wire_len(message: &ClientMessage) -> u64 {
    (HEADER_LEN + 1 + message.fields_len()) as u64
}

fn millis(duration: Duration) -> u32 {
    u32::try_from(duration.as_millis()).unwrap_or(u32::MAX)
}
