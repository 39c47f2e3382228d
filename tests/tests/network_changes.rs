//! The network changing under a live player, for real, in network namespaces: a handover (the
//! client's address changes mid-session, as a phone's does moving from Wi-Fi to mobile data) and
//! a middlebox that forgets the connection and answers it with resets (a NAT that lost its
//! mapping). In both the player resumes from where it is now and loses nothing, and nothing
//! turns it away. And bad links that stay up (see `system_tests::profile`): 10% of packets lost
//! each way, on which the server's defaults must cut no live player, and a congested mobile link
//! with a second-deep queue and loss, on which the recommended 3 s idle timeout must not either;
//! and the loss grace, which spares a silent client whose kernel still answers over a lossy path
//! and no one else.
//!
//! Needs root, `ip`, `nft` and `tc`: ignored (reported as not run) where the build did not find
//! them, a failure in CI.

use std::net::Ipv4Addr;
use std::time::Duration;

use game_engine::CloseReason;
use protocol::{ClientMessage, Welcome};
use system_tests::netns::{Pair, connect_from_in, connect_in};
use system_tests::process::ServerProcess;
use system_tests::profile::{self, Row, Settings, Size};
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
    // The client learns it too: the reset ends its connection. Its kernel may have learnt it
    // already, when its own acknowledgement of the server's last frames met the middlebox: then
    // this write is refused with the reset.
    let end = match alice.try_send(numbered(11)).await {
        Err(error) => Some(Err(error)),
        Ok(()) => tokio::time::timeout(PATIENCE, async {
            loop {
                match alice.recv().await {
                    Some(Ok(_)) => {}
                    other => return other,
                }
            }
        })
        .await
        .expect("the client's connection ends"),
    };
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

/// Heartbeat, idle timeout and loss grace of the loss-grace test.
const GRACE_CONFIG: &str = "[session]\nheartbeat_interval = \"1s\"\nidle_timeout = \"4s\"\nloss_grace = \"4s\"\nresume_grace = \"30s\"\n";

/// Joins as `player`, sends one input and reads its relay: the session is live and the last
/// thing the server heard is now. Returns the connection, its port and when the input went.
async fn join_and_fall_silent(
    pair: &Pair,
    server: &ServerProcess,
    player: &str,
) -> (RawClient, u16, std::time::Instant) {
    let mut client = raw(connect_in(&pair.client_ns, server.addr));
    let port = client.stream().local_addr().expect("address").port();
    client.hello(hello_in(player, &format!("r-{player}"))).await;
    client.send(numbered(1)).await;
    let mut seen = RelayLog::default();
    seen.read_until(&mut client, 1).await;
    (client, port, std::time::Instant::now())
}

/// Waits for the next close of reason `reason` after `before`; returns the time since `since`.
async fn closed_after(
    server: &ServerProcess,
    before: &Scrape,
    reason: CloseReason,
    since: std::time::Instant,
) -> Duration {
    poll_until("the close", PATIENCE * 2, || async {
        let after = server.scrape().await;
        match after.close_deltas(before).get(reason.as_str()) {
            Some(n) if *n >= 1 => Ok(since.elapsed()),
            _ => Err(format!("closes so far: {:?}", after.close_deltas(before))),
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(all(is_root, has_ip, has_nft)),
    ignore = "needs root, ip and nft: packet loss in network namespaces"
)]
async fn the_loss_grace_spares_a_reachable_client_on_a_lossy_path_and_no_one_else() {
    need_tools(&["nft"], "nftables: packet loss");
    let pair = Pair::new("grace");
    let server: ServerProcess = pair.start_server(GRACE_CONFIG).await;
    let idle = Duration::from_secs(4);
    let grace = Duration::from_secs(4);
    let graces = |s: &Scrape| s.raw("gameserver_loss_grace_total");

    // A client that stops talking on a clean path (its kernel still answers): cut at the idle
    // timeout, no grace.
    let before = server.scrape().await;
    let (_quiet, _, since) = join_and_fall_silent(&pair, &server, "quiet").await;
    let took = closed_after(&server, &before, CloseReason::IdleTimeout, since).await;
    let after = server.scrape().await;
    assert_eq!(
        graces(&after) - graces(&before),
        0.0,
        "no grace on a clean path"
    );
    assert!(
        took < idle + grace / 2,
        "the quiet client was cut {took:?} after it fell silent"
    );

    // The same on a path that just lost packets: the server's pings to it were dropped for two
    // seconds (so the server retransmitted), then got through and were acknowledged. Its
    // silence may be TCP backing off: the server grants the grace once, then cuts it.
    let before = server.scrape().await;
    let (_lossy, port, since) = join_and_fall_silent(&pair, &server, "lossy").await;
    pair.drop_port("gs_grace", port, true, false);
    tokio::time::sleep(Duration::from_millis(2200)).await;
    pair.remove_table("gs_grace");
    let took = closed_after(&server, &before, CloseReason::IdleTimeout, since).await;
    let after = server.scrape().await;
    assert_eq!(
        graces(&after) - graces(&before),
        1.0,
        "one grace for the lossy path"
    );
    assert!(
        took >= idle + grace - Duration::from_millis(500) && took < idle + grace + PATIENCE,
        "the lossy client was cut {took:?} after it fell silent (idle {idle:?} + grace {grace:?})"
    );

    // A pulled cable: the server retransmits its pings into it (the path loses packets), but
    // nothing is acknowledged after the first heartbeat of the silence, so no grace: found at
    // the idle timeout.
    let before = server.scrape().await;
    let (_cut, port, since) = join_and_fall_silent(&pair, &server, "cut").await;
    pair.cut_ports(&[port]);
    let took = closed_after(&server, &before, CloseReason::IdleTimeout, since).await;
    let after = server.scrape().await;
    assert_eq!(
        graces(&after) - graces(&before),
        0.0,
        "no grace for a pulled cable"
    );
    assert!(
        took < idle + grace / 2,
        "the cut client was found {took:?} after it fell silent"
    );
}

/// Runs `profile` with `settings` at 40 players for a minute, 20 of whose links are then cut,
/// and checks what issue 29 asks of every profile up to 10% loss: no live player cut, every cut
/// link found within the idle timeout plus 2 s, nothing lost or repeated.
async fn no_live_player_cut_on(profile: &str, settings: Settings) {
    need_tools(&["nft", "tc"], "nftables and tc: a shaped link");
    let profile = profile::profile(profile).expect("a profile");
    let size = Size {
        players: 40,
        play: Duration::from_secs(60),
        cut: 20,
    };
    let row = profile::run(&profile, &settings, size).await;
    eprintln!("measured:\n{}\n{}", Row::header(), row.markdown());
    assert_eq!(
        row.false_total(),
        0,
        "live players were cut: {:?} ({} resumes)",
        row.false_disconnects,
        row.resumes
    );
    assert_eq!(row.resumes, 0, "a live player had to resume");
    assert_eq!(row.undetected, 0, "cut links the server never found");
    let slowest = row.detection.last().copied().expect("detections");
    assert!(
        slowest <= settings.idle_timeout + Duration::from_secs(2),
        "a cut link was found {slowest:?} after the cut (idle timeout {:?})",
        settings.idle_timeout
    );
    assert!(
        slowest >= settings.idle_timeout - Duration::from_secs(1),
        "a cut link was closed {slowest:?} after the cut, before the idle timeout could pass"
    );
    assert_eq!(
        (row.lost, row.duplicated),
        (0, 0),
        "inputs lost or relayed twice"
    );
    assert!(
        row.sent >= 20 * 50,
        "the players hardly played: {} inputs",
        row.sent
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(all(is_root, has_ip, has_nft, has_tc)),
    ignore = "needs root, ip, nft and tc: a lossy link in network namespaces"
)]
async fn on_a_link_losing_ten_percent_each_way_the_defaults_cut_no_live_player_and_find_cut_ones() {
    no_live_player_cut_on("loss10", Settings::defaults()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(all(is_root, has_ip, has_nft, has_tc)),
    ignore = "needs root, ip, nft and tc: a congested link in network namespaces"
)]
async fn on_a_congested_mobile_link_the_recommended_three_second_timeout_cuts_no_live_player() {
    let mobile = profile::profile("mobile").expect("the mobile profile");
    no_live_player_cut_on("mobile", profile::recommended(&mobile)).await;
}
