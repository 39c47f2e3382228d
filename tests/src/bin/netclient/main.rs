//! `netclient`: a protocol client the system tests run as a separate process, for the cases that
//! need one: a client inside a network namespace (the test process stays in the host's), a
//! client process that is killed with SIGKILL, or one that exits without closing its socket.
//!
//! ```text
//! netclient play --server ADDR --player ID [--room ROOM] [--no-read] [--no-pong] [--payload N]
//! netclient session --server ADDR --player ID [...]   (the client library; see session.rs)
//! netclient http METHOD URL
//! ```
//!
//! `play` connects, sends `Hello`, then prints one line per thing it observes on stdout and
//! obeys one command per line on stdin. After the server's `Bye` it half-closes its side. It exits when stdin closes or on `exit`, in both cases
//! without closing its socket first: the kernel closes it, as it does for any process that ends.
//!
//! Output lines (first word is the kind):
//! `connected LOCAL_ADDR`, `welcome SESSION_ID ROOM`, `relay FROM INPUT_SEQ EVENT_SEQ`,
//! `state MEMBERS`, `presence JOINED PLAYER`, `ping NONCE`, `pong NONCE`, `ack SEQ`,
//! `joined ROOM`, `bye CODE`, `eof`, `error read|write|connect ERRNO DESCRIPTION`,
//! `sent LAST_SEQ`, `streaming`. With `--no-read` nothing is read, so only `connected`, `sent`,
//! `streaming` and write errors appear.
//!
//! Commands: `inputs N` (send N inputs at once), `every MS COUNT` (send COUNT inputs every MS
//! milliseconds until `stop`), `stop`, `ping NONCE`, `quit` (send `Bye{client_quit}`),
//! `shutdown` (half-close: FIN), `exit`.
//!
//! `http` sends one HTTP/1.0 request and prints `status CODE`, then the body. The environment
//! variable NETCLIENT_TOKEN, when set, goes with it as the admin bearer token.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use protocol::{Bye, ByeCode, ClientCodec, ClientMessage, CodecError, Hello, ServerMessage};
use rooms::payload::DemoEvent;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::mpsc;
use tokio_util::codec::{Encoder, FramedRead};

mod session;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("play") => match Options::parse(&args[1..]) {
            Ok(options) => {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                match runtime {
                    Ok(runtime) => runtime.block_on(play(options)),
                    Err(error) => {
                        eprintln!("netclient: {error}");
                        ExitCode::FAILURE
                    }
                }
            }
            Err(message) => usage(&message),
        },
        Some("session") => match session::SessionOptions::parse(&args[1..]) {
            Ok(options) => match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime.block_on(session::session(options)),
                Err(error) => {
                    eprintln!("netclient: {error}");
                    ExitCode::FAILURE
                }
            },
            Err(message) => usage(&message),
        },
        Some("http") if args.len() == 3 => http(&args[1], &args[2]),
        _ => usage("expected `play`, `session` or `http`"),
    }
}

fn usage(message: &str) -> ExitCode {
    eprintln!(
        "netclient: {message}\nusage: netclient play --server ADDR --player ID [--room ROOM] \
         [--no-read] [--no-pong] [--payload N]\n       netclient session --server ADDR --player ID \
         [--room ROOM] [--connect-timeout MS] [--attempts N] [--fresh]\n       netclient http METHOD URL"
    );
    ExitCode::from(2)
}

#[derive(Debug)]
struct Options {
    server: SocketAddr,
    player: String,
    room: String,
    read: bool,
    pong: bool,
    payload: usize,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options, String> {
        let mut server = None;
        let mut player = None;
        let mut options = Options {
            server: SocketAddr::from(([127, 0, 0, 1], 0)),
            player: String::new(),
            room: String::new(),
            read: true,
            pong: true,
            payload: 8,
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let mut value = || args.next().cloned().ok_or(format!("{arg} needs a value"));
            match arg.as_str() {
                "--server" => {
                    server = Some(value()?.parse().map_err(|e| format!("--server: {e}"))?);
                }
                "--player" => player = Some(value()?),
                "--room" => options.room = value()?,
                "--payload" => {
                    options.payload = value()?.parse().map_err(|e| format!("--payload: {e}"))?;
                }
                "--no-read" => options.read = false,
                "--no-pong" => options.pong = false,
                other => return Err(format!("unknown option {other}")),
            }
        }
        options.server = server.ok_or("--server is required")?;
        options.player = player.ok_or("--player is required")?;
        Ok(options)
    }
}

/// What the writer is asked to do, by stdin or by the reader (pongs).
#[derive(Debug)]
enum Command {
    Inputs(u64),
    Every(Duration, u64),
    /// One period of `every` elapsed.
    Tick(u64),
    Stop,
    Ping(u64),
    Pong(u64),
    Quit,
    Shutdown,
    Exit,
}

impl Command {
    fn parse(line: &str) -> Option<Command> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let number = |i: usize| words.get(i).and_then(|w| w.parse::<u64>().ok());
        Some(match *words.first()? {
            "inputs" => Command::Inputs(number(1)?),
            "every" => Command::Every(Duration::from_millis(number(1)?), number(2)?),
            "stop" => Command::Stop,
            "ping" => Command::Ping(number(1)?),
            "quit" => Command::Quit,
            "shutdown" => Command::Shutdown,
            "exit" => Command::Exit,
            _ => return None,
        })
    }
}

/// Prints one observation line. Stdout is line-buffered, so each line reaches the test at once.
pub(crate) fn say(line: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn errno(error: &std::io::Error) -> String {
    format!(
        "{} {}",
        error.raw_os_error().unwrap_or(0),
        error.to_string().replace('\n', " ")
    )
}

async fn play(options: Options) -> ExitCode {
    let stream = match TcpStream::connect(options.server).await {
        Ok(stream) => stream,
        Err(error) => {
            say(format_args!("error connect {}", errno(&error)));
            return ExitCode::FAILURE;
        }
    };
    let _ = stream.set_nodelay(true);
    if let Ok(local) = stream.local_addr() {
        say(format_args!("connected {local}"));
    }
    let (read, mut write) = stream.into_split();
    let (commands, mut inbox) = mpsc::unbounded_channel();
    // Without reading, whatever the server sends piles up in the kernel's receive buffer: a
    // close then resets the connection instead of ending it with FIN.
    let _unread = if options.read {
        tokio::spawn(read_loop(read, commands.clone(), options.pong));
        None
    } else {
        Some(read)
    };
    std::thread::spawn(move || stdin_loop(&commands));

    let mut codec = ClientCodec::default();
    let mut wbuf = BytesMut::new();
    let payload = Bytes::from(vec![b'x'; options.payload]);
    let hello = ClientMessage::Hello(Box::new(Hello::new(&options.player, &options.room)));
    let mut seq = 0u64;
    let mut stream_every: Option<(tokio::time::Interval, u64)> = None;
    let mut announced = false;
    let mut writable = encode(&mut codec, &mut wbuf, hello) && flush(&mut write, &mut wbuf).await;
    loop {
        let tick = async {
            match &mut stream_every {
                Some((interval, count)) => {
                    interval.tick().await;
                    *count
                }
                None => std::future::pending().await,
            }
        };
        let command = tokio::select! {
            command = inbox.recv() => command,
            count = tick => Some(Command::Tick(count)),
        };
        let Some(command) = command else { break };
        if !writable {
            // After a failed write nothing more is sent; the process still reports what it
            // reads and waits for `exit`.
            match command {
                Command::Exit => break,
                _ => continue,
            }
        }
        let ok = match command {
            Command::Inputs(count) | Command::Tick(count) => {
                for _ in 0..count {
                    seq += 1;
                    let input = ClientMessage::Input {
                        seq,
                        payload: payload.clone(),
                    };
                    encode(&mut codec, &mut wbuf, input);
                }
                let ok = flush(&mut write, &mut wbuf).await;
                if ok && matches!(command, Command::Inputs(_)) {
                    say(format_args!("sent {seq}"));
                } else if ok && !announced {
                    announced = true;
                    say(format_args!("streaming"));
                }
                ok
            }
            Command::Every(period, count) => {
                let mut interval = tokio::time::interval(period);
                interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                stream_every = Some((interval, count));
                true
            }
            Command::Stop => {
                stream_every = None;
                say(format_args!("sent {seq}"));
                true
            }
            Command::Ping(nonce) => {
                encode(&mut codec, &mut wbuf, ClientMessage::Ping { nonce })
                    && flush(&mut write, &mut wbuf).await
            }
            Command::Pong(nonce) => {
                encode(&mut codec, &mut wbuf, ClientMessage::Pong { nonce })
                    && flush(&mut write, &mut wbuf).await
            }
            Command::Quit => {
                let bye = ClientMessage::Bye(Bye::new(ByeCode::ClientQuit, ""));
                encode(&mut codec, &mut wbuf, bye) && flush(&mut write, &mut wbuf).await
            }
            Command::Shutdown => match write.shutdown().await {
                Ok(()) => true,
                Err(error) => {
                    say(format_args!("error write {}", errno(&error)));
                    false
                }
            },
            Command::Exit => break,
        };
        if !ok {
            writable = false;
            stream_every = None;
        }
    }
    // Exit without closing: the kernel closes the socket as the process ends.
    std::process::exit(0)
}

fn encode(codec: &mut ClientCodec, wbuf: &mut BytesMut, message: ClientMessage) -> bool {
    match codec.encode(message, wbuf) {
        Ok(()) => true,
        Err(error) => {
            say(format_args!("error encode 0 {error}"));
            false
        }
    }
}

async fn flush(write: &mut tokio::net::tcp::OwnedWriteHalf, wbuf: &mut BytesMut) -> bool {
    match write.write_all_buf(wbuf).await {
        Ok(()) => true,
        Err(error) => {
            say(format_args!("error write {}", errno(&error)));
            wbuf.clear();
            false
        }
    }
}

/// Reads commands on a plain thread: stdin is a pipe from the test, and blocking on it must not
/// stall the runtime.
fn stdin_loop(commands: &mpsc::UnboundedSender<Command>) {
    for line in std::io::stdin().lines() {
        let Ok(line) = line else { break };
        match Command::parse(&line) {
            Some(command) => {
                if commands.send(command).is_err() {
                    return;
                }
            }
            None => eprintln!("netclient: unknown command {line:?}"),
        }
    }
    let _ = commands.send(Command::Exit);
}

async fn read_loop(read: OwnedReadHalf, commands: mpsc::UnboundedSender<Command>, pong: bool) {
    let mut frames = FramedRead::new(read, ClientCodec::default());
    loop {
        match frames.next().await {
            Some(Ok(message)) => report(message, &commands, pong),
            Some(Err(CodecError::Io(error))) => {
                say(format_args!("error read {}", errno(&error)));
                return;
            }
            Some(Err(error)) => {
                say(format_args!("error codec 0 {error}"));
                return;
            }
            None => {
                say(format_args!("eof"));
                return;
            }
        }
    }
}

fn report(message: ServerMessage, commands: &mpsc::UnboundedSender<Command>, pong: bool) {
    match message {
        ServerMessage::Welcome(welcome) => {
            say(format_args!(
                "welcome {} {}",
                welcome.session_id, welcome.room
            ));
        }
        ServerMessage::Ping { nonce } => {
            say(format_args!("ping {nonce}"));
            if pong {
                let _ = commands.send(Command::Pong(nonce));
            }
        }
        ServerMessage::Pong { nonce } => say(format_args!("pong {nonce}")),
        ServerMessage::Event { seq, payload } => match DemoEvent::from_bytes(payload) {
            Ok(DemoEvent::Relay {
                from, input_seq, ..
            }) => say(format_args!("relay {from} {input_seq} {seq}")),
            Ok(DemoEvent::State { members, .. }) => say(format_args!("state {members}")),
            Ok(DemoEvent::Presence { joined, player }) => {
                say(format_args!("presence {joined} {player}"));
            }
            Err(error) => say(format_args!("error codec 0 {error}")),
        },
        ServerMessage::Ack { seq } => say(format_args!("ack {seq}")),
        ServerMessage::Bye(bye) => {
            say(format_args!("bye {}", bye.code.as_str()));
            // The server says nothing after its Bye: close our side too, as a client should, and
            // read on until its FIN (or a reset).
            let _ = commands.send(Command::Shutdown);
        }
        ServerMessage::Joined { room } => say(format_args!("joined {room}")),
        ServerMessage::JoinRefused { room, .. } => say(format_args!("join_refused {room}")),
    }
}

/// One HTTP/1.0 request (the admin listener's own protocol is plain HTTP on a private address).
fn http(method: &str, url: &str) -> ExitCode {
    let Some(rest) = url.strip_prefix("http://") else {
        return usage("http needs an http:// URL");
    };
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    // NETCLIENT_TOKEN, when set, is sent as the admin bearer token.
    let authorization = std::env::var("NETCLIENT_TOKEN")
        .map(|token| format!("Authorization: Bearer {token}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "{method} /{path} HTTP/1.0\r\nHost: {host}\r\n{authorization}Content-Length: 0\r\n\r\n"
    );
    let exchange = || -> std::io::Result<String> {
        let mut stream = std::net::TcpStream::connect(host)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.write_all(request.as_bytes())?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response)?;
        Ok(String::from_utf8_lossy(&response).into_owned())
    };
    match exchange() {
        Ok(response) => {
            let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
            let status = head.split_whitespace().nth(1).unwrap_or("0");
            print!("status {status}\n{body}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("netclient: {method} {url}: {error}");
            ExitCode::FAILURE
        }
    }
}
