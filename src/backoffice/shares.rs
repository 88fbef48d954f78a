//! Each approval of a business day with its split: what settlement, the revenue report
//! and the audit trail all add up. An approval is a decision that credited (a `0200`
//! approval, a credited advice, a completion); what is split is what is left of it
//! after reversals, read from the index (a partial reversal leaves the rest, a full one
//! nothing); the retailer is the location's (none for an ATM transfer, `40xxxx`), the
//! carrier the account's (a PIN sale's: its product's, BACKOFFICE.md §5, the card being
//! no prepaid account), the bank the one whose link the message came on. A console
//! adjustment (a goodwill credit a second person approved) has no bank: it is shared as
//! bank `adjustment` with no parts, so no bank settles it and reports can show it.

use std::collections::HashMap;

use super::BackofficeError;
use super::reconcile::Books;
use crate::config::Config;
use crate::durable::journal;
use crate::durable::record::{Credit, Decision, Record, Standing};
use crate::durable::store::ClosedDay;
use crate::vocab::fees::{self, Parties, Split};
use crate::vocab::people;

/// One approval and its split.
pub struct Share<'a> {
    /// The decision.
    pub decision: &'a Decision,
    /// The bank whose link it came on.
    pub bank: &'a str,
    /// The account's carrier.
    pub carrier: &'a str,
    /// The location's retailer, when one is paid.
    pub retailer: Option<&'a str>,
    /// DE49.
    pub currency: &'a str,
    /// The amount credited.
    pub gross: u64,
    /// What is left after reversals: what is split.
    pub net: u64,
    /// The parts of `net`.
    pub parts: Split,
}

/// Calls `each` with every approval of `day` (of `only` bank's links, when given).
pub fn each_share(
    books: &Books<'_>,
    config: &Config,
    day: &ClosedDay,
    only: Option<&str>,
    mut each: impl FnMut(&Share<'_>),
) -> Result<(), BackofficeError> {
    let banks: HashMap<String, String> = (config.banks().into_iter())
        .flat_map(|b| b.links.into_iter().map(move |l| (l, b.name.clone())))
        .collect();
    let mut retailers: HashMap<String, Option<String>> = HashMap::new();
    let mut carriers: HashMap<String, String> = HashMap::new();
    let mut failure = None;
    for_each_credit(books, day, |decision| {
        if failure.is_some() || decision.hold.is_some() {
            return;
        }
        let adjustment = decision.summary.link == people::CONSOLE_LINK;
        let bank = match banks.get(&decision.summary.link) {
            Some(bank) => Some(bank.as_str()),
            None => adjustment.then_some(people::ADJUSTMENT),
        };
        let (Some(credit), Some(bank)) = (&decision.credit, bank) else {
            return;
        };
        if only.is_some_and(|only| only != bank) {
            return;
        }
        let looked_up = (|| -> Result<(u64, Option<String>, String), BackofficeError> {
            let entry = books.store.transaction(&decision.key)?;
            let ours = decision.approval.as_ref().map(|a| a.confirmation.as_str());
            let net = match entry {
                // The key now carries a later decision: a correction, which the switch
                // decides only after this one was fully reversed.
                Some(e) if e.confirmation.as_deref() != ours => 0,
                Some(e) => match e.standing {
                    Standing::Reversed { full: true, .. } => 0,
                    Standing::Reversed { amount, .. } => credit.amount.saturating_sub(amount),
                    _ => credit.amount,
                },
                None => credit.amount,
            };
            let retailer = match credit.processing_code.starts_with("40") {
                true => None,
                false => cached(&mut retailers, &decision.summary.location, |id| {
                    Ok(books
                        .store
                        .location(id)?
                        .map(|l| l.retailer)
                        .filter(|r| !r.is_empty()))
                })?,
            };
            let account = decision.account.as_deref().unwrap_or("");
            let carrier = match product_carrier(config, credit) {
                Some(carrier) => carrier,
                None => cached(&mut carriers, account, |number| {
                    Ok(books
                        .store
                        .account(number)?
                        .map(|a| a.carrier)
                        .unwrap_or_default())
                })?,
            };
            Ok((net, retailer, carrier))
        })();
        match looked_up {
            Ok((net, retailer, carrier)) => {
                let parties = Parties {
                    retailer: retailer.is_some(),
                    bank: true,
                };
                // A goodwill credit brings no money in: nobody's share comes from it.
                let parts = match adjustment {
                    true => Split::default(),
                    false => fees::split(net, &config.fees, parties),
                };
                each(&Share {
                    decision,
                    bank,
                    carrier: &carrier,
                    retailer: retailer.as_deref(),
                    currency: &credit.currency,
                    gross: credit.amount,
                    net,
                    parts,
                });
            }
            Err(e) => failure = Some(e),
        }
    })?;
    failure.map_or(Ok(()), Err)
}

/// Calls `each` with every decision of `day` and, for every advice credited on `day` by
/// a resubmission from the exception queue, with its original decision as it stands
/// credited (the resubmission's confirmation number and credit): money the bank holds
/// for the day either way.
fn for_each_credit(
    books: &Books<'_>,
    day: &ClosedDay,
    mut each: impl FnMut(&Decision),
) -> Result<(), BackofficeError> {
    let journal_error = |e: crate::durable::journal::JournalError| BackofficeError::Data(e.into());
    let records = journal::read_from(&books.journal_dir, day.first_seq).map_err(journal_error)?;
    for record in records {
        let record = record.map_err(journal_error)?;
        if record.seq > day.last_seq {
            break;
        }
        let decided = record.body.starts_with(br#"{"type":"decided""#);
        let resubmitted = record.body.starts_with(br#"{"type":"resubmitted""#);
        if record.seq < day.first_seq || !(decided || resubmitted) {
            continue;
        }
        let unreadable = |e: &dyn std::fmt::Display| {
            BackofficeError::Remote(format!("journal record {}: {e}", record.seq))
        };
        match Record::from_bytes(&record.body).map_err(|e| unreadable(&e))? {
            Record::Decided(decision) => each(&decision),
            Record::Resubmitted(resubmission) => {
                let mut original = decision_at(books, resubmission.id)?
                    .ok_or_else(|| unreadable(&"the resubmitted advice's decision is missing"))?;
                original.approval = Some(resubmission.approval.clone());
                original.credit = Some(resubmission.credit.clone());
                original.owed = None;
                each(&original);
            }
            _ => {}
        }
    }
    Ok(())
}

/// The decision journaled at `seq`, if that record is one.
fn decision_at(books: &Books<'_>, seq: u64) -> Result<Option<Decision>, BackofficeError> {
    let journal_error = |e: crate::durable::journal::JournalError| BackofficeError::Data(e.into());
    let records = journal::read_from(&books.journal_dir, seq).map_err(journal_error)?;
    for record in records {
        let record = record.map_err(journal_error)?;
        if record.seq < seq {
            continue;
        }
        if record.seq > seq {
            break;
        }
        if let Ok(Record::Decided(decision)) = Record::from_bytes(&record.body) {
            return Ok(Some(*decision));
        }
    }
    Ok(None)
}

/// The carrier of a PIN sale's product (none for a replenishment, or a product no
/// longer configured).
fn product_carrier(config: &Config, credit: &Credit) -> Option<String> {
    let voucher = credit.voucher.as_deref()?;
    (config.find_product(&voucher.sku)).map(|product| product.carrier.clone())
}

/// `key`'s value from `cache`, else from `load` (and remembered).
fn cached<T: Clone>(
    cache: &mut HashMap<String, T>,
    key: &str,
    load: impl FnOnce(&str) -> Result<T, BackofficeError>,
) -> Result<T, BackofficeError> {
    if let Some(known) = cache.get(key) {
        return Ok(known.clone());
    }
    let value = load(key)?;
    cache.insert(key.to_owned(), value.clone());
    Ok(value)
}
