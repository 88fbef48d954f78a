//! What the two simulators share: the engine's (`engine-sim`, [`super::simulator`]) and
//! the subscriber's bank's (`bank-sim`, [`super::banksim`]). Each binds its listeners
//! here, and each connection reads frames, decodes them, applies the fault knobs of its
//! listener ([`Faults`]) around the simulator's [`Responder`] and writes the answers
//! back in batches. Both keep their ledger in an append-only JSON-lines file
//! ([`JsonLines`]) that is read back whole on start.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::wire::framing::{Frame, FrameCodec};
use crate::wire::iso8583::{self, DecodeError, Message, Mti, Spec};

/// Misbehaviour on demand; every knob can change while the simulator runs.
#[derive(Debug, Default)]
pub struct Faults {
    /// Delay every answer to a message with an effect (a credit, debit or reversal) by
    /// this many milliseconds.
    pub delay_ack_ms: AtomicU64,
    /// Apply but do not answer this share (percent) of the messages with an effect.
    pub drop_ack_percent: AtomicU32,
    /// Answer `96` (and apply nothing) for this share (percent).
    pub fail_percent: AtomicU32,
    /// Close each connection after this many messages (0: never).
    pub close_every: AtomicU64,
    /// Close every new connection at once.
    pub refuse: AtomicBool,
    /// Read everything and answer nothing, echo tests included; nothing is applied.
    pub silent: AtomicBool,
}

/// How a simulator answers what its listeners read; the knobs of [`Faults`] are applied
/// around it.
pub trait Responder: Send + Sync + 'static {
    /// The simulator's name in logs (`engine-sim`, `bank-sim`).
    const NAME: &'static str;

    /// The fields of a request that its answer echoes.
    const ECHOED: &'static [u8];

    /// The MTIs of the messages with an effect (credits, debits, reversals), which go
    /// to [`Responder::apply`]. A `0800` is answered `0810 00` and any other MTI `12`,
    /// at once whatever the knobs but `silent`.
    const APPLIED: &'static [&'static str];

    /// Applies `message` (a credit, debit or reversal) and returns its answer.
    fn apply(&self, message: &Message) -> Message;

    /// The answer to a message that does not decode, if there is one.
    fn undecodable(&self, error: &DecodeError) -> Option<Message> {
        warn!("{}: undecodable message: {error}", Self::NAME);
        None
    }
}

/// Why a simulator could not start.
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
    /// The bank simulator's accounts file.
    #[error("{at}: {reason}")]
    Accounts {
        /// The file, and `:LINE` for a line at fault.
        at: String,
        /// What is wrong (never the clear account number).
        reason: String,
    },
    /// A listener.
    #[error(transparent)]
    Listen(#[from] ListenError),
}

impl SimError {
    /// A [`SimError::Ledger`] for the file at `path`.
    pub fn ledger(path: &Path, reason: String) -> SimError {
        SimError::Ledger {
            path: path.display().to_string(),
            reason,
        }
    }
}

/// A listener that could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("listen on {addr}: {source}")]
pub struct ListenError {
    /// The address.
    pub addr: SocketAddr,
    /// Why.
    pub source: std::io::Error,
}

/// Each listener's address and its fault knobs, in the order configured.
pub type Listeners = Vec<(SocketAddr, Arc<Faults>)>;

/// Binds every address of `listen` and serves it with `responder` until `shutdown`.
pub async fn serve<R: Responder>(
    listen: Vec<SocketAddr>,
    responder: Arc<R>,
    spec: Arc<Spec>,
    codec: FrameCodec,
    shutdown: CancellationToken,
) -> Result<Listeners, ListenError> {
    let shared = Arc::new(Shared {
        responder,
        spec,
        codec,
    });
    let mut listeners = Vec::new();
    for addr in listen {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ListenError { addr, source })?;
        let local = listener.local_addr().unwrap_or(addr);
        let faults = Arc::new(Faults::default());
        info!("{} listening on {local}", R::NAME);
        tokio::spawn(accept(
            listener,
            shared.clone(),
            faults.clone(),
            shutdown.clone(),
        ));
        listeners.push((local, faults));
    }
    Ok(listeners)
}

/// The answer to `request`: its response MTI (`0810` for what has none), the fields of
/// `echoed` that it carries, and DE39 `code`.
pub fn answer(request: &Message, echoed: &[u8], code: &str) -> Message {
    let mti = request
        .mti()
        .response()
        .unwrap_or_else(|| Mti::new(b"0810").unwrap_or(request.mti()));
    let mut answer = Message::new(mti);
    for &number in echoed {
        if let Some(value) = request.get_bytes(number) {
            answer.set(number, value);
        }
    }
    answer.set(39, code.to_owned());
    answer
}

/// The answer to a message without an effect; `None` for one that goes to
/// [`Responder::apply`].
fn immediate<R: Responder>(message: &Message) -> Option<Message> {
    let mti = message.mti();
    if R::APPLIED.contains(&mti.as_str()) {
        return None;
    }
    if mti.as_str() == "0800" {
        return Some(answer(message, R::ECHOED, "00"));
    }
    warn!("{}: unsupported MTI {mti}", R::NAME);
    Some(answer(message, R::ECHOED, "12"))
}

struct Shared<R> {
    responder: Arc<R>,
    spec: Arc<Spec>,
    codec: FrameCodec,
}

async fn accept<R: Responder>(
    listener: TcpListener,
    shared: Arc<Shared<R>>,
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

struct Connection<R> {
    shared: Arc<Shared<R>>,
    faults: Arc<Faults>,
    seed: u64,
}

impl<R: Responder> Connection<R> {
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
            self.read(&frame.body, &answers);
            let every = self.faults.close_every.load(Ordering::Relaxed);
            if every > 0 && count % every == 0 {
                info!(
                    "{}: closing the connection after {count} messages (fault)",
                    R::NAME
                );
                break;
            }
        }
        drop(answers);
        writing.abort();
    }

    fn read(&mut self, body: &Bytes, answers: &mpsc::UnboundedSender<Message>) {
        match iso8583::decode(&self.shared.spec, body) {
            Ok(message) => self.handle(message, answers),
            Err(error) => {
                let answer = self.shared.responder.undecodable(&error);
                if let Some(answer) = answer.filter(|_| !self.faults.silent.load(Ordering::Relaxed))
                {
                    let _ = answers.send(answer);
                }
            }
        }
    }

    fn handle(&mut self, message: Message, answers: &mpsc::UnboundedSender<Message>) {
        if self.faults.silent.load(Ordering::Relaxed) {
            return;
        }
        if let Some(answer) = immediate::<R>(&message) {
            let _ = answers.send(answer);
            return;
        }
        let fail = self.faults.fail_percent.load(Ordering::Relaxed);
        if roll(&mut self.seed, fail) {
            let _ = answers.send(answer(&message, R::ECHOED, "96"));
            return;
        }
        let answer = self.shared.responder.apply(&message);
        let drop = self.faults.drop_ack_percent.load(Ordering::Relaxed);
        if roll(&mut self.seed, drop) {
            return;
        }
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
}

/// Whether a knob of `percent` fires this time (xorshift over the connection's seed).
fn roll(seed: &mut u64, percent: u32) -> bool {
    if percent == 0 {
        return false;
    }
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    (*seed % 100) < u64::from(percent)
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

/// An append-only file of one JSON line per entry; with `sync` every line is durable
/// (`fdatasync`) before [`JsonLines::append`] returns.
pub struct JsonLines {
    file: File,
    sync: bool,
}

impl JsonLines {
    /// Opens (creating) the file at `path` and returns it with the entries it holds.
    /// The error is the reason, without the path: the line and its fault, or the I/O
    /// error.
    pub fn open<T: DeserializeOwned>(
        path: &Path,
        sync: bool,
    ) -> Result<(JsonLines, Vec<T>), String> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(path)
            .map_err(|e| e.to_string())?;
        let entries = read_json_lines(path)?;
        Ok((JsonLines { file, sync }, entries))
    }

    /// Writes `entry` as one line (and syncs it, with `sync`).
    pub fn append<T: Serialize>(&mut self, entry: &T) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(entry).map_err(std::io::Error::other)?;
        line.push(b'\n');
        self.file.write_all(&line)?;
        if self.sync {
            self.file.sync_data()?;
        }
        Ok(())
    }
}

/// Every entry of the JSON-lines file at `path`, blank lines skipped. The error is the
/// reason, without the path: `line N: fault`, or the I/O error.
pub fn read_json_lines<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>, String> {
    let reader = BufReader::new(File::open(path).map_err(|e| e.to_string())?);
    let mut entries = Vec::new();
    for (number, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| e.to_string())?;
        if line.trim().is_empty() {
            continue;
        }
        let entry = serde_json::from_str(&line).map_err(|e| format!("line {}: {e}", number + 1))?;
        entries.push(entry);
    }
    Ok(entries)
}
