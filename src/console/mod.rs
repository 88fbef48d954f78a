//! The operators' console (BACKOFFICE.md §4): server-rendered pages over a JSON API
//! under `/api/v1`, on `[console] listen`. Users sign in with a password and get a
//! session cookie; machine clients (an IVR) present a bearer token. Who may do what is
//! decided in [`scope`], in one place on the server; every change is a journal record
//! with its audit entry ([`users`], [`accounts`], [`approvals`]); money moves only
//! when a second person approves ([`approvals`]).
//!
//! May import: [`crate::backoffice`], [`crate::operate`], [`crate::switch`],
//! [`crate::durable`], [`crate::vocab`], [`crate::wire`], [`crate::config`].

pub mod accounts;
pub mod api;
pub mod approvals;
pub mod enrol;
pub mod pages;
pub mod scope;
pub mod secrets;
pub mod sessions;
pub mod users;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Json;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio_util::sync::CancellationToken;

use crate::backoffice::BackofficeError;
use crate::config::Config;
use crate::operate::operator::Refusal;
use crate::switch::decide::Decider;
use scope::Principal;
use sessions::Sessions;

/// A JSON answer of the operator endpoint's routes, or a refusal.
pub type Answer<T> = Result<Json<T>, (StatusCode, Json<Refusal>)>;

/// What the console's handlers share.
#[derive(Clone)]
pub struct Console {
    inner: Arc<Inner>,
}

struct Inner {
    decider: Arc<Decider>,
    config: Arc<Config>,
    sessions: Sessions,
    secure: bool,
    /// Serializes changes that check before they write (a MIN in use, a pending
    /// request for an item).
    changes: Mutex<()>,
    pages: pages::Pages,
    handles: secrets::Handles,
}

impl Console {
    /// A console on `decider`'s data.
    pub fn new(decider: Arc<Decider>, config: Arc<Config>) -> Result<Console, String> {
        let secure = config.console.tls.is_some();
        let sessions = Sessions::new(&config.console);
        Ok(Console {
            inner: Arc::new(Inner {
                decider,
                config,
                sessions,
                secure,
                changes: Mutex::new(()),
                pages: pages::Pages::new()?,
                handles: secrets::Handles::new().map_err(|e| e.to_string())?,
            }),
        })
    }

    /// The running switch's decider.
    pub fn decider(&self) -> &Decider {
        &self.inner.decider
    }

    /// The config.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The sessions.
    pub fn sessions(&self) -> &Sessions {
        &self.inner.sessions
    }

    /// Whether cookies are `Secure` (HTTPS).
    pub fn secure(&self) -> bool {
        self.inner.secure
    }

    /// The lock that serializes checked changes.
    pub fn changes(&self) -> std::sync::MutexGuard<'_, ()> {
        (self.inner.changes.lock()).unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The account number a route names, by itself or by a page's handle (`404` for a
    /// handle that does not open).
    pub fn account_number(&self, text: &str) -> Result<String, ApiError> {
        self.inner.handles.open(text).ok_or(ApiError::NotFound)
    }

    /// The handle pages use for `number`.
    pub fn handle(&self, number: &str) -> String {
        self.inner.handles.seal(number)
    }

    /// The page templates.
    pub fn pages(&self) -> &pages::Pages {
        &self.inner.pages
    }

    /// Runs `work` on a blocking thread (journal waits, index reads).
    pub async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Console) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let console = self.clone();
        tokio::task::spawn_blocking(move || work(&console))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?
    }
}

/// Why a console request was refused.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Not signed in (or a bad token).
    #[error("sign in first")]
    Unauthorized,
    /// Signed in, but the role may not (or the CSRF token is missing).
    #[error("{0}")]
    Forbidden(String),
    /// Nothing there, or nothing in scope.
    #[error("not found")]
    NotFound,
    /// Refused as things stand (a pending request for the same item, a state).
    #[error("{0}")]
    Conflict(String),
    /// A request the §4 table answers with `422 {"error", "reason"}`.
    #[error("{error}: {reason}")]
    Invalid {
        /// `invalid_account`, `invalid_min`, `min_in_use`, `bad_request`, ...
        error: &'static str,
        /// Why.
        reason: String,
    },
    /// Too many failed sign-ins.
    #[error("too many failed sign-ins: try again later")]
    Throttled,
    /// The switch failed.
    #[error("{0}")]
    Internal(String),
}

impl From<BackofficeError> for ApiError {
    fn from(e: BackofficeError) -> ApiError {
        match e {
            BackofficeError::Input(reason) => ApiError::Invalid {
                error: "bad_request",
                reason,
            },
            BackofficeError::Refused(why) => ApiError::Conflict(why),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<crate::durable::store::StoreError> for ApiError {
    fn from(e: crate::durable::store::StoreError) -> ApiError {
        ApiError::Internal(e.to_string())
    }
}

impl From<crate::switch::decide::SwitchError> for ApiError {
    fn from(e: crate::switch::decide::SwitchError) -> ApiError {
        ApiError::Internal(e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = match &self {
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, error("unauthorized", None)),
            ApiError::Forbidden(why) => (StatusCode::FORBIDDEN, error("forbidden", Some(why))),
            ApiError::NotFound => (StatusCode::NOT_FOUND, error("not_found", None)),
            ApiError::Conflict(why) => (StatusCode::CONFLICT, error("conflict", Some(why))),
            ApiError::Invalid { error: e, reason } => {
                (StatusCode::UNPROCESSABLE_ENTITY, error(e, Some(reason)))
            }
            ApiError::Throttled => (StatusCode::TOO_MANY_REQUESTS, error("throttled", None)),
            ApiError::Internal(why) => {
                tracing::error!("console: {why}");
                (StatusCode::INTERNAL_SERVER_ERROR, error("internal", None))
            }
        };
        (status, Json(body)).into_response()
    }
}

fn error(code: &str, reason: Option<&String>) -> serde_json::Value {
    match reason {
        Some(reason) => serde_json::json!({ "error": code, "reason": reason }),
        None => serde_json::json!({ "error": code }),
    }
}

/// The signed-in user or client behind a request, checked: a bearer token names a
/// client; a session cookie a user who is still enabled, and on a change it must come
/// with the session's `X-CSRF-Token`.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Who.
    pub principal: Principal,
    /// The session's CSRF token (none for a bearer client).
    pub csrf: Option<String>,
}

impl FromRequestParts<Console> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, console: &Console) -> Result<Caller, ApiError> {
        let headers = parts.headers.clone();
        let change = parts.method != Method::GET && parts.method != Method::HEAD;
        console
            .blocking(move |console| caller(console, &headers, change))
            .await
    }
}

fn caller(console: &Console, headers: &HeaderMap, change: bool) -> Result<Caller, ApiError> {
    let store = console.decider().store();
    if let Some(token) = bearer(headers) {
        let client = store.client_by_token(&secrets::digest_hex(token))?;
        return match client.filter(|c| !c.disabled) {
            Some(client) => Ok(Caller {
                principal: Principal::Client {
                    name: client.name,
                    scope: client.scope,
                },
                csrf: None,
            }),
            None => Err(ApiError::Unauthorized),
        };
    }
    let id = session_id(headers).ok_or(ApiError::Unauthorized)?;
    let found = (console.sessions().find(id, Instant::now())).ok_or(ApiError::Unauthorized)?;
    let user = store.user(&found.user)?.ok_or(ApiError::Unauthorized)?;
    if user.disabled {
        console.sessions().close_user(&user.name);
        return Err(ApiError::Unauthorized);
    }
    if change {
        let presented = headers.get("x-csrf-token").and_then(|v| v.to_str().ok());
        if !presented.is_some_and(|p| secrets::same(p, &found.csrf)) {
            return Err(ApiError::Forbidden(
                "a change needs the session's X-CSRF-Token header".into(),
            ));
        }
    }
    Ok(Caller {
        principal: Principal::User(user),
        csrf: Some(found.csrf),
    })
}

/// The bearer token of a request, if any.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    (headers.get(header::AUTHORIZATION))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

/// The session cookie of a request, if any.
pub fn session_id(headers: &HeaderMap) -> Option<&str> {
    (headers.get_all(header::COOKIE).iter())
        .filter_map(|v| v.to_str().ok())
        .find_map(sessions::cookie_value)
}

impl Caller {
    /// Refuses (`403`) unless the role may `action`.
    pub fn require(&self, action: scope::Action) -> Result<(), ApiError> {
        if self.principal.may(action) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "{} may not do this",
                self.principal.role().map_or("this client", |r| r.as_str())
            )))
        }
    }
}

/// The console's router: the pages and the API.
pub fn router(console: Console) -> axum::Router {
    api::routes()
        .merge(pages::routes())
        .with_state(console)
        .layer(axum::middleware::map_response(pages::harden))
}

/// Serves the console on `[console] listen` until `shutdown`. A port already taken is
/// logged and the switch goes on without its console: the money path does not stop for
/// the operators' screens.
pub async fn serve(console: Console, shutdown: CancellationToken) {
    let config = console.config().console.clone();
    serve_router(
        "console",
        config.listen,
        config.tls.as_ref(),
        router(console),
        shutdown,
    )
    .await;
}

/// Serves `app` on `addr` (HTTPS with `tls`) until `shutdown`, as `name` in the logs. A
/// port that cannot be had or TLS files that do not load are logged and `app` is off;
/// nothing else stops.
pub async fn serve_router(
    name: &str,
    addr: SocketAddr,
    tls: Option<&crate::config::ConsoleTls>,
    app: axum::Router,
    shutdown: CancellationToken,
) {
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(listener) => listener,
        Err(e) => {
            tracing::error!("{name}: cannot listen on {addr}: {e}; the {name} is off");
            return;
        }
    };
    let served = match tls {
        None => {
            tracing::info!("{name} on http://{addr}/");
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { shutdown.cancelled().await })
                .await
        }
        Some(tls) => {
            let client_ca = tls.client_ca.as_deref();
            let acceptor = match crate::wire::tls::server_config(&tls.cert, &tls.key, client_ca) {
                Ok(config) => tokio_rustls::TlsAcceptor::from(config),
                Err(e) => {
                    tracing::error!("{name}: TLS: {e}; the {name} is off");
                    return;
                }
            };
            let listener = match tls_listener::TlsListener::new(listener, acceptor) {
                Ok(listener) => listener,
                Err(e) => {
                    tracing::error!("{name}: {e}; the {name} is off");
                    return;
                }
            };
            tracing::info!("{name} on https://{addr}/");
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { shutdown.cancelled().await })
                .await
        }
    };
    if let Err(e) = served {
        tracing::error!("{name}: {e}");
    }
}

mod tls_listener {
    //! A TLS listener for axum: accepts TCP and runs each handshake in a task of its
    //! own (at most 10 s), so a client that connects and says nothing holds up no one;
    //! a failed handshake is logged and dropped.

    use std::net::SocketAddr;
    use std::time::Duration;

    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::mpsc;
    use tokio_rustls::TlsAcceptor;
    use tokio_rustls::server::TlsStream;

    type Accepted = (TlsStream<TcpStream>, SocketAddr);

    pub struct TlsListener {
        accepted: mpsc::Receiver<Accepted>,
        local: SocketAddr,
    }

    impl TlsListener {
        pub fn new(listener: TcpListener, acceptor: TlsAcceptor) -> std::io::Result<TlsListener> {
            let local = listener.local_addr()?;
            let (tx, accepted) = mpsc::channel(64);
            tokio::spawn(accept_loop(listener, acceptor, tx));
            Ok(TlsListener { accepted, local })
        }
    }

    async fn accept_loop(listener: TcpListener, acceptor: TlsAcceptor, tx: mpsc::Sender<Accepted>) {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                // The server stopped: let the port go.
                () = tx.closed() => return,
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!("console: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                let handshake = acceptor.accept(stream);
                match tokio::time::timeout(Duration::from_secs(10), handshake).await {
                    Ok(Ok(tls)) => {
                        let _ = tx.send((tls, peer)).await;
                    }
                    Ok(Err(e)) => tracing::warn!("console: TLS handshake from {peer}: {e}"),
                    Err(_) => tracing::warn!("console: TLS handshake from {peer}: timed out"),
                }
            });
        }
    }

    impl axum::serve::Listener for TlsListener {
        type Io = TlsStream<TcpStream>;
        type Addr = SocketAddr;

        async fn accept(&mut self) -> (Self::Io, Self::Addr) {
            match self.accepted.recv().await {
                Some(accepted) => accepted,
                // The accepting task ended (it never does while this listener lives).
                None => std::future::pending().await,
            }
        }

        fn local_addr(&self) -> std::io::Result<Self::Addr> {
            Ok(self.local)
        }
    }
}
