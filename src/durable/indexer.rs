//! Keeps the sled indexes and the exception logs up with the journal. On start,
//! [`replay`] applies every record the index lacks; while serving, [`spawn`] runs one
//! thread that applies each batch the journal reports durable, in order, and publishes
//! the last position applied (the decider prunes its memory by it). It also hands the
//! credits and reversal advices of each durable batch to the engine forwarders.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::handoff::{Outbound, Router};
use crate::durable::exceptions::ExceptionLog;
use crate::durable::journal::{self, JournalError};
use crate::durable::record::{Forwardable, Record};
use crate::durable::store::{Novelty, Store, StoreError};

/// Records applied per index batch during replay.
const REPLAY_BATCH: usize = 1024;

/// Why the index could not follow the journal.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IndexError {
    /// The journal could not be read.
    #[error("journal: {0}")]
    Journal(#[from] JournalError),
    /// The index failed.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// A record in the journal is not a record this version knows.
    #[error("journal record {seq}: {reason}")]
    Record {
        /// Its sequence number.
        seq: u64,
        /// The parse error.
        reason: String,
    },
    /// The exception log could not be written.
    #[error("exception log: {0}")]
    Log(#[from] std::io::Error),
    /// The router thread panicked.
    #[error("the router thread panicked")]
    RouterPanicked,
}

/// Applies the journal records after the index's position; returns how many.
pub fn replay(
    store: &Store,
    journal_dir: &Path,
    log: &mut ExceptionLog,
) -> Result<u64, IndexError> {
    let from = store.applied_seq()? + 1;
    let mut batch = Vec::with_capacity(REPLAY_BATCH);
    let mut count = 0;
    for record in journal::read_from(journal_dir, from)? {
        let record = record?;
        batch.push((record.seq, parse(record.seq, &record.body)?));
        if batch.len() == REPLAY_BATCH {
            count += apply(store, log, &batch, Novelty::MaybeApplied)?;
            batch.clear();
        }
    }
    count += apply(store, log, &batch, Novelty::MaybeApplied)?;
    log.flush()?;
    Ok(count)
}

/// Most records applied in one sled batch.
const MAX_APPLY: usize = 4096;

/// How long the indexer gathers durable batches before applying them to sled. 50 ms
/// gave more throughput at saturation (11,100-11,500 approved/s against 9,450) but a
/// p90 of 16 ms instead of 7-8 ms at 5,000/s: its bursts of sled work hold a core.
const COALESCE: Duration = Duration::from_millis(10);

/// Most journal records routed but not yet indexed (about ten seconds at
/// 20,000 approvals a second). When the indexer is this far behind, the router waits,
/// the journal writer waits behind it, and acks stop until the index catches up: the
/// lag, and the decider's memory of what the index lacks, stay bounded under sustained
/// overload.
pub const MAX_INDEX_LAG: u64 = 200_000;

/// Starts the threads that follow the journal's durable batches: a router that reads
/// each batch's credits and reversal advices and hands them to the engines at once,
/// and the indexer, which applies the batches to sled at the lowest priority, so that
/// on a busy machine the sessions answering acquirers come first and index work fills
/// the idle time. Both stop when the journal closes (the sender is dropped) or on the
/// first error, which the returned handle gives back; an error also sets `failed` at
/// once (the switch stops on it: it must not go on answering with indexes it cannot
/// keep). When the indexer has failed, the router still hands credits to the engines
/// while the switch drains.
pub fn spawn(
    store: Store,
    log: ExceptionLog,
    batches: Receiver<Vec<journal::Record>>,
    applied: Arc<AtomicU64>,
    router: Option<Router>,
    failed: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<Result<(), IndexError>>> {
    let (to_index, indexer_batches) = std::sync::mpsc::channel();
    let progress = Progress {
        applied: applied.clone(),
        indexing: Arc::new(AtomicBool::new(true)),
    };
    let followed = progress.clone();
    let router_failed = failed.clone();
    let routing = std::thread::Builder::new()
        .name("router".into())
        .spawn(move || {
            let routed = run_router(&batches, &to_index, router.as_ref(), &followed);
            report(&routed, &router_failed, "router");
            routed
        })?;
    std::thread::Builder::new()
        .name("indexer".into())
        .spawn(move || {
            yield_to_sessions();
            let indexed = run_indexer(&store, log, &indexer_batches, &applied);
            report(&indexed, &failed, "indexer");
            // The router ends when the journal closes, or early on a record it cannot
            // read; if the indexer stopped first, on an error, the router must not
            // wait for it any longer.
            progress.indexing.store(false, Ordering::Release);
            drop(indexer_batches);
            let routed = routing.join().unwrap_or(Err(IndexError::RouterPanicked));
            indexed.and(routed)
        })
}

/// Logs a thread's error at once and raises `failed`.
fn report(outcome: &Result<(), IndexError>, failed: &AtomicBool, thread: &str) {
    if let Err(e) = outcome {
        tracing::error!("{thread} stopped: {e}");
        failed.store(true, Ordering::Release);
    }
}

/// How far the indexer got, shared with the router.
#[derive(Clone)]
struct Progress {
    applied: Arc<AtomicU64>,
    /// Cleared when the indexer stops.
    indexing: Arc<AtomicBool>,
}

impl Progress {
    /// Waits while the index is more than [`MAX_INDEX_LAG`] records behind `seq`.
    fn wait_within_lag(&self, seq: u64) {
        while seq.saturating_sub(self.applied.load(Ordering::Acquire)) > MAX_INDEX_LAG
            && self.indexing.load(Ordering::Acquire)
        {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Routes the credits of durable batches, passes the batches on to the indexer.
fn run_router(
    batches: &Receiver<Vec<journal::Record>>,
    to_index: &Sender<Vec<journal::Record>>,
    router: Option<&Router>,
    progress: &Progress,
) -> Result<(), IndexError> {
    while let Ok(batch) = batches.recv() {
        if let Some(router) = router {
            route_credits(router, &batch)?;
        }
        let Some(last) = batch.last().map(|r| r.seq) else {
            continue;
        };
        // A failed indexer has dropped its end: credits are still routed.
        if to_index.send(batch).is_ok() {
            progress.wait_within_lag(last);
        }
    }
    Ok(())
}

/// Parses durable batches and applies them to sled, gathering those that arrive within
/// [`COALESCE`] into one sled batch: fewer, larger batches share the position and
/// counter writes, add up usage, and cancel outbox entries acknowledged within the
/// window.
fn run_indexer(
    store: &Store,
    mut log: ExceptionLog,
    batches: &Receiver<Vec<journal::Record>>,
    applied: &AtomicU64,
) -> Result<(), IndexError> {
    while let Ok(first) = batches.recv() {
        let deadline = Instant::now() + COALESCE;
        let mut records = parse_all(&first)?;
        while records.len() < MAX_APPLY {
            let wait = deadline.saturating_duration_since(Instant::now());
            match batches.recv_timeout(wait) {
                Ok(more) => records.extend(parse_all(&more)?),
                Err(_) => break,
            }
        }
        apply(store, &mut log, &records, Novelty::New)?;
        log.flush()?;
        if let Some((last, _)) = records.last() {
            applied.store(*last, Ordering::Release);
        }
    }
    store.flush()?;
    Ok(())
}

/// Lowers this thread's priority to the least (nice 19 on Linux).
fn yield_to_sessions() {
    use thread_priority::{ThreadPriority, set_current_thread_priority};
    if let Err(e) = set_current_thread_priority(ThreadPriority::Min) {
        tracing::debug!("indexer priority unchanged: {e:?}");
    }
}

fn parse_all(batch: &[journal::Record]) -> Result<Vec<(u64, Record)>, IndexError> {
    batch
        .iter()
        .map(|r| parse(r.seq, &r.body).map(|record| (r.seq, record)))
        .collect()
}

fn apply(
    store: &Store,
    log: &mut ExceptionLog,
    records: &[(u64, Record)],
    novelty: Novelty,
) -> Result<u64, IndexError> {
    store.apply_records(records, novelty)?;
    for (seq, record) in records {
        log.record(*seq, record)?;
    }
    Ok(records.len() as u64)
}

/// Hands the credits and reversal advices of durable records to their engines before
/// they are indexed: forwarding starts as soon as the journal has them.
fn route_credits(router: &Router, batch: &[journal::Record]) -> Result<(), IndexError> {
    for record in batch {
        let forwardable =
            Forwardable::from_bytes(&record.body).map_err(|e| IndexError::Record {
                seq: record.seq,
                reason: e.to_string(),
            })?;
        let advice = forwardable.advice().cloned();
        if let Some(credit) = forwardable.credit {
            router.route(Outbound::Credit(credit));
        }
        if let Some(advice) = advice {
            router.route(Outbound::Reversal(advice));
        }
    }
    Ok(())
}

fn parse(seq: u64, body: &[u8]) -> Result<Record, IndexError> {
    Record::from_bytes(body).map_err(|e| IndexError::Record {
        seq,
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_the_indexer_cannot_read_raises_failed_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("index")).expect("store");
        let log = ExceptionLog::open(&dir.path().join("exceptions"), &dir.path().join("fraud"))
            .expect("logs");
        let (sink, batches) = std::sync::mpsc::sync_channel(4);
        let failed = Arc::new(AtomicBool::new(false));
        let applied = Arc::new(AtomicU64::new(0));
        let handle =
            spawn(store, log, batches, applied, None, failed.clone()).expect("threads start");
        let garbage = journal::Record {
            seq: 1,
            body: bytes::Bytes::from_static(b"{not json"),
        };
        sink.send(vec![garbage]).expect("send");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !failed.load(Ordering::Acquire) {
            assert!(Instant::now() < deadline, "failed never raised");
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(sink);
        let outcome = handle.join().expect("indexer thread");
        assert!(
            matches!(outcome, Err(IndexError::Record { seq: 1, .. })),
            "{outcome:?}"
        );
    }
}
