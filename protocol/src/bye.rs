/// Why an end of the connection is leaving. One closed set shared by client and server.
///
/// Each code says what the receiver should do next; `PROTOCOL.md` has the full table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ByeCode {
    /// The client is leaving on purpose. The server answers with its own `Bye{client_quit}` after
    /// acknowledging every input it applied.
    ClientQuit = 1,
    /// The server is shutting down. Reconnect later, or to another server.
    ServerShutdown = 2,
    /// An operator or the game removed the player. Do not reconnect automatically.
    Kicked = 3,
    /// The same player connected again elsewhere; this connection is the stale one. Do not
    /// reconnect automatically.
    Replaced = 4,
    /// The server (or this source address) is at its session limit. Retry with backoff.
    ServerFull = 5,
    /// The peer sent bytes that violate this protocol. A bug: log it, do not retry blindly.
    ProtocolError = 6,
    /// The server heard nothing from the client for the idle timeout. Sent best-effort just
    /// before an abortive close; a client that sees it should reconnect (and resume).
    IdleTimeout = 7,
    /// The client did not read fast enough and its outbound queue overflowed or a write stalled.
    /// Reconnect (and resume); check the client's read loop.
    SlowConsumer = 8,
    /// The client sent more messages per second than allowed (pings included). Slow down.
    RateLimited = 9,
    /// The auth token was missing, malformed, expired, or signed for someone else. Get a new token.
    AuthFailed = 10,
    /// The client speaks a protocol version the server does not. The text names the supported one.
    VersionMismatch = 11,
    /// The client did not send `Hello` within the handshake timeout.
    HandshakeTimeout = 12,
    /// The resume token was unknown, reused or expired. Start a fresh session without resume.
    ResumeRejected = 13,
    /// The room named in `Hello` refused the player (full, not open to them, or the server holds
    /// as many rooms as it may). The text says why. Choose another room; do not retry the same
    /// one in a loop.
    JoinRefused = 14,
    /// The game ended the player's session by its own rules (the match is over, the player was
    /// removed). The text says why. Do not reconnect automatically; the game decides what next.
    GameEnded = 15,
}

impl ByeCode {
    /// Every code, in wire order.
    pub const ALL: [ByeCode; 15] = [
        ByeCode::ClientQuit,
        ByeCode::ServerShutdown,
        ByeCode::Kicked,
        ByeCode::Replaced,
        ByeCode::ServerFull,
        ByeCode::ProtocolError,
        ByeCode::IdleTimeout,
        ByeCode::SlowConsumer,
        ByeCode::RateLimited,
        ByeCode::AuthFailed,
        ByeCode::VersionMismatch,
        ByeCode::HandshakeTimeout,
        ByeCode::ResumeRejected,
        ByeCode::JoinRefused,
        ByeCode::GameEnded,
    ];

    /// The code's snake_case name, as used in logs and documentation.
    pub fn as_str(self) -> &'static str {
        match self {
            ByeCode::ClientQuit => "client_quit",
            ByeCode::ServerShutdown => "server_shutdown",
            ByeCode::Kicked => "kicked",
            ByeCode::Replaced => "replaced",
            ByeCode::ServerFull => "server_full",
            ByeCode::ProtocolError => "protocol_error",
            ByeCode::IdleTimeout => "idle_timeout",
            ByeCode::SlowConsumer => "slow_consumer",
            ByeCode::RateLimited => "rate_limited",
            ByeCode::AuthFailed => "auth_failed",
            ByeCode::VersionMismatch => "version_mismatch",
            ByeCode::HandshakeTimeout => "handshake_timeout",
            ByeCode::ResumeRejected => "resume_rejected",
            ByeCode::JoinRefused => "join_refused",
            ByeCode::GameEnded => "game_ended",
        }
    }

    /// The code for a wire byte, or `None` if the byte names no code.
    pub fn from_u8(byte: u8) -> Option<ByeCode> {
        ByeCode::ALL.get(usize::from(byte).checked_sub(1)?).copied()
    }
}

impl std::fmt::Display for ByeCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
