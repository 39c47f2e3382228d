//! Reads frames from a transport, holding no buffer while nothing is partly read.
//!
//! A framed reader with a fixed buffer keeps it for the whole session: 1 KiB or more for every
//! held player who sends a `Pong` now and then. This one reads into a stack buffer while it
//! holds nothing, keeps on the heap only what a frame that is not complete yet needs, and lets
//! the buffer go as soon as every byte in it has been decoded. A client that pipelines keeps a
//! buffer (its reads end inside frames), and reads go straight into it.

use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::BytesMut;
use futures_util::Stream;
use protocol::{ClientMessage, CodecError, ServerCodec};
use tokio::io::{AsyncRead, ReadBuf};
use tokio_util::codec::Decoder;

/// Bytes read at once through the stack while no buffer is held.
const STACK_READ: usize = 4096;

/// A stream of client messages over `R`.
#[derive(Debug)]
pub(crate) struct FrameReader<R> {
    io: R,
    codec: ServerCodec,
    buf: BytesMut,
    eof: bool,
    failed: bool,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub(crate) fn new(io: R, codec: ServerCodec) -> FrameReader<R> {
        FrameReader {
            io,
            codec,
            buf: BytesMut::new(),
            eof: false,
            failed: false,
        }
    }

    /// Bytes read and not decoded yet.
    pub(crate) fn read_buffer(&self) -> &BytesMut {
        &self.buf
    }

    pub(crate) fn decoder_mut(&mut self) -> &mut ServerCodec {
        &mut self.codec
    }

    pub(crate) fn get_ref(&self) -> &R {
        &self.io
    }

    /// Decodes one message from what is buffered, if a whole one is there.
    fn decode(&mut self) -> Result<Option<ClientMessage>, CodecError> {
        let decoded = if self.eof {
            self.codec.decode_eof(&mut self.buf)
        } else {
            self.codec.decode(&mut self.buf)
        };
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
    type Item = Result<ClientMessage, CodecError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.failed {
            return Poll::Ready(None);
        }
        loop {
            if !this.buf.is_empty() || this.eof {
                match this.decode() {
                    Ok(Some(message)) => return Poll::Ready(Some(Ok(message))),
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
                    return Poll::Ready(Some(Err(CodecError::Io(error))));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use protocol::{ClientCodec, Hello, PROTOCOL_VERSION};
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
        ClientMessage::Hello(Hello {
            version: PROTOCOL_VERSION,
            player_id: "p".repeat(60),
            room: "r".repeat(60),
            auth_token: None,
            resume: None,
        })
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
            let mut reader = FrameReader::new(server, ServerCodec::default());
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
        let mut reader = FrameReader::new(server, ServerCodec::default());
        assert!(matches!(
            reader.next().await,
            Some(Err(CodecError::Truncated { .. }))
        ));
        assert!(reader.next().await.is_none());
    }
}
