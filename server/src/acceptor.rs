//! The door: binds the game port, admits connections under the session caps and spawns one
//! session task each. It never waits on a client: handshakes run inside the session, and
//! rejections run in their own small, bounded tasks.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use protocol::{Bye, ByeCode};
use socket2::{Domain, Protocol, SockRef, Socket, TcpKeepalive, Type};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::task::TaskTracker;

use crate::Shared;
use crate::config::TcpConfig;
use crate::metrics::Rejection;
use crate::session;

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
/// cannot fit. Returns the new soft limit.
pub fn raise_fd_limit(max_sessions: usize) -> Option<u64> {
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
    // Listeners, the admin port, the runtime and logging need a few descriptors of their own.
    let spare = 64;
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

/// Accepts until the drain starts.
pub(crate) async fn run(listener: TcpListener, shared: Arc<Shared>, sessions: &TaskTracker) {
    let limit = match shared.config.server.max_sessions {
        0 => Semaphore::MAX_PERMITS,
        n => n,
    };
    let slots = Arc::new(Semaphore::new(limit));
    let per_ip = PerIp::new(shared.config.server.max_sessions_per_ip);
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
        let admission = per_ip
            .admit(peer.ip())
            .ok_or(Rejection::PerIpLimit)
            .and_then(|ip| match slots.clone().try_acquire_owned() {
                Ok(permit) => Ok((ip, permit)),
                Err(_) => Err(Rejection::ServerFull),
            });
        match admission {
            Ok((ip, permit)) => {
                shared.metrics.sessions_accepted.inc();
                let admitted = Admitted::new(&shared, ip, permit);
                let shared = shared.clone();
                sessions.spawn(async move {
                    session::serve(shared, stream, peer).await;
                    drop(admitted);
                });
            }
            Err(rejection) => reject(stream, peer, rejection, &shared, &rejections),
        }
    }
    tracing::info!("stopped accepting");
}

fn reject(
    stream: TcpStream,
    peer: SocketAddr,
    rejection: Rejection,
    shared: &Arc<Shared>,
    slots: &Arc<Semaphore>,
) {
    shared
        .metrics
        .connections_rejected
        .with_label_values(&[rejection.as_str()])
        .inc();
    tracing::debug!(%peer, reason = rejection.as_str(), "connection rejected");
    let Ok(slot) = slots.clone().try_acquire_owned() else {
        // Too many rejections already in flight: close without ceremony.
        return;
    };
    let text = match rejection {
        Rejection::ServerFull => "the server is full; retry later",
        Rejection::PerIpLimit => "too many sessions from your address",
    };
    let shared = shared.clone();
    tokio::spawn(async move {
        session::reject(stream, Bye::new(ByeCode::ServerFull, text), shared).await;
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

/// Sessions per source address.
#[derive(Debug, Clone)]
struct PerIp {
    limit: usize,
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl PerIp {
    fn new(limit: usize) -> PerIp {
        PerIp {
            limit,
            counts: Arc::default(),
        }
    }

    fn admit(&self, ip: IpAddr) -> Option<IpSlot> {
        if self.limit == 0 {
            return Some(IpSlot(None));
        }
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let count = counts.entry(ip).or_insert(0);
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(IpSlot(Some((self.clone(), ip))))
    }
}

/// One admitted session's share of its address's limit, given back on drop.
#[derive(Debug)]
struct IpSlot(Option<(PerIp, IpAddr)>);

impl Drop for IpSlot {
    fn drop(&mut self) {
        if let Some((per_ip, ip)) = self.0.take() {
            let mut counts = per_ip.counts.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(count) = counts.get_mut(&ip) {
                *count -= 1;
                if *count == 0 {
                    counts.remove(&ip);
                }
            }
        }
    }
}

/// Everything an admitted session holds until its socket is closed: its slot under the global
/// cap, its slot under the per-address cap, and its place in the active gauge.
#[derive(Debug)]
struct Admitted {
    _ip: IpSlot,
    _permit: OwnedSemaphorePermit,
    active: prometheus::IntGauge,
}

impl Admitted {
    fn new(shared: &Shared, ip: IpSlot, permit: OwnedSemaphorePermit) -> Admitted {
        shared.metrics.sessions_active.inc();
        Admitted {
            _ip: ip,
            _permit: permit,
            active: shared.metrics.sessions_active.clone(),
        }
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.active.dec();
    }
}
