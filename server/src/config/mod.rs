//! Configuration: the embedded defaults, a file, the environment and flags, merged in that order,
//! then checked as a whole so that every problem is reported at once, each naming its key.

mod checks;
mod game;
mod problem;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

pub(crate) use self::checks::{
    MAX_AUDIENCE, MAX_TOKEN_TTL, plain_host, valid_audience, valid_websocket_origin,
};
pub use self::game::GameConfig;
pub use self::problem::Problem;

/// The commented default configuration, compiled into the binary.
pub const DEFAULT_TOML: &str = include_str!("../../../config/default.toml");

/// Prefix of the environment variables that override configuration keys.
pub const ENV_PREFIX: &str = "GAMESERVER";

/// The smallest `server.memory_budget`: what the process needs before it holds any player.
pub const MIN_MEMORY_BUDGET: u64 = 16 << 20;

/// The effective configuration of one server.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    /// The game listener and session limits.
    pub server: ServerConfig,
    /// Per-session timers, queues and limits.
    pub session: SessionConfig,
    /// Socket options applied to every accepted connection.
    pub tcp: TcpConfig,
    /// What sits in front of the game port.
    pub net: NetConfig,
    /// The admin HTTP listener.
    pub admin: AdminConfig,
    /// Graceful shutdown.
    pub shutdown: ShutdownConfig,
    /// The room directory and room tasks.
    pub rooms: RoomsConfig,
    /// Player authentication.
    pub auth: AuthConfig,
    /// Logging.
    pub log: LogConfig,
    /// Agones: the game-server orchestrator on Kubernetes.
    pub agones: AgonesConfig,
    /// TLS on the game port and the WebSocket listener.
    pub tls: TlsConfig,
}

/// `[tls]`: see config/default.toml for what each key does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TlsConfig {
    /// PEM file of the certificate chain, leaf first; empty: no TLS.
    pub cert_file: String,
    /// PEM file of the certificate's private key.
    pub key_file: String,
}

impl TlsConfig {
    /// Both files are set: the listeners speak TLS.
    pub fn enabled(&self) -> bool {
        !self.cert_file.is_empty()
    }
}

/// `[agones]`: see config/default.toml for what each key does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgonesConfig {
    /// Talk to the Agones SDK server next to this process (its sidecar).
    pub enabled: bool,
    /// Time between two `Health()` pings.
    #[serde(with = "humantime_serde")]
    pub health_interval: Duration,
    /// Longest wait for the SDK server at start.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
}

/// `[server]`: see config/default.toml for what each key does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerConfig {
    /// Game listen address.
    pub listen: SocketAddr,
    /// Most concurrent sessions; 0 = no limit.
    pub max_sessions: usize,
    /// Most concurrent sessions per source (an IPv4 address or IPv6 prefix); 0 = no limit.
    pub max_sessions_per_source: usize,
    /// New connections per second per source, refilled continuously; 0 = no limit.
    pub connect_rate_per_source: u32,
    /// New connections a source may open in a burst above the rate.
    pub connect_burst_per_source: u32,
    /// Prefix length that makes one IPv4 source.
    pub source_prefix_v4: u8,
    /// Prefix length that makes one IPv6 source.
    pub source_prefix_v6: u8,
    /// Sources the per-source limits do not apply to.
    pub source_exempt: Vec<IpNet>,
    /// Bound on the memory the server spends on players, in bytes.
    #[serde(with = "byte_size")]
    pub memory_budget: u64,
    /// Listen backlog.
    pub listen_backlog: u32,
    /// The WebSocket listener's address; empty: none.
    pub websocket_listen: String,
    /// Largest frame body, in bytes.
    pub max_frame_bytes: usize,
}

/// `[session]`: see config/default.toml for what each key does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionConfig {
    /// Time allowed for `Hello`.
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// Server ping period; zero turns the application heartbeat off.
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// Silence after which a session is dropped.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Longest extension of an idle deadline while the peer's kernel still answers over a path
    /// that loses packets; zero turns it off.
    #[serde(with = "humantime_serde")]
    pub loss_grace: Duration,
    /// Most queued events per session.
    pub outbound_queue: usize,
    /// Most bytes of queued events per session.
    #[serde(with = "byte_size")]
    pub outbound_queue_bytes: u64,
    /// Longest a session's socket may stay backed up.
    #[serde(with = "humantime_serde")]
    pub write_timeout: Duration,
    /// Longest a lingering close waits.
    #[serde(with = "humantime_serde")]
    pub linger_timeout: Duration,
    /// Steady inbound frames per second.
    pub rate_limit_per_sec: u32,
    /// Inbound burst allowance.
    pub rate_limit_burst: u32,
    /// Reset instead of lingering on protocol errors.
    pub abort_on_protocol_error: bool,
    /// Lingering close on server-initiated closes (only ever false in demonstrations).
    pub lingering_close: bool,
    /// How long a broken session waits for its player to resume; zero turns resume off.
    #[serde(with = "humantime_serde")]
    pub resume_grace: Duration,
    /// Most sent-but-unacknowledged events kept for replay.
    pub resume_buffer: usize,
    /// Most bytes of sent-but-unacknowledged events kept for replay.
    #[serde(with = "byte_size")]
    pub resume_buffer_bytes: u64,
    /// Most parked sessions; the oldest is evicted to park another.
    pub max_parked: usize,
    /// Most bytes held by parked sessions; the oldest are evicted above it.
    #[serde(with = "byte_size")]
    pub max_parked_bytes: u64,
    /// Park slow consumers for resume too.
    pub resume_after_slow_consumer: bool,
}

/// `[tcp]`: see config/default.toml for what each key does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TcpConfig {
    /// TCP_NODELAY.
    pub nodelay: bool,
    /// Keepalive idle time.
    #[serde(with = "humantime_serde")]
    pub keepalive_idle: Duration,
    /// Keepalive probe interval.
    #[serde(with = "humantime_serde")]
    pub keepalive_interval: Duration,
    /// Keepalive probe count.
    pub keepalive_count: u32,
    /// TCP_USER_TIMEOUT; zero leaves the kernel default.
    #[serde(with = "humantime_serde")]
    pub user_timeout: Duration,
}

/// `[net]`: see config/default.toml for what each key does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetConfig {
    /// PROXY protocol on the game port.
    pub proxy_protocol: ProxyProtocolConfig,
}

/// `[net.proxy_protocol]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProxyProtocolConfig {
    /// Balancers whose connections start with a PROXY header (required from them, refused from
    /// anyone else); empty: PROXY protocol off.
    pub trusted: Vec<IpNet>,
}

impl ProxyProtocolConfig {
    /// True when PROXY protocol is on (some balancer is trusted).
    pub fn enabled(&self) -> bool {
        !self.trusted.is_empty()
    }

    /// True when connections from `ip` must start with a PROXY header.
    pub fn trusts(&self, ip: std::net::IpAddr) -> bool {
        let ip = match ip {
            std::net::IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map_or(std::net::IpAddr::V6(v6), std::net::IpAddr::V4),
            v4 => v4,
        };
        self.trusted.iter().any(|net| net.contains(&ip))
    }
}

/// `[admin]`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct AdminConfig {
    /// Admin HTTP listen address.
    pub listen: SocketAddr,
    /// Bearer token for kicks and for requests from off loopback; never printed.
    #[serde(serialize_with = "redact")]
    pub token: String,
    /// A file holding the bearer token (read at start; wins over `token`).
    pub token_file: String,
    /// Most admin connections at once.
    pub max_connections: usize,
    /// Time allowed for a request's headers, and for the next request on an idle connection.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// Whether reads from loopback need no token. Behind a reverse proxy on the same host every
    /// request arrives from loopback: turn this off there (with a token set).
    pub loopback_reads: bool,
    /// WebSocket origins (`wss://host:port`) besides the server's own WebSocket listener that
    /// the game's pages may be pointed at with `?ws=`; empty: the server's own only.
    pub page_websocket_origins: Vec<String>,
}

impl std::fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminConfig")
            .field("listen", &self.listen)
            .field("token", &redacted(&self.token))
            .field("token_file", &self.token_file)
            .field("max_connections", &self.max_connections)
            .field("header_read_timeout", &self.header_read_timeout)
            .field("loopback_reads", &self.loopback_reads)
            .field("page_websocket_origins", &self.page_websocket_origins)
            .finish()
    }
}

impl AdminConfig {
    /// The bearer token, from `token_file` when set, else `token`; `None` when neither is set.
    /// Validation has already checked that the file can be read.
    pub fn bearer_token(&self) -> Option<String> {
        let token = if self.token_file.is_empty() {
            self.token.clone()
        } else {
            std::fs::read_to_string(&self.token_file)
                .map(|t| t.trim().to_owned())
                .unwrap_or_default()
        };
        (!token.is_empty()).then_some(token)
    }
}

/// `[shutdown]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShutdownConfig {
    /// Bound on the graceful drain.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
}

/// `[rooms]`: see config/default.toml for what each key does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoomsConfig {
    /// Most rooms open at once.
    pub max_rooms: usize,
    /// Players placed in one automatic room.
    pub auto_room_capacity: usize,
    /// Ticks per second of a room that does not choose its own rate.
    pub tick_rate_hz: u32,
    /// Commands a room's queue holds before senders wait: a join, a leave, or the inputs a player's
    /// session read in one pass (at most 64).
    pub queue: usize,
}

/// `[auth]`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct AuthConfig {
    /// "none" or "hmac".
    pub mode: AuthMode,
    /// HMAC key; never printed.
    #[serde(serialize_with = "redact")]
    pub secret: String,
    /// Longest lifetime a token may have; later expiries are refused.
    #[serde(with = "humantime_serde")]
    pub max_ttl: Duration,
    /// Failed authentications a source may make before it is throttled.
    pub max_failures_per_source: u32,
    /// Time over which a throttled source regains its `max_failures_per_source` attempts.
    #[serde(with = "humantime_serde")]
    pub failure_window: Duration,
    /// This instance's name for tokens bound to one instance; empty: none.
    pub audience: String,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("mode", &self.mode)
            .field("secret", &redacted(&self.secret))
            .field("max_ttl", &self.max_ttl)
            .field("max_failures_per_source", &self.max_failures_per_source)
            .field("failure_window", &self.failure_window)
            .finish()
    }
}

fn redacted(secret: &str) -> &'static str {
    if secret.is_empty() { "" } else { "<redacted>" }
}

fn redact<S: serde::Serializer>(secret: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(redacted(secret))
}

/// Byte sizes written as "64KiB", "1MiB", "2GiB" or a plain number of bytes.
mod byte_size {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Parses "1MiB", "512 KiB", "2GB" or "1048576".
    pub fn parse(text: &str) -> Result<u64, String> {
        text.trim()
            .parse::<bytesize::ByteSize>()
            .map(|size| size.as_u64())
            .map_err(|_| format!("{text:?} is not a size such as \"64KiB\", \"1MiB\" or \"2GiB\""))
    }

    /// The shortest exact form: a whole number of GiB, MiB or KiB, else bytes.
    pub fn format(bytes: u64) -> String {
        for (unit, factor) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
            if bytes >= factor && bytes % factor == 0 {
                return format!("{}{unit}", bytes / factor);
            }
        }
        bytes.to_string()
    }

    pub fn serialize<S: Serializer>(bytes: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(*bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) => Ok(n),
            Raw::Text(text) => parse(&text).map_err(serde::de::Error::custom),
        }
    }
}

/// How players prove who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Any player id is accepted.
    None,
    /// `Hello` must carry an HMAC-SHA256 token.
    Hmac,
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogConfig {
    /// Output format.
    pub format: LogFormat,
    /// A tracing filter directive.
    pub level: String,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// Where configuration comes from. Tests build one by hand instead of touching the process
/// environment.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// A TOML file layered over the defaults.
    pub file: Option<PathBuf>,
    /// Environment variables to read; `None` reads the process environment.
    pub env: Option<HashMap<String, String>>,
    /// Explicit key overrides applied last (flags), as `("server.listen", "127.0.0.1:0")`.
    pub overrides: Vec<(String, String)>,
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A source could not be read or parsed at all (for example a missing file or bad TOML).
    #[error("cannot read configuration: {0}")]
    Source(#[from] config::ConfigError),
    /// The sources were read, but values are missing, mistyped, unknown or inconsistent.
    #[error("invalid configuration ({} problem{}):\n{}", .0.len(), if .0.len() == 1 { "" } else { "s" }, list(.0))]
    Invalid(Vec<Problem>),
}

fn list(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

impl Default for Config {
    /// The embedded defaults. They are checked by a unit test, so this cannot fail in a build
    /// that passed its tests; should it ever, the error names the bad key.
    fn default() -> Self {
        match Config::load(&Sources {
            env: Some(HashMap::new()),
            ..Sources::default()
        }) {
            Ok(config) => config,
            Err(error) => panic!("embedded default configuration is invalid: {error}"),
        }
    }
}

impl Config {
    /// Merges the sources over the embedded defaults and checks the result: the engine's own
    /// sections only (a `[game]` section is an unknown one).
    pub fn load(sources: &Sources) -> Result<Config, ConfigError> {
        Config::load_game::<()>(sources).map(|(config, ())| config)
    }

    /// Merges the sources over the embedded defaults and the game's (`C::DEFAULT_TOML`), and
    /// checks the engine's sections and the game's `[game]` section together: every problem of
    /// either is reported at once, each with its key.
    pub fn load_game<C: GameConfig>(sources: &Sources) -> Result<(Config, C), ConfigError> {
        let mut builder = config::Config::builder()
            .add_source(config::File::from_str(
                DEFAULT_TOML,
                config::FileFormat::Toml,
            ))
            .add_source(config::File::from_str(
                C::DEFAULT_TOML,
                config::FileFormat::Toml,
            ));
        if let Some(path) = &sources.file {
            builder = builder
                .add_source(config::File::from(path.clone()).format(config::FileFormat::Toml));
        }
        let env = config::Environment::with_prefix(ENV_PREFIX)
            .prefix_separator("__")
            .separator("__")
            .source(sources.env.clone());
        builder = builder.add_source(env);
        for (key, value) in &sources.overrides {
            builder = builder.set_override(key.as_str(), value.as_str())?;
        }
        let raw = builder.build()?;
        let env: HashMap<String, String> = match &sources.env {
            Some(env) => env.clone(),
            None => std::env::vars().collect(),
        };
        let mut fields = Fields {
            raw: &raw,
            problems: unknown_keys(&raw, C::DEFAULT_TOML)?,
        };
        fields.problems.extend(stray_variables(&env));
        let config = fields.config();
        let mut problems = fields.problems;
        let game = game_section::<C>(&raw, &mut problems)?;
        let result = match (config, game) {
            (Some(config), Some(game)) if problems.is_empty() => {
                problems.extend(config.validate());
                problems.extend(game.validate());
                if problems.is_empty() {
                    return Ok((config, game));
                }
                problems
            }
            _ => problems,
        };
        let mut problems = result;
        name_variables(&mut problems, &env);
        Err(ConfigError::Invalid(problems))
    }

    /// Checks relations between keys and value ranges. Returns every problem found.
    pub fn validate(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut check = |ok: bool, key: &str, message: String| {
            if !ok {
                problems.push(Problem {
                    key: key.to_owned(),
                    message,
                });
            }
        };
        let s = &self.session;
        check(
            (64..=16 * 1024 * 1024).contains(&self.server.max_frame_bytes),
            "server.max_frame_bytes",
            format!(
                "must be between 64 and 16777216, got {}",
                self.server.max_frame_bytes
            ),
        );
        check(
            self.server.websocket_listen.is_empty()
                || self.server.websocket_listen.parse::<SocketAddr>().is_ok(),
            "server.websocket_listen",
            format!(
                "{:?} is not an address and port such as \"0.0.0.0:7778\" (empty: no \
                 WebSocket listener)",
                self.server.websocket_listen
            ),
        );
        check(
            self.server.listen_backlog >= 1,
            "server.listen_backlog",
            "must be at least 1".into(),
        );
        check(
            !s.handshake_timeout.is_zero(),
            "session.handshake_timeout",
            "must be greater than zero".into(),
        );
        check(
            !s.idle_timeout.is_zero(),
            "session.idle_timeout",
            "must be greater than zero".into(),
        );
        check(
            s.heartbeat_interval.is_zero() || s.idle_timeout > s.heartbeat_interval,
            "session.idle_timeout",
            format!(
                "must exceed session.heartbeat_interval ({}), or a healthy client would time out \
                 between two pings",
                humantime::format_duration(s.heartbeat_interval)
            ),
        );
        check(
            s.idle_timeout <= Duration::from_secs(u64::from(u32::MAX) / 1000),
            "session.idle_timeout",
            "is too large to announce in Welcome (at most 49 days)".into(),
        );
        check(
            s.heartbeat_interval <= Duration::from_secs(u64::from(u32::MAX) / 1000),
            "session.heartbeat_interval",
            "is too large to announce in Welcome (at most 49 days)".into(),
        );
        check(
            s.outbound_queue >= 1,
            "session.outbound_queue",
            "must be at least 1".into(),
        );
        check(
            !s.write_timeout.is_zero(),
            "session.write_timeout",
            "must be greater than zero".into(),
        );
        check(
            !s.linger_timeout.is_zero(),
            "session.linger_timeout",
            "must be greater than zero".into(),
        );
        check(
            s.rate_limit_per_sec >= 1,
            "session.rate_limit_per_sec",
            "must be at least 1".into(),
        );
        check(
            s.rate_limit_burst >= 1,
            "session.rate_limit_burst",
            "must be at least 1".into(),
        );
        check(
            s.resume_grace.is_zero() || s.resume_buffer >= 1,
            "session.resume_buffer",
            "must be at least 1 while session.resume_grace is above zero".into(),
        );
        let sv = &self.server;
        check(
            (1..=32).contains(&sv.source_prefix_v4),
            "server.source_prefix_v4",
            format!("must be between 1 and 32, got {}", sv.source_prefix_v4),
        );
        check(
            (1..=128).contains(&sv.source_prefix_v6),
            "server.source_prefix_v6",
            format!("must be between 1 and 128, got {}", sv.source_prefix_v6),
        );
        check(
            sv.connect_rate_per_source == 0 || sv.connect_burst_per_source >= 1,
            "server.connect_burst_per_source",
            "must be at least 1 while server.connect_rate_per_source is above zero".into(),
        );
        check(
            sv.memory_budget >= MIN_MEMORY_BUDGET,
            "server.memory_budget",
            format!(
                "must be at least {} (the server itself needs that much), got {}",
                byte_size::format(MIN_MEMORY_BUDGET),
                byte_size::format(sv.memory_budget)
            ),
        );
        let largest_frame = (protocol::HEADER_LEN + sv.max_frame_bytes) as u64;
        check(
            s.outbound_queue_bytes >= largest_frame,
            "session.outbound_queue_bytes",
            format!(
                "must hold at least one largest frame ({} bytes, from server.max_frame_bytes)",
                largest_frame
            ),
        );
        check(
            s.resume_grace.is_zero() || s.resume_buffer_bytes >= largest_frame,
            "session.resume_buffer_bytes",
            format!(
                "must hold at least one largest frame ({} bytes, from server.max_frame_bytes) \
                 while session.resume_grace is above zero",
                largest_frame
            ),
        );
        check(
            s.resume_grace.is_zero() || s.max_parked >= 1,
            "session.max_parked",
            "must be at least 1 while session.resume_grace is above zero".into(),
        );
        let a = &self.admin;
        check(
            a.max_connections >= 1,
            "admin.max_connections",
            "must be at least 1".into(),
        );
        check(
            !a.header_read_timeout.is_zero(),
            "admin.header_read_timeout",
            "must be greater than zero".into(),
        );
        for origin in &a.page_websocket_origins {
            check(
                valid_websocket_origin(origin),
                "admin.page_websocket_origins",
                format!(
                    "{origin:?} is not a WebSocket origin such as \"wss://play.example.com\" or \
                     \"ws://10.0.0.5:7778\" (ws or wss, a host, an optional port, nothing more)"
                ),
            );
        }
        if !a.token_file.is_empty() {
            match std::fs::read_to_string(&a.token_file) {
                Ok(token) => check(
                    token.trim().len() >= 16,
                    "admin.token_file",
                    format!(
                        "{} must hold a token of at least 16 characters",
                        a.token_file
                    ),
                ),
                Err(error) => check(
                    false,
                    "admin.token_file",
                    format!("cannot read {}: {error}", a.token_file),
                ),
            }
        } else {
            check(
                a.token.is_empty() || a.token.len() >= 16,
                "admin.token",
                "must be at least 16 characters (set GAMESERVER__ADMIN__TOKEN)".into(),
            );
        }
        check(
            a.listen.ip().is_loopback() || !a.token.is_empty() || !a.token_file.is_empty(),
            "admin.token",
            format!(
                "is required because admin.listen ({}) is not a loopback address: anyone who can \
                 reach it could list and kick players (set GAMESERVER__ADMIN__TOKEN or \
                 admin.token_file)",
                a.listen
            ),
        );
        let t = &self.tcp;
        check(
            t.keepalive_idle >= Duration::from_secs(1),
            "tcp.keepalive_idle",
            "must be at least 1s (the kernel counts whole seconds)".into(),
        );
        check(
            t.keepalive_interval >= Duration::from_secs(1),
            "tcp.keepalive_interval",
            "must be at least 1s (the kernel counts whole seconds)".into(),
        );
        check(
            (1..=127).contains(&t.keepalive_count),
            "tcp.keepalive_count",
            format!("must be between 1 and 127, got {}", t.keepalive_count),
        );
        check(
            t.user_timeout.is_zero() || t.user_timeout > s.write_timeout,
            "tcp.user_timeout",
            format!(
                "must exceed session.write_timeout ({}), or a client that stops reading is \
                 reported as tcp_timeout instead of slow_consumer",
                humantime::format_duration(s.write_timeout)
            ),
        );
        check(
            !self.shutdown.drain_timeout.is_zero(),
            "shutdown.drain_timeout",
            "must be greater than zero".into(),
        );
        let r = &self.rooms;
        check(
            r.tick_rate_hz <= 1000,
            "rooms.tick_rate_hz",
            format!("must be between 0 and 1000, got {}", r.tick_rate_hz),
        );
        check(
            r.auto_room_capacity >= 1,
            "rooms.auto_room_capacity",
            "must be at least 1".into(),
        );
        check(
            r.max_rooms >= 1,
            "rooms.max_rooms",
            "must be at least 1".into(),
        );
        check(r.queue >= 1, "rooms.queue", "must be at least 1".into());
        check(
            self.auth.mode != AuthMode::Hmac || self.auth.secret.len() >= 16,
            "auth.secret",
            "must be at least 16 bytes when auth.mode = \"hmac\" (set GAMESERVER__AUTH__SECRET)"
                .into(),
        );
        check(
            !self.auth.max_ttl.is_zero() && self.auth.max_ttl <= MAX_TOKEN_TTL,
            "auth.max_ttl",
            format!(
                "must be greater than zero and at most {} (a token cannot be revoked before it \
                 expires), got {}",
                humantime::format_duration(MAX_TOKEN_TTL),
                humantime::format_duration(self.auth.max_ttl)
            ),
        );
        // Named by the key that is set, so that the message can say where it was set.
        let (set, unset) = match self.tls.cert_file.is_empty() {
            true => ("tls.key_file", "tls.cert_file"),
            false => ("tls.cert_file", "tls.key_file"),
        };
        check(
            self.tls.cert_file.is_empty() == self.tls.key_file.is_empty(),
            set,
            format!("is set but {unset} is empty: set both for TLS, or neither"),
        );
        check(
            !self.agones.health_interval.is_zero(),
            "agones.health_interval",
            "must be greater than zero".into(),
        );
        check(
            self.auth.audience.is_empty() || valid_audience(&self.auth.audience),
            "auth.audience",
            format!(
                "must be empty or 1 to {} letters, digits, '-', '_' or ':'",
                MAX_AUDIENCE
            ),
        );
        check(
            self.auth.max_failures_per_source >= 1,
            "auth.max_failures_per_source",
            "must be at least 1".into(),
        );
        check(
            !self.auth.failure_window.is_zero(),
            "auth.failure_window",
            "must be greater than zero".into(),
        );
        if let Err(message) = check_log_level(&self.log.level) {
            check(false, "log.level", message);
        }
        problems
    }

    /// The configuration as commented-free TOML, with the auth secret redacted.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self)
            .unwrap_or_else(|e| format!("# cannot print configuration: {e}\n"))
    }
}

/// The levels a `log.level` directive may name.
const LOG_LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

/// A filter such as "info" or "info,game_engine::session=debug": every directive a level, or a
/// target with `=level`. A bare word that is no level (a typo such as "verbose" or "wran") would
/// otherwise be read as a target name and silently turn every log line off.
fn check_log_level(level: &str) -> Result<(), String> {
    let levels = LOG_LEVELS.join(", ");
    if level.trim().is_empty() {
        return Err(format!("is empty; use one of {levels}"));
    }
    for directive in level.split(',').map(str::trim) {
        let named = match directive.rsplit_once('=') {
            Some((target, named)) if !target.is_empty() => named,
            _ => directive,
        };
        if !LOG_LEVELS.contains(&named.to_ascii_lowercase().as_str()) {
            return Err(format!(
                "{directive:?} is not a level ({levels}) nor target=level, in {level:?}"
            ));
        }
    }
    // The app's logging reads it with its filter syntax (targets, spans): that must parse too.
    #[cfg(feature = "app")]
    tracing_subscriber::EnvFilter::try_new(level)
        .map_err(|e| format!("{level:?} is not a valid filter: {e}"))?;
    Ok(())
}

/// Variables that look like configuration but are not read: a prefix with one underscore
/// (`GAMESERVER_SESSION__X`), or not `SECTION__KEY` after it.
fn stray_variables(env: &HashMap<String, String>) -> Vec<Problem> {
    let prefix = format!("{ENV_PREFIX}__");
    let mut problems: Vec<Problem> = env
        .keys()
        .filter(|name| name.to_ascii_uppercase().starts_with(ENV_PREFIX))
        .filter(|name| {
            let parts = name
                .strip_prefix(&prefix)
                .map(|rest| rest.split("__").filter(|p| !p.is_empty()).count());
            parts != Some(2)
        })
        .map(|name| Problem {
            key: name.clone(),
            message: format!(
                "looks like a configuration variable but is not read: the form is \
                 {prefix}SECTION__KEY, such as {prefix}SESSION__IDLE_TIMEOUT"
            ),
        })
        .collect();
    problems.sort_by(|a, b| a.key.cmp(&b.key));
    problems
}

/// Says which variable set a key, when one did.
fn name_variables(problems: &mut [Problem], env: &HashMap<String, String>) {
    for problem in problems {
        let Some((section, key)) = problem.key.split_once('.') else {
            continue;
        };
        let name = format!(
            "{ENV_PREFIX}__{}__{}",
            section.to_ascii_uppercase(),
            key.to_ascii_uppercase()
        );
        if env.contains_key(&name) {
            problem.message.push_str(&format!(" (set by {name})"));
        }
    }
}

/// Reads each key on its own, so that one bad value does not hide the next.
struct Fields<'a> {
    raw: &'a config::Config,
    problems: Vec<Problem>,
}

macro_rules! section {
    ($fields:ident, $name:literal, $ty:ident { $($field:ident),* $(,)? }) => {{
        $( let $field = $fields.get(concat!($name, ".", stringify!($field))); )*
        (|| Some($ty { $($field: $field?),* }))()
    }};
}

/// A `Duration` field written as "5s" or "250ms".
#[derive(Deserialize)]
struct Human(#[serde(with = "humantime_serde")] Duration);

impl Fields<'_> {
    fn get<T: FromRaw>(&mut self, key: &str) -> Option<T> {
        match T::from_raw(self.raw, key) {
            Ok(value) => Some(value),
            Err(message) => {
                self.problems.push(Problem {
                    key: key.to_owned(),
                    message,
                });
                None
            }
        }
    }

    fn config(&mut self) -> Option<Config> {
        let server = section!(
            self,
            "server",
            ServerConfig {
                listen,
                max_sessions,
                max_sessions_per_source,
                connect_rate_per_source,
                connect_burst_per_source,
                source_prefix_v4,
                source_prefix_v6,
                source_exempt,
                memory_budget,
                listen_backlog,
                websocket_listen,
                max_frame_bytes
            }
        );
        let session = section!(
            self,
            "session",
            SessionConfig {
                handshake_timeout,
                heartbeat_interval,
                idle_timeout,
                loss_grace,
                outbound_queue,
                outbound_queue_bytes,
                write_timeout,
                linger_timeout,
                rate_limit_per_sec,
                rate_limit_burst,
                abort_on_protocol_error,
                lingering_close,
                resume_grace,
                resume_buffer,
                resume_buffer_bytes,
                max_parked,
                max_parked_bytes,
                resume_after_slow_consumer
            }
        );
        let tcp = section!(
            self,
            "tcp",
            TcpConfig {
                nodelay,
                keepalive_idle,
                keepalive_interval,
                keepalive_count,
                user_timeout
            }
        );
        let trusted = self.get::<Vec<IpNet>>("net.proxy_protocol.trusted");
        let admin = section!(
            self,
            "admin",
            AdminConfig {
                listen,
                token,
                token_file,
                max_connections,
                header_read_timeout,
                loopback_reads,
                page_websocket_origins
            }
        );
        let shutdown = section!(self, "shutdown", ShutdownConfig { drain_timeout });
        let rooms = section!(
            self,
            "rooms",
            RoomsConfig {
                max_rooms,
                auto_room_capacity,
                tick_rate_hz,
                queue
            }
        );
        let auth = section!(
            self,
            "auth",
            AuthConfig {
                mode,
                secret,
                max_ttl,
                max_failures_per_source,
                failure_window,
                audience
            }
        );
        let log = section!(self, "log", LogConfig { format, level });
        let agones = section!(
            self,
            "agones",
            AgonesConfig {
                enabled,
                health_interval,
                connect_timeout
            }
        );
        let tls = section!(
            self,
            "tls",
            TlsConfig {
                cert_file,
                key_file
            }
        );
        Some(Config {
            server: server?,
            session: session?,
            tcp: tcp?,
            net: NetConfig {
                proxy_protocol: ProxyProtocolConfig { trusted: trusted? },
            },
            admin: admin?,
            shutdown: shutdown?,
            rooms: rooms?,
            auth: auth?,
            log: log?,
            agones: agones?,
            tls: tls?,
        })
    }
}

/// How one key's value is read and what is said when it is wrong.
trait FromRaw: Sized {
    fn from_raw(raw: &config::Config, key: &str) -> Result<Self, String>;
}

fn describe(error: config::ConfigError) -> String {
    match error {
        config::ConfigError::NotFound(_) => "is missing".to_owned(),
        other => {
            // The config crate appends " for key `x`" and the origin; keep the substance.
            let text = other.to_string();
            match text.split_once(" for key") {
                Some((head, _)) => head.to_owned(),
                None => text,
            }
        }
    }
}

macro_rules! from_raw_plain {
    ($($ty:ty => $what:literal),* $(,)?) => {$(
        impl FromRaw for $ty {
            fn from_raw(raw: &config::Config, key: &str) -> Result<Self, String> {
                raw.get::<$ty>(key).map_err(|e| format!("{} (expected {})", describe(e), $what))
            }
        }
    )*};
}

from_raw_plain!(
    usize => "a non-negative integer",
    u32 => "a non-negative integer",
    u8 => "an integer from 0 to 255",
    bool => "true or false",
    String => "a string",
);

impl FromRaw for Duration {
    fn from_raw(raw: &config::Config, key: &str) -> Result<Self, String> {
        let text = raw.get::<String>(key).map_err(|e| {
            format!(
                "{} (expected a duration such as \"5s\" or \"250ms\")",
                describe(e)
            )
        })?;
        raw.get::<Human>(key)
            .map(|h| h.0)
            .map_err(|_| format!("{text:?} is not a duration such as \"5s\" or \"250ms\""))
    }
}

/// Every `u64` key is a byte size: "64KiB", "1MiB", "2GiB" or a plain number of bytes.
impl FromRaw for u64 {
    fn from_raw(raw: &config::Config, key: &str) -> Result<Self, String> {
        if let Ok(n) = raw.get::<u64>(key) {
            return Ok(n);
        }
        let text = raw
            .get::<String>(key)
            .map_err(|e| format!("{} (expected a size such as \"1MiB\")", describe(e)))?;
        byte_size::parse(&text)
    }
}

/// A list of strings, written as a TOML array or, from the environment, one comma-separated
/// string.
impl FromRaw for Vec<String> {
    fn from_raw(raw: &config::Config, key: &str) -> Result<Self, String> {
        match raw.get::<Vec<String>>(key) {
            Ok(items) => Ok(items),
            Err(_) => Ok(raw
                .get::<String>(key)
                .map_err(|e| format!("{} (expected a list of strings)", describe(e)))?
                .split(',')
                .map(|item| item.trim().to_owned())
                .filter(|item| !item.is_empty())
                .collect()),
        }
    }
}

/// A list of networks, written as a TOML array of CIDR strings or, from the environment, one
/// comma-separated string. A plain address is a network of one.
impl FromRaw for Vec<IpNet> {
    fn from_raw(raw: &config::Config, key: &str) -> Result<Self, String> {
        let items: Vec<String> = match raw.get::<Vec<String>>(key) {
            Ok(items) => items,
            Err(_) => raw
                .get::<String>(key)
                .map_err(|e| {
                    format!(
                        "{} (expected a list of networks such as [\"10.0.0.0/8\"])",
                        describe(e)
                    )
                })?
                .split(',')
                .map(|item| item.trim().to_owned())
                .filter(|item| !item.is_empty())
                .collect(),
        };
        items
            .iter()
            .map(|item| {
                item.parse::<IpNet>()
                    .or_else(|_| item.parse::<std::net::IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        format!("{item:?} is not a network such as \"10.0.0.0/8\" or \"::1/128\"")
                    })
            })
            .collect()
    }
}

impl FromRaw for SocketAddr {
    fn from_raw(raw: &config::Config, key: &str) -> Result<Self, String> {
        let text = raw.get::<String>(key).map_err(describe)?;
        text.parse().map_err(|_| {
            format!("{text:?} is not an address such as \"0.0.0.0:7777\" or \"[::1]:7777\"")
        })
    }
}

impl FromRaw for AuthMode {
    fn from_raw(raw: &config::Config, key: &str) -> Result<Self, String> {
        match raw.get::<String>(key).map_err(describe)?.as_str() {
            "none" => Ok(AuthMode::None),
            "hmac" => Ok(AuthMode::Hmac),
            other => Err(format!("{other:?} is not one of \"none\", \"hmac\"")),
        }
    }
}

impl FromRaw for LogFormat {
    fn from_raw(raw: &config::Config, key: &str) -> Result<Self, String> {
        match raw.get::<String>(key).map_err(describe)?.as_str() {
            "pretty" => Ok(LogFormat::Pretty),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("{other:?} is not one of \"pretty\", \"json\"")),
        }
    }
}

/// Reads the `[game]` section into the game's type. Each key the sources set is first tried on
/// its own over the game's defaults, so that every bad key is reported with its name, then the
/// whole section is read. Returns `None` when a problem was recorded.
fn game_section<C: GameConfig>(
    raw: &config::Config,
    problems: &mut Vec<Problem>,
) -> Result<Option<C>, ConfigError> {
    let defaults = config::Config::builder()
        .add_source(config::File::from_str(
            C::DEFAULT_TOML,
            config::FileFormat::Toml,
        ))
        .build()?;
    let base: config::Map<String, config::Value> = defaults.get_table("game").unwrap_or_default();
    let set: config::Map<String, config::Value> = raw.get_table("game").unwrap_or_default();
    let read = |table: config::Map<String, config::Value>| {
        config::Value::new(None, config::ValueKind::Table(table)).try_deserialize::<C>()
    };
    let mut bad = false;
    for (key, value) in &set {
        if !base.contains_key(key) {
            continue; // reported as unknown
        }
        let mut one = base.clone();
        one.insert(key.clone(), value.clone());
        if let Err(error) = read(one) {
            bad = true;
            problems.push(Problem {
                key: format!("game.{key}"),
                message: describe(error),
            });
        }
    }
    if bad {
        return Ok(None);
    }
    if base.is_empty() && set.is_empty() {
        // A game without settings (`()`) reads from nothing, not from an empty table.
        if let Ok(game) = config::Value::new(None, config::ValueKind::Nil).try_deserialize::<C>() {
            return Ok(Some(game));
        }
    }
    // Unknown keys are already reported; a game that refuses unknown fields would only report
    // them again.
    let mut all = base;
    let known: Vec<_> = set
        .into_iter()
        .filter(|(key, _)| all.contains_key(key))
        .collect();
    all.extend(known);
    match read(all) {
        Ok(game) => Ok(Some(game)),
        Err(error) => {
            problems.push(Problem {
                key: "game".to_owned(),
                message: describe(error),
            });
            Ok(None)
        }
    }
}

/// Keys present in the merged sources that neither the engine's defaults nor the game's have:
/// typos, usually.
fn unknown_keys(raw: &config::Config, game_defaults: &str) -> Result<Vec<Problem>, ConfigError> {
    let mut known: BTreeMap<String, toml::Value> =
        toml::from_str(DEFAULT_TOML).map_err(|e| config::ConfigError::Message(e.to_string()))?;
    let game: BTreeMap<String, toml::Value> =
        toml::from_str(game_defaults).map_err(|e| config::ConfigError::Message(e.to_string()))?;
    known.extend(game);
    let merged: BTreeMap<String, config::Value> = raw.clone().try_deserialize()?;
    let mut problems = Vec::new();
    for (section, value) in merged {
        let Some(known_section) = known.get(&section).and_then(toml::Value::as_table) else {
            problems.push(Problem {
                key: section,
                message: "unknown section".to_owned(),
            });
            continue;
        };
        let Ok(table) = value.into_table() else {
            problems.push(Problem {
                key: section,
                message: "must be a table of keys".to_owned(),
            });
            continue;
        };
        for key in table.keys() {
            if !known_section.contains_key(key) {
                problems.push(Problem {
                    key: format!("{section}.{key}"),
                    message: format!(
                        "unknown key (known keys in [{section}]: {})",
                        known_section.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                });
            }
        }
    }
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_env(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::load(&Sources {
            env: Some(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Sources::default()
        })
    }

    fn problems(result: Result<Config, ConfigError>) -> Vec<Problem> {
        match result {
            Err(ConfigError::Invalid(problems)) => problems,
            other => panic!("expected invalid configuration, got {other:?}"),
        }
    }

    #[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
    #[serde(deny_unknown_fields)]
    struct Strict {
        lives: u32,
    }

    impl GameConfig for Strict {
        const DEFAULT_TOML: &'static str = "[game]\nlives = 3\n";
    }

    #[test]
    fn an_unknown_game_key_is_reported_once_with_the_keys_the_game_knows() {
        let result = Config::load_game::<Strict>(&Sources {
            env: Some(HashMap::from([(
                "GAMESERVER__GAME__TICK_RATE_HZ".to_owned(),
                "30".to_owned(),
            )])),
            ..Sources::default()
        });
        let Err(ConfigError::Invalid(problems)) = result else {
            panic!("expected invalid configuration, got {result:?}");
        };
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].key, "game.tick_rate_hz");
        assert!(problems[0].message.contains("lives"), "{problems:?}");
    }

    #[test]
    fn embedded_defaults_load_and_are_production_values() {
        let config = load_env(&[]).expect("defaults load");
        assert_eq!(config.session.heartbeat_interval, Duration::from_secs(5));
        assert_eq!(config.session.idle_timeout, Duration::from_secs(15));
        assert_eq!(config.server.listen_backlog, 4096);
        assert_eq!(config.admin.listen, "127.0.0.1:9100".parse().expect("addr"));
        assert_eq!(config, Config::default());
    }

    #[test]
    fn environment_overrides_defaults() {
        let config = load_env(&[
            ("GAMESERVER__SESSION__IDLE_TIMEOUT", "3s"),
            ("GAMESERVER__SESSION__HEARTBEAT_INTERVAL", "250ms"),
            ("GAMESERVER__SERVER__MAX_SESSIONS", "12"),
            ("GAMESERVER__TCP__NODELAY", "false"),
            ("UNRELATED", "ignored"),
        ])
        .expect("loads");
        assert_eq!(config.session.idle_timeout, Duration::from_secs(3));
        assert_eq!(
            config.session.heartbeat_interval,
            Duration::from_millis(250)
        );
        assert_eq!(config.server.max_sessions, 12);
        assert!(!config.tcp.nodelay);
    }

    #[test]
    fn flags_override_the_environment_and_files_sit_between() {
        let dir = std::env::temp_dir().join(format!("gs-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("layer.toml");
        std::fs::write(
            &file,
            "[server]\nlisten = \"127.0.0.1:1000\"\nmax_sessions = 7\n",
        )
        .expect("write");
        let config = Config::load(&Sources {
            file: Some(file),
            env: Some(
                [(
                    "GAMESERVER__SERVER__MAX_SESSIONS".to_owned(),
                    "8".to_owned(),
                )]
                .into(),
            ),
            overrides: vec![("server.listen".into(), "127.0.0.1:2000".into())],
        })
        .expect("loads");
        assert_eq!(
            config.server.listen,
            "127.0.0.1:2000".parse().expect("addr")
        );
        assert_eq!(config.server.max_sessions, 8);
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn every_problem_is_reported_at_once_with_its_key() {
        let found = problems(load_env(&[
            ("GAMESERVER__SESSION__IDLE_TIMEOUT", "soon"),
            ("GAMESERVER__SERVER__MAX_SESSIONS", "lots"),
            ("GAMESERVER__SERVER__LISTEN", "nowhere"),
            ("GAMESERVER__LOG__FORMAT", "xml"),
            ("GAMESERVER__SESSION__IDEL_TIMEOUT", "3s"),
        ]));
        let keys: Vec<&str> = found.iter().map(|p| p.key.as_str()).collect();
        for key in [
            "session.idle_timeout",
            "server.max_sessions",
            "server.listen",
            "log.format",
            "session.idel_timeout",
        ] {
            assert!(keys.contains(&key), "{key} missing from {found:?}");
        }
        let rendered = ConfigError::Invalid(found).to_string();
        assert!(rendered.contains("5 problems"), "{rendered}");
    }

    #[test]
    fn relations_between_keys_are_checked() {
        let found = problems(load_env(&[
            ("GAMESERVER__SESSION__HEARTBEAT_INTERVAL", "10s"),
            ("GAMESERVER__SESSION__IDLE_TIMEOUT", "5s"),
            ("GAMESERVER__TCP__USER_TIMEOUT", "2s"),
            ("GAMESERVER__AUTH__MODE", "hmac"),
        ]));
        let keys: Vec<&str> = found.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            ["session.idle_timeout", "tcp.user_timeout", "auth.secret"],
            "{found:?}"
        );
        assert!(found[0].message.contains("heartbeat_interval"));
    }

    #[test]
    fn a_misspelt_log_level_is_refused_naming_the_variable() {
        for bad in ["verbose", "wran", "info,game_engine=loud", ""] {
            let found = problems(load_env(&[("GAMESERVER__LOG__LEVEL", bad)]));
            assert_eq!(found.len(), 1, "{bad:?}: {found:?}");
            assert_eq!(found[0].key, "log.level");
            assert!(
                found[0].message.contains("GAMESERVER__LOG__LEVEL"),
                "{found:?}"
            );
        }
        for good in [
            "info",
            "debug",
            "info,game_engine::session=debug",
            "WARN",
            "off",
        ] {
            assert!(
                load_env(&[("GAMESERVER__LOG__LEVEL", good)]).is_ok(),
                "{good:?}"
            );
        }
    }

    #[test]
    fn variables_that_look_like_ours_but_are_not_read_are_reported() {
        let found = problems(load_env(&[
            ("GAMESERVER_SESSION__IDLE_TIMEOUT", "3s"),
            ("GAMESERVER__SESSION__IDEL_TIMEOUT", "3s"),
            ("OTHER_THING", "ignored"),
        ]));
        let keys: Vec<&str> = found.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            ["session.idel_timeout", "GAMESERVER_SESSION__IDLE_TIMEOUT"],
            "{found:?}"
        );
        assert!(
            found[0]
                .message
                .contains("GAMESERVER__SESSION__IDEL_TIMEOUT")
        );
    }

    #[test]
    fn heartbeat_can_be_turned_off() {
        let config = load_env(&[("GAMESERVER__SESSION__HEARTBEAT_INTERVAL", "0s")]).expect("loads");
        assert!(config.session.heartbeat_interval.is_zero());
    }

    #[test]
    fn printed_config_reloads_to_the_same_values_and_hides_the_secret() {
        let config = load_env(&[
            ("GAMESERVER__AUTH__MODE", "hmac"),
            ("GAMESERVER__AUTH__SECRET", "0123456789abcdef-very-secret"),
            ("GAMESERVER__SESSION__LINGER_TIMEOUT", "750ms"),
        ])
        .expect("loads");
        let printed = config.to_toml();
        assert!(!printed.contains("very-secret"), "{printed}");
        assert!(printed.contains("<redacted>"));
        let dir = std::env::temp_dir().join(format!("gs-print-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("printed.toml");
        std::fs::write(&file, &printed).expect("write");
        // The secret is not in the printout; an operator supplies it from the environment.
        let reloaded = Config::load(&Sources {
            file: Some(file),
            env: Some(
                [(
                    "GAMESERVER__AUTH__SECRET".to_owned(),
                    "0123456789abcdef-very-secret".to_owned(),
                )]
                .into(),
            ),
            overrides: vec![],
        })
        .expect("printed config loads");
        assert_eq!(reloaded.auth, config.auth);
        assert_eq!(reloaded.session, config.session);
        assert_eq!(reloaded.tcp, config.tcp);
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn a_missing_file_is_a_source_error() {
        let result = Config::load(&Sources {
            file: Some("/nonexistent/game-server.toml".into()),
            env: Some(HashMap::new()),
            overrides: vec![],
        });
        assert!(matches!(result, Err(ConfigError::Source(_))), "{result:?}");
    }
}
