//! The journal's writer thread: it takes the queued records as one batch, frames them,
//! writes the batch into the current segment (in space made in advance, see
//! [`super::space`]), makes it durable with one `fdatasync`, publishes the durable
//! position and wakes every waiter, and hands the batch to the indexer's sink. A write
//! or sync error poisons the journal.

use super::*;

/// Encoded records for one group commit.
#[derive(Default)]
pub(super) struct Batch {
    /// The records, framed as on disk.
    pub(super) bytes: Vec<u8>,
    /// Each record's sequence number and the offset of its frame in `bytes`.
    pub(super) frames: Vec<(u64, usize)>,
}

impl Batch {
    pub(super) fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    pub(super) fn push(&mut self, seq: u64, body: &[u8]) {
        self.frames.push((seq, self.bytes.len()));
        encode_frame(&mut self.bytes, seq, body);
    }

    /// Where frame `index` ends.
    pub(super) fn frame_end(&self, index: usize) -> usize {
        self.frames
            .get(index + 1)
            .map_or(self.bytes.len(), |&(_, start)| start)
    }

    pub(super) fn last_seq(&self) -> u64 {
        self.frames.last().map_or(0, |&(seq, _)| seq)
    }

    /// The records, sharing the batch's buffer.
    pub(super) fn into_records(self) -> Vec<Record> {
        let ends: Vec<usize> = (0..self.frames.len()).map(|i| self.frame_end(i)).collect();
        let bytes = Bytes::from(self.bytes);
        self.frames
            .iter()
            .zip(ends)
            .map(|(&(seq, start), end)| Record {
                seq,
                body: bytes.slice(start + MIN_FRAME..end),
            })
            .collect()
    }
}

/// Appends one record, framed, to `out`.
pub(super) fn encode_frame(out: &mut Vec<u8>, seq: u64, body: &[u8]) {
    let seq = seq.to_le_bytes();
    let mut digest = CRC32C.digest();
    digest.update(&seq);
    digest.update(body);
    // `append_all` limits bodies to `u32::MAX - SEQ` bytes.
    let len = (SEQ + body.len()) as u32;
    out.reserve(MIN_FRAME + body.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&digest.finalize().to_le_bytes());
    out.extend_from_slice(&seq);
    out.extend_from_slice(body);
}

/// The writer thread: one batch at a time, write, fdatasync, publish, report.
pub(super) fn run_writer(
    shared: &Shared,
    mut segment: SegmentWriter,
    mut sink: Option<SyncSender<Vec<Record>>>,
) {
    let _exit = ExitGuard(shared);
    while let Some(batch) = shared.next_batch() {
        #[cfg(test)]
        let _paused = lock(&shared.hooks.gate);
        if let Err(e) = segment.write(&batch, shared) {
            error!("journal poisoned: {e}");
            shared.poison();
            return;
        }
        shared.publish_durable(batch.last_seq());
        deliver(&mut sink, batch);
    }
}

/// Sends a durable batch to the sink; forgets a sink whose receiver is gone.
pub(super) fn deliver(sink: &mut Option<SyncSender<Vec<Record>>>, batch: Batch) {
    let Some(sender) = sink else { return };
    if sender.send(batch.into_records()).is_err() {
        warn!("journal: the sink's receiver is gone; durable records are no longer reported");
        *sink = None;
    }
}

/// Publishes the writer's end however it ends, a panic included, so that no waiter
/// waits forever.
pub(super) struct ExitGuard<'a>(&'a Shared);

impl Drop for ExitGuard<'_> {
    fn drop(&mut self) {
        self.0.finish(std::thread::panicking());
    }
}

/// The segment the writer appends to.
pub(super) struct SegmentWriter {
    pub(super) dir: PathBuf,
    pub(super) path: PathBuf,
    pub(super) file: File,
    /// Bytes of records in the segment: where the next one goes.
    pub(super) len: u64,
    /// The file's length: past `len` it holds zeros made in advance.
    pub(super) space: u64,
    /// [`JournalConfig::segment_bytes`].
    pub(super) limit: u64,
    /// Makes the next segments' space, with [`JournalConfig::prepare_segments`].
    pub(super) preparer: Option<space::Preparer>,
}

impl SegmentWriter {
    /// Opens the last segment for writing (creating the first one in an empty
    /// journal) and makes whatever it holds durable, since a crashed process may have
    /// left unsynced records that recovery counted.
    pub(super) fn open(
        config: &JournalConfig,
        tail: Option<Tail>,
    ) -> Result<SegmentWriter, JournalError> {
        let tail = tail.unwrap_or_else(|| Tail {
            path: segment_path(&config.dir, 1),
            len: 0,
            space: 0,
        });
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(&tail.path)
            .map_err(io_error(&tail.path))?;
        file.sync_data().map_err(io_error(&tail.path))?;
        sync_dir(&config.dir)?;
        let preparer = match config.prepare_segments {
            true => Some(
                space::Preparer::start(&config.dir, config.segment_bytes, tail.space - tail.len)
                    .map_err(io_error(&config.dir))?,
            ),
            false => None,
        };
        Ok(SegmentWriter {
            dir: config.dir.clone(),
            path: tail.path,
            file,
            len: tail.len,
            space: tail.space,
            limit: config.segment_bytes,
            preparer,
        })
    }

    /// Writes a batch and syncs it: one write and one fdatasync, or one per segment if
    /// the batch crosses a segment boundary.
    pub(super) fn write(&mut self, batch: &Batch, shared: &Shared) -> Result<(), JournalError> {
        let mut index = 0;
        while let Some(&(seq, start)) = batch.frames.get(index) {
            let frame = (batch.frame_end(index) - start) as u64;
            self.make_room(seq, frame)?;
            let end_index = self.fitting(batch, index);
            let end = batch.frame_end(end_index - 1);
            self.file
                .write_all_at(&batch.bytes[start..end], self.len)
                .map_err(io_error(&self.path))?;
            self.sync(shared)?;
            self.len += (end - start) as u64;
            self.space = self.space.max(self.len);
            self.report_remaining();
            index = end_index;
        }
        Ok(())
    }

    /// Starts a new segment at `seq` if a frame of `frame` bytes does not fit in this
    /// one, or if it would grow this file while prepared space is ready.
    pub(super) fn make_room(&mut self, seq: u64, frame: u64) -> Result<(), JournalError> {
        let end = self.len + frame;
        let full = end > self.limit;
        if self.len == 0 || (!full && end <= self.space) {
            return Ok(());
        }
        let prepared = self.preparer.as_ref().and_then(space::Preparer::take);
        match full || prepared.is_some() {
            true => self.rotate(seq, prepared),
            false => Ok(()),
        }
    }

    pub(super) fn report_remaining(&self) {
        if let Some(preparer) = &self.preparer {
            preparer.report_remaining(self.space - self.len);
        }
    }

    /// The index after the last frame, from `from` on, that fits in this segment (at
    /// least one more than `from`).
    pub(super) fn fitting(&self, batch: &Batch, from: usize) -> usize {
        let start = batch.frames[from].1;
        let mut to = from + 1;
        while to < batch.frames.len()
            && self.len + (batch.frame_end(to) - start) as u64 <= self.limit
        {
            to += 1;
        }
        to
    }

    pub(super) fn sync(&mut self, shared: &Shared) -> Result<(), JournalError> {
        #[cfg(test)]
        shared
            .hooks
            .injected_failure()
            .map_err(io_error(&self.path))?;
        self.file.sync_data().map_err(io_error(&self.path))?;
        shared.syncs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Starts the segment whose first record is `first_seq` (the current one is
    /// already synced): the prepared file under the segment's name if there is one,
    /// else a new empty file. A second name, then the first removed: a link, unlike a
    /// rename, never replaces an existing segment.
    pub(super) fn rotate(
        &mut self,
        first_seq: u64,
        prepared: Option<space::Prepared>,
    ) -> Result<(), JournalError> {
        let path = segment_path(&self.dir, first_seq);
        let (file, space) = match prepared {
            Some(prepared) => {
                fs::hard_link(&prepared.path, &path).map_err(io_error(&path))?;
                fs::remove_file(&prepared.path).map_err(io_error(&prepared.path))?;
                (prepared.file, prepared.len)
            }
            None => {
                let file = OpenOptions::new()
                    .create_new(true)
                    .write(true)
                    .open(&path)
                    .map_err(io_error(&path))?;
                (file, 0)
            }
        };
        sync_dir(&self.dir)?;
        debug!(journal.segment = %path.display(), journal.prepared = space > 0, "journal segment started");
        self.path = path;
        self.file = file;
        self.len = 0;
        self.space = space;
        Ok(())
    }
}
