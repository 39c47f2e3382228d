//! Configuration: the embedded defaults, a file, the environment and flags, merged in that order,
//! then checked as a whole so that every problem is reported at once, each naming its key.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The commented default configuration, compiled into the binary.
pub const DEFAULT_TOML: &str = include_str!("../../config/default.toml");

/// Prefix of the environment variables that override configuration keys.
pub const ENV_PREFIX: &str = "GAMESERVER";

/// The effective configuration of one server.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    /// The game listener and session limits.
    pub server: ServerConfig,
    /// Per-session timers, queues and limits.
    pub session: SessionConfig,
    /// Socket options applied to every accepted connection.
    pub tcp: TcpConfig,
    /// The admin HTTP listener.
    pub admin: AdminConfig,
    /// Graceful shutdown.
    pub shutdown: ShutdownConfig,
    /// The demo game.
    pub game: GameConfig,
    /// Player authentication.
    pub auth: AuthConfig,
    /// Logging.
    pub log: LogConfig,
}

/// `[server]`: see config/default.toml for what each key does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerConfig {
    /// Game listen address.
    pub listen: SocketAddr,
    /// Most concurrent sessions; 0 = no limit.
    pub max_sessions: usize,
    /// Most concurrent sessions per IP address; 0 = no limit.
    pub max_sessions_per_ip: usize,
    /// Listen backlog.
    pub listen_backlog: u32,
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
    /// Most queued events per session.
    pub outbound_queue: usize,
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

/// `[admin]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdminConfig {
    /// Admin HTTP listen address.
    pub listen: SocketAddr,
}

/// `[shutdown]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShutdownConfig {
    /// Bound on the graceful drain.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
}

/// `[game]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GameConfig {
    /// Demo game ticks per second.
    pub tick_rate_hz: u32,
    /// Players per automatically chosen room.
    pub room_capacity: usize,
}

/// `[auth]`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct AuthConfig {
    /// "none" or "hmac".
    pub mode: AuthMode,
    /// HMAC key; never printed.
    #[serde(serialize_with = "redact")]
    pub secret: String,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("mode", &self.mode)
            .field(
                "secret",
                &if self.secret.is_empty() {
                    ""
                } else {
                    "<redacted>"
                },
            )
            .finish()
    }
}

fn redact<S: serde::Serializer>(secret: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(if secret.is_empty() { "" } else { "<redacted>" })
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

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The key, as `section.key`.
    pub key: String,
    /// What is wrong with it.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
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
    /// Merges the sources over the embedded defaults and checks the result.
    pub fn load(sources: &Sources) -> Result<Config, ConfigError> {
        let mut builder = config::Config::builder().add_source(config::File::from_str(
            DEFAULT_TOML,
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
        Config::from_raw(&raw)
    }

    fn from_raw(raw: &config::Config) -> Result<Config, ConfigError> {
        let mut fields = Fields {
            raw,
            problems: unknown_keys(raw)?,
        };
        let config = fields.config();
        let mut problems = fields.problems;
        match config {
            Some(config) if problems.is_empty() => {
                problems.extend(config.validate());
                if problems.is_empty() {
                    Ok(config)
                } else {
                    Err(ConfigError::Invalid(problems))
                }
            }
            _ => Err(ConfigError::Invalid(problems)),
        }
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
        check(
            (1..=1000).contains(&self.game.tick_rate_hz),
            "game.tick_rate_hz",
            format!("must be between 1 and 1000, got {}", self.game.tick_rate_hz),
        );
        check(
            self.game.room_capacity >= 1,
            "game.room_capacity",
            "must be at least 1".into(),
        );
        check(
            self.auth.mode != AuthMode::Hmac || self.auth.secret.len() >= 16,
            "auth.secret",
            "must be at least 16 bytes when auth.mode = \"hmac\" (set GAMESERVER__AUTH__SECRET)"
                .into(),
        );
        check(
            tracing_subscriber::EnvFilter::try_new(&self.log.level).is_ok(),
            "log.level",
            format!("{:?} is not a valid tracing filter", self.log.level),
        );
        problems
    }

    /// The configuration as commented-free TOML, with the auth secret redacted.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self)
            .unwrap_or_else(|e| format!("# cannot print configuration: {e}\n"))
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
                max_sessions_per_ip,
                listen_backlog,
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
                outbound_queue,
                write_timeout,
                linger_timeout,
                rate_limit_per_sec,
                rate_limit_burst,
                abort_on_protocol_error,
                lingering_close,
                resume_grace,
                resume_buffer,
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
        let admin = section!(self, "admin", AdminConfig { listen });
        let shutdown = section!(self, "shutdown", ShutdownConfig { drain_timeout });
        let game = section!(
            self,
            "game",
            GameConfig {
                tick_rate_hz,
                room_capacity
            }
        );
        let auth = section!(self, "auth", AuthConfig { mode, secret });
        let log = section!(self, "log", LogConfig { format, level });
        Some(Config {
            server: server?,
            session: session?,
            tcp: tcp?,
            admin: admin?,
            shutdown: shutdown?,
            game: game?,
            auth: auth?,
            log: log?,
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

/// Keys present in the merged sources that the defaults do not have: typos, usually.
fn unknown_keys(raw: &config::Config) -> Result<Vec<Problem>, ConfigError> {
    let known: BTreeMap<String, toml::Value> =
        toml::from_str(DEFAULT_TOML).map_err(|e| config::ConfigError::Message(e.to_string()))?;
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
