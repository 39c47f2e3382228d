//! Session resume across a real pulled cable: the cable stays out long enough for the server to
//! reap the session (idle_timeout), events keep coming for the player meanwhile, and after the
//! cable is plugged back the player resumes on a new connection and loses nothing.
//!
//! Needs root and `ip` (network namespaces): ignored (reported as not run) where the build did
//! not find them, a failure in CI.

use std::time::Duration;

use bytes::Bytes;
use game_engine::CloseReason;
use protocol::{ClientCodec, ClientMessage, Hello, Resume};
use system_tests::netns::{Pair, connect_in};
use system_tests::{PATIENCE, RawClient, RelayLog, hello};
use tokio_util::codec::Framed;

fn client_in(ns: &str, addr: std::net::SocketAddr) -> RawClient {
    let stream = tokio::net::TcpStream::from_std(connect_in(ns, addr)).expect("tokio stream");
    RawClient {
        framed: Framed::new(stream, ClientCodec::default()),
    }
}

fn in_room(player: &str, room: &str, resume: Option<Resume>) -> ClientMessage {
    match hello(player) {
        ClientMessage::Hello(h) => ClientMessage::Hello(Box::new(Hello {
            room: room.into(),
            resume,
            ..*h
        })),
        _ => unreachable!(),
    }
}

fn input(seq: u64) -> ClientMessage {
    ClientMessage::Input {
        seq,
        payload: Bytes::from(seq.to_be_bytes().to_vec()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(all(is_root, has_ip)),
    ignore = "needs root and ip: a real pulled cable in network namespaces"
)]
async fn a_player_whose_cable_was_out_until_the_session_was_reaped_resumes_and_loses_nothing() {
    let pair = Pair::new("resume");
    let server = pair
        .start_server(
            "[session]\nheartbeat_interval = \"500ms\"\nidle_timeout = \"2s\"\nresume_grace = \"30s\"\n",
        )
        .await;
    let before = server.scrape().await;

    // Alice plays from the client namespace.
    let mut alice = client_in(&pair.client_ns, server.addr);
    let welcome = alice.hello(in_room("alice", "field", None)).await;
    let mut seen = RelayLog::default();
    for seq in 1..=10 {
        alice.send(input(seq)).await;
    }
    seen.read_until(&mut alice, 10).await;
    alice
        .send(ClientMessage::Ack {
            seq: seen.last_event,
        })
        .await;

    // The cable goes. Alice keeps sending into the void; the server reaps her session.
    pair.pull_cable();
    for seq in 11..=20 {
        alice.send(input(seq)).await;
    }
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let scrape = server.scrape().await;
        if scrape.get("gameserver_sessions_parked", &[]) == 1.0 {
            assert_eq!(scrape.close_deltas(&before).get("idle_timeout"), Some(&1));
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the session was never parked"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // While she is away, Bob joins her room from inside the server's namespace (untouched by the
    // cable); his inputs are relayed to her parked session too. Then he quits.
    let mut bob = client_in(&pair.server_ns, server.addr);
    bob.hello(in_room("bob", "field", None)).await;
    let mut bob_seen = RelayLog::default();
    for seq in 1..=15 {
        bob.send(input(seq)).await;
    }
    bob_seen.read_until(&mut bob, 15).await;
    bob.send(ClientMessage::Bye(protocol::Bye::new(
        protocol::ByeCode::ClientQuit,
        "",
    )))
    .await;
    bob.until_bye().await;
    drop(bob);

    // The cable comes back; Alice reconnects with her token and resumes.
    pair.plug_cable();
    drop(alice);
    let mut alice = client_in(&pair.client_ns, server.addr);
    let resumed = alice
        .hello(in_room(
            "alice",
            "",
            Some(Resume {
                token: welcome.resume_token,
                last_event_seq: seen.last_event,
            }),
        ))
        .await;
    assert!(resumed.resumed, "the parked session was resumed");
    assert_eq!(resumed.session_id, welcome.session_id);
    assert_eq!(resumed.room, "field");
    assert_eq!(
        resumed.last_input_seq, 10,
        "inputs sent into the pulled cable were never applied"
    );
    for seq in resumed.last_input_seq + 1..=20 {
        alice.send(input(seq)).await;
    }
    seen.read_until(&mut alice, 35).await;
    seen.assert_exactly_once("alice", 20);
    // Every event sent while she was away arrived, once.
    seen.assert_exactly_once("bob", 15);
    let after = server.scrape().await;
    assert_eq!(after.get("gameserver_sessions_resumed_total", &[]), 1.0);
    assert_eq!(
        after.closed(CloseReason::IdleTimeout) - before.closed(CloseReason::IdleTimeout),
        1
    );
}
