//! Payloads of the demo game "rooms", carried inside `Input` and `Event` messages.
//!
//! The protocol treats payloads as opaque bytes; this module is the demo game's own small format,
//! shared by the server's demo and client-sim. A real game replaces it with its own.
//!
//! An `Input` payload is opaque to the demo: it is relayed to everyone in the room, sender
//! included, so a room of one is an echo path. Every `Event` payload starts with a tag byte.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::CodecError;
use crate::message::{Kind, MAX_PLAYER_ID_BYTES};
use crate::wire::{Reader, put_string, string_len};

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
        /// The game's tick counter.
        tick: u64,
        /// Players in the room.
        members: u32,
        /// Inputs the room received since the previous state event.
        inputs: u32,
    },
    /// Tag 3: a player entered (`joined = true`) or left the room.
    Presence {
        /// True when the player joined, false when they left.
        joined: bool,
        /// Who.
        player: String,
    },
}

impl DemoEvent {
    /// Encodes the event as an `Event` payload.
    pub fn to_bytes(&self) -> Bytes {
        let mut dst = BytesMut::new();
        match self {
            DemoEvent::Relay {
                from,
                input_seq,
                data,
            } => {
                dst.reserve(1 + string_len(from) + 8 + data.len());
                dst.put_u8(1);
                put_string(&mut dst, from);
                dst.put_u64(*input_seq);
                dst.put_slice(data);
            }
            DemoEvent::State {
                tick,
                members,
                inputs,
            } => {
                dst.put_u8(2);
                dst.put_u64(*tick);
                dst.put_u32(*members);
                dst.put_u32(*inputs);
            }
            DemoEvent::Presence { joined, player } => {
                dst.put_u8(3);
                dst.put_u8(u8::from(*joined));
                put_string(&mut dst, player);
            }
        }
        dst.freeze()
    }

    /// Decodes an `Event` payload.
    pub fn from_bytes(payload: Bytes) -> Result<DemoEvent, CodecError> {
        let mut r = Reader::new(Kind::Event, payload);
        let event = match r.u8("demo event needs a tag")? {
            1 => {
                let from = r.string(MAX_PLAYER_ID_BYTES, "relay sender id too long")?;
                let input_seq = r.u64("relay needs an input seq")?;
                return Ok(DemoEvent::Relay {
                    from,
                    input_seq,
                    data: r.rest(),
                });
            }
            2 => DemoEvent::State {
                tick: r.u64("state needs a tick")?,
                members: r.u32("state needs a member count")?,
                inputs: r.u32("state needs an input count")?,
            },
            3 => DemoEvent::Presence {
                joined: r.present("presence needs a joined flag")?,
                player: r.string(MAX_PLAYER_ID_BYTES, "presence player id too long")?,
            },
            _ => {
                return Err(CodecError::Malformed {
                    kind: Kind::Event,
                    reason: "unknown demo event tag",
                });
            }
        };
        r.finish()?;
        Ok(event)
    }
}
