//! `replenish bench`: the switch's load benchmark on one machine. It makes a scratch
//! data directory with generated active accounts and generous daily limits, starts a
//! switch in this process on a loopback port, drives it with the load generator of
//! [`crate::tools::load`] (closed loop or a fixed rate), stops the switch gracefully and
//! reports. Every `00` it counts was answered after its journal record was synced
//! (`fdatasync`), exactly as in production.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::durable::record::Record;
use crate::server::{self, ServeError};
use crate::tools::load::{self, LoadPlan, LoadReport, Pace};
use crate::tools::simulator::{self, SimConfig, Simulator};
use crate::vocab::accounts::{Account, AccountStatus, Location};
use crate::vocab::confirmation::luhn_check_digit;
use crate::wire::framing::FrameCodec;
use crate::wire::iso8583::{self, Message, Spec};

/// What to run.
pub struct BenchPlan {
    /// Client connections.
    pub connections: usize,
    /// Closed-loop window per connection, or a total rate.
    pub pace: Pace,
    /// Sending time.
    pub duration: Duration,
    /// Distinct generated accounts the requests cycle through.
    pub accounts: usize,
    /// Data directory (a scratch directory, removed afterwards, when `None`).
    pub data_dir: Option<PathBuf>,
    /// Also run the engine simulator and measure delivery to it.
    pub engine: bool,
}

/// What the bench measured.
pub struct BenchReport {
    /// The acquirer side.
    pub load: LoadReport,
    /// The engine side, with `--engine`.
    pub forwarding: Option<Forwarding>,
    /// From the end of the load to the switch's graceful stop: mostly the indexer
    /// catching up with the journal, which it defers while the sessions are busy.
    pub drain: Duration,
}

impl BenchReport {
    /// Approvals per second counting the time the index needed to catch up after the
    /// load: what the switch sustains with its indexes keeping pace.
    pub fn sustained_per_second(&self) -> f64 {
        let approved = self.load.codes.get("00").copied().unwrap_or(0) as f64;
        approved / (self.load.elapsed.as_secs_f64() + self.drain.as_secs_f64()).max(1e-9)
    }

    /// What `replenish bench` prints after the load report: the drain, the sustained
    /// rate and, with the engine, delivery and the approval-to-engine lag.
    pub fn after_load(&self) -> String {
        let mut out = format!(
            "drained     {:.1} s after the load (index caught up); sustained {:.0} approved/s\n",
            self.drain.as_secs_f64(),
            self.sustained_per_second()
        );
        if let Some(forwarding) = &self.forwarding {
            let ms = |q: f64| forwarding.lag.value_at_quantile(q) as f64 / 1000.0;
            out += &format!(
                "engine      {} credited ({} missing), {:.0}/s delivered and acked\n",
                forwarding.credited, forwarding.missing, forwarding.per_second
            );
            out += &format!(
                "lag ms      approval to engine: p50 {:.2}  p99 {:.2}  max {:.2}\n",
                ms(0.5),
                ms(0.99),
                forwarding.lag.max() as f64 / 1000.0
            );
        }
        out
    }
}

/// Delivery of the approved credits to the engine simulator.
pub struct Forwarding {
    /// Approvals the engine applied.
    pub credited: usize,
    /// Approvals it had not applied 60 s after the load ended.
    pub missing: usize,
    /// Credits applied per second, from the first approval to the last credit.
    pub per_second: f64,
    /// From the approval's response to the engine applying it, microseconds.
    pub lag: Histogram<u64>,
}

/// Why the bench could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    /// Scratch directory or port.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The switch.
    #[error("switch: {0}")]
    Serve(#[from] ServeError),
    /// The load generator.
    #[error("load: {0}")]
    Load(#[from] load::LoadError),
    /// The built-in config or template (a bug).
    #[error("{0}")]
    Setup(String),
}

/// Runs the bench and reports.
pub async fn run(plan: BenchPlan) -> Result<BenchReport, BenchError> {
    let scratch = match plan.data_dir {
        Some(_) => None,
        None => Some(
            tempfile::Builder::new()
                .prefix("replenish-bench-")
                .tempdir()?,
        ),
    };
    let dir = (plan.data_dir.clone())
        .or_else(|| scratch.as_ref().map(|s| s.path().to_path_buf()))
        .ok_or_else(|| BenchError::Setup("no data directory".into()))?;
    let addr = free_loopback_port()?;
    let stop_engine = CancellationToken::new();
    let engine = match plan.engine {
        true => Some(start_engine(&dir, &stop_engine).await?),
        false => None,
    };
    let links = match &engine {
        Some(sim) => sim
            .listeners
            .iter()
            .map(|(a, _)| format!("\"{a}\""))
            .collect::<Vec<_>>(),
        None => vec!["\"127.0.0.1:9\"".to_owned()],
    };
    let config = Config::from_toml(&config_text(&dir, addr, &links.join(", ")), "bench config")
        .map_err(|e| BenchError::Setup(e.to_string()))?;
    let accounts = generated_accounts(plan.accounts.max(1));
    seed(&config, &accounts).await?;
    let shutdown = CancellationToken::new();
    let switch = tokio::spawn(server::run(config, shutdown.clone()));
    wait_until_listening(addr).await?;
    let load = load::run(load_plan(&plan, addr, accounts)?).await;
    let forwarding = match (&engine, &load) {
        (Some(sim), Ok(report)) => Some(delivery(sim, &report.approvals).await),
        _ => None,
    };
    let load_ended = Instant::now();
    shutdown.cancel();
    let stopped = switch
        .await
        .map_err(|e| BenchError::Setup(format!("switch task: {e}")))?;
    let drain = load_ended.elapsed();
    stop_engine.cancel();
    stopped?;
    Ok(BenchReport {
        load: load?,
        forwarding,
        drain,
    })
}

async fn start_engine(
    dir: &std::path::Path,
    stop: &CancellationToken,
) -> Result<Simulator, BenchError> {
    let spec = Spec::resolve("iso87ascii").map_err(|e| BenchError::Setup(e.to_string()))?;
    let config = SimConfig {
        listen: vec![free_loopback_port()?, free_loopback_port()?],
        ledger: dir.join("engine-ledger.jsonl"),
        spec: Arc::new(spec),
        codec: FrameCodec::new(crate::wire::framing::LengthHeader::Binary2),
        sync: false,
    };
    simulator::start(config, stop.clone())
        .await
        .map_err(|e| BenchError::Setup(e.to_string()))
}

/// Waits (up to 60 s) until the engine applied every approval, then measures.
async fn delivery(sim: &Simulator, approvals: &[(String, Instant)]) -> Forwarding {
    let deadline = Instant::now() + Duration::from_secs(60);
    let applied = loop {
        let applied: Vec<Option<Instant>> = {
            let ledger = sim.ledger.lock().unwrap_or_else(|p| p.into_inner());
            approvals
                .iter()
                .map(|(c, _)| ledger.credited_at(c))
                .collect()
        };
        if applied.iter().all(Option::is_some) || Instant::now() > deadline {
            break applied;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // One microsecond to ten minutes at 3 significant digits: valid constants.
    let mut lag = Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds");
    let (mut first, mut last) = (None::<Instant>, None::<Instant>);
    for ((_, approved), credited) in approvals.iter().zip(&applied) {
        let Some(credited) = credited else { continue };
        let micros = credited
            .saturating_duration_since(*approved)
            .as_micros()
            .max(1);
        let _ = lag.record(u64::try_from(micros).unwrap_or(u64::MAX));
        first = Some(first.map_or(*approved, |f| f.min(*approved)));
        last = Some(last.map_or(*credited, |l| l.max(*credited)));
    }
    let credited = applied.iter().flatten().count();
    let span = match (first, last) {
        (Some(first), Some(last)) => last.saturating_duration_since(first).as_secs_f64(),
        _ => 0.0,
    };
    Forwarding {
        credited,
        missing: approvals.len() - credited,
        per_second: credited as f64 / span.max(1e-9),
        lag,
    }
}

/// A switch with one acquirer on `addr`, every carrier routed, limits that only the
/// transaction amount can hit.
fn config_text(dir: &std::path::Path, addr: SocketAddr, links: &str) -> String {
    format!(
        r#"
data_dir = "{dir}"

[[acquirer]]
name = "bench"
listen = "{addr}"
acquirer_id = "00012345"
max_in_flight = 1024

[[engine]]
name = "bench-engine"
carriers = ["*"]
links = [{links}]
ack_timeout = "2s"

[limits]
daily_count = 4000000000
daily_amount = 18000000000000000000

[logs]
level = "warn"
"#,
        dir = dir.display()
    )
}

/// `n` active, Luhn-valid accounts with MINs, all on carrier `bench`.
pub fn generated_accounts(n: usize) -> Vec<Account> {
    (0..n)
        .map(|i| {
            let body = format!("476173{:09}", 500_000_000 + i);
            let digit = luhn_check_digit(body.as_bytes());
            Account {
                number: format!("{body}{digit}"),
                min: format!("2065{:06}", i % 1_000_000),
                carrier: "bench".into(),
                status: AccountStatus::Active,
                expiry: None,
            }
        })
        .collect()
}

/// Imports the accounts and the reference request's location.
async fn seed(config: &Config, accounts: &[Account]) -> Result<(), BenchError> {
    let records = [
        Record::AccountsImported {
            accounts: accounts.to_vec(),
        },
        Record::LocationsImported {
            locations: vec![Location {
                id: "LOC000000001234".into(),
                name: "Bench store".into(),
                retailer: "Bench".into(),
                authorized: true,
            }],
        },
    ];
    let config = config.clone();
    tokio::task::spawn_blocking(move || {
        crate::operate::admin::commit(&config, &records).map_err(ServeError::from)?;
        // The seed's index writes are still on their way to the disk; a sync now keeps
        // their writeback (and the disk flush it makes slow) out of the measurement.
        rustix::fs::sync();
        Ok::<(), BenchError>(())
    })
    .await
    .map_err(|e| BenchError::Setup(format!("seed task: {e}")))??;
    Ok(())
}

fn load_plan(
    plan: &BenchPlan,
    target: SocketAddr,
    accounts: Vec<Account>,
) -> Result<LoadPlan, BenchError> {
    let spec = Spec::resolve("iso87ascii").map_err(|e| BenchError::Setup(e.to_string()))?;
    Ok(LoadPlan {
        target,
        template: reference_request(&spec)?,
        spec: Arc::new(spec),
        codec: FrameCodec::new(crate::wire::framing::LengthHeader::Binary2),
        connections: plan.connections.max(1),
        pace: plan.pace,
        duration: plan.duration,
        accounts: accounts.into_iter().map(|a| a.number).collect(),
        mix: load::Mix::default(),
    })
}

/// The reference 0200 as a message of `spec`.
pub fn reference_request(spec: &Spec) -> Result<Message, BenchError> {
    iso8583::from_json_str(spec, load::REFERENCE_0200).map_err(|e| BenchError::Setup(e.to_string()))
}

fn free_loopback_port() -> std::io::Result<SocketAddr> {
    TcpListener::bind("127.0.0.1:0")?.local_addr()
}

async fn wait_until_listening(addr: SocketAddr) -> Result<(), BenchError> {
    for _ in 0..500 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Err(BenchError::Setup(format!("switch not listening on {addr}")))
}
