//! Accounts and transactions on the console: the account page's data (masked, with its
//! history), activation and MIN assignment (seed steps 315-321: the account checks of
//! step 317, the MIN check of step 318), blocking, and the unblock a second person
//! approved. Every change is an `account_changed` record with its audit entry (the
//! account before and after, masked); the answer waits until the index has it, so a
//! replenishment right after an activation is approved.

use serde::Serialize;

use super::enrol::{EnrolRequest, enrolment};
use super::scope::{Action, Principal};
use super::users::{audit, value};
use super::{ApiError, Console};
use crate::durable::record::{Record, Saved};
use crate::operate::lookup::{self, Found};
use crate::switch::validate::in_ranges;
use crate::vocab::accounts::{Account, AccountStatus};
use crate::vocab::confirmation::luhn_valid;
use crate::vocab::people::Audit;
use crate::wire::iso8583::mask_pan;

/// Decisions the account page lists.
const HISTORY: usize = 50;

/// An account as every screen shows it: the number masked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Card {
    /// The account, masked (first 6, last 4).
    pub account: String,
    /// Its carrier.
    pub carrier: String,
    /// `active`, `issued` or `blocked`.
    pub status: AccountStatus,
    /// The MIN assigned (empty until activation).
    pub min: String,
    /// Last valid month, `YYYY-MM`.
    pub expiry: Option<String>,
}

impl Card {
    /// `account` as shown.
    pub fn of(account: &Account) -> Card {
        Card {
            account: mask_pan(account.number.as_bytes()),
            carrier: account.carrier.clone(),
            status: account.status,
            min: account.min.clone(),
            expiry: account.expiry.map(|(y, m)| format!("{y:04}-{m:02}")),
        }
    }
}

/// One line of an account's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Line {
    /// `replenishment`, `authorization`, `advice`, `reversal` or `adjustment`.
    pub kind: &'static str,
    /// The approval's confirmation number (none when declined).
    pub confirmation: Option<String>,
    /// Minor units credited (none for a reversal).
    pub amount: Option<u64>,
    /// DE39 answered.
    pub code: String,
    /// When decided (RFC 3339, UTC).
    pub at: String,
    /// What happened since (completed, reversed, ...).
    pub standing: String,
}

/// The account page's data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct View {
    /// The handle the pages use for it.
    pub handle: String,
    /// The account.
    #[serde(flatten)]
    pub card: Card,
    /// Its latest decisions, newest first.
    pub history: Vec<Line>,
}

/// The account `number` if `principal` may see it; `404` otherwise.
pub fn in_scope(
    console: &Console,
    principal: &Principal,
    number: &str,
) -> Result<Account, ApiError> {
    let account = console.decider().store().account(number)?;
    account
        .filter(|a| principal.sees_account(a))
        .ok_or(ApiError::NotFound)
}

/// The account page of `number`.
pub fn view(console: &Console, principal: &Principal, number: &str) -> Result<View, ApiError> {
    let account = in_scope(console, principal, number)?;
    let store = console.decider().store();
    let mut history = Vec::new();
    for (_, entry) in store.history(number, HISTORY)? {
        history.push(Line {
            kind: kind(&entry.link, &entry.mti),
            confirmation: entry.confirmation.clone(),
            amount: entry.credit.as_ref().map(|c| c.amount),
            code: entry.code.as_str().to_owned(),
            at: at(entry.at_ms),
            standing: lookup::standing(&entry),
        });
    }
    Ok(View {
        handle: console.handle(&account.number),
        card: Card::of(&account),
        history,
    })
}

/// What a decision in an account's history was.
fn kind(link: &str, mti: &str) -> &'static str {
    if link == super::approvals::CONSOLE_LINK {
        return "adjustment";
    }
    match mti.get(..3) {
        Some("010") => "authorization",
        Some("012" | "022") => "advice",
        Some("040" | "042") => "reversal",
        _ => "replenishment",
    }
}

/// The transaction approved with `confirmation`, if `principal` may see it.
pub fn transaction(
    console: &Console,
    principal: &Principal,
    confirmation: &str,
) -> Result<Found, ApiError> {
    let decider = console.decider();
    let store = decider.store();
    let numbers = decider.numbers();
    let key = (store.by_confirmation(numbers, confirmation)?).ok_or(ApiError::NotFound)?;
    let entry = store.transaction(&key)?.ok_or(ApiError::NotFound)?;
    let account = match &entry.account {
        Some(number) => store.account(number)?,
        None => None,
    };
    let bank = super::approvals::bank_of_link(console, &entry.link);
    let carrier = account.as_ref().map(|a| a.carrier.as_str());
    if !principal.sees_transaction(carrier, bank.as_deref()) {
        return Err(ApiError::NotFound);
    }
    lookup::find(store, numbers, confirmation)?.ok_or(ApiError::NotFound)
}

/// Activates `number` with `min` (or assigns a new MIN to an active account), enrolling
/// it for the channels when `enrol` carries fields; an active account activated again
/// with its own MIN changes only the enrolment.
pub fn activate(
    console: &Console,
    principal: &Principal,
    number: &str,
    min: &str,
    enrol: &EnrolRequest,
) -> Result<Card, ApiError> {
    let _serial = console.changes();
    let account = activatable(console, principal, number)?;
    check_min(console, number, min)?;
    let enrolled = enrolment(console, principal.name(), number, enrol)?;
    if account.status == AccountStatus::Active && account.min == min {
        if let Some(record) = enrolled {
            console.decider().journal_records(&[record])?;
        }
        return Ok(Card::of(&account));
    }
    let mut after = account.clone();
    after.status = AccountStatus::Active;
    after.min = min.to_owned();
    let change = Change {
        by: principal.name(),
        action: "account.activate",
        before: &account,
    };
    save(console, change, after, enrolled)
}

/// Who changes an account, how, and what it was.
struct Change<'a> {
    by: &'a str,
    action: &'a str,
    before: &'a Account,
}

/// Blocks `number`: it is declined until a second person approves an unblock.
pub fn block(console: &Console, principal: &Principal, number: &str) -> Result<Card, ApiError> {
    let _serial = console.changes();
    let account = in_scope(console, principal, number)?;
    if account.status == AccountStatus::Blocked {
        return Ok(Card::of(&account));
    }
    let mut after = account.clone();
    after.status = AccountStatus::Blocked;
    let change = Change {
        by: principal.name(),
        action: "account.block",
        before: &account,
    };
    save(console, change, after, None)
}

/// Unblocks `number` (an approved request): active again when it has a MIN.
pub fn unblock(console: &Console, by: &str, number: &str) -> Result<Card, ApiError> {
    let store = console.decider().store();
    let account = store.account(number)?.ok_or(ApiError::NotFound)?;
    if account.status != AccountStatus::Blocked {
        return Ok(Card::of(&account));
    }
    let mut after = account.clone();
    after.status = if account.min.is_empty() {
        AccountStatus::Issued
    } else {
        AccountStatus::Active
    };
    let change = Change {
        by,
        action: "account.unblock",
        before: &account,
    };
    save(console, change, after, None)
}

/// Step 317: the account checks. A user gets `404` for an account they may not see
/// (or that does not exist); a client is told `invalid_account`.
fn activatable(
    console: &Console,
    principal: &Principal,
    number: &str,
) -> Result<Account, ApiError> {
    let invalid = |reason: &str| ApiError::Invalid {
        error: "invalid_account",
        reason: reason.to_owned(),
    };
    if !luhn_valid(number.as_bytes()) {
        return Err(invalid("check digit"));
    }
    if !in_ranges(number, &console.decider().rules().account_ranges) {
        return Err(invalid("range"));
    }
    let known = console.decider().store().account(number)?;
    let account = match (known, principal) {
        (Some(account), _) if principal.sees_account(&account) => account,
        (None, Principal::Client { .. }) => return Err(invalid("unknown account")),
        _ => return Err(ApiError::NotFound),
    };
    if account.expired(chrono::Utc::now().date_naive()) {
        return Err(invalid("expired"));
    }
    if account.status == AccountStatus::Blocked {
        return Err(invalid("blocked"));
    }
    if console.decider().engine_for(&account.carrier).is_none() {
        return Err(invalid("no prepaid engine serves its carrier"));
    }
    Ok(account)
}

/// Step 318: ten digits, not assigned to another account.
fn check_min(console: &Console, number: &str, min: &str) -> Result<(), ApiError> {
    if min.len() != 10 || !min.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::Invalid {
            error: "invalid_min",
            reason: "a MIN is 10 digits".into(),
        });
    }
    let store = console.decider().store();
    if let Some(holder) = store.account_of_min(min)?.filter(|holder| holder != number) {
        // The index may name a holder whose MIN has changed since: ask the account.
        if store.account(&holder)?.is_some_and(|a| a.min == min) {
            return Err(ApiError::Invalid {
                error: "min_in_use",
                reason: "the MIN is assigned to another account".into(),
            });
        }
    }
    Ok(())
}

/// Journals `after` with its audit entry, and `also` in the same write; returns it once
/// indexed.
fn save(
    console: &Console,
    change: Change<'_>,
    after: Account,
    also: Option<Record>,
) -> Result<Card, ApiError> {
    let card = Card::of(&after);
    let audit = Audit {
        before: value(&Card::of(change.before)),
        after: value(&card),
        ..audit(change.by, change.action, &card.account, "ok")
    };
    let record = Record::AccountChanged(Box::new(Saved { item: after, audit }));
    let records: Vec<Record> = std::iter::once(record).chain(also).collect();
    console.decider().journal_records(&records)?;
    Ok(card)
}

/// Whether `principal` may change accounts at all (`403` otherwise).
pub fn may_change(principal: &Principal) -> Result<(), ApiError> {
    if principal.may(Action::Activate) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "this role may not change accounts".into(),
        ))
    }
}

/// Milliseconds since the epoch as RFC 3339 (UTC, seconds).
pub fn at(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}
