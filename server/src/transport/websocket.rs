//! The WebSocket transport, for players in browsers: the same sessions as over TCP, with one
//! protocol frame per binary WebSocket message (PROTOCOL.md, "WebSocket").
//!
//! The server speaks WebSocket's framing itself, sans-IO, over the connection it already has
//! (TCP, or TLS for `wss://`): [`upgrade`] reads the HTTP opening handshake (bounded in size,
//! parsed once) and answers it; [`WsDecoder`] turns the client's frames into the session's
//! [`Inbound`] items, and [`encode`] puts the server's messages in frames, straight into the
//! session's write buffer. No message is copied between layers, no buffer is held while the
//! session is idle (the read and write buffers are the session's own, given back when they
//! drain), and every frame the client sends is seen by the session:
//!
//! - a binary message is a protocol frame (its body, without the 4-byte length prefix); it may
//!   come in at most [`MAX_FRAGMENTS`] fragments, all within [`FRAGMENTED_MESSAGE_TIME`];
//! - pings (answered with a pong carrying the same payload), pongs and every fragment but a
//!   message's last count against the session's rate limit like protocol frames, and never
//!   restart its idle timer: only a whole protocol frame does;
//! - a frame is refused at its header, before its payload is read, when it announces more than
//!   the limit (the largest `Hello` before `Hello`, `server.max_frame_bytes` after) or, for a
//!   control frame, more than 125 bytes: `Bye{protocol_error}` and close code 1009. A text
//!   message (1003), an unmasked, fragmented-control, reserved-bit or unknown-opcode frame
//!   (1002) are refused the same way;
//! - a close frame ends the stream like a FIN: after the client's `Bye` the close is
//!   `client_quit`, without it `peer_eof`; the server answers it with its own close frame. A TCP
//!   end without a close frame is classified from the socket as over TCP;
//! - the server's lingering close is its `Bye`, its close frame and its FIN, then reading (and
//!   discarding, frame by frame, past any frame it refused) until the client's close frame or
//!   the end of the stream: the connection then ends with FIN, never with RST.
//!
//! The opening handshake must complete within `session.handshake_timeout` from the accept
//! (together with the `Hello` that follows); one that does not, or that is not a WebSocket
//! upgrade, ends the session as `handshake_timeout` or `protocol_error` as a TCP handshake that
//! fails does.

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use protocol::{ClientMessage, CodecError, Kind, ServerMessage, WireMessage};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use crate::transport::inbound::Inbound;

/// The longest opening handshake request read (request line and headers): a browser's, with
/// the cookies of the site it came from, fits; a larger one is refused with 431.
pub const MAX_UPGRADE_REQUEST: usize = 16 * 1024;
/// The most header lines in the opening handshake request.
pub const MAX_UPGRADE_HEADERS: usize = 64;
/// The most fragments one message may come in.
pub const MAX_FRAGMENTS: u32 = 64;
/// How long a fragmented message may take from its first fragment to its last.
pub const FRAGMENTED_MESSAGE_TIME: Duration = Duration::from_secs(10);
/// The longest control frame payload (RFC 6455, 5.5).
pub const MAX_CONTROL: u64 = 125;
/// What a WebSocket session holds beyond a TCP one: its decoder (boxed, a few dozen bytes)
/// while it holds no fragmented message.
pub const OVERHEAD: usize = 128;

const CONTINUATION: u8 = 0x0;
const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

/// Close codes the server sends (RFC 6455, 7.4.1).
pub mod close_code {
    /// The session ended; the `Bye` before the close frame says why.
    pub const NORMAL: u16 = 1000;
    /// A malformed or forbidden WebSocket frame.
    pub const PROTOCOL: u16 = 1002;
    /// A text message: this protocol's frames travel in binary messages.
    pub const UNSUPPORTED: u16 = 1003;
    /// A message or control frame over its limit.
    pub const TOO_BIG: u16 = 1009;
}

/// Why the client's WebSocket frames were refused. Every one is a `protocol_error`; the close
/// frame's code says which kind ([`WsError::close_code`]).
#[derive(Debug, thiserror::Error)]
pub enum WsError {
    /// A data message (its fragments added up) announced over the limit.
    #[error(
        "a WebSocket message of {announced} bytes where at most {limit} may come{}",
        if *before_hello { " before Hello" } else { "" }
    )]
    TooBig {
        /// What the frames so far announced.
        announced: u64,
        /// The limit.
        limit: usize,
        /// The limit was the largest `Hello`'s.
        before_hello: bool,
    },
    /// A control frame over 125 bytes.
    #[error("a WebSocket control frame of {0} bytes (at most 125)")]
    ControlTooBig(u64),
    /// A text message.
    #[error("a text message: this protocol's frames travel in binary messages")]
    Text,
    /// A frame without the mask every client frame carries.
    #[error("an unmasked WebSocket frame: a client masks every frame")]
    Unmasked,
    /// Reserved bits set while no extension was negotiated.
    #[error("WebSocket reserved bits set (no extension was negotiated)")]
    Reserved,
    /// An opcode WebSocket does not define.
    #[error("unknown WebSocket opcode {0:#x}")]
    Opcode(u8),
    /// A close, ping or pong frame without FIN.
    #[error("a fragmented WebSocket control frame")]
    FragmentedControl,
    /// A continuation frame with no message to continue.
    #[error("a WebSocket continuation frame with no message to continue")]
    StrayContinuation,
    /// A new message before the previous one's last fragment.
    #[error("a new WebSocket message before the last fragment of the previous one")]
    Interleaved,
    /// Too many fragments for one message.
    #[error("a WebSocket message in more than {MAX_FRAGMENTS} fragments")]
    TooManyFragments,
    /// A message whose fragments did not all arrive in time.
    #[error(
        "a fragmented WebSocket message not complete within {}s of its first fragment",
        FRAGMENTED_MESSAGE_TIME.as_secs()
    )]
    SlowFragments,
    /// A close frame with a one-byte body, or a reason that is not UTF-8.
    #[error("a malformed WebSocket close frame")]
    BadClose,
    /// The message's body is not a frame of this protocol.
    #[error("{0}")]
    Protocol(CodecError),
}

impl WsError {
    /// The code of the close frame that follows the `Bye{protocol_error}`.
    pub fn close_code(&self) -> u16 {
        match self {
            WsError::TooBig { .. } | WsError::ControlTooBig(_) => close_code::TOO_BIG,
            WsError::Text => close_code::UNSUPPORTED,
            WsError::Protocol(_) => close_code::NORMAL,
            _ => close_code::PROTOCOL,
        }
    }
}

/// A frame header: FIN, the reserved bits, the opcode, the mask and the payload length, and
/// how many bytes the header took.
#[derive(Debug, Clone, Copy)]
struct Header {
    fin: bool,
    rsv: u8,
    opcode: u8,
    mask: Option<[u8; 4]>,
    len: u64,
    size: usize,
}

/// Reads a frame header from the start of `src`, if it is all there. Consumes nothing.
fn header(src: &[u8]) -> Option<Header> {
    let (&first, rest) = src.split_first()?;
    let &second = rest.first()?;
    let (len, mut at) = match second & 0x7F {
        126 => (
            u64::from(u16::from_be_bytes(src.get(2..4)?.try_into().ok()?)),
            4,
        ),
        127 => (u64::from_be_bytes(src.get(2..10)?.try_into().ok()?), 10),
        short => (u64::from(short), 2),
    };
    let mask = if second & 0x80 != 0 {
        let key: [u8; 4] = src.get(at..at + 4)?.try_into().ok()?;
        at += 4;
        Some(key)
    } else {
        None
    };
    Some(Header {
        fin: first & 0x80 != 0,
        rsv: first & 0x70,
        opcode: first & 0x0F,
        mask,
        len,
        size: at,
    })
}

/// XORs `payload` with the frame's masking key, eight bytes at a time where it can.
fn unmask(payload: &mut [u8], key: [u8; 4]) {
    let wide = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut chunks = payload.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_ne_bytes(word) ^ wide;
        chunk.copy_from_slice(&word.to_ne_bytes());
    }
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= key[i % 4];
    }
}

/// A message whose first fragments arrived.
#[derive(Debug)]
struct Partial {
    body: BytesMut,
    fragments: u32,
    /// When its first fragment was handed on (see [`WsDecoder::check_assembly`]).
    started: Option<Instant>,
}

/// The client's frames as the session's [`Inbound`] items.
#[derive(Debug)]
pub struct WsDecoder {
    max_message: usize,
    before_hello: bool,
    /// Boxed: a message arrives in fragments rarely, and a decoder without one is three words,
    /// small enough for the session's task to hold inline.
    partial: Option<Box<Partial>>,
    closed: bool,
}

impl WsDecoder {
    /// A decoder of messages of at most `max_message` bytes, the largest `Hello` (`true`: the
    /// session waits for its `Hello`) until [`WsDecoder::set_max_message`].
    pub fn new(max_message: usize, before_hello: bool) -> WsDecoder {
        WsDecoder {
            max_message,
            before_hello,
            partial: None,
            closed: false,
        }
    }

    /// The limit on a message from now on (the full limit, once `Hello` is accepted).
    pub fn set_max_message(&mut self, max_message: usize) {
        self.max_message = max_message;
        self.before_hello = false;
    }

    /// True once the client's close frame was read.
    pub fn closed(&self) -> bool {
        self.closed
    }

    /// Starts the clock of a fragmented message at its first fragment, and refuses one whose
    /// fragments take longer than [`FRAGMENTED_MESSAGE_TIME`].
    pub fn check_assembly(&mut self, now: Instant) -> Result<(), WsError> {
        let Some(partial) = &mut self.partial else {
            return Ok(());
        };
        let started = *partial.started.get_or_insert(now);
        if now.saturating_duration_since(started) > FRAGMENTED_MESSAGE_TIME {
            return Err(WsError::SlowFragments);
        }
        Ok(())
    }

    /// True when `src` holds a whole frame.
    pub fn frame_buffered(src: &[u8]) -> bool {
        header(src).is_some_and(|h| (src.len() - h.size) as u64 >= h.len)
    }

    /// The next item from `src`, or `None` until more bytes arrive. A refused frame is refused
    /// from its header; the bytes from that header on are left in `src` (the lingering close
    /// reads past them to the client's close frame).
    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Inbound>, WsError> {
        if self.closed {
            return Ok(None);
        }
        let Some(h) = header(src) else {
            return Ok(None);
        };
        if h.rsv != 0 {
            return Err(WsError::Reserved);
        }
        let Some(mask) = h.mask else {
            return Err(WsError::Unmasked);
        };
        match h.opcode {
            BINARY | CONTINUATION => {
                let (already, fragments) = match (&self.partial, h.opcode) {
                    (None, CONTINUATION) => return Err(WsError::StrayContinuation),
                    (Some(_), BINARY) => return Err(WsError::Interleaved),
                    (Some(p), _) => (p.body.len() as u64, p.fragments),
                    (None, _) => (0, 0),
                };
                let announced = already.saturating_add(h.len);
                if announced > self.max_message as u64 {
                    return Err(WsError::TooBig {
                        announced,
                        limit: self.max_message,
                        before_hello: self.before_hello,
                    });
                }
                if fragments + 1 > MAX_FRAGMENTS {
                    return Err(WsError::TooManyFragments);
                }
            }
            TEXT => return Err(WsError::Text),
            CLOSE | PING | PONG => {
                if h.len > MAX_CONTROL {
                    return Err(WsError::ControlTooBig(h.len));
                }
                if !h.fin {
                    return Err(WsError::FragmentedControl);
                }
            }
            other => return Err(WsError::Opcode(other)),
        }
        // The length is within a limit checked above: reserving it is bounded.
        let len = h.len as usize;
        if src.len() < h.size + len {
            src.reserve(h.size + len - src.len());
            return Ok(None);
        }
        src.advance(h.size);
        let mut payload = src.split_to(len);
        unmask(&mut payload, mask);
        match h.opcode {
            BINARY if h.fin => parse(payload.freeze()).map(Some),
            BINARY => {
                self.partial = Some(Box::new(Partial {
                    body: payload,
                    fragments: 1,
                    started: None,
                }));
                Ok(Some(Inbound::Fragment))
            }
            CONTINUATION => {
                let Some(partial) = &mut self.partial else {
                    return Err(WsError::StrayContinuation);
                };
                partial.body.extend_from_slice(&payload);
                partial.fragments += 1;
                if !h.fin {
                    return Ok(Some(Inbound::Fragment));
                }
                let whole = std::mem::take(&mut partial.body);
                self.partial = None;
                parse(whole.freeze()).map(Some)
            }
            PING => Ok(Some(Inbound::Ping(payload.freeze()))),
            PONG => Ok(Some(Inbound::Pong)),
            _ => {
                let code = close_payload(&payload)?;
                self.closed = true;
                self.partial = None;
                Ok(Some(Inbound::Closed(code)))
            }
        }
    }
}

/// A binary message's body as a client message.
fn parse(mut body: Bytes) -> Result<Inbound, WsError> {
    if body.is_empty() {
        return Err(WsError::Protocol(CodecError::EmptyFrame));
    }
    let byte = body.get_u8();
    let kind = Kind::from_u8(byte).ok_or(WsError::Protocol(CodecError::UnknownKind(byte)))?;
    ClientMessage::parse(kind, body)
        .map(Inbound::Message)
        .map_err(WsError::Protocol)
}

/// A close frame's code (none when its body is empty), checking its reason is UTF-8.
fn close_payload(payload: &[u8]) -> Result<Option<u16>, WsError> {
    match payload {
        [] => Ok(None),
        [_] => Err(WsError::BadClose),
        [a, b, reason @ ..] => {
            std::str::from_utf8(reason).map_err(|_| WsError::BadClose)?;
            Ok(Some(u16::from_be_bytes([*a, *b])))
        }
    }
}

/// Writes a server frame's header (FIN set, no mask) for a payload of `len` bytes.
fn put_header(dst: &mut BytesMut, opcode: u8, len: usize) {
    dst.put_u8(0x80 | opcode);
    match len {
        0..=125 => dst.put_u8(len as u8),
        126..=0xFFFF => {
            dst.put_u8(126);
            dst.put_u16(len as u16);
        }
        _ => {
            dst.put_u8(127);
            dst.put_u64(len as u64);
        }
    }
}

/// The bytes a server frame's header takes for a payload of `len` bytes.
pub fn header_len(len: usize) -> usize {
    match len {
        0..=125 => 2,
        126..=0xFFFF => 4,
        _ => 10,
    }
}

/// Puts `message` in a binary message at the end of `dst`, its body at most `max_frame` bytes.
pub fn encode(
    message: &ServerMessage,
    max_frame: usize,
    dst: &mut BytesMut,
) -> Result<(), CodecError> {
    let len = 1 + message.fields_len();
    if len > max_frame {
        return Err(CodecError::FrameTooLarge {
            len,
            max: max_frame,
        });
    }
    let start = dst.len();
    dst.reserve(header_len(len) + len);
    put_header(dst, BINARY, len);
    dst.put_u8(message.kind() as u8);
    if let Err(error) = message.put_fields(dst) {
        dst.truncate(start);
        return Err(error);
    }
    Ok(())
}

/// The answer to a ping: a pong with its payload.
pub fn encode_pong(payload: &[u8], dst: &mut BytesMut) {
    put_header(dst, PONG, payload.len());
    dst.put_slice(payload);
}

/// A close frame with `code`.
pub fn encode_close(code: u16, dst: &mut BytesMut) {
    put_header(dst, CLOSE, 2);
    dst.put_u16(code);
}

/// Follows the client's frames through the bytes a lingering close reads and discards, and
/// says when its close frame has passed: the connection can then end with FIN. Refused frames
/// are skipped by their announced length like any other.
#[derive(Debug, Default)]
pub struct CloseScan {
    header: [u8; 14],
    have: usize,
    /// Payload bytes of the current frame still to pass, and whether it is a close frame.
    payload: Option<(u64, bool)>,
}

impl CloseScan {
    /// Follows `bytes`; true once a whole close frame has passed.
    pub fn feed(&mut self, mut bytes: &[u8]) -> bool {
        while !bytes.is_empty() {
            if let Some((left, close)) = &mut self.payload {
                let take = (*left).min(bytes.len() as u64);
                *left -= take;
                bytes = &bytes[take as usize..];
                if *left > 0 {
                    return false;
                }
                if *close {
                    return true;
                }
                self.payload = None;
                continue;
            }
            let take = (self.header.len() - self.have).min(bytes.len());
            self.header[self.have..self.have + take].copy_from_slice(&bytes[..take]);
            self.have += take;
            let Some(h) = header(&self.header[..self.have]) else {
                bytes = &bytes[take..];
                continue;
            };
            // Only the header's own bytes are consumed; the rest of what was copied is payload.
            let used = h.size - (self.have - take);
            bytes = &bytes[used..];
            self.have = 0;
            let close = h.opcode == CLOSE;
            if h.len == 0 && close {
                return true;
            }
            self.payload = Some((h.len, close));
            if h.len == 0 {
                self.payload = None;
            }
        }
        false
    }
}

/// Why an opening handshake was refused.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    /// The request is not a WebSocket opening handshake.
    #[error("not a WebSocket upgrade: {0}")]
    NotUpgrade(String),
    /// The request asks for another WebSocket version than 13.
    #[error("WebSocket version {0:?} asked for; this server speaks 13")]
    Version(String),
    /// The request line and headers are longer than [`MAX_UPGRADE_REQUEST`].
    #[error("an upgrade request over {MAX_UPGRADE_REQUEST} bytes")]
    TooLarge,
    /// The connection ended or failed during the request.
    #[error("the connection ended during the upgrade: {0}")]
    Io(#[from] std::io::Error),
}

impl UpgradeError {
    /// The HTTP answer that says why, or `None` when nobody is left to tell.
    fn answer(&self) -> Option<String> {
        let (status, extra) = match self {
            UpgradeError::NotUpgrade(_) => ("400 Bad Request", ""),
            UpgradeError::Version(_) => ("426 Upgrade Required", "Sec-WebSocket-Version: 13\r\n"),
            UpgradeError::TooLarge => ("431 Request Header Fields Too Large", ""),
            UpgradeError::Io(_) => return None,
        };
        let body = format!("{self}\n");
        Some(format!(
            "HTTP/1.1 {status}\r\n{extra}Content-Type: text/plain; charset=utf-8\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ))
    }
}

/// Reads the opening handshake from `io` into `buf` and answers it. On success `buf` holds
/// whatever the client sent after the request (its first frames, when it did not wait). On a
/// refusal the HTTP answer saying why has been written (best effort). The caller bounds the
/// time.
///
/// The request is parsed once, when its blank line has arrived: bytes are scanned as they come,
/// not parsed again and again as the buffer grows.
pub async fn upgrade<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut S,
    buf: &mut BytesMut,
) -> Result<(), UpgradeError> {
    let result = read_and_answer(io, buf).await;
    if let Err(error) = &result
        && let Some(answer) = error.answer()
    {
        let _ = io.write_all(answer.as_bytes()).await;
        let _ = io.flush().await;
    }
    result
}

async fn read_and_answer<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut S,
    buf: &mut BytesMut,
) -> Result<(), UpgradeError> {
    let mut scanned = 0;
    let end = loop {
        // Empty lines before the request line are skipped (RFC 9112, 2.2).
        while buf.first().is_some_and(|b| *b == b'\r' || *b == b'\n') {
            buf.advance(1);
            scanned = 0;
        }
        if let Some(end) = blank_line(buf, scanned) {
            break end;
        }
        scanned = buf.len();
        if buf.len() >= MAX_UPGRADE_REQUEST {
            return Err(UpgradeError::TooLarge);
        }
        buf.reserve((MAX_UPGRADE_REQUEST - buf.len()).min(4096));
        let room = MAX_UPGRADE_REQUEST - buf.len();
        let read = (&mut *io).take(room as u64).read_buf(buf).await?;
        if read == 0 {
            return Err(UpgradeError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
    };
    let answer = {
        let mut headers = [httparse::EMPTY_HEADER; MAX_UPGRADE_HEADERS];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&buf[..end]) {
            Ok(httparse::Status::Complete(_)) => {}
            Ok(httparse::Status::Partial) => {
                return Err(UpgradeError::NotUpgrade(
                    "an incomplete HTTP request".into(),
                ));
            }
            Err(httparse::Error::TooManyHeaders) => return Err(UpgradeError::TooLarge),
            Err(error) => return Err(UpgradeError::NotUpgrade(format!("bad HTTP: {error}"))),
        }
        accept_answer(&request)?
    };
    buf.advance(end);
    io.write_all(answer.as_bytes()).await?;
    io.flush().await?;
    Ok(())
}

/// Where the request's headers end (just past their blank line), looking from `from` on (less
/// the few bytes a line end may straddle).
fn blank_line(buf: &[u8], from: usize) -> Option<usize> {
    let start = from.saturating_sub(3);
    let tail = buf.get(start..)?;
    tail.windows(2)
        .enumerate()
        .find_map(|(i, pair)| match pair {
            [b'\n', b'\n'] => Some(start + i + 2),
            [b'\n', b'\r'] if tail.get(i + 2) == Some(&b'\n') => Some(start + i + 3),
            _ => None,
        })
}

/// The 101 answer to a valid opening handshake, or why it is not one.
fn accept_answer(request: &httparse::Request<'_, '_>) -> Result<String, UpgradeError> {
    let not = |why: &str| UpgradeError::NotUpgrade(why.to_owned());
    if request.method != Some("GET") {
        return Err(not("the method must be GET"));
    }
    if request.version != Some(1) {
        return Err(not("the request must be HTTP/1.1"));
    }
    let header = |name: &str| {
        request
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| std::str::from_utf8(h.value).ok())
    };
    let has_token = |name: &str, token: &str| {
        request
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .filter_map(|h| std::str::from_utf8(h.value).ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    if !has_token("upgrade", "websocket") {
        return Err(not("no \"Upgrade: websocket\" header"));
    }
    if !has_token("connection", "upgrade") {
        return Err(not("no \"Connection: Upgrade\" header"));
    }
    match header("sec-websocket-version") {
        Some(v) if v.trim() == "13" => {}
        Some(v) => return Err(UpgradeError::Version(v.trim().to_owned())),
        None => return Err(UpgradeError::Version(String::new())),
    }
    let key = header("sec-websocket-key")
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= 64)
        .ok_or_else(|| not("no usable Sec-WebSocket-Key header"))?;
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    Ok(format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n\r\n"
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use protocol::Hello;

    /// A client frame: masked, with `fin` and `opcode`.
    fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = header_only(fin, opcode, payload.len() as u64);
        let key = [0x11, 0x22, 0x33, 0x44];
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        out
    }

    fn header_only(fin: bool, opcode: u8, len: u64) -> Vec<u8> {
        let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
        match len {
            0..=125 => out.push(0x80 | len as u8),
            126..=0xFFFF => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                out.push(0x80 | 127);
                out.extend_from_slice(&len.to_be_bytes());
            }
        }
        out.extend_from_slice(&[0x11, 0x22, 0x33, 0x44]);
        out
    }

    fn body(message: &ClientMessage) -> Vec<u8> {
        let mut out = BytesMut::new();
        out.put_u8(message.kind() as u8);
        message.put_fields(&mut out).unwrap();
        out.to_vec()
    }

    fn hello() -> ClientMessage {
        ClientMessage::Hello(Box::new(Hello::new("p", "r")))
    }

    /// Feeds `wire` in pieces of `step` and collects what comes out, up to the first error.
    fn decode_all(
        decoder: &mut WsDecoder,
        wire: &[u8],
        step: usize,
    ) -> (Vec<Inbound>, Option<WsError>) {
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for piece in wire.chunks(step) {
            buf.extend_from_slice(piece);
            loop {
                match decoder.decode(&mut buf) {
                    Ok(Some(item)) => out.push(item),
                    Ok(None) => break,
                    Err(error) => return (out, Some(error)),
                }
            }
        }
        (out, None)
    }

    /// Every WebSocket session holds its decoder inline in its task: three words, the
    /// fragment being assembled boxed apart (a box of the decoder's own took 80 bytes of
    /// jemalloc's per held session).
    #[test]
    fn the_decoder_is_three_words() {
        assert!(std::mem::size_of::<WsDecoder>() <= 3 * std::mem::size_of::<usize>());
    }

    #[test]
    fn messages_fragments_and_control_frames_come_out_whatever_the_reads() {
        let ping = ClientMessage::Ping { nonce: 9 };
        let b = body(&ping);
        let mut wire = frame(true, BINARY, &body(&hello()));
        wire.extend(frame(true, PING, b"hi"));
        wire.extend(frame(false, BINARY, &b[..3]));
        wire.extend(frame(true, PONG, b""));
        wire.extend(frame(false, CONTINUATION, &b[3..5]));
        wire.extend(frame(true, CONTINUATION, &b[5..]));
        wire.extend(frame(true, CLOSE, &[0x03, 0xE8, b'o', b'k']));
        for step in [1, 2, 3, 7, 64, wire.len()] {
            let mut decoder = WsDecoder::new(675, true);
            let (items, error) = decode_all(&mut decoder, &wire, step);
            assert!(error.is_none(), "step {step}: {error:?}");
            let kinds: Vec<String> = items.iter().map(|i| format!("{i:?}")).collect();
            assert_eq!(items.len(), 7, "step {step}: {kinds:?}");
            assert!(matches!(
                &items[0],
                Inbound::Message(ClientMessage::Hello(_))
            ));
            assert!(matches!(&items[1], Inbound::Ping(p) if &p[..] == b"hi"));
            assert!(matches!(items[2], Inbound::Fragment));
            assert!(matches!(items[3], Inbound::Pong));
            assert!(matches!(items[4], Inbound::Fragment));
            assert!(matches!(&items[5], Inbound::Message(m) if *m == ping));
            assert!(matches!(items[6], Inbound::Closed(Some(1000))));
            assert!(decoder.closed());
        }
    }

    #[test]
    fn frames_over_their_limit_are_refused_at_their_header() {
        // Before Hello: a message announcing 676 bytes, only its header sent.
        let mut decoder = WsDecoder::new(675, true);
        let (_, error) = decode_all(&mut decoder, &header_only(true, BINARY, 676), 3);
        assert!(matches!(
            error,
            Some(WsError::TooBig {
                announced: 676,
                before_hello: true,
                ..
            })
        ));
        // A 64-bit length.
        let mut decoder = WsDecoder::new(675, true);
        let (_, error) = decode_all(&mut decoder, &header_only(true, BINARY, 1 << 62), 20);
        assert_eq!(error.map(|e| e.close_code()), Some(close_code::TOO_BIG));
        // Fragments adding up past the limit, at the header of the one that crosses it.
        let mut decoder = WsDecoder::new(65_536, false);
        let mut wire = frame(false, BINARY, &[5u8; 40_000]);
        wire.extend(header_only(true, CONTINUATION, 30_000));
        let (items, error) = decode_all(&mut decoder, &wire, 4096);
        assert_eq!(items.len(), 1);
        assert!(matches!(
            error,
            Some(WsError::TooBig {
                announced: 70_000,
                ..
            })
        ));
        // A control frame over 125 bytes, at any time.
        let mut decoder = WsDecoder::new(65_536, false);
        let (_, error) = decode_all(&mut decoder, &header_only(true, PING, 126), 4);
        assert!(matches!(error, Some(WsError::ControlTooBig(126))));
    }

    #[test]
    fn every_forbidden_frame_is_refused_with_its_code() {
        let cases: Vec<(Vec<u8>, u16)> = vec![
            (frame(true, TEXT, b"{}"), close_code::UNSUPPORTED),
            (vec![0x82, 0x01, 0x07], close_code::PROTOCOL),
            (frame(true, BINARY | 0x40, b"x"), close_code::PROTOCOL),
            (frame(true, 0x3, b""), close_code::PROTOCOL),
            (frame(false, PING, b""), close_code::PROTOCOL),
            (frame(true, CONTINUATION, b"x"), close_code::PROTOCOL),
            (
                [frame(false, BINARY, b"a"), frame(true, BINARY, b"b")].concat(),
                close_code::PROTOCOL,
            ),
            (frame(true, CLOSE, &[3]), close_code::PROTOCOL),
            (frame(true, CLOSE, &[3, 232, 0xFF]), close_code::PROTOCOL),
            (frame(true, BINARY, &[0xEE]), close_code::NORMAL),
            (frame(true, BINARY, &[]), close_code::NORMAL),
        ];
        for (wire, code) in cases {
            let mut decoder = WsDecoder::new(65_536, false);
            let (_, error) = decode_all(&mut decoder, &wire, wire.len());
            let error = error.unwrap_or_else(|| panic!("accepted {wire:?}"));
            assert_eq!(error.close_code(), code, "{wire:?}: {error}");
        }
    }

    #[test]
    fn a_message_may_have_a_bounded_number_of_fragments_taking_bounded_time() {
        let mut wire = Vec::new();
        for _ in 0..MAX_FRAGMENTS - 1 {
            wire.extend(frame(
                false,
                if wire.is_empty() {
                    BINARY
                } else {
                    CONTINUATION
                },
                b"",
            ));
        }
        let mut ok = wire.clone();
        ok.extend(frame(
            true,
            CONTINUATION,
            &body(&ClientMessage::Ack { seq: 1 }),
        ));
        let mut decoder = WsDecoder::new(65_536, false);
        let (items, error) = decode_all(&mut decoder, &ok, ok.len());
        assert!(error.is_none(), "{error:?}");
        assert!(matches!(items.last(), Some(Inbound::Message(_))));
        let mut over = wire;
        over.extend(frame(false, CONTINUATION, b""));
        over.extend(frame(true, CONTINUATION, b""));
        let mut decoder = WsDecoder::new(65_536, false);
        let (_, error) = decode_all(&mut decoder, &over, over.len());
        assert!(matches!(error, Some(WsError::TooManyFragments)));
        // Time: the clock starts at the first fragment handed on.
        let mut decoder = WsDecoder::new(65_536, false);
        let mut buf = BytesMut::from(&frame(false, BINARY, b"a")[..]);
        assert!(matches!(
            decoder.decode(&mut buf),
            Ok(Some(Inbound::Fragment))
        ));
        let start = Instant::now();
        decoder.check_assembly(start).unwrap();
        decoder
            .check_assembly(start + FRAGMENTED_MESSAGE_TIME)
            .unwrap();
        assert!(matches!(
            decoder.check_assembly(start + FRAGMENTED_MESSAGE_TIME + Duration::from_millis(1)),
            Err(WsError::SlowFragments)
        ));
    }

    #[test]
    fn server_frames_have_the_shortest_header_and_no_mask() {
        let mut out = BytesMut::new();
        encode(&ServerMessage::Pong { nonce: 1 }, 65_536, &mut out).unwrap();
        assert_eq!(&out[..3], &[0x82, 9, 0x04]);
        let mut out = BytesMut::new();
        let big = ServerMessage::Event {
            seq: 1,
            payload: Bytes::from(vec![0u8; 300]),
        };
        encode(&big, 65_536, &mut out).unwrap();
        assert_eq!(&out[..4], &[0x82, 126, 0x01, 0x35]);
        assert_eq!(out.len(), 4 + 309);
        assert!(encode(&big, 100, &mut BytesMut::new()).is_err());
        let mut out = BytesMut::new();
        encode_close(1009, &mut out);
        assert_eq!(&out[..], &[0x88, 2, 0x03, 0xF1]);
    }

    #[test]
    fn the_close_scan_skips_refused_and_other_frames_to_the_close_frame() {
        let mut wire = header_only(true, BINARY, 676);
        wire.extend(vec![0u8; 676]);
        wire.extend(frame(true, PING, &[1; 125]));
        wire.extend(frame(true, CLOSE, &[3, 232]));
        for step in [1, 5, 100, wire.len()] {
            let mut scan = CloseScan::default();
            let seen: Vec<bool> = wire.chunks(step).map(|p| scan.feed(p)).collect();
            assert_eq!(seen.last(), Some(&true), "step {step}");
            assert_eq!(seen.iter().filter(|s| **s).count(), 1, "step {step}");
        }
        let mut scan = CloseScan::default();
        assert!(!scan.feed(&frame(true, BINARY, b"not a close")));
        assert!(scan.feed(&frame(true, CLOSE, b"")));
    }

    #[tokio::test]
    async fn an_upgrade_is_answered_and_the_frames_behind_it_kept() {
        let request = "GET /play HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
                       Connection: keep-alive, Upgrade\r\nSec-WebSocket-Version: 13\r\n\
                       Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
        let (mut client, mut server) = tokio::io::duplex(64 * 1024);
        let mut sent = request.as_bytes().to_vec();
        sent.extend(frame(true, BINARY, &body(&hello())));
        client.write_all(&sent).await.unwrap();
        let mut buf = BytesMut::new();
        upgrade(&mut server, &mut buf).await.unwrap();
        let mut answer = vec![0u8; 129];
        client.read_exact(&mut answer).await.unwrap();
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 101"), "{answer}");
        // RFC 6455's own example key.
        assert!(answer.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{answer}");
        let mut decoder = WsDecoder::new(675, true);
        assert!(matches!(
            decoder.decode(&mut buf),
            Ok(Some(Inbound::Message(ClientMessage::Hello(_))))
        ));
    }

    #[tokio::test]
    async fn a_bad_upgrade_gets_an_http_answer_saying_why() {
        let cases = [
            ("GET / HTTP/1.1\r\nHost: x\r\n\r\n", "400"),
            (
                "GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Version: 8\r\nSec-WebSocket-Key: a\r\n\r\n",
                "426",
            ),
            ("POST / HTTP/1.1\n\n", "400"),
        ];
        for (request, status) in cases {
            let (mut client, mut server) = tokio::io::duplex(64 * 1024);
            client.write_all(request.as_bytes()).await.unwrap();
            assert!(upgrade(&mut server, &mut BytesMut::new()).await.is_err());
            drop(server);
            let mut answer = String::new();
            client.read_to_string(&mut answer).await.unwrap();
            assert!(
                answer.starts_with(&format!("HTTP/1.1 {status}")),
                "{answer}"
            );
        }
        // Headers that never end, however they dribble in, stop at the cap.
        let (mut client, mut server) = tokio::io::duplex(1 << 20);
        let mut long = b"GET / HTTP/1.1\r\n".to_vec();
        while long.len() < MAX_UPGRADE_REQUEST + 100 {
            long.extend_from_slice(b"X-Filler: 0123456789abcdef0123456789abcdef\r\n");
        }
        client.write_all(&long).await.unwrap();
        assert!(matches!(
            upgrade(&mut server, &mut BytesMut::new()).await,
            Err(UpgradeError::TooLarge)
        ));
    }
}
