//! The journal over real files: reopening, group commit under concurrent tasks, torn
//! tails at every offset, mid-file corruption, segment rotation, and a model-based
//! property test with restarts and truncations.

use std::fs;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use proptest::sample::Index;
use replenish::durable::journal::{
    self, CutTail, Journal, JournalConfig, JournalError, Record, Recovery, read_from,
};

/// The on-disk format, written out independently of the journal's own encoder.
fn frame(seq: u64, body: &[u8]) -> Vec<u8> {
    let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);
    let payload = [&seq.to_le_bytes()[..], body].concat();
    let len = u32::try_from(payload.len()).unwrap();
    [
        &len.to_le_bytes()[..],
        &crc.checksum(&payload).to_le_bytes(),
        &payload,
    ]
    .concat()
}

fn segment_name(first_seq: u64) -> String {
    format!("{first_seq:020}.wal")
}

/// A journal whose files grow as they are written, so that their layout is exact.
fn config(dir: &Path, segment_bytes: u64) -> JournalConfig {
    JournalConfig {
        segment_bytes,
        prepare_segments: false,
        ..JournalConfig::new(dir)
    }
}

/// A journal writing into segment space made in advance.
fn prepared_config(dir: &Path, segment_bytes: u64) -> JournalConfig {
    JournalConfig {
        prepare_segments: true,
        ..config(dir, segment_bytes)
    }
}

fn open(dir: &Path) -> (Journal, Recovery) {
    Journal::open(config(dir, journal::DEFAULT_SEGMENT_BYTES), None).unwrap()
}

/// Appends each body, waits until all are durable and closes.
fn write_log(dir: &Path, segment_bytes: u64, bodies: &[Vec<u8>]) {
    let (journal, _) = Journal::open(config(dir, segment_bytes), None).unwrap();
    for body in bodies {
        journal.append(body).unwrap();
    }
    journal.wait_durable_blocking(journal.last_seq()).unwrap();
    journal.close().unwrap();
}

fn read_all(dir: &Path, from: u64) -> Vec<Record> {
    read_from(dir, from).unwrap().map(Result::unwrap).collect()
}

fn as_pairs(records: &[Record]) -> Vec<(u64, Vec<u8>)> {
    records.iter().map(|r| (r.seq, r.body.to_vec())).collect()
}

fn numbered(bodies: &[Vec<u8>], seqs: RangeInclusive<u64>) -> Vec<(u64, Vec<u8>)> {
    seqs.zip(bodies.iter().cloned()).collect()
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    paths.sort();
    paths
}

fn sample_bodies(count: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| format!("record {i}: {}", "x".repeat(i % 7)).into_bytes())
        .collect()
}

#[test]
fn records_survive_close_and_reopen_and_seqs_continue() {
    let dir = tempfile::tempdir().unwrap();
    let mut bodies = sample_bodies(10);
    bodies[3].clear();
    write_log(dir.path(), journal::DEFAULT_SEGMENT_BYTES, &bodies);

    let (journal, recovery) = open(dir.path());
    let expected = Recovery {
        last_seq: 10,
        records: 10,
        cut: None,
    };
    assert_eq!(recovery, expected);
    assert_eq!((journal.last_seq(), journal.durable_seq()), (10, 10));
    assert_eq!(
        as_pairs(&read_all(dir.path(), 1)),
        numbered(&bodies, 1..=10)
    );
    assert_eq!(journal.append(b"eleventh").unwrap(), 11);
    journal.close().unwrap();

    let (journal, recovery) = open(dir.path());
    assert_eq!((recovery.last_seq, recovery.records), (11, 11));
    assert_eq!(journal.append(b"twelfth").unwrap(), 12);
}

#[test]
fn the_segment_file_holds_exactly_the_documented_format() {
    let dir = tempfile::tempdir().unwrap();
    let bodies = vec![b"first".to_vec(), Vec::new(), vec![0xff; 300]];
    write_log(dir.path(), journal::DEFAULT_SEGMENT_BYTES, &bodies);
    let expected: Vec<u8> = (1..)
        .zip(&bodies)
        .flat_map(|(seq, b)| frame(seq, b))
        .collect();
    assert_eq!(segments(dir.path()), vec![dir.path().join(segment_name(1))]);
    assert_eq!(
        fs::read(dir.path().join(segment_name(1))).unwrap(),
        expected
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_tasks_all_become_durable_and_read_back_in_order() {
    const TASKS: u32 = 50;
    const PER_TASK: u32 = 40;
    let dir = tempfile::tempdir().unwrap();
    let (journal, _) = open(dir.path());
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let journal = journal.clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                for i in 0..PER_TASK {
                    let body = format!("task {task} record {i}").into_bytes();
                    let seq = journal.append(&body).unwrap();
                    journal.wait_durable(seq).await.unwrap();
                    assert!(journal.durable_seq() >= seq);
                    mine.push((seq, body));
                }
                mine
            })
        })
        .collect();
    let mut appended = Vec::new();
    for task in tasks {
        let mine = task.await.unwrap();
        assert!(
            mine.windows(2).all(|w| w[0].0 < w[1].0),
            "a task's seqs rise"
        );
        appended.extend(mine);
    }
    appended.sort();
    let total = u64::from(TASKS * PER_TASK);
    // Each fdatasync covers at least one record. That it covers many when producers
    // wait concurrently is shown structurally, with the writer paused, by the unit
    // test `concurrent_waiters_share_fdatasyncs`.
    let syncs = journal.sync_count();
    assert!(syncs <= total, "{syncs} fdatasyncs for {total} records");
    journal.close().unwrap();
    let records = read_all(dir.path(), 1);
    assert_eq!(as_pairs(&records), appended);
    assert_eq!(records.last().map(|r| r.seq), Some(total));
}

/// A journal of five records in one segment; returns the segment's bytes and where
/// the last record starts.
fn five_records(dir: &Path) -> (Vec<u8>, usize) {
    write_log(dir, journal::DEFAULT_SEGMENT_BYTES, &sample_bodies(5));
    let bytes = fs::read(dir.join(segment_name(1))).unwrap();
    let last = frame(5, &sample_bodies(5)[4]).len();
    (bytes.clone(), bytes.len() - last)
}

/// Opens a journal whose only segment holds `bytes` and checks that exactly the bytes
/// after `keep` were cut, the first `kept` records survive and appends continue.
fn assert_tail_cut(bytes: &[u8], keep: usize, kept: u64) {
    let dir = tempfile::tempdir().unwrap();
    let segment = dir.path().join(segment_name(1));
    fs::write(&segment, bytes).unwrap();
    let (journal, recovery) = open(dir.path());
    let cut: CutTail = recovery.cut.clone().expect("a cut tail");
    assert_eq!(cut.segment, segment);
    assert_eq!(cut.offset, keep as u64);
    assert_eq!(cut.bytes_removed, (bytes.len() - keep) as u64);
    assert_eq!((recovery.last_seq, recovery.records), (kept, kept));
    assert_eq!(fs::metadata(&segment).unwrap().len(), keep as u64);
    let bodies = sample_bodies(5);
    let kept_bodies = &bodies[..kept as usize];
    assert_eq!(
        as_pairs(&read_all(dir.path(), 1)),
        numbered(kept_bodies, 1..=kept)
    );
    assert_eq!(journal.append(b"after the cut").unwrap(), kept + 1);
    journal.close().unwrap();
    let (_, recovery) = open(dir.path());
    assert_eq!((recovery.last_seq, recovery.cut), (kept + 1, None));
}

#[test]
fn a_truncation_anywhere_inside_the_last_record_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let (bytes, last) = five_records(dir.path());
    for end in last + 1..bytes.len() {
        assert_tail_cut(&bytes[..end], last, 4);
    }
}

#[test]
fn a_truncation_at_a_record_boundary_cuts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (bytes, last) = five_records(dir.path());
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join(segment_name(1)), &bytes[..last]).unwrap();
    let (_, recovery) = open(dir.path());
    assert_eq!((recovery.last_seq, recovery.cut), (4, None));
}

#[test]
fn a_flipped_byte_anywhere_in_the_last_record_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let (bytes, last) = five_records(dir.path());
    for at in last..bytes.len() {
        for mask in [0x01, 0x80, 0xff] {
            let mut damaged = bytes.clone();
            damaged[at] ^= mask;
            assert_tail_cut(&damaged, last, 4);
        }
    }
}

#[test]
fn zeros_after_the_last_record_are_free_space_that_appends_fill() {
    let dir = tempfile::tempdir().unwrap();
    let (bytes, _) = five_records(dir.path());
    let sixth = frame(6, b"into the zeros");
    for zeros in [1, 7, 8, 9, 16, sixth.len(), 4096] {
        let dir = tempfile::tempdir().unwrap();
        let segment = dir.path().join(segment_name(1));
        fs::write(&segment, [bytes.clone(), vec![0; zeros]].concat()).unwrap();
        assert_eq!(read_all(dir.path(), 1).len(), 5);
        let (journal, recovery) = open(dir.path());
        assert_eq!(
            (recovery.last_seq, recovery.records, recovery.cut),
            (5, 5, None)
        );
        assert_eq!(journal.append(b"into the zeros").unwrap(), 6);
        journal.close().unwrap();
        let after = fs::read(&segment).unwrap();
        let written = [bytes.clone(), sixth.clone()].concat();
        assert_eq!(after[..written.len()], written[..]);
        assert_eq!(after.len(), written.len().max(bytes.len() + zeros));
        assert!(after[written.len()..].iter().all(|&b| b == 0));
        assert_eq!(read_all(dir.path(), 1).len(), 6);
    }
}

#[test]
fn an_all_zero_segment_is_an_empty_one() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join(segment_name(1)), [0; 512]).unwrap();
    assert!(read_all(dir.path(), 1).is_empty());
    let (journal, recovery) = open(dir.path());
    assert_eq!((recovery.last_seq, recovery.cut), (0, None));
    assert_eq!(journal.append(b"first").unwrap(), 1);
    journal.close().unwrap();
    assert_eq!(
        as_pairs(&read_all(dir.path(), 1)),
        vec![(1, b"first".to_vec())]
    );
}

#[test]
fn zeros_followed_by_anything_else_are_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let (bytes, _) = five_records(dir.path());
    for zeros in [1, 8, 16, 4096] {
        let padded = [bytes.clone(), vec![0; zeros], vec![7]].concat();
        assert_tail_cut(&padded, bytes.len(), 5);
    }
}

#[test]
fn a_stale_record_with_an_old_seq_at_the_tail_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let (bytes, _) = five_records(dir.path());
    let stale = [bytes.clone(), frame(3, b"old")].concat();
    assert_tail_cut(&stale, bytes.len(), 5);
}

#[test]
fn a_flipped_byte_in_an_early_record_refuses_to_start_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (bytes, _) = five_records(dir.path());
    let second = frame(1, &sample_bodies(1)[0]).len();
    let third = second + frame(2, &sample_bodies(2)[1]).len();
    for at in second..third {
        let mut damaged = bytes.clone();
        damaged[at] ^= 0x10;
        let dir = tempfile::tempdir().unwrap();
        let segment = dir.path().join(segment_name(1));
        fs::write(&segment, &damaged).unwrap();
        match Journal::open(JournalConfig::new(dir.path()), None) {
            Err(JournalError::Corrupt {
                segment: at_segment,
                offset,
                ..
            }) => {
                assert_eq!((at_segment, offset), (segment.clone(), second as u64));
            }
            other => panic!("byte {at}: expected Corrupt, got {other:?}"),
        }
        assert_eq!(
            fs::read(&segment).unwrap(),
            damaged,
            "byte {at}: file unchanged"
        );
        let read: Vec<_> = read_from(dir.path(), 1).unwrap().collect();
        assert_eq!(
            read.len(),
            2,
            "read_from stops with an error after record 1"
        );
        assert!(matches!(read[1], Err(JournalError::Corrupt { .. })));
    }
}

#[test]
fn a_seq_gap_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = [frame(1, b"a"), frame(2, b"b"), frame(4, b"d")].concat();
    let segment = dir.path().join(segment_name(1));
    fs::write(&segment, &bytes).unwrap();
    let result = Journal::open(JournalConfig::new(dir.path()), None);
    assert!(
        matches!(result, Err(JournalError::Corrupt { .. })),
        "{result:?}"
    );
    assert_eq!(fs::read(&segment).unwrap(), bytes);
}

#[test]
fn a_bad_record_in_a_segment_before_the_last_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), 100, &vec![vec![7; 20]; 6]);
    let files = segments(dir.path());
    assert!(files.len() >= 2);
    let mut first = fs::read(&files[0]).unwrap();
    let len = first.len();
    first[len - 1] ^= 1;
    fs::write(&files[0], &first).unwrap();
    let result = Journal::open(config(dir.path(), 100), None);
    assert!(
        matches!(result, Err(JournalError::Corrupt { .. })),
        "{result:?}"
    );
    assert_eq!(fs::read(&files[0]).unwrap().len(), len);
}

#[test]
fn a_segment_whose_name_breaks_the_chain_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join(segment_name(1)), frame(1, b"a")).unwrap();
    fs::write(dir.path().join(segment_name(3)), frame(3, b"c")).unwrap();
    let result = Journal::open(JournalConfig::new(dir.path()), None);
    assert!(
        matches!(result, Err(JournalError::Corrupt { .. })),
        "{result:?}"
    );
}

#[test]
fn segments_rotate_at_record_boundaries_and_read_from_crosses_them() {
    let dir = tempfile::tempdir().unwrap();
    // 36-byte frames: two fit in 100 bytes, a third does not.
    let bodies: Vec<Vec<u8>> = (0..25u8).map(|i| vec![i; 20]).collect();
    write_log(dir.path(), 100, &bodies);
    let files = segments(dir.path());
    let names: Vec<PathBuf> = (0..13)
        .map(|i| dir.path().join(segment_name(1 + 2 * i)))
        .collect();
    assert_eq!(files, names);
    for file in &files {
        assert!(fs::metadata(file).unwrap().len() <= 100);
    }
    assert_eq!(
        as_pairs(&read_all(dir.path(), 0)),
        numbered(&bodies, 1..=25)
    );
    assert_eq!(
        as_pairs(&read_all(dir.path(), 1)),
        numbered(&bodies, 1..=25)
    );
    assert_eq!(
        as_pairs(&read_all(dir.path(), 10)),
        numbered(&bodies[9..], 10..=25)
    );
    assert_eq!(
        as_pairs(&read_all(dir.path(), 25)),
        numbered(&bodies[24..], 25..=25)
    );
    assert!(read_all(dir.path(), 26).is_empty());

    let (journal, recovery) = Journal::open(config(dir.path(), 100), None).unwrap();
    assert_eq!((recovery.last_seq, recovery.records), (25, 25));
    assert_eq!(journal.append(&[1; 20]).unwrap(), 26);
    assert_eq!(journal.append(&[2; 300]).unwrap(), 27);
    assert_eq!(journal.append(&[3; 20]).unwrap(), 28);
    journal.close().unwrap();
    let files = segments(dir.path());
    let tail: Vec<PathBuf> = [25, 27, 28]
        .map(|s| dir.path().join(segment_name(s)))
        .into();
    assert_eq!(
        files[files.len() - 3..],
        tail,
        "an oversized record gets its own segment"
    );
    assert_eq!(read_all(dir.path(), 20).len(), 9);
}

/// Two segments of two 36-byte records each, the first padded with `padding`.
fn two_segments_with_a_padded_first(padding: &[u8]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let bodies: Vec<Vec<u8>> = (0..4u8).map(|i| vec![i; 20]).collect();
    write_log(dir.path(), 100, &bodies);
    let first = dir.path().join(segment_name(1));
    let padded = [fs::read(&first).unwrap(), padding.to_vec()].concat();
    fs::write(&first, padded).unwrap();
    dir
}

#[test]
fn a_segment_before_the_last_may_end_in_zeros() {
    let dir = two_segments_with_a_padded_first(&[0; 28]);
    assert_eq!(read_all(dir.path(), 1).len(), 4);
    let (_, recovery) = open(dir.path());
    assert_eq!((recovery.last_seq, recovery.cut), (4, None));
}

#[test]
fn a_segment_before_the_last_ending_in_zeros_and_garbage_refuses_to_start() {
    let dir = two_segments_with_a_padded_first(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 9]);
    let read: Vec<_> = read_from(dir.path(), 1).unwrap().collect();
    assert!(matches!(
        read.last(),
        Some(Err(JournalError::Corrupt { .. }))
    ));
    let result = Journal::open(config(dir.path(), 100), None);
    assert!(
        matches!(result, Err(JournalError::Corrupt { .. })),
        "{result:?}"
    );
}

#[test]
fn the_writer_moves_into_prepared_space_and_appends_stop_growing_files() {
    const SEGMENT: u64 = 64 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let (journal, _) = Journal::open(prepared_config(dir.path(), SEGMENT), None).unwrap();
    let body = vec![b'p'; 200];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut appended = 0;
    // Until the writer works in a prepared file, and then past two more rotations.
    while segments_of(dir.path()).len() < 4 {
        assert!(
            std::time::Instant::now() < deadline,
            "no prepared segment in 20 s"
        );
        let seq = journal.append(&body).unwrap();
        journal.wait_durable_blocking(seq).unwrap();
        appended += 1;
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let last = segments_of(dir.path()).pop().unwrap();
    let before = fs::metadata(&last).unwrap().len();
    assert_eq!(before, SEGMENT, "the newest segment was made in advance");
    let seq = journal.append(&body).unwrap();
    journal.wait_durable_blocking(seq).unwrap();
    appended += 1;
    assert_eq!(
        fs::metadata(&last).unwrap().len(),
        before,
        "an append fills, not grows"
    );
    journal.close().unwrap();
    let files = segments(dir.path());
    assert!(
        files
            .iter()
            .all(|f| f.extension().is_some_and(|e| e == "wal")),
        "no prepared file is left after close: {files:?}"
    );
    for file in &files[1..] {
        assert_eq!(fs::metadata(file).unwrap().len(), SEGMENT);
    }
    let read = read_all(dir.path(), 1);
    assert_eq!(read.len(), appended);
    assert!(read.iter().all(|r| r.body == body));
    let (journal, recovery) = Journal::open(prepared_config(dir.path(), SEGMENT), None).unwrap();
    assert_eq!((recovery.last_seq, recovery.cut), (appended as u64, None));
    assert_eq!(
        journal.append(b"after reopen").unwrap(),
        appended as u64 + 1
    );
}

/// The segment files (not prepared space) in `dir`, in order.
fn segments_of(dir: &Path) -> Vec<PathBuf> {
    let mut files = segments(dir);
    files.retain(|f| f.extension().is_some_and(|e| e == "wal"));
    files
}

#[test]
fn one_append_all_is_numbered_consecutively_across_a_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, _) = Journal::open(config(dir.path(), 64), None).unwrap();
    let bodies: Vec<&[u8]> = vec![b"0123456789".as_slice(); 10];
    let seqs = journal.append_all(&bodies).unwrap();
    assert_eq!(seqs, 1..=10);
    journal.wait_durable_blocking(10).unwrap();
    journal.close().unwrap();
    assert!(segments(dir.path()).len() > 1);
    let read = read_all(dir.path(), 1);
    assert_eq!(
        read.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (1..=10).collect::<Vec<_>>()
    );
}

#[test]
fn read_from_ignores_a_record_still_being_written_at_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let (bytes, last) = five_records(dir.path());
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join(segment_name(1)), &bytes[..last + 3]).unwrap();
    assert_eq!(read_all(dir.path(), 1).len(), 4);
}

/// One step of the model test.
#[derive(Debug, Clone)]
enum Op {
    /// Append these bodies (one call each, or one `append_all`) and wait until durable.
    Append(Vec<Vec<u8>>, bool),
    /// Close and open again.
    Reopen,
    /// Close, truncate the last segment at a random point, open again.
    Truncate(Index),
}

fn op() -> impl Strategy<Value = Op> {
    let body = prop::collection::vec(any::<u8>(), 0..40);
    prop_oneof![
        6 => (prop::collection::vec(body, 1..6), any::<bool>())
            .prop_map(|(bodies, together)| Op::Append(bodies, together)),
        1 => Just(Op::Reopen),
        2 => any::<Index>().prop_map(Op::Truncate),
    ]
}

/// The model test's world: the journal under test and the records known durable.
struct World {
    dir: tempfile::TempDir,
    journal: Journal,
    model: Vec<Vec<u8>>,
    /// Whether the journal writes into space made in advance.
    prepare: bool,
}

const MODEL_SEGMENT_BYTES: u64 = 160;

impl World {
    fn new(prepare: bool) -> World {
        let dir = tempfile::tempdir().unwrap();
        let config = World::config(dir.path(), prepare);
        let (journal, _) = Journal::open(config, None).unwrap();
        World {
            dir,
            journal,
            model: Vec::new(),
            prepare,
        }
    }

    fn config(dir: &Path, prepare: bool) -> JournalConfig {
        JournalConfig {
            prepare_segments: prepare,
            ..config(dir, MODEL_SEGMENT_BYTES)
        }
    }

    fn reopen(&mut self) -> Recovery {
        self.journal.close().unwrap();
        let config = World::config(self.dir.path(), self.prepare);
        let (journal, recovery) = Journal::open(config, None).unwrap();
        self.journal = journal;
        recovery
    }

    fn append(&mut self, bodies: &[Vec<u8>], together: bool) {
        let first = self.model.len() as u64 + 1;
        let seqs = if together {
            let slices: Vec<&[u8]> = bodies.iter().map(Vec::as_slice).collect();
            self.journal.append_all(&slices).unwrap()
        } else {
            let seqs: Vec<u64> = bodies
                .iter()
                .map(|b| self.journal.append(b).unwrap())
                .collect();
            seqs[0]..=seqs[seqs.len() - 1]
        };
        assert_eq!(seqs, first..=first + bodies.len() as u64 - 1);
        self.journal.wait_durable_blocking(*seqs.end()).unwrap();
        self.model.extend(bodies.iter().cloned());
    }

    /// Truncates the last segment; returns what recovery must report: the records
    /// that survive and the cut (offset, bytes removed) if the point is inside a record
    /// (a point in the zeros after the last record cuts nothing).
    fn truncate(&mut self, at: Index) -> (usize, Option<(u64, u64)>) {
        self.journal.close().unwrap();
        let last = segments(self.dir.path()).pop().unwrap();
        let first_seq: usize = last.file_stem().unwrap().to_str().unwrap().parse().unwrap();
        let len = fs::metadata(&last).unwrap().len() as usize;
        let point = at.index(len + 1);
        let (mut survivors, mut boundary, mut inside) = (first_seq - 1, 0, false);
        for body in &self.model[first_seq - 1..] {
            let end = boundary + 16 + body.len();
            if end > point {
                inside = true;
                break;
            }
            (survivors, boundary) = (survivors + 1, end);
        }
        fs::OpenOptions::new()
            .write(true)
            .open(&last)
            .unwrap()
            .set_len(point as u64)
            .unwrap();
        let cut =
            (inside && point != boundary).then_some((boundary as u64, (point - boundary) as u64));
        (survivors, cut)
    }

    fn check_log(&self) {
        let read: Vec<Vec<u8>> = read_all(self.dir.path(), 1)
            .into_iter()
            .map(|r| r.body.to_vec())
            .collect();
        assert_eq!(read, self.model);
        assert_eq!(self.journal.last_seq(), self.model.len() as u64);
        assert_eq!(self.journal.durable_seq(), self.model.len() as u64);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn the_log_is_what_was_made_durable_minus_what_a_truncation_removed(
        ops in prop::collection::vec(op(), 1..30),
        prepare in any::<bool>(),
    ) {
        let mut world = World::new(prepare);
        for op in ops {
            match op {
                Op::Append(bodies, together) => world.append(&bodies, together),
                Op::Reopen => {
                    let recovery = world.reopen();
                    prop_assert_eq!(recovery.last_seq, world.model.len() as u64);
                    prop_assert_eq!(recovery.cut, None);
                }
                Op::Truncate(at) => {
                    let (survivors, cut) = world.truncate(at);
                    let recovery = world.reopen();
                    prop_assert_eq!(recovery.last_seq, survivors as u64);
                    let reported = recovery.cut.map(|c| (c.offset, c.bytes_removed));
                    prop_assert_eq!(reported, cut);
                    world.model.truncate(survivors);
                }
            }
            world.check_log();
        }
        let recovery = world.reopen();
        prop_assert_eq!(recovery.last_seq, world.model.len() as u64);
        world.check_log();
    }
}
