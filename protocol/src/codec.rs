use std::marker::PhantomData;

use bytes::{Buf, BufMut, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::error::CodecError;
use crate::kind::Kind;
use crate::message::{ClientMessage, ServerMessage};
use crate::wire::WireMessage;

/// Bytes in the length prefix that starts every frame.
pub const HEADER_LEN: usize = 4;
/// The default largest frame body, in bytes (64 KiB).
pub const DEFAULT_MAX_FRAME_BYTES: usize = 64 * 1024;

/// A length-prefixed frame codec that decodes `In` and encodes `Out`.
///
/// Use [`ServerCodec`] on the server and [`ClientCodec`] on the client.
pub struct Codec<In, Out> {
    max_frame: usize,
    _direction: PhantomData<fn(Out) -> In>,
}

/// The server's codec: decodes what clients send, encodes what servers send.
pub type ServerCodec = Codec<ClientMessage, ServerMessage>;
/// The client's codec: decodes what servers send, encodes what clients send.
pub type ClientCodec = Codec<ServerMessage, ClientMessage>;

impl<In, Out> std::fmt::Debug for Codec<In, Out> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Codec")
            .field("max_frame", &self.max_frame)
            .finish()
    }
}

impl<In, Out> Clone for Codec<In, Out> {
    fn clone(&self) -> Self {
        Codec::new(self.max_frame)
    }
}

impl<In, Out> Default for Codec<In, Out> {
    fn default() -> Self {
        Codec::new(DEFAULT_MAX_FRAME_BYTES)
    }
}

impl<In, Out> Codec<In, Out> {
    /// A codec accepting frame bodies of at most `max_frame` bytes (at least 1).
    pub fn new(max_frame: usize) -> Self {
        Codec {
            max_frame: max_frame.clamp(1, u32::MAX as usize),
            _direction: PhantomData,
        }
    }

    /// The largest frame body this codec accepts or produces.
    pub fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// Changes the largest frame body accepted from now on (at least 1). A server reads with the
    /// `Hello`-sized limit [`crate::MAX_HELLO_BODY`] until the handshake is done, so that a
    /// length prefix from an unknown peer cannot make it reserve a full frame.
    pub fn set_max_frame(&mut self, max_frame: usize) {
        self.max_frame = max_frame.clamp(1, u32::MAX as usize);
    }

    /// Reads and checks the length prefix without consuming it.
    fn body_len(&self, src: &BytesMut) -> Result<Option<usize>, CodecError> {
        let Some(prefix) = src.get(..HEADER_LEN) else {
            return Ok(None);
        };
        let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
        if len == 0 {
            return Err(CodecError::EmptyFrame);
        }
        if len > self.max_frame {
            return Err(CodecError::FrameTooLarge {
                len,
                max: self.max_frame,
            });
        }
        Ok(Some(len))
    }
}

impl<In: WireMessage, Out> Decoder for Codec<In, Out> {
    type Item = In;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<In>, CodecError> {
        let Some(len) = self.body_len(src)? else {
            return Ok(None);
        };
        let frame_len = HEADER_LEN + len;
        if src.len() < frame_len {
            // The length was checked against the maximum above, so this reservation is bounded.
            src.reserve(frame_len - src.len());
            return Ok(None);
        }
        src.advance(HEADER_LEN);
        let mut body = src.split_to(len).freeze();
        let byte = body.get_u8();
        let kind = Kind::from_u8(byte).ok_or(CodecError::UnknownKind(byte))?;
        In::parse(kind, body).map(Some)
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<In>, CodecError> {
        match self.decode(src)? {
            Some(message) => Ok(Some(message)),
            None if src.is_empty() => Ok(None),
            None => Err(CodecError::Truncated {
                buffered: src.len(),
            }),
        }
    }
}

impl<In, Out: WireMessage> Encoder<Out> for Codec<In, Out> {
    type Error = CodecError;

    fn encode(&mut self, message: Out, dst: &mut BytesMut) -> Result<(), CodecError> {
        self.encode(&message, dst)
    }
}

impl<In, Out: WireMessage> Encoder<&Out> for Codec<In, Out> {
    type Error = CodecError;

    fn encode(&mut self, message: &Out, dst: &mut BytesMut) -> Result<(), CodecError> {
        let len = 1 + message.fields_len();
        if len > self.max_frame {
            return Err(CodecError::FrameTooLarge {
                len,
                max: self.max_frame,
            });
        }
        let start = dst.len();
        dst.reserve(HEADER_LEN + len);
        dst.put_u32(len as u32);
        dst.put_u8(message.kind() as u8);
        if let Err(error) = message.put_fields(dst) {
            dst.truncate(start);
            return Err(error);
        }
        debug_assert_eq!(dst.len() - start, HEADER_LEN + len);
        Ok(())
    }
}
