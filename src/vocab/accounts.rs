//! Reference data the rules read: prepaid accounts (number, MIN, carrier, status,
//! expiry) and replenishment locations, and their CSV import formats. Parsing checks
//! every row before anything is kept, so a bad file is reported by line number and
//! nothing of it is half-imported.

use std::io::Read;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::confirmation::luhn_valid;

/// Whether an account may be replenished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccountStatus {
    /// Activated: may be replenished.
    Active,
    /// Issued but not yet activated.
    Issued,
    /// Blocked by customer service.
    Blocked,
}

/// A prepaid account card and the subscriber it credits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// The account card number (Luhn-valid digits).
    pub number: String,
    /// Mobile identification number at the engine; empty until assigned.
    pub min: String,
    /// The carrier whose prepaid engine holds the balance.
    pub carrier: String,
    /// Activation state.
    pub status: AccountStatus,
    /// Last valid month (the account expires after it), if any.
    pub expiry: Option<(i32, u32)>,
}

impl Account {
    /// Whether the account has expired by `today`.
    pub fn expired(&self, today: NaiveDate) -> bool {
        use chrono::Datelike;
        self.expiry
            .is_some_and(|(year, month)| (today.year(), today.month()) > (year, month))
    }
}

/// A place where replenishments may (or may not) be made: DE42, the card acceptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    /// DE42 value (trimmed), or DE42/DE41 when terminals are checked.
    pub id: String,
    /// Display name.
    pub name: String,
    /// The retailer it belongs to.
    pub retailer: String,
    /// Whether replenishments are allowed there.
    pub authorized: bool,
}

/// A CSV row that cannot be imported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct RowError {
    /// 1-based line in the file (the header is line 1).
    pub line: u64,
    /// What is wrong, naming the column.
    pub reason: String,
}

#[derive(Deserialize)]
struct AccountRow {
    account: String,
    min: String,
    carrier: String,
    status: String,
    expiry: String,
}

#[derive(Deserialize)]
struct LocationRow {
    location: String,
    name: String,
    retailer: String,
    authorized: String,
}

/// Parses an accounts CSV (header `account,min,carrier,status,expiry`; expiry `YYYY-MM`
/// or empty). Every bad row is reported; `Err` holds them all.
pub fn parse_accounts(input: impl Read) -> Result<Vec<Account>, Vec<RowError>> {
    parse_rows(input, |row: AccountRow| {
        let number = row.account.trim().to_owned();
        if !luhn_valid(number.as_bytes()) {
            return Err("account: not digits with a valid check digit".into());
        }
        let min = row.min.trim().to_owned();
        if !min.bytes().all(|b| b.is_ascii_digit()) || min.len() > 15 {
            return Err("min: up to 15 digits, or empty".into());
        }
        let status = match row.status.trim() {
            "active" => AccountStatus::Active,
            "issued" => AccountStatus::Issued,
            "blocked" => AccountStatus::Blocked,
            other => {
                return Err(format!(
                    "status: {other:?} is not active, issued or blocked"
                ));
            }
        };
        let carrier = row.carrier.trim().to_owned();
        if carrier.is_empty() {
            return Err("carrier: empty".into());
        }
        let expiry = parse_month(row.expiry.trim())?;
        Ok(Account {
            number,
            min,
            carrier,
            status,
            expiry,
        })
    })
}

/// Parses a locations CSV (header `location,name,retailer,authorized`).
pub fn parse_locations(input: impl Read) -> Result<Vec<Location>, Vec<RowError>> {
    parse_rows(input, |row: LocationRow| {
        let id = row.location.trim().to_owned();
        if id.is_empty() || id.len() > 24 {
            return Err("location: 1 to 24 characters".into());
        }
        let authorized = match row.authorized.trim() {
            "true" => true,
            "false" => false,
            other => return Err(format!("authorized: {other:?} is not true or false")),
        };
        Ok(Location {
            id,
            name: row.name.trim().to_owned(),
            retailer: row.retailer.trim().to_owned(),
            authorized,
        })
    })
}

fn parse_month(text: &str) -> Result<Option<(i32, u32)>, String> {
    if text.is_empty() {
        return Ok(None);
    }
    let bad = || format!("expiry: {text:?} is not YYYY-MM");
    let (year, month) = text.split_once('-').ok_or_else(bad)?;
    let year: i32 = year.parse().map_err(|_| bad())?;
    let month: u32 = month.parse().map_err(|_| bad())?;
    if year.to_string().len() != 4 || !(1..=12).contains(&month) {
        return Err(bad());
    }
    Ok(Some((year, month)))
}

/// Reads every row with `convert`, collecting all errors with their line numbers.
fn parse_rows<Row, T>(
    input: impl Read,
    convert: impl Fn(Row) -> Result<T, String>,
) -> Result<Vec<T>, Vec<RowError>>
where
    Row: for<'de> Deserialize<'de>,
{
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(input);
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    for (index, record) in reader.deserialize::<Row>().enumerate() {
        let line = index as u64 + 2;
        let converted = record.map_err(|e| csv_reason(&e)).and_then(&convert);
        match converted {
            Ok(row) => rows.push(row),
            Err(reason) => errors.push(RowError { line, reason }),
        }
    }
    if errors.is_empty() {
        Ok(rows)
    } else {
        Err(errors)
    }
}

fn csv_reason(error: &csv::Error) -> String {
    match error.kind() {
        csv::ErrorKind::Deserialize { err, .. } => match err.field() {
            Some(column) => format!("column {}: {}", column + 1, err.kind()),
            None => err.kind().to_string(),
        },
        _ => error.to_string(),
    }
}

/// Approved count and amount of one account on one day.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Usage {
    /// Approved transactions.
    pub count: u32,
    /// Approved amount, minor units.
    pub amount: u64,
}

impl Usage {
    /// The usage after adding `count` and `amount` (negative for reversals and expired
    /// holds; never below zero).
    pub fn adjusted(self, count: i32, amount: i64) -> Usage {
        Usage {
            count: self.count.saturating_add_signed(count),
            amount: self.amount.saturating_add_signed(amount),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_parse_and_bad_rows_name_their_line() {
        let good = "account,min,carrier,status,expiry\n\
                    4761739001010010,2065550100,carrier-a,active,2030-12\n\
                    4761739001010028,,carrier-a,issued,\n";
        let accounts = parse_accounts(good.as_bytes()).expect("valid");
        assert_eq!(accounts.len(), 2);
        assert_eq!(accounts[0].expiry, Some((2030, 12)));
        assert_eq!(accounts[1].status, AccountStatus::Issued);

        let bad = "account,min,carrier,status,expiry\n\
                   4761739001010010,2065550100,carrier-a,active,2030-12\n\
                   4761739001010011,2065550100,carrier-a,active,2030-12\n\
                   4761739001010028,2065550101,carrier-a,sleeping,2030-13\n";
        let errors = parse_accounts(bad.as_bytes()).expect_err("two bad rows");
        assert_eq!(errors.iter().map(|e| e.line).collect::<Vec<_>>(), [3, 4]);
        assert!(
            errors[0].to_string().starts_with("line 3: account"),
            "{}",
            errors[0]
        );
    }

    #[test]
    fn expiry_is_inclusive_of_its_month() {
        let account = Account {
            number: "4761739001010010".into(),
            min: "1".into(),
            carrier: "c".into(),
            status: AccountStatus::Active,
            expiry: Some((2026, 11)),
        };
        let day = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).expect("date");
        assert!(!account.expired(day(2026, 11, 30)));
        assert!(account.expired(day(2026, 12, 1)));
    }

    #[test]
    fn locations_parse_and_refuse_bad_flags() {
        let good =
            "location,name,retailer,authorized\nLOC000000001234,Corner Store 12,Corner,true\n";
        assert!(parse_locations(good.as_bytes()).expect("valid")[0].authorized);
        let bad = "location,name,retailer,authorized\nLOC1,Shop,R,yes\nLOC2,Shop\n";
        let errors = parse_locations(bad.as_bytes()).expect_err("bad");
        assert_eq!(errors.len(), 2);
        assert_eq!(errors[0].line, 2);
    }
}
