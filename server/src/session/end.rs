//! What a session reports when it ends, for the reaper to record.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::close::CloseReason;
use crate::player::registry::Player;
use crate::session::outbox::Traffic;
use crate::transport::kernel::TcpView;
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
    /// What the session and the kernel saw of the peer when the close was decided.
    pub seen: Seen,
}

/// Heartbeat round trips a session remembers, the newest last.
pub const RTT_SAMPLES: usize = 4;

/// What a session saw of its peer in its last moments: what tells a bad network from a crashed
/// client after the fact (`/closes/recent`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Seen {
    /// The kernel's view of the TCP connection at the close decision (none in memory tests).
    pub kernel: Option<TcpView>,
    /// The last heartbeat round trips, in [`RTT_UNIT`]s, oldest first; 0 where none was
    /// measured.
    pub rtts: [u16; RTT_SAMPLES],
    /// From the last write to the socket to the close decision (none: nothing was written).
    pub since_last_write: Option<Duration>,
}

/// The unit a session remembers round trips in: 100 µs, so that four fit in 8 bytes of every
/// session (up to 6.55 s; longer ones are remembered as that).
pub const RTT_UNIT: Duration = Duration::from_micros(100);

/// Remembers one round trip in `samples`, forgetting the oldest.
pub fn remember_rtt(samples: &mut [u16; RTT_SAMPLES], rtt: Duration) {
    samples.rotate_left(1);
    let units = rtt.as_micros() / RTT_UNIT.as_micros();
    samples[RTT_SAMPLES - 1] = u16::try_from(units).unwrap_or(u16::MAX).max(1);
}
