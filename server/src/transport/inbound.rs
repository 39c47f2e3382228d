//! What a transport hands the session: protocol frames, and the WebSocket control frames the
//! session answers or counts.

use bytes::Bytes;
use protocol::ClientMessage;

/// What a session reads from its client.
#[derive(Debug)]
pub(crate) enum Inbound {
    /// A protocol frame.
    Message(ClientMessage),
    /// A WebSocket ping, to be answered with a pong carrying its payload.
    Ping(Bytes),
    /// A WebSocket pong.
    Pong,
    /// A fragment of a WebSocket message that is not its last.
    Fragment,
    /// The client's WebSocket close frame, with its code: the end of the stream.
    Closed(Option<u16>),
}
