//! The console's indexes, derived from the journal like the rest: users (`cu/`),
//! machine clients by name (`cc/`) and by token hash (`ct/`), four-eyes requests by id
//! (`ap/`) and the pending one of each item (`ai/`), the audit trail by journal
//! position (`au/`), accounts by MIN (`mn/`), channel enrolments by account (`en/`),
//! channel requests by client and idempotency key (`cr/`) and the open ones (`co/`).
//! An account's history needs no key of
//! its own: each day's usage slot names the last decision counted and each entry the
//! one before it, so the account page walks back through what the indexer writes
//! anyway.

use super::{BatchBuilder, Store, StoreError, json, key};
use crate::durable::record::{ChannelRequest, Enrolment, Saved, TransactionEntry};
use crate::vocab::accounts::Account;
use crate::vocab::key::TransactionKey;
use crate::vocab::people::{Approval, ApprovalState, Audit, Client, User};

impl Store {
    /// The console user `name`.
    pub fn user(&self, name: &str) -> Result<Option<User>, StoreError> {
        self.get_json(&key("cu/", name))
    }

    /// The channel enrolment of prepaid `account`, if it has one.
    pub fn enrolment(&self, account: &str) -> Result<Option<Enrolment>, StoreError> {
        self.get_json(&key("en/", account))
    }

    /// The channel request `id` (`CLIENT/KEY`).
    pub fn channel_request(&self, id: &str) -> Result<Option<ChannelRequest>, StoreError> {
        self.get_json(&key("cr/", id))
    }

    /// The channel requests with something still to do (an end, a reversal).
    pub fn open_channel_requests(&self) -> Result<Vec<ChannelRequest>, StoreError> {
        let ids: Vec<String> = self.scan(b"co/")?;
        let mut open = Vec::with_capacity(ids.len());
        for id in ids {
            open.extend(self.channel_request(&id)?);
        }
        Ok(open)
    }

    /// Every console user, by name.
    pub fn users(&self) -> Result<Vec<User>, StoreError> {
        self.scan(b"cu/")
    }

    /// The machine client `name`.
    pub fn client(&self, name: &str) -> Result<Option<Client>, StoreError> {
        self.get_json(&key("cc/", name))
    }

    /// Every machine client, by name.
    pub fn clients(&self) -> Result<Vec<Client>, StoreError> {
        self.scan(b"cc/")
    }

    /// The client whose token has SHA-256 `token_hash` (hex).
    pub fn client_by_token(&self, token_hash: &str) -> Result<Option<Client>, StoreError> {
        let name: Option<String> = self.get_json(&key("ct/", token_hash))?;
        match name {
            Some(name) => self.client(&name),
            None => Ok(None),
        }
    }

    /// Four-eyes request `id`.
    pub fn approval(&self, id: u64) -> Result<Option<Approval>, StoreError> {
        self.get_json(&approval_key(id))
    }

    /// Every four-eyes request, oldest first.
    pub fn approvals(&self) -> Result<Vec<Approval>, StoreError> {
        self.scan(b"ap/")
    }

    /// The pending request for `item` (see [`crate::vocab::people::Request::item`]).
    pub fn pending_approval(&self, item: &str) -> Result<Option<u64>, StoreError> {
        self.get_json(&key("ai/", item))
    }

    /// The audit trail, oldest first.
    pub fn audit(&self) -> Result<Vec<Audit>, StoreError> {
        self.scan(b"au/")
    }

    /// The account whose MIN is `min`.
    pub fn account_of_min(&self, min: &str) -> Result<Option<String>, StoreError> {
        self.get_json(&key("mn/", min))
    }

    /// The last `limit` decisions counted in `account`'s usage (approvals, credited
    /// advices, reversals), newest first.
    pub fn history(
        &self,
        account: &str,
        limit: usize,
    ) -> Result<Vec<(TransactionKey, TransactionEntry)>, StoreError> {
        let mut lines = Vec::new();
        let days = self.db.scan_prefix(key("u/", &format!("{account}/"))).rev();
        for slot in days {
            let (k, v) = slot?;
            let slot: super::UsageSlot = super::parse(&k, &v)?;
            let mut next = slot.last;
            while let Some(transaction) = next.take() {
                if lines.len() >= limit {
                    return Ok(lines);
                }
                let Some(entry) = self.transaction(&transaction)? else {
                    break;
                };
                next = entry.previous.clone().filter(|p| *p != transaction);
                lines.push((transaction, entry));
            }
        }
        Ok(lines)
    }
}

impl BatchBuilder<'_> {
    pub(super) fn enrolled(&mut self, saved: &Saved<Enrolment>, seq: u64) {
        self.put("en/", &saved.item.account, &saved.item);
        self.audited(seq, &saved.audit);
    }

    pub(super) fn channel_requested(&mut self, request: &ChannelRequest) {
        self.put("cr/", &request.id, request);
        match request.open() {
            true => self.put("co/", &request.id, &request.id),
            false => self.delete(key("co/", &request.id)),
        }
    }

    pub(super) fn user_saved(&mut self, saved: &Saved<User>, seq: u64) {
        self.put("cu/", &saved.item.name, &saved.item);
        self.audited(seq, &saved.audit);
    }

    pub(super) fn client_saved(&mut self, saved: &Saved<Client>, seq: u64) {
        let client = &saved.item;
        self.put("cc/", &client.name, client);
        self.put("ct/", &client.token_hash, &client.name);
        self.audited(seq, &saved.audit);
    }

    pub(super) fn approval_saved(&mut self, saved: &Saved<Approval>, seq: u64) {
        let mut approval = saved.item.clone();
        let mut audit = saved.audit.clone();
        if approval.id == 0 {
            approval.id = seq;
            if let Some(after) = audit.after.as_mut().and_then(|a| a.as_object_mut()) {
                after.insert("approval".into(), seq.into());
            }
        }
        let item = key("ai/", &approval.request.item());
        if approval.state == ApprovalState::Pending {
            self.put_raw(item, json(&approval.id));
        } else {
            self.delete(item);
        }
        self.put_raw(approval_key(approval.id), json(&approval));
        self.audited(seq, &audit);
    }

    pub(super) fn audited(&mut self, seq: u64, audit: &Audit) {
        let mut k = b"au/".to_vec();
        k.extend_from_slice(&seq.to_be_bytes());
        self.put_raw(k, json(audit));
    }

    /// An account stored (imported or changed): its MIN index follows it.
    pub(super) fn account_saved(&mut self, account: &Account) -> Result<(), StoreError> {
        let before: Option<Account> = match self.writes.get(&key("a/", &account.number)) {
            Some(Some(bytes)) => super::parse(b"a/", bytes).ok(),
            Some(None) => None,
            None => self.store.account(&account.number)?,
        };
        if let Some(old) = before.filter(|old| !old.min.is_empty() && old.min != account.min) {
            self.delete(key("mn/", &old.min));
        }
        if !account.min.is_empty() {
            self.put("mn/", &account.min, &account.number);
        }
        self.put("a/", &account.number, account);
        Ok(())
    }
}

fn approval_key(id: u64) -> Vec<u8> {
    let mut k = b"ap/".to_vec();
    k.extend_from_slice(&id.to_be_bytes());
    k
}
