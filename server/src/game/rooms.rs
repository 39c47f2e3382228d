//! The demo game "rooms": players join a room, every input is relayed to everyone in the room
//! (sender included, so a room of one is an echo path), and on the tick after anything changed
//! the room broadcasts its state. Small, but it exercises every path a real game uses: fan-out
//! through bounded queues, a tick loop, and cleanup on leave.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;
use protocol::demo::DemoEvent;

use super::Game;
use crate::close::CloseReason;
use crate::registry::Player;

/// The demo game.
#[derive(Debug)]
pub struct Rooms {
    capacity: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    rooms: HashMap<String, Room>,
    /// Room of each session.
    room_of: HashMap<u64, String>,
    /// Numbers of automatic rooms that have space, lowest first.
    auto_open: BTreeSet<u64>,
    next_auto: u64,
    /// Rooms that changed since the last tick.
    dirty: BTreeSet<String>,
}

#[derive(Debug, Default)]
struct Room {
    members: HashMap<u64, Player>,
    inputs_since_tick: u32,
    auto: Option<u64>,
}

const AUTO_PREFIX: &str = "auto-";

impl Rooms {
    /// A demo game whose automatic rooms hold `capacity` players.
    pub fn new(capacity: usize) -> Rooms {
        Rooms {
            capacity: capacity.max(1),
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl State {
    fn remove(&mut self, session_id: u64, capacity: usize) {
        let Some(name) = self.room_of.remove(&session_id) else {
            return;
        };
        let Some(room) = self.rooms.get_mut(&name) else {
            return;
        };
        room.members.remove(&session_id);
        if room.members.is_empty() {
            if let Some(n) = room.auto {
                self.auto_open.remove(&n);
            }
            self.rooms.remove(&name);
            self.dirty.remove(&name);
        } else {
            if let Some(n) = room.auto
                && room.members.len() < capacity
            {
                self.auto_open.insert(n);
            }
            self.dirty.insert(name);
        }
    }

    fn auto_room(&mut self) -> String {
        let n = match self.auto_open.first() {
            Some(n) => *n,
            None => {
                self.next_auto += 1;
                self.auto_open.insert(self.next_auto);
                self.next_auto
            }
        };
        format!("{AUTO_PREFIX}{n}")
    }
}

impl Game for Rooms {
    fn join(&self, player: &Player, requested_room: &str) -> String {
        let mut state = self.state();
        state.remove(player.session_id(), self.capacity);
        let name = if requested_room.is_empty() {
            state.auto_room()
        } else {
            requested_room.to_owned()
        };
        let auto = name
            .strip_prefix(AUTO_PREFIX)
            .and_then(|n| n.parse::<u64>().ok());
        let room = state.rooms.entry(name.clone()).or_insert_with(|| Room {
            auto,
            ..Room::default()
        });
        room.members.insert(player.session_id(), player.clone());
        let full = room.members.len() >= self.capacity;
        if let Some(n) = room.auto {
            if full {
                state.auto_open.remove(&n);
            } else {
                state.auto_open.insert(n);
            }
        }
        state.room_of.insert(player.session_id(), name.clone());
        state.dirty.insert(name.clone());
        name
    }

    fn input(&self, player: &Player, seq: u64, payload: Bytes) {
        let mut state = self.state();
        let State {
            rooms,
            room_of,
            dirty,
            ..
        } = &mut *state;
        let Some(name) = room_of.get(&player.session_id()) else {
            return;
        };
        let Some(room) = rooms.get_mut(name) else {
            return;
        };
        room.inputs_since_tick = room.inputs_since_tick.saturating_add(1);
        let event = DemoEvent::Relay {
            from: player.player_id().to_owned(),
            input_seq: seq,
            data: payload,
        }
        .to_bytes();
        for member in room.members.values() {
            member.send(event.clone());
        }
        // The name is copied once per room per tick, not once per input.
        if !dirty.contains(name) {
            dirty.insert(name.clone());
        }
    }

    fn leave(&self, player: &Player, _reason: CloseReason) {
        self.state().remove(player.session_id(), self.capacity);
    }

    fn tick(&self, tick: u64) {
        let mut state = self.state();
        let dirty = std::mem::take(&mut state.dirty);
        for name in dirty {
            let Some(room) = state.rooms.get_mut(&name) else {
                continue;
            };
            let event = DemoEvent::State {
                tick,
                members: u32::try_from(room.members.len()).unwrap_or(u32::MAX),
                inputs: room.inputs_since_tick,
            }
            .to_bytes();
            room.inputs_since_tick = 0;
            for member in room.members.values() {
                member.send(event.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::sync::mpsc;

    use super::*;

    fn player(id: u64) -> (Player, mpsc::Receiver<Bytes>) {
        let (tx, rx) = mpsc::channel(64);
        let peer = "127.0.0.1:5000".parse().expect("addr");
        let limit = crate::registry::QueueLimit::default();
        (
            Player::new(id, Arc::from(format!("p{id}")), peer, tx, limit),
            rx,
        )
    }

    fn drain(rx: &mut mpsc::Receiver<Bytes>) -> Vec<DemoEvent> {
        std::iter::from_fn(|| rx.try_recv().ok())
            .map(|b| DemoEvent::from_bytes(b).expect("valid demo event"))
            .collect()
    }

    #[test]
    fn automatic_rooms_fill_to_capacity_then_open_a_new_one() {
        let game = Rooms::new(2);
        let players: Vec<_> = (1..=5).map(player).collect();
        let rooms: Vec<String> = players.iter().map(|(p, _)| game.join(p, "")).collect();
        assert_eq!(rooms, ["auto-1", "auto-1", "auto-2", "auto-2", "auto-3"]);
        // A seat freed in auto-1 is reused before a new room is opened.
        game.leave(&players[0].0, CloseReason::PeerEof);
        let (p6, _rx6) = player(6);
        assert_eq!(game.join(&p6, ""), "auto-1");
    }

    #[test]
    fn inputs_are_relayed_to_the_whole_room_and_state_follows_on_the_tick() {
        let game = Rooms::new(10);
        let (a, mut rx_a) = player(1);
        let (b, mut rx_b) = player(2);
        let (c, mut rx_c) = player(3);
        game.join(&a, "arena");
        game.join(&b, "arena");
        game.join(&c, "elsewhere");
        game.input(&a, 1, Bytes::from_static(b"jump"));
        let relay = DemoEvent::Relay {
            from: "p1".into(),
            input_seq: 1,
            data: Bytes::from_static(b"jump"),
        };
        assert_eq!(drain(&mut rx_a), std::slice::from_ref(&relay));
        assert_eq!(drain(&mut rx_b), [relay]);
        assert_eq!(drain(&mut rx_c), []);
        game.tick(7);
        let state = DemoEvent::State {
            tick: 7,
            members: 2,
            inputs: 1,
        };
        assert_eq!(drain(&mut rx_a), std::slice::from_ref(&state));
        assert_eq!(drain(&mut rx_b), [state]);
        // c's room changed too (c joined it), but saw none of the arena's traffic.
        assert_eq!(
            drain(&mut rx_c),
            [DemoEvent::State {
                tick: 7,
                members: 1,
                inputs: 0
            }]
        );
        // Nothing changed since: the next tick sends nothing.
        game.tick(8);
        assert_eq!(drain(&mut rx_a), []);
        game.leave(&b, CloseReason::ClientQuit);
        game.tick(9);
        assert_eq!(
            drain(&mut rx_a),
            [DemoEvent::State {
                tick: 9,
                members: 1,
                inputs: 0
            }]
        );
        assert_eq!(drain(&mut rx_b), []);
    }

    #[test]
    fn joining_another_room_leaves_the_first() {
        let game = Rooms::new(10);
        let (a, mut rx_a) = player(1);
        let (b, _rx_b) = player(2);
        game.join(&a, "one");
        game.join(&b, "one");
        assert_eq!(game.join(&a, "two"), "two");
        game.input(&b, 1, Bytes::from_static(b"x"));
        assert!(drain(&mut rx_a).is_empty());
    }
}
