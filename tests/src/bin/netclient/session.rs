//! `netclient session`: the client library (`game-client`) in a process of its own, for tests
//! that run it inside a network namespace. It reconnects and resumes by itself; this prints every
//! notice as a line and takes commands on stdin.
//!
//! ```text
//! netclient session --server ADDR --player ID [--room ROOM] [--connect-timeout MS]
//!                   [--attempts N] [--fresh]
//! ```
//!
//! Output lines: `connecting ATTEMPT`, `disconnected REASON DESCRIPTION` (REASON is the server's
//! close-reason name for the same event, or `refused` / `protocol`), `reconnecting ATTEMPT MS`,
//! `welcome SESSION ROOM resumed|fresh`, `relay FROM INPUT_SEQ EVENT_SEQ`, `state MEMBERS
//! EVENT_SEQ`, `presence JOINED PLAYER EVENT_SEQ`, `acked SEQ`, `joined ROOM`, `join_refused
//! ROOM`, `lost KIND DESCRIPTION` (KIND: `ended`, `resume_refused`, `not_resumable`,
//! `gave_up`), `sent SEQ`, `closed ACKED_INPUT`.
//!
//! Commands: `inputs N`, `every MS COUNT` (until `stop`), `stop`, `join ROOM`, `new` (a new
//! session after a loss), `quit` (lingering close), `abort` (reset), `exit`.

use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use game_client::{Client, ClientConfig, Config, End, Lost, Notice, Transport};
use rooms::payload::DemoEvent;
use tokio::sync::mpsc;

use crate::say;

#[derive(Debug)]
pub struct SessionOptions {
    pub server: String,
    pub player: String,
    pub room: String,
    pub connect_timeout: Duration,
    pub attempts: Option<u32>,
    pub fresh: bool,
}

impl SessionOptions {
    pub fn parse(args: &[String]) -> Result<SessionOptions, String> {
        let mut options = SessionOptions {
            server: String::new(),
            player: String::new(),
            room: String::new(),
            connect_timeout: Duration::from_secs(2),
            attempts: None,
            fresh: false,
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let mut value = || args.next().cloned().ok_or(format!("{arg} needs a value"));
            let number = |v: String| v.parse::<u64>().map_err(|e| format!("{arg}: {e}"));
            match arg.as_str() {
                "--server" => options.server = value()?,
                "--player" => options.player = value()?,
                "--room" => options.room = value()?,
                "--connect-timeout" => {
                    options.connect_timeout = Duration::from_millis(number(value()?)?);
                }
                "--attempts" => {
                    options.attempts =
                        Some(u32::try_from(number(value()?)?).map_err(|e| format!("{arg}: {e}"))?);
                }
                "--fresh" => options.fresh = true,
                other => return Err(format!("unknown option {other}")),
            }
        }
        if options.server.is_empty() || options.player.is_empty() {
            return Err("--server and --player are required".to_owned());
        }
        Ok(options)
    }
}

enum Command {
    Inputs(u64),
    Every(Duration, u64),
    Stop,
    Join(String),
    New,
    Quit,
    Abort,
    Exit,
}

fn parse(line: &str) -> Option<Command> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let number = |i: usize| words.get(i).and_then(|w| w.parse::<u64>().ok());
    Some(match *words.first()? {
        "inputs" => Command::Inputs(number(1)?),
        "every" => Command::Every(Duration::from_millis(number(1)?), number(2)?),
        "stop" => Command::Stop,
        "join" => Command::Join((*words.get(1)?).to_owned()),
        "new" => Command::New,
        "quit" => Command::Quit,
        "abort" => Command::Abort,
        "exit" => Command::Exit,
        _ => return None,
    })
}

fn end_words(end: &End) -> String {
    let reason = match end {
        End::Transport(Transport::Refused) => "refused",
        End::Protocol(_) => "protocol",
        other => other.reason().map_or("other", |r| r.as_str()),
    };
    format!("{reason} {}", end.to_string().replace('\n', " "))
}

fn lost_words(lost: &Lost) -> String {
    let kind = match lost {
        Lost::Ended(_) => "ended",
        Lost::ResumeRefused(_) => "resume_refused",
        Lost::NotResumable(_) => "not_resumable",
        Lost::GaveUp(_) => "gave_up",
    };
    format!("{kind} {}", lost.to_string().replace('\n', " "))
}

fn report(notice: &Notice) {
    match notice {
        Notice::Connecting { attempt } => say(format_args!("connecting {attempt}")),
        Notice::Disconnected(end) => say(format_args!("disconnected {}", end_words(end))),
        Notice::Reconnecting { attempt, after } => {
            say(format_args!("reconnecting {attempt} {}", after.as_millis()));
        }
        Notice::Welcome {
            session_id,
            room,
            resumed,
        } => say(format_args!(
            "welcome {session_id} {room} {}",
            if *resumed { "resumed" } else { "fresh" }
        )),
        Notice::Event { seq, payload } => match DemoEvent::from_bytes(payload.clone()) {
            Ok(DemoEvent::Relay {
                from, input_seq, ..
            }) => say(format_args!("relay {from} {input_seq} {seq}")),
            Ok(DemoEvent::State { members, .. }) => say(format_args!("state {members} {seq}")),
            Ok(DemoEvent::Presence { joined, player }) => {
                say(format_args!("presence {joined} {player} {seq}"));
            }
            Err(error) => say(format_args!("error payload {error} {seq}")),
        },
        Notice::Acked { seq } => say(format_args!("acked {seq}")),
        Notice::Joined { room } => say(format_args!("joined {room}")),
        Notice::JoinRefused { room, .. } => say(format_args!("join_refused {room}")),
        Notice::Lost(lost) => say(format_args!("lost {}", lost_words(lost))),
        Notice::Closed { acked_input } => say(format_args!("closed {acked_input}")),
    }
}

pub async fn session(options: SessionOptions) -> ExitCode {
    let mut config = ClientConfig::new(
        options.server.clone(),
        Config::new(options.player.clone(), options.room.clone()),
    );
    config.connect_timeout = options.connect_timeout;
    config.reconnect_min = Duration::from_millis(100);
    config.reconnect_max = Duration::from_secs(1);
    config.max_attempts = options.attempts;
    config.fresh_after_loss = options.fresh;
    let mut client = Client::start(config);
    let (commands, mut inbox) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            match parse(&line) {
                Some(command) => {
                    if commands.send(command).is_err() {
                        return;
                    }
                }
                None => eprintln!("netclient: unknown command {line:?}"),
            }
        }
        let _ = commands.send(Command::Exit);
    });
    let payload = Bytes::from_static(b"netclient");
    let mut every: Option<(tokio::time::Interval, u64)> = None;
    let mut last_sent = 0;
    let send = |client: &Client, count: u64, last_sent: &mut u64| {
        for _ in 0..count {
            match client.input(payload.clone()) {
                Ok(seq) => *last_sent = seq,
                Err(error) => {
                    say(format_args!("error input {error}"));
                    break;
                }
            }
        }
    };
    loop {
        let tick = async {
            match &mut every {
                Some((interval, count)) => {
                    interval.tick().await;
                    *count
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            notice = client.next() => match notice {
                Some(notice) => {
                    report(&notice);
                    if matches!(notice, Notice::Closed { .. }) {
                        return ExitCode::SUCCESS;
                    }
                }
                None => return ExitCode::SUCCESS,
            },
            count = tick => send(&client, count, &mut last_sent),
            command = inbox.recv() => match command {
                Some(Command::Inputs(count)) => {
                    send(&client, count, &mut last_sent);
                    say(format_args!("sent {last_sent}"));
                }
                Some(Command::Every(period, count)) => {
                    let mut interval = tokio::time::interval(period);
                    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    every = Some((interval, count));
                }
                Some(Command::Stop) => {
                    every = None;
                    say(format_args!("sent {last_sent}"));
                }
                Some(Command::Join(room)) => {
                    client.join(room);
                }
                Some(Command::New) => client.new_session(),
                Some(Command::Quit) => client.quit(),
                Some(Command::Abort) => client.abort(),
                Some(Command::Exit) | None => return ExitCode::SUCCESS,
            },
        }
    }
}
