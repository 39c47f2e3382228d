//! What a run is asked to do: [`Options`], the scenario names, the mix and the source addresses.
//!
//! Everything here is plain data that parses from strings, so the command line, the workspace
//! tests and the unit tests build runs the same way.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

pub use crate::scenario::Scenario;
use crate::scenario::UnknownScenario;
use crate::threshold::Threshold;

/// A problem with the options, found before anything connects.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionsError {
    /// A scenario name that does not exist.
    #[error(
        "unknown scenario {0:?}; known: graceful, close-no-bye, abort, exit-unread, crash, vanish, \
         slow-reader, flood, kicked-then-send, kicked-then-recv, storm, soak, reset-and-return, \
         vanish-and-return, roam"
    )]
    UnknownScenario(String),
    /// A mix entry that is not `name` or `name=weight`.
    #[error("bad mix entry {0:?}: expected name=weight with a whole-number weight")]
    BadMixEntry(String),
    /// A mix whose weights are all zero, or that names nothing.
    #[error("the mix is empty: give at least one scenario a weight above zero")]
    EmptyMix,
    /// A source address list entry that is neither an address nor an IPv4 range.
    #[error(
        "bad source address {0:?}: expected an IP address or an IPv4 range like 127.0.0.2-127.0.0.9"
    )]
    BadSourceAddr(String),
    /// A source address range whose end comes before its start, or that is too large.
    #[error(
        "bad source address range {0:?}: the end must not precede the start, and at most 1024 addresses"
    )]
    BadSourceRange(String),
    /// Scenarios that kick need the admin endpoint, which is found from `--metrics-url`.
    #[error(
        "scenario {0} kicks its session through the admin endpoint: pass --metrics-url http://ADMIN/metrics"
    )]
    NeedsMetricsUrl(Scenario),
    /// A player prefix that would make player ids longer than the protocol allows.
    #[error("--player-prefix must be 1 to {MAX_PREFIX_BYTES} bytes")]
    BadPlayerPrefix,
    /// Inputs that would not fit in a frame once the server relays them.
    #[error(
        "--input-bytes must be at most {MAX_INPUT_BYTES}: the relayed event must fit in a 64 KiB frame"
    )]
    InputTooLarge,
    /// Zero clients.
    #[error("--clients must be at least 1")]
    NoClients,
    /// A `--stages` list that does not parse or never asks for a client.
    #[error(
        "bad --stages {0:?}: expected DURATION:CLIENTS,... such as 30s:100,1m:1000,30s:0, with \
         at least one stage above 0 clients"
    )]
    BadStages(String),
    /// A zero `--interval`.
    #[error("--interval must be above zero")]
    BadInterval,
    /// A negative or non-finite connect rate.
    #[error("--connect-rate must be a positive number of connections per second (0 = unpaced)")]
    BadConnectRate,
}

impl From<UnknownScenario> for OptionsError {
    fn from(UnknownScenario(name): UnknownScenario) -> OptionsError {
        OptionsError::UnknownScenario(name)
    }
}

/// Which scenarios a run plays, and in what proportion.
///
/// Draws use smooth weighted round-robin, so the first `sum(weights)` draws contain each scenario
/// exactly `weight` times, interleaved: `--clients` equal to the weight sum plays each scenario
/// exactly as often as asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mix {
    entries: Vec<(Scenario, u32)>,
}

impl Mix {
    /// A mix of one scenario.
    pub fn single(scenario: Scenario) -> Mix {
        Mix {
            entries: vec![(scenario, 1)],
        }
    }

    /// Every scenario with weight 1.
    pub fn all() -> Mix {
        Mix {
            entries: Scenario::ALL.into_iter().map(|s| (s, 1)).collect(),
        }
    }

    /// The default mix: the scenarios that finish within a few seconds on a server with default
    /// timeouts and need no admin endpoint (no vanish, vanish-and-return, slow-reader or kicks).
    /// Its weights add up to the default 20 clients, so a default run plays each exactly so
    /// often.
    pub fn quick() -> Mix {
        Mix {
            entries: vec![
                (Scenario::Graceful, 3),
                (Scenario::CloseNoBye, 2),
                (Scenario::Abort, 2),
                (Scenario::ExitUnread, 2),
                (Scenario::Crash, 1),
                (Scenario::Flood, 1),
                (Scenario::Storm, 4),
                (Scenario::Soak, 3),
                (Scenario::ResetAndReturn, 1),
                (Scenario::Roam, 1),
            ],
        }
    }

    /// The scenarios with their weights (weights above zero only).
    pub fn entries(&self) -> &[(Scenario, u32)] {
        &self.entries
    }

    /// True when the mix contains the scenario.
    pub fn contains(&self, scenario: Scenario) -> bool {
        self.entries.iter().any(|(s, _)| *s == scenario)
    }

    /// A drawer that hands out scenarios in proportion to the weights.
    pub(crate) fn drawer(&self) -> Drawer {
        Drawer {
            entries: self
                .entries
                .iter()
                .map(|&(s, w)| (s, i64::from(w), 0))
                .collect(),
            total: self.entries.iter().map(|&(_, w)| i64::from(w)).sum(),
        }
    }
}

impl Default for Mix {
    fn default() -> Mix {
        Mix::quick()
    }
}

impl FromStr for Mix {
    type Err = OptionsError;

    /// Parses `name=weight,name=weight`, a bare `name` (weight 1), `all` (every scenario) or
    /// `quick` (the default mix). Repeated names add up.
    fn from_str(s: &str) -> Result<Mix, OptionsError> {
        let mut entries: Vec<(Scenario, u32)> = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let expanded = match part {
                "all" => Mix::all().entries,
                "quick" => Mix::quick().entries,
                _ => {
                    let (name, weight) = match part.split_once('=') {
                        Some((name, weight)) => {
                            let weight = weight
                                .trim()
                                .parse::<u32>()
                                .map_err(|_| OptionsError::BadMixEntry(part.to_owned()))?;
                            (name.trim(), weight)
                        }
                        None => (part, 1),
                    };
                    vec![(name.parse::<Scenario>()?, weight)]
                }
            };
            for (scenario, weight) in expanded {
                match entries.iter_mut().find(|(s, _)| *s == scenario) {
                    Some(entry) => entry.1 = entry.1.saturating_add(weight),
                    None => entries.push((scenario, weight)),
                }
            }
        }
        entries.retain(|&(_, w)| w > 0);
        if entries.is_empty() {
            return Err(OptionsError::EmptyMix);
        }
        Ok(Mix { entries })
    }
}

impl std::fmt::Display for Mix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (scenario, weight)) in self.entries.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{scenario}={weight}")?;
        }
        Ok(())
    }
}

/// Smooth weighted round-robin over a mix: deterministic, proportional at every multiple of the
/// weight sum, and interleaved rather than in blocks.
#[derive(Debug)]
pub(crate) struct Drawer {
    /// (scenario, weight, current score)
    entries: Vec<(Scenario, i64, i64)>,
    total: i64,
}

impl Drawer {
    /// The next scenario.
    pub(crate) fn draw(&mut self) -> Scenario {
        let mut best = 0;
        for i in 0..self.entries.len() {
            self.entries[i].2 += self.entries[i].1;
            if self.entries[i].2 > self.entries[best].2 {
                best = i;
            }
        }
        self.entries[best].2 -= self.total;
        self.entries[best].0
    }
}

/// Parses `--source-addrs`: comma-separated IP addresses and inclusive IPv4 ranges
/// (`127.0.0.2-127.0.0.9`).
pub fn parse_source_addrs(s: &str) -> Result<Vec<IpAddr>, OptionsError> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((start, end)) => {
                let bad = || OptionsError::BadSourceAddr(part.to_owned());
                let start: Ipv4Addr = start.trim().parse().map_err(|_| bad())?;
                let end: Ipv4Addr = end.trim().parse().map_err(|_| bad())?;
                let (start, end) = (u32::from(start), u32::from(end));
                if end < start || end - start >= 1024 {
                    return Err(OptionsError::BadSourceRange(part.to_owned()));
                }
                out.extend((start..=end).map(|a| IpAddr::V4(Ipv4Addr::from(a))));
            }
            None => out.push(
                part.parse()
                    .map_err(|_| OptionsError::BadSourceAddr(part.to_owned()))?,
            ),
        }
    }
    Ok(out)
}

/// Longest `--player-prefix`: ids are `PREFIX-RUN-SLOT-N` (up to 30 more bytes) and must fit in
/// the protocol's 64, and room names add two more.
pub const MAX_PREFIX_BYTES: usize = 30;
/// Largest `--input-bytes`: the relay of an input adds the sender's id and sequence number, and
/// the whole event must stay under the default 64 KiB frame.
pub const MAX_INPUT_BYTES: usize = 60 * 1024;

/// How progress is shown while the run goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProgressMode {
    /// A progress bar when stdout is a terminal, one line per second otherwise.
    #[default]
    Auto,
    /// Always the progress bar.
    Bar,
    /// Always one line per second.
    Lines,
    /// Nothing until the summary.
    Off,
}

/// Everything a run needs. Build it with struct-update syntax over [`Options::default`]:
///
/// ```
/// let opts = client_sim::Options {
///     server: "127.0.0.1:7777".into(),
///     clients: 12,
///     mix: client_sim::Mix::all(),
///     metrics_url: Some("http://127.0.0.1:9100/metrics".into()),
///     ..client_sim::Options::default()
/// };
/// assert!(opts.validate().is_ok());
/// ```
#[derive(Debug, Clone)]
pub struct Options {
    /// The game server, `host:port`.
    pub server: String,
    /// How many client slots run at once. Each slot runs one scenario instance (one connection)
    /// at a time.
    pub clients: usize,
    /// New connections per second across all slots; 0 starts them all at once. Storm instances
    /// never wait for the pacer.
    pub connect_rate: f64,
    /// With a duration, every slot keeps starting new instances (drawn from the mix) until it
    /// ends; instances in flight then finish. Without one, each slot runs exactly one instance.
    pub duration: Option<Duration>,
    /// The scenarios and their weights.
    pub mix: Mix,
    /// The server's `/metrics` URL. Enables reconciliation, and the kick scenarios, which post
    /// to `/sessions/{id}/kick` on the same scheme, host and port.
    pub metrics_url: Option<String>,
    /// The server's `admin.token`, sent as a bearer token with every admin request (the kick
    /// needs it).
    pub admin_token: Option<String>,
    /// Local addresses to spread connections over, round-robin (empty: the kernel chooses).
    pub source_addrs: Vec<IpAddr>,
    /// The server's `auth.secret`; when set, every `Hello` carries a freshly minted token.
    pub auth_secret: Option<String>,
    /// How long minted tokens stay valid.
    pub token_ttl: Duration,
    /// Inputs a graceful (and close-no-bye, abort) instance sends before leaving; the resume
    /// scenarios send half before the break and half after.
    pub inputs: u32,
    /// Payload bytes per ordinary input.
    pub input_bytes: usize,
    /// Room for scenarios that play in a shared room; `None` lets the server place players.
    /// Scenarios that must not disturb others (flood, slow-reader, exit-unread, crash, kicks)
    /// always use a private room of their own.
    pub room: Option<String>,
    /// How long a soak instance plays before leaving; `None` draws 1 to 5 seconds per instance.
    /// Long values make soak the scenario for holding many connections open at once. With
    /// [`Options::play_time_max`], the shortest play.
    pub play_time: Option<Duration>,
    /// With `play_time`, each soak instance draws its play time uniformly between the two, so a
    /// long run replaces its players steadily instead of all at once (`10m..30m`: about 5% of
    /// them a minute).
    pub play_time_max: Option<Duration>,
    /// Inputs per second of a soak player (0: it only keeps the connection alive with pings).
    /// Every input is relayed to the whole room, so this sets the server's load per player.
    pub soak_input_rate: f64,
    /// How progress is shown.
    pub progress: ProgressMode,
    /// The executable run as the crash scenario's child process: client-sim itself, or any binary
    /// whose `main` calls [`child_main_from_args`](crate::child_main_from_args). `None` uses the
    /// current executable if it is client-sim, else a `client-sim` binary next to it or one
    /// directory up (where cargo puts it for a test harness in `target/debug/deps`).
    pub crash_exe: Option<PathBuf>,
    /// How long a TCP connect may take before it counts as ETIMEDOUT.
    pub connect_timeout: Duration,
    /// Upper bound on waiting, after the run, for the server's counters to catch up; `None`
    /// uses the server's idle timeout plus 5 s.
    pub settle_timeout: Option<Duration>,
    /// Prefix of every player id (ids are `PREFIX-RUN-SLOT-N`, unique per instance).
    pub player_prefix: String,
    /// Load stages: the number of busy client slots ramps linearly from the previous stage's
    /// target (0 at the start) to each stage's over its duration. Empty: `clients` slots for
    /// `duration` (or one instance each). With stages, `clients` is the highest target.
    pub stages: Vec<Stage>,
    /// Pass/fail bounds on the run's figures; a failed one sets its own exit status.
    pub thresholds: Vec<Threshold>,
    /// Time between two samples of the report's time series.
    pub interval: Duration,
    /// TLS to the game port (the server's `[tls]`); `None`: plain TCP.
    pub tls: Option<TlsOptions>,
    /// Speak WebSocket: `server` is the server's WebSocket listener (`server.websocket_listen`),
    /// and each connection is upgraded to `ws://SERVER/` (`wss://` with `tls`) first.
    pub websocket: bool,
}

impl Options {
    /// The WebSocket URL connections are upgraded to, with `websocket`.
    pub fn websocket_url(&self) -> Option<String> {
        let scheme = if self.tls.is_some() { "wss" } else { "ws" };
        self.websocket
            .then(|| format!("{scheme}://{}/", self.server))
    }
}

/// TLS to the game port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsOptions {
    /// PEM file of the certificates to trust (a private CA, or the server's self-signed
    /// certificate); `None`: the public web's roots.
    pub ca_file: Option<PathBuf>,
    /// The name the server's certificate must carry; `None`: the host part of `server`.
    pub server_name: Option<String>,
}

impl TlsOptions {
    /// The client-side TLS setup for `server` (`host:port`).
    pub fn client(&self, server: &str) -> Result<game_client::Tls, game_client::TlsError> {
        game_client::Tls::trusting(self.ca_file.as_deref(), &self.name_for(server))
    }

    /// The name the certificate of `server` (`host:port`) must carry.
    pub fn name_for(&self, server: &str) -> String {
        match &self.server_name {
            Some(name) => name.clone(),
            None => host_of(server).to_owned(),
        }
    }
}

/// The host of `host:port` (brackets of an IPv6 address removed).
fn host_of(server: &str) -> &str {
    let host = server.rsplit_once(':').map_or(server, |(host, _)| host);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// One load stage: ramp to `target` busy client slots over `duration`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stage {
    /// How long the ramp takes.
    pub duration: Duration,
    /// Busy slots at its end.
    pub target: usize,
}

/// Parses `30s:100,1m:1000,30s:0`.
pub fn parse_stages(text: &str) -> Result<Vec<Stage>, OptionsError> {
    let bad = || OptionsError::BadStages(text.to_owned());
    let stages = text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|stage| {
            let (duration, target) = stage.split_once(':').ok_or_else(bad)?;
            Ok(Stage {
                duration: humantime::parse_duration(duration.trim()).map_err(|_| bad())?,
                target: target.trim().parse().map_err(|_| bad())?,
            })
        })
        .collect::<Result<Vec<Stage>, OptionsError>>()?;
    if stages.is_empty() || stages.iter().all(|s| s.target == 0) {
        return Err(bad());
    }
    Ok(stages)
}

/// The number of busy slots `elapsed` into `stages`, and `None` once they are over.
pub fn stage_target(stages: &[Stage], elapsed: Duration) -> Option<usize> {
    let mut from = 0usize;
    let mut start = Duration::ZERO;
    for stage in stages {
        let end = start + stage.duration;
        if elapsed < end {
            let into = (elapsed - start).as_secs_f64() / stage.duration.as_secs_f64().max(1e-9);
            let target = from as f64 + (stage.target as f64 - from as f64) * into;
            return Some(target.round() as usize);
        }
        from = stage.target;
        start = end;
    }
    None
}

impl Default for Options {
    fn default() -> Options {
        Options {
            server: "127.0.0.1:7777".to_owned(),
            clients: 20,
            connect_rate: 200.0,
            duration: None,
            mix: Mix::quick(),
            metrics_url: None,
            admin_token: None,
            source_addrs: Vec::new(),
            auth_secret: None,
            token_ttl: Duration::from_secs(3600),
            inputs: 20,
            input_bytes: 32,
            room: None,
            play_time: None,
            play_time_max: None,
            soak_input_rate: 5.0,
            progress: ProgressMode::Auto,
            crash_exe: None,
            connect_timeout: Duration::from_secs(10),
            settle_timeout: None,
            player_prefix: "sim".to_owned(),
            stages: Vec::new(),
            thresholds: Vec::new(),
            interval: Duration::from_secs(1),
            tls: None,
            websocket: false,
        }
    }
}

impl Options {
    /// Checks what can be checked without the network.
    pub fn validate(&self) -> Result<(), OptionsError> {
        if self.clients == 0 {
            return Err(OptionsError::NoClients);
        }
        if self.interval.is_zero() {
            return Err(OptionsError::BadInterval);
        }
        if !self.connect_rate.is_finite() || self.connect_rate < 0.0 {
            return Err(OptionsError::BadConnectRate);
        }
        if self.player_prefix.is_empty() || self.player_prefix.len() > MAX_PREFIX_BYTES {
            return Err(OptionsError::BadPlayerPrefix);
        }
        if self.input_bytes > MAX_INPUT_BYTES {
            return Err(OptionsError::InputTooLarge);
        }
        if self.metrics_url.is_none() {
            if let Some(&(scenario, _)) = self.mix.entries().iter().find(|(s, _)| s.needs_admin()) {
                return Err(OptionsError::NeedsMetricsUrl(scenario));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn stages_ramp_linearly_from_each_target_to_the_next() {
        let stages = parse_stages("10s:100, 20s:100,10s:0").unwrap();
        let at = |s: u64| stage_target(&stages, Duration::from_secs(s));
        assert_eq!(at(0), Some(0));
        assert_eq!(at(5), Some(50));
        assert_eq!(at(10), Some(100));
        assert_eq!(at(29), Some(100));
        assert_eq!(at(35), Some(50));
        assert_eq!(at(40), None);
        assert!(parse_stages("10s:0").is_err(), "never asks for a client");
        assert!(parse_stages("10s").is_err());
        assert!(parse_stages("ten:5").is_err());
    }

    #[test]
    fn mix_parses_weights_bare_names_and_keywords() {
        let mix: Mix = "graceful=3, abort ,flood=0,graceful=1".parse().unwrap();
        assert_eq!(
            mix.entries(),
            &[(Scenario::Graceful, 4), (Scenario::Abort, 1)]
        );
        assert_eq!(mix.to_string(), "graceful=4,abort=1");
        let all: Mix = "all".parse().unwrap();
        assert_eq!(all.entries().len(), Scenario::ALL.len());
        let quick: Mix = "quick".parse().unwrap();
        assert_eq!(quick, Mix::quick());
        assert!(!quick.contains(Scenario::KickedThenSend));
        assert!(!quick.contains(Scenario::VanishAndReturn));
        assert!(quick.contains(Scenario::ResetAndReturn));
        let sum: u32 = quick.entries().iter().map(|&(_, w)| w).sum();
        assert_eq!(
            sum as usize,
            Options::default().clients,
            "a default run plays each scenario exactly its weight"
        );
    }

    #[test]
    fn mix_rejects_unknown_names_bad_weights_and_empty_mixes() {
        assert_eq!(
            "graceful=1,teleport=2".parse::<Mix>(),
            Err(OptionsError::UnknownScenario("teleport".into()))
        );
        assert_eq!(
            "graceful=lots".parse::<Mix>(),
            Err(OptionsError::BadMixEntry("graceful=lots".into()))
        );
        assert_eq!(
            "graceful=-1".parse::<Mix>(),
            Err(OptionsError::BadMixEntry("graceful=-1".into()))
        );
        assert_eq!("abort=0".parse::<Mix>(), Err(OptionsError::EmptyMix));
        assert_eq!("".parse::<Mix>(), Err(OptionsError::EmptyMix));
    }

    #[test]
    fn every_scenario_name_round_trips() {
        for scenario in Scenario::ALL {
            assert_eq!(scenario.as_str().parse::<Scenario>(), Ok(scenario));
        }
    }

    #[test]
    fn drawer_is_exactly_proportional_over_one_weight_sum_and_interleaved() {
        let mix: Mix = "graceful=3,abort=1,flood=2".parse().unwrap();
        let mut drawer = mix.drawer();
        let draws: Vec<Scenario> = (0..6).map(|_| drawer.draw()).collect();
        let count = |s| draws.iter().filter(|&&d| d == s).count();
        assert_eq!(count(Scenario::Graceful), 3);
        assert_eq!(count(Scenario::Abort), 1);
        assert_eq!(count(Scenario::Flood), 2);
        // Interleaved: graceful never three in a row.
        assert!(
            draws
                .windows(3)
                .all(|w| !w.iter().all(|&s| s == Scenario::Graceful))
        );
        // And the next round repeats the proportions.
        let next: Vec<Scenario> = (0..6).map(|_| drawer.draw()).collect();
        assert_eq!(next, draws);
    }

    #[test]
    fn all_mix_with_one_client_per_weight_plays_every_scenario_once() {
        let mut drawer = Mix::all().drawer();
        let mut seen: Vec<Scenario> = (0..Scenario::ALL.len()).map(|_| drawer.draw()).collect();
        seen.sort();
        let mut all = Scenario::ALL.to_vec();
        all.sort();
        assert_eq!(seen, all);
    }

    #[test]
    fn source_addrs_parse_ranges_lists_and_single_addresses() {
        let addrs = parse_source_addrs("127.0.0.2-127.0.0.4").unwrap();
        assert_eq!(
            addrs,
            vec![
                "127.0.0.2".parse::<IpAddr>().unwrap(),
                "127.0.0.3".parse().unwrap(),
                "127.0.0.4".parse().unwrap()
            ]
        );
        let addrs = parse_source_addrs("10.0.0.255-10.0.1.0, ::1").unwrap();
        assert_eq!(addrs.len(), 3);
        assert_eq!(addrs[1], "10.0.1.0".parse::<IpAddr>().unwrap());
        assert_eq!(addrs[2], "::1".parse::<IpAddr>().unwrap());
        assert_eq!(parse_source_addrs("127.0.0.9").unwrap().len(), 1);
    }

    #[test]
    fn source_addrs_reject_garbage_and_backwards_or_huge_ranges() {
        assert!(matches!(
            parse_source_addrs("localhost"),
            Err(OptionsError::BadSourceAddr(_))
        ));
        assert!(matches!(
            parse_source_addrs("127.0.0.2-x"),
            Err(OptionsError::BadSourceAddr(_))
        ));
        assert!(matches!(
            parse_source_addrs("127.0.0.9-127.0.0.2"),
            Err(OptionsError::BadSourceRange(_))
        ));
        assert!(matches!(
            parse_source_addrs("10.0.0.0-10.1.0.0"),
            Err(OptionsError::BadSourceRange(_))
        ));
    }

    #[test]
    fn kick_scenarios_need_a_metrics_url() {
        let opts = Options {
            mix: "graceful=1,kicked-then-recv=1".parse().unwrap(),
            ..Options::default()
        };
        assert_eq!(
            opts.validate(),
            Err(OptionsError::NeedsMetricsUrl(Scenario::KickedThenRecv))
        );
        let opts = Options {
            metrics_url: Some("http://127.0.0.1:9100/metrics".into()),
            ..opts
        };
        assert_eq!(opts.validate(), Ok(()));
        assert_eq!(Options::default().validate(), Ok(()));
        let opts = Options {
            clients: 0,
            ..Options::default()
        };
        assert_eq!(opts.validate(), Err(OptionsError::NoClients));
        let opts = Options {
            player_prefix: "p".repeat(MAX_PREFIX_BYTES + 1),
            ..Options::default()
        };
        assert_eq!(opts.validate(), Err(OptionsError::BadPlayerPrefix));
        let opts = Options {
            input_bytes: MAX_INPUT_BYTES + 1,
            ..Options::default()
        };
        assert_eq!(opts.validate(), Err(OptionsError::InputTooLarge));
    }
}
