//! One protocol frame per binary WebSocket message, as a byte stream.
//!
//! The game protocol's frames travel over WebSocket one per binary message, each message the
//! frame's body without the 4-byte length prefix (the message has its own length; PROTOCOL.md,
//! "WebSocket"). [`WsStream`] turns a WebSocket into the byte stream of length-prefixed frames a
//! codec reads and writes, so that the clients (the client library, client-sim, the bench) run
//! over it unchanged. (The server frames WebSocket itself, in `game-engine`, so that it sees
//! every frame a client sends.)
//!
//! - reading: each binary message comes out as its frame, prefix restored; a close frame, or
//!   the end of the connection without one, is the end of the stream; a text message, a
//!   malformed frame or a message over the limit is an `InvalidData` error (a protocol error);
//!   the connection's own errors come out as they are, so that a reset is still a reset;
//! - writing: each whole frame written goes out as one binary message; shutting down sends a
//!   close frame (1000) after everything written before it.
//!
//! Pings and pongs of WebSocket itself are answered by the WebSocket layer and never seen.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BufMut, BytesMut};
use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::WebSocketStream;
pub use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message, error::ProtocolError};

/// The length prefix the byte stream carries and the messages do not.
const PREFIX: usize = 4;

/// What the WebSocket layer reads from its socket at a time. Its read buffer is allocated (and
/// zero-filled) at this size for every connection, so it is kept to a page: a message larger
/// than that grows the buffer for as long as it needs. (The library's default, 128 KiB, made a
/// held session cost 40 times what it costs over TCP.)
const READ_BUFFER: usize = 4 * 1024;
/// How much the WebSocket layer gathers before it writes to the socket; each write of a stream
/// is flushed anyway, so this only bounds what one write may hold back.
const WRITE_BUFFER: usize = 8 * 1024;

/// The WebSocket settings for frames of at most `max_frame` bytes.
pub fn config(max_frame: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(max_frame))
        .max_frame_size(Some(max_frame))
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
}

/// A WebSocket connection as the byte stream of length-prefixed frames a session reads and
/// writes.
pub struct WsStream<S> {
    ws: WebSocketStream<S>,
    /// What remains of the current inbound message, its length prefix restored.
    inbound: BytesMut,
    /// Outbound bytes not yet a whole frame, and whole frames not yet handed to the socket.
    outbound: BytesMut,
    /// The client's close frame (or the end of the TCP stream) was read.
    ended: bool,
    /// Our close frame was sent.
    closing: bool,
    /// The code (and reason) our close frame will carry: 1000, or why the peer's WebSocket was
    /// refused.
    close: (CloseCode, &'static str),
}

impl<S> std::fmt::Debug for WsStream<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsStream")
            .field("ended", &self.ended)
            .field("closing", &self.closing)
            .finish_non_exhaustive()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsStream<S> {
    /// The connection underneath.
    pub fn get_ref(&self) -> &S {
        self.ws.get_ref()
    }

    /// Wraps an upgraded connection.
    pub fn new(ws: WebSocketStream<S>) -> WsStream<S> {
        WsStream {
            ws,
            inbound: BytesMut::new(),
            outbound: BytesMut::new(),
            ended: false,
            closing: false,
            close: (CloseCode::Normal, ""),
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
        WsError::ConnectionClosed
        | WsError::AlreadyClosed
        | WsError::Protocol(ProtocolError::SendAfterClosing) => {
            io::Error::new(io::ErrorKind::BrokenPipe, "the WebSocket is closed")
        }
        other => io::Error::new(io::ErrorKind::InvalidData, other.to_string()),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsStream<S> {
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
                    this.close = (CloseCode::Unsupported, "text message: binary only");
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "a text message: this protocol's frames travel in binary messages",
                    )));
                }
                // Pings are answered by the WebSocket layer itself.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Close(_))) => {
                    this.ended = true;
                    // The WebSocket layer queued its answer to the peer's close frame: send it
                    // now, as far as the socket takes it, so that a peer that closed first sees
                    // a clean close even if nothing is written here again.
                    let _ = Pin::new(&mut this.ws).poll_flush(cx);
                }
                None
                | Some(Err(
                    WsError::ConnectionClosed
                    | WsError::AlreadyClosed
                    | WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake),
                )) => this.ended = true,
                Some(Err(error)) => {
                    match &error {
                        WsError::Capacity(_) => {
                            this.close = (CloseCode::Size, "message over the frame limit");
                        }
                        WsError::Protocol(_) | WsError::Utf8(_) => {
                            this.close = (CloseCode::Protocol, "invalid WebSocket frame");
                        }
                        _ => {}
                    }
                    return Poll::Ready(Err(into_io(error)));
                }
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsStream<S> {
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

    /// The close frame (see the crate's documentation for its code), after everything written
    /// before it.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.send_frames(cx))?;
        if !this.closing {
            ready!(Pin::new(&mut this.ws).poll_ready(cx)).map_err(into_io)?;
            let close = CloseFrame {
                code: this.close.0,
                reason: this.close.1.into(),
            };
            Pin::new(&mut this.ws)
                .start_send(Message::Close(Some(close)))
                .map_err(into_io)?;
            this.closing = true;
        }
        Pin::new(&mut this.ws).poll_flush(cx).map_err(into_io)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use futures_util::{SinkExt, StreamExt};
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
    use tokio_tungstenite::tungstenite::protocol::Role;

    use super::*;

    async fn pair() -> (WsStream<DuplexStream>, WebSocketStream<DuplexStream>) {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let server = WebSocketStream::from_raw_socket(a, Role::Server, Some(config(1024))).await;
        let client = WebSocketStream::from_raw_socket(b, Role::Client, None).await;
        (WsStream::new(server), client)
    }

    #[tokio::test]
    async fn frames_become_messages_and_messages_frames_with_the_prefix_restored() {
        let (mut stream, mut peer) = pair().await;
        // Two frames written in pieces: two messages, bodies without their prefixes.
        stream.write_all(&[0, 0, 0, 3, b'a']).await.unwrap();
        stream
            .write_all(&[b'b', b'c', 0, 0, 0, 1, b'z'])
            .await
            .unwrap();
        stream.flush().await.unwrap();
        assert_eq!(
            peer.next().await.unwrap().unwrap(),
            Message::Binary(b"abc".to_vec().into())
        );
        assert_eq!(
            peer.next().await.unwrap().unwrap(),
            Message::Binary(b"z".to_vec().into())
        );
        // A message read back is its frame, prefix first.
        peer.send(Message::Binary(b"hi".to_vec().into()))
            .await
            .unwrap();
        let mut frame = [0u8; 6];
        stream.read_exact(&mut frame).await.unwrap();
        assert_eq!(&frame, &[0, 0, 0, 2, b'h', b'i']);
        // The peer's close frame is the end of the stream; our shutdown answers with ours.
        peer.close(None).await.unwrap();
        let mut rest = Vec::new();
        assert_eq!(stream.read_to_end(&mut rest).await.unwrap(), 0);
    }

    /// The close frame `peer` reads next.
    async fn close_code(peer: &mut WebSocketStream<DuplexStream>) -> CloseCode {
        loop {
            match peer.next().await.unwrap().unwrap() {
                Message::Close(Some(frame)) => return frame.code,
                Message::Close(None) => panic!("a close frame without a code"),
                _ => continue,
            }
        }
    }

    #[tokio::test]
    async fn a_text_message_or_one_over_the_limit_is_invalid_data_and_the_close_says_which() {
        let (mut stream, mut peer) = pair().await;
        peer.send(Message::Text("{}".into())).await.unwrap();
        let mut buf = [0u8; 8];
        let error = stream.read(&mut buf).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        stream.shutdown().await.unwrap();
        assert_eq!(close_code(&mut peer).await, CloseCode::Unsupported);

        let (mut stream, mut peer) = pair().await;
        peer.send(Message::Binary(vec![0u8; 2048].into()))
            .await
            .unwrap();
        let error = stream.read(&mut buf).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        stream.shutdown().await.unwrap();
        assert_eq!(close_code(&mut peer).await, CloseCode::Size);
    }

    #[tokio::test]
    async fn a_peer_that_closes_first_gets_its_close_answered_at_once() {
        let (mut stream, mut peer) = pair().await;
        peer.send(Message::Close(Some(CloseFrame {
            code: CloseCode::Away,
            reason: "".into(),
        })))
        .await
        .unwrap();
        let mut rest = Vec::new();
        assert_eq!(stream.read_to_end(&mut rest).await.unwrap(), 0);
        // Nothing more is written on this side; the answer is already on its way.
        let answer = tokio::time::timeout(std::time::Duration::from_secs(5), peer.next())
            .await
            .expect("the close is answered without another write");
        match answer {
            Some(Ok(Message::Close(Some(frame)))) => assert_eq!(frame.code, CloseCode::Away),
            other => panic!("expected the close answered, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn shutdown_sends_a_normal_close_after_what_was_written() {
        let (mut stream, mut peer) = pair().await;
        stream.write_all(&[0, 0, 0, 1, b'x']).await.unwrap();
        stream.shutdown().await.unwrap();
        assert_eq!(
            peer.next().await.unwrap().unwrap(),
            Message::Binary(b"x".to_vec().into())
        );
        match peer.next().await.unwrap().unwrap() {
            Message::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::Normal),
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}
