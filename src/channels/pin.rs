//! The channel PIN (BACKOFFICE.md §6): checked against the enrolment's argon2id hash
//! (argon2's verification compares in constant time), three wrong in a row lock the
//! enrolment until an operator unlocks it on the console, and every wrong PIN is a line
//! in the fraud log. A check that changes the count is a journal record (the enrolment
//! as it stands after it); the caller journals it before it answers, one request per
//! account at a time.

use crate::console::enrol::counted;
use crate::console::secrets;
use crate::durable::exceptions::WRONG_PIN;
use crate::durable::record::{Enrolment, Record};

/// Wrong PINs in a row that lock an enrolment.
pub const MAX_WRONG: u32 = 3;

/// What checking a PIN found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The right PIN.
    Right,
    /// A wrong PIN: `401 {"error":"wrong_pin","attempts_left"}`.
    Wrong {
        /// Tries left before the lock.
        attempts_left: u32,
    },
    /// Locked: `423 {"error":"locked"}` (also for the right PIN).
    Locked,
}

/// Checks `pin` against `enrolment` (for a request through `channel`): the verdict,
/// and the record to journal when the count changes.
pub fn check(enrolment: &Enrolment, pin: &str, channel: &str) -> (Verdict, Option<Record>) {
    if enrolment.locked {
        return (Verdict::Locked, None);
    }
    let right = secrets::verify_password(pin, Some(&enrolment.pin_hash));
    let mut after = enrolment.clone();
    let (verdict, action, result) = if right {
        if enrolment.failures == 0 {
            return (Verdict::Right, None);
        }
        after.failures = 0;
        (Verdict::Right, "channel.pin_right", "ok")
    } else {
        after.failures = enrolment.failures.saturating_add(1);
        after.locked = after.failures >= MAX_WRONG;
        let verdict = match after.locked {
            true => Verdict::Locked,
            false => Verdict::Wrong {
                attempts_left: MAX_WRONG - after.failures,
            },
        };
        let result = if after.locked { "locked" } else { "wrong_pin" };
        (verdict, WRONG_PIN, result)
    };
    let record = counted(enrolment, after, channel, action, result);
    (verdict, Some(record))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::durable::vault::Sealed;

    fn enrolment() -> Enrolment {
        Enrolment {
            account: "4761739001010010".into(),
            pin_hash: secrets::hash_secret("4321").expect("hash"),
            debit_bank: "first-bank".into(),
            debit_account: Sealed {
                key: "k".into(),
                data: String::new(),
            },
            debit_masked: "541333******0012".into(),
            failures: 0,
            locked: false,
        }
    }

    fn after(record: Option<Record>) -> Enrolment {
        match record {
            Some(Record::Enrolled(saved)) => saved.item,
            other => panic!("an enrolment record, not {other:?}"),
        }
    }

    #[test]
    fn three_wrong_pins_in_a_row_lock_until_an_operator_unlocks() {
        let start = enrolment();
        assert_eq!(check(&start, "4321", "web"), (Verdict::Right, None));
        let (verdict, record) = check(&start, "1111", "web");
        assert_eq!(verdict, Verdict::Wrong { attempts_left: 2 });
        let once = after(record);
        // The right PIN resets the count.
        let (verdict, record) = check(&once, "4321", "web");
        assert_eq!((verdict, after(record).failures), (Verdict::Right, 0));
        let twice = after(check(&once, "2222", "ivr").1);
        assert_eq!(check(&twice, "3333", "ivr").0, Verdict::Locked);
        let locked = after(check(&twice, "3333", "ivr").1);
        assert!(locked.locked);
        assert_eq!(
            check(&locked, "4321", "web"),
            (Verdict::Locked, None),
            "even right"
        );
        let open = after(Some(crate::console::enrol::unlock(&locked, "ana")));
        assert_eq!((open.locked, open.failures), (false, 0));
        assert_eq!(check(&open, "4321", "web").0, Verdict::Right);
    }

    #[test]
    fn a_wrong_pin_is_a_fraud_line_with_the_account_masked() {
        let (_, record) = check(&enrolment(), "9999", "web");
        let record = record.expect("a record");
        let (line, fraud) = crate::durable::exceptions::Exception::of(7, &record).expect("a line");
        assert!(fraud, "in the fraud log");
        assert_eq!(line.account.as_deref(), Some("476173******0010"));
        assert_eq!(line.reason, "wrong channel PIN (1 in a row)");
        assert_eq!(line.summary.link, "web");
    }

    #[test]
    fn the_audit_entry_holds_no_pin_or_hash() {
        let (_, record) = check(&enrolment(), "9999", "web");
        let text = serde_json::to_string(&record).expect("json");
        let Some(Record::Enrolled(saved)) = record else {
            panic!("a record");
        };
        let audit = serde_json::to_string(&saved.audit).expect("json");
        assert!(
            !audit.contains("9999") && !audit.contains("argon2"),
            "{audit}"
        );
        assert!(!text.contains("9999"), "the PIN given is never kept");
    }
}
