//! The scenarios: the ways a game client's connection ends.

use std::str::FromStr;

/// A scenario: one way a game client's connection ends. Each instance of a scenario is one
/// connection; `scenarios/` documents which field-report case each plays and which close
/// reason the server must record for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// Plays, sends its inputs, says `Bye`, waits for the acknowledgement. Expects `client_quit`.
    Graceful,
    /// Plays, then closes the socket (FIN) without `Bye`. Expects `peer_eof`.
    CloseNoBye,
    /// Plays, then closes with `SO_LINGER {on, 0}` so the kernel sends RST. Expects `peer_reset`.
    Abort,
    /// Stops reading while the server still sends, then closes with unread data. Expects
    /// `peer_reset`.
    ExitUnread,
    /// A real child process killed with SIGKILL mid-send. Expects `peer_reset` or
    /// `truncated_frame`.
    Crash,
    /// Goes silent with the socket open. Expects `idle_timeout`.
    Vanish,
    /// Keeps sending large inputs but never reads. Expects `slow_consumer`.
    SlowReader,
    /// Sends far above the rate limit. Expects `rate_limited`.
    Flood,
    /// Kicked through the admin endpoint, then keeps sending. Expects `kicked`.
    KickedThenSend,
    /// Kicked through the admin endpoint, then reads to the end. Expects `kicked`.
    KickedThenRecv,
    /// Connects without pacing, together with every other storm instance. Expects `client_quit`.
    Storm,
    /// Plays at a human pace for a few seconds, then mostly quits gracefully. Expects
    /// `client_quit` (or `peer_eof` for the instances that leave without `Bye`).
    Soak,
    /// Resets its connection in the middle of a stream, then resumes on a new one and checks
    /// that nothing was lost or repeated. Expects `peer_reset`, then `client_quit`.
    ResetAndReturn,
    /// Goes silent until the server drops it as idle, then resumes on a new connection and
    /// checks that nothing was lost or repeated. Expects `idle_timeout`, then `client_quit`.
    VanishAndReturn,
    /// Resumes on a new connection while the old one is still open and silent (before the server
    /// noticed anything). Expects `replaced` for the old connection, then `client_quit`.
    Roam,
}

impl Scenario {
    /// Every scenario, in the order reports list them.
    pub const ALL: [Scenario; 15] = [
        Scenario::Graceful,
        Scenario::CloseNoBye,
        Scenario::Abort,
        Scenario::ExitUnread,
        Scenario::Crash,
        Scenario::Vanish,
        Scenario::SlowReader,
        Scenario::Flood,
        Scenario::KickedThenSend,
        Scenario::KickedThenRecv,
        Scenario::Storm,
        Scenario::Soak,
        Scenario::ResetAndReturn,
        Scenario::VanishAndReturn,
        Scenario::Roam,
    ];

    /// The scenario's command-line name.
    pub fn as_str(self) -> &'static str {
        match self {
            Scenario::Graceful => "graceful",
            Scenario::CloseNoBye => "close-no-bye",
            Scenario::Abort => "abort",
            Scenario::ExitUnread => "exit-unread",
            Scenario::Crash => "crash",
            Scenario::Vanish => "vanish",
            Scenario::SlowReader => "slow-reader",
            Scenario::Flood => "flood",
            Scenario::KickedThenSend => "kicked-then-send",
            Scenario::KickedThenRecv => "kicked-then-recv",
            Scenario::Storm => "storm",
            Scenario::Soak => "soak",
            Scenario::ResetAndReturn => "reset-and-return",
            Scenario::VanishAndReturn => "vanish-and-return",
            Scenario::Roam => "roam",
        }
    }

    /// True for scenarios that kick their session through the server's admin endpoint, which
    /// client-sim finds next to `--metrics-url`.
    pub fn needs_admin(self) -> bool {
        matches!(self, Scenario::KickedThenSend | Scenario::KickedThenRecv)
    }

    /// True for scenarios that connect without waiting for the connect pacer.
    pub fn unpaced(self) -> bool {
        self == Scenario::Storm
    }
}

impl std::fmt::Display for Scenario {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is no scenario's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownScenario(pub String);

impl FromStr for Scenario {
    type Err = UnknownScenario;

    fn from_str(s: &str) -> Result<Scenario, UnknownScenario> {
        Scenario::ALL
            .into_iter()
            .find(|scenario| scenario.as_str() == s)
            .ok_or_else(|| UnknownScenario(s.to_owned()))
    }
}
