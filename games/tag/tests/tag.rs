//! The game of tag, tested as a game author would: rooms driven directly with the test kit's
//! `RoomHarness`, and the whole game behind the real engine with its `TestServer`.

use std::time::Duration;

use bytes::Bytes;
use game_engine::testkit::{
    ByeCode, RoomHarness, ServerMessage, TestPlayer, TestServer, default_game_config,
};
use game_engine::{CloseReason, Leave};
use tag::{AWAY_TOO_LONG_REASON, Command, Tag, TagConfig, TagRoom};

fn lines(player: &mut TestPlayer) -> Vec<String> {
    player
        .events()
        .into_iter()
        .map(|event| String::from_utf8(event.to_vec()).expect("text events"))
        .collect()
}

fn tag(target: &TestPlayer) -> Bytes {
    Command::Tag(target.session_id()).to_bytes()
}

fn room(config: TagConfig) -> RoomHarness<TagRoom> {
    RoomHarness::open(&Tag::new(config), "yard").expect("tag opens every room")
}

#[test]
fn the_first_player_is_it_and_a_newcomer_learns_who_is() {
    let mut yard = room(TagConfig::default());
    let mut ann = yard.join("ann").expect("ann joins");
    assert_eq!(yard.room().it(), Some(ann.session_id()));
    assert_eq!(lines(&mut ann), [format!("it {}", ann.session_id())]);
    let mut bob = yard.join("bob").expect("bob joins");
    assert_eq!(
        lines(&mut ann),
        [format!("joined {} bob", bob.session_id())],
        "the members hear of the newcomer"
    );
    assert_eq!(lines(&mut bob), [format!("it {}", ann.session_id())]);
    assert_eq!(yard.room().it(), Some(ann.session_id()), "still ann");
}

#[test]
fn it_tags_another_player_who_becomes_it_and_the_tagger_scores() {
    let mut yard = room(TagConfig::default());
    let mut ann = yard.join("ann").expect("ann");
    let mut bob = yard.join("bob").expect("bob");
    lines(&mut ann);
    lines(&mut bob);
    yard.input(&mut ann, tag(&bob));
    assert_eq!(yard.room().it(), Some(bob.session_id()));
    assert_eq!(yard.room().score(ann.session_id()), 1);
    let told = [
        format!("tagged {} {}", ann.session_id(), bob.session_id()),
        format!("it {}", bob.session_id()),
    ];
    assert_eq!(lines(&mut ann), told);
    assert_eq!(lines(&mut bob), told);
}

#[test]
fn only_it_tags_and_never_itself_or_a_stranger() {
    let mut yard = room(TagConfig::default());
    let mut ann = yard.join("ann").expect("ann");
    let mut bob = yard.join("bob").expect("bob");
    lines(&mut ann);
    lines(&mut bob);
    yard.input(&mut bob, tag(&ann));
    assert_eq!(lines(&mut bob), ["refused only it can tag"]);
    let own = tag(&ann);
    yard.input(&mut ann, own);
    assert_eq!(lines(&mut ann), ["refused it cannot tag itself"]);
    yard.input(&mut ann, Command::Tag(999).to_bytes());
    assert_eq!(lines(&mut ann), ["refused no such player in this room"]);
    assert!(
        lines(&mut bob).is_empty(),
        "refusals go to the sender alone"
    );
    assert_eq!(yard.room().it(), Some(ann.session_id()));
    assert_eq!(yard.room().score(ann.session_id()), 0);
}

#[test]
fn a_player_whose_connection_broke_cannot_be_tagged_and_does_not_stay_it() {
    let mut yard = room(TagConfig::default());
    let mut ann = yard.join("ann").expect("ann");
    let mut bob = yard.join("bob").expect("bob");
    let mut cat = yard.join("cat").expect("cat");
    lines(&mut ann);
    lines(&mut bob);
    lines(&mut cat);
    // Bob's connection breaks: he is away, not gone.
    yard.disconnect(&bob, CloseReason::PeerReset);
    assert_eq!(lines(&mut ann), [format!("away {}", bob.session_id())]);
    yard.input(&mut ann, tag(&bob));
    assert_eq!(lines(&mut ann), ["refused that player is away"]);
    // Ann is it and her connection breaks: the first player here becomes it.
    yard.disconnect(&ann, CloseReason::IdleTimeout);
    assert_eq!(yard.room().it(), Some(cat.session_id()));
    assert!(
        lines(&mut cat).contains(&format!("it {}", cat.session_id())),
        "cat hears she is it"
    );
    // Events keep queueing for Bob while he is away (the engine replays them on resume).
    assert_eq!(
        lines(&mut bob),
        [
            format!("away {}", ann.session_id()),
            format!("it {}", cat.session_id())
        ]
    );
    // Bob comes back: he hears who is it, and can be tagged again.
    yard.reconnect(&bob);
    assert_eq!(
        lines(&mut bob),
        [
            format!("back {}", bob.session_id()),
            format!("it {}", cat.session_id())
        ]
    );
    yard.input(&mut cat, tag(&bob));
    assert_eq!(yard.room().it(), Some(bob.session_id()));
}

#[test]
fn when_it_leaves_another_player_becomes_it() {
    let mut yard = room(TagConfig::default());
    let ann = yard.join("ann").expect("ann");
    let mut bob = yard.join("bob").expect("bob");
    lines(&mut bob);
    yard.leave(&ann, Leave::Closed(CloseReason::ClientQuit));
    assert_eq!(yard.room().it(), Some(bob.session_id()));
    assert_eq!(
        lines(&mut bob),
        [
            format!("left {}", ann.session_id()),
            format!("it {}", bob.session_id())
        ]
    );
    yard.leave(&bob, Leave::Moved);
    assert_eq!(yard.room().it(), None, "nobody is left to be it");
}

#[test]
fn a_malformed_input_ends_the_senders_session_with_the_games_reason() {
    let mut yard = room(TagConfig::default());
    let mut ann = yard.join("ann").expect("ann");
    let bob = yard.join("bob").expect("bob");
    yard.input(&mut ann, "tag bob");
    assert_eq!(
        ann.ended().as_deref(),
        Some("invalid input: not a session id: \"bob\"")
    );
    assert_eq!(bob.ended(), None);
    assert_eq!(
        Command::parse(b"hug 3"),
        Err("unknown command \"hug 3\"; expected `tag SESSION`".to_owned())
    );
}

#[test]
fn a_full_room_refuses_the_next_player() {
    let mut yard = room(TagConfig {
        players_per_room: 2,
        ..TagConfig::default()
    });
    yard.join("ann").expect("ann");
    yard.join("bob").expect("bob");
    let refusal = yard.join("cat").expect_err("the room is full");
    assert_eq!(refusal.reason(), "the room is full (2 players)");
}

#[test]
fn a_round_ends_on_its_timer_the_most_tags_win_and_scores_start_over() {
    let mut yard = room(TagConfig {
        round_seconds: 3,
        tag_back_immunity_ms: 0,
        ..TagConfig::default()
    });
    let mut ann = yard.join("ann").expect("ann");
    let mut bob = yard.join("bob").expect("bob");
    yard.input(&mut ann, tag(&bob));
    yard.input(&mut bob, tag(&ann));
    yard.input(&mut ann, tag(&bob));
    lines(&mut ann);
    yard.advance(Duration::from_millis(2_999));
    assert!(lines(&mut ann).is_empty(), "the round is not over yet");
    yard.advance(Duration::from_millis(1));
    assert_eq!(
        lines(&mut ann),
        [format!("round 1 won {} 2", ann.session_id())]
    );
    assert_eq!(yard.room().score(ann.session_id()), 0, "scores start over");
    assert_eq!(
        yard.advance(Duration::from_secs(3)),
        1,
        "the next round's timer"
    );
    assert_eq!(
        lines(&mut bob).last().map(String::as_str),
        Some("round 2 won nobody 0")
    );
}

#[test]
fn a_tagged_player_cannot_tag_back_at_once() {
    let mut yard = room(TagConfig::default());
    let mut ann = yard.join("ann").expect("ann");
    let mut bob = yard.join("bob").expect("bob");
    let mut cat = yard.join("cat").expect("cat");
    yard.input(&mut ann, tag(&bob));
    lines(&mut bob);
    yard.input(&mut bob, tag(&ann));
    assert_eq!(lines(&mut bob), ["refused no tag-backs yet"]);
    yard.advance(Duration::from_millis(999));
    yard.input(&mut bob, tag(&ann));
    assert_eq!(lines(&mut bob), ["refused no tag-backs yet"]);
    // Anyone else at once, and the immunity moves on to the new tagger.
    yard.input(&mut bob, tag(&cat));
    assert_eq!(yard.room().it(), Some(cat.session_id()));
    lines(&mut cat);
    yard.input(&mut cat, tag(&bob));
    assert_eq!(lines(&mut cat), ["refused no tag-backs yet"]);
    yard.input(&mut cat, tag(&ann));
    assert_eq!(
        yard.room().it(),
        Some(ann.session_id()),
        "ann is no longer immune"
    );
    yard.advance(Duration::from_secs(1));
    yard.input(&mut ann, tag(&cat));
    assert_eq!(
        yard.room().it(),
        Some(cat.session_id()),
        "a second later, cat may be tagged back"
    );
}

#[test]
fn a_player_who_logs_in_again_while_parked_keeps_its_score() {
    let mut yard = room(TagConfig::default());
    let mut ann = yard.join("ann").expect("ann");
    let mut bob = yard.join("bob").expect("bob");
    yard.input(&mut ann, tag(&bob));
    yard.advance(Duration::from_secs(1));
    yard.input(&mut bob, tag(&ann));
    lines(&mut ann);
    // Bob's app restarts and logs in afresh (no resume) while his old session is parked.
    yard.disconnect(&bob, CloseReason::PeerReset);
    let mut again = yard.rejoin(&bob).expect("let in");
    assert_eq!(yard.len(), 2, "the old session is no longer a member");
    assert_eq!(
        yard.room().score(again.session_id()),
        1,
        "his tag still counts"
    );
    assert_eq!(
        lines(&mut ann),
        [
            format!("away {}", bob.session_id()),
            format!("rejoined {} {}", bob.session_id(), again.session_id()),
        ]
    );
    assert_eq!(lines(&mut again), [format!("it {}", ann.session_id())]);
}

#[test]
fn a_player_who_logs_in_again_while_it_stays_it() {
    let mut yard = room(TagConfig::default());
    let mut ann = yard.join("ann").expect("ann");
    let bob = yard.join("bob").expect("bob");
    yard.input(&mut ann, tag(&bob));
    let mut again = yard.rejoin(&bob).expect("let in");
    assert_eq!(yard.room().it(), Some(again.session_id()));
    assert_eq!(lines(&mut again), [format!("it {}", again.session_id())]);
    // Ann's immunity holds against the new session too.
    yard.input(&mut again, tag(&ann));
    assert_eq!(lines(&mut again), ["refused no tag-backs yet"]);
}

#[test]
fn when_the_server_drains_the_round_ends_and_everybody_hears_who_won() {
    let mut yard = room(TagConfig::default());
    let mut ann = yard.join("ann").expect("ann");
    let mut bob = yard.join("bob").expect("bob");
    yard.input(&mut ann, tag(&bob));
    lines(&mut ann);
    lines(&mut bob);
    yard.drain(Duration::from_secs(30));
    let won = format!("round 1 won {} 1", ann.session_id());
    assert_eq!(lines(&mut ann), std::slice::from_ref(&won));
    assert_eq!(lines(&mut bob), [won]);
    yard.advance(Duration::from_secs(600));
    assert!(lines(&mut ann).is_empty(), "no round timer left");
}

#[test]
fn the_defaults_load_and_a_room_for_one_is_a_named_error() {
    let config: TagConfig = default_game_config().expect("the [game] defaults load");
    assert_eq!(config, TagConfig::default());
    let problems = game_engine::GameConfig::validate(&TagConfig {
        players_per_room: 1,
        round_seconds: 100_000,
        tag_back_immunity_ms: 60_001,
        reconnect_grace_ms: 3_600_001,
    });
    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "game.players_per_room",
            "game.round_seconds",
            "game.reconnect_grace_ms",
            "game.tag_back_immunity_ms"
        ]
    );
}

/// The whole game behind the real engine: two players in one room over in-memory connections,
/// a tag that reaches both, and a quit the other hears of.
#[tokio::test]
async fn two_players_play_tag_through_the_engine() {
    let server = TestServer::start(Tag::default(), |_| {}).await;
    let mut ann = server.join("ann", "yard").await.expect("ann is welcome");
    let ann_id = ann.welcome().expect("welcome").session_id;
    expect_events(&mut ann, &[format!("it {ann_id}")]).await;
    let mut bob = server.join("bob", "yard").await.expect("bob is welcome");
    let bob_id = bob.welcome().expect("welcome").session_id;
    expect_events(&mut bob, &[format!("it {ann_id}")]).await;
    expect_events(&mut ann, &[format!("joined {bob_id} bob")]).await;
    ann.input(Command::Tag(bob_id).to_bytes()).await;
    for client in [&mut ann, &mut bob] {
        expect_events(
            client,
            &[format!("tagged {ann_id} {bob_id}"), format!("it {bob_id}")],
        )
        .await;
    }
    bob.quit().await;
    expect_events(
        &mut ann,
        &[format!("left {bob_id}"), format!("it {ann_id}")],
    )
    .await;
    ann.quit().await;
    server.stop().await;
}

/// The normal dependencies of this crate, as `cargo tree` lists them.
fn dependencies(features: &[&str]) -> String {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = std::process::Command::new(cargo)
        .args(["tree", "--locked", "--offline", "-p", "tag", "-e", "normal"])
        .args(["--prefix", "none", "--format", "{p}"])
        .args(features)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo tree");
    assert!(
        output.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A game that embeds the engine in a program of its own leaves the app shell out, and with it
/// the command line parser, the HTTP client and the log subscriber.
#[test]
fn without_the_app_feature_the_game_pulls_no_command_line_http_client_or_log_subscriber() {
    let shell = ["clap ", "reqwest ", "tracing-subscriber "];
    let embedded = dependencies(&["--no-default-features"]);
    assert!(embedded.contains("game-engine "), "{embedded}");
    for crate_name in shell {
        assert!(
            !embedded.lines().any(|line| line.starts_with(crate_name)),
            "{crate_name}in the embedded game's tree:\n{embedded}"
        );
    }
    let program = dependencies(&[]);
    for crate_name in shell {
        assert!(
            program.lines().any(|line| line.starts_with(crate_name)),
            "{crate_name}missing from the program's tree"
        );
    }
}

/// Reads events until the server's `Bye`: the events as text, and the `Bye`.
/// Reads `client`'s next events and checks that they are `expected`, in order.
async fn expect_events(client: &mut game_engine::testkit::TestClient, expected: &[String]) {
    for line in expected {
        let event = client.next_event().await;
        assert_eq!(event, Some(Bytes::from(line.clone())), "expected {line:?}");
    }
}

async fn until_bye(client: &mut game_engine::testkit::TestClient) -> (Vec<String>, ByeCode) {
    let mut events = Vec::new();
    loop {
        match client.recv().await {
            Some(ServerMessage::Event { payload, .. }) => {
                events.push(String::from_utf8(payload.to_vec()).expect("text"));
            }
            Some(ServerMessage::Bye(bye)) => return (events, bye.code),
            Some(_) => {}
            None => panic!("the stream ended without a Bye after {events:?}"),
        }
    }
}

/// The drain hook runs before the sessions close: every player hears who won the round, then
/// gets `Bye{server_shutdown}`.
#[tokio::test]
async fn when_the_server_drains_every_player_hears_who_won_before_its_bye() {
    let server = TestServer::start(Tag::default(), |_| {}).await;
    let mut ann = server.join("ann", "yard").await.expect("ann");
    let bob = server.join("bob", "yard").await.expect("bob");
    let ann_id = ann.welcome().expect("welcome").session_id;
    ann.input(Command::Tag(bob.welcome().expect("welcome").session_id).to_bytes())
        .await;
    let stopping = tokio::spawn(server.stop());
    let won = format!("round 1 won {ann_id} 1");
    for mut client in [ann, bob] {
        let (events, bye) = until_bye(&mut client).await;
        assert_eq!(events.last(), Some(&won), "{events:?}");
        assert_eq!(bye, ByeCode::ServerShutdown);
        // Hung up on its Bye, as a client does: the server's lingering close is over.
    }
    stopping.await.expect("the server stops");
}

/// A player whose connection went away resumes with the test kit's client: what it missed is
/// replayed, and its next input continues the session's sequence (none is dropped as a
/// duplicate).
#[tokio::test]
async fn a_player_whose_connection_went_away_resumes_and_plays_on() {
    let game = Tag::new(TagConfig {
        tag_back_immunity_ms: 0,
        ..TagConfig::default()
    });
    let server = TestServer::start(game, |_| {}).await;
    let mut ann = server.join("ann", "yard").await.expect("ann");
    let mut bob = server.join("bob", "yard").await.expect("bob");
    let ann_id = ann.welcome().expect("welcome").session_id;
    let bob_id = bob.welcome().expect("welcome").session_id;
    expect_events(
        &mut ann,
        &[format!("it {ann_id}"), format!("joined {bob_id} bob")],
    )
    .await;
    ann.input(Command::Tag(bob_id).to_bytes()).await;
    let gone = ann.vanish();
    while bob.next_event().await != Some(Bytes::from(format!("away {ann_id}"))) {}
    bob.input(Command::Tag(ann_id).to_bytes()).await;
    expect_events(&mut bob, &["refused that player is away".to_owned()]).await;
    let mut ann = server.resume(&gone).await.expect("resumed");
    // What Ann missed: her own tag, then her return.
    expect_events(
        &mut ann,
        &[
            format!("tagged {ann_id} {bob_id}"),
            format!("it {bob_id}"),
            format!("back {ann_id}"),
            format!("it {bob_id}"),
        ],
    )
    .await;
    bob.input(Command::Tag(ann_id).to_bytes()).await;
    expect_events(
        &mut ann,
        &[format!("tagged {bob_id} {ann_id}"), format!("it {ann_id}")],
    )
    .await;
    // Ann's second input: applied, not taken for a repeat of her first.
    ann.input(Command::Tag(bob_id).to_bytes()).await;
    expect_events(&mut ann, &[format!("tagged {ann_id} {bob_id}")]).await;
    ann.quit().await;
    bob.quit().await;
    server.stop().await;
}

/// A player who logs in again without resuming while its old session is parked is let in, and
/// the room hears that it is the same player: its score is kept. The old session is over for
/// good: its resume is refused.
#[tokio::test]
async fn a_player_who_logs_in_again_while_parked_is_let_in_as_the_same_player() {
    let server = TestServer::start(Tag::default(), |_| {}).await;
    let mut ann = server.join("ann", "yard").await.expect("ann");
    let mut bob = server.join("bob", "yard").await.expect("bob");
    let ann_id = ann.welcome().expect("welcome").session_id;
    let bob_id = bob.welcome().expect("welcome").session_id;
    expect_events(
        &mut ann,
        &[format!("it {ann_id}"), format!("joined {bob_id} bob")],
    )
    .await;
    ann.input(Command::Tag(bob_id).to_bytes()).await;
    let gone = ann.vanish();
    while bob.next_event().await != Some(Bytes::from(format!("away {ann_id}"))) {}
    let again = server.join("ann", "yard").await.expect("let in");
    let again_id = again.welcome().expect("welcome").session_id;
    expect_events(&mut bob, &[format!("rejoined {ann_id} {again_id}")]).await;
    assert!(
        matches!(server.resume(&gone).await, Err(bye) if bye.code == ByeCode::ResumeRejected),
        "the old session's resume is refused"
    );
    assert_eq!(server.closed(CloseReason::PeerEof), 1);
    again.quit().await;
    bob.quit().await;
    server.stop().await;
}

#[test]
fn a_room_that_does_not_wait_ends_a_player_whose_connection_broke_at_once() {
    let mut yard = room(TagConfig {
        reconnect_grace_ms: 0,
        ..TagConfig::default()
    });
    let _ann = yard.join("ann").expect("ann");
    let bob = yard.join("bob").expect("bob");
    yard.disconnect(&bob, CloseReason::PeerReset);
    assert_eq!(bob.ended().as_deref(), Some(AWAY_TOO_LONG_REASON));
}

#[test]
fn a_room_waits_its_own_grace_for_a_player_whose_connection_broke() {
    let mut yard = room(TagConfig {
        reconnect_grace_ms: 2_000,
        ..TagConfig::default()
    });
    let ann = yard.join("ann").expect("ann");
    let bob = yard.join("bob").expect("bob");
    yard.disconnect(&ann, CloseReason::PeerReset);
    yard.advance(Duration::from_millis(1_000));
    yard.reconnect(&ann);
    yard.advance(Duration::from_secs(5));
    assert_eq!(
        ann.ended(),
        None,
        "back in time: the room's timer was cancelled"
    );
    yard.disconnect(&bob, CloseReason::IdleTimeout);
    yard.advance(Duration::from_millis(1_999));
    assert_eq!(bob.ended(), None);
    yard.advance(Duration::from_millis(1));
    assert_eq!(bob.ended().as_deref(), Some(AWAY_TOO_LONG_REASON));
}

/// A room that does not wait: the player whose connection broke leaves at once, and its resume
/// is refused with the room's reason.
#[tokio::test]
async fn a_reconnection_the_room_refuses_is_refused_with_the_rooms_reason() {
    let game = Tag::new(TagConfig {
        reconnect_grace_ms: 0,
        ..TagConfig::default()
    });
    let server = TestServer::start(game, |_| {}).await;
    let ann = server.join("ann", "yard").await.expect("ann");
    let mut bob = server.join("bob", "yard").await.expect("bob");
    let ann_id = ann.welcome().expect("welcome").session_id;
    let gone = ann.vanish();
    while bob.next_event().await != Some(Bytes::from(format!("left {ann_id}"))) {}
    let bye = server.resume(&gone).await.expect_err("refused");
    assert_eq!(bye.code, ByeCode::ResumeRejected);
    assert!(bye.text.contains(AWAY_TOO_LONG_REASON), "{}", bye.text);
    bob.quit().await;
    server.stop().await;
}

/// A room that would wait a minute on a server that keeps parked sessions a second: the
/// server's grace bounds the room's.
#[tokio::test]
async fn the_servers_resume_grace_bounds_the_rooms() {
    let server = TestServer::start(Tag::default(), |config| {
        config.session.resume_grace = Duration::from_secs(1);
    })
    .await;
    let ann = server.join("ann", "yard").await.expect("ann");
    let mut bob = server.join("bob", "yard").await.expect("bob");
    let ann_id = ann.welcome().expect("welcome").session_id;
    let gone = ann.vanish();
    let waited = tokio::time::Instant::now();
    while bob.next_event().await != Some(Bytes::from(format!("left {ann_id}"))) {}
    assert!(
        waited.elapsed() < Duration::from_secs(10),
        "left after {:?}, not the room's minute",
        waited.elapsed()
    );
    let bye = server.resume(&gone).await.expect_err("expired");
    assert!(bye.text.contains("expired"), "{}", bye.text);
    bob.quit().await;
    server.stop().await;
}

#[test]
fn a_room_publishes_its_label_locks_while_full_and_answers_signals() {
    let mut yard = room(TagConfig {
        players_per_room: 2,
        ..TagConfig::default()
    });
    let mut ann = yard.join("ann").expect("ann");
    assert_eq!(yard.label(), Some("tag"));
    assert!(!yard.is_locked());
    let bob = yard.join("bob").expect("bob");
    assert!(yard.is_locked(), "full");
    yard.input(&mut ann, tag(&bob));
    assert_eq!(
        yard.signal("standings"),
        Bytes::from(format!("{} 1\n{} 0", ann.session_id(), bob.session_id()))
    );
    assert_eq!(
        yard.signal("end-round"),
        Bytes::from(format!("round 1 won {} 1", ann.session_id()))
    );
    assert_eq!(yard.room().score(ann.session_id()), 0);
    yard.leave(&bob, Leave::Closed(CloseReason::ClientQuit));
    assert!(!yard.is_locked(), "room again");
}

/// The game's own code (here the test, through the test kit) lists the rooms by label and
/// signals one; a locked room is not placed in automatically.
#[tokio::test]
async fn rooms_are_listed_by_label_and_signalled_by_name() {
    let game = Tag::new(TagConfig {
        players_per_room: 2,
        ..TagConfig::default()
    });
    let server = TestServer::start(game, |_| {}).await;
    let ann = server.join("ann", "yard").await.expect("ann");
    let bob = server.join("bob", "yard").await.expect("bob");
    let cat = server.join("cat", "field").await.expect("cat");
    let rooms = server.rooms();
    let page = rooms.list(&game_engine::RoomQuery {
        label: Some("tag".to_owned()),
        ..Default::default()
    });
    let listed: Vec<(&str, usize, bool)> = page
        .rooms
        .iter()
        .map(|r| (r.name.as_str(), r.players, r.locked))
        .collect();
    assert_eq!(listed, [("field", 1, false), ("yard", 2, true)]);
    let open = rooms.list(&game_engine::RoomQuery {
        unlocked: true,
        ..Default::default()
    });
    assert_eq!(open.rooms.len(), 1, "{open:?}");
    let none = rooms.list(&game_engine::RoomQuery {
        label: Some("chess".to_owned()),
        ..Default::default()
    });
    assert!(none.rooms.is_empty());
    let paged = rooms.list(&game_engine::RoomQuery {
        limit: Some(1),
        ..Default::default()
    });
    assert_eq!(paged.next_after.as_deref(), Some("field"));
    assert_eq!(paged.total, 2);
    let answer = rooms
        .signal("yard", Bytes::from("standings"))
        .await
        .expect("answered");
    let ann_id = ann.welcome().expect("welcome").session_id;
    assert!(
        answer.starts_with(format!("{ann_id} 0").as_bytes()),
        "{answer:?}"
    );
    assert_eq!(
        rooms.signal("nowhere", Bytes::from("standings")).await,
        Err(game_engine::SignalError::NoSuchRoom("nowhere".to_owned()))
    );
    for client in [ann, bob, cat] {
        client.quit().await;
    }
    server.stop().await;
}
