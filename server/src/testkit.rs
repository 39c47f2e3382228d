//! A test kit for game authors (feature `testkit`).
//!
//! - [`RoomHarness`] drives one room directly: no sockets, no tasks. Each call runs one hook,
//!   as the room's task would, and each [`TestPlayer`] holds what the room sent it. The room's
//!   ticks come when the test calls [`RoomHarness::tick`]; its time
//!   ([`RoomContext::elapsed`](crate::RoomContext::elapsed)) moves when the test calls
//!   [`RoomHarness::advance`], which runs the timers that fall due on the way.
//! - [`TestServer`] runs a game in-process behind the real engine (sessions, heartbeat, rooms,
//!   resume, close policy), with [`TestClient`]s connected over `tokio::io::duplex` instead of
//!   TCP, so a test can use a paused clock. [`TestServer::listen`] also listens on real
//!   loopback ports, for clients over real sockets (the workspace's system tests are built on
//!   it).
//!
//! ```
//! # use game_engine::{Game, Room, RoomContext, Player, Refusal};
//! # use game_engine::testkit::RoomHarness;
//! struct Echo;
//! impl Room for Echo {
//!     fn input(&mut self, room: &mut RoomContext<'_>, _: &Player, _: u64, payload: bytes::Bytes) {
//!         room.broadcast(payload);
//!     }
//! }
//! let mut room = RoomHarness::new("lobby", Echo);
//! let mut ann = room.join("ann").unwrap();
//! let mut bob = room.join("bob").unwrap();
//! room.input(&mut ann, "hi");
//! assert_eq!(bob.events(), ["hi"]);
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use protocol::ClientCodec;
/// The protocol's messages, as the test kit's clients send and receive them: a game's tests need
/// no other crate to name them.
pub use protocol::{
    Bye, ByeCode, ClientMessage, Hello, Resume, ResumeToken, ServerMessage, Welcome,
};
use tokio::io::DuplexStream;
use tokio::task::JoinHandle;
use tokio_util::codec::Framed;

use crate::api::game::{Game, Leave, NewRoom, Player, Refusal, Room, RoomContext};
use crate::api::rooms::Rooms;
use crate::api::state::RoomState;
use crate::close::CloseReason;
use crate::config::GameConfig;
use crate::config::{Config, Sources};
use crate::ops::metrics::Metrics;
use crate::player::registry::QueueLimit;
use crate::server::{Connector, Listeners, Server};
use crate::shutdown::Shutdown;
use crate::transport::stream::Duplex;

/// Events a test player's queue holds; a room that sends more between two reads closes it as a
/// slow consumer, as the engine would.
pub const TEST_QUEUE: usize = 4096;

/// One room, driven by hand.
#[derive(Debug)]
pub struct RoomHarness<R: Room> {
    room: R,
    name: String,
    members: crate::api::game::Members,
    /// The room's clock: ticks, time (moved by [`RoomHarness::advance`]) and timers.
    clock: RoomState,
    next_session: u64,
}

/// A player in a [`RoomHarness`]: what the room sent it, and whether the room ended it.
#[derive(Debug)]
pub struct TestPlayer {
    player: Player,
    next_seq: u64,
}

impl TestPlayer {
    /// The engine's handle, as the room sees it.
    pub fn player(&self) -> &Player {
        &self.player
    }

    /// The player's session id.
    pub fn session_id(&self) -> u64 {
        self.player.session_id()
    }

    /// Every event the room sent since the last call.
    pub fn events(&mut self) -> Vec<Bytes> {
        std::iter::from_fn(|| self.player.queue().try_pop()).collect()
    }

    /// The game's reason, if the room ended this player's session ([`RoomContext::end`]).
    pub fn ended(&self) -> Option<String> {
        (self.player.control().requested() == Some(CloseReason::GameEnded))
            .then(|| self.player.control().text().unwrap_or_default())
    }

    /// True when the engine would close this player as a slow consumer (its queue overflowed).
    pub fn overflowed(&self) -> bool {
        self.player.control().requested() == Some(CloseReason::SlowConsumer)
    }
}

impl<R: Room> RoomHarness<R> {
    /// A harness around a room value.
    pub fn new(name: &str, room: R) -> RoomHarness<R> {
        RoomHarness {
            room,
            name: name.to_owned(),
            members: Default::default(),
            clock: RoomState::default(),
            next_session: 1,
        }
    }

    /// Opens a room of `game` as the directory would for a player naming it.
    pub fn open<G: Game<Room = R>>(game: &G, name: &str) -> Result<RoomHarness<R>, Refusal> {
        RoomHarness::open_with(game, name, &[])
    }

    /// Opens a room of `game` as the directory would for a player naming it with these join
    /// `options` ([`NewRoom::options`]).
    pub fn open_with<G: Game<Room = R>>(
        game: &G,
        name: &str,
        options: &[u8],
    ) -> Result<RoomHarness<R>, Refusal> {
        Ok(RoomHarness::new(
            name,
            game.open(&NewRoom::new(name, false, options))?,
        ))
    }

    /// Opens an automatic room called `name` with `game`, as the directory opens one for
    /// players who named no room.
    pub fn open_automatic<G: Game<Room = R>>(
        game: &G,
        name: &str,
    ) -> Result<RoomHarness<R>, Refusal> {
        Ok(RoomHarness::new(
            name,
            game.open(&NewRoom::new(name, true, &[]))?,
        ))
    }

    /// A player asks to join; on success it is a member.
    pub fn join(&mut self, player_id: &str) -> Result<TestPlayer, Refusal> {
        self.enter(player_id, None, &[])
    }

    /// A player asks to join with these join `options` ([`RoomContext::options`]); on success
    /// it is a member.
    pub fn join_with(&mut self, player_id: &str, options: &[u8]) -> Result<TestPlayer, Refusal> {
        self.enter(player_id, None, options)
    }

    /// The player of `old` logs in again without resuming, while `old` is still live or parked
    /// here: a new session asks to join, replacing `old` ([`RoomContext::replaces`]). On success
    /// `old` is no longer a member.
    pub fn rejoin(&mut self, old: &TestPlayer) -> Result<TestPlayer, Refusal> {
        let player_id = old.player.player_id().to_owned();
        self.enter(&player_id, Some(old.session_id()), &[])
    }

    fn enter(
        &mut self,
        player_id: &str,
        replaces: Option<u64>,
        options: &[u8],
    ) -> Result<TestPlayer, Refusal> {
        let session = self.next_session;
        self.next_session += 1;
        let peer = SocketAddr::from(([127, 0, 0, 1], 40_000 + (session % 20_000) as u16));
        let player = Player::new(
            session,
            Arc::from(player_id),
            peer,
            TEST_QUEUE,
            QueueLimit::default(),
        );
        let old = replaces.and_then(|session| self.members.remove(&session));
        let mut context = RoomContext::joining(&self.name, &self.members, &mut self.clock, &player);
        context.replacing = old.as_ref().map(Player::session_id);
        context.options = options;
        if let Err(refusal) = self.room.join(&mut context, &player) {
            if let Some(old) = old {
                self.members.insert(old.session_id(), old);
            }
            return Err(refusal);
        }
        self.members.insert(session, player.clone());
        Ok(TestPlayer {
            player,
            next_seq: 1,
        })
    }

    /// A member sends its next input.
    pub fn input(&mut self, player: &mut TestPlayer, payload: impl Into<Bytes>) {
        let seq = player.next_seq;
        player.next_seq += 1;
        let member = player.player.clone();
        let mut context = RoomContext::new(&self.name, &self.members, &mut self.clock);
        self.room.input(&mut context, &member, seq, payload.into());
    }

    /// A member leaves for good.
    pub fn leave(&mut self, player: &TestPlayer, why: Leave) {
        if let Some(member) = self.members.remove(&player.session_id()) {
            let mut context = RoomContext::new(&self.name, &self.members, &mut self.clock);
            self.room.leave(&mut context, &member, why);
        }
    }

    /// A member's connection broke; it is parked.
    pub fn disconnect(&mut self, player: &TestPlayer, why: CloseReason) {
        let member = player.player.clone();
        let mut context = RoomContext::new(&self.name, &self.members, &mut self.clock);
        self.room.disconnected(&mut context, &member, why);
    }

    /// A parked member came back.
    pub fn reconnect(&mut self, player: &TestPlayer) {
        let member = player.player.clone();
        let mut context = RoomContext::new(&self.name, &self.members, &mut self.clock);
        self.room.reconnected(&mut context, &member);
    }

    /// Runs the next tick; returns its number. Ticks do not move the room's time.
    pub fn tick(&mut self) -> u64 {
        self.clock.tick += 1;
        let tick = self.clock.tick;
        let mut context = RoomContext::new(&self.name, &self.members, &mut self.clock);
        self.room.tick(&mut context, tick);
        tick
    }

    /// Moves the room's time (what [`RoomContext::elapsed`] reads) on by `by`, running the
    /// timers that fall due on the way, each at its own time, in order. Returns how many ran.
    pub fn advance(&mut self, by: std::time::Duration) -> usize {
        let until = self.clock.elapsed() + by;
        let mut ran = 0;
        while let Some(deadline) = self.clock.next_deadline().filter(|d| *d <= until) {
            self.clock.set_elapsed(self.clock.elapsed().max(deadline));
            while let Some(key) = self.clock.pop_due() {
                let mut context = RoomContext::new(&self.name, &self.members, &mut self.clock);
                self.room.timer(&mut context, key);
                ran += 1;
            }
        }
        self.clock.set_elapsed(until);
        ran
    }

    /// A message for the room from outside its players: runs [`Room::signal`], returns its
    /// answer.
    pub fn signal(&mut self, payload: impl Into<Bytes>) -> Bytes {
        let mut context = RoomContext::new(&self.name, &self.members, &mut self.clock);
        self.room.signal(&mut context, payload.into())
    }

    /// The label the room publishes in the listing.
    pub fn label(&self) -> Option<&str> {
        self.clock.listing.label.as_deref()
    }

    /// True while the room is locked.
    pub fn is_locked(&self) -> bool {
        self.clock.listing.locked
    }

    /// The server starts to drain with `left` before its timeout: runs [`Room::draining`].
    pub fn drain(&mut self, left: std::time::Duration) {
        let mut context = RoomContext::new(&self.name, &self.members, &mut self.clock);
        self.room.draining(&mut context, left);
    }

    /// The room's value, to look at its state.
    pub fn room(&self) -> &R {
        &self.room
    }

    /// How many members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// True without members.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The room's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// A game running in this process behind the real engine, reached over in-memory connections
/// and, when it listens, over its real ports.
pub struct TestServer {
    connector: Option<Connector>,
    shutdown: Shutdown,
    task: JoinHandle<()>,
    admin: SocketAddr,
    game: Option<SocketAddr>,
    websocket: Option<SocketAddr>,
    metrics: Metrics,
    rooms: Rooms,
    next_peer: AtomicU64,
    /// The configuration it runs with.
    pub config: Config,
}

impl std::fmt::Debug for TestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestServer")
            .field("admin", &self.admin)
            .finish_non_exhaustive()
    }
}

/// The engine's embedded defaults, for tests: admin on 127.0.0.1:0, no source exemption needed
/// (in-memory clients are not admitted through the acceptor).
pub fn test_config() -> Config {
    let mut config = Config::load(&Sources {
        env: Some(HashMap::new()),
        ..Sources::default()
    })
    .unwrap_or_default();
    config.admin.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config
}

/// A game's configuration section at its defaults.
pub fn default_game_config<C: GameConfig>() -> Result<C, crate::config::ConfigError> {
    Config::load_game::<C>(&Sources {
        env: Some(HashMap::new()),
        ..Sources::default()
    })
    .map(|(_, game)| game)
}

/// [`test_config`] changed by `configure`, checked.
fn configured(configure: impl FnOnce(&mut Config)) -> Config {
    let mut config = test_config();
    configure(&mut config);
    let problems = config.validate();
    assert!(
        problems.is_empty(),
        "test configuration invalid: {problems:?}"
    );
    config
}

impl TestServer {
    /// Starts `game` with [`test_config`] changed by `configure`, reached over in-memory
    /// connections ([`TestServer::connect_raw`]) and its admin port.
    pub async fn start<G: Game>(game: G, configure: impl FnOnce(&mut Config)) -> TestServer {
        let config = configured(configure);
        let admin = tokio::net::TcpListener::bind(config.admin.listen)
            .await
            .unwrap_or_else(|e| panic!("cannot bind the admin listener: {e}"));
        let shutdown = Shutdown::new();
        let engine = Server::new(game, config.clone())
            .shutdown(shutdown.clone())
            .start(admin, None)
            .await
            .unwrap_or_else(|e| panic!("cannot start the server: {e:#}"));
        let admin = engine.admin_addr();
        let connector = engine.connector();
        let metrics = engine.metrics();
        let rooms = engine.rooms();
        let task = tokio::spawn(engine.until_drained());
        TestServer {
            connector: Some(connector),
            shutdown,
            task,
            admin,
            game: None,
            websocket: None,
            metrics,
            rooms,
            next_peer: AtomicU64::new(1),
            config,
        }
    }

    /// Starts `game` with [`test_config`] changed by `configure`, listening on the ports the
    /// configuration names (the game port on `127.0.0.1:0` unless `configure` says otherwise;
    /// read them back with [`TestServer::game_addr`] and [`TestServer::websocket_addr`]), as
    /// `Server::run` does, and reached over in-memory connections too.
    pub async fn listen<G: Game>(game: G, configure: impl FnOnce(&mut Config)) -> TestServer {
        let config = configured(|config| {
            config.server.listen = SocketAddr::from(([127, 0, 0, 1], 0));
            configure(config);
        });
        let listeners = Listeners::bind(&config)
            .await
            .unwrap_or_else(|e| panic!("cannot bind the test ports: {e}"));
        let game_addr = listeners.game.local_addr().ok();
        let websocket = listeners
            .websocket
            .as_ref()
            .and_then(|l| l.local_addr().ok());
        let shutdown = Shutdown::new();
        let engine = Server::new(game, config.clone())
            .shutdown(shutdown.clone())
            .start(listeners.admin, listeners.websocket.as_ref())
            .await
            .unwrap_or_else(|e| panic!("cannot start the server: {e:#}"));
        let admin = engine.admin_addr();
        let connector = engine.connector();
        let metrics = engine.metrics();
        let rooms = engine.rooms();
        let task = tokio::spawn(engine.serve(listeners.game, listeners.websocket));
        TestServer {
            connector: Some(connector),
            shutdown,
            task,
            admin,
            game: game_addr,
            websocket,
            metrics,
            rooms,
            next_peer: AtomicU64::new(1),
            config,
        }
    }

    /// The connector, for the engine's own tests.
    #[cfg(test)]
    pub(crate) fn connector(&self) -> &Connector {
        self.connector.as_ref().expect("the server is running")
    }

    /// The admin listener (a real socket on loopback).
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    /// The game port, when the server listens ([`TestServer::listen`]).
    pub fn game_addr(&self) -> Option<SocketAddr> {
        self.game
    }

    /// The WebSocket port, when the server listens on one.
    pub fn websocket_addr(&self) -> Option<SocketAddr> {
        self.websocket
    }

    /// The handle that drains or aborts the server.
    pub fn shutdown(&self) -> &Shutdown {
        &self.shutdown
    }

    /// A new in-memory connection that has said nothing yet.
    pub fn connect_raw(&self) -> TestClient {
        let (client, server) = tokio::io::duplex(256 * 1024);
        let n = self.next_peer.fetch_add(1, Ordering::Relaxed);
        let peer = SocketAddr::from(([10, 0, (n >> 8) as u8, n as u8], 40_000));
        if let Some(connector) = &self.connector {
            connector.connect(Duplex::new(server), peer);
        }
        TestClient {
            framed: Framed::new(client, ClientCodec::default()),
            welcome: None,
            next_seq: 1,
            player_id: String::new(),
            last_event_seq: 0,
        }
    }

    /// Connects and says `Hello` as `player` asking for `room` ("" = an automatic room).
    /// Returns the client after its `Welcome`, or the `Bye` that refused it.
    pub async fn join(&self, player: &str, room: &str) -> Result<TestClient, Bye> {
        self.hello(player, room, None, Bytes::new()).await
    }

    /// Like [`TestServer::join`], with join `options` in the `Hello`.
    pub async fn join_with(
        &self,
        player: &str,
        room: &str,
        options: impl Into<Bytes>,
    ) -> Result<TestClient, Bye> {
        self.hello(player, room, None, options.into()).await
    }

    /// Resumes a session whose connection went away: a new connection says `Hello` with the
    /// session's token and the last event its client received. Returns the client after its
    /// `Welcome` (the events after that one are replayed to it, and its next input continues
    /// the session's sequence), or the `Bye` that refused the resume.
    pub async fn resume(&self, vanished: &Vanished) -> Result<TestClient, Bye> {
        let mut client = self
            .hello(
                &vanished.player_id,
                "",
                Some(Resume {
                    token: vanished.token,
                    last_event_seq: vanished.last_event_seq,
                }),
                Bytes::new(),
            )
            .await?;
        client.last_event_seq = vanished.last_event_seq;
        Ok(client)
    }

    async fn hello(
        &self,
        player: &str,
        room: &str,
        resume: Option<Resume>,
        options: Bytes,
    ) -> Result<TestClient, Bye> {
        let mut client = self.connect_raw();
        client.player_id = player.to_owned();
        client
            .send(ClientMessage::Hello(Box::new(Hello {
                resume,
                options,
                ..Hello::new(player, room)
            })))
            .await;
        match client.recv().await {
            Some(ServerMessage::Welcome(welcome)) => {
                client.next_seq = welcome.last_input_seq + 1;
                client.welcome = Some(welcome);
                Ok(client)
            }
            Some(ServerMessage::Bye(bye)) => Err(bye),
            other => panic!("expected Welcome or Bye, got {other:?}"),
        }
    }

    /// The server's rooms, as the game's own code reaches them ([`crate::Game::started`]):
    /// the listing and signals.
    pub fn rooms(&self) -> Rooms {
        self.rooms.clone()
    }

    /// The server's metrics, in the Prometheus text format `/metrics` serves.
    pub fn metrics(&self) -> String {
        self.metrics.render()
    }

    /// Sessions closed so far for `reason` (`gameserver_sessions_closed_total`).
    pub fn closed(&self, reason: CloseReason) -> u64 {
        let line = format!(
            "gameserver_sessions_closed_total{{reason=\"{}\"}} ",
            reason.as_str()
        );
        self.metrics()
            .lines()
            .find_map(|l| l.strip_prefix(&line)?.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Drains the server and waits for it to stop.
    pub async fn stop(mut self) {
        self.connector.take();
        self.shutdown.drain();
        if let Err(error) = self.task.await {
            panic!("the server's task failed: {error}");
        }
    }
}

/// A scripted client over an in-memory connection.
#[derive(Debug)]
pub struct TestClient {
    /// The framed connection.
    pub framed: Framed<DuplexStream, ClientCodec>,
    welcome: Option<Welcome>,
    next_seq: u64,
    /// The player id it said `Hello` as.
    player_id: String,
    /// The highest event sequence number received.
    last_event_seq: u64,
}

/// A session whose connection went away without a word ([`TestClient::vanish`]): what its
/// client keeps to resume it ([`TestServer::resume`]).
#[derive(Debug, Clone)]
pub struct Vanished {
    /// The player id.
    pub player_id: String,
    /// The session's resume token.
    pub token: ResumeToken,
    /// The highest event sequence number the client received.
    pub last_event_seq: u64,
}

impl TestClient {
    /// The `Welcome` the server sent.
    pub fn welcome(&self) -> Option<&Welcome> {
        self.welcome.as_ref()
    }

    /// Sends one message.
    pub async fn send(&mut self, message: ClientMessage) {
        let _ = self.framed.send(message).await;
    }

    /// Sends the next input.
    pub async fn input(&mut self, payload: impl Into<Bytes>) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.send(ClientMessage::Input {
            seq,
            payload: payload.into(),
        })
        .await;
        seq
    }

    /// The next message other than a `Ping` (pings are answered), or `None` at the end.
    pub async fn recv(&mut self) -> Option<ServerMessage> {
        loop {
            match self.framed.next().await {
                Some(Ok(ServerMessage::Ping { nonce })) => {
                    self.send(ClientMessage::Pong { nonce }).await;
                }
                Some(Ok(message)) => {
                    if let ServerMessage::Event { seq, .. } = &message {
                        self.last_event_seq = self.last_event_seq.max(*seq);
                    }
                    return Some(message);
                }
                Some(Err(_)) | None => return None,
            }
        }
    }

    /// The next event's payload, skipping other messages; `None` at the end.
    pub async fn next_event(&mut self) -> Option<Bytes> {
        loop {
            match self.recv().await? {
                ServerMessage::Event { payload, .. } => return Some(payload),
                ServerMessage::Bye(_) => return None,
                _ => continue,
            }
        }
    }

    /// Asks to move to `room`: `Ok` with the room on `Joined`, `Err` with the reason on
    /// `JoinRefused`.
    pub async fn join(&mut self, room: &str) -> Result<String, String> {
        self.join_with(room, Bytes::new()).await
    }

    /// Like [`TestClient::join`], with join `options` in the `Join`.
    pub async fn join_with(
        &mut self,
        room: &str,
        options: impl Into<Bytes>,
    ) -> Result<String, String> {
        self.send(ClientMessage::Join {
            room: room.to_owned(),
            options: options.into(),
        })
        .await;
        loop {
            match self.recv().await {
                Some(ServerMessage::Joined { room }) => return Ok(room),
                Some(ServerMessage::JoinRefused { text, .. }) => return Err(text),
                Some(_) => continue,
                None => return Err("the connection ended".to_owned()),
            }
        }
    }

    /// Reads until the server's `Bye` (events and acks before it are dropped).
    pub async fn until_bye(&mut self) -> Option<Bye> {
        loop {
            match self.recv().await? {
                ServerMessage::Bye(bye) => return Some(bye),
                _ => continue,
            }
        }
    }

    /// The connection goes away without a word, as when a client crashes (the server sees its
    /// stream end: `peer_eof`, and parks the session for resume). Returns what the client keeps
    /// to resume it.
    pub fn vanish(self) -> Vanished {
        let welcome = self.welcome.expect("a welcomed client");
        Vanished {
            player_id: self.player_id,
            token: welcome.resume_token,
            last_event_seq: self.last_event_seq,
        }
    }

    /// Leaves: `Bye{client_quit}`, then reads to the server's `Bye`.
    pub async fn quit(mut self) -> Option<Bye> {
        self.send(ClientMessage::Bye(Bye::new(ByeCode::ClientQuit, "")))
            .await;
        self.until_bye().await
    }
}

/// Auth tokens signed with a secret, as `game-server token` mints them: for tests of a server
/// with `auth.mode = "hmac"` (and of tokens that must be refused: expired, another secret,
/// another instance).
#[derive(Debug)]
pub struct Tokens(crate::session::auth::Authenticator);

impl Tokens {
    /// Tokens signed with `secret`.
    pub fn new(secret: &str) -> Tokens {
        Tokens(crate::session::auth::Authenticator::new(
            secret.as_bytes(),
            crate::config::MAX_TOKEN_TTL,
        ))
    }

    /// A token for `player`, valid for `ttl` from now, on every instance.
    pub fn mint(&self, player: &str, ttl: std::time::Duration) -> String {
        self.mint_at(player, ttl, std::time::SystemTime::now())
    }

    /// A token for `player`, valid for `ttl` from `now` (a past `now` mints an expired one).
    pub fn mint_at(
        &self,
        player: &str,
        ttl: std::time::Duration,
        now: std::time::SystemTime,
    ) -> String {
        self.0
            .mint(player, ttl, now)
            .unwrap_or_else(|error| panic!("cannot mint a token for {player:?}: {error}"))
    }

    /// A token for `player`, valid for `ttl` from now, bound to the instance `audience` when
    /// given.
    pub fn mint_for(
        &self,
        player: &str,
        ttl: std::time::Duration,
        audience: Option<&str>,
    ) -> String {
        self.0
            .mint_for(player, ttl, audience, std::time::SystemTime::now())
            .unwrap_or_else(|error| panic!("cannot mint a token for {player:?}: {error}"))
    }
}
