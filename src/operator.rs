//! The operators' side of the running switch's HTTP endpoint (`[metrics] listen`): the
//! exception queue and the lookups, both ends. The switch mounts their routes behind
//! the operator token when `[metrics] operator_token_file` names one (a request without
//! `Authorization: Bearer TOKEN` gets `401`); the command line reaches them through an
//! [`Endpoint`], which sends the token from the same file. Tokens are compared by their
//! SHA-256 digests, so the comparison's time says nothing about the token.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ring::digest::{SHA256, digest};

use crate::config::Config;
use crate::queue::QueueError;
use crate::switch::decide::Decider;

/// The queue and lookup routes for the running switch, behind `token` when there is one.
pub fn routes(decider: Arc<Decider>, token: Option<&str>) -> axum::Router {
    let routes = crate::queue::routes(decider.clone()).merge(crate::lookup::routes(decider));
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

/// Where the command line reaches a running switch's operator routes.
pub struct Endpoint {
    addr: SocketAddr,
    token: Option<String>,
}

impl Endpoint {
    /// The endpoint of the switch that holds `config`'s data directory.
    pub fn of(config: &Config) -> Result<Endpoint, QueueError> {
        let addr = config.metrics.listen.ok_or_else(|| {
            QueueError::Remote(format!(
                "{} is in use by a running switch without a [metrics] listen address",
                config.data_dir.display()
            ))
        })?;
        let token = config
            .metrics
            .operator_token()
            .map_err(QueueError::Remote)?;
        Ok(Endpoint { addr, token })
    }

    /// The URL of `path` (starting with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `request` with the operator token, when there is one.
    pub fn authorize<B>(&self, request: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.token {
            Some(token) => {
                request.header(header::AUTHORIZATION.as_str(), format!("Bearer {token}"))
            }
            None => request,
        }
    }
}
