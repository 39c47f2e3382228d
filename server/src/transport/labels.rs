//! The label vocabularies of what happens at the door and in the layers before a session: each
//! an enum with every value (`ALL`, so that the metrics start every label at zero) and its label
//! (`as_str`). They sit below the metrics and the code that counts them alike.

/// How a session reaches the server: the `transport` label of
/// `gameserver_sessions_accepted_total` and of the close line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportName {
    /// The protocol's frames over TCP.
    Tcp,
    /// The frames over TLS over TCP.
    Tls,
    /// One frame per binary WebSocket message.
    WebSocket,
    /// WebSocket over TLS.
    Wss,
    /// An in-memory connection (the test kit).
    #[cfg(any(test, feature = "testkit"))]
    Memory,
}

impl TransportName {
    /// Every value a listener produces, for initialising the label.
    pub const ALL: [TransportName; 4] = [
        TransportName::Tcp,
        TransportName::Tls,
        TransportName::WebSocket,
        TransportName::Wss,
    ];

    /// The label.
    pub fn as_str(self) -> &'static str {
        match self {
            TransportName::Tcp => "tcp",
            TransportName::Tls => "tls",
            TransportName::WebSocket => "websocket",
            TransportName::Wss => "wss",
            #[cfg(any(test, feature = "testkit"))]
            TransportName::Memory => "memory",
        }
    }
}

impl std::fmt::Display for TransportName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a connection was turned away before it became a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// `server.max_sessions` reached.
    ServerFull,
    /// `server.max_sessions_per_source` reached for the source.
    PerSourceLimit,
    /// The source opened connections faster than `server.connect_rate_per_source`.
    ConnectRate,
    /// The server is at `server.memory_budget`.
    MemoryBudget,
    /// A trusted balancer's PROXY header was missing, malformed, too long or late, or an
    /// untrusted address sent one on a listener with TLS or WebSocket.
    ProxyHeader,
    /// The TLS handshake failed or did not complete within `session.handshake_timeout`.
    TlsHandshake,
    /// The WebSocket upgrade request was not one, or did not complete within
    /// `session.handshake_timeout`.
    WebSocketUpgrade,
}

impl Rejection {
    /// Every rejection, for initialising the metric labels.
    pub const ALL: [Rejection; 7] = [
        Rejection::ServerFull,
        Rejection::PerSourceLimit,
        Rejection::ConnectRate,
        Rejection::MemoryBudget,
        Rejection::ProxyHeader,
        Rejection::TlsHandshake,
        Rejection::WebSocketUpgrade,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::ServerFull => "server_full",
            Rejection::PerSourceLimit => "per_source_limit",
            Rejection::ConnectRate => "connect_rate",
            Rejection::MemoryBudget => "memory_budget",
            Rejection::ProxyHeader => "proxy_header",
            Rejection::TlsHandshake => "tls_handshake",
            Rejection::WebSocketUpgrade => "websocket_upgrade",
        }
    }

    /// The `Bye{server_full}` text the client gets.
    pub fn explain(self) -> &'static str {
        match self {
            Rejection::ServerFull => "the server is full; retry later",
            Rejection::PerSourceLimit => "too many sessions from your network; retry later",
            Rejection::ConnectRate => "too many connections from your network; retry later",
            Rejection::MemoryBudget => "the server is out of room for new players; retry later",
            Rejection::ProxyHeader => "the connection's PROXY header was refused",
            // Never sent: without a TLS session or a WebSocket there is nothing to say it over.
            Rejection::TlsHandshake => "the TLS handshake failed",
            Rejection::WebSocketUpgrade => "the WebSocket upgrade failed",
        }
    }
}

/// An `accept()` failure that is not about one connection (the `kind` label of
/// `gameserver_accept_errors_total`); connections that died before accept are not errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcceptError {
    /// EMFILE: the process's descriptor limit.
    Emfile,
    /// ENFILE: the system's.
    Enfile,
    /// ENOBUFS.
    Enobufs,
    /// ENOMEM.
    Enomem,
    /// Anything else.
    Other,
}

impl AcceptError {
    /// Every kind, for initialising the label.
    pub const ALL: [AcceptError; 5] = [
        AcceptError::Emfile,
        AcceptError::Enfile,
        AcceptError::Enobufs,
        AcceptError::Enomem,
        AcceptError::Other,
    ];

    /// The kind of an accept error, by its errno.
    pub fn of(error: &std::io::Error) -> AcceptError {
        const EMFILE: i32 = 24;
        const ENFILE: i32 = 23;
        const ENOBUFS: i32 = 105;
        const ENOMEM: i32 = 12;
        match error.raw_os_error() {
            Some(EMFILE) => AcceptError::Emfile,
            Some(ENFILE) => AcceptError::Enfile,
            Some(ENOBUFS) => AcceptError::Enobufs,
            Some(ENOMEM) => AcceptError::Enomem,
            _ => AcceptError::Other,
        }
    }

    /// The label.
    pub fn as_str(self) -> &'static str {
        match self {
            AcceptError::Emfile => "emfile",
            AcceptError::Enfile => "enfile",
            AcceptError::Enobufs => "enobufs",
            AcceptError::Enomem => "enomem",
            AcceptError::Other => "other",
        }
    }
}

/// What came of a connection's PROXY header (the `result` label of
/// `gameserver_proxy_headers_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyResult {
    /// A trusted balancer's header, read.
    Ok,
    /// A trusted balancer's connection without one.
    Missing,
    /// Malformed, too long, or cut off.
    Invalid,
    /// One from an address not in `net.proxy_protocol.trusted`.
    Untrusted,
}

impl ProxyResult {
    /// Every result, for initialising the label.
    pub const ALL: [ProxyResult; 4] = [
        ProxyResult::Ok,
        ProxyResult::Missing,
        ProxyResult::Invalid,
        ProxyResult::Untrusted,
    ];

    /// The label.
    pub fn as_str(self) -> &'static str {
        match self {
            ProxyResult::Ok => "ok",
            ProxyResult::Missing => "missing",
            ProxyResult::Invalid => "invalid",
            ProxyResult::Untrusted => "untrusted",
        }
    }
}

/// What came of a certificate reload (the `result` label of `gameserver_tls_reloads_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadResult {
    /// The new pair is in use.
    Ok,
    /// The old pair is kept.
    Error,
}

impl ReloadResult {
    /// Every result, for initialising the label.
    pub const ALL: [ReloadResult; 2] = [ReloadResult::Ok, ReloadResult::Error];

    /// The label.
    pub fn as_str(self) -> &'static str {
        match self {
            ReloadResult::Ok => "ok",
            ReloadResult::Error => "error",
        }
    }
}
