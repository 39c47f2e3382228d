//! One task per connection: framed reading, the write buffer, the timer and the session loop,
//! over any [`Transport`]. The protocol itself is [`crate::session::core`]'s.
//!
//! The task runs one loop over the session's sources: a close request, the drain, the
//! session's single timer, the write buffer, the next inbound frame and the player's queue,
//! looked at in that order by one poll function, which remembers which of them already wait for
//! a wake-up (`Waiting`) so that a wake-up costs one look at each, not one per pass of the loop.
//! The futures that live as long as the session (the drain, the close request) are created once.
//! The first fatal event decides the [`CloseReason`]; the close that follows (lingering,
//! abortive or none) is the one [`crate::close::policy`] gives that reason.
//!
//! TCP-specific calls (peeking at unread bytes, the zero-linger reset) are behind
//! [`Transport`], so that the same loop serves another transport, and tests run it over
//! `tokio::io::duplex` on a paused clock.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{FutureExt, StreamExt};
use protocol::{Bye, CodecError, MAX_HELLO_BODY, ServerCodec, ServerMessage};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::codec::Encoder;

use crate::close::{CloseReason, Closing, Direction, Ending, Park, policy};
use crate::resume::Carried;
use crate::rooms::{self, Command, Inputs};
use crate::session::Sessions;
use crate::session::core::{Core, Request};
use crate::session::end::{Seen, SessionEnd};
use crate::session::handshake::{self, Live};
use crate::session::outbox::Outbox;
use crate::session::reader::{FrameReader, Framing, ReadError};
use crate::shutdown::Shutdown;
use crate::transport::inbound::Inbound;
use crate::transport::slots::Slot;
use crate::transport::stream::{Peek, Transport};
use crate::transport::websocket::WsDecoder;

/// Most buffered frames handled in one pass of the loop, so that timers and writes still get
/// their turn under a flood.
const FRAMES_PER_PASS: usize = 64;
/// How long a silence deadline waits for a frame that is already waiting to be read.
const SILENCE_GRACE: Duration = Duration::from_millis(5);
/// Longest a graceful close waits for the room to handle the player's last inputs.
const SETTLE_WAIT: Duration = Duration::from_secs(1);
/// Stop taking events from the queue while this much is waiting to be written: the queue then
/// fills, and a client that cannot keep up is closed as `slow_consumer` instead of growing the
/// buffer without bound.
pub(crate) const WRITE_HIGH_WATER: usize = 64 * 1024;

/// Runs one connection to its end and reports the end to the reaper.
///
/// No tracing span wraps the task: one per session would be kept by the subscriber for the
/// session's whole life and entered on every poll. The few lines a session logs name it
/// themselves, and the close line carries everything.
#[cfg(any(test, feature = "testkit"))]
pub(crate) async fn serve<T: Transport>(sessions: Arc<Sessions>, transport: T, peer: SocketAddr) {
    let start = Start::new(transport, peer, Opening::now(Slot::Free));
    let id = sessions.next_id();
    let end = run(&sessions, id, start).await;
    sessions.report(end).await;
}

/// How a connection came to its session: when it was accepted, and whether what happened
/// before the session (a PROXY header) already decided its end.
#[derive(Debug)]
pub(crate) struct Opening {
    /// When the connection was accepted: the handshake deadline counts from here.
    pub accepted: Instant,
    /// The end decided before the session started (the session only says `Bye` and closes).
    /// Boxed: rare, and every session task would otherwise hold its room.
    pub failed: Option<Box<Ending>>,
    /// The connection's session slot: pending until its `Hello` is accepted.
    pub slot: Slot,
}

impl Opening {
    /// A connection accepted now, nothing decided.
    pub fn now(slot: Slot) -> Opening {
        Opening {
            accepted: Instant::now(),
            failed: None,
            slot,
        }
    }
}

/// What a session starts from, handed to its task in one box. An async function keeps its
/// arguments in its state for its whole life, beside the locals moved out of them, in every
/// layer of the task that passes them on; boxed, each layer keeps a pointer, and the box is
/// freed as the session unpacks it. What every held player costs is mostly its task's size.
pub(crate) struct Start<T> {
    transport: T,
    peer: SocketAddr,
    opening: Opening,
    /// Upgraded to WebSocket: what the client sent after its upgrade request.
    websocket: Option<BytesMut>,
}

impl<T: Transport> Start<T> {
    /// Moves the start out of its box, and frees the box now (moved out with `*`, it would be
    /// freed only when the session ends).
    #[allow(clippy::boxed_local)] // taking the box is the point: it is freed on return
    fn unpack(self: Box<Self>) -> Start<T> {
        *self
    }

    /// A connection that speaks the protocol from its first byte.
    pub(crate) fn new(transport: T, peer: SocketAddr, opening: Opening) -> Box<Start<T>> {
        Box::new(Start {
            transport,
            peer,
            opening,
            websocket: None,
        })
    }

    /// A connection through its layers: `websocket`, when it was upgraded to WebSocket, is
    /// what the client sent after its upgrade request.
    pub(crate) fn layered(
        transport: T,
        peer: SocketAddr,
        opening: Opening,
        websocket: Option<BytesMut>,
    ) -> Box<Start<T>> {
        Box::new(Start {
            transport,
            peer,
            opening,
            websocket,
        })
    }
}

/// [`serve`] for a connection that got somewhere before its session (see [`Opening`]). `held`
/// (what admitted the connection) is let go once its socket is closed.
#[allow(clippy::manual_async_fn)] // see `Start`: an `async fn` keeps its arguments twice
pub(crate) fn serve_opened<T: Transport, H: Send>(
    sessions: Arc<Sessions>,
    start: Box<Start<T>>,
    held: H,
) -> impl Future<Output = ()> + Send {
    async move {
        let id = sessions.next_id();
        let end = run(&sessions, id, start).await;
        drop(held);
        sessions.report(end).await;
    }
}

/// The session as the driver holds it: the sans-IO core, and, once the handshake is done, the
/// player and its room.
struct Driven {
    core: Core,
    live: Option<Live>,
    /// The connection's id, until a resume makes it the parked session's.
    id: u64,
    peer: SocketAddr,
    slot: Slot,
    /// The last round trips measured.
    rtts: [u16; crate::session::end::RTT_SAMPLES],
    /// When bytes last went to the socket.
    last_write: Option<Instant>,
}

impl Driven {
    fn session_id(&self) -> u64 {
        self.live
            .as_ref()
            .map_or(self.id, |live| live.player.session_id())
    }
}

/// Runs the session of `start` to its end.
#[allow(clippy::manual_async_fn)] // see `Start`: an `async fn` keeps its arguments twice
fn run<T: Transport>(
    sessions: &Sessions,
    id: u64,
    start: Box<Start<T>>,
) -> impl Future<Output = SessionEnd> + Send {
    async move {
        let Start {
            mut transport,
            peer,
            opening:
                Opening {
                    accepted,
                    failed,
                    slot,
                },
            websocket,
        } = start.unpack();
        // Matched, not borrowed (`is_some`): a local ever borrowed keeps its room in the task's
        // state after it is moved out.
        #[allow(clippy::redundant_pattern_matching)]
        let upgraded = matches!(websocket, Some(_));
        let name = match upgraded {
            true => T::WEBSOCKET_NAME,
            false => T::NAME,
        };
        let mut session = Driven {
            core: Core::new(
                &sessions.config,
                sessions.max_frame,
                upgraded,
                sessions.parking.enabled(),
                accepted,
                sessions.stalls.recorded(),
            ),
            live: None,
            id,
            peer,
            slot,
            rtts: [0; crate::session::end::RTT_SAMPLES],
            last_write: None,
        };
        let (ending, rest) = match failed {
            Some(ending) => (*ending, Unread::default()),
            None => {
                // The socket under every layer, for the kernel's view while the halves are lent (-1:
                // none; a plain descriptor rather than an option keeps the task's size).
                let tcp = transport.tcp().map_or(-1, std::os::fd::AsRawFd::as_raw_fd);
                let (read, mut write) = transport.split();
                let (framing, buffered) = first_framing(sessions, websocket);
                let mut reader = FrameReader::new(read, framing, buffered);
                let ending =
                    session_loop::<T, _, _>(sessions, &mut session, &mut reader, &mut write, tcp)
                        .await;
                let peer_closed = match reader.framing() {
                    Framing::WebSocket(decoder) => decoder.closed(),
                    Framing::Length(_) => false,
                };
                let rest = Unread {
                    bytes: reader.take_buffer(),
                    peer_closed,
                };
                (ending, rest)
            }
        };
        // The kernel's view now, before the close changes it (a Bye written, a reset sent).
        let seen = Seen {
            kernel: transport.tcp().and_then(crate::transport::kernel::read),
            rtts: session.rtts,
            since_last_write: session
                .last_write
                .map(|at| ending.decided.saturating_duration_since(at)),
        };
        let parked = park(sessions, &mut session, &ending);
        // Boxed: the close (settle, flush, linger) runs once, at the end, and its state would
        // otherwise be held inline by every idle session.
        let forced = Box::pin(close(
            sessions,
            &mut transport,
            &mut session,
            &ending,
            rest,
            parked,
        ))
        .await;
        flush_traffic(sessions, &mut session, Instant::now());
        SessionEnd {
            transport: name,
            session_id: session.session_id(),
            player: session.live.map(|live| live.player),
            claimed: ending.claimed,
            peer: session.peer,
            reason: ending.reason,
            detail: ending.detail,
            lifetime: ending.decided.saturating_duration_since(accepted),
            detect: ending
                .decided
                .saturating_duration_since(session.core.last_inbound()),
            traffic: session.core.traffic(),
            forced,
            parked,
            seen,
        }
    }
}

/// How the connection's first frames are read, and the bytes already read: until the
/// handshake, no frame larger than the largest `Hello` is read, so that a length prefix (or a
/// WebSocket frame header) from an unknown peer cannot make the server reserve a full frame.
/// Takes `websocket` by value, so that the session's task keeps no room for it.
fn first_framing(sessions: &Sessions, websocket: Option<BytesMut>) -> (Framing, BytesMut) {
    let hello_max = MAX_HELLO_BODY.min(sessions.max_frame);
    match websocket {
        Some(buffered) => (
            Framing::WebSocket(WsDecoder::new(hello_max, true)),
            buffered,
        ),
        None => {
            let mut codec = ServerCodec::new(sessions.max_frame);
            codec.set_max_frame(hello_max);
            (Framing::Length(codec), BytesMut::new())
        }
    }
}

/// Whether a live session whose idle deadline has passed gets `session.loss_grace`: see
/// [`lossy_but_reachable`], read from the kernel now.
fn loss_grace_due(
    sessions: &Sessions,
    session: &Driven,
    tcp: std::os::fd::RawFd,
    now: Instant,
) -> bool {
    if sessions.config.loss_grace.is_zero() || tcp < 0 {
        return false;
    }
    let Some(view) = crate::transport::kernel::read_fd(tcp) else {
        return false;
    };
    let (heartbeat, _) = session.core.liveness();
    let silent_for = now.saturating_duration_since(session.core.last_inbound());
    let due = lossy_but_reachable(&view, silent_for, heartbeat);
    if due {
        tracing::info!(
            session = session.session_id(),
            peer = %session.peer,
            silent_ms = silent_for.as_millis() as u64,
            last_ack_recv_ms = view.last_ack_recv_ms,
            total_retrans = view.total_retrans,
            rcv_ooopack = view.rcv_ooopack,
            grace_ms = sessions.config.loss_grace.as_millis() as u64,
            "silent, but its kernel still acknowledges over a lossy path: idle deadline extended"
        );
    }
    due
}

/// A client silent for `silent_for` is probably alive with its TCP backing off after losses,
/// not gone, when both hold:
/// - its kernel acknowledged something well inside the silence (more than one heartbeat, or a
///   quarter of the silence, after it began: the pings sent meanwhile were answered), so the
///   path works; a pulled cable or a vanished host acknowledges nothing after the silence
///   begins, and
/// - the connection has lost packets: the server retransmitted, or the client's data arrived
///   out of order behind a lost segment. A frozen program on a clean path shows neither, and is
///   cut on time.
fn lossy_but_reachable(
    view: &crate::transport::kernel::TcpView,
    silent_for: Duration,
    heartbeat: Duration,
) -> bool {
    let acked_within = silent_for.saturating_sub(heartbeat.max(silent_for / 4));
    let reachable = Duration::from_millis(u64::from(view.last_ack_recv_ms)) < acked_within;
    let lossy = view.total_retrans > 0 || view.rcv_ooopack > 0;
    view.state == "established" && reachable && lossy
}

/// After an abnormal end, parks the session for resume instead of letting the player leave.
/// Returns true when it parked.
fn park(sessions: &Sessions, session: &mut Driven, ending: &Ending) -> bool {
    let (Some(token), Some(live)) = (session.core.token(), &session.live) else {
        return false;
    };
    let parking = &sessions.parking;
    let parkable = match policy(ending.reason).park {
        Park::Yes => true,
        Park::IfSlowConsumersResume => sessions.config.resume_after_slow_consumer,
        // A resuming connection claimed this session while it still looked alive.
        Park::No => parking.is_claimed(&token),
    };
    if !parkable {
        parking.retire(token);
        return false;
    }
    sessions.registry.remove(live.player.session_id());
    let (replay, last_input_seq) = session.core.take_for_parking();
    let carried = Carried {
        player: live.player.clone(),
        room: live.room.clone(),
        replay,
        last_input_seq,
    };
    parking.park(
        token,
        carried,
        ending.reason,
        sessions.admission.source_key(session.peer.ip()),
    );
    true
}

/// Adds the traffic since the last flush to the shared counters and to the player.
fn flush_traffic(sessions: &Sessions, session: &mut Driven, now: Instant) {
    let delta = session.core.flush_traffic(now);
    if let Some(live) = &session.live {
        live.player.add_traffic(delta.bytes_in, delta.bytes_out);
    }
    sessions.metrics.traffic.add(&delta);
}

/// What the session had read and not handled when it ended, for the close to read past.
#[derive(Debug, Default)]
struct Unread {
    bytes: BytesMut,
    /// The client's WebSocket close frame was read: the conversation is over on its side.
    peer_closed: bool,
}

type CloseRequest = Pin<Box<dyn Future<Output = CloseReason> + Send>>;

/// What one pass of [`poll_write_or_flush`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Written {
    /// Wrote this many bytes; over a transport that holds bytes back, `flushed` says whether
    /// they are out too.
    Bytes { n: usize, flushed: bool },
    /// Flushed what the transport held back.
    Flushed,
}

/// Writes what `buf` holds, or with `buf` empty flushes what the transport held back. A write
/// that empties `buf` over a `buffered` transport flushes at once: the transport nearly always
/// sends everything then, and a session that had to wait for the next pass to know would run
/// its stall clock for nothing (moving its timer earlier wakes the runtime's timer, a wake-up
/// of another thread for each message). Polled in place, not an `async fn`: its state would add
/// to what every idle session holds. Cancel-safe, as one write and the transports' flushes are.
fn poll_write_or_flush<W: AsyncWrite + Unpin>(
    writer: &mut W,
    buf: &mut BytesMut,
    buffered: bool,
    cx: &mut std::task::Context<'_>,
) -> std::task::Poll<std::io::Result<Written>> {
    use std::task::Poll;
    if buf.is_empty() {
        return Pin::new(writer)
            .poll_flush(cx)
            .map_ok(|()| Written::Flushed);
    }
    let n = std::task::ready!(tokio_util::io::poll_write_buf(
        Pin::new(&mut *writer),
        cx,
        buf
    ))?;
    let flushed = match buffered && n > 0 && buf.is_empty() {
        true => match Pin::new(writer).poll_flush(cx) {
            Poll::Ready(Ok(())) => true,
            Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
            Poll::Pending => false,
        },
        false => false,
    };
    Poll::Ready(Ok(Written::Bytes { n, flushed }))
}

/// What the session loop found ready, in the order it looks: a close request, the drain, the
/// timer, the write buffer, the next inbound frame, the player's queue.
enum Wake {
    Close(CloseReason),
    Drain,
    Timer,
    Written(std::io::Result<Written>),
    Frame(Option<Result<Inbound, ReadError>>),
    Event(Bytes),
}

/// Which of the session's sources already wait for a wake-up, so that the loop does not look at
/// them again for nothing.
///
/// Within a wake-up (`pass`): a source found with nothing ready holds the task's waker, so that
/// looking at it again before the task yields would find nothing again. A wake-up is handled in
/// passes of the loop, each looking only at the sources not known to wait; one that becomes
/// ready meanwhile wakes the task, which looks at every source after it yields.
///
/// Across wake-ups (`armed`): the close request, the drain and the timer keep the task's waker
/// until they fire, and each shows that it fired in a flag that one load reads (the request's
/// reason or the slot's eviction, the drain's flag beside its token, the timer's state). A timer
/// out of the task's budget answers without taking the waker, and is not armed then. Once
/// armed, one is looked at again only when its flag is up, when it was replaced or reset, or
/// when the task's waker is another.
#[derive(Debug, Default, Clone, Copy)]
struct Waiting {
    pass: u8,
    armed: u8,
    /// The waker the armed sources hold (its data pointer): the task's own, which does not
    /// change, but a future polled elsewhere would arm them again.
    waker: usize,
}

impl Waiting {
    const CLOSE: u8 = 1;
    const DRAIN: u8 = 1 << 1;
    const TIMER: u8 = 1 << 2;
    const WRITE: u8 = 1 << 3;
    const READ: u8 = 1 << 4;
    const QUEUE: u8 = 1 << 5;
    /// The sources that stay armed across wake-ups.
    const ARMED: u8 = Waiting::CLOSE | Waiting::DRAIN | Waiting::TIMER;

    /// A pass begins with `waker`: armed sources hold another one, they are looked at again.
    fn begin(&mut self, waker: &std::task::Waker) {
        let waker = waker.data() as usize;
        if waker != self.waker {
            self.armed = 0;
            self.waker = waker;
        }
    }

    /// True when `source` is to be looked at: not known to wait, or armed and `fired`.
    fn looks(self, source: u8, fired: bool) -> bool {
        self.pass & source == 0 && (self.armed & source == 0 || fired)
    }

    /// `source` has nothing and holds the task's waker.
    fn found_nothing(&mut self, source: u8) {
        self.pass |= source;
        self.armed |= source & Waiting::ARMED;
    }

    /// `source` has nothing but may not hold the task's waker (it answered without taking it,
    /// having woken the task itself): not again in this wake-up, and again after it.
    fn found_nothing_for_now(&mut self, source: u8) {
        self.pass |= source;
        self.armed &= !source;
    }

    /// `source` was replaced, reset or spent: look at it on the next pass.
    fn look_again(&mut self, source: u8) {
        self.pass &= !source;
        self.armed &= !source;
    }

    /// The task yields (or awaited something else): every source may have been woken.
    fn yielded(&mut self) {
        self.pass = 0;
    }
}

/// True when the source of close requests shows a request: the player's, or before the
/// handshake the slot's eviction.
fn close_flagged(session: &Driven) -> bool {
    match &session.live {
        Some(live) => live.player.control().requested().is_some(),
        None => session.slot.is_evicted(),
    }
}

/// `T` is the transport underneath `reader` and `writer` (whether it buffers, [`Transport::BUFFERED`]).
#[allow(clippy::manual_async_fn)] // see `Start`: an `async fn` keeps its arguments twice
fn session_loop<T: Transport, R: AsyncRead + Unpin + Peek, W: AsyncWrite + Unpin>(
    sessions: &Sessions,
    session: &mut Driven,
    reader: &mut FrameReader<R>,
    writer: &mut W,
    tcp: std::os::fd::RawFd,
) -> impl Future<Output = Ending> {
    async move {
        let draining = sessions.shutdown.closing();
        tokio::pin!(draining);
        // Created once per player. Before the handshake only the slot can end the session: it goes
        // to a newcomer when every slot is taken (see crate::transport::slots).
        let mut close_requested: CloseRequest = {
            let evicted = session.slot.evicted();
            Box::pin(async move {
                evicted.await;
                CloseReason::HandshakeTimeout
            })
        };
        let mut watching: Option<u64> = None;
        let sleep = tokio::time::sleep_until(session.core.next_deadline());
        tokio::pin!(sleep);
        // The reader already got its one chance before the current silence deadline.
        let mut silence_grace_used = false;
        // The current silence already got the loss grace.
        let mut loss_grace_used = false;
        // The sources found waiting since the task last yielded (see `Waiting`).
        let mut waiting = Waiting::default();
        loop {
            let take_events =
                session.live.is_some() && session.core.outbox().wbuf.len() < WRITE_HIGH_WATER;
            let unflushed = session.core.unflushed();
            let wake = std::future::poll_fn(|cx| {
                use std::task::Poll;
                waiting.begin(cx.waker());
                if waiting.looks(Waiting::CLOSE, close_flagged(session)) {
                    match close_requested.as_mut().poll(cx) {
                        Poll::Ready(reason) => return Poll::Ready(Wake::Close(reason)),
                        Poll::Pending => waiting.found_nothing(Waiting::CLOSE),
                    }
                }
                if waiting.looks(Waiting::DRAIN, sessions.shutdown.sessions_closing()) {
                    match draining.as_mut().poll(cx) {
                        Poll::Ready(()) => return Poll::Ready(Wake::Drain),
                        Poll::Pending => waiting.found_nothing(Waiting::DRAIN),
                    }
                }
                if waiting.looks(Waiting::TIMER, sleep.is_elapsed()) {
                    // Out of the task's budget, a timer answers `Pending` without taking the
                    // waker: it must not stay armed then.
                    let registers = tokio::task::coop::has_budget_remaining();
                    match sleep.as_mut().poll(cx) {
                        Poll::Ready(()) => {
                            waiting.look_again(Waiting::TIMER);
                            return Poll::Ready(Wake::Timer);
                        }
                        Poll::Pending if registers => waiting.found_nothing(Waiting::TIMER),
                        Poll::Pending => waiting.found_nothing_for_now(Waiting::TIMER),
                    }
                }
                let wbuf = &mut session.core.outbox().wbuf;
                if (!wbuf.is_empty() || unflushed) && waiting.looks(Waiting::WRITE, false) {
                    match poll_write_or_flush(writer, wbuf, T::BUFFERED, cx) {
                        Poll::Ready(written) => return Poll::Ready(Wake::Written(written)),
                        Poll::Pending => waiting.found_nothing(Waiting::WRITE),
                    }
                }
                if waiting.looks(Waiting::READ, false) {
                    match reader.poll_next_unpin(cx) {
                        Poll::Ready(frame) => return Poll::Ready(Wake::Frame(frame)),
                        Poll::Pending => waiting.found_nothing(Waiting::READ),
                    }
                }
                if take_events
                    && waiting.looks(Waiting::QUEUE, false)
                    && let Some(live) = &session.live
                {
                    match live.player.queue().poll_pop(cx) {
                        Poll::Ready(Some(payload)) => return Poll::Ready(Wake::Event(payload)),
                        // Closed: the player is being closed, and its close request wakes the task.
                        Poll::Ready(None) | Poll::Pending => waiting.found_nothing(Waiting::QUEUE),
                    }
                }
                waiting.yielded();
                Poll::Pending
            })
            .await;
            match wake {
                Wake::Close(reason) => {
                    let ending = match reason {
                        CloseReason::GameEnded => {
                            let text = session
                                .live
                                .as_ref()
                                .and_then(|l| l.player.control().text());
                            Ending::because(reason, text.unwrap_or_default())
                        }
                        CloseReason::HandshakeTimeout => Ending::because(
                            reason,
                            "no Hello yet, and the server needed the slot for a newer connection \
                             (server.max_sessions)",
                        ),
                        _ => Ending::new(reason),
                    };
                    return ending;
                }
                Wake::Drain => {
                    return Ending::new(CloseReason::ServerShutdown);
                }
                Wake::Timer => {
                    let now = Instant::now();
                    session.core.forgive_stalls(&sessions.stalls);
                    if session.core.silence_due(now) && !silence_grace_used && input_waiting(reader)
                    {
                        // A frame arrived in time but a busy runtime has not read it yet: read it
                        // before judging the peer silent. Once per deadline, so that a peer
                        // dribbling bytes cannot stretch it.
                        silence_grace_used = true;
                        sleep.as_mut().reset(now + SILENCE_GRACE);
                        continue;
                    }
                    if session.core.silence_due(now)
                        && !loss_grace_used
                        && session.live.is_some()
                        && loss_grace_due(sessions, session, tcp, now)
                    {
                        loss_grace_used = true;
                        session.core.extend_idle(sessions.config.loss_grace);
                        sessions.metrics.loss_grace.inc();
                        sleep.as_mut().reset(session.core.next_deadline());
                        continue;
                    }
                    flush_traffic(sessions, session, now);
                    if let Err(ending) =
                        session.core.on_timer(now, sessions.budget.under_pressure())
                    {
                        return ending;
                    }
                    sleep.as_mut().reset(session.core.next_deadline());
                }
                Wake::Written(written) => {
                    if matches!(written, Ok(Written::Bytes { n, .. }) if n > 0) {
                        session.last_write = Some(Instant::now());
                    }
                    match written {
                        Ok(Written::Bytes { n: 0, .. }) => {
                            return Ending::because(
                                CloseReason::IoError,
                                "write returned zero bytes",
                            );
                        }
                        Ok(Written::Bytes { flushed: false, .. })
                            if session.core.outbox().wbuf.is_empty() && T::BUFFERED =>
                        {
                            // Not drained until the transport sent it: the stall clock runs
                            // meanwhile.
                            session.core.written_unflushed(Instant::now());
                        }
                        Ok(Written::Bytes { .. }) if session.core.outbox().wbuf.is_empty() => {
                            session.core.write_drained()
                        }
                        Ok(Written::Bytes { .. }) => session.core.write_blocked(Instant::now()),
                        Ok(Written::Flushed) => session.core.write_drained(),
                        Err(error) => return Ending::io(&error, Direction::Write),
                    }
                }
                Wake::Frame(frame) => {
                    // Handle every frame already buffered before the next write, so that a
                    // pipelining client's answers go out in few large writes, not one per frame. A
                    // request (a Hello, a Join) ends the batch; the rest is read on the next pass.
                    // The batch's inputs reach the room, in one command, before a request or an
                    // end that came after them is acted on. (Blocks, and whole values moved:
                    // nothing of the batch is held by the task across an await.)
                    let request = {
                        let (handled, unsent) = {
                            let mut inputs = Inputs::default();
                            let handled =
                                handle_frames(sessions, session, reader, frame, &mut inputs);
                            (handled, deliver_now(session, inputs))
                        };
                        // Boxed: rare, and what the batch came to waits inside.
                        let handled = match unsent {
                            None => handled,
                            unsent => Box::pin(send_waiting(session, unsent, handled)).await,
                        };
                        match handled {
                            Ok(request) => request,
                            Err(ending) => return ending,
                        }
                    };
                    silence_grace_used = false;
                    loss_grace_used = false;
                    if let Some(request) = request {
                        // Boxed: rare, and large. (A frame is handled by a plain function, so no
                        // message is kept across this await either.)
                        if let Err(ending) = Box::pin(answer(sessions, session, request)).await {
                            return ending;
                        }
                        // The task may have slept in there, and a wake-up meant for a source
                        // was spent on the answer: look at every source again.
                        waiting.yielded();
                        if let Some(live) = &session.live
                            && watching != Some(live.player.session_id())
                        {
                            // The handshake is done (or a resume adopted another player): watch
                            // this player's close requests, and read full frames from now on. The
                            // slot is the session's now.
                            watching = Some(live.player.session_id());
                            close_requested = Box::pin(live.player.close_requested());
                            waiting.look_again(Waiting::CLOSE);
                            session.slot.complete();
                            reader.framing_mut().set_max_frame(sessions.max_frame);
                        }
                    }
                    take_queued_events(sessions, session);
                }
                Wake::Event(payload) => {
                    push_event(sessions, session, payload);
                    take_queued_events(sessions, session);
                }
            }
            if session.core.take_rearm() {
                // Later (a frame arrived) or earlier (a write started to stall). Moving a timer
                // later costs the runtime almost nothing, and spares a wake-up for nothing due.
                let deadline = session.core.next_deadline();
                if deadline != sleep.deadline() {
                    sleep.as_mut().reset(deadline);
                    waiting.look_again(Waiting::TIMER);
                }
            }
            if session.core.take_quiet()
                && let Some(live) = &session.live
            {
                live.player.queue().shrink();
            }
            if let Some(rtt) = session.core.take_rtt() {
                sessions.metrics.heartbeat_rtt.observe(rtt.as_secs_f64());
                crate::session::end::remember_rtt(&mut session.rtts, rtt);
            }
            publish_footprint(sessions, session, reader.read_buffer().capacity());
        }
    }
}

/// Does what a request of the core needs and hands the core the answer.
async fn answer(sessions: &Sessions, session: &mut Driven, request: Request) -> Result<(), Ending> {
    match request {
        Request::Hello(hello) => {
            let (live, welcomed) =
                handshake::admit(sessions, hello, session.peer, session.id).await?;
            session.live = Some(live);
            session.core.welcome(welcomed, Instant::now());
        }
        Request::Join { room, options } => {
            if let Some(live) = &mut session.live {
                let refusal = handshake::join(sessions, live, &room, options).await;
                session.core.joined(room, refusal.as_deref());
            }
        }
        Request::Input { seq, payload } => {
            // (The frames of a pass hand their inputs on together, in `handle_frames`; one
            // given here goes the same way, alone.)
            let mut inputs = Inputs::default();
            inputs.push(seq, payload);
            send_waiting(session, deliver_now(session, inputs), ()).await;
        }
    }
    Ok(())
}

/// Feeds everything the game already queued for the player (up to the high-water mark), so that
/// it is written at once. A few at a time, so that the queue's lock is taken once per batch.
fn take_queued_events(sessions: &Sessions, session: &mut Driven) {
    let Some(player) = session.live.as_ref().map(|live| live.player.clone()) else {
        return;
    };
    let mut batch: [Option<Bytes>; 16] = Default::default();
    while session.core.outbox().wbuf.len() < WRITE_HIGH_WATER {
        let taken = player.queue().pop_many(&mut batch);
        for payload in batch[..taken].iter_mut().filter_map(Option::take) {
            push_event(sessions, session, payload);
        }
        if taken < batch.len() {
            break;
        }
    }
}

/// One event from the player's queue into the core.
fn push_event(sessions: &Sessions, session: &mut Driven, payload: Bytes) {
    if let Some(live) = &session.live {
        live.player.dequeued(payload.len() as u64);
    }
    let bytes = payload.len();
    if !session
        .core
        .push_event(payload, sessions.budget.under_pressure())
    {
        sessions.metrics.events_oversized.inc();
        if sessions
            .throttle
            .admit("event_oversized", crate::logging::ABUSIVE)
        {
            tracing::error!(
                bytes,
                "the game sent an event too large for a frame; dropped before it was numbered"
            );
        }
    }
}

/// Publishes what the session holds for the memory budget, when it changed.
fn publish_footprint(sessions: &Sessions, session: &mut Driven, read_buffer: usize) {
    let Some(live) = &session.live else {
        return;
    };
    if let Some(held) = session.core.held(read_buffer) {
        if let Some(grew) = held.grew {
            sessions.budget.grew(grew);
        }
        live.player.hold(held.replay, held.buffers);
    }
}

/// Handles `first` and every further frame already buffered (up to [`FRAMES_PER_PASS`]), so that
/// a pipelining client's answers go out in few large writes, not one per frame. The inputs are
/// gathered in `inputs`, for the room in one command. Any other request ends the batch and is
/// returned; the rest is read on the next pass.
fn handle_frames<R: AsyncRead + Unpin + Peek>(
    sessions: &Sessions,
    session: &mut Driven,
    reader: &mut FrameReader<R>,
    first: Option<Result<Inbound, ReadError>>,
    inputs: &mut Inputs,
) -> Result<Option<Request>, Ending> {
    let mut frame = first;
    let mut handled = 0;
    // One clock reading per batch: the frames of a batch arrived together.
    let now = Instant::now();
    if session.core.flush_due(now) {
        // A client that keeps the session busy may never let the timer fire.
        flush_traffic(sessions, session, now);
    }
    loop {
        let item = match frame {
            Some(Ok(item)) => item,
            Some(Err(ReadError::Codec(CodecError::FrameTooLarge { len, .. })))
                if !session.core.is_live() =>
            {
                return Err(Ending::because(
                    CloseReason::ProtocolError,
                    format!(
                        "a frame of {len} bytes before Hello (a Hello is at most {MAX_HELLO_BODY})"
                    ),
                ));
            }
            Some(Err(error)) => return Err(refused(error, session.core.outbox())),
            None => return Err(Ending::new(CloseReason::PeerEof)),
        };
        reader
            .check_assembly(now)
            .map_err(|error| refused(error, session.core.outbox()))?;
        match session.core.on_read(item, now, &sessions.stalls)? {
            Some(Request::Input { seq, payload }) => inputs.push(seq, payload),
            Some(request) => return Ok(Some(request)),
            None => {}
        }
        handled += 1;
        if handled >= FRAMES_PER_PASS || reader.read_buffer().is_empty() {
            return Ok(None);
        }
        match reader.next().now_or_never() {
            Some(next) => frame = next,
            None => return Ok(None),
        }
    }
}

/// Hands a batch's inputs to the player's room at once when the room's queue has space, so that
/// the session goes on without an await; gives back the command for a busy room. (Inputs before
/// the player is in a room are dropped.)
fn deliver_now(session: &Driven, inputs: Inputs) -> Option<Command> {
    let live = session.live.as_ref()?;
    let room = live.room.as_ref()?;
    room.try_send(inputs.into_command(live.player.session_id())?)
        .err()
}

/// Sends inputs the room's queue had no space for, waiting while it is full (its players wait
/// for it: backpressure); then gives back `then`.
async fn send_waiting<T>(session: &Driven, command: Option<Command>, then: T) -> T {
    if let Some(command) = command
        && let Some(room) = session.live.as_ref().and_then(|live| live.room.as_ref())
    {
        room.send(command).await;
    }
    then
}

/// The end for a read that failed; a WebSocket refusal also sets the close frame's code.
fn refused(error: impl Into<ReadError>, out: &mut Outbox) -> Ending {
    match error.into() {
        ReadError::Codec(error) => Ending::codec(error),
        ReadError::WebSocket(error) => {
            out.set_close_code(error.close_code());
            Ending::because(CloseReason::ProtocolError, error.to_string())
        }
    }
}

/// True when a whole frame is buffered, or bytes wait in the transport: input the session has
/// not processed yet through no fault of the peer.
fn input_waiting<R: AsyncRead + Unpin + Peek>(reader: &FrameReader<R>) -> bool {
    reader.frame_buffered() || reader.get_ref().bytes_waiting()
}

/// Closes the connection the way the reason calls for. Returns true when a graceful close was
/// cut short by a forced shutdown. `unread`: what the session read and did not handle; `parked`:
/// the session was parked (its queued events went with it).
async fn close<T: Transport>(
    sessions: &Sessions,
    transport: &mut T,
    session: &mut Driven,
    ending: &Ending,
    unread: Unread,
    parked: bool,
) -> bool {
    let cfg = &sessions.config;
    let closing = policy(ending.reason).closing;
    let abortive = match closing {
        Closing::Drop => {
            // The peer closed or the connection is dead: nothing can be said. A FIN follows on
            // drop; the receive buffer is empty (we read to EOF or the socket failed), so the
            // kernel has no reason to reset. A kernel that gave up on the peer is reset.
            if ending.reason == CloseReason::TcpTimeout {
                transport.abort();
            } else if unread.peer_closed {
                // The client's WebSocket close frame is answered, as far as the socket takes it
                // now: the client sees a clean close.
                let out = session.core.outbox();
                out.close_frame();
                let (_, mut write) = transport.split();
                let _ = write.write(&out.wbuf).now_or_never();
                let _ = write.flush().now_or_never();
            }
            return false;
        }
        Closing::Abortive => true,
        Closing::LingeringUnlessConfigured => cfg.abort_on_protocol_error,
        Closing::Lingering | Closing::LingeringWithoutQueue => false,
    };
    let Some(code) = ending.bye else {
        transport.abort();
        return false;
    };
    let text = ending.detail.clone().unwrap_or_default();
    if abortive {
        // Best effort: one non-blocking write of the Bye, then RST. A dead peer never reads,
        // so the socket is freed at once instead of retransmitting in FIN-WAIT-1.
        session.core.last_word(code, text);
        {
            let (_, mut write) = transport.split();
            let _ = write.write(&session.core.outbox().wbuf).now_or_never();
        }
        transport.abort();
        return false;
    }
    // Lingering close. Flush what the game queued (unless the client is the one not reading),
    // acknowledge inputs, say Bye, then FIN and read until the client's FIN (over WebSocket,
    // until its close frame).
    let with_queue = closing != Closing::LingeringWithoutQueue;
    if with_queue && let Some(room) = session.live.as_ref().and_then(|live| live.room.clone()) {
        // The room may still be working through this player's last inputs.
        rooms::settle(&room, cfg.linger_timeout.min(SETTLE_WAIT)).await;
    }
    if with_queue
        && !parked
        && let Some(player) = session.live.as_ref().map(|live| live.player.clone())
    {
        player.queue().close();
        while let Some(payload) = player.queue().try_pop() {
            push_event(sessions, session, payload);
        }
    }
    session.core.farewell(code, text);
    // During a drain the global drain timeout bounds the flush; otherwise linger_timeout.
    let deadline =
        (ending.reason != CloseReason::ServerShutdown).then(|| Instant::now() + cfg.linger_timeout);
    let out = session.core.outbox();
    let until = match (out.is_websocket(), unread.peer_closed) {
        (false, _) => LingerUntil::Eof,
        // The client already closed its side of the conversation.
        (true, true) => LingerUntil::Written,
        (true, false) => {
            let mut scan = crate::transport::websocket::CloseScan::default();
            match scan.feed(&unread.bytes) {
                true => LingerUntil::Written,
                false => LingerUntil::CloseFrame(scan),
            }
        }
    };
    let outcome = {
        let (mut read, mut write) = transport.split();
        if cfg.lingering_close {
            linger(
                &mut read,
                &mut write,
                &mut out.wbuf,
                deadline,
                &sessions.shutdown,
                until,
            )
            .await
        } else {
            naive_close(&mut write, &mut out.wbuf, deadline).await
        }
    };
    let id = session.session_id();
    match outcome {
        Linger::Clean => false,
        Linger::Failed(error) => {
            tracing::debug!(session = id, %error, "lingering close failed; resetting");
            transport.abort();
            false
        }
        Linger::TimedOut => {
            tracing::debug!(session = id, "lingering close timed out; resetting");
            transport.abort();
            false
        }
        Linger::Forced => {
            transport.abort();
            true
        }
    }
}

/// What a lingering close reads until, after its FIN.
#[derive(Debug)]
pub(crate) enum LingerUntil {
    /// The client's FIN.
    Eof,
    /// The client's WebSocket close frame (or its FIN, whichever comes first).
    CloseFrame(crate::transport::websocket::CloseScan),
    /// Nothing: the client already closed (its WebSocket close frame was read).
    Written,
}

/// How a lingering close went.
#[derive(Debug)]
pub(crate) enum Linger {
    /// Everything was written and the client closed its side.
    Clean,
    /// The write or the read failed (the client reset).
    Failed(std::io::Error),
    /// The linger deadline passed first.
    TimedOut,
    /// A forced shutdown cut it short.
    Forced,
}

/// Lingering close: write everything, send FIN, then read and discard until the client's FIN
/// (or, over WebSocket, its close frame), so that unread client data never makes the kernel
/// reset the connection and destroy the server's last messages.
pub(crate) async fn linger<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    read: &mut R,
    write: &mut W,
    wbuf: &mut BytesMut,
    deadline: Option<Instant>,
    shutdown: &Shutdown,
    until: LingerUntil,
) -> Linger {
    let work = async {
        write.write_all_buf(wbuf).await?;
        write.shutdown().await?;
        let mut sink = [0u8; 1024];
        match until {
            LingerUntil::Written => {}
            LingerUntil::Eof => while read.read(&mut sink).await? != 0 {},
            LingerUntil::CloseFrame(mut scan) => loop {
                let n = read.read(&mut sink).await?;
                if n == 0 || scan.feed(&sink[..n]) {
                    break;
                }
            },
        }
        Ok::<(), std::io::Error>(())
    };
    let bounded = async {
        match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline, work).await,
            None => Ok(work.await),
        }
    };
    tokio::select! {
        result = bounded => match result {
            Ok(Ok(())) => Linger::Clean,
            Ok(Err(error)) => Linger::Failed(error),
            Err(_) => Linger::TimedOut,
        },
        () = shutdown.aborted() => Linger::Forced,
    }
}

/// The close that lingering close exists to avoid: write, then close at once. If the client's
/// data is still unread, the kernel answers with RST and the client may lose what was written.
/// Only reachable with `session.lingering_close = false`, for demonstrations and tests.
async fn naive_close<W: AsyncWrite + Unpin>(
    write: &mut W,
    wbuf: &mut BytesMut,
    deadline: Option<Instant>,
) -> Linger {
    let deadline = deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
    match tokio::time::timeout_at(deadline, write.write_all_buf(wbuf)).await {
        Ok(Ok(())) => Linger::Clean,
        Ok(Err(error)) => Linger::Failed(error),
        Err(_) => Linger::TimedOut,
    }
}

/// Turns away a connection before it becomes a session, with a `Bye` and a lingering close.
pub(crate) async fn reject<T: Transport>(
    mut transport: T,
    bye: Bye,
    linger_timeout: Duration,
    shutdown: &Shutdown,
) {
    let mut wbuf = BytesMut::new();
    let mut codec = ServerCodec::default();
    if codec.encode(ServerMessage::Bye(bye), &mut wbuf).is_err() {
        return;
    }
    let deadline = Instant::now() + linger_timeout;
    let outcome = {
        let (mut read, mut write) = transport.split();
        linger(
            &mut read,
            &mut write,
            &mut wbuf,
            Some(deadline),
            shutdown,
            LingerUntil::Eof,
        )
        .await
    };
    if !matches!(outcome, Linger::Clean) {
        transport.abort();
    }
}

#[cfg(test)]
mod tests {
    //! The connection loop over `tokio::io::duplex` on a paused clock: every deadline is exact.

    use std::time::Duration;

    use bytes::Bytes;
    use protocol::{ByeCode, ClientMessage, ServerMessage};
    use tokio::time::Instant;

    use crate::api::game::{Game, Player, Refusal, Room, RoomContext};
    use crate::testkit::TestServer;

    /// Relays every input to the whole room.
    struct Echo;
    struct EchoRoom;

    impl Room for EchoRoom {
        fn input(&mut self, room: &mut RoomContext<'_>, _: &Player, _: u64, payload: Bytes) {
            room.broadcast(payload);
        }
    }

    impl Game for Echo {
        type Config = ();
        type Room = EchoRoom;
        fn open(&self, _: &crate::api::game::NewRoom<'_>) -> Result<EchoRoom, Refusal> {
            Ok(EchoRoom)
        }
    }

    async fn server() -> TestServer {
        TestServer::start(Echo, |c| {
            c.session.handshake_timeout = Duration::from_secs(5);
            c.session.heartbeat_interval = Duration::from_secs(5);
            c.session.idle_timeout = Duration::from_secs(15);
        })
        .await
    }

    /// What an idle session's task holds inline is most of what a held player costs: the cold
    /// paths (handshake, resume, join, close) are boxed, so that an idle session does not carry
    /// their state. 4,160 bytes before they were.
    #[tokio::test]
    async fn a_session_task_stays_small() {
        let server = server().await;
        let connector = server.connector();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let stream = tokio::net::TcpStream::connect(listener.local_addr().expect("addr"))
            .await
            .expect("connect");
        let peer = stream.local_addr().expect("addr");
        let task = super::serve(connector.sessions.clone(), stream, peer);
        let size = std::mem::size_of_val(&task);
        eprintln!("session task over TCP: {size} bytes");
        assert!(size <= 1536, "the session task holds {size} bytes inline");
        drop(task);
        // What the acceptor spawns for a plain connection: the session itself, with its
        // admission (see `Start`; the layered paths run in tasks of their own). Tokio puts the
        // future in a cell of 128-byte steps with 96 bytes of its own, beside the task
        // tracker's 8: up to about 1,424 bytes the cell is 1,536 bytes, jemalloc's class of
        // that size; one step more and it takes the 1,792 class. A held session measured 3.87
        // KiB at 1,936 bytes (the 2,560 class), 3.42 at 1,904 and 2.78 at 1,504 (the 1,792
        // class, before the last 104 bytes went). A debug build measures a few bytes more than
        // a release build.
        let stream = tokio::net::TcpStream::connect(listener.local_addr().expect("addr"))
            .await
            .expect("connect");
        let spawned =
            crate::server::listener::plain_session(connector.sessions.clone(), stream, peer);
        let size = std::mem::size_of_val(&spawned);
        eprintln!("the acceptor's task for it: {size} bytes");
        assert!(
            size <= 1424,
            "the acceptor's session task holds {size} bytes inline"
        );
        drop(spawned);
        // A TLS session's task holds its rustls connection behind one pointer: the task is
        // spawned on its own, the size of a plain one.
        assert_eq!(
            std::mem::size_of::<crate::transport::tls::TlsSocket>(),
            std::mem::size_of::<usize>()
        );
        server.stop().await;
    }

    /// A pipelining client's inputs reach a room whose queue holds a single command: each read's
    /// inputs go as one command, and a read that finds the queue full waits for it. Every input
    /// is relayed, once, in the order sent.
    #[tokio::test(start_paused = true)]
    async fn pipelined_inputs_reach_a_room_with_a_queue_of_one_in_order() {
        use futures_util::SinkExt;
        let server = TestServer::start(Echo, |c| {
            c.rooms.queue = 1;
            c.session.rate_limit_per_sec = 1_000_000;
            c.session.rate_limit_burst = 1_000_000;
        })
        .await;
        let mut client = server.join("pipeliner", "narrow").await.expect("welcome");
        const INPUTS: u64 = 500;
        for seq in 1..=INPUTS {
            let payload = Bytes::copy_from_slice(&seq.to_be_bytes());
            client
                .framed
                .feed(ClientMessage::Input { seq, payload })
                .await
                .expect("feed");
        }
        SinkExt::<ClientMessage>::flush(&mut client.framed)
            .await
            .expect("flush");
        let mut relayed = Vec::new();
        while relayed.len() < INPUTS as usize {
            // The clock is paused: a lost input ends the wait at once, not after a real minute.
            match tokio::time::timeout(Duration::from_secs(60), client.recv()).await {
                Ok(Some(ServerMessage::Event { payload, .. })) => relayed.push(payload),
                Ok(Some(_)) => {}
                Ok(None) => panic!("the session ended after {} events", relayed.len()),
                Err(_) => panic!("no event for a minute after {} events", relayed.len()),
            }
        }
        let expected: Vec<Bytes> = (1..=INPUTS)
            .map(|seq| Bytes::copy_from_slice(&seq.to_be_bytes()))
            .collect();
        assert_eq!(relayed, expected);
        server.stop().await;
    }

    /// A client that pings by itself never lets its session's timer fire (every frame moves the
    /// next ping later): its ping is the quiet moment at which the session gives back the slots
    /// its player's queue grew to.
    #[tokio::test(start_paused = true)]
    async fn a_client_ping_gives_back_an_idle_players_queue() {
        let server = server().await;
        let mut client = server.join("pinger", "pings").await.expect("welcome");
        let session = client.welcome().expect("welcomed").session_id;
        client.input(Bytes::from_static(b"hi")).await;
        assert_eq!(client.next_event().await.as_deref(), Some(&b"hi"[..]));
        let player = server
            .connector()
            .sessions
            .registry
            .get(session)
            .expect("live");
        assert!(player.queue().slots() > 0, "the echo's slots, kept");
        client.send(ClientMessage::Ping { nonce: 9 }).await;
        loop {
            match client.recv().await {
                Some(ServerMessage::Pong { nonce: 9 }) => break,
                Some(_) => {}
                None => panic!("the session ended"),
            }
        }
        assert_eq!(player.queue().slots(), 0);
        server.stop().await;
    }

    #[test]
    fn a_source_found_waiting_is_looked_at_again_only_when_it_may_have_news() {
        use super::Waiting;
        struct Nothing;
        impl std::task::Wake for Nothing {
            fn wake(self: std::sync::Arc<Self>) {}
        }
        let task = std::task::Waker::from(std::sync::Arc::new(Nothing));
        let mut waiting = Waiting::default();
        waiting.begin(&task);
        for source in [Waiting::CLOSE, Waiting::TIMER, Waiting::READ] {
            assert!(waiting.looks(source, false));
            waiting.found_nothing(source);
        }
        // Within the wake-up nothing is looked at twice, whatever its flag says.
        assert!(!waiting.looks(Waiting::READ, false));
        assert!(!waiting.looks(Waiting::CLOSE, true));
        // After the task yielded: a source of the wake-up's own is looked at again; an armed one
        // only when its flag is up.
        waiting.yielded();
        waiting.begin(&task);
        assert!(waiting.looks(Waiting::READ, false));
        assert!(!waiting.looks(Waiting::CLOSE, false));
        assert!(waiting.looks(Waiting::CLOSE, true));
        assert!(!waiting.looks(Waiting::TIMER, false));
        // A timer reset (or a close request replaced) is looked at again.
        waiting.look_again(Waiting::TIMER);
        assert!(waiting.looks(Waiting::TIMER, false));
        // A timer that answered out of budget is not armed: looked at after the next yield.
        waiting.found_nothing_for_now(Waiting::TIMER);
        assert!(!waiting.looks(Waiting::TIMER, false));
        waiting.yielded();
        waiting.begin(&task);
        assert!(waiting.looks(Waiting::TIMER, false));
        // Polled with another waker, the armed sources hold the old one: look at them all.
        waiting.yielded();
        let other = std::task::Waker::from(std::sync::Arc::new(Nothing));
        waiting.begin(&other);
        assert!(waiting.looks(Waiting::CLOSE, false));
        assert!(waiting.looks(Waiting::DRAIN, false));
    }

    #[test]
    fn the_loss_grace_goes_to_a_reachable_client_on_a_lossy_path_only() {
        let view = |last_ack_recv_ms: u32, total_retrans: u32, rcv_ooopack: u32| {
            crate::transport::kernel::TcpView {
                state: "established",
                rtt_us: 20_000,
                rttvar_us: 5_000,
                rto_us: 220_000,
                retransmits: 0,
                probes: 0,
                total_retrans,
                unacked: 0,
                lost: 0,
                last_data_recv_ms: 3_000,
                last_data_sent_ms: 500,
                last_ack_recv_ms,
                rcv_ooopack,
            }
        };
        let silent = Duration::from_secs(3);
        let heartbeat = Duration::from_secs(1);
        // A ping acknowledged half a second ago, on a path that lost packets either way.
        assert!(super::lossy_but_reachable(
            &view(500, 4, 0),
            silent,
            heartbeat
        ));
        assert!(super::lossy_but_reachable(
            &view(500, 0, 7),
            silent,
            heartbeat
        ));
        // A frozen program on a clean path: its kernel answers, nothing was ever lost.
        assert!(!super::lossy_but_reachable(
            &view(500, 0, 0),
            silent,
            heartbeat
        ));
        // A pulled cable: the last acknowledgement came as the silence began.
        assert!(!super::lossy_but_reachable(
            &view(2_900, 4, 7),
            silent,
            heartbeat
        ));
        // Nor one that came within the first heartbeat of the silence.
        assert!(!super::lossy_but_reachable(
            &view(2_100, 4, 7),
            silent,
            heartbeat
        ));
        // A connection the peer already closed or reset gets nothing.
        let closed = crate::transport::kernel::TcpView {
            state: "close_wait",
            ..view(500, 4, 7)
        };
        assert!(!super::lossy_but_reachable(&closed, silent, heartbeat));
        // Without a heartbeat, the last three quarters of the silence count.
        let long = Duration::from_secs(16);
        assert!(super::lossy_but_reachable(
            &view(11_000, 4, 0),
            long,
            Duration::ZERO
        ));
        assert!(!super::lossy_but_reachable(
            &view(13_000, 4, 0),
            long,
            Duration::ZERO
        ));
    }

    /// Counts its ticks, and wants one only after an input.
    struct Sleepy(std::sync::Arc<std::sync::atomic::AtomicU64>);
    struct SleepyRoom {
        ticks: std::sync::Arc<std::sync::atomic::AtomicU64>,
        pending: bool,
    }

    impl Room for SleepyRoom {
        fn input(&mut self, _: &mut RoomContext<'_>, _: &Player, _: u64, _: Bytes) {
            self.pending = true;
        }
        fn tick(&mut self, _: &mut RoomContext<'_>, _: u64) {
            self.pending = false;
            self.ticks
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        fn wants_tick(&self) -> bool {
            self.pending
        }
    }

    impl Game for Sleepy {
        type Config = ();
        type Room = SleepyRoom;
        fn open(&self, _: &crate::api::game::NewRoom<'_>) -> Result<SleepyRoom, Refusal> {
            Ok(SleepyRoom {
                ticks: self.0.clone(),
                pending: false,
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_room_that_wants_no_tick_gets_none_until_its_next_command() {
        use std::sync::atomic::Ordering;
        let ticks = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let server = TestServer::start(Sleepy(ticks.clone()), |c| {
            c.rooms.tick_rate_hz = 20;
        })
        .await;
        let mut client = server.join("sleeper", "quiet").await.expect("welcome");
        // Reads (answering pings) until `until`.
        async fn listen(client: &mut crate::testkit::TestClient, for_: Duration) {
            let until = Instant::now() + for_;
            while let Ok(Some(_)) = tokio::time::timeout_at(until, client.recv()).await {}
        }
        // 10 s: a quiet room at 20 Hz would have ticked 200 times.
        listen(&mut client, Duration::from_secs(10)).await;
        assert_eq!(ticks.load(Ordering::Relaxed), 0);
        client.input(Bytes::from_static(b"move")).await;
        listen(&mut client, Duration::from_secs(5)).await;
        assert_eq!(
            ticks.load(Ordering::Relaxed),
            1,
            "one tick for the input, then asleep again"
        );
        server.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn pings_come_every_heartbeat_and_silence_ends_in_idle_timeout() {
        let server = server().await;
        let mut client = server.join("quiet", "").await.expect("welcome");
        let start = Instant::now();
        let mut pings = Vec::new();
        // Never answer: read raw frames, so that the test client does not pong.
        let bye = loop {
            match futures_util::StreamExt::next(&mut client.framed).await {
                Some(Ok(ServerMessage::Ping { .. })) => pings.push(start.elapsed()),
                Some(Ok(ServerMessage::Bye(bye))) => break bye,
                Some(Ok(_)) => {}
                other => panic!("the connection ended without a Bye: {other:?}"),
            }
        };
        assert_eq!(bye.code, ByeCode::IdleTimeout);
        let closed = start.elapsed();
        assert_eq!(
            pings,
            [
                Duration::ZERO,
                Duration::from_secs(5),
                Duration::from_secs(10)
            ],
            "one ping with the Welcome, then one per heartbeat"
        );
        assert!(
            closed >= Duration::from_secs(15) && closed < Duration::from_millis(15_010),
            "closed after {closed:?}"
        );
        server.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn answering_pings_keeps_a_session_alive() {
        let server = server().await;
        let mut client = server.join("chatty", "").await.expect("welcome");
        // recv() answers every ping; a minute passes with no other traffic.
        let alive = tokio::time::timeout(Duration::from_secs(60), client.recv()).await;
        assert!(alive.is_err(), "the session ended: {alive:?}");
        server.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_without_hello_ends_at_the_handshake_timeout() {
        let server = server().await;
        let start = Instant::now();
        let mut client = server.connect_raw();
        let bye = client.until_bye().await.expect("a Bye");
        assert_eq!(bye.code, ByeCode::HandshakeTimeout);
        assert_eq!(start.elapsed(), Duration::from_secs(5));
        server.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_lingering_close_delivers_every_relay_then_the_ack_then_bye_then_eof() {
        let server = server().await;
        let mut client = server.join("leaver", "").await.expect("welcome");
        for n in 0..50u32 {
            client.input(Bytes::from(n.to_be_bytes().to_vec())).await;
        }
        client
            .send(ClientMessage::Bye(protocol::Bye::new(
                ByeCode::ClientQuit,
                "",
            )))
            .await;
        let mut relays = 0;
        let mut last_ack = None;
        let bye = loop {
            match client.recv().await {
                Some(ServerMessage::Event { .. }) => relays += 1,
                Some(ServerMessage::Ack { seq }) => last_ack = Some(seq),
                Some(ServerMessage::Bye(bye)) => break bye,
                Some(_) => {}
                None => panic!("the stream ended before the Bye"),
            }
        };
        assert_eq!(bye.code, ByeCode::ClientQuit);
        assert_eq!(relays, 50, "every input's relay came before the Bye");
        assert_eq!(
            last_ack,
            Some(50),
            "the Ack right before the Bye covers every input"
        );
        assert!(client.recv().await.is_none(), "then the end of the stream");
        server.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn an_input_before_welcome_is_a_protocol_error() {
        let server = server().await;
        let mut client = server.connect_raw();
        client
            .send(ClientMessage::Input {
                seq: 1,
                payload: Bytes::from_static(b"early"),
            })
            .await;
        let bye = client.until_bye().await.expect("a Bye");
        assert_eq!(bye.code, ByeCode::ProtocolError);
        assert!(bye.text.contains("expected Hello"), "{}", bye.text);
        server.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn unsolicited_pongs_and_backward_acks_change_nothing_an_ack_of_the_future_is_refused() {
        let server = server().await;
        let mut client = server.join("acker", "").await.expect("welcome");
        client.send(ClientMessage::Pong { nonce: 999 }).await;
        client.input("one").await;
        client.input("two").await;
        let mut events = 0;
        while events < 2 {
            if let Some(ServerMessage::Event { .. }) = client.recv().await {
                events += 1;
            }
        }
        client.send(ClientMessage::Ack { seq: 2 }).await;
        client.send(ClientMessage::Ack { seq: 1 }).await;
        client.input("three").await;
        loop {
            match client.recv().await {
                Some(ServerMessage::Event { seq: 3, .. }) => break,
                Some(ServerMessage::Bye(bye)) => panic!("closed: {bye:?}"),
                Some(_) => {}
                None => panic!("the session ended"),
            }
        }
        client.send(ClientMessage::Ack { seq: 4 }).await;
        let bye = client.until_bye().await.expect("a Bye");
        assert_eq!(bye.code, ByeCode::ProtocolError);
        assert!(bye.text.contains("never sent"), "{}", bye.text);
        server.stop().await;
    }

    /// Sends back each input with a header far larger than the protocol's headroom, then a
    /// small event: a game bug the engine must contain.
    struct Inflate;
    struct InflateRoom;

    impl Room for InflateRoom {
        fn input(&mut self, room: &mut RoomContext<'_>, from: &Player, _: u64, payload: Bytes) {
            let mut big = vec![0u8; 1024];
            big.extend_from_slice(&payload);
            room.send(from, Bytes::from(big));
            room.send(from, Bytes::from_static(b"after"));
        }
    }

    impl Game for Inflate {
        type Config = ();
        type Room = InflateRoom;
        fn open(&self, _: &crate::api::game::NewRoom<'_>) -> Result<InflateRoom, Refusal> {
            Ok(InflateRoom)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_event_too_large_for_a_frame_is_dropped_before_it_gets_a_number() {
        let server = TestServer::start(Inflate, |_| {}).await;
        let mut client = server.join("big", "").await.expect("welcome");
        let largest = protocol::max_input_payload(protocol::DEFAULT_MAX_FRAME_BYTES);
        client.input(vec![1u8; largest]).await;
        let mut seqs = Vec::new();
        loop {
            match client.recv().await {
                Some(ServerMessage::Event { seq, payload }) => {
                    seqs.push(seq);
                    if &payload[..] == b"after" {
                        break;
                    }
                }
                Some(ServerMessage::Bye(bye)) => panic!("closed: {bye:?}"),
                Some(_) => {}
                None => panic!("the session ended"),
            }
        }
        assert_eq!(
            seqs,
            [1],
            "the small event is number 1: the dropped one used no number"
        );
        server.stop().await;
    }
}
