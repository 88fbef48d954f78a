//! What the journal records: every decision the switch answers with, every reference
//! data import, and (with the engine links) every send and acknowledgement of a credit.
//! Records are JSON inside the journal's CRC frames, so the journal doubles as a
//! readable audit trail. No record holds track data, a PIN block, EMV data or a debit
//! card number in clear: the prepaid account number (our own card) is kept because it
//! is the account; an ATM's debit card appears only masked.

use serde::{Deserialize, Serialize};

use crate::vocab::accounts::{Account, Location};
use crate::vocab::codes::{Decline, ResponseCode};
use crate::vocab::key::TransactionKey;
use crate::vocab::people::{self, Audit, Client, User};

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
    /// A credit or reversal advice put on an engine link: the first `0220` / `0420` or
    /// a `0221` / `0421` repeat.
    CreditSent(Delivery),
    /// An engine acknowledged a credit (`0230`) or a reversal (`0430`): its outbox entry
    /// is done.
    CreditAcked(Delivery),
    /// Authorization holds past their expiry, released.
    HoldsExpired(Box<Expiry>),
    /// An operator resubmitted an exception-queue item.
    Resubmitted(Box<Resubmission>),
    /// A business day closed (the scheduled cutover, or `day close`); the next is open.
    DayClosed(DayClose),
    /// A difference a reconciliation found: one exception-queue item.
    BreakFound(Box<Break>),
    /// An operator closed a break (with a note, or by crediting a lost advice).
    BreakResolved(BreakResolution),
    /// A reconciliation ran: its file, counts and breaks (after their `break_found`s).
    Reconciled(Box<Reconciliation>),
    /// A notification to send (an email), kept in the outbox until it is sent.
    NotificationQueued(Box<Notification>),
    /// One attempt to send a notification: sent, or failed and why.
    NotificationAttempt(NotificationAttempt),
    /// A bank's business day settled: each currency's split by party.
    Settled(Box<SettledDay>),
    /// Voucher PINs added to a product's stock (`pins import`), sealed: one file, one
    /// record, so a batch is in stock whole or not at all.
    PinsImported(Box<PinBatch>),
    /// PINs in stock sealed again under a new key (`pins rekey`).
    PinsResealed(Box<Resealed>),
    /// A console user added or changed (`users add`, `users disable`).
    UserSaved(Box<Saved<User>>),
    /// A machine client added or changed (`clients add`).
    ClientSaved(Box<Saved<Client>>),
    /// An account activated, its MIN assigned, blocked or unblocked from the console.
    AccountChanged(Box<Saved<Account>>),
    /// A four-eyes request made, approved or rejected: the approval as it stands now
    /// (a new request's id is 0 here: its journal position is its id).
    ApprovalSaved(Box<Saved<people::Approval>>),
    /// Something done on the console that changes no state (a sign-in, a refusal).
    Audited(Box<Audit>),
    /// A subscriber enrolled for the self-service channels (BACKOFFICE.md §4, §6), or
    /// their enrolment changed.
    Enrolled(Box<Saved<Enrolment>>),
    /// A self-service channel request (BACKOFFICE.md §6) as it stands after a step:
    /// taken (before the bank debit goes out), answered, its debit reversed.
    ChannelRequested(Box<ChannelRequest>),
}

/// Where a channel request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelStatus {
    /// The debit is out (or about to be); no end yet.
    #[default]
    Pending,
    /// The bank approved and the engine credit is decided.
    Completed,
    /// Refused (wrong PIN, the rules, the bank) or the bank did not answer.
    Declined,
}

/// Where the reversal of a channel request's debit stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DebitReversal {
    /// No reversal: the debit stands, was declined, or never went out.
    #[default]
    None,
    /// A `0420` (then `0421`s) must go to the bank until it answers.
    Due,
    /// The bank acknowledged the reversal.
    Acked,
}

/// A self-service channel request: who asked for what under which idempotency key,
/// the debit sent for it, and its end. Journaled whole at each step; the index keeps
/// the last.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ChannelRequest {
    /// `CLIENT/KEY`: the channel client and its `Idempotency-Key`.
    pub id: String,
    /// HMAC-SHA256 (the channel key's digest key) of the request as read: the same key
    /// with another body is refused.
    pub fingerprint: String,
    /// `web`, `wireless` or `ivr`.
    pub channel: String,
    /// The prepaid account.
    pub account: String,
    /// Its MIN (where the SMS goes).
    pub min: String,
    /// Minor units.
    pub amount: u64,
    /// DE49.
    pub currency: String,
    /// The `[[debit_bank]]`.
    pub bank: String,
    /// The debit account, masked.
    pub debit_masked: String,
    /// DE11 of the debit (and of its reversal).
    pub stan: String,
    /// DE37.
    pub rrn: String,
    /// DE41: the channel's terminal id.
    pub terminal: String,
    /// DE7 of the debit, `MMDDhhmmss` UTC.
    pub transmitted: String,
    /// Where it stands.
    pub status: ChannelStatus,
    /// Why it was declined (`insufficient_funds`, `bank_unavailable`, `wrong_pin`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The bank's DE39, once it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bank_code: Option<String>,
    /// The confirmation number of the credit, once completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmation: Option<String>,
    /// PIN tries left, on a wrong PIN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts_left: Option<u32>,
    /// The debit's reversal. (Not `reversal` in the journal: the engines' router reads
    /// a top-level `reversal` of any record as a decision's.)
    #[serde(default, rename = "debit_reversal")]
    pub reversal: DebitReversal,
    /// When it was taken, milliseconds since the Unix epoch.
    pub at_ms: i64,
}

impl ChannelRequest {
    /// Whether something is still to be done for it (an end, or a reversal).
    pub fn open(&self) -> bool {
        self.status == ChannelStatus::Pending || self.reversal == DebitReversal::Due
    }
}

/// A subscriber's enrolment for the self-service channels: the PIN they give (kept
/// only as an argon2id hash) and the bank account the switch debits (kept only sealed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enrolment {
    /// The prepaid account.
    pub account: String,
    /// The channel PIN, argon2id (PHC string).
    pub pin_hash: String,
    /// The `[[debit_bank]]` debited.
    pub debit_bank: String,
    /// The debit account (DE2 of the debit), AES-256-GCM bound to the prepaid account.
    pub debit_account: crate::durable::vault::Sealed,
    /// The debit account masked (first 6, last 4), for people.
    pub debit_masked: String,
    /// Wrong PINs in a row.
    #[serde(default)]
    pub failures: u32,
    /// Locked after 3 wrong PINs in a row, until an operator unlocks.
    #[serde(default)]
    pub locked: bool,
}

/// A batch of voucher PINs imported into a product's stock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinBatch {
    /// The product.
    pub sku: String,
    /// The file it came from (its name only).
    pub file: String,
    /// Who imported it.
    pub by: String,
    /// When, ms since the epoch.
    pub at_ms: i64,
    /// The PINs.
    pub pins: Vec<StoredPin>,
}

/// PINs sealed again under a new key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resealed {
    /// The new key's id.
    pub key: String,
    /// Each PIN's product, serial and new sealing.
    pub pins: Vec<ResealedPin>,
}

/// One PIN sealed again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResealedPin {
    /// The product.
    pub sku: String,
    /// The serial.
    pub serial: String,
    /// The PIN under the new key.
    pub sealed: crate::durable::vault::Sealed,
}

/// A voucher PIN as it is kept: never in clear.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredPin {
    /// The serial printed on the voucher (what reports and lookups show).
    pub serial: String,
    /// The PIN, sealed (AES-256-GCM, bound to the serial).
    pub sealed: crate::durable::vault::Sealed,
    /// The PIN's keyed digest: how a PIN already in stock is recognised.
    pub digest: String,
    /// Last valid day, `YYYY-MM-DD`, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiry: Option<String>,
}

/// A console change: the item as it stands after it, and the audit entry saying who
/// made it (journaled together, so the trail never misses a change).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saved<T> {
    /// The item after the change.
    pub item: T,
    /// Who, when, what.
    pub audit: Audit,
}

/// A bank's day settled (BACKOFFICE.md §3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettledDay {
    /// The bank.
    pub bank: String,
    /// The business day.
    pub day: String,
    /// When, milliseconds since the Unix epoch (the files' creation time).
    pub at_ms: i64,
    /// One settlement per currency.
    pub settlements: Vec<Settlement>,
}

/// One currency's settlement: the JSON file's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settlement {
    /// The bank.
    pub bank: String,
    /// The business day.
    pub day: String,
    /// DE49, e.g. `840`.
    pub currency: String,
    /// Minor units split.
    pub total: u64,
    /// Approvals with an amount left to split.
    pub transactions: u64,
    /// Each party's share, by party name.
    pub parties: Vec<PartyAmount>,
}

/// A party's share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartyAmount {
    /// `provider`, `carrier:NAME`, `retailer:NAME` or `bank:NAME`.
    pub party: String,
    /// Minor units.
    pub amount: u64,
}

/// A notification for people (the exception report by email).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// What makes it the same notification (a re-run that finds the same breaks
    /// sends none).
    pub identity: String,
    /// `email`.
    pub channel: String,
    /// The recipients.
    pub to: Vec<String>,
    /// The subject.
    pub subject: String,
    /// The text.
    pub body: String,
    /// An attachment, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachment: Option<Attachment>,
    /// When it was queued, milliseconds since the Unix epoch.
    pub at_ms: i64,
}

/// A text attachment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// Its file name.
    pub name: String,
    /// Its media type (`text/csv`).
    pub content_type: String,
    /// Its content.
    pub text: String,
}

/// One delivery attempt of a notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationAttempt {
    /// The notification (the journal position of its `notification_queued`).
    pub id: u64,
    /// When, milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// Why it failed; none when it was sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The close of a business day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayClose {
    /// The day closed, `YYYY-MM-DD`.
    pub day: String,
    /// The day open from this record on.
    pub next: String,
    /// When, milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// `cutover` for the scheduled cutover, else the operator.
    pub by: String,
    /// Closed before its scheduled cutover.
    pub early: bool,
}

/// Which side of the switch a reconciliation compares with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// A bank's reconciliation file (its acquirer links' traffic).
    Bank,
    /// A prepaid engine's report of applied credits.
    Engine,
}

impl Side {
    /// `bank` or `engine`.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Bank => "bank",
            Side::Engine => "engine",
        }
    }
}

/// One break: a line or a decision that did not match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Break {
    /// Bank or engine.
    pub side: Side,
    /// The bank's or engine's name.
    pub party: String,
    /// The business day reconciled.
    pub day: String,
    /// The class (`amount_mismatch`, `missing_at_switch`, ...).
    pub class: String,
    /// The transaction key (bank side), or the confirmation number (engine side).
    pub key: String,
    /// DE62, when either side has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmation: Option<String>,
    /// What the file says (accounts masked), when it has a line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub theirs: Option<serde_json::Value>,
    /// What the switch holds (accounts masked), when it has a decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ours: Option<serde_json::Value>,
    /// For `missing_at_switch`: the advice the switch never received, to credit on
    /// resubmission (the account in clear: it is the prepaid account, as in decisions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lost: Option<LostAdvice>,
    /// What makes a break the same one when a file is reconciled again.
    pub identity: String,
    /// When it was found, milliseconds since the Unix epoch.
    #[serde(default)]
    pub at_ms: i64,
}

/// A transaction the bank approved that never reached the switch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LostAdvice {
    /// The MTI as the bank sent it.
    pub mti: String,
    /// DE3.
    pub processing_code: String,
    /// DE32.
    pub acquirer_id: String,
    /// DE41.
    pub terminal: String,
    /// DE11.
    pub stan: String,
    /// DE7.
    pub transmission: String,
    /// DE37.
    pub rrn: String,
    /// The prepaid account.
    pub account: String,
    /// Minor units.
    pub amount: u64,
    /// DE49.
    pub currency: String,
    /// The acquirer link it is credited as coming from.
    pub link: String,
}

/// How a break was closed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakResolution {
    /// The break (the journal position of its `break_found`).
    pub id: u64,
    /// Who.
    pub by: String,
    /// When, milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// Why, in the operator's words.
    pub note: String,
    /// The confirmation of the credit, for a lost advice credited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmation: Option<String>,
}

/// A reconciliation run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reconciliation {
    /// Bank or engine.
    pub side: Side,
    /// The bank's or engine's name.
    pub party: String,
    /// The business day.
    pub day: String,
    /// SHA-256 of the file (hex); the file itself is not kept.
    pub file_sha256: String,
    /// When, milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// Lines read (the header not counted).
    pub lines: u64,
    /// Lines and decisions per class.
    pub counts: std::collections::BTreeMap<String, u64>,
    /// The breaks of this run (journal positions of their `break_found`s).
    pub breaks: Vec<u64>,
    /// Keys of decisions of other days that lines of this file matched.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub other_day: Vec<String>,
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
    /// The business day it belongs to (BACKOFFICE.md §1); empty in records written
    /// before business days existed.
    #[serde(default)]
    pub business_day: String,
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
    /// What the decision changes in the account's daily usage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<UsageChange>,
    /// An authorization approved: its amount is held until completion or expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<Hold>,
    /// An advice acknowledged but not credited (its account cannot be routed): the
    /// exception queue keeps it for correction and resubmission.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owed: Option<Owed>,
    /// A reversal: what it matched and what it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reversal: Option<Reversal>,
    /// An earlier transaction this one changed (reversed, completed, or remembered as
    /// reversed before it arrived), as it stands after this decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub touches: Option<Touched>,
    /// Why a reviewer should see this although it was not declined (the exception log).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// A late original declined because of a reversal remembered by reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub late_for: Option<EarlyUsed>,
    /// A PIN sold, voided or put back by this decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin: Option<PinMove>,
}

impl Decision {
    /// Whether a later reversal may find this transaction by its retrieval reference
    /// (acquirer, DE41, DE37): an approval, or an advice acknowledged into the exception
    /// queue (a reversal closes its item, so it is never resubmitted, and after a
    /// resubmission reverses its credit).
    pub fn is_referenced(&self) -> bool {
        self.approval.is_some() || self.owed.is_some()
    }

    /// An approval of `key` with nothing decided yet: the caller fills in the rest.
    pub fn new(
        key: TransactionKey,
        fingerprint: String,
        mti: String,
        summary: Summary,
    ) -> Decision {
        Decision {
            key,
            fingerprint,
            mti,
            at_ms: 0,
            day: String::new(),
            business_day: String::new(),
            code: ResponseCode::Approved,
            decline: None,
            summary,
            account: None,
            approval: None,
            credit: None,
            usage: None,
            hold: None,
            owed: None,
            reversal: None,
            touches: None,
            note: None,
            late_for: None,
            pin: None,
        }
    }
}

/// A change of one account's usage on one day (negative on reversals and expiries).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageChange {
    /// The prepaid account.
    pub account: String,
    /// The UTC day, `YYYY-MM-DD`.
    pub day: String,
    /// Change of the approved count.
    pub count: i32,
    /// Change of the approved amount, minor units.
    pub amount: i64,
}

/// An authorization's hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    /// When it expires, milliseconds since the Unix epoch.
    pub expires_ms: i64,
    /// The credit its completion will make (amount = the amount held).
    pub credit: Credit,
}

/// A credit the switch owes but cannot route yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owed {
    /// The prepaid account named by the advice (may be the one that is wrong).
    pub account: String,
    /// Minor units.
    pub amount: u64,
    /// DE49.
    pub currency: String,
    /// DE3.
    pub processing_code: String,
    /// DE37.
    pub rrn: String,
    /// Why it could not be credited.
    pub reason: String,
}

/// An earlier transaction's index entry as a later decision left it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Touched {
    /// Its key.
    pub key: TransactionKey,
    /// Its entry now.
    pub entry: TransactionEntry,
}

/// What a reversal matched and did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reversal {
    /// The original's key (for `not_found`: the key a late original would have).
    pub original: Option<TransactionKey>,
    /// Minor units reversed.
    pub reversed: u64,
    /// The effect.
    pub effect: ReversalEffect,
    /// For `not_found`: the reversal remembered by retrieval reference as well, since
    /// its late original may carry another STAN than the reversal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub early: Option<Early>,
}

/// A reversal whose original has not arrived, as a late original is recognised by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Early {
    /// Acquirer id, DE41 and DE37 (see `store::reference_id`).
    pub reference: String,
    /// The prepaid account.
    pub account: String,
    /// DE4, minor units.
    pub amount: u64,
}

/// An early reversal that a late original used up (it is declined).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EarlyUsed {
    /// The reference it was remembered by.
    pub reference: String,
    /// The reversal's key.
    pub reversal: TransactionKey,
}

/// The effect of a reversal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "effect", rename_all = "snake_case")]
pub enum ReversalEffect {
    /// No original: remembered, so a late original is declined.
    NotFound,
    /// Nothing changed (the note says why: already reversed, declined, mismatch).
    Ignored,
    /// The credit had not left the switch: its outbox entry now holds `remaining`
    /// (none: removed) and nothing goes to the engine.
    Cancelled {
        /// The engine.
        engine: String,
        /// DE62 of the credit.
        confirmation: String,
        /// The credit as it now stands, for a partial reversal.
        remaining: Option<Credit>,
    },
    /// The credit may have reached the engine: a reversal advice goes out.
    Advised(ReversalAdvice),
    /// An authorization's hold was released (in full or in part).
    Released,
}

/// A reversal advice for a prepaid engine (`0420`, repeat `0421`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReversalAdvice {
    /// The credit being reversed (its amount is the original amount, DE4).
    pub credit: Credit,
    /// What remains credited after the reversal (DE95), 0 for a full reversal.
    pub remaining: u64,
}

/// Holds released by expiry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Expiry {
    /// When, milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// Each hold's entry, now expired, and the usage it gives back.
    pub holds: Vec<(Touched, UsageChange)>,
}

/// An operator's resubmission of an exception-queue item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resubmission {
    /// The queue item (the journal sequence number of the decision that queued it).
    pub id: u64,
    /// Who resubmitted it.
    pub by: String,
    /// When, milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// The confirmation it was credited with.
    pub approval: Approval,
    /// The credit now owed to the engine.
    pub credit: Credit,
    /// The usage it counts toward.
    pub usage: UsageChange,
    /// The business day its credit belongs to.
    #[serde(default)]
    pub business_day: String,
    /// The advice's transaction entry, now credited.
    pub touches: Touched,
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
    /// The PIN a point-of-sale sale drew (BACKOFFICE.md §5): its product, serial and
    /// the PIN sealed; none for a replenishment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voucher: Option<Box<Voucher>>,
}

/// The PIN of a sale, as the journal, the index and the outbox keep it: never in clear.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Voucher {
    /// The product.
    pub sku: String,
    /// The voucher's serial (in `generated` mode, the sale's confirmation number).
    pub serial: String,
    /// The PIN, sealed under the vault's key, bound to the serial.
    pub pin: crate::durable::vault::Sealed,
    /// Last valid day `YYYY-MM-DD`, when it has one (DE73 of the answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiry: Option<String>,
    /// Made at sale time (`generated`): the engine is told the PIN, not the serial.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub generated: bool,
    /// The PIN's digest, for a generated PIN (no PIN is answered twice).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub digest: String,
}

/// A PIN changing hands: sold by a sale, voided or put back in stock by its reversal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinMove {
    /// The product.
    pub sku: String,
    /// The voucher's serial.
    pub serial: String,
    /// Where it stands after the decision.
    pub to: crate::durable::store::PinState,
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
    ///
    /// serde reads an internally tagged enum by buffering the whole object before it
    /// knows the variant; the writer puts the tag first, so the common records
    /// (decisions, sends, acks) are read straight into their variant once the tag is
    /// seen (their structs ignore the `type` field). Anything else, or a body whose tag
    /// does not come first, takes serde's general path.
    pub fn from_bytes(body: &[u8]) -> Result<Record, serde_json::Error> {
        match leading_tag(body) {
            Some(b"decided") => serde_json::from_slice(body).map(|d| Record::Decided(Box::new(d))),
            Some(b"credit_sent") => serde_json::from_slice(body).map(Record::CreditSent),
            Some(b"credit_acked") => serde_json::from_slice(body).map(Record::CreditAcked),
            _ => serde_json::from_slice(body),
        }
    }
}

/// The value of a `"type"` member that opens a JSON object, as [`Record::to_bytes`]
/// writes it.
fn leading_tag(body: &[u8]) -> Option<&[u8]> {
    let rest = body.strip_prefix(br#"{"type":""#)?;
    let end = rest.iter().position(|&b| b == b'"')?;
    rest.get(..end)
}

/// What an engine must be sent for one journal record: its credit and its reversal
/// advice, read from the body without parsing the rest (a full [`Record`] goes through
/// serde's buffering of internally tagged enums, several times the work).
#[derive(Debug, Default, Deserialize)]
pub struct Forwardable {
    /// The credit of an approval or a resubmission.
    #[serde(default)]
    pub credit: Option<Credit>,
    /// A reversal, whose effect may be an advice to the engine.
    #[serde(default)]
    reversal: Option<Reversal>,
}

impl Forwardable {
    /// Reads the credit and reversal advice of a journal body.
    pub fn from_bytes(body: &[u8]) -> Result<Forwardable, serde_json::Error> {
        serde_json::from_slice(body)
    }

    /// The reversal advice for the engine, if the record has one.
    pub fn advice(&self) -> Option<&ReversalAdvice> {
        match self.reversal.as_ref().map(|r| &r.effect) {
            Some(ReversalEffect::Advised(advice)) => Some(advice),
            _ => None,
        }
    }
}

/// What the index keeps of a decided transaction: enough to answer a repeat, and to
/// reverse or complete it later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionEntry {
    /// The journal record that decided it.
    pub seq: u64,
    /// Content fingerprint of the original.
    pub fingerprint: String,
    /// DE39 answered.
    pub code: ResponseCode,
    /// DE62 of an approval.
    pub confirmation: Option<String>,
    /// The prepaid account, when the request named a valid one.
    #[serde(default)]
    pub account: Option<String>,
    /// The UTC day its usage counts toward.
    #[serde(default)]
    pub day: String,
    /// The business day it was decided in (empty before business days existed).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub business_day: String,
    /// The credit made; for an authorization, the credit its completion would make.
    #[serde(default)]
    pub credit: Option<Credit>,
    /// An authorization's hold expiry, milliseconds since the Unix epoch.
    #[serde(default)]
    pub expires_ms: Option<i64>,
    /// An advice acknowledged but waiting in the exception queue.
    #[serde(default)]
    pub queued: bool,
    /// What happened to it since.
    #[serde(default)]
    pub standing: Standing,
    /// The request MTI.
    #[serde(default)]
    pub mti: String,
    /// For a completed authorization: the key of its completion advice.
    #[serde(default)]
    pub completed_by: Option<TransactionKey>,
    /// When it was decided, milliseconds since the Unix epoch (0 in older entries).
    #[serde(default)]
    pub at_ms: i64,
    /// The acquirer link it came on: written by the index (empty in the decider's
    /// memory), which is how a bank's people are shown only their bank's transactions.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub link: String,
    /// The decision counted in the same account's usage of the same day just before
    /// this one: the index's per-account history, a chain through entries it writes
    /// anyway (a key of its own per decision would cost the indexer a sled insert).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<TransactionKey>,
    /// For an advice acknowledged into the exception queue: the account it names and
    /// the amount it owes, which a reversal by reference alone must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owed: Option<OwedAmount>,
}

/// What a queued advice owes, and to which account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwedAmount {
    /// The account the advice names.
    pub account: String,
    /// Minor units.
    pub amount: u64,
}

/// What became of a transaction after its decision.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "standing", rename_all = "snake_case")]
pub enum Standing {
    /// As decided.
    #[default]
    Open,
    /// An authorization completed by its advice.
    Completed,
    /// An authorization whose hold expired.
    Expired,
    /// Reversed, in full or in part (`amount` reversed).
    Reversed {
        /// Minor units reversed.
        amount: u64,
        /// Whether nothing remains.
        full: bool,
    },
    /// Not seen yet, but its reversal was: when it arrives it is declined.
    ReversedBeforeArrival,
}

impl TransactionEntry {
    /// The entry a decision makes.
    pub fn of(seq: u64, decision: &Decision) -> TransactionEntry {
        let hold = decision.hold.as_ref();
        // A late original of a reversal that came first counts as reversed: its key may
        // carry a correction, and it is never reversed again.
        let standing = match decision.decline {
            Some(Decline::ReversedBeforeArrival) => Standing::Reversed {
                amount: 0,
                full: true,
            },
            _ => Standing::Open,
        };
        TransactionEntry {
            seq,
            fingerprint: decision.fingerprint.clone(),
            code: decision.code,
            confirmation: decision.approval.as_ref().map(|a| a.confirmation.clone()),
            account: decision.account.clone(),
            // The day its usage counted on (a completion counts on its hold's day).
            day: decision
                .usage
                .as_ref()
                .map_or_else(|| decision.day.clone(), |u| u.day.clone()),
            business_day: decision.business_day.clone(),
            credit: decision.credit.clone().or(hold.map(|h| h.credit.clone())),
            expires_ms: hold.map(|h| h.expires_ms),
            queued: decision.owed.is_some(),
            standing,
            mti: decision.mti.clone(),
            completed_by: None,
            at_ms: decision.at_ms,
            link: String::new(),
            previous: None,
            owed: decision.owed.as_ref().map(|o| OwedAmount {
                account: o.account.clone(),
                amount: o.amount,
            }),
        }
    }

    /// Whether this is a request (`0100`, `0200`) that was declined.
    pub fn is_declined_request(&self) -> bool {
        self.code != ResponseCode::Approved && self.mti.as_bytes().get(2) == Some(&b'0')
    }

    /// The entry that remembers a reversal whose original has not arrived.
    pub fn reversed_before_arrival(seq: u64) -> TransactionEntry {
        TransactionEntry {
            seq,
            fingerprint: String::new(),
            code: ResponseCode::NoOriginal,
            confirmation: None,
            account: None,
            day: String::new(),
            business_day: String::new(),
            credit: None,
            expires_ms: None,
            queued: false,
            standing: Standing::ReversedBeforeArrival,
            mti: String::new(),
            completed_by: None,
            at_ms: 0,
            link: String::new(),
            previous: None,
            owed: None,
        }
    }

    /// The amount still held, for an authorization whose hold is open.
    pub fn held(&self) -> Option<u64> {
        self.expires_ms?;
        let amount = self.credit.as_ref()?.amount;
        match self.standing {
            Standing::Open => Some(amount),
            Standing::Reversed {
                amount: reversed,
                full: false,
            } => Some(amount.saturating_sub(reversed)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credit(confirmation: &str) -> Credit {
        Credit {
            engine: "prepaid".into(),
            min: "2065550100".into(),
            amount: 2500,
            currency: "840".into(),
            confirmation: confirmation.into(),
            processing_code: "280000".into(),
            rrn: "000000000001".into(),
            voucher: None,
        }
    }

    #[test]
    fn records_read_back_as_written_whichever_way_they_are_parsed() {
        let key = TransactionKey("k".into());
        let mut approved =
            Decision::new(key.clone(), "f".into(), "0200".into(), Summary::default());
        approved.credit = Some(credit("100000000009"));
        approved.approval = Some(Approval {
            counter: 7,
            confirmation: "100000000009".into(),
        });
        let mut declined =
            Decision::new(key.clone(), "g".into(), "0200".into(), Summary::default());
        declined.code = ResponseCode::Duplicate;
        let mut reversal =
            Decision::new(key.clone(), "h".into(), "0420".into(), Summary::default());
        reversal.reversal = Some(Reversal {
            original: Some(key),
            reversed: 2500,
            effect: ReversalEffect::Advised(ReversalAdvice {
                credit: credit("100000000009"),
                remaining: 0,
            }),
            early: None,
        });
        let delivery = Delivery {
            engine: "prepaid".into(),
            confirmation: "100000000009".into(),
            mti: "0220".into(),
            link: "127.0.0.1:9583".into(),
            attempt: 2,
            at_ms: 5,
        };
        let records = [
            Record::Decided(Box::new(approved)),
            Record::Decided(Box::new(declined)),
            Record::Decided(Box::new(reversal)),
            Record::CreditSent(delivery.clone()),
            Record::CreditAcked(delivery.clone()),
            Record::AccountsImported { accounts: vec![] },
        ];
        for record in &records {
            let body = record.to_bytes();
            assert!(leading_tag(&body).is_some(), "the tag is written first");
            let general: Record = serde_json::from_slice(&body).expect("general path");
            assert_eq!(&general, record);
            assert_eq!(&Record::from_bytes(&body).expect("fast path"), record);
        }
        // A tag that does not come first still reads, through the general path.
        let reordered = br#"{"engine":"prepaid","confirmation":"100000000009","mti":"0220","link":"127.0.0.1:9583","attempt":2,"at_ms":5,"type":"credit_acked"}"#;
        assert_eq!(
            Record::from_bytes(reordered).expect("reordered"),
            Record::CreditAcked(delivery)
        );
        assert!(Record::from_bytes(br#"{"type":"decided","key":1}"#).is_err());
        assert!(Record::from_bytes(br#"{"type":"decided"#).is_err());
    }

    fn forwardable(record: &Record) -> Forwardable {
        Forwardable::from_bytes(&record.to_bytes()).expect("readable")
    }

    #[test]
    fn the_router_reads_exactly_what_the_record_gives_the_engine() {
        let key = TransactionKey("k".into());
        let mut approved =
            Decision::new(key.clone(), "f".into(), "0200".into(), Summary::default());
        approved.credit = Some(credit("100000000009"));
        let read = forwardable(&Record::Decided(Box::new(approved.clone())));
        assert_eq!(read.credit, Some(credit("100000000009")));
        assert!(read.advice().is_none());

        let mut reversal =
            Decision::new(key.clone(), "f".into(), "0400".into(), Summary::default());
        let advice = ReversalAdvice {
            credit: credit("100000000009"),
            remaining: 0,
        };
        reversal.reversal = Some(Reversal {
            original: Some(key.clone()),
            reversed: 2500,
            effect: ReversalEffect::Advised(advice.clone()),
            early: None,
        });
        let read = forwardable(&Record::Decided(Box::new(reversal.clone())));
        assert_eq!((read.credit.as_ref(), read.advice()), (None, Some(&advice)));

        reversal.reversal = Some(Reversal {
            original: Some(key),
            reversed: 2500,
            effect: ReversalEffect::Released,
            early: None,
        });
        let read = forwardable(&Record::Decided(Box::new(reversal)));
        assert!(read.credit.is_none() && read.advice().is_none());

        let acked = Record::CreditAcked(Delivery {
            engine: "prepaid".into(),
            confirmation: "100000000009".into(),
            mti: "0230".into(),
            link: "127.0.0.1:9583".into(),
            attempt: 1,
            at_ms: 0,
        });
        let read = forwardable(&acked);
        assert!(read.credit.is_none() && read.advice().is_none());
    }
}
