//! The floor the game server is compared with: a bare Tokio server that speaks the same framing
//! (a 4-byte big-endian length prefix, through tokio-util's `LengthDelimitedCodec`) and does
//! nothing else. One reusable timer per connection (a pinned `Sleep`, reset on activity) closes a
//! silent connection abortively after the idle timeout; 1 KiB read buffers; every frame is echoed
//! back, all frames already received fed first and then flushed once.
//!
//! `--broadcast` is the fan-out floor instead: a connection's first frame (the `Hello`, parsed
//! per PROTOCOL.md) names its room and is echoed as the handshake's answer; every later `Input`
//! frame from a member is sent to every member of the room (sender included) as one frame laid
//! out as the game server's `Relay` event for that input (encoded once, shared by all), and each
//! room sends a frame the size of the game server's `State` event to its members 20 times a
//! second while inputs arrive. Other frames (pings, acks) are echoed to their sender. Plain Tokio
//! tasks: a per-room member list behind a mutex, a bounded channel per connection (a frame that
//! finds it full is dropped and counted), and a writer per connection that writes everything
//! already queued, then flushes once.
//!
//! Usage: `baseline [--listen ADDR] [--idle-timeout DURATION] [--broadcast]`. It prints
//! `listening on ADDR` on stdout once bound, so a parent can start it on port 0 and read the port
//! back.

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use anyhow::Context;
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::{FutureExt, SinkExt, StreamExt};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::codec::{Framed, FramedRead, FramedWrite, LengthDelimitedCodec};

/// The same backlog as the game server's default.
const BACKLOG: i32 = 4096;
/// Initial read and write buffers.
const BUFFER: usize = 1024;
/// Written bytes buffered before a flush is forced, as in the game server.
const WRITE_HIGH_WATER: usize = 64 * 1024;
const MAX_FRAME: usize = 64 * 1024;
/// Frames queued for one connection in broadcast mode, as the game server's outbound queue.
const QUEUE: usize = 1024;
/// A room's state broadcast period (the game server's 20 Hz tick).
const TICK: Duration = Duration::from_millis(50);

fn main() -> anyhow::Result<()> {
    let mut listen: SocketAddr = "127.0.0.1:0".parse()?;
    let mut idle = Duration::from_secs(15);
    let mut broadcast = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--broadcast" {
            broadcast = true;
            continue;
        }
        let value = args
            .next()
            .with_context(|| format!("{arg} needs a value"))?;
        match arg.as_str() {
            "--listen" => listen = value.parse().context("--listen")?,
            "--idle-timeout" => {
                idle = humantime::parse_duration(&value).context("--idle-timeout")?
            }
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    if let Ok((_, hard)) = rlimit::getrlimit(rlimit::Resource::NOFILE) {
        let _ = rlimit::setrlimit(rlimit::Resource::NOFILE, hard, hard);
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(serve(listen, idle, broadcast))
}

async fn serve(listen: SocketAddr, idle: Duration, broadcast: bool) -> anyhow::Result<()> {
    let socket = Socket::new(
        Domain::for_address(listen),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&listen.into())?;
    socket.listen(BACKLOG)?;
    let listener = TcpListener::from_std(socket.into())?;
    println!("listening on {}", listener.local_addr()?);
    std::io::stdout().flush()?;
    let rooms = Rooms::default();
    if broadcast {
        tokio::spawn(report_drops(rooms.clone()));
    }
    loop {
        match listener.accept().await {
            Ok((stream, _)) if broadcast => {
                tokio::spawn(member(stream, idle, rooms.clone()));
            }
            Ok((stream, _)) => {
                tokio::spawn(echo(stream, idle));
            }
            // Descriptors exhausted or a connection that died before accept: pause briefly.
            Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .big_endian()
        .length_field_length(4)
        .max_frame_length(MAX_FRAME)
        .new_codec()
}

async fn echo(stream: TcpStream, idle: Duration) {
    let _ = stream.set_nodelay(true);
    let mut framed = Framed::with_capacity(stream, codec(), BUFFER);
    framed.set_backpressure_boundary(WRITE_HIGH_WATER);
    let sleep = tokio::time::sleep(idle);
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            () = &mut sleep => {
                // Silent too long: reset, as the game server does for idle_timeout.
                let _ = framed.get_ref().set_zero_linger();
                return;
            }
            frame = framed.next() => {
                let Some(Ok(frame)) = frame else { return };
                sleep.as_mut().reset(Instant::now() + idle);
                if framed.feed(frame.freeze()).await.is_err() {
                    return;
                }
                // Feed every frame already received, then flush once.
                while let Some(Some(Ok(frame))) = framed.next().now_or_never() {
                    if framed.feed(frame.freeze()).await.is_err() {
                        return;
                    }
                }
                if SinkExt::<bytes::Bytes>::flush(&mut framed).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Broadcast mode's rooms by name, and frames dropped at full queues.
#[derive(Debug, Clone, Default)]
struct Rooms {
    by_name: Arc<Mutex<HashMap<String, Arc<Room>>>>,
    dropped: Arc<AtomicU64>,
}

/// One room: its members' queues, and the inputs since its last state frame.
#[derive(Debug)]
struct Room {
    members: Mutex<Vec<(u64, mpsc::Sender<Bytes>)>>,
    inputs: AtomicU32,
    dropped: Arc<AtomicU64>,
}

impl Room {
    /// Queues a frame for every member; a full queue drops it.
    fn send_all(&self, frame: &Bytes) {
        let members = self.members.lock().unwrap_or_else(|p| p.into_inner());
        for (_, tx) in members.iter() {
            if tx.try_send(frame.clone()).is_err() {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl Rooms {
    /// Adds a member to the named room, opening it (and its ticker) if needed.
    fn join(&self, name: &str, id: u64, tx: mpsc::Sender<Bytes>) -> Arc<Room> {
        let mut rooms = self.by_name.lock().unwrap_or_else(|p| p.into_inner());
        let room = rooms
            .entry(name.to_owned())
            .or_insert_with(|| {
                let room = Arc::new(Room {
                    members: Mutex::new(Vec::new()),
                    inputs: AtomicU32::new(0),
                    dropped: self.dropped.clone(),
                });
                tokio::spawn(tick(Arc::downgrade(&room)));
                room
            })
            .clone();
        room.members
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((id, tx));
        room
    }

    /// Removes a member; the last one out closes the room.
    fn leave(&self, name: &str, id: u64, room: &Room) {
        let mut rooms = self.by_name.lock().unwrap_or_else(|p| p.into_inner());
        let mut members = room.members.lock().unwrap_or_else(|p| p.into_inner());
        members.retain(|(member, _)| *member != id);
        if members.is_empty() {
            rooms.remove(name);
        }
    }
}

/// Every second, says on stderr how many frames full queues dropped, if any.
async fn report_drops(rooms: Rooms) {
    let mut seen = 0;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let dropped = rooms.dropped.load(Ordering::Relaxed);
        if dropped != seen {
            eprintln!("baseline: {dropped} frames dropped at full queues");
            seen = dropped;
        }
    }
}

/// A room's ticker: 20 times a second, a state frame (the size of the game server's `State`
/// event: kind, seq, tag, tick, members, inputs) to every member, if inputs arrived.
async fn tick(room: Weak<Room>) {
    let mut every = tokio::time::interval(TICK);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut tick = 0u64;
    loop {
        every.tick().await;
        let Some(room) = room.upgrade() else { return };
        tick += 1;
        let inputs = room.inputs.swap(0, Ordering::Relaxed);
        if inputs == 0 {
            continue;
        }
        let members = room.members.lock().unwrap_or_else(|p| p.into_inner()).len();
        let mut frame = BytesMut::with_capacity(26);
        frame.put_u8(6);
        frame.put_u64(0);
        frame.put_u8(2);
        frame.put_u64(tick);
        frame.put_u32(u32::try_from(members).unwrap_or(u32::MAX));
        frame.put_u32(inputs);
        room.send_all(&frame.freeze());
    }
}

/// Player id and room name of a `Hello` body (PROTOCOL.md: kind, version u16, player id and
/// room as u16-length strings, then fields this mode ignores).
fn hello(body: &[u8]) -> Option<(Bytes, String)> {
    if body.first() != Some(&1) {
        return None;
    }
    let string = |at: usize| -> Option<(&[u8], usize)> {
        let len = usize::from(u16::from_be_bytes(body.get(at..at + 2)?.try_into().ok()?));
        Some((body.get(at + 2..at + 2 + len)?, at + 2 + len))
    };
    let (player, next) = string(3)?;
    let (room, _) = string(next)?;
    Some((
        Bytes::copy_from_slice(player),
        String::from_utf8(room.to_vec()).ok()?,
    ))
}

/// One member connection in broadcast mode.
async fn member(stream: TcpStream, idle: Duration, rooms: Rooms) {
    static IDS: AtomicU64 = AtomicU64::new(0);
    let _ = stream.set_nodelay(true);
    let mut framed = Framed::with_capacity(stream, codec(), BUFFER);
    let first = tokio::time::timeout(idle, framed.next()).await;
    let Ok(Some(Ok(first))) = first else { return };
    let Some((player, name)) = hello(&first) else {
        return;
    };
    let parts = framed.into_parts();
    let (read, write) = parts.io.into_split();
    let mut reader = FramedRead::with_capacity(read, parts.codec.clone(), BUFFER);
    reader.read_buffer_mut().extend_from_slice(&parts.read_buf);
    let mut writer = FramedWrite::new(write, parts.codec);
    writer.set_backpressure_boundary(WRITE_HIGH_WATER);
    let (tx, mut rx) = mpsc::channel::<Bytes>(QUEUE);
    // The handshake's answer: the Hello echoed.
    let _ = tx.try_send(first.freeze());
    let id = IDS.fetch_add(1, Ordering::Relaxed);
    let room = rooms.join(&name, id, tx.clone());
    let write_task = tokio::spawn(async move {
        while let Some(frame) = rx.recv().await {
            if writer.feed(frame).await.is_err() {
                return;
            }
            while let Ok(frame) = rx.try_recv() {
                if writer.feed(frame).await.is_err() {
                    return;
                }
            }
            if SinkExt::<Bytes>::flush(&mut writer).await.is_err() {
                return;
            }
        }
    });
    let sleep = tokio::time::sleep(idle);
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            () = &mut sleep => {
                let _ = reader.get_ref().as_ref().set_zero_linger();
                break;
            }
            frame = reader.next() => {
                let Some(Ok(frame)) = frame else { break };
                sleep.as_mut().reset(Instant::now() + idle);
                if frame.first() == Some(&5) && frame.len() >= 9 {
                    // The game server's Relay event for this input: kind, event seq, tag 1,
                    // sender id, input seq, data.
                    let mut relay = BytesMut::with_capacity(frame.len() + 12 + player.len());
                    relay.put_u8(6);
                    relay.put_u64(0);
                    relay.put_u8(1);
                    relay.put_u16(u16::try_from(player.len()).unwrap_or(u16::MAX));
                    relay.put_slice(&player);
                    relay.put_slice(&frame[1..]);
                    room.inputs.fetch_add(1, Ordering::Relaxed);
                    room.send_all(&relay.freeze());
                } else if tx.try_send(frame.freeze()).is_err() {
                    rooms.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
    rooms.leave(&name, id, &room);
    drop(tx);
    write_task.abort();
}
