//! The network changing under a live player, for real, in network namespaces: a handover (the
//! client's address changes mid-session, as a phone's does moving from Wi-Fi to mobile data) and
//! a middlebox that forgets the connection and answers it with resets (a NAT that lost its
//! mapping). In both the player resumes from where it is now and loses nothing, and nothing
//! turns it away. And a bad link that stays up: 10% of packets lost each way, on which the
//! server's defaults must cut no live player.
//!
//! Needs root, `ip` and, for the forgetful middlebox, `nft`: ignored (reported as not run) where
//! the build did not find them, a failure in CI.

use std::net::Ipv4Addr;
use std::time::Duration;

use game_engine::CloseReason;
use protocol::{ClientMessage, Welcome};
use system_tests::good::GoodPlayer;
use system_tests::netns::{Pair, connect_from_in, connect_in};
use system_tests::process::ServerProcess;
use system_tests::{
    PATIENCE, RawClient, RelayLog, Scrape, hello_in, input, need_tools, poll_until, resume_hello,
};

/// Heartbeat and idle timeout short enough for a test, a resume grace long enough for it.
const CONFIG: &str =
    "[session]\nheartbeat_interval = \"500ms\"\nidle_timeout = \"3s\"\nresume_grace = \"30s\"\n";

fn raw(stream: std::net::TcpStream) -> RawClient {
    RawClient::over(tokio::net::TcpStream::from_std(stream).expect("tokio stream"))
}

/// Input `seq`, carrying its number.
fn numbered(seq: u64) -> ClientMessage {
    input(seq, seq.to_be_bytes().to_vec())
}

/// Alice joins room `field` and plays inputs 1 to 10, each relayed back to her; she
/// acknowledges what she has seen.
async fn alice_plays(alice: &mut RawClient, seen: &mut RelayLog) -> Welcome {
    let welcome = alice.hello(hello_in("alice", "field")).await;
    for seq in 1..=10 {
        alice.send(numbered(seq)).await;
    }
    seen.read_until(alice, 10).await;
    alice
        .send(ClientMessage::Ack {
            seq: seen.last_event,
        })
        .await;
    welcome
}

/// Alice resumes on `alice` (a new connection) with her token, sends inputs 11 to 20 (those the
/// server did not apply yet) and checks that every relay of hers arrived exactly once.
async fn alice_resumes(alice: &mut RawClient, welcome: &Welcome, seen: &mut RelayLog) {
    let resumed = alice
        .hello(resume_hello(
            "alice",
            "",
            welcome.resume_token,
            seen.last_event,
        ))
        .await;
    assert!(resumed.resumed, "the session was resumed: {resumed:?}");
    assert_eq!(resumed.session_id, welcome.session_id);
    assert_eq!(resumed.room, "field");
    for seq in resumed.last_input_seq + 1..=20 {
        alice.send(numbered(seq)).await;
    }
    seen.read_until(alice, 20).await;
    seen.assert_exactly_once("alice", 20);
}

/// No connection was turned away, for any reason.
fn assert_nothing_refused(after: &Scrape, before: &Scrape) {
    let refused = after.rejection_deltas(before);
    assert!(
        refused.values().all(|n| *n == 0),
        "connections were refused: {refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(all(is_root, has_ip)),
    ignore = "needs root and ip: a real address change in network namespaces"
)]
async fn a_player_whose_address_changes_mid_session_resumes_from_the_new_one_and_loses_nothing() {
    let pair = Pair::new("handover");
    let server: ServerProcess = pair.start_server(CONFIG).await;
    let before = server.scrape().await;
    let mut alice = raw(connect_in(&pair.client_ns, server.addr));
    let mut seen = RelayLog::default();
    let welcome = alice_plays(&mut alice, &mut seen).await;

    // The handover: a new address on another network, the old one gone. Whatever she sends on
    // the old connection now cannot be answered.
    let new_ip = Ipv4Addr::new(
        10,
        202,
        pair.server_ip.octets()[2],
        pair.server_ip.octets()[3],
    );
    pair.move_client_to(new_ip);
    alice.send(numbered(11)).await;

    // She reconnects from the new address before the server noticed anything, and resumes.
    let mut moved = raw(connect_from_in(&pair.client_ns, new_ip, server.addr));
    alice_resumes(&mut moved, &welcome, &mut seen).await;
    let session = server.session_of("alice").await.expect("alice is live");
    assert!(
        session["peer"]
            .as_str()
            .is_some_and(|peer| peer.starts_with(&format!("{new_ip}:"))),
        "the server knows her new address: {session}"
    );

    // The old connection was replaced by the resume, the only close; nothing was refused.
    let after = poll_until("the old connection closed", PATIENCE, || async {
        let after = server.scrape().await;
        match after.close_deltas(&before).values().sum::<u64>() {
            1 => Ok(after),
            n => Err(format!("{n} closes: {:?}", after.close_deltas(&before))),
        }
    })
    .await;
    assert_eq!(
        after
            .close_deltas(&before)
            .get(CloseReason::Replaced.as_str()),
        Some(&1)
    );
    assert_eq!(after.get("gameserver_sessions_resumed_total", &[]), 1.0);
    assert_nothing_refused(&after, &before);
    drop(alice);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(all(is_root, has_ip, has_nft)),
    ignore = "needs root, ip and nft: a forgetful middlebox in network namespaces"
)]
async fn a_middlebox_that_forgets_the_connection_is_a_peer_reset_and_the_player_resumes() {
    let pair = Pair::new("natforget");
    need_tools(&["nft"], "nftables: a middlebox that forgets");
    let server: ServerProcess = pair.start_server(CONFIG).await;
    let before = server.scrape().await;
    let mut alice = raw(connect_in(&pair.client_ns, server.addr));
    let port = alice.stream().local_addr().expect("address").port();
    let mut seen = RelayLog::default();
    let welcome = alice_plays(&mut alice, &mut seen).await;

    // The middlebox forgets: the server's next heartbeat is answered with a reset, and so is
    // whatever the client sends.
    pair.forget_connection(port);
    let closed = poll_until("the server's close", PATIENCE, || async {
        let after = server.scrape().await;
        match after.close_deltas(&before).values().sum::<u64>() {
            0 => Err("no close yet".to_owned()),
            _ => Ok(after),
        }
    })
    .await;
    assert_eq!(
        closed.close_deltas(&before),
        [(CloseReason::PeerReset.as_str(), 1)].into_iter().collect(),
        "classified as the README says: a middlebox that lost the flow answered with RST"
    );
    assert_eq!(closed.get("gameserver_sessions_parked", &[]), 1.0);
    // The client learns it too: the reset ends its connection.
    alice.send(numbered(11)).await;
    let end = tokio::time::timeout(PATIENCE, async {
        loop {
            match alice.recv().await {
                Some(Ok(_)) => {}
                other => return other,
            }
        }
    })
    .await
    .expect("the client's connection ends");
    assert!(
        !matches!(end, Some(Ok(_))),
        "the forgotten connection ended for the client: {end:?}"
    );

    // A new connection passes the middlebox; she resumes and loses nothing.
    let mut again = raw(connect_in(&pair.client_ns, server.addr));
    alice_resumes(&mut again, &welcome, &mut seen).await;
    let after = server.scrape().await;
    assert_eq!(after.get("gameserver_sessions_resumed_total", &[]), 1.0);
    assert_nothing_refused(&after, &before);
}

/// Players on the lossy link; the links of the first `LOSSY_CUT` of them are then cut.
const LOSSY_PLAYERS: usize = 40;
const LOSSY_CUT: usize = 20;
/// How long they play on it.
const LOSSY_RUN: Duration = Duration::from_secs(60);
/// The embedded default idle timeout.
const DEFAULT_IDLE: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(all(is_root, has_ip, has_nft)),
    ignore = "needs root, ip and nft: a lossy link in network namespaces"
)]
async fn on_a_link_losing_ten_percent_each_way_the_defaults_cut_no_live_player_and_find_cut_ones() {
    let pair = Pair::new("lossy");
    need_tools(&["nft"], "nftables: a lossy link");
    // The embedded defaults: heartbeat 5 s, idle timeout 15 s, TCP keepalive and user timeout.
    let server: ServerProcess = pair.start_server("").await;
    pair.lose(10);
    let before = server.scrape().await;
    let mut players = Vec::new();
    let mut ports = Vec::new();
    for i in 0..LOSSY_PLAYERS {
        let client = raw(connect_in(&pair.client_ns, server.addr));
        ports.push(client.stream().local_addr().expect("address").port());
        players.push(GoodPlayer::start_over(client, &format!("lossy-{i}")).await);
    }
    tokio::time::sleep(LOSSY_RUN).await;
    // Not one session closed while every player was alive and playing.
    server
        .scrape()
        .await
        .assert_no_closes_since(&before, "every player played on the lossy link");

    // The links of half of them are cut; the server must find each within its idle timeout
    // (plus a margin for a loaded machine), and only them.
    let cut = std::time::Instant::now();
    pair.cut_ports(&ports[..LOSSY_CUT]);
    let found = poll_until(
        "every cut player found",
        DEFAULT_IDLE + PATIENCE,
        || async {
            let after = server.scrape().await;
            match after.close_deltas(&before).values().sum::<u64>() {
                n if n >= LOSSY_CUT as u64 => Ok(cut.elapsed()),
                n => Err(format!("{n} closes: {:?}", after.close_deltas(&before))),
            }
        },
    )
    .await;
    let mut latencies = Vec::new();
    let (mut sent, mut relayed) = (0, 0);
    for (i, player) in players.into_iter().enumerate() {
        let outcome = player.finish().await;
        if i < LOSSY_CUT {
            continue;
        }
        assert!(
            outcome.ended.is_none(),
            "player {i} was cut while alive and playing: {:?}",
            outcome.ended
        );
        sent += outcome.sent;
        relayed += outcome.relayed;
        latencies.extend(outcome.latencies);
    }
    latencies.sort();
    let at = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize];
    eprintln!(
        "measured: 10% loss each way, {LOSSY_PLAYERS} players for {LOSSY_RUN:?}: no false \
         disconnect; the {LOSSY_CUT} cut links all found {found:?} after the cut; the others' \
         {relayed} of {sent} inputs relayed back, input-to-relay p50 {:?}, p99 {:?}, max {:?}",
        at(0.5),
        at(0.99),
        at(1.0)
    );
    assert!(
        found <= DEFAULT_IDLE + Duration::from_secs(2),
        "the cut links were found {found:?} after the cut"
    );
    assert!(
        relayed as f64 >= sent as f64 * 0.95,
        "{relayed} of {sent} inputs came back"
    );
    let after = poll_until("every player's close", PATIENCE * 3, || async {
        let after = server.scrape().await;
        match after.close_deltas(&before).values().sum::<u64>() {
            n if n >= LOSSY_PLAYERS as u64 => Ok(after),
            n => Err(format!("{n} closes: {:?}", after.close_deltas(&before))),
        }
    })
    .await;
    assert_eq!(
        after.close_deltas(&before),
        [
            (CloseReason::IdleTimeout.as_str(), LOSSY_CUT as u64),
            (
                CloseReason::ClientQuit.as_str(),
                (LOSSY_PLAYERS - LOSSY_CUT) as u64
            ),
        ]
        .into_iter()
        .collect(),
        "the cut ones timed out, the rest quit: no false disconnect"
    );
}
