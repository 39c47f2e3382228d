//! How a connection ended, and what that means for the session.

use std::io;

use protocol::{ByeCode, CloseReason, CodecError};

/// How one connection to the server ended, seen from the client. Transport ends use the names the
/// server uses for the same event in its close reasons ([`End::reason`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum End {
    /// The server said `Bye` (the text is its detail, for logs and people).
    #[error("the server said Bye{{{code}}}{}", if text.is_empty() { String::new() } else { format!(": {text}") })]
    Bye {
        /// Why the server closed.
        code: ByeCode,
        /// The server's words.
        text: String,
    },
    /// The connection broke underneath: no `Bye` came.
    #[error("{0}")]
    Transport(#[from] Transport),
    /// Nothing came from the server for the idle timeout it announced: the client presumes it (or
    /// the path to it) dead.
    #[error("the server sent nothing for {0:?}")]
    ServerSilent(std::time::Duration),
    /// The server sent bytes that are not this protocol, or a message out of place.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The TLS handshake or the WebSocket upgrade failed on what the server presented: a
    /// certificate the client does not trust or made out for another name, a TLS version or
    /// cipher it does not speak, an HTTP answer other than `101 Switching Protocols` (but a
    /// 5xx, a proxy with nowhere to send the upgrade now, which is [`Transport::Refused`]).
    /// Trying again meets the same answer.
    #[error("the connection could not be opened: {0}")]
    Opening(String),
    /// The client closed: its `Bye`, the server's `Ack` and `Bye` were exchanged (or the
    /// connection was dropped on purpose).
    #[error("the client closed the session")]
    Quit,
}

/// A connection that broke without a `Bye`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Transport {
    /// Nothing listens at the address (ECONNREFUSED), or the connect was refused on the way.
    #[error("connection refused")]
    Refused,
    /// The stream ended between two frames (the server's FIN without a `Bye`).
    #[error("the server closed the connection between frames (EOF)")]
    PeerEof,
    /// The stream ended inside a frame.
    #[error("the stream ended inside a frame")]
    TruncatedFrame,
    /// The server closed or reset the connection during the TLS handshake or the WebSocket
    /// upgrade. Over TLS and WebSocket that is how the server refuses a connection it cannot take
    /// (full, over its memory budget, limiting this address: over plain TCP it would say `Bye`);
    /// it counts a rejected connection, not a session.
    #[error("the server closed the connection during the TLS handshake or WebSocket upgrade: {0}")]
    ClosedWhileOpening(String),
    /// The server's kernel reset the connection (ECONNRESET).
    #[error("connection reset by the server")]
    PeerReset,
    /// A write after the connection was closed (EPIPE).
    #[error("broken pipe: written after the connection closed")]
    BrokenPipe,
    /// The kernel gave up on the path (ETIMEDOUT, EHOSTUNREACH, ENETUNREACH), or a connect did
    /// not complete in time.
    #[error("timed out: {0}")]
    TimedOut(String),
    /// Any other socket error (its errno and description).
    #[error("{0}")]
    Io(String),
}

impl Transport {
    /// Classifies a socket error.
    pub fn of_io(error: &io::Error) -> Transport {
        const EHOSTUNREACH: i32 = 113;
        const ENETUNREACH: i32 = 101;
        if let Some(EHOSTUNREACH | ENETUNREACH) = error.raw_os_error() {
            return Transport::TimedOut(error.to_string());
        }
        match error.kind() {
            io::ErrorKind::ConnectionRefused => Transport::Refused,
            io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => {
                Transport::PeerReset
            }
            io::ErrorKind::BrokenPipe => Transport::BrokenPipe,
            io::ErrorKind::TimedOut => Transport::TimedOut(error.to_string()),
            io::ErrorKind::UnexpectedEof => Transport::TruncatedFrame,
            _ => Transport::Io(error.to_string()),
        }
    }
}

impl End {
    /// Classifies a failed TLS handshake or WebSocket upgrade: the server closing the connection
    /// on it (its refusal), what it presented being refused (untrusted certificate, an HTTP
    /// error), or a socket error as anywhere else.
    pub fn of_opening(error: &io::Error) -> End {
        match error.kind() {
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => {
                End::Transport(Transport::ClosedWhileOpening(error.to_string()))
            }
            io::ErrorKind::InvalidData => End::Opening(error.to_string()),
            _ => End::Transport(Transport::of_io(error)),
        }
    }

    /// Classifies a decoding failure: a socket error, a stream cut inside a frame, or bytes that
    /// are not the protocol.
    pub fn of_codec(error: CodecError) -> End {
        match error {
            CodecError::Io(io) => End::Transport(Transport::of_io(&io)),
            CodecError::Truncated { .. } => End::Transport(Transport::TruncatedFrame),
            other => End::Protocol(other.to_string()),
        }
    }

    /// The server's name for the same event, where there is one: what the server most likely
    /// recorded for this session (`peer_reset`, `peer_eof`, `idle_timeout`, ...), or for a `Bye`,
    /// the reason it said. `None` for a refused connect (no session) and for protocol errors.
    pub fn reason(&self) -> Option<CloseReason> {
        Some(match self {
            End::Bye { code, .. } => return bye_reason(*code),
            End::Transport(Transport::PeerEof) => CloseReason::PeerEof,
            End::Transport(Transport::TruncatedFrame) => CloseReason::TruncatedFrame,
            End::Transport(Transport::PeerReset) => CloseReason::PeerReset,
            End::Transport(Transport::BrokenPipe) => CloseReason::BrokenPipe,
            End::Transport(Transport::TimedOut(_)) => CloseReason::TcpTimeout,
            End::Transport(Transport::Io(_)) => CloseReason::IoError,
            End::ServerSilent(_) => CloseReason::IdleTimeout,
            End::Quit => CloseReason::ClientQuit,
            End::Transport(Transport::Refused | Transport::ClosedWhileOpening(_))
            | End::Protocol(_)
            | End::Opening(_) => return None,
        })
    }

    /// True when the session may still be alive on the server, parked for resume: the
    /// connection broke without the server ending the session on purpose. (A refused connection,
    /// or one closed while opening, reached no session: the client tries again all the same.)
    pub fn resumable(&self) -> bool {
        match self {
            End::Transport(transport) => !matches!(
                transport,
                Transport::Refused | Transport::ClosedWhileOpening(_)
            ),
            End::ServerSilent(_) => true,
            // The server parks sessions it closes for silence (and, if so configured, for slow
            // reading): the next connection may take them back.
            End::Bye { code, .. } => matches!(code, ByeCode::IdleTimeout | ByeCode::SlowConsumer),
            End::Protocol(_) | End::Opening(_) | End::Quit => false,
        }
    }
}

fn bye_reason(code: ByeCode) -> Option<CloseReason> {
    Some(match code {
        ByeCode::ClientQuit => CloseReason::ClientQuit,
        ByeCode::ServerShutdown => CloseReason::ServerShutdown,
        ByeCode::Kicked => CloseReason::Kicked,
        ByeCode::Replaced => CloseReason::Replaced,
        ByeCode::ProtocolError | ByeCode::VersionMismatch => CloseReason::ProtocolError,
        ByeCode::IdleTimeout => CloseReason::IdleTimeout,
        ByeCode::SlowConsumer => CloseReason::SlowConsumer,
        ByeCode::RateLimited => CloseReason::RateLimited,
        ByeCode::AuthFailed => CloseReason::AuthFailed,
        ByeCode::HandshakeTimeout => CloseReason::HandshakeTimeout,
        ByeCode::ResumeRejected => CloseReason::ResumeRejected,
        ByeCode::JoinRefused => CloseReason::JoinRefused,
        ByeCode::GameEnded => CloseReason::GameEnded,
        // Refused before a session existed: the server counts it as a rejected connection.
        ByeCode::ServerFull => return None,
    })
}

/// Why a session is over for good: the application starts a new one (or gives up).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Lost {
    /// The server ended it on purpose (`Bye` with this code: shutdown, kicked, replaced, ...).
    #[error("the server ended the session: {0}")]
    Ended(End),
    /// The connection broke and the server refused to resume the session (a restarted server
    /// knows no token; the grace period passed; ...). The text is the server's.
    #[error("the server could not resume the session: {0}")]
    ResumeRefused(String),
    /// The connection broke and the session could not be resumed: the server offered no resume
    /// (resume is off), or gave up on it before the client came back.
    #[error("the connection broke and the session cannot be resumed: {0}")]
    NotResumable(End),
    /// No connection could be made for the configured number of attempts (the last failure).
    #[error("gave up reconnecting: {0}")]
    GaveUp(End),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_errors_take_the_servers_names() {
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert_eq!(
            End::Transport(Transport::of_io(&reset)).reason(),
            Some(CloseReason::PeerReset)
        );
        let pipe = io::Error::from_raw_os_error(32);
        assert_eq!(Transport::of_io(&pipe), Transport::BrokenPipe);
        let unreachable = io::Error::from_raw_os_error(113);
        assert!(matches!(
            Transport::of_io(&unreachable),
            Transport::TimedOut(_)
        ));
        assert_eq!(
            End::of_codec(CodecError::Truncated { buffered: 3 }).reason(),
            Some(CloseReason::TruncatedFrame)
        );
    }

    #[test]
    fn a_failed_opening_tells_a_refusal_from_an_untrusted_server() {
        for kind in [
            io::ErrorKind::UnexpectedEof,
            io::ErrorKind::ConnectionReset,
            io::ErrorKind::BrokenPipe,
        ] {
            let end = End::of_opening(&io::Error::from(kind));
            assert!(
                matches!(end, End::Transport(Transport::ClosedWhileOpening(_))),
                "{kind:?}: {end:?}"
            );
            assert_eq!(end.reason(), None, "no session: a rejection");
        }
        let untrusted = End::of_opening(&io::Error::new(
            io::ErrorKind::InvalidData,
            "invalid peer certificate: UnknownIssuer",
        ));
        assert!(matches!(&untrusted, End::Opening(text) if text.contains("UnknownIssuer")));
        assert!(!untrusted.resumable());
        assert!(matches!(
            End::of_opening(&io::Error::from(io::ErrorKind::TimedOut)),
            End::Transport(Transport::TimedOut(_))
        ));
    }

    #[test]
    fn only_breaks_and_parking_byes_are_resumable() {
        assert!(End::Transport(Transport::PeerEof).resumable());
        assert!(End::ServerSilent(std::time::Duration::from_secs(15)).resumable());
        assert!(
            End::Bye {
                code: ByeCode::IdleTimeout,
                text: String::new()
            }
            .resumable()
        );
        for code in [
            ByeCode::ServerShutdown,
            ByeCode::Kicked,
            ByeCode::Replaced,
            ByeCode::ResumeRejected,
        ] {
            assert!(
                !End::Bye {
                    code,
                    text: String::new()
                }
                .resumable(),
                "{code:?}"
            );
        }
        assert!(!End::Transport(Transport::Refused).resumable());
    }
}
