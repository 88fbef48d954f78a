//! `replenish demo`: the whole job in one process. It starts the engine simulator on the
//! default engine ports, the switch on the embedded default config (with a scratch data
//! directory) loaded with the sample accounts and locations, sends a batch of `0200`
//! replenishments across every sample account — so some are declined, each for its
//! reason — waits until the engine has acknowledged every approved credit, and reports
//! what happened: answers by response code, credits in the engine's ledger, balances.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio_util::sync::CancellationToken;

use crate::client;
use crate::config::Config;
use crate::framing::FrameCodec;
use crate::iso8583::{Message, Spec};
use crate::record::Record;
use crate::simulator::{self, SimConfig};
use crate::switch::accounts::{self, Account};
use crate::switch::codes::ResponseCode;

/// The sample accounts (fixtures/reference/accounts.csv).
pub const SAMPLE_ACCOUNTS: &str = include_str!("../fixtures/reference/accounts.csv");
/// The sample locations (fixtures/reference/locations.csv).
pub const SAMPLE_LOCATIONS: &str = include_str!("../fixtures/reference/locations.csv");

/// What the demo did.
pub struct Summary {
    /// Requests sent.
    pub sent: usize,
    /// Answers by DE39.
    pub codes: BTreeMap<String, usize>,
    /// Approved confirmation numbers.
    pub approved: Vec<String>,
    /// Credits in the engine's ledger.
    pub credited: usize,
    /// Credits in the ledger more than once (must be 0).
    pub credited_twice: usize,
    /// Total credited, minor units.
    pub amount: u64,
    /// From the first request to the last engine ack.
    pub elapsed: Duration,
    /// The data directory and ledger, when kept.
    pub data_dir: Option<PathBuf>,
}

/// Why the demo stopped.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DemoError(String);

fn fail(e: impl std::fmt::Display) -> DemoError {
    DemoError(e.to_string())
}

/// Runs the demo: `requests` replenishments; data under `data_dir` (kept) or a
/// scratch directory (removed afterwards).
pub async fn run(requests: usize, data_dir: Option<PathBuf>) -> Result<Summary, DemoError> {
    let scratch = match data_dir {
        Some(_) => None,
        None => Some(
            tempfile::Builder::new()
                .prefix("replenish-demo-")
                .tempdir()
                .map_err(fail)?,
        ),
    };
    let mut config = Config::embedded_default();
    config.data_dir = (data_dir.clone())
        .or_else(|| scratch.as_ref().map(|s| s.path().to_path_buf()))
        .ok_or_else(|| fail("no data directory"))?;
    let ledger_path = config.data_dir.join("engine-ledger.jsonl");
    std::fs::create_dir_all(&config.data_dir).map_err(fail)?;
    let accounts =
        accounts::parse_accounts(SAMPLE_ACCOUNTS.as_bytes()).map_err(|e| fail(format!("{e:?}")))?;
    let locations = accounts::parse_locations(SAMPLE_LOCATIONS.as_bytes())
        .map_err(|e| fail(format!("{e:?}")))?;
    let records = vec![
        Record::AccountsImported {
            accounts: accounts.clone(),
        },
        Record::LocationsImported { locations },
    ];
    let seeding = config.clone();
    tokio::task::spawn_blocking(move || crate::admin::commit(&seeding, &records))
        .await
        .map_err(fail)?
        .map_err(fail)?;

    let (stop, stop_engine) = (CancellationToken::new(), CancellationToken::new());
    let engine = config
        .engine
        .first()
        .ok_or_else(|| fail("the default config has an engine"))?;
    let spec = Arc::new(Spec::resolve(&engine.spec).map_err(fail)?);
    let sim = simulator::start(
        SimConfig {
            listen: engine.links.clone(),
            ledger: ledger_path.clone(),
            spec: spec.clone(),
            codec: FrameCodec::new(engine.framing),
            sync: false,
        },
        stop_engine.clone(),
    )
    .await
    .map_err(|e| {
        fail(format!(
            "engine simulator: {e} (is another replenish running?)"
        ))
    })?;
    let acquirer = config
        .acquirer
        .first()
        .ok_or_else(|| fail("the default config has an acquirer"))?
        .clone();
    let switch = tokio::spawn(crate::server::run(config.clone(), stop.clone()));
    wait_listening(acquirer.listen).await?;

    let started = Instant::now();
    let bar = progress(requests as u64, "replenishing");
    let template = crate::bench::reference_request(&spec).map_err(fail)?;
    let codec = FrameCodec::new(acquirer.framing);
    let mut codes = BTreeMap::new();
    let mut approved = Vec::new();
    for n in 0..requests {
        let request = demo_request(&template, &accounts, n)?;
        let answer = client::exchange(
            acquirer.listen,
            &spec,
            codec,
            &request,
            Duration::from_secs(10),
        )
        .await
        .map_err(fail)?;
        let code = answer.text(39).unwrap_or("??").to_owned();
        if let (Some("00"), Some(confirmation)) = (answer.text(39), answer.text(62)) {
            approved.push(confirmation.to_owned());
        }
        *codes.entry(code).or_default() += 1;
        bar.inc(1);
    }
    bar.finish_and_clear();

    let bar = progress(approved.len() as u64, "engine acks");
    let deadline = Instant::now() + Duration::from_secs(60);
    let (credited, credited_twice, amount) = loop {
        let (credited, twice, amount) = ledger_totals(&ledger_path, &approved);
        bar.set_position(credited as u64);
        if credited >= approved.len() || Instant::now() > deadline {
            break (credited, twice, amount);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    bar.finish_and_clear();
    let elapsed = started.elapsed();
    stop.cancel();
    switch.await.map_err(fail)?.map_err(fail)?;
    stop_engine.cancel();
    drop(sim);
    let summary = Summary {
        sent: requests,
        codes,
        approved,
        credited,
        credited_twice,
        amount,
        elapsed,
        data_dir: scratch.is_none().then(|| config.data_dir.clone()),
    };
    if let Some(scratch) = scratch {
        let _ = scratch.close();
    }
    Ok(summary)
}

/// Request `n`: the accounts in turn, amounts varying, one request in 25 at the
/// unauthorized location.
fn demo_request(template: &Message, accounts: &[Account], n: usize) -> Result<Message, DemoError> {
    let account = &accounts[n % accounts.len()];
    let amount = 500 + (n as u64 * 37) % 4_500;
    let mut overrides = client::Overrides::default();
    overrides.fields.push((2, account.number.clone()));
    overrides.fields.push((4, format!("{amount:012}")));
    overrides.fields.push((11, format!("{:06}", n + 1)));
    if n % 25 == 24 {
        overrides.fields.push((42, "LOC000000009999".into()));
    }
    client::build(template, &overrides).map_err(fail)
}

/// How many approvals the ledger holds, how many of them twice, and their sum.
fn ledger_totals(path: &std::path::Path, approved: &[String]) -> (usize, usize, u64) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut amount = 0;
    for line in text.lines() {
        if let Ok(entry) = serde_json::from_str::<simulator::Entry>(line) {
            *seen.entry(entry.confirmation).or_default() += 1;
            amount += entry.amount;
        }
    }
    let credited = approved.iter().filter(|c| seen.contains_key(*c)).count();
    let twice = seen.values().filter(|&&n| n > 1).count();
    (credited, twice, amount)
}

fn progress(length: u64, message: &'static str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(length), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{msg:>14} {bar:40} {pos}/{len}") {
        bar.set_style(style);
    }
    bar.set_message(message);
    bar
}

async fn wait_listening(addr: std::net::SocketAddr) -> Result<(), DemoError> {
    for _ in 0..500 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Err(fail(format!("the switch did not listen on {addr}")))
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "sent {} replenishment requests (0200) in {:.1} s",
            self.sent,
            self.elapsed.as_secs_f64()
        )?;
        for (code, count) in &self.codes {
            let meaning = ResponseCode::try_from(code.clone())
                .map(|c| c.meaning())
                .unwrap_or("?");
            writeln!(f, "  {code} {meaning:<36} {count:>5}")?;
        }
        writeln!(
            f,
            "engine ledger: {} of {} approvals credited, {} credited twice, {}.{:02} in total",
            self.credited,
            self.approved.len(),
            self.credited_twice,
            self.amount / 100,
            self.amount % 100
        )?;
        match &self.data_dir {
            Some(dir) => write!(
                f,
                "data (journal, indexes, exception log, engine ledger): {}",
                dir.display()
            ),
            None => write!(
                f,
                "data: a scratch directory, removed (keep it with --data-dir DIR)"
            ),
        }
    }
}
