//! The scenarios: each is one way a game client's connection ends, taken from the field report
//! in the project's network-faults notes, and each declares the close reason the server must
//! record for it.
//!
//! | scenario | field-report case | server must record |
//! |---|---|---|
//! | graceful | server 2: sent many messages, closed gracefully | `client_quit` |
//! | close-no-bye | server 2 without the application's goodbye | `peer_eof` |
//! | abort | an abortive close (SO_LINGER 0) | `peer_reset` |
//! | exit-unread | server 3: exited without reading what the server sent | `peer_reset` |
//! | crash | server 4: killed (SIGKILL) while sending | `peer_reset` or `truncated_frame` |
//! | vanish | server 1: cable pulled (as far as loopback can show it) | `idle_timeout` |
//! | slow-reader | server 5's cousin: alive but not reading | `slow_consumer` |
//! | flood | a client far above the rate limit | `rate_limited` |
//! | kicked-then-send | client 1: server closed, client sends again | `kicked` |
//! | kicked-then-recv | client 2: server sent then closed, client reads | `kicked` |
//! | storm | everyone reconnecting at once | `client_quit` |
//! | soak | realistic play for long runs | `client_quit` (some `peer_eof`) |
//! | reset-and-return | a connection reset mid-stream, then a resume | `peer_reset`, then `client_quit` |
//! | vanish-and-return | server 1 long enough to be reaped, then a resume | `idle_timeout`, then `client_quit` |
//! | roam | a network change the server has not noticed, then a resume | `replaced`, then `client_quit` |
//!
//! An instance is one connection, except in the three resume scenarios, where it is one session
//! over two connections (the one that breaks and the one that resumes). Its [`Verdict`] carries
//! one expectation per connection (for reconciliation) and whether the client-side checks passed
//! (nothing lost, the right `Bye` read, the right socket error seen).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use game_client::Core;
use protocol::ByeCode;

use crate::conn::{self, ClientError, Conn, ErrorKind};
use crate::metrics::Admin;
use crate::options::{Options, Scenario};
use crate::player::Player;
use crate::reconcile::{Expect, Reason};
use crate::stats::{Stats, add};
use crate::token;

mod abort;
mod close_no_bye;
pub(crate) mod crash;
mod exit_unread;
mod flood;
mod graceful;
mod kicked;
mod reset_and_return;
mod resume;
mod roam;
mod slow_reader;
mod soak;
mod storm;
mod vanish;
mod vanish_and_return;

/// How long an instance waits for `Welcome`: generous, because a storm of thousands of
/// handshakes queues up on a 2-core server.
pub(crate) const WELCOME_LIMIT: Duration = Duration::from_secs(20);
/// Time between two inputs of a playing client: a 20 Hz game client.
pub(crate) const INPUT_EVERY: Duration = Duration::from_millis(50);
/// Extra time, beyond the server's idle timeout, that a client waits for an answer the server
/// owes it before calling it missing.
pub(crate) const GRACE: Duration = Duration::from_secs(5);

/// What every instance shares: the options, the server, the counters, the admin endpoint.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub opts: Options,
    pub server: SocketAddr,
    pub stats: Arc<Stats>,
    pub admin: Option<Admin>,
    /// A random tag that keeps this run's player ids and room names apart from any other's.
    pub run_id: String,
    /// The executable the crash scenario starts as its child.
    pub crash_exe: PathBuf,
    /// TLS and WebSocket, when asked for.
    pub layers: conn::Layers,
    /// When the run's `--duration` is up: long-playing instances stop there.
    pub ends: Option<tokio::time::Instant>,
}

/// One scenario instance about to run.
#[derive(Debug)]
pub(crate) struct Instance {
    pub ctx: Arc<Ctx>,
    pub scenario: Scenario,
    /// The player id, unique per instance (a repeated id would make the server replace the
    /// older session, which no scenario expects).
    pub id: String,
    pub source: Option<IpAddr>,
    /// Set when the server ended one of this instance's sessions with its drain
    /// (`Bye{server_shutdown}`): see [`Verdict::drained`].
    pub drained: Arc<AtomicBool>,
}

/// How one instance ended, for the summary and for reconciliation.
#[derive(Debug)]
pub(crate) struct Verdict {
    /// What the server must record for it: one entry per connection that reached the server
    /// (none when the connect failed; two for the resume scenarios).
    pub expects: Vec<Expect>,
    /// Why its client-side checks failed, if they did.
    pub failure: Option<String>,
    /// Every error its socket reported.
    pub errors: Vec<ErrorKind>,
}

impl Verdict {
    /// The verdict of an instance whose last connection the server ended with its drain
    /// (`Bye{server_shutdown}`): an outcome of its own, not a failure. Whatever the scenario was
    /// about to do, the server records that connection as `server_shutdown`.
    pub fn drained(mut self) -> Verdict {
        if let Some(last) = self.expects.last_mut() {
            *last = Expect::Exact(Reason::ServerShutdown);
            self.failure = None;
        }
        self
    }
}

/// Why an instance's client-side checks failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Failure {
    /// The connection misbehaved while the scenario did something.
    #[error("{during}: {error}")]
    Client {
        /// What the scenario was doing.
        during: &'static str,
        /// What went wrong.
        #[source]
        error: ClientError,
    },
    /// The server's behaviour was not what the scenario must see.
    #[error("{0}")]
    Check(String),
}

/// Adds "while doing what" to a client error.
pub(crate) trait During<T> {
    fn during(self, what: &'static str) -> Result<T, Failure>;
}

impl<T> During<T> for Result<T, ClientError> {
    fn during(self, what: &'static str) -> Result<T, Failure> {
        self.map_err(|error| Failure::Client {
            during: what,
            error,
        })
    }
}

/// What the server must record for a session whose handshake failed with `error` after the TCP
/// connect succeeded.
fn expect_after_failed_handshake(error: &ClientError) -> Expect {
    match error {
        ClientError::ServerBye { code, .. } => match code {
            // Turned away right after accept, before any Hello: not a session.
            ByeCode::ServerFull => Expect::Nothing,
            ByeCode::AuthFailed => Expect::Exact(Reason::AuthFailed),
            ByeCode::ResumeRejected => Expect::Exact(Reason::ResumeRejected),
            ByeCode::JoinRefused => Expect::Exact(Reason::JoinRefused),
            ByeCode::VersionMismatch | ByeCode::ProtocolError => {
                Expect::Exact(Reason::ProtocolError)
            }
            ByeCode::HandshakeTimeout => Expect::Exact(Reason::HandshakeTimeout),
            _ => Expect::Unknown,
        },
        _ => Expect::Unknown,
    }
}

impl Instance {
    /// What the server records for a connection this client reset (`SO_LINGER {on, 0}`):
    /// `peer_reset`; over WebSocket also `broken_pipe`, since the layers above the server's
    /// socket (the WebSocket's own frames, TLS records) may meet the reset with a write first.
    pub fn reset_expect(&self) -> Expect {
        const OVER_WEBSOCKET: &[Reason] = &[Reason::PeerReset, Reason::BrokenPipe];
        match self.opts().websocket {
            true => Expect::OneOf(OVER_WEBSOCKET),
            false => Expect::Exact(Reason::PeerReset),
        }
    }

    /// The options.
    pub fn opts(&self) -> &Options {
        &self.ctx.opts
    }

    /// A room of this instance's own, for scenarios whose traffic must not reach other players
    /// (a flood's relays, a slow reader's megabytes).
    pub fn private_room(&self) -> String {
        format!("r-{}", self.id)
    }

    /// The room for scenarios that play with others: `--room`, or wherever the server places
    /// the player.
    pub fn shared_room(&self) -> String {
        self.opts().room.clone().unwrap_or_default()
    }

    /// The auth token for this player, when the server needs one.
    pub fn token(&self) -> Option<String> {
        self.opts()
            .auth_secret
            .as_deref()
            .map(|secret| token::mint_token_for(secret, &self.id, self.opts().token_ttl))
    }

    /// Connects and handshakes. On failure, returns the finished verdict: no session (the connect
    /// failed or the server was full) or whatever the server will record for the failed
    /// handshake.
    pub async fn open(&self, room: String) -> Result<Player, Verdict> {
        self.open_with(Player::session(self.id.clone(), room, self.token()))
            .await
    }

    /// Connects and handshakes the session `core` holds (one to resume, say); fails like
    /// [`Self::open`].
    pub async fn open_with(&self, core: Core) -> Result<Player, Verdict> {
        let stats = &self.ctx.stats;
        let stream = match conn::connect(
            self.ctx.server,
            self.source,
            &self.ctx.layers,
            self.opts().connect_timeout,
        )
        .await
        {
            Ok((stream, took)) => {
                add(&stats.connect_ok, 1);
                stats.record_connect(took);
                stream
            }
            Err(error) => {
                add(&stats.connect_failed, 1);
                return Err(Verdict {
                    expects: Vec::new(),
                    failure: Some(format!("connect: {error}")),
                    errors: error.kind().into_iter().collect(),
                });
            }
        };
        let mut conn = Conn::new(stream, Arc::clone(stats));
        conn.on_drain(Arc::clone(&self.drained));
        Player::handshake(conn, core, WELCOME_LIMIT, Arc::clone(stats))
            .await
            .map_err(|(conn, error)| Verdict {
                expects: vec![expect_after_failed_handshake(&error)],
                failure: Some(format!("handshake: {error}")),
                errors: conn.errors().to_vec(),
            })
    }

    /// The verdict of an instance that reached the server.
    pub fn verdict(
        &self,
        expect: Expect,
        errors: &[ErrorKind],
        result: Result<(), Failure>,
    ) -> Verdict {
        Verdict {
            expects: vec![expect],
            failure: result.err().map(|f| f.to_string()),
            errors: errors.to_vec(),
        }
    }
}

/// Runs one instance of its scenario.
pub(crate) async fn run(inst: &Instance) -> Verdict {
    match inst.scenario {
        Scenario::Graceful => graceful::run(inst).await,
        Scenario::CloseNoBye => close_no_bye::run(inst).await,
        Scenario::Abort => abort::run(inst).await,
        Scenario::ExitUnread => exit_unread::run(inst).await,
        Scenario::Crash => crash::run(inst).await,
        Scenario::Vanish => vanish::run(inst).await,
        Scenario::SlowReader => slow_reader::run(inst).await,
        Scenario::Flood => flood::run(inst).await,
        Scenario::KickedThenSend => kicked::run(inst, kicked::After::Send).await,
        Scenario::KickedThenRecv => kicked::run(inst, kicked::After::Recv).await,
        Scenario::Storm => storm::run(inst).await,
        Scenario::Soak => soak::run(inst).await,
        Scenario::ResetAndReturn => reset_and_return::run(inst).await,
        Scenario::VanishAndReturn => vanish_and_return::run(inst).await,
        Scenario::Roam => roam::run(inst).await,
    }
}

/// Plays `inputs` inputs at the game's pace, then waits until every one came back as a relay,
/// so the server has provably applied them all.
pub(crate) async fn play_inputs(p: &mut Player, inputs: u32, bytes: usize) -> Result<(), Failure> {
    let pace = crate::player::Pace {
        inputs,
        every: INPUT_EVERY,
        bytes,
    };
    let limit = INPUT_EVERY * inputs + p.idle + GRACE;
    p.play(Some(pace), Duration::ZERO, limit, "sending inputs", |_| {
        true
    })
    .await
    .during("playing")?;
    await_relays(p).await
}

/// Plays on until every input sent so far has come back as a relay (the demo relays each applied
/// input to its sender), bounded by the server's idle timeout.
pub(crate) async fn await_relays(p: &mut Player) -> Result<(), Failure> {
    let want = p.input_seq;
    p.play(
        None,
        Duration::ZERO,
        p.idle + GRACE,
        "the relays of every input",
        move |p| p.relayed_upto >= want,
    )
    .await
    .during("waiting for its inputs to come back as relays")
}

/// Says `Bye{client_quit}` and checks the server's answer: `Ack` of every input, its own
/// `Bye{client_quit}`, then EOF. Nothing lost.
pub(crate) async fn quit_and_check(p: &mut Player) -> Result<(), Failure> {
    let sent = p.input_seq;
    p.quit(p.idle + GRACE).await.during("quitting")?;
    match p.bye_code() {
        Some(ByeCode::ClientQuit) => {}
        other => {
            return Err(Failure::Check(format!(
                "expected the server's Bye{{client_quit}} after ours, got {}",
                other.map_or("none".to_owned(), |c| format!("Bye{{{c}}}"))
            )));
        }
    }
    if p.server_ack() != sent {
        return Err(Failure::Check(format!(
            "the server acknowledged input {} of {sent} before its Bye: inputs were lost",
            p.server_ack()
        )));
    }
    Ok(())
}

/// Sends FIN, then reads to the server's EOF, so the server sees a clean end between frames and
/// this client closes with nothing unread (which would turn the close into RST).
pub(crate) async fn close_without_bye(p: &mut Player) -> Result<(), Failure> {
    p.conn.shutdown_write().await.during("sending FIN")?;
    let drained = p
        .drain(p.idle + GRACE, "the server's EOF after our FIN")
        .await;
    drained
        .end
        .during("reading to the server's EOF after our FIN")?;
    if let Some(bye) = &p.bye {
        return Err(Failure::Check(format!(
            "the server answered a plain FIN with Bye{{{}}}; a peer_eof close sends no Bye",
            bye.code
        )));
    }
    Ok(())
}

/// The errors an instance's connection has seen so far.
pub(crate) fn errors_of(p: &Player) -> Vec<ErrorKind> {
    p.conn.errors().to_vec()
}
