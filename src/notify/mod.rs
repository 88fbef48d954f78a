//! Notifications for people, through a durable outbox: a notification is a journal
//! record before anything is sent, each attempt is one too, and a failed one is tried
//! again with backoff (1 s doubling to 5 min) until it goes. Sending never holds up or
//! fails what asked for it. Email over SMTP ([`email`], lettre with rustls and `ring`):
//! the reconciliation exception report of seed step 312. SMS over SMPP 3.4 ([`sms`]):
//! the self-service channels' receipts and failures (seed steps 406-407). One pass over
//! the outbox ([`deliver_due`]) serves both channels with the [`Senders`] it is given,
//! which keep the SMSC session from one pass to the next; the running switch makes a
//! pass every [`POLL`], an offline reconciliation one at its end.
//!
//! May import: [`crate::durable`], [`crate::vocab`], [`crate::wire`], [`crate::config`].

pub mod email;
pub mod sms;

use std::collections::{BTreeMap, BTreeSet};

use crate::config::{EmailConfig, NotifyConfig};
use crate::durable::record::{Notification, NotificationAttempt, Record};
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

/// What the outbox sends with: the configured channels (`[notify.email]`,
/// `[notify.sms]`), kept from one pass to the next (the SMSC session lives here).
pub struct Senders {
    email: Option<EmailConfig>,
    sms: Option<sms::Sender>,
    /// The channels whose waiting notifications were already reported as unconfigured.
    reported: BTreeSet<String>,
}

impl Senders {
    /// The senders of the channels `notify` configures.
    pub fn new(notify: &NotifyConfig) -> Senders {
        Senders {
            email: notify.email.clone(),
            sms: notify.sms.clone().map(sms::Sender::new),
            reported: BTreeSet::new(),
        }
    }

    /// Whether no channel is configured.
    pub fn is_empty(&self) -> bool {
        self.email.is_none() && self.sms.is_none()
    }

    /// Sends `notification` on its channel: what the server said (an SMS's message id,
    /// or nothing), or why it failed; `None` when its channel is not configured.
    fn send(&mut self, notification: &Notification) -> Option<Result<String, String>> {
        match notification.channel.as_str() {
            "email" => {
                Some(email::send(self.email.as_ref()?, notification).map(|()| String::new()))
            }
            sms::CHANNEL => Some(self.sms.as_mut()?.send(notification)),
            _ => None,
        }
    }

    /// Says once per channel that notifications wait for a channel not configured.
    fn report_unconfigured(&mut self, waiting: BTreeMap<String, usize>) {
        for (channel, count) in waiting {
            if self.reported.insert(channel.clone()) {
                tracing::warn!(
                    channel = %channel,
                    "{count} {channel} notification(s) wait: [notify.{channel}] is not configured"
                );
            }
        }
    }

    /// Between passes: keeps the SMSC session alive.
    fn keep_alive(&mut self) {
        if let Some(sms) = &mut self.sms {
            sms.keep_alive();
        }
    }

    /// At stop: unbinds from the SMSC.
    pub fn stop(&mut self) {
        if let Some(sms) = &mut self.sms {
            sms.unbind();
        }
    }
}

/// Sends every notification that is due on its configured channel and hands each
/// attempt to `journal` as soon as it is made (so a crash in the middle of a batch
/// re-sends at most the one in flight). After a failed attempt the rest of that channel
/// waits for the next pass (each item keeps its own backoff); a notification whose
/// channel is not configured stays pending. Returns how many were attempted; stops at
/// the first `journal` error. Blocking: run it off the async threads and off any lock
/// the money path takes.
pub fn deliver_due<E: From<StoreError>>(
    store: &Store,
    senders: &mut Senders,
    now_ms: i64,
    journal: &mut dyn FnMut(Record) -> Result<(), E>,
) -> Result<usize, E> {
    let mut attempted = 0;
    let mut failed: BTreeSet<String> = BTreeSet::new();
    let mut unconfigured: BTreeMap<String, usize> = BTreeMap::new();
    for item in store.pending_notifications()? {
        let channel = &item.notification.channel;
        if item.sent_ms.is_some() || due_at(&item) > now_ms || failed.contains(channel) {
            continue;
        }
        let Some(sent) = senders.send(&item.notification) else {
            *unconfigured.entry(channel.clone()).or_default() += 1;
            continue;
        };
        let error = sent.as_ref().err().cloned();
        log_attempt(&item, &sent);
        if error.is_some() {
            failed.insert(channel.clone());
        }
        journal(Record::NotificationAttempt(NotificationAttempt {
            id: item.id,
            at_ms: chrono::Utc::now().timestamp_millis(),
            error,
        }))?;
        attempted += 1;
    }
    senders.report_unconfigured(unconfigured);
    senders.keep_alive();
    Ok(attempted)
}

fn log_attempt(item: &NotificationItem, sent: &Result<String, String>) {
    let channel = &item.notification.channel;
    match sent {
        Err(e) => tracing::warn!(
            notification = item.id,
            channel = %channel,
            "{channel} not sent (will retry): {e}"
        ),
        Ok(id) => tracing::info!(
            notification = item.id,
            channel = %channel,
            server.id = %id,
            "{channel} sent: {}",
            item.notification.subject
        ),
    }
}
