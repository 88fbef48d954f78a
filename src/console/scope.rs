//! Who may do what, decided in one place on the server (the pages only hide what this
//! refuses). A [`Principal`] is a signed-in user or a machine client; [`Principal::may`]
//! answers for an [`Action`] by role, and the `sees_*` methods answer for one item by
//! scope: a csr sees its carriers' subscribers, a bank user its bank's transactions,
//! the other roles everything. What a principal may not see does not exist for it
//! (`404`); what it sees but may not do is `403`.

use crate::vocab::accounts::Account;
use crate::vocab::people::{ClientScope, Role, User};

/// Whoever is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A signed-in console user (as the index has them now).
    User(User),
    /// A machine client with a bearer token.
    Client {
        /// Its name.
        name: String,
        /// What it may call.
        scope: ClientScope,
    },
}

/// What a request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Read an account or a transaction (scope decides which).
    Read,
    /// Activate, assign a MIN, block.
    Activate,
    /// Ask for an adjustment, a resubmission or an unblock (the maker).
    Request,
    /// Approve or reject someone else's request (the checker).
    Approve,
    /// Read the audit trail.
    Audit,
    /// Read the exception queue.
    Queue,
    /// Read reconciliation breaks.
    Breaks,
}

impl Principal {
    /// The name audit entries carry.
    pub fn name(&self) -> &str {
        match self {
            Principal::User(user) => &user.name,
            Principal::Client { name, .. } => name,
        }
    }

    /// The user's role (none for a client).
    pub fn role(&self) -> Option<Role> {
        match self {
            Principal::User(user) => Some(user.role),
            Principal::Client { .. } => None,
        }
    }

    /// Whether the role allows `action` at all.
    pub fn may(&self, action: Action) -> bool {
        use Action as A;
        use Role as R;
        let Some(role) = self.role() else {
            return matches!(
                self,
                Principal::Client {
                    scope: ClientScope::Activation,
                    ..
                }
            ) && action == A::Activate;
        };
        match action {
            A::Read => true,
            A::Activate | A::Request => matches!(role, R::Csr | R::Admin),
            A::Approve => matches!(role, R::Supervisor | R::Admin),
            A::Audit => matches!(role, R::Auditor | R::Supervisor | R::Admin),
            A::Queue => matches!(
                role,
                R::Csr | R::Bank | R::Supervisor | R::Auditor | R::Admin
            ),
            A::Breaks => matches!(role, R::Bank | R::Supervisor | R::Auditor | R::Admin),
        }
    }

    /// Whether the subscribers of `carrier` are in scope.
    pub fn sees_carrier(&self, carrier: &str) -> bool {
        match self {
            Principal::User(user) => match user.role {
                Role::Csr => user.carriers.iter().any(|c| c == carrier),
                Role::Bank => false,
                Role::Admin | Role::Supervisor | Role::Auditor => true,
            },
            Principal::Client { .. } => true,
        }
    }

    /// Whether `account` is in scope.
    pub fn sees_account(&self, account: &Account) -> bool {
        self.sees_carrier(&account.carrier)
    }

    /// Whether a transaction of `carrier`'s subscriber that came from `bank` is in
    /// scope (either may be unknown).
    pub fn sees_transaction(&self, carrier: Option<&str>, bank: Option<&str>) -> bool {
        match self {
            Principal::User(user) => match user.role {
                Role::Csr => carrier.is_some_and(|c| self.sees_carrier(c)),
                Role::Bank => bank.is_some_and(|b| user.bank.as_deref() == Some(b)),
                Role::Admin | Role::Supervisor | Role::Auditor => true,
            },
            Principal::Client { .. } => false,
        }
    }

    /// Whether a four-eyes request about `carrier`'s subscriber (empty: none) is in
    /// scope: checkers and auditors see every request, makers their carriers'.
    pub fn sees_approval(&self, carrier: &str) -> bool {
        self.may(Action::Approve)
            || self.may(Action::Audit)
            || (!carrier.is_empty() && self.role() == Some(Role::Csr) && self.sees_carrier(carrier))
            || (carrier.is_empty() && self.role() == Some(Role::Admin))
    }

    /// Whether the engines' reconciliation breaks are in scope (not a bank's people).
    pub fn sees_engines(&self) -> bool {
        matches!(
            self.role(),
            Some(Role::Admin | Role::Supervisor | Role::Auditor)
        )
    }

    /// Whether `bank`'s reconciliation is in scope.
    pub fn sees_bank(&self, bank: &str) -> bool {
        match self {
            Principal::User(user) => match user.role {
                Role::Bank => user.bank.as_deref() == Some(bank),
                Role::Csr => false,
                Role::Admin | Role::Supervisor | Role::Auditor => true,
            },
            Principal::Client { .. } => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(role: Role, carriers: &[&str], bank: Option<&str>) -> Principal {
        Principal::User(User {
            name: "u".into(),
            role,
            carriers: carriers.iter().map(|c| (*c).to_owned()).collect(),
            bank: bank.map(str::to_owned),
            password_hash: String::new(),
            disabled: false,
        })
    }

    #[test]
    fn a_csr_sees_only_its_carriers_and_a_bank_only_its_bank() {
        let csr = user(Role::Csr, &["carrier-a"], None);
        assert!(csr.sees_carrier("carrier-a") && !csr.sees_carrier("carrier-b"));
        assert!(csr.sees_transaction(Some("carrier-a"), Some("any-bank")));
        assert!(!csr.sees_transaction(Some("carrier-b"), None));
        assert!(!csr.sees_transaction(None, Some("b")));
        let bank = user(Role::Bank, &[], Some("first-bank"));
        assert!(bank.sees_transaction(Some("carrier-a"), Some("first-bank")));
        assert!(!bank.sees_transaction(Some("carrier-a"), Some("second-bank")));
        assert!(!bank.sees_carrier("carrier-a"));
        assert!(bank.sees_bank("first-bank") && !bank.sees_bank("second-bank"));
        let auditor = user(Role::Auditor, &[], None);
        assert!(auditor.sees_transaction(None, None) && auditor.may(Action::Audit));
        assert!(!auditor.may(Action::Request) && !auditor.may(Action::Approve));
    }

    #[test]
    fn makers_and_checkers_are_different_roles() {
        let csr = user(Role::Csr, &["c"], None);
        let supervisor = user(Role::Supervisor, &[], None);
        assert!(csr.may(Action::Request) && !csr.may(Action::Approve));
        assert!(supervisor.may(Action::Approve) && !supervisor.may(Action::Request));
        let ivr = Principal::Client {
            name: "ivr".into(),
            scope: ClientScope::Activation,
        };
        assert!(ivr.may(Action::Activate) && !ivr.may(Action::Read));
    }
}
