//! Sources attacked and attacking: a source reconnecting in a loop, too many sessions and
//! failed logins from one address, automatic rooms entered by name, an absurd token lifetime,
//! and a flood of abusive closes that must become log summaries, not a flood of lines.

use std::time::Duration;

use game_engine::CloseReason;
use protocol::{ByeCode, ClientMessage, Hello};
use system_tests::process::{ServerProcess, run_game_server};
use system_tests::{Metrics, PATIENCE, RawClient, TestServer, hello, hello_in};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

/// The heavy attacks take turns.
static HEAVY: Mutex<()> = Mutex::const_new(());

#[tokio::test]
async fn a_source_reconnecting_in_a_loop_is_refused_for_its_rate() {
    let server = TestServer::start(|c| {
        c.server.source_exempt.clear();
        c.server.connect_rate_per_source = 1;
        c.server.connect_burst_per_source = 3;
    })
    .await;
    let before = server.scrape().await;
    let mut held = Vec::new();
    for i in 0..3 {
        held.push(RawClient::join(server.addr, &format!("burst-{i}")).await.0);
    }
    let mut next = RawClient::connect(server.addr).await;
    let (_, bye) = next.until_bye().await;
    assert_eq!(bye.code, ByeCode::ServerFull);
    assert!(bye.text.contains("too many connections"), "{}", bye.text);
    // The bucket refills at one connection a second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    held.push(RawClient::join(server.addr, "later").await.0);
    let after = server.scrape().await;
    assert_eq!(after.rejected_since(&before, "connect_rate"), 1.0);
    server.stop().await;
}

#[tokio::test]
async fn sources_are_limited_in_sessions_and_failed_logins() {
    let secret = "0123456789abcdef-hostile";
    let server = TestServer::start(|c| {
        c.server.source_exempt.clear();
        c.server.max_sessions_per_source = 3;
        c.server.connect_rate_per_source = 0;
        c.auth.mode = game_engine::config::AuthMode::Hmac;
        c.auth.secret = secret.into();
        c.auth.max_failures_per_source = 3;
    })
    .await;
    let auth = game_engine::testkit::Tokens::new(secret);
    let with_token = |player: &str, token: String| {
        ClientMessage::Hello(Box::new(Hello {
            auth_token: Some(token),
            ..match hello(player) {
                ClientMessage::Hello(h) => *h,
                _ => unreachable!(),
            }
        }))
    };
    let signed = |player: &str| {
        let token = auth.mint(player, Duration::from_secs(60));
        with_token(player, token)
    };
    let before = server.scrape().await;
    // Three sessions fit; the fourth is turned away.
    let mut held = Vec::new();
    for i in 0..3 {
        let mut client = RawClient::connect(server.addr).await;
        client.hello(signed(&format!("house-{i}"))).await;
        held.push(client);
    }
    let mut fourth = RawClient::connect(server.addr).await;
    let (_, bye) = fourth.until_bye().await;
    assert_eq!(bye.code, ByeCode::ServerFull);
    assert!(bye.text.contains("too many sessions"), "{}", bye.text);
    drop(held);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Three failed logins use up the source's allowance; a fourth, valid, login is refused
    // unchecked.
    for i in 0..3 {
        let player = format!("guess-{i}");
        let forged = format!("{player}.99999999999.{}", "0".repeat(64));
        let mut guess = RawClient::connect(server.addr).await;
        guess.send(with_token(&player, forged)).await;
        let (_, bye) = guess.until_bye().await;
        assert_eq!(bye.code, ByeCode::AuthFailed, "{}", bye.text);
    }
    let mut honest = RawClient::connect(server.addr).await;
    honest.send(signed("honest")).await;
    let (_, bye) = honest.until_bye().await;
    assert_eq!(bye.code, ByeCode::AuthFailed);
    assert!(bye.text.contains("too many failed"), "{}", bye.text);
    let after = server.scrape().await;
    let rejected = after.rejected_since(&before, "per_source_limit");
    assert_eq!(rejected, 1.0);
    assert_eq!(after.get("gameserver_auth_throttled_total", &[]), 1.0);
    server.stop().await;
}

#[tokio::test]
async fn automatic_rooms_cannot_be_entered_by_name() {
    let server = TestServer::start(|_| {}).await;
    let (_first, welcome) = RawClient::join(server.addr, "placed").await;
    assert!(welcome.room.starts_with("auto-"), "{}", welcome.room);
    let mut squatter = RawClient::connect(server.addr).await;
    squatter.send(hello_in("squatter", &welcome.room)).await;
    let (_, bye) = squatter.until_bye().await;
    assert_eq!(bye.code, ByeCode::ProtocolError);
    assert!(bye.text.contains("reserved"), "{}", bye.text);
    // The same prefix in capitals or in full-width letters is the same prefix to a person.
    let number = welcome.room.trim_start_matches("auto-");
    for spelling in [
        format!("AUTO-{number}"),
        format!("\u{FF41}uto-{number}"),
        format!("Auto\u{FF0D}{number}"),
    ] {
        let mut squatter = RawClient::connect(server.addr).await;
        squatter.send(hello_in("squatter", &spelling)).await;
        let (_, bye) = squatter.until_bye().await;
        assert_eq!(bye.code, ByeCode::ProtocolError, "{spelling}");
        assert!(bye.text.contains("reserved"), "{spelling}: {}", bye.text);
    }
    let (mut mover, _) = RawClient::join(server.addr, "mover").await;
    mover
        .send(ClientMessage::Join {
            room: welcome.room.clone(),
            options: Default::default(),
        })
        .await;
    let (_, bye) = mover.until_bye().await;
    assert_eq!(bye.code, ByeCode::ProtocolError);
    let mut newline = RawClient::connect(server.addr).await;
    newline.send(hello("bad\nid")).await;
    let (_, bye) = newline.until_bye().await;
    assert_eq!(bye.code, ByeCode::ProtocolError);
    assert!(bye.text.contains("control characters"), "{}", bye.text);
    server.stop().await;
}

#[tokio::test]
async fn an_absurd_token_lifetime_is_a_clear_error() {
    let absurd = ["token", "--player", "p", "--ttl", "584542046090y"];
    let secret = ("GAMESERVER__AUTH__SECRET", "0123456789abcdef-0123");
    let stderr = run_game_server(&absurd, &[secret]).expect_exit(2);
    assert!(stderr.contains("auth.max_ttl"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[tokio::test]
async fn a_flood_of_abusive_closes_is_logged_as_summaries() {
    let _turn = HEAVY.lock().await;
    let server = ServerProcess::loopback("").await;
    let before = server.scrape().await;
    let mark = server.log_mark();
    const N: usize = 400;
    for _ in 0..N / 50 {
        let batch = (0..50).map(|_| async {
            let mut stream = TcpStream::connect(server.addr).await.expect("connect");
            let _ = stream.write_all(b"GET / HTTP/1.1\r\n\r\n").await;
            let mut sink = Vec::new();
            let _ = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut sink)).await;
        });
        futures_util::future::join_all(batch).await;
    }
    server
        .expect_closes(&before, &[(CloseReason::ProtocolError, N as u64)], PATIENCE)
        .await;
    // The summary comes within the summary period.
    let (_, summary) = server
        .logs
        .wait_from(mark, Duration::from_secs(15), "a summary line", |l| {
            l.contains("more protocol_error lines")
        })
        .await;
    let lines = server.logs.all()[mark..]
        .iter()
        .filter(|l| {
            system_tests::process::message(l).as_deref() == Some("session closed")
                && l.contains("protocol_error")
        })
        .count();
    let scrape = server.scrape().await;
    eprintln!("measured: {N} protocol errors logged as {lines} lines and a summary: {summary}");
    assert!(lines < N / 4, "{lines} lines for {N} closes");
    assert!(scrape.get("gameserver_log_lines_suppressed_total", &[]) > 0.0);
}
