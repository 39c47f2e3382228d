//! The demo game, driven with the engine's test kit: one room directly, then the whole game
//! behind the engine over in-memory connections.

use std::time::Duration;

use bytes::Bytes;
use game_engine::testkit::{RoomHarness, TestServer, default_game_config};
use game_engine::{CloseReason, Leave};
use protocol::ByeCode;
use rooms::payload::DemoEvent;
use rooms::{Rooms, RoomsConfig};

fn decode(events: Vec<Bytes>) -> Vec<DemoEvent> {
    events
        .into_iter()
        .map(|b| DemoEvent::from_bytes(b).expect("a demo event"))
        .collect()
}

#[test]
fn inputs_are_relayed_to_the_whole_room_and_state_follows_on_the_tick() {
    let game = Rooms::default();
    let mut room = RoomHarness::open(&game, "arena").expect("opens");
    let mut a = room.join("a").expect("joins");
    let mut b = room.join("b").expect("joins");
    room.input(&mut a, "jump");
    let relay = DemoEvent::Relay {
        from: "a".into(),
        input_seq: 1,
        data: Bytes::from_static(b"jump"),
    };
    assert_eq!(decode(a.events()), std::slice::from_ref(&relay));
    assert_eq!(decode(b.events()), [relay]);
    let tick = room.tick();
    let state = DemoEvent::State {
        tick,
        members: 2,
        inputs: 1,
    };
    assert_eq!(decode(a.events()), std::slice::from_ref(&state));
    assert_eq!(decode(b.events()), [state]);
    // Nothing changed since: the next tick sends nothing.
    room.tick();
    assert!(a.events().is_empty());
    // A leave changes the room.
    room.leave(&b, Leave::Closed(CloseReason::ClientQuit));
    let tick = room.tick();
    assert_eq!(
        decode(a.events()),
        [DemoEvent::State {
            tick,
            members: 1,
            inputs: 0
        }]
    );
    assert!(b.events().is_empty(), "a player who left hears nothing");
}

#[test]
fn presence_is_announced_when_configured() {
    let game = Rooms::new(RoomsConfig {
        announce_presence: true,
        ..RoomsConfig::default()
    });
    let mut room = RoomHarness::open(&game, "lobby").expect("opens");
    let mut a = room.join("a").expect("joins");
    let b = room.join("b").expect("joins");
    // The members hear a newcomer; the newcomer is not yet a member when it is announced.
    assert_eq!(
        decode(a.events()),
        [DemoEvent::Presence {
            joined: true,
            player: "b".into()
        }]
    );
    room.leave(&b, Leave::Moved);
    assert_eq!(
        decode(a.events()),
        [DemoEvent::Presence {
            joined: false,
            player: "b".into()
        }]
    );
}

#[test]
fn a_full_named_room_refuses_and_an_automatic_one_does_not() {
    let game = Rooms::new(RoomsConfig {
        named_room_capacity: 2,
        ..RoomsConfig::default()
    });
    let mut named = RoomHarness::open(&game, "duo").expect("opens");
    named.join("a").expect("first");
    named.join("b").expect("second");
    let refused = named.join("c").expect_err("third is refused");
    assert!(refused.reason().contains("full"), "{refused}");
    // Automatic rooms are the engine's to fill (rooms.auto_room_capacity).
    let mut auto = RoomHarness::open_automatic(&game, "auto-1").expect("opens");
    for n in 0..5 {
        auto.join(&format!("p{n}")).expect("joins");
    }
}

#[test]
fn the_game_section_loads_with_its_defaults_and_its_keys() {
    let config: RoomsConfig = default_game_config().expect("defaults load");
    assert_eq!(config, RoomsConfig::default());
}

#[tokio::test(start_paused = true)]
async fn behind_the_engine_a_refused_hello_is_bye_join_refused_and_a_refused_join_keeps_the_room() {
    let game = Rooms::new(RoomsConfig {
        named_room_capacity: 1,
        ..RoomsConfig::default()
    });
    let server = TestServer::start(game, |_| {}).await;
    let mut first = server.join("first", "solo").await.expect("welcome");
    let refused = server
        .join("second", "solo")
        .await
        .expect_err("the room is full");
    assert_eq!(refused.code, ByeCode::JoinRefused);
    assert!(refused.text.contains("full"), "{}", refused.text);
    let mut other = server.join("other", "elsewhere").await.expect("welcome");
    let answer = other.join("solo").await;
    assert!(
        answer.as_ref().is_err_and(|why| why.contains("full")),
        "{answer:?}"
    );
    // Still in its room: its input comes back from there.
    other.input("still here").await;
    let echoed = other.next_event().await.expect("an event");
    assert!(matches!(
        DemoEvent::from_bytes(echoed),
        Ok(DemoEvent::Relay { .. } | DemoEvent::State { .. })
    ));
    first.input("hi").await;
    assert!(first.next_event().await.is_some());
    server.stop().await;
}

/// The largest input the protocol allows still makes a relay that fits in a frame, even from a
/// player with the longest id, so event numbers never skip; one byte more is refused as the
/// protocol says.
#[tokio::test(start_paused = true)]
async fn the_largest_input_is_relayed_without_a_gap_and_a_larger_one_is_refused() {
    let server = TestServer::start(Rooms::default(), |_| {}).await;
    let longest_id = "p".repeat(protocol::MAX_PLAYER_ID_BYTES);
    let mut client = server.join(&longest_id, "big").await.expect("welcome");
    let largest = protocol::max_input_payload(protocol::DEFAULT_MAX_FRAME_BYTES);
    client.input(vec![7u8; largest]).await;
    client.input("small").await;
    let mut seqs = Vec::new();
    let mut relays = 0;
    while relays < 2 {
        match client.recv().await.expect("the session goes on") {
            protocol::ServerMessage::Event { seq, payload } => {
                seqs.push(seq);
                if let Ok(DemoEvent::Relay { data, .. }) = DemoEvent::from_bytes(payload) {
                    assert!(data.len() == largest || &data[..] == b"small");
                    relays += 1;
                }
            }
            protocol::ServerMessage::Bye(bye) => panic!("closed: {bye:?}"),
            _ => {}
        }
    }
    let contiguous: Vec<u64> = (1..=seqs.len() as u64).collect();
    assert_eq!(seqs, contiguous, "every event numbered, none skipped");
    client.input(vec![7u8; largest + 1]).await;
    let bye = client.until_bye().await.expect("a Bye");
    assert_eq!(bye.code, ByeCode::ProtocolError);
    assert!(
        bye.text.contains(&format!("at most {largest}")),
        "{}",
        bye.text
    );
    server.stop().await;
}

#[test]
fn a_password_in_the_join_options_makes_a_named_room_private() {
    let game = Rooms::default();
    let mut vault = RoomHarness::open_with(&game, "vault", b"password=sesame").expect("opens");
    vault
        .join_with("owner", b"password=sesame")
        .expect("the opener gets in");
    assert_eq!(vault.label(), Some("private"));
    for wrong in [&b""[..], b"password=open", b"team=red"] {
        let refused = vault.join_with("guest", wrong).expect_err("refused");
        assert!(refused.reason().contains("private"), "{refused}");
    }
    vault
        .join_with("friend", b"password=sesame")
        .expect("the password opens it");
    // Other options open a public room; automatic rooms are never private.
    let mut hall = RoomHarness::open_with(&game, "hall", b"team=red").expect("opens");
    hall.join("anyone").expect("public");
    assert_eq!(hall.label(), Some("public"));
    let mut auto = RoomHarness::open_automatic(&game, "auto-1").expect("opens");
    auto.join_with("p", b"password=x").expect("joins");
    auto.join("q").expect("not private");
}

#[test]
fn a_named_room_ends_its_players_when_its_time_is_up() {
    let game = Rooms::new(RoomsConfig {
        room_seconds: 30,
        ..RoomsConfig::default()
    });
    let mut room = RoomHarness::open(&game, "sprint").expect("opens");
    let first = room.join("first").expect("joins");
    room.advance(Duration::from_secs(20));
    let late = room.join("late").expect("joins");
    room.advance(Duration::from_secs(9));
    assert_eq!(first.ended(), None);
    room.advance(Duration::from_secs(1));
    assert_eq!(first.ended().as_deref(), Some("the room's time is up"));
    assert_eq!(late.ended().as_deref(), Some("the room's time is up"));
    // Automatic rooms have no lifetime.
    let mut auto = RoomHarness::open_automatic(&game, "auto-1").expect("opens");
    let stays = auto.join("stays").expect("joins");
    auto.advance(Duration::from_secs(60));
    assert_eq!(stays.ended(), None);
}

#[test]
fn a_draining_room_sends_the_state_its_next_tick_would_have_sent() {
    let game = Rooms::default();
    let mut room = RoomHarness::open(&game, "lobby").expect("opens");
    let mut a = room.join("a").expect("joins");
    room.tick();
    a.events();
    room.input(&mut a, Bytes::from_static(b"last words"));
    room.drain(Duration::from_secs(10));
    let events = decode(a.events());
    assert!(
        matches!(
            events.last(),
            Some(DemoEvent::State {
                members: 1,
                inputs: 1,
                ..
            })
        ),
        "{events:?}"
    );
    // Nothing new: nothing more to say.
    room.drain(Duration::from_secs(10));
    assert!(a.events().is_empty());
}

#[tokio::test(start_paused = true)]
async fn behind_the_engine_a_private_room_takes_only_its_password_and_is_listed_as_private() {
    let server = TestServer::start(Rooms::default(), |_| {}).await;
    let _owner = server
        .join_with("owner", "vault", &b"password=sesame"[..])
        .await
        .expect("welcome");
    let refused = server
        .join("guest", "vault")
        .await
        .expect_err("no password");
    assert_eq!(refused.code, ByeCode::JoinRefused);
    assert!(refused.text.contains("private"), "{}", refused.text);
    let mut mover = server.join("mover", "hall").await.expect("welcome");
    let answer = mover.join_with("vault", &b"password=guess"[..]).await;
    assert!(
        answer.as_ref().is_err_and(|why| why.contains("private")),
        "{answer:?}"
    );
    assert_eq!(
        mover.join_with("vault", &b"password=sesame"[..]).await,
        Ok("vault".to_owned())
    );
    let private = server.rooms().list(&game_engine::RoomQuery {
        label: Some("private".into()),
        ..Default::default()
    });
    let names: Vec<_> = private.rooms.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["vault"]);
    assert_eq!(private.rooms[0].players, 2);
    server.stop().await;
}

/// A player who names no room and asks for a lobby in its options is placed with the players
/// who asked for the same lobby, in automatic rooms labelled with it; other players are not
/// placed there once it is full.
#[tokio::test(start_paused = true)]
async fn players_who_ask_for_a_lobby_are_placed_together_in_its_automatic_rooms() {
    let server = TestServer::start(Rooms::default(), |config| {
        config.rooms.auto_room_capacity = 2;
    })
    .await;
    let room_of =
        |client: &game_engine::testkit::TestClient| client.welcome().expect("welcome").room.clone();
    let eu1 = server
        .join_with("eu1", "", &b"lobby=eu"[..])
        .await
        .expect("eu1");
    let us1 = server
        .join_with("us1", "", &b"lobby=us"[..])
        .await
        .expect("us1");
    let eu2 = server
        .join_with("eu2", "", &b"lobby=eu"[..])
        .await
        .expect("eu2");
    let eu3 = server
        .join_with("eu3", "", &b"lobby=eu"[..])
        .await
        .expect("eu3");
    assert_eq!(
        room_of(&eu1),
        room_of(&eu2),
        "the same lobby, the same room"
    );
    assert_ne!(room_of(&eu1), room_of(&us1), "another lobby, another room");
    assert_ne!(room_of(&eu3), room_of(&eu1), "the first eu room is full");
    assert_ne!(
        room_of(&eu3),
        room_of(&us1),
        "and eu3 is not sent to the us lobby"
    );
    let eu = server.rooms().list(&game_engine::RoomQuery {
        label: Some("lobby=eu".into()),
        ..Default::default()
    });
    let mut names: Vec<_> = eu.rooms.iter().map(|r| r.name.clone()).collect();
    names.sort();
    let mut expected = vec![room_of(&eu1), room_of(&eu3)];
    expected.sort();
    assert_eq!(names, expected);
    // A player without a lobby goes to any automatic room with space: the us room.
    let anyone = server.join("anyone", "").await.expect("anyone");
    assert_eq!(room_of(&anyone), room_of(&us1));
    // A lobby name that makes the label longer than a label may be is a refusal.
    let long = format!("lobby={}", "x".repeat(game_engine::MAX_LABEL_BYTES));
    let refused = server
        .join_with("far", "", long.into_bytes())
        .await
        .expect_err("too long a label");
    assert_eq!(refused.code, ByeCode::JoinRefused);
    assert!(refused.text.contains("at most 256"), "{}", refused.text);
    server.stop().await;
}
