//! Talking to the server's admin endpoint: scraping `/metrics`, reading back this run's closes
//! from `/closes`, and kicking sessions.
//!
//! The admin base URL is derived from `--metrics-url`: same scheme, host and port, so that one
//! flag is enough for reconciliation and the kick scenarios.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::Url;

/// The counter reconciliation compares.
pub const CLOSED_TOTAL: &str = "gameserver_sessions_closed_total";

/// Why the admin endpoint could not be used.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The URL does not parse.
    #[error("bad metrics URL {url:?}: {reason}")]
    BadUrl {
        /// The URL given.
        url: String,
        /// Why it does not parse.
        reason: String,
    },
    /// No HTTP answer.
    #[error("cannot reach {url}: {cause}")]
    Unreachable {
        /// The URL requested.
        url: String,
        /// The innermost cause the HTTP client reported (its outer layers repeat the URL).
        cause: String,
    },
    /// An HTTP answer that is not a success.
    #[error("{url} answered HTTP {status}")]
    Status {
        /// The URL requested.
        url: String,
        /// The status code.
        status: u16,
    },
    /// A page that is not this server's Prometheus metrics.
    #[error(
        "{url} does not serve game-server metrics (no gameserver_* samples): is it the server's admin /metrics?"
    )]
    NotGameServer {
        /// The URL requested.
        url: String,
    },
}

/// What `/closes?player_prefix=P&since=N` answers: the closes numbered `N` or later of the
/// players whose id starts with `P`, by reason (the server keeps a bounded record of recent
/// closes; `complete` is false when some of those were already dropped from it).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct CloseCounts {
    /// The number the next close on the server will get.
    pub next: u64,
    /// False when some close asked for was dropped from the server's record.
    pub complete: bool,
    /// How many closes the server's record keeps.
    pub capacity: usize,
    /// Closes counted, by reason.
    pub reasons: BTreeMap<String, u64>,
}

/// The admin endpoint of one server.
#[derive(Debug, Clone)]
pub struct Admin {
    http: reqwest::Client,
    metrics: Url,
    token: Option<String>,
}

impl Admin {
    /// An admin client for the server whose metrics are at `metrics_url`, sending `token` (the
    /// server's `admin.token`) as a bearer token when given.
    pub fn new(metrics_url: &str, token: Option<String>) -> Result<Admin, AdminError> {
        let bad = |reason: String| AdminError::BadUrl {
            url: metrics_url.to_owned(),
            reason,
        };
        let metrics = Url::parse(metrics_url).map_err(|e| bad(e.to_string()))?;
        if metrics.scheme() != "http" {
            return Err(bad(
                "only http:// is supported (the admin endpoint has no TLS)".into(),
            ));
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .no_proxy()
            .build()
            .map_err(|e| bad(e.to_string()))?;
        Ok(Admin {
            http,
            metrics,
            token,
        })
    }

    /// An admin client for the server whose admin port is `addr`.
    pub fn at(addr: std::net::SocketAddr, token: Option<String>) -> Admin {
        Admin::new(&format!("http://{addr}/metrics"), token)
            .unwrap_or_else(|error| unreachable!("an address makes a valid URL: {error}"))
    }

    /// The same client opening a fresh connection for every request, so that a measurement of
    /// a request includes its connect.
    pub fn without_keepalive(self) -> Admin {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .no_proxy()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap_or(self.http);
        Admin { http, ..self }
    }

    /// `GET path` on the admin port: the status and the body.
    pub async fn get(&self, path: &str) -> Result<(u16, String), AdminError> {
        let url = self.url(path);
        let failed = |error: reqwest::Error| AdminError::Unreachable {
            url: url.to_string(),
            cause: root_cause(&error),
        };
        let response = self
            .authorized(self.http.get(url.clone()))
            .send()
            .await
            .map_err(failed)?;
        let status = response.status().as_u16();
        Ok((status, response.text().await.map_err(failed)?))
    }

    /// `GET path`, which must answer 200: the body.
    pub async fn get_ok(&self, path: &str) -> Result<String, AdminError> {
        match self.get(path).await? {
            (200, body) => Ok(body),
            (status, _) => Err(AdminError::Status {
                url: self.url(path).to_string(),
                status,
            }),
        }
    }

    /// `POST path` on the admin port: the status.
    pub async fn post(&self, path: &str) -> Result<u16, AdminError> {
        let url = self.url(path);
        let response = self
            .authorized(self.http.post(url.clone()))
            .send()
            .await
            .map_err(|error| AdminError::Unreachable {
                url: url.to_string(),
                cause: root_cause(&error),
            })?;
        Ok(response.status().as_u16())
    }

    /// `path` (with its query) on the metrics URL's origin.
    fn url(&self, path: &str) -> Url {
        self.metrics
            .join(path)
            .unwrap_or_else(|_| self.metrics.clone())
    }

    fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// The metrics URL.
    pub fn metrics_url(&self) -> &str {
        self.metrics.as_str()
    }

    /// The kick URL for a session: `/sessions/{id}/kick` on the metrics URL's origin.
    pub fn kick_url(&self, session_id: u64) -> Url {
        let mut url = self.metrics.clone();
        url.set_path(&format!("/sessions/{session_id}/kick"));
        url.set_query(None);
        url.set_fragment(None);
        url
    }

    /// Scrapes `/metrics` and returns `gameserver_sessions_closed_total` by reason.
    pub async fn closed_by_reason(&self) -> Result<BTreeMap<String, f64>, AdminError> {
        let url = self.metrics.as_str().to_owned();
        let unreachable = |error: reqwest::Error| AdminError::Unreachable {
            url: url.clone(),
            cause: root_cause(&error),
        };
        let response = self
            .authorized(self.http.get(self.metrics.clone()))
            .send()
            .await
            .map_err(unreachable)?;
        if !response.status().is_success() {
            return Err(AdminError::Status {
                url,
                status: response.status().as_u16(),
            });
        }
        let body = response.text().await.map_err(unreachable)?;
        parse_closed(&body).ok_or(AdminError::NotGameServer { url })
    }

    /// The closes numbered `since` or later of the players whose id starts with `prefix`, from
    /// `GET /closes`; `None` when the server has no such endpoint (an older server: HTTP 404).
    pub async fn closes(
        &self,
        prefix: &str,
        since: u64,
    ) -> Result<Option<CloseCounts>, AdminError> {
        let mut url = self.metrics.clone();
        url.set_path("/closes");
        url.set_fragment(None);
        url.query_pairs_mut()
            .clear()
            .append_pair("player_prefix", prefix)
            .append_pair("since", &since.to_string());
        let shown = url.to_string();
        let unreachable = |error: reqwest::Error| AdminError::Unreachable {
            url: shown.clone(),
            cause: root_cause(&error),
        };
        let response = self
            .authorized(self.http.get(url.clone()))
            .send()
            .await
            .map_err(unreachable)?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !response.status().is_success() {
            return Err(AdminError::Status {
                url: shown,
                status: response.status().as_u16(),
            });
        }
        let body = response.bytes().await.map_err(unreachable)?;
        serde_json::from_slice(&body)
            .map(Some)
            .map_err(|_| AdminError::NotGameServer { url: shown })
    }

    /// Kicks a session through `POST /sessions/{id}/kick`.
    pub async fn kick(&self, session_id: u64) -> Result<(), AdminError> {
        let url = self.kick_url(session_id);
        let response = self
            .authorized(self.http.post(url.clone()))
            .send()
            .await
            .map_err(|error| AdminError::Unreachable {
                url: url.to_string(),
                cause: root_cause(&error),
            })?;
        if !response.status().is_success() {
            return Err(AdminError::Status {
                url: url.to_string(),
                status: response.status().as_u16(),
            });
        }
        Ok(())
    }
}

/// The innermost error in a chain: for a refused connection, "Connection refused (os error
/// 111)" rather than three layers that each repeat the URL.
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

/// Parses a Prometheus text page into the closed-sessions counter by reason. `None` when the page
/// carries no `gameserver_` sample at all (not this server's metrics).
pub fn parse_closed(body: &str) -> Option<BTreeMap<String, f64>> {
    let lines = body.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).ok()?;
    if !scrape
        .samples
        .iter()
        .any(|s| s.metric.starts_with("gameserver_"))
    {
        return None;
    }
    let mut out = BTreeMap::new();
    for sample in scrape.samples.iter().filter(|s| s.metric == CLOSED_TOTAL) {
        let value = match sample.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
            _ => continue,
        };
        if let Some(reason) = sample.labels.get("reason") {
            *out.entry(reason.to_owned()).or_insert(0.0) += value;
        }
    }
    Some(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn closed_counter_is_read_by_reason() {
        let page = "\
# HELP gameserver_sessions_closed_total Sessions closed, by reason.
# TYPE gameserver_sessions_closed_total counter
gameserver_sessions_closed_total{reason=\"client_quit\"} 12
gameserver_sessions_closed_total{reason=\"peer_reset\"} 3
# TYPE gameserver_sessions_active gauge
gameserver_sessions_active 4
";
        let closed = parse_closed(page).unwrap();
        assert_eq!(closed.get("client_quit"), Some(&12.0));
        assert_eq!(closed.get("peer_reset"), Some(&3.0));
        assert_eq!(closed.len(), 2);
    }

    #[test]
    fn a_page_without_game_server_metrics_is_refused() {
        assert!(parse_closed("# TYPE up gauge\nup 1\n").is_none());
        assert!(parse_closed("<html>hello</html>").is_none());
        // A fresh server with no closes yet is still a game server.
        assert_eq!(
            parse_closed("gameserver_sessions_active 0\n"),
            Some(BTreeMap::new())
        );
    }

    #[test]
    fn kick_url_keeps_the_origin_and_replaces_the_path() {
        let admin = Admin::new("http://127.0.0.1:9100/metrics?x=1", None).unwrap();
        assert_eq!(
            admin.kick_url(42).as_str(),
            "http://127.0.0.1:9100/sessions/42/kick"
        );
        assert!(matches!(
            Admin::new("https://h/metrics", None),
            Err(AdminError::BadUrl { .. })
        ));
        assert!(matches!(
            Admin::new("not a url", None),
            Err(AdminError::BadUrl { .. })
        ));
    }
}
