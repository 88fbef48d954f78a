//! The decider: one place, behind one lock, where a transaction is looked up by key,
//! checked, numbered and journaled. Serializing decisions makes the hard cases plain:
//! two copies of one key arriving at once on two connections meet here, and the second
//! sees the first's decision and waits for the same journal record; daily usage and the
//! confirmation counter never race. The lock covers index reads and an in-memory enqueue
//! to the journal, never a disk sync: the caller waits for durability outside it and
//! answers only then.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};

use super::accounts::Account;
use super::classify::{Kind, classify};
use super::codes::{Decline, ResponseCode};
use super::confirmation::ConfirmationNumbers;
use super::key::{TransactionKey, fingerprint};
use super::validate::{self, Facts, Replenishment, Rules, Usage};
use crate::iso8583::{Message, mask_pan};
use crate::journal::{Journal, JournalError};
use crate::record::{Approval, Credit, Decision, Record, Rejection, Summary};
use crate::store::{Store, StoreError, TransactionEntry};

/// How often (in decisions) entries already applied to the index are pruned from memory.
const PRUNE_EVERY: u64 = 4096;

/// The acquirer link a message came in on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The link's config name.
    pub name: String,
    /// The acquirer id used when DE32 is absent.
    pub acquirer_id: String,
}

/// Which engine serves which carrier (`*` serves every carrier not named elsewhere).
#[derive(Debug, Clone, Default)]
pub struct Routes {
    by_carrier: HashMap<String, String>,
    fallback: Option<String>,
}

impl Routes {
    /// Routes from `(engine, carriers)` pairs.
    pub fn new<'a>(engines: impl IntoIterator<Item = (&'a str, &'a [String])>) -> Routes {
        let mut routes = Routes::default();
        for (engine, carriers) in engines {
            for carrier in carriers {
                if carrier == "*" {
                    routes.fallback.get_or_insert_with(|| engine.to_owned());
                } else {
                    routes.by_carrier.insert(carrier.clone(), engine.to_owned());
                }
            }
        }
        routes
    }

    /// The engine serving `carrier`.
    pub fn engine_for(&self, carrier: &str) -> Option<&str> {
        self.by_carrier
            .get(carrier)
            .or(self.fallback.as_ref())
            .map(String::as_str)
    }
}

/// What the caller answers with, once the journal record `seq` is durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// DE39.
    pub code: ResponseCode,
    /// DE62 on approvals.
    pub confirmation: Option<String>,
    /// The journal record to wait for before answering.
    pub seq: u64,
    /// Whether this answers a repeat of an earlier decision (no new effect).
    pub repeat: bool,
}

/// Why the decider could not decide: the message must not be answered (the acquirer
/// times out and reverses, which is safe), and the switch should stop.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SwitchError {
    /// The journal cannot take records.
    #[error("journal: {0}")]
    Journal(#[from] JournalError),
    /// The indexes cannot be read.
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// The decider. Shared by every session (`Arc<Decider>`).
pub struct Decider {
    journal: Journal,
    store: Store,
    rules: Rules,
    routes: Routes,
    numbers: ConfirmationNumbers,
    applied: Arc<AtomicU64>,
    clock: fn() -> DateTime<Utc>,
    state: Mutex<State>,
}

/// What the decider remembers between decisions.
struct State {
    /// Decisions not yet known to be in the index.
    recent: HashMap<TransactionKey, TransactionEntry>,
    /// Approved usage per (account, day) touched since start.
    usage: HashMap<(String, String), Usage>,
    /// The last confirmation counter issued.
    counter: u64,
    decisions: u64,
}

/// Everything a decider is built from.
pub struct Parts {
    /// Where decisions are made durable.
    pub journal: Journal,
    /// The indexes.
    pub store: Store,
    /// The limits.
    pub rules: Rules,
    /// Carrier to engine.
    pub routes: Routes,
    /// Keyed confirmation number generator.
    pub numbers: ConfirmationNumbers,
    /// The last journal position the indexer applied.
    pub applied: Arc<AtomicU64>,
    /// The clock (UTC); tests pass a fixed one.
    pub clock: fn() -> DateTime<Utc>,
}

impl Decider {
    /// A decider continuing from what the index holds (replay must be complete).
    pub fn new(parts: Parts) -> Result<Decider, SwitchError> {
        let counter = parts.store.last_counter()?;
        Ok(Decider {
            journal: parts.journal,
            store: parts.store,
            rules: parts.rules,
            routes: parts.routes,
            numbers: parts.numbers,
            applied: parts.applied,
            clock: parts.clock,
            state: Mutex::new(State {
                recent: HashMap::new(),
                usage: HashMap::new(),
                counter,
                decisions: 0,
            }),
        })
    }

    /// The journal decisions are written to (callers wait on it before answering).
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// Decides a request or advice that passed decoding.
    pub fn decide(&self, message: &Message, link: &Link) -> Result<Outcome, SwitchError> {
        match classify(message) {
            Kind::Financial => self.decide_keyed(message, link),
            _ => self.reject(
                Some(message),
                link,
                ResponseCode::InvalidTransaction,
                "message type not supported",
            ),
        }
    }

    /// Journals an answer that is not a keyed decision (`30`, `12`, `94`, ...).
    pub fn reject(
        &self,
        message: Option<&Message>,
        link: &Link,
        code: ResponseCode,
        reason: &str,
    ) -> Result<Outcome, SwitchError> {
        let rejection = Rejection {
            mti: message.map(|m| m.mti().to_string()).unwrap_or_default(),
            at_ms: (self.clock)().timestamp_millis(),
            code,
            reason: reason.to_owned(),
            key: message.map(|m| TransactionKey::of(m, &link.acquirer_id)),
            summary: message.map(|m| summarize(m, link)).unwrap_or_default(),
        };
        let seq = self
            .journal
            .append(&Record::Rejected(Box::new(rejection)).to_bytes())?;
        Ok(Outcome {
            code,
            confirmation: None,
            seq,
            repeat: false,
        })
    }

    fn decide_keyed(&self, message: &Message, link: &Link) -> Result<Outcome, SwitchError> {
        let key = TransactionKey::of(message, &link.acquirer_id);
        let print = fingerprint(message);
        let mut state = self.lock();
        if let Some(earlier) = self.earlier(&state, &key)? {
            drop(state);
            return self.repeat(message, link, earlier, &print);
        }
        let now = (self.clock)();
        let day = now.format("%Y-%m-%d").to_string();
        let mut decision = Decision {
            key: key.clone(),
            fingerprint: print,
            mti: message.mti().to_string(),
            at_ms: now.timestamp_millis(),
            day: day.clone(),
            code: ResponseCode::Approved,
            decline: None,
            summary: summarize(message, link),
            account: None,
            approval: None,
            credit: None,
        };
        match self.evaluate(&mut state, message, &day, now) {
            Ok((request, account, engine)) => {
                self.approve(&mut state, &mut decision, &request, &account, engine, &day)
            }
            Err(Evaluation::Declined(decline, account)) => {
                decision.code = decline.code();
                decision.decline = Some(decline);
                decision.account = account;
            }
            Err(Evaluation::Failed(e)) => return Err(e),
        }
        let seq = self
            .journal
            .append(&Record::Decided(Box::new(decision.clone())).to_bytes())?;
        state
            .recent
            .insert(key, TransactionEntry::of(seq, &decision));
        self.prune(&mut state);
        Ok(Outcome {
            code: decision.code,
            confirmation: decision.approval.map(|a| a.confirmation),
            seq,
            repeat: false,
        })
    }

    /// The earlier decision of `key`, from memory or the index.
    fn earlier(
        &self,
        state: &State,
        key: &TransactionKey,
    ) -> Result<Option<TransactionEntry>, SwitchError> {
        match state.recent.get(key) {
            Some(entry) => Ok(Some(entry.clone())),
            None => Ok(self.store.transaction(key)?),
        }
    }

    /// A second message with a known key: the same answer, or `94` for other content.
    fn repeat(
        &self,
        message: &Message,
        link: &Link,
        earlier: TransactionEntry,
        print: &str,
    ) -> Result<Outcome, SwitchError> {
        if earlier.fingerprint != print {
            return self.reject(
                Some(message),
                link,
                ResponseCode::Duplicate,
                "key reused with other content",
            );
        }
        Ok(Outcome {
            code: earlier.code,
            confirmation: earlier.confirmation,
            seq: earlier.seq,
            repeat: true,
        })
    }

    /// Runs the rules; on success returns the request, its account and its engine.
    fn evaluate(
        &self,
        state: &mut State,
        message: &Message,
        day: &str,
        now: DateTime<Utc>,
    ) -> Result<(Replenishment, Account, String), Evaluation> {
        let request = validate::read_request(message, &self.rules)
            .map_err(|d| Evaluation::Declined(d, None))?;
        let account = self
            .store
            .account(&request.account)
            .map_err(Evaluation::store)?;
        let location = self
            .store
            .location(&request.location)
            .map_err(Evaluation::store)?;
        let usage = self
            .usage(state, &request.account, day)
            .map_err(Evaluation::store)?;
        let engine = account
            .as_ref()
            .and_then(|a| self.routes.engine_for(&a.carrier));
        let facts = Facts {
            account: account.as_ref(),
            location: location.as_ref(),
            usage,
            today: now.date_naive(),
            routed: engine.is_some(),
        };
        let declined = |d| Evaluation::Declined(d, Some(request.account.clone()));
        validate::check(&request, &facts, &self.rules).map_err(declined)?;
        match (account, engine) {
            (Some(account), Some(engine)) => Ok((request.clone(), account, engine.to_owned())),
            _ => Err(declined(Decline::UnknownAccount)),
        }
    }

    fn approve(
        &self,
        state: &mut State,
        decision: &mut Decision,
        request: &Replenishment,
        account: &Account,
        engine: String,
        day: &str,
    ) {
        state.counter += 1;
        let confirmation = self.numbers.number(state.counter);
        let usage = state
            .usage
            .entry((request.account.clone(), day.to_owned()))
            .or_default();
        usage.count += 1;
        usage.amount += request.amount;
        decision.account = Some(request.account.clone());
        decision.credit = Some(Credit {
            engine,
            min: account.min.clone(),
            amount: request.amount,
            currency: request.currency.clone(),
            confirmation: confirmation.clone(),
            processing_code: decision.summary.processing_code.clone(),
            rrn: decision.summary.rrn.clone(),
        });
        decision.approval = Some(Approval {
            counter: state.counter,
            confirmation,
        });
    }

    /// Today's usage of an account: memory first, else the index (complete after replay).
    fn usage(&self, state: &mut State, account: &str, day: &str) -> Result<Usage, StoreError> {
        let slot = (account.to_owned(), day.to_owned());
        if let Some(usage) = state.usage.get(&slot) {
            return Ok(*usage);
        }
        let usage = self.store.usage(account, day)?;
        state.usage.insert(slot, usage);
        Ok(usage)
    }

    /// Drops remembered decisions the index already holds, and usage of past days.
    fn prune(&self, state: &mut State) {
        state.decisions += 1;
        if state.decisions % PRUNE_EVERY != 0 {
            return;
        }
        let applied = self.applied.load(Ordering::Acquire);
        state.recent.retain(|_, entry| entry.seq > applied);
        let today = (self.clock)().format("%Y-%m-%d").to_string();
        state.usage.retain(|(_, day), _| *day >= today);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave State half-updated in a way that
        // matters more than stopping: recover the guard and go on.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The outcome of the rules.
enum Evaluation {
    /// Declined, with the account when the request named a valid one.
    Declined(Decline, Option<String>),
    /// The index failed.
    Failed(SwitchError),
}

impl Evaluation {
    fn store(e: StoreError) -> Evaluation {
        Evaluation::Failed(SwitchError::Store(e))
    }
}

/// The masked summary of a request the exception log shows.
pub fn summarize(message: &Message, link: &Link) -> Summary {
    let text = |n| message.text(n).map(str::trim).unwrap_or("").to_owned();
    let masked = |n| message.get(n).map(|v| mask_pan(v)).unwrap_or_default();
    Summary {
        pan: masked(2),
        account_2: masked(103),
        processing_code: text(3),
        amount: text(4),
        currency: text(49),
        stan: text(11),
        rrn: text(37),
        terminal: text(41),
        location: text(42),
        acquirer: message
            .text(32)
            .map_or(link.acquirer_id.clone(), |s| s.trim().to_owned()),
        link: link.name.clone(),
    }
}
