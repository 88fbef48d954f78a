//! The back office's indexes, derived from the journal like the rest: business days
//! (the open one and each closed one with the journal positions it spans), the breaks
//! reconciliations found (by id, by identity so a re-run finds them again, and by
//! transaction key or confirmation for lookups), and the last reconciliation of each
//! bank or engine and day.

use serde::{Deserialize, Serialize};

use super::{BatchBuilder, Store, StoreError, json, key};
use crate::durable::record::{
    Break, BreakResolution, DayClose, Notification, NotificationAttempt, Reconciliation,
    SettledDay, Side,
};

const OPEN_DAY: &[u8] = b"m/open_day";

/// Set once the outbox's pending index (`np/`) and failure counters (`nf/`) cover every
/// notification: a data directory indexed by an earlier version gets them at open.
const OUTBOX_INDEXED: &[u8] = b"m/outbox_indexed";

/// The business day open now, and the first journal position that belongs to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenDay {
    /// `YYYY-MM-DD`.
    pub day: String,
    /// The first journal position of the day.
    pub first_seq: u64,
}

/// A closed business day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClosedDay {
    /// `YYYY-MM-DD`.
    pub day: String,
    /// Its first journal position.
    pub first_seq: u64,
    /// Its last: the `day_closed` record.
    pub last_seq: u64,
    /// How it was closed.
    pub close: DayClose,
}

/// A break as the exception queue keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakItem {
    /// Its id: the journal position of its `break_found`.
    pub id: u64,
    /// What was found.
    pub found: Break,
    /// How it was closed, once it is.
    #[serde(default)]
    pub resolved: Option<BreakResolution>,
}

/// A notification as the outbox keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationItem {
    /// Its id: the journal position of its `notification_queued`.
    pub id: u64,
    /// What to send.
    pub notification: Notification,
    /// Attempts that failed.
    pub failures: u32,
    /// The last attempt, milliseconds since the Unix epoch.
    pub last_attempt_ms: i64,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When it was sent.
    pub sent_ms: Option<i64>,
    /// The journal position of the last attempt applied.
    #[serde(default)]
    pub last_attempt_seq: u64,
}

impl Store {
    /// Every notification, oldest first.
    pub fn notifications(&self) -> Result<Vec<NotificationItem>, StoreError> {
        self.scan(b"n/")
    }

    /// The notifications not sent yet, oldest first: read through the pending index, so
    /// a pass over the outbox costs what waits, not everything ever sent.
    pub fn pending_notifications(&self) -> Result<Vec<NotificationItem>, StoreError> {
        let mut pending = Vec::new();
        for entry in self.db.scan_prefix(PENDING_NOTIFICATIONS) {
            let (k, _) = entry?;
            let id = pending_id(&k)?;
            pending.extend(self.get_json::<NotificationItem>(&notification_key(id))?);
        }
        Ok(pending)
    }

    /// Notifications of `channel` waiting to be sent, and its failed attempts so far
    /// (the metrics).
    pub fn notification_tally(&self, channel: &str) -> Result<(u64, u64), StoreError> {
        let mut pending = 0;
        for entry in self.db.scan_prefix(PENDING_NOTIFICATIONS) {
            let (k, v) = entry?;
            if super::parse::<String>(&k, &v)? == channel {
                pending += 1;
            }
        }
        let failures = self.get_json::<FailureCount>(&key("nf/", channel))?;
        Ok((pending, failures.unwrap_or_default().count))
    }

    /// Builds the outbox's pending index and failure counters from the notifications
    /// themselves, once, for a data directory indexed before they existed.
    pub(super) fn index_outbox(&self) -> Result<(), StoreError> {
        if self.db.contains_key(OUTBOX_INDEXED)? {
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        let mut failures: std::collections::BTreeMap<String, FailureCount> = Default::default();
        let applied = self.applied_seq()?;
        for item in self.notifications()? {
            let channel = item.notification.channel;
            if item.sent_ms.is_none() {
                batch.insert(pending_notification_key(item.id), json(&channel));
            }
            let counter = failures.entry(channel).or_default();
            counter.count += u64::from(item.failures);
            counter.last_seq = applied;
        }
        for (channel, counter) in failures {
            batch.insert(key("nf/", &channel), json(&counter));
        }
        batch.insert(OUTBOX_INDEXED, Vec::new());
        Ok(self.db.apply_batch(batch)?)
    }

    /// The notification queued before with this identity.
    pub fn notification_by_identity(&self, identity: &str) -> Result<Option<u64>, StoreError> {
        self.get_json(&key("ni/", identity))
    }

    /// The open business day, once a day has been closed (before that, the calendar's).
    pub fn open_day(&self) -> Result<Option<OpenDay>, StoreError> {
        self.get_json(OPEN_DAY)
    }

    /// Every closed business day, oldest first.
    pub fn closed_days(&self) -> Result<Vec<ClosedDay>, StoreError> {
        self.scan(b"D/")
    }

    /// One closed business day.
    pub fn closed_day(&self, day: &str) -> Result<Option<ClosedDay>, StoreError> {
        self.get_json(&key("D/", day))
    }

    /// Every break, oldest first.
    pub fn breaks(&self) -> Result<Vec<BreakItem>, StoreError> {
        self.scan(b"b/")
    }

    /// One break.
    pub fn break_item(&self, id: u64) -> Result<Option<BreakItem>, StoreError> {
        self.get_json(&break_key(id))
    }

    /// The break found before with this identity.
    pub fn break_by_identity(&self, identity: &str) -> Result<Option<u64>, StoreError> {
        self.get_json(&key("bi/", identity))
    }

    /// The breaks that name a transaction key or confirmation number, on either side.
    pub fn breaks_of(&self, side: Side, reference: &str) -> Result<Vec<BreakItem>, StoreError> {
        let ids: Vec<u64> = self.scan(&key("bk/", &format!("{}/{reference}/", side.as_str())))?;
        let mut items = Vec::with_capacity(ids.len());
        for id in ids {
            items.extend(self.break_item(id)?);
        }
        Ok(items)
    }

    /// The settlement of `bank`'s `day`, once settled.
    pub fn settlement(&self, bank: &str, day: &str) -> Result<Option<SettledDay>, StoreError> {
        self.get_json(&key("s/", &format!("{bank}/{day}")))
    }

    /// The banks (or engines) whose file of `day` has been reconciled.
    pub fn reconciled_parties(&self, side: Side, day: &str) -> Result<Vec<String>, StoreError> {
        let runs: Vec<Reconciliation> = self.scan(&key("r/", &format!("{}/", side.as_str())))?;
        Ok(runs
            .into_iter()
            .filter(|r| r.day == day)
            .map(|r| r.party)
            .collect())
    }

    /// The last reconciliation of `party` for `day`.
    pub fn reconciliation(
        &self,
        side: Side,
        party: &str,
        day: &str,
    ) -> Result<Option<Reconciliation>, StoreError> {
        self.get_json(&reconciliation_key(side, party, day))
    }
}

impl Store {
    /// Whether `party`'s reconciliation of `day` matched a line to the decision with
    /// `key` of another day.
    pub fn matched_in(
        &self,
        side: Side,
        party: &str,
        day: &str,
        key: &str,
    ) -> Result<bool, StoreError> {
        let k = self::key("mx/", &format!("{}/{party}/{day}/{key}", side.as_str()));
        Ok(self.db.contains_key(k)?)
    }

    /// The keys of other days' decisions that `party`'s reconciliation of `day` matched.
    pub fn matched_from_other_days(
        &self,
        side: Side,
        party: &str,
        day: &str,
    ) -> Result<Vec<String>, StoreError> {
        let prefix = self::key("mx/", &format!("{}/{party}/{day}/", side.as_str()));
        let mut keys = Vec::new();
        for entry in self.db.scan_prefix(&prefix) {
            let (k, _) = entry?;
            keys.push(String::from_utf8_lossy(&k[prefix.len()..]).into_owned());
        }
        Ok(keys)
    }
}

impl Store {
    /// Whether the reversal advice of credit `confirmation` still waits for `engine`'s
    /// acknowledgement.
    pub fn reversal_in_outbox(&self, engine: &str, confirmation: &str) -> Result<bool, StoreError> {
        Ok(self
            .db
            .contains_key(key("v/", &format!("{engine}/{confirmation}")))?)
    }

    /// Whether the credit `confirmation` still waits in `engine`'s outbox (not
    /// acknowledged by the engine yet).
    pub fn in_outbox(&self, engine: &str, confirmation: &str) -> Result<bool, StoreError> {
        Ok(self
            .db
            .contains_key(key("o/", &format!("{engine}/{confirmation}")))?)
    }
}

impl BatchBuilder<'_> {
    pub(super) fn day_closed(&mut self, seq: u64, close: &DayClose) -> Result<(), StoreError> {
        let first_seq = match self.open_day.take() {
            Some(open) => open.first_seq,
            None => self.store.open_day()?.map_or(1, |open| open.first_seq),
        };
        let closed = ClosedDay {
            day: close.day.clone(),
            first_seq,
            last_seq: seq,
            close: close.clone(),
        };
        self.put("D/", &close.day, &closed);
        let open = OpenDay {
            day: close.next.clone(),
            first_seq: seq + 1,
        };
        self.put_raw(OPEN_DAY.to_vec(), json(&open));
        self.open_day = Some(open);
        Ok(())
    }

    pub(super) fn break_found(&mut self, seq: u64, found: &Break) {
        let item = BreakItem {
            id: seq,
            found: found.clone(),
            resolved: None,
        };
        self.put_raw(key("bi/", &found.identity), json(&seq));
        let mut by = vec![found.key.clone()];
        by.extend(found.confirmation.clone());
        for reference in by {
            let k = format!("{}/{reference}/{seq:020}", found.side.as_str());
            self.put_raw(key("bk/", &k), json(&seq));
        }
        self.breaks.insert(seq, item);
    }

    pub(super) fn break_resolved(
        &mut self,
        resolution: &BreakResolution,
    ) -> Result<(), StoreError> {
        let item = match self.breaks.remove(&resolution.id) {
            Some(item) => Some(item),
            None => self.store.break_item(resolution.id)?,
        };
        if let Some(mut item) = item {
            item.resolved = Some(resolution.clone());
            self.breaks.insert(item.id, item);
        }
        Ok(())
    }

    pub(super) fn settled(&mut self, settled: &SettledDay) {
        self.put("s/", &format!("{}/{}", settled.bank, settled.day), settled);
    }

    pub(super) fn reconciled(&mut self, reconciliation: &Reconciliation) {
        let k = reconciliation_key(
            reconciliation.side,
            &reconciliation.party,
            &reconciliation.day,
        );
        self.put_raw(k, json(reconciliation));
        for other in &reconciliation.other_day {
            let id = format!(
                "{}/{}/{}/{other}",
                reconciliation.side.as_str(),
                reconciliation.party,
                reconciliation.day
            );
            self.put_raw(key("mx/", &id), Vec::new());
        }
    }
}

impl BatchBuilder<'_> {
    pub(super) fn notification_queued(&mut self, seq: u64, notification: &Notification) {
        let item = NotificationItem {
            id: seq,
            notification: notification.clone(),
            failures: 0,
            last_attempt_ms: 0,
            last_error: None,
            sent_ms: None,
            last_attempt_seq: 0,
        };
        self.put_raw(key("ni/", &notification.identity), json(&seq));
        self.notifications.insert(seq, item);
    }

    /// Applies an attempt once: an item already holding it (a replay after a crash cut
    /// the index's writes short) is left as it is.
    pub(super) fn notification_attempt(
        &mut self,
        seq: u64,
        attempt: &NotificationAttempt,
    ) -> Result<(), StoreError> {
        let item = match self.notifications.remove(&attempt.id) {
            Some(item) => Some(item),
            None => self
                .store
                .get_json::<NotificationItem>(&notification_key(attempt.id))?,
        };
        let Some(mut item) = item else {
            return Ok(());
        };
        if attempt.error.is_some() {
            // The counter has its own guard: it may lag the item after a cut.
            let channel = item.notification.channel.clone();
            self.notification_failures
                .entry(channel)
                .or_default()
                .push(seq);
        }
        if item.last_attempt_seq < seq {
            item.last_attempt_seq = seq;
            item.last_attempt_ms = attempt.at_ms;
            match &attempt.error {
                Some(error) => {
                    item.failures += 1;
                    item.last_error = Some(error.clone());
                }
                None => item.sent_ms = Some(attempt.at_ms),
            }
        }
        self.notifications.insert(item.id, item);
        Ok(())
    }
}

pub(super) fn notification_key(id: u64) -> Vec<u8> {
    let mut k = b"n/".to_vec();
    k.extend_from_slice(&id.to_be_bytes());
    k
}

/// A channel's failed notification attempts, with the journal position of the last one
/// counted (a replay counts each once).
#[derive(Debug, Default, Serialize, Deserialize)]
struct FailureCount {
    count: u64,
    last_seq: u64,
}

/// Prefix of the pending index: `np/` and a notification's id (8 bytes, big-endian),
/// holding its channel, for as long as it is not sent.
const PENDING_NOTIFICATIONS: &[u8] = b"np/";

fn pending_notification_key(id: u64) -> Vec<u8> {
    let mut k = PENDING_NOTIFICATIONS.to_vec();
    k.extend_from_slice(&id.to_be_bytes());
    k
}

fn pending_id(k: &[u8]) -> Result<u64, StoreError> {
    let bytes = k
        .strip_prefix(PENDING_NOTIFICATIONS)
        .and_then(|b| b.try_into().ok());
    bytes
        .map(u64::from_be_bytes)
        .ok_or_else(|| StoreError::Damaged {
            key: String::from_utf8_lossy(k).into_owned(),
            reason: "not a pending notification's key".into(),
        })
}

/// The index writes of the notifications a batch touched: each item, its place in the
/// pending index (kept while it is not sent), and the channels' failure counters.
pub(super) fn outbox_writes(
    store: &Store,
    notifications: std::collections::HashMap<u64, NotificationItem>,
    failures: std::collections::HashMap<String, Vec<u64>>,
) -> Result<super::Writes, StoreError> {
    let mut writes = Vec::with_capacity(notifications.len() * 2 + failures.len());
    for (id, item) in notifications {
        let pending = item.sent_ms.is_none();
        let channel = pending.then(|| json(&item.notification.channel));
        writes.push((pending_notification_key(id), channel));
        writes.push((notification_key(id), Some(json(&item))));
    }
    for (channel, seqs) in failures {
        let k = key("nf/", &channel);
        let mut counter = store.get_json::<FailureCount>(&k)?.unwrap_or_default();
        let counted = counter.last_seq;
        for seq in seqs.into_iter().filter(|&seq| seq > counted) {
            counter.count += 1;
            counter.last_seq = seq;
        }
        writes.push((k, Some(json(&counter))));
    }
    Ok(writes)
}

pub(super) fn break_key(id: u64) -> Vec<u8> {
    let mut k = b"b/".to_vec();
    k.extend_from_slice(&id.to_be_bytes());
    k
}

fn reconciliation_key(side: Side, party: &str, day: &str) -> Vec<u8> {
    key("r/", &format!("{}/{party}/{day}", side.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::durable::record::Record;
    use crate::durable::store::Novelty;

    fn queued(identity: &str, channel: &str) -> Record {
        Record::NotificationQueued(Box::new(Notification {
            identity: identity.into(),
            channel: channel.into(),
            to: vec!["2065550100".into()],
            subject: identity.into(),
            body: "text".into(),
            attachment: None,
            at_ms: 1,
        }))
    }

    fn attempt(id: u64, error: Option<&str>) -> Record {
        Record::NotificationAttempt(NotificationAttempt {
            id,
            at_ms: 2,
            error: error.map(String::from),
        })
    }

    /// Three notifications: SMS 1 sent, SMS 2 failed once, email 3 failed twice.
    fn history() -> Vec<(u64, Record)> {
        vec![
            (1, queued("a", "sms")),
            (2, queued("b", "sms")),
            (3, queued("c", "email")),
            (4, attempt(1, None)),
            (5, attempt(2, Some("smsc down"))),
            (6, attempt(3, Some("refused"))),
            (7, attempt(3, Some("refused"))),
        ]
    }

    fn pending_ids(store: &Store) -> Vec<u64> {
        let pending = store.pending_notifications().expect("pending");
        pending.into_iter().map(|item| item.id).collect()
    }

    #[test]
    fn the_outbox_reads_only_what_waits_and_counts_failures_by_channel() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        store.apply(&history()).expect("apply");
        assert_eq!(pending_ids(&store), [2, 3]);
        assert_eq!(store.notification_tally("sms").expect("sms"), (1, 1));
        assert_eq!(store.notification_tally("email").expect("email"), (1, 2));
        store.apply(&[(8, attempt(2, None))]).expect("sent");
        assert_eq!(pending_ids(&store), [3]);
        assert_eq!(store.notification_tally("sms").expect("sms"), (0, 1));
    }

    #[test]
    fn an_index_write_cut_short_by_a_crash_counts_each_attempt_once_when_replayed() {
        let records = history();
        let (first, second) = records.split_at(4);
        let cuts = {
            let dir = tempfile::tempdir().expect("tempdir");
            let store = Store::open(dir.path()).expect("open");
            store.apply(first).expect("apply");
            let staged = store.stage(second, Novelty::MaybeApplied).expect("stage");
            staged.expect("fresh").0.0.len()
        };
        for cut in 0..=cuts {
            let dir = tempfile::tempdir().expect("tempdir");
            let store = Store::open(dir.path()).expect("open");
            store.apply(first).expect("apply");
            let staged = store.stage(second, Novelty::MaybeApplied).expect("stage");
            let ((writes, last), _) = staged.expect("fresh");
            let partial: super::super::Writes = writes.into_iter().take(cut).collect();
            store.write((partial, last)).expect("partial write");
            store.apply(&records).expect("replay");
            let items = store.notifications().expect("outbox");
            let failures: Vec<u32> = items.iter().map(|item| item.failures).collect();
            assert_eq!(failures, [0, 1, 2], "cut after {cut} of {cuts} writes");
            assert_eq!(store.notification_tally("email").expect("email"), (1, 2));
            assert_eq!(store.notification_tally("sms").expect("sms"), (1, 1));
            assert_eq!(pending_ids(&store), [2, 3], "cut after {cut}");
        }
    }

    #[test]
    fn a_data_directory_indexed_before_the_pending_index_gets_it_at_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = Store::open(dir.path()).expect("open");
            store.apply(&history()).expect("apply");
            // What an earlier version left: the items, no pending index, no counters.
            for prefix in [PENDING_NOTIFICATIONS, b"nf/", OUTBOX_INDEXED] {
                for entry in store.db.scan_prefix(prefix) {
                    let (k, _) = entry.expect("entry");
                    store.db.remove(k).expect("remove");
                }
            }
            assert_eq!(pending_ids(&store), Vec::<u64>::new());
            store.flush().expect("flush");
        }
        let store = Store::open(dir.path()).expect("reopen");
        assert_eq!(pending_ids(&store), [2, 3]);
        assert_eq!(store.notification_tally("email").expect("email"), (1, 2));
        store
            .apply(&[(8, attempt(3, Some("refused")))])
            .expect("again");
        assert_eq!(store.notification_tally("email").expect("email"), (1, 3));
    }
}
