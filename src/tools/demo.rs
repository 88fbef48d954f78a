//! `replenish demo`: the whole job in one process. It starts the engine simulator on the
//! default engine ports, the switch on the embedded default config (with a scratch data
//! directory) loaded with the sample accounts and locations, sends a batch of `0200`
//! replenishments across every sample account — so some are declined, each for its
//! reason — then reverses one approval in ten with a `0420`, sells a few PINs at the
//! till (the products of fixtures/configs/pins.toml, its sample batch imported) and
//! reverses one sale, runs one replenishment per self-service channel through the
//! channel API with `bank-sim` as the subscribers' bank ([`super::demo_channels`]),
//! waits until the engine has acknowledged every approved credit,
//! sale and reversal advice, closes the business day, reconciles it against a bank file
//! written as the acquirer saw the traffic and against the engine's daily report,
//! settles it with the sample fee schedule and payees (fixtures/configs/settlement.toml),
//! and reports what happened: answers by response code, credits and reversals in the
//! engine's ledger, the sales and the PIN stock after them, the two reconciliations'
//! summary lines, the settlement files and each party's share.
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::durable::record::Record;
use crate::tools::client;
use crate::tools::simulator::{self, SimConfig};
use crate::vocab::accounts::{self, Account};
use crate::vocab::codes::ResponseCode;
use crate::wire::framing::FrameCodec;
use crate::wire::iso8583::{Message, Spec};

/// The sample accounts (fixtures/reference/accounts.csv).
pub const SAMPLE_ACCOUNTS: &str = include_str!("../../fixtures/reference/accounts.csv");
/// The sample locations (fixtures/reference/locations.csv).
pub const SAMPLE_LOCATIONS: &str = include_str!("../../fixtures/reference/locations.csv");

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
    /// Approvals reversed with a `0420` answered `00`.
    pub reversed: Vec<String>,
    /// Reversals in the engine's ledger.
    pub reversals_applied: usize,
    /// Total reversed at the engine, minor units.
    pub reversed_amount: u64,
    /// From the first request to the last engine ack.
    pub elapsed: Duration,
    /// The data directory and ledger, when kept.
    pub data_dir: Option<PathBuf>,
    /// The back office's lines: the day's reconciliations (the bank's file, the
    /// engine's report) and its settlement (files and each party's share).
    pub reconciliations: Vec<String>,
    /// Where the console was, and the users the demo made for it.
    pub console: String,
    /// The config the switch ran on (its data directory), for `demo --serve`.
    pub config: Config,
    /// The scratch data directory, removed when the summary is dropped.
    _scratch: Option<tempfile::TempDir>,
}

/// Runs the switch again on the demo's data (console included) until Ctrl-C: what
/// `demo --serve` does after its summary.
pub async fn serve(summary: &Summary) -> Result<(), DemoError> {
    let stop = CancellationToken::new();
    let switch = tokio::spawn(crate::server::run(summary.config.clone(), stop.clone()));
    tokio::signal::ctrl_c().await.map_err(fail)?;
    stop.cancel();
    switch.await.map_err(fail)?.map_err(fail)
}

/// The console users the demo makes: a csr of every sample carrier and a supervisor
/// who approves what the csr asks (four eyes), with one fresh password.
fn console_users(accounts: &[Account]) -> Result<(Vec<Record>, String), DemoError> {
    use crate::console::{secrets, users};
    use crate::durable::record::Saved;
    use crate::vocab::people::{Role, User};
    let password = secrets::token().map_err(fail)?[..16].to_owned();
    let hash = secrets::hash_password(&password).map_err(fail)?;
    let mut carriers: Vec<String> = accounts.iter().map(|a| a.carrier.clone()).collect();
    carriers.sort();
    carriers.dedup();
    let people = [
        ("demo-csr", Role::Csr, carriers),
        ("demo-supervisor", Role::Supervisor, Vec::new()),
    ];
    let records = people
        .into_iter()
        .map(|(name, role, carriers)| {
            let user = User {
                name: name.to_owned(),
                role,
                carriers,
                bank: None,
                password_hash: hash.clone(),
                disabled: false,
            };
            let audit = users::audit("demo", "user.add", name, "ok");
            Record::UserSaved(Box::new(Saved { item: user, audit }))
        })
        .collect();
    Ok((records, password))
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
    with_settlement(&mut config)?;
    with_pins(&mut config)?;
    super::demo_channels::configure(&mut config).map_err(fail)?;
    config.data_dir = (data_dir.clone())
        .or_else(|| scratch.as_ref().map(|s| s.path().to_path_buf()))
        .ok_or_else(|| fail("no data directory"))?;
    let ledger_path = config.data_dir.join("engine-ledger.jsonl");
    std::fs::create_dir_all(&config.data_dir).map_err(fail)?;
    super::demo_channels::with_sms(&mut config).map_err(fail)?;
    let accounts =
        accounts::parse_accounts(SAMPLE_ACCOUNTS.as_bytes()).map_err(|e| fail(format!("{e:?}")))?;
    let locations = accounts::parse_locations(SAMPLE_LOCATIONS.as_bytes())
        .map_err(|e| fail(format!("{e:?}")))?;
    let (people, password) = console_users(&accounts)?;
    let mut records = vec![
        Record::AccountsImported {
            accounts: accounts.clone(),
        },
        Record::LocationsImported { locations },
    ];
    records.extend(people);
    let (channel_records, channel_token) = super::demo_channels::seed(&config).map_err(fail)?;
    records.extend(channel_records);
    let console = format!(
        "console: http://{}/ (while the switch runs): sign in as demo-csr or \
         demo-supervisor, password {password}",
        config.console.listen
    );
    let seeding = config.clone();
    tokio::task::spawn_blocking(move || {
        crate::operate::admin::commit(&seeding, &records).map_err(fail)?;
        crate::pins::import_bytes(&seeding, "card-a-25.csv", SAMPLE_BATCH, "CARD-A-25", "demo")
            .map_err(fail)
    })
    .await
    .map_err(fail)??;

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
    let bank = super::demo_channels::start_bank(&config, stop_engine.clone())
        .await
        .map_err(fail)?;
    let smsc = super::demo_channels::start_smsc(&config, stop_engine.clone())
        .await
        .map_err(fail)?;
    let acquirer = config
        .acquirer
        .first()
        .ok_or_else(|| fail("the default config has an acquirer"))?
        .clone();
    let switch = tokio::spawn(crate::server::run(config.clone(), stop.clone()));
    wait_listening(acquirer.listen).await?;

    let started = Instant::now();
    let bar = progress(requests as u64, "replenishing");
    let template = crate::tools::bench::reference_request(&spec).map_err(fail)?;
    let codec = FrameCodec::new(acquirer.framing);
    let exchange = |message: Message| {
        let spec = &spec;
        async move {
            let timeout = Duration::from_secs(10);
            (client::exchange(acquirer.listen, spec, codec, &message, timeout).await).map_err(fail)
        }
    };
    let mut codes = BTreeMap::new();
    let mut seen = Vec::new();
    let mut approved = Vec::new();
    let mut to_reverse = Vec::new();
    for n in 0..requests {
        let request = demo_request(&template, &accounts, n)?;
        let answer = exchange(request.clone()).await?;
        seen.push((request.clone(), answer.clone()));
        let code = answer.text(39).unwrap_or("??").to_owned();
        if let (Some("00"), Some(confirmation)) = (answer.text(39), answer.text(62)) {
            if approved.len() % 10 == 0 {
                to_reverse.push((request, confirmation.to_owned()));
            }
            approved.push(confirmation.to_owned());
        }
        *codes.entry(code).or_default() += 1;
        bar.inc(1);
    }
    bar.finish_and_clear();
    // Reversals go out once the engine has every credit, so each one is advised to the
    // engine (a credit still in the outbox would be cancelled there instead).
    let credited = wait_ledger(&ledger_path, &approved, &[], "engine acks").await;
    let mut reversed = Vec::new();
    if credited.credited == approved.len() {
        for (n, (original, confirmation)) in to_reverse.iter().enumerate() {
            let reversal = reversal_of(original, requests + n + 1);
            let answer = exchange(reversal.clone()).await?;
            seen.push((reversal, answer.clone()));
            if answer.text(39) == Some("00") {
                reversed.push(confirmation.clone());
            }
        }
    }
    let totals = wait_ledger(&ledger_path, &approved, &reversed, "reversal acks").await;
    let mut sales = Vec::new();
    for (n, (card, value)) in DEMO_SALES.iter().enumerate() {
        let stan = requests + to_reverse.len() + n + 1;
        let sale = client::build(&template, &sale_overrides(card, *value, stan)).map_err(fail)?;
        let answer = exchange(sale.clone()).await?;
        seen.push((sale.clone(), answer.clone()));
        sales.push((sale, answer));
    }
    let sold: Vec<String> = (sales.iter())
        .filter_map(|(_, a)| a.text(62).map(str::to_owned))
        .collect();
    // As with replenishments, the reversal goes out once the engine has the sale.
    wait_ledger(&ledger_path, &sold, &[], "PIN sale acks").await;
    let (last_sale, _) = sales.last().ok_or_else(|| fail("no sale"))?;
    let reversal = reversal_of(
        last_sale,
        requests + to_reverse.len() + DEMO_SALES.len() + 1,
    );
    let voided = exchange(reversal.clone()).await?;
    seen.push((reversal, voided.clone()));
    let last: Vec<String> = sold.last().cloned().into_iter().collect();
    wait_ledger(&ledger_path, &[], &last, "PIN sale reversal ack").await;
    let pin_lines = sale_lines(&sales, &voided);
    let (mut channel_lines, channel_credits) =
        super::demo_channels::replenish(&config, &channel_token, &bank)
            .await
            .map_err(fail)?;
    wait_ledger(&ledger_path, &channel_credits, &[], "channel credit acks").await;
    channel_lines.extend(super::demo_channels::sms_lines(&smsc, channel_credits.len()).await);
    channel_lines.push(format!(
        "  engine ledger: {} of the {} channel credits acknowledged",
        ledger_totals(&ledger_path, &channel_credits, &[]).credited,
        channel_credits.len()
    ));
    let elapsed = started.elapsed();
    stop.cancel();
    switch.await.map_err(fail)?.map_err(fail)?;
    stop_engine.cancel();
    drop(sim);
    drop(bank);
    let closing = config.clone();
    let mut reconciliations =
        tokio::task::spawn_blocking(move || reconcile_the_day(&closing, &seen, &ledger_path))
            .await
            .map_err(fail)??;
    let after_sales = pin_lines.len();
    reconciliations.splice(0..0, pin_lines);
    reconciliations.insert(after_sales, stock_line(&config).await?);
    reconciliations.splice(after_sales + 1..after_sales + 1, channel_lines);
    let summary = Summary {
        sent: requests,
        codes,
        approved,
        credited: totals.credited,
        credited_twice: totals.twice,
        amount: totals.amount,
        reversed,
        reversals_applied: totals.reversals,
        reversed_amount: totals.reversed_amount,
        elapsed,
        data_dir: scratch.is_none().then(|| config.data_dir.clone()),
        reconciliations,
        console,
        config,
        _scratch: scratch,
    };
    Ok(summary)
}

/// Closes the business day and reconciles it: against a bank file written as the
/// acquirer saw the traffic, and against the engine simulator's daily report. Returns
/// the two summary lines.
fn reconcile_the_day(
    config: &Config,
    seen: &[(Message, Message)],
    ledger: &std::path::Path,
) -> Result<Vec<String>, DemoError> {
    use crate::backoffice::reconcile::{self, Party};
    let closed = crate::backoffice::days::close(config, "demo").map_err(fail)?;
    let day = closed.closed;
    let bank = config
        .banks()
        .into_iter()
        .next()
        .ok_or_else(|| fail("no bank"))?;
    let link_id = (config.acquirer.first()).map_or(String::new(), |a| a.acquirer_id.clone());
    let mut text = String::from(
        "business_day,mti,processing_code,acquirer_id,terminal,stan,transmission,rrn,account,amount,currency,response_code,confirmation\n",
    );
    for (request, answer) in seen {
        text += &bank_line(&day, request, answer, &link_id);
    }
    let bank_file = config
        .data_dir
        .join(format!("bank-{}-{day}.csv", bank.name));
    std::fs::write(&bank_file, text).map_err(fail)?;
    let engine = config.engine.first().ok_or_else(|| fail("no engine"))?;
    let report_file = config
        .data_dir
        .join(format!("engine-{}-{day}.csv", engine.name));
    let report = simulator::Ledger::report(ledger, &day).map_err(fail)?;
    std::fs::write(&report_file, report).map_err(fail)?;
    let bank_report = reconcile::reconcile_file(config, &bank_file, Party::Bank(&bank.name), &day)
        .map_err(fail)?;
    let engine_report =
        reconcile::reconcile_file(config, &report_file, Party::Engine(&engine.name), &day)
            .map_err(fail)?;
    let mut lines = vec![
        bank_report.summary(&reconcile::bank::CLASSES),
        engine_report.summary(&reconcile::engine::CLASSES),
    ];
    let out = config.data_dir.join("settlement");
    match crate::backoffice::settle::settle(config, &bank.name, &day, &out) {
        Ok(written) => lines.extend(
            crate::backoffice::settle::summary(&written)
                .lines()
                .map(str::to_owned),
        ),
        Err(e) => lines.push(format!("not settled: {e}")),
    }
    Ok(lines)
}

/// The sample settlement (fixtures/configs/settlement.toml): its fee schedule, bank
/// settlement account and payees.
pub const SAMPLE_SETTLEMENT: &str = include_str!("../../fixtures/configs/settlement.toml");

/// The embedded default config with the sample's settlement sections.
/// The demo's PIN sales: four of the bucket product, two of the generated one (the
/// last one reversed).
const DEMO_SALES: [(&str, u64); 6] = [
    ("6034567000000017", 2500),
    ("6034567000000017", 2500),
    ("6034567000000025", 2500),
    ("6034567000000017", 2500),
    ("6034568000000016", 1000),
    ("6034568000000016", 1000),
];

/// The sample PIN products (fixtures/configs/pins.toml).
const SAMPLE_PINS: &str = include_str!("../../fixtures/configs/pins.toml");
/// The sample PIN batch of CARD-A-25 (fixtures/pins/card-a-25.csv).
const SAMPLE_BATCH: &[u8] = include_bytes!("../../fixtures/pins/card-a-25.csv");

/// Adds the sample PIN products to `config`.
fn with_pins(config: &mut Config) -> Result<(), DemoError> {
    let sample = Config::from_toml(SAMPLE_PINS, "fixtures/configs/pins.toml").map_err(fail)?;
    config.product = sample.product;
    config.pins = sample.pins;
    Ok(())
}

/// A sale of `card` for `value` with STAN `stan`.
fn sale_overrides(card: &str, value: u64, stan: usize) -> client::Overrides {
    let mut overrides = client::Overrides::default();
    overrides.fields.push((2, card.to_owned()));
    overrides.fields.push((3, "000000".to_owned()));
    overrides.fields.push((4, format!("{value:012}")));
    overrides
        .fields
        .push((11, format!("{:06}", stan % 1_000_000)));
    overrides
}

/// One line per sale (the PIN shown by its length only) and one for the reversal.
fn sale_lines(sales: &[(Message, Message)], voided: &Message) -> Vec<String> {
    let mut lines = vec![format!(
        "sold {} PINs at the till (0200 DE3 000000; each answer's DE63 is the PIN, shown \
         here only by its length):",
        sales.len()
    )];
    for (sale, answer) in sales {
        lines.push(format!(
            "  card {} -> {} confirmation {} PIN of {} digits{}",
            crate::wire::iso8583::mask_pan(sale.text(2).unwrap_or("").as_bytes()),
            answer.text(39).unwrap_or("??"),
            answer.text(62).unwrap_or("-"),
            answer.text(63).map_or(0, str::len),
            answer
                .text(73)
                .map(|e| format!(", expires {e}"))
                .unwrap_or_default()
        ));
    }
    lines.push(format!(
        "reversed the last sale (0420, answered {}): its PIN is voided",
        voided.text(39).unwrap_or("??")
    ));
    lines
}

/// The PIN stock after the sales, one line.
async fn stock_line(config: &Config) -> Result<String, DemoError> {
    let config = config.clone();
    let stock = tokio::task::spawn_blocking(move || crate::pins::stock(&config))
        .await
        .map_err(fail)?
        .map_err(fail)?;
    let parts: Vec<String> = (stock.iter())
        .map(|s| {
            format!(
                "{} available {}, sold {}, voided {}",
                s.sku, s.available, s.sold, s.voided
            )
        })
        .collect();
    Ok(format!("PIN stock after: {}", parts.join("; ")))
}

fn with_settlement(config: &mut Config) -> Result<(), DemoError> {
    let sample =
        Config::from_toml(SAMPLE_SETTLEMENT, "fixtures/configs/settlement.toml").map_err(fail)?;
    config.fees = sample.fees;
    config.bank = sample.bank;
    config.payee = sample.payee;
    Ok(())
}

/// The bank's reconciliation line of one exchange, as the acquirer saw it.
fn bank_line(day: &str, request: &Message, answer: &Message, link_id: &str) -> String {
    let field = |m: &Message, n: u8| m.text(n).unwrap_or("").trim().to_owned();
    let account = match field(request, 3).starts_with("40") {
        true => field(request, 103),
        false => field(request, 2),
    };
    let acquirer = Some(field(request, 32)).filter(|a| !a.is_empty());
    let amount: u64 = field(request, 4).parse().unwrap_or(0);
    let values = [
        day.to_owned(),
        request.mti().to_string(),
        field(request, 3),
        acquirer.unwrap_or_else(|| link_id.to_owned()),
        field(request, 41),
        field(request, 11),
        field(request, 7),
        field(request, 37),
        account,
        amount.to_string(),
        field(request, 49),
        field(answer, 39),
        field(answer, 62),
    ];
    values.join(",") + "\n"
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

/// Waits (up to a minute) until the ledger holds every credit of `approved` and every
/// reversal of `reversed`; returns what it holds.
async fn wait_ledger(
    path: &std::path::Path,
    approved: &[String],
    reversed: &[String],
    label: &'static str,
) -> Totals {
    let expected = approved.len() + reversed.len();
    let bar = progress(expected as u64, label);
    let deadline = Instant::now() + Duration::from_secs(60);
    let totals = loop {
        let totals = ledger_totals(path, approved, reversed);
        bar.set_position((totals.credited + totals.reversals) as u64);
        if totals.credited + totals.reversals >= expected || Instant::now() > deadline {
            break totals;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    bar.finish_and_clear();
    totals
}

/// The reversal (`0420`) of `original`, with STAN `stan` and DE90 naming the original.
fn reversal_of(original: &Message, stan: usize) -> Message {
    let mut reversal = original.clone();
    if let Some(mti) = crate::wire::iso8583::Mti::new(b"0420") {
        reversal.set_mti(mti);
    }
    reversal.set(11, format!("{:06}", stan % 1_000_000));
    reversal.set(90, crate::switch::reverse::original_data(original));
    reversal
}

/// What the engine's ledger holds of the demo's approvals and reversals.
struct Totals {
    credited: usize,
    twice: usize,
    amount: u64,
    reversals: usize,
    reversed_amount: u64,
}

fn ledger_totals(path: &std::path::Path, approved: &[String], reversed: &[String]) -> Totals {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut seen: BTreeMap<(String, String), usize> = BTreeMap::new();
    let (mut amount, mut reversed_amount) = (0, 0);
    for line in text.lines() {
        if let Ok(entry) = serde_json::from_str::<simulator::Entry>(line) {
            match entry.kind.as_str() {
                "credit" => amount += entry.amount,
                _ => reversed_amount += entry.amount,
            }
            *seen.entry((entry.kind, entry.confirmation)).or_default() += 1;
        }
    }
    let has = |kind: &str, c: &String| seen.contains_key(&(kind.to_owned(), c.clone()));
    Totals {
        credited: approved.iter().filter(|c| has("credit", c)).count(),
        twice: seen.values().filter(|&&n| n > 1).count(),
        amount,
        reversals: reversed.iter().filter(|c| has("reversal", c)).count(),
        reversed_amount,
    }
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
        let net = self.amount.saturating_sub(self.reversed_amount);
        writeln!(
            f,
            "reversed {} approvals (0420, answered 0430 00); engine ledger: {} reversals, {}.{:02} taken back, {}.{:02} net",
            self.reversed.len(),
            self.reversals_applied,
            self.reversed_amount / 100,
            self.reversed_amount % 100,
            net / 100,
            net % 100
        )?;
        for line in &self.reconciliations {
            writeln!(f, "{line}")?;
        }
        writeln!(f, "{}", self.console)?;
        match &self.data_dir {
            Some(dir) => write!(
                f,
                "data (journal, indexes, exception log, engine ledger): {}\n\
                 serve it again, console included: write a config with data_dir = \"{}\" \
                 and run replenish serve --config FILE",
                dir.display(),
                dir.display()
            ),
            None => write!(
                f,
                "data: a scratch directory, removed (keep it with --data-dir DIR)"
            ),
        }
    }
}
