//! Reads frames from a transport, holding no buffer while nothing is partly read.
//!
//! A framed reader with a fixed buffer keeps it for the whole session: 1 KiB or more for every
//! held player who sends a `Pong` now and then. This one reads into a stack buffer while it
//! holds nothing, keeps on the heap only what a frame that is not complete yet needs, and lets
//! the buffer go as soon as every byte in it has been decoded. A client that pipelines keeps a
//! buffer (its reads end inside frames), and reads go straight into it.
//!
//! The bytes are framed as the listener speaks: length-prefixed frames ([`ServerCodec`]), or
//! WebSocket frames ([`WsDecoder`]), whose pings, pongs and fragments come out as items of their
//! own so that the session counts every frame a client sends.

use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::BytesMut;
use futures_util::Stream;
use protocol::{CodecError, HEADER_LEN, ServerCodec};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::time::Instant;
use tokio_util::codec::Decoder;

use crate::transport::inbound::Inbound;
use crate::transport::websocket::{WsDecoder, WsError};

/// Bytes read at once through the stack while no buffer is held.
const STACK_READ: usize = 4096;

/// Why reading failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    /// The length-prefixed framing, or the transport underneath.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The WebSocket framing.
    #[error(transparent)]
    WebSocket(#[from] WsError),
}

/// How the listener frames the protocol.
#[derive(Debug)]
pub(crate) enum Framing {
    /// Frames with a 4-byte length prefix (TCP and TLS).
    Length(ServerCodec),
    /// One frame per binary WebSocket message (inline: the decoder is three words, and a box
    /// of its own would cost every WebSocket session an allocation).
    WebSocket(WsDecoder),
}

impl Framing {
    /// Changes the largest frame body accepted from now on (the full limit after `Hello`).
    pub(crate) fn set_max_frame(&mut self, max: usize) {
        match self {
            Framing::Length(codec) => codec.set_max_frame(max),
            Framing::WebSocket(decoder) => decoder.set_max_message(max),
        }
    }

    fn decode(&mut self, buf: &mut BytesMut, eof: bool) -> Result<Option<Inbound>, ReadError> {
        match self {
            Framing::Length(codec) => {
                let message = if eof {
                    codec.decode_eof(buf)?
                } else {
                    codec.decode(buf)?
                };
                Ok(message.map(Inbound::Message))
            }
            Framing::WebSocket(decoder) => {
                let item = decoder.decode(buf)?;
                if item.is_none() && eof && !buf.is_empty() {
                    // The TCP stream ended inside a WebSocket frame.
                    return Err(CodecError::Truncated {
                        buffered: buf.len(),
                    }
                    .into());
                }
                Ok(item)
            }
        }
    }

    /// True when `buf` holds a whole frame.
    fn frame_buffered(&self, buf: &[u8]) -> bool {
        match self {
            Framing::Length(_) => buf.get(..HEADER_LEN).is_some_and(|prefix| {
                let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
                buf.len() >= HEADER_LEN + len as usize
            }),
            Framing::WebSocket(_) => WsDecoder::frame_buffered(buf),
        }
    }
}

/// A stream of what the client sends over `R`.
#[derive(Debug)]
pub(crate) struct FrameReader<R> {
    io: R,
    framing: Framing,
    buf: BytesMut,
    eof: bool,
    failed: bool,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Reads `framing`'s frames from `io`, starting with the bytes already read in `buf`.
    pub(crate) fn new(io: R, framing: Framing, buf: BytesMut) -> FrameReader<R> {
        FrameReader {
            io,
            framing,
            buf,
            eof: false,
            failed: false,
        }
    }

    /// Bytes read and not decoded yet.
    pub(crate) fn read_buffer(&self) -> &BytesMut {
        &self.buf
    }

    /// Takes the bytes read and not decoded (for the lingering close, which reads past them).
    pub(crate) fn take_buffer(&mut self) -> BytesMut {
        std::mem::take(&mut self.buf)
    }

    pub(crate) fn framing(&self) -> &Framing {
        &self.framing
    }

    pub(crate) fn framing_mut(&mut self) -> &mut Framing {
        &mut self.framing
    }

    pub(crate) fn get_ref(&self) -> &R {
        &self.io
    }

    /// True when a whole frame is buffered.
    pub(crate) fn frame_buffered(&self) -> bool {
        self.framing.frame_buffered(&self.buf)
    }

    /// Refuses a WebSocket message whose fragments take too long (see
    /// [`WsDecoder::check_assembly`]).
    pub(crate) fn check_assembly(&mut self, now: Instant) -> Result<(), ReadError> {
        match &mut self.framing {
            Framing::WebSocket(decoder) => decoder.check_assembly(now).map_err(Into::into),
            Framing::Length(_) => Ok(()),
        }
    }

    /// Decodes one item from what is buffered, if a whole one is there.
    fn decode(&mut self) -> Result<Option<Inbound>, ReadError> {
        let decoded = self.framing.decode(&mut self.buf, self.eof);
        if self.buf.is_empty() {
            // Everything read is decoded: what the buffer still holds is shared with the
            // messages, or spare. Hold none of it.
            self.buf = BytesMut::new();
        }
        decoded
    }

    /// Reads once. Ready(0) is the end of the stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.buf.capacity() - self.buf.len() >= STACK_READ {
            // A large frame is partly read and the codec reserved room for the rest: read
            // straight into it.
            return tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.buf);
        }
        let mut stack = [MaybeUninit::<u8>::uninit(); STACK_READ];
        let mut read = ReadBuf::uninit(&mut stack);
        ready!(Pin::new(&mut self.io).poll_read(cx, &mut read))?;
        let filled = read.filled();
        self.buf.extend_from_slice(filled);
        Poll::Ready(Ok(filled.len()))
    }
}

impl<R: AsyncRead + Unpin> Stream for FrameReader<R> {
    type Item = Result<Inbound, ReadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.failed {
            return Poll::Ready(None);
        }
        loop {
            if !this.buf.is_empty() || this.eof {
                match this.decode() {
                    Ok(Some(item)) => return Poll::Ready(Some(Ok(item))),
                    Ok(None) if this.eof => return Poll::Ready(None),
                    Ok(None) => {}
                    Err(error) => {
                        this.failed = true;
                        return Poll::Ready(Some(Err(error)));
                    }
                }
            }
            match ready!(this.poll_fill(cx)) {
                Ok(0) => this.eof = true,
                Ok(_) => {}
                Err(error) => {
                    this.failed = true;
                    return Poll::Ready(Some(Err(CodecError::Io(error).into())));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use protocol::{ClientCodec, ClientMessage, Hello};
    use tokio::io::AsyncWriteExt;
    use tokio_util::codec::Encoder;

    fn encoded(messages: &[ClientMessage]) -> Vec<u8> {
        let mut codec = ClientCodec::default();
        let mut out = BytesMut::new();
        for message in messages {
            codec.encode(message, &mut out).expect("encode");
        }
        out.to_vec()
    }

    fn hello() -> ClientMessage {
        ClientMessage::Hello(Box::new(Hello::new("p".repeat(60), "r".repeat(60))))
    }

    #[tokio::test]
    async fn frames_split_anywhere_decode_and_nothing_is_held_between_them() {
        let messages = [
            hello(),
            ClientMessage::Pong { nonce: 7 },
            ClientMessage::Input {
                seq: 1,
                payload: bytes::Bytes::from(vec![9u8; 10_000]),
            },
            ClientMessage::Ack { seq: 3 },
        ];
        let wire = encoded(&messages);
        for chunk in [1, 3, 7, 100, 4096, wire.len()] {
            let (client, server) = tokio::io::duplex(64 * 1024);
            let mut reader = FrameReader::new(
                server,
                Framing::Length(ServerCodec::default()),
                BytesMut::new(),
            );
            let writer = {
                let wire = wire.clone();
                tokio::spawn(async move {
                    let mut client = client;
                    for piece in wire.chunks(chunk) {
                        client.write_all(piece).await.expect("write");
                        tokio::task::yield_now().await;
                    }
                })
            };
            for expected in &messages {
                let got = reader.next().await.expect("a message").expect("decodes");
                let Inbound::Message(got) = got else {
                    panic!("not a message: {got:?}")
                };
                assert_eq!(&got, expected, "chunks of {chunk}");
                if reader.read_buffer().is_empty() {
                    assert_eq!(
                        reader.read_buffer().capacity(),
                        0,
                        "an idle buffer is released"
                    );
                }
            }
            writer.await.expect("writer");
            assert!(reader.next().await.is_none(), "a clean end between frames");
        }
    }

    #[tokio::test]
    async fn an_end_inside_a_frame_is_truncated() {
        let wire = encoded(&[ClientMessage::Pong { nonce: 1 }]);
        let (mut client, server) = tokio::io::duplex(1024);
        client
            .write_all(&wire[..wire.len() - 2])
            .await
            .expect("write");
        drop(client);
        let mut reader = FrameReader::new(
            server,
            Framing::Length(ServerCodec::default()),
            BytesMut::new(),
        );
        assert!(matches!(
            reader.next().await,
            Some(Err(ReadError::Codec(CodecError::Truncated { .. })))
        ));
        assert!(reader.next().await.is_none());
    }
}
