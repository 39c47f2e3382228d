//! One player's session: its protocol state ([`core`], sans-IO), the task that drives it over a
//! connection ([`driver`]), the admission of its `Hello` ([`handshake`]), its framing
//! ([`reader`], [`outbox`]) and its deadlines ([`watchdog`], [`stall`]). How it ends is
//! [`crate::close`]'s.

pub(crate) mod auth;
pub(crate) mod core;
pub(crate) mod driver;
pub(crate) mod end;
pub(crate) mod handshake;
pub(crate) mod metrics;
pub(crate) mod outbox;
pub(crate) mod reader;
pub(crate) mod stall;
pub(crate) mod watchdog;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;

use crate::config::SessionConfig;
use crate::logging::Throttle;
use crate::memory::budget::Budget;
use crate::player::registry::Registry;
use crate::resume::Parking;
use crate::rooms::Directory;
use crate::session::end::SessionEnd;
use crate::session::metrics::SessionMetrics;
use crate::shutdown::Shutdown;
use crate::transport::admission::Admission;

/// What the sessions of a server use, and nothing else: their limits, the parts of the server a
/// `Hello` is admitted against (authentication, the parking lot, the rooms, the registry of
/// live players), the memory budget, the stall clock, where their ends are reported, and their
/// metrics. One per server, shared by every session task.
#[derive(Debug)]
pub(crate) struct Sessions {
    /// `[session]`.
    pub(crate) config: SessionConfig,
    /// `server.max_frame_bytes`.
    pub(crate) max_frame: usize,
    pub(crate) auth: Option<auth::Authenticator>,
    /// Per-source state: failed logins, and the source a parked session counts against.
    pub(crate) admission: Arc<Admission>,
    pub(crate) parking: Arc<Parking>,
    pub(crate) rooms: Arc<Directory>,
    pub(crate) registry: Arc<Registry>,
    pub(crate) budget: Arc<Budget>,
    pub(crate) stalls: stall::Stalls,
    pub(crate) metrics: SessionMetrics,
    pub(crate) throttle: Throttle,
    pub(crate) shutdown: Shutdown,
    reaper: mpsc::Sender<SessionEnd>,
    next_id: AtomicU64,
}

impl Sessions {
    /// The sessions' handles; their ends go to `reaper`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        config: SessionConfig,
        max_frame: usize,
        auth: Option<auth::Authenticator>,
        admission: Arc<Admission>,
        parking: Arc<Parking>,
        rooms: Arc<Directory>,
        registry: Arc<Registry>,
        budget: Arc<Budget>,
        stalls: stall::Stalls,
        metrics: SessionMetrics,
        throttle: Throttle,
        shutdown: Shutdown,
        reaper: mpsc::Sender<SessionEnd>,
    ) -> Sessions {
        Sessions {
            config,
            max_frame,
            auth,
            admission,
            parking,
            rooms,
            registry,
            budget,
            stalls,
            metrics,
            throttle,
            shutdown,
            reaper,
            next_id: AtomicU64::new(1),
        }
    }

    /// A new session's id.
    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Hands a session's end to the reaper, which records it. The session's socket is closed by
    /// now, and it lets every other task that is ready run first: when many sessions end at once
    /// (players timing out together behind a dead switch), each would otherwise wake the reaper
    /// to run right after it on the same worker (Tokio runs a task woken by the running one
    /// next), and with it the rooms its player leaves, before the next session's close.
    pub(crate) async fn report(&self, end: SessionEnd) {
        tokio::task::yield_now().await;
        // The reaper outlives every session; a send can only fail if it panicked.
        if let Err(lost) = self.reaper.send(end).await {
            tracing::error!(
                session = lost.0.session_id,
                "reaper is gone; close not recorded"
            );
        }
    }
}
