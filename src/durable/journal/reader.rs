//! Reading the journal back from a sequence number, in order, checking every record:
//! what the indexer replays on start and what `replenish lookup` and the tools read.

use super::*;

/// Reads the records with `seq >= from`, in order, checking every CRC and the
/// sequence chain (records before `from` in the first segment read are checked too).
///
/// It reads what the files hold: on an open journal that includes records not yet
/// durable. A record cut short by the end of the last segment, with no valid record
/// behind it, ends the iteration quietly: it is still being written, or it is a torn
/// tail that the next [`Journal::open`] cuts. Any other bad record yields one
/// [`JournalError::Corrupt`] and ends the iteration.
pub fn read_from(dir: &Path, from: u64) -> Result<Reader, JournalError> {
    let mut segments = list_segments(dir)?;
    let start = segments.iter().rposition(|segment| segment.first <= from);
    segments.drain(..start.unwrap_or(0));
    Ok(Reader {
        segments: segments.into(),
        from,
        current: None,
        next_seq: None,
        done: false,
    })
}

/// The iterator [`read_from`] returns.
#[derive(Debug)]
pub struct Reader {
    /// Segments not opened yet.
    segments: VecDeque<SegmentFile>,
    from: u64,
    current: Option<SegmentReader>,
    /// The sequence number the next segment must start with, once one was read.
    next_seq: Option<u64>,
    done: bool,
}

impl Iterator for Reader {
    type Item = Result<Record, JournalError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            match self.step() {
                Ok(Some(record)) if record.seq < self.from => {}
                Ok(Some(record)) => return Some(Ok(record)),
                Ok(None) => self.done = true,
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        None
    }
}

impl Reader {
    /// The next record of any sequence number, opening segments as needed.
    pub(super) fn step(&mut self) -> Result<Option<Record>, JournalError> {
        loop {
            if self.current.is_none() {
                let Some(segment) = self.segments.pop_front() else {
                    return Ok(None);
                };
                self.current = Some(self.open_segment(segment)?);
            }
            if let Some(current) = &mut self.current {
                if let Some(record) = current.read_record()? {
                    return Ok(Some(record));
                }
                self.next_seq = Some(current.next_seq);
                self.current = None;
            }
        }
    }

    pub(super) fn open_segment(&self, segment: SegmentFile) -> Result<SegmentReader, JournalError> {
        check_name(&segment, self.next_seq.unwrap_or(segment.first))?;
        let file = File::open(&segment.path).map_err(io_error(&segment.path))?;
        Ok(SegmentReader {
            reader: BufReader::new(file),
            offset: 0,
            next_seq: segment.first,
            last: self.segments.is_empty(),
            path: segment.path,
        })
    }
}

/// Reads one segment record by record.
#[derive(Debug)]
pub(super) struct SegmentReader {
    pub(super) path: PathBuf,
    pub(super) reader: BufReader<File>,
    /// Where the next record starts.
    pub(super) offset: u64,
    pub(super) next_seq: u64,
    /// The last segment may end inside a record being written.
    pub(super) last: bool,
}

impl SegmentReader {
    /// The next record, or `None` at the end of the segment.
    pub(super) fn read_record(&mut self) -> Result<Option<Record>, JournalError> {
        let mut header = [0; HEADER];
        let available = read_full(&mut self.reader, &mut header).map_err(io_error(&self.path))?;
        if available == 0 {
            return Ok(None);
        }
        if available < HEADER {
            return self.bad(short_header(&header[..available]));
        }
        let (len, stored) = parse_header(&header);
        if let Err(defect) = check_length(len, stored) {
            return self.bad(defect);
        }
        let mut payload = Vec::with_capacity((len as usize).min(READ_RESERVE));
        let mut reader = self.reader.by_ref().take(u64::from(len));
        reader
            .read_to_end(&mut payload)
            .map_err(io_error(&self.path))?;
        if payload.len() < len as usize {
            let available = payload.len();
            return self.bad(Defect::PastEnd { len, available });
        }
        if let Err(defect) = check_payload(stored, &payload, self.next_seq) {
            return self.bad(defect);
        }
        let record = Record {
            seq: self.next_seq,
            body: Bytes::from(payload).slice(SEQ..),
        };
        self.offset += (HEADER + len as usize) as u64;
        self.next_seq += 1;
        Ok(Some(record))
    }

    /// A record that is not there whole and right. Zeros to the end of the file are
    /// free space: the segment's records end. In the last segment, with no valid later
    /// record behind it, any defect is the end of the log (a record being written, or
    /// a torn tail that the next open cuts); anywhere else it is corruption.
    pub(super) fn bad(&mut self, defect: Defect) -> Result<Option<Record>, JournalError> {
        if defect == Defect::Zeros && self.rest_is_zeros()? {
            return Ok(None);
        }
        if !self.last {
            return Err(self.corrupt(&defect));
        }
        let data = fs::read(&self.path).map_err(io_error(&self.path))?;
        let rest = data.get(self.offset as usize..).unwrap_or_default();
        match find_later_record(rest, 0, self.next_seq - 1) {
            None => Ok(None),
            Some((at, seq)) => Err(JournalError::Corrupt {
                segment: self.path.clone(),
                offset: self.offset,
                reason: format!("{defect}, and a valid record (seq {seq}) follows {at} bytes on"),
            }),
        }
    }

    /// Reads the rest of the file; whether it is all zeros.
    pub(super) fn rest_is_zeros(&mut self) -> Result<bool, JournalError> {
        let mut buf = vec![0; READ_RESERVE];
        loop {
            let read = read_full(&mut self.reader, &mut buf).map_err(io_error(&self.path))?;
            if !all_zeros(&buf[..read]) {
                return Ok(false);
            }
            if read < buf.len() {
                return Ok(true);
            }
        }
    }

    pub(super) fn corrupt(&self, defect: &Defect) -> JournalError {
        JournalError::Corrupt {
            segment: self.path.clone(),
            offset: self.offset,
            reason: defect.to_string(),
        }
    }
}

/// Reads until `buf` is full or the file ends; returns the bytes read.
pub(super) fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
