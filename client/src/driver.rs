//! The Tokio driver: one task that owns the connection, runs the [`Core`] and reconnects by
//! itself; a [`Client`] handle for the game.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use protocol::ClientCodec;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::codec::{Encoder, FramedRead};

use crate::core::{Config, Core, InputError, Instant, JoinError, Next, Output};
use crate::end::{End, Lost, Transport};
use crate::link::{Link, Tls};

/// Where to connect and how to behave when connections fail.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The server's game address, `host:port`.
    pub server: String,
    /// Who plays, and the session's limits.
    pub session: Config,
    /// Longest wait for a TCP connect.
    pub connect_timeout: Duration,
    /// Longest wait for `Welcome` after `Hello`.
    pub handshake_timeout: Duration,
    /// The first wait before reconnecting; doubled after each failed attempt (with jitter) ...
    pub reconnect_min: Duration,
    /// ... up to this.
    pub reconnect_max: Duration,
    /// Connection attempts in a row before the session is given up as lost; `None` keeps trying
    /// (a server that forgot the session still ends it, by refusing the resume).
    pub max_attempts: Option<u32>,
    /// Start a new session by itself after a loss (a [`Notice::Lost`] is still sent).
    pub fresh_after_loss: bool,
    /// How long a quit waits for the server's `Ack` and `Bye`.
    pub linger: Duration,
    /// TLS over the TCP connection (the server's `[tls]`); `None`: plain TCP.
    pub tls: Option<Tls>,
    /// Speak WebSocket (the server's `server.websocket_listen`): the URL of the opening
    /// handshake, `ws://host:port/` (`wss://` with `tls`). `server` is still where the TCP
    /// connection goes.
    pub websocket: Option<String>,
}

impl ClientConfig {
    /// Defaults for `server` and `session`: 5 s connect and handshake timeouts, reconnects from
    /// 100 ms to 5 s apart, 30 attempts, no new session without being asked, 5 s linger.
    pub fn new(server: impl Into<String>, session: Config) -> ClientConfig {
        ClientConfig {
            server: server.into(),
            session,
            connect_timeout: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(5),
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(5),
            max_attempts: Some(30),
            fresh_after_loss: false,
            linger: Duration::from_secs(5),
            tls: None,
            websocket: None,
        }
    }
}

/// What the client tells the game, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// Connecting (attempt 1 is the first connection of a session).
    Connecting {
        /// Attempts since the last `Welcome`.
        attempt: u32,
    },
    /// A connection ended; the session may go on (see the next notice).
    Disconnected(End),
    /// Waiting before the next attempt.
    Reconnecting {
        /// The attempt that comes next.
        attempt: u32,
        /// How long until then.
        after: Duration,
    },
    /// Welcomed: a new session, or the same one taken back.
    Welcome {
        /// The server's id for the session.
        session_id: u64,
        /// The player's room.
        room: String,
        /// True when the session continued across a break: nothing was lost.
        resumed: bool,
    },
    /// An event of the session, each once, in order.
    Event {
        /// Its sequence number.
        seq: u64,
        /// The game's bytes.
        payload: Bytes,
    },
    /// The server applied every input up to `seq`.
    Acked {
        /// The highest input applied.
        seq: u64,
    },
    /// Now in this room.
    Joined {
        /// The room.
        room: String,
    },
    /// The room refused; the player stays where it was.
    JoinRefused {
        /// The room asked for.
        room: String,
        /// Why.
        text: String,
    },
    /// The session is over; [`Client::new_session`] starts another (or the client does, with
    /// [`ClientConfig::fresh_after_loss`]).
    Lost(Lost),
    /// The client closed (after [`Client::quit`] or [`Client::abort`]); nothing follows.
    Closed {
        /// The highest input the server acknowledged.
        acked_input: u64,
    },
}

#[derive(Debug, Default)]
struct Requests {
    quit: bool,
    abort: bool,
    new_session: bool,
}

struct Shared {
    core: Mutex<Core>,
    requests: Mutex<Requests>,
    notices: Mutex<VecDeque<Notice>>,
    /// Wakes the connection task: something to send, or a request.
    task: Notify,
    /// Wakes the game waiting in [`Client::next`].
    game: Notify,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    fn notify(&self, notice: Notice) {
        lock(&self.notices).push_back(notice);
        self.game.notify_one();
    }

    /// Moves what the core has to say into the notices.
    fn forward(&self, core: &mut Core) {
        let mut moved = false;
        let mut notices = lock(&self.notices);
        while let Some(output) = core.poll_output() {
            moved = true;
            notices.push_back(match output {
                Output::Welcome {
                    session_id,
                    room,
                    resumed,
                } => Notice::Welcome {
                    session_id,
                    room,
                    resumed,
                },
                Output::Event { seq, payload } => Notice::Event { seq, payload },
                Output::Acked { seq } => Notice::Acked { seq },
                Output::Joined { room } => Notice::Joined { room },
                Output::JoinRefused { room, text } => Notice::JoinRefused { room, text },
                Output::Lost(lost) => Notice::Lost(lost),
            });
        }
        drop(notices);
        if moved {
            self.game.notify_one();
        }
    }
}

/// A game's connection to the server: it reconnects and resumes by itself, and reports every
/// step as a [`Notice`]. Dropping it aborts the connection.
pub struct Client {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("session", &lock(&self.shared.core).session_id())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Starts connecting, on the current Tokio runtime.
    pub fn start(config: ClientConfig) -> Client {
        let shared = Arc::new(Shared {
            core: Mutex::new(Core::new(config.session.clone(), Instant::now())),
            requests: Mutex::new(Requests::default()),
            notices: Mutex::new(VecDeque::new()),
            task: Notify::new(),
            game: Notify::new(),
        });
        let task = tokio::spawn(run(config, shared.clone()));
        Client { shared, task }
    }

    /// Sends an input (now, or after the resume if the connection is down); returns its
    /// sequence number.
    pub fn input(&self, payload: impl Into<Bytes>) -> Result<u64, InputError> {
        let seq = lock(&self.shared.core).input(payload.into())?;
        self.shared.task.notify_one();
        Ok(seq)
    }

    /// Asks to move to `room`; false while not connected.
    pub fn join(&self, room: impl Into<String>) -> bool {
        self.join_with(room, Bytes::new()).is_ok()
    }

    /// Asks to move to `room` with join `options`; refused while not connected or when the
    /// options are too long.
    pub fn join_with(
        &self,
        room: impl Into<String>,
        options: impl Into<Bytes>,
    ) -> Result<(), JoinError> {
        lock(&self.shared.core).join_with(room, options)?;
        self.shared.task.notify_one();
        Ok(())
    }

    /// After [`Notice::Lost`]: starts a new session.
    pub fn new_session(&self) {
        lock(&self.shared.requests).new_session = true;
        self.shared.task.notify_one();
    }

    /// Closes the session the lingering way: `Bye`, then the server's `Ack` and `Bye`, then the
    /// end of the stream; [`Notice::Closed`] follows.
    pub fn quit(&self) {
        lock(&self.shared.requests).quit = true;
        self.shared.task.notify_one();
    }

    /// Drops the connection at once with a reset, as a crashing game would (for tests).
    pub fn abort(&self) {
        lock(&self.shared.requests).abort = true;
        self.shared.task.notify_one();
    }

    /// The next notice; `None` after [`Notice::Closed`].
    pub async fn next(&mut self) -> Option<Notice> {
        loop {
            let notified = self.shared.game.notified();
            if let Some(notice) = lock(&self.shared.notices).pop_front() {
                return Some(notice);
            }
            if self.task.is_finished() {
                return None;
            }
            tokio::select! {
                () = notified => {}
                // The task ends after its last notice: look once more.
                _ = &mut self.task => {}
            }
        }
    }

    /// The last round trip the client measured.
    pub fn rtt(&self) -> Option<Duration> {
        lock(&self.shared.core).rtt()
    }

    /// The session's id, while there is one.
    pub fn session_id(&self) -> Option<u64> {
        lock(&self.shared.core).session_id()
    }

    /// The highest input the server acknowledged.
    pub fn acked_input(&self) -> u64 {
        lock(&self.shared.core).acked_input()
    }

    /// The highest event delivered.
    pub fn last_event(&self) -> u64 {
        lock(&self.shared.core).last_event()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn backoff(config: &ClientConfig) -> impl Iterator<Item = Duration> {
    ExponentialBuilder::new()
        .with_min_delay(config.reconnect_min)
        .with_max_delay(config.reconnect_max)
        .with_jitter()
        .without_max_times()
        .build()
}

async fn run(config: ClientConfig, shared: Arc<Shared>) {
    let mut attempt = 0u32;
    let mut delays = backoff(&config);
    loop {
        attempt += 1;
        shared.notify(Notice::Connecting { attempt });
        let (end, welcomed) = match connect(&config).await {
            Ok(stream) => connection(stream, &config, &shared).await,
            Err(end) => (end, false),
        };
        if welcomed {
            attempt = 0;
            delays = backoff(&config);
        }
        let next = {
            let mut core = lock(&shared.core);
            let mut next = core.disconnected(end.clone());
            if next != Next::Closed {
                // Before the core's own word on it (a loss), so the game reads them in order.
                shared.notify(Notice::Disconnected(end.clone()));
            }
            if next == Next::Reconnect && config.max_attempts.is_some_and(|max| attempt >= max) {
                core.give_up(end);
                next = Next::Lost;
            }
            shared.forward(&mut core);
            next
        };
        match next {
            Next::Closed => break,
            Next::Reconnect => {
                let after = delays.next().unwrap_or(config.reconnect_max);
                shared.notify(Notice::Reconnecting {
                    attempt: attempt + 1,
                    after,
                });
                let until = Instant::now() + after;
                if wait(&shared, until, false).await == Wake::Quit {
                    lock(&shared.core).quit();
                    break;
                }
            }
            Next::Lost => {
                let go = config.fresh_after_loss
                    || wait(&shared, Instant::now(), true).await == Wake::NewSession;
                if !go {
                    break;
                }
                lock(&shared.core).restart();
                attempt = 0;
                delays = backoff(&config);
            }
        }
    }
    let acked_input = lock(&shared.core).acked_input();
    shared.notify(Notice::Closed { acked_input });
}

#[derive(Debug, PartialEq, Eq)]
enum Wake {
    Timeout,
    Quit,
    NewSession,
}

/// Waits until `until` (or, `for_new_session`, indefinitely) for a request of the game.
async fn wait(shared: &Shared, until: Instant, for_new_session: bool) -> Wake {
    loop {
        let notified = shared.task.notified();
        {
            let mut requests = lock(&shared.requests);
            if requests.quit || requests.abort {
                return Wake::Quit;
            }
            if std::mem::take(&mut requests.new_session) {
                return Wake::NewSession;
            }
        }
        if for_new_session {
            notified.await;
            continue;
        }
        tokio::select! {
            () = notified => {}
            () = tokio::time::sleep_until(until) => return Wake::Timeout,
        }
    }
}

/// Connects, and with TLS makes the handshake (within the handshake timeout).
async fn connect(config: &ClientConfig) -> Result<Link, End> {
    let stream = match tokio::time::timeout(
        config.connect_timeout,
        TcpStream::connect(&config.server),
    )
    .await
    {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => return Err(End::Transport(Transport::of_io(&error))),
        Err(_) => {
            return Err(End::Transport(Transport::TimedOut(format!(
                "no connection within {:?}",
                config.connect_timeout
            ))));
        }
    };
    let _ = stream.set_nodelay(true);
    let opening = crate::link::open(stream, config.tls.as_ref(), config.websocket.as_deref());
    match tokio::time::timeout(config.handshake_timeout, opening).await {
        Ok(Ok(link)) => Ok(link),
        Ok(Err(error)) => Err(End::of_opening(&error)),
        Err(_) => Err(End::Transport(Transport::TimedOut(format!(
            "no TLS handshake or WebSocket upgrade within {:?}",
            config.handshake_timeout
        )))),
    }
}

/// Runs one connection to its end. Returns how it ended, and whether it was welcomed.
async fn connection(mut stream: Link, config: &ClientConfig, shared: &Shared) -> (End, bool) {
    let mut welcomed = false;
    let handshake_deadline = Instant::now() + config.handshake_timeout;
    let mut linger_deadline: Option<Instant> = None;
    let mut codec = ClientCodec::default();
    let mut wbuf = BytesMut::new();
    lock(&shared.core).connected(Instant::now());
    let (read, mut write) = tokio::io::split(&mut stream);
    let mut reader = FramedRead::new(read, ClientCodec::default());
    let end = loop {
        // Requests and what the core wants sent.
        let (deadline, quitting) = {
            let mut requests = lock(&shared.requests);
            let abort = std::mem::take(&mut requests.abort);
            let quit = std::mem::take(&mut requests.quit);
            drop(requests);
            let mut core = lock(&shared.core);
            if abort {
                core.quit();
                break None;
            }
            if quit {
                core.quit();
            }
            while let Some(message) = core.poll_transmit() {
                if let Err(error) = codec.encode(&message, &mut wbuf) {
                    // Checked by the core; an oversized message is dropped, not sent.
                    tracing::warn!(%error, "message not sent");
                }
            }
            if core.session_id().is_some() && core.is_live() {
                welcomed = true;
            }
            shared.forward(&mut core);
            (core.next_deadline(), core.quitting())
        };
        if quitting && linger_deadline.is_none() {
            linger_deadline = Some(Instant::now() + config.linger);
        }
        if !wbuf.is_empty() {
            // The flush sends what TLS or WebSocket holds back (nothing to do over plain TCP).
            let written = match write.write_all_buf(&mut wbuf).await {
                Ok(()) => write.flush().await,
                Err(error) => Err(error),
            };
            if let Err(error) = written {
                break Some(End::Transport(Transport::of_io(&error)));
            }
            if quitting {
                // Said Bye: half-close, then read the server's Ack and Bye until its FIN.
                let _ = write.shutdown().await;
            }
        }
        let deadline = if welcomed {
            deadline
        } else {
            Some(handshake_deadline)
        };
        let deadline = match (deadline, linger_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let notified = shared.task.notified();
        tokio::select! {
            frame = reader.next() => match frame {
                Some(Ok(message)) => {
                    let mut core = lock(&shared.core);
                    let received = core.receive(message, Instant::now());
                    shared.forward(&mut core);
                    if let Err(end) = received {
                        break Some(end);
                    }
                }
                Some(Err(error)) => break Some(End::of_codec(error)),
                None if quitting => break Some(End::Quit),
                None => break Some(End::Transport(Transport::PeerEof)),
            },
            () = notified => {}
            () = sleep_until(deadline) => {
                let now = Instant::now();
                if linger_deadline.is_some_and(|d| now >= d) {
                    break Some(End::Quit);
                }
                if !welcomed && now >= handshake_deadline {
                    break Some(End::Transport(Transport::TimedOut(format!(
                        "no Welcome within {:?}",
                        config.handshake_timeout
                    ))));
                }
                let mut core = lock(&shared.core);
                let fired = core.on_timer(now);
                shared.forward(&mut core);
                if let Err(end) = fired {
                    break Some(end);
                }
            }
        }
    };
    drop(reader);
    drop(write);
    match end {
        Some(end) => {
            if matches!(end, End::ServerSilent(_)) {
                // The server is gone or unreachable: nothing to wait for.
                let _ = stream.set_abortive();
            }
            (end, welcomed)
        }
        None => {
            // Aborted by the game: reset, as a crash would.
            let _ = stream.set_abortive();
            (End::Quit, welcomed)
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
