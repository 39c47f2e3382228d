//! A well-behaved player kept in the game while a test attacks the server: it plays at a steady
//! 20 inputs a second in a room of its own, answers pings, acknowledges events, and measures how
//! long each input takes to come back as a relay.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use protocol::{ClientMessage, ServerMessage};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::{RawClient, hello_in, relay};

/// How often the good player sends an input.
pub const INPUT_EVERY: Duration = Duration::from_millis(50);

/// What the good player saw.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Inputs sent.
    pub sent: u64,
    /// Inputs that came back as relays.
    pub relayed: u64,
    /// Input-to-relay latency of each relayed input.
    pub latencies: Vec<Duration>,
    /// How the session ended early, if it did.
    pub ended: Option<String>,
}

impl Outcome {
    /// A percentile of the input-to-relay latency (`p` in 0..=100).
    pub fn percentile(&self, p: f64) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        if sorted.is_empty() {
            return Duration::ZERO;
        }
        let index = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
        sorted[index.min(sorted.len() - 1)]
    }

    /// Panics unless the player stayed connected, sent at least `min_inputs` and got back every
    /// input but the last few in flight, each within `bound`.
    pub fn assert_played(&self, min_inputs: u64, bound: Duration) {
        assert!(
            self.ended.is_none(),
            "the good player's session ended: {:?}",
            self.ended
        );
        assert!(
            self.sent >= min_inputs,
            "the good player sent only {} inputs",
            self.sent
        );
        assert!(
            self.relayed + 10 >= self.sent,
            "the good player got back {} of {} inputs",
            self.relayed,
            self.sent
        );
        let worst = self.percentile(100.0);
        assert!(
            worst <= bound,
            "the good player waited {worst:?} for a relay (bound {bound:?})"
        );
    }
}

/// A good player running in a task.
#[derive(Debug)]
pub struct GoodPlayer {
    stop: Arc<AtomicBool>,
    task: JoinHandle<Outcome>,
}

impl GoodPlayer {
    /// Joins the server as `player` in a room of its own and starts playing.
    pub async fn start(addr: SocketAddr, player: &str) -> GoodPlayer {
        GoodPlayer::start_over(RawClient::connect(addr).await, player).await
    }

    /// [`GoodPlayer::start`] over a connection the test made (from a network namespace, say).
    pub async fn start_over(mut client: RawClient, player: &str) -> GoodPlayer {
        client
            .hello(hello_in(player, &format!("good-{player}")))
            .await;
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(play(client, player.to_owned(), stop.clone()));
        GoodPlayer { stop, task }
    }

    /// Stops playing and returns what it saw.
    pub async fn finish(self) -> Outcome {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("good player task")
    }
}

async fn play(client: RawClient, player: String, stop: Arc<AtomicBool>) -> Outcome {
    let mut framed = client.framed;
    let mut outcome = Outcome::default();
    let mut sent_at: HashMap<u64, Instant> = HashMap::new();
    let mut inputs = tokio::time::interval(INPUT_EVERY);
    let mut acks = tokio::time::interval(Duration::from_secs(1));
    let mut last_event = 0;
    let payload = Bytes::from_static(b"good move");
    loop {
        if stop.load(Ordering::Relaxed) {
            // Let the last relays come back.
            let _ = tokio::time::timeout(Duration::from_millis(500), async {
                while let Some(Ok(message)) = framed.next().await {
                    note(&message, &player, &mut sent_at, &mut outcome);
                }
            })
            .await;
            let _ = framed
                .send(ClientMessage::Bye(protocol::Bye::new(
                    protocol::ByeCode::ClientQuit,
                    "",
                )))
                .await;
            return outcome;
        }
        tokio::select! {
            _ = inputs.tick() => {
                outcome.sent += 1;
                sent_at.insert(outcome.sent, Instant::now());
                let input = ClientMessage::Input { seq: outcome.sent, payload: payload.clone() };
                if let Err(error) = framed.send(input).await {
                    outcome.ended = Some(format!("send failed: {error}"));
                    return outcome;
                }
            }
            _ = acks.tick() => {
                if last_event > 0 && framed.send(ClientMessage::Ack { seq: last_event }).await.is_err() {
                    outcome.ended = Some("ack failed".into());
                    return outcome;
                }
            }
            message = framed.next() => match message {
                Some(Ok(ServerMessage::Ping { nonce })) => {
                    let _ = framed.send(ClientMessage::Pong { nonce }).await;
                }
                Some(Ok(ServerMessage::Bye(bye))) => {
                    outcome.ended = Some(format!("Bye {:?}: {}", bye.code, bye.text));
                    return outcome;
                }
                Some(Ok(message)) => {
                    if let ServerMessage::Event { seq, .. } = &message {
                        last_event = *seq;
                    }
                    note(&message, &player, &mut sent_at, &mut outcome);
                }
                Some(Err(error)) => {
                    outcome.ended = Some(format!("read failed: {error}"));
                    return outcome;
                }
                None => {
                    outcome.ended = Some("the server closed the connection".into());
                    return outcome;
                }
            }
        }
    }
}

fn note(
    message: &ServerMessage,
    player: &str,
    sent_at: &mut HashMap<u64, Instant>,
    outcome: &mut Outcome,
) {
    if let Some((from, seq)) = relay(message)
        && from == player
        && let Some(sent) = sent_at.remove(&seq)
    {
        outcome.relayed += 1;
        outcome.latencies.push(sent.elapsed());
    }
}
