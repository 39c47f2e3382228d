//! A disconnect-aware game server: it notices every way a player's TCP connection can die,
//! closes it without losing data, and tells operators why each session ended.
//!
//! Data flows one way:
//!
//! ```text
//! acceptor -> session (codec + watchdog) -> reaper -> metrics / game hook
//!                 ^                                        |
//!                 +----------- outbound queue <------------+
//! ```
//!
//! [`run`] takes bound listeners, the configuration, the game and a [`Shutdown`] handle, so that
//! tests bind port 0 and read the port back.

pub mod acceptor;
mod admin;
pub mod admission;
#[cfg(feature = "agones")]
mod agones;
pub mod app;
pub mod auth;
pub mod budget;
pub mod close;
pub mod closes;
pub mod config;
mod connection;
pub mod game;
pub mod logging;
pub mod metrics;
mod outbound;
mod proxy;
mod reader;
pub mod reaper;
pub mod registry;
pub mod resume;
pub mod rooms;
mod session;
pub mod shutdown;
mod slots;
pub mod stall;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
mod tls;
pub mod watchdog;
mod websocket;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;

pub use crate::app::App;
pub use crate::close::CloseReason;
pub use crate::config::Config;
pub use crate::connection::{Duplex, Peek, Transport};
pub use crate::game::{Game, GameConfig, Leave, Player, Refusal, Room, RoomContext};
pub use crate::shutdown::Shutdown;

use crate::admission::{Admission, SourceLimits};
use crate::auth::Authenticator;
use crate::budget::Budget;
use crate::logging::Throttle;
use crate::metrics::{Metrics, TrafficCounters};
use crate::reaper::SessionEnd;
use crate::registry::Registry;
use crate::rooms::{Directory, DirectoryLimits};
use crate::stall::Stalls;

/// What every session task shares.
pub(crate) struct Shared {
    config: Config,
    metrics: Metrics,
    traffic: TrafficCounters,
    registry: Arc<Registry>,
    rooms: Arc<Directory>,
    auth: Option<Authenticator>,
    parking: Arc<resume::Parking>,
    admission: Arc<Admission>,
    budget: Arc<Budget>,
    stalls: Stalls,
    throttle: Throttle,
    shutdown: Shutdown,
    reaper: mpsc::Sender<SessionEnd>,
    next_session_id: AtomicU64,
    /// TLS on the game and WebSocket ports, when configured.
    tls: Option<Arc<tls::Tls>>,
    /// Session slots under `server.max_sessions`, shared by every listener.
    slots: Arc<slots::Slots>,
    /// Turns for connections being told they are refused (a `Bye` and a lingering close).
    rejections: Arc<tokio::sync::Semaphore>,
}

/// After a drain, how long the admin listener still answers once the last close is recorded.
pub const FINAL_READ_GRACE: Duration = Duration::from_secs(1);

/// Session ends waiting for the reaper; past this, ending sessions wait their turn.
const REAPER_QUEUE: usize = 4096;

impl Shared {
    fn next_session_id(&self) -> u64 {
        self.next_session_id.fetch_add(1, Ordering::Relaxed)
    }

    async fn report(&self, end: SessionEnd) {
        // The reaper outlives every session; a send can only fail if it panicked.
        if let Err(lost) = self.reaper.send(end).await {
            tracing::error!(
                session = lost.0.session_id,
                "reaper is gone; close not recorded"
            );
        }
    }
}

/// Runs the server until `shutdown` drains it and every session has closed (or the drain timeout
/// forced the rest), then stops the admin listener. Returns an error only for failures at start.
pub async fn run<G: Game>(
    listener: TcpListener,
    admin: TcpListener,
    config: Config,
    game: Arc<G>,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let server = Server::start(admin, config, game, shutdown).await?;
    tracing::info!(
        game = %listener.local_addr()?,
        admin = %server.admin_addr,
        "serving"
    );
    server.serve(listener).await
}

/// A server whose shared state and side tasks are running, ready to take connections from a
/// listener ([`Server::serve`]) or one at a time ([`Server::connect`], for tests over in-memory
/// transports).
pub struct Server {
    shared: Arc<Shared>,
    admin_addr: std::net::SocketAddr,
    tasks: SideTasks,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("admin", &self.admin_addr)
            .finish_non_exhaustive()
    }
}

struct SideTasks {
    reaper: tokio::task::JoinHandle<()>,
    budget: tokio::task::JoinHandle<()>,
    stall_clock: tokio::task::JoinHandle<()>,
    stop_admin: tokio_util::sync::CancellationToken,
    admin: tokio::task::JoinHandle<std::io::Result<()>>,
    sessions: TaskTracker,
}

impl Server {
    /// Starts everything but the game listener: metrics, the reaper, the budget, the stall
    /// clock, the admin listener and the room directory.
    pub async fn start<G: Game>(
        admin: TcpListener,
        config: Config,
        game: Arc<G>,
        shutdown: Shutdown,
    ) -> anyhow::Result<Server> {
        Server::start_with(admin, config, game, shutdown, admin::Pages::default()).await
    }

    /// [`Server::start`], the admin listener also serving the game's pages ([`App::page`]).
    pub(crate) async fn start_with<G: Game>(
        admin: TcpListener,
        config: Config,
        game: Arc<G>,
        shutdown: Shutdown,
        pages: admin::Pages,
    ) -> anyhow::Result<Server> {
        let metrics = Metrics::new()?;
        let tls = tls::Tls::from_config(&config.tls)
            .map_err(|problems| {
                let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
                anyhow::anyhow!("cannot use the TLS certificate:\n  {}", lines.join("\n  "))
            })?
            .map(Arc::new);
        let baseline = budget::resident_bytes();
        let registry = Arc::new(Registry::default());
        let (reaper_tx, reaper_rx) = mpsc::channel(REAPER_QUEUE);
        let auth = match config.auth.mode {
            config::AuthMode::None => None,
            config::AuthMode::Hmac => Some(
                Authenticator::new(config.auth.secret.as_bytes(), config.auth.max_ttl)
                    .for_instance(&config.auth.audience),
            ),
        };
        let admin_token = config.admin.bearer_token();
        if !config.admin.listen.ip().is_loopback() {
            tracing::warn!(
                admin = %admin.local_addr()?,
                "the admin listener is off loopback: every request but /healthz and /readyz needs \
                 the bearer token; keep the port off the internet all the same"
            );
        }
        let admin_addr = admin.local_addr()?;
        let throttle = Throttle::new(metrics.log_lines_suppressed.clone());
        let stalls = Stalls::new(Some(metrics.server_stall.clone()));
        let stall_clock = tokio::spawn(stall::watch(stalls.clone()));
        let parking = resume::Parking::new(
            config.session.resume_grace,
            resume::ParkingLimits {
                max_parked: config.session.max_parked,
                max_bytes: config.session.max_parked_bytes,
                per_source: config.server.max_sessions_per_source,
            },
            metrics.clone(),
            throttle.clone(),
        );
        let rooms = Directory::new(
            game,
            DirectoryLimits {
                max_rooms: config.rooms.max_rooms,
                auto_room_capacity: config.rooms.auto_room_capacity,
                tick_rate_hz: config.rooms.tick_rate_hz,
                queue: config.rooms.queue,
            },
            metrics.rooms_active.clone(),
        );
        // A room held only by parked sessions gives way to a newcomer at rooms.max_rooms: the
        // parking lot ends its sessions. (Weak: the parked players hold the directory.)
        let reclaiming = Arc::downgrade(&parking);
        rooms.set_reclaimer(Box::new(move |name, generation| {
            if let Some(parking) = reclaiming.upgrade() {
                parking.evict_room(name, generation);
            }
        }));
        let budget = Budget::new(config.server.memory_budget, baseline);
        let budget_task = tokio::spawn(budget::watch(
            budget.clone(),
            registry.clone(),
            parking.clone(),
            metrics.clone(),
        ));
        let closes = closes::Closes::new(closes::CLOSES_KEPT);
        let reaper = tokio::spawn(reaper::run(
            reaper_rx,
            metrics.clone(),
            registry.clone(),
            closes.clone(),
            throttle.clone(),
        ));
        let stop_admin = tokio_util::sync::CancellationToken::new();
        let admin_task = tokio::spawn(admin::serve(
            admin,
            metrics.clone(),
            registry.clone(),
            closes,
            shutdown.clone(),
            admin::Settings {
                token: admin_token,
                max_connections: config.admin.max_connections,
                header_read_timeout: config.admin.header_read_timeout,
                loopback_reads: config.admin.loopback_reads,
                pages,
            },
            stop_admin.clone(),
        ));
        let shared = Arc::new(Shared {
            parking,
            traffic: TrafficCounters::new(&metrics),
            metrics: metrics.clone(),
            registry,
            rooms,
            auth,
            admission: Admission::new(SourceLimits::from_config(&config)),
            budget,
            stalls,
            throttle,
            shutdown: shutdown.clone(),
            reaper: reaper_tx,
            next_session_id: AtomicU64::new(1),
            tls,
            slots: slots::Slots::new(config.server.max_sessions),
            rejections: Arc::new(tokio::sync::Semaphore::new(
                acceptor::MAX_CONCURRENT_REJECTIONS,
            )),
            config,
        });
        metrics.ready.set(1);
        Ok(Server {
            shared,
            admin_addr,
            tasks: SideTasks {
                reaper,
                budget: budget_task,
                stall_clock,
                stop_admin,
                admin: admin_task,
                sessions: TaskTracker::new(),
            },
        })
    }

    /// The admin listener's address.
    pub fn admin_addr(&self) -> std::net::SocketAddr {
        self.admin_addr
    }

    /// Reloads the TLS certificate on every SIGHUP (and otherwise ignores it), for as long as
    /// the returned task runs.
    pub(crate) fn reload_on_hangup(&self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(tls::reload_on_hangup(
            self.shared.tls.clone(),
            self.shared.metrics.clone(),
        ))
    }

    /// The server's metrics.
    #[cfg(feature = "agones")]
    pub(crate) fn metrics(&self) -> Metrics {
        self.shared.metrics.clone()
    }

    /// Whether the reaper, which records every close, still runs.
    #[cfg(feature = "agones")]
    pub(crate) fn reaper(&self) -> tokio::task::AbortHandle {
        self.tasks.reaper.abort_handle()
    }

    /// A way to hand this server connections over any transport, as the acceptor does for
    /// TCP but without the admission checks: for tests over `tokio::io::duplex` with a paused
    /// clock. Drop every connector before the server drains: each keeps it alive.
    pub fn connector(&self) -> Connector {
        Connector {
            shared: self.shared.clone(),
            sessions: self.tasks.sessions.clone(),
        }
    }

    /// Waits for the drain without a listener (the sessions came through [`Server::connect`]),
    /// then drains and stops like [`Server::serve`].
    pub async fn until_drained(self) {
        let shutdown = self.shared.shutdown.clone();
        shutdown.draining().await;
        let Server { shared, tasks, .. } = self;
        let metrics = shared.metrics.clone();
        let parking = shared.parking.clone();
        let rooms = shared.rooms.clone();
        let drain_timeout = shared.config.shutdown.drain_timeout;
        drop(shared);
        tasks
            .finish(metrics, shutdown, parking, rooms, drain_timeout)
            .await;
    }

    /// Accepts until the drain starts, then drains the sessions (at most
    /// `shutdown.drain_timeout`, then they are closed by force) and stops everything.
    pub async fn serve(self, listener: TcpListener) -> anyhow::Result<()> {
        self.serve_with(listener, None).await
    }

    /// [`Server::serve`], with a WebSocket listener beside the TCP one when given.
    pub async fn serve_with(
        self,
        listener: TcpListener,
        websocket: Option<TcpListener>,
    ) -> anyhow::Result<()> {
        let Server {
            shared,
            admin_addr: _,
            tasks,
        } = self;
        let metrics = shared.metrics.clone();
        let shutdown = shared.shutdown.clone();
        let parking = shared.parking.clone();
        let rooms = shared.rooms.clone();
        let drain_timeout = shared.config.shutdown.drain_timeout;
        let tcp = acceptor::run(
            listener,
            acceptor::Listener::Tcp,
            shared.clone(),
            &tasks.sessions,
        );
        match websocket {
            Some(websocket) => {
                let ws = acceptor::run(
                    websocket,
                    acceptor::Listener::WebSocket,
                    shared.clone(),
                    &tasks.sessions,
                );
                tokio::join!(tcp, ws);
            }
            None => tcp.await,
        }
        metrics.ready.set(0);
        drop(shared);
        tasks
            .finish(metrics, shutdown, parking, rooms, drain_timeout)
            .await;
        Ok(())
    }
}

/// Hands a [`Server`] connections over any transport (see [`Server::connector`]).
#[derive(Clone)]
pub struct Connector {
    shared: Arc<Shared>,
    sessions: TaskTracker,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector").finish_non_exhaustive()
    }
}

impl Connector {
    /// Serves one connection from `peer` until it ends.
    pub fn connect<T: Transport>(&self, transport: T, peer: std::net::SocketAddr) {
        let shared = self.shared.clone();
        let active = self.shared.metrics.sessions_active.clone();
        active.inc();
        self.sessions.spawn(async move {
            connection::serve(shared, transport, peer).await;
            active.dec();
        });
    }
}

impl SideTasks {
    async fn finish(
        self,
        metrics: Metrics,
        shutdown: Shutdown,
        parking: Arc<resume::Parking>,
        rooms: Arc<Directory>,
        drain_timeout: Duration,
    ) {
        let sessions = self.sessions;
        sessions.close();
        let active = metrics.sessions_active.get();
        tracing::info!(active, drain_timeout = %humantime::format_duration(drain_timeout), "draining sessions");
        tokio::select! {
            () = sessions.wait() => {}
            () = tokio::time::sleep(drain_timeout) => {
                shutdown.abort();
                tracing::warn!(remaining = metrics.sessions_active.get(), "drain timeout: closing the remaining sessions");
            }
            () = shutdown.aborted() => {}
        }
        sessions.wait().await;
        parking.clear();
        // Every sender is gone once the sessions are: the reaper records the last closes and ends.
        if let Err(error) = self.reaper.await {
            tracing::error!(%error, "reaper failed");
        }
        // Every player has left its room: the rooms dispose of themselves.
        rooms.closed(Duration::from_millis(250)).await;
        self.budget.abort();
        self.stall_clock.abort();
        if !shutdown.is_aborted() {
            // The final counts stay readable a moment: a client watching the drain through
            // /closes or /metrics reads the last closes before the listener goes.
            tokio::time::sleep(FINAL_READ_GRACE).await;
        }
        self.stop_admin.cancel();
        let admin = self.admin;
        if shutdown.is_aborted() {
            // A forced shutdown does not give admin connections their grace.
            admin.abort();
        }
        match admin.await {
            Err(error) if error.is_cancelled() => {}
            Ok(Err(error)) => tracing::error!(%error, "admin listener failed"),
            Err(error) => tracing::error!(%error, "admin listener panicked"),
            Ok(Ok(())) => {}
        }
        tracing::info!("stopped");
    }
}
