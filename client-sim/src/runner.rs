//! One run: check the target, start the client slots at the paced rate, wait for them, then ask
//! the server for its account and reconcile.
//!
//! Order matters for exactness: the "before" reading comes first, then a probe connection (which
//! also tells a game server from anything else, and is itself one expected `client_quit`), then
//! the instances, then the "after" readings until the server's counts settle.
//!
//! The server's account is read, where it offers one, from its `/closes` record of recent closes
//! by player id: every player of a run has an id starting `PREFIX-RUN-`, so the run counts its
//! own closes exactly whatever else the server serves (another run, a steady load, real
//! players). A server without `/closes` is reconciled from the deltas of its closed-sessions
//! counter, which is exact only while this run is its only traffic. The report names the method.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use protocol::ByeCode;
use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Instant, MissedTickBehavior};

use crate::conn::{self, ClientError, Conn, ErrorKind};
use crate::ledger::{self, Ledger, Reading};
use crate::limits::{self, RESERVED_FDS};
use crate::metrics::Admin;
use crate::options::stage_target;
use crate::options::{Options, Scenario};
use crate::player::Player;
use crate::progress::Progress;
use crate::reconcile::{self, Expect, Expected, Reason, Reconciliation};
use crate::report::{
    Connects, ErrorCount, Latencies, Report, ResumeStats, SCHEMA_VERSION, Traffic,
};
use crate::scenarios::{self, Ctx, GRACE, Instance};
use crate::series::Series;
use crate::stats::{Stats, get};
use crate::token;

/// How long the probe waits for a connect and for `Welcome`.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// After the run, the server's counters are considered settled once unchanged for this long
/// (longer than the default linger timeout of 2 s, during which a lingering close is not yet
/// counted).
const STABLE_FOR: Duration = Duration::from_secs(3);
/// How often an idle slot looks whether the load stages want it busy.
const STAGE_POLL: Duration = Duration::from_millis(100);
/// Time between two scrapes while waiting for the server's counters to settle.
const SCRAPE_EVERY: Duration = Duration::from_millis(250);

/// Why the target is not a game server client-sim can play against. Each is one line.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// Connection refused.
    #[error(
        "nothing is listening at {server} (connection refused): is the game server running, and on this port?"
    )]
    NotListening {
        /// The address tried.
        server: String,
    },
    /// No answer to the SYN.
    #[error(
        "no answer from {server} within {timeout:?} (connect timed out): wrong address, or a firewall drops the packets"
    )]
    ConnectTimeout {
        /// The address tried.
        server: String,
        /// How long the connect waited.
        timeout: Duration,
    },
    /// Any other connect failure.
    #[error("cannot connect to {server}: {error}")]
    Connect {
        /// The address tried.
        server: String,
        /// What the kernel said.
        error: ClientError,
    },
    /// The other end speaks something else.
    #[error("{server} is not a game server: {why}")]
    NotGameServer {
        /// The address tried.
        server: String,
        /// What it did instead.
        why: String,
    },
    /// A game server that refused the probe.
    #[error("{server} refused the probe's Hello with Bye{{{code}}}{text}{hint}")]
    Refused {
        /// The address tried.
        server: String,
        /// Its Bye code.
        code: ByeCode,
        /// Its text, prefixed for display.
        text: String,
        /// What to do about it.
        hint: &'static str,
    },
    /// The probe got in, but the graceful quit went wrong.
    #[error("{server} accepted the probe but its answer to the probe's Bye was wrong: {why}")]
    BadQuit {
        /// The address tried.
        server: String,
        /// What went wrong.
        why: String,
    },
}

/// What the probe learnt about the server.
#[derive(Debug, Clone, Copy)]
struct ServerTiming {
    idle: Duration,
}

/// Connects once, handshakes and quits gracefully: proves the target is a game server that lets
/// this client in, and reads its timing from `Welcome`.
async fn probe(
    opts: &Options,
    server: SocketAddr,
    layers: &conn::Layers,
    id: String,
    stats: &Arc<Stats>,
) -> Result<ServerTiming, ProbeError> {
    let name = opts.server.clone();
    let source = opts.source_addrs.first().copied();
    let timeout = PROBE_TIMEOUT.min(opts.connect_timeout);
    let (stream, _) = conn::connect(server, source, layers, timeout)
        .await
        .map_err(|error| match error.kind() {
            Some(ErrorKind::ConnRefused) => ProbeError::NotListening {
                server: name.clone(),
            },
            Some(ErrorKind::TimedOut) => ProbeError::ConnectTimeout {
                server: name.clone(),
                timeout,
            },
            _ => ProbeError::Connect {
                server: name.clone(),
                error,
            },
        })?;
    let conn = Conn::new(stream, Arc::clone(stats));
    let token = opts
        .auth_secret
        .as_deref()
        .map(|secret| token::mint_token_for(secret, &id, opts.token_ttl));
    let session = Player::session(id, String::new(), token);
    let mut p = Player::handshake(conn, session, PROBE_TIMEOUT, Arc::clone(stats))
        .await
        .map_err(|(conn, error)| {
            handshake_error(&name, &conn, error, opts.auth_secret.is_some())
        })?;
    let quit = p.quit(p.idle + GRACE).await;
    let why = match (quit, p.bye_code()) {
        (Ok(()), Some(ByeCode::ClientQuit)) => None,
        (Ok(()), code) => Some(format!(
            "expected Bye{{client_quit}} then EOF, got {code:?} then EOF"
        )),
        (Err(error), _) => Some(error.to_string()),
    };
    match why {
        None => Ok(ServerTiming { idle: p.idle }),
        Some(why) => Err(ProbeError::BadQuit { server: name, why }),
    }
}

fn handshake_error(server: &str, conn: &Conn, error: ClientError, have_secret: bool) -> ProbeError {
    let not_game = |why: String| ProbeError::NotGameServer {
        server: server.to_owned(),
        why,
    };
    match error {
        ClientError::ServerBye { code, text } => {
            let hint = match code {
                ByeCode::AuthFailed if have_secret => {
                    " (the token minted from --auth-secret was refused: check it matches the server's auth.secret)"
                }
                ByeCode::AuthFailed => {
                    " (the server wants tokens: pass --auth-secret with its auth.secret)"
                }
                ByeCode::ServerFull => " (the server is at its session limit)",
                ByeCode::VersionMismatch => {
                    " (client-sim and the server speak different protocol versions)"
                }
                _ => "",
            };
            ProbeError::Refused {
                server: server.to_owned(),
                code,
                text: if text.is_empty() {
                    String::new()
                } else {
                    format!(": {text}")
                },
                hint,
            }
        }
        ClientError::Protocol(_)
        | ClientError::Payload(_)
        | ClientError::Unexpected(_)
        | ClientError::Violation(_)
        | ClientError::Truncated => {
            let bytes = conn.undecoded();
            if bytes.starts_with(b"HTTP/") {
                not_game("it answered like an HTTP server (is this the admin port?)".to_owned())
            } else {
                let shown: String = bytes
                    .iter()
                    .take(16)
                    .map(|&b| {
                        if b.is_ascii_graphic() || b == b' ' {
                            b as char
                        } else {
                            '.'
                        }
                    })
                    .collect();
                not_game(format!(
                    "its answer is not this protocol ({error}; first bytes {shown:?})"
                ))
            }
        }
        ClientError::Eof => not_game("it closed the connection without sending Welcome".to_owned()),
        ClientError::Deadline { limit, .. } => {
            not_game(format!("it sent no Welcome within {limit:?}"))
        }
        ClientError::Io {
            kind: ErrorKind::ConnReset,
            ..
        } => not_game("it reset the connection instead of sending Welcome".to_owned()),
        other => ProbeError::Connect {
            server: server.to_owned(),
            error: other,
        },
    }
}

/// Hands out connect permits at `rate` per second; storm instances skip it.
///
/// Permits are computed from elapsed time (not counted ticks), so a busy runtime that misses
/// ticks neither falls behind nor bursts afterwards, and at most a tenth of a second's worth
/// accumulates while no one waits.
#[derive(Debug)]
struct Pacer {
    permits: Option<Arc<Semaphore>>,
    ticker: Option<JoinHandle<()>>,
}

impl Pacer {
    fn start(rate: f64) -> Pacer {
        if rate <= 0.0 {
            return Pacer {
                permits: None,
                ticker: None,
            };
        }
        let permits = Arc::new(Semaphore::new(1));
        let feed = Arc::clone(&permits);
        let cap = (rate / 10.0).ceil().max(1.0) as usize;
        let period = Duration::from_secs_f64(1.0 / rate).max(Duration::from_millis(1));
        let ticker = tokio::spawn(async move {
            let started = Instant::now();
            let mut issued = 1u64;
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
            loop {
                tick.tick().await;
                let owed = (rate * started.elapsed().as_secs_f64()) as u64 + 1;
                if owed > issued {
                    let room = cap.saturating_sub(feed.available_permits());
                    let add = usize::try_from(owed - issued)
                        .unwrap_or(usize::MAX)
                        .min(room);
                    feed.add_permits(add);
                    issued = owed;
                }
            }
        });
        Pacer {
            permits: Some(permits),
            ticker: Some(ticker),
        }
    }

    async fn wait(&self) {
        if let Some(permits) = &self.permits {
            if let Ok(permit) = permits.acquire().await {
                permit.forget();
            }
        }
    }
}

impl Drop for Pacer {
    fn drop(&mut self) {
        if let Some(ticker) = self.ticker.take() {
            ticker.abort();
        }
    }
}

/// The executable the crash scenario starts when none was named: this one if it is client-sim,
/// otherwise (a test harness in `target/debug/deps`) a `client-sim` binary next to it or one
/// directory up. Fails early, with a clear line, when the mix needs one and there is none.
fn find_crash_exe(needed: bool) -> anyhow::Result<PathBuf> {
    let current =
        std::env::current_exe().context("cannot find this executable for the crash scenario")?;
    if current.file_stem().is_some_and(|stem| stem == "client-sim") {
        return Ok(current);
    }
    let mut dir = current.parent();
    for _ in 0..2 {
        let Some(d) = dir else { break };
        let candidate = d.join(format!("client-sim{}", std::env::consts::EXE_SUFFIX));
        if candidate.is_file() {
            return Ok(candidate);
        }
        dir = d.parent();
    }
    if needed {
        anyhow::bail!(
            "the crash scenario runs the client-sim binary as its child, and {} is not it (nor is \
             there a client-sim next to it): set Options::crash_exe",
            current.display()
        );
    }
    Ok(current)
}

/// Resolves `host:port` to one socket address.
async fn resolve(server: &str) -> anyhow::Result<SocketAddr> {
    if let Ok(addr) = server.parse() {
        return Ok(addr);
    }
    tokio::net::lookup_host(server)
        .await
        .with_context(|| format!("cannot resolve {server:?} (expected HOST:PORT)"))?
        .next()
        .with_context(|| format!("{server:?} resolves to no address"))
}

/// Runs the whole thing. See the crate docs for the semantics of slots, instances and duration.
pub async fn run(mut opts: Options) -> anyhow::Result<Report> {
    if let Some(most) = opts.stages.iter().map(|s| s.target).max() {
        opts.clients = most;
    }
    opts.validate()?;
    let fd_limit =
        limits::raise_nofile().context("cannot read or raise the file-descriptor limit")?;
    let capacity = fd_limit.client_capacity();
    if opts.clients as u64 > capacity {
        anyhow::bail!(
            "{} clients need one descriptor each, but this process may open only {} (hard \
             limit {}, {RESERVED_FDS} kept for itself) and the hard limit cannot be raised: lower \
             --clients (or the --stages targets) to {capacity} or run several client-sim processes",
            opts.clients,
            fd_limit.soft,
            fd_limit.hard
        );
    }
    let server = resolve(&opts.server).await?;
    let layers = conn::Layers {
        tls: opts
            .tls
            .as_ref()
            .map(|tls| tls.client(&opts.server))
            .transpose()
            .context("cannot set up TLS (--tls, --tls-ca, --tls-server-name)")?,
        websocket: opts.websocket_url(),
    };
    let admin = opts
        .metrics_url
        .as_deref()
        .map(|url| Admin::new(url, opts.admin_token.clone()))
        .transpose()?;
    let run_id = format!("{:08x}", rand::random::<u32>());
    let stats = Arc::new(Stats::default());
    let ledger = match &admin {
        Some(admin) => Some(Arc::new(
            Ledger::open(
                admin,
                &format!("{}-{run_id}-", opts.player_prefix),
                Arc::clone(&stats),
            )
            .await?,
        )),
        None => None,
    };
    let timing = probe(
        &opts,
        server,
        &layers,
        format!("{}-{run_id}-probe", opts.player_prefix),
        &stats,
    )
    .await?;
    let mut expected = Expected::default();
    expected.add("probe", Expect::Exact(Reason::ClientQuit));

    let crash_exe = match &opts.crash_exe {
        Some(exe) => exe.clone(),
        None => find_crash_exe(opts.mix.contains(Scenario::Crash))?,
    };
    let ctx = Arc::new(Ctx {
        opts: opts.clone(),
        server,
        stats: Arc::clone(&stats),
        admin: admin.clone(),
        run_id,
        crash_exe,
        layers,
        ends: opts.duration.map(|d| Instant::now() + d),
    });
    let expected = Arc::new(Mutex::new(expected));
    let started = Instant::now();
    let started_at = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let staged: Option<Duration> =
        (!opts.stages.is_empty()).then(|| opts.stages.iter().map(|s| s.duration).sum());
    let length = opts.duration.or(staged);
    let total = length.is_none().then_some(opts.clients as u64);
    let progress = Progress::start(opts.progress, Arc::clone(&stats), total, length);
    let series = Series::start(Arc::clone(&stats), opts.interval);
    let keeping = match (&admin, &ledger) {
        (Some(admin), Some(ledger)) => Some(tokio::spawn(ledger::keep(
            admin.clone(),
            Arc::clone(ledger),
        ))),
        _ => None,
    };
    let pacer = Arc::new(Pacer::start(opts.connect_rate));
    let drawer = Arc::new(Mutex::new(opts.mix.drawer()));
    let next_source = Arc::new(AtomicUsize::new(0));
    let deadline = opts.duration.map(|d| started + d);

    let mut slots = JoinSet::new();
    for slot in 0..opts.clients {
        let ctx = Arc::clone(&ctx);
        let pacer = Arc::clone(&pacer);
        let drawer = Arc::clone(&drawer);
        let expected = Arc::clone(&expected);
        let next_source = Arc::clone(&next_source);
        slots.spawn(async move {
            let mut n = 0u64;
            let stages = &ctx.opts.stages;
            loop {
                // With stages, this slot is busy only while the ramp wants at least slot + 1.
                while !stages.is_empty() {
                    match stage_target(stages, started.elapsed()) {
                        None => return,
                        Some(target) if slot < target => break,
                        Some(_) => tokio::time::sleep(STAGE_POLL).await,
                    }
                }
                let scenario = drawer.lock().unwrap_or_else(PoisonError::into_inner).draw();
                if !scenario.unpaced() {
                    pacer.wait().await;
                }
                if n > 0 && deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                // A server that drains takes no new sessions: start none.
                if get(&ctx.stats.drained) > 0 {
                    break;
                }
                let sources = &ctx.opts.source_addrs;
                let source: Option<IpAddr> = (!sources.is_empty())
                    .then(|| sources[next_source.fetch_add(1, Ordering::Relaxed) % sources.len()]);
                let inst = Instance {
                    ctx: Arc::clone(&ctx),
                    scenario,
                    id: format!("{}-{}-{slot}-{n}", ctx.opts.player_prefix, ctx.run_id),
                    source,
                    drained: Arc::new(AtomicBool::new(false)),
                };
                crate::stats::add(&ctx.stats.started, 1);
                let mut verdict = scenarios::run(&inst).await;
                if inst.drained.load(Ordering::Relaxed) {
                    crate::stats::add(&ctx.stats.drained, 1);
                    verdict = verdict.drained();
                }
                ctx.stats.record_outcome(
                    Some(scenario),
                    &verdict.errors,
                    verdict.failure.as_deref(),
                );
                if let Some(failure) = &verdict.failure {
                    tracing::debug!(scenario = %scenario, player = %inst.id, "{failure}");
                }
                let mut expected = expected.lock().unwrap_or_else(PoisonError::into_inner);
                for expect in verdict.expects {
                    expected.add(scenario.as_str(), expect);
                }
                drop(expected);
                n += 1;
                if stages.is_empty() && deadline.is_none_or(|d| Instant::now() >= d) {
                    break;
                }
            }
        });
    }
    while let Some(joined) = slots.join_next().await {
        if let Err(error) = joined {
            tracing::error!("a client slot panicked: {error}");
        }
    }
    let elapsed = started.elapsed();
    drop(pacer);
    progress.finish();
    let series = series.finish();

    let expected = expected
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let reconciliation = match (&admin, &ledger) {
        (Some(admin), Some(ledger)) => {
            let bound = opts.settle_timeout.unwrap_or(timing.idle + GRACE);
            Some(settle(admin, ledger, &expected, bound).await)
        }
        _ => None,
    };
    if let Some(keeping) = keeping {
        keeping.abort();
    }
    let mut report = build_report(&opts, &stats, fd_limit, elapsed, reconciliation);
    report.started_at = started_at;
    report.series = series;
    report.thresholds = opts.thresholds.iter().map(|t| t.check(&report)).collect();
    report.verdict = report.verdict_word().to_owned();
    Ok(report)
}

/// Reads the server's account until it matches, stops changing for [`STABLE_FOR`], or `bound`
/// passes. A server that no longer answers (it drained and exited) is judged on the last
/// reading the ledger took.
async fn settle(
    admin: &Admin,
    ledger: &Ledger,
    expected: &Expected,
    bound: Duration,
) -> Reconciliation {
    let judge = |reading: &Reading| {
        let mut rec = reconcile::reconcile(expected, &reading.closes);
        rec.method = ledger.method().to_owned();
        if let Some(short) = &reading.short {
            rec.ok = false;
            rec.notes.push(short.clone());
        }
        rec
    };
    let started = Instant::now();
    let mut last: Option<BTreeMap<String, i64>> = None;
    let mut last_change = Instant::now();
    loop {
        let verdict = match ledger.read(admin).await {
            Ok(reading) => {
                let rec = judge(&reading);
                if rec.ok {
                    return rec;
                }
                if last.as_ref() != Some(&reading.closes) {
                    last = Some(reading.closes);
                    last_change = Instant::now();
                }
                Ok(rec)
            }
            Err(error) if ledger.draining() => {
                if let Some(reading) = ledger.last().await {
                    let mut rec = judge(&reading);
                    rec.notes.push(format!(
                        "the server drained and no longer answers ({error}): compared with its \
                         last reading, taken while it drained"
                    ));
                    return rec;
                }
                Err(error)
            }
            Err(error) => Err(error),
        };
        let stable = last.is_some() && last_change.elapsed() >= STABLE_FOR;
        if stable || started.elapsed() >= bound {
            return match verdict {
                Ok(rec) => rec,
                Err(error) => {
                    let mut rec = reconcile::reconcile(expected, &BTreeMap::new());
                    rec.ok = false;
                    rec.method = ledger.method().to_owned();
                    rec.notes.push(format!("the last reading failed: {error}"));
                    rec
                }
            };
        }
        tokio::time::sleep(SCRAPE_EVERY).await;
    }
}

fn build_report(
    opts: &Options,
    stats: &Stats,
    fd_limit: limits::FdLimit,
    elapsed: Duration,
    reconciliation: Option<Reconciliation>,
) -> Report {
    let secs = elapsed.as_secs_f64().max(0.001);
    let (connect_ms, rtt_ms, detection_ms) = stats.latencies();
    let sent = get(&stats.sent_msgs);
    let received = get(&stats.recv_msgs);
    Report {
        schema_version: SCHEMA_VERSION,
        started_at: String::new(),
        verdict: String::new(),
        drained: get(&stats.drained),
        thresholds: Vec::new(),
        series: Vec::new(),
        server: opts.server.clone(),
        mix: opts.mix.to_string(),
        clients: opts.clients,
        elapsed_secs: elapsed.as_secs_f64(),
        fd_limit,
        instances: get(&stats.started),
        failed_instances: get(&stats.failed),
        scenarios: stats
            .scenario_counts()
            .into_iter()
            .map(|(s, c)| (s.as_str().to_owned(), c))
            .collect(),
        connects: Connects {
            ok: get(&stats.connect_ok),
            failed: get(&stats.connect_failed),
        },
        messages: Traffic {
            sent,
            received,
            sent_per_sec: sent as f64 / secs,
            received_per_sec: received as f64 / secs,
            bytes_sent: get(&stats.sent_bytes),
            bytes_received: get(&stats.recv_bytes),
        },
        latency: Latencies {
            connect_ms,
            rtt_ms,
            detection_ms,
        },
        errors: stats
            .errors_by_kind()
            .into_iter()
            .map(|(kind, (provoked, unexpected))| {
                (
                    kind,
                    ErrorCount {
                        provoked,
                        unexpected,
                    },
                )
            })
            .collect(),
        resume: ResumeStats {
            attempted: get(&stats.resumes_attempted),
            succeeded: get(&stats.resumes_succeeded),
            resume_off: get(&stats.resume_off),
            events_lost: get(&stats.events_lost),
            events_duplicated: get(&stats.events_duplicated),
            inputs_applied_twice: get(&stats.inputs_applied_twice),
            inputs_lost: get(&stats.inputs_lost),
        },
        failures: stats.failure_examples(),
        reconciliation,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    async fn probe_at(addr: SocketAddr) -> Result<ServerTiming, ProbeError> {
        let opts = Options {
            server: addr.to_string(),
            ..Options::default()
        };
        probe(
            &opts,
            addr,
            &Default::default(),
            "probe".into(),
            &Arc::new(Stats::default()),
        )
        .await
    }

    /// Serves one connection: reads the Hello, answers with `reply`, closes.
    async fn answer_once(reply: &'static [u8]) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut hello = [0u8; 64];
            let _ = socket.read(&mut hello).await;
            socket.write_all(reply).await.unwrap();
            let _ = socket.shutdown().await;
            let _ = socket.read(&mut hello).await;
        });
        addr
    }

    #[tokio::test]
    async fn probe_says_nothing_listens_on_a_closed_port() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let error = probe_at(addr).await.unwrap_err();
        assert!(matches!(error, ProbeError::NotListening { .. }), "{error}");
        assert!(error.to_string().contains("is the game server running"));
    }

    #[tokio::test]
    async fn probe_recognises_an_http_server() {
        let addr = answer_once(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n").await;
        let error = probe_at(addr).await.unwrap_err().to_string();
        assert!(
            error.contains("is not a game server") && error.contains("HTTP"),
            "{error}"
        );
        assert!(!error.contains('\n'), "one line: {error}");
    }

    #[tokio::test]
    async fn probe_recognises_another_protocol_and_a_silent_close() {
        let addr = answer_once(b"SSH-2.0-OpenSSH_9.2\r\n").await;
        let error = probe_at(addr).await.unwrap_err().to_string();
        assert!(
            error.contains("not this protocol") && error.contains("SSH-2.0"),
            "{error}"
        );
        let addr = answer_once(b"").await;
        let error = probe_at(addr).await.unwrap_err().to_string();
        assert!(
            error.contains("closed the connection without sending Welcome"),
            "{error}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn pacer_spreads_connects_at_the_rate() {
        let pacer = Pacer::start(100.0);
        let started = Instant::now();
        for _ in 0..51 {
            pacer.wait().await;
        }
        let took = started.elapsed();
        // The first permit is immediate, then one every 10 ms.
        assert!(
            took >= Duration::from_millis(490) && took <= Duration::from_millis(520),
            "{took:?}"
        );
    }

    #[tokio::test]
    async fn an_unpaced_pacer_never_waits() {
        let pacer = Pacer::start(0.0);
        for _ in 0..1000 {
            pacer.wait().await;
        }
    }
}
