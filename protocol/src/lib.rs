//! The game-server wire protocol, with no I/O of its own.
//!
//! Every message travels in a frame: a 4-byte big-endian body length, then the body, whose first
//! byte is the message [`Kind`]. [`ServerCodec`] and [`ClientCodec`] are the tokio-util codecs for
//! the two ends of a connection; they never touch a socket, so they can be fuzzed and
//! property-tested alone. `PROTOCOL.md` at the top of the repository specifies every byte.
//!
//! The codec tells a clean end of stream (between frames) from a truncated one (inside a frame):
//! that is how a server tells a peer that closed from a peer that was killed mid-send.

#![deny(missing_docs)]

mod bye;
mod close;
mod codec;
mod error;
mod kind;
mod message;
mod wire;

pub use bye::ByeCode;
pub use close::CloseReason;
pub use codec::{ClientCodec, Codec, DEFAULT_MAX_FRAME_BYTES, HEADER_LEN, ServerCodec};
pub use error::CodecError;
pub use kind::Kind;
pub use message::{
    Bye, ClientMessage, Hello, INPUT_HEADROOM, MAX_AUTH_TOKEN_BYTES, MAX_HELLO_BODY,
    MAX_OPTIONS_BYTES, MAX_PLAYER_ID_BYTES, MAX_ROOM_BYTES, OLDEST_PROTOCOL_VERSION,
    PROTOCOL_VERSION, RESUME_TOKEN_LEN, Resume, ResumeToken, ServerMessage, Welcome,
    max_input_payload,
};
pub use wire::WireMessage;
