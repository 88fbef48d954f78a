//! The PIN stock as operators keep it (BACKOFFICE.md §5): `replenish pins import` and
//! `replenish pins stock` work on the data directory when no switch runs and through
//! the running switch when one does (`POST /pins/{sku}` with the file's bytes, `GET
//! /pins`), so a product is restocked without stopping sales. On the switch an import
//! is checked against the stock the switch indexes and sealed with its key, journaled,
//! and only once durable and indexed put on the product's shelf; imports are one at a
//! time, like every back-office change.

use std::path::Path;

use axum::extract::{Path as Route, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use super::{BackofficeError, Shared, on_switch_books, with_data};
use crate::config::Config;
use crate::durable::record::Record;
use crate::durable::store::Stock;
use crate::operate::operator::FILE_NAME;
use crate::pins::{self, PinsError};

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Imported {
    /// The product.
    pub sku: String,
    /// PINs added.
    pub count: usize,
}

/// Imports `file` into `sku`'s stock, on the data directory or through the running
/// switch (as `by`).
pub fn import(
    config: &Config,
    file: &Path,
    sku: &str,
    by: &str,
) -> Result<Imported, BackofficeError> {
    let name = file.display().to_string();
    let bytes = std::fs::read(file).map_err(|e| BackofficeError::Input(format!("{name}: {e}")))?;
    with_data(
        config,
        |data| {
            let count =
                (pins::import_into(data, config, (&name, &bytes), sku, by)).map_err(from_pins)?;
            Ok(Imported {
                sku: sku.to_owned(),
                count,
            })
        },
        |endpoint| Ok(endpoint.upload(&format!("/pins/{sku}"), &name, bytes.clone())?),
    )
}

/// Every product's stock, from the data directory or the running switch.
pub fn stock(config: &Config) -> Result<Vec<Stock>, BackofficeError> {
    with_data(
        config,
        |data| Ok(data.store.stock(&skus(config))?),
        |endpoint| Ok(endpoint.call::<(), _>("GET", "/pins", None)?),
    )
}

fn skus(config: &Config) -> Vec<&str> {
    config.product.iter().map(|p| p.sku.as_str()).collect()
}

/// A PIN command's error as the back office reports it (bad input: exit 2).
pub fn from_pins(e: PinsError) -> BackofficeError {
    match e {
        PinsError::Input(message) => BackofficeError::Input(message),
        PinsError::Data(e) => BackofficeError::Data(e),
        other => BackofficeError::Remote(other.to_string()),
    }
}

/// `POST /pins/{sku}` (the file's bytes, `X-File-Name` naming it) and `GET /pins`.
pub(super) fn routes() -> axum::Router<Shared> {
    axum::Router::new()
        .route("/pins", get(http_stock))
        .route("/pins/{sku}", post(http_import))
        .layer(axum::extract::DefaultBodyLimit::max(16 << 20))
}

async fn http_stock(State(shared): State<Shared>) -> super::Answer<Vec<Stock>> {
    let decider = shared.decider.clone();
    on_switch_books(shared, move |books, config| {
        // Every sale answered so far counts: the index catches up first.
        decider.wait_indexed(decider.journal().durable_seq());
        Ok(books.store.stock(&skus(config))?)
    })
    .await
}

async fn http_import(
    State(shared): State<Shared>,
    Route(sku): Route<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> super::Answer<Imported> {
    let name = (headers.get(FILE_NAME))
        .and_then(|v| v.to_str().ok())
        .unwrap_or("upload")
        .to_owned();
    let decider = shared.decider.clone();
    on_switch_books(shared, move |books, config| {
        let vault = (decider.catalog().vault())
            .ok_or_else(|| BackofficeError::Input(format!("--sku {sku}: no products")))?;
        let batch = pins::seal_batch(books.store, vault, config, (&name, &body), &sku, BY_TOKEN)
            .map_err(from_pins)?;
        let count = batch.pins.len();
        (books.commit)(&[Record::PinsImported(Box::new(batch.clone()))])?;
        let on_shelf = decider.stock_up(&batch);
        tracing::info!(sku, count, on_shelf, file = name, "PINs imported");
        Ok(Imported { sku, count })
    })
    .await
}

/// Who an import through the endpoint is journaled as.
const BY_TOKEN: &str = "operator-token";
