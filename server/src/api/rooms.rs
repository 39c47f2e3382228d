//! Reaching rooms from outside their players: the room listing (rooms with their labels, member
//! counts and locks, filtered and paginated) and signals (a message to a room by name, answered
//! by the room). A game gets the [`Rooms`] handle when the server starts
//! ([`crate::Game::started`]); operators have the same on the admin port (`GET /rooms`,
//! `POST /rooms/{name}/signal`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Weak;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Rooms on one page of the listing when the query does not say.
pub const DEFAULT_ROOM_PAGE: usize = 100;
/// Most rooms on one page of the listing.
pub const MAX_ROOM_PAGE: usize = 1000;
/// The largest signal payload, in bytes.
pub const MAX_SIGNAL_BYTES: usize = 64 * 1024;

/// Which rooms to list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct RoomQuery {
    /// Only rooms with this label.
    #[serde(default)]
    pub label: Option<String>,
    /// Only rooms that are not locked.
    #[serde(default)]
    pub unlocked: bool,
    /// Rooms whose names sort after this one: the `next_after` of the previous page.
    #[serde(default)]
    pub after: Option<String>,
    /// Rooms on the page ([`DEFAULT_ROOM_PAGE`] when absent, at most [`MAX_ROOM_PAGE`]).
    #[serde(default)]
    pub limit: Option<usize>,
}

impl RoomQuery {
    /// The page size this query gets.
    pub fn page_size(&self) -> usize {
        self.limit
            .unwrap_or(DEFAULT_ROOM_PAGE)
            .clamp(1, MAX_ROOM_PAGE)
    }
}

/// One room in the listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoomInfo {
    /// Its name.
    pub name: String,
    /// The label it publishes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Players holding a place in it, parked ones included.
    pub players: usize,
    /// Of which parked, waiting for their players to come back.
    pub parked: usize,
    /// Locked: listed, but the engine places no player in it automatically.
    pub locked: bool,
    /// An automatic room (`auto-N`), opened by the engine.
    pub automatic: bool,
}

/// One page of the listing, in name order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoomPage {
    /// Open rooms, in all (whatever the filter).
    pub total: usize,
    /// The rooms on this page.
    pub rooms: Vec<RoomInfo>,
    /// The `after` that fetches the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_after: Option<String>,
}

/// Why a signal got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignalError {
    /// No open room has this name.
    #[error("no room {0:?} is open")]
    NoSuchRoom(String),
    /// The payload exceeds [`MAX_SIGNAL_BYTES`].
    #[error("a signal is at most {MAX_SIGNAL_BYTES} bytes, this one is {0}")]
    TooLarge(usize),
    /// The room did not answer within [`SIGNAL_WAIT`](crate::SIGNAL_WAIT), or closed first.
    #[error("the room did not answer")]
    NoAnswer,
    /// The server has stopped.
    #[error("the server has stopped")]
    Stopped,
}

/// How long a signal waits for the room's answer.
pub const SIGNAL_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The answer to a signal.
pub(crate) type Answer = Pin<Box<dyn Future<Output = Result<Bytes, SignalError>> + Send>>;

/// What the room directory offers the [`Rooms`] handle.
pub(crate) trait Directory: Send + Sync {
    fn list(&self, query: &RoomQuery) -> RoomPage;
    fn signal(&self, room: &str, payload: Bytes) -> Answer;
}

/// A handle on the server's rooms, for a game's own code: list them, signal one. Cheap to
/// clone; it does not keep the server alive (once it stopped, signals answer
/// [`SignalError::Stopped`] and the listing is empty).
#[derive(Clone)]
pub struct Rooms(Weak<dyn Directory>);

impl std::fmt::Debug for Rooms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rooms").finish_non_exhaustive()
    }
}

impl Rooms {
    pub(crate) fn new(directory: Weak<dyn Directory>) -> Rooms {
        Rooms(directory)
    }

    /// One page of the room listing.
    pub fn list(&self, query: &RoomQuery) -> RoomPage {
        match self.0.upgrade() {
            Some(directory) => directory.list(query),
            None => RoomPage {
                total: 0,
                rooms: Vec::new(),
                next_after: None,
            },
        }
    }

    /// Sends `payload` to the room called `room` ([`crate::Room::signal`]) and returns its
    /// answer.
    pub async fn signal(&self, room: &str, payload: Bytes) -> Result<Bytes, SignalError> {
        if payload.len() > MAX_SIGNAL_BYTES {
            return Err(SignalError::TooLarge(payload.len()));
        }
        let Some(directory) = self.0.upgrade() else {
            return Err(SignalError::Stopped);
        };
        let answer = directory.signal(room, payload);
        drop(directory);
        answer.await
    }
}
