//! The byte streams a session runs over: plain TCP, TLS and (in tests) an in-memory duplex,
//! with what the session needs of each beyond reading and writing (peeking at unread bytes, an
//! abortive close).

use tokio::io::{AsyncRead, AsyncWrite};
#[cfg(any(test, feature = "testkit"))]
use tokio::io::{DuplexStream, ReadHalf, WriteHalf};
use tokio::net::TcpStream;

use crate::transport::labels::TransportName;

/// A byte stream a session runs over.
pub trait Transport: Send + 'static {
    /// The transport's name in metrics and log lines (`tcp`, `websocket`).
    const NAME: TransportName;
    /// What the transport itself holds per connection beyond a plain TCP socket (a TLS
    /// connection, a WebSocket's buffers), charged to the memory budget from the connection's
    /// accept to its close (`budget::Charge`). Measured in BENCHMARKS.md ("10 transports").
    const OVERHEAD: usize = 0;
    /// A write may leave bytes inside the transport (a TLS record) that only a flush sends once
    /// the socket takes more: the session flushes after each drain.
    const BUFFERED: bool = false;
    /// The transport's name in metrics and log lines when it carries WebSocket (`websocket`,
    /// `wss`).
    const WEBSOCKET_NAME: TransportName = TransportName::WebSocket;

    /// The reading half.
    type Read<'a>: AsyncRead + Unpin + Send + Peek
    where
        Self: 'a;
    /// The writing half.
    type Write<'a>: AsyncWrite + Unpin + Send
    where
        Self: 'a;

    /// Both halves, usable at once.
    fn split(&mut self) -> (Self::Read<'_>, Self::Write<'_>);

    /// Makes the next close abortive (TCP: zero linger, so the close sends RST and frees the
    /// socket at once). Never blocks.
    fn abort(&mut self);

    /// The TCP socket underneath, for the kernel's view of it at a close.
    fn tcp(&mut self) -> Option<&TcpStream> {
        None
    }
}

/// Looks for bytes that arrived but have not been read.
pub trait Peek {
    /// True when bytes wait in the transport that the runtime has not read yet.
    fn bytes_waiting(&self) -> bool;
}

impl Transport for TcpStream {
    const NAME: TransportName = TransportName::Tcp;

    type Read<'a> = tokio::net::tcp::ReadHalf<'a>;
    type Write<'a> = tokio::net::tcp::WriteHalf<'a>;

    fn split(&mut self) -> (Self::Read<'_>, Self::Write<'_>) {
        TcpStream::split(self)
    }

    fn abort(&mut self) {
        if let Err(error) = self.set_zero_linger() {
            tracing::debug!(%error, "cannot set zero linger");
        }
    }

    fn tcp(&mut self) -> Option<&TcpStream> {
        Some(self)
    }
}

impl Peek for tokio::net::tcp::ReadHalf<'_> {
    /// Peeks with a plain non-blocking syscall: the runtime's readiness cache may not have seen
    /// the bytes yet when the runtime is busy.
    fn bytes_waiting(&self) -> bool {
        let socket = socket2::SockRef::from(self.as_ref());
        let mut byte = [std::mem::MaybeUninit::<u8>::uninit(); 1];
        matches!(socket.peek(&mut byte), Ok(n) if n > 0)
    }
}

/// An in-memory transport over `tokio::io::duplex`, for tests. It cannot reset: an abortive
/// close is a plain close.
#[cfg(any(test, feature = "testkit"))]
#[derive(Debug)]
pub struct Duplex {
    read: ReadHalf<DuplexStream>,
    write: WriteHalf<DuplexStream>,
}

#[cfg(any(test, feature = "testkit"))]
impl Duplex {
    /// Wraps the server's end of a duplex pair.
    pub fn new(stream: DuplexStream) -> Duplex {
        let (read, write) = tokio::io::split(stream);
        Duplex { read, write }
    }
}

#[cfg(any(test, feature = "testkit"))]
impl Transport for Duplex {
    const NAME: TransportName = TransportName::Memory;

    type Read<'a> = &'a mut ReadHalf<DuplexStream>;
    type Write<'a> = &'a mut WriteHalf<DuplexStream>;

    fn split(&mut self) -> (Self::Read<'_>, Self::Write<'_>) {
        (&mut self.read, &mut self.write)
    }

    fn abort(&mut self) {}
}

#[cfg(any(test, feature = "testkit"))]
impl Peek for &mut ReadHalf<DuplexStream> {
    fn bytes_waiting(&self) -> bool {
        false
    }
}
