//! Admitting a `Hello` against the server: what the session core cannot decide by itself. The
//! token is checked (and a source that fails too often is throttled), then the player either
//! takes a parked session over (resume) or starts one: it enters the room it asked for, and
//! replaces any older session of the same player id. Moving to another room (`Join`) is here too.

use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use protocol::{Hello, ResumeToken};

use crate::close::{CloseReason, Ending};
use crate::player::registry::{Player, QueueLimit};
use crate::resume::Carried;
use crate::rooms::{self, RoomHandle};
use crate::session::Sessions;
use crate::session::core::{Resumed, Welcomed};

/// A session past its handshake, as the driver holds it: the player the game knows, and its
/// room.
#[derive(Debug)]
pub(crate) struct Live {
    pub player: Player,
    pub room: Option<RoomHandle>,
}

/// Admits `hello` from `peer` for the connection `id`: the live session and what the core needs
/// for its `Welcome`, or why not (the refused player id goes with the end, for the close
/// record).
pub(crate) async fn admit(
    sessions: &Sessions,
    hello: Box<Hello>,
    peer: SocketAddr,
    id: u64,
) -> Result<(Live, Welcomed), Ending> {
    // The one copy of the id: the player's if the handshake succeeds, the close record's if not.
    let claimed: Arc<str> = Arc::from(hello.player_id.as_str());
    admit_claimed(sessions, hello, peer, id, claimed.clone())
        .await
        .map_err(|ending| Ending {
            claimed: Some(claimed),
            ..ending
        })
}

async fn admit_claimed(
    sessions: &Sessions,
    hello: Box<Hello>,
    peer: SocketAddr,
    id: u64,
    claimed: Arc<str>,
) -> Result<(Live, Welcomed), Ending> {
    if let Some(auth) = &sessions.auth {
        let source = peer.ip();
        if sessions.admission.auth_throttled(source).is_err() {
            sessions.metrics.auth_throttled.inc();
            return Err(Ending::because(
                CloseReason::AuthFailed,
                "too many failed authentications from your network; retry later",
            ));
        }
        if let Err(error) = auth.verify(
            hello.auth_token.as_deref(),
            &hello.player_id,
            SystemTime::now(),
        ) {
            sessions.admission.auth_failed(source);
            return Err(Ending::because(CloseReason::AuthFailed, error.to_string()));
        }
    }
    let parking = &sessions.parking;
    let (live, resumed) = match hello.resume.filter(|_| parking.enabled()) {
        Some(resume) => match parking
            .resume(resume.token, &hello.player_id, resume.last_event_seq)
            .await
        {
            Ok(carried) => {
                let (live, replay, last_input_seq) = adopt(sessions, carried, peer);
                let resumed = Resumed {
                    replay,
                    last_input_seq,
                    last_event_seq: resume.last_event_seq,
                };
                (live, Some(resumed))
            }
            Err(refusal) => {
                return Err(Ending::because(
                    CloseReason::ResumeRejected,
                    parking.explain(&resume.token, refusal),
                ));
            }
        },
        None => (start(sessions, &hello, peer, id, claimed).await?, None),
    };
    let token: Option<ResumeToken> = parking.enabled().then(|| parking.issue(&live.player));
    let welcomed = Welcomed {
        session_id: live.player.session_id(),
        room: live.player.room(),
        token,
        resumed,
    };
    Ok((live, welcomed))
}

/// A fresh session: the player enters the room it asked for, then replaces any older session of
/// the same player id (a session it left parked ends for good). The room hears that the new
/// session replaces the old one, so that it may keep the player's place.
async fn start(
    sessions: &Sessions,
    hello: &Hello,
    peer: SocketAddr,
    id: u64,
    player_id: Arc<str>,
) -> Result<Live, Ending> {
    let parking = &sessions.parking;
    let replaces = sessions.registry.session_of(&hello.player_id).or_else(|| {
        parking
            .enabled()
            .then(|| parking.parked_session_of(&hello.player_id))
            .flatten()
    });
    let limit = QueueLimit {
        max_bytes: sessions.config.outbound_queue_bytes,
        pressure: sessions.budget.pressure_flag(),
    };
    let player = Player::new(id, player_id, peer, sessions.config.outbound_queue, limit);
    let joined = match sessions.rooms.reserve(&hello.room, &hello.options) {
        Ok(handle) => rooms::join(&handle, &player, replaces, hello.options.clone())
            .await
            .map(|()| handle),
        Err(refusal) => Err(refusal),
    };
    let handle = joined.map_err(|refusal| {
        Ending::because(CloseReason::JoinRefused, refusal.reason().to_owned())
    })?;
    player.entered(handle.place());
    if parking.enabled() {
        parking.discard_player(&hello.player_id);
    }
    if let Some(old) = sessions.registry.register(player.clone())
        && sessions
            .throttle
            .admit("replaced", crate::logging::ORDINARY)
    {
        tracing::info!(
            session = player.session_id(),
            old_session = old.session_id(),
            "player connected again; the older session is replaced"
        );
    }
    Ok(Live {
        player,
        room: Some(handle),
    })
}

/// Takes over a parked session: its player (now at `peer`), its room, its replay buffer and its
/// input position. The connection inherits the session's id.
fn adopt(
    sessions: &Sessions,
    carried: Carried,
    peer: SocketAddr,
) -> (Live, crate::resume::Replay, u64) {
    let Carried {
        player,
        room,
        replay,
        last_input_seq,
    } = carried;
    player.set_peer(peer);
    sessions.registry.register(player.clone());
    player.resumed();
    tracing::debug!(session = player.session_id(), "session resumed");
    (Live { player, room }, replay, last_input_seq)
}

/// Moves the player to the room `name` with its join `options`; `None` when it is there, or the
/// room's refusal.
pub(crate) async fn join(
    sessions: &Sessions,
    live: &mut Live,
    name: &str,
    options: Bytes,
) -> Option<String> {
    if live.room.as_ref().is_some_and(|room| room.name() == name) {
        // Already there: nothing changes.
        return None;
    }
    let refusal = match sessions.rooms.reserve(name, &options) {
        Ok(handle) => match rooms::join(&handle, &live.player, None, options).await {
            Ok(()) => {
                live.player.entered(handle.place());
                live.room = Some(handle);
                return None;
            }
            Err(refusal) => refusal,
        },
        Err(refusal) => refusal,
    };
    Some(refusal.reason().to_owned())
}
