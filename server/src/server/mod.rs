//! The server: it builds the parts (metrics, sessions, rooms, parking lot, budget), runs the side
//! tasks (reaper, memory sampler, stall clock, admin), accepts from its listeners
//! ([`listener`]), and drains.

pub(crate) mod listener;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;

use crate::api::game::Game;
use crate::config::{self, Config};
use crate::memory::budget;
use crate::ops::{admin, close_log, reaper, sampler, status};
use crate::resume;
#[cfg(any(test, feature = "testkit"))]
use crate::session::driver as connection;
use crate::shutdown::Shutdown;
#[cfg(any(test, feature = "testkit"))]
use crate::transport::stream::Transport;
use crate::transport::{slots, tls};

use self::listener as acceptor;
use self::listener::Door;
use crate::logging::Throttle;
use crate::memory::budget::Budget;
use crate::ops::metrics::Metrics;
use crate::player::registry::Registry;
use crate::rooms::{Directory, DirectoryLimits};
use crate::session::Sessions;
use crate::session::auth::Authenticator;
use crate::session::stall::Stalls;
use crate::transport::admission::{Admission, SourceLimits};

/// After a drain, how long the admin listener still answers once the last close is recorded.
pub(crate) const FINAL_READ_GRACE: Duration = Duration::from_secs(1);

/// Session ends waiting for the reaper; past this, ending sessions wait their turn.
const REAPER_QUEUE: usize = 4096;

/// A server whose shared state and side tasks are running, ready to take connections from its
/// listeners ([`Engine::serve`]) or one at a time ([`Engine::connector`], for tests over
/// in-memory transports).
pub(crate) struct Engine {
    /// The rooms, as a game's own code reaches them.
    #[cfg_attr(not(any(test, feature = "testkit")), allow(dead_code))]
    rooms: crate::api::rooms::Rooms,
    door: Arc<Door>,
    drain_timeout: Duration,
    admin_addr: std::net::SocketAddr,
    tasks: SideTasks,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("admin", &self.admin_addr)
            .finish_non_exhaustive()
    }
}

struct SideTasks {
    reaper: tokio::task::JoinHandle<()>,
    budget: tokio::task::JoinHandle<()>,
    status: tokio::task::JoinHandle<()>,
    stall_clock: tokio::task::JoinHandle<()>,
    stop_admin: tokio_util::sync::CancellationToken,
    admin: tokio::task::JoinHandle<std::io::Result<()>>,
    sessions: TaskTracker,
}

impl Engine {
    /// Starts everything but the game listeners: metrics, the reaper, the budget, the stall
    /// clock, the admin listener (serving `pages` too) and the room directory.
    pub(crate) async fn start<G: Game>(
        admin: TcpListener,
        config: Config,
        game: Arc<G>,
        shutdown: Shutdown,
        pages: admin::Pages,
    ) -> Result<Engine, ServerError> {
        let metrics = Metrics::new().map_err(|error| ServerError::Metrics(error.to_string()))?;
        let tls = tls::Tls::from_config(&config.tls)
            .map_err(|problems| {
                let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
                ServerError::Tls(lines.join("\n  "))
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
        let admin_addr = admin.local_addr()?;
        if !admin_addr.ip().is_loopback() {
            tracing::warn!(
                admin = %admin_addr,
                "the admin listener is off loopback: every request but /healthz and /readyz needs \
                 the bearer token; keep the port off the internet all the same"
            );
        }
        let throttle = Throttle::new(metrics.log_lines_suppressed.clone());
        let stalls = Stalls::new(Some(metrics.server_stall.clone()));
        let stall_clock = tokio::spawn(crate::session::stall::watch(stalls.clone()));
        let parking = resume::Parking::new(
            config.session.resume_grace,
            resume::ParkingLimits {
                max_parked: config.session.max_parked,
                max_bytes: config.session.max_parked_bytes,
                per_source: config.server.max_sessions_per_source,
            },
            metrics.resume.clone(),
            throttle.clone(),
        );
        let rooms = Directory::new(
            game.clone(),
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
        let budget_task = tokio::spawn(sampler::watch(
            budget.clone(),
            registry.clone(),
            parking.clone(),
            metrics.clone(),
        ));
        let closes = close_log::Closes::new(close_log::CLOSES_KEPT);
        let reaper = tokio::spawn(reaper::run(
            reaper_rx,
            metrics.clone(),
            registry.clone(),
            closes.clone(),
            throttle.clone(),
        ));
        let status = status::Status::new(
            metrics.clone(),
            shutdown.clone(),
            serde_json::to_value(&config).unwrap_or_default(),
        );
        let status_task = tokio::spawn(status::sample(status.clone()));
        let stop_admin = tokio_util::sync::CancellationToken::new();
        let weak: std::sync::Weak<Directory> = Arc::downgrade(&rooms);
        let weak: std::sync::Weak<dyn crate::api::rooms::Directory> = weak;
        let room_handle = crate::api::rooms::Rooms::new(weak);
        let admin_task = tokio::spawn(admin::serve(
            admin,
            metrics.clone(),
            registry.clone(),
            room_handle.clone(),
            closes,
            status,
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
        let admission = Admission::new(SourceLimits::from_config(&config));
        let sessions = Arc::new(Sessions::new(
            config.session.clone(),
            config.server.max_frame_bytes,
            auth,
            admission.clone(),
            parking,
            rooms,
            registry,
            budget.clone(),
            stalls,
            metrics.session.clone(),
            throttle.clone(),
            shutdown.clone(),
            reaper_tx,
        ));
        let session_tasks = TaskTracker::new();
        let door = Arc::new(Door {
            tcp: config.tcp.clone(),
            proxy: config.net.proxy_protocol.clone(),
            handshake_timeout: config.session.handshake_timeout,
            linger_timeout: config.session.linger_timeout,
            admission,
            slots: slots::Slots::new(config.server.max_sessions),
            budget,
            tls,
            metrics: metrics.clone(),
            throttle,
            rejections: Arc::new(tokio::sync::Semaphore::new(
                acceptor::MAX_CONCURRENT_REJECTIONS,
            )),
            shutdown: shutdown.clone(),
            sessions,
            tasks: session_tasks.clone(),
        });
        metrics.ready.set(1);
        game.started(room_handle.clone());
        Ok(Engine {
            rooms: room_handle,
            door,
            drain_timeout: config.shutdown.drain_timeout,
            admin_addr,
            tasks: SideTasks {
                reaper,
                budget: budget_task,
                status: status_task,
                stall_clock,
                stop_admin,
                admin: admin_task,
                sessions: session_tasks,
            },
        })
    }

    #[cfg(any(test, feature = "testkit"))]
    /// The admin listener's address.
    pub(crate) fn admin_addr(&self) -> std::net::SocketAddr {
        self.admin_addr
    }

    #[cfg(feature = "app")]
    /// Reloads the TLS certificate on every SIGHUP (and otherwise ignores it), for as long as
    /// the returned task runs.
    pub(crate) fn reload_on_hangup(&self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(tls::reload_on_hangup(
            self.door.tls.clone(),
            self.door.metrics.transport.clone(),
        ))
    }

    /// The rooms, as a game's own code reaches them.
    #[cfg(any(feature = "testkit", test))]
    pub(crate) fn rooms(&self) -> crate::api::rooms::Rooms {
        self.rooms.clone()
    }

    /// The server's metrics.
    #[cfg(any(feature = "agones", feature = "testkit", test))]
    pub(crate) fn metrics(&self) -> Metrics {
        self.door.metrics.clone()
    }

    /// Whether the reaper, which records every close, still runs.
    #[cfg(feature = "agones")]
    pub(crate) fn reaper(&self) -> tokio::task::AbortHandle {
        self.tasks.reaper.abort_handle()
    }

    #[cfg(any(test, feature = "testkit"))]
    /// A way to hand this server connections over any transport, as the acceptor does for
    /// TCP but without the admission checks: for tests over `tokio::io::duplex` with a paused
    /// clock. Drop every connector before the server drains: each keeps it alive.
    pub(crate) fn connector(&self) -> Connector {
        Connector {
            sessions: self.door.sessions.clone(),
            active: self.door.metrics.sessions_active.clone(),
            tasks: self.tasks.sessions.clone(),
        }
    }

    #[cfg(any(test, feature = "testkit"))]
    /// Waits for the drain without a listener (the sessions came through [`Engine::connector`]),
    /// then drains and stops like [`Engine::serve`].
    pub(crate) async fn until_drained(self) {
        self.door.shutdown.draining().await;
        self.finish().await;
    }

    /// Drains the sessions (at most `shutdown.drain_timeout`, then they are closed by force) and
    /// stops everything.
    async fn finish(self) {
        let Engine {
            door,
            drain_timeout,
            tasks,
            ..
        } = self;
        let parking = door.sessions.parking.clone();
        let rooms = door.sessions.rooms.clone();
        let metrics = door.metrics.clone();
        let shutdown = door.shutdown.clone();
        // The last handle on the sessions' reaper sender goes with the last session task.
        drop(door);
        tasks
            .finish(metrics, shutdown, parking, rooms, drain_timeout)
            .await;
    }

    /// Accepts until the drain starts, then drains the sessions (at most
    /// `shutdown.drain_timeout`, then they are closed by force) and stops everything.
    pub(crate) async fn serve(self, listener: TcpListener, websocket: Option<TcpListener>) {
        let tcp = acceptor::run(
            listener,
            acceptor::Listener::Tcp,
            self.door.clone(),
            &self.tasks.sessions,
        );
        match websocket {
            Some(websocket) => {
                let ws = acceptor::run(
                    websocket,
                    acceptor::Listener::WebSocket,
                    self.door.clone(),
                    &self.tasks.sessions,
                );
                tokio::join!(tcp, ws);
            }
            None => tcp.await,
        }
        self.door.metrics.ready.set(0);
        self.finish().await;
    }
}

#[cfg(any(test, feature = "testkit"))]
/// Hands an [`Engine`] connections over any transport (see [`Engine::connector`]).
#[derive(Clone)]
pub(crate) struct Connector {
    pub(crate) sessions: Arc<Sessions>,
    /// `gameserver_sessions_active`.
    active: prometheus::IntGauge,
    tasks: TaskTracker,
}

#[cfg(any(test, feature = "testkit"))]
impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector").finish_non_exhaustive()
    }
}

#[cfg(any(test, feature = "testkit"))]
impl Connector {
    /// Serves one connection from `peer` until it ends.
    pub(crate) fn connect<T: Transport>(&self, transport: T, peer: std::net::SocketAddr) {
        let sessions = self.sessions.clone();
        let active = self.active.clone();
        active.inc();
        self.tasks.spawn(async move {
            connection::serve(sessions, transport, peer).await;
            active.dec();
        });
    }
}

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// An address could not be bound; `key` is the configuration key that names it.
    #[error("cannot listen on {addr} ({key}): {source}")]
    Bind {
        /// The configuration key (`server.listen`, `admin.listen`, `server.websocket_listen`).
        key: &'static str,
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The TLS certificate pair cannot be used; each line names its key.
    #[error("cannot use the TLS certificate:\n  {0}")]
    Tls(String),
    /// The metrics could not be registered (a programming error).
    #[error("cannot register the metrics: {0}")]
    Metrics(String),
    /// Another I/O failure at start.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// The listeners a server serves: the game port, the admin port, and the WebSocket port when
/// the configuration opens one. Bind them with [`Listeners::bind`], or bind your own (tests bind
/// `127.0.0.1:0` and read the ports back).
#[derive(Debug)]
pub struct Listeners {
    /// The game port (`server.listen`).
    pub game: TcpListener,
    /// The admin port (`admin.listen`).
    pub admin: TcpListener,
    /// The WebSocket port (`server.websocket_listen`), when there is one.
    pub websocket: Option<TcpListener>,
}

impl Listeners {
    /// Binds the addresses the configuration names, the game ports with
    /// `server.listen_backlog`.
    pub async fn bind(config: &Config) -> Result<Listeners, ServerError> {
        let bind =
            |key, addr| {
                acceptor::bind(addr, config.server.listen_backlog)
                    .map_err(|source| ServerError::Bind { key, addr, source })
            };
        let game = bind("server.listen", config.server.listen)?;
        let admin = TcpListener::bind(config.admin.listen)
            .await
            .map_err(|source| ServerError::Bind {
                key: "admin.listen",
                addr: config.admin.listen,
                source,
            })?;
        // Empty (validated with the rest of the configuration): no WebSocket listener.
        let websocket = match config.server.websocket_listen.parse::<SocketAddr>() {
            Ok(addr) => Some(bind("server.websocket_listen", addr)?),
            Err(_) => None,
        };
        Ok(Listeners {
            game,
            admin,
            websocket,
        })
    }
}

/// A game served by the engine, embedded in a program of one's own (the shipped binaries use
/// [`crate::App`], which adds the command line, logging and signals):
///
/// ```no_run
/// # async fn example<G: game_engine::Game>(game: G) -> Result<(), game_engine::ServerError> {
/// let config = game_engine::Config::default();
/// let listeners = game_engine::Listeners::bind(&config).await?;
/// let shutdown = game_engine::Shutdown::new();
/// // shutdown.drain() from anywhere (a signal, an orchestrator) drains and stops it.
/// game_engine::Server::new(game, config)
///     .shutdown(shutdown.clone())
///     .run(listeners)
///     .await
/// # }
/// ```
pub struct Server<G: Game> {
    game: Arc<G>,
    config: Config,
    shutdown: Shutdown,
    pages: Vec<(String, &'static str)>,
}

impl<G: Game> std::fmt::Debug for Server<G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").finish_non_exhaustive()
    }
}

impl<G: Game> Server<G> {
    /// `game` served with `config`.
    pub fn new(game: G, config: Config) -> Server<G> {
        Server {
            game: Arc::new(game),
            config,
            shutdown: Shutdown::new(),
            pages: Vec::new(),
        }
    }

    /// The handle that drains and stops the server (keep a clone).
    pub fn shutdown(mut self, shutdown: Shutdown) -> Server<G> {
        self.shutdown = shutdown;
        self
    }

    /// Serves a page to browser players on the admin port (see [`crate::App::page`]).
    pub fn page(mut self, path: &str, html: &'static str) -> Server<G> {
        self.pages.push((path.to_owned(), html));
        self
    }

    /// Serves until the shutdown handle drains the server and every session has closed (or the
    /// drain timeout forced the rest). An error only for a failure at start.
    pub async fn run(self, listeners: Listeners) -> Result<(), ServerError> {
        let engine = self
            .start(listeners.admin, listeners.websocket.as_ref())
            .await?;
        engine.announce(&listeners.game, listeners.websocket.as_ref())?;
        engine.serve(listeners.game, listeners.websocket).await;
        Ok(())
    }

    /// Starts the engine with its admin listener; the game listeners come to
    /// [`Engine::serve`].
    pub(crate) async fn start(
        self,
        admin: TcpListener,
        websocket: Option<&TcpListener>,
    ) -> Result<Engine, ServerError> {
        let pages = admin::Pages::new(
            &self.pages,
            websocket.and_then(|l| l.local_addr().ok()),
            self.config.tls.enabled(),
            &self.config.admin.page_websocket_origins,
        );
        Engine::start(admin, self.config, self.game, self.shutdown, pages).await
    }
}

impl Engine {
    /// The `serving` log line, with every address the server listens on.
    pub(crate) fn announce(
        &self,
        game: &TcpListener,
        websocket: Option<&TcpListener>,
    ) -> Result<(), ServerError> {
        let websocket = websocket
            .and_then(|l| l.local_addr().ok())
            .map_or_else(String::new, |a| a.to_string());
        tracing::info!(
            game = %game.local_addr()?,
            admin = %self.admin_addr,
            websocket,
            tls = self.door.tls.is_some(),
            "serving"
        );
        Ok(())
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
        // The rooms' last word first: what they send now precedes every Bye{server_shutdown}.
        let started = tokio::time::Instant::now();
        rooms.drain(drain_timeout, drain_timeout / 2).await;
        shutdown.close_sessions();
        let sessions = self.sessions;
        sessions.close();
        let active = metrics.sessions_active.get();
        tracing::info!(active, drain_timeout = %humantime::format_duration(drain_timeout), "draining sessions");
        tokio::select! {
            () = sessions.wait() => {}
            () = tokio::time::sleep_until(started + drain_timeout) => {
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
        self.status.abort();
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
