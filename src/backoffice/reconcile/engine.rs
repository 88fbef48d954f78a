//! `replenish reconcile engine FILE --engine NAME --day D`: a prepaid engine's daily
//! report of what it applied (`confirmation,min,amount,kind` CSV, `kind` `credit` or
//! `reversal`; `min` empty for a PIN sale) against the credits the switch approved for
//! that engine on that business day and the reversal advices it sent. Classes:
//! `matched`, `amount_mismatch`, `missing_at_engine` (acknowledged by the engine, not in
//! its report), `unknown_at_switch` (applied at the engine, never approved here: an
//! alarm) and `applied_twice`. A credit still waiting in the outbox is not expected in
//! the report; a line for a credit of another business day (the engine's day and the
//! switch's need not end together) matches that credit.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use serde::Deserialize;
use serde_json::json;

use super::{BackofficeError, Books, BreakShown, OtherDay, Report, record};
use crate::durable::record::{Break, Decision, Record, ReversalEffect, Side, Standing};
use crate::durable::store::ClosedDay;

/// The classes, in the summary's order.
pub const CLASSES: [&str; 5] = [
    "matched",
    "amount_mismatch",
    "missing_at_engine",
    "unknown_at_switch",
    "applied_twice",
];

/// One line of an engine's report.
#[derive(Debug, Clone, Deserialize)]
struct Line {
    confirmation: String,
    min: String,
    amount: u64,
    kind: String,
}

/// What the switch expects the engine applied, by (confirmation, kind).
struct Expected {
    min: String,
    amount: u64,
    matched: bool,
}

type Expectations = HashMap<(String, &'static str), Expected>;

/// Reconciles `path` against `engine`'s credits and reversals of `day`.
pub fn reconcile(
    books: &Books<'_>,
    engine: &str,
    day: &ClosedDay,
    path: &Path,
    at_ms: i64,
) -> Result<Report, BackofficeError> {
    let lines = read(path)?;
    let file_sha256 = super::sha256_file(path)?;
    let mut expected = expectations(books, engine, day)?;
    let mut run = Run {
        engine,
        day: &day.day,
        counts: HashMap::new(),
        breaks: Vec::new(),
        occurrences: HashMap::new(),
        other_day: Vec::new(),
    };
    let mut seen = HashSet::new();
    for line in &lines {
        let kind = if line.kind == "credit" {
            "credit"
        } else {
            "reversal"
        };
        if !seen.insert((line.confirmation.clone(), kind)) {
            run.push("applied_twice", &line.confirmation, Some(line), None);
            continue;
        }
        match expected.get_mut(&(line.confirmation.clone(), kind)) {
            Some(ours) => {
                ours.matched = true;
                let view = json!({"min": ours.min, "amount": ours.amount, "kind": kind});
                if ours.amount == line.amount && ours.min == line.min {
                    *run.counts.entry("matched").or_default() += 1;
                } else {
                    run.push(
                        "amount_mismatch",
                        &line.confirmation,
                        Some(line),
                        Some(view),
                    );
                }
            }
            None => run.elsewhere(books, line, kind)?,
        }
    }
    // In a fixed order, so a re-run finds the same breaks with the same ids.
    let mut unmatched: Vec<_> = expected.iter().filter(|(_, ours)| !ours.matched).collect();
    unmatched.sort_by(|a, b| a.0.cmp(b.0));
    for ((confirmation, kind), ours) in unmatched {
        let waiting = match *kind {
            "reversal" => books.store.reversal_in_outbox(engine, confirmation)?,
            _ => books.store.in_outbox(engine, confirmation)?,
        };
        if waiting {
            continue;
        }
        if matched_in_adjacent_day(books, engine, &day.day, confirmation)? {
            *run.counts.entry("matched").or_default() += 1;
            continue;
        }
        let view = json!({"min": ours.min, "amount": ours.amount, "kind": kind});
        run.push("missing_at_engine", confirmation, None, Some(view));
    }
    let mut report = Report {
        bank: None,
        engine: Some(engine.to_owned()),
        day: day.day.clone(),
        file_sha256,
        lines: lines.len() as u64,
        counts: CLASSES.iter().map(|c| ((*c).to_owned(), 0)).collect(),
        repeats: 0,
        ignored: 0,
        other_day: run.other_day,
        breaks: Vec::new(),
    };
    for (class, n) in run.counts {
        *report.counts.entry(class.to_owned()).or_default() += n;
    }
    report.breaks = (run.breaks.iter())
        .map(|b| BreakShown {
            id: 0,
            class: b.class.clone(),
            key: b.key.clone(),
            confirmation: b.confirmation.clone(),
            bank: None,
            engine: b.theirs.clone(),
            switch: b.ours.clone(),
        })
        .collect();
    record(books, Side::Engine, &mut report, run.breaks, at_ms)?;
    Ok(report)
}

/// Reads and checks the whole report: every bad line named, nothing recorded if any.
fn read(path: &Path) -> Result<Vec<Line>, BackofficeError> {
    let name = path.display().to_string();
    let file = super::file::open(path).map_err(BackofficeError::Input)?;
    let mut csv = csv::Reader::from_reader(file);
    let mut lines = Vec::new();
    let mut bad = Vec::new();
    for (i, row) in csv.deserialize::<Line>().enumerate() {
        let number = i + 2;
        match row {
            Ok(line) => match check(&line) {
                Ok(()) => lines.push(line),
                Err((column, reason)) => bad.push(format!("{name}:{number}: {column}: {reason}")),
            },
            Err(e) => bad.push(format!("{name}:{number}: line: {e}")),
        }
    }
    if bad.is_empty() {
        return Ok(lines);
    }
    Err(BackofficeError::Input(format!(
        "{}\n{name}: {} bad line(s); nothing recorded",
        bad.join("\n"),
        bad.len()
    )))
}

fn check(line: &Line) -> Result<(), (&'static str, String)> {
    let digits = |v: &str| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit());
    if line.confirmation.len() != 12 || !digits(&line.confirmation) {
        return Err((
            "confirmation",
            format!("{:?} is not 12 digits", line.confirmation),
        ));
    }
    // A PIN sale (BACKOFFICE.md §5) credits no subscriber: its line has no MIN.
    if !(line.min.is_empty() || digits(&line.min)) || line.min.len() > 15 {
        return Err(("min", format!("{:?} is not a MIN", line.min)));
    }
    if !matches!(line.kind.as_str(), "credit" | "reversal") {
        return Err(("kind", format!("{:?} is not credit or reversal", line.kind)));
    }
    Ok(())
}

/// The credits of `engine` approved on `day` and the reversal advices sent for them.
fn expectations(
    books: &Books<'_>,
    engine: &str,
    day: &ClosedDay,
) -> Result<Expectations, BackofficeError> {
    let mut expected = Expectations::new();
    let records = crate::durable::journal::read_from(&books.journal_dir, day.first_seq)
        .map_err(|e| BackofficeError::Data(e.into()))?;
    for record in records {
        let record = record.map_err(|e| BackofficeError::Data(e.into()))?;
        if record.seq > day.last_seq {
            break;
        }
        match Record::from_bytes(&record.body) {
            Ok(Record::Decided(decision)) => expect_decision(&mut expected, engine, &decision),
            Ok(Record::Resubmitted(resubmission)) if resubmission.credit.engine == engine => {
                let credit = &resubmission.credit;
                expect(
                    &mut expected,
                    &credit.confirmation,
                    "credit",
                    &credit.min,
                    credit.amount,
                );
            }
            Ok(_) => {}
            Err(e) => {
                return Err(BackofficeError::Remote(format!(
                    "journal record {}: {e}",
                    record.seq
                )));
            }
        }
    }
    Ok(expected)
}

fn expect_decision(expected: &mut Expectations, engine: &str, decision: &Decision) {
    if decision.hold.is_none()
        && let Some(credit) = decision.credit.as_ref().filter(|c| c.engine == engine)
    {
        expect(
            expected,
            &credit.confirmation,
            "credit",
            &credit.min,
            credit.amount,
        );
    }
    match decision.reversal.as_ref().map(|r| &r.effect) {
        Some(ReversalEffect::Advised(advice)) if advice.credit.engine == engine => {
            let credit = &advice.credit;
            let reversed = credit.amount.saturating_sub(advice.remaining);
            expect(
                expected,
                &credit.confirmation,
                "reversal",
                &credit.min,
                reversed,
            );
        }
        // A credit cancelled before it left: the engine sees what remains, or nothing.
        Some(ReversalEffect::Cancelled {
            engine: e,
            confirmation,
            remaining,
        }) if e == engine => {
            let slot = (confirmation.clone(), "credit");
            match remaining {
                Some(credit) => {
                    if let Some(ours) = expected.get_mut(&slot) {
                        ours.amount = credit.amount;
                    }
                }
                None => {
                    expected.remove(&slot);
                }
            }
        }
        _ => {}
    }
}

fn expect(
    expected: &mut Expectations,
    confirmation: &str,
    kind: &'static str,
    min: &str,
    amount: u64,
) {
    let value = Expected {
        min: min.to_owned(),
        amount,
        matched: false,
    };
    expected.insert((confirmation.to_owned(), kind), value);
}

fn matched_in_adjacent_day(
    books: &Books<'_>,
    engine: &str,
    day: &str,
    confirmation: &str,
) -> Result<bool, BackofficeError> {
    let Some(date) = crate::vocab::calendar::parse_day(day) else {
        return Ok(false);
    };
    for shift in [-1i64, 1] {
        if let Some(other) = date.checked_add_signed(chrono::TimeDelta::days(shift)) {
            let other = crate::vocab::calendar::label(other);
            if books
                .store
                .matched_in(Side::Engine, engine, &other, confirmation)?
            {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

struct Run<'a> {
    engine: &'a str,
    day: &'a str,
    counts: HashMap<&'static str, u64>,
    breaks: Vec<Break>,
    occurrences: HashMap<(&'static str, String), u32>,
    other_day: Vec<OtherDay>,
}

impl Run<'_> {
    /// A line not among the day's credits: a credit of another day, or unknown.
    fn elsewhere(
        &mut self,
        books: &Books<'_>,
        line: &Line,
        kind: &'static str,
    ) -> Result<(), BackofficeError> {
        let entry = match books
            .store
            .by_confirmation(books.numbers, &line.confirmation)?
        {
            Some(key) => books.store.transaction(&key)?,
            None => None,
        };
        let credit = entry.as_ref().and_then(|e| {
            let reversed = match e.standing {
                Standing::Reversed { amount, .. } => Some(amount),
                _ => None,
            };
            e.credit
                .clone()
                .map(|c| (e.business_day.clone(), c, reversed))
        });
        match credit {
            Some((switch_day, credit, reversed)) if credit.engine == self.engine => {
                // A reversal line needs a reversal the switch decided; a credit line the
                // credit's own amount and subscriber.
                let expected = match kind {
                    "reversal" => match reversed {
                        Some(amount) => amount,
                        None => {
                            self.push("unknown_at_switch", &line.confirmation, Some(line), None);
                            return Ok(());
                        }
                    },
                    _ => credit.amount,
                };
                if switch_day != self.day {
                    self.other_day.push(OtherDay {
                        key: line.confirmation.clone(),
                        switch_day,
                    });
                }
                let view = json!({"min": credit.min, "amount": expected, "kind": kind});
                if expected == line.amount && credit.min == line.min {
                    *self.counts.entry("matched").or_default() += 1;
                } else {
                    self.push(
                        "amount_mismatch",
                        &line.confirmation,
                        Some(line),
                        Some(view),
                    );
                }
            }
            _ => self.push("unknown_at_switch", &line.confirmation, Some(line), None),
        }
        Ok(())
    }

    fn push(
        &mut self,
        class: &'static str,
        confirmation: &str,
        line: Option<&Line>,
        ours: Option<serde_json::Value>,
    ) {
        *self.counts.entry(class).or_default() += 1;
        let occurrence = self
            .occurrences
            .entry((class, confirmation.to_owned()))
            .or_default();
        *occurrence += 1;
        self.breaks.push(Break {
            side: Side::Engine,
            party: self.engine.to_owned(),
            day: self.day.to_owned(),
            class: class.to_owned(),
            key: confirmation.to_owned(),
            confirmation: Some(confirmation.to_owned()),
            theirs: line.map(|l| json!({"min": l.min, "amount": l.amount, "kind": l.kind})),
            ours,
            lost: None,
            identity: format!(
                "engine/{}/{}/{class}/{confirmation}/{occurrence}",
                self.engine, self.day
            ),
            at_ms: 0,
        });
    }
}
