//! Bad networks, for real: a server namespace and a client namespace joined by a link shaped as
//! a named profile (loss per direction with nftables, bandwidth caps and queue depth with `tc
//! tbf`, a bulk transfer each way that keeps the queue full), a crowd of players on it who
//! resume when the server cuts them, and the figures of issue 29: false disconnects by reason,
//! detection of links then cut, input round trips, resumes, anything lost or repeated.
//!
//! The players share the one link. Caps are set for the crowd (so that the players' own traffic
//! fits, as one player's fits on a real link) and the bulk transfers fill the rest and the
//! queue: each player then sees the profile's loss and queueing delay, which are what decide
//! whether a heartbeat or an idle timeout misfires.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use protocol::{ClientMessage, ServerMessage};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::netns::{Pair, connect_in, listen_in};
use crate::process::ServerProcess;
use crate::{RawClient, hello_in, relay, resume_hello};

/// What a link does to packets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Link {
    /// Packets lost from the client to the server, per thousand.
    pub loss_up: u32,
    /// Packets lost from the server to the client, per thousand.
    pub loss_down: u32,
    /// Cap from the client to the server, kbit/s (none: the veth's own speed).
    pub up_kbit: Option<u32>,
    /// Cap from the server to the client, kbit/s.
    pub down_kbit: Option<u32>,
    /// The most a packet waits in a capped link's queue before it is dropped (tbf `latency`).
    pub queue: Duration,
    /// A bulk transfer each way beside the game, keeping a capped link's queue full (someone
    /// else on the network downloading and uploading).
    pub loaded: bool,
}

/// A named network and the settings recommended for it.
#[derive(Debug, Clone, Copy)]
pub struct Profile {
    /// Its short name.
    pub name: &'static str,
    /// What it models.
    pub models: &'static str,
    /// The link.
    pub link: Link,
}

const CLEAN: Link = Link {
    loss_up: 0,
    loss_down: 0,
    up_kbit: None,
    down_kbit: None,
    queue: Duration::ZERO,
    loaded: false,
};

/// The profiles, from the best network to the worst.
pub const PROFILES: [Profile; 6] = [
    Profile {
        name: "lan",
        models: "a clean LAN: no loss, no cap",
        link: CLEAN,
    },
    Profile {
        name: "broadband",
        models: "home broadband: 0.2% loss each way, 50 Mbit/s down, 10 up, 50 ms queues",
        link: Link {
            loss_up: 2,
            loss_down: 2,
            up_kbit: Some(10_000),
            down_kbit: Some(50_000),
            queue: Duration::from_millis(50),
            loaded: false,
        },
    },
    Profile {
        name: "wifi",
        models: "congested Wi-Fi: 3% loss each way, 20 Mbit/s each way shared with a download \
                 and an upload, 200 ms queues",
        link: Link {
            loss_up: 30,
            loss_down: 30,
            up_kbit: Some(20_000),
            down_kbit: Some(20_000),
            queue: Duration::from_millis(200),
            loaded: true,
        },
    },
    Profile {
        name: "mobile",
        models: "3G/LTE under load: 1% loss each way, 8 Mbit/s down, 5 up, deep 1 s queues kept \
                 full by a download and an upload",
        link: Link {
            loss_up: 10,
            loss_down: 10,
            up_kbit: Some(5_000),
            down_kbit: Some(8_000),
            queue: Duration::from_millis(1000),
            loaded: true,
        },
    },
    Profile {
        name: "loss10",
        models: "a failing link: 10% loss each way, no cap",
        link: Link {
            loss_up: 100,
            loss_down: 100,
            ..CLEAN
        },
    },
    Profile {
        name: "loss20",
        models: "a link at its limit: 20% loss each way, no cap",
        link: Link {
            loss_up: 200,
            loss_down: 200,
            ..CLEAN
        },
    },
];

/// The profile named `name`.
pub fn profile(name: &str) -> Option<Profile> {
    PROFILES.iter().copied().find(|p| p.name == name)
}

/// Server settings a run is measured with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How the table names them ("defaults", "recommended").
    pub name: String,
    /// The `[session]` keys (TOML), over the embedded defaults.
    pub session: String,
    /// The idle timeout they give (for the detection bound).
    pub idle_timeout: Duration,
}

impl Settings {
    /// The embedded defaults: heartbeat 5 s, idle timeout 15 s.
    pub fn defaults() -> Settings {
        Settings {
            name: "defaults".into(),
            session: String::new(),
            idle_timeout: Duration::from_secs(15),
        }
    }

    /// These settings with `session.loss_grace` set to `grace` (zero: off), named so.
    pub fn with_loss_grace(mut self, grace: Duration) -> Settings {
        self.session
            .push_str(&format!("loss_grace = \"{}ms\"\n", grace.as_millis()));
        self.name = format!(
            "{}, loss grace {}",
            self.name,
            humantime::format_duration(grace)
        );
        self
    }

    /// A heartbeat and idle timeout of their own.
    pub fn timing(name: &str, heartbeat: Duration, idle_timeout: Duration) -> Settings {
        Settings {
            name: name.into(),
            session: format!(
                "heartbeat_interval = \"{}ms\"\nidle_timeout = \"{}ms\"\n",
                heartbeat.as_millis(),
                idle_timeout.as_millis()
            ),
            idle_timeout,
        }
    }
}

/// The settings recommended for `profile`: the fastest detection measured to cut no live
/// player there (BENCHMARKS.md, "Bad networks"). Up to 10% loss, and on queues up to a second
/// deep, a 1 s heartbeat and a 3 s idle timeout cut no one, with or without the loss grace. At 20%
/// loss the kernel itself now and then gives up on a connection (`tcp_timeout`, after
/// `tcp.user_timeout` of unacknowledged data) whatever the heartbeat: the defaults.
pub fn recommended(profile: &Profile) -> Settings {
    match profile.name {
        "loss20" => Settings {
            name: "recommended (the defaults)".into(),
            ..Settings::defaults()
        },
        _ => Settings::timing(
            "recommended",
            Duration::from_secs(1),
            Duration::from_secs(3),
        ),
    }
}

/// How big a run is.
#[derive(Debug, Clone, Copy)]
pub struct Size {
    /// Players on the link.
    pub players: usize,
    /// How long they all play before some links are cut.
    pub play: Duration,
    /// Players whose links are then cut.
    pub cut: usize,
}

/// One row of the profile table.
#[derive(Debug, Clone)]
pub struct Row {
    /// The profile.
    pub profile: &'static str,
    /// The settings.
    pub settings: String,
    /// Players and play time.
    pub size: Size,
    /// Sessions the server closed while their client was alive and playing, by reason.
    pub false_disconnects: BTreeMap<String, u64>,
    /// Resumes the players made after such a close.
    pub resumes: u64,
    /// Idle deadlines the server extended by its loss grace (`gameserver_loss_grace_total`).
    pub graces: u64,
    /// From each cut to the server's close of that session, sorted.
    pub detection: Vec<Duration>,
    /// Cut links the server had not closed when the run gave up waiting.
    pub undetected: usize,
    /// Input-to-relay round trips of the players not cut, sorted.
    pub rtts: Vec<Duration>,
    /// Inputs sent by the players not cut.
    pub sent: u64,
    /// Inputs of theirs never relayed back.
    pub lost: u64,
    /// Relays of theirs that came twice.
    pub duplicated: u64,
    /// The mean throughput each bulk transfer reached, kbit/s (none without load).
    pub bulk_kbit: Option<(u64, u64)>,
}

/// The value at quantile `q` of sorted `values`.
pub fn quantile(values: &[Duration], q: f64) -> Option<Duration> {
    (!values.is_empty()).then(|| values[((values.len() - 1) as f64 * q).round() as usize])
}

impl Row {
    /// False disconnects in all.
    pub fn false_total(&self) -> u64 {
        self.false_disconnects.values().sum()
    }

    /// One line of the Markdown table.
    pub fn markdown(&self) -> String {
        let ms = |d: Option<Duration>| {
            d.map_or("-".into(), |d| format!("{:.0}", d.as_secs_f64() * 1000.0))
        };
        let fine = |d: Option<Duration>| {
            d.map_or("-".into(), |d| format!("{:.1}", d.as_secs_f64() * 1000.0))
        };
        let falses = if self.false_total() == 0 {
            "0".to_owned()
        } else {
            self.false_disconnects
                .iter()
                .map(|(reason, n)| format!("{n} {reason}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!(
            "| {} | {} | {} x {}s | {} | {} | {} | {} / {} / {}{} | {} / {} | {} / {} |",
            self.profile,
            self.settings,
            self.size.players,
            self.size.play.as_secs(),
            falses,
            self.resumes,
            self.graces,
            ms(quantile(&self.detection, 0.5)),
            ms(quantile(&self.detection, 0.99)),
            ms(self.detection.last().copied()),
            if self.undetected > 0 {
                format!(" ({} not found)", self.undetected)
            } else {
                String::new()
            },
            fine(quantile(&self.rtts, 0.5)),
            fine(quantile(&self.rtts, 0.99)),
            self.lost,
            self.duplicated,
        )
    }

    /// The table's header.
    pub fn header() -> &'static str {
        "| profile | settings | players x play | false disconnects | resumes | loss graces | detection p50 / p99 / max (ms) | input round trip p50 / p99 (ms) | lost / duplicated |\n|---|---|---|---:|---:|---:|---:|---:|---:|"
    }
}

impl Pair {
    /// Shapes the link as `link` for the game server on `port`: its connections' loss per
    /// direction on the client's interface (nftables; the bulk transfers, which only keep the
    /// queues full, lose nothing, as a radio link's own retransmissions hide its loss from a
    /// download while it delays it), caps and queues on each side's egress (`tc tbf`).
    pub fn shape(&self, link: &Link, port: u16) {
        if link.loss_up > 0 || link.loss_down > 0 {
            self.lose_on_port(Some(port), link.loss_up, link.loss_down);
        }
        // Each cap is a queue on the receiving side's ingress (redirected through an ifb
        // device): a queue on the sender's own egress would stay nearly empty, since the kernel
        // keeps a local sender's bytes in its qdisc to about a millisecond (TCP small queues),
        // while a router's queue ahead of a congested link fills.
        let (c, s) = (self.client_prefix(), self.server_prefix());
        for (words, dev, kbit, ifb) in [
            (
                c,
                &self.client_if,
                link.down_kbit,
                format!("ib{}", self.client_if),
            ),
            (
                s,
                &self.server_if,
                link.up_kbit,
                format!("ib{}", self.server_if),
            ),
        ] {
            let Some(kbit) = kbit else { continue };
            let rate = format!("{kbit}kbit");
            // A burst of at least one MTU and about 2 ms of the rate.
            let burst = format!("{}", (kbit as u64 * 1000 / 8 / 500).max(3000));
            let latency = format!("{}ms", link.queue.as_millis().max(1));
            let run = |args: &[&str]| {
                crate::process::run(
                    std::process::Command::new(words[0])
                        .args(&words[1..])
                        .args(args),
                )
                .expect_success();
            };
            run(&["ip", "link", "add", &ifb, "type", "ifb"]);
            run(&["ip", "link", "set", &ifb, "up"]);
            run(&[
                "tc", "qdisc", "add", "dev", dev, "handle", "ffff:", "ingress",
            ]);
            run(&[
                "tc", "filter", "add", "dev", dev, "parent", "ffff:", "protocol", "all", "u32",
                "match", "u32", "0", "0", "action", "mirred", "egress", "redirect", "dev", &ifb,
            ]);
            run(&[
                "tc", "qdisc", "add", "dev", &ifb, "root", "tbf", "rate", &rate, "burst", &burst,
                "latency", &latency,
            ]);
        }
    }
}

/// A player on the profile's link: it plays 20 inputs a second in a room of its own, answers
/// pings, acknowledges events, and when the server ends its session (a false disconnect, since
/// it is alive) it resumes over a new connection and sends again what the server had not
/// applied. It counts every relay, so that one lost or repeated shows.
#[derive(Debug)]
struct Player {
    stop: Arc<AtomicBool>,
    port: Arc<AtomicU16>,
    task: JoinHandle<Tally>,
}

#[derive(Debug, Default)]
struct Tally {
    sent: u64,
    relayed: HashSet<u64>,
    duplicated: u64,
    latencies: Vec<Duration>,
    resumes: u64,
    breaks: Vec<String>,
}

/// How often a player sends an input.
const INPUT_EVERY: Duration = Duration::from_millis(50);

/// How long a player waits for its last relays once told to stop.
const LAST_RELAYS: Duration = Duration::from_secs(10);

async fn connect(ns: &str, addr: SocketAddr) -> std::io::Result<RawClient> {
    let ns = ns.to_owned();
    let stream = tokio::task::spawn_blocking(move || connect_in(&ns, addr))
        .await
        .map_err(std::io::Error::other)?;
    Ok(RawClient::over(tokio::net::TcpStream::from_std(stream)?))
}

/// A hello answered by a Welcome within `within`, pings answered on the way.
async fn handshake(
    client: &mut RawClient,
    hello: ClientMessage,
    within: Duration,
) -> Result<protocol::Welcome, String> {
    client
        .framed
        .send(hello)
        .await
        .map_err(|e| format!("send: {e}"))?;
    tokio::time::timeout(within, async {
        loop {
            match client.framed.next().await {
                Some(Ok(ServerMessage::Welcome(welcome))) => return Ok(welcome),
                Some(Ok(ServerMessage::Ping { nonce })) => {
                    let _ = client.framed.send(ClientMessage::Pong { nonce }).await;
                }
                Some(Ok(ServerMessage::Bye(bye))) => return Err(format!("Bye {:?}", bye.code)),
                Some(Ok(_)) => {}
                Some(Err(error)) => return Err(format!("read: {error}")),
                None => return Err("closed".into()),
            }
        }
    })
    .await
    .map_err(|_| "no Welcome".to_owned())?
}

impl Player {
    /// Joins the game; on a bad link a handshake can time out, and the player tries again, as a
    /// client does (those attempts end before the measurement starts).
    async fn start(ns: &str, addr: SocketAddr, name: String) -> Player {
        let mut attempts = 0;
        let (client, port, welcome) = loop {
            attempts += 1;
            let failed = |why: String| {
                assert!(
                    attempts < 10,
                    "{name} could not join in {attempts} attempts: {why}"
                );
            };
            let mut client = match connect(ns, addr).await {
                Ok(client) => client,
                Err(error) => {
                    failed(error.to_string());
                    continue;
                }
            };
            let port = Arc::new(AtomicU16::new(
                client.stream().local_addr().expect("address").port(),
            ));
            match handshake(&mut client, hello_in(&name, &format!("p-{name}")), PATIENCE).await {
                Ok(welcome) => break (client, port, welcome),
                Err(why) => failed(why),
            }
        };
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(play(
            ns.to_owned(),
            addr,
            name,
            client,
            welcome.resume_token,
            stop.clone(),
            port.clone(),
        ));
        Player { stop, port, task }
    }

    async fn finish(self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("player task")
    }
}

use crate::PATIENCE;

#[allow(clippy::too_many_arguments)]
async fn play(
    ns: String,
    addr: SocketAddr,
    name: String,
    client: RawClient,
    token: protocol::ResumeToken,
    stop: Arc<AtomicBool>,
    port: Arc<AtomicU16>,
) -> Tally {
    let mut framed = client.framed;
    let mut tally = Tally::default();
    let mut sent_at: HashMap<u64, Instant> = HashMap::new();
    let mut inputs = tokio::time::interval(INPUT_EVERY);
    let mut acks = tokio::time::interval(Duration::from_secs(1));
    let mut last_event = 0;
    let payload = Bytes::from_static(b"profile move");
    let mut stopping: Option<Instant> = None;
    loop {
        if stopping.is_none() && stop.load(Ordering::Relaxed) {
            stopping = Some(Instant::now());
        }
        if let Some(since) = stopping
            && (tally.relayed.len() as u64 >= tally.sent || since.elapsed() >= LAST_RELAYS)
        {
            let _ = framed
                .send(ClientMessage::Bye(protocol::Bye::new(
                    protocol::ByeCode::ClientQuit,
                    "",
                )))
                .await;
            return tally;
        }
        let broken: Option<String> = tokio::select! {
            _ = inputs.tick(), if stopping.is_none() => {
                tally.sent += 1;
                sent_at.insert(tally.sent, Instant::now());
                let input = ClientMessage::Input { seq: tally.sent, payload: payload.clone() };
                framed.send(input).await.err().map(|e| format!("send: {e}"))
            }
            _ = acks.tick() => {
                if last_event > 0 {
                    framed.send(ClientMessage::Ack { seq: last_event }).await.err().map(|e| format!("ack: {e}"))
                } else {
                    None
                }
            }
            message = framed.next() => match message {
                Some(Ok(ServerMessage::Ping { nonce })) => {
                    framed.send(ClientMessage::Pong { nonce }).await.err().map(|e| format!("pong: {e}"))
                }
                Some(Ok(ServerMessage::Bye(bye))) => Some(format!("Bye {:?}", bye.code)),
                Some(Ok(message)) => {
                    if let ServerMessage::Event { seq, .. } = &message {
                        last_event = *seq;
                    }
                    if let Some((from, seq)) = relay(&message)
                        && from == name
                    {
                        if tally.relayed.insert(seq) {
                            if let Some(sent) = sent_at.remove(&seq) {
                                tally.latencies.push(sent.elapsed());
                            }
                        } else {
                            tally.duplicated += 1;
                        }
                    }
                    None
                }
                Some(Err(error)) => Some(format!("read: {error}")),
                None => Some("closed by the server".into()),
            }
        };
        let Some(why) = broken else { continue };
        if stopping.is_some() {
            return tally;
        }
        tally.breaks.push(why);
        // Alive and cut: resume, as a real client does, until it works or the run ends.
        loop {
            if stop.load(Ordering::Relaxed) {
                return tally;
            }
            let Ok(mut client) = connect(&ns, addr).await else {
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            };
            let hello = resume_hello(&name, "", token, last_event);
            match handshake(&mut client, hello, Duration::from_secs(10)).await {
                Ok(welcome) if welcome.resumed => {
                    tally.resumes += 1;
                    if let Ok(local) = client.stream().local_addr() {
                        port.store(local.port(), Ordering::Relaxed);
                    }
                    framed = client.framed;
                    for seq in welcome.last_input_seq + 1..=tally.sent {
                        let input = ClientMessage::Input {
                            seq,
                            payload: payload.clone(),
                        };
                        if framed.send(input).await.is_err() {
                            break;
                        }
                    }
                    break;
                }
                Ok(_) => {
                    tally.breaks.push("resume refused: a new session".into());
                    return tally;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    }
}

/// The bulk transfers of a loaded link: one each way over the shaped link, each writing as fast
/// as TCP lets it and its peer reading and discarding. Returns the tasks and the bytes each
/// delivered so far.
struct Bulk {
    tasks: Vec<JoinHandle<()>>,
    down: Arc<std::sync::atomic::AtomicU64>,
    up: Arc<std::sync::atomic::AtomicU64>,
    started: Instant,
}

impl Bulk {
    async fn start(pair: &Pair) -> Bulk {
        let listener = listen_in(&pair.server_ns, SocketAddr::from((pair.server_ip, 0)));
        let addr = listener.local_addr().expect("bulk address");
        let listener = tokio::net::TcpListener::from_std(listener).expect("bulk listener");
        let down = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let up = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut tasks = Vec::new();
        for (counter, server_sends) in [(down.clone(), true), (up.clone(), false)] {
            let client = connect_in(&pair.client_ns, addr);
            let client = tokio::net::TcpStream::from_std(client).expect("bulk client");
            let (server, _) = listener.accept().await.expect("bulk accept");
            let (mut sender, mut receiver) = if server_sends {
                (server, client)
            } else {
                (client, server)
            };
            // A loss-based sender, as most downloads still are: it fills the queue until the
            // queue drops (this kernel's default, BBR, keeps queues nearly empty).
            socket2::SockRef::from(&sender)
                .set_tcp_congestion(b"cubic")
                .expect("cubic congestion control");
            tasks.push(tokio::spawn(async move {
                let chunk = vec![0u8; 64 * 1024];
                while sender.write_all(&chunk).await.is_ok() {}
            }));
            tasks.push(tokio::spawn(async move {
                let mut buffer = vec![0u8; 64 * 1024];
                while let Ok(n) = receiver.read(&mut buffer).await {
                    if n == 0 {
                        break;
                    }
                    counter.fetch_add(n as u64, Ordering::Relaxed);
                }
            }));
        }
        Bulk {
            tasks,
            down,
            up,
            started: Instant::now(),
        }
    }

    /// Mean kbit/s delivered down and up so far; stops the transfers.
    fn stop(self) -> (u64, u64) {
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        for task in &self.tasks {
            task.abort();
        }
        let kbit = |bytes: u64| (bytes as f64 * 8.0 / 1000.0 / secs) as u64;
        (
            kbit(self.down.load(Ordering::Relaxed)),
            kbit(self.up.load(Ordering::Relaxed)),
        )
    }
}

/// Admission per source lifted: the whole crowd comes from the client namespace's one address.
const ADMISSION: &str = "[server]\nmax_sessions_per_source = 0\nconnect_rate_per_source = 100000\nconnect_burst_per_source = 100000\n";

/// Runs `profile` with `settings` at `size`: the crowd plays for `size.play`, then `size.cut`
/// of them have their links cut and the server must find them; the rest play on until then and
/// quit. Needs root, `ip`, `nft` and `tc`.
pub async fn run(profile: &Profile, settings: &Settings, size: Size) -> Row {
    let pair = Pair::new(&format!("pf{}", &profile.name[..profile.name.len().min(4)]));
    let config = format!(
        "{ADMISSION}[session]\nresume_grace = \"120s\"\n{}",
        settings.session
    );
    let server: ServerProcess = pair.start_server(&config).await;
    pair.shape(&profile.link, server.addr.port());
    let bulk = match profile.link.loaded {
        true => Some(Bulk::start(&pair).await),
        false => None,
    };
    // All at once: on a link with a deep queue each handshake waits the queue.
    let players: Vec<Player> = futures_util::future::join_all(
        (0..size.players).map(|i| Player::start(&pair.client_ns, server.addr, format!("pf-{i}"))),
    )
    .await;
    let before = server.scrape().await;
    tokio::time::sleep(size.play).await;

    // Every close so far was of a live player.
    let during = server.scrape().await;
    let mut false_disconnects: BTreeMap<String, u64> = during
        .close_deltas(&before)
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(reason, n)| (reason.to_owned(), n))
        .collect();

    // Cut the links of the first `size.cut` players.
    let ports: Vec<u16> = players[..size.cut]
        .iter()
        .map(|p| p.port.load(Ordering::Relaxed))
        .collect();
    let cut_at = SystemTime::now();
    pair.cut_ports(&ports);
    let give_up = settings.idle_timeout * 2 + Duration::from_secs(10);
    let waited = Instant::now();
    let cut_names: HashSet<String> = (0..size.cut).map(|i| format!("pf-{i}")).collect();
    let mut found: HashMap<String, u64> = HashMap::new();
    while found.len() < size.cut && waited.elapsed() < give_up {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let recent = server
            .get_json(&format!(
                "/closes/recent?player_prefix=pf-&limit={}",
                size.players * 4
            ))
            .await;
        let cut_ms = cut_at
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64;
        for close in recent["closes"].as_array().into_iter().flatten() {
            let (Some(player), Some(at)) = (close["player"].as_str(), close["at_unix_ms"].as_u64())
            else {
                continue;
            };
            if at >= cut_ms && cut_names.contains(player) {
                found.entry(player.to_owned()).or_insert(at - cut_ms);
            }
        }
    }
    let mut detection: Vec<Duration> = found
        .values()
        .map(|ms| Duration::from_millis(*ms))
        .collect();
    detection.sort();

    // The others: closes since the cut that are not of a cut player are false disconnects too.
    let after_cut = server.scrape().await;
    let cut_closes = found.len() as u64;
    let mut since_cut: BTreeMap<String, u64> = after_cut
        .close_deltas(&during)
        .into_iter()
        .map(|(reason, n)| (reason.to_owned(), n))
        .collect();
    if let Some(idle) = since_cut.get_mut("idle_timeout") {
        *idle = idle.saturating_sub(cut_closes);
    }
    for (reason, n) in since_cut.into_iter().filter(|(_, n)| *n > 0) {
        *false_disconnects.entry(reason).or_default() += n;
    }

    let bulk_kbit = bulk.map(Bulk::stop);
    let mut row = Row {
        profile: profile.name,
        settings: settings.name.clone(),
        size,
        false_disconnects,
        resumes: 0,
        graces: (after_cut.raw("gameserver_loss_grace_total")
            - before.raw("gameserver_loss_grace_total")) as u64,
        detection,
        undetected: size.cut - found.len(),
        rtts: Vec::new(),
        sent: 0,
        lost: 0,
        duplicated: 0,
        bulk_kbit,
    };
    let outcomes = futures_util::future::join_all(players.into_iter().map(Player::finish)).await;
    for (i, tally) in outcomes.into_iter().enumerate() {
        row.resumes += tally.resumes;
        if i < size.cut {
            continue;
        }
        row.sent += tally.sent;
        row.lost += tally.sent - tally.relayed.len() as u64;
        row.duplicated += tally.duplicated;
        row.rtts.extend(tally.latencies);
    }
    row.rtts.sort();
    row
}
