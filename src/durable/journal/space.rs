//! Segment space made in advance: a background thread writes the journal writer's next
//! segment as a file of zeros, syncs it, and hands it over; the writer links it into
//! place at rotation and overwrites the zeros with records.
//!
//! Why: appending to a file changes its size, and then every `fdatasync` must also
//! write the file's inode, synchronously. On ext4 that inode block is shared with other
//! files' inodes and is written back in the background every few seconds; a sync that
//! needs it while writeback has it in flight waits for that I/O, measured at 50-110 ms
//! here, which is the journal's whole latency budget many times over. Overwriting space
//! that was written and synced before changes no metadata the data depends on, so the
//! writer's sync is the data block alone (apart from a timestamp now and then).
//! `fallocate` would not do: its unwritten extents are converted on first write, which
//! is a metadata change again.
//!
//! The zeros cost something too: every sync's flush waits for them to reach the disk. So
//! the preparer writes in small chunks with a pause between them, so that making 64 MiB
//! never floods the disk queue the writer's syncs wait in, and begins a file only once a
//! quarter of the writer's current segment is used. Prepared files are
//! named `prepared-N.zeros`: not segments, so a crash leaves at most a file that the
//! next open removes.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing::{debug, warn};

use super::lock;

/// Suffix of prepared files.
const SUFFIX: &str = ".zeros";
/// Bytes written per step.
const CHUNK: usize = 1024 * 1024;
/// Pause after each step: at most ~24 MiB/s of zeros (a 64 MiB segment in under three
/// seconds), more than the writer consumes at full load (~14 MB/s at 20,000 approvals
/// per second) and gentle on the disk the writer's syncs share.
const PAUSE: Duration = Duration::from_millis(40);
/// The pause while the writer has no space made in advance at all (a new journal, or
/// a tail cut short after a crash): until then every sync also writes the inode, so
/// the first file is made several times faster.
const URGENT_PAUSE: Duration = Duration::from_millis(2);

/// A zero-filled, synced file ready to become a segment.
#[derive(Debug)]
pub(super) struct Prepared {
    /// Where it is now.
    pub(super) path: PathBuf,
    /// Open for writing.
    pub(super) file: File,
    /// Its length: all of it is zeros on stable storage.
    pub(super) len: u64,
}

/// The background thread making prepared files, one at a time.
pub(super) struct Preparer {
    shared: Arc<Slot>,
    thread: Option<JoinHandle<()>>,
}

/// What the writer and the thread share.
#[derive(Default)]
struct Slot {
    /// A prepared file waiting for the writer. The thread makes the next one only once
    /// this one was taken, so at most one waits on disk.
    ready: Mutex<Option<Prepared>>,
    stop: AtomicBool,
    /// Bytes of space left in the writer's current segment, as it last said.
    remaining: AtomicU64,
}

impl Preparer {
    /// Removes what an earlier process left unfinished in `dir`, then starts making
    /// files of `len` bytes for a writer whose segment has `remaining` bytes of space
    /// left; the first one quickly if it has none.
    pub(super) fn start(dir: &Path, len: u64, remaining: u64) -> io::Result<Preparer> {
        remove_leftovers(dir)?;
        let shared = Arc::new(Slot {
            remaining: AtomicU64::new(remaining),
            ..Slot::default()
        });
        let urgent = remaining == 0;
        let maker = Maker {
            dir: dir.to_path_buf(),
            len,
            shared: Arc::clone(&shared),
            urgent,
        };
        let thread = std::thread::Builder::new()
            .name("journal-space".into())
            .spawn(move || maker.run())?;
        Ok(Preparer {
            shared,
            thread: Some(thread),
        })
    }

    /// Tells the thread how much space the writer's segment has left: the next file
    /// is made only once a quarter of the current one is used, so that zeros are not
    /// written (and flushed with every sync) long before they are needed.
    pub(super) fn report_remaining(&self, bytes: u64) {
        self.shared.remaining.store(bytes, Ordering::Relaxed);
    }

    /// The prepared file, if one is ready now.
    pub(super) fn take(&self) -> Option<Prepared> {
        lock(&self.shared.ready).take()
    }
}

impl Drop for Preparer {
    /// Stops the thread and waits for it; a file it made and nobody took is removed.
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        if let Some(prepared) = self.take() {
            remove(&prepared.path);
        }
    }
}

/// What the thread needs.
struct Maker {
    dir: PathBuf,
    len: u64,
    shared: Arc<Slot>,
    /// Whether the writer waits for the first file in growing-file mode.
    urgent: bool,
}

impl Maker {
    fn run(self) {
        for n in 0_u64.. {
            if !self.wait_until_needed() {
                return;
            }
            let path = self.dir.join(format!("prepared-{n}{SUFFIX}"));
            let pause = if n == 0 && self.urgent {
                URGENT_PAUSE
            } else {
                PAUSE
            };
            match self.make(&path, pause) {
                Ok(Some(file)) => {
                    debug!(journal.prepared = %path.display(), "journal: segment space ready");
                    let len = self.len;
                    *lock(&self.shared.ready) = Some(Prepared { path, file, len });
                }
                Ok(None) => return remove(&path),
                Err(e) => {
                    warn!(
                        journal.prepared = %path.display(),
                        "journal: cannot prepare segment space ({e}); segments grow as they are written"
                    );
                    return remove(&path);
                }
            }
            while lock(&self.shared.ready).is_some() {
                if self.stopped() {
                    return;
                }
                std::thread::sleep(PAUSE);
            }
        }
    }

    /// Writes and syncs `len` zeros in steps `pause` apart; `None` if told to stop
    /// first.
    fn make(&self, path: &Path, pause: Duration) -> io::Result<Option<File>> {
        let mut file = OpenOptions::new().write(true).create_new(true).open(path)?;
        let zeros = vec![0; CHUNK];
        let mut written = 0;
        while written < self.len {
            if self.stopped() {
                return Ok(None);
            }
            let step = (self.len - written).min(CHUNK as u64) as usize;
            file.write_all(&zeros[..step])?;
            file.sync_data()?;
            written += step as u64;
            std::thread::sleep(pause);
        }
        Ok(Some(file))
    }

    /// Waits until the writer's segment has less than three quarters of a file left;
    /// `false` if told to stop first.
    fn wait_until_needed(&self) -> bool {
        while self.shared.remaining.load(Ordering::Relaxed) > self.len / 4 * 3 {
            if self.stopped() {
                return false;
            }
            std::thread::sleep(PAUSE);
        }
        true
    }

    fn stopped(&self) -> bool {
        self.shared.stop.load(Ordering::Relaxed)
    }
}

/// Removes prepared files left by an earlier process (never handed over, or handed
/// over and linked as a segment just before a crash: removing the second name leaves
/// the segment).
fn remove_leftovers(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let prepared = entry.file_name().to_str().is_some_and(is_prepared_name);
        if prepared {
            fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

fn is_prepared_name(name: &str) -> bool {
    name.strip_prefix("prepared-")
        .and_then(|rest| rest.strip_suffix(SUFFIX))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

fn remove(path: &Path) {
    if let Err(e) = fs::remove_file(path)
        && e.kind() != io::ErrorKind::NotFound
    {
        warn!(journal.prepared = %path.display(), "journal: cannot remove unused segment space: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepared_names_are_recognised_and_segments_are_not() {
        assert!(is_prepared_name("prepared-0.zeros"));
        assert!(is_prepared_name("prepared-17.zeros"));
        assert!(!is_prepared_name("prepared-.zeros"));
        assert!(!is_prepared_name("prepared-1.wal"));
        assert!(!is_prepared_name("00000000000000000001.wal"));
    }

    #[test]
    fn a_prepared_file_is_all_zeros_of_the_asked_length_and_leftovers_go_at_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        let leftover = dir.path().join("prepared-9.zeros");
        fs::write(&leftover, b"half made").expect("leftover");
        let preparer = Preparer::start(dir.path(), 3 * CHUNK as u64 + 5, 1).expect("start");
        assert!(!leftover.exists(), "a leftover is removed at start");
        let prepared = wait_for(&preparer);
        let bytes = fs::read(&prepared.path).expect("read");
        assert_eq!(bytes.len() as u64, prepared.len);
        assert_eq!(prepared.len, 3 * CHUNK as u64 + 5);
        assert!(bytes.iter().all(|&b| b == 0));
        let next = wait_for(&preparer);
        assert_ne!(next.path, prepared.path, "each file has its own name");
        drop(preparer);
        assert!(next.path.exists(), "handed-over files stay");
    }

    #[test]
    fn stopping_removes_the_file_being_made_or_offered() {
        for len in [64 * CHUNK as u64, 1] {
            let dir = tempfile::tempdir().expect("tempdir");
            let preparer = Preparer::start(dir.path(), len, 0).expect("start");
            std::thread::sleep(Duration::from_millis(30));
            drop(preparer);
            let left: Vec<_> = fs::read_dir(dir.path()).expect("dir").collect();
            assert!(left.is_empty(), "{left:?}");
        }
    }

    #[test]
    fn the_next_file_waits_until_a_quarter_of_the_current_segment_is_used() {
        let dir = tempfile::tempdir().expect("tempdir");
        let len = 4 * CHUNK as u64;
        let preparer = Preparer::start(dir.path(), len, len).expect("start");
        std::thread::sleep(Duration::from_millis(300));
        assert!(preparer.take().is_none(), "made while the segment had room");
        let files = fs::read_dir(dir.path()).expect("dir").count();
        assert_eq!(files, 0, "not even begun");
        preparer.report_remaining(len / 2);
        let prepared = wait_for(&preparer);
        assert_eq!(prepared.len, len);
    }

    fn wait_for(preparer: &Preparer) -> Prepared {
        for _ in 0..2000 {
            if let Some(prepared) = preparer.take() {
                return prepared;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("no prepared file within 10 s");
    }
}
