//! What the journal records: every decision the switch answers with, every reference
//! data import, and (with the engine links) every send and acknowledgement of a credit.
//! Records are JSON inside the journal's CRC frames, so the journal doubles as a
//! readable audit trail. No record holds track data, a PIN block, EMV data or a debit
//! card number in clear: the prepaid account number (our own card) is kept because it
//! is the account; an ATM's debit card appears only masked.

use serde::{Deserialize, Serialize};

use crate::switch::accounts::{Account, Location};
use crate::switch::codes::{Decline, ResponseCode};
use crate::switch::key::TransactionKey;

/// One journal record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Record {
    /// A transaction decided: approved or declined, keyed for repeats.
    Decided(Box<Decision>),
    /// A message answered without a keyed decision (format error, key reused with
    /// other content, unsupported message): audit and exception log only.
    Rejected(Box<Rejection>),
    /// Accounts added or replaced by an import.
    AccountsImported {
        /// The rows.
        accounts: Vec<Account>,
    },
    /// Locations added or replaced by an import.
    LocationsImported {
        /// The rows.
        locations: Vec<Location>,
    },
    /// A credit advice put on an engine link: the first `0220` or a `0221` repeat.
    CreditSent(Delivery),
    /// An engine acknowledged a credit: its outbox entry is done.
    CreditAcked(Delivery),
}

/// One send or acknowledgement of a credit on an engine link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The engine.
    pub engine: String,
    /// DE62 of the credit.
    pub confirmation: String,
    /// The MTI sent (`0220`, `0221`) or received (`0230`).
    pub mti: String,
    /// The link's address.
    pub link: String,
    /// 1 for the first send, 2 for the first retransmission, and so on.
    pub attempt: u32,
    /// When, milliseconds since the Unix epoch.
    pub at_ms: i64,
}

/// A keyed decision and, on approval, the credit to forward.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// The transaction key.
    pub key: TransactionKey,
    /// SHA-256 of the request's content fields (hex).
    pub fingerprint: String,
    /// The request MTI.
    pub mti: String,
    /// When decided, milliseconds since the Unix epoch (UTC).
    pub at_ms: i64,
    /// The UTC day the decision counts toward, `YYYY-MM-DD`.
    pub day: String,
    /// DE39 answered.
    pub code: ResponseCode,
    /// Why declined, if declined.
    pub decline: Option<Decline>,
    /// The request as the exception log shows it (PANs masked).
    pub summary: Summary,
    /// The prepaid account credited or checked, when the request named a valid one.
    pub account: Option<String>,
    /// Confirmation counter and number of an approval.
    pub approval: Option<Approval>,
    /// The credit to forward, on approval.
    pub credit: Option<Credit>,
}

/// A masked summary of the request, for exception and fraud logs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// DE2 masked.
    pub pan: String,
    /// DE103 masked.
    pub account_2: String,
    /// DE3.
    pub processing_code: String,
    /// DE4 as sent.
    pub amount: String,
    /// DE49.
    pub currency: String,
    /// DE11.
    pub stan: String,
    /// DE37.
    pub rrn: String,
    /// DE41.
    pub terminal: String,
    /// DE42.
    pub location: String,
    /// The acquirer id (DE32 or the link's).
    pub acquirer: String,
    /// The acquirer link's name.
    pub link: String,
}

/// An approval's confirmation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    /// The counter the number was made from (the next start continues after it).
    pub counter: u64,
    /// DE62, 12 digits.
    pub confirmation: String,
}

/// A credit for a prepaid engine: the outbox entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credit {
    /// The engine (config name) that serves the account's carrier.
    pub engine: String,
    /// The subscriber at the engine (DE102).
    pub min: String,
    /// Minor units.
    pub amount: u64,
    /// DE49.
    pub currency: String,
    /// DE62: the engine's idempotency key.
    pub confirmation: String,
    /// DE3 of the request.
    pub processing_code: String,
    /// DE37 of the request.
    pub rrn: String,
}

/// A message answered without a keyed decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rejection {
    /// The request MTI, when it could be read.
    pub mti: String,
    /// When, milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// DE39 answered.
    pub code: ResponseCode,
    /// What was wrong (a decode error, "key reused with other content", ...).
    pub reason: String,
    /// The key, when it could be formed.
    pub key: Option<TransactionKey>,
    /// The request, masked.
    pub summary: Summary,
}

impl Record {
    /// The JSON body written to the journal.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serializing these plain structs cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses a journal body.
    pub fn from_bytes(body: &[u8]) -> Result<Record, serde_json::Error> {
        serde_json::from_slice(body)
    }
}
