//! The field report's server-side cases 2 to 5 on loopback (cases 1, 6 and 7 need a real cable:
//! see pulled_cable.rs): what the server records when a client ends its connection in each of
//! the ways the report describes, and what the server processed before that. Each test asserts
//! that the close counter moved by exactly one, for the reason the case calls for.
//!
//! "Processed" is observed from outside: an observer shares the client's room, and the demo game
//! relays every input it applies to every member. A relay is only sent for an input the server
//! read, decoded and applied, in sequence order.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use game_engine::{CloseReason, Config};
use protocol::{Bye, ByeCode, ClientCodec, ClientMessage, ServerMessage};
use system_tests::process::NetClient;
use system_tests::{Metrics, PATIENCE, RawClient, TestServer, input, relay};
use tokio::io::AsyncWriteExt;
use tokio_util::codec::Encoder;

/// Many messages in a burst must not trip the rate limiter or overflow a queue, and a client that
/// does not read for a moment must not be a slow consumer: those are other cases.
fn many_messages(config: &mut Config) {
    config.session.rate_limit_per_sec = 1_000_000;
    config.session.rate_limit_burst = 1_000_000;
    config.session.outbound_queue = 200_000;
    config.session.heartbeat_interval = Duration::from_secs(1);
    config.session.idle_timeout = Duration::from_secs(10);
    config.session.write_timeout = Duration::from_secs(30);
    config.tcp.user_timeout = Duration::from_secs(60);
}

/// A server where a burst of inputs is only ever limited by the sockets, with an observer in
/// `room`.
async fn server_with_observer(room: &str) -> (TestServer, RawClient) {
    let server = TestServer::start(many_messages).await;
    let (observer, _) = RawClient::join_room(server.addr, "observer", room).await;
    (server, observer)
}

/// Reads until `stop` matches a message (or the stream ends, when `stop` is `None`), answering
/// pings. Returns the input seqs of the relays from `from`, and the message that stopped it.
async fn relays_from(
    client: &mut RawClient,
    from: &str,
    stop: impl Fn(&ServerMessage) -> bool,
) -> (Vec<u64>, ServerMessage) {
    let mut seqs = Vec::new();
    loop {
        match client.recv_answering_pings().await {
            Some(Ok(message)) => {
                if let Some((sender, seq)) = relay(&message)
                    && sender == from
                {
                    seqs.push(seq);
                }
                if stop(&message) {
                    return (seqs, message);
                }
            }
            other => panic!(
                "stream ended with {other:?} after {} relays from {from}",
                seqs.len()
            ),
        }
    }
}

/// The observer's own input is relayed after everything the game relayed before it: once it
/// comes back, every relay of an input the server applied earlier has been read. Returns the
/// relays from `from` read on the way.
async fn barrier(observer: &mut RawClient, name: &str, seq: u64, from: &str) -> Vec<u64> {
    observer.send(input(seq, "move")).await;
    relays_from(observer, from, |m| {
        relay(m).is_some_and(|(sender, s)| sender == name && s == seq)
    })
    .await
    .0
}

/// Reads the observer's relays of `from`'s inputs up to its own barrier and checks that, after
/// the `first` it read before, they are all of `from`'s inputs in order: whatever reached the
/// server was applied, in order. Returns them all.
async fn applied_in_order(observer: &mut RawClient, from: &str, first: Vec<u64>) -> Vec<u64> {
    let rest = barrier(observer, "observer", 1, from).await;
    let all: Vec<u64> = first.into_iter().chain(rest).collect();
    assert_in_order(&all, "observer");
    all
}

/// Cases 3 and 4: `player`, a `netclient` process in a room of its own with an observer, sends
/// inputs and never reads. It obeys `command` (acknowledged with `said`) until the observer has
/// seen input `seen` applied; then `end` ends the process. Checks that the server counts one
/// close, for one of the `allowed` reasons, and that it applied whatever reached it in order;
/// returns the reason, how long after `end` it was counted, and how many inputs were applied.
async fn a_sender_that_never_reads_ends(
    player: &str,
    (command, said): (&str, &str),
    seen: u64,
    end: impl AsyncFnOnce(NetClient),
    allowed: &[CloseReason],
) -> (CloseReason, Duration, usize) {
    let room = format!("{player}-room");
    let (server, mut observer) = server_with_observer(&room).await;
    let before = server.scrape().await;
    let mut client = NetClient::player(&[], server.addr, player, &["--room", &room, "--no-read"]);
    client.send(command).await;
    client.expect(said, PATIENCE).await;
    let (first, _) = relays_from(&mut observer, player, |m| {
        relay(m).is_some_and(|(from, seq)| from == player && seq >= seen)
    })
    .await;
    assert_in_order(&first, "observer, before the end");
    end(client).await;
    let ended = Instant::now();
    let reason = server.expect_one_close(&before, allowed, PATIENCE).await;
    let detected = ended.elapsed();
    let applied = applied_in_order(&mut observer, player, first).await.len();
    drop(observer);
    server.stop().await;
    (reason, detected, applied)
}

fn assert_in_order(seqs: &[u64], what: &str) {
    let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
    assert!(
        seqs == expected,
        "{what}: relays are not 1..={} in order",
        seqs.len()
    );
}

const MANY: u64 = 5000;

fn encode_inputs(count: u64, bye: bool) -> BytesMut {
    let mut codec = ClientCodec::default();
    let mut wire = BytesMut::new();
    for seq in 1..=count {
        codec.encode(input(seq, "move"), &mut wire).expect("encode");
    }
    if bye {
        codec
            .encode(
                ClientMessage::Bye(Bye::new(ByeCode::ClientQuit, "done")),
                &mut wire,
            )
            .expect("encode");
    }
    wire
}

/// Case 2: `sender` writes `MANY` inputs in one write, followed by its `Bye` when `bye`, then
/// `close` ends its side and checks what it reads. Checks that the session is counted closed as
/// `reason`, and that the observer saw the server apply every input, in order.
async fn many_messages_then(
    room: &str,
    bye: bool,
    close: impl AsyncFnOnce(&mut RawClient),
    reason: CloseReason,
) {
    let (server, mut observer) = server_with_observer(room).await;
    let (mut sender, _) = RawClient::join_room(server.addr, "sender", room).await;
    let before = server.scrape().await;
    sender
        .framed
        .get_mut()
        .write_all(&encode_inputs(MANY, bye))
        .await
        .expect("write the burst");
    close(&mut sender).await;
    server.expect_close(&before, reason).await;
    let seen = applied_in_order(&mut observer, "sender", Vec::new()).await;
    assert_eq!(seen.len() as u64, MANY, "the server applied every input");
    drop((observer, sender));
    server.stop().await;
}

/// Field report, server side, case 2, with a `Bye`: 5000 inputs and the `Bye` in one write. The
/// server applies every input (the observer gets all 5000 relays), acknowledges the last one
/// right before its own `Bye`, and the session ends as `client_quit` with a clean EOF.
#[tokio::test]
async fn many_messages_then_graceful_close_with_bye_processes_every_message() {
    let read_to_the_bye = async |sender: &mut RawClient| {
        let (echoed, last) = relays_from(sender, "sender", |m| {
            matches!(m, ServerMessage::Bye(_) | ServerMessage::Ack { seq: MANY })
        })
        .await;
        assert_eq!(
            last,
            ServerMessage::Ack { seq: MANY },
            "every input acknowledged"
        );
        sender.expect_bye(ByeCode::ClientQuit).await;
        sender.expect_clean_end("a clean EOF follows").await;
        assert_in_order(&echoed, "sender's own relays");
        assert_eq!(echoed.len() as u64, MANY);
    };
    many_messages_then(
        "graceful-bye",
        true,
        read_to_the_bye,
        CloseReason::ClientQuit,
    )
    .await;
}

/// Field report, server side, case 2, without a `Bye`: 5000 inputs, then the client closes its
/// sending side (FIN after the data). The server reads and applies every input, then reads EOF
/// between frames: `peer_eof`. Nothing is unread on either side, so the client sees a clean EOF,
/// not a reset.
#[tokio::test]
async fn many_messages_then_graceful_close_without_bye_is_peer_eof_after_every_message() {
    let half_close = async |sender: &mut RawClient| {
        sender.framed.get_mut().shutdown().await.expect("FIN");
        sender
            .expect_clean_end("the server's side ends with FIN too")
            .await;
    };
    many_messages_then("graceful-eof", false, half_close, CloseReason::PeerEof).await;
}

/// Field report, server side, case 3: a client process sends many messages and exits without
/// closing its socket while the server's messages sit unread in its receive buffer. Its kernel
/// answers the close with RST instead of FIN, so the server sees `peer_reset`. Whatever reached
/// the server before the reset was applied, in order: the first 2000 inputs for certain (the
/// observer saw them before the exit), and some or all of the 2000 sent just before it.
#[tokio::test]
async fn many_messages_then_exit_without_closing_with_unread_data_is_peer_reset() {
    let exit = async |mut client: NetClient| {
        // The welcome and 2000 relays are unread in the client's receive buffer now.
        client.send("inputs 2000").await;
        client.send("exit").await;
        let status = client.wait_exit(PATIENCE).await;
        assert!(status.success(), "netclient exited on its own: {status}");
    };
    let inputs = ("inputs 2000", "sent");
    let allowed = [CloseReason::PeerReset];
    let (_, _, applied) =
        a_sender_that_never_reads_ends("leaver", inputs, 2000, exit, &allowed).await;
    assert!((2000..=4000).contains(&applied), "{applied} inputs applied");
    eprintln!("measured: exit with unread data: {applied} of 4000 inputs applied before the reset");
}

/// Field report, server side, case 4: a real client process streaming inputs is killed with
/// SIGKILL. It never reads, so the relays of its own inputs are unread in its receive buffer
/// and its kernel resets the connection: `peer_reset`. Had the kill landed mid-write with nothing
/// unread, the stream would end inside a frame: `truncated_frame`. Those two are allowed; a
/// clean `peer_eof` would mean the server mistook a crash for a goodbye.
#[tokio::test]
async fn client_killed_with_sigkill_while_sending_is_peer_reset_or_truncated_frame() {
    let kill = async |mut client: NetClient| client.kill().await;
    // 50 inputs every 5 ms: about 10,000 a second, until the kill.
    let streaming = ("every 5 50", "streaming");
    let allowed = [CloseReason::PeerReset, CloseReason::TruncatedFrame];
    let (reason, detected, applied) =
        a_sender_that_never_reads_ends("victim", streaming, 1000, kill, &allowed).await;
    eprintln!(
        "measured: SIGKILL while sending: {reason} counted within {detected:?}, {applied} inputs \
         applied"
    );
    assert!(
        detected < Duration::from_secs(2),
        "a killed client is noticed at once, not by a timeout: {detected:?}"
    );
}

/// Field report, server side, case 5: the client closes while the server is still sending (a
/// feeder in the room keeps the relays coming). The client reads what has arrived, then closes.
/// What the server records depends on what its socket sees first, and each is right:
/// - `broken_pipe`: the client's FIN arrived, the server wrote another relay, the client's kernel
///   (socket closed) answered with RST, and the next write failed with EPIPE: the report's case;
/// - `peer_reset`: a relay reached the client between its last read and its close, so its close
///   had unread data and sent RST instead of FIN (ECONNRESET);
/// - `peer_eof`: the server read the FIN before its next write.
///
/// Anything else (io_error, a timeout, two closes) fails, and the close must be counted at once.
#[tokio::test]
async fn client_closes_while_the_server_is_still_sending_is_broken_pipe_reset_or_eof() {
    let server = TestServer::start(many_messages).await;
    let mut feeder = NetClient::player(&[], server.addr, "feeder", &["--room", "busy"]);
    feeder.welcome().await;
    feeder.send("every 2 1").await;
    let mut outcomes = Vec::new();
    for round in 0..5 {
        let before = server.scrape().await;
        let closer = format!("closer-{round}");
        let (mut client, _) = RawClient::join_room(server.addr, &closer, "busy").await;
        relays_from(&mut client, "feeder", |m| {
            relay(m).is_some_and(|(from, _)| from == "feeder")
        })
        .await;
        let stream = client.framed.into_inner();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match stream.try_read(&mut buf) {
                Ok(0) => panic!("the server closed first"),
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("read failed before the close: {e}"),
            }
        }
        drop(stream);
        let closed = Instant::now();
        let allowed = [
            CloseReason::BrokenPipe,
            CloseReason::PeerReset,
            CloseReason::PeerEof,
        ];
        let reason = server.expect_one_close(&before, &allowed, PATIENCE).await;
        let detected = closed.elapsed();
        assert!(
            detected < Duration::from_secs(2),
            "noticed at once, not by a timeout: {detected:?}"
        );
        outcomes.push((reason, detected));
    }
    eprintln!("measured: close while the server sends: {outcomes:?}");
    // The feeder, whose relays were being written to every closer, plays on.
    feeder.send("ping 5").await;
    assert_eq!(feeder.expect("pong", PATIENCE).await, ["5"]);
    server.stop().await;
}
