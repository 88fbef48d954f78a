//! `replenish bench`: the switch's load benchmark on one machine. It makes a scratch
//! data directory with generated active accounts and generous daily limits, starts a
//! switch in this process on a loopback port, drives it with the load generator of
//! [`crate::tools::load`] (closed loop or a fixed rate), stops the switch gracefully and
//! reports. Every `00` it counts was answered after its journal record was synced
//! (`fdatasync`), exactly as in production.
//!
//! With [`BenchPlan::sales`] (`replenish bench --sales`) a second phase follows in the
//! same process and measures PIN sales (BACKOFFICE.md §5) the same way: same
//! connections, pacing and duration, a fresh scratch data directory seeded alike, one
//! bucket product ([`SKU`]) whose stock is imported as `replenish pins import` does
//! ([`crate::pins::import_into`], checked batches of 4,000) before that phase's switch
//! starts, and every request a sale (`0200`, DE3 `000000`, DE2 one of the product's
//! cards, DE4 its value) answered `0210 00` with a PIN drawn from that stock. Each phase
//! has its own switch, so the replenishments' index catch-up does not spill into the
//! sales. The stock holds half again as many PINs as the first phase approved (closed
//! loop), or the rate's worth and a tenth (fixed rate), unless [`SalesPlan::stock`] says
//! how many. A sale answered anything but `00`, or not at all, is counted
//! ([`Sales::declined`]) and fails the bench, as does an approval count that differs from
//! the PINs the index holds as sold once the switch stopped ([`Sales::unaccounted`]).

use std::net::{SocketAddr, TcpListener};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::durable::datadir::DataDir;
use crate::durable::record::Record;
use crate::pins::{self, PinsError};
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
    /// Data directory (a scratch directory, removed afterwards, when `None`); the sales
    /// phase's is the same path with `-sales` added.
    pub data_dir: Option<PathBuf>,
    /// Also run the engine simulator and measure delivery to it.
    pub engine: bool,
    /// Then measure PIN sales in a second phase.
    pub sales: Option<SalesPlan>,
}

/// The sales phase of a bench.
#[derive(Debug, Clone, Copy, Default)]
pub struct SalesPlan {
    /// PINs to import; by default sized from the first phase (see the module doc).
    pub stock: Option<usize>,
}

/// The product the sales phase sells (bucket mode, value the reference request's DE4).
pub const SKU: &str = "BENCH-PIN-25";

/// Its cards' prefix (DE2).
const CARD_PREFIX: &str = "6034567";

/// Its `[[product]]`: the value is the reference request's DE4; no low-stock alert.
const PRODUCT: &str = r#"
[[product]]
sku = "BENCH-PIN-25"
carrier = "bench"
value = 2500
currency = "840"
card_prefix = "6034567"
mode = "bucket"
"#;

/// The fewest PINs the sales phase imports by default.
const MIN_STOCK: usize = 4_000;

/// What the bench measured.
pub struct BenchReport {
    /// The acquirer side.
    pub load: LoadReport,
    /// The engine side, with `--engine`.
    pub forwarding: Option<Forwarding>,
    /// From the end of the load to the switch's graceful stop: mostly the indexer
    /// catching up with the journal, which it defers while the sessions are busy.
    pub drain: Duration,
    /// The sales phase, with [`BenchPlan::sales`].
    pub sales: Option<Sales>,
}

/// The sales phase: measured as the replenishments are, on its own switch.
pub struct Sales {
    /// Its load, delivery and drain (its own `sales` is `None`).
    pub phase: Box<BenchReport>,
    /// PINs imported for it.
    pub stock: usize,
    /// How long importing them took (before the phase's switch started).
    pub import: Duration,
    /// PINs the index holds as sold once the phase's switch stopped: one per approval.
    pub sold: u64,
}

impl Sales {
    /// Sales answered `00` per second of sending.
    pub fn per_second(&self) -> f64 {
        self.phase.load.approved_per_second()
    }

    /// Sales approved without a PIN drawn from the stock (approvals the index does not
    /// hold as sold), or PINs sold without an approval: zero unless something is wrong.
    pub fn unaccounted(&self) -> u64 {
        let approved = self.phase.load.codes.get("00").copied().unwrap_or(0);
        approved.abs_diff(self.sold)
    }

    /// Sales not answered `00`: any other answer, and none at all. Each is an error.
    pub fn declined(&self) -> u64 {
        let load = &self.phase.load;
        let answered: u64 = (load.codes.iter())
            .filter(|(code, _)| code.as_str() != "00")
            .map(|(_, n)| *n)
            .sum();
        answered + load.unanswered
    }
}

impl BenchReport {
    /// Approvals per second counting the time the index needed to catch up after the
    /// load: what the switch sustains with its indexes keeping pace.
    pub fn sustained_per_second(&self) -> f64 {
        let approved = self.load.codes.get("00").copied().unwrap_or(0) as f64;
        approved / (self.load.elapsed.as_secs_f64() + self.drain.as_secs_f64()).max(1e-9)
    }

    /// Sales per second over replenishments per second, with a sales phase: approved
    /// during the load, and sustained.
    pub fn sales_ratio(&self) -> Option<(f64, f64)> {
        let sales = self.sales.as_ref()?;
        let ratio = |a: f64, b: f64| a / b.max(1e-9);
        Some((
            ratio(sales.per_second(), self.load.approved_per_second()),
            ratio(
                sales.phase.sustained_per_second(),
                self.sustained_per_second(),
            ),
        ))
    }

    /// Why the bench failed although it ran: sales that were not approved, or
    /// approvals that do not match the PINs sold.
    pub fn failure(&self) -> Option<String> {
        let sales = self.sales.as_ref()?;
        let codes: Vec<String> = (sales.phase.load.codes.iter())
            .filter(|(code, _)| code.as_str() != "00")
            .map(|(code, n)| format!("{code}: {n}"))
            .collect();
        if sales.declined() > 0 {
            return Some(format!(
                "{} PIN sale(s) not approved (answers {}; unanswered {}); after N1 (out of \
                 stock), import more with --sales-stock",
                sales.declined(),
                codes.join(", "),
                sales.phase.load.unanswered
            ));
        }
        (sales.unaccounted() > 0).then(|| {
            format!(
                "{} PINs sold for {} approved sales",
                sales.sold,
                sales.phase.load.codes.get("00").copied().unwrap_or(0)
            )
        })
    }

    /// The report as one JSON object: the load's fields and, with a sales phase,
    /// `sales` (its load's fields, drain, sustained rate, stock, declines and ratios).
    pub fn to_json(&self) -> serde_json::Value {
        let mut json = self.load.to_json();
        if let (Some(sales), Some(object)) = (&self.sales, json.as_object_mut()) {
            object.insert("sales".into(), self.sales_json(sales));
        }
        json
    }

    fn sales_json(&self, sales: &Sales) -> serde_json::Value {
        let mut json = sales.phase.load.to_json();
        let (ratio, sustained_ratio) = self.sales_ratio().unwrap_or_default();
        if let Some(object) = json.as_object_mut() {
            let fields = serde_json::json!({
                "sku": SKU,
                "stock": sales.stock,
                "import_s": sales.import.as_secs_f64(),
                "declined": sales.declined(),
                "sold": sales.sold,
                "drain_s": sales.phase.drain.as_secs_f64(),
                "sustained_per_s": sales.phase.sustained_per_second(),
                "ratio_to_replenishments": ratio,
                "sustained_ratio_to_replenishments": sustained_ratio,
            });
            if let Some(fields) = fields.as_object() {
                object.extend(fields.clone());
            }
        }
        json
    }

    /// What `replenish bench` prints after the load report: the drain, the sustained
    /// rate and, with the engine, delivery and the approval-to-engine lag; then the
    /// sales phase's report, drain and rates against the replenishments'.
    pub fn after_load(&self) -> String {
        let mut out = self.drain_and_delivery();
        if let Some(sales) = &self.sales {
            out += &self.sales_text(sales);
        }
        out
    }

    fn sales_text(&self, sales: &Sales) -> String {
        let (ratio, sustained_ratio) = self.sales_ratio().unwrap_or_default();
        format!(
            "\nPIN sales   {SKU}: {} PINs imported in {:.1} s, then the same load of sales\n\
             {}\n{}\
             sales/s     {:.0} approved, {:.2} of the replenishments' {:.0}/s; sustained {:.0}/s, \
             {:.2} of {:.0}/s\n\
             stock       {} PINs sold; {} sale(s) not approved\n",
            sales.stock,
            sales.import.as_secs_f64(),
            sales.phase.load,
            sales.phase.drain_and_delivery(),
            sales.per_second(),
            ratio,
            self.load.approved_per_second(),
            sales.phase.sustained_per_second(),
            sustained_ratio,
            self.sustained_per_second(),
            sales.sold,
            sales.declined()
        )
    }

    /// The drain, the sustained rate and, with the engine, delivery and lag.
    fn drain_and_delivery(&self) -> String {
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
    /// Importing the sales phase's PINs, or counting those sold.
    #[error("PIN stock: {0}")]
    Pins(#[from] PinsError),
    /// The built-in config or template (a bug).
    #[error("{0}")]
    Setup(String),
}

/// Runs the bench and reports.
pub async fn run(plan: BenchPlan) -> Result<BenchReport, BenchError> {
    let (mut report, _) = phase(&plan, plan.data_dir.clone(), None).await?;
    if let Some(sales) = plan.sales {
        let stock = sales
            .stock
            .unwrap_or_else(|| stock_for(&plan, &report.load));
        let dir =
            (plan.data_dir.as_deref()).map(|d| PathBuf::from(format!("{}-sales", d.display())));
        let (phase, stocked) = phase(&plan, dir, Some(stock)).await?;
        let Stocked { import, sold } = stocked.unwrap_or_default();
        report.sales = Some(Sales {
            phase: Box::new(phase),
            stock,
            import,
            sold,
        });
    }
    Ok(report)
}

/// PINs for the sales phase: half again what the replenishments approved in a closed
/// loop, the rate's worth and a tenth at a fixed rate; whole files, at least
/// [`MIN_STOCK`].
fn stock_for(plan: &BenchPlan, replenishments: &LoadReport) -> usize {
    let wanted = match plan.pace {
        Pace::Closed(_) => {
            let approved = replenishments.codes.get("00").copied().unwrap_or(0);
            approved.saturating_mul(3) / 2
        }
        Pace::Rate(rate) => {
            let rate = rate as f64 * plan.duration.as_secs_f64() * 1.1;
            (rate as u64).saturating_add(64 * plan.connections as u64)
        }
    };
    let wanted = usize::try_from(wanted).unwrap_or(usize::MAX).max(MIN_STOCK);
    wanted.div_ceil(pins::MAX_PER_FILE) * pins::MAX_PER_FILE
}

/// A sales phase's stock: how long the import took, how many PINs were sold.
#[derive(Default)]
struct Stocked {
    import: Duration,
    sold: u64,
}

/// One phase on its own switch and data directory: replenishments, or with `stock`
/// sales of [`SKU`] after importing that many PINs.
async fn phase(
    plan: &BenchPlan,
    data_dir: Option<PathBuf>,
    stock: Option<usize>,
) -> Result<(BenchReport, Option<Stocked>), BenchError> {
    let scratch = match data_dir {
        Some(_) => None,
        None => Some(
            tempfile::Builder::new()
                .prefix("replenish-bench-")
                .tempdir()?,
        ),
    };
    let dir = data_dir
        .or_else(|| scratch.as_ref().map(|s| s.path().to_path_buf()))
        .ok_or_else(|| BenchError::Setup("no data directory".into()))?;
    let addr = free_loopback_port()?;
    let stop_engine = CancellationToken::new();
    let engine = match plan.engine {
        true => Some(start_engine(&dir, &stop_engine).await?),
        false => None,
    };
    let config = phase_config(&dir, addr, engine.as_ref(), stock.is_some())?;
    let accounts = generated_accounts(plan.accounts.max(1));
    let import = prepare(&config, &accounts, stock).await?;
    let shutdown = CancellationToken::new();
    let switch = tokio::spawn(server::run(config.clone(), shutdown.clone()));
    wait_until_listening(addr).await?;
    let load = load::run(load_plan(plan, addr, accounts, stock.is_some())?).await;
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
    let report = BenchReport {
        load: load?,
        forwarding,
        drain,
        sales: None,
    };
    let stocked = match stock {
        Some(_) => Some(Stocked {
            import,
            sold: sold(&config).await?,
        }),
        None => None,
    };
    Ok((report, stocked))
}

/// The switch's config for a phase: [`config_text`] with the engine simulator's links
/// (or a port nobody listens on), and [`PRODUCT`] when it sells.
fn phase_config(
    dir: &std::path::Path,
    addr: SocketAddr,
    engine: Option<&Simulator>,
    sales: bool,
) -> Result<Config, BenchError> {
    let links = match engine {
        Some(sim) => (sim.listeners.iter())
            .map(|(a, _)| format!("\"{a}\""))
            .collect::<Vec<_>>(),
        None => vec!["\"127.0.0.1:9\"".to_owned()],
    };
    let mut text = config_text(dir, addr, &links.join(", "));
    if sales {
        text += PRODUCT;
    }
    Config::from_toml(&text, "bench config").map_err(|e| BenchError::Setup(e.to_string()))
}

/// PINs of [`SKU`] the index holds as sold (the switch stopped).
async fn sold(config: &Config) -> Result<u64, BenchError> {
    let config = config.clone();
    let stock = tokio::task::spawn_blocking(move || pins::stock(&config))
        .await
        .map_err(|e| BenchError::Setup(format!("stock task: {e}")))??;
    Ok(stock.iter().filter(|s| s.sku == SKU).map(|s| s.sold).sum())
}

/// Seeds the data directory, imports `stock` PINs when there are sales to make, and
/// syncs the filesystem so that none of it is written back during the load. Returns
/// how long the import took.
async fn prepare(
    config: &Config,
    accounts: &[Account],
    stock: Option<usize>,
) -> Result<Duration, BenchError> {
    seed(config, accounts).await?;
    let started = Instant::now();
    if let Some(count) = stock {
        let config = config.clone();
        tokio::task::spawn_blocking(move || import_stock(&config, count))
            .await
            .map_err(|e| BenchError::Setup(format!("import task: {e}")))??;
    }
    let import = started.elapsed();
    // The seed's index writes are still on their way to the disk; a sync now keeps
    // their writeback (and the disk flush it makes slow) out of the measurement.
    tokio::task::spawn_blocking(rustix::fs::sync)
        .await
        .map_err(|e| BenchError::Setup(format!("sync task: {e}")))?;
    Ok(import)
}

/// Imports `count` PINs of [`SKU`] into the data directory of `config` (the switch not
/// running) as `pins import` would, in batches of at most [`pins::MAX_PER_FILE`] (each
/// checked whole against the stock and journaled as one record), on the data directory
/// opened once; the CSV never touches the disk.
fn import_stock(config: &Config, count: usize) -> Result<(), BenchError> {
    let data = DataDir::open(config).map_err(PinsError::from)?;
    let imported = (0..count)
        .step_by(pins::MAX_PER_FILE)
        .try_for_each(|start| {
            let batch = pin_batch(start..count.min(start + pins::MAX_PER_FILE));
            let name = format!("bench-pins-{start}.csv");
            pins::import_into(&data, config, (&name, batch.as_bytes()), SKU, "bench").map(drop)
        });
    data.close().map_err(PinsError::from)?;
    Ok(imported?)
}

/// The CSV of the bench's PINs numbered `range`: serial `B` and ten digits, a
/// 12-digit PIN (`n` times a number prime to 10^12, plus an offset, modulo 10^12), both
/// different for every `n` below 10^10.
fn pin_batch(range: Range<usize>) -> String {
    const MODULUS: u64 = 1_000_000_000_000;
    let mut text = String::with_capacity(32 * range.len() + 16);
    text.push_str("serial,pin\n");
    for n in range {
        let n = n as u64;
        let pin = (n.wrapping_mul(7_919_113) + 104_729) % MODULUS;
        text.push_str(&format!("B{n:010},{pin:012}\n"));
    }
    text
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

/// Imports the accounts and the reference request's location (the filesystem synced
/// by [`prepare`]).
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
        Ok::<(), BenchError>(())
    })
    .await
    .map_err(|e| BenchError::Setup(format!("seed task: {e}")))??;
    Ok(())
}

/// The load: the reference request on the generated accounts or, for sales, the
/// reference sale on as many of the product's cards.
fn load_plan(
    plan: &BenchPlan,
    target: SocketAddr,
    accounts: Vec<Account>,
    sales: bool,
) -> Result<LoadPlan, BenchError> {
    let spec = Spec::resolve("iso87ascii").map_err(|e| BenchError::Setup(e.to_string()))?;
    let mut template = reference_request(&spec)?;
    let numbers = match sales {
        true => {
            template.set(3, crate::switch::sell::SALE);
            product_cards(accounts.len())
        }
        false => accounts.into_iter().map(|a| a.number).collect(),
    };
    Ok(LoadPlan {
        target,
        template,
        spec: Arc::new(spec),
        codec: FrameCodec::new(crate::wire::framing::LengthHeader::Binary2),
        connections: plan.connections.max(1),
        pace: plan.pace,
        duration: plan.duration,
        accounts: numbers,
        mix: load::Mix::default(),
    })
}

/// `n` Luhn-valid cards of the bench product (reusable: each sale draws a new PIN).
fn product_cards(n: usize) -> Vec<String> {
    (0..n.max(1))
        .map(|i| {
            let body = format!("{CARD_PREFIX}{:08}", i % 100_000_000);
            let digit = luhn_check_digit(body.as_bytes());
            format!("{body}{digit}")
        })
        .collect()
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

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashSet};

    use super::*;
    use crate::vocab::confirmation::luhn_valid;

    fn plan(pace: Pace, sales: Option<SalesPlan>) -> BenchPlan {
        BenchPlan {
            connections: 4,
            pace,
            duration: Duration::from_secs(10),
            accounts: 3,
            data_dir: None,
            engine: false,
            sales,
        }
    }

    fn load_report(codes: &[(&str, u64)], unanswered: u64) -> LoadReport {
        let codes: BTreeMap<String, u64> =
            (codes.iter()).map(|(c, n)| ((*c).to_owned(), *n)).collect();
        LoadReport {
            sent: codes.values().sum::<u64>() + unanswered,
            codes,
            unanswered,
            elapsed: Duration::from_secs(10),
            latency: Histogram::new(3).expect("histogram"),
            timeline: Vec::new(),
            approvals: Vec::new(),
        }
    }

    fn report(load: LoadReport, sales: Option<Sales>) -> BenchReport {
        BenchReport {
            load,
            forwarding: None,
            drain: Duration::from_secs(2),
            sales,
        }
    }

    fn sales(load: LoadReport, sold: u64) -> Sales {
        Sales {
            phase: Box::new(report(load, None)),
            stock: 8_000,
            import: Duration::from_secs(1),
            sold,
        }
    }

    #[test]
    fn the_stock_covers_the_phase_in_whole_files() {
        let closed = plan(Pace::Closed(64), None);
        let first = load_report(&[("00", 300_001)], 0);
        assert_eq!(
            stock_for(&closed, &first),
            452_000,
            "450,001 in whole files"
        );
        assert_eq!(stock_for(&closed, &load_report(&[], 0)), MIN_STOCK);
        let rate = plan(Pace::Rate(5_000), None);
        assert_eq!(
            stock_for(&rate, &first),
            56_000,
            "55,000 and 4 × 64 in files"
        );
    }

    #[test]
    fn the_stock_is_unique_and_imported_in_files_of_at_most_4000() {
        let (mut serials, mut pins) = (HashSet::new(), HashSet::new());
        for range in [0..4_000, 4_000..8_000, 9_999_999_000..9_999_999_999] {
            let batch = pin_batch(range.clone());
            assert_eq!(batch.lines().next(), Some("serial,pin"));
            for line in batch.lines().skip(1) {
                let (serial, pin) = line.split_once(',').expect("serial,pin");
                assert_eq!((serial.len(), pin.len()), (11, 12), "{line}");
                assert!(serials.insert(serial.to_owned()), "serial {serial} twice");
                assert!(pins.insert(pin.to_owned()), "a PIN twice, at {serial}");
            }
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let addr = SocketAddr::from(([127, 0, 0, 1], 8583));
        let config = phase_config(dir.path(), addr, None, true).expect("config");
        import_stock(&config, pins::MAX_PER_FILE + 1).expect("two files");
        let stock = pins::stock(&config).expect("stock");
        assert_eq!(stock.len(), 1);
        assert_eq!((stock[0].available, stock[0].sold), (4_001, 0));
        let plain = phase_config(dir.path(), addr, None, false).expect("config");
        assert!(plain.product.is_empty(), "replenishments: no product");
    }

    #[test]
    fn a_sale_is_the_reference_request_for_the_product_on_its_cards() {
        let dir = tempfile::tempdir().expect("tempdir");
        let addr = SocketAddr::from(([127, 0, 0, 1], 8583));
        let config = phase_config(dir.path(), addr, None, true).expect("config");
        let product = config.find_product(SKU).expect("the product");
        let bench = plan(Pace::Closed(64), Some(SalesPlan::default()));
        let sales = load_plan(&bench, addr, generated_accounts(3), true).expect("plan");
        let text = |n| sales.template.text(n).map(str::trim);
        assert_eq!(text(3), Some(crate::switch::sell::SALE));
        assert_eq!(text(4).and_then(|v| v.parse().ok()), Some(product.value));
        assert_eq!(text(49), Some(product.currency.as_str()));
        assert_eq!(sales.accounts.len(), 3);
        for card in &sales.accounts {
            assert!(luhn_valid(card.as_bytes()), "{card}");
            assert_eq!(config.product_of(card).map(|p| p.sku.as_str()), Some(SKU));
        }
        let plain = load_plan(&bench, addr, generated_accounts(3), false).expect("plan");
        assert_eq!(plain.template.text(3), Some("280000"));
        assert!(
            plain
                .accounts
                .iter()
                .all(|a| config.product_of(a).is_none())
        );
    }

    #[test]
    fn a_sale_not_approved_fails_the_bench_and_the_json_keeps_the_load_fields() {
        let plain = report(load_report(&[("00", 1_000)], 0), None);
        assert_eq!(plain.failure(), None);
        let json = plain.to_json();
        assert!(json.get("sales").is_none());
        let declined = load_report(&[("00", 800), ("N1", 5)], 2);
        let run = report(load_report(&[("00", 1_000)], 0), Some(sales(declined, 800)));
        let failure = run.failure().expect("declines fail the bench");
        assert!(
            failure.starts_with("7 PIN sale(s) not approved"),
            "{failure}"
        );
        assert!(failure.contains("N1: 5"), "{failure}");
        let json = run.to_json();
        let keys = |v: &serde_json::Value| {
            (v.as_object().expect("object").keys().cloned()).collect::<HashSet<_>>()
        };
        assert!(keys(&json).is_superset(&keys(&plain.to_json())));
        assert_eq!(json["sales"]["declined"], 7);
        assert_eq!(json["sales"]["approved_per_s"], 80.0);
        assert_eq!(json["sales"]["ratio_to_replenishments"], 0.8);
        assert!(
            run.after_load()
                .contains("0.80 of the replenishments' 100/s")
        );
        let unsold = report(
            load_report(&[("00", 1_000)], 0),
            Some(sales(load_report(&[("00", 800)], 0), 799)),
        );
        let failure = unsold.failure().expect("an approval without a PIN sold");
        assert!(failure.contains("799 PINs sold for 800"), "{failure}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_short_bench_sells_a_pin_for_every_sale() {
        let plan = BenchPlan {
            connections: 1,
            pace: Pace::Closed(4),
            duration: Duration::from_millis(300),
            accounts: 10,
            data_dir: None,
            engine: false,
            sales: Some(SalesPlan::default()),
        };
        let report = run(plan).await.expect("bench");
        assert!(report.load.codes.get("00").is_some_and(|n| *n > 0));
        let sales = report.sales.as_ref().expect("the sales phase");
        let approved = sales.phase.load.codes.get("00").copied().unwrap_or(0);
        assert!(approved > 0, "{:?}", sales.phase.load.codes);
        assert_eq!(report.failure(), None);
        assert_eq!((sales.stock, sales.sold), (MIN_STOCK, approved));
        assert!(report.after_load().contains("PIN sales   BENCH-PIN-25"));
    }
}
