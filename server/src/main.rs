//! `game-server`: parses the command line, loads the configuration, starts logging, binds, and
//! hands over to the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use clap::{Parser, Subcommand};
use game_server::auth::Authenticator;
use game_server::config::{ConfigError, Sources};
use game_server::{Config, Shutdown, acceptor, game};

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
    },
    /// Exit 0 if the admin listener answers /healthz, 1 otherwise (for container health checks).
    Healthcheck {
        /// The URL to probe.
        #[arg(long, default_value = "http://127.0.0.1:9100/healthz")]
        url: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Healthcheck { url }) = &cli.command {
        return healthcheck(url);
    }
    let mut overrides = Vec::new();
    if let Some(listen) = &cli.listen {
        overrides.push(("server.listen".to_owned(), listen.clone()));
    }
    if let Some(listen) = &cli.admin_listen {
        overrides.push(("admin.listen".to_owned(), listen.clone()));
    }
    let config = match Config::load(&Sources {
        file: cli.config.clone(),
        env: None,
        overrides,
    }) {
        Ok(config) => config,
        Err(error @ (ConfigError::Invalid(_) | ConfigError::Source(_))) => {
            eprintln!("game-server: {error}");
            return ExitCode::from(2);
        }
    };
    if cli.print_config {
        print!("{}", config.to_toml());
        return ExitCode::SUCCESS;
    }
    if let Some(Command::Token { player, ttl }) = &cli.command {
        if config.auth.secret.is_empty() {
            eprintln!("game-server: auth.secret is empty; set GAMESERVER__AUTH__SECRET");
            return ExitCode::from(2);
        }
        let auth = Authenticator::new(config.auth.secret.as_bytes(), config.auth.max_ttl);
        return match auth.mint(player, *ttl, SystemTime::now()) {
            Ok(token) => {
                println!("{token}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("game-server: {error}");
                ExitCode::from(2)
            }
        };
    }
    let _log = game_server::logging::init(&config.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("game-server: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(serve(config));
    // Tasks still running (a stuck admin connection, say) must not hold the exit up.
    runtime.shutdown_timeout(Duration::from_millis(250));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("game-server: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    use anyhow::Context;
    acceptor::raise_fd_limit(config.server.max_sessions, config.admin.max_connections);
    let listener = acceptor::bind(config.server.listen, config.server.listen_backlog)
        .with_context(|| format!("cannot listen on {} (server.listen)", config.server.listen))?;
    let admin = tokio::net::TcpListener::bind(config.admin.listen)
        .await
        .with_context(|| format!("cannot listen on {} (admin.listen)", config.admin.listen))?;
    let shutdown = Shutdown::new();
    let signals = tokio::spawn(game_server::shutdown::watch_signals(
        shutdown.clone(),
        config.shutdown.drain_timeout,
    ));
    let game = Arc::new(game::Rooms::new(config.game.room_capacity));
    let result = game_server::run(listener, admin, config, game, shutdown).await;
    signals.abort();
    result
}

fn healthcheck(url: &str) -> ExitCode {
    let Some(rest) = url.strip_prefix("http://") else {
        eprintln!("game-server: healthcheck needs an http:// URL");
        return ExitCode::FAILURE;
    };
    let (host, path) = rest.split_once('/').map_or((rest, "/"), |(h, p)| (h, p));
    let request = format!("GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n");
    let probe = || -> std::io::Result<bool> {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(host)?;
        stream.set_read_timeout(Some(Duration::from_secs(3)))?;
        stream.write_all(request.as_bytes())?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        Ok(response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200"))
    };
    match probe() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("game-server: healthcheck {url}: {error}");
            ExitCode::FAILURE
        }
    }
}
