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
}

impl Store {
    /// Every notification, oldest first.
    pub fn notifications(&self) -> Result<Vec<NotificationItem>, StoreError> {
        self.scan(b"n/")
    }

    /// Notifications waiting to be sent, and failed attempts so far (the metrics).
    pub fn notification_tally(&self, channel: &str) -> Result<(u64, u64), StoreError> {
        let items = self.notifications()?;
        let of_channel = || items.iter().filter(|i| i.notification.channel == channel);
        let pending = of_channel().filter(|i| i.sent_ms.is_none()).count() as u64;
        let failed = of_channel().map(|i| u64::from(i.failures)).sum();
        Ok((pending, failed))
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
        };
        self.put_raw(key("ni/", &notification.identity), json(&seq));
        self.notifications.insert(seq, item);
    }

    pub(super) fn notification_attempt(
        &mut self,
        attempt: &NotificationAttempt,
    ) -> Result<(), StoreError> {
        let item = match self.notifications.remove(&attempt.id) {
            Some(item) => Some(item),
            None => self
                .store
                .get_json::<NotificationItem>(&notification_key(attempt.id))?,
        };
        if let Some(mut item) = item {
            item.last_attempt_ms = attempt.at_ms;
            match &attempt.error {
                Some(error) => {
                    item.failures += 1;
                    item.last_error = Some(error.clone());
                }
                None => item.sent_ms = Some(attempt.at_ms),
            }
            self.notifications.insert(item.id, item);
        }
        Ok(())
    }
}

pub(super) fn notification_key(id: u64) -> Vec<u8> {
    let mut k = b"n/".to_vec();
    k.extend_from_slice(&id.to_be_bytes());
    k
}

pub(super) fn break_key(id: u64) -> Vec<u8> {
    let mut k = b"b/".to_vec();
    k.extend_from_slice(&id.to_be_bytes());
    k
}

fn reconciliation_key(side: Side, party: &str, day: &str) -> Vec<u8> {
    key("r/", &format!("{}/{party}/{day}", side.as_str()))
}
