//! `replenish bank-sim`: a subscriber's bank for demos and tests, the counterpart of
//! `engine-sim` on the other side of the self-service channels (BACKOFFICE.md §6). The
//! switch, acting as acquirer, debits the subscriber's account with a `0200` (DE2 the
//! debit account, DE3 `40xxxx`, DE103 the prepaid account); the bank answers `0210`
//! echoing the request's fields with DE39 `00` and an approval code in DE38, `51` when
//! the balance is short, `14` for an unknown account, and `30` for a message that does
//! not decode or lacks a field (when its MTI and DE11 can be read). A repeated `0200`
//! (same DE32, DE41, DE11 and DE7) gets the first answer again and is not debited twice;
//! one that reuses the key for another account or amount is answered `94`.
//! A `0420`/`0421` reversal, found by DE90 or, without DE90, by DE11 + DE41 + DE32, puts
//! the amount back once and is always answered `0430 00`; a repeat, or a reversal of a
//! debit the bank never made, changes nothing and is logged (one naming an unknown
//! debit by DE90 is remembered, and that debit arriving late is declined `12`). A
//! `0800` sign-on or echo is answered `0810 00`.
//! Balances start from an `account,balance` CSV; every debit, decline and reversal is
//! a line of a JSON-lines ledger, written (with `sync`, made durable) before the answer
//! and read back on start. Account numbers reach the logs only masked. The listeners,
//! connections and fault knobs are [`super::sim_server`]'s, shared with `engine-sim`.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::capture::CommandError;
use super::sim_server::{self, JsonLines, Listeners, Responder};
use crate::wire::framing::{FrameCodec, LengthHeader};
use crate::wire::iso8583::{DecodeError, Message, Spec, mask_pan};

pub use super::sim_server::{Faults, SimError};

/// The header line of the accounts file.
const ACCOUNTS_HEADER: &str = "account,balance";

/// The opening balances of an `account,balance` CSV: the header first, then one
/// account (12 to 19 digits) a line with its balance in minor units; blank lines are
/// skipped, an account listed twice is an error.
pub fn read_accounts(path: &Path) -> Result<HashMap<String, u64>, SimError> {
    let fail = |line: Option<usize>, reason: String| SimError::Accounts {
        at: match line {
            Some(line) => format!("{}:{line}", path.display()),
            None => path.display().to_string(),
        },
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(None, e.to_string()))?;
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, header)) if header.trim() == ACCOUNTS_HEADER => {}
        _ => {
            return Err(fail(
                Some(1),
                format!("expected the header {ACCOUNTS_HEADER}"),
            ));
        }
    }
    let mut balances = HashMap::new();
    for (index, line) in lines.filter(|(_, line)| !line.trim().is_empty()) {
        let (account, balance) = parse_account(line).map_err(|r| fail(Some(index + 1), r))?;
        if balances.insert(account, balance).is_some() {
            return Err(fail(Some(index + 1), "account listed twice".into()));
        }
    }
    Ok(balances)
}

/// One `account,balance` line.
fn parse_account(line: &str) -> Result<(String, u64), String> {
    let mut columns = line.split(',').map(str::trim);
    let (Some(account), Some(balance), None) = (columns.next(), columns.next(), columns.next())
    else {
        return Err(format!("expected two columns, {ACCOUNTS_HEADER}"));
    };
    if !(12..=19).contains(&account.len()) || !account.bytes().all(|b| b.is_ascii_digit()) {
        return Err("account: not 12 to 19 digits".into());
    }
    let balance = balance
        .parse::<u64>()
        .map_err(|_| format!("balance: {balance:?} is not a whole number of minor units"))?;
    Ok((account.to_owned(), balance))
}

/// A debit's transaction key, as the switch would repeat it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DebitKey {
    /// DE32, leading zeros dropped.
    pub acquirer: String,
    /// DE41.
    pub terminal: String,
    /// DE11.
    pub stan: String,
    /// DE7.
    pub transmitted: String,
}

/// DE11 + DE41 + DE32: how a reversal without DE90 names its debit.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Trace {
    acquirer: String,
    terminal: String,
    stan: String,
}

impl DebitKey {
    fn trace(&self) -> Trace {
        Trace {
            acquirer: self.acquirer.clone(),
            terminal: self.terminal.clone(),
            stan: self.stan.clone(),
        }
    }
}

/// An acquirer id as a key holds it: without leading zeros (DE32 is `00099999`, DE90's
/// copy is 11 digits).
fn acquirer_id(text: &str) -> String {
    text.trim().trim_start_matches('0').to_owned()
}

/// Field `number`'s text, trimmed; missing or blank is an error naming the field.
fn required(message: &Message, number: u8) -> Result<&str, String> {
    message
        .text(number)
        .map(str::trim)
        .filter(|text| !text.is_empty())
        .ok_or_else(|| format!("DE{number} missing"))
}

/// DE4 when present, minor units.
fn amount(message: &Message) -> Result<Option<u64>, String> {
    message
        .text(4)
        .map(|text| text.trim().parse::<u64>())
        .transpose()
        .map_err(|_| "DE4 is not a number".to_owned())
}

/// What a `0200` asks.
struct Debit {
    key: DebitKey,
    account: String,
    amount: u64,
}

impl Debit {
    /// Reads a debit; a refusal carries its DE39: `30` for a field missing or
    /// malformed, `12` for a processing code other than a transfer (`40xxxx`), `13`
    /// for a zero amount.
    fn read(message: &Message) -> Result<Debit, (&'static str, String)> {
        let format = |reason: String| ("30", reason);
        let processing = required(message, 3).map_err(format)?;
        if !processing.starts_with("40") {
            return Err(("12", format!("processing code {processing} is no transfer")));
        }
        let amount = amount(message)
            .and_then(|amount| amount.ok_or_else(|| "DE4 missing".to_owned()))
            .map_err(format)?;
        if amount == 0 {
            return Err(("13", "zero amount".into()));
        }
        let key = DebitKey {
            acquirer: acquirer_id(required(message, 32).map_err(format)?),
            terminal: required(message, 41).map_err(format)?.to_owned(),
            stan: required(message, 11).map_err(format)?.to_owned(),
            transmitted: required(message, 7).map_err(format)?.to_owned(),
        };
        let account = required(message, 2).map_err(format)?.to_owned();
        Ok(Debit {
            key,
            account,
            amount,
        })
    }
}

/// What a `0420`/`0421` asks.
struct Reversal {
    /// The debit DE90 names, if DE90 is there.
    original: Option<DebitKey>,
    /// The reversal's own DE11 + DE41 + DE32.
    trace: Trace,
    account: Option<String>,
    amount: Option<u64>,
}

impl Reversal {
    /// Reads a reversal; the error (a `30`) names the field missing or malformed.
    fn read(message: &Message) -> Result<Reversal, String> {
        let trace = Trace {
            acquirer: acquirer_id(required(message, 32)?),
            terminal: required(message, 41)?.to_owned(),
            stan: required(message, 11)?.to_owned(),
        };
        let original = match message.text(90) {
            Some(data) => Some(original_key(data, &trace).ok_or("DE90 too short")?),
            None => None,
        };
        Ok(Reversal {
            original,
            trace,
            account: message.text(2).map(|a| a.trim().to_owned()),
            amount: amount(message)?,
        })
    }
}

/// The debit DE90 names, laid out as [`crate::switch::reverse::original_data`] writes
/// it: original MTI (4), DE11 (6), DE7 (10), acquirer id (11). The terminal is the
/// reversal's DE41, and an acquirer id of zeros stands for the reversal's own.
fn original_key(data: &str, reversal: &Trace) -> Option<DebitKey> {
    let data = data.trim();
    let given = acquirer_id(data.get(20..31)?);
    Some(DebitKey {
        acquirer: if given.is_empty() {
            reversal.acquirer.clone()
        } else {
            given
        },
        terminal: reversal.terminal.clone(),
        stan: data.get(4..10)?.to_owned(),
        transmitted: data.get(10..20)?.to_owned(),
    })
}

/// What a ledger line records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A `0200` approved: the amount left the account.
    Debit,
    /// A `0200` declined with `code`: nothing moved.
    Declined,
    /// A debit put back by a reversal.
    Reversal,
    /// A reversal naming by DE90 a debit the bank never saw: nothing moved, and that
    /// debit, should it come late, is declined `12`.
    UnknownReversal,
}

/// One ledger line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// What happened.
    pub kind: Kind,
    /// The debit it concerns.
    #[serde(flatten)]
    pub key: DebitKey,
    /// DE2, the subscriber's debit account (empty for a reversal without DE2 of an
    /// unknown debit).
    pub account: String,
    /// Minor units debited, declined or put back.
    pub amount: u64,
    /// DE39 of a debit or decline.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub code: String,
    /// DE38 of a debit.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub approval: String,
    /// When, milliseconds since the Unix epoch.
    pub at_ms: i64,
}

/// What the bank answered a `0200`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// DE2.
    pub account: String,
    /// DE4, minor units.
    pub amount: u64,
    /// DE39.
    pub code: String,
    /// DE38 (empty unless approved).
    pub approval: String,
}

impl Outcome {
    fn of(entry: &Entry) -> Outcome {
        Outcome {
            account: entry.account.clone(),
            amount: entry.amount,
            code: entry.code.clone(),
            approval: entry.approval.clone(),
        }
    }

    fn debited(&self) -> bool {
        self.code == "00"
    }
}

/// What became of a `0200`.
enum Decision {
    /// Answered now, and recorded.
    New(Outcome),
    /// The same debit again: the first answer, nothing recorded.
    Repeat(Outcome),
    /// The key of an earlier debit with another account or amount: `94`.
    Conflict,
}

/// What became of a reversal; only `Restored` changed a balance.
enum Reversed {
    /// The debit's amount is back on its account.
    Restored { account: String, amount: u64 },
    /// The debit was reversed before.
    Again,
    /// The `0200` it names was declined.
    NotDebited,
    /// Another amount or account than the debit's.
    Mismatch(String),
    /// No such debit.
    Unknown,
}

/// The balances and every answered debit and reversal.
pub struct Ledger {
    balances: HashMap<String, u64>,
    answered: HashMap<DebitKey, Outcome>,
    /// The last debit of each DE11 + DE41 + DE32.
    latest: HashMap<Trace, DebitKey>,
    reversed: HashSet<DebitKey>,
    unknown_reversals: HashSet<DebitKey>,
    approvals: u64,
    file: Option<JsonLines>,
}

impl Ledger {
    /// Starts from the opening `balances` and, with `path`, opens (creating) the ledger
    /// file there and replays what it holds; `sync` makes every line durable before its
    /// answer. Without `path` nothing is written.
    pub fn open(
        balances: HashMap<String, u64>,
        path: Option<&Path>,
        sync: bool,
    ) -> Result<Ledger, SimError> {
        let mut ledger = Ledger {
            balances,
            answered: HashMap::new(),
            latest: HashMap::new(),
            reversed: HashSet::new(),
            unknown_reversals: HashSet::new(),
            approvals: 0,
            file: None,
        };
        if let Some(path) = path {
            let (file, entries) = JsonLines::open::<Entry>(path, sync)
                .map_err(|reason| SimError::ledger(path, reason))?;
            entries.iter().for_each(|entry| ledger.remember(entry));
            ledger.file = Some(file);
        }
        Ok(ledger)
    }

    /// The balance of `account`, minor units; `None` for an account the bank does not
    /// hold.
    pub fn balance(&self, account: &str) -> Option<u64> {
        self.balances.get(account).copied()
    }

    /// Debits approved and not reversed.
    pub fn debits(&self) -> usize {
        let approved = self.answered.values().filter(|o| o.debited()).count();
        approved.saturating_sub(self.reversed.len())
    }

    /// Answers a debit: the first answer again for a repeat, else approves or declines
    /// it and records that before returning.
    fn debit(&mut self, debit: Debit) -> std::io::Result<Decision> {
        if let Some(earlier) = self.answered.get(&debit.key) {
            let same = earlier.account == debit.account && earlier.amount == debit.amount;
            let decision = if same {
                Decision::Repeat(earlier.clone())
            } else {
                Decision::Conflict
            };
            return Ok(decision);
        }
        let code = self.decide(&debit);
        let approved = code == "00";
        let entry = Entry {
            kind: if approved {
                Kind::Debit
            } else {
                Kind::Declined
            },
            key: debit.key,
            account: debit.account,
            amount: debit.amount,
            code: code.to_owned(),
            approval: if approved {
                approval_code(self.approvals)
            } else {
                String::new()
            },
            at_ms: chrono::Utc::now().timestamp_millis(),
        };
        let outcome = Outcome::of(&entry);
        self.record(entry)?;
        Ok(Decision::New(outcome))
    }

    /// DE39 for a new debit.
    fn decide(&self, debit: &Debit) -> &'static str {
        if self.unknown_reversals.contains(&debit.key) {
            return "12";
        }
        match self.balances.get(&debit.account) {
            None => "14",
            Some(&balance) if balance < debit.amount => "51",
            Some(_) => "00",
        }
    }

    /// Puts a debit back once; anything else changes nothing (a reversal naming an
    /// unknown debit by DE90 is recorded, so that debit is declined if it comes late).
    fn reverse(&mut self, reversal: &Reversal) -> std::io::Result<Reversed> {
        let Some(key) = self.find(reversal) else {
            return self.remember_unknown(reversal);
        };
        let debit = match self.answered.get(&key) {
            Some(outcome) if outcome.debited() => outcome.clone(),
            _ => return Ok(Reversed::NotDebited),
        };
        if self.reversed.contains(&key) {
            return Ok(Reversed::Again);
        }
        if let Some(reason) = mismatch(reversal, &debit) {
            return Ok(Reversed::Mismatch(reason));
        }
        self.record(Entry {
            kind: Kind::Reversal,
            key,
            account: debit.account.clone(),
            amount: debit.amount,
            code: String::new(),
            approval: String::new(),
            at_ms: chrono::Utc::now().timestamp_millis(),
        })?;
        Ok(Reversed::Restored {
            account: debit.account,
            amount: debit.amount,
        })
    }

    /// The debit a reversal names: by DE90 when it has one, else the last one of its
    /// DE11 + DE41 + DE32.
    fn find(&self, reversal: &Reversal) -> Option<DebitKey> {
        match &reversal.original {
            Some(key) => self.answered.contains_key(key).then(|| key.clone()),
            None => self.latest.get(&reversal.trace).cloned(),
        }
    }

    fn remember_unknown(&mut self, reversal: &Reversal) -> std::io::Result<Reversed> {
        let unseen = (reversal.original.clone()).filter(|k| !self.unknown_reversals.contains(k));
        if let Some(key) = unseen {
            self.record(Entry {
                kind: Kind::UnknownReversal,
                key,
                account: reversal.account.clone().unwrap_or_default(),
                amount: reversal.amount.unwrap_or(0),
                code: String::new(),
                approval: String::new(),
                at_ms: chrono::Utc::now().timestamp_millis(),
            })?;
        }
        Ok(Reversed::Unknown)
    }

    /// Writes `entry` to the file (when there is one) and then applies it.
    fn record(&mut self, entry: Entry) -> std::io::Result<()> {
        if let Some(file) = &mut self.file {
            file.append(&entry)?;
        }
        self.remember(&entry);
        Ok(())
    }

    fn remember(&mut self, entry: &Entry) {
        let key = entry.key.clone();
        match entry.kind {
            Kind::Debit | Kind::Declined => {
                if entry.kind == Kind::Debit {
                    self.approvals += 1;
                    self.add(&entry.account, entry.amount, u64::saturating_sub);
                }
                self.latest.insert(key.trace(), key.clone());
                self.answered.insert(key, Outcome::of(entry));
            }
            Kind::Reversal => {
                self.add(&entry.account, entry.amount, u64::saturating_add);
                self.reversed.insert(key);
            }
            Kind::UnknownReversal => {
                self.unknown_reversals.insert(key);
            }
        }
    }

    fn add(&mut self, account: &str, amount: u64, change: fn(u64, u64) -> u64) {
        if let Some(balance) = self.balances.get_mut(account) {
            *balance = change(*balance, amount);
        }
    }
}

/// Why a reversal does not fit its debit (another amount or account), if it does not.
fn mismatch(reversal: &Reversal, debit: &Outcome) -> Option<String> {
    if let Some(amount) = reversal.amount.filter(|&a| a != debit.amount) {
        return Some(format!("amount {amount}, debited {}", debit.amount));
    }
    if (reversal.account.as_ref()).is_some_and(|a| !a.is_empty() && *a != debit.account) {
        return Some("another account".into());
    }
    None
}

/// DE38 of the next approval: six digits, never `000000`.
fn approval_code(approved_before: u64) -> String {
    format!("{:06}", 1 + approved_before % 999_999)
}

/// The answer to `request` with DE39 `code`.
fn reply(request: &Message, code: &str) -> Message {
    sim_server::answer(request, Bank::ECHOED, code)
}

/// The bank behind the listeners.
struct Bank {
    ledger: Arc<Mutex<Ledger>>,
}

impl Responder for Bank {
    const NAME: &'static str = "bank-sim";
    const ECHOED: &'static [u8] = &[2, 3, 4, 7, 11, 12, 13, 32, 37, 41, 49, 90, 95, 103];
    const APPLIED: &'static [&'static str] = &["0200", "0201", "0420", "0421"];

    fn apply(&self, message: &Message) -> Message {
        match message.mti().class() {
            4 => self.reverse(message),
            _ => self.debit(message),
        }
    }

    fn undecodable(&self, error: &DecodeError) -> Option<Message> {
        let readable = error.partial().filter(|_| error.stan().is_some());
        match readable {
            Some(_) => warn!("bank-sim: undecodable message, answered 30: {error}"),
            None => warn!("bank-sim: undecodable message without MTI and DE11: {error}"),
        }
        readable.map(|partial| reply(partial, "30"))
    }
}

impl Bank {
    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn debit(&self, message: &Message) -> Message {
        let stan = message.text(11).unwrap_or("");
        let debit = match Debit::read(message) {
            Ok(debit) => debit,
            Err((code, reason)) => {
                warn!(stan, "bank-sim: debit refused {code}: {reason}");
                return reply(message, code);
            }
        };
        let account = mask_pan(debit.account.as_bytes());
        let amount = debit.amount;
        let decided = self.ledger().debit(debit);
        let outcome = match decided {
            Ok(Decision::New(outcome)) => {
                info!(stan, %account, amount, code = %outcome.code, "bank-sim: debit");
                outcome
            }
            Ok(Decision::Repeat(outcome)) => {
                info!(stan, %account, "bank-sim: repeated debit, answered as before");
                outcome
            }
            Ok(Decision::Conflict) => {
                warn!(stan, %account, "bank-sim: debit reuses another debit's key: 94");
                return reply(message, "94");
            }
            Err(e) => {
                warn!(stan, "bank-sim: ledger: {e}");
                return reply(message, "96");
            }
        };
        let mut answer = reply(message, &outcome.code);
        if !outcome.approval.is_empty() {
            answer.set(38, outcome.approval);
        }
        answer
    }

    fn reverse(&self, message: &Message) -> Message {
        let stan = message.text(11).unwrap_or("");
        let reversal = match Reversal::read(message) {
            Ok(reversal) => reversal,
            Err(reason) => {
                warn!(stan, "bank-sim: reversal refused 30: {reason}");
                return reply(message, "30");
            }
        };
        let reversed = self.ledger().reverse(&reversal);
        match reversed {
            Ok(reversed) => log_reversal(stan, &reversed),
            Err(e) => {
                warn!(stan, "bank-sim: ledger: {e}");
                return reply(message, "96");
            }
        }
        reply(message, "00")
    }
}

fn log_reversal(stan: &str, reversed: &Reversed) {
    match reversed {
        Reversed::Restored { account, amount } => {
            let account = mask_pan(account.as_bytes());
            info!(stan, %account, amount, "bank-sim: reversal, amount put back");
        }
        Reversed::Again => info!(stan, "bank-sim: reversal repeated, nothing changed"),
        Reversed::NotDebited => {
            info!(
                stan,
                "bank-sim: reversal of a declined debit, nothing changed"
            );
        }
        Reversed::Mismatch(reason) => {
            warn!(
                stan,
                "bank-sim: reversal does not match its debit ({reason}), nothing changed"
            );
        }
        Reversed::Unknown => warn!(
            stan,
            "bank-sim: reversal of an unknown debit, nothing changed"
        ),
    }
}

/// The bank simulator's settings.
pub struct BankConfig {
    /// Addresses to listen on.
    pub listen: Vec<SocketAddr>,
    /// The `account,balance` CSV of opening balances.
    pub accounts: PathBuf,
    /// The ledger file (JSON lines, read back on start); none keeps it in memory.
    pub ledger: Option<PathBuf>,
    /// Message spec.
    pub spec: Arc<Spec>,
    /// Framing.
    pub codec: FrameCodec,
    /// `fdatasync` each ledger line before its answer.
    pub sync: bool,
}

/// A running bank simulator.
pub struct BankSim {
    /// The ledger.
    pub ledger: Arc<Mutex<Ledger>>,
    /// Each listener's address and faults, in the order configured.
    pub listeners: Listeners,
}

impl BankSim {
    /// The balance of `account`, minor units (`None` for an account the bank does not
    /// hold).
    pub fn balance(&self, account: &str) -> Option<u64> {
        let ledger = self.ledger.lock().unwrap_or_else(|p| p.into_inner());
        ledger.balance(account)
    }
}

/// Reads the accounts and the ledger, binds every listener and serves them until
/// `shutdown`.
pub async fn start(config: BankConfig, shutdown: CancellationToken) -> Result<BankSim, SimError> {
    let balances = read_accounts(&config.accounts)?;
    let accounts = balances.len();
    let ledger = Ledger::open(balances, config.ledger.as_deref(), config.sync)?;
    info!(accounts, debits = ledger.debits(), "bank-sim: ledger ready");
    let ledger = Arc::new(Mutex::new(ledger));
    let bank = Arc::new(Bank {
        ledger: ledger.clone(),
    });
    let listeners =
        sim_server::serve(config.listen, bank, config.spec, config.codec, shutdown).await?;
    Ok(BankSim { ledger, listeners })
}

/// `replenish bank-sim`'s arguments.
#[derive(Debug, clap::Args)]
pub struct BankSimArgs {
    /// Address to listen on (repeat for a second link).
    #[arg(long, required = true)]
    pub listen: Vec<SocketAddr>,
    /// Opening balances: an `account,balance` CSV (minor units).
    #[arg(long)]
    pub accounts: PathBuf,
    /// The ledger file (JSON lines; read back on start). Without it nothing is kept.
    #[arg(long)]
    pub ledger: Option<PathBuf>,
    /// Spec of the links.
    #[arg(long, default_value = "iso87ascii")]
    pub spec: String,
    /// Framing of the links.
    #[arg(long, default_value = "binary2")]
    pub framing: LengthHeader,
    /// Delay every answer to a debit or reversal by this many milliseconds.
    #[arg(long, default_value_t = 0)]
    pub delay_ms: u64,
    /// Read everything and answer nothing (debit nothing either).
    #[arg(long)]
    pub silent: bool,
    /// Apply but do not answer this percentage of debits and reversals.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub drop_percent: u32,
    /// Close each connection after this many messages (0: never).
    #[arg(long, default_value_t = 0)]
    pub close_every: u64,
    /// fdatasync each ledger line before its answer.
    #[arg(long)]
    pub sync: bool,
}

impl BankSimArgs {
    fn config(&self) -> Result<BankConfig, CommandError> {
        let spec = Spec::resolve(&self.spec).map_err(|e| CommandError::Input(e.to_string()))?;
        Ok(BankConfig {
            listen: self.listen.clone(),
            accounts: self.accounts.clone(),
            ledger: self.ledger.clone(),
            spec: Arc::new(spec),
            codec: FrameCodec::new(self.framing),
            sync: self.sync,
        })
    }

    fn set_faults(&self, faults: &Faults) {
        faults.delay_ack_ms.store(self.delay_ms, Ordering::Relaxed);
        faults.silent.store(self.silent, Ordering::Relaxed);
        let drop = &faults.drop_ack_percent;
        drop.store(self.drop_percent, Ordering::Relaxed);
        faults
            .close_every
            .store(self.close_every, Ordering::Relaxed);
    }
}

/// Runs `replenish bank-sim` until SIGTERM or Ctrl-C. A bad accounts or ledger file
/// is bad input (exit 2).
pub fn command(args: &BankSimArgs) -> Result<(), CommandError> {
    crate::logging::init("info");
    let config = args.config()?;
    let runtime = tokio::runtime::Runtime::new()
        .map_err(|e| CommandError::Other(format!("tokio runtime: {e}")))?;
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        let bank = start(config, shutdown.clone()).await.map_err(|e| match e {
            SimError::Listen(_) => CommandError::Other(e.to_string()),
            other => CommandError::Input(other.to_string()),
        })?;
        for (_, faults) in &bank.listeners {
            args.set_faults(faults);
        }
        crate::logging::cancel_on_signal(shutdown).await;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(stan: &str) -> DebitKey {
        DebitKey {
            acquirer: "99999".into(),
            terminal: "CHAN0001".into(),
            stan: stan.into(),
            transmitted: "1204101500".into(),
        }
    }

    fn debit(stan: &str, account: &str, amount: u64) -> Debit {
        Debit {
            key: key(stan),
            account: account.into(),
            amount,
        }
    }

    fn opening() -> HashMap<String, u64> {
        HashMap::from([("5413330000000019".to_owned(), 5000)])
    }

    fn approval(decision: std::io::Result<Decision>) -> String {
        match decision {
            Ok(Decision::New(outcome) | Decision::Repeat(outcome)) => outcome.approval,
            _ => panic!("not answered"),
        }
    }

    #[test]
    fn an_account_line_names_what_is_wrong_and_never_the_account() {
        assert_eq!(
            parse_account("5413330000000019, 2500"),
            Ok(("5413330000000019".to_owned(), 2500))
        );
        let bad = parse_account("5413330000000019,25.00").expect_err("refused");
        assert!(bad.starts_with("balance"), "{bad}");
        let short = parse_account("54133300,1").expect_err("refused");
        assert!(!short.contains("54133300"), "{short}");
        assert!(parse_account("5413330000000019,1,2").is_err());
    }

    #[test]
    fn de90_names_the_debit_with_the_reversals_terminal_and_own_acquirer_for_zeros() {
        let trace = Trace {
            acquirer: "99999".into(),
            terminal: "CHAN0001".into(),
            stan: "000999".into(),
        };
        let data = "020000004212041015000000009999900000000000";
        assert_eq!(original_key(data, &trace), Some(key("000042")));
        let zeros = "020000004212041015000000000000000000000000";
        assert_eq!(original_key(zeros, &trace), Some(key("000042")));
        assert_eq!(original_key("0200000042", &trace), None);
    }

    #[test]
    fn the_ledger_replays_debits_reversals_and_answers_after_a_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bank.jsonl");
        let mut ledger = Ledger::open(opening(), Some(&path), false).expect("open");
        let first = approval(ledger.debit(debit("000001", "5413330000000019", 1500)));
        ledger
            .debit(debit("000002", "5413330000000019", 1000))
            .expect("debit");
        let trace = key("000002").trace();
        let reversal = Reversal {
            original: None,
            trace,
            account: None,
            amount: Some(1000),
        };
        assert!(matches!(
            ledger.reverse(&reversal),
            Ok(Reversed::Restored { .. })
        ));
        drop(ledger);
        let mut again = Ledger::open(opening(), Some(&path), false).expect("reopen");
        assert_eq!(again.balance("5413330000000019"), Some(3500));
        assert!(matches!(again.reverse(&reversal), Ok(Reversed::Again)));
        let repeat = again.debit(debit("000001", "5413330000000019", 1500));
        assert!(matches!(&repeat, Ok(Decision::Repeat(_))));
        assert_eq!(approval(repeat), first);
        assert_eq!(again.balance("5413330000000019"), Some(3500));
        assert_eq!(again.debits(), 1);
    }

    #[test]
    fn a_late_debit_after_its_reversal_is_declined_12() {
        let mut ledger = Ledger::open(opening(), None, false).expect("open");
        let reversal = Reversal {
            original: Some(key("000007")),
            trace: key("000008").trace(),
            account: None,
            amount: Some(100),
        };
        assert!(matches!(ledger.reverse(&reversal), Ok(Reversed::Unknown)));
        let late = ledger.debit(debit("000007", "5413330000000019", 100));
        assert!(matches!(late, Ok(Decision::New(o)) if o.code == "12"));
        assert_eq!(ledger.balance("5413330000000019"), Some(5000));
    }
}
