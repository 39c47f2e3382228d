//! One connection to the game server (TCP, or TLS over TCP), with the client's own vocabulary for
//! how it ended.
//!
//! [`Conn`] keeps the whole [`Link`] rather than split halves: the scenarios need to choose
//! exactly how the socket ends (FIN with `shutdown`, RST with `SO_LINGER {on, 0}`, close with
//! unread data), and tokio's owned write half would send a FIN of its own when dropped. Frames
//! are decoded from a small read buffer (1 KiB to start, grown by the codec only when a frame
//! needs it) so that an idle connection costs a few KiB: one process must hold 19,000 of them.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use game_client::{Link, Tls};
use protocol::{ByeCode, ClientCodec, ClientMessage, CodecError, ServerMessage};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio::time::Instant;
use tokio_util::codec::{Decoder, Encoder};

pub use crate::error_kind::ErrorKind;
use crate::stats::{Stats, add};

/// Initial read buffer capacity: enough for every control frame, small enough for 19,000 idle
/// connections.
const READ_CAPACITY: usize = 1024;

/// How a client's conversation with the server went wrong, or ended where it did not expect.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket reported an error.
    #[error("{kind} ({source})")]
    Io {
        /// The summary's name for it.
        kind: ErrorKind,
        /// What the kernel said.
        #[source]
        source: io::Error,
    },
    /// The server's bytes are not this protocol.
    #[error("protocol error: {0}")]
    Protocol(#[source] CodecError),
    /// An event's payload is not the demo game's format.
    #[error("protocol error: {0}")]
    Payload(#[source] rooms::payload::InvalidEvent),
    /// The server sent a message that makes no sense here (a second `Welcome`, say).
    #[error("protocol error: unexpected {0} from the server")]
    Unexpected(&'static str),
    /// The session's protocol core refused what the server sent (a gap in the events, a
    /// message before `Welcome`), or an input.
    #[error("protocol error: {0}")]
    Violation(String),
    /// The server's stream ended inside a frame.
    #[error("the server's stream ended inside a frame")]
    Truncated,
    /// No frame from the server for its own idle timeout: the client presumes it dead.
    #[error("heartbeat timeout: no frame from the server for {0:?}")]
    HeartbeatTimeout(Duration),
    /// The server ended the session with a `Bye`.
    #[error("the server said Bye{{{code}}}{}", if text.is_empty() { String::new() } else { format!(": {text}") })]
    ServerBye {
        /// Why.
        code: ByeCode,
        /// The server's detail text.
        text: String,
    },
    /// The server closed the connection (EOF between frames) where the client expected more.
    #[error("the server closed the connection (EOF)")]
    Eof,
    /// A wait of the scenario's own ran out.
    #[error("gave up after {limit:?} waiting for {what}")]
    Deadline {
        /// What the client was waiting for.
        what: &'static str,
        /// How long it waited.
        limit: Duration,
    },
}

impl ClientError {
    /// The summary's error kind, for errors that are socket or protocol failures.
    pub fn kind(&self) -> Option<ErrorKind> {
        match self {
            ClientError::Io { kind, .. } => Some(*kind),
            ClientError::Protocol(_)
            | ClientError::Payload(_)
            | ClientError::Unexpected(_)
            | ClientError::Violation(_) => Some(ErrorKind::ProtocolError),
            ClientError::Truncated => Some(ErrorKind::Truncated),
            ClientError::HeartbeatTimeout(_) => Some(ErrorKind::HeartbeatTimeout),
            ClientError::ServerBye { .. } | ClientError::Eof | ClientError::Deadline { .. } => None,
        }
    }

    pub(crate) fn io(source: io::Error) -> ClientError {
        ClientError::Io {
            kind: ErrorKind::of_io(&source),
            source,
        }
    }

    fn codec(error: CodecError) -> ClientError {
        match error {
            CodecError::Io(source) => ClientError::io(source),
            CodecError::Truncated { .. } => ClientError::Truncated,
            other => ClientError::Protocol(other),
        }
    }
}

/// What goes over the TCP connection before the protocol: TLS, a WebSocket upgrade (to this
/// URL), both or neither.
#[derive(Debug, Clone, Default)]
pub struct Layers {
    /// TLS, when the server speaks it.
    pub tls: Option<Tls>,
    /// The WebSocket URL, when the server's port is its WebSocket listener.
    pub websocket: Option<String>,
}

/// Opens a connection, optionally from a chosen local address, adds the `layers`, and returns
/// it with the time the connect (and the layers' handshakes) took; each step within `timeout`.
///
/// A source address is bound with `IP_BIND_ADDRESS_NO_PORT`, so the kernel picks the port at
/// connect time and one port can serve several destinations: a source address is then limited by
/// its 4-tuples, not by its ~28,000 ephemeral ports.
pub async fn connect(
    server: SocketAddr,
    source: Option<IpAddr>,
    layers: &Layers,
    timeout: Duration,
) -> Result<(Link, Duration), ClientError> {
    let started = Instant::now();
    let socket = if server.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(ClientError::io)?;
    if let Some(source) = source {
        if source.is_ipv4() {
            nix::sys::socket::setsockopt(
                &socket,
                nix::sys::socket::sockopt::IpBindAddressNoPort,
                &true,
            )
            .map_err(|errno| ClientError::io(io::Error::from(errno)))?;
        }
        socket
            .bind(SocketAddr::new(source, 0))
            .map_err(ClientError::io)?;
    }
    socket.set_nodelay(true).map_err(ClientError::io)?;
    let stream = match tokio::time::timeout(timeout, socket.connect(server)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => return Err(ClientError::io(error)),
        Err(_) => {
            return Err(ClientError::io(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("connect took longer than {timeout:?}"),
            )));
        }
    };
    if layers.tls.is_none() && layers.websocket.is_none() {
        return Ok((Link::Tcp(stream), started.elapsed()));
    }
    let opening = game_client::open(stream, layers.tls.as_ref(), layers.websocket.as_deref());
    match tokio::time::timeout(timeout, opening).await {
        Ok(Ok(link)) => Ok((link, started.elapsed())),
        Ok(Err(error)) => Err(ClientError::io(error)),
        Err(_) => Err(ClientError::io(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("the TLS handshake or WebSocket upgrade took longer than {timeout:?}"),
        ))),
    }
}

/// A connected socket with the client codec, byte and frame counters, and a record of every
/// error it observed.
#[derive(Debug)]
pub struct Conn {
    stream: Link,
    codec: ClientCodec,
    rbuf: BytesMut,
    wbuf: BytesMut,
    stats: Arc<Stats>,
    last_write: Instant,
    errors: Vec<ErrorKind>,
    drained: Option<Arc<AtomicBool>>,
}

impl Conn {
    /// Wraps a connected stream.
    pub fn new(stream: Link, stats: Arc<Stats>) -> Conn {
        add(&stats.open, 1);
        Conn {
            stream,
            codec: ClientCodec::default(),
            rbuf: BytesMut::with_capacity(READ_CAPACITY),
            wbuf: BytesMut::new(),
            stats,
            last_write: Instant::now(),
            errors: Vec::new(),
            drained: None,
        }
    }

    fn note<T>(&mut self, result: Result<T, ClientError>) -> Result<T, ClientError> {
        if let Err(error) = &result {
            if let Some(kind) = error.kind() {
                self.errors.push(kind);
            }
        }
        result
    }

    /// Sets `flag` when the server's `Bye{server_shutdown}` arrives on this connection.
    pub fn on_drain(&mut self, flag: Arc<AtomicBool>) {
        self.drained = Some(flag);
    }

    /// Every error this connection observed, for the summary.
    pub fn errors(&self) -> &[ErrorKind] {
        &self.errors
    }

    /// Records an error the caller observed on this connection outside `send`/`recv`.
    pub(crate) fn note_error(&mut self, error: &ClientError) {
        if let Some(kind) = error.kind() {
            self.errors.push(kind);
        }
    }

    /// When this client last wrote a byte.
    pub fn last_write(&self) -> Instant {
        self.last_write
    }

    /// The bytes read but not yet decoded: after a protocol error, what the other end sent.
    pub fn undecoded(&self) -> &[u8] {
        &self.rbuf
    }

    /// Reads the next frame. `Ok(None)` is a clean end of stream between frames.
    ///
    /// Cancel-safe: bytes already read stay in the buffer, so it can sit in a `select!`.
    pub async fn recv(&mut self) -> Result<Option<ServerMessage>, ClientError> {
        let result = self.recv_inner().await;
        if let Ok(Some(ServerMessage::Bye(bye))) = &result
            && bye.code == ByeCode::ServerShutdown
        {
            add(&self.stats.drain_byes, 1);
            if let Some(flag) = &self.drained {
                flag.store(true, Ordering::Relaxed);
            }
        }
        self.note(result)
    }

    async fn recv_inner(&mut self) -> Result<Option<ServerMessage>, ClientError> {
        loop {
            if let Some(message) = self
                .codec
                .decode(&mut self.rbuf)
                .map_err(ClientError::codec)?
            {
                add(&self.stats.recv_msgs, 1);
                return Ok(Some(message));
            }
            if self.rbuf.capacity() - self.rbuf.len() < 256 {
                self.rbuf.reserve(READ_CAPACITY);
            }
            let n = self
                .stream
                .read_buf(&mut self.rbuf)
                .await
                .map_err(ClientError::io)?;
            add(&self.stats.recv_bytes, n as u64);
            if n == 0 {
                return match self
                    .codec
                    .decode_eof(&mut self.rbuf)
                    .map_err(ClientError::codec)?
                {
                    Some(message) => {
                        add(&self.stats.recv_msgs, 1);
                        Ok(Some(message))
                    }
                    None => Ok(None),
                };
            }
        }
    }

    /// Encodes one message onto the end of `dst` without sending it.
    pub fn encode(
        &mut self,
        message: &ClientMessage,
        dst: &mut BytesMut,
    ) -> Result<(), ClientError> {
        self.codec.encode(message, dst).map_err(ClientError::codec)
    }

    /// Sends one message.
    pub async fn send(&mut self, message: &ClientMessage) -> Result<(), ClientError> {
        self.send_all(std::slice::from_ref(message)).await
    }

    /// Sends several messages in one write.
    pub async fn send_all(&mut self, messages: &[ClientMessage]) -> Result<(), ClientError> {
        let mut buf = std::mem::take(&mut self.wbuf);
        buf.clear();
        let mut result = Ok(());
        for message in messages {
            result = self.encode(message, &mut buf);
            if result.is_err() {
                break;
            }
        }
        if result.is_ok() {
            result = self.write_raw(&buf).await;
            if result.is_ok() {
                add(&self.stats.sent_msgs, messages.len() as u64);
            }
        }
        buf.clear();
        self.wbuf = buf;
        self.note(result)
    }

    /// Writes raw bytes, frame-aligned or not (the crash child splits frames on purpose).
    pub async fn write_raw(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        // The flush sends what TLS or WebSocket holds back (nothing to do over plain TCP).
        let result = match self.stream.write_all(bytes).await {
            Ok(()) => self.stream.flush().await,
            Err(error) => Err(error),
        }
        .map_err(ClientError::io);
        if result.is_ok() {
            self.last_write = Instant::now();
            add(&self.stats.sent_bytes, bytes.len() as u64);
        }
        self.note(result)
    }

    /// Sends FIN (`shutdown(SHUT_WR)`) while keeping the read side open.
    pub async fn shutdown_write(&mut self) -> Result<(), ClientError> {
        let result = self.stream.shutdown().await.map_err(ClientError::io);
        self.note(result)
    }

    /// Waits until unread data sits in the kernel's receive buffer (without consuming it), or the
    /// limit passes. Returns whether there is unread data.
    ///
    /// Only the kernel's buffer counts: bytes already copied into this client's own buffer would
    /// not make the kernel send RST on close.
    pub async fn wait_unread(&self, limit: Duration) -> bool {
        let mut byte = [0u8; 1];
        let peek = self.stream.tcp().peek(&mut byte);
        matches!(tokio::time::timeout(limit, peek).await, Ok(Ok(n)) if n > 0)
    }

    /// Closes abortively: `SO_LINGER {on, 0}` makes the kernel send RST and discard anything
    /// unsent, instead of a FIN after the queued data.
    pub fn abort(self) -> Result<(), ClientError> {
        self.stream.set_abortive().map_err(ClientError::io)
        // Dropping `self` here closes the socket, which with a zero linger is the RST.
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.stats
            .open
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_are_classified_by_errno_then_kind() {
        let of = |e: io::Error| ErrorKind::of_io(&e);
        assert_eq!(
            of(io::Error::from_raw_os_error(111)),
            ErrorKind::ConnRefused
        );
        assert_eq!(of(io::Error::from_raw_os_error(104)), ErrorKind::ConnReset);
        assert_eq!(of(io::Error::from_raw_os_error(32)), ErrorKind::BrokenPipe);
        assert_eq!(of(io::Error::from_raw_os_error(110)), ErrorKind::TimedOut);
        assert_eq!(of(io::Error::from_raw_os_error(113)), ErrorKind::TimedOut);
        assert_eq!(of(io::Error::from_raw_os_error(24)), ErrorKind::Emfile);
        assert_eq!(
            of(io::Error::from_raw_os_error(99)),
            ErrorKind::AddrNotAvail
        );
        assert_eq!(of(io::Error::other("weird")), ErrorKind::Other);
    }

    #[test]
    fn codec_errors_keep_truncation_apart_from_protocol_violations() {
        assert!(matches!(
            ClientError::codec(CodecError::Truncated { buffered: 3 }),
            ClientError::Truncated
        ));
        assert_eq!(
            ClientError::codec(CodecError::EmptyFrame).kind(),
            Some(ErrorKind::ProtocolError)
        );
        assert_eq!(
            ClientError::codec(CodecError::Io(io::Error::from_raw_os_error(104))).kind(),
            Some(ErrorKind::ConnReset)
        );
    }

    #[tokio::test]
    async fn conn_reads_frames_and_tells_a_clean_end_from_a_truncated_one() {
        use protocol::ServerCodec;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut out = BytesMut::new();
            ServerCodec::default()
                .encode(ServerMessage::Ping { nonce: 7 }, &mut out)
                .unwrap();
            out.extend_from_slice(&[0, 0, 0, 9, 3]); // a frame announcing 9 bytes, cut after 1
            s.write_all(&out).await.unwrap();
        });
        let (stream, _) = connect(addr, None, &Default::default(), Duration::from_secs(5))
            .await
            .unwrap();
        let mut conn = Conn::new(stream, Arc::new(Stats::default()));
        assert_eq!(
            conn.recv().await.unwrap(),
            Some(ServerMessage::Ping { nonce: 7 })
        );
        assert!(matches!(conn.recv().await, Err(ClientError::Truncated)));
        assert_eq!(conn.errors(), &[ErrorKind::Truncated]);
        server.await.unwrap();
    }

    #[tokio::test]
    async fn connect_to_a_closed_port_is_refused() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let error = connect(addr, None, &Default::default(), Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(error.kind(), Some(ErrorKind::ConnRefused));
    }
}
