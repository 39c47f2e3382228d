//! Shared harness for the system tests: a real server on port 0 (in-process or as a child
//! process), a raw protocol client, a metrics scraper and a network-namespace fixture.
//!
//! Every test file uses this one module; nothing here is copied per file.

pub mod attack;
pub mod browser;
pub mod good;
pub mod measure;
pub mod netns;
pub mod process;
pub mod profile;
pub mod tls;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

use client_sim::metrics::Admin;
use futures_util::{SinkExt, StreamExt};
use game_engine::{CloseReason, Config, Shutdown};
use protocol::{ClientCodec, ClientMessage, CodecError, HEADER_LEN, Hello, ServerMessage, Welcome};
use tokio::net::TcpStream;
use tokio_util::codec::{Encoder, Framed};

/// Generous bound for anything a healthy server does "at once" on a loaded 2-core machine.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// The admin bearer token every test server runs with.
pub const TEST_ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// Logs from the server under test go to the test's captured output.
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_test_writer()
        .try_init();
}

/// The test kit's defaults with loopback listeners on port 0 and short timers, so that tests
/// are quick but every mechanism is the production one.
pub fn test_config() -> Config {
    let mut config = game_engine::testkit::test_config();
    config.server.listen = "127.0.0.1:0".parse().expect("addr");
    config.session.handshake_timeout = Duration::from_secs(2);
    config.session.heartbeat_interval = Duration::from_millis(500);
    config.session.idle_timeout = Duration::from_secs(2);
    config.session.write_timeout = Duration::from_secs(1);
    config.session.linger_timeout = Duration::from_secs(2);
    config.shutdown.drain_timeout = Duration::from_secs(5);
    config.admin.token = TEST_ADMIN_TOKEN.to_owned();
    config
}

/// A server running in this process on loopback: the test kit's server
/// ([`game_engine::testkit::TestServer::listen`]) with an admin client.
#[derive(Debug)]
pub struct TestServer {
    /// The game port.
    pub addr: SocketAddr,
    /// The admin port.
    pub admin: SocketAddr,
    /// Drains or aborts the server.
    pub shutdown: Shutdown,
    /// The configuration it runs with.
    pub config: Config,
    server: game_engine::testkit::TestServer,
    /// The admin client without the admin token, as a reader on loopback.
    reader: Admin,
    /// The admin client with the token, as an operator.
    operator: Admin,
}

impl TestServer {
    /// Starts a server with [`test_config`] changed by `configure`, running the demo game.
    pub async fn start(configure: impl FnOnce(&mut Config)) -> TestServer {
        TestServer::start_game(rooms::Rooms::default(), configure).await
    }

    /// Starts a server with [`test_config`] changed by `configure`, running `game`.
    pub async fn start_game<G: game_engine::Game>(
        game: G,
        configure: impl FnOnce(&mut Config),
    ) -> TestServer {
        init_logging();
        let defaults = test_config();
        let server = game_engine::testkit::TestServer::listen(game, |config| {
            *config = defaults;
            configure(config);
        })
        .await;
        TestServer {
            addr: server.game_addr().expect("the game port"),
            admin: server.admin_addr(),
            shutdown: server.shutdown().clone(),
            config: server.config.clone(),
            reader: Admin::at(server.admin_addr(), None),
            operator: Admin::at(server.admin_addr(), Some(TEST_ADMIN_TOKEN.to_owned())),
            server,
        }
    }

    /// The server's /metrics URL.
    pub fn metrics_url(&self) -> String {
        format!("http://{}/metrics", self.admin)
    }

    /// The admin base URL.
    pub fn admin_url(&self) -> String {
        format!("http://{}", self.admin)
    }

    /// One scrape of /metrics.
    pub async fn scrape(&self) -> Scrape {
        let body = self.reader.get_ok("/metrics").await.expect("GET /metrics");
        Scrape::parse(&body)
    }

    /// GETs an admin path (without the admin token), returning the status and body.
    pub async fn get(&self, path: &str) -> (u16, String) {
        self.reader.get(path).await.expect("admin GET")
    }

    /// POSTs to an admin path with the admin token, returning the status.
    pub async fn post(&self, path: &str) -> u16 {
        self.operator.post(path).await.expect("admin POST")
    }

    /// Kicks a session through the admin listener.
    pub async fn kick(&self, session_id: u64) {
        assert_eq!(
            self.post(&format!("/sessions/{session_id}/kick")).await,
            202
        );
    }

    /// Drains the server and waits for it to stop.
    pub async fn stop(self) {
        tokio::time::timeout(PATIENCE, self.server.stop())
            .await
            .expect("server stops within the patience bound");
    }
}

impl Metrics for TestServer {
    fn scrape(&self) -> impl Future<Output = Scrape> {
        TestServer::scrape(self)
    }
}

/// A server whose `/metrics` the harness reads: the [`TestServer`] in this process or a
/// [`process::ServerProcess`]. What a test expects of its counters is checked the same way for
/// both, by polling: each expectation panics with what the counters did instead.
pub trait Metrics {
    /// One scrape of /metrics.
    fn scrape(&self) -> impl Future<Output = Scrape>;

    /// Waits until `sessions_closed_total` grew by exactly `expected` since `before` and no other
    /// reason moved; panics with the deltas if it does not within `within`, or as soon as more
    /// closes than expected appear. Returns the final scrape.
    fn expect_closes(
        &self,
        before: &Scrape,
        expected: &[(CloseReason, u64)],
        within: Duration,
    ) -> impl Future<Output = Scrape> {
        let expected = expected.iter().map(|(r, n)| (r.as_str(), *n));
        let want = wanted(expected);
        async move {
            expect_growth(self, "close", &want, within, |now| {
                let deltas = now.close_deltas(before).into_iter();
                deltas.map(|(r, n)| (r.to_owned(), n)).collect()
            })
            .await
        }
    }

    /// Waits until exactly one session closed since `before`, as `reason`, and nothing else
    /// moved ([`Metrics::expect_closes`] within [`PATIENCE`]). Returns the final scrape.
    fn expect_close(&self, before: &Scrape, reason: CloseReason) -> impl Future<Output = Scrape> {
        async move { self.expect_closes(before, &[(reason, 1)], PATIENCE).await }
    }

    /// Waits until exactly one session closed since `before`, for any reason, and checks that the
    /// reason is one of `allowed`; returns it. Panics as soon as more than one close appears, or
    /// if none does within `within`.
    fn expect_one_close(
        &self,
        before: &Scrape,
        allowed: &[CloseReason],
        within: Duration,
    ) -> impl Future<Output = CloseReason> {
        async move {
            let deadline = tokio::time::Instant::now() + within;
            loop {
                let deltas = self.scrape().await.close_deltas(before);
                let total: u64 = deltas.values().sum();
                if total == 1 {
                    let label = deltas.keys().next().copied().unwrap_or_default();
                    let reason = CloseReason::from_label(label).expect("a known reason");
                    assert!(
                        allowed.contains(&reason),
                        "closed as {reason}, expected one of {allowed:?}"
                    );
                    return reason;
                }
                assert!(
                    total == 0 && tokio::time::Instant::now() < deadline,
                    "close counters moved by {deltas:?}, expected exactly one close"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    /// Waits until `gameserver_connections_rejected_total` grew by exactly `expected` (reason
    /// label, count) since `before`, and nothing else moved; panics with the deltas if not
    /// within `within`. Returns the final scrape.
    fn expect_rejections(
        &self,
        before: &Scrape,
        expected: &[(&str, u64)],
        within: Duration,
    ) -> impl Future<Output = Scrape> {
        let want = wanted(expected.iter().copied());
        async move {
            expect_growth(self, "rejection", &want, within, |now| {
                now.rejection_deltas(before)
            })
            .await
        }
    }
}

/// The non-zero counts of `expected`, by label.
fn wanted<'a>(expected: impl Iterator<Item = (&'a str, u64)>) -> BTreeMap<String, u64> {
    expected
        .filter(|(_, n)| *n > 0)
        .map(|(label, n)| (label.to_owned(), n))
        .collect()
}

/// Polls `server` until `deltas` of a scrape (a counter's growth by label) are exactly `want`;
/// returns that scrape. Panics, naming the `counter`, with the deltas seen if they are not within
/// `within`, or as soon as they add up to more than `want`.
async fn expect_growth<M: Metrics + ?Sized>(
    server: &M,
    counter: &str,
    want: &BTreeMap<String, u64>,
    within: Duration,
    deltas: impl Fn(&Scrape) -> BTreeMap<String, u64>,
) -> Scrape {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let now = server.scrape().await;
        let deltas = deltas(&now);
        if deltas == *want {
            return now;
        }
        let (seen, wanted): (u64, u64) = (deltas.values().sum(), want.values().sum());
        if seen > wanted || tokio::time::Instant::now() >= deadline {
            panic!("{counter} counters moved by {deltas:?}, expected exactly {want:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Calls `probe` every 100 ms until it returns `Ok`, and returns that; panics naming `what` and
/// the last `Err` (what the probe saw instead) if none comes within `within`. For waits no more
/// specific helper covers, such as a page's state in a browser.
pub async fn poll_until<T, F, Fut>(what: &str, within: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let seen = match probe().await {
            Ok(done) => return done,
            Err(seen) => seen,
        };
        if tokio::time::Instant::now() >= deadline {
            panic!("no {what} within {within:?}; last seen: {seen}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Events one client received, checked as they arrive: sequence numbers must be contiguous, and
/// each relayed input is counted by (sender, input seq), so that a loss or a duplicate shows.
#[derive(Debug, Default)]
pub struct RelayLog {
    /// The highest event seq received.
    pub last_event: u64,
    /// How many times each (sender, input seq) was relayed.
    pub relays: BTreeMap<(String, u64), u32>,
}

impl RelayLog {
    /// Records a message; panics if an event seq is not the next one.
    pub fn see(&mut self, message: &ServerMessage) {
        if let ServerMessage::Event { seq, payload } = message {
            assert_eq!(*seq, self.last_event + 1, "event seq jumped");
            self.last_event = *seq;
            if let Ok(rooms::payload::DemoEvent::Relay {
                from, input_seq, ..
            }) = rooms::payload::DemoEvent::from_bytes(payload.clone())
            {
                *self.relays.entry((from, input_seq)).or_default() += 1;
            }
        }
    }

    /// Reads until `relays` distinct relays were seen, answering pings.
    pub async fn read_until(&mut self, client: &mut RawClient, relays: usize) {
        while self.relays.len() < relays {
            match client.recv_answering_pings().await {
                Some(Ok(message)) => self.see(&message),
                other => panic!("connection ended: {other:?}"),
            }
        }
    }

    /// Asserts every relay arrived exactly once, and that `sender`'s inputs 1..=`last` all did.
    pub fn assert_exactly_once(&self, sender: &str, last: u64) {
        assert!(
            self.relays.values().all(|n| *n == 1),
            "a relay arrived twice: {:?}",
            self.relays
        );
        let seqs: Vec<u64> = self
            .relays
            .keys()
            .filter(|(from, _)| from == sender)
            .map(|(_, seq)| *seq)
            .collect();
        assert_eq!(
            seqs,
            (1..=last).collect::<Vec<_>>(),
            "{sender}'s inputs, each relayed once"
        );
    }
}

/// One scrape: every sample keyed by `name{label="value",...}` with labels sorted.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    /// The samples.
    pub samples: HashMap<String, f64>,
    /// The raw text.
    pub text: String,
}

impl Scrape {
    /// Parses the Prometheus text format.
    pub fn parse(text: &str) -> Scrape {
        let lines = text.lines().map(|l| Ok(l.to_owned()));
        let parsed = prometheus_parse::Scrape::parse(lines).expect("valid exposition format");
        let mut samples = HashMap::new();
        for sample in parsed.samples {
            let value = match sample.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => continue,
            };
            let mut labels: Vec<(String, String)> = sample
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            labels.sort();
            samples.insert(key(&sample.metric, &labels), value);
        }
        Scrape {
            samples,
            text: text.to_owned(),
        }
    }

    /// A sample's value, or 0 when absent.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let mut labels: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        labels.sort();
        self.samples
            .get(&key(name, &labels))
            .copied()
            .unwrap_or(0.0)
    }

    /// An unlabelled sample as the raw text has it (a histogram's `_count` too), or 0 when absent.
    pub fn raw(&self, name: &str) -> f64 {
        self.text
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    }

    /// How much a sample grew since `before`.
    pub fn since(&self, before: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels) - before.get(name, labels)
    }

    /// Sessions accepted over `transport` (`tcp`, `tls`, `websocket`, `wss`) since `before`.
    pub fn accepted_since(&self, before: &Scrape, transport: &str) -> f64 {
        self.since(
            before,
            "gameserver_sessions_accepted_total",
            &[("transport", transport)],
        )
    }

    /// Connections refused for `reason` (`gameserver_connections_rejected_total`) since `before`.
    pub fn rejected_since(&self, before: &Scrape, reason: &str) -> f64 {
        self.since(
            before,
            "gameserver_connections_rejected_total",
            &[("reason", reason)],
        )
    }

    /// `gameserver_sessions_closed_total{reason}`.
    pub fn closed(&self, reason: CloseReason) -> u64 {
        self.get(
            "gameserver_sessions_closed_total",
            &[("reason", reason.as_str())],
        ) as u64
    }

    /// Non-zero growth of `gameserver_connections_rejected_total` per reason since `before`.
    pub fn rejection_deltas(&self, before: &Scrape) -> BTreeMap<String, u64> {
        const PREFIX: &str = "gameserver_connections_rejected_total{reason=\"";
        self.samples
            .iter()
            .filter_map(|(key, value)| {
                let reason = key.strip_prefix(PREFIX)?.strip_suffix("\"}")?;
                let grown = value - before.samples.get(key).copied().unwrap_or(0.0);
                (grown > 0.0).then(|| (reason.to_owned(), grown as u64))
            })
            .collect()
    }

    /// Panics, with the closes counted, if any session closed since `before`; `why` says why
    /// none should have.
    pub fn assert_no_closes_since(&self, before: &Scrape, why: &str) {
        let closes = self.close_deltas(before);
        assert!(
            closes.is_empty(),
            "{why}, yet closes were counted: {closes:?}"
        );
    }

    /// Non-zero growth of the close counter per reason since `before`.
    pub fn close_deltas(&self, before: &Scrape) -> HashMap<&'static str, u64> {
        CloseReason::ALL
            .iter()
            .map(|r| {
                (
                    r.as_str(),
                    self.closed(*r).saturating_sub(before.closed(*r)),
                )
            })
            .filter(|(_, d)| *d > 0)
            .collect()
    }
}

fn key(name: &str, labels: &[(String, String)]) -> String {
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{name}{{{}}}", inner.join(","))
}

/// Reading the next message without the harness's wall-clock patience bound, for tests on a
/// paused clock where a timeout would simply fire.
pub trait NextMessage {
    /// The next message, or `None` at a clean end of stream.
    fn next_message(
        &mut self,
    ) -> impl std::future::Future<Output = Option<Result<ServerMessage, CodecError>>>;
}

impl NextMessage for Framed<TcpStream, ClientCodec> {
    async fn next_message(&mut self) -> Option<Result<ServerMessage, CodecError>> {
        self.next().await
    }
}

/// A client that speaks the protocol frame by frame, for tests that need exact control.
#[derive(Debug)]
pub struct RawClient<S = TcpStream> {
    /// The framed connection.
    pub framed: Framed<S, ClientCodec>,
}

/// The fields of a plain `Hello` for a player, this version, automatic room: for tests that
/// change some of them.
pub fn hello_fields(player: &str) -> Hello {
    Hello::new(player, "")
}

/// A plain `Hello` for a player, this version, automatic room.
pub fn hello(player: &str) -> ClientMessage {
    ClientMessage::Hello(Box::new(hello_fields(player)))
}

/// A `Hello` for a player asking for a named room.
pub fn hello_in(player: &str, room: &str) -> ClientMessage {
    ClientMessage::Hello(Box::new(Hello {
        room: room.to_owned(),
        ..hello_fields(player)
    }))
}

/// A `Hello` that resumes the session `token` belongs to, as `player` naming `room`, having
/// received its events up to `last_event_seq`.
pub fn resume_hello(
    player: &str,
    room: &str,
    token: protocol::ResumeToken,
    last_event_seq: u64,
) -> ClientMessage {
    ClientMessage::Hello(Box::new(Hello {
        room: room.to_owned(),
        resume: Some(protocol::Resume {
            token,
            last_event_seq,
        }),
        ..hello_fields(player)
    }))
}

/// An `Input` with sequence number `seq` carrying `payload`.
pub fn input(seq: u64, payload: impl Into<bytes::Bytes>) -> ClientMessage {
    ClientMessage::Input {
        seq,
        payload: payload.into(),
    }
}

/// The client's `Bye{client_quit}`: it is leaving.
pub fn client_quit() -> ClientMessage {
    ClientMessage::Bye(protocol::Bye::new(protocol::ByeCode::ClientQuit, ""))
}

/// Sends `hello` over a WebSocket and expects `Welcome` (within 10 s, WebSocket pings aside).
pub async fn ws_hello<S>(
    ws: &mut tokio_tungstenite::WebSocketStream<S>,
    hello: ClientMessage,
) -> Welcome
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio_tungstenite::tungstenite::Message;
    ws.send(ws_message(hello)).await.expect("send Hello");
    loop {
        let answer = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("an answer to Hello in time");
        match answer {
            Some(Ok(Message::Binary(body))) => match ws_decode(&body) {
                ServerMessage::Welcome(welcome) => return welcome,
                other => panic!("expected Welcome, got {other:?}"),
            },
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            other => panic!("expected Welcome, got {other:?}"),
        }
    }
}

/// The server's message in a binary WebSocket message (a frame's body; the prefix restored
/// here). Panics on anything that is not one whole valid frame.
pub fn ws_decode(body: &[u8]) -> ServerMessage {
    use tokio_util::codec::Decoder;
    let mut frame = bytes::BytesMut::with_capacity(HEADER_LEN + body.len());
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(body);
    ClientCodec::default()
        .decode(&mut frame)
        .expect("a valid frame")
        .expect("a whole frame")
}

/// A message as a WebSocket client sends it: one binary message holding the body of its frame
/// (the protocol's encoding without the length prefix).
pub fn ws_message(message: ClientMessage) -> tokio_tungstenite::tungstenite::Message {
    let mut frame = bytes::BytesMut::new();
    ClientCodec::default()
        .encode(message, &mut frame)
        .expect("encode");
    tokio_tungstenite::tungstenite::Message::Binary(frame.split_off(HEADER_LEN).freeze())
}

/// The sender and input sequence number of a demo-game relay event, if `message` is one.
pub fn relay(message: &ServerMessage) -> Option<(String, u64)> {
    match message {
        ServerMessage::Event { payload, .. } => {
            match rooms::payload::DemoEvent::from_bytes(payload.clone()) {
                Ok(rooms::payload::DemoEvent::Relay {
                    from, input_seq, ..
                }) => Some((from, input_seq)),
                _ => None,
            }
        }
        _ => None,
    }
}

impl RawClient {
    /// Connects without saying anything.
    pub async fn connect(addr: SocketAddr) -> RawClient {
        let stream = TcpStream::connect(addr).await.expect("connect");
        RawClient::over(stream)
    }

    /// Closes abortively: zero linger, so the kernel sends RST.
    pub fn abort(self) {
        let stream = self.framed.into_inner();
        if let Err(error) = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO)) {
            panic!("cannot set SO_LINGER: {error}");
        }
    }

    /// Connects and completes the handshake for `player`.
    pub async fn join(addr: SocketAddr, player: &str) -> (RawClient, Welcome) {
        let mut client = RawClient::connect(addr).await;
        let welcome = client.hello(hello(player)).await;
        (client, welcome)
    }

    /// Connects and completes the handshake for `player` in the named `room`.
    pub async fn join_room(addr: SocketAddr, player: &str, room: &str) -> (RawClient, Welcome) {
        let mut client = RawClient::connect(addr).await;
        let welcome = client.hello(hello_in(player, room)).await;
        (client, welcome)
    }

    /// The underlying socket.
    pub fn stream(&self) -> &TcpStream {
        self.framed.get_ref()
    }
}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> RawClient<S> {
    /// Speaks the protocol over a stream the caller opened (and perhaps wrote to first).
    pub fn over(stream: S) -> RawClient<S> {
        RawClient {
            framed: Framed::new(stream, ClientCodec::default()),
        }
    }

    /// Sends a `Hello` and expects `Welcome`.
    pub async fn hello(&mut self, hello: ClientMessage) -> Welcome {
        self.send(hello).await;
        match self.recv().await {
            Some(Ok(ServerMessage::Welcome(welcome))) => welcome,
            other => panic!("expected Welcome, got {other:?}"),
        }
    }

    /// Sends one message.
    pub async fn send(&mut self, message: ClientMessage) {
        self.framed.send(message).await.expect("send");
    }

    /// Sends one message, returning the socket's error instead of panicking (for a connection
    /// that may already have been reset).
    pub async fn try_send(&mut self, message: ClientMessage) -> Result<(), CodecError> {
        self.framed.send(message).await
    }

    /// The next message, or `None` at a clean end of stream; panics after [`PATIENCE`].
    pub async fn recv(&mut self) -> Option<Result<ServerMessage, CodecError>> {
        tokio::time::timeout(PATIENCE, self.framed.next())
            .await
            .expect("the server answers within the patience bound")
    }

    /// The next message that is not a `Ping`, answering pings on the way; as [`Self::recv`].
    pub async fn recv_answering_pings(&mut self) -> Option<Result<ServerMessage, CodecError>> {
        loop {
            match self.recv().await {
                Some(Ok(ServerMessage::Ping { nonce })) => {
                    self.send(ClientMessage::Pong { nonce }).await;
                }
                other => return other,
            }
        }
    }

    /// Reads until the server's `Bye`, answering pings. Returns what came before it and the Bye;
    /// panics if the stream ends or fails first.
    pub async fn until_bye(&mut self) -> (Vec<ServerMessage>, protocol::Bye) {
        let mut before = Vec::new();
        loop {
            match self.recv_answering_pings().await {
                Some(Ok(ServerMessage::Bye(bye))) => return (before, bye),
                Some(Ok(message)) => before.push(message),
                other => panic!(
                    "expected a Bye, got {other:?} after {} messages",
                    before.len()
                ),
            }
        }
    }

    /// Reads until the server's `Bye` (answering pings) and checks its code; returns it. The
    /// failure shows the whole `Bye`, its text included.
    pub async fn expect_bye(&mut self, code: protocol::ByeCode) -> protocol::Bye {
        let (_, bye) = self.until_bye().await;
        assert_eq!(bye.code, code, "{bye:?}");
        bye
    }

    /// Reads to the end of the stream and checks that it ends cleanly: EOF between frames, not a
    /// reset or a cut-off frame. `why` says why a clean end is due.
    pub async fn expect_clean_end(&mut self, why: &str) {
        if let Some(error) = self.until_end().await {
            panic!("{why}: expected a clean EOF, the stream ended with {error}");
        }
    }

    /// Says `Bye{client_quit}` and checks the server's answer: its own `Bye{client_quit}`, then a
    /// clean end of the stream.
    pub async fn quit_cleanly(&mut self) {
        self.send(client_quit()).await;
        self.expect_bye(protocol::ByeCode::ClientQuit).await;
        self.expect_clean_end("after a quit").await;
    }

    /// Sends a `Ping` and reads until its `Pong`: the session is served. Panics if the session
    /// ends first.
    pub async fn ping_pong(&mut self, nonce: u64) {
        self.send(ClientMessage::Ping { nonce }).await;
        loop {
            match self.recv().await {
                Some(Ok(ServerMessage::Pong { nonce: n })) if n == nonce => return,
                Some(Ok(_)) => {}
                other => panic!("the session ended before the pong {nonce}: {other:?}"),
            }
        }
    }

    /// Sends input `seq` as `player` and reads, answering pings, until its relay comes back:
    /// the game applied it. Panics if the session ends first.
    pub async fn play(&mut self, player: &str, seq: u64) {
        self.send(input(seq, "move")).await;
        loop {
            match self.recv_answering_pings().await {
                Some(Ok(message)) => {
                    if relay(&message).is_some_and(|(from, s)| from == player && s == seq) {
                        return;
                    }
                }
                other => panic!("{player} expected the relay of input {seq}, got {other:?}"),
            }
        }
    }

    /// Reads to the end of the stream, returning the error that ended it, if any.
    pub async fn until_end(&mut self) -> Option<CodecError> {
        loop {
            match self.recv().await {
                Some(Ok(_)) => continue,
                Some(Err(error)) => return Some(error),
                None => return None,
            }
        }
    }
}

/// True when the tests run in CI, where a missing tool or privilege is a failure, not a skip.
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false")
}

/// Panics unless `ok`: a prerequisite of a test that was built to run is missing. Tests that
/// need root or a system tool are ignored where the build did not find it (`tests/build.rs`
/// sets a `cfg` for each), so that they are reported as not run; in CI, where `.ci/run`
/// installs every tool, a missing one is a failure.
pub fn need(ok: bool, what: &str) {
    assert!(ok, "{what}: missing (see tests/build.rs)");
}

/// Panics unless every one of `tools` is on the PATH (see [`need`]); `install` says where
/// they come from.
pub fn need_tools(tools: &[&str], install: &str) {
    need(
        tools.iter().all(|tool| has_tool(tool)),
        &format!("{} ({install})", tools.join(", ")),
    );
}

/// True when running as root.
pub fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// True when `tool` is on the PATH.
pub fn has_tool(tool: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// A TCP connection to `addr` from `source` (a loopback address such as 127.0.0.2): another
/// source as the server's per-source limits see it.
pub async fn connect_from(addr: SocketAddr, source: std::net::IpAddr) -> tokio::net::TcpStream {
    let socket = match source {
        std::net::IpAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
        std::net::IpAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
    }
    .expect("a socket");
    socket
        .bind(SocketAddr::new(source, 0))
        .expect("bind the source address");
    socket.connect(addr).await.expect("connect")
}
