//! What several instances need from each one: tokens an issuer binds to one instance are
//! refused by the others, saying so.

use std::time::Duration;

use game_engine::testkit::Tokens;
use protocol::{ByeCode, ClientMessage, Hello, PROTOCOL_VERSION, ServerMessage};
use system_tests::RawClient;
use system_tests::process::ServerProcess;

const SECRET: &str = "0123456789abcdef-scale-out";

fn hello_with(player: &str, token: &str) -> ClientMessage {
    ClientMessage::Hello(Box::new(Hello {
        version: PROTOCOL_VERSION,
        player_id: player.to_owned(),
        room: format!("room-{player}"),
        auth_token: Some(token.to_owned()),
        resume: None,
        options: Default::default(),
    }))
}

#[tokio::test]
async fn a_token_bound_to_another_instance_is_refused_and_the_close_line_says_so() {
    let server = ServerProcess::loopback(&format!(
        "[auth]\nmode = \"hmac\"\nsecret = \"{SECRET}\"\naudience = \"game-b\"\n"
    ))
    .await;
    let issuer = Tokens::new(SECRET);
    let mint = |player: &str, audience: Option<&str>| {
        issuer.mint_for(player, Duration::from_secs(600), audience)
    };

    // Bound to this instance, and unbound: both play.
    let mut here = RawClient::connect(server.addr).await;
    here.hello(hello_with(
        "bound-here",
        &mint("bound-here", Some("game-b")),
    ))
    .await;
    let mut anywhere = RawClient::connect(server.addr).await;
    anywhere
        .hello(hello_with("unbound", &mint("unbound", None)))
        .await;

    // Bound to another instance: refused, and the log says for which.
    let mark = server.log_mark();
    let mut elsewhere = RawClient::connect(server.addr).await;
    elsewhere
        .send(hello_with(
            "bound-to-a",
            &mint("bound-to-a", Some("game-a")),
        ))
        .await;
    match elsewhere.recv().await {
        Some(Ok(ServerMessage::Bye(bye))) => {
            assert_eq!(bye.code, ByeCode::AuthFailed, "{bye:?}");
            assert!(bye.text.contains("\"game-a\""), "{bye:?}");
        }
        other => panic!("a token for another instance: {other:?}"),
    }
    let (_, line) = server.next_close(mark, Duration::from_secs(10)).await;
    assert_eq!(line["reason"], "auth_failed", "{line}");
    assert_eq!(line["player"], "bound-to-a", "{line}");
    let detail = line["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("for instance \"game-a\"") && detail.contains("instance \"game-b\""),
        "{line}"
    );
}
