//! SIGTERM against the real `game-server` binary: the drain delivers every event queued before
//! the signal, then `Bye{server_shutdown}`, then EOF, and the process exits 0 within
//! `shutdown.drain_timeout`. Readiness turns 503 while it drains.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use protocol::{ByeCode, ClientMessage, Hello, ServerMessage};
use rooms::payload::DemoEvent;
use system_tests::process::ServerProcess;
use system_tests::{PATIENCE, RawClient};

const PLAYERS: usize = 40;
const INPUTS: u64 = 300;
/// 300 relays of 2 KB: more than a loopback socket buffers, so part of every player's backlog
/// is still in the server's own queue when the signal arrives.
const PAYLOAD: usize = 2000;
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

fn join_room(player: &str) -> ClientMessage {
    ClientMessage::Hello(Box::new(Hello::new(player, "drain")))
}

/// Forty players and a feeder share a room. The feeder sends 300 inputs; the players read
/// nothing, so 600 KB of relays per player sit in the server's queues and the socket buffers when
/// SIGTERM arrives (the write timeout is raised so that this backlog is not a slow consumer). Then the players read: each must get all 300 relays in order, the Bye, and a clean
/// EOF, and the process must exit 0 well within the drain timeout.
#[tokio::test]
async fn sigterm_drains_every_queued_event_then_says_bye_and_exits_zero() {
    let mut server = ServerProcess::loopback(&format!(
        "[session]\nrate_limit_per_sec = 100000\nrate_limit_burst = 100000\n\
         write_timeout = \"20s\"\n[shutdown]\ndrain_timeout = \"{}s\"\n",
        DRAIN_TIMEOUT.as_secs()
    ))
    .await;
    let mut players = Vec::new();
    for i in 0..PLAYERS {
        let mut client = RawClient::connect(server.addr).await;
        client.hello(join_room(&format!("player-{i}"))).await;
        players.push(client);
    }
    let mut feeder = RawClient::connect(server.addr).await;
    feeder.hello(join_room("feeder")).await;
    let payload = Bytes::from(vec![7u8; PAYLOAD]);
    for seq in 1..=INPUTS {
        feeder
            .send(ClientMessage::Input {
                seq,
                payload: payload.clone(),
            })
            .await;
    }
    // The feeder's own relay of its last input means the game has queued that relay for every
    // member of the room: everything the players must receive is queued before the signal.
    let mut echoed = 0;
    while echoed < INPUTS {
        match feeder.recv().await {
            Some(Ok(ServerMessage::Event { payload, .. })) => {
                if let Ok(DemoEvent::Relay { from, .. }) = DemoEvent::from_bytes(payload)
                    && from == "feeder"
                {
                    echoed += 1;
                }
            }
            Some(Ok(_)) => {}
            other => panic!("feeder lost its session: {other:?}"),
        }
    }
    assert_eq!(server.http("GET", "/readyz").await.0, 200);
    let log_mark = server.log_mark();

    let signalled = Instant::now();
    server.signal("TERM");
    // Nobody has read or closed yet, so the drain cannot have finished: readiness must say 503.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (status, _) = server.http("GET", "/readyz").await;
        if status == 503 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz still {status} after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let readers = players.into_iter().enumerate().map(|(i, mut client)| {
        tokio::spawn(async move {
            let (messages, bye) = client.until_bye().await;
            let relays: Vec<u64> = messages
                .into_iter()
                .filter_map(|m| match m {
                    ServerMessage::Event { payload, .. } => match DemoEvent::from_bytes(payload) {
                        Ok(DemoEvent::Relay {
                            from, input_seq, ..
                        }) if from == "feeder" => Some(input_seq),
                        _ => None,
                    },
                    _ => None,
                })
                .collect();
            let end = client.until_end().await;
            (i, relays, bye.code, end.map(|e| e.to_string()))
        })
    });
    let mut outcomes = HashMap::new();
    for reader in readers {
        let (i, relays, code, end) = reader.await.expect("reader task");
        let expected: Vec<u64> = (1..=INPUTS).collect();
        assert_eq!(
            relays, expected,
            "player {i} got every relay queued before SIGTERM, in order"
        );
        assert_eq!(code, ByeCode::ServerShutdown, "player {i}");
        assert_eq!(end, None, "player {i}: a clean EOF follows the Bye");
        *outcomes.entry(code).or_insert(0) += 1;
    }
    let (_, bye) = feeder.until_bye().await;
    assert_eq!(bye.code, ByeCode::ServerShutdown);
    drop(feeder);

    let status = server.wait_exit(DRAIN_TIMEOUT + PATIENCE).await;
    let took = signalled.elapsed();
    assert!(
        status.success(),
        "the server exits 0 after a drain: {status}"
    );
    assert!(
        took < DRAIN_TIMEOUT,
        "the drain finished on its own ({took:?}), not by the {DRAIN_TIMEOUT:?} timeout"
    );
    let closes: Vec<serde_json::Value> = server.logs.all()[log_mark..]
        .iter()
        .filter(|l| system_tests::process::message(l).as_deref() == Some("session closed"))
        .map(|l| system_tests::process::fields(l))
        .collect();
    assert_eq!(closes.len(), PLAYERS + 1, "one close per session");
    for close in &closes {
        assert_eq!(close["reason"], "server_shutdown", "{close}");
        assert_eq!(close["forced"], false, "nothing was cut short: {close}");
    }
    eprintln!(
        "drain: {} sessions, {INPUTS} queued relays each, process exited after {took:?}",
        PLAYERS + 1
    );
}
