//! Reading a bank's reconciliation file (BACKOFFICE.md §2): the default CSV (a header
//! row, the columns of §2 in any order, extra columns ignored), a CSV with the bank's
//! own column names, or fixed-width lines, both described by a layout file (TOML; specs
//! as data). Every line is checked field by field; a bad line is reported as
//! `FILE:LINE: column: reason`, and a file with any bad line is refused whole.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use chrono::NaiveDate;
use serde::Deserialize;

/// Every field of a line, in the order of §2.
pub const FIELDS: [&str; 13] = [
    "business_day",
    "mti",
    "processing_code",
    "acquirer_id",
    "terminal",
    "stan",
    "transmission",
    "rrn",
    "account",
    "amount",
    "currency",
    "response_code",
    "confirmation",
];

/// One line of a bank file, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BankLine {
    /// Its line number in the file (1-based, the header is line 1 of a CSV).
    pub line: u64,
    /// `business_day`.
    pub day: NaiveDate,
    /// `mti`, as the bank sent it.
    pub mti: String,
    /// `processing_code` (DE3).
    pub processing_code: String,
    /// `acquirer_id` (DE32).
    pub acquirer_id: String,
    /// `terminal` (DE41).
    pub terminal: String,
    /// `stan` (DE11).
    pub stan: String,
    /// `transmission` (DE7).
    pub transmission: String,
    /// `rrn` (DE37).
    pub rrn: String,
    /// `account`: the prepaid account.
    pub account: String,
    /// `amount`, minor units.
    pub amount: u64,
    /// `currency` (DE49).
    pub currency: String,
    /// `response_code` (DE39).
    pub response_code: String,
    /// `confirmation` (DE62), when approved.
    pub confirmation: Option<String>,
}

impl BankLine {
    /// The message class of its MTI (third digit from the left is the function; the
    /// second the class).
    pub fn class(&self) -> u8 {
        self.mti
            .as_bytes()
            .get(1)
            .map_or(0, |b| b.wrapping_sub(b'0'))
    }

    /// Whether its MTI is a repeat (`0221`, `0401`, ...).
    pub fn is_repeat(&self) -> bool {
        matches!(self.mti.as_bytes().get(3), Some(b'1'))
    }

    /// Whether the bank approved it.
    pub fn approved(&self) -> bool {
        self.response_code == "00"
    }
}

/// A layout file: how a bank's file differs from the default CSV.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layout {
    /// `csv` or `fixed`.
    pub format: Format,
    /// CSV: the field separator (one character). Default `,`.
    #[serde(default = "default_delimiter")]
    pub delimiter: char,
    /// How `business_day` is written (chrono format). Default `%Y-%m-%d`.
    #[serde(default = "default_day_format")]
    pub day_format: String,
    /// CSV: the bank's column name for each field (fields not named keep theirs).
    #[serde(default)]
    pub columns: HashMap<String, String>,
    /// Fixed width: where each field is (every field but `confirmation` required).
    #[serde(default)]
    pub fields: HashMap<String, Span>,
}

/// A field of a fixed-width line.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Span {
    /// The first character, 1-based.
    pub start: usize,
    /// Characters.
    pub length: usize,
}

/// A layout's file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// Delimited, with a header row.
    Csv,
    /// Fixed-width lines, no header.
    Fixed,
}

fn default_delimiter() -> char {
    ','
}
fn default_day_format() -> String {
    "%Y-%m-%d".into()
}

impl Default for Layout {
    /// The CSV of BACKOFFICE.md §2.
    fn default() -> Layout {
        Layout {
            format: Format::Csv,
            delimiter: default_delimiter(),
            day_format: default_day_format(),
            columns: HashMap::new(),
            fields: HashMap::new(),
        }
    }
}

impl Layout {
    /// Reads and checks a layout file; the error names the file and what is wrong.
    pub fn load(path: &Path) -> Result<Layout, String> {
        let name = path.display();
        let text = std::fs::read_to_string(path).map_err(|e| format!("{name}: {e}"))?;
        let layout: Layout = toml::from_str(&text).map_err(|e| format!("{name}: {e}"))?;
        for field in layout.columns.keys().chain(layout.fields.keys()) {
            if !FIELDS.contains(&field.as_str()) {
                return Err(format!(
                    "{name}: {field:?} is not a field ({})",
                    FIELDS.join(", ")
                ));
            }
        }
        for (field, span) in &layout.fields {
            if span.start == 0 || span.length == 0 {
                return Err(format!(
                    "{name}: fields.{field}: start counts from 1, length at least 1"
                ));
            }
        }
        if layout.format == Format::Fixed {
            for field in FIELDS.iter().filter(|f| **f != "confirmation") {
                let span = layout.fields.get(*field);
                if span.is_none_or(|s| s.start == 0 || s.length == 0) {
                    return Err(format!(
                        "{name}: fields.{field}: a fixed-width layout needs start (from 1) and length"
                    ));
                }
            }
        }
        if !layout.delimiter.is_ascii() {
            return Err(format!("{name}: delimiter: one ASCII character"));
        }
        Ok(layout)
    }
}

/// One bad line: `FILE:LINE: column: reason`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    /// The line number.
    pub line: u64,
    /// The field (or `line` for the line as a whole).
    pub column: String,
    /// What is wrong.
    pub reason: String,
}

/// Reads every line of `reader` in `layout`, calling `each` with each good line.
/// Returns the bad lines (all of them: a caller that finds any must not act on the
/// good ones) and the count of lines read.
pub fn read(
    reader: impl Read,
    layout: &Layout,
    mut each: impl FnMut(BankLine),
) -> Result<(u64, Vec<BadLine>), std::io::Error> {
    let mut bad = Vec::new();
    let mut lines = 0;
    let mut take = |result: Result<BankLine, BadLine>| {
        lines += 1;
        match result {
            Ok(line) => each(line),
            Err(e) => bad.push(e),
        }
    };
    match layout.format {
        Format::Csv => read_csv(reader, layout, &mut take)?,
        Format::Fixed => read_fixed(reader, layout, &mut take)?,
    }
    Ok((lines, bad))
}

/// Opens `path` for [`read`], naming it in the error.
pub fn open(path: &Path) -> Result<BufReader<File>, String> {
    File::open(path)
        .map(|f| BufReader::with_capacity(1 << 20, f))
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn read_csv(
    reader: impl Read,
    layout: &Layout,
    take: &mut impl FnMut(Result<BankLine, BadLine>),
) -> Result<(), std::io::Error> {
    let mut csv = csv::ReaderBuilder::new()
        .delimiter(layout.delimiter as u8)
        .flexible(true)
        .from_reader(reader);
    let header = csv.headers().map_err(std::io::Error::other)?.clone();
    let mut index = [usize::MAX; FIELDS.len()];
    for (i, field) in FIELDS.iter().enumerate() {
        let name = layout.columns.get(*field).map_or(*field, String::as_str);
        match header.iter().position(|h| h.trim() == name) {
            Some(at) => index[i] = at,
            // A file without the confirmation column has no approvals' numbers.
            None if *field == "confirmation" => {}
            None => {
                take(Err(BadLine {
                    line: 1,
                    column: name.to_owned(),
                    reason: "no such column in the header".into(),
                }));
                return Ok(());
            }
        }
    }
    let mut record = csv::StringRecord::new();
    loop {
        match csv.read_record(&mut record) {
            Ok(false) => return Ok(()),
            Ok(true) => {
                let line = record.position().map_or(0, |p| p.line());
                if record.len() != header.len() {
                    take(Err(BadLine {
                        line,
                        column: "line".into(),
                        reason: format!(
                            "{} columns, the header has {}",
                            record.len(),
                            header.len()
                        ),
                    }));
                    continue;
                }
                let value = |i: usize| record.get(index[i]).unwrap_or("").trim();
                take(check(line, value, layout));
            }
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                if let csv::ErrorKind::Io(_) = e.kind() {
                    return Err(std::io::Error::other(e.to_string()));
                }
                take(Err(BadLine {
                    line,
                    column: "line".into(),
                    reason: e.to_string(),
                }));
            }
        }
    }
}

fn read_fixed(
    reader: impl Read,
    layout: &Layout,
    take: &mut impl FnMut(Result<BankLine, BadLine>),
) -> Result<(), std::io::Error> {
    let spans: Vec<Option<Span>> = FIELDS
        .iter()
        .map(|f| layout.fields.get(*f).copied())
        .collect();
    let mut reader = BufReader::new(reader);
    let mut text = String::new();
    let mut number = 0;
    loop {
        text.clear();
        match reader.read_line(&mut text) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                number += 1;
                take(Err(BadLine {
                    line: number,
                    column: "line".into(),
                    reason: "not UTF-8 text".into(),
                }));
                continue;
            }
            Err(e) => return Err(e),
        }
        number += 1;
        let line = text.trim_end_matches(['\r', '\n']);
        if line.trim().is_empty() {
            continue;
        }
        let chars: Vec<char> = line.chars().collect();
        let value = |i: usize| -> String {
            match spans[i] {
                Some(span) => {
                    let from = (span.start - 1).min(chars.len());
                    let to = (from + span.length).min(chars.len());
                    chars[from..to].iter().collect::<String>().trim().to_owned()
                }
                None => String::new(),
            }
        };
        let values: Vec<String> = (0..FIELDS.len()).map(value).collect();
        take(check(number, |i| values[i].as_str(), layout));
    }
}

/// Checks one line's values (`value(i)` is field `FIELDS[i]`).
fn check<'a>(
    line: u64,
    value: impl Fn(usize) -> &'a str,
    layout: &Layout,
) -> Result<BankLine, BadLine> {
    let bad = |i: usize, reason: &str| BadLine {
        line,
        column: layout
            .columns
            .get(FIELDS[i])
            .cloned()
            .unwrap_or_else(|| FIELDS[i].to_owned()),
        reason: reason.to_owned(),
    };
    let digits = |i: usize, min: usize, max: usize| -> Result<String, BadLine> {
        let v = value(i);
        if v.len() < min || v.len() > max || !v.bytes().all(|b| b.is_ascii_digit()) {
            let want = if min == max {
                format!("{min} digits")
            } else {
                format!("{min} to {max} digits")
            };
            let shown = if i == 8 {
                crate::wire::iso8583::mask_pan(v.as_bytes())
            } else {
                v.to_owned()
            };
            return Err(bad(i, &format!("{shown:?} is not {want}")));
        }
        Ok(v.to_owned())
    };
    let text = |i: usize, max: usize, required: bool| -> Result<String, BadLine> {
        let v = value(i);
        if required && v.is_empty() {
            return Err(bad(i, "empty"));
        }
        if v.len() > max || !v.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
            return Err(bad(
                i,
                &format!("{v:?} is not up to {max} printable characters"),
            ));
        }
        Ok(v.to_owned())
    };
    let day = NaiveDate::parse_from_str(value(0), &layout.day_format).map_err(|_| {
        bad(
            0,
            &format!("{:?} is not a date {}", value(0), layout.day_format),
        )
    })?;
    let mti = digits(1, 4, 4)?;
    if !matches!(mti.as_bytes()[1], b'1' | b'2' | b'4' | b'8') {
        return Err(bad(
            1,
            &format!("{mti} is not an authorization, financial, reversal or network message"),
        ));
    }
    let amount = digits(9, 1, 12)?;
    let confirmation = match value(12) {
        "" => None,
        _ => Some(digits(12, 12, 12)?),
    };
    Ok(BankLine {
        line,
        day,
        mti,
        processing_code: digits(2, 6, 6)?,
        acquirer_id: text(3, 11, true)?,
        terminal: text(4, 16, true)?,
        stan: digits(5, 6, 6)?,
        transmission: digits(6, 10, 10)?,
        rrn: text(7, 12, false)?,
        account: digits(8, 1, 19)?,
        amount: amount.parse().map_err(|_| bad(9, "too large"))?,
        currency: digits(10, 3, 3)?,
        response_code: text(11, 2, true)?,
        confirmation,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "business_day,mti,processing_code,acquirer_id,terminal,stan,transmission,rrn,account,amount,currency,response_code,confirmation\n";

    fn fixture(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/reconciliation")
            .join(name)
    }

    fn lines(text: &str, layout: &Layout) -> (Vec<BankLine>, Vec<BadLine>) {
        let mut good = Vec::new();
        let (_, bad) = read(text.as_bytes(), layout, |l| good.push(l)).expect("read");
        (good, bad)
    }

    #[test]
    fn columns_come_in_any_order_and_extra_ones_are_ignored() {
        let text = "note,amount,account,business_day,mti,processing_code,acquirer_id,terminal,stan,transmission,rrn,currency,response_code,confirmation\n\
                    x,2500,6034567890123456,2026-12-04,0200,280000,00012345,TERM0001,000001,1204101010,RRN1,840,00,123456789012\n";
        let (good, bad) = lines(text, &Layout::default());
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(good[0].amount, 2500);
        assert_eq!(good[0].line, 2);
        assert_eq!(good[0].confirmation.as_deref(), Some("123456789012"));
    }

    #[test]
    fn every_bad_field_is_named_with_its_line() {
        let text = format!(
            "{HEADER}2026-13-04,0200,280000,A,T,000001,1204101010,R,6034567890123456,1,840,00,\n\
             2026-12-04,0200,28000,A,T,000001,1204101010,R,6034567890123456,1,840,00,\n\
             2026-12-04,0200,280000,A,T,000001,1204101010,R,60345678901234X6,1,840,00,\n\
             2026-12-04,0200,280000,A,T,000001,1204101010,R,6034567890123456,-5,840,00,\n\
             2026-12-04,0200,280000,A,T,000001,1204101010,R,6034567890123456,5,840\n\
             2026-12-04,0200,280000,A,T,000001,1204101010,R,6034567890123456,5,840,00,12345\n"
        );
        let (_, bad) = lines(&text, &Layout::default());
        let named: Vec<(u64, &str)> = bad.iter().map(|b| (b.line, b.column.as_str())).collect();
        assert_eq!(
            named,
            [
                (2, "business_day"),
                (3, "processing_code"),
                (4, "account"),
                (5, "amount"),
                (6, "line"),
                (7, "confirmation")
            ]
        );
        assert!(
            bad[2].reason.contains("603456******"),
            "accounts masked: {}",
            bad[2].reason
        );
    }

    #[test]
    fn a_missing_column_is_named() {
        let (_, bad) = lines("business_day,mti\n2026-12-04,0200\n", &Layout::default());
        assert_eq!(
            (bad[0].line, bad[0].column.as_str()),
            (1, "processing_code")
        );
    }

    #[test]
    fn fixed_width_lines_are_read_by_their_spans() {
        let layout = Layout::load(&fixture("fixed-width-layout.toml")).expect("layout");
        let text = std::fs::read_to_string(fixture("fixed-width-sample.txt")).expect("sample");
        let (good, bad) = lines(&text, &layout);
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(good.len(), 3);
        assert_eq!(good[0].amount, 2500);
        assert_eq!(good[2].mti, "0420");
    }
}
