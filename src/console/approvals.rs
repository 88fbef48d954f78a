//! Four eyes (maker-checker): a goodwill adjustment, an exception resubmission and an
//! unblock are requested by one person and carried out only when a second person with
//! the right role approves. The maker cannot approve their own; one item has at most
//! one pending request; each step is an `approval_saved` record with its audit entry.
//!
//! An approved adjustment is credited like any approval: it is decided as a `0220`
//! advice from the `console` link (key: acquirer `CONSOLE`, terminal `ADJUST`, DE11
//! from the request's id, DE7 from its time), so it gets a confirmation number, an
//! outbox entry and a `0220` to the engine, and approving it again after a crash finds
//! the same decision instead of crediting twice. No bank sends it, so no bank settles
//! it.

use serde::Serialize;

use super::accounts::{self, in_scope};
use super::scope::{Action, Principal};
use super::users::{audit, value};
use super::{ApiError, Caller, Console};
use crate::durable::record::{Record, Saved};
use crate::switch::advise::ResubmitError;
use crate::switch::decide::Link;
use crate::vocab::accounts::AccountStatus;
use crate::vocab::people::{Approval, ApprovalState, Audit, Request};
use crate::wire::iso8583::{Message, Mti, mask_pan};

pub use crate::vocab::people::CONSOLE_LINK;

/// Longest reason kept.
const MAX_REASON: usize = 200;

/// An approval as the API answers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Shown {
    /// Its id.
    pub approval: u64,
    /// `pending`, `done`, `rejected`.
    pub state: &'static str,
    /// `adjustment`, `resubmit`, `unblock`.
    pub kind: &'static str,
    /// What it concerns (a masked account, an exception id).
    pub target: String,
    /// An adjustment's amount.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount: Option<u64>,
    /// An adjustment's reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Who asked.
    pub maker: String,
    /// When (RFC 3339).
    pub at: String,
    /// Who approved or rejected.
    pub checker: Option<String>,
    /// The credit's confirmation number, once done.
    pub confirmation: Option<String>,
}

impl Shown {
    /// `approval` as shown (accounts masked).
    pub fn of(approval: &Approval) -> Shown {
        let (kind, target, amount, reason) = match &approval.request {
            Request::Adjustment {
                account,
                amount,
                reason,
            } => (
                "adjustment",
                mask_pan(account.as_bytes()),
                Some(*amount),
                Some(reason.clone()),
            ),
            Request::Resubmit { item } => ("resubmit", format!("exception {item}"), None, None),
            Request::Unblock { account } => ("unblock", mask_pan(account.as_bytes()), None, None),
        };
        Shown {
            approval: approval.id,
            state: approval.state.as_str(),
            kind,
            target,
            amount,
            reason,
            maker: approval.maker.clone(),
            at: accounts::at(approval.at_ms),
            checker: approval.checker.clone(),
            confirmation: approval.confirmation.clone(),
        }
    }
}

/// Records a request by `caller` (after checking its role, scope and the item); it
/// waits for a second person.
pub fn request(console: &Console, caller: &Caller, request: Request) -> Result<Shown, ApiError> {
    caller.require(Action::Request)?;
    let principal = &caller.principal;
    let _serial = console.changes();
    let carrier = check_request(console, principal, &request)?;
    let store = console.decider().store();
    if let Some(id) = store.pending_approval(&request.item())? {
        return Err(ApiError::Conflict(format!(
            "request {id} for the same item is pending"
        )));
    }
    let approval = Approval {
        id: 0,
        request,
        carrier,
        maker: principal.name().to_owned(),
        at_ms: chrono::Utc::now().timestamp_millis(),
        state: ApprovalState::Pending,
        checker: None,
        decided_ms: None,
        confirmation: None,
    };
    let mut shown = Shown::of(&approval);
    let action = format!("{}.request", shown.kind);
    let audit = Audit {
        after: value(&shown),
        ..audit(principal.name(), &action, &shown.target, "pending")
    };
    let record = Record::ApprovalSaved(Box::new(Saved {
        item: approval,
        audit,
    }));
    let seqs = console.decider().journal_records(&[record])?;
    shown.approval = seqs.last().copied().unwrap_or(0);
    Ok(shown)
}

/// What a request may ask: an account in scope that can be credited, a positive amount
/// within the limits and a reason; an exception item in scope still open; a blocked
/// account. Returns the carrier it concerns.
fn check_request(
    console: &Console,
    principal: &Principal,
    request: &Request,
) -> Result<String, ApiError> {
    let invalid = |reason: String| ApiError::Invalid {
        error: "bad_request",
        reason,
    };
    match request {
        Request::Adjustment {
            account,
            amount,
            reason,
        } => {
            let account = in_scope(console, principal, account)?;
            let rules = console.decider().rules();
            if *amount == 0 || *amount > rules.max_amount {
                return Err(invalid(format!(
                    "amount: 1 to {} minor units",
                    rules.max_amount
                )));
            }
            if reason.trim().is_empty() || reason.chars().count() > MAX_REASON {
                return Err(invalid(format!("reason: 1 to {MAX_REASON} characters")));
            }
            if account.status != AccountStatus::Active || account.min.is_empty() {
                return Err(invalid("the account is not active with a MIN".into()));
            }
            Ok(account.carrier)
        }
        Request::Unblock { account } => {
            let account = in_scope(console, principal, account)?;
            if account.status != AccountStatus::Blocked {
                return Err(ApiError::Conflict("the account is not blocked".into()));
            }
            Ok(account.carrier)
        }
        Request::Resubmit { item } => {
            let scope = exception_scope(console, *item)?.ok_or(ApiError::NotFound)?;
            if !principal.sees_transaction(scope.carrier.as_deref(), scope.bank.as_deref()) {
                return Err(ApiError::NotFound);
            }
            if !scope.open {
                return Err(ApiError::Conflict(format!("exception {item} is closed")));
            }
            Ok(scope.carrier.unwrap_or_default())
        }
    }
}

/// Whom an exception-queue item concerns, and whether it is still open.
pub struct ItemScope {
    /// The carrier of its account.
    pub carrier: Option<String>,
    /// The bank it came from.
    pub bank: Option<String>,
    /// Whether it still waits.
    pub open: bool,
}

/// The scope of exception item `id` (an advice owed or a reconciliation break).
pub fn exception_scope(console: &Console, id: u64) -> Result<Option<ItemScope>, ApiError> {
    let store = console.decider().store();
    let carrier_of = |account: &str| -> Result<Option<String>, ApiError> {
        Ok(store.account(account)?.map(|a| a.carrier))
    };
    if let Some(item) = store.queue_item(id)? {
        let link = store.transaction(&item.key)?.map(|e| e.link);
        return Ok(Some(ItemScope {
            carrier: carrier_of(&item.owed.account)?,
            bank: link.and_then(|l| bank_of_link(console, &l)),
            open: item.resolved.is_none() && !item.reversed,
        }));
    }
    if let Some(item) = store.break_item(id)? {
        let found = &item.found;
        let carrier = match &found.lost {
            Some(lost) => carrier_of(&lost.account)?,
            None => None,
        };
        let bank = (found.side == crate::durable::record::Side::Bank).then(|| found.party.clone());
        return Ok(Some(ItemScope {
            carrier,
            bank,
            open: item.resolved.is_none(),
        }));
    }
    Ok(None)
}

/// The bank a link belongs to.
pub fn bank_of_link(console: &Console, link: &str) -> Option<String> {
    (console.config().banks().into_iter())
        .find(|b| b.links.iter().any(|l| l == link))
        .map(|b| b.name)
}

/// Approves (`approve`) or rejects request `id` as `caller`.
pub fn decide(
    console: &Console,
    caller: &Caller,
    id: u64,
    approve: bool,
) -> Result<Shown, ApiError> {
    caller.require(Action::Approve)?;
    let checker = caller.principal.name();
    let _serial = console.changes();
    let store = console.decider().store();
    let mut approval = store.approval(id)?.ok_or(ApiError::NotFound)?;
    if approval.maker == checker {
        return Err(ApiError::Forbidden(
            "the maker of a request cannot approve or reject it".into(),
        ));
    }
    if approval.state != ApprovalState::Pending {
        return Err(ApiError::Conflict(format!(
            "request {id} is {} already",
            approval.state.as_str()
        )));
    }
    let before = Shown::of(&approval);
    if approve {
        approval.confirmation = carry_out(console, &approval, checker)?;
        approval.state = ApprovalState::Done;
    } else {
        approval.state = ApprovalState::Rejected;
    }
    approval.checker = Some(checker.to_owned());
    approval.decided_ms = Some(chrono::Utc::now().timestamp_millis());
    let shown = Shown::of(&approval);
    let action = if approve {
        "approval.approve"
    } else {
        "approval.reject"
    };
    let audit = Audit {
        before: value(&before),
        after: value(&shown),
        ..audit(checker, action, &format!("approval {id}"), shown.state)
    };
    let record = Record::ApprovalSaved(Box::new(Saved {
        item: approval,
        audit,
    }));
    console.decider().journal_records(&[record])?;
    Ok(shown)
}

/// Does what an approved request asks; returns a credit's confirmation number.
fn carry_out(
    console: &Console,
    approval: &Approval,
    checker: &str,
) -> Result<Option<String>, ApiError> {
    match &approval.request {
        Request::Adjustment {
            account, amount, ..
        } => credit(console, approval, account, *amount).map(Some),
        Request::Resubmit { item } => match console.decider().resubmit_item(*item, checker) {
            Ok(done) => Ok(Some(done.confirmation)),
            Err(ResubmitError::Done { confirmation, .. }) => Ok(Some(confirmation)),
            Err(ResubmitError::NotFound(_)) => Err(ApiError::NotFound),
            Err(ResubmitError::Switch(e)) => Err(e.into()),
            Err(e) => Err(ApiError::Conflict(e.to_string())),
        },
        Request::Unblock { account } => {
            accounts::unblock(console, checker, account)?;
            Ok(None)
        }
    }
}

/// Credits an adjustment: decides its `0220` and waits until it is durable.
fn credit(
    console: &Console,
    approval: &Approval,
    account: &str,
    amount: u64,
) -> Result<String, ApiError> {
    let decider = console.decider();
    let message = adjustment_advice(decider.rules(), approval, account, amount)
        .ok_or_else(|| ApiError::Internal("adjustment message".into()))?;
    let link = Link {
        name: CONSOLE_LINK.into(),
        acquirer_id: "CONSOLE".into(),
    };
    let outcome = decider.decide(&message, &link)?;
    decider
        .journal()
        .wait_durable_blocking(outcome.seq)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    outcome.confirmation.ok_or_else(|| {
        ApiError::Conflict(format!(
            "the adjustment was answered {} but not credited (see the exception queue)",
            outcome.code.as_str()
        ))
    })
}

/// The `0220` an adjustment is decided as: the same message for the same request.
fn adjustment_advice(
    rules: &crate::switch::validate::Rules,
    approval: &Approval,
    account: &str,
    amount: u64,
) -> Option<Message> {
    use chrono::Datelike;
    use chrono::Timelike;
    let asked = chrono::DateTime::from_timestamp_millis(approval.at_ms)?;
    let family = (rules.processing_codes.iter())
        .find(|c| c.as_str() == "28")
        .or(rules.processing_codes.first())?;
    let mut message = Message::new(Mti::new(b"0220")?);
    message.set(2, account.to_owned());
    message.set(3, format!("{family}0000"));
    message.set(4, format!("{amount:012}"));
    message.set(
        7,
        format!(
            "{:02}{:02}{:02}{:02}{:02}",
            asked.month(),
            asked.day(),
            asked.hour(),
            asked.minute(),
            asked.second()
        ),
    );
    message.set(11, format!("{:06}", approval.id % 1_000_000));
    message.set(32, "CONSOLE".to_owned());
    message.set(37, format!("ADJ{:09}", approval.id % 1_000_000_000));
    message.set(41, "ADJUST".to_owned());
    message.set(49, rules.currencies.first()?.clone());
    Some(message)
}
