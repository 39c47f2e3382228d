//! Where a session writes what it says: the encoder (length-prefixed frames, or WebSocket
//! messages), the write buffer the driver drains, and the traffic counts.

use bytes::BytesMut;
use protocol::{ServerCodec, ServerMessage, WireMessage};
use tokio_util::codec::Encoder;

use crate::transport::websocket;

/// The write buffer's first allocation after it was given back, at least.
const WRITE_START: usize = 1024;
/// The largest first allocation, in KiB: the driver stops taking events at 64 KiB.
const WRITE_START_MAX_KIB: u16 = 64;

/// What a session sent and received, in frames and bytes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Traffic {
    /// Frames received.
    pub frames_in: u64,
    /// Frames sent.
    pub frames_out: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Bytes sent.
    pub bytes_out: u64,
}

impl Traffic {
    /// What grew from `before` to `self`.
    pub(crate) fn since(&self, before: &Traffic) -> Traffic {
        Traffic {
            frames_in: self.frames_in - before.frames_in,
            frames_out: self.frames_out - before.frames_out,
            bytes_in: self.bytes_in - before.bytes_in,
            bytes_out: self.bytes_out - before.bytes_out,
        }
    }
}

/// Where a session writes what it says: the encoder, the write buffer the connection drains,
/// and the traffic counts.
#[derive(Debug)]
pub(crate) struct Outbox {
    codec: ServerCodec,
    pub wbuf: BytesMut,
    pub traffic: Traffic,
    /// What was last added to the shared counters.
    pub flushed: Traffic,
    /// Over WebSocket: the code the server's close frame will carry (`None`: not WebSocket, or
    /// the close frame was written).
    websocket: Option<u16>,
    is_websocket: bool,
    /// The most the write buffer held since it was last allocated, in KiB rounded up: the next
    /// allocation is that large, so that a client pipelining batches of inputs does not make
    /// the buffer regrow for each batch (a session that says little still starts at 1 KiB).
    burst_kib: u16,
}

impl Outbox {
    /// An outbox for frames of at most `max_frame` bytes, in WebSocket messages when
    /// `websocket`.
    pub fn new(max_frame: usize, websocket: bool) -> Outbox {
        Outbox {
            codec: ServerCodec::new(max_frame),
            wbuf: BytesMut::new(),
            traffic: Traffic::default(),
            flushed: Traffic::default(),
            websocket: websocket.then_some(websocket::close_code::NORMAL),
            is_websocket: websocket,
            burst_kib: 0,
        }
    }

    /// True when the session speaks WebSocket.
    pub fn is_websocket(&self) -> bool {
        self.is_websocket
    }

    /// Over WebSocket, the code the close frame will carry (why the client's frames were
    /// refused, or the client's own code when answering its close).
    pub fn set_close_code(&mut self, code: u16) {
        if self.websocket.is_some() {
            self.websocket = Some(code);
        }
    }

    /// Over WebSocket, the server's close frame, once; nothing over TCP.
    pub fn close_frame(&mut self) {
        if let Some(code) = self.websocket.take() {
            websocket::encode_close(code, &mut self.wbuf);
        }
    }

    /// Over WebSocket, the pong answering a ping.
    pub fn pong(&mut self, payload: &[u8]) {
        if self.is_websocket {
            websocket::encode_pong(payload, &mut self.wbuf);
        }
    }

    /// Encodes a message into the write buffer. False when it does not fit in a frame (then
    /// nothing was written).
    pub fn queue(&mut self, message: &ServerMessage) -> bool {
        if self.wbuf.capacity() == 0 {
            // The buffer is given back whenever it drains; start the next one at the size the
            // last one grew to, or one that holds a batch of small messages.
            let last = usize::from(std::mem::take(&mut self.burst_kib)) * 1024;
            self.wbuf = BytesMut::with_capacity(last.max(WRITE_START));
        }
        let before = self.wbuf.len();
        let encoded = match self.is_websocket {
            true => websocket::encode(message, self.codec.max_frame(), &mut self.wbuf),
            false => self.codec.encode(message, &mut self.wbuf),
        };
        match encoded {
            Ok(()) => {
                let held_kib = self
                    .wbuf
                    .len()
                    .div_ceil(1024)
                    .min(WRITE_START_MAX_KIB.into());
                self.burst_kib = self.burst_kib.max(held_kib as u16);
                self.traffic.frames_out += 1;
                self.traffic.bytes_out += (self.wbuf.len() - before) as u64;
                true
            }
            Err(error) => {
                tracing::error!(%error, kind = ?message.kind(), "message dropped: it does not fit in a frame");
                false
            }
        }
    }

    /// Gives the write buffer back once everything in it is written, so that a session between
    /// messages holds none; the next [`Outbox::queue`] takes one sized to this burst.
    pub fn give_back(&mut self) {
        self.wbuf = BytesMut::new();
    }

    /// The largest frame body the codec produces.
    pub fn max_frame(&self) -> usize {
        self.codec.max_frame()
    }

    /// The traffic counted since the last call.
    pub fn take_unflushed(&mut self) -> Traffic {
        let delta = self.traffic.since(&self.flushed);
        self.flushed = self.traffic;
        delta
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn event(seq: u64) -> ServerMessage {
        ServerMessage::Event {
            seq,
            payload: Bytes::from_static(&[7; 60]),
        }
    }

    #[test]
    fn the_write_buffer_starts_at_the_size_the_last_burst_needed() {
        let mut out = Outbox::new(64 * 1024, false);
        out.queue(&event(1));
        assert_eq!(
            out.wbuf.capacity(),
            WRITE_START,
            "a first message starts at 1 KiB"
        );
        for seq in 2..=40 {
            out.queue(&event(seq));
        }
        let burst = out.wbuf.len();
        assert!(burst > 2 * WRITE_START);
        out.give_back();
        assert_eq!(out.wbuf.capacity(), 0, "nothing held between bursts");
        // The next burst of the same size fits the first allocation.
        out.queue(&event(41));
        let start = out.wbuf.capacity();
        assert!(start >= burst, "{start} bytes for a burst of {burst}");
        for seq in 42..=80 {
            out.queue(&event(seq));
        }
        assert_eq!(out.wbuf.capacity(), start, "no regrowth");
        // After a quiet exchange of one message, back to the small start.
        out.give_back();
        out.queue(&event(81));
        out.give_back();
        out.queue(&event(82));
        assert_eq!(out.wbuf.capacity(), WRITE_START);
    }
}
