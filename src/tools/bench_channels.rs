//! `replenish bench --channels`: the channel API's benchmark (BACKOFFICE.md §6). A
//! scratch data directory gets generated subscribers enrolled for the channels (one PIN,
//! a debit account each at `bank-sim`); a switch with the sample channels config runs in
//! this process with `bank-sim` and `engine-sim` on loopback; `clients` HTTP clients
//! (keep-alive, one thread each) post web replenishments in a closed loop, each for its
//! own subscribers in turn, for the duration. Every `201` was debited at the bank and its
//! credit decided and synced before the answer; the bench then waits until the engine
//! acknowledged each credit. Latency is from the request's send to its answer (HDR
//! histogram).

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio_util::sync::CancellationToken;

use super::demo_channels::{self, Subscriber};
use crate::config::Config;
use crate::tools::simulator::{self, SimConfig};
use crate::vocab::confirmation::luhn_check_digit;
use crate::wire::framing::FrameCodec;
use crate::wire::iso8583::Spec;

/// What to run.
pub struct ChannelBenchPlan {
    /// Concurrent HTTP clients.
    pub clients: usize,
    /// Sending time.
    pub duration: Duration,
    /// Enrolled subscribers (spread over the clients; one request per account at a
    /// time is the switch's rule).
    pub subscribers: usize,
}

/// What it measured.
pub struct ChannelBenchReport {
    /// Requests answered.
    pub answered: u64,
    /// Answers by HTTP status.
    pub statuses: BTreeMap<u16, u64>,
    /// Requests that got no answer (transport errors).
    pub failed: u64,
    /// Sending time.
    pub elapsed: Duration,
    /// Latency, microseconds.
    pub latency: Histogram<u64>,
    /// Credits the engine acknowledged afterwards.
    pub credited: usize,
}

impl ChannelBenchReport {
    /// `201`s per second.
    pub fn completed_per_second(&self) -> f64 {
        let completed = self.statuses.get(&201).copied().unwrap_or(0);
        completed as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Why the run failed although it ran: answers other than `201`, or credits the
    /// engine does not have.
    pub fn failure(&self) -> Option<String> {
        let completed = self.statuses.get(&201).copied().unwrap_or(0);
        let other = self.answered - completed + self.failed;
        if other > 0 {
            return Some(format!(
                "{other} requests not answered 201: {:?}",
                self.statuses
            ));
        }
        (self.credited as u64 != completed).then(|| {
            format!(
                "{completed} completed but {} credited at the engine",
                self.credited
            )
        })
    }
}

impl std::fmt::Display for ChannelBenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |q: f64| self.latency.value_at_quantile(q) as f64 / 1000.0;
        writeln!(
            f,
            "channel requests {} in {:.1} s, by status {:?}, {} failed",
            self.answered,
            self.elapsed.as_secs_f64(),
            self.statuses,
            self.failed
        )?;
        writeln!(f, "completed/s {:.0}", self.completed_per_second())?;
        writeln!(
            f,
            "latency ms  p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
            ms(0.5),
            ms(0.9),
            ms(0.99),
            self.latency.max() as f64 / 1000.0
        )?;
        write!(f, "engine      {} credits acknowledged", self.credited)
    }
}

/// Runs the bench.
pub async fn run(plan: ChannelBenchPlan) -> Result<ChannelBenchReport, String> {
    let scratch = (tempfile::Builder::new()
        .prefix("replenish-bench-channels-")
        .tempdir())
    .map_err(|e| e.to_string())?;
    let config = config(scratch.path())?;
    let subscribers = subscribers(plan.subscribers.max(plan.clients));
    let mut records = demo_channels::enrolled(&config, &subscribers, PIN)?;
    let (client, token) = demo_channels::client("bench")?;
    records.push(client);
    let seeding = config.clone();
    tokio::task::spawn_blocking(move || crate::operate::admin::commit(&seeding, &records))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let stop = CancellationToken::new();
    let engine = start_engine(&config, stop.clone()).await?;
    let bank =
        demo_channels::start_bank_with(&config, &bank_accounts(&subscribers), stop.clone()).await?;
    let switch = tokio::spawn(crate::server::run(config.clone(), stop.clone()));
    let listen = config.channels.as_ref().ok_or("no [channels]")?.listen;
    wait_listening(listen).await?;
    let report = load(&plan, listen, &token, &subscribers).await;
    let completed = report.statuses.get(&201).copied().unwrap_or(0) as usize;
    let credited = acknowledged(&engine, completed).await;
    stop.cancel();
    let _ = switch.await;
    drop(bank);
    Ok(ChannelBenchReport { credited, ..report })
}

const PIN: &str = "4321";

/// The embedded default config with the sample channels, every port a free one, the
/// console off and limits that never decline.
fn config(dir: &std::path::Path) -> Result<Config, String> {
    let mut config = Config::embedded_default();
    demo_channels::configure(&mut config)?;
    config.data_dir = dir.to_path_buf();
    config.console.enabled = false;
    config.metrics.listen = None;
    for acquirer in &mut config.acquirer {
        acquirer.listen = free()?;
    }
    for engine in &mut config.engine {
        engine.links = vec![free()?, free()?];
    }
    for bank in &mut config.debit_bank {
        bank.links = vec![free()?, free()?];
    }
    if let Some(channels) = config.channels.as_mut() {
        channels.listen = free()?;
    }
    config.limits.daily_count = u32::MAX;
    config.limits.daily_amount = u64::MAX / 2;
    Ok(config)
}

fn free() -> Result<SocketAddr, String> {
    (TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr())).map_err(|e| e.to_string())
}

/// `n` subscribers: Luhn-valid prepaid accounts, MINs and debit accounts.
fn subscribers(n: usize) -> Vec<Subscriber> {
    (0..n)
        .map(|i| {
            let stem = format!("4761739003{i:06}");
            Subscriber {
                account: format!("{stem}{}", luhn_check_digit(stem.as_bytes())),
                min: format!("30655{i:05}"),
                debit: format!("5413331{i:09}"),
            }
        })
        .collect()
}

/// The bank's accounts: every debit account with a balance that lasts.
fn bank_accounts(subscribers: &[Subscriber]) -> String {
    let mut text = String::from("account,balance\n");
    for s in subscribers {
        text += &format!("{},100000000000\n", s.debit);
    }
    text
}

async fn start_engine(
    config: &Config,
    stop: CancellationToken,
) -> Result<simulator::Simulator, String> {
    let engine = config.engine.first().ok_or("no engine")?;
    let settings = SimConfig {
        listen: engine.links.clone(),
        ledger: config.data_dir.join("engine-ledger.jsonl"),
        spec: std::sync::Arc::new(Spec::resolve(&engine.spec).map_err(|e| e.to_string())?),
        codec: FrameCodec::new(engine.framing),
        sync: false,
    };
    simulator::start(settings, stop)
        .await
        .map_err(|e| e.to_string())
}

async fn wait_listening(addr: SocketAddr) -> Result<(), String> {
    for _ in 0..1000 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Err(format!("the channel API did not listen on {addr}"))
}

/// Waits (up to 60 s) until the engine holds `completed` credits; how many it holds.
async fn acknowledged(engine: &simulator::Simulator, completed: usize) -> usize {
    let count = || (engine.ledger.lock()).map(|l| l.credits()).unwrap_or(0);
    for _ in 0..600 {
        if count() >= completed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    count()
}

/// The closed loop: one thread per client, each for its share of the subscribers.
async fn load(
    plan: &ChannelBenchPlan,
    listen: SocketAddr,
    token: &str,
    subscribers: &[Subscriber],
) -> ChannelBenchReport {
    let started = Instant::now();
    let until = started + plan.duration;
    let mut workers = Vec::new();
    for worker in 0..plan.clients {
        let mine: Vec<String> = (subscribers.iter().skip(worker).step_by(plan.clients))
            .map(|s| s.min.clone())
            .collect();
        let token = token.to_owned();
        workers.push(tokio::task::spawn_blocking(move || {
            client_loop(worker, listen, &token, &mine, until)
        }));
    }
    let mut report = ChannelBenchReport {
        answered: 0,
        statuses: BTreeMap::new(),
        failed: 0,
        elapsed: Duration::ZERO,
        latency: histogram(),
        credited: 0,
    };
    for worker in workers {
        let Ok(tally) = worker.await else { continue };
        report.answered += tally.answered;
        report.failed += tally.failed;
        for (status, n) in tally.statuses {
            *report.statuses.entry(status).or_default() += n;
        }
        let _ = report.latency.add(&tally.latency);
    }
    report.elapsed = started.elapsed();
    report
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).unwrap_or_else(|_| {
        Histogram::new(3).unwrap_or_else(|_| unreachable!("3 significant digits are valid"))
    })
}

struct Tally {
    answered: u64,
    failed: u64,
    statuses: BTreeMap<u16, u64>,
    latency: Histogram<u64>,
}

fn client_loop(
    worker: usize,
    listen: SocketAddr,
    token: &str,
    mins: &[String],
    until: Instant,
) -> Tally {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut tally = Tally {
        answered: 0,
        failed: 0,
        statuses: BTreeMap::new(),
        latency: histogram(),
    };
    let url = format!("http://{listen}/api/v1/replenishments");
    let mut n = 0usize;
    while Instant::now() < until && !mins.is_empty() {
        let min = &mins[n % mins.len()];
        let body = format!(r#"{{"channel":"web","min":"{min}","pin":"{PIN}","amount":100}}"#);
        let request = ureq::http::Request::builder()
            .method("POST")
            .uri(&url)
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {token}"))
            .header("idempotency-key", format!("bench-{worker}-{n}"))
            .body(body.into_bytes());
        n += 1;
        let sent = Instant::now();
        let answered = request
            .ok()
            .and_then(|r| agent.run(r).ok())
            .map(|mut response| {
                let _ = response.body_mut().read_to_string();
                response.status().as_u16()
            });
        match answered {
            Some(status) => {
                tally.answered += 1;
                *tally.statuses.entry(status).or_default() += 1;
                let micros = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
                let _ = tally.latency.record(micros.max(1));
            }
            None => tally.failed += 1,
        }
    }
    tally
}
