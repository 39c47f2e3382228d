//! The floor the game server is compared with: a bare Tokio server that speaks the same framing
//! (a 4-byte big-endian length prefix, through tokio-util's `LengthDelimitedCodec`) and does
//! nothing else. One reusable timer per connection (a pinned `Sleep`, reset on activity) closes a
//! silent connection abortively after the idle timeout; 1 KiB read buffers; every frame is echoed
//! back, all frames already received fed first and then flushed once.
//!
//! Usage: `baseline [--listen ADDR] [--idle-timeout DURATION]`. It prints `listening on ADDR` on
//! stdout once bound, so a parent can start it on port 0 and read the port back.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use futures_util::{FutureExt, SinkExt, StreamExt};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

/// The same backlog as the game server's default.
const BACKLOG: i32 = 4096;
/// Initial read and write buffers.
const BUFFER: usize = 1024;
/// Written bytes buffered before a flush is forced, as in the game server.
const WRITE_HIGH_WATER: usize = 64 * 1024;
const MAX_FRAME: usize = 64 * 1024;

fn main() -> anyhow::Result<()> {
    let mut listen: SocketAddr = "127.0.0.1:0".parse()?;
    let mut idle = Duration::from_secs(15);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
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
        .block_on(serve(listen, idle))
}

async fn serve(listen: SocketAddr, idle: Duration) -> anyhow::Result<()> {
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
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(echo(stream, idle));
            }
            // Descriptors exhausted or a connection that died before accept: pause briefly.
            Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

async fn echo(stream: TcpStream, idle: Duration) {
    let _ = stream.set_nodelay(true);
    let codec = LengthDelimitedCodec::builder()
        .big_endian()
        .length_field_length(4)
        .max_frame_length(MAX_FRAME)
        .new_codec();
    let mut framed = Framed::with_capacity(stream, codec, BUFFER);
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
