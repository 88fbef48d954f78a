//! Credits approved but not yet put on an engine link, shared by the decider and the
//! forwarders. A reversal that finds its original's credit here changes or cancels it
//! before it leaves (the seed: "delete the original transaction from a queue of
//! messages to be sent"), and nothing goes to the engine; once the forwarder has taken
//! a credit for its first send, a reversal must be advised to the engine instead. The
//! one lock makes the two outcomes exclusive. A reduced credit goes out only once the
//! reversal that reduced it is durable: a crash in between must not leave the engine
//! with the reduced amount while the journal knows nothing of the reversal. Only credits approved since this process
//! started are here: a credit from the outbox at start may have been sent before, so a
//! reversal of it is always advised.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// What the forwarder does with a credit at its first send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Send it as approved (also for credits this table never saw).
    Send,
    /// A partial reversal came first: send this amount instead, once the journal
    /// record `after` (the reversal) is durable.
    Resized {
        /// The amount that remains.
        amount: u64,
        /// The reversal's journal record.
        after: u64,
    },
    /// A full reversal came first: send nothing.
    Cancelled,
    /// A reversal is being decided right now: ask again in a moment.
    Pending,
}

/// One credit's state before its first send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// As approved.
    Approved,
    /// Reduced to `remaining` by the reversal journaled as `seq` (none yet while the
    /// decider is still writing it).
    Reduced { remaining: u64, seq: Option<u64> },
}

/// The shared table: confirmation number to the credit's state.
#[derive(Debug, Clone, Default)]
pub struct Unsent(Arc<Mutex<BTreeMap<String, Slot>>>);

impl Unsent {
    /// Enters a credit just approved.
    pub fn insert(&self, confirmation: &str) {
        self.lock().insert(confirmation.to_owned(), Slot::Approved);
    }

    /// Takes a credit for its first send (the forwarder).
    pub fn take(&self, confirmation: &str) -> Fate {
        let mut table = self.lock();
        match table.get(confirmation).copied() {
            None | Some(Slot::Approved) => {
                table.remove(confirmation);
                Fate::Send
            }
            Some(Slot::Reduced { seq: None, .. }) => Fate::Pending,
            Some(Slot::Reduced {
                remaining,
                seq: Some(after),
            }) => {
                table.remove(confirmation);
                match remaining {
                    0 => Fate::Cancelled,
                    amount => Fate::Resized { amount, after },
                }
            }
        }
    }

    /// Changes a credit that has not left to `remaining` (0 cancels it); false when the
    /// credit was taken for sending already, or was never here (the decider). The
    /// decider then names the reversal's journal record with [`Unsent::journaled`].
    pub fn reduce(&self, confirmation: &str, remaining: u64) -> bool {
        match self.lock().get_mut(confirmation) {
            Some(slot) => {
                *slot = Slot::Reduced {
                    remaining,
                    seq: None,
                };
                true
            }
            None => false,
        }
    }

    /// The reduction of `confirmation` is journal record `seq`.
    pub fn journaled(&self, confirmation: &str, seq: u64) {
        if let Some(Slot::Reduced { seq: slot, .. }) = self.lock().get_mut(confirmation) {
            *slot = Some(seq);
        }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Slot>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reduction_wins_only_before_the_first_send() {
        let unsent = Unsent::default();
        unsent.insert("111");
        unsent.insert("222");
        unsent.insert("333");
        assert!(unsent.reduce("111", 0));
        assert!(unsent.reduce("222", 700));
        assert_eq!(
            unsent.take("222"),
            Fate::Pending,
            "its reversal is not journaled yet"
        );
        unsent.journaled("111", 41);
        unsent.journaled("222", 42);
        assert_eq!(unsent.take("111"), Fate::Cancelled);
        assert_eq!(
            unsent.take("222"),
            Fate::Resized {
                amount: 700,
                after: 42
            }
        );
        assert_eq!(unsent.take("333"), Fate::Send);
        assert!(
            !unsent.reduce("333", 0),
            "taken: the reversal must be advised"
        );
        assert!(!unsent.reduce("444", 0), "never seen: may have been sent");
        assert_eq!(unsent.take("444"), Fate::Send);
    }
}
