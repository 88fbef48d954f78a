//! `replenish reconcile bank FILE --bank NAME --day D`: every line of the bank's file
//! matched to the switch's decision with the same transaction key, and every decision
//! of the bank's links on that business day to a line. Each line and each decision ends
//! in one class: `matched`, `amount_mismatch`, `status_mismatch`, `missing_at_switch`,
//! `missing_at_bank` or `duplicate_in_file`.
//!
//! It streams: the file is read twice (once to check every line, once to match) and
//! the day's decisions are read from the journal (its segments hold them in order,
//! between the closes of the day before and of the day itself), held as compact
//! digests; a line whose key is not among them is looked up in the index, where a
//! decision of another day (a message that crossed the cutover) is found.
//!
//! Choices where the contract is silent: a repeat line (`0221`, `0401`) with the same
//! content as its original's line is the same transaction and no break; `08xx` lines
//! are ignored (counted in the report); a line for a day other than `--day` is a bad
//! line; a line matched to a decision of an adjacent day is matched and listed under
//! `other_day`, and that decision is not `missing_at_bank` when its own day is
//! reconciled.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use serde_json::json;

use super::file::{self, BankLine, Layout};
use super::{BackofficeError, Books, BreakShown, OtherDay, Report, key_digest, record};
use crate::config::Bank;
use crate::durable::journal;
use crate::durable::record::{Break, Decision, LostAdvice, Record, Side, TransactionEntry};
use crate::durable::store::ClosedDay;
use crate::vocab::key::TransactionKey;
use crate::wire::iso8583::mask_pan;

/// The classes, in the summary's order.
pub const CLASSES: [&str; 6] = [
    "matched",
    "amount_mismatch",
    "status_mismatch",
    "missing_at_switch",
    "missing_at_bank",
    "duplicate_in_file",
];

/// What the switch decided, as compact as matching needs (a million of them, with
/// their key digests, in about 60 MB).
struct Ours {
    amount: u64,
    /// The account's digits as a number, and how many there are (0: no account).
    account: u64,
    digits: u8,
    approved: bool,
    /// An advice (`0120`, `0220` and repeats): a line of its kind matches it first.
    advice: bool,
    /// Set once a line matched it, with a digest of that line's content (a second
    /// line with the key is a repeat of it, or a duplicate).
    matched: bool,
    line: u64,
}

/// The day's decisions by key digest. Nearly every key has one; a key with more (a
/// stand-in advice after the request the switch declined, a correction after a full
/// reversal) keeps the others beside it in journal order, so each decision is paired
/// with its own line and ends in exactly one class.
#[derive(Default)]
struct Decisions {
    first: HashMap<u128, Ours>,
    more: HashMap<u128, Vec<Ours>>,
}

impl Decisions {
    fn add(&mut self, digest: u128, ours: Ours) {
        match self.first.entry(digest) {
            std::collections::hash_map::Entry::Occupied(_) => {
                self.more.entry(digest).or_default().push(ours);
            }
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(ours);
            }
        }
    }

    fn contains(&self, digest: u128) -> bool {
        self.first.contains_key(&digest)
    }

    /// The decision a line matches: the first unmatched one of the line's kind
    /// (advice or not), else the first unmatched one.
    fn pick(&mut self, digest: u128, advice: bool) -> Option<&mut Ours> {
        let first = self.first.get_mut(&digest)?;
        let more = self.more.get_mut(&digest);
        let all = std::iter::once(first).chain(more.into_iter().flat_map(|m| m.iter_mut()));
        let open: Vec<&mut Ours> = all.filter(|o| !o.matched).collect();
        let kind = open.iter().position(|o| o.advice == advice);
        open.into_iter().nth(kind.unwrap_or(0))
    }

    /// Whether a line with this content matched one of the key's decisions already.
    fn matched_content(&self, digest: u128, content: u64) -> bool {
        let first = self.first.get(&digest);
        let more = self.more.get(&digest).into_iter().flatten();
        first
            .into_iter()
            .chain(more)
            .any(|o| o.matched && o.line == content)
    }

    /// The `n`th decision with this key digest (0: the first).
    fn nth(&self, digest: u128, n: usize) -> Option<&Ours> {
        match n {
            0 => self.first.get(&digest),
            n => self.more.get(&digest)?.get(n - 1),
        }
    }
}

impl Ours {
    fn of(decision: &Decision) -> Ours {
        let account = decision.account.as_deref().unwrap_or("");
        let (account, digits) = match account.parse::<u64>() {
            Ok(number) if account.len() <= 19 => (number, account.len() as u8),
            _ => (0, 0),
        };
        Ours {
            amount: amount_of(decision),
            account,
            digits,
            approved: decision.code.as_str() == "00",
            advice: decision.mti.as_bytes().get(2) == Some(&b'2'),
            matched: false,
            line: 0,
        }
    }

    /// The account, when the decision named one.
    fn account(&self) -> Option<String> {
        (self.digits > 0)
            .then(|| format!("{:0width$}", self.account, width = usize::from(self.digits)))
    }

    fn same_account(&self, account: &str) -> bool {
        self.digits == 0
            || (account.len() == usize::from(self.digits)
                && account.parse::<u64>() == Ok(self.account))
    }
}

/// A digest of what a line says of its transaction (a repeat says the same).
fn content_digest(line: &BankLine) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    (line.amount, &line.account, line.approved()).hash(&mut hasher);
    hasher.finish()
}

/// Reconciles `path` (in `layout`) against `bank`'s decisions of `day`.
pub fn reconcile(
    books: &Books<'_>,
    bank: &Bank,
    day: &ClosedDay,
    path: &Path,
    layout: &Layout,
    at_ms: i64,
) -> Result<Report, BackofficeError> {
    let name = path.display().to_string();
    check_file(path, layout, &day.day)?;
    let file_sha256 = super::sha256_file(path)?;
    let mut ours = decisions(books, bank, day)?;
    let mut matching = Matching::new(bank, &day.day, books);
    matching.next_door()?;
    let reader = file::open(path).map_err(BackofficeError::Input)?;
    let mut failure = None;
    let (lines, _) = file::read(reader, layout, |line| {
        if failure.is_none()
            && let Err(e) = matching.line(&line, &mut ours)
        {
            failure = Some(e);
        }
    })
    .map_err(|e| BackofficeError::Input(format!("{name}: {e}")))?;
    if let Some(e) = failure {
        return Err(e);
    }
    matching.unmatched(books, bank, day, &ours)?;
    let mut report = Report {
        bank: Some(bank.name.clone()),
        engine: None,
        day: day.day.clone(),
        file_sha256,
        lines,
        counts: CLASSES.iter().map(|c| ((*c).to_owned(), 0)).collect(),
        repeats: matching.repeats,
        ignored: matching.ignored,
        other_day: matching.other_day,
        breaks: Vec::new(),
    };
    for (class, n) in matching.counts {
        *report.counts.entry(class.to_owned()).or_default() += n;
    }
    report.breaks = (matching.breaks.iter())
        .map(|b| BreakShown {
            id: 0,
            class: b.class.clone(),
            key: b.key.clone(),
            confirmation: b.confirmation.clone(),
            bank: b.theirs.clone(),
            engine: None,
            switch: b.ours.clone(),
        })
        .collect();
    record(books, Side::Bank, &mut report, matching.breaks, at_ms)?;
    Ok(report)
}

/// Reads the whole file once: every bad line named, nothing recorded when any.
fn check_file(path: &Path, layout: &Layout, day: &str) -> Result<(), BackofficeError> {
    let name = path.display().to_string();
    let reader = file::open(path).map_err(BackofficeError::Input)?;
    let mut wrong_day = Vec::new();
    let (_, mut bad) = file::read(reader, layout, |line| {
        if crate::vocab::calendar::label(line.day) != day {
            wrong_day.push(file::BadLine {
                line: line.line,
                column: "business_day".into(),
                reason: format!("{} is not the day reconciled ({day})", line.day),
            });
        }
    })
    .map_err(|e| BackofficeError::Input(format!("{name}: {e}")))?;
    bad.extend(wrong_day);
    if bad.is_empty() {
        return Ok(());
    }
    bad.sort_by_key(|b| b.line);
    let listed: Vec<String> = (bad.iter())
        .map(|b| format!("{name}:{}: {}: {}", b.line, b.column, b.reason))
        .collect();
    Err(BackofficeError::Input(format!(
        "{}\n{name}: {} bad line(s); nothing recorded",
        listed.join("\n"),
        bad.len()
    )))
}

/// Whether a decision is one the bank's file has a line for: a keyed decision of
/// an authorization, financial or reversal message on one of the bank's links.
pub(crate) fn is_banks(decision: &Decision, bank: &Bank) -> bool {
    bank.links.contains(&decision.summary.link)
        && matches!(decision.mti.as_bytes().get(1), Some(b'1' | b'2' | b'4'))
}

/// Every decision of `bank` on `day`, by key digest.
fn decisions(
    books: &Books<'_>,
    bank: &Bank,
    day: &ClosedDay,
) -> Result<Decisions, BackofficeError> {
    let mut ours = Decisions::default();
    for_each_decision(books, day, |decision| {
        if is_banks(decision, bank) {
            ours.add(key_digest(&decision.key.0), Ours::of(decision));
        }
    })?;
    Ok(ours)
}

/// Calls `each` with every decision journaled in `day`.
pub(crate) fn for_each_decision(
    books: &Books<'_>,
    day: &ClosedDay,
    mut each: impl FnMut(&Decision),
) -> Result<(), BackofficeError> {
    let records = journal::read_from(&books.journal_dir, day.first_seq)
        .map_err(|e| BackofficeError::Data(e.into()))?;
    for record in records {
        let record = record.map_err(|e| BackofficeError::Data(e.into()))?;
        if record.seq > day.last_seq {
            break;
        }
        if record.seq < day.first_seq {
            continue;
        }
        // Only decisions matter: other records are not parsed.
        if !record.body.starts_with(br#"{"type":"decided""#) {
            continue;
        }
        match Record::from_bytes(&record.body) {
            Ok(Record::Decided(decision)) => each(&decision),
            Ok(_) => {}
            Err(e) => {
                return Err(BackofficeError::Remote(format!(
                    "journal record {}: {e}",
                    record.seq
                )));
            }
        }
    }
    Ok(())
}

fn amount_of(decision: &Decision) -> u64 {
    decision.summary.amount.trim().parse().unwrap_or(0)
}

/// The state of one matching run.
struct Matching<'a> {
    party: &'a str,
    day: &'a str,
    books: &'a Books<'a>,
    link: String,
    /// Key digests of lines with no decision of the day, with a digest of what their
    /// first line said.
    seen: HashMap<u128, u64>,
    counts: HashMap<&'static str, u64>,
    breaks: Vec<Break>,
    /// How many breaks of a class and key so far (a key can break twice).
    occurrences: HashMap<(String, String), u32>,
    repeats: u64,
    ignored: u64,
    other_day: Vec<OtherDay>,
    /// Keys of this day's decisions that the adjacent days' files listed (matched there
    /// as crossing the cutover): a line for one here too lists it twice.
    listed_next_door: HashSet<String>,
}

impl<'a> Matching<'a> {
    fn new(bank: &'a Bank, day: &'a str, books: &'a Books<'a>) -> Matching<'a> {
        Matching {
            party: &bank.name,
            day,
            books,
            link: bank.links.first().cloned().unwrap_or_default(),
            seen: HashMap::new(),
            counts: HashMap::new(),
            breaks: Vec::new(),
            occurrences: HashMap::new(),
            repeats: 0,
            ignored: 0,
            other_day: Vec::new(),
            listed_next_door: HashSet::new(),
        }
    }

    /// Loads what the adjacent days' reconciliations matched of this day.
    fn next_door(&mut self) -> Result<(), BackofficeError> {
        for shift in [-1i64, 1] {
            let Some(other) = crate::vocab::calendar::parse_day(self.day)
                .and_then(|d| d.checked_add_signed(chrono::TimeDelta::days(shift)))
            else {
                continue;
            };
            let other = crate::vocab::calendar::label(other);
            let store = self.books.store;
            self.listed_next_door.extend(store.matched_from_other_days(
                Side::Bank,
                self.party,
                &other,
            )?);
        }
        Ok(())
    }

    /// Whether the decision's own day was reconciled with a file that listed it (the
    /// run found no `missing_at_bank` for it).
    fn listed_on_its_day(&self, key: &TransactionKey, day: &str) -> Result<bool, BackofficeError> {
        let store = self.books.store;
        if store.reconciliation(Side::Bank, self.party, day)?.is_none() {
            return Ok(false);
        }
        let breaks = store.breaks_of(Side::Bank, &key.0)?;
        Ok(!breaks
            .iter()
            .any(|b| b.found.day == day && b.found.class == "missing_at_bank"))
    }

    fn line(&mut self, line: &BankLine, ours: &mut Decisions) -> Result<(), BackofficeError> {
        if line.class() == 8 {
            self.ignored += 1;
            return Ok(());
        }
        let key = TransactionKey::from_parts(
            &line.acquirer_id,
            &line.terminal,
            &line.stan,
            &line.transmission,
            line.class(),
        );
        let digest = key_digest(&key.0);
        let content = content_digest(line);
        if ours.contains(digest) {
            let advice = line.mti.as_bytes().get(2) == Some(&b'2');
            let Some(o) = ours.pick(digest, advice) else {
                let same = ours.matched_content(digest, content);
                self.again(&key, line, same);
                return Ok(());
            };
            o.matched = true;
            o.line = content;
            if self.listed_next_door.contains(&key.0) {
                self.found("duplicate_in_file", &key, Some(line), None);
                return Ok(());
            }
            let class = compare(line, o.approved, o.amount, |a| o.same_account(a));
            if class == "matched" {
                *self.counts.entry(class).or_default() += 1;
            } else {
                let view = ours_view(o.approved, o.amount, o.account().as_deref(), self.day);
                self.found(class, &key, Some(line), Some(view));
            }
            return Ok(());
        }
        if let Some(first) = self.seen.get(&digest) {
            self.again(&key, line, *first == content);
            return Ok(());
        }
        self.seen.insert(digest, content);
        match self.books.store.transaction(&key)? {
            Some(entry) if !entry.business_day.is_empty() && entry.business_day != self.day => {
                if self.listed_on_its_day(&key, &entry.business_day)? {
                    self.found("duplicate_in_file", &key, Some(line), None);
                } else {
                    self.other_day(&key, line, &entry);
                }
            }
            _ => self.found("missing_at_switch", &key, Some(line), None),
        }
        Ok(())
    }

    /// A second line with a key: a repeat of the first (same content, a repeat MTI), or
    /// a duplicate.
    fn again(&mut self, key: &TransactionKey, line: &BankLine, same_content: bool) {
        if line.is_repeat() && same_content {
            self.repeats += 1;
        } else {
            self.found("duplicate_in_file", key, Some(line), None);
        }
    }

    fn other_day(&mut self, key: &TransactionKey, line: &BankLine, entry: &TransactionEntry) {
        let approved = entry.code.as_str() == "00";
        let amount = entry.credit.as_ref().map_or(line.amount, |c| c.amount);
        let account = entry.account.as_deref();
        let class = compare(line, approved, amount, |a| {
            account.is_none_or(|ours| ours == a)
        });
        let mut view = ours_view(
            approved,
            amount,
            entry.account.as_deref(),
            &entry.business_day,
        );
        if let Some(confirmation) = &entry.confirmation {
            view["confirmation"] = json!(confirmation);
        }
        self.other_day.push(OtherDay {
            key: key.0.clone(),
            switch_day: entry.business_day.clone(),
        });
        self.classify(class, key, line, view);
    }

    fn classify(
        &mut self,
        class: &'static str,
        key: &TransactionKey,
        line: &BankLine,
        ours: serde_json::Value,
    ) {
        if class == "matched" {
            *self.counts.entry(class).or_default() += 1;
        } else {
            self.found(class, key, Some(line), Some(ours));
        }
    }

    /// The decisions of the day no line matched.
    fn unmatched(
        &mut self,
        books: &Books<'_>,
        bank: &Bank,
        day: &ClosedDay,
        ours: &Decisions,
    ) -> Result<(), BackofficeError> {
        let mut missing = Vec::new();
        let mut nth: HashMap<u128, usize> = HashMap::new();
        for_each_decision(books, day, |decision| {
            if !is_banks(decision, bank) {
                return;
            }
            let digest = key_digest(&decision.key.0);
            let n = match ours.more.contains_key(&digest) {
                true => {
                    let count = nth.entry(digest).or_default();
                    *count += 1;
                    *count - 1
                }
                false => 0,
            };
            if ours.nth(digest, n).is_some_and(|o| !o.matched) {
                missing.push(decision.clone());
            }
        })?;
        let elsewhere = self.matched_elsewhere(books, &missing)?;
        for decision in missing {
            if elsewhere.contains(&decision.key.0) {
                *self.counts.entry("matched").or_default() += 1;
                continue;
            }
            let mut view = ours_view(
                decision.code.as_str() == "00",
                amount_of(&decision),
                decision.account.as_deref(),
                &decision.business_day,
            );
            view["mti"] = json!(decision.mti);
            view["code"] = json!(decision.code.as_str());
            if let Some(approval) = &decision.approval {
                view["confirmation"] = json!(approval.confirmation);
            }
            let confirmation = decision.approval.as_ref().map(|a| a.confirmation.clone());
            self.push(
                "missing_at_bank",
                &decision.key,
                confirmation,
                None,
                Some(view),
                None,
            );
        }
        Ok(())
    }

    /// Which of these decisions a file of another day matched already.
    fn matched_elsewhere(
        &self,
        books: &Books<'_>,
        missing: &[Decision],
    ) -> Result<HashSet<String>, BackofficeError> {
        let mut found = HashSet::new();
        if missing.is_empty() {
            return Ok(found);
        }
        // A lost advice credited from a break: the bank's file of the break's day listed
        // it, so today's file does not.
        for decision in missing {
            let Some(approval) = &decision.approval else {
                continue;
            };
            let breaks = books.store.breaks_of(Side::Bank, &decision.key.0)?;
            let credits_a_break = breaks.iter().any(|b| {
                (b.resolved.as_ref())
                    .and_then(|r| r.confirmation.as_deref())
                    .is_some_and(|c| c == approval.confirmation)
            });
            if credits_a_break {
                found.insert(decision.key.0.clone());
            }
        }
        for shift in [-1i64, 1] {
            let Some(other) = crate::vocab::calendar::parse_day(self.day)
                .and_then(|d| d.checked_add_signed(chrono::TimeDelta::days(shift)))
            else {
                continue;
            };
            let other = crate::vocab::calendar::label(other);
            for decision in missing {
                if books
                    .store
                    .matched_in(Side::Bank, self.party, &other, &decision.key.0)?
                {
                    found.insert(decision.key.0.clone());
                }
            }
        }
        Ok(found)
    }

    fn found(
        &mut self,
        class: &'static str,
        key: &TransactionKey,
        line: Option<&BankLine>,
        ours: Option<serde_json::Value>,
    ) {
        let theirs = line.map(theirs_view);
        let lost = (class == "missing_at_switch")
            .then(|| {
                // Only an approved financial message lost on its way is owed a credit.
                line.filter(|l| l.approved() && l.class() == 2)
                    .map(|l| self.lost(l))
            })
            .flatten();
        let confirmation = line.and_then(|l| l.confirmation.clone());
        self.push(class, key, confirmation, theirs, ours, lost);
    }

    fn push(
        &mut self,
        class: &'static str,
        key: &TransactionKey,
        confirmation: Option<String>,
        theirs: Option<serde_json::Value>,
        ours: Option<serde_json::Value>,
        lost: Option<LostAdvice>,
    ) {
        *self.counts.entry(class).or_default() += 1;
        let n = self
            .occurrences
            .entry((class.to_owned(), key.0.clone()))
            .or_default();
        *n += 1;
        let identity = format!("bank/{}/{}/{class}/{}/{n}", self.party, self.day, key.0);
        self.breaks.push(Break {
            side: Side::Bank,
            party: self.party.to_owned(),
            day: self.day.to_owned(),
            class: class.to_owned(),
            key: key.0.clone(),
            confirmation,
            theirs,
            ours,
            lost,
            identity,
            at_ms: 0,
        });
    }

    fn lost(&self, line: &BankLine) -> LostAdvice {
        LostAdvice {
            mti: line.mti.clone(),
            processing_code: line.processing_code.clone(),
            acquirer_id: line.acquirer_id.clone(),
            terminal: line.terminal.clone(),
            stan: line.stan.clone(),
            transmission: line.transmission.clone(),
            rrn: line.rrn.clone(),
            account: line.account.clone(),
            amount: line.amount,
            currency: line.currency.clone(),
            link: self.link.clone(),
        }
    }
}

/// The class of a line and the decision with its key (`same_account` says whether the
/// line's account is the decision's).
fn compare(
    line: &BankLine,
    approved: bool,
    amount: u64,
    same_account: impl Fn(&str) -> bool,
) -> &'static str {
    if line.approved() != approved {
        "status_mismatch"
    } else if line.amount != amount || !same_account(&line.account) {
        "amount_mismatch"
    } else {
        "matched"
    }
}

fn theirs_view(line: &BankLine) -> serde_json::Value {
    json!({
        "line": line.line,
        "mti": line.mti,
        "processing_code": line.processing_code,
        "account": mask_pan(line.account.as_bytes()),
        "amount": line.amount,
        "currency": line.currency,
        "response_code": line.response_code,
        "rrn": line.rrn,
        "confirmation": line.confirmation,
    })
}

fn ours_view(approved: bool, amount: u64, account: Option<&str>, day: &str) -> serde_json::Value {
    json!({
        "approved": approved,
        "amount": amount,
        "account": account.map(|a| mask_pan(a.as_bytes())),
        "business_day": day,
    })
}
