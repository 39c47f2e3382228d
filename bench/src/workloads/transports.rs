//! Transports: the memory and throughput of a session over each transport.

use std::time::Duration;

use anyhow::{Context, bail};

use crate::client::{self, Crowd, Plan};
use crate::procs::{Binaries, Server, Settings, Target};
use crate::report::{Goal, Measure};

use super::throughput::pipelined_turns;
use super::{Scale, heartbeat_env, kib, server_heartbeat, unthrottled};

/// Sessions each transport holds in [`transports`]: enough for per-session figures to stand
/// out of the process's own, few enough that 4 x 5,000 TLS handshakes stay quick.
const TRANSPORT_SESSIONS: usize = 5_000;

/// One transport: TLS and WebSocket, each on or off.
#[derive(Debug, Clone, Copy)]
struct Kind {
    name: &'static str,
    tls: bool,
    websocket: bool,
}

const KINDS: [Kind; 4] = [
    Kind {
        name: "tcp",
        tls: false,
        websocket: false,
    },
    Kind {
        name: "tls",
        tls: true,
        websocket: false,
    },
    Kind {
        name: "websocket",
        tls: false,
        websocket: true,
    },
    Kind {
        name: "wss",
        tls: true,
        websocket: true,
    },
];

/// The servers' certificate and key files, and the clients' trust in them.
struct Certificate {
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
    trust: game_client::Tls,
}

/// Starts the game server for one transport and registers what its port speaks; returns it and
/// the address its clients connect to.
async fn start(
    bins: &Binaries,
    scale: &Scale,
    certificate: &Certificate,
    kind: Kind,
    label: &str,
) -> anyhow::Result<(Server, std::net::SocketAddr)> {
    let mut env = unthrottled();
    env.push(heartbeat_env(server_heartbeat(scale.hold_heartbeat)));
    if kind.tls {
        env.push((
            "GAMESERVER__TLS__CERT_FILE".into(),
            certificate.cert.display().to_string(),
        ));
        env.push((
            "GAMESERVER__TLS__KEY_FILE".into(),
            certificate.key.display().to_string(),
        ));
    }
    let ws = crate::procs::free_port()?;
    if kind.websocket {
        env.push((
            "GAMESERVER__SERVER__WEBSOCKET_LISTEN".into(),
            ws.to_string(),
        ));
    }
    let settings = Settings {
        idle_timeout: Some(Duration::from_secs(15)),
        env,
        broadcast: false,
    };
    let server = Server::start(bins, Target::Ours, &settings, label).await?;
    let addr = if kind.websocket { ws } else { server.addr };
    let scheme = if kind.tls { "wss" } else { "ws" };
    client::speak(
        addr,
        client::Layers {
            tls: kind.tls.then(|| certificate.trust.clone()),
            websocket: kind
                .websocket
                .then(|| format!("{scheme}://localhost:{}/", addr.port())),
        },
    );
    Ok((server, addr))
}

/// 10: the game server over TLS, WebSocket and WebSocket over TLS (wss), against itself over
/// plain TCP: what each holding session costs (user-space RSS, CPU) and pipelined throughput.
/// The baseline column of these rows is plain TCP on the same server, not the bare baseline.
pub(super) async fn transports(
    bins: &Binaries,
    scale: &Scale,
    run: usize,
) -> anyhow::Result<Vec<Measure>> {
    let pair = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
        .context("generate a certificate")?;
    let cert = bins.log_dir.join("bench-cert.pem");
    let key = bins.log_dir.join("bench-key.pem");
    std::fs::write(&cert, pair.cert.pem()).context("write the certificate")?;
    std::fs::write(&key, pair.signing_key.serialize_pem()).context("write the key")?;
    let tls = game_client::Tls::trusting(Some(&cert), "localhost")?;
    let certificate = Certificate {
        cert: cert.clone(),
        key: key.clone(),
        trust: tls.clone(),
    };
    let n = scale.sessions.min(TRANSPORT_SESSIONS);
    let mut rss = Vec::new();
    let mut cpu = Vec::new();
    for kind in KINDS {
        let name = kind.name;
        let (server, addr) = start(
            bins,
            scale,
            &certificate,
            kind,
            &format!("transport-{name}"),
        )
        .await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let idle_rss = server.rss_kib()?;
        let plan = Plan {
            n,
            concurrency: scale.concurrency,
            name: format!("hold-{name}-{run}"),
            heartbeat: Some(scale.hold_heartbeat),
            quit_with_bye: false,
            spread_pings: true,
        };
        let crowd = Crowd::gather(Target::Ours, addr, &plan).await;
        let joined = crowd.joined();
        if joined == 0 {
            bail!("transports: no client joined over {name}");
        }
        tokio::time::sleep(scale.hold_heartbeat.min(Duration::from_secs(2))).await;
        let cpu_start = server.cpu()?;
        tokio::time::sleep(scale.hold).await;
        let cpu_used = server.cpu()?.saturating_sub(cpu_start);
        let held_rss = server.rss_kib()?;
        let per_session = kib(held_rss.saturating_sub(idle_rss)) / joined as f64;
        let percent = cpu_used.as_secs_f64() / scale.hold.as_secs_f64() * 100.0;
        crowd.disperse().await;
        eprintln!(
            "bench: transport {name}: {joined} sessions, RSS {idle_rss} -> {held_rss} KiB \
             ({per_session:.2} KiB each), CPU {percent:.2}% over {:?}",
            scale.hold
        );
        rss.push(per_session);
        cpu.push(percent);
    }
    // Pipelined inputs over each transport: four fresh servers up together, measured in
    // alternating turns, so that the load generator's share of the two cores and any slow
    // moment fall on every transport alike.
    let mut servers = Vec::with_capacity(KINDS.len());
    for kind in KINDS {
        let label = format!("pipelined-{}", kind.name);
        let (server, addr) = start(bins, scale, &certificate, kind, &label).await?;
        servers.push((server, addr, kind.name));
    }
    let pumped: Vec<_> = servers
        .iter()
        .map(|(_, addr, name)| (Target::Ours, *addr, *name))
        .collect();
    let rate = pipelined_turns(&pumped, scale, &format!("transport{run}")).await?;
    drop(servers);
    let peers = peers(bins, scale, n, &cert, &key, &tls).await?;
    let note = "The baseline column of the transport rows is the same game server over plain \
                TCP in the same run (5,000 held sessions, heartbeat and pipelining as in 1 and \
                4), not the bare Tokio baseline; TLS is rustls for the handshake (its unbuffered \
                API, under the server's own socket) and the server's own TLS 1.3 record layer \
                after it, with ring's TLS 1.3 suites, a self-signed ECDSA P-256 \
                certificate; WebSocket is the server's own framing, one frame per binary \
                message.";
    // Row names per transport (TLS, WebSocket, wss) and figure (RSS, CPU, pipelined).
    const METRICS: [[&str; 3]; 3] = [
        [
            "over TLS: user-space RSS per held session",
            "over TLS: server CPU while holding",
            "over TLS: pipelined 32-byte inputs, 100 connections",
        ],
        [
            "over WebSocket: user-space RSS per held session",
            "over WebSocket: server CPU while holding",
            "over WebSocket: pipelined 32-byte inputs, 100 connections",
        ],
        [
            "over wss: user-space RSS per held session",
            "over wss: server CPU while holding",
            "over wss: pipelined 32-byte inputs, 100 connections",
        ],
    ];
    const STRETCH: [&str; 3] = [
        "over TLS: user-space RSS per held session, stretch",
        "over WebSocket: user-space RSS per held session, stretch",
        "over wss: user-space RSS per held session, stretch",
    ];
    const UNITS: [&str; 3] = ["KiB", "% of a core", "frames/s"];
    // Each transport against TCP: memory within 2x for all three, holding CPU within 1.3x over
    // TLS and wss (WebSocket adds no cryptography), pipelined inputs at 0.8x over WebSocket and
    // wss.
    const GOALS: [[Goal; 3]; 3] = [
        [Goal::RatioAtMost(2.0), Goal::RatioAtMost(1.3), Goal::None],
        [Goal::RatioAtMost(2.0), Goal::None, Goal::RatioAtLeast(0.8)],
        [
            Goal::RatioAtMost(2.0),
            Goal::RatioAtMost(1.3),
            Goal::RatioAtLeast(0.8),
        ],
    ];
    let figures = [&rss, &cpu, &rate];
    let mut out = Vec::new();
    for (k, names) in METRICS.iter().enumerate() {
        for (f, metric) in names.iter().enumerate() {
            out.push(
                Measure::ours("10 transports", metric, UNITS[f])
                    .value(figures[f][k + 1])
                    .baseline(Some(figures[f][0]))
                    .goal(GOALS[k][f])
                    .note(note),
            );
        }
        // The stretch: a layered session within 1.5x of a TCP one.
        out.push(
            Measure::ours("10 transports", STRETCH[k], UNITS[0])
                .value(figures[0][k + 1])
                .baseline(Some(figures[0][0]))
                .goal(Goal::RatioAtMost(1.5))
                .note(note),
        );
    }
    for peer in peers {
        let ours = match peer.over {
            "TLS" => rss[1],
            _ => rss[2],
        };
        let ours_cpu = match peer.over {
            "TLS" => cpu[1],
            _ => cpu[2],
        };
        let mut row = Measure::ours("10 transports", peer.rss_metric, "KiB")
            .baseline(Some(peer.rss))
            .goal(Goal::RatioAtMost(1.0))
            .note(&peer.note);
        row.ours = Some(ours);
        out.push(row);
        let mut row = Measure::ours("10 transports", peer.cpu_metric, "% of a core")
            .baseline(Some(peer.cpu))
            .note(&peer.note);
        row.ours = Some(ours_cpu);
        out.push(row);
    }
    Ok(out)
}

/// A peer's figures over one transport, beside ours.
struct Peer {
    /// `TLS` or `WebSocket`.
    over: &'static str,
    rss_metric: &'static str,
    cpu_metric: &'static str,
    /// User-space RSS per idle connection, KiB.
    rss: f64,
    /// CPU while holding them, % of a core.
    cpu: f64,
    note: String,
}

/// Mosquitto over TLS and Node's `ws` over WebSocket, each holding `n` idle connections with a
/// keepalive for the hold's duration: RSS per connection and CPU. A peer that is not installed
/// is skipped with a message.
async fn peers(
    bins: &Binaries,
    scale: &Scale,
    n: usize,
    cert: &std::path::Path,
    key: &std::path::Path,
    tls: &game_client::Tls,
) -> anyhow::Result<Vec<Peer>> {
    let mut out = Vec::new();
    let every = Duration::from_secs(10).min(scale.hold_heartbeat);
    match crate::mqtt::mosquitto() {
        None => eprintln!(
            "bench: mosquitto is not installed (apt-get install mosquitto): its TLS rows are skipped"
        ),
        Some(path) => {
            let broker = crate::mqtt::Broker::start_with(
                &path,
                &bins.log_dir,
                "transports-tls",
                n as u64 + 64,
                Some((cert, key)),
            )?;
            tokio::time::sleep(Duration::from_millis(500)).await;
            let idle_rss = broker.rss_kib()?;
            let clients = crate::mqtt::idle(
                broker.addr,
                n,
                scale.concurrency,
                10,
                every,
                "tls-hold",
                Some(tls.clone()),
            )
            .await;
            if clients.joined == 0 {
                bail!("transports: no MQTT client connected to mosquitto over TLS");
            }
            tokio::time::sleep(every.min(Duration::from_secs(2))).await;
            let cpu_start = crate::procs::cpu_time(broker.pid())?;
            tokio::time::sleep(scale.hold).await;
            let cpu_used = crate::procs::cpu_time(broker.pid())?.saturating_sub(cpu_start);
            let held_rss = broker.rss_kib()?;
            let joined = clients.joined;
            clients.disperse().await;
            let rss = kib(held_rss.saturating_sub(idle_rss)) / joined as f64;
            eprintln!(
                "bench: transport peer mosquitto over TLS: {joined} connections, RSS {idle_rss} -> \
                 {held_rss} KiB ({rss:.2} KiB each), CPU {cpu_used:?} over {:?}",
                scale.hold
            );
            out.push(Peer {
                over: "TLS",
                rss_metric: "over TLS: mosquitto's user-space RSS per idle connection (ours: per \
                             session)",
                cpu_metric: "over TLS: mosquitto's CPU while holding (ours: the server's)",
                rss,
                cpu: cpu_used.as_secs_f64() / scale.hold.as_secs_f64() * 100.0,
                note: format!(
                    "The baseline column of this row is mosquitto over TLS: {}. Held: as many \
                     MQTT 3.1.1 connections over TLS (the same certificate as ours) as our \
                     sessions, keepalive 10 s, each client sending PINGREQ every {}; RSS after \
                     minus RSS before, per connection; CPU over the hold.",
                    broker.command,
                    humantime::format_duration(every)
                ),
            });
        }
    }
    match crate::wspeer::available() {
        Err(why) => eprintln!("bench: the ws peer cannot run ({why}): its rows are skipped"),
        Ok(_) => {
            let server = crate::wspeer::WsServer::start(every)?;
            tokio::time::sleep(Duration::from_millis(500)).await;
            let idle_rss = server.rss_kib()?;
            let clients = crate::wspeer::idle(server.addr, n, scale.concurrency).await?;
            tokio::time::sleep(every.min(Duration::from_secs(2))).await;
            let cpu_start = crate::procs::cpu_time(server.pid())?;
            tokio::time::sleep(scale.hold).await;
            let cpu_used = crate::procs::cpu_time(server.pid())?.saturating_sub(cpu_start);
            let held_rss = server.rss_kib()?;
            let joined = clients.joined;
            clients.disperse().await;
            let rss = kib(held_rss.saturating_sub(idle_rss)) / joined as f64;
            eprintln!(
                "bench: transport peer ws: {joined} connections, RSS {idle_rss} -> {held_rss} KiB \
                 ({rss:.2} KiB each), CPU {cpu_used:?} over {:?}",
                scale.hold
            );
            out.push(Peer {
                over: "WebSocket",
                rss_metric: "over WebSocket: Node ws's user-space RSS per idle connection \
                             (ours: per session)",
                cpu_metric: "over WebSocket: Node ws's CPU while holding (ours: the server's)",
                rss,
                cpu: cpu_used.as_secs_f64() / scale.hold.as_secs_f64() * 100.0,
                note: format!(
                    "The baseline column of this row is {}. Held: as many WebSocket \
                     connections as our sessions, idle, answering its pings; RSS after minus \
                     RSS before, per connection; CPU over the hold.",
                    server.command
                ),
            });
        }
    }
    Ok(out)
}
