//! The `replenish` command line: argument parsing and exit codes only. Exit codes:
//! 0 success, 2 bad usage or bad input (the message names the line and field at
//! fault), 1 anything else.
#![forbid(unsafe_code)]

/// mimalloc instead of glibc's malloc: the switch allocates many small, short-lived
/// buffers (messages, records, index entries), and glibc's allocator took about a fifth
/// of the CPU at load (see README, Benchmarks).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::io::{self, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use replenish::backoffice::{self, BackofficeError};
use replenish::config::Config;
use replenish::operate::admin::{self, ImportError, Table};
use replenish::operate::queue;
use replenish::tools::bench::{self, BenchPlan};
use replenish::tools::client;
use replenish::tools::inspect::{self, Listing};
use replenish::tools::load::{self, LoadPlan, LoadReport, Pace};
use replenish::tools::simulator::{self, Faults, SimConfig, SimError};
use replenish::tools::{capture, replay};
use replenish::vocab::accounts::{AccountStatus, parse_accounts};
use replenish::vocab::people::Role;
use replenish::wire::framing::{FrameCodec, LengthHeader};
use replenish::wire::iso8583::Spec;
use replenish::{logging, server};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "replenish",
    version,
    about = "An ISO 8583 switch for prepaid-account replenishment"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Decode hex messages (the argument, or one per line on stdin) to JSON.
    Decode {
        /// Spec name (iso87ascii, iso87binary, iso87bcd, iso87ebcdic) or a spec .toml file.
        #[arg(long, default_value = "iso87ascii")]
        spec: String,
        /// One line per field with its name, account numbers masked.
        #[arg(long)]
        pretty: bool,
        /// The message in hex; without it, messages are read from stdin, one per line.
        hex: Option<String>,
        /// Decode every frame of a capture file (text, pcap or pcapng) instead.
        #[arg(long, conflicts_with = "hex")]
        capture: Option<PathBuf>,
        #[command(flatten)]
        link: capture::LinkArgs,
    },
    /// Encode JSON messages from stdin ({"mti":"0200","fields":{"2":"..."}}) to hex.
    Encode {
        /// Spec name or a spec .toml file.
        #[arg(long, default_value = "iso87ascii")]
        spec: String,
    },
    /// Run the switch until SIGTERM or Ctrl-C (then drain and exit 0).
    Serve {
        /// Config file; without it, the embedded default (fixtures/configs/default.toml).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Check a config file and print it with every default filled in.
    CheckConfig {
        /// The config file.
        file: PathBuf,
    },
    /// Prepaid accounts: `accounts import FILE.csv`.
    Accounts {
        #[command(subcommand)]
        action: Import,
    },
    /// Authorized replenishment locations: `locations import FILE.csv`.
    Locations {
        #[command(subcommand)]
        action: Import,
    },
    /// The exception queue: advices acknowledged but not credited (`list`, `resubmit ID`).
    Exceptions {
        #[command(subcommand)]
        action: ExceptionsAction,
    },
    /// Console users: `add`, `list`, `disable` (BACKOFFICE.md §4).
    Users {
        #[command(subcommand)]
        action: UsersAction,
    },
    /// Voucher PINs of the products sold at the point of sale: `import`, `stock`.
    Pins {
        #[command(subcommand)]
        action: PinsAction,
    },
    /// Machine clients with a bearer token (an IVR, a channel gateway): `add`.
    Clients {
        #[command(subcommand)]
        action: ClientsAction,
    },
    /// Business days: `close` the open one now, `list` them with their states.
    Day {
        #[command(subcommand)]
        action: DayAction,
    },
    /// Reconcile a day with a bank's file (or an engine's report).
    Reconcile {
        #[command(subcommand)]
        side: ReconcileSide,
    },
    /// Settle a reconciled business day of a bank: each party's share by the fee
    /// schedule, as JSON and an ISO 20022 pain.001.001.09 credit transfer.
    Settle {
        /// The business day, YYYY-MM-DD (reconciled).
        #[arg(long)]
        day: String,
        /// The bank.
        #[arg(long)]
        bank: String,
        /// Where the files go.
        #[arg(long, default_value = ".")]
        out: PathBuf,
        /// Config naming the data directory; without it, the embedded default.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Reports: `revenue` of a month, the `audit` trail of a settlement, the `fraud`
    /// log of a day.
    Report {
        #[command(subcommand)]
        kind: ReportKind,
    },
    /// What became of a replenishment, by the confirmation number on its receipt.
    Lookup {
        /// The confirmation number (DE62 of the approval, 12 digits).
        confirmation: String,
        /// The answer as one JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// Config naming the data directory; without it, the embedded default.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Drive a running switch with 0200 requests and report throughput and latency.
    Load {
        #[command(flatten)]
        listener: Listener,
        /// Accounts CSV whose active accounts the requests cycle through (else DE2 of
        /// the reference request).
        #[arg(long)]
        accounts: Option<PathBuf>,
        /// Request kinds by weight: approval, decline, repeat, malformed, echo
        /// (e.g. approval=90,decline=5,repeat=3,malformed=1,echo=1).
        #[arg(long, default_value = "approval=1")]
        mix: load::Mix,
        #[command(flatten)]
        pacing: Pacing,
    },
    /// The main job end to end: engine simulator + switch (embedded default config) in
    /// one process, a batch of replenishments, and what happened.
    Demo {
        /// Replenishment requests to send.
        #[arg(long, default_value_t = 200)]
        requests: usize,
        /// Keep the data (journal, indexes, logs, engine ledger) here instead of a
        /// scratch directory.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Afterwards, serve the demo's data (the console included) until Ctrl-C.
        #[arg(long)]
        serve: bool,
    },
    /// Send one message to a switch and print the response, decoded (PAN masked).
    Send {
        #[command(flatten)]
        listener: Listener,
        /// Start from this JSON message instead of the reference 0200 (`-` for stdin).
        #[arg(long)]
        json: Option<PathBuf>,
        /// The MTI, e.g. 0220.
        #[arg(long)]
        mti: Option<String>,
        /// DE2, the prepaid account card number.
        #[arg(long)]
        pan: Option<String>,
        /// DE4 in minor units, e.g. 2500 for 25.00.
        #[arg(long)]
        amount: Option<u64>,
        /// DE11; give the same STAN (and --field 7=...) again to send a repeat.
        #[arg(long)]
        stan: Option<u32>,
        /// Any field: --field 42=LOC000000001234 (repeatable).
        #[arg(long = "field", value_parser = client::parse_field)]
        fields: Vec<(u8, String)>,
        /// Seconds to wait for the response.
        #[arg(long, default_value_t = 10)]
        timeout: u64,
    },
    /// Print a running switch's engines (outbox, links) and response counts.
    Status {
        /// The switch's metrics address ([metrics] listen).
        #[arg(long, default_value = "127.0.0.1:9100")]
        metrics: SocketAddr,
    },
    /// A prepaid engine simulator: applies each DE62 once, appends to a JSON-lines ledger
    /// (`engine-sim report` writes its daily report).
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    EngineSim {
        #[command(subcommand)]
        report: Option<SimReport>,
        /// Address to listen on (repeat for a second link).
        #[arg(long, required = true)]
        listen: Vec<SocketAddr>,
        /// The ledger file (JSON lines; read back on start).
        #[arg(long, required = true)]
        ledger: Option<PathBuf>,
        /// Spec of the engine links.
        #[arg(long, default_value = "iso87ascii")]
        spec: String,
        /// Framing of the engine links.
        #[arg(long, default_value = "binary2")]
        framing: LengthHeader,
        /// fdatasync each ledger line before its ack.
        #[arg(long)]
        fsync: bool,
        #[command(flatten)]
        faults: FaultFlags,
    },
    /// A subscriber's bank for the self-service channels: debits `account,balance`
    /// accounts once per 0200, puts reversals back once, keeps a JSON-lines ledger.
    BankSim(replenish::tools::banksim::BankSimArgs),
    /// Captures: `capture convert IN OUT` between text, pcap and pcapng.
    Capture {
        #[command(subcommand)]
        action: capture::CaptureCommand,
    },
    /// Replay a capture's requests against a switch and compare the answers.
    Replay(replay::ReplayArgs),
    /// Start a switch on a scratch data directory and load it (the README's figures).
    Bench {
        /// Distinct generated accounts.
        #[arg(long, default_value_t = 10_000)]
        accounts: usize,
        /// Also run the engine simulator and measure delivery of every credit to it.
        #[arg(long)]
        engine: bool,
        /// Then measure PIN sales the same way on a product with imported stock (a second
        /// phase on its own switch); any sale not approved `00` fails the bench.
        #[arg(long)]
        sales: bool,
        /// PINs to import for --sales (default: 1.5 times the approvals of the first phase,
        /// closed loop, or the rate's worth and a tenth).
        #[arg(long, requires = "sales")]
        sales_stock: Option<usize>,
        /// Instead, benchmark the self-service channel API (BACKOFFICE.md §6): web
        /// replenishments from --connections HTTP clients in a closed loop, with bank-sim
        /// and engine-sim on loopback.
        #[arg(long, conflicts_with_all = ["engine", "sales", "rate"])]
        channels: bool,
        /// Subscribers enrolled for --channels (one request per account at a time).
        #[arg(long, default_value_t = 256, requires = "channels")]
        subscribers: usize,
        #[command(flatten)]
        pacing: Pacing,
    },
}

#[derive(Subcommand)]
enum Import {
    /// Import (insert or replace) the rows of a CSV file with a header row.
    Import {
        /// The CSV file.
        file: PathBuf,
        /// Config naming the data directory; without it, the embedded default.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum SimReport {
    /// Write the engine's daily report of applied credits and reversals
    /// (`confirmation,min,amount,kind` CSV) for `replenish reconcile engine`.
    Report {
        /// The ledger file.
        #[arg(long)]
        ledger: PathBuf,
        /// The UTC day, YYYY-MM-DD.
        #[arg(long)]
        day: String,
        /// Write to this file instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ReportKind {
    /// Per group and currency: transactions, gross, reversed, net, each party's share.
    Revenue {
        /// The month, YYYY-MM (its closed business days).
        #[arg(long)]
        month: String,
        /// What the rows group by.
        #[arg(long, value_enum, default_value = "carrier")]
        by: backoffice::report::By,
        /// text, csv, json, or html (one self-contained page with SVG charts).
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
        /// Config naming the data directory; without it, the embedded default.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Every transaction of a bank's day with its parts (the audit trail of funds).
    Audit {
        /// The business day, YYYY-MM-DD (closed).
        #[arg(long)]
        day: String,
        /// The bank.
        #[arg(long)]
        bank: String,
        /// text or csv (json also works).
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
        /// Config naming the data directory; without it, the embedded default.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// The fraud log of a business day grouped by account (masked), location, terminal.
    Fraud {
        /// The business day, YYYY-MM-DD.
        #[arg(long)]
        day: String,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// Config naming the logs; without it, the embedded default.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

/// How a report is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Text,
    Csv,
    Json,
    Html,
}

#[derive(Subcommand)]
enum ReconcileSide {
    /// A bank's reconciliation file against the switch's decisions of its links and day:
    /// exit 0 all matched, 1 breaks (each an exception-queue item), 2 a bad file.
    Bank {
        /// The bank (a [[bank]] name, or an acquirer link's name without sections).
        #[arg(long)]
        bank: String,
        #[command(flatten)]
        run: ReconcileRun,
    },
    /// A prepaid engine's daily report (`confirmation,min,amount,kind`, as `engine-sim
    /// report` writes it) against the credits approved for it that day: exit 0, 1, 2
    /// as for a bank.
    Engine {
        /// The engine (an [[engine]] name).
        #[arg(long)]
        engine: String,
        #[command(flatten)]
        run: ReconcileRun,
    },
}

/// What both reconciliations take.
#[derive(Args)]
struct ReconcileRun {
    /// The file (a bank's: CSV by default, see [bank.reconciliation] layout).
    file: PathBuf,
    /// The business day, YYYY-MM-DD (closed).
    #[arg(long)]
    day: String,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Config naming the data directory; without it, the embedded default.
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum UsersAction {
    /// Add a console user; the password is read from standard input.
    Add {
        /// Sign-in name.
        name: String,
        /// admin, supervisor, csr, bank or auditor.
        #[arg(long)]
        role: String,
        /// A csr's carrier (repeat for several).
        #[arg(long = "carrier")]
        carriers: Vec<String>,
        /// A bank user's bank.
        #[arg(long)]
        bank: Option<String>,
        /// Read the password from standard input (the only way: never an argument).
        #[arg(long, required = true)]
        password_stdin: bool,
        /// Config naming the data directory; without it, the embedded default.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// List the users (never their password hashes).
    List {
        /// One JSON array instead of a table.
        #[arg(long)]
        json: bool,
        /// Config naming the data directory; without it, the embedded default.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Disable a user: they cannot sign in, and their sessions end.
    Disable {
        /// The user.
        name: String,
        /// Config naming the data directory; without it, the embedded default.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum PinsAction {
    /// Import a product's PINs from a CSV file (`serial,pin[,expiry]`): checked whole,
    /// sealed, in stock whole or not at all.
    Import {
        /// The CSV file.
        file: PathBuf,
        /// The product's SKU.
        #[arg(long)]
        sku: String,
        /// Config naming the data directory and the products.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Seal every PIN in stock again under a new key (the old key is kept beside it).
    Rekey {
        /// Config naming the data directory and the products.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Each product's stock: available, sold, voided.
    Stock {
        /// One JSON array instead of a table.
        #[arg(long)]
        json: bool,
        /// Config naming the data directory and the products.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ClientsAction {
    /// Add a machine client; prints its bearer token once (only its hash is kept).
    Add {
        /// Its name.
        name: String,
        /// activation or channels.
        #[arg(long)]
        scope: String,
        /// Config naming the data directory; without it, the embedded default.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum DayAction {
    /// Close the open business day now (an early cutover); the next day opens.
    Close {
        /// Who closes it (default: $USER).
        #[arg(long)]
        by: Option<String>,
        /// Config naming the data directory; without it, the embedded default.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// List the business days: open, closed, reconciled or settled.
    List {
        /// One JSON array instead of a table.
        #[arg(long)]
        json: bool,
        /// Config naming the data directory; without it, the embedded default.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ExceptionsAction {
    /// Close a reconciliation break with a note (it needs nothing more).
    Resolve {
        /// The item id (from `exceptions list`).
        id: u64,
        /// Why it needs nothing more.
        #[arg(long)]
        note: String,
        /// Who resolves it (default: $USER).
        #[arg(long)]
        by: Option<String>,
        /// Config naming the data directory; without it, the embedded default.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// List the queue: open items, or every item with --all.
    List {
        /// Also items resubmitted already.
        #[arg(long)]
        all: bool,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
        /// Config naming the data directory; without it, the embedded default.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Credit an item once its account is corrected; journaled with --by and the time.
    Resubmit {
        /// The item id from `exceptions list`.
        id: u64,
        /// Who resubmits (default: $USER).
        #[arg(long)]
        by: Option<String>,
        /// Config naming the data directory; without it, the embedded default.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

/// Fault knobs of the engine simulator.
#[derive(clap::Args)]
struct FaultFlags {
    /// Delay every ack, e.g. 200ms.
    #[arg(long)]
    delay_acks: Option<humantime::Duration>,
    /// Apply but do not acknowledge this percentage of credits.
    #[arg(long, default_value_t = 0)]
    drop_acks: u32,
    /// Answer 96 (applying nothing) to this percentage.
    #[arg(long, default_value_t = 0)]
    fail: u32,
    /// Close each connection after this many messages.
    #[arg(long, default_value_t = 0)]
    close_every: u64,
    /// Close every connection at once.
    #[arg(long)]
    refuse: bool,
}

impl FaultFlags {
    fn apply(&self, faults: &Faults) {
        let delay = self
            .delay_acks
            .map(|d| Duration::from(d).as_millis() as u64)
            .unwrap_or(0);
        faults.delay_ack_ms.store(delay, Ordering::Relaxed);
        faults
            .drop_ack_percent
            .store(self.drop_acks.min(100), Ordering::Relaxed);
        faults
            .fail_percent
            .store(self.fail.min(100), Ordering::Relaxed);
        faults
            .close_every
            .store(self.close_every, Ordering::Relaxed);
        faults.refuse.store(self.refuse, Ordering::Relaxed);
    }
}

/// The acquirer listener a client command talks to.
#[derive(clap::Args)]
struct Listener {
    /// The acquirer listener.
    #[arg(long, default_value = "127.0.0.1:8583")]
    to: SocketAddr,
    /// Spec of the listener.
    #[arg(long, default_value = "iso87ascii")]
    spec: String,
    /// Framing of the listener.
    #[arg(long, default_value = "binary2")]
    framing: LengthHeader,
}

/// How a load is paced and how long it runs.
#[derive(clap::Args)]
struct Pacing {
    /// Client connections.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Requests in flight per connection (closed loop); ignored with --rate.
    #[arg(long, default_value_t = 64)]
    window: usize,
    /// A fixed total rate in requests per second instead of a closed loop.
    #[arg(long)]
    rate: Option<u64>,
    /// How long to send, e.g. 10s or 1m.
    #[arg(long, default_value = "10s")]
    duration: humantime::Duration,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Also write a latency-over-time plot (SVG) to this file.
    #[arg(long)]
    svg: Option<PathBuf>,
}

impl Pacing {
    fn pace(&self) -> Pace {
        match self.rate {
            Some(rate) => Pace::Rate(rate),
            None => Pace::Closed(self.window),
        }
    }
}

/// A failure and the exit code it maps to.
enum Failure {
    /// Bad usage or bad input: exit 2.
    Input(String),
    /// Anything else: exit 1.
    Other(String),
}

impl From<BackofficeError> for Failure {
    fn from(e: BackofficeError) -> Failure {
        match e {
            BackofficeError::Input(message) => Failure::Input(message),
            other => Failure::Other(other.to_string()),
        }
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Failure {
        Failure::Other(e.to_string())
    }
}

fn main() -> ExitCode {
    keep_freed_memory_longer();
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Input(message)) => {
            eprintln!("replenish: {message}");
            ExitCode::from(2)
        }
        Err(Failure::Other(message)) => {
            eprintln!("replenish: {message}");
            ExitCode::from(1)
        }
    }
}

/// The allocator setting the switch runs with, unless the environment sets it.
const PURGE_DELAY: (&str, &str) = ("MIMALLOC_PURGE_DELAY", "10000");

/// mimalloc hands memory that has been free for a second back to the kernel (v3's
/// default), and takes it back zero-filled on the next page fault: under load the
/// index thread's churn made that a stream of page faults and TLB shootdowns (43,000
/// faults in a 10 s bench against 1,400 without purging, and about a tenth fewer
/// approvals a second sustained). mimalloc takes its options from the environment when
/// the process loads (changing one later is an FFI call, and this crate forbids
/// `unsafe`), so the binary starts itself again, the same process (`exec` keeps the
/// PID), with a ten-second delay, unless the variable is already set. Only a binary
/// named `replenish…` does (not one run through the dynamic loader, say, whose
/// arguments it would not know how to pass on); if `exec` fails it carries on with the
/// default.
fn keep_freed_memory_longer() {
    use std::os::unix::process::CommandExt;
    let (name, value) = PURGE_DELAY;
    if std::env::var_os(name).is_some() {
        return;
    }
    let Ok(program) = std::env::current_exe() else {
        return;
    };
    let file = program.file_name().and_then(|n| n.to_str());
    if !file.is_some_and(|n| n.starts_with("replenish")) {
        return;
    }
    let mut args = std::env::args_os();
    let arg0 = args
        .next()
        .unwrap_or_else(|| program.clone().into_os_string());
    // `exec` returns only when it failed.
    let _ = std::process::Command::new(program)
        .arg0(arg0)
        .args(args)
        .env(name, value)
        .exec();
}

fn run(command: Command) -> Result<(), Failure> {
    match command {
        Command::Decode {
            spec,
            pretty,
            hex,
            capture,
            link,
        } => {
            let spec = load_spec(&spec)?;
            if let Some(path) = capture {
                return tool(capture::decode_command(&path, &spec, &link, pretty));
            }
            let listing = if pretty {
                Listing::Pretty
            } else {
                Listing::Json
            };
            match hex {
                Some(text) => {
                    let shown =
                        inspect::decode_hex(&spec, &text, listing).map_err(Failure::Input)?;
                    println!("{shown}");
                    Ok(())
                }
                None => {
                    let (stdin, mut stdout) = (io::stdin().lock(), io::stdout().lock());
                    let failures = inspect::decode_lines(
                        &spec,
                        stdin,
                        listing,
                        &mut stdout,
                        &mut io::stderr(),
                    )?;
                    failed_messages(failures)
                }
            }
        }
        Command::Encode { spec } => {
            let spec = load_spec(&spec)?;
            let mut input = String::new();
            io::stdin()
                .read_to_string(&mut input)
                .map_err(|e| Failure::Input(format!("stdin: {e}")))?;
            let failures = inspect::encode_json_stream(
                &spec,
                &input,
                &mut io::stdout().lock(),
                &mut io::stderr(),
            )?;
            failed_messages(failures)
        }
        Command::Serve { config } => serve(config),
        Command::CheckConfig { file } => {
            let config = load_config(Some(&file))?;
            println!("{}: ok", file.display());
            println!("{config:#?}");
            Ok(())
        }
        Command::Accounts {
            action: Import::Import { file, config },
        } => import(Table::Accounts, file, config),
        Command::Locations {
            action: Import::Import { file, config },
        } => import(Table::Locations, file, config),
        Command::Exceptions { action } => exceptions(action),
        Command::Day { action } => day(action),
        Command::Users { action } => users(action),
        Command::Clients { action } => clients(action),
        Command::Pins { action } => pins(action),
        Command::Reconcile { side } => reconcile(side),
        Command::Report { kind } => report(kind),
        Command::Settle {
            day,
            bank,
            out,
            config,
        } => {
            let config = load_config(config.as_deref())?;
            let written = backoffice::settle::settle(&config, &bank, &day, &out)?;
            print!("{}", backoffice::settle::summary(&written));
            Ok(())
        }
        Command::Lookup {
            confirmation,
            json,
            config,
        } => lookup(&confirmation, json, config.as_deref()),
        Command::Load {
            listener,
            accounts,
            mix,
            pacing,
        } => load(listener, accounts, mix, pacing),
        Command::Bench {
            channels: true,
            subscribers,
            pacing,
            ..
        } => bench_channels(subscribers, &pacing),
        Command::Bench {
            accounts,
            engine,
            sales,
            sales_stock,
            pacing,
            ..
        } => {
            let sales = sales.then_some(bench::SalesPlan { stock: sales_stock });
            bench(accounts, engine, sales, pacing)
        }
        Command::Demo {
            requests,
            data_dir,
            serve,
        } => demo(requests, data_dir, serve),
        Command::Status { metrics } => {
            let status =
                replenish::operate::metrics::fetch_status(metrics).map_err(Failure::Other)?;
            print!("{status}");
            Ok(())
        }
        Command::Send {
            listener,
            json,
            mti,
            pan,
            amount,
            stan,
            fields,
            timeout,
        } => {
            let mut overrides = client::Overrides {
                mti,
                fields: Vec::new(),
            };
            overrides.fields.extend(pan.map(|p| (2, p)));
            overrides
                .fields
                .extend(amount.map(|a| (4, format!("{a:012}"))));
            overrides
                .fields
                .extend(stan.map(|s| (11, format!("{:06}", s % 1_000_000))));
            overrides.fields.extend(fields);
            send(&listener, json, &overrides, timeout)
        }
        Command::EngineSim {
            report: Some(SimReport::Report { ledger, day, out }),
            ..
        } => {
            let text = simulator::Ledger::report(&ledger, &day)
                .map_err(|e| Failure::Input(e.to_string()))?;
            match out {
                Some(path) => replenish::durable::datadir::write_durably(&path, text.as_bytes())
                    .map_err(|e| Failure::Other(format!("{}: {e}", path.display())))?,
                None => print!("{text}"),
            }
            Ok(())
        }
        Command::EngineSim {
            report: None,
            ledger: None,
            ..
        } => Err(Failure::Input(
            "engine-sim: --ledger FILE is required".into(),
        )),
        Command::EngineSim {
            report: None,
            listen,
            ledger: Some(ledger),
            spec,
            framing,
            fsync,
            faults,
        } => engine_sim(listen, ledger, spec, framing, fsync, &faults),
        Command::Capture { action } => tool(capture::command(&action)),
        Command::Replay(args) => tool(replay::command(&args)),
        Command::BankSim(args) => tool(replenish::tools::banksim::command(&args)),
    }
}

/// The exit code of a tooling command's failure.
fn tool(result: Result<(), capture::CommandError>) -> Result<(), Failure> {
    result.map_err(|e| match e {
        capture::CommandError::Input(message) => Failure::Input(message),
        capture::CommandError::Other(message) => Failure::Other(message),
    })
}

fn serve(config: Option<PathBuf>) -> Result<(), Failure> {
    let config = load_config(config.as_deref())?;
    logging::init(config.log_level());
    runtime()?
        .block_on(async {
            let shutdown = CancellationToken::new();
            tokio::spawn(logging::cancel_on_signal(shutdown.clone()));
            server::run(config, shutdown).await
        })
        .map_err(|e| match e {
            server::ServeError::OperatorToken(message) => Failure::Input(message),
            other => Failure::Other(other.to_string()),
        })
}

fn import(table: Table, file: PathBuf, config: Option<PathBuf>) -> Result<(), Failure> {
    let config = load_config(config.as_deref())?;
    match admin::import(&config, table, &file) {
        Ok(count) => {
            println!(
                "{}: {count} row(s) imported into {}",
                file.display(),
                config.data_dir.display()
            );
            Ok(())
        }
        Err(e @ (ImportError::Rows { .. } | ImportError::Read { .. })) => {
            Err(Failure::Input(e.to_string()))
        }
        Err(e) => Err(Failure::Other(e.to_string())),
    }
}

fn users(action: UsersAction) -> Result<(), Failure> {
    use replenish::console::users;
    match action {
        UsersAction::Add {
            name,
            role,
            carriers,
            bank,
            password_stdin: _,
            config,
        } => {
            let config = load_config(config.as_deref())?;
            let role = Role::parse(&role).ok_or_else(|| {
                Failure::Input(format!(
                    "--role {role}: one of admin, supervisor, csr, bank, auditor"
                ))
            })?;
            let mut password = String::new();
            io::stdin().read_line(&mut password)?;
            let password = password.trim_end_matches(['\r', '\n']).to_owned();
            let new = users::NewUser {
                name,
                role,
                carriers,
                bank,
                password,
            };
            let added = users::add_user(&config, new, &cli_user())?;
            println!("user {} added ({})", added.name, added.role.as_str());
        }
        UsersAction::List { json, config } => {
            let config = load_config(config.as_deref())?;
            let listed = users::list_users(&config)?;
            if json {
                println!("{}", to_json(&listed)?);
            } else {
                for user in listed {
                    let scope = match (&user.bank, user.carriers.is_empty()) {
                        (Some(bank), _) => format!("bank {bank}"),
                        (None, false) => format!("carriers {}", user.carriers.join(",")),
                        (None, true) => "everything".to_owned(),
                    };
                    let state = if user.disabled { "disabled" } else { "enabled" };
                    println!(
                        "{:<20} {:<11} {:<9} {scope}",
                        user.name,
                        user.role.as_str(),
                        state
                    );
                }
            }
        }
        UsersAction::Disable { name, config } => {
            let config = load_config(config.as_deref())?;
            users::disable_user(&config, &name, &cli_user())?;
            println!("user {name} disabled");
        }
    }
    Ok(())
}

fn pins(action: PinsAction) -> Result<(), Failure> {
    use replenish::pins::{self, PinsError};
    let failed = |e: PinsError| match e {
        PinsError::Input(message) => Failure::Input(message),
        other => Failure::Other(other.to_string()),
    };
    match action {
        PinsAction::Import { file, sku, config } => {
            let config = load_config(config.as_deref())?;
            let imported = replenish::backoffice::stock::import(&config, &file, &sku, &cli_user())?;
            println!(
                "{}: {} PIN(s) of {sku} in stock",
                file.display(),
                imported.count
            );
        }
        PinsAction::Rekey { config } => {
            let config = load_config(config.as_deref())?;
            let (id, count) = pins::rekey(&config).map_err(failed)?;
            println!(
                "PIN key {id} is current; {count} PIN(s) in stock sealed again under it (the \
                 old key stays beside it for the PINs sold under it)"
            );
        }
        PinsAction::Stock { json, config } => {
            let config = load_config(config.as_deref())?;
            let stock = replenish::backoffice::stock::stock(&config)?;
            if json {
                println!("{}", to_json(&stock)?);
            } else {
                println!(
                    "{:<20} {:>10} {:>10} {:>10}",
                    "SKU", "AVAILABLE", "SOLD", "VOIDED"
                );
                for line in stock {
                    println!(
                        "{:<20} {:>10} {:>10} {:>10}",
                        line.sku, line.available, line.sold, line.voided
                    );
                }
            }
        }
    }
    Ok(())
}

fn clients(action: ClientsAction) -> Result<(), Failure> {
    use replenish::console::users;
    use replenish::vocab::people::ClientScope;
    let ClientsAction::Add {
        name,
        scope,
        config,
    } = action;
    let config = load_config(config.as_deref())?;
    let scope = match scope.as_str() {
        "activation" => ClientScope::Activation,
        "channels" => ClientScope::Channels,
        other => {
            return Err(Failure::Input(format!(
                "--scope {other}: activation or channels"
            )));
        }
    };
    let made = users::add_client(&config, users::NewClient { name, scope }, &cli_user())?;
    println!(
        "client {} added; its token (shown once, kept only as a hash):",
        made.name
    );
    println!("{}", made.token);
    Ok(())
}

fn day(action: DayAction) -> Result<(), Failure> {
    match action {
        DayAction::Close { by, config } => {
            let config = load_config(config.as_deref())?;
            let closed = backoffice::days::close(&config, &operator_name(by)?)?;
            println!(
                "closed business day {}; open: {}",
                closed.closed, closed.open
            );
        }
        DayAction::List { json, config } => {
            let config = load_config(config.as_deref())?;
            let days = backoffice::days::list(&config)?;
            if json {
                println!("{}", to_json(&days)?);
            } else {
                print!("{}", backoffice::days::table(&days));
            }
        }
    }
    Ok(())
}

fn reconcile(side: ReconcileSide) -> Result<(), Failure> {
    use backoffice::reconcile::{self, Party};
    let (party, run, classes) = match &side {
        ReconcileSide::Bank { bank, run } => {
            (Party::Bank(bank), run, &reconcile::bank::CLASSES[..])
        }
        ReconcileSide::Engine { engine, run } => {
            (Party::Engine(engine), run, &reconcile::engine::CLASSES[..])
        }
    };
    let ReconcileRun {
        file,
        day,
        json,
        config,
    } = run;
    let config = load_config(config.as_deref())?;
    let report = reconcile::reconcile_file(&config, file, party, day)?;
    println!("{}", report.summary(classes));
    if let Some(out) = json {
        let text =
            serde_json::to_string_pretty(&report).map_err(|e| Failure::Other(e.to_string()))?;
        replenish::durable::datadir::write_durably(out, (text + "\n").as_bytes())
            .map_err(|e| Failure::Other(format!("{}: {e}", out.display())))?;
    }
    if report.has_breaks() {
        return Err(Failure::Other(format!(
            "{} break(s): replenish exceptions list",
            report.breaks.len()
        )));
    }
    Ok(())
}

fn report(kind: ReportKind) -> Result<(), Failure> {
    use backoffice::report;
    let text = match kind {
        ReportKind::Revenue {
            month,
            by,
            format,
            config,
        } => {
            let config = load_config(config.as_deref())?;
            let revenue = report::revenue_of(&config, &month, by)?;
            match format {
                Format::Text => report::revenue_text(&revenue),
                Format::Csv => report::revenue_csv(&revenue),
                Format::Json => to_json(&revenue)? + "\n",
                Format::Html => report::revenue_html(&revenue),
            }
        }
        ReportKind::Audit {
            day,
            bank,
            format,
            config,
        } => {
            let config = load_config(config.as_deref())?;
            let lines = report::audit_of(&config, &bank, &day)?;
            match format {
                Format::Csv | Format::Text | Format::Html => report::audit_csv(&lines),
                Format::Json => to_json(&lines)? + "\n",
            }
        }
        ReportKind::Fraud { day, json, config } => {
            let config = load_config(config.as_deref())?;
            let fraud = report::fraud(&config, &day)?;
            match json {
                true => to_json(&fraud)? + "\n",
                false => report::fraud_text(&fraud),
            }
        }
    };
    // A reader that stops early (`| head`) is not a failure.
    match std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// The operator named by `--by`, else `$USER`.
fn operator_name(by: Option<String>) -> Result<String, Failure> {
    by.or_else(|| std::env::var("USER").ok())
        .filter(|b| !b.trim().is_empty())
        .ok_or_else(|| Failure::Input("--by NAME is required ($USER is not set)".into()))
}

/// Who runs a command, for the audit trail: $USER, else `cli`.
fn cli_user() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .map_or_else(|| "cli".to_owned(), |u| format!("cli:{u}"))
}

fn to_json(value: &impl serde::Serialize) -> Result<String, Failure> {
    serde_json::to_string(value).map_err(|e| Failure::Other(e.to_string()))
}

fn exceptions(action: ExceptionsAction) -> Result<(), Failure> {
    match action {
        ExceptionsAction::List { all, json, config } => {
            let config = load_config(config.as_deref())?;
            let items = queue::list(&config).map_err(|e| Failure::Other(e.to_string()))?;
            let shown: Vec<_> = items.into_iter().filter(|i| all || i.is_open()).collect();
            if json {
                for item in &shown {
                    let line =
                        serde_json::to_string(item).map_err(|e| Failure::Other(e.to_string()))?;
                    println!("{line}");
                }
            } else {
                print!("{}", queue::table(&shown));
            }
            Ok(())
        }
        ExceptionsAction::Resolve {
            id,
            note,
            by,
            config,
        } => {
            if note.trim().is_empty() {
                return Err(Failure::Input(
                    "--note: say why the break needs nothing more".into(),
                ));
            }
            let config = load_config(config.as_deref())?;
            let by = operator_name(by)?;
            queue::resolve(&config, id, &note, &by).map_err(|e| Failure::Other(e.to_string()))?;
            println!("item {id} resolved by {by}");
            Ok(())
        }
        ExceptionsAction::Resubmit { id, by, config } => {
            let config = load_config(config.as_deref())?;
            let by = operator_name(by)?;
            let confirmation =
                queue::resubmit(&config, id, &by).map_err(|e| Failure::Other(e.to_string()))?;
            println!("item {id} resubmitted by {by}: credited as confirmation {confirmation}");
            Ok(())
        }
    }
}

/// Prints what became of the approval numbered `confirmation`; exit code 1 when there
/// is none (2 when the number is not a confirmation number at all).
fn lookup(confirmation: &str, json: bool, config: Option<&Path>) -> Result<(), Failure> {
    if confirmation.len() != 12 || !confirmation.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Failure::Input(format!(
            "{confirmation:?} is not a confirmation number (12 digits)"
        )));
    }
    let config = load_config(config)?;
    let found = replenish::operate::lookup::lookup(&config, confirmation)
        .map_err(|e| Failure::Other(e.to_string()))?
        .ok_or_else(|| {
            Failure::Other(format!(
                "no approval with confirmation number {confirmation}"
            ))
        })?;
    if json {
        let line = serde_json::to_string(&found).map_err(|e| Failure::Other(e.to_string()))?;
        println!("{line}");
    } else {
        print!("{found}");
    }
    Ok(())
}

fn load(
    listener: Listener,
    accounts: Option<PathBuf>,
    mix: load::Mix,
    pacing: Pacing,
) -> Result<(), Failure> {
    let spec = load_spec(&listener.spec)?;
    let template = bench::reference_request(&spec).map_err(|e| Failure::Other(e.to_string()))?;
    let accounts = match accounts {
        Some(path) => active_accounts(&path)?,
        None => Vec::new(),
    };
    let plan = LoadPlan {
        target: listener.to,
        spec: Arc::new(spec),
        codec: FrameCodec::new(listener.framing),
        connections: pacing.connections,
        pace: pacing.pace(),
        duration: pacing.duration.into(),
        template,
        accounts,
        mix,
    };
    let report = runtime()?
        .block_on(load::run(plan))
        .map_err(|e| Failure::Other(e.to_string()))?;
    report_load(&report, &pacing)
}

fn bench(
    accounts: usize,
    engine: bool,
    sales: Option<bench::SalesPlan>,
    mut pacing: Pacing,
) -> Result<(), Failure> {
    logging::init("warn");
    let plan = BenchPlan {
        connections: pacing.connections,
        pace: pacing.pace(),
        duration: pacing.duration.into(),
        accounts,
        data_dir: None,
        engine,
        sales,
    };
    let report = runtime()?
        .block_on(bench::run(plan))
        .map_err(|e| Failure::Other(e.to_string()))?;
    // The bench's JSON is the load's with the sales phase added: written here.
    let json = pacing.json.take();
    report_load(&report.load, &pacing)?;
    print!("{}", report.after_load());
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(&report.to_json())
            .map_err(|e| Failure::Other(e.to_string()))?;
        std::fs::write(&path, text + "\n")
            .map_err(|e| Failure::Other(format!("{}: {e}", path.display())))?;
    }
    report.failure().map_or(Ok(()), |e| Err(Failure::Other(e)))
}

fn bench_channels(subscribers: usize, pacing: &Pacing) -> Result<(), Failure> {
    use replenish::tools::bench_channels::{self, ChannelBenchPlan};
    logging::init("warn");
    let plan = ChannelBenchPlan {
        clients: pacing.connections,
        duration: pacing.duration.into(),
        subscribers,
    };
    let report = runtime()?
        .block_on(bench_channels::run(plan))
        .map_err(Failure::Other)?;
    println!("{report}");
    report.failure().map_or(Ok(()), |e| Err(Failure::Other(e)))
}

fn demo(requests: usize, data_dir: Option<PathBuf>, serve: bool) -> Result<(), Failure> {
    use replenish::tools::demo;
    logging::init("warn");
    let runtime = runtime()?;
    let summary = runtime
        .block_on(demo::run(requests, data_dir))
        .map_err(|e| Failure::Other(e.to_string()))?;
    println!("{summary}");
    if summary.credited_twice > 0 || summary.credited < summary.approved.len() {
        return Err(Failure::Other(
            "the engine ledger does not match the approvals".into(),
        ));
    }
    if serve {
        println!(
            "serving the demo's data: console on http://{}/ until Ctrl-C",
            summary.config.console.listen
        );
        runtime
            .block_on(demo::serve(&summary))
            .map_err(|e| Failure::Other(e.to_string()))?;
    }
    Ok(())
}

fn send(
    listener: &Listener,
    json: Option<PathBuf>,
    overrides: &client::Overrides,
    timeout: u64,
) -> Result<(), Failure> {
    let spec = load_spec(&listener.spec)?;
    let template = match json {
        None => bench::reference_request(&spec).map_err(|e| Failure::Other(e.to_string()))?,
        Some(path) => {
            let text = if path.as_os_str() == "-" {
                let mut text = String::new();
                io::stdin().read_to_string(&mut text).map(|_| text)
            } else {
                std::fs::read_to_string(&path)
            }
            .map_err(|e| Failure::Input(format!("{}: {e}", path.display())))?;
            replenish::wire::iso8583::from_json_str(&spec, &text)
                .map_err(|e| Failure::Input(format!("{}: {e}", path.display())))?
        }
    };
    let request = client::build(&template, overrides).map_err(|e| Failure::Input(e.to_string()))?;
    let wait = Duration::from_secs(timeout);
    let answer = runtime()?
        .block_on(client::exchange(
            listener.to,
            &spec,
            FrameCodec::new(listener.framing),
            &request,
            wait,
        ))
        .map_err(|e| match e {
            client::ClientError::Message(m) => Failure::Input(m),
            other => Failure::Other(other.to_string()),
        })?;
    println!("{}", replenish::wire::iso8583::pretty(&spec, &answer));
    Ok(())
}

fn engine_sim(
    listen: Vec<SocketAddr>,
    ledger: PathBuf,
    spec: String,
    framing: LengthHeader,
    sync: bool,
    flags: &FaultFlags,
) -> Result<(), Failure> {
    logging::init("info");
    let config = SimConfig {
        listen,
        ledger,
        spec: Arc::new(load_spec(&spec)?),
        codec: FrameCodec::new(framing),
        sync,
    };
    runtime()?.block_on(async {
        let shutdown = CancellationToken::new();
        let simulator = simulator::start(config, shutdown.clone())
            .await
            .map_err(|e| match e {
                SimError::Ledger { .. } => Failure::Input(e.to_string()),
                other => Failure::Other(other.to_string()),
            })?;
        for (_, faults) in &simulator.listeners {
            flags.apply(faults);
        }
        logging::cancel_on_signal(shutdown).await;
        Ok(())
    })
}

fn active_accounts(path: &Path) -> Result<Vec<String>, Failure> {
    let file = std::fs::File::open(path)
        .map_err(|e| Failure::Input(format!("{}: {e}", path.display())))?;
    let accounts = parse_accounts(file).map_err(|rows| {
        let lines: Vec<String> = rows
            .iter()
            .map(|r| format!("{}:{}: {}", path.display(), r.line, r.reason))
            .collect();
        Failure::Input(lines.join("\n"))
    })?;
    Ok(accounts
        .into_iter()
        .filter(|a| a.status == AccountStatus::Active)
        .map(|a| a.number)
        .collect())
}

fn report_load(report: &LoadReport, pacing: &Pacing) -> Result<(), Failure> {
    println!("{report}");
    if let Some(path) = &pacing.svg {
        load::write_svg(report, path, "replenish load: latency over time")
            .map_err(|e| Failure::Other(format!("{}: {e}", path.display())))?;
    }
    if let Some(path) = pacing.json.as_deref() {
        let text = serde_json::to_string_pretty(&report.to_json())
            .map_err(|e| Failure::Other(e.to_string()))?;
        std::fs::write(path, text + "\n")
            .map_err(|e| Failure::Other(format!("{}: {e}", path.display())))?;
    }
    Ok(())
}

fn load_config(path: Option<&Path>) -> Result<Config, Failure> {
    match path {
        Some(path) => Config::load(path).map_err(|e| Failure::Input(e.to_string())),
        None => Ok(Config::embedded_default()),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Runtime::new().map_err(|e| Failure::Other(format!("tokio runtime: {e}")))
}

fn load_spec(name: &str) -> Result<Spec, Failure> {
    Spec::resolve(name).map_err(|e| Failure::Input(e.to_string()))
}

fn failed_messages(count: usize) -> Result<(), Failure> {
    match count {
        0 => Ok(()),
        n => Err(Failure::Input(format!(
            "{n} message(s) could not be converted"
        ))),
    }
}
