//! What went wrong on a connection, as the summary's error table names it.

use std::io;

use game_client::Transport;

/// `EMFILE` on Linux: this process is out of file descriptors.
const EMFILE: i32 = 24;
/// `ENFILE` on Linux: the whole system is out of file descriptors.
const ENFILE: i32 = 23;

/// What went wrong on a connection, in the vocabulary of the summary's error table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorKind {
    /// ECONNREFUSED: nothing listens at the address (or the backlog overflowed).
    ConnRefused,
    /// ETIMEDOUT or EHOSTUNREACH: the connect or the connection timed out in the kernel.
    TimedOut,
    /// ECONNRESET: the server's kernel reset the connection.
    ConnReset,
    /// EPIPE: a write after the server had closed.
    BrokenPipe,
    /// EMFILE or ENFILE: out of file descriptors.
    Emfile,
    /// EADDRNOTAVAIL: out of local ports for this source address.
    AddrNotAvail,
    /// The server sent no frame for its own idle timeout: it is presumed dead.
    HeartbeatTimeout,
    /// The server sent bytes this client cannot decode, or a message out of place.
    ProtocolError,
    /// The server's stream ended inside a frame.
    Truncated,
    /// Any other I/O error.
    Other,
}

impl ErrorKind {
    /// Every kind, in summary order.
    pub const ALL: [ErrorKind; 10] = [
        ErrorKind::ConnRefused,
        ErrorKind::TimedOut,
        ErrorKind::ConnReset,
        ErrorKind::BrokenPipe,
        ErrorKind::Emfile,
        ErrorKind::AddrNotAvail,
        ErrorKind::HeartbeatTimeout,
        ErrorKind::ProtocolError,
        ErrorKind::Truncated,
        ErrorKind::Other,
    ];

    /// The name shown in the summary.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::ConnRefused => "ECONNREFUSED",
            ErrorKind::TimedOut => "ETIMEDOUT",
            ErrorKind::ConnReset => "ECONNRESET",
            ErrorKind::BrokenPipe => "EPIPE",
            ErrorKind::Emfile => "EMFILE",
            ErrorKind::AddrNotAvail => "EADDRNOTAVAIL",
            ErrorKind::HeartbeatTimeout => "heartbeat timeout",
            ErrorKind::ProtocolError => "protocol error",
            ErrorKind::Truncated => "truncated frame",
            ErrorKind::Other => "other",
        }
    }

    pub(crate) fn index(self) -> usize {
        ErrorKind::ALL
            .iter()
            .position(|&k| k == self)
            .unwrap_or(ErrorKind::ALL.len() - 1)
    }

    /// Classifies an I/O error: the client library's classification of how a connection ends,
    /// plus what only a load generator runs into (out of descriptors or local ports).
    pub fn of_io(error: &io::Error) -> ErrorKind {
        if let Some(EMFILE | ENFILE) = error.raw_os_error() {
            return ErrorKind::Emfile;
        }
        if error.kind() == io::ErrorKind::AddrNotAvailable {
            return ErrorKind::AddrNotAvail;
        }
        match Transport::of_io(error) {
            Transport::Refused => ErrorKind::ConnRefused,
            Transport::TimedOut(_) => ErrorKind::TimedOut,
            Transport::PeerReset => ErrorKind::ConnReset,
            Transport::BrokenPipe => ErrorKind::BrokenPipe,
            Transport::TruncatedFrame => ErrorKind::Truncated,
            // (A socket error alone is never classified as a close during the opening.)
            Transport::PeerEof | Transport::Io(_) | Transport::ClosedWhileOpening(_) => {
                ErrorKind::Other
            }
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
