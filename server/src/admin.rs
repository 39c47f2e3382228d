//! The admin HTTP listener: metrics for Prometheus, health and readiness probes, and the
//! operator's view of live sessions with a kick button. Keep it on loopback or a private network.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::net::TcpListener;

use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::shutdown::Shutdown;

#[derive(Clone, Debug)]
struct Admin {
    metrics: Metrics,
    registry: Arc<Registry>,
    shutdown: Shutdown,
}

/// The admin routes.
fn router(metrics: Metrics, registry: Arc<Registry>, shutdown: Shutdown) -> Router {
    Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/sessions", get(sessions))
        .route("/sessions/{id}/kick", post(kick))
        .with_state(Admin {
            metrics,
            registry,
            shutdown,
        })
}

/// Serves until `stop` completes.
pub(crate) async fn serve(
    listener: TcpListener,
    metrics: Metrics,
    registry: Arc<Registry>,
    shutdown: Shutdown,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(metrics, registry, shutdown))
        .with_graceful_shutdown(stop)
        .await
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

async fn sessions(State(admin): State<Admin>) -> Response {
    axum::Json(admin.registry.list()).into_response()
}

async fn kick(State(admin): State<Admin>, Path(id): Path<u64>) -> Response {
    match admin.registry.get(id) {
        Some(player) => {
            tracing::info!(
                session = id,
                player = player.player_id(),
                "kicked by an operator"
            );
            player.kick();
            (StatusCode::ACCEPTED, format!("kicking session {id}\n")).into_response()
        }
        None => (StatusCode::NOT_FOUND, format!("no live session {id}\n")).into_response(),
    }
}
