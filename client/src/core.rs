//! The protocol state of a client session, without sockets or clocks of its own (sans-IO): feed
//! it what the server sent and the time, take from it what to send and what to tell the game.
//!
//! A session outlives its connections. The core keeps what PROTOCOL.md ("Session resume") says a
//! client must keep: the latest resume token, the highest event received without a gap, and every
//! input the server has not acknowledged. When a connection breaks, [`Core::disconnected`] says
//! whether to come back with a resume or whether the session is lost; after a resumed `Welcome`
//! the core resends the inputs the server had not applied and drops any event it already
//! delivered, so the game sees every event once, in order, and every input is applied once.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use protocol::{
    Bye, ByeCode, ClientMessage, Hello, MAX_OPTIONS_BYTES, PROTOCOL_VERSION, Resume, ResumeToken,
    ServerMessage, Welcome,
};

use crate::end::{End, Lost};

/// The clock the core is driven with: Tokio's in the driver (so tests can pause it), any
/// monotonic clock in a port.
pub type Instant = tokio::time::Instant;

/// Who the client is and where it plays.
#[derive(Debug, Clone)]
pub struct Config {
    /// The player id (1 to 64 bytes of UTF-8).
    pub player_id: String,
    /// The room to enter with `Hello`; empty lets the server choose.
    pub room: String,
    /// An auth token, when the server requires one.
    pub auth_token: Option<String>,
    /// Most inputs kept unacknowledged (sent, or waiting for a connection); beyond, input is
    /// refused until the server acknowledges some. The server keeps acknowledging within a
    /// heartbeat, so this only fills while the connection is down.
    pub max_unacked_inputs: usize,
    /// Events received and not yet acknowledged after which an `Ack` goes out at once, rather
    /// than with the next heartbeat: keeps the server's replay buffer (1,024 events by default)
    /// small for a client that receives many events.
    pub ack_every: u64,
    /// Join options sent with every `Hello` that starts a session (see [`Config::with_options`]).
    options: Bytes,
}

impl Config {
    /// A player entering `room` ("" for any), with the default limits.
    pub fn new(player_id: impl Into<String>, room: impl Into<String>) -> Config {
        Config {
            player_id: player_id.into(),
            room: room.into(),
            auth_token: None,
            max_unacked_inputs: 1024,
            ack_every: 128,
            options: Bytes::new(),
        }
    }

    /// The same, with join options for the room: opaque bytes the game reads when the player
    /// joins (a character, a team, a private room's password), at most [`MAX_OPTIONS_BYTES`].
    /// They go with the `Hello` of every new session; a resume keeps the room as it was.
    pub fn with_options(mut self, options: impl Into<Bytes>) -> Result<Config, OptionsTooLong> {
        self.options = checked_options(options.into())?;
        Ok(self)
    }

    /// The join options sent with `Hello` (empty when none).
    pub fn options(&self) -> &Bytes {
        &self.options
    }
}

/// Join options longer than [`MAX_OPTIONS_BYTES`]: the server would refuse the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("join options are at most {MAX_OPTIONS_BYTES} bytes, these are {0}")]
pub struct OptionsTooLong(pub usize);

/// Why a `Join` was not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    /// Not connected: a `Join` goes only to a live session.
    #[error("not connected")]
    NotConnected,
    /// The options are too long.
    #[error(transparent)]
    TooLong(#[from] OptionsTooLong),
}

fn checked_options(options: Bytes) -> Result<Bytes, OptionsTooLong> {
    if options.len() > MAX_OPTIONS_BYTES {
        return Err(OptionsTooLong(options.len()));
    }
    Ok(options)
}

/// What the core tells the game.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// A connection was welcomed: a fresh session (`resumed` false; event numbers start again at
    /// 1) or the same session taken back after a break.
    Welcome {
        /// The server's id for the session.
        session_id: u64,
        /// The room the player is in.
        room: String,
        /// True when the session continued across a broken connection.
        resumed: bool,
    },
    /// The next event of the session: each sequence number once, in order, without gaps.
    Event {
        /// The event's position in the session.
        seq: u64,
        /// The game's bytes.
        payload: Bytes,
    },
    /// The server applied every input up to this one.
    Acked {
        /// The highest input applied.
        seq: u64,
    },
    /// The player is now in this room.
    Joined {
        /// The room.
        room: String,
    },
    /// The room refused the player, who stays where it was.
    JoinRefused {
        /// The room asked for.
        room: String,
        /// The room's reason.
        text: String,
    },
    /// The session is over for good; what the game had not seen acknowledged may not have been
    /// applied. A new session starts only with [`Core::restart`].
    Lost(Lost),
}

/// What to do after a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Connect again: the session may be resumed (or, before the first `Welcome`, started).
    Reconnect,
    /// The session is over (an [`Output::Lost`] says why); connect again only for a new one.
    Lost,
    /// The client closed the session itself.
    Closed,
}

/// Why an input was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// [`Config::max_unacked_inputs`] inputs wait for the server's acknowledgement.
    #[error("too many inputs are waiting for the server's acknowledgement")]
    Full,
    /// The session is lost or closed: there is nothing to send it to.
    #[error("there is no session to send input to")]
    NoSession,
    /// Larger than an input may be ([`MAX_INPUT_PAYLOAD`]).
    #[error("an input carries at most {MAX_INPUT_PAYLOAD} bytes")]
    TooLarge,
}

/// The largest input payload a server on the default frame size accepts: the frame, less room
/// for the event that relays it (PROTOCOL.md, "Input").
pub const MAX_INPUT_PAYLOAD: usize = protocol::max_input_payload(protocol::DEFAULT_MAX_FRAME_BYTES);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Between connections.
    Disconnected,
    /// `Hello` sent, no `Welcome` yet.
    Handshaking { resuming: bool },
    /// Welcomed.
    Live,
    /// The client's `Bye` is sent; waiting for the server's `Ack` and `Bye`.
    Quitting,
    /// Closed by the client, or lost: nothing more until [`Core::restart`].
    Over,
}

/// What a session keeps across its connections.
#[derive(Debug, Clone)]
struct Kept {
    session_id: u64,
    room: String,
    /// All zero when the server offers no resume.
    token: ResumeToken,
    heartbeat: Duration,
    idle: Duration,
}

/// A client session's protocol state.
///
/// A clone is an independent copy of the state at that moment: a test can keep one to compare
/// with later, or hand it to a second connection while the first is still open.
#[derive(Debug, Clone)]
pub struct Core {
    config: Config,
    phase: Phase,
    kept: Option<Kept>,
    /// The highest event delivered to the game (without a gap).
    last_event: u64,
    /// The highest event acknowledged to the server.
    acked_events: u64,
    /// The next input's sequence number.
    next_input: u64,
    /// Inputs not yet acknowledged by the server, in order.
    unacked: VecDeque<(u64, Bytes)>,
    /// The highest input the server acknowledged.
    acked_input: u64,
    transmit: VecDeque<ClientMessage>,
    output: VecDeque<Output>,
    last_heard: Instant,
    next_ping: Option<Instant>,
    ping_out: Option<(u64, Instant)>,
    nonce: u64,
    rtt: Option<Duration>,
}

/// Without a heartbeat from the server, the client pings this often within the idle timeout.
const PINGS_PER_IDLE: u32 = 3;

impl Core {
    /// A client that has not connected yet.
    pub fn new(config: Config, now: Instant) -> Core {
        Core {
            config,
            phase: Phase::Disconnected,
            kept: None,
            last_event: 0,
            acked_events: 0,
            next_input: 1,
            unacked: VecDeque::new(),
            acked_input: 0,
            transmit: VecDeque::new(),
            output: VecDeque::new(),
            last_heard: now,
            next_ping: None,
            ping_out: None,
            nonce: 0,
            rtt: None,
        }
    }

    /// A connection is up: sends `Hello`, with a resume when there is a session to take back.
    pub fn connected(&mut self, now: Instant) {
        self.transmit.clear();
        self.last_heard = now;
        self.next_ping = None;
        self.ping_out = None;
        let resume = self
            .kept
            .as_ref()
            .filter(|kept| !kept.token.is_none())
            .map(|kept| Resume {
                token: kept.token,
                last_event_seq: self.last_event,
            });
        self.phase = Phase::Handshaking {
            resuming: resume.is_some(),
        };
        self.transmit
            .push_back(ClientMessage::Hello(Box::new(Hello {
                version: PROTOCOL_VERSION,
                player_id: self.config.player_id.clone(),
                // The room asked for: on a resume the server keeps the session's room whatever the
                // Hello names (and an automatic room is not a client's to name).
                room: self.config.room.clone(),
                auth_token: self.config.auth_token.clone(),
                // Options go with a new session; a resume keeps the room as the server holds it.
                options: if resume.is_some() {
                    Bytes::new()
                } else {
                    self.config.options.clone()
                },
                resume,
            })));
    }

    /// Handles one message from the server. An error ends the connection (the driver closes it
    /// and calls [`Core::disconnected`] with it).
    pub fn receive(&mut self, message: ServerMessage, now: Instant) -> Result<(), End> {
        self.last_heard = now;
        match message {
            ServerMessage::Welcome(welcome) => self.welcome(welcome, now)?,
            ServerMessage::Bye(Bye { code, text }) => return Err(End::Bye { code, text }),
            _ if !matches!(self.phase, Phase::Live | Phase::Quitting) => {
                return Err(End::Protocol(format!(
                    "{:?} before Welcome",
                    message_name(&message)
                )));
            }
            ServerMessage::Ping { nonce } => {
                if self.phase == Phase::Live {
                    self.transmit.push_back(ClientMessage::Pong { nonce });
                }
            }
            ServerMessage::Pong { nonce } => {
                if let Some((sent, at)) = self.ping_out
                    && sent == nonce
                {
                    self.ping_out = None;
                    self.rtt = Some(now.saturating_duration_since(at));
                }
            }
            ServerMessage::Event { seq, payload } => {
                if seq <= self.last_event {
                    // Already delivered (a replay overlapping what arrived before the break).
                    return Ok(());
                }
                if seq != self.last_event + 1 {
                    return Err(End::Protocol(format!(
                        "event {seq} after {}: a gap",
                        self.last_event
                    )));
                }
                self.last_event = seq;
                self.output.push_back(Output::Event { seq, payload });
                if self.last_event - self.acked_events >= self.config.ack_every {
                    self.send_ack();
                }
            }
            ServerMessage::Ack { seq } => self.inputs_applied(seq),
            ServerMessage::Joined { room } => {
                if let Some(kept) = &mut self.kept {
                    kept.room.clone_from(&room);
                }
                self.output.push_back(Output::Joined { room });
            }
            ServerMessage::JoinRefused { room, text } => {
                self.output.push_back(Output::JoinRefused { room, text });
            }
        }
        Ok(())
    }

    fn welcome(&mut self, welcome: Welcome, now: Instant) -> Result<(), End> {
        let Phase::Handshaking { resuming } = self.phase else {
            return Err(End::Protocol("a second Welcome".to_owned()));
        };
        let continued = resuming && welcome.resumed;
        if resuming && !welcome.resumed {
            // The server started a new session instead (resume is off there): the old one, its
            // events and its unacknowledged inputs are gone.
            self.output.push_back(Output::Lost(Lost::ResumeRefused(
                "the server started a new session instead of resuming".to_owned(),
            )));
        }
        if resuming && !continued {
            self.last_event = 0;
            self.acked_events = 0;
            self.next_input = 1;
            self.acked_input = 0;
            self.unacked.clear();
        }
        self.kept = Some(Kept {
            session_id: welcome.session_id,
            room: welcome.room.clone(),
            token: welcome.resume_token,
            heartbeat: Duration::from_millis(u64::from(welcome.heartbeat_interval_ms)),
            idle: Duration::from_millis(u64::from(welcome.idle_timeout_ms)),
        });
        self.phase = Phase::Live;
        if continued {
            self.inputs_applied(welcome.last_input_seq);
        }
        // A resumed session: the server applied everything up to last_input_seq, and the rest
        // goes again, in order, with the same numbers. A new one: what the game typed before the
        // Welcome goes now.
        {
            for (seq, payload) in &self.unacked {
                self.transmit.push_back(ClientMessage::Input {
                    seq: *seq,
                    payload: payload.clone(),
                });
            }
        }
        self.output.push_back(Output::Welcome {
            session_id: welcome.session_id,
            room: welcome.room,
            resumed: continued,
        });
        self.schedule_ping(now);
        Ok(())
    }

    fn inputs_applied(&mut self, seq: u64) {
        if seq <= self.acked_input {
            return;
        }
        self.acked_input = seq;
        while self.unacked.front().is_some_and(|(s, _)| *s <= seq) {
            self.unacked.pop_front();
        }
        self.output.push_back(Output::Acked { seq });
    }

    /// The connection ended with `end`. Says what to do next; a lost session is also reported as
    /// an [`Output::Lost`].
    pub fn disconnected(&mut self, end: End) -> Next {
        self.transmit.clear();
        let phase = std::mem::replace(&mut self.phase, Phase::Disconnected);
        match phase {
            Phase::Over => {
                self.phase = Phase::Over;
                return Next::Closed;
            }
            Phase::Quitting => {
                self.phase = Phase::Over;
                self.kept = None;
                return Next::Closed;
            }
            Phase::Handshaking { resuming: true } => {
                if let End::Bye {
                    code: ByeCode::ResumeRejected,
                    text,
                } = &end
                {
                    if text.contains("retry") {
                        // The old connection is still handing the session over.
                        return Next::Reconnect;
                    }
                    return self.lose(Lost::ResumeRefused(text.clone()));
                }
            }
            Phase::Disconnected | Phase::Handshaking { resuming: false } | Phase::Live => {}
        }
        if matches!(phase, Phase::Handshaking { .. })
            && let End::Bye {
                code: ByeCode::ServerFull | ByeCode::HandshakeTimeout,
                ..
            } = &end
        {
            // Turned away before the Hello was read (full, or its slot given to a newer
            // connection): no session was touched, a parked one included. Try again.
            return Next::Reconnect;
        }
        if let End::Transport(
            crate::end::Transport::Refused | crate::end::Transport::ClosedWhileOpening(_),
        ) = end
        {
            // Nothing listens (yet, or again), or the server turned the connection away while
            // it was opening (full, over its budget): keep trying; the driver bounds the
            // attempts.
            return Next::Reconnect;
        }
        let Some(kept) = &self.kept else {
            // No session yet: a failed first handshake. Only a break is worth another try.
            if end.resumable() {
                return Next::Reconnect;
            }
            return self.lose(Lost::Ended(end));
        };
        if !end.resumable() {
            return self.lose(Lost::Ended(end));
        }
        if kept.token.is_none() {
            return self.lose(Lost::NotResumable(end));
        }
        Next::Reconnect
    }

    /// Reconnecting was given up on: the session is lost.
    pub fn give_up(&mut self, last: End) {
        self.phase = Phase::Disconnected;
        self.lose(Lost::GaveUp(last));
    }

    fn lose(&mut self, why: Lost) -> Next {
        self.phase = Phase::Over;
        self.kept = None;
        self.unacked.clear();
        self.output.push_back(Output::Lost(why));
        Next::Lost
    }

    /// After a loss (or a quit), forgets the old session: the next connection starts a new one.
    pub fn restart(&mut self) {
        self.phase = Phase::Disconnected;
        self.kept = None;
        self.last_event = 0;
        self.acked_events = 0;
        self.next_input = 1;
        self.acked_input = 0;
        self.unacked.clear();
    }

    /// Queues an input; returns its sequence number. While the connection is down the input is
    /// kept and goes out after the resume.
    pub fn input(&mut self, payload: Bytes) -> Result<u64, InputError> {
        if matches!(self.phase, Phase::Over | Phase::Quitting) {
            return Err(InputError::NoSession);
        }
        if payload.len() > MAX_INPUT_PAYLOAD {
            return Err(InputError::TooLarge);
        }
        if self.unacked.len() >= self.config.max_unacked_inputs {
            return Err(InputError::Full);
        }
        let seq = self.next_input;
        self.next_input += 1;
        self.unacked.push_back((seq, payload.clone()));
        if self.phase == Phase::Live {
            self.transmit
                .push_back(ClientMessage::Input { seq, payload });
        }
        Ok(seq)
    }

    /// Asks to move to `room`; answered with [`Output::Joined`] or [`Output::JoinRefused`]. Only
    /// while connected.
    pub fn join(&mut self, room: impl Into<String>) -> bool {
        self.join_with(room, Bytes::new()).is_ok()
    }

    /// Asks to move to `room` with join `options` (at most [`MAX_OPTIONS_BYTES`]); answered
    /// with [`Output::Joined`] or [`Output::JoinRefused`]. Only while connected.
    pub fn join_with(
        &mut self,
        room: impl Into<String>,
        options: impl Into<Bytes>,
    ) -> Result<(), JoinError> {
        let options = checked_options(options.into())?;
        if self.phase != Phase::Live {
            return Err(JoinError::NotConnected);
        }
        self.transmit.push_back(ClientMessage::Join {
            room: room.into(),
            options,
        });
        Ok(())
    }

    /// Starts the lingering close: acknowledges the events received, says `Bye`, and then waits
    /// for the server's `Ack` and `Bye` (the driver reads until the end of the stream).
    pub fn quit(&mut self) {
        match self.phase {
            Phase::Live => {
                self.send_ack();
                self.transmit
                    .push_back(ClientMessage::Bye(Bye::new(ByeCode::ClientQuit, "")));
                self.phase = Phase::Quitting;
            }
            Phase::Over | Phase::Quitting => {}
            Phase::Disconnected | Phase::Handshaking { .. } => {
                // Nothing to say goodbye on: the session ends here.
                self.phase = Phase::Quitting;
            }
        }
    }

    /// True once [`Core::quit`] was called.
    pub fn quitting(&self) -> bool {
        matches!(self.phase, Phase::Quitting | Phase::Over)
    }

    /// When [`Core::on_timer`] must run next: the next heartbeat, or the moment the server has
    /// been silent for its idle timeout.
    pub fn next_deadline(&self) -> Option<Instant> {
        let kept = self.kept.as_ref()?;
        if !matches!(self.phase, Phase::Live | Phase::Quitting) {
            return None;
        }
        let silent = (!kept.idle.is_zero()).then(|| self.last_heard + kept.idle);
        [silent, self.next_ping].into_iter().flatten().min()
    }

    /// The timer fired: the server is declared silent, or the heartbeat goes out (a `Ping`,
    /// with the `Ack` of the events received).
    pub fn on_timer(&mut self, now: Instant) -> Result<(), End> {
        let Some(kept) = &self.kept else {
            return Ok(());
        };
        if !kept.idle.is_zero() && now >= self.last_heard + kept.idle {
            return Err(End::ServerSilent(kept.idle));
        }
        if let Some(ping) = self.next_ping
            && now >= ping
            && self.phase == Phase::Live
        {
            self.send_ack();
            self.nonce += 1;
            self.ping_out = Some((self.nonce, now));
            self.transmit
                .push_back(ClientMessage::Ping { nonce: self.nonce });
            self.schedule_ping(now);
        }
        Ok(())
    }

    /// The client's own heartbeat: a little faster than the server's, so that the server never
    /// needs to ping it (PROTOCOL.md, "Heartbeat and liveness"); without a server heartbeat, a
    /// few times per idle timeout.
    fn schedule_ping(&mut self, now: Instant) {
        let Some(kept) = &self.kept else {
            return;
        };
        let period = if kept.heartbeat.is_zero() {
            kept.idle / PINGS_PER_IDLE
        } else {
            kept.heartbeat * 9 / 10
        };
        self.next_ping = (!period.is_zero()).then(|| now + period);
    }

    /// Acknowledges every event delivered so far now, rather than with the next heartbeat: for
    /// example before the application goes quiet for a while. Only while welcomed.
    pub fn acknowledge(&mut self) {
        if self.phase == Phase::Live {
            self.send_ack();
        }
    }

    fn send_ack(&mut self) {
        if self.last_event > self.acked_events {
            self.acked_events = self.last_event;
            self.transmit.push_back(ClientMessage::Ack {
                seq: self.last_event,
            });
        }
    }

    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<ClientMessage> {
        self.transmit.pop_front()
    }

    /// The next thing to tell the game.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.output.pop_front()
    }

    /// Who the client is and where it plays.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The last round trip measured by the client's own ping.
    pub fn rtt(&self) -> Option<Duration> {
        self.rtt
    }

    /// The session's id, while there is a session.
    pub fn session_id(&self) -> Option<u64> {
        self.kept.as_ref().map(|kept| kept.session_id)
    }

    /// The highest event delivered, without a gap.
    pub fn last_event(&self) -> u64 {
        self.last_event
    }

    /// The highest input the server acknowledged.
    pub fn acked_input(&self) -> u64 {
        self.acked_input
    }

    /// Inputs sent (or waiting to be) and not acknowledged yet.
    pub fn unacked_inputs(&self) -> usize {
        self.unacked.len()
    }

    /// True while welcomed on a connection.
    pub fn is_live(&self) -> bool {
        self.phase == Phase::Live
    }
}

fn message_name(message: &ServerMessage) -> &'static str {
    match message {
        ServerMessage::Welcome(_) => "Welcome",
        ServerMessage::Ping { .. } => "Ping",
        ServerMessage::Pong { .. } => "Pong",
        ServerMessage::Event { .. } => "Event",
        ServerMessage::Ack { .. } => "Ack",
        ServerMessage::Bye(_) => "Bye",
        ServerMessage::Joined { .. } => "Joined",
        ServerMessage::JoinRefused { .. } => "JoinRefused",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::end::Transport;

    fn welcome(session_id: u64, token: u8, resumed: bool, last_input_seq: u64) -> ServerMessage {
        ServerMessage::Welcome(Welcome {
            session_id,
            heartbeat_interval_ms: 5000,
            idle_timeout_ms: 15000,
            resume_token: ResumeToken([token; 16]),
            resumed,
            last_input_seq,
            room: "lobby".to_owned(),
        })
    }

    fn drain(core: &mut Core) -> Vec<ClientMessage> {
        std::iter::from_fn(|| core.poll_transmit()).collect()
    }

    fn outputs(core: &mut Core) -> Vec<Output> {
        std::iter::from_fn(|| core.poll_output()).collect()
    }

    fn event(seq: u64) -> ServerMessage {
        ServerMessage::Event {
            seq,
            payload: Bytes::from(seq.to_be_bytes().to_vec()),
        }
    }

    fn live() -> (Core, Instant) {
        let now = Instant::now();
        let mut core = Core::new(Config::new("alice", "lobby"), now);
        core.connected(now);
        assert!(matches!(
            drain(&mut core).as_slice(),
            [ClientMessage::Hello(hello)] if hello.resume.is_none()
        ));
        core.receive(welcome(7, 1, false, 0), now).expect("welcome");
        outputs(&mut core);
        (core, now)
    }

    #[test]
    fn join_options_go_with_a_new_session_and_a_join_but_not_with_a_resume() {
        let now = Instant::now();
        let too_long = vec![0; MAX_OPTIONS_BYTES + 1];
        assert_eq!(
            Config::new("alice", "lobby")
                .with_options(too_long.clone())
                .err(),
            Some(OptionsTooLong(MAX_OPTIONS_BYTES + 1))
        );
        let config = Config::new("alice", "lobby")
            .with_options(&b"team=red"[..])
            .expect("short options");
        let mut core = Core::new(config, now);
        assert_eq!(
            core.join_with("arena", Bytes::new()),
            Err(JoinError::NotConnected)
        );
        core.connected(now);
        assert!(matches!(
            drain(&mut core).as_slice(),
            [ClientMessage::Hello(hello)] if hello.resume.is_none() && hello.options == "team=red"
        ));
        core.receive(welcome(7, 1, false, 0), now).expect("welcome");
        core.join_with("arena", &b"team=blue"[..]).expect("live");
        assert_eq!(
            core.join_with("arena", too_long),
            Err(JoinError::TooLong(OptionsTooLong(MAX_OPTIONS_BYTES + 1)))
        );
        assert_eq!(
            drain(&mut core),
            [ClientMessage::Join {
                room: "arena".into(),
                options: Bytes::from_static(b"team=blue")
            }]
        );
        // The connection breaks: the resume keeps the room as the server holds it.
        core.disconnected(End::Transport(Transport::PeerReset));
        core.connected(now);
        assert!(matches!(
            drain(&mut core).as_slice(),
            [ClientMessage::Hello(hello)] if hello.resume.is_some() && hello.options.is_empty()
        ));
    }

    #[test]
    fn a_connection_turned_away_while_opening_is_retried_and_an_untrusted_server_is_not() {
        // Mid-resume, the server closes the next connection in its TLS handshake (it is full):
        // the session is kept and the client tries again.
        let (mut core, now) = live();
        core.input(Bytes::from_static(b"kept")).expect("input");
        assert_eq!(
            core.disconnected(End::Transport(Transport::PeerReset)),
            Next::Reconnect
        );
        let turned_away = End::of_opening(&std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
        assert!(matches!(
            turned_away,
            End::Transport(Transport::ClosedWhileOpening(_))
        ));
        assert_eq!(core.disconnected(turned_away), Next::Reconnect);
        core.connected(now);
        assert!(matches!(
            drain(&mut core).as_slice(),
            [ClientMessage::Hello(hello)] if hello.resume.is_some()
        ));
        // Then its certificate is one the client does not trust: trying again cannot help.
        let untrusted = End::of_opening(&std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "invalid peer certificate: UnknownIssuer",
        ));
        assert_eq!(core.disconnected(untrusted.clone()), Next::Lost);
        assert_eq!(
            outputs(&mut core).last(),
            Some(&Output::Lost(Lost::Ended(untrusted)))
        );
    }

    /// A server turns a connection away before reading its `Hello` (full, or its slot given to
    /// a newer connection): the session it had parked is untouched, and the client tries again
    /// with its resume. The room of the resume is the one asked for, never the automatic room
    /// the server named.
    #[test]
    fn turned_away_before_its_hello_the_client_tries_again_with_its_session() {
        let now = Instant::now();
        let mut core = Core::new(Config::new("alice", ""), now);
        core.connected(now);
        drain(&mut core);
        core.receive(
            ServerMessage::Welcome(Welcome {
                room: "auto-3".to_owned(),
                ..match welcome(7, 1, false, 0) {
                    ServerMessage::Welcome(w) => w,
                    _ => unreachable!(),
                }
            }),
            now,
        )
        .expect("welcome");
        outputs(&mut core);
        assert_eq!(
            core.disconnected(End::Transport(Transport::PeerReset)),
            Next::Reconnect
        );
        for code in [ByeCode::ServerFull, ByeCode::HandshakeTimeout] {
            core.connected(now);
            let hello = drain(&mut core);
            assert!(
                matches!(
                    hello.as_slice(),
                    [ClientMessage::Hello(hello)] if hello.resume.is_some() && hello.room.is_empty()
                ),
                "{hello:?}"
            );
            let turned_away = End::Bye {
                code,
                text: "try again".to_owned(),
            };
            assert_eq!(core.disconnected(turned_away), Next::Reconnect, "{code:?}");
        }
    }

    #[test]
    fn a_break_resumes_resends_what_was_not_applied_and_skips_what_was_delivered() {
        let (mut core, now) = live();
        for seq in 1..=3 {
            core.receive(event(seq), now).expect("event");
        }
        for i in 0..4u8 {
            core.input(Bytes::from(vec![i])).expect("input");
        }
        core.receive(ServerMessage::Ack { seq: 1 }, now)
            .expect("ack");
        drain(&mut core);
        outputs(&mut core);

        assert_eq!(
            core.disconnected(End::Transport(Transport::PeerReset)),
            Next::Reconnect
        );
        // Inputs typed while away are kept for the resumed session.
        assert_eq!(core.input(Bytes::from_static(b"late")), Ok(5));
        core.connected(now);
        let hello = drain(&mut core);
        let [ClientMessage::Hello(sent)] = hello.as_slice() else {
            panic!("expected a Hello: {hello:?}");
        };
        let Some(resume) = &sent.resume else {
            panic!("expected a resume Hello: {hello:?}");
        };
        assert_eq!(resume.token, ResumeToken([1; 16]));
        assert_eq!(resume.last_event_seq, 3);

        // The server had applied input 2 as well; it replays event 3 (already delivered) and 4.
        core.receive(welcome(7, 2, true, 2), now).expect("welcome");
        let resent: Vec<u64> = drain(&mut core)
            .into_iter()
            .filter_map(|m| match m {
                ClientMessage::Input { seq, .. } => Some(seq),
                _ => None,
            })
            .collect();
        assert_eq!(resent, [3, 4, 5]);
        core.receive(event(3), now).expect("a replayed duplicate");
        core.receive(event(4), now).expect("event");
        let seen: Vec<Output> = outputs(&mut core)
            .into_iter()
            .filter(|o| !matches!(o, Output::Acked { .. }))
            .collect();
        assert_eq!(
            seen,
            [
                Output::Welcome {
                    session_id: 7,
                    room: "lobby".to_owned(),
                    resumed: true
                },
                Output::Event {
                    seq: 4,
                    payload: Bytes::from(4u64.to_be_bytes().to_vec())
                },
            ]
        );
    }

    #[test]
    fn a_refused_resume_loses_the_session_and_a_restart_begins_afresh() {
        let (mut core, now) = live();
        core.input(Bytes::from_static(b"x")).expect("input");
        core.disconnected(End::Transport(Transport::PeerEof));
        core.connected(now);
        drain(&mut core);
        let next = core.disconnected(End::Bye {
            code: ByeCode::ResumeRejected,
            text: "unknown resume token; start a new session".to_owned(),
        });
        assert_eq!(next, Next::Lost);
        assert!(matches!(
            outputs(&mut core).as_slice(),
            [Output::Lost(Lost::ResumeRefused(_))]
        ));
        assert_eq!(core.input(Bytes::new()), Err(InputError::NoSession));
        core.restart();
        core.connected(now);
        assert!(matches!(
            drain(&mut core).as_slice(),
            [ClientMessage::Hello(hello)] if hello.resume.is_none()
        ));
        assert_eq!(core.input(Bytes::new()), Ok(1));
    }

    #[test]
    fn a_server_that_ends_the_session_on_purpose_is_not_resumed() {
        let (mut core, _) = live();
        let next = core.disconnected(End::Bye {
            code: ByeCode::ServerShutdown,
            text: String::new(),
        });
        assert_eq!(next, Next::Lost);
        assert!(matches!(
            outputs(&mut core).as_slice(),
            [Output::Lost(Lost::Ended(End::Bye {
                code: ByeCode::ServerShutdown,
                ..
            }))]
        ));
    }

    #[test]
    fn without_a_token_a_break_is_a_loss() {
        let now = Instant::now();
        let mut core = Core::new(Config::new("bob", ""), now);
        core.connected(now);
        core.receive(welcome(1, 0, false, 0), now).expect("welcome");
        assert_eq!(
            core.disconnected(End::Transport(Transport::PeerReset)),
            Next::Lost
        );
    }

    #[test]
    fn the_client_pings_before_the_server_would_and_declares_a_silent_server_dead() {
        let (mut core, now) = live();
        core.receive(event(1), now).expect("event");
        drain(&mut core);
        let ping_at = core.next_deadline().expect("a deadline");
        assert_eq!(ping_at, now + Duration::from_millis(4500));
        core.on_timer(ping_at).expect("heartbeat");
        let sent = drain(&mut core);
        assert!(
            matches!(
                sent.as_slice(),
                [ClientMessage::Ack { seq: 1 }, ClientMessage::Ping { .. }]
            ),
            "{sent:?}"
        );
        // Nothing from the server since `now`: dead at the idle timeout.
        let dead_at = loop {
            let at = core.next_deadline().expect("a deadline");
            if let Err(end) = core.on_timer(at) {
                assert_eq!(end, End::ServerSilent(Duration::from_secs(15)));
                break at;
            }
        };
        assert_eq!(dead_at, now + Duration::from_secs(15));
    }

    #[test]
    fn inputs_typed_before_the_first_welcome_go_out_after_it() {
        let now = Instant::now();
        let mut core = Core::new(Config::new("eager", ""), now);
        core.connected(now);
        drain(&mut core);
        assert_eq!(core.input(Bytes::from_static(b"early")), Ok(1));
        assert!(drain(&mut core).is_empty(), "nothing before the Welcome");
        core.receive(welcome(1, 1, false, 0), now).expect("welcome");
        assert!(matches!(
            drain(&mut core).as_slice(),
            [ClientMessage::Input { seq: 1, .. }]
        ));
    }

    #[test]
    fn acknowledging_now_sends_one_ack_for_what_was_delivered() {
        let (mut core, now) = live();
        core.acknowledge();
        assert!(
            drain(&mut core).is_empty(),
            "nothing delivered, nothing to acknowledge"
        );
        core.receive(event(1), now).expect("event");
        core.receive(event(2), now).expect("event");
        drain(&mut core);
        core.acknowledge();
        core.acknowledge();
        assert_eq!(drain(&mut core), [ClientMessage::Ack { seq: 2 }]);
    }

    #[test]
    fn a_gap_in_events_is_a_protocol_error() {
        let (mut core, now) = live();
        core.receive(event(1), now).expect("event");
        assert!(matches!(core.receive(event(3), now), Err(End::Protocol(_))));
    }

    #[test]
    fn quitting_acknowledges_says_bye_and_ends_closed() {
        let (mut core, now) = live();
        core.receive(event(1), now).expect("event");
        drain(&mut core);
        core.quit();
        assert!(matches!(
            drain(&mut core).as_slice(),
            [
                ClientMessage::Ack { seq: 1 },
                ClientMessage::Bye(Bye {
                    code: ByeCode::ClientQuit,
                    ..
                })
            ]
        ));
        let bye = core.receive(ServerMessage::Bye(Bye::new(ByeCode::ClientQuit, "")), now);
        let end = bye.expect_err("the server's Bye ends the connection");
        assert_eq!(core.disconnected(end), Next::Closed);
    }
}
