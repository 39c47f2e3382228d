//! The admin HTTP listener: metrics for Prometheus, health and readiness probes, and the
//! operator's view of live sessions with a kick button.
//!
//! Safe by default:
//! - Reads (`/metrics`, `/sessions`) need no token from loopback, but then the `Host` header must
//!   name an IP address or `localhost`, so that a web page cannot read them through a DNS name
//!   rebound to 127.0.0.1. From anywhere else they need `Authorization: Bearer <admin.token>`;
//!   the server refuses to start with the listener off loopback and no token.
//! - The kick changes state: it always needs the token (without one configured, kicking is off),
//!   and a request carrying an `Origin` other than its own `Host` is refused, so a cross-site
//!   form post cannot kick anybody even from the operator's own browser.
//! - `/healthz` and `/readyz` say nothing but "ok"/"ready": probes from load balancers and
//!   orchestrators reach them without a token.
//! - At most `admin.max_connections` connections; a request's headers must arrive within
//!   `admin.header_read_timeout`, which also closes idle keep-alive connections; a connection
//!   lives at most [`MAX_CONNECTION_AGE`]; on stop, connections get [`CLOSE_GRACE`] to finish.
//! - `/closes?player_prefix=P&since=N` counts, by reason, the recent closes of players whose id
//!   starts with `P` (see [`crate::ops::close_log`]): how a load generator reads back its own players'
//!   closes beside other traffic.
//! - `/sessions` is paginated (`?after=ID&limit=N`, at most [`MAX_PAGE`] a page) and built
//!   outside the registry's lock.
//! - A game's pages for browser players ([`crate::App::page`]) are static and public: no token,
//!   no `Host` check, nothing but the page. A path the admin routes serve is never a page.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::api::rooms::{MAX_SIGNAL_BYTES, RoomQuery, Rooms, SignalError};
use crate::ops::close_log::Closes;
use crate::ops::metrics::Metrics;
use crate::ops::status::Status;
use crate::player::registry::{Registry, SessionFilter};
use crate::shutdown::Shutdown;

/// Sessions per page of `/sessions` when the request does not say.
pub const DEFAULT_PAGE: usize = 100;
/// Most sessions per page of `/sessions`.
pub const MAX_PAGE: usize = 1000;
/// Longest an admin connection lives; a client then reconnects.
pub const MAX_CONNECTION_AGE: Duration = Duration::from_secs(60);
/// Time connections get to finish their request when the listener stops or a connection ages out.
pub const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// What the listener needs from the configuration.
#[derive(Clone)]
pub(crate) struct Settings {
    pub token: Option<String>,
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    /// `admin.loopback_reads`.
    pub loopback_reads: bool,
    pub pages: Pages,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("max_connections", &self.max_connections)
            .field("header_read_timeout", &self.header_read_timeout)
            .field("loopback_reads", &self.loopback_reads)
            .field("pages", &self.pages)
            .finish()
    }
}

#[derive(Clone, Debug)]
struct Admin {
    metrics: Metrics,
    registry: Arc<Registry>,
    rooms: Rooms,
    closes: Arc<Closes>,
    status: Arc<Status>,
    shutdown: Shutdown,
    token: Option<Arc<str>>,
    loopback_reads: bool,
    pages: Pages,
}

/// The pages a game serves to browser players from the admin port ([`crate::App::page`]).
#[derive(Clone, Debug, Default)]
pub(crate) struct Pages {
    /// Each page by path; `None` for every page while the server has no WebSocket listener, the
    /// only way a browser can play.
    by_path: Arc<HashMap<String, Option<Page>>>,
}

/// A page as it is served: its HTML with the placeholders filled in, and what its
/// Content-Security-Policy allows.
#[derive(Clone, Debug)]
struct Page {
    html: Bytes,
    /// `'sha256-...'` of each inline script, the only scripts the page may run.
    scripts: String,
    /// `'sha256-...'` of each inline style element.
    styles: String,
    /// The WebSocket listener's scheme and port: the page may connect there on its own host.
    scheme: &'static str,
    port: u16,
    /// Further WebSocket origins the page may connect to (`admin.page_websocket_origins`).
    origins: Arc<str>,
}

impl Pages {
    /// `pages` as (path, HTML), each [`crate::api::page::WEBSOCKET_PORT_PLACEHOLDER`] in the HTML
    /// replaced by the port of `websocket`, the WebSocket listener's bound address, each
    /// [`crate::api::page::WEBSOCKET_SCHEME_PLACEHOLDER`] by `wss` (`tls`) or `ws`, and each
    /// [`crate::api::page::WEBSOCKET_ORIGINS_PLACEHOLDER`] by the further origins a page may connect
    /// to, separated by spaces.
    pub(crate) fn new(
        pages: &[(String, &'static str)],
        websocket: Option<SocketAddr>,
        tls: bool,
        origins: &[String],
    ) -> Pages {
        let scheme = if tls { "wss" } else { "ws" };
        let origins: Arc<str> = Arc::from(origins.join(" "));
        let by_path = pages
            .iter()
            .map(|(path, html)| {
                let rendered = websocket.map(|addr| {
                    let html = html
                        .replace(
                            crate::api::page::WEBSOCKET_PORT_PLACEHOLDER,
                            &addr.port().to_string(),
                        )
                        .replace(crate::api::page::WEBSOCKET_SCHEME_PLACEHOLDER, scheme)
                        .replace(crate::api::page::WEBSOCKET_ORIGINS_PLACEHOLDER, &origins);
                    Page {
                        scripts: inline_hashes(&html, "script"),
                        styles: inline_hashes(&html, "style"),
                        html: Bytes::from(html),
                        scheme,
                        port: addr.port(),
                        origins: origins.clone(),
                    }
                });
                (path.clone(), rendered)
            })
            .collect();
        Pages {
            by_path: Arc::new(by_path),
        }
    }
}

impl Page {
    /// The policy for this page as served to `host` (the request's `Host`, the name the browser
    /// used): scripts and styles only its own inline ones, connections only to its own
    /// server's WebSocket listener (and the origins the operator allowed), no frames, no forms,
    /// nothing from elsewhere.
    fn policy(&self, host: Option<&str>) -> String {
        let own = match host.map(host_part).filter(|h| crate::config::plain_host(h)) {
            Some(host) => format!("{}://{host}:{}", self.scheme, self.port),
            // An IPv6 literal or no usable Host: any host, this port and scheme only.
            None => format!("{}://*:{}", self.scheme, self.port),
        };
        format!(
            "default-src 'none'; script-src {}; style-src {}; img-src 'self' data:; \
             connect-src {own} {}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            none_if_empty(&self.scripts),
            none_if_empty(&self.styles),
            self.origins,
        )
    }
}

fn none_if_empty(sources: &str) -> &str {
    if sources.is_empty() {
        "'none'"
    } else {
        sources
    }
}

/// The CSP hash sources of a page's inline `<tag>` elements (those without a `src`).
fn inline_hashes(html: &str, tag: &str) -> String {
    use base64::Engine;
    use sha2::Digest;
    let open = format!("<{tag}");
    let close = format!("</{tag}>");
    let mut hashes = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(end_of_tag) = after.find('>') else {
            break;
        };
        let attributes = &after[..end_of_tag];
        let body_and_rest = &after[end_of_tag + 1..];
        let Some(end) = body_and_rest.find(&close) else {
            break;
        };
        if !attributes.contains("src=") {
            let digest = sha2::Sha256::digest(&body_and_rest.as_bytes()[..end]);
            hashes.push(format!(
                "'sha256-{}'",
                base64::engine::general_purpose::STANDARD.encode(digest)
            ));
        }
        rest = &body_and_rest[end + close.len()..];
    }
    hashes.join(" ")
}

/// The peer of the connection a request came on.
#[derive(Clone, Copy, Debug)]
struct Peer(SocketAddr);

/// The admin routes.
fn router(admin: Admin) -> Router {
    Router::new()
        .route("/metrics", get(metrics_text))
        .route("/sessions", get(sessions))
        .route("/closes", get(closes))
        .route("/closes/recent", get(recent_closes))
        .route("/status", get(status_page))
        .route("/status/data", get(status_data))
        .route("/sessions/{id}/kick", post(kick))
        .route("/rooms", get(rooms))
        .route(
            "/rooms/{name}/signal",
            post(signal).layer(axum::extract::DefaultBodyLimit::max(MAX_SIGNAL_BYTES)),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            admin.clone(),
            authorize,
        ))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .fallback(page)
        .layer(axum::middleware::map_response(protect))
        .with_state(admin)
}

/// The policy of every admin answer that is not a page: nothing in it may run, load or be
/// framed.
const LOCKED_DOWN: &str = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; \
                           form-action 'none'";

/// Headers on every answer of the admin port: no framing (clickjacking of the kick), no content
/// sniffing, no referrer (a page's link may carry `?token=`), not readable as a resource by
/// other sites, and a Content-Security-Policy (a page sets its own, stricter for what it needs).
async fn protect(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let fixed = [
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (
            header::HeaderName::from_static("cross-origin-resource-policy"),
            "same-origin",
        ),
    ];
    for (name, value) in fixed {
        headers.insert(name, header::HeaderValue::from_static(value));
    }
    if !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            header::HeaderValue::from_static(LOCKED_DOWN),
        );
    }
    response
}

/// Serves until `stop` is cancelled, then gives open connections [`CLOSE_GRACE`] and drops the
/// rest.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn serve(
    listener: TcpListener,
    metrics: Metrics,
    registry: Arc<Registry>,
    rooms: Rooms,
    closes: Arc<Closes>,
    status: Arc<Status>,
    shutdown: Shutdown,
    settings: Settings,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let app = router(Admin {
        metrics: metrics.clone(),
        registry,
        rooms,
        closes,
        status,
        shutdown,
        token: settings.token.as_deref().map(Arc::from),
        loopback_reads: settings.loopback_reads,
        pages: settings.pages,
    });
    let slots = Arc::new(Semaphore::new(settings.max_connections));
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of descriptors or a connection that died first: pause briefly, never spin.
                tracing::debug!(%error, "admin accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            metrics.admin_rejected.inc();
            tracing::debug!(%peer, "admin connection refused: admin.max_connections are open");
            continue;
        };
        let service = {
            let app = app.clone();
            hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                let mut request = request.map(Body::new);
                request.extensions_mut().insert(Peer(peer));
                let mut app = app.clone();
                async move { tower_service::Service::call(&mut app, request).await }
            })
        };
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(settings.header_read_timeout)
            .max_buf_size(64 * 1024);
        let stop = stop.clone();
        connections.spawn(async move {
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => return drop(permit),
                () = stop.cancelled() => {}
                () = tokio::time::sleep(MAX_CONNECTION_AGE) => {}
            }
            connection.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(CLOSE_GRACE, connection).await;
            drop(permit);
        });
    }
    drop(listener);
    // Every connection was told to finish; those that do not within the grace are dropped.
    let _ = tokio::time::timeout(CLOSE_GRACE + Duration::from_millis(250), async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    connections.abort_all();
    Ok(())
}

/// Who may do what; see the module documentation.
async fn authorize(State(admin): State<Admin>, request: Request, next: Next) -> Response {
    let peer = request
        .extensions()
        .get::<Peer>()
        .map(|p| p.0.ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let headers = request.headers();
    let token_ok = match (&admin.token, bearer(headers)) {
        (Some(expected), Some(given)) => constant_time_eq(expected.as_bytes(), given.as_bytes()),
        _ => false,
    };
    let mutating = request.method() != Method::GET && request.method() != Method::HEAD;
    if mutating {
        if admin.token.is_none() {
            return refuse(
                StatusCode::FORBIDDEN,
                "kicks and room signals are off: set admin.token (GAMESERVER__ADMIN__TOKEN) to \
                 enable them",
            );
        }
        if !token_ok {
            return refuse(
                StatusCode::UNAUTHORIZED,
                "this endpoint needs Authorization: Bearer <admin.token>",
            );
        }
        if !same_origin(headers) {
            return refuse(StatusCode::FORBIDDEN, "cross-site requests are refused");
        }
    } else if !token_ok {
        if !peer.is_loopback() {
            return refuse(
                StatusCode::UNAUTHORIZED,
                "from off loopback this endpoint needs Authorization: Bearer <admin.token>",
            );
        }
        if !admin.loopback_reads {
            return refuse(
                StatusCode::UNAUTHORIZED,
                "admin.loopback_reads is off: this endpoint needs Authorization: Bearer \
                 <admin.token> from loopback too",
            );
        }
        if forwarded(headers) {
            // A proxy on this host relayed it: whoever sent it is not on loopback.
            return refuse(
                StatusCode::UNAUTHORIZED,
                "a forwarded request needs Authorization: Bearer <admin.token>",
            );
        }
        if !host_is_local(headers) {
            return refuse(
                StatusCode::FORBIDDEN,
                "without a token, the Host header must be an IP address or localhost",
            );
        }
    }
    next.run(request).await
}

fn refuse(status: StatusCode, why: &str) -> Response {
    let mut response = (status, format!("{why}\n")).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
    }
    response
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The host part of a `Host` or origin authority, without the port.
fn host_part(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    authority
        .rsplit_once(':')
        .map_or(authority, |(host, _)| host)
}

fn host_is_local(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        // HTTP/1.0 without Host: not a browser.
        return true;
    };
    let host = host_part(host);
    host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok()
}

/// True when a proxy says it relayed the request (`Forwarded`, `X-Forwarded-For`,
/// `X-Real-IP`). Such a header never grants anything; its presence only withholds what a
/// loopback connection would otherwise be allowed without a token.
fn forwarded(headers: &HeaderMap) -> bool {
    ["forwarded", "x-forwarded-for", "x-real-ip"]
        .iter()
        .any(|name| headers.contains_key(*name))
}

/// False when the request carries an `Origin` (browsers add it to cross-site posts) that is not
/// the request's own `Host`, or `Sec-Fetch-Site: cross-site`.
fn same_origin(headers: &HeaderMap) -> bool {
    if headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|site| site.eq_ignore_ascii_case("cross-site"))
    {
        return false;
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Some(origin) = origin.to_str().ok() else {
        return false;
    };
    let authority = origin
        .split_once("://")
        .map_or(origin, |(_, rest)| rest)
        .trim_end_matches('/');
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    host.is_some_and(|host| host.eq_ignore_ascii_case(authority))
}

async fn metrics_text(State(admin): State<Admin>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        admin.metrics.render(),
    )
        .into_response()
}

async fn ready(State(admin): State<Admin>) -> Response {
    if admin.shutdown.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response()
    } else {
        "ready\n".into_response()
    }
}

#[derive(Debug, serde::Deserialize)]
struct PageQuery {
    #[serde(default)]
    after: u64,
    limit: Option<usize>,
    /// Only players whose id starts with this.
    #[serde(default)]
    player_prefix: String,
    /// Only players in this room.
    room: Option<String>,
}

impl PageQuery {
    /// Sessions on the page: [`DEFAULT_PAGE`] unless asked, never more than [`MAX_PAGE`].
    fn limit(&self) -> usize {
        self.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE)
    }
}

/// A game's page, or 404: what the admin listener answers for a path no admin route serves.
async fn page(
    State(admin): State<Admin>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let Some(page) = admin.pages.by_path.get(uri.path()) else {
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    };
    if method != Method::GET && method != Method::HEAD {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "GET, HEAD")],
            "a page answers GET and HEAD only\n",
        )
            .into_response();
    }
    match page {
        Some(page) => {
            let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
            let mut response = (
                [
                    (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                    // The WebSocket port in it changes from one run of the server to the next.
                    (header::CACHE_CONTROL, "no-store"),
                ],
                page.html.clone(),
            )
                .into_response();
            if let Ok(policy) = header::HeaderValue::from_str(&page.policy(host)) {
                response
                    .headers_mut()
                    .insert(header::CONTENT_SECURITY_POLICY, policy);
            }
            response
        }
        None => (
            StatusCode::NOT_FOUND,
            "this page plays over WebSocket and the server has no WebSocket listener: set \
             server.websocket_listen (GAMESERVER__SERVER__WEBSOCKET_LISTEN)\n",
        )
            .into_response(),
    }
}

async fn sessions(State(admin): State<Admin>, Query(query): Query<PageQuery>) -> Response {
    let filter = SessionFilter {
        player_prefix: query.player_prefix.clone(),
        room: query.room.clone().filter(|room| !room.is_empty()),
    };
    axum::Json(
        admin
            .registry
            .page_where(query.after, query.limit(), &filter),
    )
    .into_response()
}

#[derive(Debug, serde::Deserialize)]
struct ClosesQuery {
    #[serde(default)]
    player_prefix: String,
    #[serde(default)]
    since: u64,
}

async fn closes(State(admin): State<Admin>, Query(query): Query<ClosesQuery>) -> Response {
    axum::Json(admin.closes.count(&query.player_prefix, query.since).await).into_response()
}

#[derive(Debug, serde::Deserialize)]
struct RecentQuery {
    #[serde(default)]
    player_prefix: String,
    limit: Option<usize>,
}

async fn recent_closes(State(admin): State<Admin>, Query(query): Query<RecentQuery>) -> Response {
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    axum::Json(admin.closes.recent(&query.player_prefix, limit).await).into_response()
}

async fn status_data(State(admin): State<Admin>) -> Response {
    (
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(admin.status.data()),
    )
        .into_response()
}

/// The status page: one file, its script and style inline, allowed by their hashes only; it
/// reads this server's admin routes and nothing else.
async fn status_page() -> Response {
    static POLICY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let policy = POLICY.get_or_init(|| {
        format!(
            "default-src 'none'; script-src {}; style-src {}; img-src 'self' data:; \
             connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            none_if_empty(&inline_hashes(STATUS_PAGE, "script")),
            none_if_empty(&inline_hashes(STATUS_PAGE, "style")),
        )
    });
    let mut response = (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        STATUS_PAGE,
    )
        .into_response();
    if let Ok(policy) = header::HeaderValue::from_str(policy) {
        response
            .headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, policy);
    }
    response
}

/// The status page's HTML.
const STATUS_PAGE: &str = include_str!("status.html");

async fn rooms(State(admin): State<Admin>, Query(query): Query<RoomQuery>) -> Response {
    axum::Json(admin.rooms.list(&query)).into_response()
}

async fn signal(State(admin): State<Admin>, Path(name): Path<String>, body: Bytes) -> Response {
    match admin.rooms.signal(&name, body).await {
        Ok(answer) => {
            ([(header::CONTENT_TYPE, "application/octet-stream")], answer).into_response()
        }
        Err(error) => {
            let status = match error {
                SignalError::NoSuchRoom(_) => StatusCode::NOT_FOUND,
                SignalError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
                SignalError::NoAnswer => StatusCode::GATEWAY_TIMEOUT,
                SignalError::Stopped => StatusCode::SERVICE_UNAVAILABLE,
            };
            (status, format!("{error}\n")).into_response()
        }
    }
}

async fn kick(State(admin): State<Admin>, Path(id): Path<u64>) -> Response {
    match admin.registry.get(id) {
        Some(player) => {
            player.kick();
            tracing::info!(
                session = id,
                player = player.player_id(),
                "kicked by an operator"
            );
            (StatusCode::ACCEPTED, format!("kicking session {id}\n")).into_response()
        }
        None => (StatusCode::NOT_FOUND, format!("no live session {id}\n")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().expect("header value"));
        }
        map
    }

    #[test]
    fn hosts_that_a_rebound_name_could_use_are_not_local() {
        assert!(host_is_local(&headers(&[("host", "127.0.0.1:9100")])));
        assert!(host_is_local(&headers(&[("host", "[::1]:9100")])));
        assert!(host_is_local(&headers(&[("host", "localhost:9100")])));
        assert!(!host_is_local(&headers(&[("host", "evil.example:9100")])));
    }

    #[test]
    fn a_cross_site_origin_is_refused() {
        assert!(same_origin(&headers(&[("host", "127.0.0.1:9100")])));
        assert!(same_origin(&headers(&[
            ("host", "127.0.0.1:9100"),
            ("origin", "http://127.0.0.1:9100")
        ])));
        assert!(!same_origin(&headers(&[
            ("host", "127.0.0.1:9100"),
            ("origin", "http://evil.example")
        ])));
        assert!(!same_origin(&headers(&[
            ("host", "127.0.0.1:9100"),
            ("sec-fetch-site", "cross-site")
        ])));
    }

    #[test]
    fn pages_are_bounded_whatever_the_request_asks() {
        let page = |limit| PageQuery {
            after: 0,
            limit,
            player_prefix: String::new(),
            room: None,
        };
        assert_eq!(page(None).limit(), DEFAULT_PAGE);
        assert_eq!(page(Some(1_000_000)).limit(), MAX_PAGE);
        assert_eq!(page(Some(0)).limit(), 1);
        assert_eq!(page(Some(7)).limit(), 7);
    }

    fn admin(pages: Pages) -> Router {
        with_rooms(pages, Rooms::new(std::sync::Weak::<Lobby>::new()))
    }

    fn with_rooms(pages: Pages, rooms: Rooms) -> Router {
        let metrics = Metrics::new().expect("metrics");
        router(Admin {
            status: Status::new(metrics.clone(), Shutdown::new(), serde_json::Value::Null),
            metrics,
            registry: Arc::new(Registry::default()),
            rooms,
            closes: Closes::new(16),
            shutdown: Shutdown::new(),
            token: Some(Arc::from("s3cret")),
            loopback_reads: true,
            pages,
        })
    }

    /// `method path` from `peer` with `Host: host`; the status, the content type and the body.
    async fn call(
        app: &Router,
        method: Method,
        path: &str,
        peer: &str,
        host: &str,
    ) -> (StatusCode, String, String) {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, host)
            .body(Body::empty())
            .expect("request");
        request
            .extensions_mut()
            .insert(Peer(peer.parse().expect("peer")));
        let mut app = app.clone();
        let response = tower_service::Service::call(&mut app, request)
            .await
            .expect("the router answers");
        let status = response.status();
        let kind = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        (status, kind, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn the_status_page_is_guarded_like_the_reads_and_runs_only_its_own_script() {
        let app = admin(Pages::default());
        let (status, kind, body) = call(
            &app,
            Method::GET,
            "/status",
            "127.0.0.1:5000",
            "127.0.0.1:9100",
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(kind, "text/html; charset=utf-8");
        // Nothing from elsewhere: no external script, style, image or frame.
        for outside in ["src=", "href=", "@import", "url("] {
            assert!(!body.contains(outside), "the page loads {outside}");
        }
        let mut request = Request::builder()
            .uri("/status")
            .header(header::HOST, "127.0.0.1:9100")
            .body(Body::empty())
            .expect("request");
        request
            .extensions_mut()
            .insert(Peer("127.0.0.1:5000".parse().expect("peer")));
        let response = tower_service::Service::call(&mut app.clone(), request)
            .await
            .expect("answer");
        let policy = response.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .expect("policy")
            .to_owned();
        assert!(
            policy.starts_with("default-src 'none'; script-src 'sha256-"),
            "{policy}"
        );
        assert!(policy.contains("connect-src 'self';"), "{policy}");
        assert!(!policy.contains("unsafe"), "{policy}");
        // From afar without the token, the page and its data are refused like /sessions.
        let far = "203.0.113.9:5000";
        for path in ["/status", "/status/data", "/closes/recent"] {
            let (status, _, _) = call(&app, Method::GET, path, far, "game.example").await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
        }
        let (status, kind, body) = call(
            &app,
            Method::GET,
            "/status/data",
            "127.0.0.1:5000",
            "localhost",
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(kind, "application/json");
        let data: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!(data["ready"], true);
        assert_eq!(data["gauges"]["gameserver_sessions_active"], 0.0);
    }

    /// A directory of one room, `lobby`, that answers a signal with its payload reversed.
    struct Lobby;

    impl crate::api::rooms::Directory for Lobby {
        fn list(&self, query: &RoomQuery) -> crate::api::rooms::RoomPage {
            let lobby = crate::api::rooms::RoomInfo {
                name: "lobby".to_owned(),
                label: Some("tag".to_owned()),
                players: 3,
                parked: 1,
                locked: false,
                automatic: false,
            };
            let wanted = query.label.as_deref().is_none_or(|label| label == "tag");
            crate::api::rooms::RoomPage {
                total: 1,
                rooms: if wanted { vec![lobby] } else { Vec::new() },
                next_after: None,
            }
        }

        fn signal(&self, room: &str, payload: Bytes) -> crate::api::rooms::Answer {
            let room = room.to_owned();
            Box::pin(async move {
                if room != "lobby" {
                    return Err(SignalError::NoSuchRoom(room));
                }
                Ok(payload.iter().rev().copied().collect())
            })
        }
    }

    /// A signal request from `peer`, with the bearer `token` if any; the status and the body.
    async fn post_signal(
        app: &Router,
        room: &str,
        token: Option<&str>,
        body: Vec<u8>,
    ) -> (StatusCode, Vec<u8>) {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(format!("/rooms/{room}/signal"))
            .header(header::HOST, "127.0.0.1:9100");
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let mut request = request.body(Body::from(body)).expect("request");
        request
            .extensions_mut()
            .insert(Peer("127.0.0.1:5000".parse().expect("peer")));
        let mut app = app.clone();
        let response = tower_service::Service::call(&mut app, request)
            .await
            .expect("the router answers");
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        (status, body.to_vec())
    }

    #[tokio::test]
    async fn rooms_are_listed_on_a_read_and_signalled_with_the_token() {
        let lobby: Arc<Lobby> = Arc::new(Lobby);
        let weak: std::sync::Weak<Lobby> = Arc::downgrade(&lobby);
        let app = with_rooms(Pages::new(&[], None, false, &[]), Rooms::new(weak));
        let local = "127.0.0.1:5000";
        let (status, kind, body) = call(&app, Method::GET, "/rooms", local, "localhost").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(kind, "application/json");
        let page: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!(page["total"], 1);
        assert_eq!(page["rooms"][0]["name"], "lobby");
        assert_eq!(page["rooms"][0]["label"], "tag");
        assert_eq!(page["rooms"][0]["parked"], 1);
        assert!(page.get("next_after").is_none(), "{body}");
        let (_, _, body) = call(&app, Method::GET, "/rooms?label=race", local, "localhost").await;
        assert!(body.contains("\"rooms\":[]"), "{body}");
        // A far reader without the token is refused like on every other admin route.
        let far = "203.0.113.9:5000";
        let (status, ..) = call(&app, Method::GET, "/rooms", far, "evil.example").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);

        // Signals are writes: the token is required, even on loopback.
        let (status, _) = post_signal(&app, "lobby", None, b"abc".to_vec()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, answer) = post_signal(&app, "lobby", Some("s3cret"), b"abc".to_vec()).await;
        assert_eq!((status, answer.as_slice()), (StatusCode::OK, &b"cba"[..]));
        let (status, answer) = post_signal(&app, "attic", Some("s3cret"), Vec::new()).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(String::from_utf8_lossy(&answer).contains("attic"));
        let huge = vec![0; crate::api::rooms::MAX_SIGNAL_BYTES + 1];
        let (status, _) = post_signal(&app, "lobby", Some("s3cret"), huge).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);

        // Once the server stopped, the handle lists nothing and signals say so.
        drop(lobby);
        let (_, _, body) = call(&app, Method::GET, "/rooms", local, "localhost").await;
        assert!(body.contains("\"total\":0"), "{body}");
        let (status, _) = post_signal(&app, "lobby", Some("s3cret"), Vec::new()).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    }

    const PAGE: &str = "<meta name=\"websocket-port\" content=\"{{websocket_port}}\">\
                        <meta name=\"websocket-scheme\" content=\"{{websocket_scheme}}\">";

    #[tokio::test]
    async fn a_page_is_public_and_names_the_websocket_port_while_the_rest_stays_guarded() {
        let pages = Pages::new(
            &[("/play".to_owned(), PAGE)],
            Some("127.0.0.1:4321".parse().expect("addr")),
            false,
            &[],
        );
        let app = admin(pages);
        let far = "203.0.113.9:5000";
        let (status, kind, body) = call(&app, Method::GET, "/play", far, "evil.example").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(kind, "text/html; charset=utf-8");
        assert_eq!(
            body,
            "<meta name=\"websocket-port\" content=\"4321\">\
             <meta name=\"websocket-scheme\" content=\"ws\">"
        );
        // Over TLS the page is told wss.
        let tls = admin(Pages::new(
            &[("/play".to_owned(), PAGE)],
            Some("127.0.0.1:4321".parse().expect("addr")),
            true,
            &[],
        ));
        let (_, _, body) = call(&tls, Method::GET, "/play", far, "evil.example").await;
        assert!(body.ends_with("content=\"wss\">"), "{body}");
        // The admin routes keep their guard for the same request.
        let (status, ..) = call(&app, Method::GET, "/metrics", far, "evil.example").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, ..) = call(
            &app,
            Method::GET,
            "/metrics",
            "127.0.0.1:5000",
            "evil.example",
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, ..) = call(&app, Method::GET, "/elsewhere", far, "evil.example").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, ..) = call(&app, Method::POST, "/play", far, "evil.example").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    }

    #[tokio::test]
    async fn without_a_websocket_listener_a_page_says_what_is_missing() {
        let app = admin(Pages::new(&[("/play".to_owned(), PAGE)], None, false, &[]));
        let (status, _, body) =
            call(&app, Method::GET, "/play", "127.0.0.1:5000", "localhost").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(body.contains("server.websocket_listen"), "{body}");
    }

    #[tokio::test]
    async fn a_page_never_shadows_an_admin_route() {
        let pages = Pages::new(
            &[("/metrics".to_owned(), "a page")],
            Some("127.0.0.1:4321".parse().expect("addr")),
            false,
            &[],
        );
        let app = admin(pages);
        let far = "203.0.113.9:5000";
        let (status, _, body) = call(&app, Method::GET, "/metrics", far, "evil.example").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        let (status, _, body) =
            call(&app, Method::GET, "/metrics", "127.0.0.1:5000", "localhost").await;
        assert_eq!(status, StatusCode::OK);
        assert_ne!(body, "a page");
    }

    #[test]
    fn bearer_tokens_are_read_and_compared_exactly() {
        let h = headers(&[("authorization", "Bearer s3cret-token")]);
        assert_eq!(bearer(&h), Some("s3cret-token"));
        assert!(constant_time_eq(b"s3cret-token", b"s3cret-token"));
        assert!(!constant_time_eq(b"s3cret-token", b"s3cret-tokeN"));
        assert!(!constant_time_eq(b"s3cret", b"s3cret-token"));
        assert_eq!(bearer(&headers(&[("authorization", "Basic abc")])), None);
    }
}
