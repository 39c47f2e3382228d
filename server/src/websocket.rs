//! The WebSocket transport, for players in browsers: the same sessions as over TCP, with one
//! protocol frame per binary WebSocket message.
//!
//! A message carries a frame's body exactly as PROTOCOL.md lays it out, without the 4-byte
//! length prefix (the WebSocket message has its own length). [`WsStream`] (crate
//! `game-websocket`, shared with the clients) turns the messages into the byte stream the
//! session reads (prefix restored) and the session's frames back into messages, so that the
//! session, its watchdog, its close policy, resume and metrics run unchanged over it:
//!
//! - a close frame ends the stream like a FIN: after the client's `Bye` the close is
//!   `client_quit`, without it `peer_eof`; a TCP end without a close frame (a killed browser)
//!   is classified from the socket as over TCP (`peer_reset`, or `peer_eof` for a bare FIN);
//! - a text message, a malformed frame or a message over `server.max_frame_bytes` is a
//!   `protocol_error`; so is a first message announced larger than the largest `Hello`, refused
//!   at its frame header ([`FirstMessageCap`]), before its payload is read;
//! - the server's lingering close is its `Bye`, then its close frame, then reading until the
//!   client's close frame.
//!
//! The HTTP upgrade must complete within `session.handshake_timeout` (counted with the `Hello`
//! that follows it); one that does not, or that is not a WebSocket upgrade, is counted as
//! `handshake_timeout` or `protocol_error` like a TCP handshake that fails.

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

pub(crate) use game_websocket::{FirstMessageCap, WsStream, config};

use crate::connection::{Peek, Transport};
use crate::tls::TlsSocket;

/// A connection a WebSocket runs over: plain TCP (`ws://`) or TLS (`wss://`).
pub trait Socket: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// The `transport` label of a WebSocket over it.
    const WEBSOCKET: &'static str;
    /// What a WebSocket over it holds beyond a plain TCP socket (see [`Transport::OVERHEAD`]).
    const WEBSOCKET_OVERHEAD: usize;
    /// The TCP connection underneath.
    fn tcp(&self) -> &TcpStream;
}

impl Socket for TcpStream {
    const WEBSOCKET: &'static str = crate::metrics::transport::WEBSOCKET;
    // 22.3 KiB per held session against 3.4 over TCP.
    const WEBSOCKET_OVERHEAD: usize = 19 * 1024;

    fn tcp(&self) -> &TcpStream {
        self
    }
}

impl Socket for TlsSocket {
    const WEBSOCKET: &'static str = crate::metrics::transport::WSS;
    // 28.8 KiB per held session against 3.4 over TCP.
    const WEBSOCKET_OVERHEAD: usize = 25 * 1024;

    fn tcp(&self) -> &TcpStream {
        TlsSocket::tcp(self)
    }
}

/// The client's first message capped at the largest `Hello` (see [`FirstMessageCap`]): as over
/// TCP, where the codec caps frames before `Hello`, a client that has not said who it is cannot
/// make the server hold a message of up to `server.max_frame_bytes`.
impl<S: Socket> Socket for FirstMessageCap<S> {
    const WEBSOCKET: &'static str = S::WEBSOCKET;
    const WEBSOCKET_OVERHEAD: usize = S::WEBSOCKET_OVERHEAD;

    fn tcp(&self) -> &TcpStream {
        self.get_ref().tcp()
    }
}

impl<S: Socket> Transport for WsStream<S> {
    const NAME: &'static str = S::WEBSOCKET;
    const OVERHEAD: usize = S::WEBSOCKET_OVERHEAD;
    const BUFFERED: bool = true;

    type Read<'a> = tokio::io::ReadHalf<&'a mut WsStream<S>>;
    type Write<'a> = tokio::io::WriteHalf<&'a mut WsStream<S>>;

    fn split(&mut self) -> (Self::Read<'_>, Self::Write<'_>) {
        tokio::io::split(self)
    }

    fn abort(&self) {
        if let Err(error) = self.get_ref().tcp().set_zero_linger() {
            tracing::debug!(%error, "cannot set zero linger");
        }
    }
}

impl<S: Socket> Peek for tokio::io::ReadHalf<&mut WsStream<S>> {
    /// Messages are read whole by the WebSocket layer: nothing to look at from outside.
    fn bytes_waiting(&self) -> bool {
        false
    }
}
