//! Feeds arbitrary bytes to both decoders (server side and client side), through `decode` and
//! `decode_eof`, all at once and in chunks, and checks what must hold for every input:
//!
//! - nothing panics and nothing reserves memory for a frame above the maximum;
//! - every decoded message re-encodes to exactly the bytes it was decoded from (the encoding is
//!   canonical, so a decoder that accepted something the encoder would write differently is a bug);
//! - feeding the same bytes in chunks gives the same messages and the same final outcome;
//! - at end of stream, leftover bytes are reported as `Truncated` with their exact count, and no
//!   leftover bytes is a clean end.
//!
//! Input layout: byte 0 picks the maximum frame size, byte 1 the chunk size, the rest is the
//! stream.

#![no_main]

use std::fmt::Debug;

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use protocol::{ClientCodec, CodecError, DEFAULT_MAX_FRAME_BYTES, HEADER_LEN, ServerCodec};
use tokio_util::codec::{Decoder, Encoder};

fuzz_target!(|data: &[u8]| {
    let [max_selector, chunk_selector, stream @ ..] = data else {
        return;
    };
    // Small maxima make the size limit reachable by short inputs; the default one is what ships.
    let max_frame = match max_selector {
        0..=127 => DEFAULT_MAX_FRAME_BYTES,
        small => usize::from(small - 127),
    };
    let chunk = usize::from(*chunk_selector % 16) + 1;

    // The server decodes client messages; a client codec re-encodes them.
    exercise(
        || ServerCodec::new(max_frame),
        ClientCodec::new(max_frame),
        max_frame,
        stream,
        chunk,
    );
    // The client decodes server messages; a server codec re-encodes them.
    exercise(
        || ClientCodec::new(max_frame),
        ServerCodec::new(max_frame),
        max_frame,
        stream,
        chunk,
    );
});

/// What decoding a whole stream produced: the messages, then how it ended.
struct Outcome<M> {
    messages: Vec<M>,
    /// `None` for a clean end of stream, else the error's display text.
    end: Option<String>,
}

fn exercise<M, D, E>(
    new_decoder: impl Fn() -> D,
    mut encoder: E,
    max_frame: usize,
    stream: &[u8],
    chunk: usize,
) where
    M: PartialEq + Debug,
    D: Decoder<Item = M, Error = CodecError>,
    E: for<'a> Encoder<&'a M, Error = CodecError>,
{
    let whole = decode_all(new_decoder(), &mut encoder, max_frame, stream);
    let chunked = decode_chunked(new_decoder(), max_frame, stream, chunk);
    assert_eq!(whole.messages, chunked.messages, "chunked decoding differs");
    assert_eq!(whole.end, chunked.end, "chunked decoding ends differently");
}

/// Decodes `stream` from one buffer, checking each message against the bytes it came from.
fn decode_all<M, D, E>(
    mut decoder: D,
    encoder: &mut E,
    max_frame: usize,
    stream: &[u8],
) -> Outcome<M>
where
    M: PartialEq + Debug,
    D: Decoder<Item = M, Error = CodecError>,
    E: for<'a> Encoder<&'a M, Error = CodecError>,
{
    let mut src = BytesMut::from(stream);
    let mut messages = Vec::new();
    let mut offset = 0;
    loop {
        let before = src.len();
        match decoder.decode(&mut src) {
            Ok(Some(message)) => {
                let consumed = before - src.len();
                let mut again = BytesMut::new();
                encoder
                    .encode(&message, &mut again)
                    .expect("a decoded message must encode");
                assert_eq!(
                    &again[..],
                    &stream[offset..offset + consumed],
                    "{message:?} re-encodes differently"
                );
                offset += consumed;
                messages.push(message);
            }
            Ok(None) => {
                assert_eq!(src.len(), before, "decode consumed bytes without a message");
                check_waiting(&src, max_frame);
                let end = decoder.decode_eof(&mut src);
                return Outcome {
                    messages,
                    end: check_eof(end, before),
                };
            }
            Err(error) => {
                check_error(&error, &src, before, max_frame);
                return Outcome {
                    messages,
                    end: Some(error.to_string()),
                };
            }
        }
    }
}

/// Decodes `stream` arriving `chunk` bytes at a time, as a socket would deliver it.
fn decode_chunked<M: Debug, D>(
    mut decoder: D,
    max_frame: usize,
    stream: &[u8],
    chunk: usize,
) -> Outcome<M>
where
    D: Decoder<Item = M, Error = CodecError>,
{
    let mut src = BytesMut::new();
    let mut messages = Vec::new();
    for piece in stream.chunks(chunk) {
        src.extend_from_slice(piece);
        loop {
            let before = src.len();
            match decoder.decode(&mut src) {
                Ok(Some(message)) => messages.push(message),
                Ok(None) => {
                    assert_eq!(src.len(), before, "decode consumed bytes without a message");
                    check_waiting(&src, max_frame);
                    break;
                }
                Err(error) => {
                    check_error(&error, &src, before, max_frame);
                    return Outcome {
                        messages,
                        end: Some(error.to_string()),
                    };
                }
            }
        }
    }
    let before = src.len();
    let end = decoder.decode_eof(&mut src);
    Outcome {
        messages,
        end: check_eof(end, before),
    }
}

/// The decoder is waiting for more bytes: either the prefix is incomplete, or it announced an
/// acceptable length and room for the whole frame was reserved.
fn check_waiting(src: &BytesMut, max_frame: usize) {
    if let Some(len) = announced(src) {
        assert!(
            len >= 1 && len <= max_frame,
            "waiting on a frame of {len} bytes"
        );
        assert!(
            src.len() < HEADER_LEN + len,
            "a whole frame was left undecoded"
        );
        assert!(
            src.capacity() >= HEADER_LEN + len,
            "room for the frame was not reserved"
        );
    }
}

fn check_error(error: &CodecError, src: &BytesMut, before: usize, max_frame: usize) {
    match error {
        CodecError::EmptyFrame => {
            assert_eq!(announced(src), Some(0));
            assert_eq!(src.len(), before, "an empty-frame error consumed bytes");
        }
        CodecError::FrameTooLarge { len, max } => {
            assert_eq!(*max, max_frame);
            assert_eq!(announced(src), Some(*len));
            assert!(*len > max_frame);
            assert_eq!(src.len(), before, "an oversized-frame error consumed bytes");
        }
        CodecError::UnknownKind(_)
        | CodecError::WrongDirection(_)
        | CodecError::Malformed { .. } => {
            assert!(src.len() < before, "a rejected frame was not consumed");
        }
        CodecError::Io(_) | CodecError::Truncated { .. } => {
            panic!("decode produced {error:?}");
        }
    }
}

/// At end of stream: nothing left is a clean end; anything left is `Truncated` with its count.
fn check_eof<M: Debug>(end: Result<Option<M>, CodecError>, left: usize) -> Option<String> {
    match end {
        Ok(None) => {
            assert_eq!(left, 0, "bytes left over at a clean end");
            None
        }
        Err(CodecError::Truncated { buffered }) => {
            assert_eq!(buffered, left);
            assert!(left > 0);
            Some(format!("truncated {buffered}"))
        }
        other => panic!("decode_eof after Ok(None) gave {other:?}"),
    }
}

/// The length prefix at the start of `src`, if it is all there.
fn announced(src: &BytesMut) -> Option<usize> {
    let prefix: [u8; HEADER_LEN] = src.get(..HEADER_LEN)?.try_into().ok()?;
    Some(u32::from_be_bytes(prefix) as usize)
}
