//! Why a session ended: the vocabulary shared by the server (the `reason` label of its close
//! metrics) and by clients and load generators that classify their own disconnects and reconcile
//! them with the server's account.

/// Why a session ended. `Copy`, so it can travel in metrics and logs freely.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CloseReason {
    /// The client sent `Bye`, the server answered, and the connection closed cleanly.
    /// Nothing to do: this is how players should leave.
    ClientQuit,
    /// End of stream between frames without a `Bye`: the client closed its socket without saying
    /// goodbye (a crash handler, a closed laptop lid after flushing). Nothing was lost.
    PeerEof,
    /// End of stream inside a frame: the client stopped mid-message, typically because its
    /// process was killed. A rise means clients are crashing.
    TruncatedFrame,
    /// ECONNRESET: the client's kernel reset the connection (killed with unread data, SO_LINGER 0,
    /// or a middlebox). A surge points at the network between players and the server.
    PeerReset,
    /// EPIPE on write: the client closed while the server was still sending.
    BrokenPipe,
    /// The heartbeat watchdog heard nothing for `session.idle_timeout`: a pulled cable, a frozen
    /// client or a dead route. A surge points at the network.
    IdleTimeout,
    /// ETIMEDOUT or EHOSTUNREACH from TCP keepalive or TCP_USER_TIMEOUT: the kernel gave up on an
    /// unreachable peer, below the application heartbeat.
    TcpTimeout,
    /// No `Hello` within `session.handshake_timeout`: a slowloris, a port scanner, or a client far
    /// too slow to play.
    HandshakeTimeout,
    /// The client broke the protocol (bad frame, bad version, out-of-order message). The log
    /// line says what; a rise after a client release is a client bug.
    ProtocolError,
    /// The client could not keep up: its outbound queue overflowed or a write stayed blocked for
    /// `session.write_timeout`.
    SlowConsumer,
    /// The client exceeded `session.rate_limit_per_sec` (pings included).
    RateLimited,
    /// The auth token was missing, malformed, expired or for another player.
    AuthFailed,
    /// A resume was refused (unknown, used or expired token, or the session ended meanwhile):
    /// the client must start a fresh session. A burst after a deploy is clients coming back to a
    /// server that no longer holds their sessions, not an attack.
    ResumeRejected,
    /// The room named in `Hello` refused the player, or the server holds as many rooms as it
    /// may.
    JoinRefused,
    /// The game ended the player's session by its own rules (match over, removed); the `Bye`
    /// text carries the game's reason.
    GameEnded,
    /// An operator or the game kicked the player.
    Kicked,
    /// The same player connected again; this older session was closed.
    Replaced,
    /// The server drained on shutdown.
    ServerShutdown,
    /// Any other I/O error; the log line carries the errno.
    IoError,
}

impl CloseReason {
    /// Every reason, in the order metrics list them.
    pub const ALL: [CloseReason; 19] = [
        CloseReason::ClientQuit,
        CloseReason::PeerEof,
        CloseReason::TruncatedFrame,
        CloseReason::PeerReset,
        CloseReason::BrokenPipe,
        CloseReason::IdleTimeout,
        CloseReason::TcpTimeout,
        CloseReason::HandshakeTimeout,
        CloseReason::ProtocolError,
        CloseReason::SlowConsumer,
        CloseReason::RateLimited,
        CloseReason::AuthFailed,
        CloseReason::ResumeRejected,
        CloseReason::JoinRefused,
        CloseReason::GameEnded,
        CloseReason::Kicked,
        CloseReason::Replaced,
        CloseReason::ServerShutdown,
        CloseReason::IoError,
    ];

    /// The metric label and log name.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::ClientQuit => "client_quit",
            CloseReason::PeerEof => "peer_eof",
            CloseReason::TruncatedFrame => "truncated_frame",
            CloseReason::PeerReset => "peer_reset",
            CloseReason::BrokenPipe => "broken_pipe",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::TcpTimeout => "tcp_timeout",
            CloseReason::HandshakeTimeout => "handshake_timeout",
            CloseReason::ProtocolError => "protocol_error",
            CloseReason::SlowConsumer => "slow_consumer",
            CloseReason::RateLimited => "rate_limited",
            CloseReason::AuthFailed => "auth_failed",
            CloseReason::ResumeRejected => "resume_rejected",
            CloseReason::JoinRefused => "join_refused",
            CloseReason::GameEnded => "game_ended",
            CloseReason::Kicked => "kicked",
            CloseReason::Replaced => "replaced",
            CloseReason::ServerShutdown => "server_shutdown",
            CloseReason::IoError => "io_error",
        }
    }

    /// The reason for a metric label, if it names one.
    pub fn from_label(label: &str) -> Option<CloseReason> {
        CloseReason::ALL.into_iter().find(|r| r.as_str() == label)
    }
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
