//! The load generator's clients: connections spread over several source addresses, the frames
//! they send (the same bytes to both servers), and what they make of the frames they receive.
//!
//! Both servers use the same framing, so a client sends the game protocol's own frame bodies to
//! either one. The game server answers them; the baseline echoes them, so an echoed `Hello`
//! counts as its handshake and an echoed `Input` as its relay (in its broadcast mode it sends
//! frames laid out as the game server's `Relay` and `State` events instead).
//!
//! Clients behave as PROTOCOL.md asks of real ones: they acknowledge the events they receive
//! ([`Acks`]) and, where a heartbeat is configured, send their own `Ping` every period (the game
//! server then never needs to ping them, only to answer). The baseline gets the same frames and
//! echoes them; an echoed `Ping` or `Ack` counts as nothing.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::{Buf, Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use game_client::Link as Stream;
use protocol::{
    Bye, ByeCode, ClientCodec, ClientMessage, Hello, Kind, OLDEST_PROTOCOL_VERSION,
    PROTOCOL_VERSION,
};
use tokio::io::{ReadHalf, WriteHalf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;
use tokio_util::codec::{Encoder, Framed, FramedRead, FramedWrite, LengthDelimitedCodec};
use tokio_util::sync::CancellationToken;

use crate::procs::Target;

/// Source addresses 127.0.0.2 ..= 127.0.0.9: each has its own ephemeral port range, so repeated
/// rounds of 19,000 connections never run out of ports.
const SOURCES: u8 = 8;
const MAX_FRAME: usize = 64 * 1024;
/// Longest wait for a handshake before a client counts as failed.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// A framed connection.
pub type Link = Framed<Stream, LengthDelimitedCodec>;

/// What a server's port speaks besides plain TCP: TLS, WebSocket (to this URL), both.
#[derive(Debug, Clone)]
pub struct Layers {
    /// TLS, trusting the server's certificate.
    pub tls: Option<game_client::Tls>,
    /// The WebSocket URL.
    pub websocket: Option<String>,
}

/// The servers whose ports speak more than plain TCP. A workload that starts such a server
/// registers its port here; every client of the bench then connects to it accordingly.
static LAYERS: std::sync::Mutex<Vec<(SocketAddr, Layers)>> = std::sync::Mutex::new(Vec::new());

/// Registers what the port at `server` speaks.
pub fn speak(server: SocketAddr, layers: Layers) {
    let mut all = LAYERS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    all.retain(|(addr, _)| *addr != server);
    all.push((server, layers));
}

fn layers_of(server: SocketAddr) -> Option<Layers> {
    let all = LAYERS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    all.iter()
        .find(|(addr, _)| *addr == server)
        .map(|(_, layers)| layers.clone())
}

/// Opens a TCP connection for client number `i` from source address 127.0.0.(2 + i % 8).
pub async fn dial(server: SocketAddr, i: usize) -> std::io::Result<TcpStream> {
    dial_with(server, i, None).await
}

/// [`dial`] with a fixed receive buffer (`SO_RCVBUF`, which also turns the kernel's receive
/// buffer autotuning off for the socket): a client that stops reading then holds little in its
/// kernel, and what it does not read queues up in the server.
pub async fn dial_with(
    server: SocketAddr,
    i: usize,
    recv_buffer: Option<u32>,
) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    if let Some(bytes) = recv_buffer {
        socket.set_recv_buffer_size(bytes)?;
    }
    let source = Ipv4Addr::new(127, 0, 0, 2 + (i % usize::from(SOURCES)) as u8);
    socket.bind(SocketAddr::new(source.into(), 0))?;
    let stream = socket.connect(server).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Connects client number `i` (see [`dial`]) with the 4-byte length-prefixed framing.
pub async fn connect(server: SocketAddr, i: usize) -> std::io::Result<Link> {
    connect_with(server, i, None).await
}

/// [`connect`] with a fixed receive buffer (see [`dial_with`]).
pub async fn connect_with(
    server: SocketAddr,
    i: usize,
    recv_buffer: Option<u32>,
) -> std::io::Result<Link> {
    let stream = dial_with(server, i, recv_buffer).await?;
    let stream = match layers_of(server) {
        Some(layers) => {
            let opening =
                game_client::open(stream, layers.tls.as_ref(), layers.websocket.as_deref());
            tokio::time::timeout(HANDSHAKE_TIMEOUT, opening)
                .await
                .map_err(|_| {
                    std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "no TLS handshake or WebSocket upgrade in time",
                    )
                })??
        }
        None => Stream::Tcp(stream),
    };
    let codec = LengthDelimitedCodec::builder()
        .big_endian()
        .length_field_length(4)
        .max_frame_length(MAX_FRAME)
        .new_codec();
    let mut link = Framed::with_capacity(stream, codec, 1024);
    link.set_backpressure_boundary(64 * 1024);
    Ok(link)
}

/// Drops a connection with a reset, so that the bench leaves no TIME_WAIT behind.
pub fn abort(link: Link) {
    let _ = link.get_ref().set_abortive();
}

/// The reading half of a [`split`] link.
pub type Reader = FramedRead<ReadHalf<Stream>, LengthDelimitedCodec>;
/// The writing half of a [`split`] link.
pub type Writer = FramedWrite<WriteHalf<Stream>, LengthDelimitedCodec>;

/// Splits a joined link, for clients whose reading must never wait on their writing (a client
/// blocked in a write while the server is blocked writing to it would stall both). Frames
/// already read stay with the reader.
pub fn split(link: Link) -> (Reader, Writer) {
    let parts = link.into_parts();
    let (read, write) = tokio::io::split(parts.io);
    let mut reader = FramedRead::with_capacity(read, parts.codec.clone(), 1024);
    reader.read_buffer_mut().extend_from_slice(&parts.read_buf);
    let mut writer = FramedWrite::new(write, parts.codec);
    writer.set_backpressure_boundary(64 * 1024);
    (reader, writer)
}

/// Drops a split connection with a reset (and no FIN before it, which dropping the writing half
/// alone would send).
pub fn abort_split(reader: Reader, writer: Writer) {
    let stream = reader.into_inner().unsplit(writer.into_inner());
    let _ = stream.set_abortive();
}

/// The body (no length prefix) of a client message.
pub fn body(message: &ClientMessage) -> Bytes {
    let mut framed = BytesMut::new();
    match ClientCodec::default().encode(message, &mut framed) {
        Ok(()) => framed.split_off(protocol::HEADER_LEN).freeze(),
        // Only oversized or malformed fields fail, and the bench builds neither.
        Err(error) => panic!("bench built an invalid message: {error}"),
    }
}

/// `Hello` for a player, into `room` (empty: the server chooses).
pub fn hello(player: &str, room: &str) -> Bytes {
    hello_with(player, room, &[])
}

/// `Hello` for a player into `room`, with join `options`.
///
/// Without options it says version 2, which this server serves as it is (the frames are the
/// same): the harness then also drives a server built before version 3, for an A/B run with
/// `BENCH_GAME_SERVER`.
pub fn hello_with(player: &str, room: &str, options: &[u8]) -> Bytes {
    let version = if options.is_empty() {
        OLDEST_PROTOCOL_VERSION
    } else {
        PROTOCOL_VERSION
    };
    body(&ClientMessage::Hello(Box::new(Hello {
        version,
        options: Bytes::copy_from_slice(options),
        ..Hello::new(player, room)
    })))
}

/// An `Input` whose 32-byte payload starts with the send time (nanoseconds since `epoch`).
pub fn input(seq: u64, epoch: Instant) -> Bytes {
    let mut payload = [0u8; 32];
    let sent = epoch.elapsed().as_nanos() as u64;
    payload[..8].copy_from_slice(&sent.to_be_bytes());
    body(&ClientMessage::Input {
        seq,
        payload: Bytes::copy_from_slice(&payload),
    })
}

/// The `Ack` body for events up to `seq`.
pub fn ack(seq: u64) -> Bytes {
    body(&ClientMessage::Ack { seq })
}

/// A client's acknowledgement of the events it received (PROTOCOL.md: `Ack{highest event seq
/// received}`, about once per heartbeat; pipelining clients with each flush of inputs).
///
/// The game server's events carry their seq. The baseline's do not (its echoed inputs and its
/// broadcast frames have no numbering), so for it the client counts them: over one connection
/// with no resume both are the same number, and both servers receive the same `Ack` frames.
#[derive(Debug, Clone)]
pub struct Acks {
    target: Target,
    highest: u64,
    acked: u64,
    last: Instant,
}

impl Acks {
    /// Nothing received yet.
    pub fn new(target: Target) -> Acks {
        Acks {
            target,
            highest: 0,
            acked: 0,
            last: Instant::now(),
        }
    }

    /// Notes one received frame body.
    pub fn note(&mut self, frame: &[u8]) {
        match (self.target, frame.first().copied().and_then(Kind::from_u8)) {
            (Target::Ours, Some(Kind::Event)) if frame.len() >= 9 => {
                let seq = u64::from_be_bytes(frame[1..9].try_into().unwrap_or_default());
                self.highest = self.highest.max(seq);
            }
            (Target::Baseline, Some(Kind::Event | Kind::Input)) => self.highest += 1,
            _ => {}
        }
    }

    /// The highest event received.
    pub fn highest(&self) -> u64 {
        self.highest
    }

    /// An `Ack` for the events received since the last one, if any were.
    pub fn take(&mut self) -> Option<Bytes> {
        (self.highest > self.acked).then(|| {
            self.acked = self.highest;
            self.last = Instant::now();
            ack(self.highest)
        })
    }

    /// Like [`Acks::take`], at most once per `every`.
    pub fn due(&mut self, every: Duration) -> Option<Bytes> {
        if self.last.elapsed() >= every {
            self.take()
        } else {
            None
        }
    }
}

/// A relay event's input seq and send time (the first 8 bytes of its data), read in place:
/// `06 | event seq u64 | 01 | from (u16 length, bytes) | input seq u64 | data`.
pub fn relay(frame: &[u8]) -> Option<(u64, u64)> {
    if frame.first() != Some(&(Kind::Event as u8)) || frame.get(9) != Some(&1) {
        return None;
    }
    let from = usize::from(u16::from_be_bytes(frame.get(10..12)?.try_into().ok()?));
    let at = 12 + from;
    let seq = u64::from_be_bytes(frame.get(at..at + 8)?.try_into().ok()?);
    let sent = u64::from_be_bytes(frame.get(at + 8..at + 16)?.try_into().ok()?);
    Some((seq, sent))
}

/// What a client makes of one received frame.
#[derive(Debug)]
pub enum Inbound {
    /// The handshake's answer (`Welcome`, or the baseline's echoed `Hello`).
    Welcome,
    /// The server pings: answer with a `Pong`.
    Ping(u64),
    /// An input came back (a `Relay` event, or the baseline's echo): its seq and send time.
    Reply {
        /// The input's sequence number.
        seq: u64,
        /// When it was sent, nanoseconds since the sender's epoch.
        sent_ns: u64,
    },
    /// The server is closing.
    Bye,
    /// Anything else (state and presence events, acks, echoed pings).
    Other,
}

/// Classifies a received frame body.
pub fn classify(target: Target, mut frame: BytesMut) -> Inbound {
    let Some(&kind) = frame.first() else {
        return Inbound::Other;
    };
    // A relay event (the baseline's broadcast mode sends the same layout).
    if let Some((seq, sent_ns)) = relay(&frame) {
        return Inbound::Reply { seq, sent_ns };
    }
    match target {
        Target::Baseline => match Kind::from_u8(kind) {
            Some(Kind::Hello) => Inbound::Welcome,
            Some(Kind::Input) if frame.len() >= 17 => {
                frame.advance(1);
                let seq = frame.get_u64();
                Inbound::Reply {
                    seq,
                    sent_ns: frame.get_u64(),
                }
            }
            _ => Inbound::Other,
        },
        Target::Ours => match Kind::from_u8(kind) {
            Some(Kind::Welcome) => Inbound::Welcome,
            Some(Kind::Ping) if frame.len() >= 9 => {
                frame.advance(1);
                Inbound::Ping(frame.get_u64())
            }
            Some(Kind::Bye) => Inbound::Bye,
            _ => Inbound::Other,
        },
    }
}

/// Sends a `Pong` when the server pings. Returns false when the frame was a `Bye`.
pub async fn answer(link: &mut Link, inbound: &Inbound) -> anyhow::Result<bool> {
    match inbound {
        Inbound::Ping(nonce) => {
            link.send(body(&ClientMessage::Pong { nonce: *nonce }))
                .await?;
            Ok(true)
        }
        Inbound::Bye => Ok(false),
        _ => Ok(true),
    }
}

/// Connects and completes the handshake: `Hello` then `Welcome` (or its echo).
pub async fn join(
    target: Target,
    server: SocketAddr,
    i: usize,
    player: &str,
    room: &str,
) -> anyhow::Result<Link> {
    join_with(target, server, i, player, room, None).await
}

/// [`join`] with a fixed receive buffer (see [`dial_with`]).
pub async fn join_with(
    target: Target,
    server: SocketAddr,
    i: usize,
    player: &str,
    room: &str,
    recv_buffer: Option<u32>,
) -> anyhow::Result<Link> {
    let link = connect_with(server, i, recv_buffer)
        .await
        .context("connect")?;
    welcomed(target, link, hello(player, room)).await
}

/// [`join`] into the game server with join `options` in the `Hello`.
pub async fn join_with_options(
    server: SocketAddr,
    i: usize,
    player: &str,
    room: &str,
    options: &[u8],
) -> anyhow::Result<Link> {
    let link = connect(server, i).await.context("connect")?;
    welcomed(Target::Ours, link, hello_with(player, room, options)).await
}

/// Sends `hello` and waits for the `Welcome`.
async fn welcomed(target: Target, mut link: Link, hello: Bytes) -> anyhow::Result<Link> {
    link.send(hello).await?;
    let welcomed = tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
        while let Some(frame) = link.next().await {
            match classify(target, frame?) {
                Inbound::Welcome => return Ok(()),
                Inbound::Bye => bail!("Bye instead of Welcome"),
                _ => {}
            }
        }
        bail!("closed before Welcome")
    })
    .await;
    match welcomed {
        Ok(Ok(())) => Ok(link),
        Ok(Err(error)) => Err(error),
        Err(_) => bail!("no Welcome within {HANDSHAKE_TIMEOUT:?}"),
    }
}

/// A crowd to gather.
#[derive(Debug, Clone)]
pub struct Plan {
    /// How many clients.
    pub n: usize,
    /// Most handshakes in flight at once (`n`: no pacing at all).
    pub concurrency: usize,
    /// Player ids are `{name}-{i}`; unique per server run, or the server replaces sessions.
    pub name: String,
    /// Send a `Ping` this often (both servers; the game server is then configured to ping
    /// only a little later, so that it never needs to).
    pub heartbeat: Option<Duration>,
    /// Leave with `Bye{client_quit}` and wait for the server's close (otherwise: reset).
    pub quit_with_bye: bool,
    /// Each client's pings keep a phase of their own across the period (client `i` of `n` first
    /// pings at `i / n` of it), as a real crowd's do, rather than one period after its
    /// handshake: clients that connect faster (plain TCP against TLS) would otherwise ping in
    /// bursts, and a burst costs the server fewer wake-ups than the same pings spread out.
    pub spread_pings: bool,
}

/// When client `i` of `n` pings first: one `period` after its handshake, or with
/// `spread`, at its own phase of the period (see [`Plan::spread_pings`]).
pub fn first_ping(period: Duration, i: usize, n: usize, spread: bool) -> Duration {
    match spread {
        true if n > 0 => {
            let n = u32::try_from(n).unwrap_or(u32::MAX);
            let i = u32::try_from(i).unwrap_or(u32::MAX) % n;
            period * (i + 1) / n
        }
        _ => period,
    }
}

/// How a background client behaves after its handshake.
#[derive(Debug, Clone)]
pub struct Behaviour {
    /// Send a `Ping` (and an `Ack` of new events) this often.
    pub heartbeat: Option<Duration>,
    /// Cancelled: send one last frame, then go silent (read and discard, never write) until the
    /// server closes the connection.
    pub vanish: CancellationToken,
    /// Cancelled: leave.
    pub stop: CancellationToken,
    /// Leave with `Bye{client_quit}` and wait for the server's close (otherwise: reset).
    pub quit_with_bye: bool,
}

/// How a background client ended.
#[derive(Debug, Clone, Copy)]
pub enum End {
    /// It left when told to.
    Stopped,
    /// It went silent at `silent` and the server closed the connection at `closed`.
    Reaped {
        /// When its last frame was written.
        silent: Instant,
        /// When its read failed or returned end of stream.
        closed: Instant,
    },
    /// It went silent and was still open when told to stop.
    NotReaped,
    /// The connection failed before it was told to do anything.
    Failed,
}

/// A crowd of background clients.
#[derive(Debug)]
pub struct Crowd {
    /// When each client finished its handshake (None: it failed), in completion order.
    pub ready: Vec<Option<Instant>>,
    /// When the first connect was started.
    pub started: Instant,
    /// Each client's task; its output is how it ended.
    pub tasks: Vec<tokio::task::JoinHandle<End>>,
    /// The behaviour every client follows.
    pub behaviour: Behaviour,
}

impl Crowd {
    /// Starts the clients of `plan`, with at most `plan.concurrency` handshakes in flight, and
    /// waits until every one has finished or failed its handshake.
    pub async fn gather(target: Target, server: SocketAddr, plan: &Plan) -> Crowd {
        let Plan {
            n,
            concurrency,
            ref name,
            heartbeat,
            quit_with_bye,
            spread_pings,
        } = *plan;
        let behaviour = Behaviour {
            heartbeat,
            vanish: CancellationToken::new(),
            stop: CancellationToken::new(),
            quit_with_bye,
        };
        let gate = Arc::new(Semaphore::new(concurrency.max(1)));
        let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
        let started = Instant::now();
        let mut tasks = Vec::with_capacity(n);
        for i in 0..n {
            let gate = gate.clone();
            let ready_tx = ready_tx.clone();
            let behaviour = behaviour.clone();
            let player = format!("{name}-{i}");
            tasks.push(tokio::spawn(async move {
                let permit = gate.acquire_owned().await;
                let joined = join(target, server, i, &player, "").await;
                drop(permit);
                match joined {
                    Ok(link) => {
                        let _ = ready_tx.send(Some(Instant::now()));
                        let first = heartbeat.map(|every| first_ping(every, i, n, spread_pings));
                        live(target, link, &behaviour, first).await
                    }
                    Err(_) => {
                        let _ = ready_tx.send(None);
                        End::Failed
                    }
                }
            }));
        }
        drop(ready_tx);
        // One report per client; the senders stay alive inside the clients' tasks.
        let mut ready = Vec::with_capacity(n);
        while ready.len() < n {
            match ready_rx.recv().await {
                Some(at) => ready.push(at),
                None => break,
            }
        }
        Crowd {
            ready,
            started,
            tasks,
            behaviour,
        }
    }

    /// Clients whose handshake succeeded.
    pub fn joined(&self) -> usize {
        self.ready.iter().flatten().count()
    }

    /// When the last handshake finished.
    pub fn last_ready(&self) -> Option<Instant> {
        self.ready.iter().flatten().max().copied()
    }

    /// Tells every client to go silent.
    pub fn vanish(&self) {
        self.behaviour.vanish.cancel();
    }

    /// Tells every client to leave (with `Bye` when `quit_with_bye`) and collects how each
    /// ended.
    pub async fn disperse(self) -> Vec<End> {
        self.behaviour.stop.cancel();
        let mut ends = Vec::with_capacity(self.tasks.len());
        for task in self.tasks {
            ends.push(task.await.unwrap_or(End::Failed));
        }
        ends
    }

    /// Waits until every client has ended by itself (for example reaped after vanishing), at
    /// most `limit`; then tells the rest to stop.
    pub async fn wait_ended(self, limit: Duration) -> Vec<End> {
        let deadline = Instant::now() + limit;
        for task in &self.tasks {
            while !task.is_finished() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        self.disperse().await
    }
}

/// A connected client's life: answer pings, send its own `Ping` every heartbeat (with an `Ack`
/// of the events received since the last one, if any), vanish or leave when told.
pub async fn live(
    target: Target,
    mut link: Link,
    behaviour: &Behaviour,
    first: Option<Duration>,
) -> End {
    let period = behaviour.heartbeat.unwrap_or(Duration::from_secs(3600));
    let mut heartbeat = tokio::time::interval_at(Instant::now() + first.unwrap_or(period), period);
    let mut nonce = 0u64;
    let mut acks = Acks::new(target);
    loop {
        tokio::select! {
            () = behaviour.stop.cancelled() => {
                let ack = acks.take().filter(|_| behaviour.quit_with_bye);
                leave(link, behaviour.quit_with_bye, ack).await;
                return End::Stopped;
            }
            () = behaviour.vanish.cancelled() => {
                return vanish(link, &behaviour.stop).await;
            }
            _ = heartbeat.tick(), if behaviour.heartbeat.is_some() => {
                nonce += 1;
                if let Some(ack) = acks.take()
                    && link.feed(ack).await.is_err()
                {
                    return End::Failed;
                }
                if link.send(body(&ClientMessage::Ping { nonce })).await.is_err() {
                    return End::Failed;
                }
            }
            frame = link.next() => {
                let Some(Ok(frame)) = frame else { return End::Failed };
                acks.note(&frame);
                match answer(&mut link, &classify(target, frame)).await {
                    Ok(true) => {}
                    _ => return End::Failed,
                }
            }
        }
    }
}

/// Leaves: `Bye` (after an `Ack` of the events not yet acknowledged, if any), then read until
/// the server closes (it closes first, so the TIME_WAIT is its own), or a reset.
async fn leave(mut link: Link, with_bye: bool, ack: Option<Bytes>) {
    if !with_bye {
        abort(link);
        return;
    }
    if let Some(ack) = ack
        && link.feed(ack).await.is_err()
    {
        abort(link);
        return;
    }
    let bye = body(&ClientMessage::Bye(Bye::new(ByeCode::ClientQuit, "")));
    if link.send(bye).await.is_err() {
        abort(link);
        return;
    }
    let drained = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(_)) = link.next().await {}
    })
    .await;
    if drained.is_err() {
        abort(link);
    }
}

/// Goes silent: one last frame (so the server's last inbound time is known), then only reads,
/// until the server's reset or end of stream.
async fn vanish(mut link: Link, stop: &CancellationToken) -> End {
    if link
        .send(body(&ClientMessage::Ack { seq: 0 }))
        .await
        .is_err()
    {
        return End::Failed;
    }
    let silent = Instant::now();
    loop {
        tokio::select! {
            () = stop.cancelled() => {
                abort(link);
                return End::NotReaped;
            }
            frame = link.next() => match frame {
                Some(Ok(_)) => {}
                Some(Err(_)) | None => {
                    return End::Reaped { silent, closed: Instant::now() };
                }
            }
        }
    }
}

/// Idle peer connections (an MQTT broker's, a WebSocket server's), each writing `keepalive`'s
/// bytes every its period if given, reading whatever comes, until dispersed.
#[derive(Debug)]
pub struct IdleLinks {
    /// Connections that opened.
    pub joined: usize,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    stop: CancellationToken,
}

impl IdleLinks {
    /// Opens `n` connections with `open(i)`, at most `concurrency` opening at once, and returns
    /// once each has opened or failed.
    pub async fn gather<F, Fut>(
        n: usize,
        concurrency: usize,
        keepalive: Option<(Duration, &'static [u8])>,
        open: F,
    ) -> IdleLinks
    where
        F: Fn(usize) -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<Stream>> + Send + 'static,
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let gate = Arc::new(Semaphore::new(concurrency.max(1)));
        let stop = CancellationToken::new();
        let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
        let mut tasks = Vec::with_capacity(n);
        for i in 0..n {
            let gate = gate.clone();
            let ready_tx = ready_tx.clone();
            let stop = stop.clone();
            let opening = open(i);
            tasks.push(tokio::spawn(async move {
                let permit = gate.acquire_owned().await;
                let opened = opening.await;
                drop(permit);
                let _ = ready_tx.send(opened.is_ok());
                let Ok(mut link) = opened else { return };
                // Spread across the period, as our own clients' (Plan::spread_pings).
                let mut pings = keepalive.map(|(every, bytes)| {
                    (
                        tokio::time::interval_at(
                            Instant::now() + first_ping(every, i, n, true),
                            every,
                        ),
                        bytes,
                    )
                });
                let mut buf = [0u8; 64];
                loop {
                    tokio::select! {
                        () = stop.cancelled() => break,
                        bytes = next_ping(&mut pings) => {
                            if link.write_all(bytes).await.is_err() {
                                return;
                            }
                        }
                        read = link.read(&mut buf) => {
                            if !matches!(read, Ok(n) if n > 0) {
                                return;
                            }
                        }
                    }
                }
                let _ = link.set_abortive();
            }));
        }
        drop(ready_tx);
        // One report per connection; the senders stay alive inside the tasks.
        let mut joined = 0;
        for _ in 0..n {
            match ready_rx.recv().await {
                Some(ok) => joined += usize::from(ok),
                None => break,
            }
        }
        IdleLinks {
            joined,
            tasks,
            stop,
        }
    }

    /// Closes every connection (with a reset).
    pub async fn disperse(self) {
        self.stop.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// The keepalive's bytes when its next period is due; never without a keepalive.
async fn next_ping(pings: &mut Option<(tokio::time::Interval, &'static [u8])>) -> &'static [u8] {
    match pings {
        Some((interval, bytes)) => {
            interval.tick().await;
            bytes
        }
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_pings_take_every_phase_of_the_period_once() {
        let period = Duration::from_secs(10);
        assert_eq!(first_ping(period, 7, 100, false), period);
        let firsts: Vec<Duration> = (0..100).map(|i| first_ping(period, i, 100, true)).collect();
        assert_eq!(firsts[0], Duration::from_millis(100));
        assert_eq!(firsts[99], period);
        assert!(
            firsts
                .windows(2)
                .all(|w| w[1] - w[0] == Duration::from_millis(100))
        );
    }
}
