//! A cap on the first message a WebSocket peer sends, enforced on the bytes as they arrive.
//!
//! The WebSocket layer buffers a message whole before it hands it on, up to the limit it was
//! configured with, and that limit cannot change once the connection is open. A server wants a
//! small limit before it knows who is speaking (the first message must be a `Hello`) and the
//! full one after. [`FirstMessageCap`] sits between the socket and the WebSocket layer, reads
//! the frame headers as they pass (the HTTP upgrade first, then each frame's header), and fails
//! the read with [`OverLimit`] as soon as a header announces more for the first data message
//! than the cap allows, or a control frame longer than WebSocket permits (125 bytes): before the
//! payload arrives, let alone is buffered. Once the first data message has passed, bytes flow
//! through unread. After a failure the stream stays failed.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A message or control frame announced over its limit, as the error inside the `InvalidData`
/// I/O error a capped read fails with. [`crate::WsStream`] closes with 1009 (message too big)
/// for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "{announced} bytes announced where at most {cap} may come before it is known who is speaking"
)]
pub struct OverLimit {
    /// What the frames so far announced for the message.
    pub announced: u64,
    /// The cap.
    pub cap: u64,
}

/// The longest frame header: 2 bytes, a 64-bit length, the mask key.
const HEADER_MAX: usize = 14;
/// The longest control frame (close, ping, pong) WebSocket allows (RFC 6455, 5.5).
const CONTROL_MAX: u64 = 125;

/// Where in the byte stream the cap is.
#[derive(Debug)]
enum State {
    /// In the HTTP upgrade request: `line` bytes of the current line seen (carriage returns
    /// aside), `started` once the request line began. The request ends at an empty line, CRLF or
    /// a bare LF, as the HTTP parser underneath reads it; empty lines before the request line
    /// are skipped, as it skips them.
    Upgrade { line: usize, started: bool },
    /// In a frame header: `have` of its bytes in `header`.
    Header {
        header: [u8; HEADER_MAX],
        have: usize,
    },
    /// In a frame's payload: `left` bytes to go; `ends_message` when the frame ends the first
    /// data message.
    Payload { left: u64, ends_message: bool },
    /// The first data message passed: nothing more to look at.
    Open,
}

/// A socket whose peer's first WebSocket data message may announce at most `cap` bytes (the
/// server's side: client frames, masked).
#[derive(Debug)]
pub struct FirstMessageCap<S> {
    inner: S,
    cap: u64,
    state: State,
    /// Bytes the first data message's frames announced so far (fragments add up).
    announced: u64,
}

impl<S> FirstMessageCap<S> {
    /// Caps the first data message read from `inner` (starting with the HTTP upgrade request)
    /// at `cap` bytes.
    pub fn new(inner: S, cap: usize) -> FirstMessageCap<S> {
        FirstMessageCap {
            inner,
            cap: cap as u64,
            state: State::Upgrade {
                line: 0,
                started: false,
            },
            announced: 0,
        }
    }

    /// The socket underneath.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// True once the first data message has passed.
    pub fn is_open(&self) -> bool {
        matches!(self.state, State::Open)
    }

    /// Follows `bytes`, the next ones read from the peer.
    fn scan(&mut self, mut bytes: &[u8]) -> Result<(), OverLimit> {
        while !bytes.is_empty() {
            match &mut self.state {
                State::Open => return Ok(()),
                State::Upgrade { line, started } => {
                    let byte = bytes[0];
                    bytes = &bytes[1..];
                    match byte {
                        b'\n' if *line == 0 && *started => {
                            self.state = State::Header {
                                header: [0; HEADER_MAX],
                                have: 0,
                            };
                        }
                        b'\n' => *line = 0,
                        b'\r' => {}
                        _ => {
                            *line += 1;
                            *started = true;
                        }
                    }
                }
                State::Header { header, have } => {
                    let take = (header_len(&header[..*have]) - *have).min(bytes.len());
                    header[*have..*have + take].copy_from_slice(&bytes[..take]);
                    *have += take;
                    bytes = &bytes[take..];
                    if header_len(&header[..*have]) > *have {
                        continue;
                    }
                    let (fin, opcode, len) = parse(&header[..*have]);
                    let data = opcode < 0x8;
                    if !data && len > CONTROL_MAX {
                        return Err(OverLimit {
                            announced: len,
                            cap: CONTROL_MAX,
                        });
                    }
                    if data {
                        self.announced = self.announced.saturating_add(len);
                        if self.announced > self.cap {
                            return Err(OverLimit {
                                announced: self.announced,
                                cap: self.cap,
                            });
                        }
                    }
                    self.state = State::Payload {
                        left: len,
                        ends_message: data && fin,
                    };
                    self.finish_payload();
                }
                State::Payload { left, .. } => {
                    let take = (*left).min(bytes.len() as u64);
                    *left -= take;
                    bytes = &bytes[take as usize..];
                    self.finish_payload();
                }
            }
        }
        Ok(())
    }

    /// After a payload's last byte: the next frame's header, or nothing more to look at.
    fn finish_payload(&mut self) {
        if let State::Payload {
            left: 0,
            ends_message,
        } = self.state
        {
            self.state = if ends_message {
                State::Open
            } else {
                State::Header {
                    header: [0; HEADER_MAX],
                    have: 0,
                }
            };
        }
    }
}

/// How long the frame header starting with `seen` is (2 until its second byte is known).
fn header_len(seen: &[u8]) -> usize {
    let Some(&second) = seen.get(1) else {
        return 2;
    };
    let extended = match second & 0x7F {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let mask = if second & 0x80 != 0 { 4 } else { 0 };
    2 + extended + mask
}

/// A complete frame header: FIN, opcode, payload length.
fn parse(header: &[u8]) -> (bool, u8, u64) {
    let fin = header[0] & 0x80 != 0;
    let opcode = header[0] & 0x0F;
    let len = match header[1] & 0x7F {
        126 => u64::from(u16::from_be_bytes([header[2], header[3]])),
        127 => u64::from_be_bytes([
            header[2], header[3], header[4], header[5], header[6], header[7], header[8], header[9],
        ]),
        short => u64::from(short),
    };
    (fin, opcode, len)
}

impl<S: AsyncRead + Unpin> AsyncRead for FirstMessageCap<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.is_open() {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        match this.scan(&buf.filled()[before..]) {
            Ok(()) => Poll::Ready(Ok(())),
            Err(over) => Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, over))),
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FirstMessageCap<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const UPGRADE: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n";

    /// A masked client frame header for `len` payload bytes.
    fn header(fin: bool, opcode: u8, len: u64) -> Vec<u8> {
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
        out.extend_from_slice(&[1, 2, 3, 4]);
        out
    }

    fn frame(fin: bool, opcode: u8, len: usize) -> Vec<u8> {
        let mut out = header(fin, opcode, len as u64);
        out.extend(std::iter::repeat_n(0xAA, len));
        out
    }

    /// Feeds `bytes` in pieces of `step`: the verdict must not depend on how reads split them.
    fn feed(cap: usize, bytes: &[u8], step: usize) -> (Result<(), OverLimit>, bool) {
        let mut capped = FirstMessageCap::new((), cap);
        for piece in bytes.chunks(step) {
            if let Err(over) = capped.scan(piece) {
                return (Err(over), capped.is_open());
            }
        }
        (Ok(()), capped.is_open())
    }

    #[test]
    fn a_first_message_within_the_cap_opens_the_stream_whatever_the_reads() {
        let mut bytes = UPGRADE.to_vec();
        bytes.extend(frame(true, 0x9, 4)); // a ping first: not a data message
        bytes.extend(frame(true, 0x2, 300));
        // After the first message, anything goes.
        bytes.extend(header(true, 0x2, 60_000));
        for step in [1, 2, 3, 7, 64, bytes.len()] {
            assert_eq!(feed(300, &bytes, step), (Ok(()), true), "step {step}");
        }
    }

    #[test]
    fn a_first_message_over_the_cap_fails_at_its_header() {
        let mut bytes = UPGRADE.to_vec();
        bytes.extend(header(true, 0x2, 60_000));
        for step in [1, 5, bytes.len()] {
            let (verdict, open) = feed(300, &bytes, step);
            assert_eq!(
                verdict,
                Err(OverLimit {
                    announced: 60_000,
                    cap: 300
                }),
                "step {step}"
            );
            assert!(!open);
        }
        // A 64-bit length, and fragments that add up past the cap.
        let mut huge = UPGRADE.to_vec();
        huge.extend(header(true, 0x2, 1 << 40));
        assert!(feed(300, &huge, 3).0.is_err());
        let mut fragments = UPGRADE.to_vec();
        fragments.extend(frame(false, 0x2, 200));
        fragments.extend(frame(true, 0x9, 10)); // a ping between fragments
        fragments.extend(header(true, 0x0, 200));
        assert_eq!(
            feed(300, &fragments, 4).0,
            Err(OverLimit {
                announced: 400,
                cap: 300
            })
        );
    }

    #[test]
    fn a_request_ending_in_bare_line_feeds_or_after_empty_lines_is_followed() {
        for request in [
            &b"GET / HTTP/1.1\nHost: x\nUpgrade: websocket\n\n"[..],
            &b"\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        ] {
            let mut bytes = request.to_vec();
            bytes.extend(header(true, 0x2, 60_000));
            for step in [1, 3, bytes.len()] {
                assert!(
                    feed(300, &bytes, step).0.is_err(),
                    "{:?} step {step}",
                    String::from_utf8_lossy(request)
                );
            }
        }
    }

    #[test]
    fn a_control_frame_longer_than_websocket_allows_fails_at_its_header() {
        let mut bytes = UPGRADE.to_vec();
        bytes.extend(header(true, 0x9, 65_536));
        assert_eq!(
            feed(300, &bytes, 2).0,
            Err(OverLimit {
                announced: 65_536,
                cap: 125
            })
        );
    }

    #[test]
    fn frame_bytes_pipelined_behind_the_upgrade_request_are_followed() {
        // A header split across the end of the request: the scan must not lose its place.
        let mut bytes = UPGRADE.to_vec();
        bytes.extend(header(true, 0x2, 5_000));
        let (verdict, _) = feed(300, &bytes, UPGRADE.len() + 1);
        assert!(verdict.is_err());
    }
}
