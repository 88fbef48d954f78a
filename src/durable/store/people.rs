//! The console's indexes, derived from the journal like the rest: users (`cu/`),
//! machine clients by name (`cc/`) and by token hash (`ct/`), four-eyes requests by id
//! (`ap/`) and the pending one of each item (`ai/`), the audit trail by journal
//! position (`au/`), accounts by MIN (`mn/`) and each account's transactions
//! (`ah/ACCOUNT/` + position), which the account page lists.

use serde::{Deserialize, Serialize};

use super::{BatchBuilder, Store, StoreError, json, key};
use crate::durable::record::{Decision, Saved};
use crate::vocab::accounts::Account;
use crate::vocab::key::TransactionKey;
use crate::vocab::people::{Approval, ApprovalState, Audit, Client, User};

/// One line of an account's history: a decision that named it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryLine {
    /// The transaction key (the transaction's entry holds the rest).
    pub key: TransactionKey,
    /// When decided, ms since the epoch.
    pub at_ms: i64,
    /// The acquirer link it came on (a bank's, or `console` for an adjustment).
    #[serde(default)]
    pub link: String,
    /// The amount asked, minor units.
    #[serde(default)]
    pub amount: u64,
}

impl Store {
    /// The console user `name`.
    pub fn user(&self, name: &str) -> Result<Option<User>, StoreError> {
        self.get_json(&key("cu/", name))
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

    /// The link a decision that named `account` came on.
    pub fn link_of(
        &self,
        account: &str,
        key: &TransactionKey,
    ) -> Result<Option<String>, StoreError> {
        let prefix = self::key("ah/", &format!("{account}/"));
        for entry in self.db.scan_prefix(prefix).rev() {
            let (k, v) = entry?;
            let line: HistoryLine = super::parse(&k, &v)?;
            if &line.key == key {
                return Ok(Some(line.link));
            }
        }
        Ok(None)
    }

    /// The last `limit` decisions that named `account`, newest first.
    pub fn history(&self, account: &str, limit: usize) -> Result<Vec<HistoryLine>, StoreError> {
        let prefix = key("ah/", &format!("{account}/"));
        let mut lines = Vec::new();
        for entry in self.db.scan_prefix(prefix).rev().take(limit) {
            let (k, v) = entry?;
            lines.push(super::parse(&k, &v)?);
        }
        Ok(lines)
    }
}

impl BatchBuilder<'_> {
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

    /// A decision that named an account joins the account's history.
    pub(super) fn account_history(&mut self, seq: u64, decision: &Decision) {
        let Some(account) = &decision.account else {
            return;
        };
        let mut k = key("ah/", &format!("{account}/"));
        k.extend_from_slice(&seq.to_be_bytes());
        let line = HistoryLine {
            key: decision.key.clone(),
            at_ms: decision.at_ms,
            link: decision.summary.link.clone(),
            amount: decision.summary.amount.trim().parse().unwrap_or(0),
        };
        self.put_raw(k, json(&line));
    }
}

fn approval_key(id: u64) -> Vec<u8> {
    let mut k = b"ap/".to_vec();
    k.extend_from_slice(&id.to_be_bytes());
    k
}
