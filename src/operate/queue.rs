//! The exception queue for operators: advices the switch acknowledged but could not
//! credit (an unknown account, no MIN, no engine for the carrier), listed and, once the
//! account is corrected, resubmitted; each resubmission is journaled with who did it and
//! when, and its credit goes to the engine like any other. `replenish exceptions`
//! works on the data directory when no switch holds it, and otherwise through the
//! running switch's HTTP endpoint (the `[metrics] listen` address): `GET /exceptions`
//! and `POST /exceptions/{id}/resubmit` with `{"by": "NAME"}`. Account numbers are
//! shown masked.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use chrono::DateTime;
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::durable::datadir::{DataDir, DataError};
use crate::durable::record::{BreakResolution, Record};
use crate::durable::store::{BreakItem, QueueItem, Store, StoreError};
use crate::engine::unsent::Unsent;
use crate::operate::operator::Endpoint;
use crate::switch::advise::ResubmitError;
use crate::switch::decide::{Decider, SwitchError};
use crate::switch::open::decider;
use crate::wire::iso8583::mask_pan;

/// One queue item as operators see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shown {
    /// The item id (`exceptions resubmit ID`).
    pub id: u64,
    /// When queued (RFC 3339, UTC).
    pub queued: String,
    /// The advice's MTI.
    pub mti: String,
    /// The account, masked.
    pub account: String,
    /// Minor units.
    pub amount: u64,
    /// DE49.
    pub currency: String,
    /// DE37.
    pub rrn: String,
    /// Why it was not credited.
    pub reason: String,
    /// `open`, `reversed by the acquirer: nothing owed`, or `resubmitted by NAME at
    /// TIME as CONFIRMATION`; for a break `resolved by NAME at TIME: NOTE`.
    pub status: String,
    /// `advice` (acknowledged, not credited), or a reconciliation break's class.
    #[serde(default = "advice")]
    pub class: String,
}

fn advice() -> String {
    "advice".into()
}

impl Shown {
    fn of(item: &QueueItem) -> Shown {
        let status = match (&item.resolved, item.reversed) {
            (None, false) => "open".to_owned(),
            (None, true) => "reversed by the acquirer: nothing owed".to_owned(),
            (Some(r), _) => format!(
                "resubmitted by {} at {} as {}",
                r.by,
                rfc3339(r.at_ms),
                r.confirmation
            ),
        };
        Shown {
            id: item.id,
            queued: rfc3339(item.at_ms),
            mti: item.mti.clone(),
            account: mask_pan(item.owed.account.as_bytes()),
            amount: item.owed.amount,
            currency: item.owed.currency.clone(),
            rrn: item.owed.rrn.clone(),
            reason: item.owed.reason.clone(),
            status,
            class: advice(),
        }
    }

    /// A reconciliation break as the queue shows it.
    pub fn of_break(item: &BreakItem) -> Shown {
        let found = &item.found;
        let side = found.theirs.as_ref().or(found.ours.as_ref());
        let text = |name: &str| {
            let value = side.and_then(|v| v.get(name));
            value.and_then(|v| v.as_str()).unwrap_or("").to_owned()
        };
        let status = match &item.resolved {
            None => "open".to_owned(),
            Some(r) => format!("resolved by {} at {}: {}", r.by, rfc3339(r.at_ms), r.note),
        };
        Shown {
            id: item.id,
            queued: rfc3339(found.at_ms),
            mti: text("mti"),
            account: text("account"),
            amount: side
                .and_then(|v| v.get("amount"))
                .and_then(|v| v.as_u64())
                .unwrap_or(0),
            currency: text("currency"),
            rrn: text("rrn"),
            reason: format!(
                "{} ({} {} {})",
                found.class,
                found.side.as_str(),
                found.party,
                found.day
            ),
            status,
            class: found.class.clone(),
        }
    }

    /// Every item: the advices, then the breaks, each oldest first.
    pub fn all(store: &Store) -> Result<Vec<Shown>, StoreError> {
        let mut shown: Vec<Shown> = store.queue()?.iter().map(Shown::of).collect();
        shown.extend(store.breaks()?.iter().map(Shown::of_break));
        Ok(shown)
    }

    /// Whether it still waits for a resubmission.
    pub fn is_open(&self) -> bool {
        self.status == "open"
    }
}

fn rfc3339(at_ms: i64) -> String {
    DateTime::from_timestamp_millis(at_ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The queue as a table with a header line: what `exceptions list` prints.
pub fn table(items: &[Shown]) -> String {
    let mut out = format!(
        "{:<8} {:<20} {:<4} {:<19} {:>12} {:<3} {}\n",
        "ID", "QUEUED", "MTI", "ACCOUNT", "AMOUNT", "CUR", "REASON / STATUS"
    );
    for i in items {
        out += &format!(
            "{:<8} {:<20} {:<4} {:<19} {:>12} {:<3} {} [{}]\n",
            i.id, i.queued, i.mti, i.account, i.amount, i.currency, i.reason, i.status
        );
    }
    if items.is_empty() {
        out += "(the exception queue is empty)\n";
    }
    out
}

/// Why a queue command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// The resubmission was refused (not found, done, reversed, still unroutable).
    #[error("{0}")]
    Refused(String),
    /// The data directory.
    #[error("{0}")]
    Data(#[from] DataError),
    /// The decider on the data directory.
    #[error("{0}")]
    Switch(#[from] SwitchError),
    /// The running switch's endpoint.
    #[error("{0}")]
    Remote(String),
}

impl From<ResubmitError> for QueueError {
    fn from(e: ResubmitError) -> QueueError {
        match e {
            ResubmitError::Switch(e) => QueueError::Switch(e),
            other => QueueError::Refused(other.to_string()),
        }
    }
}

/// A resubmission's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    /// The confirmation number of the credit, when accepted.
    #[serde(default)]
    pub confirmation: Option<String>,
    /// Why it was refused.
    #[serde(default)]
    pub error: Option<String>,
}

/// Who resubmits.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    /// The operator's name.
    pub by: String,
}

/// The queue, oldest first: from the data directory, or from the running switch.
pub fn list(config: &Config) -> Result<Vec<Shown>, QueueError> {
    match DataDir::open(config) {
        Ok(data) => {
            let items = Shown::all(&data.store).map_err(DataError::from);
            data.close()?;
            Ok(items?)
        }
        Err(e) if e.in_use() => remote_list(Endpoint::of(config).map_err(QueueError::Remote)?),
        Err(e) => Err(e.into()),
    }
}

/// Resubmits item `id` as `by`; returns the confirmation number of its credit.
pub fn resubmit(config: &Config, id: u64, by: &str) -> Result<String, QueueError> {
    match DataDir::open(config) {
        Ok(data) => {
            let result = resubmit_offline(config, &data, id, by);
            data.close()?;
            result
        }
        Err(e) if e.in_use() => {
            remote_resubmit(Endpoint::of(config).map_err(QueueError::Remote)?, id, by)
        }
        Err(e) => Err(e.into()),
    }
}

/// Closes break `id` with `note` as `by`.
pub fn resolve(config: &Config, id: u64, note: &str, by: &str) -> Result<(), QueueError> {
    match DataDir::open(config) {
        Ok(data) => {
            let now = chrono::Utc::now().timestamp_millis();
            let result = resolution(&data.store, id, note, by, now)
                .and_then(|record| Ok(data.commit(&[record])?));
            data.close()?;
            result.map(|_| ())
        }
        Err(e) if e.in_use() => {
            let endpoint = Endpoint::of(config).map_err(QueueError::Remote)?;
            let request = Resolve {
                by: by.to_owned(),
                note: note.to_owned(),
            };
            let route = format!("/exceptions/{id}/resolve");
            let answer: Answer = (endpoint.call("POST", &route, Some(&request)))
                .map_err(|e| QueueError::Refused(e.to_string()))?;
            match answer.error {
                Some(error) => Err(QueueError::Refused(error)),
                None => Ok(()),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Who closes a break, and why.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Resolve {
    /// The operator's name.
    pub by: String,
    /// Why it needs nothing more.
    pub note: String,
}

/// The record that closes break `id`, if it is open.
fn resolution(
    store: &Store,
    id: u64,
    note: &str,
    by: &str,
    at_ms: i64,
) -> Result<Record, QueueError> {
    let item = (store.break_item(id).map_err(DataError::from)?).ok_or_else(|| {
        QueueError::Refused(format!(
            "no reconciliation break {id} (an advice is resubmitted: replenish exceptions resubmit {id})"
        ))
    })?;
    if let Some(done) = &item.resolved {
        return Err(QueueError::Refused(format!(
            "break {id} was resolved by {} already: {}",
            done.by, done.note
        )));
    }
    Ok(Record::BreakResolved(BreakResolution {
        id,
        by: by.to_owned(),
        at_ms,
        note: note.to_owned(),
        confirmation: None,
    }))
}

fn resubmit_offline(
    config: &Config,
    data: &DataDir,
    id: u64,
    by: &str,
) -> Result<String, QueueError> {
    let decider = decider(config, data, Unsent::default())?;
    let done = decider.resubmit_item(id, by)?;
    Ok(done.confirmation)
}

fn remote_list(endpoint: Endpoint) -> Result<Vec<Shown>, QueueError> {
    let url = endpoint.url("/exceptions");
    let mut response = endpoint
        .authorize(ureq::get(&url))
        .call()
        .map_err(|e| QueueError::Remote(format!("{url}: {e}")))?;
    let text = response
        .body_mut()
        .read_to_string()
        .map_err(|e| QueueError::Remote(format!("{url}: {e}")))?;
    serde_json::from_str(&text).map_err(|e| QueueError::Remote(format!("{url}: {e}")))
}

fn remote_resubmit(endpoint: Endpoint, id: u64, by: &str) -> Result<String, QueueError> {
    let url = endpoint.url(&format!("/exceptions/{id}/resubmit"));
    let body = serde_json::to_string(&Request { by: by.to_owned() })
        .map_err(|e| QueueError::Remote(e.to_string()))?;
    let mut response = endpoint
        .authorize(ureq::post(&url))
        .config()
        .http_status_as_error(false)
        .build()
        .header("content-type", "application/json")
        .send(body)
        .map_err(|e| QueueError::Remote(format!("{url}: {e}")))?;
    let text = response
        .body_mut()
        .read_to_string()
        .map_err(|e| QueueError::Remote(format!("{url}: {e}")))?;
    let answer: Answer =
        serde_json::from_str(&text).map_err(|e| QueueError::Remote(format!("{url}: {e}")))?;
    match (answer.confirmation, answer.error) {
        (Some(confirmation), None) => Ok(confirmation),
        (_, Some(error)) => Err(QueueError::Refused(error)),
        (None, None) => Err(QueueError::Remote(format!("{url}: empty answer"))),
    }
}

/// The HTTP routes of the queue, for the running switch's endpoint.
pub fn routes(decider: Arc<Decider>) -> axum::Router {
    axum::Router::new()
        .route("/exceptions", get(http_list))
        .route("/exceptions/{id}/resubmit", post(http_resubmit))
        .route("/exceptions/{id}/resolve", post(http_resolve))
        .with_state(decider)
}

async fn http_list(
    State(decider): State<Arc<Decider>>,
) -> Result<Json<Vec<Shown>>, (StatusCode, String)> {
    let listed = tokio::task::spawn_blocking(move || Shown::all(decider.store())).await;
    match listed {
        Ok(Ok(items)) => Ok(Json(items)),
        Ok(Err(e)) => Err((StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
        Err(e) => Err((StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}

async fn http_resubmit(
    State(decider): State<Arc<Decider>>,
    Path(id): Path<u64>,
    Json(request): Json<Request>,
) -> (StatusCode, Json<Answer>) {
    let refused = |status, error: String| {
        let answer = Answer {
            confirmation: None,
            error: Some(error),
        };
        (status, Json(answer))
    };
    let resubmitting = decider.clone();
    let resubmitted =
        tokio::task::spawn_blocking(move || resubmitting.resubmit_item(id, &request.by)).await;
    let Ok(resubmitted) = resubmitted else {
        return refused(
            StatusCode::INTERNAL_SERVER_ERROR,
            "resubmission failed".into(),
        );
    };
    let done = match resubmitted {
        Ok(done) => done,
        Err(e @ ResubmitError::NotFound(_)) => {
            return refused(StatusCode::NOT_FOUND, e.to_string());
        }
        Err(e @ ResubmitError::Switch(_)) => {
            return refused(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
        }
        Err(e) => return refused(StatusCode::CONFLICT, e.to_string()),
    };
    let answer = Answer {
        confirmation: Some(done.confirmation),
        error: None,
    };
    (StatusCode::OK, Json(answer))
}

async fn http_resolve(
    State(decider): State<Arc<Decider>>,
    Path(id): Path<u64>,
    Json(request): Json<Resolve>,
) -> (StatusCode, Json<Answer>) {
    let answer = |status, error: Option<String>| {
        let answer = Answer {
            confirmation: None,
            error,
        };
        (status, Json(answer))
    };
    let journaled = tokio::task::spawn_blocking(move || {
        // Checked and journaled under one lock: two resolutions of one break cannot
        // both pass the check.
        static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _serial = SERIAL
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = chrono::Utc::now().timestamp_millis();
        let record = resolution(decider.store(), id, &request.note, &request.by, now)
            .map_err(|e| (StatusCode::CONFLICT, e.to_string()))?;
        (decider.journal_records(&[record]))
            .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
    })
    .await;
    match journaled {
        Ok(Ok(_)) => answer(StatusCode::OK, None),
        Ok(Err((status, e))) => answer(status, Some(e)),
        Err(e) => answer(StatusCode::INTERNAL_SERVER_ERROR, Some(e.to_string())),
    }
}
