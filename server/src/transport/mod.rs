//! How a connection reaches a session: admission per source, session slots, the layers a
//! connection passes through before it speaks the protocol (PROXY header, TLS, WebSocket), and
//! the streams a session runs over. The listener that runs them is [`crate::server::listener`].

pub(crate) mod admission;
pub(crate) mod inbound;
pub(crate) mod kernel;
pub(crate) mod labels;
pub(crate) mod metrics;
pub(crate) mod proxy;
pub(crate) mod slots;
pub(crate) mod stream;
pub(crate) mod tls;
pub(crate) mod websocket;
