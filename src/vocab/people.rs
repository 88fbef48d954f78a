//! The people and machines who operate the switch, and what they did: console users
//! with their role and scope ([`User`], [`Role`]), machine clients with a bearer token
//! ([`Client`]), the four-eyes requests that move money ([`Approval`]) and the audit
//! trail every change leaves ([`Audit`]). Secrets appear here only as hashes: a
//! password as an argon2id PHC string, a token as its SHA-256.

use serde::{Deserialize, Serialize};

/// The link name of the credits made on the console (approved adjustments): no bank
/// sends them, so no bank settles them; reports show them as `adjustment`.
pub const CONSOLE_LINK: &str = "console";

/// What reports name the group of console adjustments.
pub const ADJUSTMENT: &str = "adjustment";

/// What a console user may do (BACKOFFICE.md §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything.
    Admin,
    /// Approves what others requested; reads everything.
    Supervisor,
    /// Customer service of its carriers: their subscribers' accounts and transactions.
    Csr,
    /// A bank's back office: that bank's transactions and reconciliation.
    Bank,
    /// Reads everything, changes nothing.
    Auditor,
}

impl Role {
    /// Every role, for tables and help text.
    pub const ALL: [Role; 5] = [
        Role::Admin,
        Role::Supervisor,
        Role::Csr,
        Role::Bank,
        Role::Auditor,
    ];

    /// The name used on the command line and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Supervisor => "supervisor",
            Role::Csr => "csr",
            Role::Bank => "bank",
            Role::Auditor => "auditor",
        }
    }

    /// The role named `name`.
    pub fn parse(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == name)
    }
}

/// A console user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Sign-in name.
    pub name: String,
    /// What they may do.
    pub role: Role,
    /// A csr's carriers.
    #[serde(default)]
    pub carriers: Vec<String>,
    /// A bank user's bank.
    #[serde(default)]
    pub bank: Option<String>,
    /// The argon2id PHC string of the password (never the password).
    pub password_hash: String,
    /// A disabled user cannot sign in; their sessions end.
    #[serde(default)]
    pub disabled: bool,
}

/// What a machine client may call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientScope {
    /// `POST /api/v1/activations` (an IVR).
    Activation,
    /// The self-service channel API (a channel gateway).
    Channels,
}

impl ClientScope {
    /// The name on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientScope::Activation => "activation",
            ClientScope::Channels => "channels",
        }
    }
}

/// A machine client with a bearer token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Client {
    /// Its name (the user its audit entries name).
    pub name: String,
    /// What it may call.
    pub scope: ClientScope,
    /// SHA-256 of the token, hex (the token itself is shown once, when made).
    pub token_hash: String,
    /// A disabled client's token is refused.
    #[serde(default)]
    pub disabled: bool,
}

/// One entry of the audit trail: who did what to what, when, and how it ended, with
/// the item before and after (accounts masked).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Audit {
    /// Milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// The user or client.
    pub user: String,
    /// e.g. `activate`, `adjustment.request`, `approval.approve`, `user.add`.
    pub action: String,
    /// What it acted on (a masked account, an approval id, a user name).
    pub target: String,
    /// `ok`, `pending`, `done`, `rejected`, or the error.
    pub result: String,
    /// The item before, when it changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<serde_json::Value>,
    /// The item after, when it changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<serde_json::Value>,
}

/// What a four-eyes request asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Request {
    /// A goodwill credit to an account.
    Adjustment {
        /// The account (full: kept in the journal and the index like a decision's).
        account: String,
        /// Minor units.
        amount: u64,
        /// Why.
        reason: String,
    },
    /// An exception-queue item or reconciliation break, resubmitted.
    Resubmit {
        /// The item.
        item: u64,
    },
    /// A blocked account, unblocked.
    Unblock {
        /// The account.
        account: String,
    },
}

impl Request {
    /// The item a second pending request may not name: one at a time per item.
    pub fn item(&self) -> String {
        match self {
            Request::Adjustment { account, .. } => format!("adjustment:{account}"),
            Request::Resubmit { item } => format!("exception:{item}"),
            Request::Unblock { account } => format!("unblock:{account}"),
        }
    }

    /// The account it concerns, when it concerns one (for scope).
    pub fn account(&self) -> Option<&str> {
        match self {
            Request::Adjustment { account, .. } | Request::Unblock { account } => Some(account),
            Request::Resubmit { .. } => None,
        }
    }
}

/// Where a four-eyes request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApprovalState {
    /// Waiting for a second person.
    Pending,
    /// Approved and carried out.
    Done,
    /// Refused by the checker.
    Rejected,
}

impl ApprovalState {
    /// The JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalState::Pending => "pending",
            ApprovalState::Done => "done",
            ApprovalState::Rejected => "rejected",
        }
    }
}

/// A four-eyes request (maker-checker).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    /// Its id: the journal position of its request.
    pub id: u64,
    /// What it asks for.
    pub request: Request,
    /// The carrier of the account it concerns, for scope (empty when none).
    #[serde(default)]
    pub carrier: String,
    /// Who asked.
    pub maker: String,
    /// When asked, ms since the epoch.
    pub at_ms: i64,
    /// Where it stands.
    pub state: ApprovalState,
    /// Who approved or rejected it.
    #[serde(default)]
    pub checker: Option<String>,
    /// When, ms since the epoch.
    #[serde(default)]
    pub decided_ms: Option<i64>,
    /// The credit's confirmation number, once done.
    #[serde(default)]
    pub confirmation: Option<String>,
}
