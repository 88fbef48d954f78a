//! Enrolment for the self-service channels, part of activation (BACKOFFICE.md §4, §6):
//! an activation may carry the subscriber's channel PIN (4 to 12 digits), the
//! `[[debit_bank]]` to debit and the debit account there. The PIN is kept only as an
//! argon2id hash; the debit account only sealed (AES-256-GCM, bound to the prepaid
//! account, under the channel key: `[channels] key_file`, default `channel.key` in the
//! data directory, made `0600` on first use) and masked for people. The first
//! enrolment needs all three; later activations change the ones they give. Neither
//! the PIN nor the debit account is ever in an answer, a log or the audit trail.

use serde::{Deserialize, Serialize};

use super::scope::Principal;
use super::users::{audit, value};
use super::{ApiError, Console, secrets};
use crate::durable::record::{Enrolment, Record, Saved};
use crate::durable::vault::Vault;
use crate::vocab::people::Audit;
use crate::wire::iso8583::mask_pan;

/// The enrolment fields an activation may carry.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct EnrolRequest {
    /// The channel PIN, 4 to 12 digits.
    #[serde(default)]
    pub pin: Option<String>,
    /// The `[[debit_bank]]` name.
    #[serde(default)]
    pub debit_bank: Option<String>,
    /// The account debited at that bank: 8 to 19 digits (DE2 of the debit).
    #[serde(default)]
    pub debit_account: Option<String>,
}

impl EnrolRequest {
    /// Whether it carries anything.
    pub fn is_empty(&self) -> bool {
        self.pin.is_none() && self.debit_bank.is_none() && self.debit_account.is_none()
    }
}

/// An enrolment as people may see it (and the audit trail keeps).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrolmentShown {
    /// The debit bank.
    pub debit_bank: String,
    /// The debit account, masked.
    pub debit_account: String,
    /// Locked after wrong PINs.
    pub locked: bool,
}

impl EnrolmentShown {
    /// What people may see of `enrolment`.
    pub fn of(enrolment: &Enrolment) -> EnrolmentShown {
        EnrolmentShown {
            debit_bank: enrolment.debit_bank.clone(),
            debit_account: enrolment.debit_masked.clone(),
            locked: enrolment.locked,
        }
    }
}

fn invalid(error: &'static str, reason: &str) -> ApiError {
    ApiError::Invalid {
        error,
        reason: reason.to_owned(),
    }
}

/// The record that enrols `account` as `request` says (or changes its enrolment), by
/// `by`; `None` when the request carries nothing. Every field is checked first.
pub fn enrolment(
    console: &Console,
    by: &str,
    account: &str,
    request: &EnrolRequest,
) -> Result<Option<Record>, ApiError> {
    if request.is_empty() {
        return Ok(None);
    }
    check(console, request)?;
    let before = console.decider().store().enrolment(account)?;
    let after = match &before {
        Some(current) => changed(console, account, current.clone(), request)?,
        None => first(console, account, request)?,
    };
    let audit = Audit {
        before: before.as_ref().and_then(|b| value(&EnrolmentShown::of(b))),
        after: value(&EnrolmentShown::of(&after)),
        ..audit(by, "account.enrol", &mask_pan(account.as_bytes()), "ok")
    };
    let saved = Saved { item: after, audit };
    Ok(Some(Record::Enrolled(Box::new(saved))))
}

/// The §4 errors: `invalid_pin`, `invalid_debit_bank`, `invalid_debit_account`.
fn check(console: &Console, request: &EnrolRequest) -> Result<(), ApiError> {
    let digits = |text: &str, range: std::ops::RangeInclusive<usize>| {
        range.contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit())
    };
    if request
        .pin
        .as_deref()
        .is_some_and(|pin| !digits(pin, 4..=12))
    {
        return Err(invalid("invalid_pin", "a channel PIN is 4 to 12 digits"));
    }
    if let Some(bank) = &request.debit_bank {
        if console.config().find_debit_bank(bank).is_none() {
            return Err(invalid(
                "invalid_debit_bank",
                "no [[debit_bank]] has that name",
            ));
        }
    }
    if (request.debit_account.as_deref()).is_some_and(|a| !digits(a, 8..=19)) {
        return Err(invalid(
            "invalid_debit_account",
            "a debit account is 8 to 19 digits",
        ));
    }
    Ok(())
}

/// A first enrolment: all three fields.
fn first(console: &Console, account: &str, request: &EnrolRequest) -> Result<Enrolment, ApiError> {
    let (Some(pin), Some(bank), Some(debit)) =
        (&request.pin, &request.debit_bank, &request.debit_account)
    else {
        return Err(invalid(
            "invalid_enrolment",
            "a first enrolment gives pin, debit_bank and debit_account together",
        ));
    };
    Ok(Enrolment {
        account: account.to_owned(),
        pin_hash: hash(pin)?,
        debit_bank: bank.clone(),
        debit_account: vault(console)?.seal(account, debit).map_err(internal)?,
        debit_masked: mask_pan(debit.as_bytes()),
        failures: 0,
        locked: false,
    })
}

/// An enrolment with the fields `request` gives changed (the lock stays as it is: an
/// operator unlocks).
fn changed(
    console: &Console,
    account: &str,
    mut current: Enrolment,
    request: &EnrolRequest,
) -> Result<Enrolment, ApiError> {
    if let Some(pin) = &request.pin {
        current.pin_hash = hash(pin)?;
        current.failures = 0;
    }
    if let Some(bank) = &request.debit_bank {
        current.debit_bank = bank.clone();
    }
    if let Some(debit) = &request.debit_account {
        current.debit_account = vault(console)?.seal(account, debit).map_err(internal)?;
        current.debit_masked = mask_pan(debit.as_bytes());
    }
    Ok(current)
}

fn hash(pin: &str) -> Result<String, ApiError> {
    secrets::hash_secret(pin).map_err(internal)
}

fn vault(console: &Console) -> Result<Vault, ApiError> {
    Vault::open_or_create(&console.config().channel_key_file()).map_err(internal)
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::Internal(e.to_string())
}

/// `POST /api/v1/accounts/{account}/channel-unlock`: a csr or admin in scope unlocks
/// an enrolment locked by wrong PINs (no second person needed); `409` when the account
/// is not enrolled.
pub fn unlock_channel(
    console: &Console,
    principal: &Principal,
    number: &str,
) -> Result<EnrolmentShown, ApiError> {
    let _serial = console.changes();
    super::accounts::in_scope(console, principal, number)?;
    let store = console.decider().store();
    let enrolment = (store.enrolment(number)?)
        .ok_or_else(|| ApiError::Conflict("not enrolled for the channels".into()))?;
    if !enrolment.locked && enrolment.failures == 0 {
        return Ok(EnrolmentShown::of(&enrolment));
    }
    let record = unlock(&enrolment, principal.name());
    console.decider().journal_records(&[record])?;
    let after = store.enrolment(number)?.unwrap_or(enrolment);
    Ok(EnrolmentShown::of(&after))
}

/// The enrolment unlocked by an operator (`by`): the wrong-PIN count back to zero.
pub fn unlock(enrolment: &Enrolment, by: &str) -> Record {
    let mut after = enrolment.clone();
    after.failures = 0;
    after.locked = false;
    counted(enrolment, after, by, "channel.unlock", "ok")
}

/// The record of an enrolment whose wrong-PIN count changed (`action` by `by`): the
/// audit entry shows the count and the lock, nothing else.
pub fn counted(
    before: &Enrolment,
    after: Enrolment,
    by: &str,
    action: &str,
    result: &str,
) -> Record {
    let shown =
        |e: &Enrolment| value(&serde_json::json!({"failures": e.failures, "locked": e.locked}));
    let audit = Audit {
        before: shown(before),
        after: shown(&after),
        ..audit(by, action, &mask_pan(after.account.as_bytes()), result)
    };
    Record::Enrolled(Box::new(Saved { item: after, audit }))
}
