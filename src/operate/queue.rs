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
use crate::durable::store::QueueItem;
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
    /// TIME as CONFIRMATION`.
    pub status: String,
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
        }
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
            let items = data.store.queue().map_err(DataError::from);
            data.close()?;
            Ok(items?.iter().map(Shown::of).collect())
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

fn resubmit_offline(
    config: &Config,
    data: &DataDir,
    id: u64,
    by: &str,
) -> Result<String, QueueError> {
    let decider = decider(config, data, Unsent::default())?;
    let done = decider.resubmit(id, by)?;
    data.journal
        .wait_durable_blocking(done.seq)
        .map_err(DataError::from)?;
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
        .with_state(decider)
}

async fn http_list(
    State(decider): State<Arc<Decider>>,
) -> Result<Json<Vec<Shown>>, (StatusCode, String)> {
    match decider.store().queue() {
        Ok(items) => Ok(Json(items.iter().map(Shown::of).collect())),
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
    let done = match decider.resubmit(id, &request.by) {
        Ok(done) => done,
        Err(e @ ResubmitError::NotFound(_)) => {
            return refused(StatusCode::NOT_FOUND, e.to_string());
        }
        Err(e @ ResubmitError::Switch(_)) => {
            return refused(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
        }
        Err(e) => return refused(StatusCode::CONFLICT, e.to_string()),
    };
    if let Err(e) = decider.journal().wait_durable(done.seq).await {
        return refused(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    }
    let answer = Answer {
        confirmation: Some(done.confirmation),
        error: None,
    };
    (StatusCode::OK, Json(answer))
}
