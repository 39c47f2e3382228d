//! The game client proper: handshake, then play like a real client would.
//!
//! A [`Player`] answers the server's pings, pings the server itself and records the round trip,
//! acknowledges events about once per heartbeat, tracks which of its own inputs came back as
//! relays and what the server acknowledged, and presumes the server dead when no frame arrived
//! for the idle timeout the server announced in `Welcome`. Scenarios build their endings on top.
//!
//! It also checks the two streams a resume must keep whole: events must arrive numbered 1, 2,
//! 3, ... with no gap and no repeat, and the relays of its own inputs must come back in order,
//! each exactly once ([`Continuity`]). What a client keeps to resume on a new connection is
//! [`Kept`].

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use protocol::{
    Bye, ByeCode, ClientMessage, Hello, PROTOCOL_VERSION, Resume, ResumeToken, ServerMessage,
    Welcome,
};
use rooms::payload::DemoEvent;
use tokio::time::{Instant, MissedTickBehavior};

use crate::conn::{ClientError, Conn};
use crate::stats::Stats;

/// The heartbeat a client assumes when the server announces none (heartbeat 0).
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(5);
/// The idle timeout a client assumes when the server announces none.
const DEFAULT_IDLE: Duration = Duration::from_secs(15);
/// The byte every paced input's payload is filled with. All inputs of a player carry the same
/// payload, so resending an input after a resume needs only its sequence number.
pub(crate) const INPUT_FILL: u8 = 0x42;

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

/// What a client keeps to resume its session on a new connection (PROTOCOL.md, "What a client
/// keeps"): the token, the last event received without a gap, and its inputs, which are the
/// numbers above the server's last `Ack` (every input carries the same payload). The rest is
/// this client's own bookkeeping, carried over so that the checks span both connections.
#[derive(Debug, Clone)]
pub struct Kept {
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
    /// The highest event acknowledged to the server.
    pub acked_events: u64,
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
    /// The highest input sequence number the server acknowledged.
    pub server_ack: u64,
    /// The highest event sequence number received: after a gap (a server bug, counted in
    /// [`Continuity::events_lost`]) the stream continues from the later event.
    pub event_seq: u64,
    /// The highest of this player's input sequence numbers that came back as a relay.
    pub relayed_upto: u64,
    /// The sequence number of the first event on this connection.
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
    acked_events: u64,
    nonce: u64,
    ping_out: Option<(u64, Instant)>,
    last_frame: Instant,
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

impl Player {
    /// Sends `Hello` and waits for `Welcome`, answering pings meanwhile.
    ///
    /// A `Bye` instead of `Welcome` is `ClientError::ServerBye`; bytes that are not this protocol
    /// are `ClientError::Protocol` with the bytes left in [`Conn::undecoded`].
    pub async fn handshake(
        mut conn: Conn,
        hello: Hello,
        limit: Duration,
        stats: Arc<Stats>,
    ) -> Result<Player, (Conn, ClientError)> {
        let id = hello.player_id.clone();
        let room = hello.room.clone();
        if let Err(error) = conn.send(&ClientMessage::Hello(hello)).await {
            return Err((conn, error));
        }
        let welcome = match tokio::time::timeout(limit, Self::await_welcome(&mut conn)).await {
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
        Ok(Player {
            heartbeat: millis(welcome.heartbeat_interval_ms, DEFAULT_HEARTBEAT),
            idle: millis(welcome.idle_timeout_ms, DEFAULT_IDLE),
            room: if welcome.room.is_empty() {
                room
            } else {
                welcome.room.clone()
            },
            conn,
            id,
            welcome,
            input_seq: 0,
            server_ack: 0,
            event_seq: 0,
            relayed_upto: 0,
            first_event: None,
            continuity: Continuity::default(),
            bye: None,
            acked_events: 0,
            nonce: 0,
            ping_out: None,
            last_frame: Instant::now(),
            stats,
        })
    }

    async fn await_welcome(conn: &mut Conn) -> Result<Welcome, ClientError> {
        loop {
            match conn.recv().await? {
                Some(ServerMessage::Welcome(welcome)) => return Ok(welcome),
                Some(ServerMessage::Ping { nonce }) => {
                    conn.send(&ClientMessage::Pong { nonce }).await?
                }
                Some(ServerMessage::Bye(bye)) => {
                    return Err(ClientError::ServerBye {
                        code: bye.code,
                        text: bye.text,
                    });
                }
                Some(_) => return Err(ClientError::Unexpected("message before Welcome")),
                None => return Err(ClientError::Eof),
            }
        }
    }

    /// A `Hello` for a fresh session.
    pub fn hello(player_id: String, room: String, auth_token: Option<String>) -> Hello {
        Hello {
            version: PROTOCOL_VERSION,
            player_id,
            room,
            auth_token,
            resume: None,
        }
    }

    /// A `Hello` that resumes the session `kept` describes.
    pub fn resume_hello(player_id: String, kept: &Kept, auth_token: Option<String>) -> Hello {
        Hello {
            resume: Some(Resume {
                token: kept.token,
                last_event_seq: kept.event_seq,
            }),
            ..Player::hello(player_id, kept.room.clone(), auth_token)
        }
    }

    /// What this client keeps to resume its session on another connection.
    pub fn keep(&self) -> Kept {
        Kept {
            token: self.welcome.resume_token,
            session_id: self.welcome.session_id,
            room: self.room.clone(),
            input_seq: self.input_seq,
            server_ack: self.server_ack,
            event_seq: self.event_seq,
            relayed_upto: self.relayed_upto,
            acked_events: self.acked_events,
            continuity: self.continuity,
        }
    }

    /// Continues, on this (resumed) connection, the session `kept` describes: the sequence
    /// numbers and the checks go on where the previous connection left them.
    pub fn carry_on(&mut self, kept: &Kept) {
        self.input_seq = kept.input_seq;
        self.server_ack = self.server_ack.max(kept.server_ack);
        self.event_seq = kept.event_seq;
        self.relayed_upto = kept.relayed_upto;
        self.acked_events = kept.acked_events;
        self.continuity = kept.continuity;
    }

    /// Sends again every input above `applied` (the server's `Welcome.last_input_seq`), in
    /// order and with their original numbers, in one write.
    pub async fn resend_after(&mut self, applied: u64, bytes: usize) -> Result<(), ClientError> {
        let payload = Bytes::from(vec![INPUT_FILL; bytes]);
        let inputs: Vec<ClientMessage> = (applied + 1..=self.input_seq)
            .map(|seq| ClientMessage::Input {
                seq,
                payload: payload.clone(),
            })
            .collect();
        if inputs.is_empty() {
            return Ok(());
        }
        self.conn.send_all(&inputs).await
    }

    /// Acknowledges every event received so far, now rather than at the next heartbeat.
    pub async fn ack_events(&mut self) -> Result<(), ClientError> {
        if self.event_seq <= self.acked_events {
            return Ok(());
        }
        self.acked_events = self.event_seq;
        self.conn
            .send(&ClientMessage::Ack {
                seq: self.event_seq,
            })
            .await
    }

    /// The next input, numbered in sequence.
    pub fn next_input(&mut self, payload: Bytes) -> ClientMessage {
        self.input_seq += 1;
        ClientMessage::Input {
            seq: self.input_seq,
            payload,
        }
    }

    /// Sends one input.
    pub async fn send_input(&mut self, payload: Bytes) -> Result<(), ClientError> {
        let input = self.next_input(payload);
        self.conn.send(&input).await
    }

    /// Takes in one message from the server the way a game client does. A `Bye` ends the
    /// session: it is kept in `self.bye` and returned as `ClientError::ServerBye`.
    pub(crate) async fn absorb(
        &mut self,
        message: ServerMessage,
        answer_pings: bool,
    ) -> Result<(), ClientError> {
        self.last_frame = Instant::now();
        match message {
            ServerMessage::Ping { nonce } => {
                if answer_pings {
                    self.conn.send(&ClientMessage::Pong { nonce }).await?;
                }
            }
            ServerMessage::Pong { nonce } => {
                if let Some((sent_nonce, sent_at)) = self.ping_out {
                    if sent_nonce == nonce {
                        self.stats.record_rtt(sent_at.elapsed());
                        self.ping_out = None;
                    }
                }
            }
            ServerMessage::Event { seq, payload } => {
                self.first_event.get_or_insert(seq);
                if seq <= self.event_seq {
                    self.continuity.events_repeated += 1;
                    return Ok(());
                }
                self.continuity.events_lost += seq - self.event_seq - 1;
                self.event_seq = seq;
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
            ServerMessage::Ack { seq } => self.server_ack = self.server_ack.max(seq),
            ServerMessage::Joined { room } => self.room = room,
            // client-sim never asks to move; a refusal would be the server's mistake.
            ServerMessage::JoinRefused { .. } => {
                return Err(ClientError::Unexpected("JoinRefused without a Join"));
            }
            ServerMessage::Welcome(_) => return Err(ClientError::Unexpected("second Welcome")),
            ServerMessage::Bye(bye) => {
                let error = ClientError::ServerBye {
                    code: bye.code,
                    text: bye.text.clone(),
                };
                self.bye = Some(bye);
                return Err(error);
            }
        }
        Ok(())
    }

    /// Once per heartbeat: ping the server (measuring the round trip) and acknowledge events.
    async fn keepalive(&mut self) -> Result<(), ClientError> {
        let mut out = Vec::with_capacity(2);
        if self.ping_out.is_none_or(|(_, at)| at.elapsed() > self.idle) {
            self.nonce += 1;
            self.ping_out = Some((self.nonce, Instant::now()));
            out.push(ClientMessage::Ping { nonce: self.nonce });
        }
        if self.event_seq > self.acked_events {
            self.acked_events = self.event_seq;
            out.push(ClientMessage::Ack {
                seq: self.event_seq,
            });
        }
        if out.is_empty() {
            return Ok(());
        }
        self.conn.send_all(&out).await
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
        // Ping a little faster than the server's own heartbeat so that a quiet client is never
        // mistaken for a silent one.
        let period = (self.heartbeat * 3 / 4).max(Duration::from_millis(50));
        // The first ping goes out at once, so that even a short session measures a round trip.
        let first = if self.nonce == 0 {
            Instant::now()
        } else {
            Instant::now() + period
        };
        let mut keepalive = tokio::time::interval_at(first, period);
        keepalive.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let deadline = tokio::time::sleep(limit);
        tokio::pin!(deadline);
        let dead = tokio::time::sleep_until(self.last_frame + self.idle);
        tokio::pin!(dead);
        let held = tokio::time::sleep(hold);
        tokio::pin!(held);
        let mut holding = !hold.is_zero();

        enum Step {
            Frame(Option<ServerMessage>),
            Input,
            Keepalive,
            Dead,
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
                _ = keepalive.tick() => Step::Keepalive,
                () = &mut dead => Step::Dead,
                () = &mut deadline => Step::Deadline,
                () = &mut held, if holding => Step::Held,
            };
            match step {
                Step::Frame(Some(message)) => {
                    self.absorb(message, true).await?;
                    dead.as_mut().reset(self.last_frame + self.idle);
                }
                Step::Frame(None) => return Err(ClientError::Eof),
                Step::Input => {
                    self.send_input(payload.clone()).await?;
                    remaining -= 1;
                }
                Step::Keepalive => self.keepalive().await?,
                Step::Dead => {
                    let error = ClientError::HeartbeatTimeout(self.idle);
                    self.conn.note_error(&error);
                    return Err(error);
                }
                Step::Deadline => return Err(ClientError::Deadline { what, limit }),
                Step::Held => holding = false,
            }
        }
    }

    /// Leaves gracefully: `Bye{client_quit}`, then reads the server's `Ack` and `Bye` until its
    /// EOF. Returns `Ok` at EOF; the caller checks `self.bye` and `self.server_ack`.
    pub async fn quit(&mut self, limit: Duration) -> Result<(), ClientError> {
        self.conn
            .send(&ClientMessage::Bye(Bye::new(ByeCode::ClientQuit, "")))
            .await?;
        self.drain(limit, "the server's Bye and EOF after ours")
            .await
            .end
    }

    /// Stops writing and reads everything until the server's EOF, an error, or `limit`. Frames
    /// are taken in (a `Bye` is kept in `self.bye`) but pings are not answered.
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
            match frame {
                Ok(Some(message)) => match self.absorb(message, false).await {
                    Ok(()) | Err(ClientError::ServerBye { .. }) => {}
                    Err(error) => {
                        return Drained {
                            end: Err(error),
                            at,
                        };
                    }
                },
                Ok(None) => return Drained { end: Ok(()), at },
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
    pub fn bye_code(&self) -> Option<ByeCode> {
        self.bye.as_ref().map(|b| b.code)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use bytes::BytesMut;
    use protocol::ServerCodec;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_util::codec::Encoder;

    use super::*;

    /// A player handshaken with a one-shot server that answers any `Hello` with `welcome`.
    async fn player(welcome: Welcome) -> Player {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut hello = [0u8; 256];
            let _ = socket.read(&mut hello).await.unwrap();
            let mut out = BytesMut::new();
            ServerCodec::default()
                .encode(ServerMessage::Welcome(welcome), &mut out)
                .unwrap();
            socket.write_all(&out).await.unwrap();
            // Keep the socket open while the test runs.
            let _ = socket.read(&mut hello).await;
        });
        let stats = Arc::new(Stats::default());
        let (stream, _) = crate::conn::connect(addr, None, Duration::from_secs(5))
            .await
            .unwrap();
        let conn = Conn::new(stream, Arc::clone(&stats));
        let hello = Player::hello("me".into(), "r-me".into(), None);
        Player::handshake(conn, hello, Duration::from_secs(5), stats)
            .await
            .map_err(|(_, e)| e)
            .unwrap()
    }

    fn welcome(token: u8, resumed: bool) -> Welcome {
        Welcome {
            session_id: 7,
            heartbeat_interval_ms: 500,
            idle_timeout_ms: 2000,
            resume_token: ResumeToken([token; 16]),
            resumed,
            last_input_seq: 0,
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
        let mut p = player(welcome(1, false)).await;
        for message in [
            event(1, "me", 1),
            event(2, "other", 1),
            // A repeated event is not taken in at all.
            event(2, "me", 2),
            // Event 3 is missing; this relay skips input 2 and then input 3 comes back twice.
            event(4, "me", 3),
            event(5, "me", 3),
        ] {
            p.absorb(message, true).await.unwrap();
        }
        assert_eq!(p.first_event, Some(1));
        assert_eq!(p.event_seq, 5);
        assert_eq!(p.relayed_upto, 3);
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
        let mut first = player(welcome(1, false)).await;
        first.next_input(Bytes::new());
        first.next_input(Bytes::new());
        first.absorb(event(1, "me", 1), true).await.unwrap();
        first
            .absorb(ServerMessage::Ack { seq: 1 }, true)
            .await
            .unwrap();
        let kept = first.keep();
        let hello = Player::resume_hello("me".into(), &kept, None);
        let resume = hello.resume.unwrap();
        assert_eq!(resume.token, ResumeToken([1; 16]));
        assert_eq!(resume.last_event_seq, 1);
        assert_eq!(hello.room, "r-me");

        let mut second = player(welcome(2, true)).await;
        second.carry_on(&kept);
        assert_eq!((second.input_seq, second.server_ack), (2, 1));
        // The replay continues the stream: event 2 is the next one, input 2 the next relay.
        second.absorb(event(2, "me", 2), true).await.unwrap();
        assert_eq!(second.first_event, Some(2));
        assert!(second.continuity.is_whole());
        assert_eq!(second.relayed_upto, 2);
        // Event 2 again would be a repeat across the resume.
        second.absorb(event(2, "me", 2), true).await.unwrap();
        assert_eq!(second.continuity.events_repeated, 1);
    }
}
