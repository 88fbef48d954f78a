//! Credits approved but not yet put on an engine link, shared by the decider and the
//! forwarders. A reversal that finds its original's credit here changes or cancels it
//! before it leaves (the seed: "delete the original transaction from a queue of
//! messages to be sent"), and nothing goes to the engine; once the forwarder has taken
//! a credit for its first send, a reversal must be advised to the engine instead. The
//! one lock makes the two outcomes exclusive. Only credits approved since this process
//! started are here: a credit from the outbox at start may have been sent before, so a
//! reversal of it is always advised.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// What the forwarder does with a credit at its first send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Send it as approved (also for credits this table never saw).
    Send,
    /// A partial reversal came first: send this amount instead.
    Resized(u64),
    /// A full reversal came first: send nothing.
    Cancelled,
}

/// The shared table: confirmation number to the amount to send (`None`: as approved).
#[derive(Debug, Clone, Default)]
pub struct Unsent(Arc<Mutex<HashMap<String, Option<u64>>>>);

impl Unsent {
    /// Enters a credit just approved.
    pub fn insert(&self, confirmation: &str) {
        self.lock().insert(confirmation.to_owned(), None);
    }

    /// Takes a credit for its first send (the forwarder).
    pub fn take(&self, confirmation: &str) -> Fate {
        match self.lock().remove(confirmation) {
            None | Some(None) => Fate::Send,
            Some(Some(0)) => Fate::Cancelled,
            Some(Some(amount)) => Fate::Resized(amount),
        }
    }

    /// Changes a credit that has not left to `remaining` (0 cancels it); false when the
    /// credit was taken for sending already, or was never here (the decider).
    pub fn reduce(&self, confirmation: &str, remaining: u64) -> bool {
        match self.lock().get_mut(confirmation) {
            Some(slot) => {
                *slot = Some(remaining);
                true
            }
            None => false,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Option<u64>>> {
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
        assert_eq!(unsent.take("111"), Fate::Cancelled);
        assert_eq!(unsent.take("222"), Fate::Resized(700));
        assert_eq!(unsent.take("333"), Fate::Send);
        assert!(
            !unsent.reduce("333", 0),
            "taken: the reversal must be advised"
        );
        assert!(!unsent.reduce("444", 0), "never seen: may have been sent");
        assert_eq!(unsent.take("444"), Fate::Send);
    }
}
