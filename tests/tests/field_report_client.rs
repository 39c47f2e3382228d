//! The field report's client-side cases: what a client's own socket reports when the server ends
//! the session, asserted with the errno. The server closes by kicking the session through the
//! admin endpoint (`POST /sessions/{id}/kick`), the way an operator would.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use game_engine::{CloseReason, Config};
use protocol::{ByeCode, ClientCodec, ClientMessage, CodecError, ServerMessage};
use system_tests::{Metrics, PATIENCE, RawClient, TestServer, hello_in, relay};
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::TcpStream;
use tokio_util::codec::{Encoder, FramedRead};

fn encode(message: ClientMessage) -> BytesMut {
    let mut wire = BytesMut::new();
    ClientCodec::default()
        .encode(message, &mut wire)
        .expect("encode");
    wire
}

fn input(seq: u64, payload: &Bytes) -> ClientMessage {
    ClientMessage::Input {
        seq,
        payload: payload.clone(),
    }
}

/// Waits until the peer's FIN has arrived, without reading anything: the kernel flags the socket
/// read-closed (EPOLLRDHUP) while the data before the FIN stays unread.
async fn await_fin(stream: &TcpStream) {
    loop {
        let ready = tokio::time::timeout(PATIENCE, stream.ready(Interest::READABLE))
            .await
            .expect("the server closes its side")
            .expect("readiness");
        if ready.is_read_closed() {
            return;
        }
        // Forget this readiness without reading, so that the next wait is for a new event.
        let _ = stream.try_io(Interest::READABLE, || {
            Err::<(), _>(io::ErrorKind::WouldBlock.into())
        });
    }
}

/// Waits until the socket holds an error (the peer's RST arrived).
async fn await_reset(stream: &TcpStream, within: Duration) {
    tokio::time::timeout(within, stream.ready(Interest::ERROR))
        .await
        .expect("the server resets the connection")
        .expect("readiness");
}

fn errno(error: &io::Error) -> i32 {
    error.raw_os_error().unwrap_or(0)
}

const EPIPE: i32 = 32;
const ECONNRESET: i32 = 104;

/// Sends `bytes` and expects the send to fail with EPIPE (or ECONNRESET); returns the error.
async fn expect_send_fails(stream: &mut TcpStream, bytes: &[u8], why: &str) -> io::Error {
    let error = stream.write_all(bytes).await.expect_err(why);
    assert!(
        errno(&error) == EPIPE || errno(&error) == ECONNRESET,
        "EPIPE (or ECONNRESET), got {error:?}"
    );
    error
}

/// Kicks the client's session, reads the `Bye{kicked}` and the server's EOF, and hands back the
/// bare socket.
async fn kicked(server: &TestServer, player: &str) -> TcpStream {
    let (mut client, welcome) = RawClient::join(server.addr, player).await;
    // Answer the Ping that follows the Welcome, then wait until the server has read everything
    // this client sent (its Pong to our own Ping comes after): unread bytes at the server's close
    // would make its kernel reset at once, before the cases below can look.
    let mut ping = None;
    while ping.is_none() {
        if let Some(Ok(ServerMessage::Ping { nonce })) = client.recv().await {
            ping = Some(nonce);
        }
    }
    client
        .send(ClientMessage::Pong {
            nonce: ping.unwrap_or_default(),
        })
        .await;
    client.ping_pong(0xfeed).await;
    server.kick(welcome.session_id).await;
    client.expect_bye(ByeCode::Kicked).await;
    assert!(client.until_end().await.is_none(), "EOF after the Bye");
    client.framed.into_inner()
}

/// Field report, client side, case 1, as the report saw it (`session.lingering_close = false`:
/// the server simply closes). The client's first send after the server closed succeeds: its
/// kernel accepts the bytes and the server's kernel answers them with RST. The next send fails
/// with EPIPE (the reset arrived after the server's FIN).
#[tokio::test]
async fn server_closed_then_client_sends_first_send_succeeds_second_fails_with_epipe() {
    let server = TestServer::start(|c| c.session.lingering_close = false).await;
    let before = server.scrape().await;
    let mut stream = kicked(&server, "sender").await;
    let ping = encode(ClientMessage::Ping { nonce: 1 });

    stream
        .write_all(&ping)
        .await
        .expect("the first send after the server closed succeeds");
    await_reset(&stream, PATIENCE).await;
    let error = expect_send_fails(&mut stream, &ping, "the second send fails").await;
    eprintln!("measured: send after close (naive server close): second send failed with {error}");
    server.expect_close(&before, CloseReason::Kicked).await;
    server.stop().await;
}

/// Field report, client side, case 1, against the production close: after its `Bye` and FIN the
/// server keeps reading (and discarding) for `session.linger_timeout`, so the client's sends keep
/// succeeding that long; when the linger gives up, the server resets, and the client's next send
/// fails with EPIPE (or ECONNRESET).
#[tokio::test]
async fn server_closed_then_client_sends_sends_succeed_while_the_server_lingers_then_fail() {
    let server = TestServer::start(|_| {}).await;
    let linger = server.config.session.linger_timeout;
    let before = server.scrape().await;
    let mut stream = kicked(&server, "sender").await;
    let closed = Instant::now();
    let ping = encode(ClientMessage::Ping { nonce: 1 });

    stream
        .write_all(&ping)
        .await
        .expect("the first send after the server closed succeeds");
    await_reset(&stream, linger + PATIENCE).await;
    let reset_after = closed.elapsed();
    let error = expect_send_fails(&mut stream, &ping, "a send after the reset fails").await;
    assert!(
        reset_after + Duration::from_millis(100) >= linger,
        "the server lingered for linger_timeout ({linger:?}) before resetting, not {reset_after:?}"
    );
    assert!(
        reset_after <= linger + Duration::from_secs(2),
        "reset after {reset_after:?}"
    );
    eprintln!(
        "measured: send after close (lingering close): reset {reset_after:?} after the Bye, then {error}"
    );
    server.expect_close(&before, CloseReason::Kicked).await;
    server.stop().await;
}

/// Field report, client side, case 2: the server sends, then closes; the client, which has not
/// read yet, sends one packet and then reads. It reads everything the server sent (every relay
/// of the room's 200 inputs, then the `Bye`), then a clean EOF: the server's lingering close read
/// the client's late packet instead of answering it with RST.
#[tokio::test]
async fn server_sends_then_closes_client_sends_then_reads_everything_then_eof() {
    let server = TestServer::start(|c| {
        c.session.rate_limit_per_sec = 10_000;
        c.session.rate_limit_burst = 10_000;
        c.session.idle_timeout = Duration::from_secs(30);
    })
    .await;
    let before = server.scrape().await;
    let mut client = RawClient::connect(server.addr).await;
    let welcome = client
        .hello(hello_in("late-sender", "sends-then-closes"))
        .await;
    let mut feeder = RawClient::connect(server.addr).await;
    feeder.hello(hello_in("feeder", "sends-then-closes")).await;
    let payload = Bytes::from_static(b"event");
    const EVENTS: u64 = 200;
    for seq in 1..=EVENTS {
        feeder.send(input(seq, &payload)).await;
    }
    // The feeder's last relay means all 200 are queued for the client too.
    loop {
        match feeder.recv().await {
            Some(Ok(m)) if relay(&m) == Some(("feeder".to_owned(), EVENTS)) => break,
            Some(Ok(_)) => {}
            other => panic!("feeder lost its session: {other:?}"),
        }
    }
    server.kick(welcome.session_id).await;
    // The server has written everything and sent its FIN; the client has read none of it.
    await_fin(client.stream()).await;
    client.send(input(1, &payload)).await;

    let (messages, bye) = client.until_bye().await;
    let relays: Vec<u64> = messages
        .iter()
        .filter_map(relay)
        .filter(|(from, _)| from == "feeder")
        .map(|(_, seq)| seq)
        .collect();
    assert_eq!(
        relays,
        (1..=EVENTS).collect::<Vec<_>>(),
        "every event arrived"
    );
    assert_eq!(bye.code, ByeCode::Kicked);
    match client.until_end().await {
        None => {}
        Some(error) => panic!("expected a clean EOF after everything, got {error:?}"),
    }
    // Closing ends the server's lingering read at once.
    drop(client);
    server.expect_close(&before, CloseReason::Kicked).await;
    drop(feeder);
    server.stop().await;
}

/// What the flooding client read after the kick.
#[derive(Debug, Default)]
struct Received {
    /// Relays of its own inputs.
    relays: u64,
    /// The `Ack` right before the `Bye`, if it arrived.
    ack: Option<u64>,
    bye: Option<ByeCode>,
    /// How the read side ended.
    end: End,
    /// The errno of the flooding writer's failed write, if one failed. A reset is reported to
    /// the first call that looks (read or write); the other then sees a plain end of stream.
    write_error: Option<i32>,
}

/// How the client's read side ended.
#[derive(Debug, Default, PartialEq, Eq)]
enum End {
    /// End of stream between frames.
    #[default]
    Eof,
    /// End of stream inside a frame: the stream was cut off.
    Truncated,
    /// A read failed with this errno.
    Failed(i32),
}

/// Field report, client side, case 3. The client floods inputs without reading, so when the kick
/// comes the server holds a large backlog of relays for it (in its queue and socket buffers) and
/// the client's newest inputs sit unread in the server's receive buffer. Then the client reads.
async fn close_with_client_data_unread(lingering: bool) -> (Received, u64) {
    const PLAYER: &str = "flooder";
    const BEFORE_KICK: u64 = 40_000;
    let server = TestServer::start(|c: &mut Config| {
        c.session.lingering_close = lingering;
        c.session.rate_limit_per_sec = 10_000_000;
        c.session.rate_limit_burst = 10_000_000;
        c.session.outbound_queue = 1_000_000;
        c.session.outbound_queue_bytes = 1 << 30;
        c.session.heartbeat_interval = Duration::from_secs(1);
        c.session.idle_timeout = Duration::from_secs(30);
        c.session.write_timeout = Duration::from_secs(30);
        c.session.linger_timeout = Duration::from_secs(10);
        c.tcp.user_timeout = Duration::from_secs(60);
    })
    .await;
    let mut observer = RawClient::connect(server.addr).await;
    observer.hello(hello_in("observer", "unread")).await;
    let mut client = RawClient::connect(server.addr).await;
    let welcome = client.hello(hello_in(PLAYER, "unread")).await;
    let before = server.scrape().await;
    let (read, mut write) = client.framed.into_inner().into_split();

    // Inputs of 100 bytes: their relays are about 125 bytes each, megabytes in all.
    let stop = Arc::new(AtomicBool::new(false));
    let flood = tokio::spawn({
        let stop = stop.clone();
        async move {
            let payload = Bytes::from(vec![b'f'; 100]);
            let mut codec = ClientCodec::default();
            let mut seq = 0;
            while !stop.load(Ordering::Relaxed) {
                let mut chunk = BytesMut::new();
                for _ in 0..100 {
                    seq += 1;
                    codec
                        .encode(input(seq, &payload), &mut chunk)
                        .expect("encode");
                }
                if let Err(error) = write.write_all(&chunk).await {
                    return Some(errno(&error));
                }
            }
            // After the server's Bye: close our side so that its lingering close completes.
            write.shutdown().await.err().map(|e| errno(&e))
        }
    });
    let mut applied_before_kick = 0;
    while applied_before_kick < BEFORE_KICK {
        match observer.recv_answering_pings().await {
            Some(Ok(m)) => {
                if let Some((from, seq)) = relay(&m)
                    && from == PLAYER
                {
                    applied_before_kick = seq;
                }
            }
            other => panic!("observer lost its session: {other:?}"),
        }
    }
    server.kick(welcome.session_id).await;

    let mut frames = FramedRead::new(read, ClientCodec::default());
    let mut received = Received::default();
    loop {
        match tokio::time::timeout(PATIENCE, frames.next())
            .await
            .expect("the stream ends")
        {
            Some(Ok(ServerMessage::Bye(bye))) => {
                received.bye = Some(bye.code);
                stop.store(true, Ordering::Relaxed);
            }
            Some(Ok(ServerMessage::Ack { seq })) => received.ack = Some(seq),
            Some(Ok(m)) => {
                if relay(&m).is_some_and(|(from, _)| from == PLAYER) {
                    received.relays += 1;
                }
            }
            Some(Err(CodecError::Io(error))) => {
                received.end = End::Failed(errno(&error));
                break;
            }
            Some(Err(CodecError::Truncated { .. })) => {
                received.end = End::Truncated;
                break;
            }
            Some(Err(other)) => panic!("undecodable stream: {other}"),
            None => break,
        }
    }
    stop.store(true, Ordering::Relaxed);
    received.write_error = tokio::time::timeout(PATIENCE, flood)
        .await
        .expect("the flood stops")
        .expect("flood task");
    server.expect_close(&before, CloseReason::Kicked).await;
    // Everything the server applied, counted by the observer up to its own input.
    let mut applied = applied_before_kick;
    observer
        .send(ClientMessage::Input {
            seq: 1,
            payload: Bytes::from_static(b"sync"),
        })
        .await;
    loop {
        match observer.recv().await {
            Some(Ok(ServerMessage::Ping { nonce })) => {
                observer.send(ClientMessage::Pong { nonce }).await;
            }
            Some(Ok(m)) => match relay(&m) {
                Some((from, seq)) if from == PLAYER => applied = seq,
                Some((from, 1)) if from == "observer" => break,
                _ => {}
            },
            other => panic!("observer lost its session: {other:?}"),
        }
    }
    drop(observer);
    server.stop().await;
    (received, applied)
}

/// With the lingering close the client reads every relay of every input the server applied, the
/// `Ack` of the last one, `Bye{kicked}`, and a clean EOF, although its own data was unread in the
/// server's buffer when the server closed.
#[tokio::test]
async fn server_closes_with_client_data_unread_lingering_close_still_delivers_the_bye() {
    let (received, applied) = close_with_client_data_unread(true).await;
    eprintln!("measured: lingering close with unread client data: {received:?}, {applied} applied");
    assert_eq!(received.bye, Some(ByeCode::Kicked), "{received:?}");
    assert_eq!(received.end, End::Eof, "clean EOF: {received:?}");
    assert_eq!(received.write_error, None, "no send failed: {received:?}");
    assert_eq!(received.ack, Some(applied), "{received:?}");
    assert_eq!(received.relays, applied, "nothing lost: {received:?}");
}

/// With the naive close (`session.lingering_close = false`, a test-only switch) the server closes
/// with the client's data unread; its kernel sends RST instead of FIN and throws away what it had
/// not yet delivered. The client reads part of the backlog, then ECONNRESET: the tail, the `Ack`
/// and the `Bye` are lost. This is the failure lingering close exists to prevent. The client's
/// reader and its flooding writer share the socket; whichever looks first gets ECONNRESET, and a
/// reader that comes second sees the stream simply stop (often inside a frame).
#[tokio::test]
async fn server_closes_with_client_data_unread_naive_close_resets_and_loses_the_bye() {
    let (received, applied) = close_with_client_data_unread(false).await;
    eprintln!("measured: naive close with unread client data: {received:?}, {applied} applied");
    assert!(
        received.end == End::Failed(ECONNRESET) || received.write_error == Some(ECONNRESET),
        "the client sees ECONNRESET: {received:?}"
    );
    assert_eq!(received.bye, None, "the Bye was lost: {received:?}");
    assert!(
        received.relays < applied,
        "part of the backlog was lost: {received:?} of {applied}"
    );
}
