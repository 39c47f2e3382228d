//! The client half of the game server: a session that survives every disconnect the server
//! survives.
//!
//! Two layers:
//!
//! - [`Core`], the protocol state of a session without sockets or timers of its own (sans-IO):
//!   the handshake, answers to pings, the client's own heartbeat and a watchdog on the server,
//!   acknowledgements both ways, and what a resume needs (the token, the last event received,
//!   the inputs the server has not acknowledged). Port it, or drive it from any event loop.
//! - [`Client`], a Tokio driver around it: it connects, reconnects with exponential backoff and
//!   jitter, resumes the session, resends what the server did not apply, and tells the game
//!   each step as a [`Notice`]. Every way a connection ends is one [`End`] value, named as the
//!   server names the same event in its close reasons.
//!
//! ```no_run
//! use game_client::{Client, ClientConfig, Config, Notice};
//!
//! # async fn play() {
//! let mut client = Client::start(ClientConfig::new("127.0.0.1:7777", Config::new("alice", "lobby")));
//! while let Some(notice) = client.next().await {
//!     match notice {
//!         Notice::Welcome { resumed, .. } => {
//!             if !resumed {
//!                 let _ = client.input(&b"hello"[..]);
//!             }
//!         }
//!         Notice::Event { seq, payload } => println!("event {seq}: {} bytes", payload.len()),
//!         Notice::Lost(why) => {
//!             println!("session lost: {why}");
//!             client.new_session();
//!         }
//!         Notice::Closed { .. } => break,
//!         _ => {}
//!     }
//! }
//! # }
//! ```
//!
//! docs/CLIENT.md describes the state machine for ports to other languages.

#![warn(missing_docs)]

mod core;
mod driver;
mod end;
mod link;

pub use crate::core::{
    Config, Core, InputError, Instant, JoinError, MAX_INPUT_PAYLOAD, Next, OptionsTooLong, Output,
};
pub use crate::driver::{Client, ClientConfig, Notice};
pub use crate::end::{End, Lost, Transport};
pub use crate::link::{Link, Tls, TlsError, open};
pub use protocol::MAX_OPTIONS_BYTES;
pub use protocol::{ByeCode, CloseReason};
/// The TLS library the client speaks through, for a [`Tls`] of one's own configuration.
pub use tokio_rustls::rustls;
