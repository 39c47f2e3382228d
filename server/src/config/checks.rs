//! Checks of values that take more than a range: the audience of tokens, their longest
//! lifetime, and the WebSocket origins the admin page may name.

use std::time::Duration;

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

/// The longest audience.
pub(crate) const MAX_AUDIENCE: usize = 64;

/// True for an audience in its allowed spelling: 1 to [`MAX_AUDIENCE`] ASCII letters, digits,
/// `-`, `_` or `:` (no dot and no `@`, so that a token splits one way only).
pub(crate) fn valid_audience(audience: &str) -> bool {
    !audience.is_empty()
        && audience.len() <= MAX_AUDIENCE
        && audience
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b':'))
}

/// The longest `auth.max_ttl` the configuration accepts: a token is a bearer credential that
/// cannot be revoked short of rotating the secret, so none may live longer than this.
pub(crate) const MAX_TOKEN_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
