//! Operator commands on the data directory: importing the accounts and the authorized
//! replenishment locations from CSV files. A file is checked whole before anything is
//! written; every bad row is reported with its line number and a file with one bad row
//! imports nothing. A good file is journaled as one record (so it is durable and
//! all-or-nothing) and applied to the indexes; re-importing a row replaces it.

use std::path::Path;

use crate::config::Config;
use crate::durable::datadir::{DataDir, DataError};
use crate::durable::record::Record;
use crate::vocab::accounts::{self, RowError};

/// Why an import did nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// The file could not be read.
    #[error("{file}: {source}")]
    Read {
        /// The file.
        file: String,
        /// Why.
        source: std::io::Error,
    },
    /// Rows that are not valid; nothing was imported.
    #[error("{file}: {} bad row(s), nothing imported:\n{}", rows.len(), list(file, rows))]
    Rows {
        /// The file.
        file: String,
        /// Every bad row.
        rows: Vec<RowError>,
    },
    /// The data directory (in use by a running switch, or damaged).
    #[error("{0}")]
    Data(#[from] DataError),
}

fn list(file: &str, rows: &[RowError]) -> String {
    let lines: Vec<String> = rows
        .iter()
        .map(|r| format!("{file}:{}: {}", r.line, r.reason))
        .collect();
    lines.join("\n")
}

/// What a table import is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// `account,min,carrier,status,expiry`.
    Accounts,
    /// `location,name,retailer,authorized`.
    Locations,
}

/// Imports `file` into the data directory of `config`; returns the rows imported.
pub fn import(config: &Config, table: Table, file: &Path) -> Result<usize, ImportError> {
    let name = file.display().to_string();
    let bytes = std::fs::read(file).map_err(|source| ImportError::Read {
        file: name.clone(),
        source,
    })?;
    let rows = |rows| ImportError::Rows {
        file: name.clone(),
        rows,
    };
    let (record, count) = match table {
        Table::Accounts => {
            let accounts = accounts::parse_accounts(bytes.as_slice()).map_err(rows)?;
            let count = accounts.len();
            (Record::AccountsImported { accounts }, count)
        }
        Table::Locations => {
            let locations = accounts::parse_locations(bytes.as_slice()).map_err(rows)?;
            let count = locations.len();
            (Record::LocationsImported { locations }, count)
        }
    };
    commit(config, &[record])?;
    Ok(count)
}

/// Journals `records` into the data directory of `config` and indexes them (the switch
/// must not be running on it).
pub fn commit(config: &Config, records: &[Record]) -> Result<(), DataError> {
    let data = DataDir::open(config)?;
    data.commit(records)?;
    data.close()
}
