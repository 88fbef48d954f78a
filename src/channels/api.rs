//! The channel API of BACKOFFICE.md §6 on `[channels] listen`: `POST
//! /api/v1/replenishments` (a bearer client of scope `channels`, an `Idempotency-Key`,
//! one of the three bodies), `GET /api/v1/replenishments/{key}` and the OpenAPI
//! document (`specs/channels.openapi.json`) at `/api/v1/openapi.json`. The handlers only
//! read and answer; what happens is [`super::flow`]'s.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::flow::{Channels, Reply};
use super::request;
use crate::console::{bearer, secrets};
use crate::durable::record::{ChannelRequest, ChannelStatus};
use crate::vocab::people::ClientScope;

/// The OpenAPI document of this API.
pub const OPENAPI: &str = include_str!("../../specs/channels.openapi.json");

/// The largest body read.
const MAX_BODY: usize = 16 * 1024;

/// The API's routes.
pub fn router(channels: Channels) -> Router {
    Router::new()
        .route("/api/v1/replenishments", post(replenish))
        .route("/api/v1/replenishments/{key}", get(status))
        .route("/api/v1/openapi.json", get(openapi))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(channels)
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// `POST /api/v1/replenishments`.
async fn replenish(State(channels): State<Channels>, headers: HeaderMap, body: Bytes) -> Response {
    let client = match client(&channels, &headers).await {
        Ok(client) => client,
        Err(refused) => return refused.into_response(),
    };
    let key = match idempotency_key(&headers) {
        Ok(key) => key,
        Err(refused) => return refused.into_response(),
    };
    let asked = match request::read(&body, channels.config()) {
        Ok(asked) => asked,
        Err(bad) => return refusal("bad_request", &bad.0),
    };
    match channels.submit(&client, &key, asked).await {
        Ok((reply, replayed)) => {
            let mut answer = answer(&key, &reply);
            if replayed
                && !matches!(
                    reply,
                    Reply::Refused {
                        error: "key_reused",
                        ..
                    }
                )
            {
                answer
                    .headers_mut()
                    .insert("idempotency-replayed", HeaderValue::from_static("true"));
            }
            answer
        }
        Err(e) => internal(&e.to_string()),
    }
}

/// `GET /api/v1/replenishments/{key}`: `200` with where it stands, `404` when this
/// client never used the key.
async fn status(
    State(channels): State<Channels>,
    headers: HeaderMap,
    Path(key): Path<String>,
) -> Response {
    let client = match client(&channels, &headers).await {
        Ok(client) => client,
        Err(refused) => return refused.into_response(),
    };
    let id = format!("{client}/{key}");
    let found = tokio::task::spawn_blocking(move || channels.status(&id)).await;
    match found {
        Ok(Ok(Some(Reply::Request(request)))) => {
            (StatusCode::OK, axum::Json(shown(&key, &request))).into_response()
        }
        Ok(Ok(_)) => (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"error": "not_found"})),
        )
            .into_response(),
        Ok(Err(e)) => internal(&e.to_string()),
        Err(e) => internal(&e.to_string()),
    }
}

/// The answer to a request as the §6 table says.
fn answer(key: &str, reply: &Reply) -> Response {
    let request = match reply {
        Reply::Refused { error, reason } => return refusal(error, reason),
        Reply::Request(request) => request,
    };
    let status = match (request.status, request.reason.as_deref()) {
        (ChannelStatus::Completed, _) => StatusCode::CREATED,
        (ChannelStatus::Pending, _) => StatusCode::ACCEPTED,
        (ChannelStatus::Declined, Some("wrong_pin")) => {
            let body =
                json!({"error": "wrong_pin", "attempts_left": request.attempts_left.unwrap_or(0)});
            return (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
        }
        (ChannelStatus::Declined, Some("locked")) => {
            return (StatusCode::LOCKED, axum::Json(json!({"error": "locked"}))).into_response();
        }
        (ChannelStatus::Declined, _) => StatusCode::PAYMENT_REQUIRED,
    };
    (status, axum::Json(shown(key, request))).into_response()
}

/// A request's status body: `{"id","status"}` with `confirmation` and `amount` when
/// completed, `reason` when declined.
fn shown(key: &str, request: &ChannelRequest) -> Value {
    match request.status {
        ChannelStatus::Completed => json!({
            "id": key,
            "status": "completed",
            "confirmation": request.confirmation,
            "amount": request.amount,
        }),
        ChannelStatus::Pending => json!({"id": key, "status": "pending"}),
        ChannelStatus::Declined => json!({
            "id": key,
            "status": "declined",
            "reason": request.reason.as_deref().unwrap_or("declined"),
        }),
    }
}

/// A refusal before the request is read: its status and body.
type Refusal = (StatusCode, axum::Json<Value>);

/// The bearer client of scope `channels` behind a request, or `401`.
async fn client(channels: &Channels, headers: &HeaderMap) -> Result<String, Refusal> {
    let unauthorized = || {
        let body = json!({"error": "unauthorized"});
        (StatusCode::UNAUTHORIZED, axum::Json(body))
    };
    let Some(token) = bearer(headers).map(secrets::digest_hex) else {
        return Err(unauthorized());
    };
    let lookup = channels.clone();
    let found =
        tokio::task::spawn_blocking(move || lookup.decider().store().client_by_token(&token)).await;
    match found {
        Ok(Ok(Some(c))) if !c.disabled && c.scope == ClientScope::Channels => Ok(c.name),
        Ok(Ok(_)) => Err(unauthorized()),
        Ok(Err(e)) => Err(internal_refusal(&e.to_string())),
        Err(e) => Err(internal_refusal(&e.to_string())),
    }
}

/// The `Idempotency-Key` header: 1 to 64 visible ASCII characters.
fn idempotency_key(headers: &HeaderMap) -> Result<String, Refusal> {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let visible = key.bytes().all(|b| b.is_ascii_graphic());
    if key.is_empty() || key.len() > 64 || !visible {
        let reason = "an Idempotency-Key header of 1 to 64 visible ASCII characters is required";
        let body = json!({"error": "bad_idempotency_key", "reason": reason});
        return Err((StatusCode::UNPROCESSABLE_ENTITY, axum::Json(body)));
    }
    Ok(key.to_owned())
}

fn refusal(error: &str, reason: &str) -> Response {
    let body = json!({"error": error, "reason": reason});
    (StatusCode::UNPROCESSABLE_ENTITY, axum::Json(body)).into_response()
}

fn internal(why: &str) -> Response {
    internal_refusal(why).into_response()
}

fn internal_refusal(why: &str) -> Refusal {
    tracing::error!("channels: {why}");
    let body = json!({"error": "internal"});
    (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_served_document_is_the_one_in_specs() {
        let document: Value = serde_json::from_str(OPENAPI).expect("JSON");
        assert_eq!(document["openapi"], "3.0.3");
        assert!(document["paths"]["/api/v1/replenishments"]["post"].is_object());
    }

    #[test]
    fn idempotency_keys_are_one_to_sixty_four_visible_characters() {
        let with = |key: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(
                "idempotency-key",
                HeaderValue::from_str(key).expect("header"),
            );
            idempotency_key(&headers).is_ok()
        };
        assert!(with("a") && with(&"k".repeat(64)));
        assert!(!with("") && !with(&"k".repeat(65)) && !with("two words"));
        assert!(idempotency_key(&HeaderMap::new()).is_err());
    }
}
