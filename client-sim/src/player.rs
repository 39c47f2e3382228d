//! The game client proper: handshake, then play like a real client would.
//!
//! A [`Player`] answers the server's pings, pings the server itself and records the round trip,
//! acknowledges events about once per heartbeat, tracks which of its own inputs came back as
//! relays and what the server acknowledged, and presumes the server dead when no frame arrived
//! for the idle timeout the server announced in `Welcome`. Scenarios build their endings on top.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use protocol::demo::DemoEvent;
use protocol::{Bye, ByeCode, ClientMessage, Hello, PROTOCOL_VERSION, ServerMessage, Welcome};
use tokio::time::{Instant, MissedTickBehavior};

use crate::conn::{ClientError, Conn};
use crate::stats::Stats;

/// The heartbeat a client assumes when the server announces none (heartbeat 0).
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(5);
/// The idle timeout a client assumes when the server announces none.
const DEFAULT_IDLE: Duration = Duration::from_secs(15);

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
    /// The highest event sequence number received.
    pub event_seq: u64,
    /// The highest of this player's input sequence numbers that came back as a relay.
    pub relayed_upto: u64,
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
                self.event_seq = self.event_seq.max(seq);
                let event = DemoEvent::from_bytes(payload).map_err(ClientError::Protocol)?;
                if let DemoEvent::Relay {
                    from, input_seq, ..
                } = event
                {
                    if from == self.id {
                        self.relayed_upto = self.relayed_upto.max(input_seq);
                    }
                }
            }
            ServerMessage::Ack { seq } => self.server_ack = self.server_ack.max(seq),
            ServerMessage::Joined { room } => self.room = room,
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
        let payload = Bytes::from(vec![0x42u8; pace.map_or(0, |p| p.bytes)]);
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
