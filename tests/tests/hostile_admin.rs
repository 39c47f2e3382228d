//! The admin port attacked: half-sent requests, cross-site and unauthenticated kicks, a public
//! port without a token, and listings that must stay bounded.

use std::time::Duration;

use protocol::{ByeCode, ClientMessage, ServerMessage};
use system_tests::attack::half_sent_admin_request;
use system_tests::process::{ServerProcess, run_game_server};
use system_tests::{PATIENCE, RawClient, TestServer};
use tokio::io::AsyncReadExt;
use tokio::time::Instant;

#[tokio::test]
async fn half_sent_admin_requests_are_closed_and_cannot_exhaust_descriptors() {
    let server =
        ServerProcess::loopback("[admin]\nheader_read_timeout = \"1s\"\nmax_connections = 8\n")
            .await;
    let mut slow = half_sent_admin_request(server.admin).await;
    let started = Instant::now();
    let mut sink = [0u8; 256];
    let read = tokio::time::timeout(PATIENCE, async {
        loop {
            match slow.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(_) => continue,
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the half-sent request was never closed");
    let closed_after = started.elapsed();
    assert!(closed_after < Duration::from_secs(4), "{closed_after:?}");

    // Past the cap, new admin connections are closed at accept (with a reset: their request
    // is unread), while the first eight wait for their header timeout.
    let mut held =
        futures_util::future::join_all((0..50).map(|_| half_sent_admin_request(server.admin)))
            .await;
    let closed = futures_util::future::join_all(held.iter_mut().map(|stream| async move {
        let mut sink = [0u8; 64];
        matches!(
            tokio::time::timeout(Duration::from_millis(300), stream.read(&mut sink)).await,
            Ok(Ok(0) | Err(_))
        )
    }))
    .await;
    let refused = closed.iter().filter(|c| **c).count();
    drop(held);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let scrape = server.scrape().await;
    eprintln!(
        "measured: a half-sent admin request was closed after {closed_after:?}; {refused} of 50 \
         connections past admin.max_connections = 8 were closed at once"
    );
    assert!(refused >= 40, "only {refused} connections were refused");
    assert!(scrape.get("gameserver_admin_connections_rejected_total", &[]) >= 40.0);
}

#[tokio::test]
async fn the_admin_port_refuses_cross_site_and_unauthenticated_kicks() {
    let server = TestServer::start(|_| {}).await;
    let (mut victim, welcome) = RawClient::join(server.addr, "victim").await;
    let http = reqwest::Client::new();
    let url = format!(
        "{}/sessions/{}/kick",
        server.admin_url(),
        welcome.session_id
    );
    // A cross-site "simple" POST, as a web page would send it.
    let cross_site = http
        .post(&url)
        .header("Origin", "http://evil.example")
        .header("Content-Type", "text/plain")
        .body("x")
        .send()
        .await
        .expect("post");
    assert_eq!(cross_site.status().as_u16(), 401);
    let cross_site_with_token = http
        .post(&url)
        .bearer_auth(system_tests::TEST_ADMIN_TOKEN)
        .header("Origin", "http://evil.example")
        .send()
        .await
        .expect("post");
    assert_eq!(cross_site_with_token.status().as_u16(), 403);
    let wrong_token = http
        .post(&url)
        .bearer_auth("not-the-token-at-all")
        .send()
        .await
        .expect("post");
    assert_eq!(wrong_token.status().as_u16(), 401);
    // A rebound DNS name cannot read the sessions without the token.
    let rebound = http
        .get(format!("{}/sessions", server.admin_url()))
        .header("Host", "evil.example")
        .send()
        .await
        .expect("get");
    assert_eq!(rebound.status().as_u16(), 403);
    victim.send(ClientMessage::Ping { nonce: 1 }).await;
    while !matches!(
        victim.recv().await,
        Some(Ok(ServerMessage::Pong { nonce: 1 }))
    ) {}
    // With the token it works.
    server.kick(welcome.session_id).await;
    let (_, bye) = victim.until_bye().await;
    assert_eq!(bye.code, ByeCode::Kicked);
    server.stop().await;

    // Without a token configured, kicking is off altogether.
    let open = TestServer::start(|c| c.admin.token.clear()).await;
    let (_, welcome) = RawClient::join(open.addr, "safe").await;
    let response = http
        .post(format!(
            "{}/sessions/{}/kick",
            open.admin_url(),
            welcome.session_id
        ))
        .send()
        .await
        .expect("post");
    assert_eq!(response.status().as_u16(), 403);
    open.stop().await;
}

#[tokio::test]
async fn the_server_refuses_to_start_with_a_public_admin_port_and_no_token() {
    let public = ["--listen", "127.0.0.1:0", "--admin-listen", "0.0.0.0:0"];
    let stderr = run_game_server(&public, &[]).expect_exit(2);
    assert!(stderr.contains("admin.token"), "{stderr}");
    assert!(stderr.contains("not a loopback address"), "{stderr}");
}

#[tokio::test]
async fn sessions_are_listed_a_bounded_page_at_a_time() {
    let server = TestServer::start(|_| {}).await;
    let mut clients = Vec::new();
    for i in 0..25 {
        clients.push(RawClient::join(server.addr, &format!("paged-{i}")).await.0);
    }
    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let (status, body) = server
            .get(&format!("/sessions?limit=10&after={after}"))
            .await;
        assert_eq!(status, 200);
        let page: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(page["total"], 25);
        let sessions = page["sessions"].as_array().expect("sessions");
        assert!(sessions.len() <= 10);
        seen.extend(sessions.iter().map(|s| s["id"].as_u64().expect("id")));
        match page["next_after"].as_u64() {
            Some(next) => after = next,
            None => break,
        }
    }
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 25, "{seen:?}");
    server.stop().await;
}
