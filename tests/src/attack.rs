//! Attackers the hostile tests share: a half-sent admin request, a run of short sessions, and a
//! chatty client that pings and answers pings until stopped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use protocol::{ClientMessage, ServerMessage};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::{RawClient, client_quit};

/// Starts an admin request and never finishes its headers.
pub async fn half_sent_admin_request(admin: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(admin).await.expect("connect admin");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .expect("write");
    stream
}

/// Plays `n` short sessions, players `{tag}-{i}`, that quit and read to the end of the stream.
pub async fn short_sessions(addr: SocketAddr, n: usize, tag: &str) {
    for i in 0..n {
        let (mut client, _) = RawClient::join(addr, &format!("{tag}-{i}")).await;
        client.send(client_quit()).await;
        let _ = client.until_bye().await;
        let _ = client.until_end().await;
    }
}

/// A client that sends a ping every `every` and answers the server's pings, until stopped;
/// returns how its session ended, if it did.
pub async fn chatty(
    addr: SocketAddr,
    player: String,
    every: Duration,
    stop: Arc<AtomicBool>,
) -> Option<String> {
    let (client, _) = RawClient::join(addr, &player).await;
    let mut framed = client.framed;
    let mut tick = tokio::time::interval(every);
    let mut nonce = 0;
    while !stop.load(Ordering::Relaxed) {
        tokio::select! {
            _ = tick.tick() => {
                nonce += 1;
                if framed.send(ClientMessage::Ping { nonce }).await.is_err() {
                    return Some("send failed".into());
                }
            }
            message = framed.next() => match message {
                Some(Ok(ServerMessage::Ping { nonce })) => {
                    let _ = framed.send(ClientMessage::Pong { nonce }).await;
                }
                Some(Ok(ServerMessage::Bye(bye))) => return Some(format!("{:?}", bye.code)),
                Some(Ok(_)) => {}
                other => return Some(format!("{other:?}")),
            }
        }
    }
    None
}
