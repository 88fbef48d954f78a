//! Reconciliation (BACKOFFICE.md §2, seed steps 310-312): a bank's daily file against
//! the switch's decisions of that bank and day ([`bank`]), and a prepaid engine's
//! daily report against the credits the switch approved ([`engine`]). Each difference
//! is a break in one class and one exception-queue item; running the same file again
//! finds the same breaks and adds none. The file is input: only its SHA-256 and the
//! breaks are kept. Works on the data directory, or through the running switch (the
//! file is sent to it and read from a temporary file that is removed after).

pub mod bank;
pub mod engine;
pub mod file;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::BackofficeError;
use crate::config::Config;
use crate::durable::record::{Break, Reconciliation, Record, Side};
use crate::durable::store::{ClosedDay, Store};

/// What a reconciliation reads and writes: the indexes, the journal's segments and a
/// way to journal records (the data directory's, or the running switch's).
pub struct Books<'a> {
    /// The indexes.
    pub store: &'a Store,
    /// The journal's directory.
    pub journal_dir: PathBuf,
    /// Journals records until durable and indexed; returns their positions.
    pub commit: &'a Commit<'a>,
    /// The data directory's confirmation numbers (to find a credit by its number).
    pub numbers: &'a crate::vocab::confirmation::ConfirmationNumbers,
}

/// Journals records until durable and indexed; returns their positions.
pub type Commit<'a> = dyn Fn(&[Record]) -> Result<Vec<u64>, BackofficeError> + 'a;

/// What a reconciliation found: the `--json` report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// The bank (bank side).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bank: Option<String>,
    /// The engine (engine side).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
    /// The business day.
    pub day: String,
    /// SHA-256 of the file.
    pub file_sha256: String,
    /// Lines read (the header not counted).
    pub lines: u64,
    /// Lines and decisions per class.
    pub counts: BTreeMap<String, u64>,
    /// Repeats (`0221`, `0401`, ...) of a line in the file with the same content:
    /// the same transaction, not a break.
    pub repeats: u64,
    /// Network-management lines (`08xx`): not transactions, not reconciled.
    pub ignored: u64,
    /// Lines matched to a decision of another business day (a message that crossed
    /// the cutover: the switch decided it on the day it arrived).
    pub other_day: Vec<OtherDay>,
    /// Every break.
    pub breaks: Vec<BreakShown>,
}

/// A line matched to a decision of another day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OtherDay {
    /// The transaction key.
    pub key: String,
    /// The business day the switch decided it in.
    pub switch_day: String,
}

/// One break in the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakShown {
    /// Its exception-queue id.
    pub id: u64,
    /// Its class.
    pub class: String,
    /// The transaction key (or, engine side, the confirmation number).
    pub key: String,
    /// DE62, when either side has one.
    pub confirmation: Option<String>,
    /// The file's side (accounts masked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bank: Option<serde_json::Value>,
    /// The engine report's side (engine reconciliation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<serde_json::Value>,
    /// The switch's side (accounts masked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switch: Option<serde_json::Value>,
}

impl Report {
    /// The summary line: `reconciliation NAME DAY: N lines, N matched, ...`.
    pub fn summary(&self, classes: &[&str]) -> String {
        let name = self
            .bank
            .as_deref()
            .or(self.engine.as_deref())
            .unwrap_or("");
        let counts: Vec<String> = (classes.iter())
            .map(|c| format!("{} {c}", self.counts.get(*c).copied().unwrap_or(0)))
            .collect();
        format!(
            "reconciliation {name} {}: {} lines, {}",
            self.day,
            self.lines,
            counts.join(", ")
        )
    }

    /// Whether anything did not match.
    pub fn has_breaks(&self) -> bool {
        !self.breaks.is_empty()
    }
}

/// The closed business day `day`, or why it cannot be reconciled.
pub fn closed_day(store: &Store, day: &str) -> Result<ClosedDay, BackofficeError> {
    if crate::vocab::calendar::parse_day(day).is_none() {
        return Err(BackofficeError::Input(format!(
            "--day: {day:?} is not a date YYYY-MM-DD"
        )));
    }
    store.closed_day(day)?.ok_or_else(|| {
        BackofficeError::Refused(format!(
            "business day {day} is not closed (replenish day list; replenish day close ends the open day)"
        ))
    })
}

/// SHA-256 of a file, hex.
pub fn sha256_file(path: &Path) -> Result<String, BackofficeError> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)
        .map_err(|e| BackofficeError::Input(format!("{}: {e}", path.display())))?;
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buffer)
            .map_err(|e| BackofficeError::Input(format!("{}: {e}", path.display())))?;
        if n == 0 {
            break;
        }
        context.update(&buffer[..n]);
    }
    Ok(hex::encode(context.finish()))
}

/// Journals the breaks not found before (by identity) and the run itself; fills in
/// each break's id.
pub fn record(
    books: &Books<'_>,
    side: Side,
    report: &mut Report,
    found: Vec<Break>,
    at_ms: i64,
) -> Result<(), BackofficeError> {
    let mut ids = Vec::with_capacity(found.len());
    let mut fresh = Vec::new();
    let mut fresh_at = Vec::new();
    for (i, mut b) in found.into_iter().enumerate() {
        b.at_ms = at_ms;
        match books.store.break_by_identity(&b.identity)? {
            Some(id) => ids.push(id),
            None => {
                ids.push(0);
                fresh_at.push(i);
                fresh.push(Record::BreakFound(Box::new(b)));
            }
        }
    }
    for (i, seq) in fresh_at.into_iter().zip((books.commit)(&fresh)?) {
        ids[i] = seq;
    }
    for (shown, id) in report.breaks.iter_mut().zip(&ids) {
        shown.id = *id;
    }
    let run = Reconciliation {
        side,
        party: report
            .bank
            .clone()
            .or(report.engine.clone())
            .unwrap_or_default(),
        day: report.day.clone(),
        file_sha256: report.file_sha256.clone(),
        at_ms,
        lines: report.lines,
        counts: report.counts.clone(),
        breaks: ids,
        other_day: report.other_day.iter().map(|o| o.key.clone()).collect(),
    };
    (books.commit)(&[Record::Reconciled(Box::new(run))])?;
    Ok(())
}

/// A 128-bit digest of a transaction key: what the in-memory tables hold instead of
/// the key (a million keys in tens of megabytes).
pub(crate) fn key_digest(key: &str) -> u128 {
    use std::hash::{Hash, Hasher};
    let half = |salt: u8| {
        let mut hasher = std::hash::DefaultHasher::new();
        salt.hash(&mut hasher);
        key.hash(&mut hasher);
        hasher.finish()
    };
    (u128::from(half(1)) << 64) | u128::from(half(2))
}

/// The layout of `bank`'s file: its layout file, or the default CSV.
fn layout_of(bank: &crate::config::Bank) -> Result<file::Layout, BackofficeError> {
    match &bank.layout {
        Some(path) => file::Layout::load(path).map_err(BackofficeError::Input),
        None => Ok(file::Layout::default()),
    }
}

fn find_bank(config: &Config, name: &str) -> Result<crate::config::Bank, BackofficeError> {
    config.find_bank(name).ok_or_else(|| {
        let names: Vec<String> = config.banks().into_iter().map(|b| b.name).collect();
        BackofficeError::Input(format!(
            "--bank: no bank named {name:?} (banks: {})",
            names.join(", ")
        ))
    })
}

/// Reconciles `path` as bank `bank`'s file of `day` on `books`.
pub fn bank_on(
    books: &Books<'_>,
    config: &Config,
    path: &Path,
    bank: &str,
    day: &str,
) -> Result<Report, BackofficeError> {
    let bank = find_bank(config, bank)?;
    let layout = layout_of(&bank)?;
    let closed = closed_day(books.store, day)?;
    let now = chrono::Utc::now().timestamp_millis();
    bank::reconcile(books, &bank, &closed, path, &layout, now)
}

/// Reconciles `path` as engine `engine`'s report of `day` on `books`.
pub fn engine_on(
    books: &Books<'_>,
    config: &Config,
    path: &Path,
    engine: &str,
    day: &str,
) -> Result<Report, BackofficeError> {
    if !config.engine.iter().any(|e| e.name == engine) {
        let names: Vec<&str> = config.engine.iter().map(|e| e.name.as_str()).collect();
        return Err(BackofficeError::Input(format!(
            "--engine: no engine named {engine:?} (engines: {})",
            names.join(", ")
        )));
    }
    let closed = closed_day(books.store, day)?;
    engine::reconcile(
        books,
        engine,
        &closed,
        path,
        chrono::Utc::now().timestamp_millis(),
    )
}

/// Queues the exception report of `report` (step 312): one email per reconciliation
/// with breaks, none for a re-run that finds the same breaks.
fn queue_report(
    books: &Books<'_>,
    email: &crate::config::EmailConfig,
    report: &Report,
) -> Result<(), BackofficeError> {
    let name = report
        .bank
        .as_deref()
        .or(report.engine.as_deref())
        .unwrap_or("");
    let side = if report.bank.is_some() {
        "bank"
    } else {
        "engine"
    };
    let mut ids: Vec<u64> = report.breaks.iter().map(|b| b.id).collect();
    ids.sort_unstable();
    let ids: Vec<String> = ids.iter().map(u64::to_string).collect();
    let identity = format!(
        "reconciliation/{side}/{name}/{}/{}",
        report.day,
        ids.join(",")
    );
    if books.store.notification_by_identity(&identity)?.is_some() {
        return Ok(());
    }
    let classes: &[&str] = if report.bank.is_some() {
        &bank::CLASSES
    } else {
        &engine::CLASSES
    };
    let body = format!(
        "{}\n\nThe file's SHA-256: {}\n{} break(s), each an exception-queue item \
         (replenish exceptions list); the attached CSV lists them, accounts masked.\n",
        report.summary(classes),
        report.file_sha256,
        report.breaks.len()
    );
    let notification = crate::durable::record::Notification {
        identity,
        channel: "email".into(),
        to: email.to.clone(),
        subject: format!(
            "replenish reconciliation {name} {}: {} breaks",
            report.day,
            report.breaks.len()
        ),
        body,
        attachment: Some(crate::durable::record::Attachment {
            name: format!("breaks-{name}-{}.csv", report.day),
            content_type: "text/csv".into(),
            text: breaks_csv(report),
        }),
        at_ms: chrono::Utc::now().timestamp_millis(),
    };
    (books.commit)(&[Record::NotificationQueued(Box::new(notification))])?;
    Ok(())
}

/// The breaks as CSV, accounts masked (the views hold only masked accounts).
fn breaks_csv(report: &Report) -> String {
    let mut writer = csv::Writer::from_writer(Vec::new());
    let _ = writer.write_record([
        "id",
        "class",
        "key",
        "confirmation",
        "their_account",
        "their_amount",
        "their_response",
        "switch_account",
        "switch_amount",
        "switch_approved",
    ]);
    for b in &report.breaks {
        let theirs = b.bank.as_ref().or(b.engine.as_ref());
        let field =
            |side: Option<&serde_json::Value>, name: &str| match side.and_then(|v| v.get(name)) {
                Some(serde_json::Value::String(text)) => text.clone(),
                Some(serde_json::Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            };
        let account = |side| {
            let account = field(side, "account");
            if account.is_empty() {
                field(side, "min")
            } else {
                account
            }
        };
        let _ = writer.write_record([
            b.id.to_string(),
            b.class.clone(),
            b.key.clone(),
            b.confirmation.clone().unwrap_or_default(),
            account(theirs),
            field(theirs, "amount"),
            field(theirs, "response_code"),
            account(b.switch.as_ref()),
            field(b.switch.as_ref(), "amount"),
            field(b.switch.as_ref(), "approved"),
        ]);
    }
    String::from_utf8(writer.into_inner().unwrap_or_default()).unwrap_or_default()
}

/// Which side a file is reconciled on, and with whom.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Party<'a> {
    /// A bank's file.
    Bank(&'a str),
    /// A prepaid engine's report.
    Engine(&'a str),
}

impl Party<'_> {
    /// Reconciles, then queues the exception report for email when there are breaks
    /// (a failure to queue it is logged and never fails the reconciliation).
    fn reconcile(
        self,
        books: &Books<'_>,
        config: &Config,
        path: &Path,
        day: &str,
    ) -> Result<Report, BackofficeError> {
        let report = match self {
            Party::Bank(bank) => bank_on(books, config, path, bank, day)?,
            Party::Engine(engine) => engine_on(books, config, path, engine, day)?,
        };
        if let Some(email) = &config.notify.email
            && report.has_breaks()
            && let Err(e) = queue_report(books, email, &report)
        {
            tracing::warn!("exception report not queued for email: {e}");
        }
        Ok(report)
    }

    fn route(self, day: &str) -> String {
        match self {
            Party::Bank(bank) => format!("/reconciliations/bank/{bank}/{day}"),
            Party::Engine(engine) => format!("/reconciliations/engine/{engine}/{day}"),
        }
    }
}

/// `replenish reconcile bank|engine`: on the data directory, or through the running
/// switch.
pub fn reconcile_file(
    config: &Config,
    path: &Path,
    party: Party<'_>,
    day: &str,
) -> Result<Report, BackofficeError> {
    if let Party::Bank(bank) = party {
        find_bank(config, bank)?;
    }
    super::with_books(
        config,
        |books| {
            let report = party.reconcile(books, config, path, day)?;
            deliver_now(books, config);
            Ok(report)
        },
        |endpoint| {
            let bytes = std::fs::read(path)
                .map_err(|e| BackofficeError::Input(format!("{}: {e}", path.display())))?;
            let name = path.display().to_string();
            Ok(endpoint.upload(&party.route(day), &name, bytes)?)
        },
    )
}

/// Offline, no switch delivers the outbox: one attempt now, and what fails waits for
/// the next command or the switch. Never fails the command.
fn deliver_now(books: &Books<'_>, config: &Config) {
    let mut senders = crate::notify::Senders::new(&config.notify);
    if senders.is_empty() {
        return;
    }
    let now = chrono::Utc::now().timestamp_millis();
    let mut journal = |attempt| (books.commit)(&[attempt]).map(|_| ());
    let delivered =
        crate::notify::deliver_due::<BackofficeError>(books.store, &mut senders, now, &mut journal);
    senders.stop();
    if let Err(e) = delivered {
        tracing::warn!("notifications: {e}");
    }
}

/// `POST /reconciliations/{bank|engine}/{name}/{day}` with the file as the body.
pub(super) fn routes() -> axum::Router<super::Shared> {
    axum::Router::new()
        .route(
            "/reconciliations/{side}/{name}/{day}",
            axum::routing::post(http_reconcile),
        )
        .layer(axum::extract::DefaultBodyLimit::max(1 << 30))
}

async fn http_reconcile(
    axum::extract::State(shared): axum::extract::State<super::Shared>,
    axum::extract::Path((side, name_of_party, day)): axum::extract::Path<(String, String, String)>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<
    axum::Json<Report>,
    (
        axum::http::StatusCode,
        axum::Json<crate::operate::operator::Refusal>,
    ),
> {
    let name = (headers.get(crate::operate::operator::FILE_NAME))
        .and_then(|v| v.to_str().ok())
        .unwrap_or("upload")
        .to_owned();
    super::on_switch_books(shared, move |books, config| {
        let party = match side.as_str() {
            "bank" => Party::Bank(&name_of_party),
            "engine" => Party::Engine(&name_of_party),
            other => {
                return Err(BackofficeError::Input(format!(
                    "{other:?} is not bank or engine"
                )));
            }
        };
        // The file is read from a temporary file (removed when dropped), never kept.
        let mut temporary = tempfile::NamedTempFile::new()
            .map_err(|e| BackofficeError::Remote(format!("temporary file: {e}")))?;
        std::io::Write::write_all(&mut temporary, &body)
            .map_err(|e| BackofficeError::Remote(format!("temporary file: {e}")))?;
        party
            .reconcile(books, config, temporary.path(), &day)
            .map_err(|e| rename_file(e, temporary.path(), &name))
    })
    .await
}

/// An error naming the uploaded file by what the operator sent, not the temporary path.
fn rename_file(e: BackofficeError, temporary: &Path, name: &str) -> BackofficeError {
    let path = temporary.display().to_string();
    match e {
        BackofficeError::Input(m) => BackofficeError::Input(m.replace(&path, name)),
        other => other,
    }
}
