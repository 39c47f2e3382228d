//! The server's account of this run's closes, read as the run goes.
//!
//! Where the server offers `/closes`, the ledger keeps a cursor into the server's numbered
//! record of closes: every reading counts the run's closes (player ids `PREFIX-RUN-...`) from
//! the cursor to the record's end and moves the cursor there, so the totals stay exact however
//! long the run and whatever else the server serves, as long as fewer closes than the record
//! keeps (65,536 by default) happen between two readings. [`keep`] reads once per
//! [`KEEP_EVERY`] while the run goes on, and every [`DRAIN_EVERY`] once the server drains, so
//! that the last closes are read before a drained server exits.
//!
//! A server without `/closes` is read through its closed-sessions counter, compared with its
//! value before the run: exact only while the run is the server's only traffic.
//! [`keep`] reads it only once a drain starts: until then the last reading, the settle's, is
//! the one that counts.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::Mutex;

use crate::metrics::Admin;
use crate::reconcile;
use crate::stats::{Stats, get};

/// Time between two readings while the run goes on.
pub(crate) const KEEP_EVERY: Duration = Duration::from_secs(1);
/// Time between two readings once the server drains (from the first `Bye{server_shutdown}`
/// read): it answers for a second after its last close, then exits.
pub(crate) const DRAIN_EVERY: Duration = Duration::from_millis(100);

/// What the server recorded for this run so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reading {
    /// Closes by reason.
    pub closes: BTreeMap<String, i64>,
    /// Why the counts may be short, when they may.
    pub short: Option<String>,
}

#[derive(Debug)]
enum Method {
    /// `/closes` for the run's player prefix, counted from a cursor.
    Closes {
        prefix: String,
        /// The number of the next close not counted yet.
        since: u64,
        counted: BTreeMap<String, u64>,
        /// Set once a reading found closes dropped before it could count them.
        dropped: Option<usize>,
    },
    /// The closed-sessions counter, compared with its value before the run.
    Counters { before: BTreeMap<String, f64> },
}

/// The run's account; see the module documentation.
#[derive(Debug)]
pub(crate) struct Ledger {
    method: Mutex<Method>,
    /// The last good reading.
    last: Mutex<Option<Reading>>,
    name: &'static str,
    stats: Arc<Stats>,
}

impl Ledger {
    /// Starts the account now: at the server's next close number when it offers `/closes`,
    /// otherwise at its closed-sessions counter.
    pub(crate) async fn open(
        admin: &Admin,
        prefix: &str,
        stats: Arc<Stats>,
    ) -> anyhow::Result<Ledger> {
        // The metrics are read either way: they also tell a game server's admin port from
        // anything else.
        let before = admin
            .closed_by_reason()
            .await
            .context("cannot read the server's metrics (--metrics-url)")?;
        let closes = admin.closes(prefix, 0).await.context(
            "cannot read the server's close record (/closes on the --metrics-url origin)",
        )?;
        let (method, name) = match closes {
            Some(counts) => (
                Method::Closes {
                    prefix: prefix.to_owned(),
                    since: counts.next,
                    counted: BTreeMap::new(),
                    dropped: None,
                },
                reconcile::METHOD_CLOSES,
            ),
            None => (Method::Counters { before }, reconcile::METHOD_COUNTERS),
        };
        Ok(Ledger {
            method: Mutex::new(method),
            last: Mutex::new(None),
            name,
            stats,
        })
    }

    /// How the account is read, in the report's words.
    pub(crate) fn method(&self) -> &'static str {
        self.name
    }

    /// True once any client read the server's `Bye{server_shutdown}`.
    pub(crate) fn draining(&self) -> bool {
        get(&self.stats.drain_byes) > 0 || get(&self.stats.drained) > 0
    }

    /// The last good reading.
    pub(crate) async fn last(&self) -> Option<Reading> {
        self.last.lock().await.clone()
    }

    /// Reads the server once and returns the run's totals so far.
    pub(crate) async fn read(&self, admin: &Admin) -> Result<Reading, String> {
        let mut method = self.method.lock().await;
        let reading = match &mut *method {
            Method::Closes {
                prefix,
                since,
                counted,
                dropped,
            } => {
                let counts = admin
                    .closes(prefix, *since)
                    .await
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| "the server stopped answering /closes".to_owned())?;
                if !counts.complete {
                    *dropped = Some(counts.capacity);
                }
                for (reason, n) in counts.reasons {
                    *counted.entry(reason).or_default() += n;
                }
                *since = counts.next.max(*since);
                Reading {
                    closes: counted
                        .iter()
                        .map(|(reason, &n)| (reason.clone(), i64::try_from(n).unwrap_or(i64::MAX)))
                        .collect(),
                    short: dropped.map(|capacity| {
                        format!(
                            "the server's close record keeps the last {capacity} closes, and more \
                             than that happened between two readings: some of this run's closes \
                             were dropped before they were counted"
                        )
                    }),
                }
            }
            Method::Counters { before } => {
                let after = admin.closed_by_reason().await.map_err(|e| e.to_string())?;
                Reading {
                    closes: reconcile::deltas(before, &after),
                    short: None,
                }
            }
        };
        drop(method);
        *self.last.lock().await = Some(reading.clone());
        Ok(reading)
    }
}

/// Reads the account through the run: every [`KEEP_EVERY`], and every [`DRAIN_EVERY`] once an
/// instance saw the server drain. Failed readings are retried at the next turn.
pub(crate) async fn keep(admin: Admin, ledger: Arc<Ledger>) {
    loop {
        let every = if ledger.draining() {
            DRAIN_EVERY
        } else {
            KEEP_EVERY
        };
        tokio::time::sleep(every).await;
        // Counter deltas need only their last reading; until a drain may take the server away,
        // that is the settle's.
        if ledger.method() == reconcile::METHOD_COUNTERS && !ledger.draining() {
            continue;
        }
        let _ = ledger.read(&admin).await;
    }
}
