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
pub mod auth;
pub mod budget;
pub mod close;
pub mod config;
pub mod game;
pub mod logging;
pub mod metrics;
pub mod reaper;
pub mod registry;
pub mod resume;
mod session;
pub mod shutdown;
pub mod stall;
pub mod watchdog;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;

pub use crate::close::CloseReason;
pub use crate::config::Config;
pub use crate::game::Game;
pub use crate::shutdown::Shutdown;

use crate::admission::{Admission, SourceLimits};
use crate::auth::Authenticator;
use crate::budget::Budget;
use crate::logging::Throttle;
use crate::metrics::{Metrics, TrafficCounters};
use crate::reaper::SessionEnd;
use crate::registry::Registry;
use crate::stall::Stalls;

/// What every session task shares.
pub(crate) struct Shared {
    config: Config,
    metrics: Metrics,
    traffic: TrafficCounters,
    registry: Arc<Registry>,
    game: Arc<dyn Game>,
    auth: Option<Authenticator>,
    parking: Arc<resume::Parking>,
    admission: Arc<Admission>,
    budget: Arc<Budget>,
    stalls: Stalls,
    throttle: Throttle,
    shutdown: Shutdown,
    reaper: mpsc::Sender<SessionEnd>,
    next_session_id: AtomicU64,
}

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
pub async fn run(
    listener: TcpListener,
    admin: TcpListener,
    config: Config,
    game: Arc<dyn Game>,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let metrics = Metrics::new()?;
    let baseline = budget::resident_bytes();
    let registry = Arc::new(Registry::default());
    let (reaper_tx, reaper_rx) = mpsc::channel(REAPER_QUEUE);
    let auth = match config.auth.mode {
        config::AuthMode::None => None,
        config::AuthMode::Hmac => Some(Authenticator::new(
            config.auth.secret.as_bytes(),
            config.auth.max_ttl,
        )),
    };
    let admin_token = config.admin.bearer_token();
    if !config.admin.listen.ip().is_loopback() {
        tracing::warn!(
            admin = %admin.local_addr()?,
            "the admin listener is off loopback: every request but /healthz and /readyz needs \
             the bearer token; keep the port off the internet all the same"
        );
    }
    tracing::info!(
        game = %listener.local_addr()?,
        admin = %admin.local_addr()?,
        "serving"
    );

    let throttle = Throttle::new(metrics.log_lines_suppressed.clone());
    let stalls = Stalls::new(Some(metrics.server_stall.clone()));
    let stall_clock = tokio::spawn(stall::watch(stalls.clone()));
    let parking = resume::Parking::new(
        config.session.resume_grace,
        resume::ParkingLimits {
            max_parked: config.session.max_parked,
            max_bytes: config.session.max_parked_bytes,
        },
        metrics.clone(),
        game.clone(),
    );
    let budget = Budget::new(config.server.memory_budget, baseline);
    let budget_task = tokio::spawn(budget::watch(
        budget.clone(),
        registry.clone(),
        parking.clone(),
        metrics.clone(),
    ));
    let reaper = tokio::spawn(reaper::run(
        reaper_rx,
        metrics.clone(),
        registry.clone(),
        game.clone(),
        throttle.clone(),
    ));
    let stop_admin = tokio_util::sync::CancellationToken::new();
    let admin_task = tokio::spawn(admin::serve(
        admin,
        metrics.clone(),
        registry.clone(),
        shutdown.clone(),
        admin::Settings {
            token: admin_token,
            max_connections: config.admin.max_connections,
            header_read_timeout: config.admin.header_read_timeout,
        },
        stop_admin.clone(),
    ));
    let ticker = tokio::spawn(tick(
        game.clone(),
        config.game.tick_rate_hz,
        shutdown.clone(),
    ));

    let drain_timeout = config.shutdown.drain_timeout;
    let shared = Arc::new(Shared {
        parking: parking.clone(),
        traffic: TrafficCounters::new(&metrics),
        metrics: metrics.clone(),
        registry,
        game,
        auth,
        admission: Admission::new(SourceLimits::from_config(&config)),
        budget,
        stalls,
        throttle,
        shutdown: shutdown.clone(),
        reaper: reaper_tx,
        next_session_id: AtomicU64::new(1),
        config,
    });
    metrics.ready.set(1);

    let sessions = TaskTracker::new();
    acceptor::run(listener, shared.clone(), &sessions).await;
    metrics.ready.set(0);
    drop(shared);

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
    if let Err(error) = reaper.await {
        tracing::error!(%error, "reaper failed");
    }
    ticker.abort();
    budget_task.abort();
    stall_clock.abort();
    stop_admin.cancel();
    match admin_task.await {
        Ok(Err(error)) => tracing::error!(%error, "admin listener failed"),
        Err(error) => tracing::error!(%error, "admin listener panicked"),
        Ok(Ok(())) => {}
    }
    tracing::info!("stopped");
    Ok(())
}

/// Calls the game's tick at the configured rate until the drain starts.
async fn tick(game: Arc<dyn Game>, rate_hz: u32, shutdown: Shutdown) {
    let period = Duration::from_secs(1) / rate_hz.max(1);
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut tick = 0u64;
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            () = shutdown.draining() => return,
        }
        tick += 1;
        game.tick(tick);
    }
}
