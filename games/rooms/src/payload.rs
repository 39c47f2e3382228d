//! The demo game's payloads, carried inside `Input` and `Event` messages.
//!
//! The wire protocol treats payloads as opaque bytes; this is the demo's own small format,
//! shared by the demo server, client-sim and the test clients, and specified with its vectors
//! in PROTOCOL.md ("Demo game payloads"). It uses the protocol's primitive encodings.
//!
//! An `Input` payload is opaque to the demo: it is relayed to everyone in the room, sender
//! included, so a room of one is an echo path. Every `Event` payload starts with a tag byte.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The longest player id a relay or presence event carries (the protocol's own limit).
pub const MAX_PLAYER_ID_BYTES: usize = protocol::MAX_PLAYER_ID_BYTES;

/// One event of the demo game.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DemoEvent {
    /// Tag 1: a player's input, relayed to everyone in the room (sender included).
    Relay {
        /// Who sent the input.
        from: String,
        /// The input's sequence number in the sender's stream.
        input_seq: u64,
        /// The input's payload, unchanged.
        data: Bytes,
    },
    /// Tag 2: the room's state, broadcast on the tick after something changed.
    State {
        /// The room's tick counter.
        tick: u64,
        /// Players in the room.
        members: u32,
        /// Inputs the room received since the previous state event.
        inputs: u32,
    },
    /// Tag 3: a player entered (`joined = true`) or left the room. Sent when the game's
    /// `announce_presence` is on.
    Presence {
        /// True when the player joined, false when they left.
        joined: bool,
        /// Who.
        player: String,
    },
}

/// Why an event payload is not a demo event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid demo event: {0}")]
pub struct InvalidEvent(pub &'static str);

/// Bytes of a relay's own header around the input's data: tag, sender id (with its length),
/// input sequence number. At most 75, within the protocol's `INPUT_HEADROOM`.
pub fn relay_overhead(from: &str) -> usize {
    relay_overhead_bytes(from.len())
}

fn relay_overhead_bytes(from_len: usize) -> usize {
    1 + 2 + from_len + 8
}

impl DemoEvent {
    /// Encodes the event as an `Event` payload.
    pub fn to_bytes(&self) -> Bytes {
        // Each payload in one allocation of its exact size.
        let mut dst;
        match self {
            DemoEvent::Relay {
                from,
                input_seq,
                data,
            } => return relay(from, *input_seq, data),
            DemoEvent::State {
                tick,
                members,
                inputs,
            } => {
                dst = BytesMut::with_capacity(1 + 8 + 4 + 4);
                dst.put_u8(2);
                dst.put_u64(*tick);
                dst.put_u32(*members);
                dst.put_u32(*inputs);
            }
            DemoEvent::Presence { joined, player } => {
                dst = BytesMut::with_capacity(1 + 1 + 2 + player.len().min(MAX_PLAYER_ID_BYTES));
                dst.put_u8(3);
                dst.put_u8(u8::from(*joined));
                put_string(&mut dst, player);
            }
        }
        dst.freeze()
    }

    /// Decodes an `Event` payload.
    pub fn from_bytes(mut payload: Bytes) -> Result<DemoEvent, InvalidEvent> {
        let event = match take_u8(&mut payload, "demo event needs a tag")? {
            1 => {
                let from = take_string(&mut payload, "relay sender id")?;
                let input_seq = take_u64(&mut payload, "relay needs an input seq")?;
                return Ok(DemoEvent::Relay {
                    from,
                    input_seq,
                    data: payload,
                });
            }
            2 => DemoEvent::State {
                tick: take_u64(&mut payload, "state needs a tick")?,
                members: take_u32(&mut payload, "state needs a member count")?,
                inputs: take_u32(&mut payload, "state needs an input count")?,
            },
            3 => DemoEvent::Presence {
                joined: match take_u8(&mut payload, "presence needs a joined flag")? {
                    0 => false,
                    1 => true,
                    _ => return Err(InvalidEvent("presence flag is neither 0 nor 1")),
                },
                player: take_string(&mut payload, "presence player id")?,
            },
            _ => return Err(InvalidEvent("unknown demo event tag")),
        };
        if payload.has_remaining() {
            return Err(InvalidEvent("trailing bytes after the last field"));
        }
        Ok(event)
    }
}

/// A `Relay` event's payload, encoded straight from borrowed parts: the room's hot path, one
/// allocation of the exact size, no copy of the sender's id, and plain appends to a vector
/// (whose capacity is known) rather than a growable buffer's checked writes.
pub fn relay(from: &str, input_seq: u64, data: &[u8]) -> Bytes {
    let from = &from.as_bytes()[..from.len().min(MAX_PLAYER_ID_BYTES)];
    let mut dst = Vec::with_capacity(relay_overhead_bytes(from.len()) + data.len());
    dst.push(1);
    dst.extend_from_slice(&(from.len() as u16).to_be_bytes());
    dst.extend_from_slice(from);
    dst.extend_from_slice(&input_seq.to_be_bytes());
    dst.extend_from_slice(data);
    Bytes::from(dst)
}

fn put_string(dst: &mut BytesMut, s: &str) {
    let len = s.len().min(MAX_PLAYER_ID_BYTES);
    dst.put_u16(len as u16);
    dst.put_slice(&s.as_bytes()[..len]);
}

fn take_u8(src: &mut Bytes, what: &'static str) -> Result<u8, InvalidEvent> {
    (src.remaining() >= 1)
        .then(|| src.get_u8())
        .ok_or(InvalidEvent(what))
}

fn take_u32(src: &mut Bytes, what: &'static str) -> Result<u32, InvalidEvent> {
    (src.remaining() >= 4)
        .then(|| src.get_u32())
        .ok_or(InvalidEvent(what))
}

fn take_u64(src: &mut Bytes, what: &'static str) -> Result<u64, InvalidEvent> {
    (src.remaining() >= 8)
        .then(|| src.get_u64())
        .ok_or(InvalidEvent(what))
}

fn take_string(src: &mut Bytes, what: &'static str) -> Result<String, InvalidEvent> {
    if src.remaining() < 2 {
        return Err(InvalidEvent(what));
    }
    let len = usize::from(src.get_u16());
    if len > MAX_PLAYER_ID_BYTES || src.remaining() < len {
        return Err(InvalidEvent(what));
    }
    String::from_utf8(src.split_to(len).to_vec())
        .map_err(|_| InvalidEvent("string is not valid UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relay_encoded_from_parts_is_the_relay_event() {
        let data = Bytes::from_static(b"payload");
        let event = DemoEvent::Relay {
            from: "alice".to_owned(),
            input_seq: 42,
            data: data.clone(),
        };
        let encoded = relay("alice", 42, &data);
        assert_eq!(encoded, event.to_bytes());
        assert_eq!(encoded.len(), relay_overhead("alice") + data.len());
        assert_eq!(DemoEvent::from_bytes(encoded), Ok(event));
    }

    #[test]
    fn every_event_round_trips() {
        for event in [
            DemoEvent::Relay {
                from: "ann".into(),
                input_seq: 7,
                data: Bytes::from_static(b"jump"),
            },
            DemoEvent::State {
                tick: 9,
                members: 2,
                inputs: 5,
            },
            DemoEvent::Presence {
                joined: true,
                player: "bob".into(),
            },
        ] {
            assert_eq!(DemoEvent::from_bytes(event.to_bytes()), Ok(event));
        }
    }

    #[test]
    fn broken_payloads_are_refused() {
        for bad in [
            &b""[..],
            &[9][..],
            &[2, 0, 0][..],
            &[3, 2, 0, 0][..],
            &[2, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0xff][..],
            &[1, 0x00, 0x41][..],
        ] {
            assert!(
                DemoEvent::from_bytes(Bytes::copy_from_slice(bad)).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_relay_fits_within_the_protocols_headroom() {
        assert!(relay_overhead(&"x".repeat(MAX_PLAYER_ID_BYTES)) <= protocol::INPUT_HEADROOM);
    }
}
