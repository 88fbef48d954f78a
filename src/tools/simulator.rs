//! `replenish engine-sim`: a prepaid engine for tests and demos. It speaks the outbound
//! profile (DESIGN.md §4) on one or more listeners, keeps a balance per MIN, applies each
//! credit (`0220`/`0221`) and each reversal (`0420`/`0421`) once per DE62 — a repeat is
//! answered `00` and not applied again; a reversal of a credit it has not applied, or
//! for another amount, is refused — and appends one JSON line per applied credit or
//! reversal to its ledger file before it acknowledges. On start it reads the ledger
//! back, so a restarted simulator still refuses to apply a DE62 twice. Fault knobs
//! (delayed, dropped or `96` answers, connections closed every N messages, refused
//! connections, silence) can be set on the command line and changed at run time by
//! tests through [`Faults`].

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::wire::framing::{Frame, FrameCodec};
use crate::wire::iso8583::{self, Message, Mti, Spec};

/// Misbehaviour on demand; every knob can change while the simulator runs.
#[derive(Debug, Default)]
pub struct Faults {
    /// Delay every answer to a credit or reversal by this many milliseconds.
    pub delay_ack_ms: AtomicU64,
    /// Apply but do not answer this share (percent) of credits and reversals.
    pub drop_ack_percent: AtomicU32,
    /// Answer `96` (and apply nothing) for this share (percent).
    pub fail_percent: AtomicU32,
    /// Close each connection after this many messages (0: never).
    pub close_every: AtomicU64,
    /// Close every new connection at once.
    pub refuse: AtomicBool,
    /// Read everything and answer nothing, echo tests included.
    pub silent: AtomicBool,
}

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
    file: File,
    sync: bool,
}

/// Why the simulator could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// The ledger file.
    #[error("{path}: {reason}")]
    Ledger {
        /// The file.
        path: String,
        /// Line and fault, or the I/O error.
        reason: String,
    },
    /// A listener.
    #[error("listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

impl Ledger {
    /// Opens (creating) the ledger and reads back what it holds; `sync` makes every
    /// line durable (`fdatasync`) before its ack.
    pub fn open(path: &Path, sync: bool) -> Result<Ledger, SimError> {
        let fail = |reason: String| SimError::Ledger {
            path: path.display().to_string(),
            reason,
        };
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(path)
            .map_err(|e| fail(e.to_string()))?;
        let mut ledger = Ledger {
            applied: HashSet::new(),
            credited_at: HashMap::new(),
            balances: HashMap::new(),
            credits: HashMap::new(),
            vouchers: HashMap::new(),
            file,
            sync,
        };
        let reader = BufReader::new(File::open(path).map_err(|e| fail(e.to_string()))?);
        for (number, line) in reader.lines().enumerate() {
            let line = line.map_err(|e| fail(e.to_string()))?;
            if line.trim().is_empty() {
                continue;
            }
            let entry: Entry = serde_json::from_str(&line)
                .map_err(|e| fail(format!("line {}: {e}", number + 1)))?;
            ledger.remember(&entry);
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
        let mut line = serde_json::to_vec(&entry).map_err(std::io::Error::other)?;
        line.push(b'\n');
        self.file.write_all(&line)?;
        if self.sync {
            self.file.sync_data()?;
        }
        if entry.kind == "credit" {
            (self.credited_at).insert(entry.confirmation.clone(), std::time::Instant::now());
        }
        self.remember(&entry);
        Ok(true)
    }

    /// The engine's daily report: every credit and reversal applied on UTC day `day`
    /// (`YYYY-MM-DD`), as `confirmation,min,amount,kind` CSV with a header.
    pub fn report(path: &Path, day: &str) -> Result<String, SimError> {
        let fail = |reason: String| SimError::Ledger {
            path: path.display().to_string(),
            reason,
        };
        let reader = BufReader::new(File::open(path).map_err(|e| fail(e.to_string()))?);
        let mut out = String::from("confirmation,min,amount,kind\n");
        for (number, line) in reader.lines().enumerate() {
            let line = line.map_err(|e| fail(e.to_string()))?;
            if line.trim().is_empty() {
                continue;
            }
            let entry: Entry = serde_json::from_str(&line)
                .map_err(|e| fail(format!("line {}: {e}", number + 1)))?;
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
    pub listeners: Vec<(SocketAddr, Arc<Faults>)>,
}

/// Binds every listener and serves them until `shutdown`.
pub async fn start(config: SimConfig, shutdown: CancellationToken) -> Result<Simulator, SimError> {
    let ledger = Arc::new(Mutex::new(Ledger::open(&config.ledger, config.sync)?));
    let shared = Arc::new(Shared {
        ledger: ledger.clone(),
        spec: config.spec,
        codec: config.codec,
    });
    let mut listeners = Vec::new();
    for addr in config.listen {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| SimError::Listen { addr, source })?;
        let local = listener.local_addr().unwrap_or(addr);
        let faults = Arc::new(Faults::default());
        info!("engine simulator listening on {local}");
        tokio::spawn(accept(
            listener,
            shared.clone(),
            faults.clone(),
            shutdown.clone(),
        ));
        listeners.push((local, faults));
    }
    Ok(Simulator { ledger, listeners })
}

struct Shared {
    ledger: Arc<Mutex<Ledger>>,
    spec: Arc<Spec>,
    codec: FrameCodec,
}

async fn accept(
    listener: TcpListener,
    shared: Arc<Shared>,
    faults: Arc<Faults>,
    shutdown: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, peer)) = accepted else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        if faults.refuse.load(Ordering::Relaxed) {
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        let connection = Connection {
            shared: shared.clone(),
            faults: faults.clone(),
            seed: u64::from(peer.port()).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
        };
        tokio::spawn(connection.run(stream, shutdown.clone()));
    }
}

struct Connection {
    shared: Arc<Shared>,
    faults: Arc<Faults>,
    seed: u64,
}

impl Connection {
    async fn run(mut self, stream: TcpStream, shutdown: CancellationToken) {
        let (reader, writer) = stream.into_split();
        let mut frames = FramedRead::new(reader, self.shared.codec);
        let (answers, outgoing) = mpsc::unbounded_channel::<Message>();
        let writing = tokio::spawn(write(
            FramedWrite::new(writer, self.shared.codec),
            outgoing,
            self.shared.spec.clone(),
        ));
        let mut count = 0u64;
        loop {
            let frame = tokio::select! {
                () = shutdown.cancelled() => break,
                frame = frames.next() => frame,
            };
            let Some(Ok(frame)) = frame else { break };
            count += 1;
            match iso8583::decode(&self.shared.spec, &frame.body) {
                Ok(message) => self.handle(message, &answers),
                Err(e) => warn!("engine-sim: undecodable message: {e}"),
            }
            let every = self.faults.close_every.load(Ordering::Relaxed);
            if every > 0 && count % every == 0 {
                info!("engine-sim: closing the connection after {count} messages (fault)");
                break;
            }
        }
        drop(answers);
        writing.abort();
    }

    fn handle(&mut self, message: Message, answers: &mpsc::UnboundedSender<Message>) {
        if self.faults.silent.load(Ordering::Relaxed) {
            return;
        }
        let mti = message.mti();
        let kind = match mti.as_str() {
            "0800" => {
                let _ = answers.send(reply(&message, "00"));
                return;
            }
            "0220" | "0221" => "credit",
            "0420" | "0421" => "reversal",
            other => {
                warn!("engine-sim: unsupported MTI {other}");
                let _ = answers.send(reply(&message, "12"));
                return;
            }
        };
        if self.roll(self.faults.fail_percent.load(Ordering::Relaxed)) {
            let _ = answers.send(reply(&message, "96"));
            return;
        }
        let code = match self.apply(&message, kind) {
            Ok(()) => "00",
            Err((code, reason)) => {
                warn!("engine-sim: {reason}");
                code
            }
        };
        if self.roll(self.faults.drop_ack_percent.load(Ordering::Relaxed)) {
            return;
        }
        let answer = reply(&message, code);
        let delay = self.faults.delay_ack_ms.load(Ordering::Relaxed);
        if delay == 0 {
            let _ = answers.send(answer);
        } else {
            let answers = answers.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(delay)).await;
                let _ = answers.send(answer);
            });
        }
    }

    /// Applies a credit or reversal; a refusal carries its DE39. A reversal must name
    /// a credit applied before, with its amount in DE4 (`25` and `13` otherwise), so a
    /// switch that sends a reversal ahead of its credit, or for the wrong amount, is
    /// caught.
    fn apply(&self, message: &Message, kind: &str) -> Result<(), (&'static str, String)> {
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
        let mut ledger = self.shared.ledger.lock().unwrap_or_else(|p| p.into_inner());
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

    fn roll(&mut self, percent: u32) -> bool {
        if percent == 0 {
            return false;
        }
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        (self.seed % 100) < u64::from(percent)
    }
}

/// The answer to `request`: its response MTI, the fields an engine echoes, DE39.
fn reply(request: &Message, code: &str) -> Message {
    let mti = request
        .mti()
        .response()
        .unwrap_or_else(|| Mti::new(b"0810").unwrap_or(request.mti()));
    let mut answer = Message::new(mti);
    for number in [3u8, 4, 7, 11, 37, 49, 62, 70, 90, 95, 102] {
        if let Some(value) = request.get_bytes(number) {
            answer.set(number, value);
        }
    }
    answer.set(39, code.to_owned());
    answer
}

async fn write(
    mut sink: FramedWrite<tokio::net::tcp::OwnedWriteHalf, FrameCodec>,
    mut outgoing: mpsc::UnboundedReceiver<Message>,
    spec: Arc<Spec>,
) {
    let mut batch = Vec::with_capacity(64);
    while outgoing.recv_many(&mut batch, 64).await > 0 {
        for message in batch.drain(..) {
            let Ok(body) = iso8583::encode_to_bytes(&spec, &message) else {
                continue;
            };
            let frame = Frame {
                header: Bytes::new(),
                body,
            };
            if sink.feed(frame).await.is_err() {
                return;
            }
        }
        if SinkExt::<Frame>::flush(&mut sink).await.is_err() {
            return;
        }
    }
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
