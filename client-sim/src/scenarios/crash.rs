//! `crash`: the field report's server-side case 4, "was killed (kill -9) while sending: quickly
//! connection reset by peer".
//!
//! A real child process (this executable, started with the hidden `__crash-child` subcommand)
//! connects, plays in a private room and sends inputs continuously; the parent kills it with
//! SIGKILL a moment after it reports its session. The dead process's kernel closes the socket:
//!
//! - if relays were waiting unread in the child's receive buffer, the kernel sends RST: the server
//!   records `peer_reset`;
//! - otherwise it sends FIN after the last bytes the child wrote. The child writes its frames in
//!   pieces that never end on a frame boundary (the rest of one input together with the first
//!   half of the next), so its stream always stops inside a frame: the server records
//!   `truncated_frame`, never `peer_eof`.
//!
//! - in that second case the server may write (a relay, a ping) to the dead socket before it
//!   reads the FIN: the dead client's kernel answers the write with RST, and the server's next
//!   write fails with EPIPE before any read reports the end: the server records `broken_pipe`
//!   (../shared/NETWORK-FAULTS.md: "closed normally while the server keeps writing"). On a busy
//!   machine, where the server reads late, this is common.
//!
//! Which of these happens depends on buffers and timing, so the scenario expects any of them:
//! reconciliation treats the crash instances as one group over
//! `{peer_reset, truncated_frame, broken_pipe}`.
//!
//! Over WebSocket a frame travels in one message, whole or not at all: the child's stream
//! stops between messages, and the FIN without a close frame is a `peer_eof` (a killed browser
//! ends the same way), so the group there is `{peer_reset, peer_eof, broken_pipe}`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use protocol::ByeCode;
use rand::Rng;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::time::MissedTickBehavior;

use super::{Instance, Verdict, WELCOME_LIMIT, expect_after_failed_handshake};
use crate::conn::{self, ClientError, Conn};
use crate::options::TlsOptions;
use crate::player::Player;
use crate::reconcile::{Expect, Reason};
use crate::stats::{Stats, add};

/// The reasons a killed client may produce.
pub const CRASH_REASONS: &[Reason] = &[
    Reason::PeerReset,
    Reason::TruncatedFrame,
    Reason::BrokenPipe,
];

/// The reasons a killed client may produce over WebSocket, where no frame is ever cut short.
pub const WEBSOCKET_CRASH_REASONS: &[Reason] =
    &[Reason::PeerReset, Reason::PeerEof, Reason::BrokenPipe];

/// The hidden subcommand that runs the child.
pub const CHILD_SUBCOMMAND: &str = "__crash-child";
/// The child reads its auth token from this variable, so it never shows in `ps`.
const TOKEN_ENV: &str = "CLIENT_SIM_CRASH_TOKEN";
/// Time between two writes of the child.
const CHILD_EVERY: Duration = Duration::from_millis(25);
/// Payload of each of the child's inputs.
const CHILD_INPUT_BYTES: usize = 1024;
/// A child whose parent vanished without killing it ends itself after this long.
const CHILD_LIFETIME: Duration = Duration::from_secs(60);

/// The child's command line (after the hidden subcommand).
#[derive(Debug, Clone, clap::Args)]
pub struct ChildArgs {
    /// The server, as an IP socket address.
    #[arg(long)]
    pub server: SocketAddr,
    /// The player id.
    #[arg(long)]
    pub player: String,
    /// The room to play in.
    #[arg(long)]
    pub room: String,
    /// The local address to connect from.
    #[arg(long)]
    pub source_addr: Option<IpAddr>,
    /// Speak TLS, trusting this PEM file's certificates (empty: the public web's roots).
    #[arg(long)]
    pub tls_ca: Option<PathBuf>,
    /// Speak TLS with the server certified under this name.
    #[arg(long)]
    pub tls_server_name: Option<String>,
    /// Speak WebSocket, upgrading to this URL.
    #[arg(long)]
    pub websocket: Option<String>,
}

pub(crate) async fn run(inst: &Instance) -> Verdict {
    let nothing = |why: String| Verdict {
        expects: Vec::new(),
        failure: Some(why),
        errors: Vec::new(),
    };
    let exe = &inst.ctx.crash_exe;
    let mut cmd = tokio::process::Command::new(exe);
    cmd.arg(CHILD_SUBCOMMAND)
        .arg("--server")
        .arg(inst.ctx.server.to_string())
        .arg("--player")
        .arg(&inst.id)
        .arg("--room")
        .arg(inst.private_room())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    if let Some(source) = inst.source {
        cmd.arg("--source-addr").arg(source.to_string());
    }
    if let Some(tls) = &inst.opts().tls {
        cmd.arg("--tls-server-name")
            .arg(tls.name_for(&inst.opts().server));
        if let Some(ca) = &tls.ca_file {
            cmd.arg("--tls-ca").arg(ca);
        }
    }
    if let Some(url) = inst.opts().websocket_url() {
        cmd.arg("--websocket").arg(url);
    }
    match inst.token() {
        Some(token) => cmd.env(TOKEN_ENV, token),
        None => cmd.env_remove(TOKEN_ENV),
    };
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(error) => {
            return nothing(format!(
                "cannot start the crash child {}: {error}",
                exe.display()
            ));
        }
    };
    let Some(stdout) = child.stdout.take() else {
        return nothing("the crash child has no stdout pipe".to_owned());
    };
    let mut lines = BufReader::new(stdout).lines();
    let first =
        tokio::time::timeout(WELCOME_LIMIT + Duration::from_secs(5), lines.next_line()).await;
    let line = match first {
        Ok(Ok(Some(line))) => line,
        Ok(_) => {
            let _ = child.kill().await;
            return nothing(format!(
                "the crash child {} exited without reporting: is it the client-sim binary? (a \
                 test harness must set Options::crash_exe)",
                exe.display()
            ));
        }
        Err(_) => {
            let _ = child.kill().await;
            return Verdict {
                expects: vec![Expect::Unknown],
                failure: Some(
                    "the crash child reported nothing before the Welcome deadline".to_owned(),
                ),
                errors: Vec::new(),
            };
        }
    };
    let mut words = line.splitn(3, ' ');
    match (words.next(), words.next(), words.next()) {
        (Some("ready"), _, _) => add(&inst.ctx.stats.connect_ok, 1),
        (Some("connect-failed"), _, _) => {
            add(&inst.ctx.stats.connect_failed, 1);
            let _ = child.kill().await;
            return nothing(format!("crash child: {line}"));
        }
        (Some("refused"), Some(code), text) => {
            let _ = child.kill().await;
            add(&inst.ctx.stats.connect_ok, 1);
            let code = code.parse::<u8>().ok().and_then(ByeCode::from_u8);
            let error = match code {
                Some(code) => ClientError::ServerBye {
                    code,
                    text: text.unwrap_or_default().to_owned(),
                },
                None => ClientError::Unexpected("Bye code from the crash child"),
            };
            return Verdict {
                expects: vec![expect_after_failed_handshake(&error)],
                failure: Some(format!("crash child handshake: {error}")),
                errors: Vec::new(),
            };
        }
        _ => {
            let _ = child.kill().await;
            add(&inst.ctx.stats.connect_ok, 1);
            return Verdict {
                expects: vec![Expect::Unknown],
                failure: Some(format!("crash child: {line}")),
                errors: Vec::new(),
            };
        }
    }
    let pause = Duration::from_millis(rand::rng().random_range(100..=400));
    tokio::time::sleep(pause).await;
    // Child::kill sends SIGKILL and reaps the process.
    let failure = child
        .kill()
        .await
        .err()
        .map(|e| format!("killing the crash child: {e}"));
    let reasons = match inst.opts().websocket {
        true => WEBSOCKET_CRASH_REASONS,
        false => CRASH_REASONS,
    };
    Verdict {
        expects: vec![Expect::OneOf(reasons)],
        failure,
        errors: Vec::new(),
    }
}

/// The child's entry point: a single-threaded runtime running [`child`].
pub fn child_main(args: ChildArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            println!("failed cannot start a runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(child(args))
}

/// Connects, reports `ready SESSION_ID` on stdout, then sends until killed. Other first lines:
/// `connect-failed KIND ...`, `refused CODE TEXT`, `failed WHY`.
async fn child(args: ChildArgs) -> ExitCode {
    let stats = Arc::new(Stats::default());
    let tls = match &args.tls_server_name {
        Some(name) => {
            let options = TlsOptions {
                ca_file: args.tls_ca.clone(),
                server_name: Some(name.clone()),
            };
            match options.client("") {
                Ok(tls) => Some(tls),
                Err(error) => {
                    println!("failed {error}");
                    return ExitCode::FAILURE;
                }
            }
        }
        None => None,
    };
    let layers = conn::Layers {
        tls,
        websocket: args.websocket.clone(),
    };
    let connected = conn::connect(
        args.server,
        args.source_addr,
        &layers,
        Duration::from_secs(10),
    );
    let stream = match connected.await {
        Ok((stream, _)) => stream,
        Err(error) => {
            println!("connect-failed {error}");
            return ExitCode::FAILURE;
        }
    };
    let conn = Conn::new(stream, Arc::clone(&stats));
    let token = std::env::var(TOKEN_ENV).ok();
    let session = Player::session(args.player, args.room, token);
    let mut p = match Player::handshake(conn, session, WELCOME_LIMIT, stats).await {
        Ok(p) => p,
        Err((_, ClientError::ServerBye { code, text })) => {
            println!("refused {} {text}", code as u8);
            return ExitCode::FAILURE;
        }
        Err((_, error)) => {
            println!("failed {error}");
            return ExitCode::FAILURE;
        }
    };
    println!("ready {}", p.welcome.session_id);
    match send_until_killed(&mut p).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}

/// Writes, every few milliseconds, the second half of the previous input, whatever else the
/// session owes the server (pongs, acknowledgements), and the first half of the next input: the
/// byte stream never pauses on a frame boundary.
async fn send_until_killed(p: &mut Player) -> Result<(), ClientError> {
    let payload = Bytes::from(vec![0x6bu8; CHILD_INPUT_BYTES]);
    let mut carry = BytesMut::new();
    let mut tick = tokio::time::interval(CHILD_EVERY);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let lifetime = tokio::time::sleep(CHILD_LIFETIME);
    tokio::pin!(lifetime);
    loop {
        tokio::select! {
            frame = p.conn.recv() => match frame? {
                Some(message) => match p.absorb(message) {
                    Ok(()) => {}
                    Err(ClientError::ServerBye { .. }) => return Ok(()),
                    Err(error) => return Err(error),
                },
                None => return Ok(()),
            },
            _ = tick.tick() => {
                let mut chunk = carry.split();
                p.queue_input(payload.clone())?;
                let mut owed = p.take_transmits();
                // The input just queued is the last message owed.
                let Some(input) = owed.pop() else {
                    return Err(ClientError::Unexpected("an input the session did not send"));
                };
                for message in &owed {
                    p.conn.encode(message, &mut chunk)?;
                }
                let mut frame = BytesMut::new();
                p.conn.encode(&input, &mut frame)?;
                carry = frame.split_off(frame.len() / 2);
                chunk.extend_from_slice(&frame);
                p.conn.write_raw(&chunk).await?;
            }
            () = &mut lifetime => return Ok(()),
        }
    }
}

/// The child's command line, for [`child_main_from_args`].
#[derive(Debug, clap::Parser)]
struct ChildCommand {
    #[command(subcommand)]
    child: ChildSubcommand,
}

#[derive(Debug, clap::Subcommand)]
enum ChildSubcommand {
    #[command(name = "__crash-child")]
    CrashChild(ChildArgs),
}

/// The whole `main` of a crash-child executable other than client-sim itself: parses
/// `__crash-child ...` from the process arguments and runs the child. A test package can add a
/// two-line binary calling this and point [`Options::crash_exe`](crate::Options::crash_exe) at it
/// (through `CARGO_BIN_EXE_<name>`), because a test harness cannot be the crash scenario's child.
pub fn child_main_from_args() -> ExitCode {
    use clap::Parser as _;
    match ChildCommand::try_parse() {
        Ok(ChildCommand {
            child: ChildSubcommand::CrashChild(args),
        }) => child_main(args),
        Err(error) => {
            println!(
                "failed bad arguments: {}",
                error.to_string().lines().next().unwrap_or_default()
            );
            ExitCode::FAILURE
        }
    }
}
