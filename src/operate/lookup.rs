//! Customer-service lookups: what became of a replenishment, found by the confirmation
//! number on the customer's receipt (DE62 of the approval). It shows the decision, the
//! prepaid account (masked), the subscriber and amount credited, what happened since
//! (completed, reversed, expired), and whether the prepaid engine has acknowledged the
//! credit or the switch is still sending it; for a PIN sale, the product and the
//! voucher's serial (never the PIN). `replenish lookup NUMBER` reads the data
//! directory when no switch holds it, and otherwise asks the running switch's HTTP
//! endpoint (the `[metrics] listen` address): `GET /transactions/{confirmation}`.
//! A decision made in the last few milliseconds may not be indexed yet, and is then
//! reported as not found.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::durable::datadir::DataDir;
use crate::durable::record::{Side, Standing, TransactionEntry};
use crate::durable::store::{Store, StoreError};
use crate::operate::operator::Endpoint;
use crate::operate::queue::QueueError;
use crate::switch::decide::Decider;
use crate::vocab::confirmation::ConfirmationNumbers;
use crate::vocab::key::TransactionKey;
use crate::wire::iso8583::mask_pan;

/// How the endpoint's `404` for an unknown number begins.
const NOT_FOUND: &str = "no approval with confirmation number";

/// A transaction as customer service sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Found {
    /// The confirmation number looked up.
    pub confirmation: String,
    /// The transaction key (acquirer, terminal, DE11, DE7, class).
    pub key: String,
    /// The request MTI.
    pub mti: String,
    /// DE39 answered.
    pub code: String,
    /// The UTC day its usage counts toward.
    pub day: String,
    /// The prepaid account, masked.
    pub account: Option<String>,
    /// The subscriber credited (DE102), the engine and the amount, when it credits.
    pub credit: Option<Credited>,
    /// For a PIN sale: the product, the voucher's serial and where the PIN stands
    /// (never the PIN).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin: Option<SoldPin>,
    /// What happened to it since its decision.
    pub standing: String,
    /// Where its credit is: with the engine, on its way, or none.
    pub delivery: String,
    /// For an authorization completed by an advice: that advice's key.
    pub completed_by: Option<String>,
    /// The business day it was decided in.
    #[serde(default)]
    pub business_day: String,
    /// Where the bank's file stands on it: `matched`, a break's class (with
    /// `, resolved` once resolved), or `not reconciled`.
    #[serde(default)]
    pub bank: String,
    /// Where the engine's report stands on its credit, likewise (`no credit` when none).
    #[serde(default)]
    pub engine: String,
}

impl std::fmt::Display for Found {
    /// One `name value` line per part, for `replenish lookup`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let credit = self.credit.as_ref().map_or_else(
            || "none".to_owned(),
            |c| {
                format!(
                    "{} minor units of currency {} to subscriber {} at engine {}",
                    c.amount, c.currency, c.min, c.engine
                )
            },
        );
        let request = format!("{} answered {} on {}", self.mti, self.code, self.day);
        let pin = self.pin.as_ref().map_or_else(
            || "-".to_owned(),
            |p| format!("{} serial {} ({})", p.sku, p.serial, p.state),
        );
        let rows = [
            ("confirmation", self.confirmation.as_str()),
            ("transaction", self.key.as_str()),
            ("request", request.as_str()),
            ("account", self.account.as_deref().unwrap_or("-")),
            ("credit", credit.as_str()),
            ("pin", pin.as_str()),
            ("since", self.standing.as_str()),
            ("delivery", self.delivery.as_str()),
            ("business day", self.business_day.as_str()),
            ("bank file", self.bank.as_str()),
            ("engine report", self.engine.as_str()),
        ];
        for (name, value) in rows {
            writeln!(f, "{name:<13}{value}")?;
        }
        Ok(())
    }
}

/// The PIN a sale drew, as customer service may see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SoldPin {
    /// The product.
    pub sku: String,
    /// The voucher's serial.
    pub serial: String,
    /// `sold`, `voided` or `available` (put back in stock after a reversal).
    pub state: String,
}

/// The credit of a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credited {
    /// The engine (config name).
    pub engine: String,
    /// The subscriber (MIN).
    pub min: String,
    /// Minor units.
    pub amount: u64,
    /// DE49.
    pub currency: String,
}

/// Looks `confirmation` up in `store`; `Ok(None)` when no approval has that number.
pub fn find(
    store: &Store,
    numbers: &ConfirmationNumbers,
    confirmation: &str,
) -> Result<Option<Found>, StoreError> {
    let Some(key) = store.by_confirmation(numbers, confirmation)? else {
        return Ok(None);
    };
    let Some(entry) = store.transaction(&key)? else {
        return Ok(None);
    };
    // A completion advice reuses its authorization's number: the number finds the
    // authorization, whose entry names the completion that made the credit.
    if let Some(completion) = &entry.completed_by {
        if let Some(completed) = store.transaction(completion)? {
            return describe(store, confirmation, completion, &completed).map(Some);
        }
    }
    describe(store, confirmation, &key, &entry).map(Some)
}

/// The PIN a sale drew and where it stands now.
fn sold_pin(store: &Store, entry: &TransactionEntry) -> Result<Option<SoldPin>, StoreError> {
    let Some(voucher) = entry.credit.as_ref().and_then(|c| c.voucher.as_deref()) else {
        return Ok(None);
    };
    let state = store.pin(&voucher.sku, &voucher.serial)?.map_or_else(
        || "unknown".to_owned(),
        |item| format!("{:?}", item.state).to_lowercase(),
    );
    Ok(Some(SoldPin {
        sku: voucher.sku.clone(),
        serial: voucher.serial.clone(),
        state,
    }))
}

fn describe(
    store: &Store,
    confirmation: &str,
    key: &TransactionKey,
    entry: &TransactionEntry,
) -> Result<Found, StoreError> {
    let delivery = delivery(store, entry)?;
    Ok(Found {
        confirmation: confirmation.to_owned(),
        key: key.0.clone(),
        mti: entry.mti.clone(),
        code: entry.code.as_str().to_owned(),
        day: entry.day.clone(),
        account: entry.account.as_deref().map(|a| mask_pan(a.as_bytes())),
        credit: entry.credit.as_ref().map(|c| Credited {
            engine: c.engine.clone(),
            min: c.min.clone(),
            amount: c.amount,
            currency: c.currency.clone(),
        }),
        pin: sold_pin(store, entry)?,
        standing: standing(entry),
        delivery,
        completed_by: entry.completed_by.as_ref().map(|k| k.0.clone()),
        business_day: entry.business_day.clone(),
        bank: bank_side(store, key, entry)?,
        engine: engine_side(store, confirmation, entry)?,
    })
}

/// The three-way view, bank side: a break on its key, else whether a bank's file of
/// its business day was reconciled (then it matched).
fn bank_side(
    store: &Store,
    key: &TransactionKey,
    entry: &TransactionEntry,
) -> Result<String, StoreError> {
    if let Some(state) = break_state(store, Side::Bank, &key.0)? {
        return Ok(state);
    }
    let reconciled = store.reconciled_parties(Side::Bank, &entry.business_day)?;
    Ok(
        match reconciled.is_empty() || entry.business_day.is_empty() {
            true => "not reconciled".into(),
            false => "matched".into(),
        },
    )
}

/// The three-way view, engine side: a break on its confirmation, else whether its
/// engine's report of the day was reconciled.
fn engine_side(
    store: &Store,
    confirmation: &str,
    entry: &TransactionEntry,
) -> Result<String, StoreError> {
    let Some(credit) = &entry.credit else {
        return Ok("no credit".into());
    };
    if let Some(state) = break_state(store, Side::Engine, confirmation)? {
        return Ok(state);
    }
    let reconciled = store.reconciled_parties(Side::Engine, &entry.business_day)?;
    Ok(match reconciled.contains(&credit.engine) {
        true => "matched".into(),
        false => "not reconciled".into(),
    })
}

fn break_state(store: &Store, side: Side, reference: &str) -> Result<Option<String>, StoreError> {
    let breaks = store.breaks_of(side, reference)?;
    Ok(breaks.last().map(|b| match &b.resolved {
        Some(_) => format!("{} (break {}), resolved", b.found.class, b.id),
        None => format!("{} (break {})", b.found.class, b.id),
    }))
}

/// What happened to a transaction since its decision, in words.
pub fn standing(entry: &TransactionEntry) -> String {
    match entry.standing {
        Standing::Open if entry.expires_ms.is_some() => match entry.held() {
            Some(amount) => format!("authorized: {amount} held until its completion"),
            None => "authorized".to_owned(),
        },
        Standing::Open => "as decided".to_owned(),
        Standing::Completed => "authorized, then completed".to_owned(),
        Standing::Expired => "authorized; the hold expired without a completion".to_owned(),
        Standing::Reversed { amount, full: true } => format!("reversed in full ({amount})"),
        Standing::Reversed { amount, .. } => format!("reversed in part ({amount})"),
        Standing::ReversedBeforeArrival => "reversed before it arrived".to_owned(),
    }
}

fn delivery(store: &Store, entry: &TransactionEntry) -> Result<String, StoreError> {
    let Some(credit) = &entry.credit else {
        return Ok("no credit".to_owned());
    };
    if entry.expires_ms.is_some() {
        return Ok("no credit of its own (an authorization; its completion credits)".to_owned());
    }
    let text = if store.awaits_ack(credit)? {
        format!(
            "waiting for {}'s acknowledgement (the switch retransmits until it comes)",
            credit.engine
        )
    } else if store.reversal_awaits_ack(credit)? {
        format!(
            "credited by {}; its reversal advice waits for acknowledgement",
            credit.engine
        )
    } else if matches!(entry.standing, Standing::Reversed { full: true, .. }) {
        format!("nothing outstanding with {} (reversed)", credit.engine)
    } else {
        format!("acknowledged by {}", credit.engine)
    };
    Ok(text)
}

/// Looks `confirmation` up in the data directory, or through the running switch.
pub fn lookup(config: &Config, confirmation: &str) -> Result<Option<Found>, QueueError> {
    match DataDir::open(config) {
        Ok(data) => {
            let found = data
                .confirmation_key()
                .and_then(|key| {
                    let numbers = ConfirmationNumbers::new(&key);
                    Ok(find(&data.store, &numbers, confirmation)?)
                })
                .map_err(QueueError::from);
            data.close()?;
            found
        }
        Err(e) if e.in_use() => remote(
            &Endpoint::of(config).map_err(QueueError::Remote)?,
            confirmation,
        ),
        Err(e) => Err(e.into()),
    }
}

fn remote(endpoint: &Endpoint, confirmation: &str) -> Result<Option<Found>, QueueError> {
    let url = endpoint.url(&format!("/transactions/{confirmation}"));
    let failed = |e: &dyn std::fmt::Display| QueueError::Remote(format!("{url}: {e}"));
    let mut response = endpoint
        .authorize(ureq::get(&url))
        .config()
        .http_status_as_error(false)
        .build()
        .call()
        .map_err(|e| failed(&e))?;
    let status = response.status();
    let text = response
        .body_mut()
        .read_to_string()
        .map_err(|e| failed(&e))?;
    match status.as_u16() {
        200 => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| failed(&e)),
        // The switch's own answer, not a 404 of a switch without this route.
        404 if text.starts_with(NOT_FOUND) => Ok(None),
        _ => Err(failed(&format!("{status}: {text}"))),
    }
}

/// The HTTP route of lookups, for the running switch's endpoint.
pub fn routes(decider: Arc<Decider>) -> axum::Router {
    axum::Router::new()
        .route("/transactions/{confirmation}", get(http_find))
        .with_state(decider)
}

async fn http_find(
    State(decider): State<Arc<Decider>>,
    Path(confirmation): Path<String>,
) -> Result<Json<Found>, (StatusCode, String)> {
    match find(decider.store(), decider.numbers(), &confirmation) {
        Ok(Some(found)) => Ok(Json(found)),
        Ok(None) => Err((StatusCode::NOT_FOUND, format!("{NOT_FOUND} {confirmation}"))),
        Err(e) => Err((StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}
