//! Session resume over real sockets: a player whose connection dies comes back within the grace
//! window and loses nothing; late, reused and foreign tokens are refused with their reason.

use std::time::Duration;

use game_engine::CloseReason;
use protocol::{Bye, ByeCode, ClientMessage, Welcome};
use system_tests::{Metrics, PATIENCE, RawClient, RelayLog, Scrape, TestServer, resume_hello};

/// What a resuming client keeps: its token, and the events it received in order.
struct Player {
    name: String,
    token: protocol::ResumeToken,
    log: RelayLog,
}

impl Player {
    fn new(name: &str, welcome: &Welcome) -> Player {
        Player {
            name: name.into(),
            token: welcome.resume_token,
            log: RelayLog::default(),
        }
    }

    fn resume_hello(&self) -> ClientMessage {
        self.resume_hello_in("")
    }

    fn resume_hello_in(&self, room: &str) -> ClientMessage {
        resume_hello(&self.name, room, self.token, self.log.last_event)
    }
}

fn input(seq: u64) -> ClientMessage {
    system_tests::input(seq, seq.to_be_bytes().to_vec())
}

/// Joins as `name` and resets the connection; returns the player and its `Welcome`.
async fn join_and_abort(server: &TestServer, name: &str) -> (Player, Welcome) {
    let (client, welcome) = RawClient::join(server.addr, name).await;
    client.abort();
    (Player::new(name, &welcome), welcome)
}

/// Joins as `name`, resets the connection and waits until the server parks the session.
async fn park(server: &TestServer, name: &str) -> (Player, Welcome) {
    let parked = join_and_abort(server, name).await;
    wait_for(server, "parked", |s| {
        s.get("gameserver_sessions_parked", &[]) == 1.0
    })
    .await;
    parked
}

/// Sends `hello` on a new connection and expects `Bye{resume_rejected}`; returns it.
async fn refused(server: &TestServer, hello: ClientMessage) -> Bye {
    let mut client = RawClient::connect(server.addr).await;
    client.send(hello).await;
    client.expect_bye(ByeCode::ResumeRejected).await
}

/// Asserts that the server counted one refused resume, for `reason`.
fn assert_rejected_once(scrape: &Scrape, reason: &str) {
    let rejected = scrape.get("gameserver_resume_rejected_total", &[("reason", reason)]);
    assert_eq!(rejected, 1.0, "resumes rejected as {reason}");
}

async fn wait_for(server: &TestServer, what: &str, mut ok: impl FnMut(&Scrape) -> bool) -> Scrape {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let scrape = server.scrape().await;
        if ok(&scrape) {
            return scrape;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_reset_in_the_middle_of_a_stream_then_a_resume_loses_and_duplicates_nothing() {
    let server = TestServer::start(|_| {}).await;
    let before = server.scrape().await;
    let (mut a, welcome) = RawClient::join_room(server.addr, "alice", "arena").await;
    assert!(
        !welcome.resume_token.is_none(),
        "resume is on: Welcome carries a token"
    );
    let mut alice = Player::new("alice", &welcome);
    let (mut b, b_welcome) = RawClient::join_room(server.addr, "bob", "arena").await;
    let mut bob = Player::new("bob", &b_welcome);

    // Alice sends 1..=40 without waiting; she reads only some of the relays, then her
    // connection is reset with events in flight.
    for seq in 1..=40 {
        a.send(input(seq)).await;
    }
    alice.log.read_until(&mut a, 10).await;
    a.send(ClientMessage::Ack {
        seq: alice.log.last_event,
    })
    .await;
    a.abort();
    wait_for(&server, "alice parked", |s| {
        s.get("gameserver_sessions_parked", &[]) == 1.0
    })
    .await;

    // While she is away, Bob keeps playing: his inputs are relayed to her parked session.
    for seq in 1..=30 {
        b.send(input(seq)).await;
    }
    bob.log.read_until(&mut b, 70).await;

    // Alice comes back with her token and the last event she received.
    let mut a = RawClient::connect(server.addr).await;
    let resumed = a.hello(alice.resume_hello()).await;
    assert!(resumed.resumed);
    assert_eq!(
        resumed.session_id, welcome.session_id,
        "the same session continues"
    );
    assert_ne!(
        resumed.resume_token, welcome.resume_token,
        "the token rotates"
    );
    alice.token = resumed.resume_token;
    // She resends every input the server had not applied.
    for seq in resumed.last_input_seq + 1..=40 {
        a.send(input(seq)).await;
    }
    alice.log.read_until(&mut a, 70).await;
    alice.log.assert_exactly_once("alice", 40);
    // Every event sent while she was away arrived, once.
    alice.log.assert_exactly_once("bob", 30);
    bob.log.assert_exactly_once("bob", 30);

    let after = server.scrape().await;
    assert_eq!(
        after.closed(CloseReason::PeerReset) - before.closed(CloseReason::PeerReset),
        1
    );
    assert_eq!(after.get("gameserver_sessions_resumed_total", &[]), 1.0);
    assert_eq!(after.get("gameserver_sessions_parked", &[]), 0.0);
    server.stop().await;
}

#[tokio::test]
async fn a_resume_after_the_grace_window_is_refused_as_expired() {
    let server = TestServer::start(|c| c.session.resume_grace = Duration::from_millis(500)).await;
    let (late, _) = join_and_abort(&server, "late").await;
    wait_for(&server, "the grace window to pass", |s| {
        s.get("gameserver_resume_expired_total", &[]) == 1.0
            && s.get("gameserver_sessions_parked", &[]) == 0.0
    })
    .await;
    let bye = refused(&server, late.resume_hello()).await;
    assert!(bye.text.contains("expired"), "{}", bye.text);
    let after = server.scrape().await;
    assert_rejected_once(&after, "expired");
    server.stop().await;
}

#[tokio::test]
async fn a_token_works_once() {
    let server = TestServer::start(|_| {}).await;
    let (player, _) = park(&server, "once").await;
    let mut first = RawClient::connect(server.addr).await;
    assert!(first.hello(player.resume_hello()).await.resumed);
    let before = server.scrape().await;
    let bye = refused(&server, player.resume_hello()).await;
    assert!(bye.text.contains("already used"), "{}", bye.text);
    // The refused connection is counted as resume_rejected, and nothing else moved: a
    // reconnect storm after a deploy does not look like an attack on the credentials.
    let after = server
        .expect_close(&before, CloseReason::ResumeRejected)
        .await;
    assert_eq!(
        after.closed(CloseReason::AuthFailed),
        before.closed(CloseReason::AuthFailed)
    );
    assert_rejected_once(&after, "reused");
    server.stop().await;
}

#[tokio::test]
async fn another_players_token_is_refused_and_the_owner_can_still_resume() {
    let server = TestServer::start(|_| {}).await;
    let (owner, welcome) = park(&server, "owner").await;
    let thief = Player {
        name: "thief".into(),
        ..Player::new("thief", &welcome)
    };
    refused(&server, thief.resume_hello()).await;
    let mut o = RawClient::connect(server.addr).await;
    assert!(o.hello(owner.resume_hello()).await.resumed);
    server.stop().await;
}

/// The client noticed its connection died before the server did (a pulled cable the server has
/// not timed out yet) and reconnects at once: the old connection is closed as `replaced`, and the
/// session moves to the new one.
#[tokio::test]
async fn resuming_while_the_old_connection_still_looks_alive_takes_it_over() {
    let server = TestServer::start(|_| {}).await;
    let before = server.scrape().await;
    let (mut old, welcome) = RawClient::join(server.addr, "roamer").await;
    let mut roamer = Player::new("roamer", &welcome);
    old.send(input(1)).await;
    roamer.log.read_until(&mut old, 1).await;
    // The old socket stays open and silent.
    let mut new = RawClient::connect(server.addr).await;
    let resumed = new.hello(roamer.resume_hello()).await;
    assert!(resumed.resumed);
    assert_eq!(resumed.last_input_seq, 1);
    new.send(input(2)).await;
    roamer.log.read_until(&mut new, 2).await;
    old.expect_bye(ByeCode::Replaced).await;
    drop(old);
    let after = server.expect_close(&before, CloseReason::Replaced).await;
    assert_eq!(after.get("gameserver_sessions_resumed_total", &[]), 1.0);
    server.stop().await;
}

#[tokio::test]
async fn with_resume_off_a_broken_session_ends_at_once() {
    let server = TestServer::start(|c| c.session.resume_grace = Duration::ZERO).await;
    let (_, welcome) = join_and_abort(&server, "gone").await;
    assert!(welcome.resume_token.is_none());
    let after = wait_for(&server, "the close", |s| {
        s.closed(CloseReason::PeerReset) == 1
    })
    .await;
    assert_eq!(after.get("gameserver_sessions_parked", &[]), 0.0);
    server.stop().await;
}

/// A player the server placed in an automatic room comes back naming that room (as a client
/// that keeps the `Welcome`'s room does): the resume is taken, in the same room. The server
/// ignores the room of a resuming `Hello`; only a fresh `Hello` may not name `auto-N`.
#[tokio::test]
async fn a_player_placed_in_an_automatic_room_resumes_naming_it() {
    let server = TestServer::start(|_| {}).await;
    let (player, welcome) = park(&server, "placed").await;
    assert!(welcome.room.starts_with("auto-"), "{}", welcome.room);
    let mut back = RawClient::connect(server.addr).await;
    let resumed = back.hello(player.resume_hello_in(&welcome.room)).await;
    assert!(resumed.resumed, "the resume was taken");
    assert_eq!(resumed.room, welcome.room);
    server.stop().await;
}
