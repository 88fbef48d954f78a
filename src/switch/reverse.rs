//! Reversals (`0400`, `0420` and their repeats), after the seed's paragraph on
//! reversing transactions. The original is found by DE90 (original MTI, STAN,
//! transmission time, acquirer id), else by the reversal's own key in the original's
//! class, else by its retrieval reference (DE37 with DE41); its account and amount must
//! match. A credit that has not left the switch is cancelled (or, for a partial
//! reversal carrying DE95, reduced) in the outbox and nothing goes to the engine; a
//! credit that may have reached the engine gets a reversal advice; an authorization's
//! hold is released. A reversal whose original is unknown changes nothing, is logged,
//! and is remembered under the key its original would have, so that a late original is
//! declined and never credited. A second reversal of one original has no effect. A
//! PIN sale is reversed whole: its PIN is voided, or put back in stock with `[pins]
//! reversed = "restock"`.

use super::decide::{Decider, Draft, Link, State, SwitchError};
use super::validate;
use crate::durable::record::{
    Early, PinMove, Reversal, ReversalAdvice, ReversalEffect, Touched, UsageChange,
};
use crate::durable::record::{Standing, TransactionEntry};
use crate::durable::store::PinState;
use crate::durable::store::reference_id;
use crate::vocab::codes::ResponseCode;
use crate::vocab::key::{TransactionKey, acquirer_of};
use crate::wire::iso8583::{Message, Mti};

use super::advise::signed;

/// Why a reversal changes nothing, and what it is answered.
struct Ignored {
    note: String,
    code: ResponseCode,
    /// The original as it stands after this reversal, when it changes anyway (a queued
    /// advice is closed).
    touched: Option<TransactionEntry>,
}

impl Decider {
    /// Decides a reversal.
    pub(super) fn reverse(
        &self,
        state: &mut State,
        message: &Message,
        link: &Link,
        draft: &mut Draft,
    ) -> Result<(), SwitchError> {
        let Some((key, entry)) = self.find_original(state, message, link)? else {
            self.remember_orphan(message, link, draft);
            return Ok(());
        };
        let (key, entry) = self.completion_of(state, key, entry)?;
        draft.decision.account = entry.account.clone();
        let result = self.reverse_entry(message, &entry);
        let decision = &mut draft.decision;
        match result {
            Ok((effect, reversed, change, standing)) => {
                decision.pin = self.pin_back(&entry);
                let mut entry = entry;
                entry.standing = standing;
                decision.usage = change;
                decision.reversal = Some(Reversal {
                    original: Some(key.clone()),
                    reversed,
                    effect,
                    early: None,
                });
                decision.touches = Some(Touched { key, entry });
            }
            Err(ignored) => {
                decision.code = ignored.code;
                decision.note = Some(ignored.note);
                decision.reversal = Some(Reversal {
                    original: Some(key.clone()),
                    reversed: 0,
                    effect: ReversalEffect::Ignored,
                    early: None,
                });
                decision.touches = ignored.touched.map(|entry| Touched { key, entry });
            }
        }
        Ok(())
    }

    /// No original: answered as configured, logged, and remembered.
    fn remember_orphan(&self, message: &Message, link: &Link, draft: &mut Draft) {
        let guess = original_key(message, link)
            .unwrap_or_else(|| TransactionKey::with_class(message, &link.acquirer_id, 2));
        let decision = &mut draft.decision;
        if guess == decision.key {
            // DE90 names the reversal itself: nothing to remember.
            decision.code = self.policy.orphan_reversal;
            decision.note = Some("reversal whose DE90 names itself: nothing changed".into());
            return;
        }
        decision.code = self.policy.orphan_reversal;
        decision.note = Some(
            "reversal without an original: nothing changed, a late original is declined".into(),
        );
        decision.reversal = Some(Reversal {
            original: Some(guess.clone()),
            reversed: 0,
            effect: ReversalEffect::NotFound,
            early: early_of(message, link),
        });
        decision.touches = Some(Touched {
            key: guess,
            entry: TransactionEntry::reversed_before_arrival(0),
        });
    }

    /// A completed authorization stands for its completion: reversing it reverses the
    /// completion's credit.
    fn completion_of(
        &self,
        state: &State,
        key: TransactionKey,
        entry: TransactionEntry,
    ) -> Result<(TransactionKey, TransactionEntry), SwitchError> {
        if let (Standing::Completed, Some(next)) = (entry.standing, &entry.completed_by) {
            if let Some(completion) = self.earlier(state, next)? {
                return Ok((next.clone(), completion));
            }
        }
        Ok((key, entry))
    }

    /// The original: by DE90, by the reversal's key in class 2 or 1, by DE37 + DE41.
    fn find_original(
        &self,
        state: &State,
        message: &Message,
        link: &Link,
    ) -> Result<Option<(TransactionKey, TransactionEntry)>, SwitchError> {
        let mut candidates: Vec<TransactionKey> = original_key(message, link).into_iter().collect();
        for class in [2, 1] {
            candidates.push(TransactionKey::with_class(
                message,
                &link.acquirer_id,
                class,
            ));
        }
        for key in candidates {
            if let Some(entry) = self.earlier(state, &key)? {
                return Ok(Some((key, entry)));
            }
        }
        let text = |n| message.text(n).map(str::trim).unwrap_or("");
        let reference = reference_id(acquirer_of(message, &link.acquirer_id), text(41), text(37));
        if text(37).is_empty() {
            return Ok(None);
        }
        let account = validate::account_of(message);
        let amount = validate::amount_of(message);
        let mut found = Vec::new();
        for key in self.referenced(state, &reference)? {
            let Some(entry) = self.earlier(state, &key)? else {
                continue;
            };
            // A queued advice credited nothing, so a reversal that names it by reference
            // alone closes it only with its account and amount: any other transaction
            // sharing the reference must not cancel what is owed.
            if entry.queued && !owes(&entry, account, amount) {
                continue;
            }
            found.push((key, entry));
        }
        // Several transactions may share a reference (a correction re-uses it): the one
        // still open with this account and amount is the one reversed.
        let best = found.iter().position(|(_, e)| {
            e.standing == Standing::Open
                && e.account.as_deref() == Some(account)
                && (e.queued || e.credit.as_ref().map(|c| c.amount) == amount)
        });
        Ok(match best {
            Some(index) => Some(found.swap_remove(index)),
            None => found.into_iter().next(),
        })
    }

    /// What a reversed PIN sale does with its PIN: voided, or back in stock.
    fn pin_back(&self, entry: &TransactionEntry) -> Option<PinMove> {
        let voucher = entry.credit.as_ref()?.voucher.as_ref()?;
        Some(PinMove {
            sku: voucher.sku.clone(),
            serial: voucher.serial.clone(),
            to: match self.catalog.restocks(voucher) {
                true => PinState::Available,
                false => PinState::Voided,
            },
        })
    }

    /// What reversing `entry` does: the effect, the amount reversed, the usage given
    /// back (none for a PIN sale, which counts in no account's usage) and the
    /// original's new standing; or why nothing changes.
    fn reverse_entry(
        &self,
        message: &Message,
        entry: &TransactionEntry,
    ) -> Result<(ReversalEffect, u64, Option<UsageChange>, Standing), Box<Ignored>> {
        let ignore = |note: &str| {
            Box::new(Ignored {
                note: note.to_owned(),
                code: ResponseCode::Approved,
                touched: None,
            })
        };
        match entry.standing {
            Standing::Open => {}
            Standing::Reversed { .. } | Standing::ReversedBeforeArrival => {
                return Err(ignore("reversed already: no second effect"));
            }
            Standing::Completed => {
                return Err(ignore(
                    "authorization completed already: reverse its completion",
                ));
            }
            Standing::Expired => return Err(ignore("the authorization's hold had expired")),
        }
        if entry.queued {
            let mut closed = entry.clone();
            closed.standing = Standing::Reversed {
                amount: 0,
                full: true,
            };
            let mut ignored =
                ignore("the advice was never credited: its exception-queue item is closed");
            ignored.touched = Some(closed);
            return Err(ignored);
        }
        let Some(credit) = entry
            .credit
            .as_ref()
            .filter(|_| entry.code == ResponseCode::Approved)
        else {
            return Err(ignore("the original was declined: nothing to reverse"));
        };
        let mismatch = |note: &str| {
            Box::new(Ignored {
                note: format!("{note}: nothing changed"),
                code: self.policy.orphan_reversal,
                touched: None,
            })
        };
        if entry.account.as_deref() != Some(validate::account_of(message)) {
            return Err(mismatch("account does not match the original's"));
        }
        if validate::amount_of(message) != Some(credit.amount) {
            return Err(mismatch("DE4 does not match the original amount"));
        }
        let Some(remaining) = replacement_amount(message) else {
            return Err(mismatch("DE95 does not start with 12 digits"));
        };
        if remaining >= credit.amount {
            return Err(mismatch(
                "DE95 replacement amount is not below the original amount",
            ));
        }
        if remaining > 0 && credit.voucher.is_some() {
            return Err(mismatch("a PIN sale is reversed whole, never in part"));
        }
        let reversed = credit.amount - remaining;
        let full = remaining == 0;
        let effect = if entry.expires_ms.is_some() {
            ReversalEffect::Released
        } else if self.unsent.reduce(&credit.confirmation, remaining) {
            ReversalEffect::Cancelled {
                engine: credit.engine.clone(),
                confirmation: credit.confirmation.clone(),
                remaining: (!full).then(|| {
                    let mut rest = credit.clone();
                    rest.amount = remaining;
                    rest
                }),
            }
        } else {
            ReversalEffect::Advised(ReversalAdvice {
                credit: credit.clone(),
                remaining,
            })
        };
        let change = credit.voucher.is_none().then(|| UsageChange {
            account: entry.account.clone().unwrap_or_default(),
            day: entry.day.clone(),
            count: if full { -1 } else { 0 },
            amount: -signed(reversed),
        });
        Ok((
            effect,
            reversed,
            change,
            Standing::Reversed {
                amount: reversed,
                full,
            },
        ))
    }
}

/// How a late original of `reversal` is recognised when its key differs: retrieval
/// reference, account and amount (none without DE37 or a valid amount).
pub fn early_of(reversal: &Message, link: &Link) -> Option<Early> {
    let text = |n| reversal.text(n).map(str::trim).unwrap_or("");
    let rrn = text(37);
    if rrn.is_empty() {
        return None;
    }
    Some(Early {
        reference: reference_id(acquirer_of(reversal, &link.acquirer_id), text(41), rrn),
        account: validate::account_of(reversal).to_owned(),
        amount: validate::amount_of(reversal)?,
    })
}

/// DE90 naming `original` (the field a reversal or completion carries): its MTI, DE11,
/// DE7 and acquirer id (DE32, 11 digits), then 11 zeros for the forwarding institution.
/// [`original_key`] reads it back.
pub fn original_data(original: &Message) -> String {
    let field = |n| original.text(n).unwrap_or("").trim();
    format!(
        "{}{}{}{:0>11}{:011}",
        original.mti(),
        field(11),
        field(7),
        field(32),
        0
    )
}

/// The original's key from DE90: original MTI (4), STAN (6), DE7 (10), acquirer id
/// (11); the terminal is the reversal's DE41. An acquirer id of zeros, or equal to the
/// reversal's own but for leading zeros, stands for the reversal's own.
pub fn original_key(message: &Message, link: &Link) -> Option<TransactionKey> {
    let data = message.text(90)?.trim();
    if data.len() < 31 || !data.is_ascii() {
        return None;
    }
    let mti = Mti::new(&data.as_bytes()[..4])?;
    let own = acquirer_of(message, &link.acquirer_id);
    let given = data[20..31].trim_start_matches('0');
    let acquirer = if given.is_empty() || given == own.trim_start_matches('0') {
        own
    } else {
        given
    };
    let terminal = message.text(41).map(str::trim).unwrap_or("");
    Some(TransactionKey::from_parts(
        acquirer,
        terminal,
        &data[4..10],
        &data[10..20],
        mti.class(),
    ))
}

/// DE95's actual transaction amount (its first 12 digits): what remains after a
/// partial reversal; 0 without DE95; `None` when DE95 does not start with 12 digits.
fn replacement_amount(message: &Message) -> Option<u64> {
    let Some(data) = message.get(95) else {
        return Some(0);
    };
    let digits = data
        .get(..12)
        .filter(|d| d.iter().all(u8::is_ascii_digit))?;
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Whether the queued advice `entry` owes `amount` to `account`.
fn owes(entry: &TransactionEntry, account: &str, amount: Option<u64>) -> bool {
    (entry.owed.as_ref()).is_some_and(|o| o.account == account && Some(o.amount) == amount)
}
