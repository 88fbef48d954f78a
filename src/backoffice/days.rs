//! `replenish day close` and `replenish day list`: the business days, each `open`,
//! `closed`, `reconciled` (closed, and every bank's file reconciled with no break left
//! open) or `settled`. Closing goes through the decider, so it is ordered with the
//! decisions in the journal (see [`crate::switch::days`]).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use super::{BackofficeError, Shared, answer_error, with_data};
use crate::config::Config;
use crate::durable::record::Side;
use crate::durable::store::{ClosedDay, Store, StoreError};
use crate::engine::unsent::Unsent;
use crate::operate::operator::Refusal;
use crate::switch::open::decider;
use crate::vocab::calendar;

/// One business day as `day list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayView {
    /// `YYYY-MM-DD`.
    pub day: String,
    /// `open`, `closed`, `reconciled` or `settled`.
    pub state: String,
    /// When it was closed (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_at: Option<String>,
    /// `cutover`, or the operator who closed it early.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_by: Option<String>,
    /// Each bank's reconciliation of the day (closed days).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub banks: Vec<BankDay>,
}

/// A bank's reconciliation of one day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BankDay {
    /// The bank.
    pub bank: String,
    /// `not_reconciled`, `breaks_open`, `reconciled` or `settled`.
    pub state: String,
    /// Breaks not resolved yet.
    pub breaks_open: u64,
}

/// What `day close` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Closed {
    /// The day closed.
    pub closed: String,
    /// The day open now.
    pub open: String,
}

/// Who closes the day, for the running switch.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CloseRequest {
    by: String,
}

/// The days, oldest first, the open one last.
pub fn list(config: &Config) -> Result<Vec<DayView>, BackofficeError> {
    with_data(
        config,
        |data| {
            let open = match data.store.open_day()? {
                Some(open) => open.day,
                None => calendar::label(config.settlement.calendar().day_of(chrono::Utc::now())),
            };
            Ok(views(&data.store, config, &open)?)
        },
        |endpoint| Ok(endpoint.call::<(), _>("GET", "/days", None)?),
    )
}

/// Closes the open day now, as `by`.
pub fn close(config: &Config, by: &str) -> Result<Closed, BackofficeError> {
    with_data(
        config,
        |data| {
            let decider = decider(config, data, Unsent::default())?;
            let closed = decider.close_day(by)?;
            data.journal
                .wait_durable_blocking(closed.seq)
                .map_err(crate::durable::datadir::DataError::from)?;
            Ok(Closed {
                closed: closed.day,
                open: closed.open,
            })
        },
        |endpoint| {
            let request = CloseRequest { by: by.to_owned() };
            Ok(endpoint.call("POST", "/days/close", Some(&request))?)
        },
    )
}

/// The views of every closed day and of `open`.
pub fn views(store: &Store, config: &Config, open: &str) -> Result<Vec<DayView>, StoreError> {
    let mut views = Vec::new();
    for closed in store.closed_days()? {
        views.push(closed_view(store, config, &closed)?);
    }
    views.push(DayView {
        day: open.to_owned(),
        state: "open".into(),
        closed_at: None,
        closed_by: None,
        banks: Vec::new(),
    });
    Ok(views)
}

fn closed_view(store: &Store, config: &Config, closed: &ClosedDay) -> Result<DayView, StoreError> {
    let mut banks = Vec::new();
    for bank in config.banks() {
        banks.push(bank_day(store, &bank.name, &closed.day)?);
    }
    let all = |state: &str| banks.iter().all(|b| b.state == state);
    let state = if all("settled") {
        "settled"
    } else if banks
        .iter()
        .all(|b| matches!(b.state.as_str(), "reconciled" | "settled"))
    {
        "reconciled"
    } else {
        "closed"
    };
    Ok(DayView {
        day: closed.day.clone(),
        state: state.into(),
        closed_at: Some(rfc3339(closed.close.at_ms)),
        closed_by: Some(closed.close.by.clone()),
        banks,
    })
}

/// How far `bank`'s reconciliation of `day` is.
pub fn bank_day(store: &Store, bank: &str, day: &str) -> Result<BankDay, StoreError> {
    if store.settlement(bank, day)?.is_some() {
        return Ok(BankDay {
            bank: bank.to_owned(),
            state: "settled".into(),
            breaks_open: 0,
        });
    }
    let Some(reconciliation) = store.reconciliation(Side::Bank, bank, day)? else {
        return Ok(BankDay {
            bank: bank.to_owned(),
            state: "not_reconciled".into(),
            breaks_open: 0,
        });
    };
    let mut open = 0;
    for id in &reconciliation.breaks {
        if store.break_item(*id)?.is_some_and(|b| b.resolved.is_none()) {
            open += 1;
        }
    }
    Ok(BankDay {
        bank: bank.to_owned(),
        state: if open == 0 {
            "reconciled"
        } else {
            "breaks_open"
        }
        .into(),
        breaks_open: open,
    })
}

/// The days as a table with a header line: what `day list` prints.
pub fn table(days: &[DayView]) -> String {
    let mut out = format!(
        "{:<10}  {:<10}  {:<20}  {:<10}  {}\n",
        "DAY", "STATE", "CLOSED", "BY", "BANKS"
    );
    for d in days {
        let banks: Vec<String> = (d.banks.iter())
            .map(|b| match b.state.as_str() {
                "breaks_open" => format!("{}: {} break(s) open", b.bank, b.breaks_open),
                state => format!("{}: {}", b.bank, state.replace('_', " ")),
            })
            .collect();
        out += &format!(
            "{:<10}  {:<10}  {:<20}  {:<10}  {}\n",
            d.day,
            d.state,
            d.closed_at.as_deref().unwrap_or("-"),
            d.closed_by.as_deref().unwrap_or("-"),
            banks.join(", ")
        );
    }
    out
}

pub(crate) fn rfc3339(at_ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(at_ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// `GET /days` and `POST /days/close`.
pub(super) fn routes() -> axum::Router<Shared> {
    axum::Router::new()
        .route("/days", get(http_list))
        .route("/days/close", post(http_close))
}

async fn http_list(
    State(shared): State<Shared>,
) -> Result<Json<Vec<DayView>>, (StatusCode, Json<Refusal>)> {
    let listed = tokio::task::spawn_blocking(move || {
        let open = shared.decider.open_day();
        views(shared.decider.store(), &shared.config, &open)
    });
    match listed.await {
        Ok(days) => days.map(Json).map_err(|e| answer_error(e.into())),
        Err(e) => Err(answer_error(BackofficeError::Remote(e.to_string()))),
    }
}

async fn http_close(
    State(shared): State<Shared>,
    Json(request): Json<CloseRequest>,
) -> Result<Json<Closed>, (StatusCode, Json<Refusal>)> {
    let decider = shared.decider.clone();
    let closed = tokio::task::spawn_blocking(move || decider.close_day(&request.by))
        .await
        .map_err(|e| answer_error(BackofficeError::Remote(e.to_string())))?
        .map_err(|e| answer_error(e.into()))?;
    (shared.decider.journal().wait_durable(closed.seq).await)
        .map_err(|e| answer_error(BackofficeError::Data(e.into())))?;
    Ok(Json(Closed {
        closed: closed.day,
        open: closed.open,
    }))
}
