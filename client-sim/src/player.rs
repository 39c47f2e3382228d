//! The game client proper: a session of the client library's protocol core
//! ([`game_client::Core`]) driven over a [`Conn`] the scenarios can end any way they choose.
//!
//! The core does what the client library does for any game: the handshake and the resume
//! `Hello`, answers to the server's pings, its own heartbeat with the acknowledgements of events,
//! the watchdog that presumes the server dead after the idle timeout it announced, the inputs the
//! server has not acknowledged, resent after a resume, and events delivered once and in order. A
//! [`Player`] adds what a load generator needs around it: the round trip of every ping, and the
//! checks of the two streams a resume must keep whole: events must arrive numbered 1, 2, 3, ...
//! with no gap and no repeat (the core drops a repeat and refuses a gap; the player counts both
//! first), and the relays of its own inputs must come back in order, each exactly once
//! ([`Continuity`]). What a client keeps to resume on a new connection is [`Kept`].

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use game_client::{Config, Core, End, Output};
use protocol::{Bye, ClientMessage, ResumeToken, ServerMessage, Welcome};
use rooms::payload::DemoEvent;
use tokio::time::{Instant, MissedTickBehavior};

use crate::conn::{ClientError, Conn};
use crate::stats::Stats;

/// The heartbeat a client assumes when the server announces none (heartbeat 0).
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(5);
/// The idle timeout a client assumes when the server announces none.
const DEFAULT_IDLE: Duration = Duration::from_secs(15);
/// The byte every paced input's payload is filled with.
pub(crate) const INPUT_FILL: u8 = 0x42;
/// The nonce of the ping a player sends right after `Welcome`, so that even a session shorter
/// than a heartbeat measures a round trip. The core's own pings count up from 1 and never reach
/// it; the core ignores a `Pong` it did not ask for.
const FIRST_PING: u64 = u64::MAX;
/// Pings whose `Pong` is awaited, at most; older ones are forgotten.
const PINGS_KEPT: usize = 4;
/// Inputs the core keeps unacknowledged. A load generator's scenarios write far ahead of the
/// server on purpose (a flood, a slow reader that never reads the acknowledgements), so the
/// bound is the scenario's, not the library's default. Every input of a player shares one
/// payload buffer, so an entry costs a few dozen bytes.
const MAX_UNACKED: usize = 1 << 20;

/// Breaks in the two streams a session must keep whole, counted as they are seen. Over one TCP
/// connection each would be a server bug; across a resume each means the resume lost or repeated
/// something.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Continuity {
    /// Events skipped: an event arrived numbered above the next expected one (the gap's size).
    pub events_lost: u64,
    /// Events that arrived again: numbered at or below the highest already received.
    pub events_repeated: u64,
    /// This player's own inputs relayed back again: applied twice by the server.
    pub inputs_repeated: u64,
    /// This player's own inputs skipped in the relays (a later one came back first).
    pub inputs_skipped: u64,
}

impl Continuity {
    /// True when nothing was lost or repeated.
    pub fn is_whole(&self) -> bool {
        *self == Continuity::default()
    }
}

/// What a client keeps to resume its session on a new connection: the core (which holds the
/// token, the last event received and the inputs the server has not acknowledged, PROTOCOL.md
/// "What a client keeps"), and this client's own bookkeeping, carried over so that the checks
/// span both connections. The other fields are a snapshot, to check the resumed `Welcome`
/// against.
#[derive(Debug, Clone)]
pub struct Kept {
    /// The session's protocol state, ready to resume on a new connection.
    pub core: Core,
    /// The token of the most recent `Welcome`.
    pub token: ResumeToken,
    /// The session the token resumes.
    pub session_id: u64,
    /// The room the player was in.
    pub room: String,
    /// Sequence number of the last input sent.
    pub input_seq: u64,
    /// The highest input the server acknowledged.
    pub server_ack: u64,
    /// The highest event received without a gap.
    pub event_seq: u64,
    /// The highest own input that came back as a relay.
    pub relayed_upto: u64,
    /// Breaks seen so far.
    pub continuity: Continuity,
}

/// A steady stream of inputs: how many, how often, how big.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// Inputs to send.
    pub inputs: u32,
    /// Time between two inputs.
    pub every: Duration,
    /// Payload bytes per input.
    pub bytes: usize,
}

/// What the server said and did in a session, as this client saw it.
#[derive(Debug)]
pub struct Player {
    /// The connection.
    pub conn: Conn,
    /// This player's id.
    pub id: String,
    /// The server's `Welcome`.
    pub welcome: Welcome,
    /// The room the player is in now.
    pub room: String,
    /// Sequence number of the last input sent.
    pub input_seq: u64,
    /// The highest of this player's input sequence numbers that came back as a relay.
    pub relayed_upto: u64,
    /// The sequence number of the first event received on this connection (a repeat included).
    pub first_event: Option<u64>,
    /// Gaps and repeats seen in the event stream and in the relays of this player's inputs.
    pub continuity: Continuity,
    /// The server's `Bye`, once received.
    pub bye: Option<Bye>,
    /// How often the server pings (or the assumed default).
    pub heartbeat: Duration,
    /// After how long without any frame the server drops this client (and this client presumes
    /// the server dead).
    pub idle: Duration,
    core: Core,
    /// Pings sent and not answered yet, oldest first.
    pings: VecDeque<(u64, Instant)>,
    stats: Arc<Stats>,
}

/// How a session ended when the client stopped writing and just read to the end.
#[derive(Debug)]
pub struct Drained {
    /// `Ok` for EOF, the error otherwise.
    pub end: Result<(), ClientError>,
    /// When the end was observed.
    pub at: Instant,
}

/// The core's verdict on a connection, as the error the scenarios report.
fn error_of(end: End) -> ClientError {
    match end {
        End::Bye { code, text } => ClientError::ServerBye { code, text },
        End::ServerSilent(idle) => ClientError::HeartbeatTimeout(idle),
        other => ClientError::Violation(other.to_string()),
    }
}

impl Player {
    /// A session not started yet, for `player_id` in `room` ("" lets the server choose).
    pub fn session(player_id: String, room: String, auth_token: Option<String>) -> Core {
        let mut config = Config::new(player_id, room);
        config.auth_token = auth_token;
        config.max_unacked_inputs = MAX_UNACKED;
        Core::new(config, Instant::now())
    }

    /// Sends the session's `Hello` (a resume `Hello` when the core holds a session to take
    /// back) and waits for `Welcome`. After a resumed `Welcome` the inputs the server had not
    /// applied go out at once, in order and with their numbers.
    ///
    /// A `Bye` instead of `Welcome` is `ClientError::ServerBye`; bytes that are not this protocol
    /// are `ClientError::Protocol` with the bytes left in [`Conn::undecoded`].
    pub async fn handshake(
        mut conn: Conn,
        mut core: Core,
        limit: Duration,
        stats: Arc<Stats>,
    ) -> Result<Player, (Conn, ClientError)> {
        core.connected(Instant::now());
        let hello: Vec<ClientMessage> = std::iter::from_fn(|| core.poll_transmit()).collect();
        if let Err(error) = conn.send_all(&hello).await {
            return Err((conn, error));
        }
        let welcome =
            match tokio::time::timeout(limit, Self::await_welcome(&mut conn, &mut core)).await {
                Ok(Ok(welcome)) => welcome,
                Ok(Err(error)) => return Err((conn, error)),
                Err(_) => {
                    let error = ClientError::Deadline {
                        what: "Welcome",
                        limit,
                    };
                    return Err((conn, error));
                }
            };
        let millis = |ms: u32, default| {
            if ms == 0 {
                default
            } else {
                Duration::from_millis(u64::from(ms))
            }
        };
        let mut player = Player {
            heartbeat: millis(welcome.heartbeat_interval_ms, DEFAULT_HEARTBEAT),
            idle: millis(welcome.idle_timeout_ms, DEFAULT_IDLE),
            room: if welcome.room.is_empty() {
                core.config().room.clone()
            } else {
                welcome.room.clone()
            },
            id: core.config().player_id.clone(),
            conn,
            welcome,
            input_seq: 0,
            relayed_upto: 0,
            first_event: None,
            continuity: Continuity::default(),
            bye: None,
            core,
            pings: VecDeque::new(),
            stats,
        };
        // What the core owes after the Welcome (inputs to resend), and a first ping.
        player.pings.push_back((FIRST_PING, Instant::now()));
        let first = ClientMessage::Ping { nonce: FIRST_PING };
        if let Err(error) = player.flush_with(Some(first)).await {
            return Err((player.conn, error));
        }
        if let Err(error) = player.take_outputs() {
            return Err((player.conn, error));
        }
        Ok(player)
    }

    async fn await_welcome(conn: &mut Conn, core: &mut Core) -> Result<Welcome, ClientError> {
        loop {
            let Some(message) = conn.recv().await? else {
                return Err(ClientError::Eof);
            };
            let welcome = match &message {
                ServerMessage::Welcome(welcome) => Some(welcome.clone()),
                _ => None,
            };
            core.receive(message, Instant::now()).map_err(error_of)?;
            if let Some(welcome) = welcome {
                return Ok(welcome);
            }
        }
    }

    /// What this client keeps to resume its session on another connection.
    pub fn keep(&self) -> Kept {
        Kept {
            core: self.core.clone(),
            token: self.welcome.resume_token,
            session_id: self.welcome.session_id,
            room: self.room.clone(),
            input_seq: self.input_seq,
            server_ack: self.server_ack(),
            event_seq: self.event_seq(),
            relayed_upto: self.relayed_upto,
            continuity: self.continuity,
        }
    }

    /// Continues, on this (resumed) connection, the checks of the session `kept` describes.
    pub fn carry_on(&mut self, kept: &Kept) {
        self.input_seq = kept.input_seq;
        self.relayed_upto = kept.relayed_upto;
        self.continuity = kept.continuity;
    }

    /// The highest input sequence number the server acknowledged.
    pub fn server_ack(&self) -> u64 {
        self.core.acked_input()
    }

    /// The highest event received without a gap.
    pub fn event_seq(&self) -> u64 {
        self.core.last_event()
    }

    /// Acknowledges every event received so far, now rather than at the next heartbeat.
    pub async fn ack_events(&mut self) -> Result<(), ClientError> {
        self.core.acknowledge();
        self.flush().await
    }

    /// Numbers `payload` as the next input and hands it to the core, which keeps it until the
    /// server acknowledges it; it goes out with the next [`Player::flush`].
    pub fn queue_input(&mut self, payload: Bytes) -> Result<(), ClientError> {
        let seq = self
            .core
            .input(payload)
            .map_err(|error| ClientError::Violation(format!("input refused: {error}")))?;
        self.input_seq = seq;
        Ok(())
    }

    /// Sends `count` inputs in one write.
    pub async fn send_inputs(&mut self, count: u32, payload: Bytes) -> Result<(), ClientError> {
        for _ in 0..count {
            self.queue_input(payload.clone())?;
        }
        self.flush().await
    }

    /// Sends one input.
    pub async fn send_input(&mut self, payload: Bytes) -> Result<(), ClientError> {
        self.send_inputs(1, payload).await
    }

    /// Everything the core has to send, taken out for a caller that writes it its own way (the
    /// crash child splits frames). Pings among them are timed as if sent now.
    pub fn take_transmits(&mut self) -> Vec<ClientMessage> {
        let now = Instant::now();
        let mut out = Vec::new();
        while let Some(message) = self.core.poll_transmit() {
            if let ClientMessage::Ping { nonce } = message {
                if self.pings.len() == PINGS_KEPT {
                    self.pings.pop_front();
                }
                self.pings.push_back((nonce, now));
            }
            out.push(message);
        }
        out
    }

    /// Sends everything the core has to send, in one write.
    pub async fn flush(&mut self) -> Result<(), ClientError> {
        self.flush_with(None).await
    }

    async fn flush_with(&mut self, extra: Option<ClientMessage>) -> Result<(), ClientError> {
        let mut out = self.take_transmits();
        out.extend(extra);
        if out.is_empty() {
            return Ok(());
        }
        self.conn.send_all(&out).await
    }

    /// Takes in one message from the server the way a game client does; what the core answers
    /// waits for the next [`Player::flush`]. A `Bye` ends the session: it is kept in `self.bye`
    /// and returned as `ClientError::ServerBye`.
    pub(crate) fn absorb(&mut self, message: ServerMessage) -> Result<(), ClientError> {
        let now = Instant::now();
        match &message {
            ServerMessage::Event { seq, .. } => {
                let seq = *seq;
                self.first_event.get_or_insert(seq);
                let last = self.core.last_event();
                if seq <= last {
                    self.continuity.events_repeated += 1;
                } else if seq > last + 1 {
                    self.continuity.events_lost += seq - last - 1;
                }
            }
            ServerMessage::Pong { nonce } => {
                if let Some(at) = self.pings.iter().position(|(n, _)| n == nonce) {
                    let (_, sent_at) = self.pings[at];
                    self.stats
                        .record_rtt(now.saturating_duration_since(sent_at));
                    self.pings.drain(..=at);
                }
            }
            ServerMessage::Bye(bye) => self.bye = Some(bye.clone()),
            _ => {}
        }
        self.core.receive(message, now).map_err(error_of)?;
        self.take_outputs()
    }

    /// What the core tells the game: the relays of this player's own inputs are checked, a move
    /// to another room noted.
    fn take_outputs(&mut self) -> Result<(), ClientError> {
        while let Some(output) = self.core.poll_output() {
            match output {
                Output::Event { payload, .. } => {
                    let event = DemoEvent::from_bytes(payload).map_err(ClientError::Payload)?;
                    if let DemoEvent::Relay {
                        from, input_seq, ..
                    } = event
                    {
                        if from == self.id {
                            if input_seq <= self.relayed_upto {
                                self.continuity.inputs_repeated += 1;
                            } else {
                                self.continuity.inputs_skipped += input_seq - self.relayed_upto - 1;
                                self.relayed_upto = input_seq;
                            }
                        }
                    }
                }
                Output::Joined { room } => self.room = room,
                // client-sim never asks to move; a refusal would be the server's mistake.
                Output::JoinRefused { .. } => {
                    return Err(ClientError::Unexpected("JoinRefused without a Join"));
                }
                Output::Welcome { .. } | Output::Acked { .. } | Output::Lost(_) => {}
            }
        }
        Ok(())
    }

    /// Plays: sends the paced inputs (if any), answers pings, pings, acknowledges, and returns
    /// once every input is sent, at least `hold` has passed, and `done` holds. Fails on the
    /// server's `Bye`, an end of stream, a dead server (heartbeat timeout) or when `limit` passes.
    pub async fn play(
        &mut self,
        pace: Option<Pace>,
        hold: Duration,
        limit: Duration,
        what: &'static str,
        done: impl Fn(&Player) -> bool,
    ) -> Result<(), ClientError> {
        let mut remaining = pace.map_or(0, |p| p.inputs);
        let every = pace.map_or(Duration::from_secs(1), |p| {
            p.every.max(Duration::from_millis(1))
        });
        let payload = Bytes::from(vec![INPUT_FILL; pace.map_or(0, |p| p.bytes)]);
        let mut inputs = tokio::time::interval(every);
        inputs.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let deadline = tokio::time::sleep(limit);
        tokio::pin!(deadline);
        let held = tokio::time::sleep(hold);
        tokio::pin!(held);
        let mut holding = !hold.is_zero();
        let far = || Instant::now() + Duration::from_secs(3600);
        let timer = tokio::time::sleep_until(self.core.next_deadline().unwrap_or_else(far));
        tokio::pin!(timer);

        enum Step {
            Frame(Option<ServerMessage>),
            Input,
            Timer,
            Deadline,
            Held,
        }
        loop {
            if remaining == 0 && !holding && done(self) {
                return Ok(());
            }
            let step = tokio::select! {
                frame = self.conn.recv() => Step::Frame(frame?),
                _ = inputs.tick(), if remaining > 0 => Step::Input,
                () = &mut timer => Step::Timer,
                () = &mut deadline => Step::Deadline,
                () = &mut held, if holding => Step::Held,
            };
            match step {
                Step::Frame(Some(message)) => self.absorb(message)?,
                Step::Frame(None) => return Err(ClientError::Eof),
                Step::Input => {
                    self.queue_input(payload.clone())?;
                    remaining -= 1;
                }
                Step::Timer => {
                    if let Err(end) = self.core.on_timer(Instant::now()) {
                        let error = error_of(end);
                        self.conn.note_error(&error);
                        return Err(error);
                    }
                }
                Step::Deadline => return Err(ClientError::Deadline { what, limit }),
                Step::Held => holding = false,
            }
            self.flush().await?;
            timer
                .as_mut()
                .reset(self.core.next_deadline().unwrap_or_else(far));
        }
    }

    /// Leaves gracefully: acknowledges the events received, `Bye{client_quit}`, then reads the
    /// server's `Ack` and `Bye` until its EOF. Returns `Ok` at EOF; the caller checks `self.bye`
    /// and [`Player::server_ack`].
    pub async fn quit(&mut self, limit: Duration) -> Result<(), ClientError> {
        self.core.quit();
        self.flush().await?;
        self.drain(limit, "the server's Bye and EOF after ours")
            .await
            .end
    }

    /// Stops writing and reads everything until the server's EOF, an error, or `limit`. Frames
    /// are taken in (a `Bye` is kept in `self.bye`) but nothing is sent: pings go unanswered.
    pub async fn drain(&mut self, limit: Duration, what: &'static str) -> Drained {
        let deadline = tokio::time::sleep(limit);
        tokio::pin!(deadline);
        loop {
            let frame = tokio::select! {
                frame = self.conn.recv() => frame,
                () = &mut deadline => {
                    return Drained {
                        end: Err(ClientError::Deadline { what, limit }),
                        at: Instant::now(),
                    };
                }
            };
            let at = Instant::now();
            let absorbed = match frame {
                Ok(Some(message)) => self.absorb(message),
                Ok(None) => return Drained { end: Ok(()), at },
                Err(error) => Err(error),
            };
            // A silent client answers nothing.
            while self.core.poll_transmit().is_some() {}
            match absorbed {
                Ok(()) | Err(ClientError::ServerBye { .. }) => {}
                Err(error) => {
                    return Drained {
                        end: Err(error),
                        at,
                    };
                }
            }
        }
    }

    /// The server's `Bye` code, if one arrived.
    pub fn bye_code(&self) -> Option<protocol::ByeCode> {
        self.bye.as_ref().map(|b| b.code)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use bytes::BytesMut;
    use protocol::{Hello, ServerCodec};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_util::codec::{Decoder, Encoder};

    use super::*;

    /// A player handshaken with a one-shot server that answers any `Hello` with `welcome`, and
    /// the `Hello` that server read.
    async fn player(core: Core, welcome: Welcome) -> (Player, Hello) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut codec = ServerCodec::default();
            let mut inbound = BytesMut::new();
            let hello = loop {
                if let Some(message) = codec.decode(&mut inbound).unwrap() {
                    break message;
                }
                assert_ne!(socket.read_buf(&mut inbound).await.unwrap(), 0);
            };
            let ClientMessage::Hello(hello) = hello else {
                panic!("expected Hello, got {hello:?}");
            };
            tx.send(*hello).unwrap();
            let mut out = BytesMut::new();
            codec
                .encode(ServerMessage::Welcome(welcome), &mut out)
                .unwrap();
            socket.write_all(&out).await.unwrap();
            // Keep the socket open while the test runs.
            let mut rest = [0u8; 1024];
            while socket.read(&mut rest).await.is_ok_and(|n| n > 0) {}
        });
        let stats = Arc::new(Stats::default());
        let (stream, _) =
            crate::conn::connect(addr, None, &Default::default(), Duration::from_secs(5))
                .await
                .unwrap();
        let conn = Conn::new(stream, Arc::clone(&stats));
        let player = Player::handshake(conn, core, Duration::from_secs(5), stats)
            .await
            .map_err(|(_, e)| e)
            .unwrap();
        (player, rx.await.unwrap())
    }

    fn fresh() -> Core {
        Player::session("me".into(), "r-me".into(), None)
    }

    fn welcome(token: u8, resumed: bool, last_input_seq: u64) -> Welcome {
        Welcome {
            session_id: 7,
            heartbeat_interval_ms: 500,
            idle_timeout_ms: 2000,
            resume_token: ResumeToken([token; 16]),
            resumed,
            last_input_seq,
            room: "r-me".into(),
        }
    }

    fn event(seq: u64, from: &str, input_seq: u64) -> ServerMessage {
        ServerMessage::Event {
            seq,
            payload: DemoEvent::Relay {
                from: from.into(),
                input_seq,
                data: Bytes::new(),
            }
            .to_bytes(),
        }
    }

    #[tokio::test]
    async fn gaps_and_repeats_in_events_and_own_relays_are_counted() {
        let (mut p, hello) = player(fresh(), welcome(1, false, 0)).await;
        assert!(hello.resume.is_none());
        for message in [
            event(1, "me", 1),
            event(2, "other", 1),
            // A repeated event is counted, and not delivered again.
            event(2, "me", 2),
            // This relay skips input 2, and then input 3 comes back twice.
            event(3, "me", 3),
            event(4, "me", 3),
        ] {
            p.absorb(message).unwrap();
        }
        assert_eq!(p.first_event, Some(1));
        assert_eq!(p.event_seq(), 4);
        assert_eq!(p.relayed_upto, 3);
        // A gap: counted, and the session's core refuses to go on.
        assert!(matches!(
            p.absorb(event(6, "me", 4)),
            Err(ClientError::Violation(_))
        ));
        assert_eq!(
            p.continuity,
            Continuity {
                events_lost: 1,
                events_repeated: 1,
                inputs_repeated: 1,
                inputs_skipped: 1,
            }
        );
        assert!(!p.continuity.is_whole());
    }

    #[tokio::test]
    async fn what_a_client_keeps_resumes_the_session_and_the_checks_go_on() {
        let (mut first, _) = player(fresh(), welcome(1, false, 0)).await;
        first.queue_input(Bytes::new()).unwrap();
        first.queue_input(Bytes::new()).unwrap();
        first.absorb(event(1, "me", 1)).unwrap();
        first.absorb(ServerMessage::Ack { seq: 1 }).unwrap();
        let kept = first.keep();
        assert_eq!((kept.input_seq, kept.server_ack, kept.event_seq), (2, 1, 1));

        let (mut second, hello) = player(kept.core.clone(), welcome(2, true, 1)).await;
        let resume = hello.resume.unwrap();
        assert_eq!(resume.token, ResumeToken([1; 16]));
        assert_eq!(resume.last_event_seq, 1);
        assert_eq!(hello.room, "r-me");
        second.carry_on(&kept);
        assert_eq!((second.input_seq, second.server_ack()), (2, 1));
        // The replay continues the stream: event 2 is the next one, input 2 the next relay.
        second.absorb(event(2, "me", 2)).unwrap();
        assert_eq!(second.first_event, Some(2));
        assert!(second.continuity.is_whole());
        assert_eq!(second.relayed_upto, 2);
        // Event 2 again would be a repeat across the resume.
        second.absorb(event(2, "me", 2)).unwrap();
        assert_eq!(second.continuity.events_repeated, 1);
    }
}
