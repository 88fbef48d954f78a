//! A load generator for acquirer links: many connections, each sending financial
//! requests built from a template with fresh keys (DE7, DE11, DE37, DE41 rewritten), in
//! a closed loop (a fixed number in flight) or at a fixed rate, and matching responses
//! by DE11. Latency goes into an HDR histogram; at a fixed rate it is measured from
//! each message's intended send time, so a stalled server cannot hide its stall
//! (coordinated omission). A [`Mix`] makes some requests declines, repeats, malformed
//! messages or network echoes instead of approvals; response codes are tallied per
//! DE39 (with the MTI in front for non-financial answers). Latency is also kept per
//! time slice ([`Slice`], defined by the plot) for the latency-over-time plot of [`crate::tools::plot`].

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_util::codec::{FramedRead, FramedWrite};

use crate::tools::plot::Slice;
use crate::wire::framing::{Frame, FrameCodec};
use crate::wire::iso8583::{self, Message, Mti, Spec};

/// The request every load run starts from: the reference 0200 of DESIGN.md §4.
pub const REFERENCE_0200: &str = include_str!("../../fixtures/messages/reference-0200.json");

/// How messages are paced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// Keep this many requests in flight per connection.
    Closed(usize),
    /// Send this many requests per second in total.
    Rate(u64),
}

/// A kind of request in a [`Mix`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The template with a fresh key: approved when the account allows.
    Approval,
    /// An unknown (Luhn-valid) account: declined `14`.
    Decline,
    /// A repeat (MTI origin digit odd, e.g. 0201) of the connection's previous request:
    /// answered from the journal.
    Repeat,
    /// The template with a letter in the amount (DE4): answered `30`. Needs a spec with
    /// ASCII numerics; otherwise an approval is sent instead.
    Malformed,
    /// A network management echo (0800, DE70 301).
    Echo,
}

impl Kind {
    const NAMES: [(&'static str, Kind); 5] = [
        ("approval", Kind::Approval),
        ("decline", Kind::Decline),
        ("repeat", Kind::Repeat),
        ("malformed", Kind::Malformed),
        ("echo", Kind::Echo),
    ];
}

/// Weights of request kinds, e.g. `approval=90,decline=5,repeat=3,malformed=1,echo=1`.
/// The default is approvals only. Kinds are spread evenly over each connection's
/// sequence, deterministically.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mix(Vec<(Kind, u32)>);

impl Default for Mix {
    fn default() -> Mix {
        Mix(vec![(Kind::Approval, 1)])
    }
}

impl std::str::FromStr for Mix {
    type Err = String;

    fn from_str(text: &str) -> Result<Mix, String> {
        let mut weights = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = part.split_once('=').unwrap_or((part, "1"));
            let kind = Kind::NAMES
                .iter()
                .find(|(n, _)| *n == name.trim())
                .map(|(_, k)| *k)
                .ok_or_else(|| {
                    format!(
                        "mix: unknown kind {name:?} (approval, decline, repeat, malformed, echo)"
                    )
                })?;
            let weight: u32 = weight
                .trim()
                .parse()
                .map_err(|_| format!("mix: weight of {name} is not a whole number"))?;
            weights.push((kind, weight));
        }
        if weights.iter().map(|(_, w)| u64::from(*w)).sum::<u64>() == 0 {
            return Err("mix: no kind with a positive weight".into());
        }
        Ok(Mix(weights))
    }
}

impl Mix {
    /// The kind of the `sequence`th request: a multiplicative hash spreads kinds evenly.
    pub fn pick(&self, sequence: u64) -> Kind {
        let total: u64 = self.0.iter().map(|(_, w)| u64::from(*w)).sum();
        let mut slot = (sequence.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) % total.max(1);
        for &(kind, weight) in &self.0 {
            if slot < u64::from(weight) {
                return kind;
            }
            slot -= u64::from(weight);
        }
        Kind::Approval
    }
}

/// At most this many slices per run.
const SLICES: usize = 200;

/// What to send, where, and for how long.
pub struct LoadPlan {
    /// The acquirer listener.
    pub target: SocketAddr,
    /// Its spec.
    pub spec: Arc<Spec>,
    /// Its framing.
    pub codec: FrameCodec,
    /// Connections to open.
    pub connections: usize,
    /// Pacing.
    pub pace: Pace,
    /// How long to send.
    pub duration: Duration,
    /// The request template.
    pub template: Message,
    /// Account numbers put in DE2 in turn (the template's DE2 when empty).
    pub accounts: Vec<String>,
    /// Kinds of requests sent.
    pub mix: Mix,
}

/// What a run measured.
pub struct LoadReport {
    /// Requests sent.
    pub sent: u64,
    /// Responses received, by DE39.
    pub codes: BTreeMap<String, u64>,
    /// Requests without a response when the run ended.
    pub unanswered: u64,
    /// Sending time.
    pub elapsed: Duration,
    /// Latency in microseconds.
    pub latency: Histogram<u64>,
    /// Latency over time.
    pub timeline: Vec<Slice>,
    /// Each approval's DE62 and when its response arrived.
    pub approvals: Vec<(String, Instant)>,
}

impl LoadReport {
    /// Responses with DE39 `00` per second of sending.
    pub fn approved_per_second(&self) -> f64 {
        let approved = self.codes.get("00").copied().unwrap_or(0);
        approved as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The report as one JSON object.
    pub fn to_json(&self) -> serde_json::Value {
        let q = |p: f64| self.latency.value_at_quantile(p);
        serde_json::json!({
            "sent": self.sent,
            "codes": self.codes,
            "unanswered": self.unanswered,
            "elapsed_s": self.elapsed.as_secs_f64(),
            "approved_per_s": self.approved_per_second(),
            "latency_us": { "p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "p999": q(0.999), "max": self.latency.max() },
            "timeline": self.timeline.iter().map(|s| serde_json::json!({
                "start_s": s.start_s, "count": s.count, "p50_us": s.p50_us, "p99_us": s.p99_us, "max_us": s.max_us,
            })).collect::<Vec<_>>(),
        })
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |p: f64| self.latency.value_at_quantile(p) as f64 / 1000.0;
        writeln!(
            f,
            "sent        {} in {:.1} s",
            self.sent,
            self.elapsed.as_secs_f64()
        )?;
        writeln!(f, "approved/s  {:.0}", self.approved_per_second())?;
        let codes: Vec<String> = self
            .codes
            .iter()
            .map(|(c, n)| format!("{c}: {n}"))
            .collect();
        writeln!(f, "responses   {}", codes.join(", "))?;
        writeln!(f, "unanswered  {}", self.unanswered)?;
        write!(
            f,
            "latency ms  p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
            ms(0.5),
            ms(0.9),
            ms(0.99),
            ms(0.999),
            self.latency.max() as f64 / 1000.0
        )
    }
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// A connection could not be opened.
    #[error("connect to {target}: {source}")]
    Connect {
        /// The address.
        target: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The template does not encode with the spec.
    #[error("template: {0}")]
    Template(#[from] iso8583::EncodeError),
}

/// Shared tallies of one run.
struct Tally {
    codes: BTreeMap<String, u64>,
    latency: Histogram<u64>,
    sent: u64,
    /// Per slice of `slice` length: latency of requests sent then.
    slices: Vec<Histogram<u64>>,
    slice: Duration,
    approvals: Vec<(String, Instant)>,
}

impl Tally {
    fn record(&mut self, sent_at: Duration, micros: u64) {
        let _ = self.latency.record(micros);
        let index = (sent_at.as_secs_f64() / self.slice.as_secs_f64().max(1e-9)) as usize;
        if let Some(h) = self.slices.get_mut(index.min(SLICES.saturating_sub(1))) {
            let _ = h.record(micros);
        }
    }

    fn timeline(&self) -> Vec<Slice> {
        let width = self.slice.as_secs_f64();
        self.slices
            .iter()
            .enumerate()
            .filter(|(_, h)| !h.is_empty())
            .map(|(i, h)| Slice {
                start_s: i as f64 * width,
                width_s: width,
                count: h.len(),
                p50_us: h.value_at_quantile(0.5),
                p99_us: h.value_at_quantile(0.99),
                max_us: h.max(),
            })
            .collect()
    }
}

/// Runs the plan and reports.
pub async fn run(plan: LoadPlan) -> Result<LoadReport, LoadError> {
    iso8583::encode_to_bytes(&plan.spec, &plan.template)?;
    let plan = Arc::new(plan);
    // One microsecond to one minute at 3 significant digits: valid constants.
    let latency = Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds");
    // Slices of at least 10 ms; two significant digits keep each one small.
    let slice = (plan.duration / SLICES as u32).max(Duration::from_millis(10));
    let slices = (0..SLICES)
        .map(|_| Histogram::new_with_bounds(1, 60_000_000, 2).expect("valid histogram bounds"))
        .collect();
    let tally = Arc::new(Mutex::new(Tally {
        codes: BTreeMap::new(),
        latency,
        sent: 0,
        slices,
        slice,
        approvals: Vec::new(),
    }));
    let mut streams = Vec::with_capacity(plan.connections);
    for _ in 0..plan.connections.max(1) {
        let stream =
            TcpStream::connect(plan.target)
                .await
                .map_err(|source| LoadError::Connect {
                    target: plan.target,
                    source,
                })?;
        let _ = stream.set_nodelay(true);
        streams.push(stream);
    }
    let started = Instant::now();
    let mut workers = Vec::new();
    for (index, stream) in streams.into_iter().enumerate() {
        workers.push(tokio::spawn(connection(
            index,
            stream,
            plan.clone(),
            tally.clone(),
            started,
        )));
    }
    let mut unanswered = 0;
    for worker in workers {
        unanswered += worker.await.unwrap_or(0);
    }
    let elapsed = plan.duration.min(started.elapsed());
    let mut tally = lock(&tally);
    Ok(LoadReport {
        sent: tally.sent,
        codes: tally.codes.clone(),
        unanswered,
        elapsed,
        latency: tally.latency.clone(),
        timeline: tally.timeline(),
        approvals: std::mem::take(&mut tally.approvals),
    })
}

/// One connection's sender and receiver; returns how many requests went unanswered.
async fn connection(
    index: usize,
    stream: TcpStream,
    plan: Arc<LoadPlan>,
    tally: Arc<Mutex<Tally>>,
    started: Instant,
) -> u64 {
    let (reader, writer) = stream.into_split();
    let mut frames = FramedRead::new(reader, plan.codec);
    let mut sink = FramedWrite::new(writer, plan.codec);
    // By STAN: the intended send times of the requests in flight (a repeat shares its
    // original's STAN).
    let pending: Arc<Mutex<HashMap<String, Vec<Instant>>>> = Arc::new(Mutex::new(HashMap::new()));
    let window = match plan.pace {
        Pace::Closed(n) => n.max(1),
        Pace::Rate(_) => 1 << 20,
    };
    let permits = Arc::new(Semaphore::new(window));
    // Set when the sender is done: only then may an empty pending table end receiving
    // (before, the sender may be about to add a batch).
    let sent_all = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let receiving = {
        let (plan, pending, tally, permits, sent_all) = (
            plan.clone(),
            pending.clone(),
            tally.clone(),
            permits.clone(),
            sent_all.clone(),
        );
        tokio::spawn(async move {
            while let Ok(Some(Ok(frame))) =
                tokio::time::timeout(plan.duration + Duration::from_secs(10), frames.next()).await
            {
                let Ok(answer) = iso8583::decode(&plan.spec, &frame.body) else {
                    continue;
                };
                let stan = answer.text(11).unwrap_or("").to_owned();
                let Some(sent) = take_pending(&mut lock(&pending), &stan) else {
                    continue;
                };
                let micros = sent.elapsed().as_micros().max(1) as u64;
                let mut t = lock(&tally);
                t.record(sent.saturating_duration_since(started), micros);
                let code = answer.text(39).unwrap_or("??");
                if let (true, Some(confirmation)) = (code == "00", answer.text(62)) {
                    t.approvals.push((confirmation.to_owned(), Instant::now()));
                }
                let code = if answer.mti().class() == 2 {
                    code.to_owned()
                } else {
                    format!("{} {code}", answer.mti())
                };
                *t.codes.entry(code).or_default() += 1;
                drop(t);
                permits.add_permits(1);
                if sent_all.load(std::sync::atomic::Ordering::Acquire) && lock(&pending).is_empty()
                {
                    break;
                }
            }
        })
    };
    let interval = match plan.pace {
        Pace::Rate(rate) => Some(Duration::from_secs_f64(
            plan.connections.max(1) as f64 / rate.max(1) as f64,
        )),
        Pace::Closed(_) => None,
    };
    let transmission = chrono::Utc::now().format("%m%d%H%M%S").to_string();
    let mut sequence: u64 = 0;
    let mut previous: Option<Message> = None;
    'sending: while started.elapsed() < plan.duration {
        // Every request due now goes out with one flush: the intended send times of
        // a fixed rate (so a late sender catches up and latency counts from when a
        // request should have left), or as many as the closed-loop window allows.
        let due = match interval {
            Some(step) => {
                let next = started + step.mul_f64(sequence as f64);
                tokio::time::sleep_until(next.into()).await;
                let now = Instant::now();
                let behind = (now - next).as_secs_f64() / step.as_secs_f64().max(1e-9);
                let count = 1 + (behind as usize).min(63);
                (0..count)
                    .map(|i| next + step.mul_f64(i as f64))
                    .collect::<Vec<_>>()
            }
            None => {
                match permits.acquire().await {
                    Ok(p) => p.forget(),
                    Err(_) => break,
                }
                let mut count = 1;
                while count < 64 && permits.try_acquire().map(|p| p.forget()).is_ok() {
                    count += 1;
                }
                vec![Instant::now(); count]
            }
        };
        for intended in due {
            sequence += 1;
            let stan = format!("{:06}", sequence % 1_000_000);
            let kind = plan.mix.pick(sequence);
            let (stan, body) = match (kind, previous.as_ref()) {
                (Kind::Repeat, Some(original)) => {
                    let mut repeat = original.clone();
                    let mti = *original.mti().as_bytes();
                    if let Some(mti) = Mti::new(&[mti[0], mti[1], mti[2], mti[3] | 1]) {
                        repeat.set_mti(mti);
                    }
                    let stan = repeat.text(11).unwrap_or("").to_owned();
                    (stan, iso8583::encode_to_bytes(&plan.spec, &repeat))
                }
                _ => {
                    let message = request(&plan, index, sequence, &stan, &transmission, kind);
                    let body = iso8583::encode_to_bytes(&plan.spec, &message);
                    let body = match (kind, body) {
                        (Kind::Malformed, Ok(body)) => Ok(malformed(&message, body)),
                        (_, body) => body,
                    };
                    if message.mti().class() == 2 {
                        previous = Some(message);
                    }
                    (stan, body)
                }
            };
            let Ok(body) = body else {
                break 'sending;
            };
            lock(&pending).entry(stan).or_default().push(intended);
            let frame = Frame {
                header: Bytes::new(),
                body,
            };
            if sink.feed(frame).await.is_err() {
                break 'sending;
            }
            lock(&tally).sent += 1;
        }
        if SinkExt::<Frame>::flush(&mut sink).await.is_err() {
            break;
        }
    }
    sent_all.store(true, std::sync::atomic::Ordering::Release);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !lock(&pending).is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    receiving.abort();
    lock(&pending).values().map(|v| v.len() as u64).sum()
}

/// The earliest send time waiting under `stan`.
fn take_pending(pending: &mut HashMap<String, Vec<Instant>>, stan: &str) -> Option<Instant> {
    let times = pending.get_mut(stan)?;
    let first = (!times.is_empty()).then(|| times.remove(0));
    if times.is_empty() {
        pending.remove(stan);
    }
    first
}

/// `body` (the encoding of `message`) with the last digit of the amount (DE4) made a
/// letter, when the amount is there in ASCII; otherwise `body` unchanged.
fn malformed(message: &Message, body: Bytes) -> Bytes {
    let Some(amount) = message.get(4).filter(|a| !a.is_empty()) else {
        return body;
    };
    match body.windows(amount.len()).position(|w| w == amount) {
        Some(at) => {
            let mut bytes = body.to_vec();
            bytes[at + amount.len() - 1] = b'X';
            Bytes::from(bytes)
        }
        None => body,
    }
}

/// The template with this message's key fields and account.
fn request(
    plan: &LoadPlan,
    connection: usize,
    sequence: u64,
    stan: &str,
    transmission: &str,
    kind: Kind,
) -> Message {
    if kind == Kind::Echo {
        let mut echo = Message::with_capacity(
            Mti::new(b"0800").unwrap_or(plan.template.mti()),
            3,
            plan.template.masking(),
        );
        echo.set(7, transmission.to_owned());
        echo.set(11, stan.to_owned());
        echo.set(70, "301");
        return echo;
    }
    let mut message = plan.template.clone();
    message.set(7, transmission.to_owned());
    message.set(11, stan.to_owned());
    message.set(
        37,
        format!("{:04}{:08}", connection % 10_000, sequence % 100_000_000),
    );
    message.set(41, format!("LD{:06}", connection % 1_000_000));
    if !plan.accounts.is_empty() {
        let account = &plan.accounts[(sequence as usize + connection) % plan.accounts.len()];
        message.set(2, account.clone());
    }
    if kind == Kind::Decline {
        // Luhn-valid, in the sample range, never issued.
        message.set(2, "4761739001019995");
    }
    message
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Writes the latency-over-time plot of `report` as SVG to `path`.
pub fn write_svg(report: &LoadReport, path: &std::path::Path, title: &str) -> std::io::Result<()> {
    std::fs::write(
        path,
        crate::tools::plot::latency_svg(&report.timeline, title),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mix_parses_and_spreads_kinds_by_weight() {
        let mix: Mix = "approval=90, decline=5,repeat=3,malformed=1,echo=1"
            .parse()
            .expect("mix");
        let mut counts = HashMap::new();
        for sequence in 1..=10_000u64 {
            *counts
                .entry(format!("{:?}", mix.pick(sequence)))
                .or_insert(0) += 1;
        }
        let share = |k: &str| f64::from(*counts.get(k).unwrap_or(&0)) / 10_000.0;
        assert!((share("Approval") - 0.90).abs() < 0.02, "{counts:?}");
        assert!((share("Decline") - 0.05).abs() < 0.01, "{counts:?}");
        assert!((share("Echo") - 0.01).abs() < 0.005, "{counts:?}");
        assert_eq!(Mix::default().pick(7), Kind::Approval);
        assert!("approval=0".parse::<Mix>().is_err());
        assert!("refund=1".parse::<Mix>().is_err());
        assert!("decline=x".parse::<Mix>().is_err());
    }

    #[test]
    fn malformed_requests_have_a_letter_in_the_amount() {
        let spec = Spec::resolve("iso87ascii").expect("spec");
        let template = iso8583::from_json_str(&spec, REFERENCE_0200).expect("reference");
        let body = iso8583::encode_to_bytes(&spec, &template).expect("encodes");
        let bad = malformed(&template, body);
        let error = iso8583::decode(&spec, &bad).expect_err("malformed");
        assert!(error.to_string().starts_with("field 4"), "{error}");
        assert_eq!(
            error.stan(),
            Some("000417"),
            "DE11 still readable, so 30 is possible"
        );
    }
}
