//! The running switch's HTTP endpoint (`[metrics] listen`): `/metrics` and `/status`
//! for monitoring, and the operators' routes (the exception queue and lookups by
//! confirmation number) behind the operator token when `[metrics] operator_token_file`
//! names one: a request without `Authorization: Bearer TOKEN` gets `401` and a log
//! line. Tokens are compared by their SHA-256 digests, so the comparison's time says
//! nothing about the token. The command line's end is [`super::operator`].

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use ring::digest::{SHA256, digest};
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::metrics::{Metrics, Status};
use crate::switch::decide::Decider;

/// Serves `/metrics` and `/status` on `addr` until `shutdown`, and with a decider the
/// exception queue (`/exceptions`, see [`super::queue`]) and lookups by confirmation
/// number (`/transactions/{confirmation}`, see [`super::lookup`]), behind
/// `operator_token` when there is one.
///
/// `more` are further operator routes (the back office's), mounted beside them behind
/// the same token.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    decider: Option<Arc<Decider>>,
    more: Option<Router>,
    operator_token: Option<String>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let mut app = Router::new()
        .route("/metrics", get(prometheus))
        .route("/status", get(status))
        .with_state(metrics);
    if let Some(decider) = decider {
        let mut routes =
            super::queue::routes(decider.clone()).merge(super::lookup::routes(decider));
        if let Some(more) = more {
            routes = routes.merge(more);
        }
        app = app.merge(behind_token(routes, operator_token.as_deref()));
    }
    let listener = tokio::net::TcpListener::bind(addr).await?;
    info!("metrics on http://{addr}/metrics");
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

async fn prometheus(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics.render(),
    )
}

async fn status(State(metrics): State<Arc<Metrics>>) -> axum::Json<Status> {
    axum::Json(metrics.status())
}

/// `routes` behind `token` when there is one.
fn behind_token(routes: Router, token: Option<&str>) -> Router {
    match token {
        None => routes,
        Some(token) => {
            let expected = Arc::new(Digest::of(token));
            routes.layer(axum::middleware::from_fn_with_state(
                expected,
                require_token,
            ))
        }
    }
}

/// A token's SHA-256.
struct Digest(Vec<u8>);

impl Digest {
    fn of(token: &str) -> Digest {
        Digest(digest(&SHA256, token.as_bytes()).as_ref().to_vec())
    }
}

async fn require_token(
    State(expected): State<Arc<Digest>>,
    request: Request,
    next: Next,
) -> Response {
    let presented = (request.headers().get(header::AUTHORIZATION))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| Digest::of(t.trim()));
    if presented.is_some_and(|p| p.0 == expected.0) {
        return next.run(request).await;
    }
    tracing::warn!(path = %request.uri().path(), "operator request without a valid token: refused");
    let body = serde_json::json!({
        "error": "an operator token is required (Authorization: Bearer TOKEN)"
    });
    (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response()
}
