//! A TLS connection as a session's byte stream. rustls runs the handshake through its
//! unbuffered API; after a TLS 1.3 handshake the socket protects the records itself
//! ([`super::records`]), after a TLS 1.2 one rustls goes on doing it. Either way this socket
//! owns the record buffers, so that a quiet session holds none. Ciphertext read from the client
//! lives in a buffer taken when a read starts and given back once every record in it is
//! decrypted; ciphertext for the client lives in a buffer taken when something is encrypted and
//! given back once the socket took all of it.
//! (rustls' buffered connection keeps a 4 KiB read buffer for the life of the connection: most
//! of what a held TLS session cost beyond a TCP one.)
//!
//! The handshake runs here too, capped at [`MAX_HANDSHAKE_BYTES`] from the client and charged to
//! the memory budget as it arrives; see [`TlsSocket::handshake`].

use std::io;
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_rustls::rustls::server::UnbufferedServerConnection;
use tokio_rustls::rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, InsufficientSizeError, UnbufferedStatus,
};

use super::records::Records;
use crate::memory::budget::Charge;
use crate::transport::labels::TransportName;
use crate::transport::stream::{Peek, Transport};

/// The most a client may send before its TLS handshake is done: a ClientHello of today's
/// browsers (post-quantum key shares included) is about 2 KiB, one resuming a session a few
/// more. A client sending more is refused (`tls_handshake`) before it is buffered.
pub const MAX_HANDSHAKE_BYTES: usize = 16 * 1024;

/// What the server holds for the bytes a client sent during its handshake, as a fraction of
/// them: the records as they arrived (in a buffer grown a read at a time) and rustls' state
/// for the handshake message joined from them.
const HANDSHAKE_HELD: (u64, u64) = (4, 3);

/// How much one read from the socket asks for.
const READ_SIZE: usize = 4096;

/// The most ciphertext read and not yet decrypted: one whole record of the largest size TLS
/// allows (16 KiB of plaintext, its expansion and header) and one more read. rustls refuses a
/// record announcing more, so a full buffer without a whole record in it is never legitimate.
const MAX_INCOMING: usize = 16 * 1024 + 2048 + READ_SIZE;

/// The most plaintext one write encrypts: four full records.
const MAX_WRITE: usize = 64 * 1024;

/// A TLS connection as a session's byte stream.
///
/// A TCP end without TLS's `close_notify` reads as the end of the stream, not as an error: at a
/// frame boundary it is the `peer_eof` of a client that closed its socket, inside a frame a
/// `truncated_frame`, as over plain TCP. (Nothing the session trusts rides on the difference:
/// every frame is checked whole, and a truncated one is never taken.)
#[derive(Debug)]
// Boxed: a session's future holds its transport more than once (an async function keeps its
// arguments twice), and the socket is a few hundred bytes. Behind a lock, so that the
// halves of a split borrow the box and a split allocates nothing (Tokio's generic `split` puts
// the stream behind an `Arc` for as long as the halves live: a session's whole life). Both
// halves live in the session's one task, so the lock is never waited for.
pub struct TlsSocket(Box<Mutex<Inner>>);

struct Inner {
    tcp: TcpStream,
    tls: Layer,
    /// Ciphertext read and not yet decrypted (its length is what was read).
    incoming: Vec<u8>,
    /// Ciphertext encrypted and not yet sent: `outgoing[sent..]`. (The offsets are 32 bits, so
    /// that the socket fits its box's size class: `outgoing` holds one write's records and
    /// `plain` one read's records, each well below 4 GiB.)
    outgoing: Vec<u8>,
    sent: u32,
    /// Plaintext decrypted that the reader had no room for yet: `plain[taken..]`.
    plain: Vec<u8>,
    taken: u32,
    /// The client's `close_notify` arrived, or its TCP end: nothing more will be read.
    ended: bool,
    /// Our `close_notify` is encrypted.
    closing: bool,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSocket")
            .field("tcp", &self.tcp)
            .field("incoming", &self.incoming.len())
            .field("outgoing", &self.unsent().len())
            .field("plain", &self.untaken().len())
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

/// Who protects the records.
enum Layer {
    /// rustls, during the handshake and for the life of a TLS 1.2 connection.
    Rustls(Box<UnbufferedServerConnection>),
    /// The socket itself, after a TLS 1.3 handshake (see [`super::records`]).
    Records(Records),
}

/// Where [`Inner::process`] stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rest {
    /// The handshake needs more from the client.
    Handshaking,
    /// The connection carries application data; more of it needs more from the client.
    Traffic,
    /// Both sides sent `close_notify`.
    Closed,
}

/// What [`Inner::process`] encrypts once the connection carries application data.
#[derive(Clone, Copy)]
enum Send<'a> {
    Nothing,
    Data(&'a [u8]),
    CloseNotify,
}

impl TlsSocket {
    /// The server side of a TLS handshake on `tcp` with `tls` (a fresh connection). What the
    /// client sends before the handshake is done is capped at [`MAX_HANDSHAKE_BYTES`] and
    /// charged to `charge` as it arrives (the bytes are held until the handshake is done).
    pub(crate) async fn handshake(
        tcp: TcpStream,
        tls: UnbufferedServerConnection,
        mut charge: Charge,
    ) -> io::Result<TlsSocket> {
        let mut socket = TlsSocket(Box::new(Mutex::new(Inner {
            tcp,
            tls: Layer::Rustls(Box::new(tls)),
            incoming: Vec::new(),
            outgoing: Vec::new(),
            sent: 0,
            plain: Vec::new(),
            taken: 0,
            ended: false,
            closing: false,
        })));
        let inner = socket.inner();
        let mut read = 0;
        loop {
            let (rest, _) = match inner.process(None, Send::Nothing) {
                Ok(stopped) => stopped,
                Err(error) => {
                    // Tell the client why, as TLS does (an alert of a few bytes; the caller's
                    // deadline bounds the wait for the socket to take it).
                    inner.encode_alert();
                    let _ = std::future::poll_fn(|cx| inner.poll_send(cx)).await;
                    return Err(error);
                }
            };
            std::future::poll_fn(|cx| inner.poll_send(cx)).await?;
            match rest {
                Rest::Traffic => break,
                Rest::Closed => return Err(io::ErrorKind::UnexpectedEof.into()),
                Rest::Handshaking => {}
            }
            let n = std::future::poll_fn(|cx| inner.poll_fill(cx)).await?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the client closed its connection during the TLS handshake",
                ));
            }
            read += n;
            if read > MAX_HANDSHAKE_BYTES {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "more than {MAX_HANDSHAKE_BYTES} bytes before the TLS handshake was done"
                    ),
                ));
            }
            charge.set(read as u64 * HANDSHAKE_HELD.0 / HANDSHAKE_HELD.1);
        }
        inner.release();
        socket.hand_over()
    }

    /// After the handshake, a TLS 1.3 connection's records are the socket's own from here on
    /// (everything rustls sent is sent, everything it decrypted is in `plain`).
    fn hand_over(self) -> io::Result<TlsSocket> {
        let inner = self.0.into_inner().unwrap_or_else(PoisonError::into_inner);
        let tls = match inner.tls {
            Layer::Rustls(tls)
                if tls.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3) =>
            {
                Layer::Records(Records::new(*tls)?)
            }
            tls => tls,
        };
        Ok(TlsSocket(Box::new(Mutex::new(Inner { tls, ..inner }))))
    }

    /// The TCP connection underneath.
    pub fn tcp(&mut self) -> &TcpStream {
        &self.inner().tcp
    }

    /// The connection, unsplit.
    fn inner(&mut self) -> &mut Inner {
        self.0.get_mut().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The connection, for the half that works on it now.
fn lock(inner: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    inner.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Inner {
    /// Works through the ciphertext read so far: decrypted application data goes to `reader`
    /// (what does not fit, to `plain`), handshake records to `outgoing`; once the connection
    /// carries application data, `send` is encrypted to `outgoing`. Returns where it stopped
    /// and how much of `send` it took.
    fn process(
        &mut self,
        reader: Option<&mut ReadBuf<'_>>,
        send: Send<'_>,
    ) -> io::Result<(Rest, usize)> {
        match &mut self.tls {
            Layer::Rustls(_) => self.process_rustls(reader, send),
            Layer::Records(records) => {
                let mut reader = reader;
                let opened = records.open(&mut self.incoming, &mut self.outgoing, |payload| {
                    deliver(payload, reader.as_deref_mut(), &mut self.plain);
                })?;
                self.incoming.drain(..opened.used);
                if opened.closed {
                    self.ended = true;
                }
                let taken = match send {
                    Send::Nothing => 0,
                    Send::Data(data) => {
                        records.seal(data, &mut self.outgoing)?;
                        data.len()
                    }
                    Send::CloseNotify => {
                        records.close_notify(&mut self.outgoing)?;
                        0
                    }
                };
                Ok((Rest::Traffic, taken))
            }
        }
    }

    /// [`Inner::process`] by rustls.
    fn process_rustls(
        &mut self,
        mut reader: Option<&mut ReadBuf<'_>>,
        send: Send<'_>,
    ) -> io::Result<(Rest, usize)> {
        let Layer::Rustls(tls) = &mut self.tls else {
            unreachable!("called for rustls only");
        };
        let mut taken = 0;
        let mut send = send;
        loop {
            let UnbufferedStatus { discard, state } =
                tls.process_tls_records(&mut self.incoming[..]);
            let rest = match state.map_err(invalid)? {
                ConnectionState::ReadTraffic(mut traffic) => {
                    while let Some(record) = traffic.next_record() {
                        let record = record.map_err(invalid)?;
                        deliver(record.payload, reader.as_deref_mut(), &mut self.plain);
                    }
                    None
                }
                ConnectionState::EncodeTlsData(mut encode) => {
                    append(&mut self.outgoing, |out| {
                        encode.encode(out).map_err(short_of_room)
                    })?;
                    None
                }
                // What was encoded is in `outgoing`, sent before anything after it.
                ConnectionState::TransmitTlsData(transmit) => {
                    transmit.done();
                    None
                }
                ConnectionState::PeerClosed => {
                    self.ended = true;
                    None
                }
                ConnectionState::Closed => Some(Rest::Closed),
                ConnectionState::BlockedHandshake => Some(Rest::Handshaking),
                ConnectionState::WriteTraffic(mut traffic) => {
                    match send {
                        Send::Nothing => {}
                        Send::Data(data) => {
                            append(&mut self.outgoing, |out| {
                                traffic.encrypt(data, out).map_err(short_of)
                            })?;
                            taken = data.len();
                        }
                        Send::CloseNotify => {
                            append(&mut self.outgoing, |out| {
                                traffic.queue_close_notify(out).map_err(short_of)
                            })?;
                        }
                    }
                    send = Send::Nothing;
                    Some(Rest::Traffic)
                }
                // Early data is off (`max_early_data_size` is 0): rustls never offers it.
                _ => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "unexpected TLS state",
                    ));
                }
            };
            self.incoming.drain(..discard);
            if let Some(rest) = rest {
                return Ok((rest, taken));
            }
        }
    }

    /// After a failed [`Inner::process`], the alert rustls queued for the client, to `outgoing`.
    fn encode_alert(&mut self) {
        let Layer::Rustls(tls) = &mut self.tls else {
            return;
        };
        let UnbufferedStatus { state, .. } = tls.process_tls_records(&mut []);
        if let Ok(ConnectionState::EncodeTlsData(mut encode)) = state {
            let _ = append(&mut self.outgoing, |out| {
                encode.encode(out).map_err(short_of_room)
            });
        }
    }

    /// Reads what the socket has into `incoming`: the number of bytes, 0 at the client's end.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.incoming.len() >= MAX_INCOMING {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a TLS record larger than TLS allows",
            )));
        }
        // No buffer until the socket has something: a session waiting for its client comes
        // here at every wake-up, and most find nothing.
        ready!(self.tcp.poll_read_ready(cx))?;
        // Exactly one read's worth more (a Vec that doubled would keep half of it empty), read
        // into as it is, without clearing it first.
        self.incoming.reserve_exact(READ_SIZE);
        tokio_util::io::poll_read_buf(Pin::new(&mut self.tcp), cx, &mut self.incoming)
    }

    /// Ciphertext not yet sent.
    fn unsent(&self) -> &[u8] {
        &self.outgoing[self.sent as usize..]
    }

    /// Plaintext not yet read.
    fn untaken(&self) -> &[u8] {
        &self.plain[self.taken as usize..]
    }

    /// Sends everything in `outgoing`, then gives its buffer back.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.unsent().is_empty() {
            let unsent = &self.outgoing[self.sent as usize..];
            let n = ready!(Pin::new(&mut self.tcp).poll_write(cx, unsent))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n as u32;
        }
        self.outgoing = Vec::new();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }

    /// Gives back the read buffers when nothing is left in them.
    fn release(&mut self) {
        if self.incoming.is_empty() {
            self.incoming = Vec::new();
        }
        if self.untaken().is_empty() {
            self.plain = Vec::new();
            self.taken = 0;
        }
    }

    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        loop {
            if !self.untaken().is_empty() {
                let n = buf.remaining().min(self.untaken().len());
                buf.put_slice(&self.untaken()[..n]);
                self.taken += n as u32;
                self.release();
                return Poll::Ready(Ok(()));
            }
            if self.ended {
                return Poll::Ready(Ok(()));
            }
            let before = buf.filled().len();
            let (rest, _) = self.process(Some(&mut *buf), Send::Nothing)?;
            // Whatever rustls answered (a key update) goes out with the next write at the latest.
            if let Poll::Ready(Err(error)) = self.poll_send(cx) {
                return Poll::Ready(Err(error));
            }
            if buf.filled().len() > before {
                self.release();
                return Poll::Ready(Ok(()));
            }
            if rest == Rest::Closed {
                self.ended = true;
            }
            if self.ended || !self.untaken().is_empty() {
                continue;
            }
            match self.poll_fill(cx) {
                Poll::Pending => {
                    self.release();
                    return Poll::Pending;
                }
                // The TCP end, without `close_notify`: the end of the stream (see above).
                Poll::Ready(Ok(0)) => self.ended = true,
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
            }
        }
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        // What is still waiting for the socket goes first: `outgoing` stays within a write.
        if !self.unsent().is_empty() {
            ready!(self.poll_send(cx))?;
        }
        if self.closing {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let data = &data[..data.len().min(MAX_WRITE)];
        let (rest, taken) = self.process(None, Send::Data(data))?;
        if rest != Rest::Traffic {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        // Taken: sent now if the socket has room, else by the next write or flush.
        if let Poll::Ready(Err(error)) = self.poll_send(cx) {
            return Poll::Ready(Err(error));
        }
        Poll::Ready(Ok(taken))
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_send(cx))?;
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.closing {
            ready!(self.poll_send(cx))?;
            self.process(None, Send::CloseNotify)?;
            self.closing = true;
        }
        ready!(self.poll_send(cx))?;
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

/// Hands `payload` to `reader`, and what does not fit to `plain`.
fn deliver(payload: &[u8], reader: Option<&mut ReadBuf<'_>>, plain: &mut Vec<u8>) {
    let fits = match reader {
        // Plaintext already waiting comes first.
        Some(reader) if plain.is_empty() => {
            let n = reader.remaining().min(payload.len());
            reader.put_slice(&payload[..n]);
            n
        }
        _ => 0,
    };
    plain.extend_from_slice(&payload[fits..]);
}

/// Why [`append`] could not write.
enum Short {
    By(InsufficientSizeError),
    Failed(io::Error),
}

fn short_of_room(error: EncodeError) -> Short {
    match error {
        EncodeError::InsufficientSize(short) => Short::By(short),
        other => Short::Failed(io::Error::other(other.to_string())),
    }
}

fn short_of(error: EncryptError) -> Short {
    match error {
        EncryptError::InsufficientSize(short) => Short::By(short),
        other => Short::Failed(io::Error::other(other.to_string())),
    }
}

/// Appends to `out` what `write` puts in a slice, growing `out` to the size it asks for.
fn append(
    out: &mut Vec<u8>,
    mut write: impl FnMut(&mut [u8]) -> Result<usize, Short>,
) -> io::Result<()> {
    let start = out.len();
    let mut room = 0;
    loop {
        out.resize(start + room, 0);
        match write(&mut out[start..]) {
            Ok(n) => {
                out.truncate(start + n);
                return Ok(());
            }
            Err(Short::By(short)) if short.required_size > room => room = short.required_size,
            Err(Short::By(short)) => {
                out.truncate(start);
                return Err(io::Error::other(format!(
                    "TLS wanted {} bytes of room and had them",
                    short.required_size
                )));
            }
            Err(Short::Failed(error)) => {
                out.truncate(start);
                return Err(error);
            }
        }
    }
}

fn invalid(error: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error)
}

impl AsyncRead for TlsSocket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.get_mut().inner().poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsSocket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().inner().poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().inner().poll_flush(cx)
    }

    /// `close_notify`, then the TCP FIN.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().inner().poll_shutdown(cx)
    }
}

/// The reading half of a split [`TlsSocket`].
pub struct TlsRead<'a>(&'a Mutex<Inner>);

/// The writing half of a split [`TlsSocket`].
pub struct TlsWrite<'a>(&'a Mutex<Inner>);

impl AsyncRead for TlsRead<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        lock(self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsWrite<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        lock(self.0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        lock(self.0).poll_flush(cx)
    }

    /// `close_notify`, then the TCP FIN.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        lock(self.0).poll_shutdown(cx)
    }
}

impl Transport for TlsSocket {
    const NAME: TransportName = TransportName::Tls;
    // A held session over TLS 1.3 costs about 1.3 KiB more than over TCP (BENCHMARKS.md, "10
    // transports", since the socket keeps the record layer itself): this socket's box with the
    // raw keys, and what rustls keeps to compute the next keys. Over TLS 1.2, which few clients
    // still speak, rustls's connection stays, and a session costs about 2.6 KiB more.
    const OVERHEAD: usize = 2 * 1024;
    const BUFFERED: bool = true;
    const WEBSOCKET_NAME: TransportName = TransportName::Wss;

    type Read<'a> = TlsRead<'a>;
    type Write<'a> = TlsWrite<'a>;

    fn split(&mut self) -> (Self::Read<'_>, Self::Write<'_>) {
        (TlsRead(&self.0), TlsWrite(&self.0))
    }

    fn abort(&mut self) {
        if let Err(error) = self.tcp().set_zero_linger() {
            tracing::debug!(%error, "cannot set zero linger");
        }
    }

    fn tcp(&mut self) -> Option<&TcpStream> {
        Some(TlsSocket::tcp(self))
    }
}

impl Peek for TlsRead<'_> {
    /// Records are decrypted whole inside the TLS layer: nothing to look at from outside.
    fn bytes_waiting(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio_rustls::TlsConnector;
    use tokio_rustls::client::TlsStream;
    use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
    use tokio_rustls::rustls::{ClientConfig, RootCertStore, ServerConfig, SupportedCipherSuite};

    use super::*;
    use crate::memory::budget::Budget;

    /// A server configuration for a new self-signed `localhost`, and a client that trusts it.
    fn configs() -> (Arc<ServerConfig>, Arc<ClientConfig>) {
        configs_for(rustls::DEFAULT_VERSIONS)
    }

    /// As [`configs`], the client speaking only `versions`.
    fn configs_for(
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> (Arc<ServerConfig>, Arc<ClientConfig>) {
        configs_with(versions, rustls::crypto::ring::default_provider())
    }

    /// As [`configs`], the client speaking only `versions` with `provider`'s suites; the
    /// server's suites keep raw keys, as the server's own ([`super::super::keys`]).
    fn configs_with(
        versions: &[&'static rustls::SupportedProtocolVersion],
        provider: rustls::crypto::CryptoProvider,
    ) -> (Arc<ServerConfig>, Arc<ClientConfig>) {
        let pair = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("cert");
        let cert = pair.cert.der().clone();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pair.signing_key.serialize_der()));
        let provider = Arc::new(provider);
        let compact = super::super::keys::compact(rustls::crypto::ring::default_provider());
        let mut server = ServerConfig::builder_with_provider(Arc::new(compact))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)
            .expect("server config");
        super::super::settle(&mut server);
        let mut roots = RootCertStore::empty();
        roots.add(cert).expect("root");
        let client = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        (Arc::new(server), Arc::new(client))
    }

    /// A handshake between a rustls client and a [`TlsSocket`] over loopback.
    async fn pair() -> (TlsSocket, TlsStream<TcpStream>) {
        let (server, client) = configs();
        pair_with(server, client).await
    }

    async fn pair_with(
        server: Arc<ServerConfig>,
        client: Arc<ClientConfig>,
    ) -> (TlsSocket, TlsStream<TcpStream>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let connecting = tokio::spawn(async move {
            let tcp = TcpStream::connect(addr).await.expect("connect");
            let name = ServerName::try_from("localhost").expect("name");
            TlsConnector::from(client)
                .connect(name, tcp)
                .await
                .expect("client handshake")
        });
        let (tcp, _) = listener.accept().await.expect("accept");
        let budget = Budget::new(1 << 30, 0);
        let tls = UnbufferedServerConnection::new(server).expect("connection");
        let socket = TlsSocket::handshake(tcp, tls, budget.charge(0))
            .await
            .expect("server handshake");
        (socket, connecting.await.expect("client"))
    }

    /// `up` from the client to the server, then `down` back, each read whole on the other side.
    async fn exchange(
        server: &mut TlsSocket,
        client: &mut TlsStream<TcpStream>,
        up: &[u8],
        down: &[u8],
    ) {
        client.write_all(up).await.expect("client write");
        client.flush().await.expect("client flush");
        let mut got = vec![0; up.len()];
        server.read_exact(&mut got).await.expect("server read");
        assert_eq!(got, up);
        server.write_all(down).await.expect("server write");
        server.flush().await.expect("server flush");
        let mut back = vec![0; down.len()];
        client.read_exact(&mut back).await.expect("client read");
        assert_eq!(back, down);
    }

    /// Polls one read without waiting: `None` while nothing can be read.
    fn read_now(socket: &mut TlsSocket, into: &mut [u8]) -> Option<usize> {
        let waker = futures_util::task::noop_waker();
        let mut buf = ReadBuf::new(into);
        match Pin::new(socket).poll_read(&mut Context::from_waker(&waker), &mut buf) {
            Poll::Ready(result) => {
                result.expect("read");
                Some(buf.filled().len())
            }
            Poll::Pending => None,
        }
    }

    fn held(socket: &TlsSocket) -> usize {
        let inner = lock(&socket.0);
        inner.incoming.capacity() + inner.outgoing.capacity() + inner.plain.capacity()
    }

    /// No session tickets (see `tls::settle`): a client that connects again, with the store of
    /// its first connection, does a full handshake.
    #[tokio::test]
    async fn a_second_connection_gets_no_ticket_to_resume_with() {
        let (server, client) = configs();
        for _ in 0..2 {
            let (mut socket, mut stream) = pair_with(server.clone(), client.clone()).await;
            // The client reads after the handshake: a ticket, if one was sent, is taken now.
            exchange(&mut socket, &mut stream, b"hello", b"welcome").await;
            assert_eq!(
                stream.get_ref().1.handshake_kind(),
                Some(rustls::HandshakeKind::Full)
            );
        }
    }

    #[tokio::test]
    async fn data_crosses_both_ways_and_a_quiet_socket_holds_no_buffer() {
        let (mut server, mut client) = pair().await;
        // More than a record each way, read through a small buffer.
        let up: Vec<u8> = (0..100_000u32).map(|n| n as u8).collect();
        let down: Vec<u8> = up.iter().rev().copied().collect();
        let sending = up.clone();
        let writer = tokio::spawn(async move {
            client.write_all(&sending).await.expect("client write");
            client.flush().await.expect("client flush");
            client
        });
        let mut got = vec![0; up.len()];
        let mut small = [0u8; 700];
        let mut filled = 0;
        while filled < up.len() {
            let n = server.read(&mut small).await.expect("server read");
            assert!(n > 0, "the stream ended after {filled} bytes");
            got[filled..filled + n].copy_from_slice(&small[..n]);
            filled += n;
        }
        assert_eq!(got, up);
        let mut client = writer.await.expect("writer");
        server.write_all(&down).await.expect("server write");
        server.flush().await.expect("server flush");
        let mut back = vec![0; down.len()];
        client.read_exact(&mut back).await.expect("client read");
        assert_eq!(back, down);
        // Everything read and sent: nothing held, and a read waits.
        assert_eq!(read_now(&mut server, &mut small), None);
        assert_eq!(held(&server), 0, "{:?}", server);
    }

    /// The session reads and writes through the two halves of its socket in one task, each
    /// while the other waits: here both ways carry more than the sockets' buffers hold at once,
    /// so neither side's writing finishes unless its reading goes on beside it.
    #[tokio::test]
    async fn both_halves_of_a_split_socket_work_at_once() {
        let (mut server, client) = pair().await;
        let up: Vec<u8> = (0..8_000_000u32).map(|n| (n * 3) as u8).collect();
        let down: Vec<u8> = up.iter().rev().copied().collect();
        let (mut client_read, mut client_write) = tokio::io::split(client);
        let sending = up.clone();
        let client_writes = tokio::spawn(async move {
            client_write
                .write_all(&sending)
                .await
                .expect("client write");
            client_write.flush().await.expect("client flush");
        });
        let expected = down.len();
        let client_reads = tokio::spawn(async move {
            let mut back = vec![0; expected];
            client_read
                .read_exact(&mut back)
                .await
                .expect("client read");
            back
        });
        let (mut read, mut write) = Transport::split(&mut server);
        let mut got = vec![0; up.len()];
        let (read, written) = tokio::join!(read.read_exact(&mut got), async {
            write.write_all(&down).await?;
            write.flush().await
        });
        read.expect("server read");
        written.expect("server write");
        assert!(got == up, "the server read what the client wrote");
        client_writes.await.expect("client writer");
        assert!(client_reads.await.expect("client reader") == down);
        assert_eq!(held(&server), 0, "{:?}", server);
    }

    #[tokio::test]
    async fn every_tls_1_3_suite_carries_data_both_ways_with_raw_keys() {
        for suite in rustls::crypto::ring::DEFAULT_CIPHER_SUITES {
            let SupportedCipherSuite::Tls13(_) = suite else {
                continue;
            };
            let only = rustls::crypto::CryptoProvider {
                cipher_suites: vec![*suite],
                ..rustls::crypto::ring::default_provider()
            };
            let (server, client) = configs_with(&[&rustls::version::TLS13], only);
            let (mut server, mut client) = pair_with(server, client).await;
            assert_eq!(
                client.get_ref().1.negotiated_cipher_suite(),
                Some(*suite),
                "{suite:?}"
            );
            // Several records each way, then a key update, then more.
            let up: Vec<u8> = (0..40_000u32).map(|n| (n * 7) as u8).collect();
            exchange(&mut server, &mut client, &up, &up).await;
            client
                .get_mut()
                .1
                .refresh_traffic_keys()
                .expect("key update");
            exchange(&mut server, &mut client, b"new keys", b"answered").await;
        }
    }

    #[tokio::test]
    async fn a_tls_1_2_client_plays_too() {
        let (server, client) = configs_for(&[&rustls::version::TLS12]);
        let (mut server, mut client) = pair_with(server, client).await;
        assert_eq!(
            client.get_ref().1.protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_2)
        );
        exchange(&mut server, &mut client, b"hello over 1.2", b"welcome").await;
    }

    #[tokio::test]
    async fn key_updates_and_the_client_s_close_notify_are_understood() {
        let (mut server, mut client) = pair().await;
        // The client moves to new keys and asks the server to do the same.
        client
            .get_mut()
            .1
            .refresh_traffic_keys()
            .expect("key update");
        exchange(&mut server, &mut client, b"after the update", b"answered").await;
        // close_notify: the end of the stream, not an error.
        client.shutdown().await.expect("shutdown");
        let mut rest = Vec::new();
        server.read_to_end(&mut rest).await.expect("read to end");
        assert!(rest.is_empty());
        // Our own close_notify, then the FIN: the client reads a clean end.
        server.shutdown().await.expect("server shutdown");
        let mut tail = Vec::new();
        client
            .read_to_end(&mut tail)
            .await
            .expect("client reads the end");
        assert!(tail.is_empty());
    }

    /// A client whose records the test seals by hand (with the keys its rustls connection
    /// hands over after the handshake), to send what no well-behaved client sends.
    struct Raw {
        tcp: TcpStream,
        seal: super::super::keys::Direction,
        seq: u64,
        open: super::super::keys::Direction,
        opened: u64,
    }

    impl Raw {
        async fn connect() -> (TlsSocket, Raw) {
            let (server, client) = configs_for(&[&rustls::version::TLS13]);
            let mut client = Arc::unwrap_or_clone(client);
            client.enable_secret_extraction = true;
            let (socket, stream) = pair_with(server, Arc::new(client)).await;
            let (tcp, conn) = stream.into_inner();
            let secrets = conn.dangerous_extract_secrets().expect("secrets");
            let direction = super::super::keys::Direction::from_secrets;
            let raw = Raw {
                tcp,
                seal: direction(secrets.tx.1).expect("a suite"),
                seq: secrets.tx.0,
                open: direction(secrets.rx.1).expect("a suite"),
                opened: secrets.rx.0,
            };
            (socket, raw)
        }

        /// Reads one record of `content` bytes from the server and opens it under the key
        /// the client started with: its inner plaintext, or `None` if it does not open.
        async fn open_next(&mut self, content: usize) -> Option<Vec<u8>> {
            let mut record = vec![0u8; 5 + content + 1 + self.open.tag_len()];
            self.tcp.read_exact(&mut record).await.expect("raw read");
            let header: [u8; 5] = record[..5].try_into().expect("header");
            let seq = self.opened;
            self.opened += 1;
            self.open
                .opener()?
                .open(seq, header, &mut record[5..])
                .map(|plain| plain.to_vec())
        }

        /// One protected record: `content` of inner type `typ`, then `padding` zeros.
        fn record(&mut self, typ: u8, content: &[u8], padding: usize) -> Vec<u8> {
            let mut inner = content.to_vec();
            inner.push(typ);
            inner.resize(inner.len() + padding, 0);
            let len = (inner.len() + self.seal.tag_len()) as u16;
            let [high, low] = len.to_be_bytes();
            let header = [23, 3, 3, high, low];
            let tag = self.seal.seal(self.seq, header, &mut inner).expect("seal");
            self.seq += 1;
            let mut record = header.to_vec();
            record.extend_from_slice(&inner);
            record.extend_from_slice(tag.as_ref());
            record
        }

        async fn send(&mut self, bytes: &[u8]) {
            self.tcp.write_all(bytes).await.expect("raw write");
        }
    }

    /// What the server reads next: its bytes, or the error.
    async fn next_read(server: &mut TlsSocket) -> io::Result<Vec<u8>> {
        let mut buf = [0u8; 256];
        let n = tokio::time::timeout(std::time::Duration::from_secs(10), server.read(&mut buf))
            .await
            .expect("the server's read ended")?;
        Ok(buf[..n].to_vec())
    }

    fn refused(read: io::Result<Vec<u8>>, why: &str) {
        let error = read.expect_err("refused");
        assert_eq!(error.kind(), io::ErrorKind::InvalidData, "{error}");
        assert!(error.to_string().contains(why), "{error}");
    }

    /// Every held TLS session keeps the socket's box: 256 bytes is its allocator size class
    /// (at 264 it took 320).
    #[test]
    fn the_socket_fits_its_allocator_size_class() {
        let size = std::mem::size_of::<Mutex<Inner>>();
        assert!(size <= 256, "the TLS socket's box is {size} bytes");
    }

    #[tokio::test]
    async fn after_a_tls_1_3_handshake_the_socket_keeps_the_records_and_over_1_2_rustls_does() {
        let (mut server, mut client) = pair().await;
        assert!(matches!(server.inner().tls, Layer::Records(_)));
        exchange(&mut server, &mut client, b"hello", b"welcome").await;
        let (server_config, client_config) = configs_for(&[&rustls::version::TLS12]);
        let (mut server, mut client) = pair_with(server_config, client_config).await;
        assert!(matches!(server.inner().tls, Layer::Rustls(_)));
        exchange(&mut server, &mut client, b"hello", b"welcome").await;
    }

    /// The server changes its own key (as it does at its suite's limit): the client reads on.
    #[tokio::test]
    async fn the_server_s_key_update_is_followed_by_the_client() {
        let (mut server, mut client) = pair().await;
        for round in 0..3 {
            let inner = server.inner();
            let Layer::Records(records) = &mut inner.tls else {
                panic!("TLS 1.3 records are the socket's");
            };
            records.update_sealing(&mut inner.outgoing).expect("update");
            let text = format!("under key {}", round + 1);
            exchange(&mut server, &mut client, b"next", text.as_bytes()).await;
        }
    }

    #[tokio::test]
    async fn padding_is_stripped_and_user_canceled_is_ignored_but_not_without_end() {
        let (mut server, mut raw) = Raw::connect().await;
        let mut bytes = raw.record(23, b"padded", 40);
        bytes.extend(raw.record(21, &[1, 90], 0));
        bytes.extend(raw.record(23, b"", 0));
        bytes.extend(raw.record(23, b" and more", 0));
        raw.send(&bytes).await;
        let mut got = Vec::new();
        while got.len() < b"padded and more".len() {
            got.extend(next_read(&mut server).await.expect("read"));
        }
        assert_eq!(got, b"padded and more");
        let mut bytes = Vec::new();
        for _ in 0..33 {
            bytes.extend(raw.record(21, &[1, 90], 0));
        }
        raw.send(&bytes).await;
        refused(next_read(&mut server).await, "without data");
    }

    #[tokio::test]
    async fn a_record_that_does_not_authenticate_ends_the_connection() {
        let (mut server, mut raw) = Raw::connect().await;
        let mut bytes = raw.record(23, b"tampered with", 0);
        bytes[7] ^= 1;
        raw.send(&bytes).await;
        refused(next_read(&mut server).await, "bad_record_mac");
    }

    #[tokio::test]
    async fn a_record_of_padding_only_ends_the_connection() {
        let (mut server, mut raw) = Raw::connect().await;
        let bytes = raw.record(0, b"", 3);
        raw.send(&bytes).await;
        refused(next_read(&mut server).await, "padding only");
    }

    #[tokio::test]
    async fn unprotected_and_oversized_records_end_the_connection_at_their_header() {
        // A change_cipher_spec is tolerated during the handshake only.
        let (mut server, mut raw) = Raw::connect().await;
        raw.send(&[20, 3, 3, 0, 1, 1]).await;
        refused(next_read(&mut server).await, "unprotected");
        // The header alone is refused: the body is never waited for.
        let (mut server, mut raw) = Raw::connect().await;
        raw.send(&[23, 3, 3, 0x41, 0x01]).await;
        refused(next_read(&mut server).await, "record_overflow");
    }

    #[tokio::test]
    async fn a_key_update_split_across_records_changes_the_key_at_its_end() {
        let (mut server, mut raw) = Raw::connect().await;
        let mut bytes = raw.record(23, b"before", 0);
        bytes.extend(raw.record(22, &[24, 0, 0], 0));
        bytes.extend(raw.record(22, &[1, 0], 0));
        raw.send(&bytes).await;
        assert_eq!(next_read(&mut server).await.expect("read"), b"before");
        let mut small = [0u8; 16];
        assert_eq!(
            read_now(&mut server, &mut small),
            None,
            "the update is taken"
        );
        // The next record under the old key: the server moved on to the next one.
        let bytes = raw.record(23, b"old key", 0);
        raw.send(&bytes).await;
        refused(next_read(&mut server).await, "bad_record_mac");
        // A whole update and a record under the old key in one read (numbered as the new key's
        // first, so that only the key can refuse it): the key that opens the read's records
        // changes after the update's record, within the read.
        let (mut server, mut raw) = Raw::connect().await;
        let mut bytes = raw.record(22, &[24, 0, 0, 1, 0], 0);
        raw.seq = 0;
        bytes.extend(raw.record(23, b"old key", 0));
        raw.send(&bytes).await;
        refused(next_read(&mut server).await, "bad_record_mac");
    }

    /// Asked to, the server answers a key update with its own, under its old key, and seals
    /// with the next one from then on.
    #[tokio::test]
    async fn a_key_update_request_is_answered_before_the_next_data() {
        let (mut server, mut raw) = Raw::connect().await;
        let bytes = raw.record(22, &[24, 0, 0, 1, 1], 0);
        raw.send(&bytes).await;
        // The server's read takes the update and answers it; it reads no data meanwhile.
        let mut small = [0u8; 16];
        let answer = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            tokio::select! {
                answer = raw.open_next(5) => answer,
                read = server.read(&mut small) => panic!("the server read {read:?}"),
            }
        })
        .await
        .expect("no answer to the key update within 10 s");
        assert_eq!(answer.as_deref(), Some(&[24, 0, 0, 1, 0, 22][..]));
        server.write_all(b"after").await.expect("write");
        server.flush().await.expect("flush");
        assert_eq!(raw.open_next(5).await, None, "sealed under the next key");
    }

    #[tokio::test]
    async fn a_key_update_must_end_its_record_and_nothing_else_may_come_in_handshake_records() {
        let (mut server, mut raw) = Raw::connect().await;
        let bytes = raw.record(22, &[24, 0, 0, 1, 0, 24], 0);
        raw.send(&bytes).await;
        refused(next_read(&mut server).await, "before its record's end");
        // A ClientHello after the handshake: no renegotiation in TLS 1.3.
        let (mut server, mut raw) = Raw::connect().await;
        let bytes = raw.record(22, &[1, 0, 0, 4, 3, 3, 0, 0], 0);
        raw.send(&bytes).await;
        refused(next_read(&mut server).await, "type 1");
        // A key update begun, then application data.
        let (mut server, mut raw) = Raw::connect().await;
        let mut bytes = raw.record(22, &[24, 0], 0);
        bytes.extend(raw.record(23, b"data", 0));
        raw.send(&bytes).await;
        refused(next_read(&mut server).await, "between the parts");
    }

    #[tokio::test]
    async fn the_client_s_close_notify_ends_the_stream_and_nothing_after_it_is_read() {
        let (mut server, mut raw) = Raw::connect().await;
        let mut bytes = raw.record(23, b"last words", 0);
        bytes.extend(raw.record(21, &[1, 0], 0));
        bytes.extend(raw.record(23, b"after the end", 0));
        raw.send(&bytes).await;
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.expect("read to end");
        assert_eq!(got, b"last words");
    }

    #[tokio::test]
    async fn a_client_that_speaks_no_tls_is_refused_with_an_alert() {
        let (server, _) = configs();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut raw = TcpStream::connect(addr).await.expect("connect");
        let (tcp, _) = listener.accept().await.expect("accept");
        raw.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        let budget = Budget::new(1 << 30, 0);
        let tls = UnbufferedServerConnection::new(server).expect("connection");
        let refused = TlsSocket::handshake(tcp, tls, budget.charge(0)).await;
        let error = refused.expect_err("not TLS");
        assert_eq!(error.kind(), io::ErrorKind::InvalidData, "{error}");
        let mut answer = Vec::new();
        raw.read_to_end(&mut answer).await.expect("read");
        // A TLS alert record: content type 21.
        assert_eq!(answer.first(), Some(&21), "{answer:?}");
        // Nothing charged once the handshake is over.
        assert_eq!(budget.layers(), 0);
    }

    #[tokio::test]
    async fn a_client_closing_mid_handshake_is_an_end_not_a_hang() {
        let (server, _) = configs();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let raw = TcpStream::connect(addr).await.expect("connect");
        let (tcp, _) = listener.accept().await.expect("accept");
        drop(raw);
        let tls = UnbufferedServerConnection::new(server).expect("connection");
        let error = TlsSocket::handshake(tcp, tls, Budget::new(1 << 30, 0).charge(0))
            .await
            .expect_err("closed");
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof, "{error}");
    }
}
