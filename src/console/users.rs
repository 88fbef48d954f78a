//! Console users and machine clients: `replenish users add|list|disable` and
//! `replenish clients add|list`. Each change is a journal record (with its audit entry)
//! first; the index follows. The commands work on the data directory when no switch
//! runs and through the running switch's operator endpoint (`POST /users`, ...) when
//! one does. A password arrives on standard input and leaves only as its argon2id
//! hash; a client's token is printed once and kept as its SHA-256.

use axum::Json;
use axum::extract::{Path, State};
use axum::routing::post;
use serde::{Deserialize, Serialize};

use super::secrets;
use crate::backoffice::reconcile::Books;
use crate::backoffice::{BackofficeError, Shared, on_switch_books, with_books};
use crate::config::Config;
use crate::durable::record::{Record, Saved};
use crate::vocab::people::{Audit, Client, ClientScope, Role, User};

/// A user to add, as the command line or the endpoint gives it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewUser {
    /// Sign-in name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// A csr's carriers.
    #[serde(default)]
    pub carriers: Vec<String>,
    /// A bank user's bank.
    #[serde(default)]
    pub bank: Option<String>,
    /// The password (sent to the endpoint, never kept or logged).
    pub password: String,
}

/// A user as `users list` shows it (no hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listed {
    /// Name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Carriers (csr).
    pub carriers: Vec<String>,
    /// Bank (bank).
    pub bank: Option<String>,
    /// Disabled.
    pub disabled: bool,
}

/// A machine client to add.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewClient {
    /// Its name.
    pub name: String,
    /// What it may call.
    pub scope: ClientScope,
}

/// A client made: its token, shown this once.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Made {
    /// The client's name.
    pub name: String,
    /// The bearer token.
    pub token: String,
}

/// Adds a user (as `by`): checked against the config's carriers and banks.
pub fn add_user(config: &Config, new: NewUser, by: &str) -> Result<Listed, BackofficeError> {
    with_books(
        config,
        |books| save_user(books, config, &new, by),
        |endpoint| Ok(endpoint.call("POST", "/users", Some(&new))?),
    )
}

/// Every user.
pub fn list_users(config: &Config) -> Result<Vec<Listed>, BackofficeError> {
    with_books(config, listed, |endpoint| {
        Ok(endpoint.call::<(), _>("GET", "/users", None)?)
    })
}

/// Disables a user: they cannot sign in and their sessions end.
pub fn disable_user(config: &Config, name: &str, by: &str) -> Result<Listed, BackofficeError> {
    let path = format!("/users/{name}/disable");
    with_books(
        config,
        |books| disable(books, name, by),
        |endpoint| Ok(endpoint.call::<(), _>("POST", &path, None)?),
    )
}

/// Adds a machine client; returns its token (shown once).
pub fn add_client(config: &Config, new: NewClient, by: &str) -> Result<Made, BackofficeError> {
    with_books(
        config,
        |books| save_client(books, &new, by),
        |endpoint| Ok(endpoint.call("POST", "/clients", Some(&new))?),
    )
}

fn save_user(
    books: &Books<'_>,
    config: &Config,
    new: &NewUser,
    by: &str,
) -> Result<Listed, BackofficeError> {
    check_name(&new.name)?;
    check_scope(config, new)?;
    if books.store.user(&new.name)?.is_some() {
        return Err(BackofficeError::Refused(format!(
            "user {} exists already",
            new.name
        )));
    }
    let password_hash =
        secrets::hash_password(&new.password).map_err(|e| BackofficeError::Input(e.to_string()))?;
    let user = User {
        name: new.name.clone(),
        role: new.role,
        carriers: new.carriers.clone(),
        bank: new.bank.clone(),
        password_hash,
        disabled: false,
    };
    let shown = listing(&user);
    let audit = Audit {
        after: value(&shown),
        ..audit(by, "user.add", &user.name, "ok")
    };
    (books.commit)(&[Record::UserSaved(Box::new(Saved { item: user, audit }))])?;
    Ok(shown)
}

fn disable(books: &Books<'_>, name: &str, by: &str) -> Result<Listed, BackofficeError> {
    let mut user = (books.store.user(name)?)
        .ok_or_else(|| BackofficeError::Input(format!("no user {name}")))?;
    let before = listing(&user);
    user.disabled = true;
    let shown = listing(&user);
    let audit = Audit {
        before: value(&before),
        after: value(&shown),
        ..audit(by, "user.disable", name, "ok")
    };
    (books.commit)(&[Record::UserSaved(Box::new(Saved { item: user, audit }))])?;
    Ok(shown)
}

fn listed(books: &Books<'_>) -> Result<Vec<Listed>, BackofficeError> {
    Ok(books.store.users()?.iter().map(listing).collect())
}

fn save_client(books: &Books<'_>, new: &NewClient, by: &str) -> Result<Made, BackofficeError> {
    check_name(&new.name)?;
    if books.store.client(&new.name)?.is_some() || books.store.user(&new.name)?.is_some() {
        return Err(BackofficeError::Refused(format!(
            "a user or client named {} exists already",
            new.name
        )));
    }
    let token = secrets::token().map_err(|e| BackofficeError::Remote(e.to_string()))?;
    let client = Client {
        name: new.name.clone(),
        scope: new.scope,
        token_hash: secrets::digest_hex(&token),
        disabled: false,
    };
    let after = serde_json::json!({ "name": client.name, "scope": client.scope });
    let audit = Audit {
        after: Some(after),
        ..audit(by, "client.add", &client.name, "ok")
    };
    (books.commit)(&[Record::ClientSaved(Box::new(Saved {
        item: client,
        audit,
    }))])?;
    Ok(Made {
        name: new.name.clone(),
        token,
    })
}

/// A user without their hash.
pub fn listing(user: &User) -> Listed {
    Listed {
        name: user.name.clone(),
        role: user.role,
        carriers: user.carriers.clone(),
        bank: user.bank.clone(),
        disabled: user.disabled,
    }
}

/// An audit entry made now, with the item before and after when it changed.
pub fn audit(by: &str, action: &str, target: &str, result: &str) -> Audit {
    Audit {
        at_ms: chrono::Utc::now().timestamp_millis(),
        user: by.to_owned(),
        action: action.to_owned(),
        target: target.to_owned(),
        result: result.to_owned(),
        before: None,
        after: None,
    }
}

/// `item` as the audit trail keeps it.
pub fn value(item: &impl Serialize) -> Option<serde_json::Value> {
    serde_json::to_value(item).ok()
}

fn check_name(name: &str) -> Result<(), BackofficeError> {
    let ok = (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(BackofficeError::Input(format!(
            "name {name:?}: 1 to 32 letters, digits, '.', '_' or '-'"
        )))
    }
}

/// A csr needs carriers the config knows; a bank user a bank it knows; other roles
/// neither.
fn check_scope(config: &Config, new: &NewUser) -> Result<(), BackofficeError> {
    let bad = |why: String| Err(BackofficeError::Input(why));
    match new.role {
        Role::Csr => {
            if new.carriers.is_empty() {
                return bad("a csr needs --carrier (one or more)".into());
            }
            let any = config
                .engine
                .iter()
                .any(|e| e.carriers.iter().any(|c| c == "*"));
            let known = |c: &String| config.engine.iter().any(|e| e.carriers.contains(c));
            if let Some(unknown) = new.carriers.iter().find(|c| !any && !known(c)) {
                return bad(format!("--carrier {unknown}: no [[engine]] serves it"));
            }
        }
        Role::Bank => match &new.bank {
            None => return bad("a bank user needs --bank".into()),
            Some(bank) if config.find_bank(bank).is_none() => {
                return bad(format!("--bank {bank}: no such bank in the config"));
            }
            Some(_) => {}
        },
        Role::Admin | Role::Supervisor | Role::Auditor => {}
    }
    if new.role != Role::Csr && !new.carriers.is_empty() {
        return bad("--carrier is for csr users".into());
    }
    if new.role != Role::Bank && new.bank.is_some() {
        return bad("--bank is for bank users".into());
    }
    Ok(())
}

/// The operator endpoint's routes for these commands (behind the operator token).
pub fn routes() -> axum::Router<Shared> {
    axum::Router::new()
        .route("/users", post(add_route).get(list_route))
        .route("/users/{name}/disable", post(disable_route))
        .route("/clients", post(client_route))
}

const BY_TOKEN: &str = "operator-token";

async fn add_route(
    State(shared): State<Shared>,
    Json(new): Json<NewUser>,
) -> super::Answer<Listed> {
    on_switch_books(shared, move |books, config| {
        save_user(books, config, &new, BY_TOKEN)
    })
    .await
}

async fn list_route(State(shared): State<Shared>) -> super::Answer<Vec<Listed>> {
    on_switch_books(shared, |books, _| listed(books)).await
}

async fn disable_route(
    State(shared): State<Shared>,
    Path(name): Path<String>,
) -> super::Answer<Listed> {
    on_switch_books(shared, move |books, _| disable(books, &name, BY_TOKEN)).await
}

async fn client_route(
    State(shared): State<Shared>,
    Json(new): Json<NewClient>,
) -> super::Answer<Made> {
    on_switch_books(shared, move |books, _| save_client(books, &new, BY_TOKEN)).await
}
