//! Why a resume was refused, and why a parked session was ended early: the label vocabularies
//! of `gameserver_resume_rejected_total` and `gameserver_parked_evicted_total`.

/// Why a resume was refused; the `reason` label of `gameserver_resume_rejected_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The token was never issued by this server process.
    Unknown,
    /// The token was already used to resume.
    Reused,
    /// The grace window passed before the player came back.
    Expired,
    /// Events for the parked player overflowed the queue while it was away.
    BufferOverflow,
    /// The session ended for good (the player quit, was kicked, or logged in afresh).
    Ended,
    /// The token belongs to another player id.
    WrongPlayer,
    /// The client's last event is older than what the server kept, or newer than what it sent.
    SeqGap,
    /// The session's previous connection did not hand it over in time; retrying may work.
    NotReady,
    /// The parked session was ended early to stay within a memory limit.
    Evicted,
}

impl Refusal {
    /// Every refusal, for initialising the metric labels.
    pub const ALL: [Refusal; 9] = [
        Refusal::Unknown,
        Refusal::Reused,
        Refusal::Expired,
        Refusal::BufferOverflow,
        Refusal::Ended,
        Refusal::WrongPlayer,
        Refusal::SeqGap,
        Refusal::NotReady,
        Refusal::Evicted,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Unknown => "unknown",
            Refusal::Reused => "reused",
            Refusal::Expired => "expired",
            Refusal::BufferOverflow => "buffer_overflow",
            Refusal::Ended => "ended",
            Refusal::WrongPlayer => "wrong_player",
            Refusal::SeqGap => "seq_gap",
            Refusal::NotReady => "not_ready",
            Refusal::Evicted => "evicted",
        }
    }

    /// The `Bye{resume_rejected}` text: what the client should know.
    pub fn explain(self) -> &'static str {
        match self {
            Refusal::Unknown => "unknown resume token; start a new session",
            Refusal::Reused => "this resume token was already used; start a new session",
            Refusal::Expired => "the session expired before you came back; start a new session",
            Refusal::BufferOverflow => {
                "too many events piled up while you were away; the session ended; start a new session"
            }
            Refusal::Ended => "the session already ended; start a new session",
            Refusal::WrongPlayer => "this resume token belongs to another player",
            Refusal::SeqGap => {
                "the server no longer holds every event after your last one; start a new session"
            }
            Refusal::NotReady => {
                "the session's previous connection is still closing; retry the resume"
            }
            Refusal::Evicted => {
                "the server needed the room or the memory and ended your parked session; start a \
                 new session"
            }
        }
    }
}

/// Why parked sessions were evicted before their grace window ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eviction {
    /// `session.max_parked` reached: the oldest made room for a newer one.
    MaxParked,
    /// `session.max_parked_bytes` exceeded.
    ParkedBytes,
    /// `server.memory_budget` exceeded.
    MemoryBudget,
    /// The session's source reached its share (`server.max_sessions_per_source`) of parked
    /// sessions: its own oldest made room.
    PerSource,
    /// At `rooms.max_rooms` a newcomer needed a room held only by parked sessions.
    Rooms,
}

impl Eviction {
    /// Every eviction cause, for initialising the metric labels.
    pub const ALL: [Eviction; 5] = [
        Eviction::MaxParked,
        Eviction::ParkedBytes,
        Eviction::MemoryBudget,
        Eviction::PerSource,
        Eviction::Rooms,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Eviction::MaxParked => "max_parked",
            Eviction::ParkedBytes => "parked_bytes",
            Eviction::MemoryBudget => "memory_budget",
            Eviction::PerSource => "per_source",
            Eviction::Rooms => "rooms",
        }
    }
}
