//! PROXY protocol on the game port, against the real binary: a trusted balancer's clients are
//! seen at their own addresses (in `/sessions`, in the close log line, in the per-source
//! limits); a header from anyone else is refused, a missing or unfinished one ends the
//! connection, and each is counted.

use std::net::SocketAddr;
use std::time::Duration;

use protocol::{ByeCode, CloseReason, ServerMessage};
use proxy_header::{ProxiedAddress, ProxyHeader};
use system_tests::process::ServerProcess;
use system_tests::{Metrics, RawClient, client_quit, hello};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// A PROXY header naming `client` as the source.
fn header(client: &str, v2: bool) -> Vec<u8> {
    let header = ProxyHeader::with_address(ProxiedAddress::stream(
        client.parse().expect("client address"),
        "10.0.0.1:7777".parse().expect("address"),
    ));
    let mut out = Vec::new();
    if v2 {
        header.encode_v2(&mut out).expect("encode v2");
    } else {
        header.encode_v1(&mut out).expect("encode v1");
    }
    out
}

/// Connects to the server as a balancer would and sends the header for `client`.
async fn balancer_stream(server: SocketAddr, client: &str, v2: bool) -> TcpStream {
    let mut stream = TcpStream::connect(server).await.expect("connect");
    stream
        .write_all(&header(client, v2))
        .await
        .expect("write the header");
    stream
}

/// Connects to the server as a balancer would: the header first, then the client's bytes.
async fn via_balancer(server: SocketAddr, client: &str, v2: bool) -> RawClient {
    RawClient::over(balancer_stream(server, client, v2).await)
}

/// Asserts that `/sessions` shows `client`'s address and not the balancer's.
async fn assert_sessions_show(server: &ServerProcess, client: &str) {
    let (status, sessions) = server.http("GET", "/sessions").await;
    assert_eq!(status, 200);
    assert!(
        sessions.contains(client),
        "/sessions does not show {client}: {sessions}"
    );
    assert!(!sessions.contains("127.0.0.1"), "{sessions}");
}

fn proxy_count(scrape: &system_tests::Scrape, result: &str) -> f64 {
    scrape.get("gameserver_proxy_headers_total", &[("result", result)])
}

async fn expect_bye(client: &mut RawClient, code: ByeCode) {
    match client.recv().await {
        Some(Ok(ServerMessage::Bye(bye))) => assert_eq!(bye.code, code, "{bye:?}"),
        other => panic!("expected Bye{{{code}}}, got {other:?}"),
    }
}

#[tokio::test]
async fn a_client_behind_a_trusted_balancer_is_seen_at_its_own_address() {
    let server =
        ServerProcess::loopback("[net.proxy_protocol]\ntrusted = [\"127.0.0.1/32\"]\n").await;
    for (client, v2) in [("203.0.113.7:4242", true), ("198.51.100.20:5151", false)] {
        let mark = server.log_mark();
        let mut player = via_balancer(server.addr, client, v2).await;
        let welcome = player.hello(hello(&format!("behind-{v2}"))).await;
        assert_sessions_show(&server, client).await;
        player.send(client_quit()).await;
        player.expect_bye(ByeCode::ClientQuit).await;
        let (_, line) = server.next_close(mark, Duration::from_secs(10)).await;
        assert_eq!(line["session"], welcome.session_id, "{line}");
        assert_eq!(
            line["peer"], client,
            "the close line names the client: {line}"
        );
    }
    assert_eq!(proxy_count(&server.scrape().await, "ok"), 2.0);
}

#[tokio::test]
async fn per_source_limits_count_the_clients_not_the_balancer() {
    // Loopback (the balancer here) is exempt from per-source limits by default; the clients
    // behind it are not.
    let server = ServerProcess::loopback("[server]\nmax_sessions_per_source = 1\n[net.proxy_protocol]\ntrusted = [\"127.0.0.1/32\"]\n")
    .await;
    let mut first = via_balancer(server.addr, "198.51.100.9:1000", true).await;
    first.hello(hello("same-source-1")).await;
    let mut second = via_balancer(server.addr, "198.51.100.9:1001", true).await;
    second.send(hello("same-source-2")).await;
    expect_bye(&mut second, ByeCode::ServerFull).await;
    let mut other = via_balancer(server.addr, "198.51.100.10:1000", true).await;
    other.hello(hello("other-source")).await;
    let scrape = server.scrape().await;
    assert_eq!(
        scrape.get(
            "gameserver_connections_rejected_total",
            &[("reason", "per_source_limit")]
        ),
        1.0
    );
}

#[tokio::test]
async fn a_header_from_an_untrusted_address_is_refused_and_counted() {
    // Only 127.0.0.2 may send headers; this client connects from 127.0.0.1.
    let server =
        ServerProcess::loopback("[net.proxy_protocol]\ntrusted = [\"127.0.0.2/32\"]\n").await;
    let before = server.scrape().await;
    let mut forger = via_balancer(server.addr, "203.0.113.99:1", true).await;
    forger.send(hello("forger")).await;
    expect_bye(&mut forger, ByeCode::ProtocolError).await;
    server
        .expect_close(&before, CloseReason::ProtocolError)
        .await;
    assert_eq!(proxy_count(&server.scrape().await, "untrusted"), 1.0);
    // A client connecting directly plays as before.
    let (_direct, welcome) = RawClient::join(server.addr, "direct").await;
    assert!(welcome.session_id > 0);
}

#[tokio::test]
async fn a_balancer_connection_without_a_header_or_with_an_unfinished_one_ends() {
    let server = ServerProcess::loopback("[session]\nhandshake_timeout = \"1s\"\n[net.proxy_protocol]\ntrusted = [\"127.0.0.1/32\"]\n")
    .await;
    let before = server.scrape().await;
    // No header: the balancer is misconfigured (send-proxy missing).
    let mut bare = RawClient::connect(server.addr).await;
    bare.send(hello("bare")).await;
    expect_bye(&mut bare, ByeCode::ProtocolError).await;
    // Half a header, and nothing more: the handshake deadline covers it.
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    let partial = header("203.0.113.5:5", true);
    stream
        .write_all(&partial[..10])
        .await
        .expect("write half a header");
    let mut stuck = RawClient::over(stream);
    expect_bye(&mut stuck, ByeCode::HandshakeTimeout).await;
    // Neither became a session (the protocol was never spoken): two rejections, told why over
    // the plain game port.
    server
        .expect_rejections(&before, &[("proxy_header", 2)], Duration::from_secs(10))
        .await;
    server
        .expect_closes(&before, &[], Duration::from_secs(1))
        .await;
    let scrape = server.scrape().await;
    assert_eq!(proxy_count(&scrape, "missing"), 1.0);
    assert_eq!(proxy_count(&scrape, "ok"), 0.0);
}

/// A balancer in front of the WebSocket listener sends its header before the HTTP upgrade: the
/// client it names is the session's peer. A balancer connection that upgrades without one is
/// refused before the upgrade (`proxy_header`; there is no WebSocket yet to say `Bye` over).
#[tokio::test]
async fn the_websocket_listener_reads_the_header_before_the_upgrade() {
    let server = ServerProcess::loopback(
        "[server]\nwebsocket_listen = \"127.0.0.1:0\"\n[session]\nhandshake_timeout = \"1s\"\n\
         [net.proxy_protocol]\ntrusted = [\"127.0.0.1/32\"]\n",
    )
    .await;
    let ws_addr = server.websocket.expect("the WebSocket listener");
    let url = format!("ws://{ws_addr}/");
    let before = server.scrape().await;
    let client = "203.0.113.9:4343";
    let stream = balancer_stream(ws_addr, client, true).await;
    let (mut ws, _) = tokio_tungstenite::client_async(url.as_str(), stream)
        .await
        .expect("the upgrade after the header");
    system_tests::ws_hello(&mut ws, hello("behind-ws")).await;
    assert_sessions_show(&server, client).await;
    // Without the header the upgrade request itself is refused.
    let bare = TcpStream::connect(ws_addr).await.expect("connect");
    let refused = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::client_async(url.as_str(), bare),
    )
    .await
    .expect("refused in time");
    assert!(refused.is_err(), "upgraded without a PROXY header");
    server
        .expect_rejections(&before, &[("proxy_header", 1)], Duration::from_secs(10))
        .await;
    let scrape = server.scrape().await;
    assert_eq!(proxy_count(&scrape, "ok"), 1.0);
    assert_eq!(proxy_count(&scrape, "missing"), 1.0);
    assert_eq!(
        scrape.accepted_since(&before, "websocket"),
        1.0,
        "a session is counted once its upgrade is done, not the refused connection"
    );
}

/// A balancer connection whose header has not come yet is not an active session, but it is
/// charged to the memory budget as one (12 KiB) until the header is read or the wait ends.
#[tokio::test]
async fn connections_waiting_for_their_header_are_charged_to_the_memory_budget() {
    let server = ServerProcess::loopback("[session]\nhandshake_timeout = \"60s\"\n[net.proxy_protocol]\ntrusted = [\"127.0.0.1/32\"]\n")
    .await;
    // 12 KiB each (budget::CONNECTION_ESTIMATE); nothing without the charge.
    server
        .expect_silent_connections_charged(20, 10.0..=14.0)
        .await;
}
