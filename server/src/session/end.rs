//! What a session reports when it ends, for the reaper to record.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::close::CloseReason;
use crate::player::registry::Player;
use crate::session::outbox::Traffic;
use crate::transport::labels::TransportName;

/// What a session reports when it ends.
#[derive(Debug)]
pub struct SessionEnd {
    /// Session id.
    pub session_id: u64,
    /// The player, if the handshake completed.
    pub player: Option<Player>,
    /// The player id of a `Hello` that was refused (no [`SessionEnd::player`] then).
    pub claimed: Option<Arc<str>>,
    /// Peer address.
    pub peer: SocketAddr,
    /// What the session ran over (`tcp`, `websocket`).
    pub transport: TransportName,
    /// The first fatal event.
    pub reason: CloseReason,
    /// What exactly happened (errno, protocol violation), for the log.
    pub detail: Option<String>,
    /// From accept to the close decision.
    pub lifetime: Duration,
    /// From the last inbound frame to the close decision.
    pub detect: Duration,
    /// Frames and bytes each way.
    pub traffic: Traffic,
    /// A graceful close was cut short by a forced shutdown.
    pub forced: bool,
    /// The session was parked for resume: the game was told the player disconnected, not left.
    pub parked: bool,
}
