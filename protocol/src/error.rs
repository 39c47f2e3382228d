use std::io;

use crate::kind::Kind;

/// Why a byte stream could not be turned into messages, or a message into bytes.
///
/// "Not enough bytes yet" is never an error: the decoder returns `Ok(None)` and waits for more.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The transport failed underneath the codec.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    /// A length prefix announced more than the configured maximum. Nothing was reserved for it.
    #[error("frame of {len} bytes exceeds the maximum of {max}")]
    FrameTooLarge {
        /// The announced (or, when encoding, the computed) body length.
        len: usize,
        /// The codec's maximum body length.
        max: usize,
    },
    /// A length prefix of zero: every body carries at least its kind byte.
    #[error("empty frame: the length prefix is zero")]
    EmptyFrame,
    /// The kind byte names no message of this protocol version.
    #[error("unknown message kind 0x{0:02x}")]
    UnknownKind(u8),
    /// A known kind that this end must never receive (for example `Welcome` sent to a server).
    #[error("message kind {0:?} is not valid in this direction")]
    WrongDirection(Kind),
    /// The body of a known kind does not parse.
    #[error("malformed {kind:?}: {reason}")]
    Malformed {
        /// The message kind whose body was bad.
        kind: Kind,
        /// What was wrong, for the log line.
        reason: &'static str,
    },
    /// The stream ended inside a frame: the peer stopped mid-message, typically because it was
    /// killed. A clean end between frames is not an error.
    #[error("stream ended inside a frame ({buffered} bytes of an unfinished frame were buffered)")]
    Truncated {
        /// How many bytes of the unfinished frame had arrived.
        buffered: usize,
    },
}

impl CodecError {
    /// True when the error is a protocol violation by the peer rather than a transport failure or
    /// an end of stream.
    pub fn is_protocol_violation(&self) -> bool {
        !matches!(self, CodecError::Io(_) | CodecError::Truncated { .. })
    }
}
