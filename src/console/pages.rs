//! The console's pages: HTML rendered on the server from the templates in
//! `templates/` (minijinja, compiled into the binary), with one small script that
//! sends the forms to the JSON API. A page shows only what the API would answer its
//! user, through the same functions; account numbers appear masked, and links and
//! forms name accounts by handle. Without a session a page sends the browser to
//! `/login`.

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use minijinja::{Environment, Value, context};
use serde::Serialize;

use super::api;
use super::scope::{Action, Principal};
use super::{ApiError, Caller, Console, accounts};

/// The compiled templates.
pub struct Pages {
    env: Environment<'static>,
}

const TEMPLATES: [(&str, &str); 6] = [
    ("base.html", include_str!("templates/base.html")),
    ("login.html", include_str!("templates/login.html")),
    ("search.html", include_str!("templates/search.html")),
    ("account.html", include_str!("templates/account.html")),
    ("table.html", include_str!("templates/table.html")),
    (
        "transaction.html",
        include_str!("templates/transaction.html"),
    ),
];

impl Pages {
    /// Compiles the templates (an error names the template at fault).
    pub fn new() -> Result<Pages, String> {
        let mut env = Environment::new();
        for (name, source) in TEMPLATES {
            env.add_template(name, source)
                .map_err(|e| format!("console template {name}: {e}"))?;
        }
        Ok(Pages { env })
    }

    fn render(&self, name: &str, context: Value) -> Response {
        match self.env.get_template(name).and_then(|t| t.render(context)) {
            Ok(html) => Html(html).into_response(),
            Err(e) => ApiError::Internal(format!("page {name}: {e}")).into_response(),
        }
    }
}

/// The pages' routes (and the script and style sheet they use).
pub fn routes() -> axum::Router<Console> {
    axum::Router::new()
        .route("/", get(|| async { Redirect::to("/search") }))
        .route("/login", get(login))
        .route("/search", get(search))
        .route("/accounts/{handle}", get(account))
        .route("/transactions/{confirmation}", get(transaction))
        .route("/exceptions", get(exceptions))
        .route("/approvals", get(approval_inbox))
        .route("/breaks", get(breaks))
        .route("/audit", get(audit))
        .route("/static/console.js", get(script))
        .route("/static/console.css", get(style))
}

/// Headers every console answer carries: no caching, no framing, no sniffing, scripts
/// only from the switch itself.
pub async fn harden(response: Response) -> Response {
    let mut response = response;
    let headers = response.headers_mut();
    let pairs = [
        (header::CACHE_CONTROL, "no-store"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; frame-ancestors 'none'; form-action 'self'",
        ),
    ];
    for (name, value) in pairs {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("static/console.js"),
    )
}

async fn style() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("static/console.css"),
    )
}

/// What every signed-in page needs: the user, the CSRF token, the menu.
fn frame(caller: &Caller, title: &str) -> Value {
    let p = &caller.principal;
    context! {
        title => title,
        user => p.name(),
        role => p.role().map(|r| r.as_str()),
        csrf => caller.csrf.clone().unwrap_or_default(),
        nav => context! {
            queue => p.may(Action::Queue),
            breaks => p.may(Action::Breaks),
            audit => p.may(Action::Audit),
        },
    }
}

/// The signed-in user of a page request (a bearer client gets no pages).
fn signed_in(caller: Result<Caller, ApiError>) -> Option<Caller> {
    caller
        .ok()
        .filter(|c| matches!(c.principal, Principal::User(_)))
}

/// Where a page request without a session goes.
fn to_login() -> Response {
    Redirect::to("/login").into_response()
}

/// What a list page needs: its signed-in user, allowed `action` (when one is
/// required), and what `load` finds in their scope, or the page to answer instead
/// (sign in, 403, 404).
async fn listed<T: Send + 'static>(
    console: &Console,
    caller: Result<Caller, ApiError>,
    action: Option<Action>,
    load: fn(&Console, &Principal) -> Result<T, ApiError>,
) -> Result<(Caller, T), Box<Response>> {
    let Some(caller) = signed_in(caller) else {
        return Err(Box::new(to_login()));
    };
    if let Some(e) = action.and_then(|a| caller.require(a).err()) {
        return Err(Box::new(refused(e)));
    }
    let principal = caller.principal.clone();
    match console.blocking(move |c| load(c, &principal)).await {
        Ok(items) => Ok((caller, items)),
        Err(e) => Err(Box::new(refused(e))),
    }
}

/// An exception-queue item or a break as a table row.
fn queue_row(item: crate::operate::queue::Shown, actions: Vec<RowAction>) -> Row {
    Row {
        id: item.id.to_string(),
        cells: vec![
            item.id.to_string(),
            item.queued,
            item.class,
            item.account,
            format!("{} {}", item.amount, item.currency),
            item.reason,
            item.status,
        ],
        actions,
    }
}

fn refused(e: ApiError) -> Response {
    let status = match e {
        ApiError::NotFound => StatusCode::NOT_FOUND,
        ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
        _ => return e.into_response(),
    };
    (status, Html(format!("<!doctype html><title>{status}</title><p>{status}. <a href=\"/search\">Back to search</a></p>"))).into_response()
}

async fn login(State(console): State<Console>) -> Response {
    let ctx = context! { title => "Sign in", user => Value::UNDEFINED, csrf => "" };
    console.pages().render("login.html", ctx)
}

async fn search(State(console): State<Console>, caller: Result<Caller, ApiError>) -> Response {
    match signed_in(caller) {
        Some(caller) => console
            .pages()
            .render("search.html", frame(&caller, "Search")),
        None => to_login(),
    }
}

async fn account(
    State(console): State<Console>,
    caller: Result<Caller, ApiError>,
    Path(handle): Path<String>,
) -> Response {
    let Some(caller) = signed_in(caller) else {
        return to_login();
    };
    let principal = caller.principal.clone();
    let view = console
        .blocking(move |console| {
            let number = console.account_number(&handle)?;
            accounts::view(console, &principal, &number)
        })
        .await;
    match view {
        Ok(view) => {
            let ctx = context! {
                view => Value::from_serialize(&view),
                may_change => caller.principal.may(Action::Activate),
                ..frame(&caller, &format!("Account {}", view.card.account))
            };
            console.pages().render("account.html", ctx)
        }
        Err(e) => refused(e),
    }
}

async fn transaction(
    State(console): State<Console>,
    caller: Result<Caller, ApiError>,
    Path(confirmation): Path<String>,
) -> Response {
    let Some(caller) = signed_in(caller) else {
        return to_login();
    };
    let principal = caller.principal.clone();
    let found = console
        .blocking(move |console| accounts::transaction(console, &principal, &confirmation))
        .await;
    match found {
        Ok(found) => {
            let rows: Vec<(String, String)> = found
                .to_string()
                .lines()
                .filter_map(|l| l.split_at_checked(13))
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .collect();
            let title = format!("Transaction {}", found.confirmation);
            let ctx = context! { rows => rows, ..frame(&caller, &title) };
            console.pages().render("transaction.html", ctx)
        }
        Err(e) => refused(e),
    }
}

/// One row of a table page.
#[derive(Serialize)]
struct Row {
    id: String,
    cells: Vec<String>,
    actions: Vec<RowAction>,
}

#[derive(Serialize)]
struct RowAction {
    api: String,
    label: &'static str,
    class: &'static str,
}

fn table(
    console: &Console,
    caller: &Caller,
    title: &str,
    table_id: &str,
    columns: &[&str],
    rows: Vec<Row>,
) -> Response {
    let actions = rows.iter().any(|r| !r.actions.is_empty());
    let ctx = context! {
        table_id => table_id,
        columns => columns,
        rows => rows,
        actions => actions,
        ..frame(caller, title)
    };
    console.pages().render("table.html", ctx)
}

async fn exceptions(State(console): State<Console>, caller: Result<Caller, ApiError>) -> Response {
    let loaded = listed(
        &console,
        caller,
        Some(Action::Queue),
        api::exceptions_in_scope,
    )
    .await;
    let (caller, items) = match loaded {
        Ok(loaded) => loaded,
        Err(page) => return *page,
    };
    let may = caller.principal.may(Action::Request);
    let rows = items
        .into_iter()
        .map(|item| {
            let resubmit = (may && item.is_open()).then(|| RowAction {
                api: format!("/api/v1/exceptions/{}/resubmit", item.id),
                label: "Request resubmission",
                class: "resubmit",
            });
            queue_row(item, resubmit.into_iter().collect())
        })
        .collect();
    let columns = [
        "Id", "Queued", "Class", "Account", "Amount", "Reason", "Status",
    ];
    let title = "Exception queue";
    table(&console, &caller, title, "exceptions", &columns, rows)
}

async fn approval_inbox(
    State(console): State<Console>,
    caller: Result<Caller, ApiError>,
) -> Response {
    let (caller, shown) = match listed(&console, caller, None, api::approvals_in_scope).await {
        Ok(loaded) => loaded,
        Err(page) => return *page,
    };
    let me = caller.principal.name().to_owned();
    let checker = caller.principal.may(Action::Approve);
    let rows = shown
        .into_iter()
        .map(|a| {
            let decidable = checker && a.state == "pending" && a.maker != me;
            let actions = if decidable {
                vec![
                    RowAction {
                        api: format!("/api/v1/approvals/{}/approve", a.approval),
                        label: "Approve",
                        class: "approve",
                    },
                    RowAction {
                        api: format!("/api/v1/approvals/{}/reject", a.approval),
                        label: "Reject",
                        class: "reject",
                    },
                ]
            } else {
                Vec::new()
            };
            let what = match (a.amount, &a.reason) {
                (Some(amount), Some(reason)) => format!("{amount} ({reason})"),
                _ => String::new(),
            };
            Row {
                id: a.approval.to_string(),
                cells: vec![
                    a.approval.to_string(),
                    a.at,
                    a.kind.to_owned(),
                    a.target,
                    what,
                    a.maker,
                    a.state.to_owned(),
                    a.checker.unwrap_or_default(),
                    a.confirmation.unwrap_or_default(),
                ],
                actions,
            }
        })
        .collect();
    let columns = [
        "Id",
        "Asked",
        "Kind",
        "Target",
        "Amount",
        "Maker",
        "State",
        "Checker",
        "Confirmation",
    ];
    table(&console, &caller, "Approvals", "approvals", &columns, rows)
}

async fn breaks(State(console): State<Console>, caller: Result<Caller, ApiError>) -> Response {
    let loaded = listed(&console, caller, Some(Action::Breaks), api::breaks_in_scope).await;
    let (caller, items) = match loaded {
        Ok(loaded) => loaded,
        Err(page) => return *page,
    };
    let rows = items
        .into_iter()
        .map(|i| queue_row(i, Vec::new()))
        .collect();
    let columns = [
        "Id", "Found", "Class", "Account", "Amount", "Where", "Status",
    ];
    let title = "Reconciliation breaks";
    table(&console, &caller, title, "breaks", &columns, rows)
}

async fn audit(State(console): State<Console>, caller: Result<Caller, ApiError>) -> Response {
    let loaded = listed(&console, caller, Some(Action::Audit), |c, _| {
        api::audit_lines(c)
    })
    .await;
    let (caller, lines) = match loaded {
        Ok(loaded) => loaded,
        Err(page) => return *page,
    };
    let text = |line: &serde_json::Value, name: &str| {
        line.get(name)
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_owned()
    };
    let rows = lines
        .iter()
        .enumerate()
        .map(|(i, line)| Row {
            id: i.to_string(),
            cells: ["at", "user", "action", "target", "result"]
                .iter()
                .map(|name| text(line, name))
                .collect(),
            actions: Vec::new(),
        })
        .collect();
    let columns = ["When", "User", "Action", "Target", "Result"];
    table(&console, &caller, "Audit trail", "audit", &columns, rows)
}
