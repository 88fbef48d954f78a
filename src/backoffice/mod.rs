//! The back office (BACKOFFICE.md §1-§3, §5): business days ([`days`]), reconciliation
//! with the banks and the prepaid engines ([`reconcile`]), settlement and reports, and
//! the PIN stock ([`stock`]). Every command works on the data directory when no switch runs and
//! through the running switch's endpoint when one does; every change it makes is a
//! journal record first.
//!
//! May import: [`crate::operate`], [`crate::switch`], [`crate::pins`], [`crate::engine`],
//! [`crate::durable`], [`crate::vocab`], [`crate::wire`], [`crate::config`].

pub mod days;
pub mod reconcile;
pub mod report;
pub mod settle;
pub mod shares;
pub mod stock;

use std::sync::Arc;

use axum::Json;
use axum::http::StatusCode;
use serde::Serialize;

use crate::config::Config;
use crate::durable::datadir::{DataDir, DataError};
use crate::durable::store::StoreError;
use crate::operate::operator::{Endpoint, Refusal, Remote};
use crate::switch::decide::{Decider, SwitchError};

/// Why a back-office command did not do what was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackofficeError {
    /// Bad input (a file, an argument): exit 2; the message names the file, line or
    /// field at fault.
    #[error("{0}")]
    Input(String),
    /// Refused, saying why (a day still open, a break already resolved): exit 1.
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

impl From<StoreError> for BackofficeError {
    fn from(e: StoreError) -> BackofficeError {
        BackofficeError::Data(e.into())
    }
}

impl From<Remote> for BackofficeError {
    fn from(e: Remote) -> BackofficeError {
        match e {
            Remote::Refused(why) => BackofficeError::Refused(why),
            Remote::BadInput(why) => BackofficeError::Input(why),
            Remote::Failed(why) => BackofficeError::Remote(why),
        }
    }
}

/// Runs `offline` on the data directory, or `remote` through the running switch that
/// holds it.
pub fn with_data<T>(
    config: &Config,
    offline: impl FnOnce(&DataDir) -> Result<T, BackofficeError>,
    remote: impl FnOnce(&Endpoint) -> Result<T, BackofficeError>,
) -> Result<T, BackofficeError> {
    match DataDir::open(config) {
        Ok(data) => {
            let result = offline(&data);
            data.close()?;
            result
        }
        Err(e) if e.in_use() => remote(&Endpoint::of(config).map_err(BackofficeError::Remote)?),
        Err(e) => Err(e.into()),
    }
}

/// Runs `offline` on the books of the data directory (journaling through it), or
/// `remote` through the running switch that holds it.
pub fn with_books<T>(
    config: &Config,
    offline: impl FnOnce(&reconcile::Books<'_>) -> Result<T, BackofficeError>,
    remote: impl FnOnce(&Endpoint) -> Result<T, BackofficeError>,
) -> Result<T, BackofficeError> {
    with_data(
        config,
        |data| {
            let commit = |records: &[crate::durable::record::Record]| Ok(data.commit(records)?);
            let key = data.confirmation_key()?;
            let numbers = crate::vocab::confirmation::ConfirmationNumbers::new(&key);
            let books = reconcile::Books {
                store: &data.store,
                journal_dir: data.path.join("journal"),
                commit: &commit,
                numbers: &numbers,
            };
            offline(&books)
        },
        remote,
    )
}

/// Runs `work` on the running switch's books (journaling through its decider), on a
/// blocking thread, and answers with its JSON or its error.
pub(crate) async fn on_switch_books<T: Serialize + Send + 'static>(
    shared: Shared,
    work: impl FnOnce(&reconcile::Books<'_>, &Config) -> Result<T, BackofficeError> + Send + 'static,
) -> Result<Json<T>, (StatusCode, Json<Refusal>)> {
    let blocking = move || {
        // One back-office change at a time: each checks the indexes before it journals
        // (a break found before, a day settled), so two at once could both pass.
        static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _serial = SERIAL
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let decider = &shared.decider;
        let commit =
            |records: &[crate::durable::record::Record]| Ok(decider.journal_records(records)?);
        let books = reconcile::Books {
            store: decider.store(),
            journal_dir: shared.config.data_dir.join("journal"),
            commit: &commit,
            numbers: decider.numbers(),
        };
        work(&books, &shared.config)
    };
    match tokio::task::spawn_blocking(blocking).await {
        Ok(Ok(value)) => Ok(Json(value)),
        Ok(Err(e)) => Err(answer_error(e)),
        Err(e) => Err(answer_error(BackofficeError::Remote(e.to_string()))),
    }
}

/// What the back office's routes share: the decider and the config.
#[derive(Clone)]
pub struct Shared {
    /// The running switch's decider.
    pub decider: Arc<Decider>,
    /// Its config.
    pub config: Arc<Config>,
}

/// The back office's HTTP routes for the running switch's endpoint.
pub fn routes(decider: Arc<Decider>, config: Arc<Config>) -> axum::Router {
    unbound_routes().with_state(Shared { decider, config })
}

/// The back office's routes before their state is given (rooms above add theirs).
pub fn unbound_routes() -> axum::Router<Shared> {
    days::routes()
        .merge(reconcile::routes())
        .merge(settle::routes())
        .merge(report::routes())
        .merge(stock::routes())
}

/// A route's answer: its JSON, or a refusal (see [`answer_error`]).
pub(crate) type Answer<T> = Result<Json<T>, (StatusCode, Json<Refusal>)>;

/// A failed route's answer: refusals and bad input as `{"error"}` with 409 or 422,
/// anything else 500.
pub(crate) fn answer_error(e: BackofficeError) -> (StatusCode, Json<Refusal>) {
    let status = match &e {
        BackofficeError::Refused(_) => StatusCode::CONFLICT,
        BackofficeError::Input(_) => StatusCode::UNPROCESSABLE_ENTITY,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (
        status,
        Json(Refusal {
            error: e.to_string(),
        }),
    )
}
