//! The door: binds the game port, admits connections under the session caps and spawns one
//! session task each. It never waits on a client: handshakes run inside the session, and
//! rejections run in their own small, bounded tasks.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use protocol::{Bye, ByeCode};
use socket2::{Domain, Protocol, SockRef, Socket, TcpKeepalive, Type};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use crate::Shared;
use crate::admission::SourceSlot;
use crate::budget;
use crate::close::CloseReason;
use crate::config::TcpConfig;
use crate::connection;
use crate::connection::{Opening, Transport};
use crate::logging::ABUSIVE;
use crate::metrics::{Rejection, transport};
use crate::proxy;
use crate::session::Ending;
use crate::tls::TlsSocket;
use crate::websocket;

/// Rejections in flight at once; past this, a rejected connection is closed without a `Bye`.
const MAX_CONCURRENT_REJECTIONS: usize = 256;
/// First and largest pause after an accept error that is about resources.
const BACKOFF_START: Duration = Duration::from_millis(5);
const BACKOFF_MAX: Duration = Duration::from_millis(500);

/// Binds a listener with SO_REUSEADDR and the given backlog (Tokio's own `bind` uses 1024, which
/// overflows under a reconnect storm).
pub fn bind(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(false)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    TcpListener::from_std(socket.into())
}

/// Raises the soft descriptor limit to the hard one, logs both, and warns when `max_sessions`
/// (plus `admin_connections` and a few descriptors of the server's own) cannot fit. Returns the
/// new soft limit.
pub fn raise_fd_limit(max_sessions: usize, admin_connections: usize) -> Option<u64> {
    let (soft, hard) = match rlimit::getrlimit(rlimit::Resource::NOFILE) {
        Ok(limits) => limits,
        Err(error) => {
            tracing::warn!(%error, "cannot read the descriptor limit");
            return None;
        }
    };
    let raised = match rlimit::setrlimit(rlimit::Resource::NOFILE, hard, hard) {
        Ok(()) => hard,
        Err(error) => {
            tracing::warn!(%error, soft, hard, "cannot raise the descriptor limit");
            soft
        }
    };
    tracing::info!(soft_before = soft, soft = raised, hard, "descriptor limit");
    // Listeners, the runtime and logging need a few descriptors of their own, and the admin
    // listener at most admin.max_connections.
    let spare = 64 + admin_connections as u64;
    let fits = usize::try_from(raised.saturating_sub(spare)).unwrap_or(usize::MAX);
    if max_sessions == 0 || max_sessions > fits {
        tracing::warn!(
            max_sessions,
            descriptor_limit = raised,
            "server.max_sessions cannot fit in the descriptor limit: past about {fits} sessions, \
             accept fails with EMFILE and the acceptor backs off instead of admitting players"
        );
    }
    Some(raised)
}

/// What a listener's connections speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Listener {
    /// The protocol's frames over TCP.
    Tcp,
    /// One frame per binary WebSocket message, after an HTTP upgrade.
    WebSocket,
}

impl Listener {
    /// The `transport` label.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Listener::Tcp => transport::TCP,
            Listener::WebSocket => transport::WEBSOCKET,
        }
    }

    /// The `transport` label over TLS.
    fn over_tls(self) -> &'static str {
        match self {
            Listener::Tcp => transport::TLS,
            Listener::WebSocket => transport::WSS,
        }
    }

    /// What a connection to this listener holds beyond a plain TCP one: the
    /// [`Transport::OVERHEAD`] of the transport it becomes.
    fn layer(self, tls: bool) -> u64 {
        let bytes = match (self, tls) {
            (Listener::Tcp, false) => 0,
            (Listener::Tcp, true) => TlsSocket::OVERHEAD,
            (Listener::WebSocket, false) => websocket::OVERHEAD,
            (Listener::WebSocket, true) => websocket::OVERHEAD + TlsSocket::OVERHEAD,
        };
        bytes as u64
    }
}

/// Accepts until the drain starts.
pub(crate) async fn run(
    listener: TcpListener,
    kind: Listener,
    shared: Arc<Shared>,
    sessions: &TaskTracker,
) {
    let slots = shared.slots.clone();
    let rejections = Arc::new(Semaphore::new(MAX_CONCURRENT_REJECTIONS));
    let mut backoff = Backoff::default();
    loop {
        let accepted = tokio::select! {
            () = shared.shutdown.draining() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                if died_before_accept(&error) {
                    tracing::debug!(%error, "connection died before accept");
                    continue;
                }
                let kind = resource_kind(&error);
                shared
                    .metrics
                    .accept_errors
                    .with_label_values(&[kind])
                    .inc();
                let pause = backoff.failed(&error, kind);
                tokio::select! {
                    () = shared.shutdown.draining() => break,
                    () = tokio::time::sleep(pause) => continue,
                }
            }
        };
        backoff.succeeded();
        configure(&stream, &shared.config.tcp);
        let proxy = &shared.config.net.proxy_protocol;
        if proxy.enabled() && proxy.trusts(peer.ip()) {
            // A balancer: whose connection it is comes with the PROXY header, and the
            // per-source checks wait for it. The global ones apply now.
            let layer = kind.layer(shared.tls.is_some());
            let admission = if !shared.budget.admits_connection(layer) {
                Err(Rejection::MemoryBudget)
            } else {
                slots
                    .clone()
                    .try_acquire_owned()
                    .map_err(|_| Rejection::ServerFull)
            };
            match admission {
                Ok(permit) => {
                    let shared = shared.clone();
                    let rejections = rejections.clone();
                    sessions.spawn(proxied(shared, stream, peer, permit, rejections, kind));
                }
                Err(rejection) => reject(
                    stream,
                    peer,
                    rejection,
                    &shared,
                    kind,
                    &rejections,
                    sessions,
                ),
            }
            continue;
        }
        // The per-source checks come first: they cost the least, and a source reconnecting in
        // a loop must not get as far as holding a slot.
        let admission = shared.admission.admit(peer.ip()).and_then(|source| {
            if !shared
                .budget
                .admits_connection(kind.layer(shared.tls.is_some()))
            {
                return Err(Rejection::MemoryBudget);
            }
            match slots.clone().try_acquire_owned() {
                Ok(permit) => Ok((source, permit)),
                Err(_) => Err(Rejection::ServerFull),
            }
        });
        match admission {
            Ok((source, permit)) => {
                let held = Held {
                    _source: source,
                    _permit: permit,
                };
                sessions.spawn(session(shared.clone(), stream, peer, held, kind));
            }
            Err(rejection) => reject(
                stream,
                peer,
                rejection,
                &shared,
                kind,
                &rejections,
                sessions,
            ),
        }
    }
    tracing::info!("stopped accepting");
}

/// A connection from a trusted balancer: reads its PROXY header within the handshake timeout,
/// then admits the client it names as if it had connected directly. A missing, malformed or
/// late header ends the session before it starts (`protocol_error`, `handshake_timeout`).
async fn proxied(
    shared: Arc<Shared>,
    mut stream: TcpStream,
    balancer: SocketAddr,
    permit: OwnedSemaphorePermit,
    rejections: Arc<Semaphore>,
    kind: Listener,
) {
    let accepted = Instant::now();
    let limit = shared.config.session.handshake_timeout;
    // Not yet active while its header is read: charged in full until then, as a connection in
    // its TLS handshake is.
    let reading = shared
        .budget
        .charge(budget::CONNECTION_ESTIMATE + kind.layer(shared.tls.is_some()));
    let header = tokio::time::timeout(limit, proxy::read_header(&mut stream)).await;
    drop(reading);
    let (peer, failed) = match header {
        Ok(Ok(source)) => {
            shared
                .metrics
                .proxy_headers
                .with_label_values(&["ok"])
                .inc();
            (source.unwrap_or(balancer), None)
        }
        Ok(Err(error)) => {
            shared
                .metrics
                .proxy_headers
                .with_label_values(&[error.result()])
                .inc();
            let detail = format!("from balancer {balancer}: {error}");
            (
                balancer,
                Some(Box::new(Ending::because(
                    CloseReason::ProtocolError,
                    detail,
                ))),
            )
        }
        Err(_) => {
            let detail = format!(
                "no complete PROXY header from balancer {balancer} within session.handshake_timeout"
            );
            (
                balancer,
                Some(Box::new(Ending::because(
                    CloseReason::HandshakeTimeout,
                    detail,
                ))),
            )
        }
    };
    let source = match failed {
        Some(_) => SourceSlot::none(),
        None => match shared.admission.admit(peer.ip()) {
            Ok(source) => source,
            Err(rejection) => {
                // The session slot goes back at once: a client reconnecting in a loop must not
                // hold slots through its rejections' lingering closes. The rejection itself is
                // bounded like the acceptor's.
                drop(permit);
                note_rejection(&shared, peer, rejection, rejection.explain());
                // Over TLS or WebSocket there is no channel to say Bye over yet (see `reject`).
                if kind != Listener::Tcp || shared.tls.is_some() {
                    return;
                }
                let Ok(slot) = rejections.try_acquire_owned() else {
                    return;
                };
                let bye = Bye::new(ByeCode::ServerFull, rejection.explain());
                connection::reject(stream, bye, shared).await;
                drop(slot);
                return;
            }
        },
    };
    let held = Held {
        _source: source,
        _permit: permit,
    };
    let opening = Opening { accepted, failed };
    if in_the_clear(&shared, kind, &opening) {
        let admitted = held.admit(&shared, kind.as_str());
        connection::serve_opened(shared, stream, peer, opening).await;
        drop(admitted);
    } else {
        Box::pin(open_layered(shared, stream, peer, held, opening, kind)).await;
    }
}

/// The task of an admitted connection: its session over what its listener speaks. A plain TCP
/// session, the common one, runs inline: what its task holds is most of what a held player
/// costs. TLS and WebSocket carry larger state of their own (a TLS connection, an upgrade) and
/// run boxed ([`open_layered`]), so that a plain session's task does not reserve room for it.
// Not an `async fn`: one keeps its arguments twice in its state, and this task's size is what
// every held player costs (80 bytes more, past an allocator size class; see
// `a_session_task_stays_small`).
#[allow(clippy::manual_async_fn)]
fn session(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    held: Held,
    kind: Listener,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    async move {
        let opening = if shared.config.net.proxy_protocol.enabled() {
            untrusted_header(&shared, &stream, peer).await
        } else {
            Opening::now()
        };
        if in_the_clear(&shared, kind, &opening) {
            let admitted = held.admit(&shared, kind.as_str());
            connection::serve_opened(shared, stream, peer, opening).await;
            drop(admitted);
        } else {
            Box::pin(open_layered(shared, stream, peer, held, opening, kind)).await;
        }
    }
}

/// Whether the session runs over the TCP connection as it is: the game port without TLS, or a
/// connection that already failed (a PROXY header refused), which is told so in the clear.
fn in_the_clear(shared: &Shared, kind: Listener, opening: &Opening) -> bool {
    kind == Listener::Tcp && (shared.tls.is_none() || opening.failed.is_some())
}

/// What the acceptor spawns for an admitted plain TCP connection, for the test that keeps a
/// held session's task small.
#[cfg(test)]
pub(crate) fn plain_session(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
) -> impl std::future::Future<Output = ()> {
    let held = Held {
        _source: SourceSlot::none(),
        _permit: shared
            .slots
            .clone()
            .try_acquire_owned()
            .expect("a free session slot"),
    };
    session(shared, stream, peer, held, Listener::Tcp)
}

/// [`session`] for a WebSocket or a TLS connection: the TLS handshake (when the server has TLS),
/// then the session. A TLS handshake that fails or does not complete within the handshake
/// timeout (counted from the accept) is a rejection, not a session: the client never spoke the
/// protocol, and there is no channel to say `Bye` over.
async fn open_layered(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    held: Held,
    opening: Opening,
    kind: Listener,
) {
    let tls = match &shared.tls {
        Some(tls) if opening.failed.is_none() => tls.clone(),
        // Only the WebSocket listener gets here without TLS or after a refused PROXY header
        // (see `in_the_clear`); there is no WebSocket yet to say why over.
        _ => {
            let admitted = held.admit(&shared, kind.as_str());
            if let Some(failed) = opening.failed {
                connection::report_unopened(
                    &shared,
                    kind.as_str(),
                    peer,
                    opening.accepted,
                    *failed,
                )
                .await;
                drop(admitted);
                return;
            }
            let charge = shared.budget.charge(kind.layer(false));
            websocket_session(shared, stream, peer, opening.accepted).await;
            drop((admitted, charge));
            return;
        }
    };
    // In its handshake the connection is not yet counted as active: it is charged in full.
    let layer = kind.layer(true);
    let mut charge = shared.budget.charge(budget::CONNECTION_ESTIMATE + layer);
    let deadline = opening.accepted + shared.config.session.handshake_timeout;
    let socket = match tls.accept(stream, deadline).await {
        Ok(socket) => socket,
        Err(failure) => {
            drop((held, charge));
            note_rejection(&shared, peer, Rejection::TlsHandshake, failure);
            return;
        }
    };
    let admitted = held.admit(&shared, kind.over_tls());
    charge.set(layer);
    match kind {
        Listener::Tcp => connection::serve_opened(shared, socket, peer, opening).await,
        Listener::WebSocket => websocket_session(shared, socket, peer, opening.accepted).await,
    }
    drop((admitted, charge));
}

/// A connection to the WebSocket listener: the HTTP upgrade within the handshake timeout, then
/// the session over the same connection, in WebSocket's framing. An upgrade that fails or never
/// comes ends the session as a failed handshake does (`protocol_error`, `handshake_timeout`),
/// without a `Bye`: there is no WebSocket to say it over; a refused one is answered in HTTP.
async fn websocket_session<S: Transport + AsyncRead + AsyncWrite + Unpin>(
    shared: Arc<Shared>,
    mut stream: S,
    peer: SocketAddr,
    accepted: Instant,
) {
    let deadline = accepted + shared.config.session.handshake_timeout;
    let mut buf = BytesMut::new();
    let ending =
        match tokio::time::timeout_at(deadline, websocket::upgrade(&mut stream, &mut buf)).await {
            Ok(Ok(())) => {
                connection::serve_upgraded(shared, stream, peer, accepted, buf).await;
                return;
            }
            Ok(Err(error)) => {
                // The answer saying why is written: FIN, and read what the client still sends for a
                // moment, so that its unread request does not turn the close into a reset.
                drop(buf);
                let linger_until = Instant::now() + shared.config.session.linger_timeout;
                let (mut read, mut write) = stream.split();
                let _ = connection::linger(
                    &mut read,
                    &mut write,
                    &mut BytesMut::new(),
                    Some(linger_until),
                    &shared.shutdown,
                    connection::LingerUntil::Eof,
                )
                .await;
                Ending::because(
                    CloseReason::ProtocolError,
                    format!("the WebSocket upgrade failed: {error}"),
                )
            }
            Err(_) => Ending::because(
                CloseReason::HandshakeTimeout,
                "no WebSocket upgrade within session.handshake_timeout",
            ),
        };
    connection::report_unopened(&shared, S::WEBSOCKET_NAME, peer, accepted, ending).await;
}

/// With PROXY protocol on, a connection from an address that is not a trusted balancer must not
/// start with a PROXY header: it would claim another client's address. Looks at the first byte
/// (without reading it) within the handshake timeout.
async fn untrusted_header(shared: &Shared, stream: &TcpStream, peer: SocketAddr) -> Opening {
    let accepted = Instant::now();
    let limit = shared.config.session.handshake_timeout;
    let mut first = [0u8; 1];
    let failed = match tokio::time::timeout(limit, stream.peek(&mut first)).await {
        Ok(Ok(n)) if proxy::looks_like_header(&first[..n]) => {
            shared
                .metrics
                .proxy_headers
                .with_label_values(&["untrusted"])
                .inc();
            Some(Box::new(Ending::because(
                CloseReason::ProtocolError,
                format!(
                    "a PROXY header from {peer}, which is not in net.proxy_protocol.trusted: \
                     refused"
                ),
            )))
        }
        // Whatever else comes (or does not) is the session's to judge, within the same deadline.
        _ => None,
    };
    Opening { accepted, failed }
}

/// Counts a rejection and logs it (a few lines a second at most: a source can cause them at
/// will).
fn note_rejection(
    shared: &Shared,
    peer: SocketAddr,
    rejection: Rejection,
    detail: impl std::fmt::Display,
) {
    shared
        .metrics
        .connections_rejected
        .with_label_values(&[rejection.as_str()])
        .inc();
    if shared.throttle.admit(rejection.as_str(), ABUSIVE) {
        tracing::info!(%peer, reason = rejection.as_str(), %detail, "connection rejected");
    }
}

/// Turns a connection away in a small task of its own, tracked with the sessions so that a
/// drain waits for it (and a forced shutdown cuts its lingering close short). Only a client that
/// speaks the protocol's frames from its first byte gets a `Bye`: before a TLS handshake or a
/// WebSocket upgrade there is no channel to say it over, and the connection is just closed.
fn reject(
    stream: TcpStream,
    peer: SocketAddr,
    rejection: Rejection,
    shared: &Arc<Shared>,
    kind: Listener,
    slots: &Arc<Semaphore>,
    tasks: &TaskTracker,
) {
    note_rejection(shared, peer, rejection, rejection.explain());
    if kind != Listener::Tcp || shared.tls.is_some() {
        return;
    }
    let Ok(slot) = slots.clone().try_acquire_owned() else {
        // Too many rejections already in flight: close without ceremony.
        return;
    };
    let shared = shared.clone();
    tasks.spawn(async move {
        let bye = Bye::new(ByeCode::ServerFull, rejection.explain());
        connection::reject(stream, bye, shared).await;
        drop(slot);
    });
}

/// Applies the per-connection socket options. A failure is logged, never fatal.
fn configure(stream: &TcpStream, tcp: &TcpConfig) {
    let socket = SockRef::from(stream);
    let keepalive = TcpKeepalive::new()
        .with_time(tcp.keepalive_idle)
        .with_interval(tcp.keepalive_interval)
        .with_retries(tcp.keepalive_count);
    let results = [
        ("TCP_NODELAY", socket.set_tcp_nodelay(tcp.nodelay)),
        ("SO_KEEPALIVE", socket.set_tcp_keepalive(&keepalive)),
        (
            "TCP_USER_TIMEOUT",
            socket.set_tcp_user_timeout((!tcp.user_timeout.is_zero()).then_some(tcp.user_timeout)),
        ),
    ];
    for (option, result) in results {
        if let Err(error) = result {
            tracing::debug!(option, %error, "cannot set socket option");
        }
    }
}

/// Errors that belong to one connection that was already gone: skip it and accept the next.
/// Linux passes pending network errors of the new socket through accept(2).
fn died_before_accept(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    ) || matches!(
        error.raw_os_error(),
        // EPERM (firewall), EPROTO, ENOPROTOOPT, EHOSTDOWN, ENONET, EHOSTUNREACH, EOPNOTSUPP,
        // ENETUNREACH, ENETDOWN
        Some(1 | 71 | 92 | 112 | 64 | 113 | 95 | 101 | 100)
    )
}

/// The `kind` label of an accept error that is not about one connection.
fn resource_kind(error: &io::Error) -> &'static str {
    match error.raw_os_error() {
        Some(24) => "emfile",
        Some(23) => "enfile",
        Some(105) => "enobufs",
        Some(12) => "enomem",
        _ => "other",
    }
}

/// Capped exponential backoff that logs once per burst of errors. A burst lasts until accepts
/// have gone [`QUIET`] without failing, so that a server flapping at its descriptor ceiling logs
/// one warning and one recovery, not a pair per freed descriptor.
#[derive(Debug, Default)]
struct Backoff {
    failures: u64,
    pause: Duration,
    last_failure: Option<tokio::time::Instant>,
    recovery_logged: bool,
}

/// How long accepts must go without failing before the next failure starts a new burst.
const QUIET: Duration = Duration::from_secs(10);

impl Backoff {
    fn failed(&mut self, error: &io::Error, kind: &str) -> Duration {
        let now = tokio::time::Instant::now();
        let new_burst = self
            .last_failure
            .is_none_or(|last| now.saturating_duration_since(last) > QUIET);
        if new_burst {
            tracing::warn!(%error, kind, "accept failing; backing off (logged once per burst)");
            self.failures = 0;
            self.recovery_logged = false;
            self.pause = BACKOFF_START;
        } else {
            self.pause = (self.pause * 2).clamp(BACKOFF_START, BACKOFF_MAX);
        }
        self.failures += 1;
        self.last_failure = Some(now);
        self.pause
    }

    fn succeeded(&mut self) {
        if self.failures > 0 && !self.recovery_logged {
            tracing::info!(failures = self.failures, "accepting again");
            self.recovery_logged = true;
        }
    }
}

/// What an admitted connection holds before it is a session (through its TLS handshake): its
/// slot under the global cap and its share of its source's cap.
#[derive(Debug)]
struct Held {
    _source: SourceSlot,
    _permit: OwnedSemaphorePermit,
}

impl Held {
    /// The connection is a session over `transport`: counted as accepted and active.
    fn admit(self, shared: &Shared, transport: &'static str) -> Admitted {
        shared
            .metrics
            .sessions_accepted
            .with_label_values(&[transport])
            .inc();
        shared.metrics.sessions_active.inc();
        Admitted {
            _held: self,
            active: shared.metrics.sessions_active.clone(),
        }
    }
}

/// Everything a session holds until its socket is closed: its slots, and its place in the
/// active gauge.
#[derive(Debug)]
struct Admitted {
    _held: Held,
    active: prometheus::IntGauge,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.active.dec();
    }
}
