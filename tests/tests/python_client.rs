//! A client written in Python from PROTOCOL.md alone (tests/clients/rooms_client.py) plays a
//! full session against the real server: handshake, pings both ways, a room change, a room that
//! refuses it, inputs relayed back, acknowledgements, and a proper quit; its join options open a
//! private room and get it into another player's. If the document and the server disagree, this
//! fails.

use game_engine::CloseReason;
use protocol::{ClientMessage, Hello};
use rooms::{Rooms, RoomsConfig};
use system_tests::{Metrics, RawClient, TestServer, hello_in, need_tools};

#[tokio::test]
#[cfg_attr(not(has_python3), ignore = "needs python3")]
async fn a_client_written_from_protocol_md_alone_plays_a_full_session() {
    need_tools(&["python3"], "apt-get install python3");
    // Named rooms hold two players: "full" is taken, so the client's Join there is refused.
    let game = Rooms::new(RoomsConfig {
        named_room_capacity: 2,
        ..RoomsConfig::default()
    });
    let server = TestServer::start_game(game, |_| {}).await;
    let mut occupants = Vec::new();
    for player in ["occupant", "occupant-2"] {
        let mut occupant = RawClient::connect(server.addr).await;
        occupant.hello(hello_in(player, "full")).await;
        occupants.push(occupant);
    }
    // A private room the client can enter only with its password in the Join's options (the
    // demo refuses anything else).
    let mut keeper = RawClient::connect(server.addr).await;
    keeper
        .hello(ClientMessage::Hello(Box::new(Hello {
            options: bytes::Bytes::from_static(b"password=py"),
            ..Hello::new("keeper", "docs-2")
        })))
        .await;
    let before = server.scrape().await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/clients/rooms_client.py");
    let output = tokio::process::Command::new("python3")
        .arg(script)
        .arg(server.addr.to_string())
        .args([
            "--player",
            "pythonista",
            "--room",
            "docs",
            "--inputs",
            "25",
            "--server-pings",
            "1",
            "--options",
            "password=docs",
            "--join-options",
            "password=py",
            "--refused-join",
            "full",
        ])
        .output()
        .await
        .expect("run the Python client");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the Python client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON report");
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["join_refused_room"], "full", "{report}");
    assert!(
        report["join_refused_text"]
            .as_str()
            .is_some_and(|t| t.contains("the room is full")),
        "{report}"
    );
    server.expect_close(&before, CloseReason::ClientQuit).await;
    drop(occupants);
    drop(keeper);
    server.stop().await;
}
