//! The data directory: the journal, the indexes, the exception logs, the confirmation
//! number key, and the indexer that keeps the indexes up with the journal. `serve`
//! opens it with a router to the engine forwarders; the offline commands (imports, the
//! exception queue, lookups) open it without one, and find it in use while a switch
//! runs.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::thread::JoinHandle;

use ring::rand::{SecureRandom, SystemRandom};
use tracing::{info, warn};

use super::exceptions::ExceptionLog;
use super::handoff::Router;
use super::indexer::{self, IndexError};
use super::journal::{Journal, JournalConfig, JournalError};
use super::record::Record;
use super::store::{Store, StoreError};
use crate::config::Config;

/// Why the data directory could not be opened, written or closed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// A file or directory of the data directory.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The journal.
    #[error("journal: {0}")]
    Journal(#[from] JournalError),
    /// The indexes.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// Replaying or following the journal.
    #[error("{0}")]
    Index(#[from] IndexError),
}

impl DataError {
    /// Whether the data directory is held by a running switch (the command should then
    /// go through that switch's endpoint).
    pub fn in_use(&self) -> bool {
        matches!(self, DataError::Store(StoreError::InUse { .. }))
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> DataError + '_ {
    move |source| DataError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Durable journal batches waiting for the router before the journal writer waits.
const SINK_BATCHES: usize = 64;

/// An open data directory: journal, indexes, and the indexer following the journal.
pub struct DataDir {
    /// The directory.
    pub path: PathBuf,
    /// The journal.
    pub journal: Journal,
    /// The indexes.
    pub store: Store,
    /// The last journal position the indexer applied.
    pub applied: Arc<AtomicU64>,
    indexer: Option<JoinHandle<Result<(), IndexError>>>,
    /// Set when the indexer or the router stopped on an error.
    index_failed: Arc<AtomicBool>,
}

impl DataDir {
    /// Opens (creating) the data directory named by `config`, replays the journal into
    /// the indexes and starts the indexer.
    pub fn open(config: &Config) -> Result<DataDir, DataError> {
        DataDir::open_with(config, None)
    }

    /// [`DataDir::open`], with the indexer routing durable credits to `router`.
    pub fn open_with(config: &Config, router: Option<Router>) -> Result<DataDir, DataError> {
        let path = config.data_dir.clone();
        fs::create_dir_all(&path).map_err(io_error(&path))?;
        let store = Store::open(&path.join("index"))?;
        let (sink, batches) = std::sync::mpsc::sync_channel(SINK_BATCHES);
        let journal_dir = path.join("journal");
        let (journal, recovery) =
            Journal::open(JournalConfig::new(journal_dir.clone()), Some(sink))?;
        if let Some(cut) = &recovery.cut {
            warn!("journal: torn tail cut on start: {cut:?}");
        }
        let (exceptions, fraud) = (config.exceptions_log(), config.fraud_log());
        let mut log = ExceptionLog::open(&exceptions, &fraud).map_err(io_error(&exceptions))?;
        let replayed = indexer::replay(&store, &journal_dir, &mut log)?;
        info!(
            journal.last_seq = recovery.last_seq,
            replayed,
            "data directory {} open",
            path.display()
        );
        let applied = Arc::new(AtomicU64::new(store.applied_seq()?));
        let index_failed = Arc::new(AtomicBool::new(false));
        let indexer = indexer::spawn(
            store.clone(),
            log,
            batches,
            applied.clone(),
            router,
            index_failed.clone(),
        )
        .map_err(io_error(&path))?;
        Ok(DataDir {
            path,
            journal,
            store,
            applied,
            indexer: Some(indexer),
            index_failed,
        })
    }

    /// Journals records, waits until they are durable and indexed; returns their
    /// journal positions.
    pub fn commit(&self, records: &[Record]) -> Result<Vec<u64>, DataError> {
        let seqs = append(&self.journal, records)?;
        let last = seqs.last().copied().unwrap_or(0);
        while self.applied.load(std::sync::atomic::Ordering::Acquire) < last {
            if self.indexer.as_ref().is_none_or(|h| h.is_finished()) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        Ok(seqs)
    }

    /// Set (and left set) when the indexer or the router stopped on an error.
    pub fn index_failed(&self) -> Arc<AtomicBool> {
        self.index_failed.clone()
    }

    /// Syncs and closes the journal, then lets the indexer finish.
    pub fn close(mut self) -> Result<(), DataError> {
        self.journal.close()?;
        if let Some(handle) = self.indexer.take() {
            match handle.join() {
                Ok(result) => result?,
                Err(_) => warn!("indexer thread panicked"),
            }
        }
        self.store.flush()?;
        Ok(())
    }

    /// The key of confirmation numbers, made once per data directory.
    pub fn confirmation_key(&self) -> Result<Vec<u8>, DataError> {
        let path = self.path.join("confirmation.key");
        match fs::read(&path) {
            Ok(key) if key.len() >= 16 => return Ok(key),
            Ok(_) => {
                return Err(DataError::Io {
                    path: path.display().to_string(),
                    source: std::io::Error::other("shorter than 16 bytes"),
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(&path)(e)),
        }
        let mut key = vec![0u8; 32];
        SystemRandom::new()
            .fill(&mut key)
            .map_err(|_| io_error(&path)(std::io::Error::other("no system randomness")))?;
        write_durably(&path, &key).map_err(io_error(&path))?;
        Ok(key)
    }
}

/// Journals records in batches of at most a thousand and waits until they are durable;
/// returns their journal positions.
pub fn append(journal: &Journal, records: &[Record]) -> Result<Vec<u64>, JournalError> {
    let mut seqs = Vec::with_capacity(records.len());
    for chunk in records.chunks(1024) {
        let bodies: Vec<Vec<u8>> = chunk.iter().map(Record::to_bytes).collect();
        let slices: Vec<&[u8]> = bodies.iter().map(Vec::as_slice).collect();
        let range = journal.append_all(&slices)?;
        journal.wait_durable_blocking(*range.end())?;
        seqs.extend(range);
    }
    Ok(seqs)
}

/// Writes a file whole or not at all: a temporary beside it, synced, renamed over it,
/// and the directory synced (a crash leaves the old file or the new one, never half).
pub fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let temporary = path.with_extension("tmp");
    let mut file = fs::File::create(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::rename(&temporary, path)?;
    let dir = (path.parent())
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::File::open(dir)?.sync_all()
}
