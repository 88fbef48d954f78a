//! PIN sales at the point of sale (BACKOFFICE.md §5, the second seed): the voucher PINs
//! of each product, kept sealed ([`crate::durable::vault`]). This room imports them
//! (`replenish pins import FILE --sku SKU`: the whole file is checked first, every bad
//! line named `FILE:LINE`, and a good file is one journal record, in stock whole or not
//! at all), reports the stock (`replenish pins stock`) and seals the stock again under
//! a new key (`replenish pins rekey`: in batches, each PIN opening under the old key or
//! the new one at every moment, both kept). For the sale itself it gives the decider
//! its [`catalog::Catalog`] (products, vault, policy), its [`shelf::Shelf`] (the PINs
//! in stock, drawn under the decider's lock) and [`make`] (PINs of `generated`
//! products).
//!
//! May import: [`crate::durable`], [`crate::vocab`], [`crate::config`].

pub mod catalog;
pub mod make;
pub mod shelf;

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

use crate::config::Config;
use crate::durable::datadir::{DataDir, DataError};
use crate::durable::record::{PinBatch, Record, Resealed, ResealedPin, StoredPin};
use crate::durable::store::{PinState, Stock, Store, StoreError};
use crate::durable::vault::{Vault, VaultError};

/// PINs one file may hold: a batch is one journal record (at most 1 MiB), so that it is
/// in stock whole or not at all. Larger batches are split into files of this size.
pub const MAX_PER_FILE: usize = 4000;

/// Why a PIN command did nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PinsError {
    /// Bad input: exit 2; the message names the file and line, or the argument.
    #[error("{0}")]
    Input(String),
    /// The data directory or its index.
    #[error("{0}")]
    Data(#[from] DataError),
    /// The PIN key.
    #[error("{0}")]
    Vault(#[from] VaultError),
}

impl From<StoreError> for PinsError {
    fn from(e: StoreError) -> PinsError {
        PinsError::Data(e.into())
    }
}

#[derive(Deserialize)]
struct Row {
    serial: String,
    pin: String,
    #[serde(default)]
    expiry: Option<String>,
}

/// A PIN read from a file, before it is sealed.
struct Read {
    line: u64,
    serial: String,
    pin: String,
    expiry: Option<String>,
}

/// Imports `file` into `sku`'s stock on the data directory of `config` (the switch
/// must not be running on it); returns how many PINs.
pub fn import(config: &Config, file: &Path, sku: &str, by: &str) -> Result<usize, PinsError> {
    let name = file.display().to_string();
    let bytes = std::fs::read(file).map_err(|e| PinsError::Input(format!("{name}: {e}")))?;
    import_bytes(config, &name, &bytes, sku, by)
}

/// [`import`] of a file's content; `name` names it in errors and in the journal.
pub fn import_bytes(
    config: &Config,
    name: &str,
    bytes: &[u8],
    sku: &str,
    by: &str,
) -> Result<usize, PinsError> {
    let data = DataDir::open(config)?;
    let imported = import_into(&data, config, (name, bytes), sku, by);
    data.close()?;
    imported
}

/// [`import_bytes`] on an open data directory (no switch running on it).
pub fn import_into(
    data: &DataDir,
    config: &Config,
    file: (&str, &[u8]),
    sku: &str,
    by: &str,
) -> Result<usize, PinsError> {
    let vault = Vault::open_or_create(&config.pin_key_file())?;
    let batch = seal_batch(&data.store, &vault, config, file, sku, by)?;
    let count = batch.pins.len();
    data.commit(&[Record::PinsImported(Box::new(batch))])?;
    Ok(count)
}

/// A file's PINs checked whole against itself and the stock in `store`, and sealed
/// with `vault`: the batch to journal. `file` is its name (for errors and the record)
/// and its content. Every bad line is named `NAME:LINE`; no PIN is in any error.
pub fn seal_batch(
    store: &Store,
    vault: &Vault,
    config: &Config,
    (name, bytes): (&str, &[u8]),
    sku: &str,
    by: &str,
) -> Result<PinBatch, PinsError> {
    let product = (config.find_product(sku))
        .ok_or_else(|| PinsError::Input(format!("--sku {sku}: no [[product]] with that sku")))?;
    if product.mode != crate::vocab::products::PinMode::Bucket {
        return Err(PinsError::Input(format!(
            "--sku {sku}: its PINs are generated at sale time (mode = \"generated\")"
        )));
    }
    let (rows, mut problems) = read_rows(bytes);
    if rows.len() > MAX_PER_FILE {
        return Err(PinsError::Input(format!(
            "{name}: {} PINs; a file holds at most {MAX_PER_FILE} (split it: each file is \
             imported whole or not at all)",
            rows.len()
        )));
    }
    let mut pins = Vec::with_capacity(rows.len());
    for row in rows {
        let digest = vault.digest(&row.pin);
        if store.pin_sku(&row.serial)?.is_some() {
            problems.push((
                row.line,
                format!("serial: {} is in stock already", row.serial),
            ));
        } else if let Some(serial) = store.pin_by_digest(&digest)? {
            problems.push((row.line, format!("pin: in stock already (serial {serial})")));
        }
        pins.push(StoredPin {
            sealed: vault.seal(&row.serial, &row.pin)?,
            serial: row.serial,
            digest,
            expiry: row.expiry,
        });
    }
    if !problems.is_empty() {
        problems.sort_by_key(|(line, _)| *line);
        return Err(bad_lines(name, &problems));
    }
    Ok(PinBatch {
        sku: sku.to_owned(),
        file: Path::new(name)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        by: by.to_owned(),
        at_ms: chrono::Utc::now().timestamp_millis(),
        pins,
    })
}

/// Seals every PIN in stock again under a new key (the old key is kept beside the new
/// one: sold PINs sealed under it still open for repeats). Returns the new key's id and
/// how many PINs were sealed again.
pub fn rekey(config: &Config) -> Result<(String, usize), PinsError> {
    let data = DataDir::open(config)?;
    let rekeyed = (|| {
        let path = config.pin_key_file();
        Vault::open_or_create(&path)?;
        let id = Vault::rekey(&path)?;
        let vault = Vault::open_or_create(&path)?;
        let mut pins = Vec::new();
        for product in &config.product {
            for item in data.store.pins(&product.sku)? {
                if item.state != PinState::Available || item.sealed.key == id {
                    continue;
                }
                let pin = vault.open(&item.serial, &item.sealed)?;
                pins.push(ResealedPin {
                    sku: item.sku,
                    sealed: vault.seal(&item.serial, &pin)?,
                    serial: item.serial,
                });
            }
        }
        let count = pins.len();
        let records: Vec<Record> = (pins.chunks(MAX_PER_FILE))
            .map(|chunk| {
                Record::PinsResealed(Box::new(Resealed {
                    key: id.clone(),
                    pins: chunk.to_vec(),
                }))
            })
            .collect();
        data.commit(&records)?;
        Ok((id, count))
    })();
    data.close()?;
    rekeyed
}

/// Every product's stock.
pub fn stock(config: &Config) -> Result<Vec<Stock>, PinsError> {
    let data = DataDir::open(config)?;
    let skus: Vec<&str> = config.product.iter().map(|p| p.sku.as_str()).collect();
    let stock = data.store.stock(&skus);
    data.close()?;
    Ok(stock?)
}

fn bad_lines(name: &str, lines: &[(u64, String)]) -> PinsError {
    let listed: Vec<String> = (lines.iter())
        .map(|(line, reason)| format!("{name}:{line}: {reason}"))
        .collect();
    PinsError::Input(format!(
        "{name}: {} bad line(s), nothing imported:\n{}",
        lines.len(),
        listed.join("\n")
    ))
}

/// Reads every row (`serial,pin[,expiry]` with a header), checking each and the file as
/// a whole (a serial or PIN repeated): the good rows, and every bad line with why. A
/// PIN never appears in a reason.
fn read_rows(bytes: &[u8]) -> (Vec<Read>, Vec<(u64, String)>) {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(true)
        .from_reader(bytes);
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    let mut serials: HashMap<String, u64> = HashMap::new();
    let mut pins: HashMap<String, u64> = HashMap::new();
    for (index, record) in reader.deserialize::<Row>().enumerate() {
        let line = index as u64 + 2;
        let row = match record {
            Ok(row) => row,
            Err(e) => {
                errors.push((line, format!("not serial,pin[,expiry]: {}", csv_kind(&e))));
                continue;
            }
        };
        if let Err(reason) = check(&row) {
            errors.push((line, reason));
            continue;
        }
        if let Some(first) = serials.insert(row.serial.clone(), line) {
            errors.push((line, format!("serial: {} repeats line {first}", row.serial)));
            continue;
        }
        if let Some(first) = pins.insert(row.pin.clone(), line) {
            errors.push((line, format!("pin: repeats the PIN of line {first}")));
            continue;
        }
        rows.push(Read {
            line,
            serial: row.serial,
            pin: row.pin,
            expiry: row.expiry.filter(|e| !e.is_empty()),
        });
    }
    if rows.is_empty() && errors.is_empty() {
        errors.push((
            1,
            "no PINs (a header serial,pin[,expiry] and one line per PIN)".into(),
        ));
    }
    (rows, errors)
}

/// A CSV error without the record's content (it holds a PIN).
fn csv_kind(error: &csv::Error) -> String {
    match error.kind() {
        csv::ErrorKind::Deserialize { err, .. } => err.kind().to_string(),
        csv::ErrorKind::UnequalLengths { .. } => "wrong number of fields".into(),
        _ => "unreadable".into(),
    }
}

fn check(row: &Row) -> Result<(), String> {
    let serial_ok = (1..=32).contains(&row.serial.len())
        && (row.serial.bytes()).all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b));
    if !serial_ok {
        return Err("serial: 1 to 32 letters, digits, '-' or '_'".into());
    }
    if !(4..=32).contains(&row.pin.len()) || !row.pin.bytes().all(|b| b.is_ascii_digit()) {
        return Err("pin: 4 to 32 digits".into());
    }
    if let Some(expiry) = row.expiry.as_deref().filter(|e| !e.is_empty()) {
        if crate::vocab::calendar::parse_day(expiry).is_none() {
            return Err(format!("expiry: {expiry:?} is not YYYY-MM-DD"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_checked_whole_and_no_pin_appears_in_an_error() {
        let good = "serial,pin,expiry\nS1,123456789012,2027-12-31\nS2,123456789013,\n";
        let (rows, errors) = read_rows(good.as_bytes());
        assert_eq!((rows.len(), errors.len()), (2, 0));
        let bad = "serial,pin,expiry\n\
                   S1,123456789012,2027-12-31\n\
                   S1,555566667777,\n\
                   S3,123456789012,\n\
                   S 4,1234,\n\
                   S5,12a4,\n\
                   S6,98765432,2027-13-01\n";
        let (_, errors) = read_rows(bad.as_bytes());
        let lines: Vec<u64> = errors.iter().map(|(line, _)| *line).collect();
        assert_eq!(lines, [3, 4, 5, 6, 7]);
        assert!(errors[0].1.contains("repeats line 2"), "{errors:?}");
        assert!(errors[1].1.starts_with("pin: repeats"), "{errors:?}");
        let text = format!("{errors:?}");
        for pin in ["123456789012", "555566667777", "12a4", "98765432"] {
            assert!(!text.contains(pin), "no PIN in errors: {text}");
        }
        assert_eq!(read_rows(b"serial,pin\n").1.len(), 1, "an empty file");
    }
}
