//! The WebSocket origins the admin page may name.

/// True for a host name or IPv4 address that can stand in a CSP source as it is.
pub(crate) fn plain_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
}

/// True for a WebSocket origin `admin.page_websocket_origins` may name: `ws://` or `wss://`, a
/// host name or IPv4 address, an optional port, and nothing after it.
pub(crate) fn valid_websocket_origin(origin: &str) -> bool {
    let Some(authority) = origin
        .strip_prefix("wss://")
        .or_else(|| origin.strip_prefix("ws://"))
    else {
        return false;
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    };
    plain_host(host) && port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0))
}
