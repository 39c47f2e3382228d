//! client-sim: a load generator whose scenarios are the ways game clients die, and which checks
//! the server's account of them.
//!
//! # What a run is
//!
//! A run has `clients` slots. Each slot runs one scenario instance at a time, and an instance is
//! one connection playing one [`Scenario`] from connect to close; an instance of a resume
//! scenario (`reset-and-return`, `vanish-and-return`, `roam`) is one session over two
//! connections, the one that breaks and the one that resumes it. Without a duration every slot
//! runs exactly one instance; with [`Options::duration`], slots keep starting new instances
//! (drawn from the [`Mix`]) until the duration ends, and instances in flight finish. New
//! connections are paced at [`Options::connect_rate`], except storm instances, which connect
//! all at once. Before the instances, one probe connection handshakes and quits gracefully: it
//! proves the target is a game server (one clear error line otherwise) and reads its timing.
//!
//! # Reconciliation
//!
//! Each instance declares the close reason the server must record for each of its connections;
//! with a metrics URL, [`run`] reads the server's account and compares it per reason (see
//! [`reconcile`]). Every player id of a run starts with `PREFIX-RUN-`: where the server offers
//! `/closes`, the run counts the closes of its own players there, through the whole run, exactly
//! whatever else the server serves; otherwise it compares `gameserver_sessions_closed_total`
//! before and after, which is exact only while the run is the server's only traffic. A drain
//! (`Bye{server_shutdown}`) is an outcome of its own, reconciled as `server_shutdown`.
//! Reconciliation counts connections that became sessions (plus the probe): one per instance,
//! two per resume instance.
//!
//! # Players
//!
//! Every instance's player is a session of the client library's protocol core
//! ([`game_client::Core`]), driven over a socket the scenario ends its own way; see
//! [`player`].
//!
//! # Resume
//!
//! The resume scenarios check what the server promises across a broken connection: event
//! sequence numbers run on without a gap or a repeat, every input is applied exactly once. The
//! report's [`ResumeStats`] counts resumes and anything lost or repeated; any loss fails the
//! instance and the run.
//!
//! # Using it from tests
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! let report = client_sim::run(client_sim::Options {
//!     server: "127.0.0.1:7777".into(),
//!     clients: 12,
//!     mix: client_sim::Mix::all(),
//!     metrics_url: Some("http://127.0.0.1:9100/metrics".into()),
//!     progress: client_sim::ProgressMode::Off,
//!     // The crash scenario runs the client-sim binary as a child process. From a test harness
//!     // (in target/debug/deps) a client-sim binary next to it or one directory up is found on
//!     // its own; otherwise name it, or a test binary that calls
//!     // `client_sim::child_main_from_args()`.
//!     crash_exe: None,
//!     ..client_sim::Options::default()
//! })
//! .await?;
//! assert!(report.reconciled_ok(), "{}", report.render());
//! # Ok(())
//! # }
//! ```

pub mod cli;
pub mod conn;
mod error_kind;
mod ledger;
pub mod limits;
pub mod metrics;
pub mod options;
pub mod player;
mod progress;
pub mod reconcile;
pub mod report;
mod runner;
mod scenario;
mod scenarios;
mod series;
mod stats;
pub mod threshold;
pub mod token;

pub use options::{Mix, Options, OptionsError, ProgressMode, Scenario, Stage, TlsOptions};
pub use report::{Report, ResumeStats};
pub use runner::{ProbeError, run};
pub use scenarios::crash::{CHILD_SUBCOMMAND, ChildArgs, child_main, child_main_from_args};
pub use stats::{Percentiles, ScenarioCounts};
