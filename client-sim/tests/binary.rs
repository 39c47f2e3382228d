//! The client-sim binary itself: its one-line errors and the crash scenario's child process.

use std::process::{Command, Stdio};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use protocol::{ClientMessage, ResumeToken, ServerCodec, ServerMessage, Welcome};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_util::codec::Framed;

const EXE: &str = env!("CARGO_BIN_EXE_client-sim");

#[test]
fn a_server_that_is_not_running_is_one_line_and_a_non_zero_exit() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let out = Command::new(EXE)
        .args(["--server", &addr.to_string(), "--quiet"])
        .output()
        .expect("run client-sim");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("nothing is listening"), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn kick_scenarios_without_a_metrics_url_are_refused_before_connecting() {
    let out = Command::new(EXE)
        .args([
            "--server",
            "127.0.0.1:9",
            "--mix",
            "graceful=1,kicked-then-recv=1",
        ])
        .output()
        .expect("run client-sim");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--metrics-url"));
}

/// The crash child handshakes with whatever answers, reports its session, and keeps writing
/// frames split across writes: what the server sees when it is killed is a stream cut inside a
/// frame (or a reset), never a clean end between frames.
#[tokio::test]
async fn the_crash_child_reports_its_session_and_stops_inside_a_frame_when_killed() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.expect("accept");
        let mut framed = Framed::new(socket, ServerCodec::default());
        let Some(Ok(ClientMessage::Hello(hello))) = framed.next().await else {
            panic!("expected Hello");
        };
        let welcome = Welcome {
            session_id: 77,
            heartbeat_interval_ms: 1000,
            idle_timeout_ms: 3000,
            resume_token: ResumeToken::NONE,
            resumed: false,
            last_input_seq: 0,
            room: hello.room,
        };
        framed
            .send(ServerMessage::Welcome(welcome))
            .await
            .expect("send Welcome");
        // Read until the child dies; count whole inputs and see how the stream ends.
        let mut inputs = 0u64;
        loop {
            match framed.next().await {
                Some(Ok(ClientMessage::Input { seq, .. })) => {
                    inputs += 1;
                    assert_eq!(seq, inputs);
                }
                Some(Ok(_)) => {}
                Some(Err(error)) => return (inputs, Some(error.to_string())),
                None => return (inputs, None),
            }
        }
    });
    let mut child = tokio::process::Command::new(EXE)
        .args([
            "__crash-child",
            "--server",
            &addr.to_string(),
            "--player",
            "p1",
            "--room",
            "r1",
        ])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("stdout");
    let line = tokio::time::timeout(
        Duration::from_secs(10),
        BufReader::new(stdout).lines().next_line(),
    )
    .await
    .expect("child reports in time")
    .expect("read")
    .expect("a line");
    assert_eq!(line, "ready 77");
    tokio::time::sleep(Duration::from_millis(300)).await;
    child.kill().await.expect("kill");
    let (inputs, end) = tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("server sees the end")
        .expect("server task");
    assert!(inputs >= 3, "the child sent {inputs} inputs");
    let end = end.expect("a killed child's stream must not end cleanly between frames");
    assert!(
        end.contains("inside a frame") || end.contains("reset"),
        "unexpected end: {end}"
    );
}
