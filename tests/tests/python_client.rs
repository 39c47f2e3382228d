//! A client written in Python from PROTOCOL.md alone (tests/clients/rooms_client.py) plays a
//! full session against the real server: handshake, pings both ways, a room change, a room that
//! refuses it, inputs relayed back, acknowledgements, and a proper quit. If the document and the
//! server disagree, this fails.

use game_engine::CloseReason;
use rooms::{Rooms, RoomsConfig};
use system_tests::{Metrics, RawClient, TestServer, hello_in, need_tools};

#[tokio::test]
#[cfg_attr(not(has_python3), ignore = "needs python3")]
async fn a_client_written_from_protocol_md_alone_plays_a_full_session() {
    need_tools(&["python3"], "apt-get install python3");
    // Named rooms hold one player: "full" is taken, so the client's Join there is refused.
    let game = Rooms::new(RoomsConfig {
        named_room_capacity: 1,
        ..RoomsConfig::default()
    });
    let server = TestServer::start_game(game, |_| {}).await;
    let mut occupant = RawClient::connect(server.addr).await;
    occupant.hello(hello_in("occupant", "full")).await;
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
    drop(occupant);
    server.stop().await;
}
