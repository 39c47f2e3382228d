//! The field report's pulled cable, for real: the `game-server` binary runs in one network
//! namespace, the client in another, joined by a veth pair, and the test pulls the client's
//! cable (link down, or an nftables drop that leaves the link up). Loopback cannot show any of
//! this: a stopped peer's kernel on loopback still acknowledges everything.
//!
//! Needs root, `ip`, `ss` and `nft`: ignored (reported as not run) where the build did not find
//! them, a failure in CI. Each test has its own namespaces, removed when the test ends, pass or
//! fail.

use std::time::{Duration, Instant};

use game_engine::CloseReason;
use system_tests::netns::Pair;
use system_tests::process::{NetClient, ServerProcess, ServerSpec};
use system_tests::{Metrics, PATIENCE, has_tool, is_root, need};

/// Slack for a loaded 2-core machine on top of a configured timeout.
const MARGIN: Duration = Duration::from_secs(2);

/// How the cable is pulled.
#[derive(Debug, Clone, Copy)]
enum Cable {
    /// `ip link set down` on the client's side: the server may hear EHOSTUNREACH.
    LinkDown,
    /// nftables drops every packet on the client's interface; the link stays up, so only
    /// timeouts can notice.
    Firewall,
}

/// The namespaces.
fn namespaces(tag: &str, cable: Cable) -> Pair {
    need(is_root(), "pulling a cable needs root (network namespaces)");
    need(
        has_tool("ip") && has_tool("ss"),
        "pulling a cable needs `ip` and `ss` (iproute2)",
    );
    if matches!(cable, Cable::Firewall) {
        need(has_tool("nft"), "dropping packets needs `nft` (nftables)");
    }
    Pair::new(tag)
}

fn pull(pair: &Pair, cable: Cable) -> Instant {
    match cable {
        Cable::LinkDown => pair.pull_cable(),
        Cable::Firewall => pair.drop_packets(),
    }
    Instant::now()
}

fn prefix(ns: &str) -> [&str; 4] {
    ["ip", "netns", "exec", ns]
}

async fn start_server(pair: &Pair, config: &str) -> ServerProcess {
    ServerProcess::start(ServerSpec::in_namespace(
        &pair.server_ns,
        pair.server_ip,
        config,
    ))
    .await
}

/// A client in the client namespace.
fn client(pair: &Pair, server: &ServerProcess, player: &str, extra: &[&str]) -> NetClient {
    let addr = server.addr.to_string();
    let mut args = vec!["--server", &addr, "--player", player];
    args.extend_from_slice(extra);
    NetClient::spawn(&prefix(&pair.client_ns), &args)
}

/// Waits until the server's end of the game connection has nothing in flight, so that its kernel
/// runs the keepalive timer (`ss` shows `timer:(keepalive,...)`) rather than the retransmission
/// timer. While the server has unacknowledged data (the Welcome, or the room's first state event a
/// tick later), keepalive does nothing: a cable pulled then is a different case (case 6).
async fn keepalive_armed(pair: &Pair) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let output = tokio::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                &pair.server_ns,
                "ss",
                "-tnoH",
                "state",
                "established",
            ])
            .output()
            .await
            .expect("run ss");
        let text = String::from_utf8_lossy(&output.stdout);
        let connections: Vec<&str> = text
            .lines()
            .filter(|l| l.contains(&pair.client_ip.to_string()))
            .collect();
        if connections.len() == 1 && connections[0].contains("timer:(keepalive") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the server's keepalive timer never armed: {text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn errno_of(close: &serde_json::Value) -> String {
    close["detail"].as_str().unwrap_or_default().to_owned()
}

/// Field report, server side, case 1 with the application heartbeat: the cable is pulled on an
/// idle connection, then the client dies. Nothing reaches the server; the heartbeat watchdog
/// ends the session as `idle_timeout` about `session.idle_timeout` after the last pong.
#[tokio::test]
#[cfg_attr(
    not(all(is_root, has_ip, has_ss, has_nft)),
    ignore = "needs root, ip, ss and nft: real pulled cables in network namespaces"
)]
async fn cable_pulled_then_client_dies_idle_heartbeat_reports_idle_timeout() {
    let pair = namespaces("idle-hb", Cable::Firewall);
    let heartbeat = Duration::from_millis(500);
    let idle = Duration::from_secs(3);
    // Keepalive and the user timeout are far away, so only the watchdog can notice.
    let server = start_server(
        &pair,
        "[session]\nheartbeat_interval = \"500ms\"\nidle_timeout = \"3s\"\n\
         [tcp]\nkeepalive_idle = \"60s\"\nuser_timeout = \"60s\"\n",
    )
    .await;
    let mut player = client(&pair, &server, "unplugged", &[]);
    player.welcome().await;
    // The heartbeat works before the pull: a ping arrives and netclient answers it.
    player.expect("ping", PATIENCE).await;
    let before = server.scrape().await;
    let mark = server.log_mark();

    let pulled = pull(&pair, Cable::Firewall);
    player.kill().await;
    let (_, close) = server.next_close(mark, idle + MARGIN).await;
    let detected = pulled.elapsed();
    server.expect_close(&before, CloseReason::IdleTimeout).await;
    let detect_ms = close["detect_ms"].as_u64().expect("detect_ms");
    eprintln!(
        "measured: idle heartbeat: pull -> close {detected:?}, server detect {detect_ms} ms ({})",
        errno_of(&close)
    );
    assert_eq!(close["reason"], "idle_timeout", "{close}");
    // The last pong came at most one heartbeat before the pull.
    assert!(
        detected + heartbeat + Duration::from_millis(100) >= idle,
        "closed too early: {detected:?} after the pull"
    );
    assert!(
        detected <= idle + MARGIN,
        "closed too late: {detected:?} after the pull"
    );
    assert!(
        (idle.as_millis() as u64..idle.as_millis() as u64 + 1000).contains(&detect_ms),
        "the server measured {detect_ms} ms from the last frame to the close"
    );
}

/// Field report, server side, case 1 with the application heartbeat off
/// (`session.heartbeat_interval = "0s"`, idle timeout far away): TCP keepalive (idle 1 s,
/// interval 1 s, 3 probes) is what notices, and the session ends as `tcp_timeout`.
/// `tcp.user_timeout` is 0 here: when set, Linux ends keepalive probing by the user timeout and
/// ignores the probe count.
async fn keepalive_detects_a_pulled_cable(cable: Cable, tag: &str) {
    let pair = namespaces(tag, cable);
    let (idle, interval, count) = (1u64, 1u64, 3u64);
    let server = start_server(
        &pair,
        &format!(
            "[session]\nheartbeat_interval = \"0s\"\nidle_timeout = \"60s\"\n\
             [tcp]\nkeepalive_idle = \"{idle}s\"\nkeepalive_interval = \"{interval}s\"\n\
             keepalive_count = {count}\nuser_timeout = \"0s\"\n"
        ),
    )
    .await;
    let mut player = client(&pair, &server, "unplugged", &[]);
    player.welcome().await;
    // The room's state event follows the Welcome on the next tick; then nothing more is sent.
    player.expect("state", PATIENCE).await;
    keepalive_armed(&pair).await;
    let before = server.scrape().await;
    let mark = server.log_mark();

    let pulled = pull(&pair, cable);
    player.kill().await;
    let silent = Duration::from_secs(idle + count * interval);
    let (_, close) = server.next_close(mark, silent + MARGIN).await;
    let detected = pulled.elapsed();
    server.expect_close(&before, CloseReason::TcpTimeout).await;
    let detect_ms = close["detect_ms"].as_u64().expect("detect_ms");
    let detail = errno_of(&close);
    eprintln!(
        "measured: keepalive ({cable:?}): pull -> close {detected:?}, server detect {detect_ms} ms ({detail})"
    );
    assert_eq!(close["reason"], "tcp_timeout", "{close}");
    assert!(
        detail.contains("os error 110") || detail.contains("os error 113"),
        "ETIMEDOUT or EHOSTUNREACH: {detail}"
    );
    // The last segment the client acknowledged was at most one probe interval before the pull;
    // the kernel gives up `count` unanswered probes later.
    assert!(
        detected + Duration::from_secs(interval) + Duration::from_millis(500) >= silent,
        "closed too early: {detected:?} after the pull"
    );
    assert!(
        detected <= silent + MARGIN,
        "closed too late: {detected:?} after the pull"
    );
    // The last frame was the Hello, before the pull: at least the whole keepalive budget.
    assert!(
        detect_ms + 200 >= silent.as_millis() as u64,
        "server detect {detect_ms} ms"
    );
}

#[tokio::test]
#[cfg_attr(
    not(all(is_root, has_ip, has_ss, has_nft)),
    ignore = "needs root, ip, ss and nft: real pulled cables in network namespaces"
)]
async fn cable_pulled_then_client_dies_idle_keepalive_reports_tcp_timeout_link_down() {
    keepalive_detects_a_pulled_cable(Cable::LinkDown, "ka-link").await;
}

#[tokio::test]
#[cfg_attr(
    not(all(is_root, has_ip, has_ss, has_nft)),
    ignore = "needs root, ip, ss and nft: real pulled cables in network namespaces"
)]
async fn cable_pulled_then_client_dies_idle_keepalive_reports_tcp_timeout_firewall() {
    keepalive_detects_a_pulled_cable(Cable::Firewall, "ka-nft").await;
}

/// The shipped TCP defaults with the heartbeat off: keepalive starts probing after
/// `keepalive_idle` (10 s) every `keepalive_interval` (5 s), but because `tcp.user_timeout` (30 s)
/// is set, Linux gives up at the first probe time at which the peer has been silent for the user
/// timeout, not after `keepalive_count` (3) probes: about 30 s, where the count alone would give
/// 10 + 3 × 5 = 25 s.
#[tokio::test]
#[cfg_attr(
    not(all(is_root, has_ip, has_ss, has_nft)),
    ignore = "needs root, ip, ss and nft: real pulled cables in network namespaces"
)]
async fn with_the_default_tcp_settings_the_user_timeout_decides_keepalive_detection() {
    let pair = namespaces("ka-default", Cable::Firewall);
    let tcp = game_engine::Config::default().tcp;
    let server = start_server(
        &pair,
        "[session]\nheartbeat_interval = \"0s\"\nidle_timeout = \"120s\"\n",
    )
    .await;
    let mut player = client(&pair, &server, "unplugged", &[]);
    player.welcome().await;
    player.expect("state", PATIENCE).await;
    keepalive_armed(&pair).await;
    let before = server.scrape().await;
    let mark = server.log_mark();

    let pulled = pull(&pair, Cable::Firewall);
    player.kill().await;
    // The first probe time (idle + k × interval, at least one probe sent) at or after the user
    // timeout.
    let mut expected = tcp.keepalive_idle + tcp.keepalive_interval;
    while expected < tcp.user_timeout {
        expected += tcp.keepalive_interval;
    }
    let by_count = tcp.keepalive_idle + tcp.keepalive_interval * tcp.keepalive_count;
    let (_, close) = server
        .next_close(mark, expected + tcp.keepalive_interval + MARGIN)
        .await;
    let detected = pulled.elapsed();
    server.expect_close(&before, CloseReason::TcpTimeout).await;
    eprintln!(
        "measured: default keepalive {:?}/{:?}/{} with user timeout {:?}: pull -> close {detected:?} \
         (probe count alone: {by_count:?}; {})",
        tcp.keepalive_idle,
        tcp.keepalive_interval,
        tcp.keepalive_count,
        tcp.user_timeout,
        errno_of(&close)
    );
    assert_eq!(close["reason"], "tcp_timeout", "{close}");
    assert!(
        by_count + MARGIN < expected,
        "the defaults no longer tell the rules apart"
    );
    assert!(
        detected + MARGIN >= expected,
        "closed by the probe count, not the user timeout: {detected:?} after the pull"
    );
    assert!(
        detected <= expected + tcp.keepalive_interval + MARGIN,
        "closed too late: {detected:?} after the pull"
    );
}

/// Field report, server side, case 6: the server is writing to a client whose cable is pulled.
/// A feeder in the same room (connected from inside the server's namespace, so it keeps its
/// link) sends an input every 100 ms; each one is relayed to the unplugged client and sits
/// unacknowledged in the server's send queue. Keepalive never runs while data is outstanding;
/// TCP_USER_TIMEOUT (3 s) ends the connection as `tcp_timeout` (ETIMEDOUT, or EHOSTUNREACH after
/// a link down). The heartbeat is off and the idle timeout far away, so nothing else can.
async fn user_timeout_detects_a_pulled_cable_while_writing(cable: Cable, tag: &str) {
    let pair = namespaces(tag, cable);
    let user_timeout = Duration::from_secs(3);
    let server = start_server(
        &pair,
        "[session]\nheartbeat_interval = \"0s\"\nidle_timeout = \"60s\"\nwrite_timeout = \"2s\"\n\
         [tcp]\nkeepalive_idle = \"60s\"\nuser_timeout = \"3s\"\n",
    )
    .await;
    let mut player = client(&pair, &server, "unplugged", &["--room", "busy"]);
    player.welcome().await;
    let addr = server.addr.to_string();
    let mut feeder = NetClient::spawn(
        &prefix(&pair.server_ns),
        &["--server", &addr, "--player", "feeder", "--room", "busy"],
    );
    feeder.welcome().await;
    feeder.send("every 100 1").await;
    // The relays reach the player before the pull.
    player.expect("relay", PATIENCE).await;
    let before = server.scrape().await;
    let mark = server.log_mark();

    let pulled = pull(&pair, cable);
    let (_, close) = server.next_close(mark, user_timeout + MARGIN).await;
    let detected = pulled.elapsed();
    server.expect_close(&before, CloseReason::TcpTimeout).await;
    let detail = errno_of(&close);
    eprintln!(
        "measured: user timeout while writing ({cable:?}): pull -> close {detected:?}, \
         server detect {} ms ({detail})",
        close["detect_ms"]
    );
    assert_eq!(close["reason"], "tcp_timeout", "{close}");
    assert_eq!(close["player"], "unplugged", "{close}");
    assert!(
        detail.contains("os error 110") || detail.contains("os error 113"),
        "ETIMEDOUT or EHOSTUNREACH: {detail}"
    );
    // The first unacknowledged relay left at most 100 ms after the pull.
    assert!(
        detected + Duration::from_millis(200) >= user_timeout,
        "closed too early: {detected:?} after the pull"
    );
    assert!(
        detected <= user_timeout + MARGIN,
        "closed too late: {detected:?} after the pull"
    );
    // The feeder, on the other side of the server, plays on.
    feeder.send("ping 77").await;
    assert_eq!(feeder.expect("pong", PATIENCE).await, ["77"]);
}

#[tokio::test]
#[cfg_attr(
    not(all(is_root, has_ip, has_ss, has_nft)),
    ignore = "needs root, ip, ss and nft: real pulled cables in network namespaces"
)]
async fn cable_pulled_while_the_server_writes_user_timeout_reports_tcp_timeout_link_down() {
    user_timeout_detects_a_pulled_cable_while_writing(Cable::LinkDown, "ut-link").await;
}

#[tokio::test]
#[cfg_attr(
    not(all(is_root, has_ip, has_ss, has_nft)),
    ignore = "needs root, ip, ss and nft: real pulled cables in network namespaces"
)]
async fn cable_pulled_while_the_server_writes_user_timeout_reports_tcp_timeout_firewall() {
    user_timeout_detects_a_pulled_cable_while_writing(Cable::Firewall, "ut-nft").await;
}

/// Field report, server side, case 7: the cable is pulled and plugged back before any timeout.
/// The session survives: same session id, an input sent during the outage arrives once the link
/// is back, play continues, and no close is counted.
#[tokio::test]
#[cfg_attr(
    not(all(is_root, has_ip, has_ss, has_nft)),
    ignore = "needs root, ip, ss and nft: real pulled cables in network namespaces"
)]
async fn cable_pulled_and_plugged_back_before_any_timeout_the_session_survives() {
    let pair = namespaces("replug", Cable::LinkDown);
    let server = start_server(
        &pair,
        "[session]\nheartbeat_interval = \"500ms\"\nidle_timeout = \"6s\"\n",
    )
    .await;
    let mut player = client(&pair, &server, "replugged", &[]);
    let session = player.welcome().await;
    player.expect("ping", PATIENCE).await;
    let before = server.scrape().await;

    pull(&pair, Cable::LinkDown);
    // Written into the kernel during the outage; delivered by retransmission afterwards.
    player.send("inputs 1").await;
    player.expect("sent", PATIENCE).await;
    // The outage: shorter than the idle timeout (6 s) with room for retransmission backoff.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    pair.plug_cable();
    let plugged = Instant::now();

    assert_eq!(
        player.expect("relay", PATIENCE).await[..2],
        ["replugged", "1"]
    );
    let recovered = plugged.elapsed();
    player.send("inputs 1").await;
    assert_eq!(
        player.expect("relay", PATIENCE).await[..2],
        ["replugged", "2"]
    );
    // The heartbeat carries on after the outage.
    player.expect("ping", PATIENCE).await;

    let after = server.scrape().await;
    assert!(
        after.close_deltas(&before).is_empty(),
        "no session closed: {:?}",
        after.close_deltas(&before)
    );
    let (status, sessions) = server.http("GET", "/sessions").await;
    assert_eq!(status, 200);
    let sessions: serde_json::Value = serde_json::from_str(&sessions).expect("sessions JSON");
    assert_eq!(
        sessions["sessions"][0]["id"], session,
        "the same session: {sessions}"
    );
    let seen = player.out.all();
    assert!(
        !seen
            .iter()
            .any(|l| l.starts_with("bye") || l.starts_with("eof") || l.starts_with("error")),
        "the client saw its connection end: {seen:?}"
    );
    eprintln!("measured: replug after a 1.5 s outage: input relayed {recovered:?} after the plug");
}
