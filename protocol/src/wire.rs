//! Primitive field encodings shared by every message: big-endian integers, length-prefixed
//! strings, presence-flagged options.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::CodecError;
use crate::kind::Kind;

/// A message that knows its own body layout. Implemented by [`ClientMessage`](crate::ClientMessage) and
/// [`ServerMessage`](crate::ServerMessage); the codec supplies the length prefix and the kind byte.
pub trait WireMessage: Sized {
    /// The kind byte that starts this message's body.
    fn kind(&self) -> Kind;
    /// Length of the fields after the kind byte.
    fn fields_len(&self) -> usize;
    /// Writes the fields after the kind byte, refusing values the decoder would reject.
    fn put_fields(&self, dst: &mut BytesMut) -> Result<(), CodecError>;
    /// Parses the fields after the kind byte.
    fn parse(kind: Kind, fields: Bytes) -> Result<Self, CodecError>;
}

/// Reads the fields of one frame body, turning every shortfall into a `Malformed` error.
pub(crate) struct Reader {
    kind: Kind,
    body: Bytes,
}

impl Reader {
    pub(crate) fn new(kind: Kind, body: Bytes) -> Self {
        Reader { kind, body }
    }

    /// The kind of the message being read.
    pub(crate) fn kind(&self) -> Kind {
        self.kind
    }

    fn malformed(&self, reason: &'static str) -> CodecError {
        CodecError::Malformed {
            kind: self.kind,
            reason,
        }
    }

    fn need(&self, n: usize, reason: &'static str) -> Result<(), CodecError> {
        if self.body.remaining() < n {
            return Err(self.malformed(reason));
        }
        Ok(())
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, CodecError> {
        self.need(1, what)?;
        Ok(self.body.get_u8())
    }

    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, CodecError> {
        self.need(2, what)?;
        Ok(self.body.get_u16())
    }

    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, CodecError> {
        self.need(4, what)?;
        Ok(self.body.get_u32())
    }

    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64, CodecError> {
        self.need(8, what)?;
        Ok(self.body.get_u64())
    }

    pub(crate) fn array<const N: usize>(
        &mut self,
        what: &'static str,
    ) -> Result<[u8; N], CodecError> {
        self.need(N, what)?;
        let mut out = [0u8; N];
        self.body.copy_to_slice(&mut out);
        Ok(out)
    }

    /// A `u16` byte length, then that many bytes of UTF-8, at most `max` bytes long.
    pub(crate) fn string(&mut self, max: usize, what: &'static str) -> Result<String, CodecError> {
        let len = usize::from(self.u16(what)?);
        if len > max {
            return Err(self.malformed(what));
        }
        self.need(len, what)?;
        let raw = self.body.split_to(len);
        String::from_utf8(raw.to_vec()).map_err(|_| self.malformed("string is not valid UTF-8"))
    }

    /// A presence byte: 0 absent, 1 present, anything else malformed.
    pub(crate) fn present(&mut self, what: &'static str) -> Result<bool, CodecError> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(self.malformed("presence flag is neither 0 nor 1")),
        }
    }

    /// Everything left in the body.
    pub(crate) fn rest(&mut self) -> Bytes {
        self.body.split_off(0)
    }

    /// The rest of the body as UTF-8 text.
    pub(crate) fn rest_text(&mut self) -> Result<String, CodecError> {
        let raw = self.rest();
        String::from_utf8(raw.to_vec()).map_err(|_| self.malformed("text is not valid UTF-8"))
    }

    /// Fails if bytes are left over after the last field.
    pub(crate) fn finish(self) -> Result<(), CodecError> {
        if self.body.has_remaining() {
            return Err(self.malformed("trailing bytes after the last field"));
        }
        Ok(())
    }
}

/// Length of a string field on the wire.
pub(crate) fn string_len(s: &str) -> usize {
    2 + s.len()
}

/// Writes a string field. The caller has already checked that it fits in a `u16`.
pub(crate) fn put_string(dst: &mut BytesMut, s: &str) {
    let len = u16::try_from(s.len()).unwrap_or(u16::MAX);
    dst.put_u16(len);
    dst.put_slice(&s.as_bytes()[..usize::from(len)]);
}
