//! Advices and holds. An advice (`0120`, `0220` and their repeats) tells the switch of
//! something the bank approved already, in stand-in while the switch was unreachable or
//! as the completion of an authorization: it is always acknowledged and credited once,
//! checked only for what routing needs (a known account with a MIN, an engine for its
//! carrier). An advice that cannot be routed is acknowledged too and goes to the
//! exception queue, from which an operator resubmits it once the account is corrected.
//! A `0100` approval holds its amount against the velocity limits until its completion
//! `0220` (matched by DE90, else by account and DE38) credits it, or the hold expires.

use super::decide::{Decider, Draft, State, SwitchError, day_of};
use super::reverse::original_key;
use super::validate::{self, Channel, Replenishment};
use crate::durable::record::{Credit, Expiry, Owed, Record, Resubmission, Touched, UsageChange};
use crate::durable::record::{Standing, TransactionEntry};
use crate::durable::store::QueueItem;
use crate::vocab::accounts::Account;
use crate::vocab::key::TransactionKey;
use crate::wire::iso8583::{Message, mask_pan};

use super::decide::Link;

/// Why an exception-queue item could not be resubmitted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResubmitError {
    /// No such item (or its decision is not indexed yet).
    #[error("no exception-queue item {0}")]
    NotFound(u64),
    /// Resubmitted before.
    #[error("item {id} was resubmitted by {by} already (confirmation {confirmation})")]
    Done {
        /// The item.
        id: u64,
        /// Who did it.
        by: String,
        /// Its confirmation number.
        confirmation: String,
    },
    /// Its advice was reversed: nothing is owed.
    #[error("item {0} was reversed by the acquirer: nothing is owed")]
    Reversed(u64),
    /// Still not routable.
    #[error("item {id}: {reason}")]
    Unroutable {
        /// The item.
        id: u64,
        /// What is still wrong.
        reason: String,
    },
    /// The journal or the index failed.
    #[error("{0}")]
    Switch(#[from] SwitchError),
}

/// A resubmitted item's credit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resubmitted {
    /// The confirmation number it was credited with.
    pub confirmation: String,
    /// The journal record to wait for.
    pub seq: u64,
}

impl Decider {
    /// A `0220`: the completion of an open hold, else a stand-in credit.
    pub(super) fn advice(
        &self,
        state: &mut State,
        message: &Message,
        link: &Link,
        draft: &mut Draft,
    ) -> Result<(), SwitchError> {
        match self.completion(state, message, link)? {
            Completion::Open(key, hold) => {
                self.complete(message, draft, key, *hold);
                return Ok(());
            }
            Completion::Done => {
                draft.decision.account = known(validate::account_of(message));
                draft.decision.note =
                    Some("the authorization was completed already: not credited again".into());
                return Ok(());
            }
            Completion::Conflict(reason) => {
                owe(message, draft, reason);
                return Ok(());
            }
            Completion::None => {}
        }
        match self.route(message)? {
            Ok((request, account, engine)) => {
                let credit = self.approve(state, &mut draft.decision, &request, &account, engine);
                draft.decision.credit = Some(credit);
            }
            Err(reason) => owe(message, draft, reason),
        }
        Ok(())
    }

    /// A `0120`: the bank authorized in stand-in; the amount is held as for a `0100`.
    pub(super) fn authorization_advice(
        &self,
        state: &mut State,
        message: &Message,
        draft: &mut Draft,
    ) -> Result<(), SwitchError> {
        match self.route(message)? {
            Ok((request, account, engine)) => {
                let credit = self.approve(state, &mut draft.decision, &request, &account, engine);
                draft.hold(credit, self.policy.hold_expiry);
            }
            Err(reason) => {
                draft.decision.account = known(validate::account_of(message));
                draft.decision.note = Some(format!("authorization advice not held: {reason}"));
            }
        }
        Ok(())
    }

    /// What a `0220` completes: the authorization its DE90 names, else an open hold of
    /// its account whose approval code is its DE38.
    fn completion(
        &self,
        state: &State,
        message: &Message,
        link: &Link,
    ) -> Result<Completion, SwitchError> {
        let account = validate::account_of(message);
        if let Some(key) = original_key(message, link).filter(|k| k.0.ends_with("|1")) {
            let Some(entry) = self.earlier(state, &key)? else {
                return Ok(Completion::None);
            };
            if entry.standing == Standing::Completed {
                return Ok(Completion::Done);
            }
            if entry.held().is_none() {
                return Ok(Completion::None);
            }
            let currency = message.text(49).map(str::trim).unwrap_or("");
            let same_currency = entry
                .credit
                .as_ref()
                .is_some_and(|c| c.currency == currency);
            if entry.account.as_deref() != Some(account) || !same_currency {
                return Ok(Completion::Conflict(
                    "completion names an authorization of another account or currency".into(),
                ));
            }
            return Ok(Completion::Open(key, Box::new(entry)));
        }
        let Some(code) = message.text(38).map(str::trim).filter(|c| c.len() == 6) else {
            return Ok(Completion::None);
        };
        let found = state.holds.iter().find(|(_, e)| {
            e.account.as_deref() == Some(account)
                && e.confirmation.as_deref().is_some_and(|c| c.ends_with(code))
        });
        Ok(match found {
            Some((k, e)) => Completion::Open(k.clone(), Box::new(e.clone())),
            None => Completion::None,
        })
    }

    /// Credits a completion under its authorization's confirmation number.
    fn complete(
        &self,
        message: &Message,
        draft: &mut Draft,
        key: TransactionKey,
        mut hold: TransactionEntry,
    ) {
        let held = hold.held().unwrap_or(0);
        let Some(mut credit) = hold.credit.clone() else {
            return;
        };
        credit.amount = validate::amount_of(message).unwrap_or(held);
        let decision = &mut draft.decision;
        decision.account = hold.account.clone();
        decision.usage = hold.account.clone().map(|account| UsageChange {
            account,
            day: hold.day.clone(),
            count: 0,
            amount: signed(credit.amount) - signed(held),
        });
        decision.approval = Some(crate::durable::record::Approval {
            counter: 0,
            confirmation: credit.confirmation.clone(),
        });
        decision.credit = Some(credit);
        hold.standing = Standing::Completed;
        hold.completed_by = Some(decision.key.clone());
        decision.touches = Some(Touched { key, entry: hold });
    }

    /// What routing needs of an advice: a valid account number and amount, a known
    /// account with a MIN, an engine for its carrier. `Err` says what is missing.
    fn route(
        &self,
        message: &Message,
    ) -> Result<Result<(Replenishment, Account, String), String>, SwitchError> {
        let number = validate::account_of(message);
        let Some(amount) = validate::amount_of(message).filter(|a| *a > 0) else {
            return Ok(Err("DE4 is not an amount".into()));
        };
        let Some(account) = self.store.account(number)? else {
            return Ok(Err(format!(
                "account {} unknown",
                mask_pan(number.as_bytes())
            )));
        };
        if account.min.is_empty() {
            return Ok(Err("the account has no MIN".into()));
        }
        let Some(engine) = self.routes.engine_for(&account.carrier) else {
            return Ok(Err(format!("no engine serves carrier {}", account.carrier)));
        };
        let request = Replenishment {
            channel: Channel::Other,
            account: number.to_owned(),
            amount,
            currency: message.text(49).map(str::trim).unwrap_or("").to_owned(),
            location: String::new(),
        };
        Ok(Ok((request, account, engine.to_owned())))
    }

    /// Releases the holds past their expiry; returns how many.
    pub fn expire_holds(&self) -> Result<usize, SwitchError> {
        let now = (self.clock)();
        let mut state = self.lock();
        let due: Vec<(TransactionKey, TransactionEntry)> = state
            .holds
            .iter()
            .filter(|(_, e)| e.expires_ms.is_some_and(|at| at <= now.timestamp_millis()))
            .map(|(k, e)| (k.clone(), e.clone()))
            .collect();
        if due.is_empty() {
            return Ok(0);
        }
        let holds: Vec<(Touched, UsageChange)> = due.into_iter().map(expired).collect();
        let expiry = Expiry {
            at_ms: now.timestamp_millis(),
            holds,
        };
        let seq = self
            .journal
            .append(&Record::HoldsExpired(Box::new(expiry.clone())).to_bytes())?;
        for (touched, change) in &expiry.holds {
            self.remember_touched(&mut state, seq, &touched.key, &touched.entry);
            self.change_usage(&mut state, change)?;
        }
        Ok(expiry.holds.len())
    }

    /// Credits an exception-queue item after its account was corrected; `by` is the
    /// operator, journaled with the time. The caller waits for `seq` to be durable.
    pub fn resubmit(&self, id: u64, by: &str) -> Result<Resubmitted, ResubmitError> {
        let mut state = self.lock();
        let item = self
            .store
            .queue_item(id)
            .map_err(SwitchError::from)?
            .ok_or(ResubmitError::NotFound(id))?;
        let mut entry = self
            .earlier(&state, &item.key)?
            .ok_or(ResubmitError::NotFound(id))?;
        check_open(&item, &entry)?;
        if item.owed.amount == 0 {
            return Err(ResubmitError::Unroutable {
                id,
                reason: "its amount (DE4) was not a positive number".into(),
            });
        }
        let (account, engine) = self
            .routable(&item.owed.account)?
            .map_err(|reason| ResubmitError::Unroutable { id, reason })?;
        let now = (self.clock)();
        let approval = self.number(&mut state);
        let owed = &item.owed;
        let credit = Credit {
            engine,
            min: account.min,
            amount: owed.amount,
            currency: owed.currency.clone(),
            confirmation: approval.confirmation.clone(),
            processing_code: owed.processing_code.clone(),
            rrn: owed.rrn.clone(),
            voucher: None,
        };
        entry.queued = false;
        entry.confirmation = Some(approval.confirmation.clone());
        entry.credit = Some(credit.clone());
        entry.day = day_of(now);
        let business_day = self.business_day(&mut state, now)?;
        let resubmission = Resubmission {
            business_day,
            id,
            by: by.to_owned(),
            at_ms: now.timestamp_millis(),
            credit,
            usage: UsageChange {
                account: owed.account.clone(),
                day: day_of(now),
                count: 1,
                amount: signed(owed.amount),
            },
            approval,
            touches: Touched {
                key: item.key.clone(),
                entry,
            },
        };
        self.unsent.insert(&resubmission.credit.confirmation);
        let record = Record::Resubmitted(Box::new(resubmission.clone()));
        let seq = self
            .journal
            .append(&record.to_bytes())
            .map_err(SwitchError::from)?;
        self.change_usage(&mut state, &resubmission.usage)
            .map_err(SwitchError::from)?;
        let touched = &resubmission.touches;
        self.remember_touched(&mut state, seq, &touched.key, &touched.entry);
        Ok(Resubmitted {
            confirmation: resubmission.approval.confirmation,
            seq,
        })
    }

    /// The account and engine of a queued credit, or what is still wrong.
    fn routable(&self, number: &str) -> Result<Result<(Account, String), String>, SwitchError> {
        let masked = mask_pan(number.as_bytes());
        let Some(account) = self.store.account(number)? else {
            return Ok(Err(format!("account {masked} is still unknown")));
        };
        if account.min.is_empty() {
            return Ok(Err(format!("account {masked} still has no MIN")));
        }
        Ok(match self.routes.engine_for(&account.carrier) {
            Some(engine) => {
                let engine = engine.to_owned();
                Ok((account, engine))
            }
            None => Err(format!("no engine serves carrier {}", account.carrier)),
        })
    }
}

/// What a completion advice completes.
enum Completion {
    /// This open hold.
    Open(TransactionKey, Box<TransactionEntry>),
    /// An authorization completed already.
    Done,
    /// An authorization that does not fit the advice (account, currency).
    Conflict(String),
    /// Nothing: a stand-in credit.
    None,
}

/// Refuses an item already resubmitted or reversed.
fn check_open(item: &QueueItem, entry: &TransactionEntry) -> Result<(), ResubmitError> {
    if let Some(done) = &item.resolved {
        return Err(ResubmitError::Done {
            id: item.id,
            by: done.by.clone(),
            confirmation: done.confirmation.clone(),
        });
    }
    if matches!(entry.standing, Standing::Reversed { .. }) {
        return Err(ResubmitError::Reversed(item.id));
    }
    if !entry.queued {
        return Err(ResubmitError::Done {
            id: item.id,
            by: "an operator".into(),
            confirmation: entry.confirmation.clone().unwrap_or_default(),
        });
    }
    Ok(())
}

/// An advice acknowledged but not credited: the exception queue keeps what is owed.
pub(super) fn owe(message: &Message, draft: &mut Draft, reason: String) {
    let text = |n| message.text(n).map(str::trim).unwrap_or("").to_owned();
    let account = validate::account_of(message).to_owned();
    draft.decision.account = known(&account);
    draft.decision.note = Some(format!("advice not credited, queued: {reason}"));
    draft.decision.owed = Some(Owed {
        account,
        amount: validate::amount_of(message).unwrap_or(0),
        currency: text(49),
        processing_code: text(3),
        rrn: text(37),
        reason,
    });
}

/// A hold's entry once expired, and the usage it gives back.
fn expired((key, mut entry): (TransactionKey, TransactionEntry)) -> (Touched, UsageChange) {
    let held = entry.held().unwrap_or(0);
    entry.standing = Standing::Expired;
    let change = UsageChange {
        account: entry.account.clone().unwrap_or_default(),
        day: entry.day.clone(),
        count: -1,
        amount: -signed(held),
    };
    (Touched { key, entry }, change)
}

fn known(account: &str) -> Option<String> {
    (!account.is_empty()).then(|| account.to_owned())
}

/// Minor units as a signed amount (saturating; amounts are at most 12 digits).
pub(super) fn signed(amount: u64) -> i64 {
    i64::try_from(amount).unwrap_or(i64::MAX)
}
