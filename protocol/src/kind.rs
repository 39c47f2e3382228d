//! The kind byte that starts every frame body.

/// The first byte of every frame body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    /// Client to server, first message of every connection.
    Hello = 0x01,
    /// Server to client, answer to an accepted `Hello`.
    Welcome = 0x02,
    /// Either direction: "are you there?".
    Ping = 0x03,
    /// Either direction: answer to a `Ping`, echoing its nonce.
    Pong = 0x04,
    /// Client to server: one numbered game input.
    Input = 0x05,
    /// Server to client: one numbered game event.
    Event = 0x06,
    /// Either direction: cumulative acknowledgement of inputs (server) or events (client).
    Ack = 0x07,
    /// Either direction: the sender is closing, and why.
    Bye = 0x08,
    /// Client to server: move to another room.
    Join = 0x09,
    /// Server to client: the player is now in this room.
    Joined = 0x0a,
    /// Server to client: the room named in `Join` refused the player, who stays where it was.
    JoinRefused = 0x0b,
}

impl Kind {
    /// The kind for a wire byte, or `None` if the byte names no kind.
    pub fn from_u8(byte: u8) -> Option<Kind> {
        Some(match byte {
            0x01 => Kind::Hello,
            0x02 => Kind::Welcome,
            0x03 => Kind::Ping,
            0x04 => Kind::Pong,
            0x05 => Kind::Input,
            0x06 => Kind::Event,
            0x07 => Kind::Ack,
            0x08 => Kind::Bye,
            0x09 => Kind::Join,
            0x0a => Kind::Joined,
            0x0b => Kind::JoinRefused,
            _ => return None,
        })
    }
}
