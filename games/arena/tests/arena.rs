//! The arena, driven with the engine's test kit: the simulation one room at a time, then whole
//! matches behind the engine over in-memory connections on a paused clock.

use std::time::Duration;

use arena::{Arena, ArenaConfig, LABEL, Snapshot, Steer, Team};
use bytes::Bytes;
use game_engine::testkit::{RoomHarness, TestServer, default_game_config};
use protocol::{ByeCode, ServerMessage};

fn config() -> ArenaConfig {
    ArenaConfig {
        players_per_arena: 2,
        arena_size: 100.0,
        max_speed: 20.0,
        tick_rate_hz: 10,
        match_seconds: 0,
    }
}

fn last_snapshot(events: Vec<Bytes>) -> Snapshot {
    events
        .into_iter()
        .filter_map(Snapshot::from_bytes)
        .last()
        .expect("a snapshot")
}

#[test]
fn the_server_moves_players_from_their_inputs_and_keeps_them_inside() {
    let game = Arena::new(config());
    let mut room = RoomHarness::open(&game, "pit").expect("opens");
    let mut runner = room.join("runner").expect("joins");
    room.tick();
    let start = last_snapshot(runner.events())
        .of(runner.session_id())
        .expect("in the snapshot");
    // Full speed along +x: 20 units/s, 10 ticks a second, 2 units a tick.
    room.input(&mut runner, Steer { dx: 1000, dy: 0 }.to_bytes());
    for _ in 0..5 {
        room.tick();
    }
    let moved = last_snapshot(runner.events())
        .of(runner.session_id())
        .expect("in the snapshot");
    assert!(
        (moved.x - (start.x + 10.0).min(100.0)).abs() < 1e-3,
        "{start:?} -> {moved:?}"
    );
    assert_eq!(moved.y, start.y);
    // Long enough to cross the arena: it stops at the wall.
    for _ in 0..100 {
        room.tick();
    }
    let walled = last_snapshot(runner.events())
        .of(runner.session_id())
        .expect("in the snapshot");
    assert_eq!(walled.x, 100.0);
}

#[test]
fn a_full_arena_refuses_and_a_bad_input_ends_the_sender() {
    let game = Arena::new(config());
    let mut room = RoomHarness::open(&game, "pit").expect("opens");
    let mut a = room.join("a").expect("joins");
    let _b = room.join("b").expect("joins");
    let refused = room.join("c").expect_err("full");
    assert!(refused.reason().contains("full"), "{refused}");
    room.input(&mut a, Bytes::from_static(b"teleport me"));
    assert_eq!(
        a.ended().as_deref(),
        Some("invalid input: an input is 4 bytes, got 11")
    );
}

#[test]
fn the_game_section_is_validated_with_its_keys() {
    let config: ArenaConfig = default_game_config().expect("defaults load");
    assert_eq!(config, ArenaConfig::default());
    let bad = ArenaConfig {
        arena_size: -1.0,
        tick_rate_hz: 0,
        ..ArenaConfig::default()
    };
    let keys: Vec<String> = game_engine::GameConfig::validate(&bad)
        .into_iter()
        .map(|p| p.key)
        .collect();
    assert_eq!(keys, ["game.arena_size", "game.tick_rate_hz"]);
}

#[tokio::test(start_paused = true)]
async fn a_match_ends_for_everybody_with_the_games_own_reason() {
    let game = Arena::new(ArenaConfig {
        match_seconds: 3,
        ..config()
    });
    let server = TestServer::start(game, |_| {}).await;
    let mut a = server.join("a", "final").await.expect("welcome");
    let mut b = server.join("b", "final").await.expect("welcome");
    a.input(Steer { dx: 0, dy: 1000 }.to_bytes()).await;
    let started = tokio::time::Instant::now();
    let bye_a = a.until_bye().await.expect("a Bye");
    let bye_b = b.until_bye().await.expect("a Bye");
    assert_eq!(bye_a.code, ByeCode::GameEnded);
    assert_eq!(bye_a.text, "the match is over");
    assert_eq!(bye_b.code, ByeCode::GameEnded);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(2_800) && took <= Duration::from_millis(3_200),
        "the match lasted {took:?}"
    );
    server.stop().await;
}

#[tokio::test(start_paused = true)]
async fn clients_steer_and_see_each_other_in_the_snapshots() {
    let server = TestServer::start(Arena::new(config()), |_| {}).await;
    let mut a = server.join("a", "duel").await.expect("welcome");
    let mut b = server.join("b", "duel").await.expect("welcome");
    let a_id = a.welcome().expect("welcome").session_id;
    let b_id = b.welcome().expect("welcome").session_id;
    b.input(Steer { dx: -1000, dy: 0 }.to_bytes()).await;
    let first = loop {
        let snapshot =
            Snapshot::from_bytes(a.next_event().await.expect("an event")).expect("a snapshot");
        if snapshot.positions.len() == 2 {
            break snapshot;
        }
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut later = first.clone();
    while later.tick < first.tick + 10 {
        later = Snapshot::from_bytes(a.next_event().await.expect("an event")).expect("a snapshot");
    }
    assert_eq!(later.of(a_id).map(|p| p.x), first.of(a_id).map(|p| p.x));
    let (b0, b1) = (first.of(b_id).expect("b"), later.of(b_id).expect("b"));
    assert!(b1.x < b0.x || b0.x == 0.0, "b moved left: {b0:?} -> {b1:?}");
    server.stop().await;
}

#[test]
fn join_options_choose_the_side_a_player_appears_on() {
    let game = Arena::new(ArenaConfig {
        players_per_arena: 8,
        ..config()
    });
    let mut room = RoomHarness::open(&game, "pit").expect("opens");
    let mut reds: Vec<_> = (0..3)
        .map(|i| {
            room.join_with(&format!("red{i}"), Team::Red.options())
                .expect("joins")
        })
        .collect();
    let blues: Vec<_> = (0..3)
        .map(|i| {
            room.join_with(&format!("blue{i}"), Team::Blue.options())
                .expect("joins")
        })
        .collect();
    let refused = room
        .join_with("green", b"team=green")
        .expect_err("no such team");
    assert!(refused.reason().contains("team=red"), "{refused}");
    room.tick();
    let snapshot = last_snapshot(reds[0].events());
    for red in &reds {
        let at = snapshot.of(red.session_id()).expect("red");
        assert!(at.x <= 50.0, "red at {at:?}");
    }
    for blue in &blues {
        let at = snapshot.of(blue.session_id()).expect("blue");
        assert!(at.x >= 50.0, "blue at {at:?}");
    }
}

#[test]
fn an_arena_is_listed_under_its_label_and_locks_while_full_or_over() {
    let game = Arena::new(ArenaConfig {
        match_seconds: 60,
        ..config()
    });
    let mut room = RoomHarness::open(&game, "pit").expect("opens");
    let a = room.join("a").expect("joins");
    assert_eq!(room.label(), Some(LABEL));
    assert!(!room.is_locked());
    let b = room.join("b").expect("joins");
    assert!(room.is_locked(), "full at 2 players");
    room.leave(&b, game_engine::Leave::Moved);
    assert!(!room.is_locked(), "a place is free again");
    // The match timer, set when the first player came, ends the match and locks the arena.
    room.advance(Duration::from_secs(59));
    assert_eq!(a.ended(), None);
    room.advance(Duration::from_secs(1));
    assert_eq!(a.ended().as_deref(), Some("the match is over"));
    assert!(room.is_locked());
}

#[test]
fn when_the_server_drains_every_player_gets_a_last_snapshot() {
    let game = Arena::new(config());
    let mut room = RoomHarness::open(&game, "pit").expect("opens");
    let mut a = room.join("a").expect("joins");
    room.tick();
    assert!(!last_snapshot(a.events()).last);
    room.drain(Duration::from_secs(10));
    let last = last_snapshot(a.events());
    assert!(last.last, "{last:?}");
    assert!(last.of(a.session_id()).is_some());
}

/// Through the engine: the team in the `Hello`'s options places the player, and on a drain the
/// final snapshot comes before `Bye{server_shutdown}`.
#[tokio::test(start_paused = true)]
async fn a_player_picks_its_team_in_its_hello_and_hears_the_final_snapshot_before_its_bye() {
    let server = TestServer::start(Arena::new(config()), |_| {}).await;
    let mut blue = server
        .join_with("b", "duel", Team::Blue.options())
        .await
        .expect("welcome");
    let refused = server
        .join_with("g", "duel", &b"team=green"[..])
        .await
        .expect_err("refused");
    assert_eq!(refused.code, ByeCode::JoinRefused);
    let id = blue.welcome().expect("welcome").session_id;
    let first = Snapshot::from_bytes(blue.next_event().await.expect("an event")).expect("snapshot");
    assert!(first.of(id).expect("placed").x >= 50.0, "{first:?}");
    let stopping = tokio::spawn(server.stop());
    let mut last = None;
    let bye = loop {
        match blue.recv().await.expect("a Bye before the end") {
            ServerMessage::Event { payload, .. } => last = Snapshot::from_bytes(payload),
            ServerMessage::Bye(bye) => break bye,
            _ => {}
        }
    };
    assert_eq!(bye.code, ByeCode::ServerShutdown);
    assert!(
        last.expect("snapshots").last,
        "the final snapshot came last"
    );
    stopping.await.expect("the server stops");
}
