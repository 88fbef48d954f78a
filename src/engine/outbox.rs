//! The outbox forwarder of one prepaid engine. Credits arrive as soon as the journal
//! batch that approved them is durable (and, after a restart, from the outbox index);
//! each is delivered by a task of its own, several in flight: a `0220` on a healthy
//! link (the primary when it is up), and without an ack within the ack timeout a
//! `0221` with the same DE11 and DE62 on the other link, then retries with backoff on
//! whichever link is up, for as long as it takes. A credit found in the outbox at start
//! may have been sent before the restart, so it goes out as `0221`. Every send and every
//! ack is journaled; an ack removes the outbox entry. The engine applies each DE62 once,
//! so a retransmission that crosses a late ack is harmless. Reversal advices (`0420`,
//! repeat `0421`) go the same way, each only after its credit's ack, so an engine never
//! sees a reversal before the credit; a credit that a reversal cancelled before its
//! first send is dropped (or sent with the reduced amount) here.

use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use super::Outbound;
use super::advice;
use super::backoff::Backoff;
use super::link::{self, ExchangeError, LinkHandle};
use super::unsent::{Fate, Unsent};
use crate::config::BackoffConfig;
use crate::durable::journal::Journal;
use crate::durable::record::{Delivery, Record};
use crate::durable::vault::Vault;
use crate::wire::iso8583::Message;

/// Credits of one engine in flight at once.
const IN_FLIGHT: usize = 256;

/// Credits of one engine started as tasks at once (queued for a link or in flight):
/// enough that a freed in-flight permit goes straight to a waiting task, few enough
/// that an engine outage does not hold a task per credit.
const STARTED: usize = 4 * IN_FLIGHT;

/// Most items taken from the queue in one go.
const RECEIVED_AT_ONCE: usize = 1024;

/// Counters of one engine's forwarding, for metrics and status.
#[derive(Debug, Default)]
pub struct Tally {
    /// Credits waiting for an ack (queued or in flight).
    pub outstanding: AtomicU64,
    /// First sends (`0220`).
    pub sent: AtomicU64,
    /// Retransmissions (`0221`).
    pub retransmitted: AtomicU64,
    /// Acks received.
    pub acked: AtomicU64,
    /// Milliseconds since the epoch when the oldest outstanding credit was queued (0
    /// when none is; approximate: the earliest still in flight).
    pub oldest_ms: AtomicU64,
}

/// One engine's forwarder.
pub struct Forwarder {
    /// The engine.
    pub engine: String,
    /// Its links, primary first.
    pub links: Vec<LinkHandle>,
    /// Where sends and acks are recorded.
    pub journal: Journal,
    /// Retry backoff.
    pub backoff: BackoffConfig,
    /// Counters.
    pub tally: Arc<Tally>,
    /// Credits approved but not yet sent, shared with the decider.
    pub unsent: Unsent,
    /// Credits sent or queued and not yet acknowledged.
    pub crediting: Crediting,
    /// The PIN key, for the `0220` of a generated PIN's sale (DE63 is the PIN).
    pub vault: Option<Arc<crate::durable::vault::Vault>>,
}

/// The confirmation numbers of credits not yet acknowledged, and a wake-up for the
/// reversal advices that wait for one of them.
#[derive(Debug, Default)]
pub struct Crediting {
    open: Mutex<BTreeSet<String>>,
    settled: Notify,
}

impl Crediting {
    fn open(&self, confirmation: &str) {
        self.lock().insert(confirmation.to_owned());
    }

    fn settle(&self, confirmation: &str) {
        self.lock().remove(confirmation);
        self.settled.notify_waiters();
    }

    /// Returns once the credit `confirmation` is acknowledged (at once if it is not
    /// waiting).
    async fn wait_settled(&self, confirmation: &str) {
        loop {
            let settled = self.settled.notified();
            tokio::pin!(settled);
            settled.as_mut().enable();
            if !self.lock().contains(confirmation) {
                return;
            }
            settled.await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Forwarder {
    /// Delivers `backlog` (as repeats) and then everything from `queue` until
    /// `shutdown`; undelivered items stay in the outbox for the next start.
    pub async fn run(
        self,
        backlog: Vec<Outbound>,
        mut queue: mpsc::UnboundedReceiver<Outbound>,
        shutdown: CancellationToken,
    ) {
        if !backlog.is_empty() {
            info!(engine = %self.engine, "{} undelivered credit(s) from the outbox", backlog.len());
        }
        let mut pending = Pending {
            forwarder: Arc::new(self),
            permits: Arc::new(Semaphore::new(IN_FLIGHT)),
            slots: Arc::new(Semaphore::new(STARTED)),
            tasks: TaskTracker::new(),
            shutdown: shutdown.clone(),
            waiting: VecDeque::new(),
        };
        for item in backlog {
            pending.admit(item, true);
        }
        let mut received = Vec::with_capacity(RECEIVED_AT_ONCE);
        loop {
            pending.start_ready();
            let slot = pending.slots.clone().acquire_owned();
            tokio::select! {
                () = shutdown.cancelled() => break,
                slot = slot, if !pending.waiting.is_empty() => match slot {
                    Ok(slot) => pending.start_next(slot),
                    Err(_) => break,
                },
                count = queue.recv_many(&mut received, RECEIVED_AT_ONCE) => {
                    if count == 0 {
                        break;
                    }
                    for item in received.drain(..) {
                        pending.admit(item, false);
                    }
                }
            }
        }
        pending.tasks.close();
        pending.tasks.wait().await;
    }

    /// Sends one credit or reversal advice until an engine acknowledges it.
    async fn deliver(&self, mut item: Outbound, repeat: bool, permits: &Semaphore) {
        if let Outbound::Reversal(advice) = &item {
            self.crediting
                .wait_settled(&advice.credit.confirmation)
                .await;
        }
        let Ok(_permit) = permits.acquire().await else {
            return;
        };
        let confirmation = item.credit().confirmation.clone();
        let seed = confirmation
            .bytes()
            .fold(0u64, |h, b| h.wrapping_mul(31) ^ u64::from(b));
        let mut backoff = Backoff::new(self.backoff.clone(), seed);
        let mut previous: Option<usize> = None;
        for attempt in 1u32.. {
            let index = self.choose(previous).await;
            if attempt == 1 && !self.first_send(&mut item).await {
                return self.finish(&item);
            }
            let link = &self.links[index];
            let message = outbound_message(&item, repeat || attempt > 1, self.vault.as_deref());
            self.record_send(&confirmation, link, message.mti().as_str(), attempt);
            match link.exchange(message).await {
                Ok(reply) if reply.text(39) == Some("00") => {
                    self.record_ack(&confirmation, link, reply.mti().as_str(), attempt);
                    return self.finish(&item);
                }
                Ok(reply) => {
                    warn!(engine = %self.engine, link = %link.address(), %confirmation,
                          "engine answered {} {:?}; retrying", reply.mti(), reply.text(39));
                    tokio::time::sleep(backoff.next_delay()).await;
                }
                Err(ExchangeError::Timeout) => {
                    warn!(engine = %self.engine, link = %link.address(), %confirmation,
                          "no ack within the ack timeout; retransmitting");
                    link.probe();
                    if attempt >= 2 {
                        tokio::time::sleep(backoff.next_delay()).await;
                    }
                }
                Err(ExchangeError::Down) => {
                    tokio::time::sleep(backoff.next_delay()).await;
                }
            }
            previous = Some(index);
        }
    }

    /// Whether a credit still goes out at its first send (a reversal may have cancelled
    /// or reduced it while it waited for a permit or a link).
    async fn first_send(&self, item: &mut Outbound) -> bool {
        let Outbound::Credit(credit) = item else {
            return true;
        };
        loop {
            match self.unsent.take(&credit.confirmation) {
                Fate::Send => return true,
                Fate::Pending => tokio::time::sleep(std::time::Duration::from_millis(1)).await,
                Fate::Resized { amount, after } => {
                    if let Err(e) = self.journal.wait_durable(after).await {
                        warn!(engine = %self.engine, "journal: {e}; credit left in the outbox");
                        return false;
                    }
                    credit.amount = amount;
                    return true;
                }
                Fate::Cancelled => {
                    info!(engine = %self.engine, confirmation = %credit.confirmation,
                          "credit reversed before it was sent: not sent");
                    return false;
                }
            }
        }
    }

    /// An item is done (acknowledged, or cancelled before its first send).
    fn finish(&self, item: &Outbound) {
        if self.tally.outstanding.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.tally.oldest_ms.store(0, Ordering::Relaxed);
        }
        if let Outbound::Credit(credit) = item {
            self.crediting.settle(&credit.confirmation);
        }
    }

    /// The link for the next attempt: the primary (or any up link) first, then the
    /// other link than last time when it is up; waits while every link is down.
    async fn choose(&self, previous: Option<usize>) -> usize {
        loop {
            let up: Vec<usize> = (0..self.links.len())
                .filter(|&i| self.links[i].is_up())
                .collect();
            let pick = match previous {
                None => up.first().copied(),
                Some(last) => up
                    .iter()
                    .copied()
                    .find(|&i| i != last)
                    .or(up.first().copied()),
            };
            if let Some(index) = pick {
                return index;
            }
            link::any_change(&self.links).await;
        }
    }

    fn record_send(&self, confirmation: &str, link: &LinkHandle, mti: &str, attempt: u32) {
        let first = attempt == 1 && (mti == "0220" || mti == "0420");
        let counter = if first {
            &self.tally.sent
        } else {
            &self.tally.retransmitted
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.journal_delivery(Record::CreditSent(self.delivery(
            confirmation,
            link,
            mti,
            attempt,
        )));
    }

    fn record_ack(&self, confirmation: &str, link: &LinkHandle, mti: &str, attempt: u32) {
        self.tally.acked.fetch_add(1, Ordering::Relaxed);
        self.journal_delivery(Record::CreditAcked(self.delivery(
            confirmation,
            link,
            mti,
            attempt,
        )));
    }

    fn delivery(&self, confirmation: &str, link: &LinkHandle, mti: &str, attempt: u32) -> Delivery {
        Delivery {
            engine: self.engine.clone(),
            confirmation: confirmation.to_owned(),
            mti: mti.to_owned(),
            link: link.address().to_string(),
            attempt,
            at_ms: now_ms() as i64,
        }
    }

    /// Journals a send or ack without waiting for the sync: losing one in a crash only
    /// means the credit is sent again as a repeat, which the engine answers `00`.
    fn journal_delivery(&self, record: Record) {
        if let Err(e) = self.journal.append(&record.to_bytes()) {
            warn!(engine = %self.engine, "journal: {e}");
        }
    }
}

/// What the forwarder has received and not yet started. A credit waits here, as a
/// value, until one of [`STARTED`] slots is free, so an engine outage holds its backlog
/// compactly rather than as a task per credit; a started credit then waits for one of
/// [`IN_FLIGHT`] permits to send. A reversal advice starts at once (its task waits for
/// its credit's ack, then for a permit); it arrives after its credit, which is marked
/// open as soon as it is received, so the advice cannot overtake it.
struct Pending {
    forwarder: Arc<Forwarder>,
    permits: Arc<Semaphore>,
    slots: Arc<Semaphore>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
    waiting: VecDeque<(Outbound, bool)>,
}

impl Pending {
    /// Counts a received item as outstanding; a credit waits for a slot, a reversal
    /// advice starts at once.
    fn admit(&mut self, item: Outbound, repeat: bool) {
        let tally = &self.forwarder.tally;
        tally.outstanding.fetch_add(1, Ordering::Relaxed);
        let _ =
            (tally.oldest_ms).compare_exchange(0, now_ms(), Ordering::Relaxed, Ordering::Relaxed);
        match &item {
            Outbound::Credit(credit) => {
                self.forwarder.crediting.open(&credit.confirmation);
                self.waiting.push_back((item, repeat));
            }
            Outbound::Reversal(_) => self.start(item, repeat, None),
        }
    }

    /// Starts waiting credits while slots are free.
    fn start_ready(&mut self) {
        while !self.waiting.is_empty() {
            match self.slots.clone().try_acquire_owned() {
                Ok(slot) => self.start_next(slot),
                Err(_) => break,
            }
        }
    }

    /// Starts the oldest waiting credit in `slot`.
    fn start_next(&mut self, slot: OwnedSemaphorePermit) {
        if let Some((item, repeat)) = self.waiting.pop_front() {
            self.start(item, repeat, Some(slot));
        }
    }

    /// Spawns the delivery of `item`; it holds `slot` (a credit's) until it is done.
    fn start(&self, item: Outbound, repeat: bool, slot: Option<OwnedSemaphorePermit>) {
        let (forwarder, permits) = (self.forwarder.clone(), self.permits.clone());
        let shutdown = self.shutdown.clone();
        self.tasks.spawn(async move {
            let _slot = slot;
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = forwarder.deliver(item, repeat, &permits) => {}
            }
        });
    }
}

/// The message of one attempt: `0220`/`0221` or `0420`/`0421`.
fn outbound_message(item: &Outbound, repeat: bool, vault: Option<&Vault>) -> Message {
    let now = chrono::Utc::now();
    let (mut message, credit) = match item {
        Outbound::Credit(credit) => (advice::credit(credit, repeat, now), credit),
        Outbound::Reversal(reversal) => (advice::reversal(reversal, repeat, now), &reversal.credit),
    };
    if let Some(voucher) = credit.voucher.as_deref().filter(|v| v.generated) {
        let pin = vault
            .ok_or_else(|| "no PIN key is open".to_owned())
            .and_then(|vault| {
                (vault.open(&voucher.serial, &voucher.pin)).map_err(|e| e.to_string())
            });
        match pin {
            Ok(pin) => message.set(63, pin),
            // The engine is told the serial (the confirmation number) instead.
            Err(e) => tracing::error!(serial = voucher.serial, "generated PIN not opened: {e}"),
        }
    }
    message
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
