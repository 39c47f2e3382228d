//! The WebSocket transport, for players in browsers: the same sessions as over TCP, with one
//! protocol frame per binary WebSocket message.
//!
//! A message carries a frame's body exactly as PROTOCOL.md lays it out, without the 4-byte
//! length prefix (the WebSocket message has its own length). [`WsStream`] turns the messages
//! into the byte stream the session reads (prefix restored) and the session's frames back into
//! messages, so that the session, its watchdog, its close policy, resume and metrics run
//! unchanged over it:
//!
//! - a close frame ends the stream like a FIN: after the client's `Bye` the close is
//!   `client_quit`, without it `peer_eof`; a TCP end without a close frame (a killed browser)
//!   is classified from the socket as over TCP (`peer_reset`, or `peer_eof` for a bare FIN);
//! - a text message, a malformed frame or a message over `server.max_frame_bytes` is a
//!   `protocol_error`;
//! - the server's lingering close is its `Bye`, then its close frame, then reading until the
//!   client's close frame.
//!
//! The HTTP upgrade must complete within `session.handshake_timeout` (counted with the `Hello`
//! that follows it); one that does not, or that is not a WebSocket upgrade, is counted as
//! `handshake_timeout` or `protocol_error` like a TCP handshake that fails.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BufMut, BytesMut};
use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message, error::ProtocolError};

use crate::connection::{Peek, Transport};
use crate::tls::TlsSocket;

/// The length prefix the byte stream carries and the messages do not.
const PREFIX: usize = 4;

/// The WebSocket settings for frames of at most `max_frame` bytes.
pub(crate) fn config(max_frame: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(max_frame))
        .max_frame_size(Some(max_frame))
}

/// A connection a WebSocket runs over: plain TCP (`ws://`) or TLS (`wss://`).
pub trait Socket: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// The `transport` label of a WebSocket over it.
    const WEBSOCKET: &'static str;
    /// The TCP connection underneath.
    fn tcp(&self) -> &TcpStream;
}

impl Socket for TcpStream {
    const WEBSOCKET: &'static str = "websocket";

    fn tcp(&self) -> &TcpStream {
        self
    }
}

impl Socket for TlsSocket {
    const WEBSOCKET: &'static str = "wss";

    fn tcp(&self) -> &TcpStream {
        TlsSocket::tcp(self)
    }
}

/// A WebSocket connection as the byte stream of length-prefixed frames a session reads and
/// writes.
pub struct WsStream<S = TcpStream> {
    ws: WebSocketStream<S>,
    /// What remains of the current inbound message, its length prefix restored.
    inbound: BytesMut,
    /// Outbound bytes not yet a whole frame, and whole frames not yet handed to the socket.
    outbound: BytesMut,
    /// The client's close frame (or the end of the TCP stream) was read.
    ended: bool,
    /// Our close frame was sent.
    closing: bool,
}

impl<S> std::fmt::Debug for WsStream<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsStream")
            .field("ended", &self.ended)
            .field("closing", &self.closing)
            .finish_non_exhaustive()
    }
}

impl<S: Socket> WsStream<S> {
    /// Wraps an upgraded connection.
    pub fn new(ws: WebSocketStream<S>) -> WsStream<S> {
        WsStream {
            ws,
            inbound: BytesMut::new(),
            outbound: BytesMut::new(),
            ended: false,
            closing: false,
        }
    }

    /// Hands every whole frame in `outbound` to the socket as a binary message, as far as the
    /// socket takes them now.
    fn send_frames(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            if self.outbound.len() < PREFIX {
                return Poll::Ready(Ok(()));
            }
            let len = u32::from_be_bytes([
                self.outbound[0],
                self.outbound[1],
                self.outbound[2],
                self.outbound[3],
            ]) as usize;
            if self.outbound.len() < PREFIX + len {
                return Poll::Ready(Ok(()));
            }
            ready!(Pin::new(&mut self.ws).poll_ready(cx)).map_err(into_io)?;
            self.outbound.advance(PREFIX);
            let body = self.outbound.split_to(len).freeze();
            Pin::new(&mut self.ws)
                .start_send(Message::Binary(body))
                .map_err(into_io)?;
        }
    }
}

/// A WebSocket error as the I/O error the session classifies: the socket's own error as it
/// is, a protocol violation as `InvalidData` (a `protocol_error`).
fn into_io(error: WsError) -> io::Error {
    match error {
        WsError::Io(error) => error,
        WsError::ConnectionClosed | WsError::AlreadyClosed => {
            io::Error::new(io::ErrorKind::BrokenPipe, "the WebSocket is closed")
        }
        other => io::Error::new(io::ErrorKind::InvalidData, other.to_string()),
    }
}

impl<S: Socket> AsyncRead for WsStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.inbound.is_empty() {
                let n = buf.remaining().min(this.inbound.len());
                buf.put_slice(&this.inbound.split_to(n));
                return Poll::Ready(Ok(()));
            }
            if this.ended {
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut this.ws).poll_next(cx)) {
                Some(Ok(Message::Binary(body))) => {
                    this.inbound.reserve(PREFIX + body.len());
                    this.inbound.put_u32(body.len() as u32);
                    this.inbound.extend_from_slice(&body);
                }
                Some(Ok(Message::Text(_))) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "a text message: this protocol's frames travel in binary messages",
                    )));
                }
                // Pings are answered by the WebSocket layer itself.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Close(_)))
                | None
                | Some(Err(
                    WsError::ConnectionClosed
                    | WsError::AlreadyClosed
                    | WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake),
                )) => this.ended = true,
                Some(Err(error)) => return Poll::Ready(Err(into_io(error))),
            }
        }
    }
}

impl<S: Socket> AsyncWrite for WsStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        // Whatever an earlier write left in the WebSocket layer goes out before more is taken:
        // back-pressure, as a full socket buffer gives over TCP.
        ready!(this.send_frames(cx))?;
        ready!(Pin::new(&mut this.ws).poll_flush(cx)).map_err(into_io)?;
        this.outbound.extend_from_slice(buf);
        if let Poll::Ready(Err(error)) = this.send_frames(cx) {
            return Poll::Ready(Err(error));
        }
        // Out now if the socket takes it; if not, the next write or flush finishes it (the
        // session writes at least its heartbeat traffic, and flushes on close).
        if let Poll::Ready(Err(error)) = Pin::new(&mut this.ws).poll_flush(cx) {
            return Poll::Ready(Err(into_io(error)));
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.send_frames(cx))?;
        Pin::new(&mut this.ws).poll_flush(cx).map_err(into_io)
    }

    /// The server's close frame, after everything written before it.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.send_frames(cx))?;
        if !this.closing {
            ready!(Pin::new(&mut this.ws).poll_ready(cx)).map_err(into_io)?;
            let close = CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            };
            Pin::new(&mut this.ws)
                .start_send(Message::Close(Some(close)))
                .map_err(into_io)?;
            this.closing = true;
        }
        Pin::new(&mut this.ws).poll_flush(cx).map_err(into_io)
    }
}

impl<S: Socket> Transport for WsStream<S> {
    const NAME: &'static str = S::WEBSOCKET;

    type Read<'a> = tokio::io::ReadHalf<&'a mut WsStream<S>>;
    type Write<'a> = tokio::io::WriteHalf<&'a mut WsStream<S>>;

    fn split(&mut self) -> (Self::Read<'_>, Self::Write<'_>) {
        tokio::io::split(self)
    }

    fn abort(&self) {
        if let Err(error) = self.ws.get_ref().tcp().set_zero_linger() {
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
