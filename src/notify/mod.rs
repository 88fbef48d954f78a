//! Notifications for people, through a durable outbox: a notification is a journal
//! record before anything is sent, each attempt is one too, and a failed one is tried
//! again with backoff (1 s doubling to 5 min) until it goes. Sending never holds up or
//! fails what asked for it. Email over SMTP ([`email`], lettre with rustls and `ring`):
//! the reconciliation exception report of seed step 312. SMS over SMPP 3.4 ([`sms`]):
//! the self-service channels' receipts and failures (seed steps 406-407).
//!
//! May import: [`crate::durable`], [`crate::vocab`], [`crate::wire`], [`crate::config`].

pub mod email;
pub mod sms;

use crate::config::EmailConfig;
use crate::durable::record::{NotificationAttempt, Record};
use crate::durable::store::{NotificationItem, Store, StoreError};

/// How often the running switch looks for notifications that are due.
pub const POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// The longest wait between two attempts, milliseconds.
const MAX_BACKOFF_MS: i64 = 5 * 60 * 1000;

/// When a notification that failed `failures` times may be tried again.
pub(crate) fn due_at(item: &NotificationItem) -> i64 {
    if item.failures == 0 {
        return 0;
    }
    let backoff = 1000i64
        .saturating_mul(1 << item.failures.min(20))
        .min(MAX_BACKOFF_MS);
    item.last_attempt_ms.saturating_add(backoff)
}

/// Sends every email that is due and hands each attempt to `journal` as soon as it is
/// made (so a crash in the middle of a batch re-sends at most the one in flight).
/// Returns how many were attempted; stops at the first `journal` error.
pub fn deliver_due<E: From<StoreError>>(
    store: &Store,
    email: &EmailConfig,
    now_ms: i64,
    journal: &mut dyn FnMut(Record) -> Result<(), E>,
) -> Result<usize, E> {
    let mut attempted = 0;
    for item in store.notifications()? {
        if item.sent_ms.is_some() || item.notification.channel != "email" || due_at(&item) > now_ms
        {
            continue;
        }
        let error = email::send(email, &item.notification).err();
        match &error {
            Some(e) => tracing::warn!(notification = item.id, "email not sent (will retry): {e}"),
            None => tracing::info!(
                notification = item.id,
                "email sent: {}",
                item.notification.subject
            ),
        }
        journal(Record::NotificationAttempt(NotificationAttempt {
            id: item.id,
            at_ms: chrono::Utc::now().timestamp_millis(),
            error,
        }))?;
        attempted += 1;
    }
    Ok(attempted)
}
