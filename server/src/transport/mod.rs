//! How a connection reaches a session: the listener and its door (admission per source, session
//! slots), and the layers a connection passes through before it speaks the protocol (PROXY
//! header, TLS, WebSocket).

pub(crate) mod admission;
pub(crate) mod inbound;
pub(crate) mod labels;
pub(crate) mod listener;
pub(crate) mod proxy;
pub(crate) mod slots;
pub(crate) mod tls;
pub(crate) mod websocket;
