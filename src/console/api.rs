//! The console's JSON API under `/api/v1` (BACKOFFICE.md §4): sign-in and sign-out,
//! accounts, transactions, activation (by a user or an IVR client), blocking,
//! adjustments and resubmissions (four eyes), approvals, the exception queue, the
//! reconciliation breaks and the audit trail. Each handler checks its caller's role
//! and scope through [`super::scope`] and does its work on a blocking thread.

use std::time::Instant;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use super::accounts::{self, Card, View};
use super::approvals::{self, Shown};
use super::enrol::{self, EnrolRequest, EnrolmentShown};
use super::scope::{Action, Principal};
use super::users::audit;
use super::{ApiError, Caller, Console, secrets, sessions};
use crate::durable::record::Record;
use crate::operate::lookup::Found;
use crate::operate::queue;
use crate::vocab::people::Request;

/// The API's routes.
pub fn routes() -> axum::Router<Console> {
    axum::Router::new()
        .route(
            "/api/v1/session",
            post(sign_in).delete(sign_out).get(whoami),
        )
        .route("/api/v1/accounts/{account}", get(account))
        .route("/api/v1/accounts/{account}/activation", post(activation))
        .route("/api/v1/accounts/{account}/block", post(block))
        .route("/api/v1/accounts/{account}/unblock", post(unblock))
        .route(
            "/api/v1/accounts/{account}/channel-unlock",
            post(channel_unlock),
        )
        .route("/api/v1/activations", post(client_activation))
        .route("/api/v1/transactions/{confirmation}", get(transaction))
        .route("/api/v1/search", post(search))
        .route("/api/v1/adjustments", post(adjustment))
        .route("/api/v1/exceptions", get(exceptions))
        .route("/api/v1/exceptions/{id}/resubmit", post(resubmit))
        .route("/api/v1/approvals", get(approval_list))
        .route("/api/v1/approvals/{id}/approve", post(approve))
        .route("/api/v1/approvals/{id}/reject", post(reject))
        .route("/api/v1/breaks", get(breaks))
        .route("/api/v1/audit", get(audit_trail))
}

#[derive(Deserialize)]
struct SignIn {
    username: String,
    password: String,
}

#[derive(Serialize)]
struct Signed {
    csrf: String,
    user: String,
    role: &'static str,
}

/// `POST /api/v1/session`: a new session (a new id every time) or `401`; `429` while
/// the user is locked out after five failures in a row, whatever the password.
async fn sign_in(State(console): State<Console>, Json(body): Json<SignIn>) -> Response {
    let secure = console.secure();
    let signed = console
        .blocking(move |console| sign_in_now(console, &body.username, &body.password))
        .await;
    match signed {
        Ok((signed, id)) => (
            [(header::SET_COOKIE, sessions::set_cookie(&id, secure))],
            Json(signed),
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

fn sign_in_now(
    console: &Console,
    username: &str,
    password: &str,
) -> Result<(Signed, String), ApiError> {
    let now = Instant::now();
    // A name as typed, made safe for the log and the trail.
    let target: String = (username.chars().take(32))
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '?'
            }
        })
        .collect();
    let note = |result: &str| {
        let entry = audit(&target, "session.sign_in", &target, result);
        console
            .decider()
            .journal_records(&[Record::Audited(Box::new(entry))])
    };
    if console.sessions().throttled(username, now) {
        note("throttled")?;
        return Err(ApiError::Throttled);
    }
    let user = console.decider().store().user(username)?;
    let hash = user.as_ref().map(|u| u.password_hash.as_str());
    let good = secrets::verify_password(password, hash);
    let user = match user {
        Some(user) if good && !user.disabled => user,
        _ => {
            console.sessions().failed(username, now);
            tracing::warn!(user = %target, "console: sign-in refused");
            note("refused")?;
            return Err(ApiError::Unauthorized);
        }
    };
    let opened = (console.sessions().open(&user.name, now))
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    note("ok")?;
    let signed = Signed {
        csrf: opened.csrf,
        user: user.name,
        role: user.role.as_str(),
    };
    Ok((signed, opened.id))
}

/// `DELETE /api/v1/session`: signs out (the cookie is cleared).
async fn sign_out(State(console): State<Console>, caller: Caller, headers: HeaderMap) -> Response {
    if let Some(id) = super::session_id(&headers) {
        console.sessions().close(id);
    }
    let name = caller.principal.name().to_owned();
    let noted = console
        .blocking(move |console| {
            let entry = audit(&name, "session.sign_out", &name, "ok");
            Ok(console
                .decider()
                .journal_records(&[Record::Audited(Box::new(entry))])?)
        })
        .await;
    if let Err(e) = noted {
        return e.into_response();
    }
    (
        [(header::SET_COOKIE, sessions::clear_cookie(console.secure()))],
        StatusCode::NO_CONTENT,
    )
        .into_response()
}

/// `GET /api/v1/session`: who is signed in, and the session's CSRF token.
async fn whoami(caller: Caller) -> Result<Json<serde_json::Value>, ApiError> {
    let role = caller.principal.role().map(|r| r.as_str());
    Ok(Json(serde_json::json!({
        "user": caller.principal.name(),
        "role": role,
        "csrf": caller.csrf,
    })))
}

async fn account(
    State(console): State<Console>,
    caller: Caller,
    Path(number): Path<String>,
) -> Result<Json<View>, ApiError> {
    caller.require(Action::Read)?;
    let number = console.account_number(&number)?;
    let view = console
        .blocking(move |console| accounts::view(console, &caller.principal, &number))
        .await?;
    Ok(Json(view))
}

#[derive(Deserialize)]
struct Activation {
    min: String,
    #[serde(flatten)]
    enrol: EnrolRequest,
}

#[derive(Serialize)]
struct Activated {
    status: &'static str,
    min: String,
    /// The channel enrolment as it stands (BACKOFFICE.md §6), when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    enrolment: Option<EnrolmentShown>,
}

async fn activation(
    State(console): State<Console>,
    caller: Caller,
    Path(number): Path<String>,
    Json(body): Json<Activation>,
) -> Result<Json<Activated>, ApiError> {
    activate(console, caller.principal, number, body).await
}

#[derive(Deserialize)]
struct ClientActivation {
    account: String,
    #[serde(flatten)]
    activation: Activation,
}

/// `POST /api/v1/activations`: an IVR (a client of scope `activation`) activates.
async fn client_activation(
    State(console): State<Console>,
    caller: Caller,
    Json(body): Json<ClientActivation>,
) -> Result<Json<Activated>, ApiError> {
    if !matches!(caller.principal, Principal::Client { .. }) {
        return Err(ApiError::Forbidden(
            "this route is for machine clients; users use /api/v1/accounts/{account}/activation"
                .into(),
        ));
    }
    activate(console, caller.principal, body.account, body.activation).await
}

async fn activate(
    console: Console,
    principal: Principal,
    number: String,
    body: Activation,
) -> Result<Json<Activated>, ApiError> {
    accounts::may_change(&principal)?;
    let number = console.account_number(&number)?;
    let (card, enrolment) = console
        .blocking(move |console| {
            let card = accounts::activate(console, &principal, &number, &body.min, &body.enrol)?;
            let enrolment = console.decider().store().enrolment(&number)?;
            Ok((card, enrolment.as_ref().map(EnrolmentShown::of)))
        })
        .await?;
    Ok(Json(Activated {
        status: "active",
        min: card.min,
        enrolment,
    }))
}

async fn block(
    State(console): State<Console>,
    caller: Caller,
    Path(number): Path<String>,
) -> Result<Json<Card>, ApiError> {
    caller.require(Action::Activate)?;
    let number = console.account_number(&number)?;
    let card = console
        .blocking(move |console| accounts::block(console, &caller.principal, &number))
        .await?;
    Ok(Json(card))
}

async fn channel_unlock(
    State(console): State<Console>,
    caller: Caller,
    Path(number): Path<String>,
) -> Result<Json<EnrolmentShown>, ApiError> {
    caller.require(Action::Activate)?;
    let number = console.account_number(&number)?;
    let shown = console
        .blocking(move |console| enrol::unlock_channel(console, &caller.principal, &number))
        .await?;
    Ok(Json(shown))
}

async fn unblock(
    State(console): State<Console>,
    caller: Caller,
    Path(account): Path<String>,
) -> Result<(StatusCode, Json<Pending>), ApiError> {
    let account = console.account_number(&account)?;
    requested(console, caller, Request::Unblock { account }).await
}

async fn transaction(
    State(console): State<Console>,
    caller: Caller,
    Path(confirmation): Path<String>,
) -> Result<Json<Found>, ApiError> {
    caller.require(Action::Read)?;
    let found = console
        .blocking(move |console| accounts::transaction(console, &caller.principal, &confirmation))
        .await?;
    Ok(Json(found))
}

/// A search result.
#[derive(Serialize)]
pub struct Hit {
    /// `account` or `transaction`.
    pub kind: &'static str,
    /// The account's handle or the confirmation number to open (the page's link).
    pub target: String,
    /// What to show (masked).
    pub label: String,
}

#[derive(Deserialize)]
struct Search {
    q: String,
}

/// `POST /api/v1/search` `{"q"}`: a confirmation number, a MIN or an account number,
/// whichever it is and is in scope (a POST, so a full account number typed in does not
/// end up in a URL).
async fn search(
    State(console): State<Console>,
    caller: Caller,
    Json(body): Json<Search>,
) -> Result<Json<Vec<Hit>>, ApiError> {
    caller.require(Action::Read)?;
    let hits = console
        .blocking(move |console| find(console, &caller.principal, body.q.trim()))
        .await?;
    Ok(Json(hits))
}

/// What `text` finds in `principal`'s scope: a transaction, an account.
pub fn find(console: &Console, principal: &Principal, text: &str) -> Result<Vec<Hit>, ApiError> {
    let mut hits = Vec::new();
    match accounts::transaction(console, principal, text) {
        Ok(found) => hits.push(Hit {
            kind: "transaction",
            target: found.confirmation.clone(),
            label: format!(
                "{} {}",
                found.confirmation,
                found.account.unwrap_or_default()
            ),
        }),
        Err(ApiError::NotFound) => {}
        Err(e) => return Err(e),
    }
    let store = console.decider().store();
    let mut numbers = vec![text.to_owned()];
    numbers.extend(store.account_of_min(text)?);
    for number in numbers {
        match accounts::in_scope(console, principal, &number) {
            Ok(account) if account.number == number => hits.push(Hit {
                kind: "account",
                target: console.handle(&account.number),
                label: format!("{} MIN {}", Card::of(&account).account, account.min),
            }),
            Ok(_) | Err(ApiError::NotFound) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(hits)
}

#[derive(Deserialize)]
struct Adjustment {
    account: String,
    amount: u64,
    reason: String,
}

#[derive(Serialize)]
struct Pending {
    approval: u64,
    state: &'static str,
}

async fn adjustment(
    State(console): State<Console>,
    caller: Caller,
    Json(body): Json<Adjustment>,
) -> Result<(StatusCode, Json<Pending>), ApiError> {
    let request = Request::Adjustment {
        account: console.account_number(&body.account)?,
        amount: body.amount,
        reason: body.reason,
    };
    requested(console, caller, request).await
}

async fn resubmit(
    State(console): State<Console>,
    caller: Caller,
    Path(item): Path<u64>,
) -> Result<(StatusCode, Json<Pending>), ApiError> {
    requested(console, caller, Request::Resubmit { item }).await
}

async fn requested(
    console: Console,
    caller: Caller,
    request: Request,
) -> Result<(StatusCode, Json<Pending>), ApiError> {
    let shown = console
        .blocking(move |console| approvals::request(console, &caller, request))
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Pending {
            approval: shown.approval,
            state: shown.state,
        }),
    ))
}

async fn approval_list(
    State(console): State<Console>,
    caller: Caller,
) -> Result<Json<Vec<Shown>>, ApiError> {
    let shown = console
        .blocking(move |console| approvals_in_scope(console, &caller.principal))
        .await?;
    Ok(Json(shown))
}

/// The requests `principal` may see, newest first: a checker's or auditor's all, a
/// maker's those of their scope.
pub fn approvals_in_scope(
    console: &Console,
    principal: &Principal,
) -> Result<Vec<Shown>, ApiError> {
    let all = console.decider().store().approvals()?;
    Ok(all
        .iter()
        .rev()
        .filter(|a| principal.sees_approval(&a.carrier))
        .map(Shown::of)
        .collect())
}

async fn approve(
    State(console): State<Console>,
    caller: Caller,
    Path(id): Path<u64>,
) -> Result<Json<serde_json::Value>, ApiError> {
    decided(console, caller, id, true).await
}

async fn reject(
    State(console): State<Console>,
    caller: Caller,
    Path(id): Path<u64>,
) -> Result<Json<serde_json::Value>, ApiError> {
    decided(console, caller, id, false).await
}

async fn decided(
    console: Console,
    caller: Caller,
    id: u64,
    approve: bool,
) -> Result<Json<serde_json::Value>, ApiError> {
    let shown = console
        .blocking(move |console| approvals::decide(console, &caller, id, approve))
        .await?;
    Ok(Json(match shown.confirmation {
        Some(confirmation) => {
            serde_json::json!({"state": shown.state, "confirmation": confirmation})
        }
        None => serde_json::json!({"state": shown.state}),
    }))
}

/// `GET /api/v1/exceptions`: the exception queue, the items in scope.
async fn exceptions(State(console): State<Console>, caller: Caller) -> Scoped<queue::Shown> {
    scoped(console, caller, Action::Queue, exceptions_in_scope).await
}

/// `GET /api/v1/breaks`: the reconciliation breaks of the banks in scope.
async fn breaks(State(console): State<Console>, caller: Caller) -> Scoped<queue::Shown> {
    scoped(console, caller, Action::Breaks, breaks_in_scope).await
}

/// A list answer.
type Scoped<T> = Result<Json<Vec<T>>, ApiError>;

/// What `load` finds in `caller`'s scope, once their role may `action`.
async fn scoped<T: Send + 'static>(
    console: Console,
    caller: Caller,
    action: Action,
    load: fn(&Console, &Principal) -> Result<Vec<T>, ApiError>,
) -> Scoped<T> {
    caller.require(action)?;
    let items = console
        .blocking(move |console| load(console, &caller.principal))
        .await?;
    Ok(Json(items))
}

/// The exception-queue items `principal` may see.
pub fn exceptions_in_scope(
    console: &Console,
    principal: &Principal,
) -> Result<Vec<queue::Shown>, ApiError> {
    let mut items = Vec::new();
    for item in queue::Shown::all(console.decider().store())? {
        let Some(scope) = approvals::exception_scope(console, item.id)? else {
            continue;
        };
        if principal.sees_transaction(scope.carrier.as_deref(), scope.bank.as_deref()) {
            items.push(item);
        }
    }
    Ok(items)
}

/// The reconciliation breaks `principal` may see.
pub fn breaks_in_scope(
    console: &Console,
    principal: &Principal,
) -> Result<Vec<queue::Shown>, ApiError> {
    let breaks = console.decider().store().breaks()?;
    Ok(breaks
        .iter()
        .filter(|b| match b.found.side {
            crate::durable::record::Side::Bank => principal.sees_bank(&b.found.party),
            crate::durable::record::Side::Engine => principal.sees_engines(),
        })
        .map(queue::Shown::of_break)
        .collect())
}

#[derive(Serialize)]
struct AuditLine {
    at: String,
    user: String,
    action: String,
    target: String,
    result: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    before: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    after: Option<serde_json::Value>,
}

/// `GET /api/v1/audit`: the trail, newest first (auditor, supervisor, admin).
async fn audit_trail(
    State(console): State<Console>,
    caller: Caller,
) -> Result<Json<Vec<serde_json::Value>>, ApiError> {
    caller.require(Action::Audit)?;
    let lines = console.blocking(audit_lines).await?;
    Ok(Json(lines))
}

/// The audit trail as the API and the page show it, newest first.
pub fn audit_lines(console: &Console) -> Result<Vec<serde_json::Value>, ApiError> {
    let trail = console.decider().store().audit()?;
    Ok(trail
        .into_iter()
        .rev()
        .map(|a| {
            let line = AuditLine {
                at: accounts::at(a.at_ms),
                user: a.user,
                action: a.action,
                target: a.target,
                result: a.result,
                before: a.before,
                after: a.after,
            };
            serde_json::to_value(line).unwrap_or_default()
        })
        .collect())
}
