//! The decider: one place, behind one lock, where a transaction is looked up by key,
//! checked, numbered and journaled. Serializing decisions makes the hard cases plain:
//! two copies of one key arriving at once on two connections meet here, and the second
//! sees the first's decision and waits for the same journal record; daily usage, holds,
//! reversals and the confirmation counter never race. The lock covers index reads and
//! an in-memory enqueue to the journal, never a disk sync: the caller waits for
//! durability outside it and answers only then. This file holds the common path and
//! requests (`0200`, `0100`); advices and holds are in [`super::advise`], reversals in
//! [`super::reverse`].

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::advise::owe;
use super::classify::{Kind, classify};
use super::days::OpenDay;
use super::validate::{self, Facts, Replenishment, Rules};
use crate::durable::datadir::DataError;
use crate::durable::journal::{Journal, JournalError};
use crate::durable::record::{
    Approval, Credit, Decision, Early, EarlyUsed, Hold, Notification, Record, Rejection,
    ReversalEffect, Standing, Summary, TransactionEntry, UsageChange, Voucher,
};
use crate::durable::store::{MAX_PER_REFERENCE, PinState, Store, StoreError, reference_id};
use crate::engine::unsent::Unsent;
use crate::pins::catalog::Catalog;
use crate::pins::shelf::{Available, Shelf};
use crate::vocab::accounts::{Account, Usage};
use crate::vocab::calendar::Calendar;
use crate::vocab::codes::{Decline, ResponseCode};
use crate::vocab::confirmation::ConfirmationNumbers;
use crate::vocab::key::{TransactionKey, acquirer_of, fingerprint};
use crate::wire::iso8583::{Message, mask_pan};

/// How often (in decisions) usage of past days is dropped from memory.
const PRUNE_DAYS_EVERY: u64 = 4096;

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
    /// The PIN of an approved sale (sealed): its answer carries it in DE63.
    pub voucher: Option<Box<Voucher>>,
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
    /// The data directory (its confirmation number key).
    #[error("{0}")]
    Data(#[from] DataError),
    /// The PIN key (`[pins] key_file`).
    #[error("PIN key: {0}")]
    Vault(#[from] crate::durable::vault::VaultError),
}

/// The decider. Shared by every session (`Arc<Decider>`).
pub struct Decider {
    pub(super) journal: Journal,
    pub(super) store: Store,
    pub(super) rules: Rules,
    pub(super) routes: Routes,
    pub(super) numbers: ConfirmationNumbers,
    pub(super) applied: Arc<AtomicU64>,
    pub(super) clock: fn() -> DateTime<Utc>,
    pub(super) unsent: Unsent,
    pub(super) policy: Policy,
    pub(super) calendar: Calendar,
    pub(super) catalog: Catalog,
    state: Mutex<State>,
}

/// What the decider remembers between decisions.
///
/// (`open` is the business day decisions belong to now, see [`super::days`].)
///
/// The tables that grow with the traffic are B-trees, not hash tables: a hash table
/// grows by rehashing everything at once, and under the decider's lock that stalled
/// every session (about 30 ms at 28,000 entries here, more as it grows); a B-tree grows
/// a node at a time.
#[derive(Default)]
pub(super) struct State {
    /// The open business day.
    pub(super) open: OpenDay,
    /// Entries written since the index last caught up, with the journal position that
    /// last wrote each (decisions, and earlier transactions they changed).
    recent: BTreeMap<TransactionKey, (u64, TransactionEntry)>,
    /// The keys of `recent` in the order they were written, with that position: what
    /// the index has caught up with is dropped from the front, a little per decision.
    recent_order: VecDeque<(u64, TransactionKey)>,
    /// Retrieval references (acquirer, DE41, DE37) of approvals and queued advices not
    /// yet indexed.
    references: BTreeMap<String, Vec<(u64, TransactionKey)>>,
    /// The references of `references` in the order they were written.
    reference_order: VecDeque<(u64, String)>,
    /// Approved usage per (account, day) touched since start.
    usage: BTreeMap<(String, String), Usage>,
    /// Authorizations whose hold is open.
    pub(super) holds: BTreeMap<TransactionKey, TransactionEntry>,
    /// Reversals without an original, by retrieval reference, with their keys.
    early: HashMap<String, Vec<(TransactionKey, Early)>>,
    /// The last confirmation counter issued.
    counter: u64,
    /// The PINs in stock of the bucket products.
    pub(super) shelf: Shelf,
    decisions: u64,
}

impl State {
    /// Drops what the index holds now that it has applied the journal up to
    /// `applied`: only from the front of the write order, so the work is what the index
    /// caught up with since the last call.
    fn forget_applied(&mut self, applied: u64) {
        while let Some((seq, _)) = self.recent_order.front()
            && *seq <= applied
        {
            let Some((_, key)) = self.recent_order.pop_front() else {
                break;
            };
            if self
                .recent
                .get(&key)
                .is_some_and(|(last, _)| *last <= applied)
            {
                self.recent.remove(&key);
            }
        }
        while let Some((seq, _)) = self.reference_order.front()
            && *seq <= applied
        {
            let Some((_, reference)) = self.reference_order.pop_front() else {
                break;
            };
            if let Some(list) = self.references.get_mut(&reference) {
                list.retain(|(seq, _)| *seq > applied);
                if list.is_empty() {
                    self.references.remove(&reference);
                }
            }
        }
    }
}

/// The reversal and hold settings of `[switch]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// The answer to a reversal without an original (`00` or `25`).
    pub orphan_reversal: ResponseCode,
    /// How long an authorization's hold lasts.
    pub hold_expiry: Duration,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            orphan_reversal: ResponseCode::Approved,
            hold_expiry: Duration::from_secs(30 * 60),
        }
    }
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
    /// Credits not yet sent, shared with the forwarders.
    pub unsent: Unsent,
    /// Reversal and hold settings.
    pub policy: Policy,
    /// Business days (`[settlement]`).
    pub calendar: Calendar,
    /// The PIN products (`[[product]]`), none on a switch that sells no PINs.
    pub catalog: Catalog,
}

/// A decision being made: the record and the time it is made at.
pub(super) struct Draft {
    pub(super) decision: Decision,
    pub(super) now: DateTime<Utc>,
    /// An email to queue with the decision (a PIN product's low-stock alert).
    pub(super) alert: Option<Notification>,
}

impl Decider {
    /// A decider continuing from what the index holds (replay must be complete).
    pub fn new(parts: Parts) -> Result<Decider, SwitchError> {
        let counter = parts.store.last_counter()?;
        let open = OpenDay::restore(&parts.store, &parts.calendar, (parts.clock)())?;
        let holds = parts.store.holds()?.into_iter().collect();
        let shelf = Shelf::load(&parts.store, parts.catalog.products())?;
        let mut early: HashMap<String, Vec<(TransactionKey, Early)>> = HashMap::new();
        for (key, remembered) in parts.store.early_reversals()? {
            (early.entry(remembered.reference.clone()).or_default()).push((key, remembered));
        }
        Ok(Decider {
            journal: parts.journal,
            store: parts.store,
            rules: parts.rules,
            routes: parts.routes,
            numbers: parts.numbers,
            applied: parts.applied,
            clock: parts.clock,
            unsent: parts.unsent,
            policy: parts.policy,
            calendar: parts.calendar,
            catalog: parts.catalog,
            state: Mutex::new(State {
                open,
                holds,
                early,
                counter,
                shelf,
                ..State::default()
            }),
        })
    }

    /// The journal decisions are written to (callers wait on it before answering).
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// The rules requests are checked against.
    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// The engine serving `carrier`, if any.
    pub fn engine_for(&self, carrier: &str) -> Option<&str> {
        self.routes.engine_for(carrier)
    }

    /// The indexes.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The PIN products and their vault.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Shows each product's stock in `available` from now on.
    pub fn watch_stock(&self, available: &Available) {
        self.lock().shelf.watch(available);
    }

    /// PINs of `sku` in stock now.
    pub fn available(&self, sku: &str) -> u64 {
        self.lock().shelf.available(sku)
    }

    /// The confirmation numbers of this data directory.
    pub fn numbers(&self) -> &ConfirmationNumbers {
        &self.numbers
    }

    /// Decides a request or advice that passed decoding.
    pub fn decide(&self, message: &Message, link: &Link) -> Result<Outcome, SwitchError> {
        match classify(message) {
            kind @ (Kind::Financial
            | Kind::Authorization
            | Kind::FinancialAdvice
            | Kind::AuthorizationAdvice
            | Kind::Reversal) => self.decide_keyed(message, link, kind),
            _ => self.reject(
                Some(message),
                link,
                ResponseCode::InvalidTransaction,
                "message type not supported",
            ),
        }
    }

    /// Checks a `0200` against every rule of a replenishment (the seed's step 303)
    /// without deciding it: nothing is journaled or counted. A channel asks this before
    /// it debits the subscriber's bank; the decision itself comes after the bank's `00`
    /// through [`Decider::decide`], which checks again.
    pub fn precheck(&self, message: &Message) -> Result<Option<Decline>, SwitchError> {
        let prefetched = match self.prefetch(message) {
            Ok(prefetched) => prefetched,
            Err(Evaluation::Declined(decline, _)) => return Ok(Some(decline)),
            Err(Evaluation::Failed(e)) => return Err(e),
        };
        let now = (self.clock)();
        let mut state = self.lock();
        match self.evaluate(&mut state, prefetched, &day_of(now), now) {
            Ok(_) => Ok(None),
            Err(Evaluation::Declined(decline, _)) => Ok(Some(decline)),
            Err(Evaluation::Failed(e)) => Err(e),
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
            voucher: None,
        })
    }

    fn decide_keyed(
        &self,
        message: &Message,
        link: &Link,
        kind: Kind,
    ) -> Result<Outcome, SwitchError> {
        let key = TransactionKey::of(message, &link.acquirer_id);
        let print = fingerprint(message);
        // Reference data changes only offline (imports need the data directory), so a
        // request's account and location are read before taking the lock.
        let sale = kind == Kind::Financial && self.is_sale(message);
        let prefetched = match kind {
            Kind::Financial | Kind::Authorization if !sale => Some(self.prefetch(message)),
            _ => None,
        };
        let location = sale.then(|| self.sale_location(message));
        let mut state = self.lock();
        let mut draft = self.draft(message, link, key.clone(), print.clone());
        draft.decision.business_day = self.business_day(&mut state, draft.now)?;
        let advice = matches!(kind, Kind::FinancialAdvice | Kind::AuthorizationAdvice);
        match self.earlier(&state, &key)? {
            None if kind != Kind::Reversal => {
                if let Some(used) = early_reversal(&state, message, link) {
                    draft.decline(Decline::ReversedBeforeArrival, None);
                    if advice {
                        draft.decision.code = ResponseCode::Approved;
                    }
                    draft.decision.late_for = Some(used);
                    return self.commit(&mut state, draft);
                }
            }
            None => {}
            Some(earlier) if earlier.standing == Standing::ReversedBeforeArrival => {
                draft.decline(Decline::ReversedBeforeArrival, None);
                draft.decision.late_for = early_reversal(&state, message, link);
                if advice {
                    // An advice is acknowledged all the same; nothing is credited.
                    draft.decision.code = ResponseCode::Approved;
                }
                return self.commit(&mut state, draft);
            }
            // The bank approved in stand-in what the switch had declined: decided
            // afresh, as an advice.
            Some(earlier)
                if advice && earlier.is_declined_request() && earlier.fingerprint == print => {}
            Some(earlier) if earlier.fingerprint == print => return Ok(repeated(earlier)),
            // A fully reversed transaction's key may carry its correction (the seed's
            // "same transaction identification"): decided afresh.
            Some(earlier) if matches!(earlier.standing, Standing::Reversed { full: true, .. }) => {}
            // An advice is never refused: one that reuses a key with other content is
            // kept apart, acknowledged and queued for review.
            Some(_) if advice => {
                let apart = key.apart(&print);
                if let Some(earlier) = self.earlier(&state, &apart)? {
                    return Ok(repeated(earlier));
                }
                draft.decision.key = apart;
                owe(message, &mut draft, "key reused with other content".into());
                return self.commit(&mut state, draft);
            }
            Some(_) => {
                drop(state);
                return self.reject(
                    Some(message),
                    link,
                    ResponseCode::Duplicate,
                    "key reused with other content",
                );
            }
        }
        match (kind, location) {
            (Kind::Financial, Some(location)) => {
                self.sell(&mut state, message, location, &mut draft)?;
            }
            (Kind::Financial | Kind::Authorization, _) => {
                let prefetched = prefetched.unwrap_or_else(|| self.prefetch(message));
                self.request(&mut state, prefetched, &mut draft, kind)?
            }
            (Kind::FinancialAdvice, _) => self.advice(&mut state, message, link, &mut draft)?,
            (Kind::AuthorizationAdvice, _) => {
                self.authorization_advice(&mut state, message, &mut draft)?
            }
            _ => self.reverse(&mut state, message, link, &mut draft)?,
        }
        self.commit(&mut state, draft)
    }

    fn draft(&self, message: &Message, link: &Link, key: TransactionKey, print: String) -> Draft {
        let now = (self.clock)();
        let mut decision = Decision::new(
            key,
            print,
            message.mti().to_string(),
            summarize(message, link),
        );
        decision.at_ms = now.timestamp_millis();
        decision.day = day_of(now);
        Draft {
            decision,
            now,
            alert: None,
        }
    }

    /// Journals a decision and remembers what it changed until the index has it.
    pub(super) fn commit(&self, state: &mut State, draft: Draft) -> Result<Outcome, SwitchError> {
        let decision = draft.decision;
        if let Some(credit) = &decision.credit {
            self.unsent.insert(&credit.confirmation);
        }
        let seq = self
            .journal
            .append(&Record::Decided(Box::new(decision.clone())).to_bytes())?;
        if let Some(alert) = draft.alert {
            self.journal
                .append(&Record::NotificationQueued(Box::new(alert)).to_bytes())?;
        }
        if let Some(back) = decision
            .pin
            .as_ref()
            .filter(|m| m.to == PinState::Available)
        {
            state.shelf.put_back(&back.sku, &back.serial);
        }
        let entry = TransactionEntry::of(seq, &decision);
        if decision.hold.is_some() {
            state.holds.insert(decision.key.clone(), entry.clone());
        } else {
            state.holds.remove(&decision.key);
        }
        if let Some(ReversalEffect::Cancelled { confirmation, .. }) =
            decision.reversal.as_ref().map(|r| &r.effect)
        {
            self.unsent.journaled(confirmation, seq);
        }
        if let Some(early) = decision.reversal.as_ref().and_then(|r| r.early.as_ref()) {
            let remembered = (decision.key.clone(), early.clone());
            (state.early.entry(early.reference.clone()).or_default()).push(remembered);
        }
        if let Some(used) = &decision.late_for {
            if let Some(list) = state.early.get_mut(&used.reference) {
                list.retain(|(k, _)| *k != used.reversal);
                if list.is_empty() {
                    state.early.remove(&used.reference);
                }
            }
        }
        if let Some(touched) = &decision.touches {
            self.remember_touched(state, seq, &touched.key, &touched.entry);
        }
        if let Some(change) = &decision.usage {
            self.change_usage(state, change)?;
        }
        if decision.is_referenced() {
            let summary = &decision.summary;
            let reference = reference_id(&summary.acquirer, &summary.terminal, &summary.rrn);
            let list = state.references.entry(reference.clone()).or_default();
            list.push((seq, decision.key.clone()));
            let excess = list.len().saturating_sub(MAX_PER_REFERENCE);
            list.drain(..excess);
            state.reference_order.push_back((seq, reference));
        }
        remember(state, seq, &decision.key, entry);
        self.prune(state);
        Ok(Outcome {
            code: decision.code,
            confirmation: decision.approval.map(|a| a.confirmation),
            seq,
            repeat: false,
            voucher: decision.credit.and_then(|c| c.voucher),
        })
    }

    /// Remembers an earlier transaction's changed entry (and whether it still holds).
    pub(super) fn remember_touched(
        &self,
        state: &mut State,
        seq: u64,
        key: &TransactionKey,
        entry: &TransactionEntry,
    ) {
        match entry.held() {
            Some(_) => state.holds.insert(key.clone(), entry.clone()),
            None => state.holds.remove(key),
        };
        remember(state, seq, key, entry.clone());
    }

    /// The earlier decision of `key`, from memory or the index.
    pub(super) fn earlier(
        &self,
        state: &State,
        key: &TransactionKey,
    ) -> Result<Option<TransactionEntry>, SwitchError> {
        match state.recent.get(key) {
            Some((_, entry)) => Ok(Some(entry.clone())),
            None => Ok(self.store.transaction(key)?),
        }
    }

    /// Approved transactions with a retrieval reference, from memory and the index.
    pub(super) fn referenced(
        &self,
        state: &State,
        reference: &str,
    ) -> Result<Vec<TransactionKey>, SwitchError> {
        let mut keys = self.store.by_reference(reference)?;
        for (_, key) in state.references.get(reference).into_iter().flatten() {
            if !keys.contains(key) {
                keys.push(key.clone());
            }
        }
        Ok(keys)
    }

    /// What a request's rules need from the indexes, read without the lock.
    fn prefetch(&self, message: &Message) -> Result<Prefetched, Evaluation> {
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
        Ok(Prefetched {
            request,
            account,
            location,
        })
    }

    /// A `0200` (credit now) or `0100` (hold): every rule applies.
    fn request(
        &self,
        state: &mut State,
        prefetched: Result<Prefetched, Evaluation>,
        draft: &mut Draft,
        kind: Kind,
    ) -> Result<(), SwitchError> {
        let day = draft.decision.day.clone();
        match prefetched.and_then(|p| self.evaluate(state, p, &day, draft.now)) {
            Ok((request, account, engine)) => {
                let credit = self.approve(state, &mut draft.decision, &request, &account, engine);
                if kind == Kind::Authorization {
                    draft.hold(credit, self.policy.hold_expiry);
                } else {
                    draft.decision.credit = Some(credit);
                }
                Ok(())
            }
            Err(Evaluation::Declined(decline, account)) => {
                draft.decline(decline, account);
                Ok(())
            }
            Err(Evaluation::Failed(e)) => Err(e),
        }
    }

    /// Runs the rules; on success returns the request, its account and its engine.
    fn evaluate(
        &self,
        state: &mut State,
        prefetched: Prefetched,
        day: &str,
        now: DateTime<Utc>,
    ) -> Result<(Replenishment, Account, String), Evaluation> {
        let Prefetched {
            request,
            account,
            location,
        } = prefetched;
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
            (Some(account), Some(engine)) => {
                let engine = engine.to_owned();
                Ok((request, account, engine))
            }
            _ => Err(declined(Decline::UnknownAccount)),
        }
    }

    /// Numbers an approval and returns the credit it makes (or holds).
    pub(super) fn approve(
        &self,
        state: &mut State,
        decision: &mut Decision,
        request: &Replenishment,
        account: &Account,
        engine: String,
    ) -> Credit {
        let approval = self.number(state);
        decision.account = Some(request.account.clone());
        decision.usage = Some(UsageChange {
            account: request.account.clone(),
            day: decision.day.clone(),
            count: 1,
            amount: i64::try_from(request.amount).unwrap_or(i64::MAX),
        });
        let credit = Credit {
            engine,
            min: account.min.clone(),
            amount: request.amount,
            currency: request.currency.clone(),
            confirmation: approval.confirmation.clone(),
            processing_code: decision.summary.processing_code.clone(),
            rrn: decision.summary.rrn.clone(),
            voucher: None,
        };
        decision.approval = Some(approval);
        credit
    }

    /// The next confirmation number.
    pub(super) fn number(&self, state: &mut State) -> Approval {
        state.counter += 1;
        Approval {
            counter: state.counter,
            confirmation: self.numbers.number(state.counter),
        }
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

    /// Applies a usage change to memory (the index applies the same from the record).
    pub(super) fn change_usage(
        &self,
        state: &mut State,
        change: &UsageChange,
    ) -> Result<(), StoreError> {
        let current = self.usage(state, &change.account, &change.day)?;
        let slot = (change.account.clone(), change.day.clone());
        state
            .usage
            .insert(slot, current.adjusted(change.count, change.amount));
        Ok(())
    }

    /// Drops remembered entries the index already holds (each decision drops what the
    /// index caught up with since the last one, so no call does much), and now and then
    /// usage of past days.
    fn prune(&self, state: &mut State) {
        state.forget_applied(self.applied.load(Ordering::Acquire));
        state.decisions += 1;
        if state.decisions % PRUNE_DAYS_EVERY == 0 {
            let today = day_of((self.clock)());
            state.usage.retain(|(_, day), _| *day >= today);
        }
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave State half-updated in a way that
        // matters more than stopping: recover the guard and go on.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Draft {
    /// Marks the decision declined.
    pub(super) fn decline(&mut self, decline: Decline, account: Option<String>) {
        self.decision.code = decline.code();
        self.decision.decline = Some(decline);
        self.decision.account = account;
    }

    /// Makes an approved credit an authorization's hold.
    pub(super) fn hold(&mut self, credit: Credit, expiry: Duration) {
        let expires = self.now + chrono::Duration::from_std(expiry).unwrap_or_default();
        self.decision.hold = Some(Hold {
            expires_ms: expires.timestamp_millis(),
            credit,
        });
    }
}

/// A reversal remembered by reference that `message` is the late original of: same
/// reference (acquirer, DE41, DE37), account and amount.
fn early_reversal(state: &State, message: &Message, link: &Link) -> Option<EarlyUsed> {
    // Nearly always empty: no reference is built for the common request.
    if state.early.is_empty() {
        return None;
    }
    let rrn = message.text(37).map(str::trim).filter(|r| !r.is_empty())?;
    let terminal = message.text(41).map(str::trim).unwrap_or("");
    let reference = reference_id(acquirer_of(message, &link.acquirer_id), terminal, rrn);
    let account = validate::account_of(message);
    let amount = validate::amount_of(message)?;
    let (reversal, _) = state
        .early
        .get(&reference)?
        .iter()
        .find(|(_, e)| e.account == account && e.amount == amount)?;
    Some(EarlyUsed {
        reference,
        reversal: reversal.clone(),
    })
}

/// The answer to a repeat: the earlier decision's, with no new effect.
/// Remembers `key`'s entry as written at journal position `seq`, until the index has it.
fn remember(state: &mut State, seq: u64, key: &TransactionKey, entry: TransactionEntry) {
    state.recent.insert(key.clone(), (seq, entry));
    state.recent_order.push_back((seq, key.clone()));
}

fn repeated(earlier: TransactionEntry) -> Outcome {
    let approved = earlier.code == ResponseCode::Approved;
    Outcome {
        code: earlier.code,
        confirmation: earlier.confirmation,
        seq: earlier.seq,
        repeat: true,
        voucher: earlier.credit.and_then(|c| c.voucher).filter(|_| approved),
    }
}

/// The UTC day of `at`, `YYYY-MM-DD`.
pub(super) fn day_of(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d").to_string()
}

/// A request's form checked, and its account and location as the indexes hold them.
struct Prefetched {
    request: Replenishment,
    account: Option<Account>,
    location: Option<crate::vocab::accounts::Location>,
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
    let masked = |n| message.get(n).map(mask_pan).unwrap_or_default();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u64) -> TransactionKey {
        TransactionKey(format!("key-{n}"))
    }

    fn entry(seq: u64) -> TransactionEntry {
        TransactionEntry::reversed_before_arrival(seq)
    }

    fn remembered(state: &State) -> Vec<(TransactionKey, u64)> {
        state
            .recent
            .iter()
            .map(|(k, (seq, _))| (k.clone(), *seq))
            .collect()
    }

    #[test]
    fn the_index_catching_up_forgets_only_what_it_holds() {
        let mut state = State::default();
        for seq in 1..=5 {
            remember(&mut state, seq, &key(seq), entry(seq));
        }
        // Transaction 2 changed again by a later decision (say, its reversal).
        remember(&mut state, 6, &key(2), entry(6));
        let reference = "acquirer/terminal/rrn".to_owned();
        state
            .references
            .insert(reference.clone(), vec![(3, key(3)), (6, key(2))]);
        state
            .reference_order
            .extend([(3, reference.clone()), (6, reference.clone())]);

        state.forget_applied(3);
        assert_eq!(
            remembered(&state),
            vec![(key(2), 6), (key(4), 4), (key(5), 5)]
        );
        assert_eq!(state.references[&reference], vec![(6, key(2))]);

        state.forget_applied(5);
        assert_eq!(remembered(&state), vec![(key(2), 6)]);

        state.forget_applied(6);
        assert!(state.recent.is_empty() && state.recent_order.is_empty());
        assert!(state.references.is_empty() && state.reference_order.is_empty());
    }
}
