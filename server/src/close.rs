//! Why a session ended: one reason per session, decided from the first fatal event it observed,
//! and what follows from it.
//!
//! [`CloseReason::as_str`] is the `reason` label of every close metric. [`classify_io`] is the one
//! place that turns what the kernel reported into a reason. [`policy`] is the one table that says,
//! for each reason, whether the session parks for resume, whether the close is abortive, which
//! `Bye` the client gets and at which level the close is logged; every part of the server reads
//! it and nothing else decides those.

use std::io;
use std::sync::Arc;

use protocol::{ByeCode, CodecError};
use tokio::time::Instant;

pub use protocol::CloseReason;

/// Why a session ended, decided at the first fatal event.
#[derive(Debug)]
pub(crate) struct Ending {
    pub reason: CloseReason,
    /// The `Bye` code when it differs from the reason's own (a version mismatch is a
    /// `protocol_error` that says `version_mismatch`).
    pub bye: Option<ByeCode>,
    pub detail: Option<String>,
    pub decided: Instant,
    /// The player id of a refused `Hello`, for the close record and the log.
    pub claimed: Option<Arc<str>>,
}

impl Ending {
    pub fn new(reason: CloseReason) -> Ending {
        Ending {
            reason,
            bye: policy(reason).bye,
            detail: None,
            decided: Instant::now(),
            claimed: None,
        }
    }

    pub fn because(reason: CloseReason, detail: impl Into<String>) -> Ending {
        Ending {
            detail: Some(detail.into()),
            ..Ending::new(reason)
        }
    }

    pub fn io(error: &std::io::Error, direction: Direction) -> Ending {
        // An OS error's text already ends with "(os error N)": the errno is in the log line.
        Ending::because(classify_io(error), format!("{direction:?} failed: {error}"))
    }

    pub fn codec(error: CodecError) -> Ending {
        match error {
            CodecError::Io(io) => Ending::io(&io, Direction::Read),
            other => Ending::because(classify_codec(&other), other.to_string()),
        }
    }
}

/// Whether a session that ended for a reason is parked for resume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Park {
    /// The connection broke under the player: park it (when resume is on).
    Yes,
    /// The session ended on purpose: never park.
    No,
    /// Only with `session.resume_after_slow_consumer`.
    IfSlowConsumersResume,
}

/// How the connection is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closing {
    /// Nothing can be said: the peer closed or the connection is dead. The socket is dropped.
    Drop,
    /// Flush queued events, `Ack`, `Bye`, FIN, read until the client's FIN or the linger timeout.
    Lingering,
    /// Flush queued events, `Ack`, `Bye`, FIN and linger, but without the queued events: the
    /// client is the one not reading them.
    LingeringWithoutQueue,
    /// `Bye` best-effort, then RST: the peer is presumed gone.
    Abortive,
    /// Lingering, or abortive with `session.abort_on_protocol_error`.
    LingeringUnlessConfigured,
}

/// How loud the close line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Expected endings: players leaving, operators acting, the server stopping.
    Info,
    /// A client misbehaving or a network fault: worth a look when they cluster.
    Warn,
    /// Not understood.
    Error,
}

/// What follows from one close reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Parks for resume?
    pub park: Park,
    /// How the connection closes.
    pub closing: Closing,
    /// The `Bye` the client gets, when it can get one.
    pub bye: Option<ByeCode>,
    /// The close line's level.
    pub level: Level,
    /// A client can cause it at will, as often as it can connect: its close lines are
    /// throttled hard (see [`crate::logging::ABUSIVE`]).
    pub abusive: bool,
    /// The time from the peer's last frame to the close says something: how long a gone peer
    /// lingered (`gameserver_close_detect_seconds` has this reason). For the others the close is
    /// decided the moment it happens.
    pub detect: bool,
}

/// The policy for a reason. The one table.
pub const fn policy(reason: CloseReason) -> Policy {
    use ByeCode as B;
    use Closing::*;
    use Level::*;
    let (park, closing, bye, level, abusive) = match reason {
        CloseReason::ClientQuit => (Park::No, Lingering, Some(B::ClientQuit), Info, false),
        CloseReason::PeerEof => (Park::Yes, Drop, None, Info, false),
        CloseReason::TruncatedFrame => (Park::Yes, Drop, None, Warn, false),
        CloseReason::PeerReset => (Park::Yes, Drop, None, Warn, false),
        CloseReason::BrokenPipe => (Park::Yes, Drop, None, Warn, false),
        CloseReason::IdleTimeout => (Park::Yes, Abortive, Some(B::IdleTimeout), Warn, false),
        CloseReason::TcpTimeout => (Park::Yes, Abortive, None, Warn, false),
        CloseReason::HandshakeTimeout => {
            (Park::No, Lingering, Some(B::HandshakeTimeout), Warn, true)
        }
        CloseReason::ProtocolError => (
            Park::No,
            LingeringUnlessConfigured,
            Some(B::ProtocolError),
            Warn,
            true,
        ),
        CloseReason::SlowConsumer => (
            Park::IfSlowConsumersResume,
            LingeringWithoutQueue,
            Some(B::SlowConsumer),
            Warn,
            false,
        ),
        CloseReason::RateLimited => (Park::No, Lingering, Some(B::RateLimited), Warn, true),
        CloseReason::AuthFailed => (Park::No, Lingering, Some(B::AuthFailed), Warn, true),
        CloseReason::ResumeRejected => (Park::No, Lingering, Some(B::ResumeRejected), Info, false),
        CloseReason::JoinRefused => (Park::No, Lingering, Some(B::JoinRefused), Info, false),
        CloseReason::GameEnded => (Park::No, Lingering, Some(B::GameEnded), Info, false),
        CloseReason::Kicked => (Park::No, Lingering, Some(B::Kicked), Info, false),
        CloseReason::Replaced => (Park::No, Lingering, Some(B::Replaced), Info, false),
        CloseReason::ServerShutdown => (Park::No, Lingering, Some(B::ServerShutdown), Info, false),
        CloseReason::IoError => (Park::Yes, Drop, None, Error, false),
    };
    let detect = matches!(
        reason,
        CloseReason::PeerEof
            | CloseReason::TruncatedFrame
            | CloseReason::PeerReset
            | CloseReason::BrokenPipe
            | CloseReason::IdleTimeout
            | CloseReason::TcpTimeout
            | CloseReason::SlowConsumer
            | CloseReason::IoError
    );
    Policy {
        park,
        closing,
        bye,
        level,
        abusive,
        detect,
    }
}

/// Which way the failing operation was going. A reset seen on write is still a reset; an
/// unclassified error on write is reported with the direction in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Reading from the peer.
    Read,
    /// Writing to the peer.
    Write,
}

/// Turns an I/O error the session observed into a close reason.
///
/// Walks `source()` down to the innermost `io::Error`, then looks at the raw errno first (so
/// EHOSTUNREACH, which std maps to a generic kind on older toolchains, is still a timeout) and the
/// `ErrorKind` second.
pub fn classify_io(error: &io::Error) -> CloseReason {
    let error = innermost_io(error);
    if let Some(errno) = error.raw_os_error() {
        match errno {
            ECONNRESET => return CloseReason::PeerReset,
            EPIPE => return CloseReason::BrokenPipe,
            ETIMEDOUT | EHOSTUNREACH | ENETUNREACH => return CloseReason::TcpTimeout,
            _ => {}
        }
    }
    match error.kind() {
        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => CloseReason::PeerReset,
        io::ErrorKind::BrokenPipe => CloseReason::BrokenPipe,
        io::ErrorKind::TimedOut
        | io::ErrorKind::HostUnreachable
        | io::ErrorKind::NetworkUnreachable => CloseReason::TcpTimeout,
        io::ErrorKind::UnexpectedEof => CloseReason::TruncatedFrame,
        // Never from a socket: a transport's own protocol broken (a WebSocket text message).
        io::ErrorKind::InvalidData => CloseReason::ProtocolError,
        _ => CloseReason::IoError,
    }
}

/// Turns a decoder error into a close reason: transport errors through [`classify_io`], an end
/// of stream inside a frame as `truncated_frame`, everything else as `protocol_error`.
pub fn classify_codec(error: &CodecError) -> CloseReason {
    match error {
        CodecError::Io(io) => classify_io(io),
        CodecError::Truncated { .. } => CloseReason::TruncatedFrame,
        _ => CloseReason::ProtocolError,
    }
}

fn innermost_io(error: &io::Error) -> &io::Error {
    let mut current = error;
    while let Some(inner) = current
        .get_ref()
        .and_then(|e| e.downcast_ref::<io::Error>())
    {
        current = inner;
    }
    current
}

// Linux errno values; the classifier matches on them so that it does not depend on how std maps
// a given errno to an ErrorKind.
const EPIPE: i32 = 32;
const ECONNRESET: i32 = 104;
const ETIMEDOUT: i32 = 110;
const EHOSTUNREACH: i32 = 113;
const ENETUNREACH: i32 = 101;

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener, TcpStream};
    use std::time::Duration;

    use super::*;

    /// A real ECONNRESET: the peer closes with unread data in its receive buffer, so its kernel
    /// answers with RST, and our next read fails.
    #[test]
    fn a_real_reset_is_peer_reset() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let mut client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (mut server, _) = listener.accept().expect("accept");
        client.write_all(b"unread by the server").expect("write");
        server.write_all(b"unread by the client").expect("write");
        std::thread::sleep(Duration::from_millis(50));
        drop(client);
        std::thread::sleep(Duration::from_millis(50));
        let mut buf = [0u8; 64];
        let mut error = None;
        for _ in 0..4 {
            match server.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => continue,
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
        }
        let error = error.expect("reading after the peer's RST must fail");
        assert_eq!(error.raw_os_error(), Some(ECONNRESET));
        assert_eq!(classify_io(&error), CloseReason::PeerReset);
    }

    /// A real EPIPE: writing after the peer has closed and reset.
    #[test]
    fn a_real_broken_pipe_is_broken_pipe() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (mut server, _) = listener.accept().expect("accept");
        client.shutdown(Shutdown::Both).expect("shutdown");
        drop(client);
        let mut observed = None;
        for _ in 0..50 {
            if let Err(e) = server.write_all(&[0u8; 1024]) {
                observed = Some(e);
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let error = observed.expect("writing to a closed peer must eventually fail");
        let reason = classify_io(&error);
        assert!(
            reason == CloseReason::BrokenPipe || reason == CloseReason::PeerReset,
            "got {reason} from {error:?}"
        );
        assert_eq!(
            classify_io(&io::Error::from_raw_os_error(EPIPE)),
            CloseReason::BrokenPipe
        );
    }

    #[test]
    fn timeouts_and_unreachable_hosts_are_tcp_timeouts() {
        for errno in [ETIMEDOUT, EHOSTUNREACH, ENETUNREACH] {
            assert_eq!(
                classify_io(&io::Error::from_raw_os_error(errno)),
                CloseReason::TcpTimeout,
                "errno {errno}"
            );
        }
    }

    #[test]
    fn wrapped_errors_are_unwrapped_to_their_errno() {
        let inner = io::Error::from_raw_os_error(ECONNRESET);
        let wrapped = io::Error::other(inner);
        assert_eq!(classify_io(&wrapped), CloseReason::PeerReset);
        let codec = CodecError::Io(io::Error::from_raw_os_error(EPIPE));
        assert_eq!(classify_codec(&codec), CloseReason::BrokenPipe);
    }

    #[test]
    fn unknown_errors_are_io_errors() {
        assert_eq!(
            classify_io(&io::Error::from_raw_os_error(5 /* EIO */)),
            CloseReason::IoError
        );
    }

    #[test]
    fn codec_errors_split_into_truncation_and_protocol_errors() {
        assert_eq!(
            classify_codec(&CodecError::Truncated { buffered: 3 }),
            CloseReason::TruncatedFrame
        );
        assert_eq!(
            classify_codec(&CodecError::UnknownKind(0x7f)),
            CloseReason::ProtocolError
        );
        assert_eq!(
            classify_codec(&CodecError::FrameTooLarge {
                len: 1 << 20,
                max: 1 << 16
            }),
            CloseReason::ProtocolError
        );
    }

    #[test]
    fn labels_are_unique_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for reason in CloseReason::ALL {
            assert!(seen.insert(reason.as_str()), "duplicate label {reason}");
            assert_eq!(CloseReason::from_label(reason.as_str()), Some(reason));
        }
        assert_eq!(seen.len(), 19);
    }

    #[test]
    fn the_policy_table_is_consistent() {
        for reason in CloseReason::ALL {
            let p = policy(reason);
            // Whatever closes with a Bye says it in the reason's own words.
            if let Some(code) = p.bye {
                assert_eq!(code.as_str(), reason.as_str(), "{reason}");
            }
            // A lingering close exists to deliver a Bye.
            if matches!(
                p.closing,
                Closing::Lingering
                    | Closing::LingeringWithoutQueue
                    | Closing::LingeringUnlessConfigured
            ) {
                assert!(p.bye.is_some(), "{reason} lingers without a Bye");
            }
            // Only a broken connection parks.
            if p.park == Park::Yes {
                assert!(
                    matches!(p.closing, Closing::Drop | Closing::Abortive),
                    "{reason} parks but closes gracefully"
                );
            }
            if p.abusive {
                assert_eq!(p.level, Level::Warn, "{reason}");
            }
        }
    }
}
