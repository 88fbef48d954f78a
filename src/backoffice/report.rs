//! The back office's reports (BACKOFFICE.md §3, seed steps 308 and 313):
//! `report revenue --month M [--by carrier|bank|retailer]` (per group and currency:
//! transactions, gross, reversed, net and each party's share; text, CSV, JSON or a
//! self-contained HTML page with an SVG bar chart per group; and the PINs sold per
//! business day, product and retailer, BACKOFFICE.md §5), `report audit --day D
//! --bank NAME` (every transaction of a settlement with its parts, so each party's
//! total traces back to transactions) and `report fraud --day D` (the fraud log
//! grouped by account, location and terminal; accounts masked).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::BackofficeError;
use super::reconcile::Books;
use super::shares::{Share, each_share};
use crate::config::Config;
use crate::wire::iso8583::mask_pan;

/// What a revenue report groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum By {
    /// The account's carrier.
    Carrier,
    /// The acquiring bank.
    Bank,
    /// The location's retailer (`(none)` for ATM transfers).
    Retailer,
}

/// One group's revenue in one currency.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Row {
    /// The carrier, bank or retailer.
    pub group: String,
    /// DE49.
    pub currency: String,
    /// Approvals.
    pub transactions: u64,
    /// Credited, minor units.
    pub gross: u64,
    /// Taken back by reversals.
    pub reversed: u64,
    /// What was split: gross less reversed.
    pub net: u64,
    /// The service provider's share.
    pub provider: u64,
    /// The retailers' share.
    pub retailer: u64,
    /// The banks' share.
    pub bank: u64,
    /// The carriers' share.
    pub carrier: u64,
}

impl Row {
    fn add(&mut self, share: &Share<'_>) {
        self.transactions += 1;
        self.gross += share.gross;
        self.reversed += share.gross - share.net;
        self.net += share.net;
        self.provider += share.parts.provider;
        self.retailer += share.parts.retailer;
        self.bank += share.parts.bank;
        self.carrier += share.parts.carrier;
    }
}

/// The PINs of one product sold at one retailer's shops on one business day.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinSales {
    /// The business day of the sales.
    pub day: String,
    /// The product.
    pub sku: String,
    /// The shop's retailer (the shop's DE42 when the shop is not known).
    pub retailer: String,
    /// DE49.
    pub currency: String,
    /// Sales approved.
    pub sales: u64,
    /// Of them, reversed (the PIN voided or put back in stock).
    pub reversed: u64,
    /// Sales less reversed.
    pub net: u64,
    /// What the sales not reversed came to, minor units.
    pub net_amount: u64,
}

impl PinSales {
    fn add(&mut self, share: &Share<'_>) {
        // A sale is reversed whole or not at all.
        let reversed = u64::from(share.net < share.gross);
        self.sales += 1;
        self.reversed += reversed;
        self.net += 1 - reversed;
        self.net_amount += share.net;
    }
}

/// The revenue report of a month.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revenue {
    /// `YYYY-MM`.
    pub month: String,
    /// What the rows group by.
    pub by: By,
    /// The business days of the month that were closed (the open day is not counted).
    pub days: Vec<String>,
    /// Per group and currency.
    pub rows: Vec<Row>,
    /// Per currency, every group.
    pub totals: Vec<Row>,
    /// PIN sales per business day, product, retailer and currency (none before the
    /// switch sold PINs).
    #[serde(default)]
    pub pin_sales: Vec<PinSales>,
}

/// A month's shares added up as the report shows them.
#[derive(Default)]
struct Tally {
    /// Per (group, currency).
    rows: BTreeMap<(String, String), Row>,
    /// Per (`total`, currency).
    totals: BTreeMap<(String, String), Row>,
    /// Per (day, sku, retailer, currency).
    pin_sales: BTreeMap<(String, String, String, String), PinSales>,
}

impl Tally {
    /// Adds one approval of business day `day` to its group, the totals and, for a PIN
    /// sale, its product's and retailer's row.
    fn add(&mut self, by: By, day: &str, share: &Share<'_>) {
        let adjustment = share.bank == crate::vocab::people::ADJUSTMENT;
        let group = match by {
            _ if adjustment => share.bank,
            By::Carrier => share.carrier,
            By::Bank => share.bank,
            By::Retailer => share.retailer.unwrap_or("(none)"),
        };
        row_of(&mut self.rows, group, share.currency).add(share);
        if !adjustment {
            // Goodwill credits are shown, but no bank paid them: not in the totals.
            row_of(&mut self.totals, "total", share.currency).add(share);
        }
        self.add_sale(day, share);
    }

    /// Counts a PIN sale (a credit that drew a voucher) under its product and the
    /// retailer of the shop it was sold at.
    fn add_sale(&mut self, day: &str, share: &Share<'_>) {
        let credit = share.decision.credit.as_ref();
        let Some(voucher) = credit.and_then(|c| c.voucher.as_deref()) else {
            return;
        };
        let empty = PinSales {
            day: day.to_owned(),
            sku: voucher.sku.clone(),
            retailer: (share.retailer.unwrap_or(&share.decision.summary.location)).to_owned(),
            currency: share.currency.to_owned(),
            ..PinSales::default()
        };
        let key = (
            empty.day.clone(),
            empty.sku.clone(),
            empty.retailer.clone(),
            empty.currency.clone(),
        );
        self.pin_sales.entry(key).or_insert(empty).add(share);
    }
}

/// The row of `group` in `currency`, started empty.
fn row_of<'a>(
    rows: &'a mut BTreeMap<(String, String), Row>,
    group: &str,
    currency: &str,
) -> &'a mut Row {
    let key = (group.to_owned(), currency.to_owned());
    rows.entry(key).or_insert_with(|| Row {
        group: group.to_owned(),
        currency: currency.to_owned(),
        ..Row::default()
    })
}

/// The revenue of `month` (closed business days whose date starts with it).
pub fn revenue(
    books: &Books<'_>,
    config: &Config,
    month: &str,
    by: By,
) -> Result<Revenue, BackofficeError> {
    let valid =
        month.len() == 7 && crate::vocab::calendar::parse_day(&format!("{month}-01")).is_some();
    if !valid {
        return Err(BackofficeError::Input(format!(
            "--month: {month:?} is not YYYY-MM"
        )));
    }
    let days: Vec<_> = (books.store.closed_days()?.into_iter())
        .filter(|d| d.day.starts_with(month))
        .collect();
    let mut tally = Tally::default();
    for day in &days {
        each_share(books, config, day, None, |share| {
            tally.add(by, &day.day, share)
        })?;
    }
    Ok(Revenue {
        month: month.to_owned(),
        by,
        days: days.into_iter().map(|d| d.day).collect(),
        rows: tally.rows.into_values().collect(),
        totals: tally.totals.into_values().collect(),
        pin_sales: tally.pin_sales.into_values().collect(),
    })
}

const COLUMNS: [&str; 10] = [
    "group",
    "currency",
    "transactions",
    "gross",
    "reversed",
    "net",
    "provider",
    "retailer",
    "bank",
    "carrier",
];

fn values(row: &Row) -> [String; 10] {
    [
        row.group.clone(),
        row.currency.clone(),
        row.transactions.to_string(),
        row.gross.to_string(),
        row.reversed.to_string(),
        row.net.to_string(),
        row.provider.to_string(),
        row.retailer.to_string(),
        row.bank.to_string(),
        row.carrier.to_string(),
    ]
}

const PIN_COLUMNS: [&str; 8] = [
    "day",
    "sku",
    "retailer",
    "currency",
    "sales",
    "reversed",
    "net",
    "net_amount",
];

fn pin_values(sales: &PinSales) -> [String; 8] {
    [
        sales.day.clone(),
        sales.sku.clone(),
        sales.retailer.clone(),
        sales.currency.clone(),
        sales.sales.to_string(),
        sales.reversed.to_string(),
        sales.net.to_string(),
        sales.net_amount.to_string(),
    ]
}

/// The report as a table for people, then the PINs sold (when any were).
pub fn revenue_text(report: &Revenue) -> String {
    let mut out = format!(
        "revenue {} by {:?} ({} business day(s)), minor units\n",
        report.month,
        report.by,
        report.days.len()
    )
    .to_lowercase();
    let widths = [24, 8];
    out += &text_line(&COLUMNS.map(str::to_owned), &widths);
    for row in report.rows.iter().chain(&report.totals) {
        out += &text_line(&values(row), &widths);
    }
    if report.pin_sales.is_empty() {
        return out;
    }
    out += "\npins sold per business day, product and retailer, minor units\n";
    let widths = [10, 12, 24, 8];
    out += &text_line(&PIN_COLUMNS.map(str::to_owned), &widths);
    for sales in &report.pin_sales {
        out += &text_line(&pin_values(sales), &widths);
    }
    out
}

/// One line of a text table: the first values left-aligned in `widths`, the others
/// right-aligned in 12 characters.
fn text_line(values: &[String], widths: &[usize]) -> String {
    let mut text = String::new();
    for (value, width) in values.iter().zip(widths) {
        let _ = write!(text, "{value:<width$} ");
    }
    for value in values.iter().skip(widths.len()) {
        let _ = write!(text, "{value:>12} ");
    }
    text.trim_end().to_owned() + "\n"
}

/// The report as CSV (the totals last, group `total`).
pub fn revenue_csv(report: &Revenue) -> String {
    let mut writer = csv::Writer::from_writer(Vec::new());
    let _ = writer.write_record(COLUMNS);
    for row in report.rows.iter().chain(&report.totals) {
        let _ = writer.write_record(values(row));
    }
    String::from_utf8(writer.into_inner().unwrap_or_default()).unwrap_or_default()
}

/// The report as one self-contained HTML page: the table, and per group an SVG bar
/// chart of each party's share.
pub fn revenue_html(report: &Revenue) -> String {
    let mut out = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>replenish revenue</title><style>\
         body{font-family:sans-serif;margin:2em;color:#222}\
         table{border-collapse:collapse}td,th{padding:4px 10px;text-align:right;border-bottom:1px solid #ddd}\
         td:first-child,th:first-child{text-align:left}section{display:inline-block;margin:1em 2em 1em 0}\
         </style></head><body>\n",
    );
    let _ = writeln!(
        out,
        "<h1>Revenue {} by {}</h1><p>{} business day(s); amounts in minor units.</p>",
        escape(&report.month),
        format!("{:?}", report.by).to_lowercase(),
        report.days.len()
    );
    out += &html_table(
        &COLUMNS,
        report.rows.iter().chain(&report.totals).map(values),
    );
    for row in &report.rows {
        out += &bar_chart(row);
    }
    if !report.pin_sales.is_empty() {
        out += "<h2>PINs sold per business day, product and retailer</h2>\n";
        out += &html_table(&PIN_COLUMNS, report.pin_sales.iter().map(pin_values));
    }
    out += "</body></html>\n";
    out
}

/// A table of `columns` and `rows`, escaped.
fn html_table<R: AsRef<[String]>>(columns: &[&str], rows: impl Iterator<Item = R>) -> String {
    let mut out = String::from("<table><tr>");
    for column in columns {
        let _ = write!(out, "<th>{column}</th>");
    }
    out += "</tr>\n";
    for row in rows {
        out += "<tr>";
        for value in row.as_ref() {
            let _ = write!(out, "<td>{}</td>", escape(value));
        }
        out += "</tr>\n";
    }
    out + "</table>\n"
}

/// Horizontal bars of a group's shares, scaled to the largest.
fn bar_chart(row: &Row) -> String {
    let parts = [
        ("provider", row.provider, "#4e79a7"),
        ("retailer", row.retailer, "#f28e2b"),
        ("bank", row.bank, "#59a14f"),
        ("carrier", row.carrier, "#e15759"),
    ];
    let largest = parts.iter().map(|p| p.1).max().unwrap_or(0).max(1);
    let mut svg = format!(
        "<section><h2>{} ({})</h2><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"420\" height=\"120\" role=\"img\">",
        escape(&row.group),
        escape(&row.currency)
    );
    for (i, (name, amount, color)) in parts.iter().enumerate() {
        let y = 8 + i * 27;
        let width = amount * 260 / largest;
        let _ = write!(
            svg,
            "<text x=\"0\" y=\"{}\" font-size=\"12\">{name}</text><rect x=\"70\" y=\"{y}\" width=\"{width}\" height=\"18\" fill=\"{color}\"/>\
             <text x=\"{}\" y=\"{}\" font-size=\"12\">{amount}</text>",
            y + 13,
            76 + width,
            y + 13
        );
    }
    svg + "</svg></section>\n"
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// One transaction of a settlement with its parts: the audit trail's line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditLine {
    /// DE62.
    pub confirmation: String,
    /// The transaction key.
    pub key: String,
    /// The account, masked.
    pub account: String,
    /// DE49.
    pub currency: String,
    /// Credited.
    pub gross: u64,
    /// Split (after reversals).
    pub net: u64,
    /// Each party and its part.
    pub parties: Vec<(String, u64)>,
}

/// Every transaction of `bank`'s `day` with its parts.
pub fn audit(
    books: &Books<'_>,
    config: &Config,
    bank: &str,
    day: &str,
) -> Result<Vec<AuditLine>, BackofficeError> {
    if config.find_bank(bank).is_none() {
        return Err(BackofficeError::Input(format!(
            "--bank: no bank named {bank:?}"
        )));
    }
    let closed = super::reconcile::closed_day(books.store, day)?;
    let mut lines = Vec::new();
    each_share(books, config, &closed, Some(bank), |share| {
        let decision = share.decision;
        lines.push(AuditLine {
            confirmation: decision
                .approval
                .as_ref()
                .map(|a| a.confirmation.clone())
                .unwrap_or_default(),
            key: decision.key.0.clone(),
            account: mask_pan(decision.account.as_deref().unwrap_or("").as_bytes()),
            currency: share.currency.to_owned(),
            gross: share.gross,
            net: share.net,
            parties: super::settle::parties(share),
        });
    })?;
    Ok(lines)
}

/// The audit trail as CSV: one line per transaction and party.
pub fn audit_csv(lines: &[AuditLine]) -> String {
    let mut writer = csv::Writer::from_writer(Vec::new());
    let _ = writer.write_record([
        "confirmation",
        "key",
        "account",
        "currency",
        "gross",
        "net",
        "party",
        "amount",
    ]);
    for line in lines {
        for (party, amount) in &line.parties {
            let _ = writer.write_record([
                line.confirmation.as_str(),
                &line.key,
                &line.account,
                &line.currency,
                &line.gross.to_string(),
                &line.net.to_string(),
                party,
                &amount.to_string(),
            ]);
        }
    }
    String::from_utf8(writer.into_inner().unwrap_or_default()).unwrap_or_default()
}

/// One fraud-log entry's place in the fraud report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FraudGroup {
    /// The account (masked), location or terminal.
    pub name: String,
    /// Entries.
    pub count: u64,
    /// How many of each reason.
    pub reasons: BTreeMap<String, u64>,
}

/// The fraud report of a day: the fraud log grouped three ways.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fraud {
    /// The business day.
    pub day: String,
    /// Entries that day.
    pub entries: u64,
    /// By account (masked), most entries first.
    pub accounts: Vec<FraudGroup>,
    /// By location (DE42).
    pub locations: Vec<FraudGroup>,
    /// By terminal (DE41).
    pub terminals: Vec<FraudGroup>,
}

/// The fraud log's entries of business day `day`, grouped by account, location and
/// terminal. The log is read as a file (the running switch only appends to it).
pub fn fraud(config: &Config, day: &str) -> Result<Fraud, BackofficeError> {
    if crate::vocab::calendar::parse_day(day).is_none() {
        return Err(BackofficeError::Input(format!(
            "--day: {day:?} is not a date YYYY-MM-DD"
        )));
    }
    let path = config.fraud_log();
    let (entries, bad) = match crate::durable::exceptions::read(&path) {
        Ok(read) => read,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Vec::new(), Vec::new()),
        Err(e) => return Err(BackofficeError::Input(format!("{}: {e}", path.display()))),
    };
    if let Some(line) = bad.first() {
        tracing::warn!(
            "{}: {} line(s) not read, the first: {line}",
            path.display(),
            bad.len()
        );
    }
    let calendar = config.settlement.calendar();
    let mut report = Fraud {
        day: day.to_owned(),
        ..Fraud::default()
    };
    let mut groups: [BTreeMap<String, FraudGroup>; 3] = Default::default();
    for entry in entries {
        let on = chrono::DateTime::parse_from_rfc3339(&entry.at).map(|at| {
            crate::vocab::calendar::label(calendar.day_of(at.with_timezone(&chrono::Utc)))
        });
        if on.as_deref() != Ok(day) {
            continue;
        }
        report.entries += 1;
        let account = entry
            .account
            .clone()
            .unwrap_or_else(|| entry.summary.pan.clone());
        let names = [
            account,
            entry.summary.location.clone(),
            entry.summary.terminal.clone(),
        ];
        for (group, name) in groups.iter_mut().zip(names) {
            let g = group.entry(name.clone()).or_insert_with(|| FraudGroup {
                name,
                ..FraudGroup::default()
            });
            g.count += 1;
            *g.reasons.entry(entry.reason.clone()).or_default() += 1;
        }
    }
    let sorted = |group: BTreeMap<String, FraudGroup>| {
        let mut list: Vec<FraudGroup> = group.into_values().collect();
        list.sort_by(|a, b| b.count.cmp(&a.count).then(a.name.cmp(&b.name)));
        list
    };
    let [accounts, locations, terminals] = groups;
    report.accounts = sorted(accounts);
    report.locations = sorted(locations);
    report.terminals = sorted(terminals);
    Ok(report)
}

/// The fraud report for people.
pub fn fraud_text(report: &Fraud) -> String {
    let mut out = format!("fraud log {}: {} entries\n", report.day, report.entries);
    for (title, groups) in [
        ("account", &report.accounts),
        ("location", &report.locations),
        ("terminal", &report.terminals),
    ] {
        let _ = writeln!(out, "by {title}");
        for g in groups {
            let reasons: Vec<String> = g.reasons.iter().map(|(r, n)| format!("{r} {n}")).collect();
            let _ = writeln!(
                out,
                "  {:<24} {:>6}  {}",
                g.name,
                g.count,
                reasons.join(", ")
            );
        }
    }
    out
}

/// `GET /reports/revenue/{month}/{by}` and `GET /reports/audit/{bank}/{day}`.
pub(super) fn routes() -> axum::Router<super::Shared> {
    axum::Router::new()
        .route(
            "/reports/revenue/{month}/{by}",
            axum::routing::get(http_revenue),
        )
        .route(
            "/reports/audit/{bank}/{day}",
            axum::routing::get(http_audit),
        )
}

type Answer<T> = Result<
    axum::Json<T>,
    (
        axum::http::StatusCode,
        axum::Json<crate::operate::operator::Refusal>,
    ),
>;

async fn http_revenue(
    axum::extract::State(shared): axum::extract::State<super::Shared>,
    axum::extract::Path((month, by)): axum::extract::Path<(String, By)>,
) -> Answer<Revenue> {
    super::on_switch_books(shared, move |books, config| {
        revenue(books, config, &month, by)
    })
    .await
}

async fn http_audit(
    axum::extract::State(shared): axum::extract::State<super::Shared>,
    axum::extract::Path((bank, day)): axum::extract::Path<(String, String)>,
) -> Answer<Vec<AuditLine>> {
    super::on_switch_books(shared, move |books, config| {
        audit(books, config, &bank, &day)
    })
    .await
}

/// `report revenue`, offline or through the running switch.
pub fn revenue_of(config: &Config, month: &str, by: By) -> Result<Revenue, BackofficeError> {
    let route = format!(
        "/reports/revenue/{month}/{}",
        format!("{by:?}").to_lowercase()
    );
    super::with_books(
        config,
        |books| revenue(books, config, month, by),
        |endpoint| Ok(endpoint.call::<(), _>("GET", &route, None)?),
    )
}

/// `report audit`, offline or through the running switch.
pub fn audit_of(config: &Config, bank: &str, day: &str) -> Result<Vec<AuditLine>, BackofficeError> {
    let route = format!("/reports/audit/{bank}/{day}");
    super::with_books(
        config,
        |books| audit(books, config, bank, day),
        |endpoint| Ok(endpoint.call::<(), _>("GET", &route, None)?),
    )
}
