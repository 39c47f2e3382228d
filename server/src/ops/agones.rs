//! Running under Agones: the server reports its life to the Agones SDK server beside it (the
//! sidecar Agones puts in every GameServer pod), so that Agones knows when it can take players,
//! that it is alive, how full it is, and when it is done.
//!
//! - `Ready()` once the game and admin listeners serve;
//! - `Health()` every `agones.health_interval` while the reaper, which records every close,
//!   still runs: a server whose runtime is wedged stops pinging, and Agones replaces it;
//! - the GameServer's counters `players` (capacity `server.max_sessions`) and `rooms` (capacity
//!   `rooms.max_rooms`) follow the live sessions and rooms, so that an allocation can choose an
//!   instance with room to spare (a counter the GameServer does not declare is reported once and
//!   left alone);
//! - a drain (SIGTERM, or Agones moving the GameServer to `Shutdown`) labels the GameServer
//!   `draining=true`, runs as without Agones, and ends with `Shutdown()` once the last session
//!   has closed.

use std::time::Duration;

use agones::Sdk;
use anyhow::Context as _;
use futures_util::StreamExt as _;
use tokio::task::{AbortHandle, JoinHandle};

use crate::config::Config;
use crate::ops::metrics::Metrics;
use crate::shutdown::Shutdown;

/// The counter of live sessions on the GameServer.
pub const PLAYERS: &str = "players";
/// The counter of open rooms on the GameServer.
pub const ROOMS: &str = "rooms";
/// The label set when the drain starts.
pub const DRAINING_LABEL: &str = "draining";

/// A connection to the Agones SDK server.
pub(crate) struct Agones {
    sdk: Sdk,
    keeper: Option<JoinHandle<()>>,
    watcher: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Agones {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agones").finish_non_exhaustive()
    }
}

impl Agones {
    /// Connects to the SDK server (`localhost:$AGONES_SDK_GRPC_PORT`, 9357 by default) within
    /// `agones.connect_timeout`.
    pub(crate) async fn connect(config: &Config) -> anyhow::Result<Agones> {
        let limit = config.agones.connect_timeout;
        let sdk = tokio::time::timeout(limit, Sdk::new(None, None))
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "no Agones SDK server answered within agones.connect_timeout ({}); outside \
                     Agones set agones.enabled = false",
                    humantime::format_duration(limit)
                )
            })?
            .context("cannot reach the Agones SDK server (agones.enabled = true)")?;
        Ok(Agones {
            sdk,
            keeper: None,
            watcher: None,
        })
    }

    /// Tells Agones the server takes players, then keeps it informed: health, counters, the
    /// drain label; and drains when Agones shuts the GameServer down.
    pub(crate) async fn ready(
        &mut self,
        config: &Config,
        metrics: Metrics,
        reaper: AbortHandle,
        shutdown: Shutdown,
    ) -> anyhow::Result<()> {
        self.sdk
            .ready()
            .await
            .context("the Agones SDK server refused Ready()")?;
        tracing::info!("agones: ready");
        self.keeper = Some(tokio::spawn(keep(
            self.sdk.clone(),
            config.agones.health_interval,
            [
                (PLAYERS, config.server.max_sessions),
                (ROOMS, config.rooms.max_rooms),
            ],
            metrics,
            reaper,
            shutdown.clone(),
        )));
        self.watcher = Some(tokio::spawn(watch(self.sdk.clone(), shutdown)));
        Ok(())
    }

    /// The last session has closed: stops reporting and tells Agones the server is done.
    pub(crate) async fn shutdown(mut self) {
        for task in [self.keeper.take(), self.watcher.take()]
            .into_iter()
            .flatten()
        {
            task.abort();
        }
        match self.sdk.shutdown().await {
            Ok(()) => tracing::info!("agones: shutdown"),
            Err(error) => tracing::warn!(%error, "agones: Shutdown() failed"),
        }
    }
}

/// Health and counters once per `every`; the drain label as soon as the drain starts.
async fn keep(
    mut sdk: Sdk,
    every: Duration,
    capacities: [(&'static str, usize); 2],
    metrics: Metrics,
    reaper: AbortHandle,
    shutdown: Shutdown,
) {
    let mut health = sdk.health_check();
    let mut counters_ok = true;
    for (counter, capacity) in capacities {
        if capacity == 0 {
            // No limit in the server: the Fleet's declared capacity stays.
            continue;
        }
        let capacity = i64::try_from(capacity).unwrap_or(i64::MAX);
        if let Err(error) = sdk
            .beta()
            .clone()
            .set_counter_capacity(counter, capacity)
            .await
        {
            counters_ok = false;
            tracing::warn!(
                counter,
                %error,
                "agones: cannot set the counter's capacity (declare it in the Fleet's \
                 spec.template.spec.counters); counters are not kept"
            );
        }
    }
    let mut reported: [Option<i64>; 2] = [None, None];
    let mut labelled = false;
    let draining = shutdown.draining();
    tokio::pin!(draining);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = &mut draining, if !labelled => {
                match sdk.set_label(DRAINING_LABEL, "true").await {
                    Ok(()) => labelled = true,
                    Err(error) => tracing::warn!(%error, "agones: cannot label the drain"),
                }
                continue;
            }
        }
        if !reaper.is_finished() {
            match health.try_send(()) {
                Ok(()) => {}
                Err(tokio::sync::mpsc::error::TrySendError::Full(())) => {
                    tracing::debug!("agones: a health ping is still queued");
                }
                Err(tokio::sync::mpsc::error::TrySendError::Closed(())) => {
                    // The health stream ended (the sidecar restarted, say): open another.
                    tracing::warn!("agones: the health stream closed; reopening it");
                    health = sdk.health_check();
                    let _ = health.try_send(());
                }
            }
        }
        if counters_ok {
            let now = [metrics.sessions_active.get(), metrics.rooms_active.get()];
            for (i, counter) in [PLAYERS, ROOMS].into_iter().enumerate() {
                if reported[i] != Some(now[i]) {
                    match sdk.beta().clone().set_counter_count(counter, now[i]).await {
                        Ok(()) => reported[i] = Some(now[i]),
                        Err(error) => {
                            tracing::debug!(counter, %error, "agones: counter update failed")
                        }
                    }
                }
            }
        }
    }
}

/// Drains when Agones moves the GameServer to `Shutdown` (a fleet scaling down, a deletion).
async fn watch(mut sdk: Sdk, shutdown: Shutdown) {
    loop {
        match sdk.watch_gameserver().await {
            Ok(mut stream) => {
                while let Some(Ok(game_server)) = stream.next().await {
                    let state = game_server
                        .status
                        .as_ref()
                        .map(|s| s.state.as_str())
                        .unwrap_or_default();
                    if state == "Shutdown" && !shutdown.is_draining() {
                        tracing::info!("agones: the GameServer is shutting down; draining");
                        shutdown.drain();
                    }
                }
                tracing::debug!("agones: the GameServer watch ended; watching again");
            }
            Err(error) => tracing::warn!(%error, "agones: cannot watch the GameServer; retrying"),
        }
        // The sidecar restarts with its pod's containers rarely: a second between tries.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
