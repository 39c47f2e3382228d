//! The entry point a game's `main` calls: the command line, the layered configuration (the
//! game's `[game]` section included), logging, binding, signals and drain, and the `token` and
//! `healthcheck` subcommands. A game's whole `main`:
//!
//! ```no_run
//! # use game_engine::{App, Game, Room, RoomContext, Player, Refusal};
//! # struct MyGame;
//! # struct MyRoom;
//! # impl Room for MyRoom {
//! #     fn input(&mut self, _: &mut RoomContext<'_>, _: &Player, _: u64, _: bytes::Bytes) {}
//! # }
//! # impl Game for MyGame {
//! #     type Config = ();
//! #     type Room = MyRoom;
//! #     fn open(&self, _: &game_engine::NewRoom<'_>) -> Result<MyRoom, Refusal> { Ok(MyRoom) }
//! # }
//! # impl MyGame { fn new(_: ()) -> MyGame { MyGame } }
//! fn main() -> std::process::ExitCode {
//!     App::new(MyGame::new).run()
//! }
//! ```

pub(crate) mod logging;
pub(crate) mod signals;
pub(crate) mod status;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use std::time::{Duration, SystemTime};

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::api::game::Game;
use crate::config::GameConfig;
use crate::config::{Config, ConfigError, Sources};
use crate::server::{Listeners, Server};
use crate::session::auth::Authenticator;
use crate::shutdown::Shutdown;

/// How long `healthcheck` waits for the admin listener.
pub const HEALTHCHECK_TIMEOUT: Duration = Duration::from_secs(3);

pub use crate::api::page::{
    WEBSOCKET_ORIGINS_PLACEHOLDER, WEBSOCKET_PORT_PLACEHOLDER, WEBSOCKET_SCHEME_PLACEHOLDER,
};

/// A disconnect-aware game server. With no arguments it serves on its embedded defaults
/// (game port 0.0.0.0:7777, admin on 127.0.0.1:9100).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// A TOML file layered over the embedded defaults.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Game listen address (overrides server.listen).
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Admin listen address (overrides admin.listen).
    #[arg(long, value_name = "ADDR")]
    admin_listen: Option<String>,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    print_config: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Mint an auth token for auth.mode = "hmac" (the secret comes from the configuration,
    /// typically GAMESERVER__AUTH__SECRET).
    Token {
        /// The player id the token is for.
        #[arg(long)]
        player: String,
        /// How long the token stays valid, such as "1h" or "30m" (at most auth.max_ttl).
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        ttl: Duration,
        /// Bind the token to the instance whose auth.audience is this name: every other
        /// instance refuses it. Without it the token is good on every instance.
        #[arg(long)]
        audience: Option<String>,
    },
    /// Exit 0 if the admin listener answers 200 within 3 s, 1 (with the reason) otherwise; for
    /// container health checks.
    Healthcheck {
        /// The URL to probe.
        #[arg(long, default_value = "http://127.0.0.1:9100/healthz")]
        url: String,
    },
    /// Print what the status page shows (sessions, closes by reason over the last minute and
    /// hour, detection, memory, readiness) from a running server's admin listener; exit 0 while
    /// it is ready, 1 while it drains or cannot be read.
    Status {
        /// The admin listener.
        #[arg(long, default_value = "http://127.0.0.1:9100")]
        url: String,
        /// The admin token, for a listener off loopback (default: GAMESERVER__ADMIN__TOKEN).
        #[arg(long)]
        token: Option<String>,
        /// Print again every 2 s until interrupted.
        #[arg(long)]
        watch: bool,
    },
}

/// A game server built from a game: `App::new(MyGame::new).run()`.
pub struct App<G: Game> {
    make: Box<dyn FnOnce(G::Config) -> G>,
    name: String,
    pages: Vec<(String, &'static str)>,
}

impl<G: Game> std::fmt::Debug for App<G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pages: Vec<&str> = self.pages.iter().map(|(path, _)| path.as_str()).collect();
        f.debug_struct("App")
            .field("name", &self.name)
            .field("pages", &pages)
            .finish()
    }
}

impl<G: Game> App<G> {
    /// An app that makes its game from the game's configuration section.
    pub fn new(make: impl FnOnce(G::Config) -> G + 'static) -> App<G> {
        let name = std::env::args_os()
            .next()
            .map(PathBuf::from)
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "game-server".to_owned());
        App {
            make: Box::new(make),
            name,
            pages: Vec::new(),
        }
    }

    /// Serves `html` at `path` (such as `/play`) on the admin port, to anyone: a browser client
    /// for the game, static and public (no admin token, no `Host` check). Every
    /// [`WEBSOCKET_PORT_PLACEHOLDER`] in it becomes the WebSocket listener's port, and every
    /// [`WEBSOCKET_SCHEME_PLACEHOLDER`] its scheme (`ws` or `wss`), and every
    /// [`WEBSOCKET_ORIGINS_PLACEHOLDER`] the further origins it may connect to; without a
    /// listener (`server.websocket_listen` empty) the page answers 404 saying so. A path an admin
    /// route serves (`/metrics`, `/sessions`, ...) stays the admin route's. The page is served
    /// with a Content-Security-Policy: its own inline scripts and styles only, WebSocket
    /// connections to its own server (and the allowed origins) only, no frames.
    pub fn page(mut self, path: &str, html: &'static str) -> App<G> {
        self.pages.push((path.to_owned(), html));
        self
    }

    /// Runs with the process's command line and environment; returns the exit code: 0 after a
    /// clean stop, 1 when the server could not start or failed, 2 for a bad configuration.
    pub fn run(self) -> ExitCode {
        self.run_from(std::env::args_os())
    }

    /// Runs with this command line.
    pub fn run_from(self, args: impl IntoIterator<Item = OsString>) -> ExitCode {
        let name = self.name.clone();
        let command = Cli::command().name(name.clone());
        let cli = match command
            .try_get_matches_from(args)
            .and_then(|m| Cli::from_arg_matches(&m))
        {
            Ok(cli) => cli,
            Err(error) => {
                let _ = error.print();
                return ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(2));
            }
        };
        if let Some(Command::Healthcheck { url }) = &cli.command {
            return healthcheck(&name, url);
        }
        if let Some(Command::Status { url, token, watch }) = &cli.command {
            let token = token
                .clone()
                .or_else(|| std::env::var("GAMESERVER__ADMIN__TOKEN").ok())
                .filter(|t| !t.is_empty());
            return status::run(&name, url, token.as_deref(), *watch);
        }
        let mut overrides = Vec::new();
        if let Some(listen) = &cli.listen {
            overrides.push(("server.listen".to_owned(), listen.clone()));
        }
        if let Some(listen) = &cli.admin_listen {
            overrides.push(("admin.listen".to_owned(), listen.clone()));
        }
        let (config, game_config) = match Config::load_game::<G::Config>(&Sources {
            file: cli.config.clone(),
            env: None,
            overrides,
        }) {
            Ok(loaded) => loaded,
            Err(error @ (ConfigError::Invalid(_) | ConfigError::Source(_))) => {
                eprintln!("{name}: {error}");
                return ExitCode::from(2);
            }
        };
        if cli.print_config {
            print!("{}", config.to_toml());
            print!("{}", game_toml(&game_config));
            return ExitCode::SUCCESS;
        }
        if let Some(Command::Token {
            player,
            ttl,
            audience,
        }) = &cli.command
        {
            return token(&name, &config, player, *ttl, audience.as_deref());
        }
        let _log = logging::init(&config.log);
        let runtime = match tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(error) => {
                eprintln!("{name}: cannot start the runtime: {error}");
                return ExitCode::FAILURE;
            }
        };
        let game = (self.make)(game_config);
        let result = runtime.block_on(serve(config, game, &self.pages));
        // Tasks still running (a stuck admin connection, say) must not hold the exit up.
        runtime.shutdown_timeout(Duration::from_millis(250));
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                tracing::error!("{error:#}");
                eprintln!("{name}: {error:#}");
                ExitCode::FAILURE
            }
        }
    }
}

/// The game's section as TOML, for `--print-config`.
fn game_toml<C: GameConfig>(game: &C) -> String {
    #[derive(serde::Serialize)]
    struct Section<'a, C> {
        game: &'a C,
    }
    match toml::to_string_pretty(&Section { game }) {
        Ok(text) if !text.trim().is_empty() && C::DEFAULT_TOML.contains("[game]") => {
            format!("\n{text}")
        }
        Ok(_) => String::new(),
        Err(error) => format!("# cannot print the [game] section: {error}\n"),
    }
}

async fn serve<G: Game>(
    config: Config,
    game: G,
    pages: &[(String, &'static str)],
) -> anyhow::Result<()> {
    raise_fd_limit(config.server.max_sessions, config.admin.max_connections);
    let listeners = Listeners::bind(&config).await?;
    let shutdown = Shutdown::new();
    let signals = tokio::spawn(signals::watch_signals(
        shutdown.clone(),
        config.shutdown.drain_timeout,
    ));
    #[cfg(feature = "agones")]
    let mut agones = match config.agones.enabled {
        true => Some(crate::ops::agones::Agones::connect(&config).await?),
        false => None,
    };
    #[cfg(not(feature = "agones"))]
    if config.agones.enabled {
        anyhow::bail!(
            "agones.enabled = true, but this build has no Agones support: build it with \
             `--features agones` (cargo build -p game-server --features agones; needs protoc)"
        );
    }
    let mut server = Server::new(game, config.clone()).shutdown(shutdown.clone());
    for (path, html) in pages {
        server = server.page(path, html);
    }
    let engine = server
        .start(listeners.admin, listeners.websocket.as_ref())
        .await?;
    let hangups = engine.reload_on_hangup();
    engine.announce(&listeners.game, listeners.websocket.as_ref())?;
    #[cfg(feature = "agones")]
    if let Some(agones) = agones.as_mut() {
        // Both listeners are bound and the admin one serves; the game one takes connections from
        // here on (the kernel queues them meanwhile).
        agones
            .ready(&config, engine.metrics(), engine.reaper(), shutdown.clone())
            .await?;
    }
    engine.serve(listeners.game, listeners.websocket).await;
    #[cfg(feature = "agones")]
    if let Some(agones) = agones {
        agones.shutdown().await;
    }
    signals.abort();
    hangups.abort();
    Ok(())
}

fn token(
    name: &str,
    config: &Config,
    player: &str,
    ttl: Duration,
    audience: Option<&str>,
) -> ExitCode {
    if config.auth.secret.is_empty() {
        eprintln!("{name}: auth.secret is empty; set GAMESERVER__AUTH__SECRET");
        return ExitCode::from(2);
    }
    let auth = Authenticator::new(config.auth.secret.as_bytes(), config.auth.max_ttl);
    match auth.mint_for(player, ttl, audience, SystemTime::now()) {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("{name}: {error}");
            ExitCode::from(2)
        }
    }
}

fn healthcheck(name: &str, url: &str) -> ExitCode {
    let probe = async {
        let client = reqwest::Client::builder()
            .timeout(HEALTHCHECK_TIMEOUT)
            .connect_timeout(HEALTHCHECK_TIMEOUT)
            .no_proxy()
            .build()
            .map_err(|e| e.to_string())?;
        let response = client.get(url).send().await.map_err(|e| {
            let mut cause: &dyn std::error::Error = &e;
            while let Some(inner) = cause.source() {
                cause = inner;
            }
            if e.is_timeout() {
                format!(
                    "no answer within {}",
                    humantime::format_duration(HEALTHCHECK_TIMEOUT)
                )
            } else {
                cause.to_string()
            }
        })?;
        if response.status() == reqwest::StatusCode::OK {
            Ok(())
        } else {
            Err(format!("answered {}", response.status()))
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("{name}: healthcheck {url}: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(probe) {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => {
            eprintln!("{name}: healthcheck {url}: {why}");
            ExitCode::FAILURE
        }
    }
}

/// Raises the soft descriptor limit to the hard one, logs both, and warns when `max_sessions`
/// (plus `admin_connections` and a few descriptors of the server's own) cannot fit. Returns the
/// new soft limit.
fn raise_fd_limit(max_sessions: usize, admin_connections: usize) -> Option<u64> {
    let (soft, hard) = match rlimit::getrlimit(rlimit::Resource::NOFILE) {
        Ok(limits) => limits,
        Err(error) => {
            tracing::warn!(%error, "cannot read the descriptor limit");
            return None;
        }
    };
    let raised = match rlimit::setrlimit(rlimit::Resource::NOFILE, hard, hard) {
        Ok(()) => hard,
        Err(error) => {
            tracing::warn!(%error, soft, hard, "cannot raise the descriptor limit");
            soft
        }
    };
    tracing::info!(soft_before = soft, soft = raised, hard, "descriptor limit");
    // Listeners, the runtime and logging need a few descriptors of their own, and the admin
    // listener at most admin.max_connections.
    let spare = 64 + admin_connections as u64;
    let fits = usize::try_from(raised.saturating_sub(spare)).unwrap_or(usize::MAX);
    if max_sessions == 0 || max_sessions > fits {
        tracing::warn!(
            max_sessions,
            descriptor_limit = raised,
            "server.max_sessions cannot fit in the descriptor limit: past about {fits} sessions, \
             accept fails with EMFILE and the acceptor backs off instead of admitting players"
        );
    }
    Some(raised)
}
