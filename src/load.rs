//! A load generator for acquirer links: many connections, each sending financial
//! requests built from a template with fresh keys (DE7, DE11, DE37, DE41 rewritten), in
//! a closed loop (a fixed number in flight) or at a fixed rate, and matching responses
//! by DE11. Latency goes into an HDR histogram; at a fixed rate it is measured from
//! each message's intended send time, so a stalled server cannot hide its stall
//! (coordinated omission).

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

use crate::framing::{Frame, FrameCodec};
use crate::iso8583::{self, Message, Spec};

/// How messages are paced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// Keep this many requests in flight per connection.
    Closed(usize),
    /// Send this many requests per second in total.
    Rate(u64),
}

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
}

/// Runs the plan and reports.
pub async fn run(plan: LoadPlan) -> Result<LoadReport, LoadError> {
    iso8583::encode_to_bytes(&plan.spec, &plan.template)?;
    let plan = Arc::new(plan);
    // One microsecond to one minute at 3 significant digits: valid constants.
    let latency = Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds");
    let tally = Arc::new(Mutex::new(Tally {
        codes: BTreeMap::new(),
        latency,
        sent: 0,
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
    let tally = lock(&tally);
    Ok(LoadReport {
        sent: tally.sent,
        codes: tally.codes.clone(),
        unanswered,
        elapsed,
        latency: tally.latency.clone(),
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
    let pending: Arc<Mutex<HashMap<String, Instant>>> = Arc::new(Mutex::new(HashMap::new()));
    let window = match plan.pace {
        Pace::Closed(n) => n.max(1),
        Pace::Rate(_) => 1 << 20,
    };
    let permits = Arc::new(Semaphore::new(window));
    let receiving = {
        let (plan, pending, tally, permits) = (
            plan.clone(),
            pending.clone(),
            tally.clone(),
            permits.clone(),
        );
        tokio::spawn(async move {
            while let Ok(Some(Ok(frame))) =
                tokio::time::timeout(plan.duration + Duration::from_secs(10), frames.next()).await
            {
                let Ok(answer) = iso8583::decode(&plan.spec, &frame.body) else {
                    continue;
                };
                let stan = answer.text(11).unwrap_or("").to_owned();
                let Some(sent) = lock(&pending).remove(&stan) else {
                    continue;
                };
                let micros = sent.elapsed().as_micros().max(1) as u64;
                let mut t = lock(&tally);
                let _ = t.latency.record(micros);
                *t.codes
                    .entry(answer.text(39).unwrap_or("??").to_owned())
                    .or_default() += 1;
                drop(t);
                permits.add_permits(1);
                if Instant::now() > started + plan.duration && lock(&pending).is_empty() {
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
            let request = request(&plan, index, sequence, &stan, &transmission);
            let Ok(body) = iso8583::encode_to_bytes(&plan.spec, &request) else {
                break 'sending;
            };
            lock(&pending).insert(stan, intended);
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
    let deadline = Instant::now() + Duration::from_secs(10);
    while !lock(&pending).is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    receiving.abort();
    lock(&pending).len() as u64
}

/// The template with this message's key fields and account.
fn request(
    plan: &LoadPlan,
    connection: usize,
    sequence: u64,
    stan: &str,
    transmission: &str,
) -> Message {
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
    message
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}
