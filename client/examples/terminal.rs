//! A terminal client for the demo game ("rooms"): every line you type is an input, relayed to
//! everyone in your room; the connection's state is shown as it changes. Pull the cable (or stop
//! the server with `kill -STOP`) and watch it notice, reconnect and resume.
//!
//! ```text
//! cargo run -p game-server                       # the server, in one terminal
//! cargo run -p game-client --example terminal -- 127.0.0.1:7777 alice lobby
//! ```
//!
//! Commands: `/join ROOM`, `/new` (a new session after one was lost), `/quit`.

use game_client::{Client, ClientConfig, Config, Notice};
use rooms::payload::DemoEvent;
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let server = args.next().unwrap_or_else(|| "127.0.0.1:7777".to_owned());
    let player = args
        .next()
        .unwrap_or_else(|| format!("player-{}", std::process::id()));
    let room = args.next().unwrap_or_default();
    let mut client = Client::start(ClientConfig::new(server.clone(), Config::new(player, room)));
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut typing = true;
    println!("[connecting to {server}]");
    loop {
        tokio::select! {
            notice = client.next() => match notice {
                Some(Notice::Closed { acked_input }) => {
                    println!("[closed: the server applied your inputs up to #{acked_input}]");
                    return;
                }
                Some(notice) => show(&client, &notice),
                None => return,
            },
            line = lines.next_line(), if typing => match line {
                Ok(Some(line)) => command(&client, line.trim()),
                // End of input: leave politely.
                Ok(None) | Err(_) => {
                    typing = false;
                    client.quit();
                }
            },
        }
    }
}

fn command(client: &Client, line: &str) {
    if let Some(room) = line.strip_prefix("/join ") {
        if !client.join(room.trim()) {
            println!("[not connected: try again once welcomed]");
        }
    } else if line == "/new" {
        client.new_session();
    } else if line == "/quit" {
        client.quit();
    } else if !line.is_empty() {
        match client.input(line.as_bytes().to_vec()) {
            Ok(_) => {}
            Err(error) => println!("[not sent: {error}]"),
        }
    }
}

fn show(client: &Client, notice: &Notice) {
    match notice {
        Notice::Connecting { attempt } if *attempt > 1 => {
            println!("[connecting, attempt {attempt}]")
        }
        Notice::Connecting { .. } | Notice::Acked { .. } => {}
        Notice::Welcome {
            session_id,
            room,
            resumed,
        } => {
            if *resumed {
                println!("[resumed session {session_id} in {room}: nothing was lost]");
            } else {
                println!("[connected: session {session_id} in {room}]");
            }
        }
        Notice::Disconnected(end) => println!("[connection lost: {end}]"),
        Notice::Reconnecting { attempt, after } => {
            println!(
                "[reconnecting in {:.1} s (attempt {attempt})]",
                after.as_secs_f64()
            );
        }
        Notice::Event { payload, .. } => match DemoEvent::from_bytes(payload.clone()) {
            Ok(DemoEvent::Relay { from, data, .. }) => {
                println!("<{from}> {}", String::from_utf8_lossy(&data));
            }
            Ok(DemoEvent::Presence { joined, player }) => {
                println!("[{player} {}]", if joined { "joined" } else { "left" });
            }
            Ok(DemoEvent::State { members, .. }) => {
                let rtt = client
                    .rtt()
                    .map(|rtt| format!(", round trip {:.1} ms", rtt.as_secs_f64() * 1000.0))
                    .unwrap_or_default();
                println!("[{members} in the room{rtt}]");
            }
            Err(error) => println!("[an event this client cannot read: {error}]"),
        },
        Notice::Joined { room } => println!("[now in {room}]"),
        Notice::JoinRefused { room, text } => println!("[{room} refused: {text}]"),
        Notice::Lost(why) => println!("[session lost: {why}; type /new to start another]"),
        Notice::Closed { .. } => {}
    }
}
