//! A client written in Python from PROTOCOL.md alone (tests/clients/rooms_client.py) plays a
//! full session against the real server: handshake, pings both ways, a room change, inputs
//! relayed back, acknowledgements, and a proper quit. If the document and the server disagree,
//! this fails.

use game_server::CloseReason;
use system_tests::{PATIENCE, TestServer, has_tool, require};

#[tokio::test]
async fn a_client_written_from_protocol_md_alone_plays_a_full_session() {
    if !require(has_tool("python3"), "python3 is not installed") {
        return;
    }
    let server = TestServer::start(|_| {}).await;
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
    server
        .expect_closes(&before, &[(CloseReason::ClientQuit, 1)], PATIENCE)
        .await;
    server.stop().await;
}
