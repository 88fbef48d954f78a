//! The exception and fraud logs: reviewable JSON-lines files of every transaction the
//! switch declined or could not decide, and of what it acknowledged but a reviewer
//! should see (reversals without an original, advices queued for correction, a wrong
//! channel PIN), with the
//! reason and the request masked (the seed's step 304 and its fraud file). Each line carries the journal sequence number
//! of its record as `id`; after a crash the indexer may write a line again, so readers
//! keep the first line of each id.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::durable::record::{Enrolment, Record, Summary};
use crate::vocab::codes::ResponseCode;
use crate::vocab::people::Audit;
use crate::wire::iso8583::mask_pan;

/// One line of the exception log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Exception {
    /// Journal sequence number of the record.
    pub id: u64,
    /// When decided (RFC 3339, UTC).
    pub at: String,
    /// The request MTI.
    pub mti: String,
    /// DE39 answered.
    pub code: ResponseCode,
    /// Why, in words a reviewer reads.
    pub reason: String,
    /// The transaction key, when formed.
    pub key: Option<String>,
    /// The prepaid account checked, masked (first 6, last 4).
    pub account: Option<String>,
    /// The request, masked.
    #[serde(flatten)]
    pub summary: Summary,
}

impl Exception {
    /// The exception line of a journal record, if the record is one; and whether it
    /// also belongs in the fraud log.
    pub fn of(seq: u64, record: &Record) -> Option<(Exception, bool)> {
        match record {
            Record::Decided(d) => {
                let reason = match (&d.decline, &d.note) {
                    (Some(decline), _) => serde_json::to_value(decline)
                        .ok()
                        .and_then(|v| v.get("reason").and_then(|r| r.as_str()).map(str::to_owned))
                        .unwrap_or_default(),
                    (None, Some(note)) => note.clone(),
                    (None, None) => return None,
                };
                let line = Exception {
                    id: seq,
                    at: rfc3339(d.at_ms),
                    mti: d.mti.clone(),
                    code: d.code,
                    reason,
                    key: Some(d.key.0.clone()),
                    account: d.account.as_deref().map(|a| mask_pan(a.as_bytes())),
                    summary: d.summary.clone(),
                };
                let suspect = d.decline.as_ref().is_some_and(|x| x.is_suspect());
                Some((line, suspect))
            }
            Record::Rejected(r) => Some((
                Exception {
                    id: seq,
                    at: rfc3339(r.at_ms),
                    mti: r.mti.clone(),
                    code: r.code,
                    reason: r.reason.clone(),
                    key: r.key.as_ref().map(|k| k.0.clone()),
                    account: None,
                    summary: r.summary.clone(),
                },
                r.code == ResponseCode::Duplicate,
            )),
            Record::Enrolled(saved) if saved.audit.action == WRONG_PIN => {
                Some((wrong_pin(seq, &saved.item, &saved.audit), true))
            }
            _ => None,
        }
    }
}

/// The audit action of a wrong channel PIN (see `channels::pin`).
pub const WRONG_PIN: &str = "channel.pin_wrong";

/// The fraud line of a wrong channel PIN: the account masked, the count, the channel.
fn wrong_pin(seq: u64, enrolment: &Enrolment, audit: &Audit) -> Exception {
    let locked = if enrolment.locked { ", locked" } else { "" };
    Exception {
        id: seq,
        at: rfc3339(audit.at_ms),
        mti: "channel".into(),
        code: ResponseCode::NotPermitted,
        reason: format!(
            "wrong channel PIN ({} in a row{locked})",
            enrolment.failures
        ),
        key: None,
        account: Some(mask_pan(enrolment.account.as_bytes())),
        summary: Summary {
            link: audit.user.clone(),
            ..Summary::default()
        },
    }
}

fn rfc3339(at_ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(at_ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The two log files, appended to by the indexer.
pub struct ExceptionLog {
    exceptions: BufWriter<File>,
    fraud: BufWriter<File>,
}

impl ExceptionLog {
    /// Opens (creating) both files for appending.
    pub fn open(exceptions: &Path, fraud: &Path) -> io::Result<ExceptionLog> {
        Ok(ExceptionLog {
            exceptions: BufWriter::new(append(exceptions)?),
            fraud: BufWriter::new(append(fraud)?),
        })
    }

    /// Writes the lines a record calls for (none for approvals and imports).
    pub fn record(&mut self, seq: u64, record: &Record) -> io::Result<()> {
        let Some((line, suspect)) = Exception::of(seq, record) else {
            return Ok(());
        };
        let json = serde_json::to_string(&line).map_err(io::Error::other)?;
        writeln!(self.exceptions, "{json}")?;
        if suspect {
            writeln!(self.fraud, "{json}")?;
        }
        Ok(())
    }

    /// Pushes buffered lines to the files.
    pub fn flush(&mut self) -> io::Result<()> {
        self.exceptions.flush()?;
        self.fraud.flush()
    }
}

fn append(path: &Path) -> io::Result<File> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    OpenOptions::new().create(true).append(true).open(path)
}

/// Reads an exception log, keeping the first line of each id; bad lines are reported
/// with their line number.
pub fn read(path: &Path) -> io::Result<(Vec<Exception>, Vec<String>)> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    let mut seen = std::collections::HashSet::new();
    let mut lines = Vec::new();
    let mut bad = Vec::new();
    for (index, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        match serde_json::from_str::<Exception>(line) {
            Ok(e) if seen.insert(e.id) => lines.push(e),
            Ok(_) => {}
            Err(e) => bad.push(format!("{}:{}: {e}", path.display(), index + 1)),
        }
    }
    Ok((lines, bad))
}
