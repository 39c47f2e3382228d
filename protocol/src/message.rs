use bytes::{BufMut, Bytes, BytesMut};

use crate::bye::ByeCode;
use crate::error::CodecError;
use crate::kind::Kind;
use crate::wire::{Reader, WireMessage, put_string, string_len};

/// The protocol version this crate speaks, sent in `Hello`.
pub const PROTOCOL_VERSION: u16 = 3;
/// The oldest version a server of this version still accepts: a version-2 client's messages are
/// version-3 messages without join options, byte for byte.
pub const OLDEST_PROTOCOL_VERSION: u16 = 2;
/// Longest player id, in bytes of UTF-8.
pub const MAX_PLAYER_ID_BYTES: usize = 64;
/// Longest room name, in bytes of UTF-8.
pub const MAX_ROOM_BYTES: usize = 64;
/// Longest auth token, in bytes.
pub const MAX_AUTH_TOKEN_BYTES: usize = 512;
/// Longest join options (in `Hello` and `Join`), in bytes.
pub const MAX_OPTIONS_BYTES: usize = 1024;
/// Length of a resume token, in bytes (128 random bits).
pub const RESUME_TOKEN_LEN: usize = 16;
/// Bytes a game may add around an input's payload when it relays it as an event (a header of
/// its own: who sent it, which input). An input's payload is bounded so that the event always
/// fits in a frame; see [`max_input_payload`].
pub const INPUT_HEADROOM: usize = 128;

/// The largest `Input` payload a server with frames of `max_frame` bytes accepts: the frame less
/// the kind byte, the sequence number and [`INPUT_HEADROOM`]. 65,399 bytes by default.
pub const fn max_input_payload(max_frame: usize) -> usize {
    max_frame.saturating_sub(1 + 8 + INPUT_HEADROOM)
}

/// The largest `Hello` body, kind byte included: every string at its maximum, an auth token, the
/// resume fields and the longest join options. A server reads no larger frame before the
/// handshake.
pub const MAX_HELLO_BODY: usize = 1
    + 2
    + (2 + MAX_PLAYER_ID_BYTES)
    + (2 + MAX_ROOM_BYTES)
    + 1
    + (2 + MAX_AUTH_TOKEN_BYTES)
    + 1
    + RESUME_TOKEN_LEN
    + 8
    + MAX_OPTIONS_BYTES;

/// An opaque, single-use secret that lets a player take its parked session back.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ResumeToken(pub [u8; RESUME_TOKEN_LEN]);

impl ResumeToken {
    /// The all-zero token, which a server sends when resume is turned off.
    pub const NONE: ResumeToken = ResumeToken([0; RESUME_TOKEN_LEN]);

    /// True for the all-zero token.
    pub fn is_none(&self) -> bool {
        *self == ResumeToken::NONE
    }
}

impl std::fmt::Debug for ResumeToken {
    /// Tokens are credentials: only the first two bytes are ever printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ResumeToken({:02x}{:02x}…)", self.0[0], self.0[1])
    }
}

/// What a client must keep to resume a session: the token and the last event it received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resume {
    /// The token from the most recent `Welcome`.
    pub token: ResumeToken,
    /// The highest event sequence number the client received without a gap (0 if none).
    pub last_event_seq: u64,
}

/// The client's opening message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// Must equal [`PROTOCOL_VERSION`] or the server answers `Bye{version_mismatch}`.
    pub version: u16,
    /// Who is playing: 1 to 64 bytes of UTF-8.
    pub player_id: String,
    /// The room to join; empty lets the server choose.
    pub room: String,
    /// An auth token, required when the server runs with `auth.mode = "hmac"`.
    pub auth_token: Option<String>,
    /// Present to resume a parked session instead of starting a new one.
    pub resume: Option<Resume>,
    /// Join options for the room, opaque to the engine and read by the game (a character, a
    /// team, a password): at most [`MAX_OPTIONS_BYTES`]; empty when there are none. Version 3.
    pub options: Bytes,
}

impl From<Hello> for ClientMessage {
    fn from(hello: Hello) -> ClientMessage {
        ClientMessage::Hello(Box::new(hello))
    }
}

impl Hello {
    /// A `Hello` of this version for `player_id` into `room` (empty: the server chooses), without
    /// a token, resume or options.
    pub fn new(player_id: impl Into<String>, room: impl Into<String>) -> Hello {
        Hello {
            version: PROTOCOL_VERSION,
            player_id: player_id.into(),
            room: room.into(),
            auth_token: None,
            resume: None,
            options: Bytes::new(),
        }
    }
}

/// The server's answer to an accepted `Hello`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Welcome {
    /// The server's id for this session (unique per process run).
    pub session_id: u64,
    /// How often the server pings, in milliseconds; 0 when the server does not ping.
    pub heartbeat_interval_ms: u32,
    /// After this many milliseconds without any frame from the client, the server drops it.
    pub idle_timeout_ms: u32,
    /// Token to resume this session after a broken connection; all zero when resume is off.
    pub resume_token: ResumeToken,
    /// True when this connection took over a parked session.
    pub resumed: bool,
    /// The highest input sequence number the server has applied for this player (0 if none).
    pub last_input_seq: u64,
    /// The room the player is in.
    pub room: String,
}

/// A closing message, in either direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bye {
    /// Why the sender is closing.
    pub code: ByeCode,
    /// Human-readable detail for logs; may be empty.
    pub text: String,
}

impl Bye {
    /// A `Bye` with a code and a detail text.
    pub fn new(code: ByeCode, text: impl Into<String>) -> Bye {
        Bye {
            code,
            text: text.into(),
        }
    }
}

/// A message a client sends and a server receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientMessage {
    /// The opening message (boxed: a `Hello` is several times the size of every other message,
    /// comes once per connection, and would otherwise make every input a larger value to move).
    Hello(Box<Hello>),
    /// A liveness probe the server must answer with `Pong` carrying the same nonce.
    Ping {
        /// Echoed back in the `Pong`.
        nonce: u64,
    },
    /// The answer to a server `Ping`.
    Pong {
        /// The nonce of the `Ping` being answered.
        nonce: u64,
    },
    /// One game input. Sequence numbers start at 1 and increase by one.
    Input {
        /// Position of this input in the player's input stream.
        seq: u64,
        /// Game-defined bytes.
        payload: Bytes,
    },
    /// Every event up to and including `seq` was received.
    Ack {
        /// The highest event sequence number received without a gap.
        seq: u64,
    },
    /// The client is closing.
    Bye(Bye),
    /// Move to another room.
    Join {
        /// The room's name (1 to 64 bytes).
        room: String,
        /// Join options for the room (at most [`MAX_OPTIONS_BYTES`]; empty when there are
        /// none). Version 3.
        options: Bytes,
    },
}

/// A message a server sends and a client receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerMessage {
    /// The handshake succeeded.
    Welcome(Welcome),
    /// A liveness probe the client must answer with `Pong` carrying the same nonce.
    Ping {
        /// Echoed back in the `Pong`.
        nonce: u64,
    },
    /// The answer to a client `Ping`.
    Pong {
        /// The nonce of the `Ping` being answered.
        nonce: u64,
    },
    /// One game event. Sequence numbers start at 1 and increase by one per player.
    Event {
        /// Position of this event in the player's event stream.
        seq: u64,
        /// Game-defined bytes.
        payload: Bytes,
    },
    /// Every input up to and including `seq` was applied.
    Ack {
        /// The highest input sequence number applied.
        seq: u64,
    },
    /// The server is closing this session.
    Bye(Bye),
    /// The player is now in this room.
    Joined {
        /// The room's name.
        room: String,
    },
    /// The room named in `Join` refused the player, who stays in its current room.
    JoinRefused {
        /// The room that refused.
        room: String,
        /// Why, for people; may be empty.
        text: String,
    },
}

fn check_len(
    kind: Kind,
    s: &str,
    min: usize,
    max: usize,
    reason: &'static str,
) -> Result<(), CodecError> {
    if s.len() < min || s.len() > max {
        return Err(CodecError::Malformed { kind, reason });
    }
    Ok(())
}

fn check_options(kind: Kind, options: &[u8]) -> Result<(), CodecError> {
    if options.len() > MAX_OPTIONS_BYTES {
        return Err(CodecError::Malformed {
            kind,
            reason: OPTIONS_RANGE,
        });
    }
    Ok(())
}

/// The join options: the rest of the body.
fn options(r: &mut Reader) -> Result<Bytes, CodecError> {
    let options = r.rest();
    check_options(r.kind(), &options)?;
    Ok(options)
}

const PLAYER_ID_RANGE: &str = "player id must be 1 to 64 bytes";
const ROOM_RANGE: &str = "room name must be at most 64 bytes";
const JOIN_ROOM_RANGE: &str = "room name must be 1 to 64 bytes";
const TOKEN_RANGE: &str = "auth token must be at most 512 bytes";
const OPTIONS_RANGE: &str = "join options must be at most 1024 bytes";
const BYE_TEXT: &str = "bye text must be valid UTF-8";

fn parse_bye(r: &mut Reader) -> Result<Bye, CodecError> {
    let code = r.u8("bye code")?;
    let code = ByeCode::from_u8(code).ok_or(CodecError::Malformed {
        kind: Kind::Bye,
        reason: "unknown bye code",
    })?;
    let text = r.rest_text().map_err(|_| CodecError::Malformed {
        kind: Kind::Bye,
        reason: BYE_TEXT,
    })?;
    Ok(Bye { code, text })
}

fn put_bye(dst: &mut BytesMut, bye: &Bye) {
    dst.put_u8(bye.code as u8);
    dst.put_slice(bye.text.as_bytes());
}

impl WireMessage for ClientMessage {
    fn kind(&self) -> Kind {
        match self {
            ClientMessage::Hello(_) => Kind::Hello,
            ClientMessage::Ping { .. } => Kind::Ping,
            ClientMessage::Pong { .. } => Kind::Pong,
            ClientMessage::Input { .. } => Kind::Input,
            ClientMessage::Ack { .. } => Kind::Ack,
            ClientMessage::Bye(_) => Kind::Bye,
            ClientMessage::Join { .. } => Kind::Join,
        }
    }

    fn fields_len(&self) -> usize {
        match self {
            ClientMessage::Hello(h) => {
                2 + string_len(&h.player_id)
                    + string_len(&h.room)
                    + 1
                    + h.auth_token.as_deref().map_or(0, string_len)
                    + 1
                    + h.resume.map_or(0, |_| RESUME_TOKEN_LEN + 8)
                    + h.options.len()
            }
            ClientMessage::Ping { .. } | ClientMessage::Pong { .. } | ClientMessage::Ack { .. } => {
                8
            }
            ClientMessage::Input { payload, .. } => 8 + payload.len(),
            ClientMessage::Bye(bye) => 1 + bye.text.len(),
            ClientMessage::Join { room, options } => string_len(room) + options.len(),
        }
    }

    fn put_fields(&self, dst: &mut BytesMut) -> Result<(), CodecError> {
        match self {
            ClientMessage::Hello(h) => {
                check_len(
                    Kind::Hello,
                    &h.player_id,
                    1,
                    MAX_PLAYER_ID_BYTES,
                    PLAYER_ID_RANGE,
                )?;
                check_len(Kind::Hello, &h.room, 0, MAX_ROOM_BYTES, ROOM_RANGE)?;
                if let Some(token) = &h.auth_token {
                    check_len(Kind::Hello, token, 0, MAX_AUTH_TOKEN_BYTES, TOKEN_RANGE)?;
                }
                check_options(Kind::Hello, &h.options)?;
                dst.put_u16(h.version);
                put_string(dst, &h.player_id);
                put_string(dst, &h.room);
                match &h.auth_token {
                    Some(token) => {
                        dst.put_u8(1);
                        put_string(dst, token);
                    }
                    None => dst.put_u8(0),
                }
                match &h.resume {
                    Some(resume) => {
                        dst.put_u8(1);
                        dst.put_slice(&resume.token.0);
                        dst.put_u64(resume.last_event_seq);
                    }
                    None => dst.put_u8(0),
                }
                dst.put_slice(&h.options);
            }
            ClientMessage::Ping { nonce } | ClientMessage::Pong { nonce } => dst.put_u64(*nonce),
            ClientMessage::Ack { seq } => dst.put_u64(*seq),
            ClientMessage::Input { seq, payload } => {
                dst.put_u64(*seq);
                dst.put_slice(payload);
            }
            ClientMessage::Bye(bye) => put_bye(dst, bye),
            ClientMessage::Join { room, options } => {
                check_len(Kind::Join, room, 1, MAX_ROOM_BYTES, JOIN_ROOM_RANGE)?;
                check_options(Kind::Join, options)?;
                put_string(dst, room);
                dst.put_slice(options);
            }
        }
        Ok(())
    }

    fn parse(kind: Kind, body: Bytes) -> Result<Self, CodecError> {
        let mut r = Reader::new(kind, body);
        let message = match kind {
            Kind::Hello => {
                let version = r.u16("hello too short for its version")?;
                let player_id = r.string(MAX_PLAYER_ID_BYTES, PLAYER_ID_RANGE)?;
                if player_id.is_empty() {
                    return Err(CodecError::Malformed {
                        kind,
                        reason: PLAYER_ID_RANGE,
                    });
                }
                let room = r.string(MAX_ROOM_BYTES, ROOM_RANGE)?;
                let auth_token = if r.present("hello too short for its auth flag")? {
                    Some(r.string(MAX_AUTH_TOKEN_BYTES, TOKEN_RANGE)?)
                } else {
                    None
                };
                let resume = if r.present("hello too short for its resume flag")? {
                    let token = ResumeToken(r.array("hello too short for its resume token")?);
                    let last_event_seq = r.u64("hello too short for its last event seq")?;
                    Some(Resume {
                        token,
                        last_event_seq,
                    })
                } else {
                    None
                };
                let options = options(&mut r)?;
                return Ok(ClientMessage::Hello(Box::new(Hello {
                    version,
                    player_id,
                    room,
                    auth_token,
                    resume,
                    options,
                })));
            }
            Kind::Ping => ClientMessage::Ping {
                nonce: r.u64("ping needs an 8-byte nonce")?,
            },
            Kind::Pong => ClientMessage::Pong {
                nonce: r.u64("pong needs an 8-byte nonce")?,
            },
            Kind::Ack => ClientMessage::Ack {
                seq: r.u64("ack needs an 8-byte seq")?,
            },
            Kind::Input => {
                let seq = r.u64("input needs an 8-byte seq")?;
                return Ok(ClientMessage::Input {
                    seq,
                    payload: r.rest(),
                });
            }
            Kind::Bye => return Ok(ClientMessage::Bye(parse_bye(&mut r)?)),
            Kind::Join => {
                let room = r.string(MAX_ROOM_BYTES, JOIN_ROOM_RANGE)?;
                if room.is_empty() {
                    return Err(CodecError::Malformed {
                        kind,
                        reason: JOIN_ROOM_RANGE,
                    });
                }
                let options = options(&mut r)?;
                return Ok(ClientMessage::Join { room, options });
            }
            Kind::Welcome | Kind::Event | Kind::Joined | Kind::JoinRefused => {
                return Err(CodecError::WrongDirection(kind));
            }
        };
        r.finish()?;
        Ok(message)
    }
}

impl WireMessage for ServerMessage {
    fn kind(&self) -> Kind {
        match self {
            ServerMessage::Welcome(_) => Kind::Welcome,
            ServerMessage::Ping { .. } => Kind::Ping,
            ServerMessage::Pong { .. } => Kind::Pong,
            ServerMessage::Event { .. } => Kind::Event,
            ServerMessage::Ack { .. } => Kind::Ack,
            ServerMessage::Bye(_) => Kind::Bye,
            ServerMessage::Joined { .. } => Kind::Joined,
            ServerMessage::JoinRefused { .. } => Kind::JoinRefused,
        }
    }

    fn fields_len(&self) -> usize {
        match self {
            ServerMessage::Welcome(w) => 8 + 4 + 4 + RESUME_TOKEN_LEN + 1 + 8 + string_len(&w.room),
            ServerMessage::Ping { .. } | ServerMessage::Pong { .. } | ServerMessage::Ack { .. } => {
                8
            }
            ServerMessage::Event { payload, .. } => 8 + payload.len(),
            ServerMessage::Bye(bye) => 1 + bye.text.len(),
            ServerMessage::Joined { room } => string_len(room),
            ServerMessage::JoinRefused { room, text } => string_len(room) + text.len(),
        }
    }

    fn put_fields(&self, dst: &mut BytesMut) -> Result<(), CodecError> {
        match self {
            ServerMessage::Welcome(w) => {
                check_len(Kind::Welcome, &w.room, 0, MAX_ROOM_BYTES, ROOM_RANGE)?;
                dst.put_u64(w.session_id);
                dst.put_u32(w.heartbeat_interval_ms);
                dst.put_u32(w.idle_timeout_ms);
                dst.put_slice(&w.resume_token.0);
                dst.put_u8(u8::from(w.resumed));
                dst.put_u64(w.last_input_seq);
                put_string(dst, &w.room);
            }
            ServerMessage::Ping { nonce } | ServerMessage::Pong { nonce } => dst.put_u64(*nonce),
            ServerMessage::Ack { seq } => dst.put_u64(*seq),
            ServerMessage::Event { seq, payload } => {
                dst.put_u64(*seq);
                dst.put_slice(payload);
            }
            ServerMessage::Bye(bye) => put_bye(dst, bye),
            ServerMessage::Joined { room } => {
                check_len(Kind::Joined, room, 0, MAX_ROOM_BYTES, ROOM_RANGE)?;
                put_string(dst, room);
            }
            ServerMessage::JoinRefused { room, text } => {
                check_len(Kind::JoinRefused, room, 0, MAX_ROOM_BYTES, ROOM_RANGE)?;
                put_string(dst, room);
                dst.put_slice(text.as_bytes());
            }
        }
        Ok(())
    }

    fn parse(kind: Kind, body: Bytes) -> Result<Self, CodecError> {
        let mut r = Reader::new(kind, body);
        let message = match kind {
            Kind::Welcome => {
                let session_id = r.u64("welcome too short for its session id")?;
                let heartbeat_interval_ms =
                    r.u32("welcome too short for its heartbeat interval")?;
                let idle_timeout_ms = r.u32("welcome too short for its idle timeout")?;
                let resume_token = ResumeToken(r.array("welcome too short for its resume token")?);
                let resumed = r.present("welcome too short for its resumed flag")?;
                let last_input_seq = r.u64("welcome too short for its last input seq")?;
                let room = r.string(MAX_ROOM_BYTES, ROOM_RANGE)?;
                ServerMessage::Welcome(Welcome {
                    session_id,
                    heartbeat_interval_ms,
                    idle_timeout_ms,
                    resume_token,
                    resumed,
                    last_input_seq,
                    room,
                })
            }
            Kind::Ping => ServerMessage::Ping {
                nonce: r.u64("ping needs an 8-byte nonce")?,
            },
            Kind::Pong => ServerMessage::Pong {
                nonce: r.u64("pong needs an 8-byte nonce")?,
            },
            Kind::Ack => ServerMessage::Ack {
                seq: r.u64("ack needs an 8-byte seq")?,
            },
            Kind::Event => {
                let seq = r.u64("event needs an 8-byte seq")?;
                return Ok(ServerMessage::Event {
                    seq,
                    payload: r.rest(),
                });
            }
            Kind::Bye => return Ok(ServerMessage::Bye(parse_bye(&mut r)?)),
            Kind::Joined => ServerMessage::Joined {
                room: r.string(MAX_ROOM_BYTES, ROOM_RANGE)?,
            },
            Kind::JoinRefused => {
                let room = r.string(MAX_ROOM_BYTES, ROOM_RANGE)?;
                let text = r.rest_text().map_err(|_| CodecError::Malformed {
                    kind,
                    reason: "refusal text must be valid UTF-8",
                })?;
                return Ok(ServerMessage::JoinRefused { room, text });
            }
            Kind::Hello | Kind::Input | Kind::Join => return Err(CodecError::WrongDirection(kind)),
        };
        r.finish()?;
        Ok(message)
    }
}
