//! The indexes over the journal, in sled (the only module that imports it): transactions
//! by key, confirmation numbers, accounts, locations, per-account daily usage, the outbox
//! of credits per engine, and the last journal position applied. sled is not the
//! durability barrier (its flush does not reach stable storage); the journal is. Every
//! change here comes from a journal record, applied in one atomic batch together with
//! the record's position, so replaying the journal after a crash applies each record
//! exactly once and the indexes can always be rebuilt from the journal.

mod books;
mod people;
mod pins;

pub use books::{BreakItem, ClosedDay, NotificationItem, OpenDay};
pub use pins::{PinItem, PinState, Stock};

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::durable::record::{
    Credit, Decision, Delivery, Early, Expiry, Owed, Record, Resubmission, ReversalAdvice,
    ReversalEffect, Standing, Touched, TransactionEntry, UsageChange,
};
use crate::vocab::accounts::Usage;
use crate::vocab::accounts::{Account, Location};
use crate::vocab::confirmation::{ConfirmationNumbers, SPACE};
use crate::vocab::key::TransactionKey;

const APPLIED: &[u8] = b"m/applied";
const COUNTER: &[u8] = b"m/counter";

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Another process (a running `replenish serve`) holds the data directory.
    #[error("{path}: in use by another replenish process")]
    InUse {
        /// The index directory.
        path: String,
    },
    /// sled failed.
    #[error("index: {0}")]
    Sled(#[from] sled::Error),
    /// A stored value does not parse: the index is damaged (rebuild it from the journal).
    #[error("index entry {key}: {reason}")]
    Damaged {
        /// The entry.
        key: String,
        /// The parse error.
        reason: String,
    },
}

/// An item of the exception queue: an advice the switch acknowledged but could not
/// credit, kept until an operator resubmits it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueItem {
    /// The journal sequence number of the decision that queued it.
    pub id: u64,
    /// When it was queued, milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// The advice's transaction key.
    pub key: TransactionKey,
    /// The request MTI.
    pub mti: String,
    /// The credit owed.
    pub owed: Owed,
    /// Set once resubmitted.
    pub resolved: Option<Resolution>,
    /// Set when the acquirer reversed the advice: nothing is owed any more.
    #[serde(default)]
    pub reversed: bool,
}

/// How a queue item was resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolution {
    /// Who resubmitted it.
    pub by: String,
    /// When, milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// The confirmation number it was credited with.
    pub confirmation: String,
}

/// Retries of a held sled lock, 50 ms apart.
const LOCK_RETRIES: u32 = 40;

/// How often sled writes its pages out (milliseconds); bounds the replay after a crash.
const FLUSH_EVERY_MS: u64 = 10_000;

/// The sled indexes of one data directory.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    /// The usage slots of the latest days, as last written: the indexer counts a usage
    /// change without reading its slot back from sled.
    usage: Arc<Mutex<UsageCache>>,
}

/// Usage slots of the [`CACHED_DAYS`] latest days, by key.
#[derive(Default)]
struct UsageCache {
    days: BTreeMap<String, HashMap<Vec<u8>, UsageSlot>>,
}

/// Days of usage slots kept in memory (today and yesterday, for records around
/// midnight).
const CACHED_DAYS: usize = 2;

impl UsageCache {
    fn get(&self, day: &str, k: &[u8]) -> Option<UsageSlot> {
        self.days.get(day)?.get(k).cloned()
    }

    fn remember(&mut self, slots: HashMap<Vec<u8>, (String, UsageSlot)>) {
        for (k, (day, slot)) in slots {
            self.days.entry(day).or_default().insert(k, slot);
        }
        while self.days.len() > CACHED_DAYS {
            self.days.pop_first();
        }
    }
}

impl Store {
    /// Opens (creating) the indexes in `dir`.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        // sled releases its lock only when its last background thread has let go of
        // the database, a moment after the previous owner closed it (a restart, an
        // import just before `serve`): a lock that is still held is retried briefly.
        let mut attempts = 0;
        loop {
            match Store::open_once(dir) {
                Err(StoreError::InUse { .. }) if attempts < LOCK_RETRIES => {
                    attempts += 1;
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Ok(store) => {
                    store.index_outbox()?;
                    return Ok(store);
                }
                other => return other,
            }
        }
    }

    fn open_once(dir: &Path) -> Result<Store, StoreError> {
        // The journal, not sled, makes decisions durable (DESIGN.md §5): sled may lose a
        // suffix in a crash and the replay on start restores it, so it flushes lazily.
        // Its flush is an fsync of a large write, and on ext4 a concurrent `fdatasync`
        // of the journal waits behind it: rare flushes keep ack latency low.
        let db = sled::Config::new()
            .path(dir)
            .mode(sled::Mode::HighThroughput)
            .flush_every_ms(Some(FLUSH_EVERY_MS))
            .open()
            .map_err(|e| match e {
                sled::Error::Io(ref io) if io.kind() == std::io::ErrorKind::WouldBlock => {
                    StoreError::InUse {
                        path: dir.display().to_string(),
                    }
                }
                sled::Error::Io(ref io) if io.to_string().contains("lock") => StoreError::InUse {
                    path: dir.display().to_string(),
                },
                other => StoreError::Sled(other),
            })?;
        Ok(Store {
            db,
            usage: Arc::default(),
        })
    }

    /// The account with card number `number`.
    pub fn account(&self, number: &str) -> Result<Option<Account>, StoreError> {
        self.get_json(&key("a/", number))
    }

    /// The location with id `id`.
    pub fn location(&self, id: &str) -> Result<Option<Location>, StoreError> {
        self.get_json(&key("l/", id))
    }

    /// The decided transaction with key `transaction`.
    pub fn transaction(
        &self,
        transaction: &TransactionKey,
    ) -> Result<Option<TransactionEntry>, StoreError> {
        self.get_json(&key("t/", &transaction.0))
    }

    /// The key of the transaction approved with `confirmation`; `numbers` (the data
    /// directory's key) turns it back into its counter, whose page holds the key.
    pub fn by_confirmation(
        &self,
        numbers: &ConfirmationNumbers,
        confirmation: &str,
    ) -> Result<Option<TransactionKey>, StoreError> {
        let Some(counter) = numbers.counter_of(confirmation) else {
            return Ok(None);
        };
        // Pages do not overlap while counters are journaled in the order they are
        // issued (under the decider's lock); a few more are looked at all the same.
        let pages = self
            .db
            .range(CONFIRMATION_PAGES.to_vec()..=page_key(counter))
            .rev()
            .take(PAGES_LOOKED_AT);
        for page in pages {
            let (k, v) = page?;
            let first = k
                .get(CONFIRMATION_PAGES.len()..)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_be_bytes);
            let keys: Vec<TransactionKey> = parse(&k, &v)?;
            let found = first.and_then(|first| keys.get(usize::try_from(counter - first).ok()?));
            if let Some(found) = found {
                return Ok(Some(found.clone()));
            }
        }
        // Indexes written before confirmation pages have one entry per number.
        self.get_json(&key("c/", confirmation))
    }

    /// An account's approved usage on `day` (`YYYY-MM-DD`).
    pub fn usage(&self, account: &str, day: &str) -> Result<Usage, StoreError> {
        Ok(self.usage_slot(&usage_key(account, day))?.usage())
    }

    fn usage_slot(&self, k: &[u8]) -> Result<UsageSlot, StoreError> {
        Ok(self.get_json(k)?.unwrap_or_default())
    }

    /// A usage slot as the indexer last wrote it: memory for the latest days, else sled.
    fn counted_usage(&self, day: &str, k: &[u8]) -> Result<UsageSlot, StoreError> {
        match lock(&self.usage).get(day, k) {
            Some(slot) => Ok(slot),
            None => self.usage_slot(k),
        }
    }

    /// Whether `credit` is in its engine's outbox: not acknowledged yet.
    pub fn awaits_ack(&self, credit: &Credit) -> Result<bool, StoreError> {
        Ok(self.db.contains_key(key("o/", &outbox_slot(credit)))?)
    }

    /// Whether the reversal advice of `credit` waits for its engine's acknowledgement.
    pub fn reversal_awaits_ack(&self, credit: &Credit) -> Result<bool, StoreError> {
        Ok(self.db.contains_key(key("v/", &outbox_slot(credit)))?)
    }

    /// Credits waiting for `engine`'s acknowledgement, oldest confirmation first.
    pub fn outbox(&self, engine: &str) -> Result<Vec<Credit>, StoreError> {
        self.scan(&key("o/", &format!("{engine}/")))
    }

    fn scan<T: DeserializeOwned>(&self, prefix: &[u8]) -> Result<Vec<T>, StoreError> {
        self.db
            .scan_prefix(prefix)
            .map(|entry| {
                let (k, v) = entry?;
                parse(&k, &v)
            })
            .collect()
    }

    /// Reversal advices waiting for `engine`'s acknowledgement.
    pub fn reversals(&self, engine: &str) -> Result<Vec<ReversalAdvice>, StoreError> {
        self.scan(&key("v/", &format!("{engine}/")))
    }

    /// Authorizations whose hold is open, with their entries.
    pub fn holds(&self) -> Result<Vec<(TransactionKey, TransactionEntry)>, StoreError> {
        let keys: Vec<TransactionKey> = self.scan(b"h/")?;
        let mut holds = Vec::with_capacity(keys.len());
        for k in keys {
            if let Some(entry) = self.transaction(&k)? {
                holds.push((k, entry));
            }
        }
        Ok(holds)
    }

    /// Transactions with retrieval reference `reference` (see [`reference_id`]).
    pub fn by_reference(&self, reference: &str) -> Result<Vec<TransactionKey>, StoreError> {
        let prefix = reference_prefix(reference);
        let skip = prefix.len() + 8;
        let mut keys = self
            .db
            .scan_prefix(&prefix)
            .rev()
            .take(MAX_PER_REFERENCE)
            .map(|entry| {
                let (k, _) = entry?;
                let key = String::from_utf8_lossy(k.get(skip..).unwrap_or_default()).into_owned();
                Ok(TransactionKey(key))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        keys.reverse();
        Ok(keys)
    }

    /// Reversals remembered by reference whose original has not arrived, with their keys.
    pub fn early_reversals(&self) -> Result<Vec<(TransactionKey, Early)>, StoreError> {
        self.db
            .scan_prefix(b"e/")
            .map(|entry| {
                let (k, v) = entry?;
                let early: Early = parse(&k, &v)?;
                let at = k
                    .iter()
                    .rposition(|&b| b == 0x1F)
                    .map_or(k.len(), |i| i + 1);
                let key = String::from_utf8_lossy(&k[at..]).into_owned();
                Ok((TransactionKey(key), early))
            })
            .collect()
    }

    /// The exception queue, oldest first.
    pub fn queue(&self) -> Result<Vec<QueueItem>, StoreError> {
        self.scan(b"q/")
    }

    /// One exception-queue item.
    pub fn queue_item(&self, id: u64) -> Result<Option<QueueItem>, StoreError> {
        self.get_json(&queue_key(id))
    }

    /// The last journal sequence number applied (0 for none).
    pub fn applied_seq(&self) -> Result<u64, StoreError> {
        self.get_u64(APPLIED)
    }

    /// The highest confirmation counter applied (0 for none).
    pub fn last_counter(&self) -> Result<u64, StoreError> {
        self.get_u64(COUNTER)
    }

    /// Applies journal records; records at or below the applied position are skipped,
    /// so applying twice has no second effect.
    ///
    /// The writes are plain inserts and the applied position is written last, not one
    /// sled batch: sled's `apply_batch` holds a lock that every read in the process
    /// waits for, so the deciding sessions would stall behind the indexer. A crash
    /// part-way leaves some of the writes and the old position; the replay then
    /// computes the same writes again. They are idempotent: every write sets a value
    /// the records determine, and a usage slot remembers the last record counted in it.
    pub fn apply(&self, records: &[(u64, Record)]) -> Result<(), StoreError> {
        self.apply_records(records, Novelty::MaybeApplied)
    }

    /// [`Store::apply`], told whether the records may have been applied in part before
    /// (see [`Novelty`]).
    pub fn apply_records(
        &self,
        records: &[(u64, Record)],
        novelty: Novelty,
    ) -> Result<(), StoreError> {
        let Some((writes, usage)) = self.stage(records, novelty)? else {
            return Ok(());
        };
        let last = self.write(writes)?;
        self.db.insert(APPLIED, &last.to_be_bytes())?;
        lock(&self.usage).remember(usage);
        Ok(())
    }

    /// The writes of the records after the applied position, with the last position,
    /// and the usage slots they write.
    fn stage(
        &self,
        records: &[(u64, Record)],
        novelty: Novelty,
    ) -> Result<Option<Staged>, StoreError> {
        let applied = self.applied_seq()?;
        let fresh: Vec<&(u64, Record)> = records.iter().filter(|(seq, _)| *seq > applied).collect();
        let Some((last, _)) = fresh.last() else {
            return Ok(None);
        };
        let mut batch = BatchBuilder::new(self, novelty);
        for (seq, record) in &fresh {
            batch.add(*seq, record)?;
        }
        let usage = batch.usage.clone();
        Ok(Some(((batch.finish()?, *last), usage)))
    }

    fn write(&self, (writes, last): (Writes, u64)) -> Result<u64, StoreError> {
        for (k, v) in writes {
            match v {
                Some(v) => self.db.insert(k, v)?,
                None => self.db.remove(k)?,
            };
        }
        Ok(last)
    }

    /// Asks sled to write its caches out (not a durability barrier).
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    fn get_json<T: DeserializeOwned>(&self, k: &[u8]) -> Result<Option<T>, StoreError> {
        match self.db.get(k)? {
            Some(v) => parse(k, &v).map(Some),
            None => Ok(None),
        }
    }

    fn get_u64(&self, k: &[u8]) -> Result<u64, StoreError> {
        match self.db.get(k)? {
            None => Ok(0),
            Some(v) => {
                let bytes: [u8; 8] = v.as_ref().try_into().map_err(|_| StoreError::Damaged {
                    key: String::from_utf8_lossy(k).into_owned(),
                    reason: "not 8 bytes".into(),
                })?;
                Ok(u64::from_be_bytes(bytes))
            }
        }
    }
}

/// Whether the records being applied may have been applied in part before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Novelty {
    /// Records journaled since this process started: no apply has touched them, so an
    /// entry they create and remove (an outbox entry acknowledged within the batch) was
    /// never in sled and costs nothing.
    New,
    /// Records the journal held at start: an apply cut short by a crash may have
    /// written some of their entries, so every removal is written.
    MaybeApplied,
}

/// Key-value writes in the order they are made; `None` removes the key.
type Writes = Vec<(Vec<u8>, Option<Vec<u8>>)>;

/// Staged writes with the last position they apply, and the usage slots among them
/// (by key, with their day).
type Staged = ((Writes, u64), HashMap<Vec<u8>, (String, UsageSlot)>);

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A day's usage as the index keeps it: the totals and the journal position of the
/// last record counted in them, which makes counting a record again a no-op.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct UsageSlot {
    count: u32,
    amount: u64,
    #[serde(default)]
    seq: u64,
    /// The last decision counted: the head of the account's history chain that day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last: Option<TransactionKey>,
}

impl UsageSlot {
    fn of(usage: Usage, seq: u64) -> UsageSlot {
        UsageSlot {
            count: usage.count,
            amount: usage.amount,
            seq,
            last: None,
        }
    }

    fn usage(&self) -> Usage {
        Usage {
            count: self.count,
            amount: self.amount,
        }
    }
}

/// Collects the writes of several records, reading earlier state once, so that usage
/// counters and reference lists add up within a batch.
struct BatchBuilder<'a> {
    store: &'a Store,
    writes: HashMap<Vec<u8>, Option<Vec<u8>>>,
    /// Keys this batch created (absent from sled before it).
    created: std::collections::HashSet<Vec<u8>>,
    usage: HashMap<Vec<u8>, (String, UsageSlot)>,
    queue: HashMap<u64, QueueItem>,
    breaks: HashMap<u64, BreakItem>,
    notifications: HashMap<u64, NotificationItem>,
    /// The journal positions of the failed notification attempts in this batch, by
    /// channel.
    notification_failures: HashMap<String, Vec<u64>>,
    open_day: Option<OpenDay>,
    counter: Option<u64>,
    novelty: Novelty,
    /// Confirmation counters issued by these records, with their transactions.
    confirmations: Vec<(u64, TransactionKey)>,
}

impl<'a> BatchBuilder<'a> {
    fn new(store: &'a Store, novelty: Novelty) -> BatchBuilder<'a> {
        BatchBuilder {
            store,
            novelty,
            writes: HashMap::new(),
            created: std::collections::HashSet::new(),
            usage: HashMap::new(),
            queue: HashMap::new(),
            breaks: HashMap::new(),
            notifications: HashMap::new(),
            notification_failures: HashMap::new(),
            open_day: None,
            counter: None,
            confirmations: Vec::new(),
        }
    }

    fn add(&mut self, seq: u64, record: &Record) -> Result<(), StoreError> {
        match record {
            Record::Decided(decision) => self.decided(seq, decision),
            Record::Rejected(_) | Record::CreditSent(_) => Ok(()),
            Record::CreditAcked(delivery) => {
                self.acked(delivery);
                Ok(())
            }
            Record::AccountsImported { accounts } => {
                for account in accounts {
                    self.account_saved(account)?;
                }
                Ok(())
            }
            Record::AccountChanged(saved) => {
                self.audited(seq, &saved.audit);
                self.account_saved(&saved.item)
            }
            Record::UserSaved(saved) => {
                self.user_saved(saved, seq);
                Ok(())
            }
            Record::Enrolled(saved) => {
                self.enrolled(saved, seq);
                Ok(())
            }
            Record::ChannelRequested(request) => {
                self.channel_requested(request);
                Ok(())
            }
            Record::ClientSaved(saved) => {
                self.client_saved(saved, seq);
                Ok(())
            }
            Record::ApprovalSaved(saved) => {
                self.approval_saved(saved, seq);
                Ok(())
            }
            Record::Audited(audit) => {
                self.audited(seq, audit);
                Ok(())
            }
            Record::PinsImported(batch) => {
                self.pins_imported(batch);
                Ok(())
            }
            Record::PinsResealed(resealed) => self.pins_resealed(resealed),
            Record::LocationsImported { locations } => {
                for location in locations {
                    self.put("l/", &location.id, location);
                }
                Ok(())
            }
            Record::HoldsExpired(expiry) => self.expired(seq, expiry),
            Record::Resubmitted(resubmission) => self.resubmitted(seq, resubmission),
            Record::DayClosed(close) => self.day_closed(seq, close),
            Record::BreakFound(found) => {
                self.break_found(seq, found);
                Ok(())
            }
            Record::BreakResolved(resolution) => self.break_resolved(resolution),
            Record::Reconciled(reconciliation) => {
                self.reconciled(reconciliation);
                Ok(())
            }
            Record::NotificationQueued(notification) => {
                self.notification_queued(seq, notification);
                Ok(())
            }
            Record::NotificationAttempt(attempt) => self.notification_attempt(seq, attempt),
            Record::Settled(settled) => {
                self.settled(settled);
                Ok(())
            }
        }
    }

    fn decided(&mut self, seq: u64, decision: &Decision) -> Result<(), StoreError> {
        let mut entry = TransactionEntry::of(seq, decision);
        entry.link = decision.summary.link.clone();
        if let Some(change) = &decision.usage {
            entry.previous = self.chain(seq, change, &decision.key)?;
        }
        self.put("t/", &decision.key.0, &entry);
        if let Some(touched) = &decision.touches {
            self.touch(touched, None)?;
        }
        if let Some(reversal) = &decision.reversal {
            self.reversal(&reversal.effect);
            if let Some(early) = &reversal.early {
                self.put_raw(early_key(&early.reference, &decision.key), json(early));
            }
        }
        if let Some(used) = &decision.late_for {
            self.delete(early_key(&used.reference, &used.reversal));
        }
        if let Some(owed) = &decision.owed {
            self.enqueue(seq, decision, owed);
        }
        if let Some(moved) = &decision.pin {
            let voucher = decision.credit.as_ref().and_then(|c| c.voucher.as_deref());
            self.pin_moved(moved, voucher)?;
        }
        if decision.hold.is_some() {
            self.put("h/", &decision.key.0, &decision.key);
        }
        if let Some(approval) = &decision.approval {
            self.confirmed(approval.counter, &decision.key);
            if let Some(credit) = &decision.credit {
                self.create("o/", &outbox_slot(credit), credit);
            }
        }
        if !decision.is_referenced() {
            return Ok(());
        }
        let reference = reference_id(
            &decision.summary.acquirer,
            &decision.summary.terminal,
            &decision.summary.rrn,
        );
        // Newest last: the journal position orders a reference's transactions.
        let mut k = reference_prefix(&reference);
        k.extend_from_slice(&seq.to_be_bytes());
        k.extend_from_slice(decision.key.as_bytes());
        self.writes.insert(k, Some(Vec::new()));
        Ok(())
    }

    /// Writes an earlier transaction's new entry; a hold no longer open is dropped, and
    /// a queued advice that was reversed closes its queue item.
    /// The decider's entries do not carry what only the index writes (the link, the
    /// history chain): those are kept from the entry as indexed, or `previous` is given
    /// (a resubmitted advice joining its account's day).
    fn touch(
        &mut self,
        touched: &Touched,
        previous: Option<Option<TransactionKey>>,
    ) -> Result<(), StoreError> {
        let mut entry = touched.entry.clone();
        if let Some(current) = self.current_entry(&touched.key)? {
            if entry.link.is_empty() {
                entry.link = current.link;
            }
            if entry.previous.is_none() {
                entry.previous = current.previous;
            }
        }
        if let Some(previous) = previous {
            entry.previous = previous;
        }
        self.put("t/", &touched.key.0, &entry);
        let entry = &entry;
        if entry.held().is_none() {
            self.writes.insert(key("h/", &touched.key.0), None);
        }
        if entry.queued && matches!(entry.standing, Standing::Reversed { .. }) {
            let item = match self.queue.remove(&entry.seq) {
                Some(item) => Some(item),
                None => self.store.queue_item(entry.seq)?,
            };
            if let Some(mut item) = item {
                item.reversed = true;
                self.queue.insert(item.id, item);
            }
        }
        Ok(())
    }

    fn reversal(&mut self, effect: &ReversalEffect) {
        match effect {
            ReversalEffect::Cancelled {
                engine,
                confirmation,
                remaining,
            } => {
                let slot = key("o/", &format!("{engine}/{confirmation}"));
                match remaining {
                    Some(credit) => {
                        self.writes.insert(slot, Some(json(credit)));
                    }
                    None => self.delete(slot),
                }
            }
            ReversalEffect::Advised(advice) => {
                self.create("v/", &outbox_slot(&advice.credit), advice);
            }
            ReversalEffect::NotFound | ReversalEffect::Ignored | ReversalEffect::Released => {}
        }
    }

    fn acked(&mut self, delivery: &Delivery) {
        // A `04x0` answers a reversal advice, anything else a credit.
        let prefix = if delivery.mti.starts_with("04") {
            "v/"
        } else {
            "o/"
        };
        let slot = format!("{}/{}", delivery.engine, delivery.confirmation);
        self.delete(key(prefix, &slot));
    }

    /// Writes an entry that did not exist before this batch (an outbox entry).
    fn create(&mut self, prefix: &str, id: &str, value: &impl Serialize) {
        let k = key(prefix, id);
        self.created.insert(k.clone());
        self.writes.insert(k, Some(json(value)));
    }

    /// Removes an entry; one that new records created in this very batch is simply not
    /// written, so an outbox entry acknowledged before its batch is applied costs sled
    /// nothing.
    fn delete(&mut self, k: Vec<u8>) {
        if self.created.remove(&k) && self.novelty == Novelty::New {
            self.writes.remove(&k);
        } else {
            self.writes.insert(k, None);
        }
    }

    fn expired(&mut self, seq: u64, expiry: &Expiry) -> Result<(), StoreError> {
        for (touched, change) in &expiry.holds {
            self.touch(touched, None)?;
            self.adjust_usage(seq, change, None)?;
        }
        Ok(())
    }

    fn enqueue(&mut self, seq: u64, decision: &Decision, owed: &Owed) {
        let item = QueueItem {
            id: seq,
            at_ms: decision.at_ms,
            key: decision.key.clone(),
            mti: decision.mti.clone(),
            owed: owed.clone(),
            resolved: None,
            reversed: false,
        };
        self.queue.insert(seq, item);
    }

    fn resubmitted(&mut self, seq: u64, resubmission: &Resubmission) -> Result<(), StoreError> {
        let item = match self.queue.remove(&resubmission.id) {
            Some(item) => Some(item),
            None => self.store.queue_item(resubmission.id)?,
        };
        if let Some(mut item) = item {
            item.resolved = Some(Resolution {
                by: resubmission.by.clone(),
                at_ms: resubmission.at_ms,
                confirmation: resubmission.approval.confirmation.clone(),
            });
            self.queue.insert(item.id, item);
        }
        self.confirmed(resubmission.approval.counter, &resubmission.touches.key);
        let key = &resubmission.touches.key;
        let previous = self.chain(seq, &resubmission.usage, key)?;
        self.touch(&resubmission.touches, Some(previous))?;
        self.create(
            "o/",
            &outbox_slot(&resubmission.credit),
            &resubmission.credit,
        );
        Ok(())
    }

    /// Counts `change` and makes `key` the last decision of its account's day; returns
    /// the one that was last before it (a record counted before keeps the link it got
    /// then).
    fn chain(
        &mut self,
        seq: u64,
        change: &UsageChange,
        key: &TransactionKey,
    ) -> Result<Option<TransactionKey>, StoreError> {
        match self.adjust_usage(seq, change, Some(key))? {
            Some(previous) => Ok(previous),
            None => Ok(self.current_entry(key)?.and_then(|e| e.previous)),
        }
    }

    /// The entry of `key` as this batch or the index has it.
    fn current_entry(&self, key: &TransactionKey) -> Result<Option<TransactionEntry>, StoreError> {
        let k = self::key("t/", &key.0);
        match self.writes.get(&k) {
            Some(Some(bytes)) => parse(&k, bytes).map(Some),
            Some(None) => Ok(None),
            None => self.store.transaction(key),
        }
    }

    /// Remembers the transaction a confirmation counter was issued to.
    /// A completion reuses its hold's number and carries counter 0: its number is
    /// found through the hold, whose entry names the completion.
    fn confirmed(&mut self, counter: u64, transaction: &TransactionKey) {
        self.counter = Some(self.counter.unwrap_or(0).max(counter));
        if counter > 0 {
            self.confirmations
                .push((counter % SPACE, transaction.clone()));
        }
    }

    /// Counts a usage change once: a slot already holding record `seq` (written before
    /// a crash cut the apply short) is left as it is (`None`). With `last`, that
    /// decision becomes the last of the day; returns the one that was (`Some`).
    fn adjust_usage(
        &mut self,
        seq: u64,
        change: &UsageChange,
        last: Option<&TransactionKey>,
    ) -> Result<Option<Option<TransactionKey>>, StoreError> {
        let k = usage_key(&change.account, &change.day);
        let current = match self.usage.get(&k) {
            Some((_, slot)) => slot.clone(),
            None => self.store.counted_usage(&change.day, &k)?,
        };
        if current.seq >= seq {
            return Ok(None);
        }
        let usage = current.usage().adjusted(change.count, change.amount);
        let mut slot = UsageSlot::of(usage, seq);
        slot.last = last.cloned().or_else(|| current.last.clone());
        self.usage.insert(k, (change.day.clone(), slot));
        Ok(Some(current.last))
    }

    fn put_raw(&mut self, k: Vec<u8>, value: Vec<u8>) {
        self.writes.insert(k, Some(value));
    }

    fn put(&mut self, prefix: &str, id: &str, value: &impl Serialize) {
        self.writes.insert(key(prefix, id), Some(json(value)));
    }

    fn finish(self) -> Result<Writes, StoreError> {
        let mut writes: Writes = self.writes.into_iter().collect();
        for (k, (_, usage)) in self.usage {
            writes.push((k, Some(json(&usage))));
        }
        for (id, item) in self.queue {
            writes.push((queue_key(id), Some(json(&item))));
        }
        for (id, item) in self.breaks {
            writes.push((books::break_key(id), Some(json(&item))));
        }
        writes.extend(books::outbox_writes(
            self.store,
            self.notifications,
            self.notification_failures,
        )?);
        writes.extend(confirmation_pages(self.confirmations));
        if let Some(counter) = self.counter {
            let previous = self.store.last_counter()?;
            let counter = counter.max(previous).to_be_bytes().to_vec();
            writes.push((COUNTER.to_vec(), Some(counter)));
        }
        writes.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Ok(writes)
    }
}

/// Prefix of the confirmation pages: `c#` and the first counter (8 bytes, big-endian)
/// of a run of consecutive counters, holding their transaction keys in order. One
/// write per run instead of one per approval: counters are issued in journal order,
/// so an indexer batch is mostly one run.
const CONFIRMATION_PAGES: &[u8] = b"c#";

/// Pages at or below a counter that a lookup reads before giving up.
const PAGES_LOOKED_AT: usize = 4;

fn page_key(first: u64) -> Vec<u8> {
    let mut k = CONFIRMATION_PAGES.to_vec();
    k.extend_from_slice(&first.to_be_bytes());
    k
}

/// The page writes of issued counters: one per run of consecutive counters.
fn confirmation_pages(mut issued: Vec<(u64, TransactionKey)>) -> Writes {
    issued.sort_unstable_by_key(|(counter, _)| *counter);
    let mut pages: Vec<(u64, Vec<TransactionKey>)> = Vec::new();
    for (counter, transaction) in issued {
        match pages.last_mut() {
            Some((first, keys)) if *first + keys.len() as u64 == counter => keys.push(transaction),
            _ => pages.push((counter, vec![transaction])),
        }
    }
    pages
        .into_iter()
        .map(|(first, keys)| (page_key(first), Some(json(&keys))))
        .collect()
}

/// Transactions looked at per retrieval reference, the newest (references should be
/// unique; an acquirer that repeats one must not make a reversal scan without bound).
pub const MAX_PER_REFERENCE: usize = 16;

/// The index prefix of a reference's transactions: one entry per transaction, so an
/// approval adds an entry without reading the others.
fn reference_prefix(reference: &str) -> Vec<u8> {
    // 0x1F (unit separator) cannot occur in the an/ans fields a reference is made of.
    let mut k = key("i/", reference);
    k.push(0x1F);
    k
}

/// The index id of a retrieval reference: acquirer id, terminal (DE41) and DE37.
pub fn reference_id(acquirer: &str, terminal: &str, rrn: &str) -> String {
    format!("{acquirer}|{terminal}|{rrn}")
}

/// The index key of an early reversal: its reference, then its own key.
fn early_key(reference: &str, reversal: &TransactionKey) -> Vec<u8> {
    let mut k = key("e/", reference);
    k.push(0x1F);
    k.extend_from_slice(reversal.as_bytes());
    k
}

fn outbox_slot(credit: &Credit) -> String {
    format!("{}/{}", credit.engine, credit.confirmation)
}

fn queue_key(id: u64) -> Vec<u8> {
    let mut k = b"q/".to_vec();
    k.extend_from_slice(&id.to_be_bytes());
    k
}

fn json(value: &impl Serialize) -> Vec<u8> {
    // Serializing these plain structs cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

fn key(prefix: &str, id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + id.len());
    k.extend_from_slice(prefix.as_bytes());
    k.extend_from_slice(id.as_bytes());
    k
}

fn usage_key(account: &str, day: &str) -> Vec<u8> {
    key("u/", &format!("{account}/{day}"))
}

fn parse<T: DeserializeOwned>(k: &[u8], v: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(v).map_err(|e| StoreError::Damaged {
        key: String::from_utf8_lossy(k).into_owned(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::durable::record::{Approval, Reversal, Summary};
    use crate::vocab::accounts::AccountStatus;

    fn decision(key: &str, counter: u64, amount: u64) -> Decision {
        let confirmation = format!("{counter:012}");
        let mut decision = Decision::new(
            TransactionKey(key.into()),
            "f".into(),
            "0200".into(),
            Summary::default(),
        );
        decision.day = "2026-11-23".into();
        decision.account = Some("4761739001010010".into());
        decision.approval = Some(Approval {
            counter,
            confirmation: confirmation.clone(),
        });
        decision.credit = Some(Credit {
            engine: "prepaid".into(),
            min: "2065550100".into(),
            amount,
            currency: "840".into(),
            confirmation,
            processing_code: "280000".into(),
            rrn: "1".into(),
            voucher: None,
        });
        decision.usage = Some(UsageChange {
            account: "4761739001010010".into(),
            day: "2026-11-23".into(),
            count: 1,
            amount: amount as i64,
        });
        decision
    }

    #[test]
    fn applying_twice_counts_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let records = vec![
            (1, Record::Decided(Box::new(decision("k1", 1, 2500)))),
            (2, Record::Decided(Box::new(decision("k2", 2, 1000)))),
        ];
        store.apply(&records).expect("apply");
        store.apply(&records).expect("apply again");
        store.apply(&records[1..]).expect("apply a suffix");
        let usage = store
            .usage("4761739001010010", "2026-11-23")
            .expect("usage");
        assert_eq!(
            usage,
            Usage {
                count: 2,
                amount: 3500
            }
        );
        assert_eq!(store.applied_seq().expect("seq"), 2);
        assert_eq!(store.last_counter().expect("counter"), 2);
        assert_eq!(store.outbox("prepaid").expect("outbox").len(), 2);
        let entry = store
            .transaction(&TransactionKey("k2".into()))
            .expect("get")
            .expect("present");
        assert_eq!(
            (entry.seq, entry.confirmation.as_deref()),
            (2, Some("000000000002"))
        );
        let numbers = ConfirmationNumbers::new(b"store test key, sixteen+ bytes");
        assert_eq!(
            store
                .by_confirmation(&numbers, &numbers.number(1))
                .expect("get"),
            Some(TransactionKey("k1".into()))
        );
    }

    #[test]
    fn an_apply_cut_short_by_a_crash_counts_usage_once_when_replayed() {
        let records = vec![
            (1, Record::Decided(Box::new(decision("k1", 1, 2500)))),
            (2, Record::Decided(Box::new(decision("k2", 2, 1000)))),
        ];
        let staged = {
            let dir = tempfile::tempdir().expect("tempdir");
            let store = Store::open(dir.path()).expect("open");
            let staged = store.stage(&records, Novelty::MaybeApplied);
            let ((writes, _), _) = staged.expect("stage").expect("fresh");
            writes.len()
        };
        // A crash after any number of the writes, before the position is written.
        for cut in 0..=staged {
            let dir = tempfile::tempdir().expect("tempdir");
            let store = Store::open(dir.path()).expect("open");
            let stage = store.stage(&records, Novelty::MaybeApplied);
            let ((writes, last), _) = stage.expect("stage").expect("fresh");
            let partial: Writes = writes.into_iter().take(cut).collect();
            store.write((partial, last)).expect("partial write");
            store.apply(&records).expect("replay");
            let usage = store.usage("4761739001010010", "2026-11-23");
            assert_eq!(
                usage.expect("usage"),
                Usage {
                    count: 2,
                    amount: 3500
                },
                "cut after {cut} of {staged} writes"
            );
            assert_eq!(store.outbox("prepaid").expect("outbox").len(), 2);
            assert_eq!(store.applied_seq().expect("seq"), 2);
            assert_eq!(history_keys(&store), ["k2", "k1"], "cut after {cut}");
        }
    }

    fn history_keys(store: &Store) -> Vec<String> {
        let history = store.history("4761739001010010", 10).expect("history");
        history.into_iter().map(|(k, _)| k.0).collect()
    }

    #[test]
    fn an_account_s_history_is_chained_through_its_entries_and_survives_touches() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let mut first = decision("k1", 1, 2500);
        first.summary.link = "bank-a".into();
        store
            .apply(&[(1, Record::Decided(Box::new(first.clone())))])
            .expect("apply");
        // A reversal of k1 in the same batch as another approval; the decider's copy of
        // k1's entry knows nothing of the link or the chain.
        let mut reversed = TransactionEntry::of(1, &first);
        reversed.standing = Standing::Reversed {
            amount: 2500,
            full: true,
        };
        let mut reversal = decision("k3", 0, 0);
        reversal.approval = None;
        reversal.credit = None;
        reversal.mti = "0420".into();
        reversal.usage = Some(UsageChange {
            account: "4761739001010010".into(),
            day: "2026-11-23".into(),
            count: -1,
            amount: -2500,
        });
        reversal.touches = Some(Touched {
            key: TransactionKey("k1".into()),
            entry: reversed,
        });
        store
            .apply(&[
                (2, Record::Decided(Box::new(decision("k2", 2, 1000)))),
                (3, Record::Decided(Box::new(reversal))),
            ])
            .expect("apply");
        assert_eq!(history_keys(&store), ["k3", "k2", "k1"]);
        let history = store.history("4761739001010010", 2).expect("history");
        assert_eq!(history.len(), 2, "at most the limit");
        let k1 = store
            .transaction(&TransactionKey("k1".into()))
            .expect("get")
            .expect("k1");
        assert!(matches!(k1.standing, Standing::Reversed { full: true, .. }));
        assert_eq!(k1.link, "bank-a", "the link survives the touch");
        assert_eq!(
            store.history("4761739001010028", 10).expect("none").len(),
            0
        );
    }

    #[test]
    fn every_confirmation_number_finds_its_transaction_across_pages_and_gaps() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let numbers = ConfirmationNumbers::new(b"store test key, sixteen+ bytes");
        // Counters 1-40 and 43-60 (41 and 42 were never journaled), in three batches.
        let counters: Vec<u64> = (1..=40).chain(43..=60).collect();
        let records: Vec<(u64, Record)> = counters
            .iter()
            .enumerate()
            .map(|(i, &c)| {
                let decided = decision(&format!("k{c}"), c, 100);
                (i as u64 + 1, Record::Decided(Box::new(decided)))
            })
            .collect();
        for part in [&records[..25], &records[25..45], &records[45..]] {
            store.apply(part).expect("apply");
        }
        for &c in &counters {
            let found = store.by_confirmation(&numbers, &numbers.number(c));
            assert_eq!(
                found.expect("get"),
                Some(TransactionKey(format!("k{c}"))),
                "counter {c}"
            );
        }
        for missing in [0, 41, 42, 61, 5_000] {
            let found = store.by_confirmation(&numbers, &numbers.number(missing));
            assert_eq!(found.expect("get"), None, "counter {missing}");
        }
        assert_eq!(store.by_confirmation(&numbers, "123").expect("get"), None);
        // An index written before pages: one `c/` entry per confirmation number.
        let old = numbers.number(900);
        let entry = json(&TransactionKey("old".into()));
        store.db.insert(key("c/", &old), entry).expect("insert");
        assert_eq!(
            store.by_confirmation(&numbers, &old).expect("get"),
            Some(TransactionKey("old".into()))
        );
    }

    #[test]
    fn a_credit_cancelled_after_a_cut_short_apply_stays_out_of_the_outbox() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let approval = (1, Record::Decided(Box::new(decision("k1", 1, 2500))));
        // The approval's writes reached sled, its position did not (a crash).
        let staged = store.stage(std::slice::from_ref(&approval), Novelty::MaybeApplied);
        let ((writes, last), _) = staged.expect("stage").expect("fresh");
        store.write((writes, last)).expect("partial write");
        assert_eq!(store.outbox("prepaid").expect("outbox").len(), 1);
        let mut reversal = Decision::new(
            TransactionKey("r1".into()),
            "f".into(),
            "0400".into(),
            Summary::default(),
        );
        reversal.reversal = Some(Reversal {
            original: Some(TransactionKey("k1".into())),
            reversed: 2500,
            effect: ReversalEffect::Cancelled {
                engine: "prepaid".into(),
                confirmation: "000000000001".into(),
                remaining: None,
            },
            early: None,
        });
        // The replay on start applies both in one batch.
        let replayed = [approval, (2, Record::Decided(Box::new(reversal)))];
        store.apply(&replayed).expect("replay");
        assert!(
            store.outbox("prepaid").expect("outbox").is_empty(),
            "a fully reversed, unsent credit must not be sent after the restart"
        );
    }

    #[test]
    fn completions_reusing_a_number_leave_the_confirmation_pages_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let numbers = ConfirmationNumbers::new(b"store test key, sixteen+ bytes");
        let completion = |key: &str| {
            let mut decided = decision(key, 0, 100);
            decided.credit = None;
            Record::Decided(Box::new(decided))
        };
        store
            .apply(&[
                (1, completion("c1")),
                (2, Record::Decided(Box::new(decision("k1", 1, 100)))),
                (3, Record::Decided(Box::new(decision("k2", 2, 100)))),
            ])
            .expect("apply");
        store.apply(&[(4, completion("c2"))]).expect("apply");
        for (counter, key) in [(1, "k1"), (2, "k2")] {
            let found = store.by_confirmation(&numbers, &numbers.number(counter));
            assert_eq!(found.expect("get"), Some(TransactionKey(key.into())));
        }
    }

    fn acked(confirmation: &str) -> Record {
        Record::CreditAcked(Delivery {
            engine: "prepaid".into(),
            confirmation: confirmation.into(),
            mti: "0230".into(),
            link: "127.0.0.1:9583".into(),
            attempt: 1,
            at_ms: 0,
        })
    }

    #[test]
    fn an_ack_empties_the_outbox_in_the_same_batch_or_a_later_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        store
            .apply(&[
                (1, Record::Decided(Box::new(decision("k1", 1, 2500)))),
                (2, Record::Decided(Box::new(decision("k2", 2, 1000)))),
                (3, acked("000000000001")),
            ])
            .expect("apply");
        let left: Vec<String> = store
            .outbox("prepaid")
            .expect("outbox")
            .into_iter()
            .map(|c| c.confirmation)
            .collect();
        assert_eq!(left, vec!["000000000002".to_owned()]);
        store.apply(&[(4, acked("000000000002"))]).expect("apply");
        assert!(store.outbox("prepaid").expect("outbox").is_empty());
        assert!(
            store
                .transaction(&TransactionKey("k1".into()))
                .expect("get")
                .is_some(),
            "the transaction itself stays indexed"
        );
    }

    #[test]
    fn imports_replace_rows_and_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let account = |status| Account {
            number: "4761739001010010".into(),
            min: "2065550100".into(),
            carrier: "a".into(),
            status,
            expiry: None,
        };
        {
            let store = Store::open(dir.path()).expect("open");
            store
                .apply(&[(
                    1,
                    Record::AccountsImported {
                        accounts: vec![account(AccountStatus::Issued)],
                    },
                )])
                .expect("apply");
            store
                .apply(&[(
                    2,
                    Record::AccountsImported {
                        accounts: vec![account(AccountStatus::Active)],
                    },
                )])
                .expect("apply");
            store.flush().expect("flush");
        }
        let store = Store::open(dir.path()).expect("reopen");
        let got = store
            .account("4761739001010010")
            .expect("get")
            .expect("present");
        assert_eq!(got.status, AccountStatus::Active);
    }
}
