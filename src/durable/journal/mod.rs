//! The journal: an append-only log of opaque records, the switch's durability barrier
//! and its audit trail. It owns the segment files in one directory, the single writer
//! thread that makes records durable by group commit (one `write` and one `fdatasync`
//! per batch), and recovery on start (every CRC and the sequence chain are checked; a
//! torn tail is cut and reported, corruption anywhere else refuses to start).
//!
//! A response to a bank is sent only after [`Journal::wait_durable`] returned for its
//! record. After any write or sync error the journal is poisoned: the error is never
//! retried (a failed `fsync` may have dropped dirty pages, so retrying it could report
//! lost data as durable), and every waiter and every later append gets
//! [`JournalError::Poisoned`].
//!
//! On disk: files named by the first sequence number they hold, zero-padded to 20
//! digits, with the suffix `.wal` (`00000000000000000001.wal`). Each record is
//! `[len u32 LE][crc32c u32 LE][payload]`, where payload is `[seq u64 LE][body]`, `len`
//! is the payload's length and the CRC (CRC-32C) covers the payload. Sequence numbers
//! start at 1 and are consecutive across segments.
//!
//! A segment may end in zeros: the writer fills space made in advance (see [`space`]),
//! so the records end at the first all-zero header when everything after it is zero
//! too. Recovery and readers take such a tail as free space, not as damage.

mod reader;
mod recovery;
mod space;
mod writer;

pub use reader::{Reader, read_from};
use recovery::*;
use writer::*;

use std::collections::VecDeque;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read};
use std::ops::RangeInclusive;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use bytes::Bytes;
use crc::{CRC_32_ISCSI, Crc, Table};
use tokio::sync::watch;
use tracing::{debug, error, warn};

/// Default [`JournalConfig::segment_bytes`]: 64 MiB.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
/// Default [`JournalConfig::max_record`]: 1 MiB.
pub const DEFAULT_MAX_RECORD: usize = 1024 * 1024;

/// Bytes before the payload: `len` and `crc`.
const HEADER: usize = 8;
/// Bytes of the sequence number that starts every payload.
const SEQ: usize = 8;
/// The smallest record on disk: a header and a sequence number, no body.
const MIN_FRAME: usize = HEADER + SEQ;
/// The writer takes at most this many bytes per batch (a single `append_all` may
/// exceed it), so that one fdatasync, and the latency of its waiters, stays bounded.
const BATCH_CAP: usize = 16 * 1024 * 1024;
/// Suffix of segment file names.
const SEGMENT_SUFFIX: &str = ".wal";
/// Digits of a segment file name.
const NAME_DIGITS: usize = 20;
/// Bytes a reader reserves up front for a payload, whatever its length field says.
const READ_RESERVE: usize = 64 * 1024;

/// CRC-32C (Castagnoli, iSCSI), with the 16-slice table.
static CRC32C: Crc<u32, Table<16>> = Crc::<u32, Table<16>>::new(&CRC_32_ISCSI);

/// Where the journal lives and how it cuts its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalConfig {
    /// The directory of segment files; created if missing. No default.
    pub dir: PathBuf,
    /// A record that would take the current segment past this many bytes starts a new
    /// segment (a record larger than this gets a segment of its own). Default 64 MiB.
    pub segment_bytes: u64,
    /// The largest body an append accepts, in bytes; a larger one is
    /// [`JournalError::TooLarge`]. Default 1 MiB.
    pub max_record: usize,
    /// Make each next segment in advance as a synced file of zeros, so that appends
    /// overwrite space instead of growing a file and every `fdatasync` writes data
    /// only (see [`space`]). Default on; off, segments grow as they are written.
    pub prepare_segments: bool,
}

impl JournalConfig {
    /// A journal in `dir` with the default segment size and record limit.
    pub fn new(dir: impl Into<PathBuf>) -> JournalConfig {
        JournalConfig {
            dir: dir.into(),
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            max_record: DEFAULT_MAX_RECORD,
            prepare_segments: true,
        }
    }

    /// The largest body that fits both `max_record` and the `u32` length field.
    fn body_limit(&self) -> usize {
        self.max_record.min(u32::MAX as usize - SEQ)
    }
}

/// One journal record: its sequence number and the body the caller appended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The sequence number the journal gave it.
    pub seq: u64,
    /// The body, as appended.
    pub body: Bytes,
}

/// What [`Journal::open`] found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// The sequence number of the last record kept (0 for an empty journal).
    pub last_seq: u64,
    /// How many records the segments hold after recovery.
    pub records: u64,
    /// The torn tail that was cut off, if there was one.
    pub cut: Option<CutTail>,
}

/// A torn tail that recovery cut off the last segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CutTail {
    /// The segment file that was truncated.
    pub segment: PathBuf,
    /// Where the first bad record started, now the segment's length.
    pub offset: u64,
    /// How many bytes were removed.
    pub bytes_removed: u64,
    /// What was wrong with the first bad record.
    pub reason: Defect,
}

/// What is wrong with a record on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Defect {
    /// Zero bytes where a header should be (preallocated or zero-filled space).
    Zeros,
    /// The file ends inside the 8-byte header.
    ShortHeader {
        /// Header bytes present.
        available: usize,
    },
    /// The length field is smaller than a sequence number.
    BadLength {
        /// The length field.
        len: u32,
    },
    /// The payload runs past the end of the file.
    PastEnd {
        /// The length field.
        len: u32,
        /// Payload bytes present.
        available: usize,
    },
    /// The stored CRC does not match the payload.
    BadCrc {
        /// The CRC in the header.
        stored: u32,
        /// The CRC of the payload.
        computed: u32,
    },
    /// The sequence number breaks the chain.
    SeqBreak {
        /// The sequence number that should be there.
        expected: u64,
        /// The one that is.
        found: u64,
    },
}

impl fmt::Display for Defect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Defect::Zeros => write!(f, "zero-filled space instead of a record"),
            Defect::ShortHeader { available } => {
                write!(f, "file ends after {available} of {HEADER} header bytes")
            }
            Defect::BadLength { len } => {
                write!(f, "length {len} is shorter than a sequence number")
            }
            Defect::PastEnd { len, available } => {
                write!(
                    f,
                    "length {len} runs past the end of the file ({available} bytes left)"
                )
            }
            Defect::BadCrc { stored, computed } => {
                write!(
                    f,
                    "crc32c mismatch: stored {stored:08x}, computed {computed:08x}"
                )
            }
            Defect::SeqBreak { expected, found } => {
                write!(f, "sequence break: expected seq {expected}, found {found}")
            }
        }
    }
}

/// Why the journal could not open, take, sync or read records.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    /// A segment file or the directory could not be listed, opened, read, written or
    /// synced.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// A bad record that is not a torn tail: it lies in a segment other than the last,
    /// or valid records with higher sequence numbers follow it. The journal refuses to
    /// start rather than drop records that may have been acknowledged; nothing was
    /// changed on disk.
    #[error("{}: corrupt record at offset {offset}: {reason}", segment.display())]
    Corrupt {
        /// The segment file.
        segment: PathBuf,
        /// Where the bad record starts.
        offset: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// A body larger than [`JournalConfig::max_record`]; nothing was appended.
    #[error("record of {len} bytes is larger than the maximum of {max}")]
    TooLarge {
        /// The body's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A write or fdatasync failed earlier. Records not durable by then never will be,
    /// and the journal takes no more: restart the process (recovery decides what is on
    /// disk).
    #[error("the journal failed to write or sync earlier and takes no more records")]
    Poisoned,
    /// The journal was closed.
    #[error("the journal is closed")]
    Closed,
}

/// A handle on an open journal. Cheap to clone; every clone appends to the same log.
/// Dropping the last handle closes the journal as [`Journal::close`] does.
#[derive(Clone)]
pub struct Journal {
    inner: Arc<Inner>,
}

impl fmt::Debug for Journal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Journal")
            .field("last_seq", &self.last_seq())
            .field("durable_seq", &self.durable_seq())
            .finish_non_exhaustive()
    }
}

impl Journal {
    /// Opens the journal in `config.dir` (creating it), recovers it and starts the
    /// writer thread.
    ///
    /// Recovery reads every segment, checks every CRC and the sequence chain, cuts a
    /// torn tail off the last segment (logging a warning and returning it in
    /// [`Recovery::cut`]) and fails with [`JournalError::Corrupt`] on any other bad
    /// record. `sink`, if given, receives every record once it is durable, in order,
    /// one `Vec` per group commit; it is dropped when the writer stops. A full sink
    /// holds the writer back (and with it every ack): a consumer that falls behind
    /// slows the journal down instead of letting its backlog grow without bound.
    pub fn open(
        config: JournalConfig,
        sink: Option<SyncSender<Vec<Record>>>,
    ) -> Result<(Journal, Recovery), JournalError> {
        let (recovery, tail) = recover(&config)?;
        let segment = SegmentWriter::open(&config, tail)?;
        let shared = Arc::new(Shared::new(recovery.last_seq));
        let thread_shared = Arc::clone(&shared);
        let writer = std::thread::Builder::new()
            .name("journal-writer".into())
            .spawn(move || run_writer(&thread_shared, segment, sink))
            .map_err(io_error(&config.dir))?;
        debug!(
            journal.dir = %config.dir.display(),
            journal.last_seq = recovery.last_seq,
            "journal open"
        );
        let inner = Inner {
            shared,
            writer: Mutex::new(Some(writer)),
            body_limit: config.body_limit(),
        };
        Ok((
            Journal {
                inner: Arc::new(inner),
            },
            recovery,
        ))
    }

    /// Queues one record and returns its sequence number at once; it is not durable
    /// until [`Journal::wait_durable`] says so.
    pub fn append(&self, body: &[u8]) -> Result<u64, JournalError> {
        self.append_all(&[body]).map(|seqs| *seqs.start())
    }

    /// Queues records with consecutive sequence numbers that become durable in the
    /// same group commit. An empty `bodies` appends nothing and returns an empty range.
    /// If one body is too large, none is appended.
    pub fn append_all(&self, bodies: &[&[u8]]) -> Result<RangeInclusive<u64>, JournalError> {
        let limit = self.inner.body_limit;
        if let Some(body) = bodies.iter().find(|body| body.len() > limit) {
            return Err(JournalError::TooLarge {
                len: body.len(),
                max: limit,
            });
        }
        let shared = &self.inner.shared;
        let mut queue = lock(&shared.queue);
        queue.status.accepting()?;
        let first = queue.next_seq;
        let count = bodies.len() as u64;
        if count > 0 {
            let bytes = bodies.iter().map(|body| MIN_FRAME + body.len()).sum();
            let batch = queue.batch_for(bytes);
            for (seq, body) in (first..).zip(bodies) {
                batch.push(seq, body);
            }
            queue.next_seq = first + count;
            shared.last.store(first + count - 1, Ordering::Release);
        }
        drop(queue);
        if count > 0 {
            shared.work.notify_one();
        }
        Ok(first..=first + count - 1)
    }

    /// Resolves once record `seq` is on stable storage. Fails with
    /// [`JournalError::Poisoned`] if the writer failed before that, or
    /// [`JournalError::Closed`] if the journal closed without it.
    pub async fn wait_durable(&self, seq: u64) -> Result<(), JournalError> {
        let shared = &self.inner.shared;
        if shared.durable.load(Ordering::Acquire) >= seq {
            return Ok(());
        }
        let mut progress = shared.watch.subscribe();
        let outcome = progress
            .wait_for(|p| p.settles(seq))
            .await
            .map(|p| p.outcome(seq));
        outcome.unwrap_or(Err(JournalError::Closed))
    }

    /// [`Journal::wait_durable`] for callers outside an async runtime: blocks the
    /// thread.
    pub fn wait_durable_blocking(&self, seq: u64) -> Result<(), JournalError> {
        self.inner
            .shared
            .wait_until(|p| p.settles(seq))
            .outcome(seq)
    }

    /// The highest sequence number known to be on stable storage.
    pub fn durable_seq(&self) -> u64 {
        self.inner.shared.durable.load(Ordering::Acquire)
    }

    /// The highest sequence number given out (durable or not).
    pub fn last_seq(&self) -> u64 {
        self.inner.shared.last.load(Ordering::Acquire)
    }

    /// How many fdatasyncs the writer has made since open: a metric, and the way tests
    /// see group commit at work (fewer syncs than records).
    pub fn sync_count(&self) -> u64 {
        self.inner.shared.syncs.load(Ordering::Relaxed)
    }

    /// Stops taking records, writes and syncs everything queued, stops the writer
    /// thread and drops the sink. Later appends get [`JournalError::Closed`]. Returns
    /// [`JournalError::Poisoned`] if the writer had failed. Calling it again is harmless.
    pub fn close(&self) -> Result<(), JournalError> {
        self.inner.shutdown()
    }
}

/// What every handle shares; its drop closes the journal.
struct Inner {
    shared: Arc<Shared>,
    writer: Mutex<Option<JoinHandle<()>>>,
    body_limit: usize,
}

impl Inner {
    fn shutdown(&self) -> Result<(), JournalError> {
        {
            let mut queue = lock(&self.shared.queue);
            if queue.status == Status::Open {
                queue.status = Status::Closing;
            }
        }
        self.shared.work.notify_all();
        let writer = lock(&self.writer).take();
        if let Some(writer) = writer {
            // A panic has already poisoned the journal (see `ExitGuard`).
            let _ = writer.join();
        }
        match self.shared.wait_until(|p| p.status.is_final()).status {
            Status::Poisoned => Err(JournalError::Poisoned),
            _ => Ok(()),
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            warn!("journal dropped: {e}");
        }
    }
}

/// The state the handles and the writer thread share.
struct Shared {
    /// Records waiting for the writer.
    queue: Mutex<Queue>,
    /// Wakes the writer when records are queued or the journal closes.
    work: Condvar,
    /// What is durable, for blocking waiters.
    progress: Mutex<Progress>,
    /// Wakes blocking waiters when `progress` changes.
    progressed: Condvar,
    /// What is durable, for async waiters.
    watch: watch::Sender<Progress>,
    /// The durable sequence number, for cheap reads.
    durable: AtomicU64,
    /// The last sequence number given out.
    last: AtomicU64,
    /// fdatasyncs made by the writer.
    syncs: AtomicU64,
    /// Failure injection and pausing for unit tests.
    #[cfg(test)]
    hooks: tests::Hooks,
}

impl Shared {
    fn new(last_seq: u64) -> Shared {
        let progress = Progress {
            durable: last_seq,
            status: Status::Open,
        };
        Shared {
            queue: Mutex::new(Queue {
                sealed: VecDeque::new(),
                filling: Batch::default(),
                next_seq: last_seq + 1,
                status: Status::Open,
            }),
            work: Condvar::new(),
            progress: Mutex::new(progress),
            progressed: Condvar::new(),
            watch: watch::Sender::new(progress),
            durable: AtomicU64::new(last_seq),
            last: AtomicU64::new(last_seq),
            syncs: AtomicU64::new(0),
            #[cfg(test)]
            hooks: tests::Hooks::default(),
        }
    }

    /// The next batch to write; `None` once the journal is closing and drained, or
    /// poisoned.
    fn next_batch(&self) -> Option<Batch> {
        let mut queue = lock(&self.queue);
        loop {
            if queue.status == Status::Poisoned {
                return None;
            }
            if let Some(batch) = queue.take_batch() {
                return Some(batch);
            }
            if queue.status != Status::Open {
                return None;
            }
            queue = self
                .work
                .wait(queue)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Blocks until `settled` holds for the published progress.
    fn wait_until(&self, settled: impl Fn(&Progress) -> bool) -> Progress {
        let progress = lock(&self.progress);
        *self
            .progressed
            .wait_while(progress, |p| !settled(p))
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Publishes a new durable sequence number to both kinds of waiter.
    fn publish_durable(&self, seq: u64) {
        self.durable.store(seq, Ordering::Release);
        self.publish(|p| p.durable = seq);
    }

    /// Refuses every later append and fails every waiter not yet durable.
    fn poison(&self) {
        {
            let mut queue = lock(&self.queue);
            queue.status = Status::Poisoned;
            queue.clear();
        }
        self.publish(|p| p.status = Status::Poisoned);
    }

    /// Marks the writer stopped: closed, or poisoned if it failed or panicked.
    fn finish(&self, panicked: bool) {
        let status = {
            let mut queue = lock(&self.queue);
            if panicked {
                queue.status = Status::Poisoned;
            } else if queue.status != Status::Poisoned {
                queue.status = Status::Closed;
            }
            queue.clear();
            queue.status
        };
        self.publish(|p| p.status = status);
    }

    fn publish(&self, change: impl Fn(&mut Progress)) {
        {
            let mut progress = lock(&self.progress);
            change(&mut progress);
        }
        self.progressed.notify_all();
        self.watch.send_modify(change);
    }
}

/// Records queued for the writer, and the next sequence number.
struct Queue {
    /// Batches that reached [`BATCH_CAP`], in sequence order.
    sealed: VecDeque<Batch>,
    /// The batch appends go into; the writer takes it after the sealed ones.
    filling: Batch,
    next_seq: u64,
    status: Status,
}

impl Queue {
    /// The batch new records of `bytes` bytes go into: the filling one, sealed first
    /// if they would take it past [`BATCH_CAP`].
    fn batch_for(&mut self, bytes: usize) -> &mut Batch {
        if !self.filling.is_empty() && self.filling.bytes.len() + bytes > BATCH_CAP {
            let full = std::mem::take(&mut self.filling);
            self.sealed.push_back(full);
        }
        &mut self.filling
    }

    /// The oldest queued batch, if any.
    fn take_batch(&mut self) -> Option<Batch> {
        if let Some(batch) = self.sealed.pop_front() {
            return Some(batch);
        }
        let filling = !self.filling.is_empty();
        filling.then(|| std::mem::take(&mut self.filling))
    }

    /// Drops everything queued.
    fn clear(&mut self) {
        self.sealed.clear();
        self.filling = Batch::default();
    }
}

/// Where the journal is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    /// Taking records.
    Open,
    /// `close` was called: the writer drains the queue, appends are refused.
    Closing,
    /// A write or sync failed (or the writer panicked).
    Poisoned,
    /// The writer drained the queue and stopped.
    Closed,
}

impl Status {
    fn accepting(self) -> Result<(), JournalError> {
        match self {
            Status::Open => Ok(()),
            Status::Poisoned => Err(JournalError::Poisoned),
            Status::Closing | Status::Closed => Err(JournalError::Closed),
        }
    }

    fn is_final(self) -> bool {
        matches!(self, Status::Poisoned | Status::Closed)
    }
}

/// What waiters watch: the durable sequence number and the writer's status.
#[derive(Debug, Clone, Copy)]
struct Progress {
    durable: u64,
    status: Status,
}

impl Progress {
    /// Whether waiting for `seq` is over, one way or the other.
    fn settles(&self, seq: u64) -> bool {
        self.durable >= seq || self.status.is_final()
    }

    fn outcome(&self, seq: u64) -> Result<(), JournalError> {
        match self.status {
            _ if self.durable >= seq => Ok(()),
            Status::Poisoned => Err(JournalError::Poisoned),
            _ => Err(JournalError::Closed),
        }
    }
}

/// A segment file and the first sequence number its name promises.
#[derive(Debug, Clone)]
struct SegmentFile {
    first: u64,
    path: PathBuf,
}

/// The segment files in `dir`, by first sequence number. Other files are ignored.
fn list_segments(dir: &Path) -> Result<Vec<SegmentFile>, JournalError> {
    let mut segments = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_error(dir))? {
        let entry = entry.map_err(io_error(dir))?;
        let name = entry.file_name();
        if let Some(first) = name.to_str().and_then(parse_segment_name) {
            segments.push(SegmentFile {
                first,
                path: entry.path(),
            });
        }
    }
    segments.sort_by_key(|segment| segment.first);
    Ok(segments)
}

/// The first sequence number in a segment file name, if it is one.
fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    let well_formed = digits.len() == NAME_DIGITS && digits.bytes().all(|b| b.is_ascii_digit());
    if well_formed {
        digits.parse().ok()
    } else {
        None
    }
}

/// The path of the segment whose first record is `first_seq`.
fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!(
        "{first_seq:0width$}{SEGMENT_SUFFIX}",
        width = NAME_DIGITS
    ))
}

/// Makes the directory's entries (new segment files) durable.
fn sync_dir(dir: &Path) -> Result<(), JournalError> {
    File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(io_error(dir))
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> JournalError + '_ {
    move |source| JournalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Locks a mutex whose data stays consistent even if a holder panicked.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use super::*;

    /// Test-only controls of the writer thread.
    #[derive(Default)]
    pub(super) struct Hooks {
        /// The writer takes this before writing each batch: a test holding it pauses
        /// the writer, so records pile up into one batch.
        pub(super) gate: Mutex<()>,
        /// Makes the next fdatasync fail.
        pub(super) fail_sync: AtomicBool,
    }

    impl Hooks {
        pub(super) fn injected_failure(&self) -> io::Result<()> {
            if self.fail_sync.swap(false, Ordering::SeqCst) {
                Err(io::Error::other("injected fdatasync failure"))
            } else {
                Ok(())
            }
        }
    }

    fn open(dir: &Path) -> (Journal, Recovery) {
        Journal::open(JournalConfig::new(dir), None).unwrap()
    }

    fn frame(seq: u64, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_frame(&mut out, seq, body);
        out
    }

    fn bodies(dir: &Path) -> Vec<(u64, Vec<u8>)> {
        read_from(dir, 1)
            .unwrap()
            .map(|r| r.map(|r| (r.seq, r.body.to_vec())).unwrap())
            .collect()
    }

    #[test]
    fn a_frame_is_len_crc_seq_body() {
        let bytes = frame(7, b"abc");
        assert_eq!(bytes.len(), MIN_FRAME + 3);
        assert_eq!(&bytes[..4], &11u32.to_le_bytes());
        assert_eq!(&bytes[4..8], &crc32c(&bytes[8..]).to_le_bytes());
        assert_eq!(&bytes[8..16], &7u64.to_le_bytes());
        assert_eq!(&bytes[16..], b"abc");
        assert_eq!(check_frame(&bytes, 7), Ok(bytes.len()));
    }

    #[test]
    fn crc32c_is_castagnoli() {
        // RFC 3720 B.4 check value of "123456789".
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
    }

    #[test]
    fn check_frame_names_each_defect() {
        let good = frame(3, b"body");
        assert_eq!(check_frame(&[0; 5], 3), Err(Defect::Zeros));
        assert_eq!(check_frame(&[0; 64], 3), Err(Defect::Zeros));
        assert_eq!(
            check_frame(&good[..5], 3),
            Err(Defect::ShortHeader { available: 5 })
        );
        assert_eq!(
            check_frame(&good[..good.len() - 1], 3),
            Err(Defect::PastEnd {
                len: 12,
                available: 11
            })
        );
        let mut short = good.clone();
        short[..4].copy_from_slice(&3u32.to_le_bytes());
        assert_eq!(check_frame(&short, 3), Err(Defect::BadLength { len: 3 }));
        let mut flipped = good.clone();
        flipped[17] ^= 1;
        assert!(matches!(
            check_frame(&flipped, 3),
            Err(Defect::BadCrc { .. })
        ));
        assert_eq!(
            check_frame(&good, 4),
            Err(Defect::SeqBreak {
                expected: 4,
                found: 3
            })
        );
    }

    #[test]
    fn scan_stops_at_the_first_bad_record() {
        let mut data = [frame(1, b"a"), frame(2, b"bb"), frame(3, b"ccc")].concat();
        let end = data.len();
        data.extend_from_slice(&[0; 10]);
        let scan = scan_segment(&data, 1);
        assert_eq!((scan.next_seq, scan.end), (4, end));
        assert_eq!(scan.defect, None, "zeros to the end are free space");
        data.push(1);
        let scan = scan_segment(&data, 1);
        assert_eq!((scan.next_seq, scan.end), (4, end));
        assert_eq!(scan.defect, Some(Defect::Zeros));
    }

    #[test]
    fn find_later_record_sees_a_valid_record_behind_a_bad_one() {
        let first = frame(1, b"one");
        let mut data = [first.clone(), frame(2, b"two"), frame(3, b"three")].concat();
        data[first.len() + 17] ^= 0x40;
        let later = first.len() + MIN_FRAME + 3;
        assert_eq!(find_later_record(&data, first.len(), 1), Some((later, 3)));
        assert_eq!(find_later_record(&data, later, 3), None);
        // Garbage and stale records are no later record.
        let mut garbage = vec![0xa5; 300];
        garbage.extend_from_slice(&frame(1, b"stale"));
        assert_eq!(find_later_record(&garbage, 0, 1), None);
    }

    #[test]
    fn segment_names_round_trip() {
        let path = segment_path(Path::new("j"), 42);
        let name = path.file_name().unwrap().to_str().unwrap();
        assert_eq!(name, "00000000000000000042.wal");
        assert_eq!(parse_segment_name(name), Some(42));
        assert_eq!(parse_segment_name("42.wal"), None);
        assert_eq!(parse_segment_name("0000000000000000004x.wal"), None);
        assert_eq!(parse_segment_name("99999999999999999999.wal"), None);
        assert_eq!(parse_segment_name("00000000000000000042.wal.tmp"), None);
    }

    #[test]
    fn appends_are_numbered_in_call_order() {
        let dir = tempfile::tempdir().unwrap();
        let (journal, recovery) = open(dir.path());
        assert_eq!(
            recovery,
            Recovery {
                last_seq: 0,
                records: 0,
                cut: None
            }
        );
        assert_eq!(journal.append(b"a").unwrap(), 1);
        assert_eq!(journal.append_all(&[b"b".as_slice(), b"c"]).unwrap(), 2..=3);
        assert!(journal.append_all(&[]).unwrap().is_empty());
        assert_eq!(journal.append(b"d").unwrap(), 4);
        assert_eq!(journal.last_seq(), 4);
        journal.wait_durable_blocking(4).unwrap();
        assert_eq!(journal.durable_seq(), 4);
        journal.close().unwrap();
        let expected: Vec<(u64, Vec<u8>)> = [(1, b"a"), (2, b"b"), (3, b"c"), (4, b"d")]
            .map(|(s, b)| (s, b.to_vec()))
            .into();
        assert_eq!(bodies(dir.path()), expected);
    }

    #[test]
    fn a_body_over_max_record_is_refused_whole() {
        let dir = tempfile::tempdir().unwrap();
        let config = JournalConfig {
            max_record: 8,
            ..JournalConfig::new(dir.path())
        };
        let (journal, _) = Journal::open(config, None).unwrap();
        assert!(matches!(
            journal.append_all(&[b"ok".as_slice(), b"nine bytes"]),
            Err(JournalError::TooLarge { len: 10, max: 8 })
        ));
        assert_eq!(journal.append(b"12345678").unwrap(), 1);
    }

    #[test]
    fn close_drains_then_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let (journal, _) = open(dir.path());
        let seqs = journal.append_all(&[b"x".as_slice(); 100]).unwrap();
        journal.close().unwrap();
        assert_eq!(journal.durable_seq(), *seqs.end());
        journal.wait_durable_blocking(*seqs.end()).unwrap();
        assert!(matches!(journal.append(b"late"), Err(JournalError::Closed)));
        assert!(matches!(
            journal.wait_durable_blocking(*seqs.end() + 1),
            Err(JournalError::Closed)
        ));
        journal.close().unwrap();
    }

    #[test]
    fn dropping_the_last_handle_flushes() {
        let dir = tempfile::tempdir().unwrap();
        let (journal, _) = open(dir.path());
        let other = journal.clone();
        other.append(b"kept").unwrap();
        drop(journal);
        drop(other);
        assert_eq!(bodies(dir.path()), vec![(1, b"kept".to_vec())]);
    }

    #[test]
    fn the_sink_gets_durable_records_in_order_and_is_dropped_on_close() {
        let dir = tempfile::tempdir().unwrap();
        let (sender, receiver) = std::sync::mpsc::sync_channel(64);
        let (journal, _) = Journal::open(JournalConfig::new(dir.path()), Some(sender)).unwrap();
        for i in 0..50u32 {
            journal.append(&i.to_le_bytes()).unwrap();
        }
        journal.close().unwrap();
        let records: Vec<Record> = receiver.iter().flatten().collect();
        let seqs: Vec<u64> = records.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, (1..=50).collect::<Vec<_>>());
        for (i, record) in (0..50u32).zip(&records) {
            assert_eq!(record.body.as_ref(), i.to_le_bytes());
        }
    }

    #[test]
    fn a_paused_writer_commits_everything_queued_in_one_batch() {
        let dir = tempfile::tempdir().unwrap();
        let (journal, _) = open(dir.path());
        let paused = lock(&journal.inner.shared.hooks.gate);
        for i in 0..1000u32 {
            journal.append(&i.to_le_bytes()).unwrap();
        }
        drop(paused);
        journal.wait_durable_blocking(1000).unwrap();
        // The writer may have taken the first record before it stopped at the gate;
        // everything after it waited in one batch.
        assert!(journal.sync_count() <= 2, "{} syncs", journal.sync_count());
    }

    #[test]
    fn concurrent_waiters_share_fdatasyncs() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (journal, _) = open(dir.path());
        let paused = lock(&journal.inner.shared.hooks.gate);
        let tasks: Vec<_> = (0..50u32)
            .map(|task| {
                let journal = journal.clone();
                runtime.spawn(async move {
                    for i in 0..40u32 {
                        let body = [task.to_le_bytes(), i.to_le_bytes()].concat();
                        let seq = journal.append(&body).unwrap();
                        journal.wait_durable(seq).await.unwrap();
                    }
                })
            })
            .collect();
        // Every task's first record queues behind the paused writer.
        while journal.last_seq() < 50 {
            std::thread::yield_now();
        }
        drop(paused);
        runtime.block_on(async {
            for task in tasks {
                task.await.unwrap();
            }
        });
        assert_eq!(journal.durable_seq(), 2000);
        // The writer took at most one record before the gate; the other 49 shared a
        // batch, so there were at most 1951 fdatasyncs for 2000 records.
        let syncs = journal.sync_count();
        assert!(syncs < 2000, "{syncs} syncs");
    }

    #[tokio::test]
    async fn a_failed_fdatasync_poisons_the_journal_for_good() {
        let dir = tempfile::tempdir().unwrap();
        let (journal, _) = open(dir.path());
        let durable = journal.append(b"durable").unwrap();
        journal.wait_durable(durable).await.unwrap();
        journal
            .inner
            .shared
            .hooks
            .fail_sync
            .store(true, Ordering::SeqCst);
        let lost = journal.append(b"lost").unwrap();
        assert!(matches!(
            journal.wait_durable(lost).await,
            Err(JournalError::Poisoned)
        ));
        assert!(matches!(
            journal.wait_durable_blocking(lost),
            Err(JournalError::Poisoned)
        ));
        assert!(matches!(
            journal.append(b"later"),
            Err(JournalError::Poisoned)
        ));
        assert!(matches!(
            journal.append_all(&[b"a".as_slice(), b"b"]),
            Err(JournalError::Poisoned)
        ));
        // What was durable before stays durable; the failed sync is never retried.
        journal.wait_durable(durable).await.unwrap();
        assert_eq!(journal.durable_seq(), durable);
        assert_eq!(journal.sync_count(), 1);
        assert!(matches!(journal.close(), Err(JournalError::Poisoned)));
    }

    #[test]
    fn a_poisoned_journal_reopens_from_what_is_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let (journal, _) = open(dir.path());
        journal.append(b"one").unwrap();
        journal.wait_durable_blocking(1).unwrap();
        journal
            .inner
            .shared
            .hooks
            .fail_sync
            .store(true, Ordering::SeqCst);
        journal.append(b"two").unwrap();
        assert!(matches!(
            journal.wait_durable_blocking(2),
            Err(JournalError::Poisoned)
        ));
        drop(journal);
        // The write of record 2 reached the page cache before its sync failed; the
        // next open syncs it, so whether to keep it is recovery's call, not ours.
        let (journal, recovery) = open(dir.path());
        assert!(recovery.last_seq >= 1 && recovery.cut.is_none());
        assert_eq!(journal.append(b"three").unwrap(), recovery.last_seq + 1);
    }
}
