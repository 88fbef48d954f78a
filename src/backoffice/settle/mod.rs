//! `replenish settle --day D --bank NAME [--out DIR]` (BACKOFFICE.md §3, seed step 313):
//! how a reconciled day's money is disbursed. Every approval of the bank's links that
//! day is split by the fee schedule on what is left of it after reversals (partial:
//! the rest; full: nothing), between the service provider, the location's retailer
//! (none for an ATM transfer), the bank and the account's carrier; the parties' totals
//! per currency are journaled and written as `DIR/NAME-DAY.json` and an ISO 20022
//! `pain.001.001.09` credit transfer from the bank's settlement account
//! (`DIR/NAME-DAY.pain.001.xml`; with several currencies, one pair per currency with the
//! currency's number before the extension). Settling a settled day writes the same
//! bytes again and journals nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::BackofficeError;
use super::reconcile::Books;
use crate::config::{Bank, Config};
use crate::durable::record::{PartyAmount, Record, SettledDay, Settlement};

mod pain001;

/// The files written for a settled day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// The settlement as journaled.
    pub settled: SettledDay,
    /// The files, JSON then XML per currency.
    pub files: Vec<PathBuf>,
}

/// The settlement of `bank`'s `day` on `books`: the one journaled before, or a new one
/// (refused unless the day is reconciled for the bank), journaled.
pub fn settled_on(
    books: &Books<'_>,
    config: &Config,
    bank: &str,
    day: &str,
) -> Result<SettledDay, BackofficeError> {
    let bank = config
        .find_bank(bank)
        .ok_or_else(|| BackofficeError::Input(format!("--bank: no bank named {bank:?}")))?;
    debtor(config, &bank.name)?;
    if let Some(settled) = books.store.settlement(&bank.name, day)? {
        return Ok(settled);
    }
    let closed = super::reconcile::closed_day(books.store, day)?;
    let state = super::days::bank_day(books.store, &bank.name, day)?;
    if state.state != "reconciled" {
        return Err(BackofficeError::Refused(format!(
            "business day {day} of bank {} is not reconciled ({}): reconcile its file and resolve every break first",
            bank.name,
            state.state.replace('_', " ")
        )));
    }
    let settled = split_day(books, config, &bank, &closed)?;
    check_payees(config, &settled)?;
    (books.commit)(&[Record::Settled(Box::new(settled.clone()))])?;
    Ok(settled)
}

/// The bank's settlement account, or why it cannot be settled.
fn debtor(
    config: &Config,
    bank: &str,
) -> Result<crate::config::SettlementAccount, BackofficeError> {
    (config.bank.iter().find(|b| b.name == bank))
        .and_then(|b| b.settlement_account.clone())
        .ok_or_else(|| {
            BackofficeError::Refused(format!(
                "bank {bank} has no settlement_account in its [[bank]] section"
            ))
        })
}

/// Every party with money needs a payee (retailers and `*` carriers come from data).
fn check_payees(config: &Config, settled: &SettledDay) -> Result<(), BackofficeError> {
    for settlement in &settled.settlements {
        for share in &settlement.parties {
            if share.amount > 0 && config.payee_of(&share.party).is_none() {
                return Err(BackofficeError::Refused(format!(
                    "{} is owed {} minor units of {} but has no [[payee]]",
                    share.party, share.amount, settlement.currency
                )));
            }
        }
    }
    Ok(())
}

/// What one currency adds up to.
#[derive(Default)]
struct Tally {
    total: u64,
    transactions: u64,
    parties: BTreeMap<String, u64>,
}

/// Splits every approval of `bank`'s day.
fn split_day(
    books: &Books<'_>,
    config: &Config,
    bank: &Bank,
    closed: &crate::durable::store::ClosedDay,
) -> Result<SettledDay, BackofficeError> {
    let mut tallies: BTreeMap<String, Tally> = BTreeMap::new();
    super::shares::each_share(books, config, closed, Some(&bank.name), |share| {
        if share.net == 0 {
            return;
        }
        let tally = tallies.entry(share.currency.to_owned()).or_default();
        tally.total += share.net;
        tally.transactions += 1;
        for (party, amount) in parties(share) {
            *tally.parties.entry(party).or_default() += amount;
        }
    })?;
    if tallies.is_empty() {
        // A day with nothing to split still has its file, saying so (in the first
        // currency the switch accepts); no pain.001 is written for it.
        let currency = (config.limits.currencies.first().cloned()).unwrap_or_default();
        tallies.insert(currency, Tally::default());
    }
    let settlements = (tallies.into_iter())
        .map(|(currency, tally)| Settlement {
            bank: bank.name.clone(),
            day: closed.day.clone(),
            currency,
            total: tally.total,
            transactions: tally.transactions,
            parties: (tally.parties.into_iter())
                .map(|(party, amount)| PartyAmount { party, amount })
                .collect(),
        })
        .collect();
    Ok(SettledDay {
        bank: bank.name.clone(),
        day: closed.day.clone(),
        at_ms: chrono::Utc::now().timestamp_millis(),
        settlements,
    })
}

/// Each party of a share with its part (the retailer only where one is paid).
pub fn parties(share: &super::shares::Share<'_>) -> Vec<(String, u64)> {
    let mut parties = vec![("provider".to_owned(), share.parts.provider)];
    if let Some(retailer) = share.retailer {
        parties.push((format!("retailer:{retailer}"), share.parts.retailer));
    }
    parties.push((format!("bank:{}", share.bank), share.parts.bank));
    parties.push((format!("carrier:{}", share.carrier), share.parts.carrier));
    parties
}

/// Writes each currency's JSON and pain.001 files.
fn write(
    out: &Path,
    settled: &SettledDay,
    config: &Config,
    debtor: &crate::config::SettlementAccount,
) -> Result<Vec<PathBuf>, BackofficeError> {
    std::fs::create_dir_all(out)
        .map_err(|e| BackofficeError::Input(format!("{}: {e}", out.display())))?;
    let several = settled.settlements.len() > 1;
    let mut files = Vec::new();
    for settlement in &settled.settlements {
        let stem = match several {
            true => format!("{}-{}-{}", settled.bank, settled.day, settlement.currency),
            false => format!("{}-{}", settled.bank, settled.day),
        };
        let json = serde_json::to_string_pretty(settlement)
            .map_err(|e| BackofficeError::Remote(e.to_string()))?;
        let mut contents = vec![(format!("{stem}.json"), json + "\n")];
        if settlement.parties.iter().any(|p| p.amount > 0) {
            let xml = pain001::document(settlement, debtor, config, settled.at_ms)
                .map_err(BackofficeError::Refused)?;
            contents.push((format!("{stem}.pain.001.xml"), xml));
        }
        for (name, text) in contents {
            let path = out.join(name);
            crate::durable::datadir::write_durably(&path, text.as_bytes())
                .map_err(|e| BackofficeError::Remote(format!("{}: {e}", path.display())))?;
            files.push(path);
        }
    }
    Ok(files)
}

/// What `settle` prints: the files, then each currency's split per party.
pub fn summary(written: &Written) -> String {
    let settled = &written.settled;
    let mut out = format!(
        "settled bank {} business day {}\n",
        settled.bank, settled.day
    );
    for file in &written.files {
        out += &format!("  wrote {}\n", file.display());
    }
    for settlement in &settled.settlements {
        out += &format!(
            "  currency {}: {} transactions, {} minor units\n",
            settlement.currency, settlement.transactions, settlement.total
        );
        for share in &settlement.parties {
            out += &format!("    {:<32} {:>14}\n", share.party, share.amount);
        }
    }
    out
}

/// `replenish settle`: the settlement made on the data directory, or by the running
/// switch (which journals it); the files are written here into `out`.
pub fn settle(
    config: &Config,
    bank: &str,
    day: &str,
    out: &Path,
) -> Result<Written, BackofficeError> {
    let route = format!("/settlements/{bank}/{day}");
    let settled = super::with_books(
        config,
        |books| settled_on(books, config, bank, day),
        |endpoint| Ok(endpoint.call::<(), _>("POST", &route, None)?),
    )?;
    let files = write(out, &settled, config, &debtor(config, &settled.bank)?)?;
    Ok(Written { settled, files })
}

/// `POST /settlements/{bank}/{day}`: the settlement, made and journaled if new.
pub(super) fn routes() -> axum::Router<super::Shared> {
    axum::Router::new().route(
        "/settlements/{bank}/{day}",
        axum::routing::post(http_settle),
    )
}

async fn http_settle(
    axum::extract::State(shared): axum::extract::State<super::Shared>,
    axum::extract::Path((bank, day)): axum::extract::Path<(String, String)>,
) -> Result<
    axum::Json<SettledDay>,
    (
        axum::http::StatusCode,
        axum::Json<crate::operate::operator::Refusal>,
    ),
> {
    super::on_switch_books(shared, move |books, config| {
        settled_on(books, config, &bank, &day)
    })
    .await
}
