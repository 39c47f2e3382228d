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
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use crate::close::{CloseReason, Ending};
use crate::config::TcpConfig;
use crate::logging::ABUSIVE;
use crate::memory::budget;
use crate::session::Sessions;
use crate::session::driver as connection;
use crate::session::driver::Opening;
use crate::transport::admission::SourceSlot;
use crate::transport::labels::{AcceptError, ProxyResult, Rejection, TransportName};
use crate::transport::proxy;
use crate::transport::slots::Slot;
use crate::transport::stream::Transport;
use crate::transport::tls::TlsSocket;
use crate::transport::websocket;

/// Rejections in flight at once; past this, a rejected connection is closed without a `Bye`.
pub(crate) const MAX_CONCURRENT_REJECTIONS: usize = 256;
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

/// What the door uses, and nothing else: the socket options, the PROXY protocol's trusted
/// balancers, the handshake and linger timeouts, admission per source, the session slots, the
/// memory budget, TLS, its metrics and log throttle, its bound on rejections in flight, the
/// drain, and the sessions it hands connections to. One per server, shared by its listeners.
#[derive(Debug)]
pub(crate) struct Door {
    pub(crate) tcp: TcpConfig,
    pub(crate) proxy: crate::config::ProxyProtocolConfig,
    pub(crate) handshake_timeout: Duration,
    pub(crate) linger_timeout: Duration,
    pub(crate) admission: Arc<crate::transport::admission::Admission>,
    pub(crate) slots: Arc<crate::transport::slots::Slots>,
    pub(crate) budget: Arc<crate::memory::budget::Budget>,
    pub(crate) tls: Option<Arc<crate::transport::tls::Tls>>,
    pub(crate) metrics: crate::ops::metrics::Metrics,
    pub(crate) throttle: crate::logging::Throttle,
    /// Turns for connections being told they are refused (a `Bye` and a lingering close).
    pub(crate) rejections: Arc<Semaphore>,
    pub(crate) shutdown: crate::shutdown::Shutdown,
    pub(crate) sessions: Arc<Sessions>,
    /// The session tasks, which the drain waits for.
    pub(crate) tasks: TaskTracker,
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
    door: Arc<Door>,
    sessions: &TaskTracker,
) {
    let rejections = door.rejections.clone();
    let mut backoff = Backoff::default();
    loop {
        let accepted = tokio::select! {
            () = door.shutdown.draining() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                if died_before_accept(&error) {
                    tracing::debug!(%error, "connection died before accept");
                    continue;
                }
                let kind = AcceptError::of(&error);
                door.metrics.transport.accept_error(kind);
                let pause = backoff.failed(&error, kind.as_str());
                tokio::select! {
                    () = door.shutdown.draining() => break,
                    () = tokio::time::sleep(pause) => continue,
                }
            }
        };
        backoff.succeeded();
        configure(&stream, &door.tcp);
        let proxy = &door.proxy;
        // A balancer's connection says whose it is in its PROXY header: the per-source checks
        // wait for it. Everyone else's are checked now, first: they cost the least, and a source
        // reconnecting in a loop must not get as far as holding a slot.
        let balancer = proxy.enabled() && proxy.trusts(peer.ip());
        let source = match balancer {
            true => Ok(SourceSlot::none()),
            false => door.admission.admit(peer.ip()),
        };
        let admission = source.and_then(|source| {
            if !door
                .budget
                .admits_connection(kind.layer(door.tls.is_some()))
            {
                return Err(Rejection::MemoryBudget);
            }
            match door.slots.acquire() {
                Some(pending) => Ok(Held {
                    source,
                    slot: Slot::Pending(pending),
                }),
                None => Err(Rejection::ServerFull),
            }
        });
        match admission {
            Ok(held) => {
                if kind == Listener::Tcp && door.tls.is_none() && !door.proxy.enabled() {
                    sessions.spawn(plain(door.clone(), stream, peer, held));
                } else {
                    sessions.spawn(layered(door.clone(), stream, peer, held, kind));
                }
            }
            Err(rejection) => reject(stream, peer, rejection, &door, kind, &rejections, sessions),
        }
    }
    tracing::info!("stopped accepting");
}

/// The task of an admitted plain TCP connection, the common one: its session itself. What this
/// task holds is most of what a held player costs, so the session's future is made here, not
/// awaited inside another future that would keep this function's arguments beside it.
fn plain(
    door: Arc<Door>,
    stream: TcpStream,
    peer: SocketAddr,
    held: Held,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let Held { source, slot } = held;
    let admitted = Admitted::new(&door, TransportName::Tcp, source);
    let start = connection::Start::new(stream, peer, Opening::now(slot));
    connection::serve_opened(door.sessions.clone(), start, admitted)
}

/// The task of an admitted connection with layers before its session (a PROXY header, TLS, a
/// WebSocket upgrade): the layers, then the session's own task. The layers carry larger state
/// than a session, and this task ends when they are done: a session held inside it would keep
/// their room on top of its own.
async fn layered(door: Arc<Door>, stream: TcpStream, peer: SocketAddr, held: Held, kind: Listener) {
    let Some(opened) = open(&door, stream, peer, held, kind).await else {
        return;
    };
    let sessions = door.sessions.clone();
    let tasks = door.tasks.clone();
    drop(door);
    let Opened {
        channel,
        peer,
        admitted,
        charge,
        opening,
        websocket,
    } = opened;
    // The admission and the layer's charge go with the session, until its socket is closed.
    let held = (admitted, charge);
    match channel {
        Channel::Tcp(stream) => {
            let start = connection::Start::layered(stream, peer, opening, websocket);
            tasks.spawn(connection::serve_opened(sessions, start, held));
        }
        Channel::Tls(socket) => {
            let start = connection::Start::layered(socket, peer, opening, websocket);
            tasks.spawn(connection::serve_opened(sessions, start, held));
        }
    }
}

/// What the connection's session runs over.
// Lives only in the layers' task, until the session over it has a task of its own.
#[allow(clippy::large_enum_variant)]
enum Channel {
    Tcp(TcpStream),
    Tls(TlsSocket),
}

/// A connection through its layers, ready for its session.
struct Opened {
    channel: Channel,
    /// The client: the connection's peer, or the one its balancer's PROXY header named.
    peer: SocketAddr,
    admitted: Admitted,
    /// What its layers hold (TLS, WebSocket), charged to the memory budget until it closes.
    charge: budget::Charge,
    opening: Opening,
    /// Upgraded to WebSocket: what the client sent after its upgrade request.
    websocket: Option<BytesMut>,
}

/// The layers before the session, each within the handshake deadline (counted from the accept)
/// and each given up when the connection's slot goes to a newcomer (see [`crate::transport::slots`]):
///
/// 1. a trusted balancer's PROXY header, read exactly; the client it names is admitted as if it
///    had connected directly. From anyone else a header is refused.
/// 2. the TLS handshake, when the server has TLS.
/// 3. the WebSocket upgrade, on the WebSocket listener.
///
/// A connection becomes a session when the protocol can be spoken over it: after its last
/// layer. One that fails before is a rejection (`proxy_header`, `tls_handshake`,
/// `websocket_upgrade`, or the door's own when the client a balancer names is over its limits
/// or the slot went to a newcomer), told why with a `Bye` only where frames can already be
/// read: on the plain game port.
async fn open(
    door: &Arc<Door>,
    mut stream: TcpStream,
    mut peer: SocketAddr,
    held: Held,
    kind: Listener,
) -> Option<Opened> {
    let accepted = Instant::now();
    let deadline = accepted + door.handshake_timeout;
    let Held { mut source, slot } = held;
    let evicted = slot.evicted();
    tokio::pin!(evicted);
    // Not yet a session: charged as one until it is one. In its TLS handshake the connection
    // holds what the client sent (charged as it arrives, see `Tls::accept`), not yet a TLS
    // session's buffers.
    let layer = kind.layer(door.tls.is_some());
    let handshaking = match door.tls {
        Some(_) => 0,
        None => layer,
    };
    let mut charge = door
        .budget
        .charge(budget::CONNECTION_ESTIMATE + handshaking);
    let in_the_clear = kind == Listener::Tcp && door.tls.is_none();
    // A refusal: counted, logged, and over the plain game port told with a Bye.
    let refuse = |stream: Option<TcpStream>, peer, rejection: Rejection, detail: &str, bye| {
        note_rejection(door, peer, rejection, detail);
        if let (Some(stream), Some(code), true) = (stream, bye, in_the_clear) {
            say_bye(stream, Bye::new(code, detail), door);
        }
        None
    };
    let proxy = &door.proxy;
    let mut failed = None;
    if proxy.enabled() && proxy.trusts(peer.ip()) {
        let header = tokio::select! {
            header = tokio::time::timeout_at(deadline, proxy::read_header(&mut stream)) => header,
            () = &mut evicted => {
                let why = "the server needed the slot for a newer connection";
                return refuse(Some(stream), peer, Rejection::ServerFull, why, Some(ByeCode::ServerFull));
            }
        };
        match header {
            Ok(Ok(named)) => {
                door.metrics.transport.proxy_header(ProxyResult::Ok);
                peer = named.unwrap_or(peer);
                match door.admission.admit(peer.ip()) {
                    Ok(admitted) => source = admitted,
                    Err(rejection) => {
                        // The slot goes back at once: a client reconnecting in a loop must not
                        // hold slots through its rejections' lingering closes.
                        drop(slot);
                        let why = rejection.explain();
                        return refuse(
                            Some(stream),
                            peer,
                            rejection,
                            why,
                            Some(ByeCode::ServerFull),
                        );
                    }
                }
            }
            Ok(Err(error)) => {
                door.metrics.transport.proxy_header(error.result());
                let detail = format!("from balancer {peer}: {error}");
                return refuse(
                    Some(stream),
                    peer,
                    Rejection::ProxyHeader,
                    &detail,
                    Some(ByeCode::ProtocolError),
                );
            }
            Err(_) => {
                let detail = format!(
                    "no complete PROXY header from balancer {peer} within session.handshake_timeout"
                );
                return refuse(
                    Some(stream),
                    peer,
                    Rejection::ProxyHeader,
                    &detail,
                    Some(ByeCode::HandshakeTimeout),
                );
            }
        }
    } else if proxy.enabled() && untrusted_header(&stream, deadline).await {
        door.metrics.transport.proxy_header(ProxyResult::Untrusted);
        let detail = format!(
            "a PROXY header from {peer}, which is not in net.proxy_protocol.trusted: refused"
        );
        if !in_the_clear {
            return refuse(Some(stream), peer, Rejection::ProxyHeader, &detail, None);
        }
        // On the plain game port the protocol is spoken from the first byte: a header where the
        // Hello belongs is the session's protocol error.
        failed = Some(Box::new(Ending::because(
            CloseReason::ProtocolError,
            detail,
        )));
    }
    let mut channel = match &door.tls {
        None => Channel::Tcp(stream),
        Some(tls) => {
            let handshake = tokio::select! {
                handshake = tls.accept(stream, deadline, &door.budget) => handshake,
                () = &mut evicted => {
                    let why = "the server needed the slot for a newer connection";
                    return refuse(None, peer, Rejection::ServerFull, why, None);
                }
            };
            match handshake {
                Ok(socket) => {
                    charge.set(budget::CONNECTION_ESTIMATE + layer);
                    Channel::Tls(socket)
                }
                Err(failure) => {
                    let detail = failure.to_string();
                    return refuse(None, peer, Rejection::TlsHandshake, &detail, None);
                }
            }
        }
    };
    let websocket = match kind {
        Listener::Tcp => None,
        Listener::WebSocket => {
            let upgrade = tokio::select! {
                upgrade = upgrade(door, &mut channel, deadline) => upgrade,
                () = &mut evicted => Err("the server needed the slot for a newer connection".into()),
            };
            match upgrade {
                Ok(buffered) => Some(buffered),
                Err(detail) => {
                    return refuse(None, peer, Rejection::WebSocketUpgrade, &detail, None);
                }
            }
        }
    };
    let name = match (&channel, &websocket) {
        (Channel::Tcp(_), None) => TransportName::Tcp,
        (Channel::Tls(_), None) => TransportName::Tls,
        (Channel::Tcp(_), Some(_)) => TransportName::WebSocket,
        (Channel::Tls(_), Some(_)) => TransportName::Wss,
    };
    let admitted = Admitted::new(door, name, source);
    // Active now, so counted as a connection: only its layer stays charged.
    charge.set(layer);
    Some(Opened {
        channel,
        peer,
        admitted,
        charge,
        opening: Opening {
            accepted,
            failed,
            slot,
        },
        websocket,
    })
}

/// The WebSocket upgrade over `channel`, until `deadline`: what the client sent after its
/// request, or why there is no WebSocket (the client was answered in HTTP where it could be).
async fn upgrade(
    door: &Door,
    channel: &mut Channel,
    deadline: Instant,
) -> Result<BytesMut, String> {
    match channel {
        Channel::Tcp(stream) => upgrade_over(door, stream, deadline).await,
        Channel::Tls(socket) => upgrade_over(door, socket, deadline).await,
    }
}

async fn upgrade_over<S: Transport + AsyncRead + AsyncWrite + Unpin>(
    door: &Door,
    stream: &mut S,
    deadline: Instant,
) -> Result<BytesMut, String> {
    let mut buffered = BytesMut::new();
    match tokio::time::timeout_at(deadline, websocket::upgrade(stream, &mut buffered)).await {
        Ok(Ok(())) => Ok(buffered),
        Ok(Err(error)) => {
            // The answer saying why is written: FIN, and read what the client still sends for a
            // moment, so that its unread request does not turn the close into a reset.
            let until = Instant::now() + door.linger_timeout;
            let (mut read, mut write) = stream.split();
            let _ = connection::linger(
                &mut read,
                &mut write,
                &mut BytesMut::new(),
                Some(until),
                &door.shutdown,
                connection::LingerUntil::Eof,
            )
            .await;
            Err(format!("the WebSocket upgrade failed: {error}"))
        }
        Err(_) => Err("no WebSocket upgrade within session.handshake_timeout".to_owned()),
    }
}

/// What the acceptor spawns for an admitted plain TCP connection (a door on the defaults in
/// front of `sessions`), for the test that keeps a held session's task small.
#[cfg(test)]
pub(crate) fn plain_session(
    sessions: Arc<Sessions>,
    stream: TcpStream,
    peer: SocketAddr,
) -> impl std::future::Future<Output = ()> {
    let config = crate::config::Config::default();
    let door = Arc::new(Door {
        tcp: config.tcp.clone(),
        proxy: config.net.proxy_protocol.clone(),
        handshake_timeout: config.session.handshake_timeout,
        linger_timeout: config.session.linger_timeout,
        admission: sessions.admission.clone(),
        slots: crate::transport::slots::Slots::new(1),
        budget: sessions.budget.clone(),
        tls: None,
        metrics: crate::ops::metrics::Metrics::new().expect("metrics"),
        throttle: sessions.throttle.clone(),
        rejections: Arc::new(Semaphore::new(1)),
        shutdown: sessions.shutdown.clone(),
        sessions,
        tasks: TaskTracker::new(),
    });
    let held = Held {
        source: SourceSlot::none(),
        slot: Slot::Pending(door.slots.acquire().expect("a free session slot")),
    };
    plain(door, stream, peer, held)
}

/// With PROXY protocol on, a connection from an address that is not a trusted balancer must not
/// start with a PROXY header: it would claim another client's address. Looks at the first byte
/// (without reading it) until `deadline`; whatever else comes (or does not) is for the next
/// layer to judge, within the same deadline.
async fn untrusted_header(stream: &TcpStream, deadline: Instant) -> bool {
    let mut first = [0u8; 1];
    matches!(
        tokio::time::timeout_at(deadline, stream.peek(&mut first)).await,
        Ok(Ok(n)) if proxy::looks_like_header(&first[..n])
    )
}

/// Counts a rejection and logs it (a few lines a second at most: a source can cause them at
/// will).
fn note_rejection(
    door: &Door,
    peer: SocketAddr,
    rejection: Rejection,
    detail: impl std::fmt::Display,
) {
    door.metrics.transport.rejected(rejection);
    if door.throttle.admit(rejection.as_str(), ABUSIVE) {
        tracing::info!(%peer, reason = rejection.as_str(), %detail, "connection rejected");
    }
}

/// Turns a connection away at the door, in a small task of its own, tracked with the sessions
/// so that a drain waits for it (and a forced shutdown cuts its lingering close short). Only a
/// client that speaks the protocol's frames from its first byte gets a `Bye`: before a TLS
/// handshake or a WebSocket upgrade there is no channel to say it over, and the connection is
/// just closed.
fn reject(
    stream: TcpStream,
    peer: SocketAddr,
    rejection: Rejection,
    door: &Arc<Door>,
    kind: Listener,
    rejections: &Arc<Semaphore>,
    tasks: &TaskTracker,
) {
    note_rejection(door, peer, rejection, rejection.explain());
    if kind != Listener::Tcp || door.tls.is_some() {
        return;
    }
    let Ok(turn) = rejections.clone().try_acquire_owned() else {
        // Too many rejections already in flight: close without ceremony.
        return;
    };
    let door = door.clone();
    tasks.spawn(async move {
        let bye = Bye::new(ByeCode::ServerFull, rejection.explain());
        connection::reject(stream, bye, door.linger_timeout, &door.shutdown).await;
        drop(turn);
    });
}

/// Tells a client refused after the door why, with a `Bye` and a lingering close, within the
/// bound on rejections in flight (past it the connection is just closed).
fn say_bye(stream: TcpStream, bye: Bye, door: &Arc<Door>) {
    let Ok(turn) = door.rejections.clone().try_acquire_owned() else {
        return;
    };
    let door = door.clone();
    tokio::spawn(async move {
        connection::reject(stream, bye, door.linger_timeout, &door.shutdown).await;
        drop(turn);
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

/// What an admitted connection holds before it is a session: its share of its source's cap, and
/// its slot under the global cap (see [`crate::transport::slots`]).
#[derive(Debug)]
struct Held {
    source: SourceSlot,
    slot: Slot,
}

/// What a session holds in its task until its socket is closed: its share of its source's cap,
/// and its place in the active gauge. (Its slot is the session's own: see [`crate::transport::slots`].)
#[derive(Debug)]
struct Admitted {
    _source: SourceSlot,
    active: prometheus::IntGauge,
    /// Its transport's share of the active gauge.
    over: prometheus::IntGauge,
}

impl Admitted {
    /// The connection is a session over `transport`: counted as accepted and active.
    fn new(door: &Door, transport: TransportName, source: SourceSlot) -> Admitted {
        door.metrics.transport.session_accepted(transport);
        door.metrics.sessions_active.inc();
        let over = door.metrics.transport.active(transport);
        over.inc();
        Admitted {
            _source: source,
            active: door.metrics.sessions_active.clone(),
            over,
        }
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.active.dec();
        self.over.dec();
    }
}
