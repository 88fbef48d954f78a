//! Recovery on open: every segment is read and every record checked (length, CRC-32C,
//! the sequence chain). A torn tail (a record cut short or damaged at the very end of
//! the last segment, with nothing valid behind it) is cut and reported; damage anywhere
//! else refuses to start. Also the checks of one framed record, which readers share.

use super::*;

/// The last segment after recovery, which the writer appends to.
pub(super) struct Tail {
    pub(super) path: PathBuf,
    /// Bytes of records, after any cut.
    pub(super) len: u64,
    /// The file's length: zeros from `len` on.
    pub(super) space: u64,
}

/// Reads and checks every segment, cutting a torn tail.
pub(super) fn recover(config: &JournalConfig) -> Result<(Recovery, Option<Tail>), JournalError> {
    fs::create_dir_all(&config.dir).map_err(io_error(&config.dir))?;
    let segments = list_segments(&config.dir)?;
    let mut next = segments.first().map_or(1, |segment| segment.first);
    let (mut records, mut cut, mut tail) = (0, None, None);
    for (index, segment) in segments.iter().enumerate() {
        check_name(segment, next)?;
        let data = fs::read(&segment.path).map_err(io_error(&segment.path))?;
        let scan = scan_segment(&data, next);
        records += scan.next_seq - next;
        next = scan.next_seq;
        let mut len = scan.end as u64;
        let mut space = data.len() as u64;
        if let Some(defect) = scan.defect {
            let last = index + 1 == segments.len();
            let tail_cut = judge(segment, &data, scan.end, defect, last, next - 1)?;
            (len, space) = (tail_cut.offset, tail_cut.offset);
            cut = Some(tail_cut);
        }
        tail = Some(Tail {
            path: segment.path.clone(),
            len,
            space,
        });
    }
    let recovery = Recovery {
        last_seq: next - 1,
        records,
        cut,
    };
    Ok((recovery, tail))
}

/// Checks that a segment's name continues the sequence chain.
pub(super) fn check_name(segment: &SegmentFile, next: u64) -> Result<(), JournalError> {
    let reason = if segment.first == 0 {
        "sequence numbers start at 1".to_owned()
    } else if segment.first != next {
        format!(
            "segment name says its first seq is {}, the chain expects {next}",
            segment.first
        )
    } else {
        return Ok(());
    };
    Err(JournalError::Corrupt {
        segment: segment.path.clone(),
        offset: 0,
        reason,
    })
}

/// The outcome of reading one segment.
pub(super) struct Scan {
    /// The sequence number after the last valid record.
    pub(super) next_seq: u64,
    /// Where the valid records end.
    pub(super) end: usize,
    /// What stopped the scan before the end of the file.
    pub(super) defect: Option<Defect>,
}

/// Reads a segment's records up to the first bad one. Zeros from a record boundary to
/// the end of the file are free space, not a defect.
pub(super) fn scan_segment(data: &[u8], first_seq: u64) -> Scan {
    let (mut end, mut next_seq) = (0, first_seq);
    while end < data.len() {
        match check_frame(&data[end..], next_seq) {
            Ok(frame) => {
                end += frame;
                next_seq += 1;
            }
            Err(Defect::Zeros) if all_zeros(&data[end..]) => break,
            Err(defect) => {
                return Scan {
                    next_seq,
                    end,
                    defect: Some(defect),
                };
            }
        }
    }
    Scan {
        next_seq,
        end,
        defect: None,
    }
}

/// Decides whether a bad record at `offset` is a torn tail (and cuts it) or corruption.
pub(super) fn judge(
    segment: &SegmentFile,
    data: &[u8],
    offset: usize,
    defect: Defect,
    last_segment: bool,
    last_good: u64,
) -> Result<CutTail, JournalError> {
    let corrupt = |reason: String| JournalError::Corrupt {
        segment: segment.path.clone(),
        offset: offset as u64,
        reason,
    };
    if !last_segment {
        return Err(corrupt(format!(
            "{defect}, in a segment that is not the last"
        )));
    }
    if let Defect::SeqBreak { expected, found } = defect
        && found > expected
    {
        return Err(corrupt(format!("{defect}: records are missing")));
    }
    if let Some((at, seq)) = find_later_record(data, offset, last_good) {
        return Err(corrupt(format!(
            "{defect}, and a valid record (seq {seq}) follows at offset {at}"
        )));
    }
    cut_tail(segment, offset, data.len(), defect)
}

/// Looks, byte by byte after a bad record at `bad`, for a record with a valid CRC and
/// a sequence number above `last_good`. Records keep their places when bytes are
/// damaged, and each takes at least [`MIN_FRAME`] bytes, so a record at `pos` cannot
/// have a sequence number above `last_good + 1 + (pos - bad) / MIN_FRAME`; that bound
/// keeps the CRC work small on garbage.
pub(super) fn find_later_record(data: &[u8], bad: usize, last_good: u64) -> Option<(usize, u64)> {
    (bad + 1..data.len()).find_map(|pos| {
        let highest = last_good + 1 + ((pos - bad) / MIN_FRAME) as u64;
        let seq = plausible_record(&data[pos..], last_good, highest)?;
        Some((pos, seq))
    })
}

/// The sequence number of a record at the start of `buf` if it has one in
/// `(above, highest]` and a valid CRC.
pub(super) fn plausible_record(buf: &[u8], above: u64, highest: u64) -> Option<u64> {
    let (len, stored) = parse_header(buf.get(..HEADER)?);
    let payload = buf.get(HEADER..)?.get(..len as usize)?;
    let seq = payload_seq(payload)?;
    let plausible = seq > above && seq <= highest && crc32c(payload) == stored;
    plausible.then_some(seq)
}

/// Truncates the last segment at `offset`, syncs it and reports the cut.
pub(super) fn cut_tail(
    segment: &SegmentFile,
    offset: usize,
    file_len: usize,
    reason: Defect,
) -> Result<CutTail, JournalError> {
    let path = &segment.path;
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io_error(path))?;
    file.set_len(offset as u64).map_err(io_error(path))?;
    file.sync_all().map_err(io_error(path))?;
    let bytes_removed = (file_len - offset) as u64;
    warn!(
        journal.segment = %path.display(),
        offset,
        bytes_removed,
        %reason,
        "journal: cut a torn tail"
    );
    Ok(CutTail {
        segment: path.clone(),
        offset: offset as u64,
        bytes_removed,
        reason,
    })
}

pub(super) fn all_zeros(bytes: &[u8]) -> bool {
    bytes.iter().all(|&byte| byte == 0)
}

/// Checks the record at the start of `buf`; returns its length on disk.
pub(super) fn check_frame(buf: &[u8], expected: u64) -> Result<usize, Defect> {
    let Some(header) = buf.get(..HEADER) else {
        return Err(short_header(buf));
    };
    let (len, stored) = parse_header(header);
    check_length(len, stored)?;
    let rest = &buf[HEADER..];
    let Some(payload) = rest.get(..len as usize) else {
        return Err(Defect::PastEnd {
            len,
            available: rest.len(),
        });
    };
    check_payload(stored, payload, expected)?;
    Ok(HEADER + payload.len())
}

/// The defect of a header cut short by the end of the file.
pub(super) fn short_header(buf: &[u8]) -> Defect {
    if all_zeros(buf) {
        Defect::Zeros
    } else {
        Defect::ShortHeader {
            available: buf.len(),
        }
    }
}

pub(super) fn check_length(len: u32, stored: u32) -> Result<(), Defect> {
    match (len, stored) {
        (0, 0) => Err(Defect::Zeros),
        (len, _) if (len as usize) < SEQ => Err(Defect::BadLength { len }),
        _ => Ok(()),
    }
}

pub(super) fn check_payload(stored: u32, payload: &[u8], expected: u64) -> Result<(), Defect> {
    let computed = crc32c(payload);
    if computed != stored {
        return Err(Defect::BadCrc { stored, computed });
    }
    match payload_seq(payload) {
        Some(found) if found == expected => Ok(()),
        found => Err(Defect::SeqBreak {
            expected,
            found: found.unwrap_or(0),
        }),
    }
}

/// `len` and `crc` from an 8-byte header.
pub(super) fn parse_header(header: &[u8]) -> (u32, u32) {
    let word = |at: usize| {
        let mut bytes = [0; 4];
        bytes.copy_from_slice(&header[at..at + 4]);
        u32::from_le_bytes(bytes)
    };
    (word(0), word(4))
}

pub(super) fn payload_seq(payload: &[u8]) -> Option<u64> {
    let bytes: [u8; SEQ] = payload.get(..SEQ)?.try_into().ok()?;
    Some(u64::from_le_bytes(bytes))
}

pub(super) fn crc32c(bytes: &[u8]) -> u32 {
    CRC32C.checksum(bytes)
}
