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
use serde_json::Value;
use system_tests::netns::Pair;
use system_tests::process::{NetClient, ServerProcess};
use system_tests::{Metrics, PATIENCE, need_tools};

/// Declares this file's tests, each running a case below: they need root, `ip`, `ss` and `nft`,
/// and are ignored (reported as not run) where the build did not find them.
macro_rules! cable_tests {
    ($($name:ident: $case:expr;)*) => {
        $(
            #[tokio::test]
            #[cfg_attr(
                not(all(is_root, has_ip, has_ss, has_nft)),
                ignore = "needs root, ip, ss and nft: real pulled cables in network namespaces"
            )]
            async fn $name() {
                $case.await;
            }
        )*
    };
}

cable_tests! {
    cable_pulled_then_client_dies_idle_heartbeat_reports_idle_timeout:
        heartbeat_detects_a_pulled_cable();
    cable_pulled_then_client_dies_idle_keepalive_reports_tcp_timeout_link_down:
        keepalive_detects_a_pulled_cable(Cable::LinkDown, "ka-link");
    cable_pulled_then_client_dies_idle_keepalive_reports_tcp_timeout_firewall:
        keepalive_detects_a_pulled_cable(Cable::Firewall, "ka-nft");
    with_the_default_tcp_settings_the_user_timeout_decides_keepalive_detection:
        the_user_timeout_decides_with_the_default_tcp_settings();
    cable_pulled_while_the_server_writes_user_timeout_reports_tcp_timeout_link_down:
        user_timeout_detects_a_pulled_cable_while_writing(Cable::LinkDown, "ut-link");
    cable_pulled_while_the_server_writes_user_timeout_reports_tcp_timeout_firewall:
        user_timeout_detects_a_pulled_cable_while_writing(Cable::Firewall, "ut-nft");
    cable_pulled_and_plugged_back_before_any_timeout_the_session_survives:
        the_session_survives_a_cable_plugged_back_in_time();
    the_close_detail_tells_a_pulled_cable_from_a_killed_client:
        close_detail_tells_a_pulled_cable_from_a_killed_client();
}

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

/// A cable ready to pull: the two namespaces, a server with its configuration in one, and in the
/// other a `netclient play` client the server has welcomed.
struct Plugged {
    pair: Pair,
    server: ServerProcess,
    player: NetClient,
    /// The client's session id.
    session: u64,
}

impl Plugged {
    /// Sets up namespaces tagged `tag` (checking what pulling `cable` needs), the server with
    /// `config`, and the client `player` with `args`; waits for its Welcome.
    async fn new(tag: &str, cable: Cable, config: &str, player: &str, args: &[&str]) -> Plugged {
        let pair = Pair::new(tag);
        need_tools(&["ss"], "iproute2");
        if matches!(cable, Cable::Firewall) {
            need_tools(&["nft"], "nftables: dropping packets");
        }
        let server = pair.start_server(config).await;
        let mut player = NetClient::player(&pair.client_prefix(), server.addr, player, args);
        let session = player.welcome().await;
        Plugged {
            pair,
            server,
            player,
            session,
        }
    }

    /// Pulls the cable; returns when.
    fn pull(&self, cable: Cable) -> Instant {
        match cable {
            Cable::LinkDown => self.pair.pull_cable(),
            Cable::Firewall => self.pair.drop_packets(),
        }
        Instant::now()
    }

    /// Pulls the cable (and kills the client right after, when `client_dies`), waits up to
    /// `within` for the server to log the session's close, and checks that it closed as
    /// `reason`, the only close counted. Returns the close's log fields and how long after the
    /// pull it came.
    async fn pull_until_closed(
        &mut self,
        cable: Cable,
        client_dies: bool,
        reason: CloseReason,
        within: Duration,
    ) -> (Value, Duration) {
        let before = self.server.scrape().await;
        let mark = self.server.log_mark();
        let pulled = self.pull(cable);
        if client_dies {
            self.player.kill().await;
        }
        let (_, close) = self.server.next_close(mark, within).await;
        let detected = pulled.elapsed();
        self.server.expect_close(&before, reason).await;
        assert_eq!(close["reason"], reason.as_str(), "{close}");
        (close, detected)
    }

    /// Waits until the server's end of the game connection has nothing in flight, so that its
    /// kernel runs the keepalive timer (`ss` shows `timer:(keepalive,...)`) rather than the
    /// retransmission timer. While the server has unacknowledged data (the Welcome, or the room's
    /// first state event a tick later), keepalive does nothing: a cable pulled then is a
    /// different case (case 6).
    async fn keepalive_armed(&self) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let mut ss = tokio::process::Command::from(self.pair.in_server("ss"));
            let output = ss
                .args(["-tnoH", "state", "established"])
                .output()
                .await
                .expect("run ss");
            let text = String::from_utf8_lossy(&output.stdout);
            let connections: Vec<&str> = text
                .lines()
                .filter(|l| l.contains(&self.pair.client_ip.to_string()))
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
}

/// The error the close's log line reports.
fn errno_of(close: &Value) -> String {
    close["detail"].as_str().unwrap_or_default().to_owned()
}

/// Checks that the close's error is ETIMEDOUT, or EHOSTUNREACH (the kernel heard the link go
/// down): a timeout, not a reset.
fn assert_timed_out(close: &Value) {
    let detail = errno_of(close);
    assert!(
        detail.contains("os error 110") || detail.contains("os error 113"),
        "ETIMEDOUT or EHOSTUNREACH: {detail}"
    );
}

/// Checks that the close came between `earliest` and `latest` after the pull.
fn assert_closed_between(detected: Duration, earliest: Duration, latest: Duration) {
    assert!(
        detected >= earliest,
        "closed too early: {detected:?} after the pull, not before {earliest:?}"
    );
    assert!(
        detected <= latest,
        "closed too late: {detected:?} after the pull, not after {latest:?}"
    );
}

/// Field report, server side, case 1 with the application heartbeat: the cable is pulled on an
/// idle connection, then the client dies. Nothing reaches the server; the heartbeat watchdog
/// ends the session as `idle_timeout` about `session.idle_timeout` after the last pong.
async fn heartbeat_detects_a_pulled_cable() {
    let heartbeat = Duration::from_millis(500);
    let idle = Duration::from_secs(3);
    // Keepalive and the user timeout are far away, so only the watchdog can notice.
    let config = "[session]\nheartbeat_interval = \"500ms\"\nidle_timeout = \"3s\"\n\
                  [tcp]\nkeepalive_idle = \"60s\"\nuser_timeout = \"60s\"\n";
    let mut cable = Plugged::new("idle-hb", Cable::Firewall, config, "unplugged", &[]).await;
    // The heartbeat works before the pull: a ping arrives and netclient answers it.
    cable.player.expect("ping", PATIENCE).await;

    let (close, detected) = cable
        .pull_until_closed(
            Cable::Firewall,
            true,
            CloseReason::IdleTimeout,
            idle + MARGIN,
        )
        .await;
    let detect_ms = close["detect_ms"].as_u64().expect("detect_ms");
    eprintln!(
        "measured: idle heartbeat: pull -> close {detected:?}, server detect {detect_ms} ms ({})",
        errno_of(&close)
    );
    // The last pong came at most one heartbeat before the pull.
    let earliest = idle - heartbeat - Duration::from_millis(100);
    assert_closed_between(detected, earliest, idle + MARGIN);
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
async fn keepalive_detects_a_pulled_cable(kind: Cable, tag: &str) {
    let (idle, interval, count) = (1u64, 1u64, 3u64);
    let config = format!(
        "[session]\nheartbeat_interval = \"0s\"\nidle_timeout = \"60s\"\n\
         [tcp]\nkeepalive_idle = \"{idle}s\"\nkeepalive_interval = \"{interval}s\"\n\
         keepalive_count = {count}\nuser_timeout = \"0s\"\n"
    );
    let mut cable = Plugged::new(tag, kind, &config, "unplugged", &[]).await;
    // The room's state event follows the Welcome on the next tick; then nothing more is sent.
    cable.player.expect("state", PATIENCE).await;
    cable.keepalive_armed().await;

    let silent = Duration::from_secs(idle + count * interval);
    let (close, detected) = cable
        .pull_until_closed(kind, true, CloseReason::TcpTimeout, silent + MARGIN)
        .await;
    let detect_ms = close["detect_ms"].as_u64().expect("detect_ms");
    eprintln!(
        "measured: keepalive ({kind:?}): pull -> close {detected:?}, server detect {detect_ms} ms ({})",
        errno_of(&close)
    );
    assert_timed_out(&close);
    // The last segment the client acknowledged was at most one probe interval before the pull;
    // the kernel gives up `count` unanswered probes later.
    let earliest = silent - Duration::from_secs(interval) - Duration::from_millis(500);
    assert_closed_between(detected, earliest, silent + MARGIN);
    // The last frame was the Hello, before the pull: at least the whole keepalive budget.
    assert!(
        detect_ms + 200 >= silent.as_millis() as u64,
        "server detect {detect_ms} ms"
    );
}

/// The shipped TCP defaults with the heartbeat off: keepalive starts probing after
/// `keepalive_idle` (10 s) every `keepalive_interval` (5 s), but because `tcp.user_timeout` (30 s)
/// is set, Linux gives up at the first probe time at which the peer has been silent for the user
/// timeout, not after `keepalive_count` (3) probes: about 30 s, where the count alone would give
/// 10 + 3 × 5 = 25 s.
async fn the_user_timeout_decides_with_the_default_tcp_settings() {
    let tcp = game_engine::Config::default().tcp;
    let config = "[session]\nheartbeat_interval = \"0s\"\nidle_timeout = \"120s\"\n";
    let mut cable = Plugged::new("ka-default", Cable::Firewall, config, "unplugged", &[]).await;
    cable.player.expect("state", PATIENCE).await;
    cable.keepalive_armed().await;

    // The first probe time (idle + k × interval, at least one probe sent) at or after the user
    // timeout.
    let mut expected = tcp.keepalive_idle + tcp.keepalive_interval;
    while expected < tcp.user_timeout {
        expected += tcp.keepalive_interval;
    }
    let by_count = tcp.keepalive_idle + tcp.keepalive_interval * tcp.keepalive_count;
    let latest = expected + tcp.keepalive_interval + MARGIN;
    let (close, detected) = cable
        .pull_until_closed(Cable::Firewall, true, CloseReason::TcpTimeout, latest)
        .await;
    eprintln!(
        "measured: default keepalive {:?}/{:?}/{} with user timeout {:?}: pull -> close {detected:?} \
         (probe count alone: {by_count:?}; {})",
        tcp.keepalive_idle,
        tcp.keepalive_interval,
        tcp.keepalive_count,
        tcp.user_timeout,
        errno_of(&close)
    );
    assert!(
        by_count + MARGIN < expected,
        "the defaults no longer tell the rules apart"
    );
    // Any earlier, and the probe count decided, not the user timeout.
    assert_closed_between(detected, expected - MARGIN, latest);
}

/// Field report, server side, case 6: the server is writing to a client whose cable is pulled.
/// A feeder in the same room (connected from inside the server's namespace, so it keeps its
/// link) sends an input every 100 ms; each one is relayed to the unplugged client and sits
/// unacknowledged in the server's send queue. Keepalive never runs while data is outstanding;
/// TCP_USER_TIMEOUT (3 s) ends the connection as `tcp_timeout` (ETIMEDOUT, or EHOSTUNREACH after
/// a link down). The heartbeat is off and the idle timeout far away, so nothing else can.
async fn user_timeout_detects_a_pulled_cable_while_writing(kind: Cable, tag: &str) {
    let user_timeout = Duration::from_secs(3);
    let config = "[session]\nheartbeat_interval = \"0s\"\nidle_timeout = \"60s\"\n\
                  write_timeout = \"2s\"\n[tcp]\nkeepalive_idle = \"60s\"\nuser_timeout = \"3s\"\n";
    let mut cable = Plugged::new(tag, kind, config, "unplugged", &["--room", "busy"]).await;
    let server_side = cable.pair.server_prefix();
    let mut feeder = NetClient::player(
        &server_side,
        cable.server.addr,
        "feeder",
        &["--room", "busy"],
    );
    feeder.welcome().await;
    feeder.send("every 100 1").await;
    // The relays reach the player before the pull.
    cable.player.expect("relay", PATIENCE).await;

    let (close, detected) = cable
        .pull_until_closed(kind, false, CloseReason::TcpTimeout, user_timeout + MARGIN)
        .await;
    eprintln!(
        "measured: user timeout while writing ({kind:?}): pull -> close {detected:?}, \
         server detect {} ms ({})",
        close["detect_ms"],
        errno_of(&close)
    );
    assert_eq!(close["player"], "unplugged", "{close}");
    assert_timed_out(&close);
    // The first unacknowledged relay left at most 100 ms after the pull.
    let earliest = user_timeout - Duration::from_millis(200);
    assert_closed_between(detected, earliest, user_timeout + MARGIN);
    // The feeder, on the other side of the server, plays on.
    feeder.send("ping 77").await;
    assert_eq!(feeder.expect("pong", PATIENCE).await, ["77"]);
}

/// Field report, server side, case 7: the cable is pulled and plugged back before any timeout.
/// The session survives: same session id, an input sent during the outage arrives once the link
/// is back, play continues, and no close is counted.
async fn the_session_survives_a_cable_plugged_back_in_time() {
    let config = "[session]\nheartbeat_interval = \"500ms\"\nidle_timeout = \"6s\"\n";
    let mut cable = Plugged::new("replug", Cable::LinkDown, config, "replugged", &[]).await;
    let player = &mut cable.player;
    player.expect("ping", PATIENCE).await;
    let before = cable.server.scrape().await;

    cable.pair.pull_cable();
    // Written into the kernel during the outage; delivered by retransmission afterwards.
    player.send("inputs 1").await;
    player.expect("sent", PATIENCE).await;
    // The outage: shorter than the idle timeout (6 s) with room for retransmission backoff.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    cable.pair.plug_cable();
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

    let after = cable.server.scrape().await;
    after.assert_no_closes_since(&before, "the session survives");
    let listed = cable.server.session_of("replugged").await;
    let listed = listed.expect("the player's session is listed");
    assert_eq!(listed["id"], cable.session, "the same session: {listed}");
    let seen = player.out.all();
    assert!(
        !seen
            .iter()
            .any(|l| l.starts_with("bye") || l.starts_with("eof") || l.starts_with("error")),
        "the client saw its connection end: {seen:?}"
    );
    eprintln!("measured: replug after a 1.5 s outage: input relayed {recovered:?} after the plug");
}

/// "Why did player X drop?": two players on the same link, one whose process is killed and one
/// whose cable is pulled (and then killed). `/closes/recent` tells them apart by what the kernel
/// saw at the close: the killed client's FIN or reset arrived (the socket is no longer
/// established) right after its last data; the unplugged one's socket is still established, the
/// server's heartbeats sit unacknowledged and retransmitted, and nothing arrived for seconds.
async fn close_detail_tells_a_pulled_cable_from_a_killed_client() {
    let config = "[session]\nheartbeat_interval = \"500ms\"\nidle_timeout = \"3s\"\n\
                  [tcp]\nkeepalive_idle = \"60s\"\nuser_timeout = \"60s\"\n";
    let mut cable = Plugged::new("why-drop", Cable::Firewall, config, "unplugged", &[]).await;
    let mut crashed = NetClient::player(
        &cable.pair.client_prefix(),
        cable.server.addr,
        "crashed",
        &[],
    );
    crashed.welcome().await;
    crashed.expect("ping", PATIENCE).await;
    cable.player.expect("ping", PATIENCE).await;

    let mark = cable.server.log_mark();
    crashed.kill().await;
    let (_, close) = cable.server.next_close(mark, PATIENCE).await;
    assert!(
        ["peer_eof", "peer_reset"].contains(&close["reason"].as_str().unwrap_or_default()),
        "a killed client's kernel closes its socket: {close}"
    );
    cable
        .pull_until_closed(
            Cable::Firewall,
            true,
            CloseReason::IdleTimeout,
            Duration::from_secs(3) + MARGIN,
        )
        .await;

    let recent = cable.server.get_json("/closes/recent").await;
    eprintln!("measured: /closes/recent {recent}");
    let of = |player: &str| -> Value {
        recent["closes"]
            .as_array()
            .and_then(|closes| closes.iter().find(|c| c["player"] == player))
            .cloned()
            .unwrap_or_else(|| panic!("no close of {player}: {recent}"))
    };
    let killed = of("crashed");
    let unplugged = of("unplugged");
    let kernel = |close: &Value, field: &str| {
        close["kernel"][field]
            .as_u64()
            .unwrap_or_else(|| panic!("no kernel.{field} in {close}"))
    };

    // The killed client: its kernel answered for it at once.
    assert_ne!(killed["kernel"]["state"], "established", "{killed}");
    assert!(kernel(&killed, "last_data_recv_ms") < 1000, "{killed}");
    assert_eq!(kernel(&killed, "retransmits"), 0, "{killed}");

    // The unplugged one: silence, and the server's heartbeats lost on the way.
    assert_eq!(unplugged["reason"], "idle_timeout", "{unplugged}");
    assert_eq!(unplugged["kernel"]["state"], "established", "{unplugged}");
    assert!(
        kernel(&unplugged, "last_data_recv_ms") >= 2000,
        "{unplugged}"
    );
    assert!(kernel(&unplugged, "unacked") >= 1, "{unplugged}");
    assert!(
        kernel(&unplugged, "retransmits") >= 1 || kernel(&unplugged, "total_retrans") >= 1,
        "{unplugged}"
    );
    assert!(
        unplugged["since_last_read_ms"].as_u64().unwrap_or(0) >= 2000,
        "{unplugged}"
    );
    assert!(
        !unplugged["rtts_ms"].as_array().is_none_or(Vec::is_empty),
        "its heartbeats were measured before the pull: {unplugged}"
    );
}
