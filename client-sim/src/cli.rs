//! The command line, turned into [`Options`].

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::options::{
    Mix, Options, OptionsError, ProgressMode, Scenario, Stage, TlsOptions, parse_source_addrs,
    parse_stages,
};
use crate::scenarios::crash::ChildArgs;
use crate::threshold::{Threshold, ThresholdError};

const ABOUT: &str = "A load generator whose scenarios are the ways game clients die; it checks \
that the server noticed and counted each one.";

const LONG_ABOUT: &str = "\
A load generator whose scenarios are the ways game clients die; it checks that the server \
noticed and counted each one.

Each client slot runs one scenario instance at a time, and an instance is one connection. \
Without --duration every slot runs exactly one instance, so --clients N runs N instances, \
drawn from the mix in proportion to the weights (with N equal to the weight sum, each scenario \
runs exactly its weight). With --duration, slots keep starting new instances until the duration \
ends (each slot runs at least one); instances in flight then finish. Connections start at --connect-rate per second, except \
storm instances, which all connect at once. An instance of a resume scenario is one session over \
two connections: the one that breaks and the one that resumes it.

Scenarios and the close reason the server must record for each:
  graceful          plays, Bye, waits for the Ack of every input      client_quit
  close-no-bye      plays, closes with FIN and no Bye                 peer_eof
  abort             plays, closes with SO_LINGER 0 (RST)              peer_reset
  exit-unread       leaves the server's events unread, closes (RST)   peer_reset
  crash             a child process killed with SIGKILL mid-send      peer_reset, truncated_frame
                                                                      or broken_pipe (1)
  vanish            goes silent with the socket open                  idle_timeout
  slow-reader       sends big inputs, never reads                     slow_consumer
  flood             sends far above the rate limit                    rate_limited
  kicked-then-send  kicked via the admin endpoint, keeps sending      kicked
  kicked-then-recv  kicked via the admin endpoint, reads to the end   kicked
  storm             connects together with all storm instances        client_quit
  soak              plays at a human pace, mostly quits with Bye      client_quit (some peer_eof)
  reset-and-return  RST mid-stream, resumes with its token, quits     peer_reset, then client_quit
  vanish-and-return silent until the server resets it, resumes       idle_timeout, then client_quit
  roam              resumes while the old socket is open and silent  replaced, then client_quit

(1) What the killed child's kernel sends decides it: RST when relays sat unread in its receive \
buffer (peer_reset); otherwise FIN after a stream cut inside a frame (truncated_frame), unless the \
server wrote to the dead socket before it read that FIN: the write draws an RST and the next \
write fails with EPIPE (broken_pipe). The other scenarios keep their socket open (or reset it \
themselves) until the server's close, so each has one reason.

The resume scenarios play in a private room and check that nothing was lost or repeated across \
the break: event sequence numbers run on without a gap or a repeat, and every input comes back \
as a relay exactly once. The summary counts resumes and anything lost; one loss fails the run. \
Against a server with resume off (session.resume_grace = \"0s\") they quit at once and fail, \
saying so in one line.

With --metrics-url, the server's account of this run's closes is compared per reason with what \
the instances did (reconciliation). Every player id of a run starts with PREFIX-RUN-, and the \
server's /closes endpoint (same address as /metrics) counts the closes of those players only, so \
the comparison is exact while other traffic runs on the same server (another client-sim, real \
players); a server without /closes is compared by the deltas of its \
gameserver_sessions_closed_total, which is exact only when this run is its only traffic. The \
summary names the method. The kick scenarios use the admin endpoint at the same address.

A drain (the server's Bye{server_shutdown}) is an outcome of its own: those instances are \
counted and reconciled as server_shutdown, not failed, and no instance starts after it.

Load shapes: --clients slots for --duration (or one instance each), or --stages \
30s:100,1m:1000,30s:0, which ramps the busy slots linearly from each target to the next. \
Thresholds set the exit status like a load test's: --threshold 'rtt.p95<50ms' --threshold \
'connect.fail_rate<0.01' --threshold 'detection.p99<3.2s' (latencies connect, rtt, detection \
with min, mean, p50, p90, p95, p99, p99.9, max or count; rates connect.fail_rate and \
instances.fail_rate). --json writes the report with a time series sampled every --interval.

Exit status: 0 when everything passed; 1 when an instance's own checks failed or the server's \
account disagrees; 2 when the run cannot start (nothing listening, not a game server, \
unreadable metrics, bad options), with one line on stderr saying which; 3 when everything else \
passed but a threshold did not hold.

The defaults (20 clients, the quick mix, 200 connects/s) do something useful against a local \
server on its defaults and finish in a few seconds.";

/// client-sim's command line.
#[derive(Debug, Parser)]
#[command(name = "client-sim", version, about = ABOUT, long_about = LONG_ABOUT)]
pub struct Cli {
    /// The game server, HOST:PORT.
    #[arg(long, default_value = "127.0.0.1:7777", env = "CLIENT_SIM_SERVER")]
    pub server: String,
    /// Client slots running at once (one connection each).
    #[arg(long, default_value_t = 20)]
    pub clients: usize,
    /// New connections per second (0 = all at once). Storm instances ignore it.
    #[arg(long, default_value_t = 200.0)]
    pub connect_rate: f64,
    /// Keep starting new instances in every slot until this much time has passed (e.g. 30s, 5m).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Run only this scenario (same as --mix NAME=1).
    #[arg(long, conflicts_with = "mix", value_parser = parse_scenario)]
    pub scenario: Option<Scenario>,
    /// Scenarios and weights: NAME=WEIGHT,... ("all" = every scenario once; "quick" = the default:
    /// graceful=3,close-no-bye=2,abort=2,exit-unread=2,crash=1,flood=1,storm=4,soak=3,
    /// reset-and-return=1,roam=1).
    #[arg(long, value_parser = parse_mix)]
    pub mix: Option<Mix>,
    /// The server's Prometheus endpoint, e.g. http://127.0.0.1:9100/metrics. Enables
    /// reconciliation and the kick scenarios.
    #[arg(long, env = "CLIENT_SIM_METRICS_URL")]
    pub metrics_url: Option<String>,
    /// The server's admin.token, sent as a bearer token with every admin request. The kick
    /// scenarios need it; so does a server whose admin port is off loopback.
    #[arg(long, env = "CLIENT_SIM_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Read the admin token from this file instead (surrounding whitespace ignored).
    #[arg(long, value_name = "FILE", value_parser = read_token_file, conflicts_with = "admin_token")]
    pub admin_token_file: Option<String>,
    /// Write the full report as JSON to this file ("-": standard output, with the summary on
    /// standard error and no progress display).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Time between two samples of the JSON report's time series.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub interval: Duration,
    /// Load stages DURATION:CLIENTS,...: the busy client slots ramp linearly to each target
    /// over its duration (e.g. 30s:100,1m:1000,30s:0). Replaces --clients and --duration.
    #[arg(long, value_parser = parse_stages_arg, conflicts_with_all = ["clients", "duration"])]
    pub stages: Option<Stages>,
    /// A bound the run must hold, e.g. 'rtt.p95<50ms', 'connect.fail_rate<0.01'. Repeatable;
    /// one that fails makes the exit status 3.
    #[arg(long = "threshold", value_name = "FIGURE<BOUND", value_parser = parse_threshold)]
    pub thresholds: Vec<Threshold>,
    /// Local addresses to connect from, round-robin: a list and/or IPv4 ranges, e.g.
    /// 127.0.0.2-127.0.0.9 (each address gives another ~28,000 ports).
    #[arg(long, value_parser = parse_source_addrs_arg)]
    pub source_addrs: Option<SourceAddrs>,
    /// The server's auth.secret: every Hello carries a token minted with it.
    #[arg(long, env = "CLIENT_SIM_AUTH_SECRET", hide_env_values = true)]
    pub auth_secret: Option<String>,
    /// How long minted tokens stay valid.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub token_ttl: Duration,
    /// Inputs a graceful instance sends before quitting (others send fewer; the resume scenarios
    /// send half before the break and half after, plus a burst of 10 right before it).
    #[arg(long, default_value_t = 20)]
    pub inputs: u32,
    /// Payload bytes of each ordinary input.
    #[arg(long, default_value_t = 32)]
    pub input_bytes: usize,
    /// Room for the scenarios that play together (default: the server places players).
    #[arg(long)]
    pub room: Option<String>,
    /// How long each soak instance plays (default: random, 1 to 5 seconds), or MIN..MAX to draw
    /// it per instance (10m..30m replaces about 5% of the players a minute). Use a long value
    /// with --scenario soak to hold many connections open. With --duration, soak instances stop
    /// playing (and quit as they would) when the run's time is up.
    #[arg(long, value_parser = parse_play_time)]
    pub play_time: Option<PlayTime>,
    /// Inputs per second of a soak player (0 = none, only pings: the lightest way to hold many
    /// connections). Each input is relayed to everyone in the room.
    #[arg(long, default_value_t = 5.0)]
    pub soak_input_rate: f64,
    /// TCP connect timeout.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub connect_timeout: Duration,
    /// Longest wait after the run for the server's counters to settle (default: the server's idle
    /// timeout plus 5 s).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub settle_timeout: Option<Duration>,
    /// Prefix of player ids.
    #[arg(long, default_value = "sim")]
    pub player_prefix: String,
    /// Progress display: auto (a bar on a terminal, lines otherwise), bar, lines, off.
    #[arg(long, default_value = "auto", value_parser = parse_progress)]
    pub progress: ProgressMode,
    /// No progress display (same as --progress off).
    #[arg(long, short)]
    pub quiet: bool,
    /// Speak TLS to the game port (a server with `[tls]` set).
    #[arg(long)]
    pub tls: bool,
    /// PEM file of the certificates to trust over TLS (a private CA, or a self-signed server
    /// certificate); without it, the public web's roots. Implies --tls.
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// The name the server's certificate must carry (default: the host of --server). Implies
    /// --tls.
    #[arg(long, value_name = "NAME")]
    pub tls_server_name: Option<String>,
    /// Speak WebSocket: --server is the server's WebSocket listener (server.websocket_listen);
    /// with --tls, wss.
    #[arg(long)]
    pub websocket: bool,
    /// Internal: the crash scenario's child process.
    #[command(subcommand)]
    pub internal: Option<Internal>,
}

/// Hidden subcommands client-sim runs as its own child processes.
#[derive(Debug, Subcommand)]
pub enum Internal {
    /// Connect, play and send until killed (the crash scenario's child).
    #[command(name = "__crash-child", hide = true)]
    CrashChild(ChildArgs),
}

/// A parsed `--stages` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stages(pub Vec<Stage>);

fn parse_stages_arg(s: &str) -> Result<Stages, OptionsError> {
    parse_stages(s).map(Stages)
}

fn parse_threshold(s: &str) -> Result<Threshold, ThresholdError> {
    s.parse()
}

/// A parsed `--source-addrs` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceAddrs(pub Vec<IpAddr>);

fn parse_scenario(s: &str) -> Result<Scenario, OptionsError> {
    Ok(s.parse::<Scenario>()?)
}

fn parse_mix(s: &str) -> Result<Mix, OptionsError> {
    s.parse()
}

fn parse_source_addrs_arg(s: &str) -> Result<SourceAddrs, OptionsError> {
    parse_source_addrs(s).map(SourceAddrs)
}

fn read_token_file(path: &str) -> Result<String, String> {
    let token = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let token = token.trim();
    if token.is_empty() {
        return Err(format!("{path} is empty"));
    }
    Ok(token.to_owned())
}

fn parse_progress(s: &str) -> Result<ProgressMode, String> {
    match s {
        "auto" => Ok(ProgressMode::Auto),
        "bar" => Ok(ProgressMode::Bar),
        "lines" => Ok(ProgressMode::Lines),
        "off" => Ok(ProgressMode::Off),
        other => Err(format!(
            "unknown progress mode {other:?}: auto, bar, lines or off"
        )),
    }
}

impl Cli {
    /// The run's options.
    pub fn options(&self) -> Options {
        let mix = match (&self.scenario, &self.mix) {
            (Some(scenario), _) => Mix::single(*scenario),
            (None, Some(mix)) => mix.clone(),
            (None, None) => Mix::quick(),
        };
        Options {
            server: self.server.clone(),
            clients: self.clients,
            connect_rate: self.connect_rate,
            duration: self.duration,
            mix,
            metrics_url: self.metrics_url.clone(),
            admin_token: self
                .admin_token
                .clone()
                .or_else(|| self.admin_token_file.clone()),
            source_addrs: self.source_addrs.clone().map(|s| s.0).unwrap_or_default(),
            auth_secret: self.auth_secret.clone(),
            token_ttl: self.token_ttl,
            inputs: self.inputs,
            input_bytes: self.input_bytes,
            room: self.room.clone(),
            play_time: self.play_time.map(|p| p.min),
            play_time_max: self.play_time.and_then(|p| p.max),
            soak_input_rate: self.soak_input_rate,
            progress: if self.quiet || self.json_to_stdout() {
                ProgressMode::Off
            } else {
                self.progress
            },
            crash_exe: None,
            connect_timeout: self.connect_timeout,
            settle_timeout: self.settle_timeout,
            player_prefix: self.player_prefix.clone(),
            stages: self.stages.clone().map(|s| s.0).unwrap_or_default(),
            thresholds: self.thresholds.clone(),
            interval: self.interval,
            tls: (self.tls || self.tls_ca.is_some() || self.tls_server_name.is_some()).then(|| {
                TlsOptions {
                    ca_file: self.tls_ca.clone(),
                    server_name: self.tls_server_name.clone(),
                }
            }),
            websocket: self.websocket,
        }
    }

    /// True when `--json -` asks for the report on standard output.
    pub fn json_to_stdout(&self) -> bool {
        self.json.as_deref() == Some(std::path::Path::new("-"))
    }
}

/// `--play-time`: one duration, or `MIN..MAX`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlayTime {
    /// The play time, or the shortest.
    pub min: Duration,
    /// The longest, when a range was given.
    pub max: Option<Duration>,
}

fn parse_play_time(text: &str) -> Result<PlayTime, String> {
    let duration = |part: &str| {
        humantime::parse_duration(part.trim()).map_err(|error| format!("{part:?}: {error}"))
    };
    match text.split_once("..") {
        None => Ok(PlayTime {
            min: duration(text)?,
            max: None,
        }),
        Some((min, max)) => {
            let (min, max) = (duration(min)?, duration(max)?);
            if min > max {
                return Err(format!("the range {text:?} ends before it starts"));
            }
            Ok(PlayTime {
                min,
                max: Some(max),
            })
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn defaults_give_the_default_options() {
        let cli = Cli::try_parse_from(["client-sim"]).unwrap();
        let opts = cli.options();
        let default = Options::default();
        assert_eq!(opts.server, default.server);
        assert_eq!(opts.clients, default.clients);
        assert_eq!(opts.mix, default.mix);
        assert_eq!(opts.connect_rate, default.connect_rate);
        assert!(opts.validate().is_ok());
    }

    #[test]
    fn play_time_is_one_duration_or_a_range() {
        let opts = |args: &[&str]| {
            let mut all = vec!["client-sim"];
            all.extend_from_slice(args);
            Cli::try_parse_from(all).map(|cli| cli.options())
        };
        let one = opts(&["--play-time", "90s"]).unwrap();
        assert_eq!(one.play_time, Some(Duration::from_secs(90)));
        assert_eq!(one.play_time_max, None);
        let range = opts(&["--play-time", "10m..30m"]).unwrap();
        assert_eq!(range.play_time, Some(Duration::from_secs(600)));
        assert_eq!(range.play_time_max, Some(Duration::from_secs(1800)));
        let backwards = opts(&["--play-time", "30m..10m"]).unwrap_err().to_string();
        assert!(backwards.contains("ends before it starts"), "{backwards}");
        let garbage = opts(&["--play-time", "10m..soon"]).unwrap_err().to_string();
        assert!(garbage.contains("\"soon\""), "{garbage}");
    }

    #[test]
    fn flags_reach_the_options() {
        let cli = Cli::try_parse_from([
            "client-sim",
            "--server",
            "10.0.0.1:7000",
            "--clients",
            "5",
            "--duration",
            "30s",
            "--mix",
            "graceful=2,vanish=1",
            "--source-addrs",
            "127.0.0.2-127.0.0.3",
            "--quiet",
        ])
        .unwrap();
        let opts = cli.options();
        assert_eq!(opts.server, "10.0.0.1:7000");
        assert_eq!(opts.clients, 5);
        assert_eq!(opts.duration, Some(Duration::from_secs(30)));
        assert_eq!(opts.mix.to_string(), "graceful=2,vanish=1");
        assert_eq!(opts.source_addrs.len(), 2);
        assert_eq!(opts.progress, ProgressMode::Off);
    }

    #[test]
    fn bad_values_are_refused_by_the_parser() {
        assert!(Cli::try_parse_from(["client-sim", "--scenario", "teleport"]).is_err());
        assert!(Cli::try_parse_from(["client-sim", "--mix", "graceful=x"]).is_err());
        assert!(
            Cli::try_parse_from(["client-sim", "--scenario", "abort", "--mix", "flood=1"]).is_err()
        );
        assert!(Cli::try_parse_from(["client-sim", "--duration", "soon"]).is_err());
    }

    #[test]
    fn the_crash_child_subcommand_parses_but_stays_hidden() {
        let cli = Cli::try_parse_from([
            "client-sim",
            "__crash-child",
            "--server",
            "127.0.0.1:7777",
            "--player",
            "p",
            "--room",
            "r",
        ])
        .unwrap();
        assert!(matches!(cli.internal, Some(Internal::CrashChild(_))));
        let help = <Cli as clap::CommandFactory>::command()
            .render_long_help()
            .to_string();
        assert!(!help.contains("__crash-child"));
        assert!(help.contains("kicked-then-send"));
        for scenario in crate::options::Scenario::ALL {
            assert!(help.contains(scenario.as_str()), "--help names {scenario}");
        }
    }
}
