//! `replenish engine-sim`: a prepaid engine for tests and demos. It speaks the outbound
//! profile (DESIGN.md §4) on one or more listeners, keeps a balance per MIN, applies each
//! credit (`0220`/`0221`) and each reversal (`0420`/`0421`) once per DE62 — a repeat is
//! answered `00` and not applied again; a reversal of a credit it has not applied, or
//! for another amount, is refused — and appends one JSON line per applied credit or
//! reversal to its ledger file before it acknowledges. On start it reads the ledger
//! back, so a restarted simulator still refuses to apply a DE62 twice. Fault knobs
//! (delayed, dropped or `96` answers, connections closed every N messages, refused
//! connections, silence) can be set on the command line and changed at run time by
//! tests through [`Faults`]. The listeners, connections, knobs and ledger file are
//! [`super::sim_server`]'s, shared with `bank-sim`.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::sim_server::{self, JsonLines, Responder};
use crate::wire::framing::FrameCodec;
use crate::wire::iso8583::{Message, Spec};

pub use super::sim_server::{Faults, SimError};

/// One ledger line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// DE62 of the credit.
    pub confirmation: String,
    /// DE102.
    pub min: String,
    /// DE4, minor units.
    pub amount: u64,
    /// `credit` or `reversal`.
    pub kind: String,
    /// When it was applied, milliseconds since the Unix epoch (0 in ledgers written
    /// before the daily report existed).
    #[serde(default)]
    pub at_ms: i64,
    /// A PIN sale's DE63 (the voucher's serial; a generated PIN itself, which is the
    /// carrier's to keep): sales credit no MIN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voucher: Option<String>,
}

/// The applied credits and reversals and the balances they make.
pub struct Ledger {
    applied: HashSet<(String, String)>,
    /// When each credit of this run was applied (for the end-to-end bench).
    credited_at: HashMap<String, std::time::Instant>,
    balances: HashMap<String, i64>,
    /// The amount of every applied credit, by DE62.
    credits: HashMap<String, u64>,
    /// The voucher of every applied PIN sale, by DE62.
    vouchers: HashMap<String, String>,
    file: JsonLines,
}

impl Ledger {
    /// Opens (creating) the ledger and reads back what it holds; `sync` makes every
    /// line durable (`fdatasync`) before its ack.
    pub fn open(path: &Path, sync: bool) -> Result<Ledger, SimError> {
        let (file, entries) = JsonLines::open::<Entry>(path, sync)
            .map_err(|reason| SimError::ledger(path, reason))?;
        let mut ledger = Ledger {
            applied: HashSet::new(),
            credited_at: HashMap::new(),
            balances: HashMap::new(),
            credits: HashMap::new(),
            vouchers: HashMap::new(),
            file,
        };
        for entry in &entries {
            ledger.remember(entry);
        }
        Ok(ledger)
    }

    /// The balance of `min`, minor units.
    pub fn balance(&self, min: &str) -> i64 {
        self.balances.get(min).copied().unwrap_or(0)
    }

    /// Applies `entry` unless its kind and DE62 were applied before; the line is
    /// written before this returns. Returns whether it was new.
    pub fn apply(&mut self, entry: Entry) -> std::io::Result<bool> {
        if self
            .applied
            .contains(&(entry.kind.clone(), entry.confirmation.clone()))
        {
            return Ok(false);
        }
        self.file.append(&entry)?;
        if entry.kind == "credit" {
            (self.credited_at).insert(entry.confirmation.clone(), std::time::Instant::now());
        }
        self.remember(&entry);
        Ok(true)
    }

    /// The engine's daily report: every credit and reversal applied on UTC day `day`
    /// (`YYYY-MM-DD`), as `confirmation,min,amount,kind` CSV with a header.
    pub fn report(path: &Path, day: &str) -> Result<String, SimError> {
        let entries = sim_server::read_json_lines::<Entry>(path)
            .map_err(|reason| SimError::ledger(path, reason))?;
        let mut out = String::from("confirmation,min,amount,kind\n");
        for entry in entries {
            let applied = chrono::DateTime::from_timestamp_millis(entry.at_ms)
                .map(|at| at.format("%Y-%m-%d").to_string());
            if entry.at_ms > 0 && applied.as_deref() == Some(day) {
                let row = format!(
                    "{},{},{},{}\n",
                    entry.confirmation, entry.min, entry.amount, entry.kind
                );
                out.push_str(&row);
            }
        }
        Ok(out)
    }

    /// When the credit with `confirmation` was applied by this process, if it was.
    pub fn credited_at(&self, confirmation: &str) -> Option<std::time::Instant> {
        self.credited_at.get(confirmation).copied()
    }

    /// The amount of the credit with `confirmation`, if it was applied.
    pub fn credit(&self, confirmation: &str) -> Option<u64> {
        self.credits.get(confirmation).copied()
    }

    /// The voucher (DE63) of the PIN sale with `confirmation`, if it was applied and
    /// not reversed.
    pub fn voucher(&self, confirmation: &str) -> Option<&str> {
        self.vouchers.get(confirmation).map(String::as_str)
    }

    /// Credits applied (sales included).
    pub fn credits(&self) -> usize {
        self.credits.len()
    }

    /// PIN sales applied and not reversed.
    pub fn sales(&self) -> usize {
        self.vouchers.len()
    }

    fn remember(&mut self, entry: &Entry) {
        self.applied
            .insert((entry.kind.clone(), entry.confirmation.clone()));
        if entry.kind == "credit" {
            (self.credits).insert(entry.confirmation.clone(), entry.amount);
        }
        if let Some(voucher) = &entry.voucher {
            match entry.kind.as_str() {
                "credit" => self
                    .vouchers
                    .insert(entry.confirmation.clone(), voucher.clone()),
                _ => self.vouchers.remove(&entry.confirmation),
            };
            return;
        }
        let signed = i64::try_from(entry.amount).unwrap_or(i64::MAX);
        let delta = if entry.kind == "reversal" {
            -signed
        } else {
            signed
        };
        *self.balances.entry(entry.min.clone()).or_default() += delta;
    }
}

/// The simulator's settings.
pub struct SimConfig {
    /// Addresses to listen on.
    pub listen: Vec<SocketAddr>,
    /// The ledger file.
    pub ledger: PathBuf,
    /// Message spec.
    pub spec: Arc<Spec>,
    /// Framing.
    pub codec: FrameCodec,
    /// `fdatasync` each ledger line before its ack.
    pub sync: bool,
}

/// A running simulator.
pub struct Simulator {
    /// The ledger.
    pub ledger: Arc<Mutex<Ledger>>,
    /// Each listener's address and faults, in the order configured.
    pub listeners: sim_server::Listeners,
}

/// Binds every listener and serves them until `shutdown`.
pub async fn start(config: SimConfig, shutdown: CancellationToken) -> Result<Simulator, SimError> {
    let ledger = Arc::new(Mutex::new(Ledger::open(&config.ledger, config.sync)?));
    let engine = Arc::new(Engine {
        ledger: ledger.clone(),
    });
    let listeners =
        sim_server::serve(config.listen, engine, config.spec, config.codec, shutdown).await?;
    Ok(Simulator { ledger, listeners })
}

/// The engine behind the listeners.
struct Engine {
    ledger: Arc<Mutex<Ledger>>,
}

impl Responder for Engine {
    const NAME: &'static str = "engine-sim";
    const ECHOED: &'static [u8] = &[3, 4, 7, 11, 37, 49, 62, 70, 90, 95, 102];
    const APPLIED: &'static [&'static str] = &["0220", "0221", "0420", "0421"];

    fn apply(&self, message: &Message) -> Message {
        let kind = match message.mti().class() {
            4 => "reversal",
            _ => "credit",
        };
        let code = match self.book(message, kind) {
            Ok(()) => "00",
            Err((code, reason)) => {
                warn!("engine-sim: {reason}");
                code
            }
        };
        reply(message, code)
    }
}

impl Engine {
    /// Applies a credit or reversal; a refusal carries its DE39. A reversal must name
    /// a credit applied before, with its amount in DE4 (`25` and `13` otherwise), so a
    /// switch that sends a reversal ahead of its credit, or for the wrong amount, is
    /// caught.
    fn book(&self, message: &Message, kind: &str) -> Result<(), (&'static str, String)> {
        let format = |reason: String| ("30", reason);
        let field = |n: u8| {
            message
                .text(n)
                .map(str::to_owned)
                .ok_or(format!("DE{n} missing"))
        };
        let confirmation = field(62).map_err(format)?;
        let amount: u64 = field(4)
            .map_err(format)?
            .parse()
            .map_err(|_| format("DE4 not a number".to_owned()))?;
        // A partial reversal carries what remains credited in DE95's first 12 digits.
        let remaining = match message.text(95) {
            Some(text) => text
                .get(..12)
                .and_then(|d| d.parse::<u64>().ok())
                .ok_or_else(|| format("DE95 does not start with 12 digits".to_owned()))?,
            None => 0,
        };
        let mut ledger = self.ledger.lock().unwrap_or_else(|p| p.into_inner());
        if kind == "reversal" {
            match ledger.credit(&confirmation) {
                None => return Err(("25", format!("reversal of unknown credit {confirmation}"))),
                Some(credited) if credited != amount => {
                    return Err((
                        "13",
                        format!("reversal of {confirmation} for {amount}, credited {credited}"),
                    ));
                }
                Some(_) => {}
            }
        }
        let entry = Entry {
            confirmation,
            min: message.text(102).unwrap_or("").to_owned(),
            amount: amount.saturating_sub(remaining),
            kind: kind.to_owned(),
            at_ms: chrono::Utc::now().timestamp_millis(),
            voucher: message
                .text(63)
                .filter(|_| message.text(3) == Some("000000"))
                .map(str::to_owned),
        };
        ledger
            .apply(entry)
            .map(drop)
            .map_err(|e| ("96", format!("ledger: {e}")))
    }
}

/// The answer to `request`: its response MTI, the fields an engine echoes, DE39.
fn reply(request: &Message, code: &str) -> Message {
    sim_server::answer(request, Engine::ECHOED, code)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(confirmation: &str, amount: u64, kind: &str) -> Entry {
        Entry {
            confirmation: confirmation.into(),
            min: "2065550101".into(),
            amount,
            kind: kind.into(),
            at_ms: 1_764_806_400_000,
            voucher: None,
        }
    }

    #[test]
    fn each_confirmation_applies_once_also_after_a_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ledger.jsonl");
        let mut ledger = Ledger::open(&path, false).expect("open");
        assert!(
            ledger
                .apply(entry("111111111116", 2500, "credit"))
                .expect("apply")
        );
        assert!(
            !ledger
                .apply(entry("111111111116", 2500, "credit"))
                .expect("repeat")
        );
        assert!(
            ledger
                .apply(entry("111111111116", 2500, "reversal"))
                .expect("reversal")
        );
        assert!(
            ledger
                .apply(entry("222222222224", 1000, "credit"))
                .expect("apply")
        );
        drop(ledger);
        let mut again = Ledger::open(&path, false).expect("reopen");
        assert_eq!(again.balance("2065550101"), 1000);
        assert!(
            !again
                .apply(entry("222222222224", 1000, "credit"))
                .expect("repeat")
        );
        let lines = std::fs::read_to_string(&path).expect("read");
        assert_eq!(lines.lines().count(), 3);
    }

    #[test]
    fn a_damaged_ledger_names_its_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ledger.jsonl");
        std::fs::write(
            &path,
            "{\"confirmation\":\"1\",\"min\":\"2\",\"amount\":3,\"kind\":\"credit\"}\nnot json\n",
        )
        .expect("write");
        let error = Ledger::open(&path, false).err().expect("refused");
        assert!(error.to_string().contains("line 2"), "{error}");
    }
}
