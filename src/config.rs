//! The TOML configuration of `replenish serve`: acquirer listeners, prepaid engines,
//! limits, log files and the switch's own settings. Every key has a default written
//! next to its field, unknown keys are refused, and [`Config::validate`] checks what a
//! type cannot (unique names and ports, resolvable specs, readable TLS files, sane
//! limits) so that `replenish check-config FILE` finds every mistake before a start.
//! Without a file the switch runs [`Config::embedded_default`], the text of
//! `fixtures/configs/default.toml`.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::vocab::calendar::Calendar;
use crate::vocab::fees::Schedule;
use crate::vocab::products::{PinsConfig, Product};

use crate::wire::framing::LengthHeader;
use crate::wire::iso8583::Spec;

pub mod channels;

/// The text of the embedded default config.
pub const EMBEDDED_DEFAULT: &str = include_str!("../fixtures/configs/default.toml");

/// A config that could not be read or is not valid; names the file, the line when the
/// TOML parser knows it, and the key at fault.
#[derive(Debug, thiserror::Error)]
#[error("{origin}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct ConfigError {
    /// The file (or `embedded default`).
    pub origin: String,
    /// The 1-based line, when known.
    pub line: Option<usize>,
    /// What is wrong, naming the key.
    pub message: String,
}

/// The whole config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Journal, indexes, exception logs and the confirmation key. Default `./data`.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Acquirer listeners (`[[acquirer]]`), at least one.
    #[serde(default)]
    pub acquirer: Vec<AcquirerConfig>,
    /// Prepaid engines (`[[engine]]`), chosen by the account's carrier.
    #[serde(default)]
    pub engine: Vec<EngineConfig>,
    /// Validation limits (`[limits]`).
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Log files and level (`[logs]`).
    #[serde(default)]
    pub logs: LogsConfig,
    /// The metrics endpoint (`[metrics]`).
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// The switch's own behaviour (`[switch]`).
    #[serde(default)]
    pub switch: SwitchConfig,
    /// Business days (`[settlement]`).
    #[serde(default)]
    pub settlement: SettlementConfig,
    /// Banks (`[[bank]]`): each a set of acquirer links. Default: one bank per link,
    /// named like it.
    #[serde(default)]
    pub bank: Vec<BankConfig>,
    /// Notifications for people (`[notify]`). Default: none sent.
    #[serde(default)]
    pub notify: NotifyConfig,
    /// The fee schedule (`[fees]`, BACKOFFICE.md §3). Default: no fees, the carrier
    /// gets every amount.
    #[serde(default)]
    pub fees: Schedule,
    /// Where each party's money goes (`[[payee]]`).
    #[serde(default)]
    pub payee: Vec<PayeeConfig>,
    /// The operators' console (`[console]`, BACKOFFICE.md §4). Default: on
    /// `127.0.0.1:8080`.
    #[serde(default)]
    pub console: ConsoleConfig,
    /// Products sold as PINs at the point of sale (`[[product]]`, BACKOFFICE.md §5).
    #[serde(default)]
    pub product: Vec<Product>,
    /// PIN settings (`[pins]`).
    #[serde(default)]
    pub pins: PinsConfig,
    /// The self-service channel API (`[channels]`, BACKOFFICE.md §6); none when absent.
    #[serde(default)]
    pub channels: Option<channels::ChannelsConfig>,
    /// The banks the switch debits for the channels (`[[debit_bank]]`).
    #[serde(default)]
    pub debit_bank: Vec<channels::DebitBankConfig>,
    /// Dialed feature codes and their amounts (`[[feature_code]]`).
    #[serde(default)]
    pub feature_code: Vec<channels::FeatureCode>,
    /// IVR numbers and their amounts (`[[ivr_number]]`).
    #[serde(default)]
    pub ivr_number: Vec<channels::IvrNumber>,
}

/// The operators' console (`[console]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    /// `false` serves no console. Default `true`.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Address of the pages and the `/api/v1` routes. Default `127.0.0.1:8080`.
    #[serde(default = "default_console_listen")]
    pub listen: SocketAddr,
    /// HTTPS (and `Secure` cookies); plain HTTP when absent.
    #[serde(default)]
    pub tls: Option<ConsoleTls>,
    /// A session unused for this long ends. Default `15m`.
    #[serde(default = "default_console_idle", with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// A session ends this long after sign-in, used or not. Default `8h`.
    #[serde(default = "default_console_absolute", with = "humantime_serde")]
    pub absolute_timeout: Duration,
    /// After 5 failed sign-ins in a row a user is refused (`429`) for this long, even
    /// with the right password. Default `15m`.
    #[serde(default = "default_console_lockout", with = "humantime_serde")]
    pub lockout: Duration,
}

impl Default for ConsoleConfig {
    fn default() -> ConsoleConfig {
        ConsoleConfig {
            enabled: true,
            listen: default_console_listen(),
            tls: None,
            idle_timeout: default_console_idle(),
            absolute_timeout: default_console_absolute(),
            lockout: default_console_lockout(),
        }
    }
}

/// The console's certificate; with `client_ca`, operators' browsers must present a
/// certificate issued by it too.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleTls {
    /// The certificate chain (PEM, leaf first).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// A CA (PEM) whose client certificates are required. Default: none asked for.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
}

fn default_true() -> bool {
    true
}

fn default_console_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

fn default_console_idle() -> Duration {
    Duration::from_secs(15 * 60)
}

fn default_console_absolute() -> Duration {
    Duration::from_secs(8 * 3600)
}

fn default_console_lockout() -> Duration {
    Duration::from_secs(15 * 60)
}

/// A party's account for settlement (`[[payee]]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PayeeConfig {
    /// `provider`, `carrier:NAME`, `retailer:NAME` or `bank:NAME`. Required, unique.
    pub party: String,
    /// The account holder's name. Required.
    pub name: String,
    /// An IBAN or any account id. Required.
    pub account: String,
    /// The BIC of the account's bank, when known.
    #[serde(default)]
    pub bic: Option<String>,
}

/// An account money is paid from (`[[bank]] settlement_account`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettlementAccount {
    /// The account holder's name. Required.
    pub name: String,
    /// An IBAN or any account id. Required.
    pub account: String,
    /// The BIC of the account's bank, when known.
    #[serde(default)]
    pub bic: Option<String>,
}

/// Notifications (`[notify]`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// Email over SMTP (`[notify.email]`): the reconciliation exception reports.
    #[serde(default)]
    pub email: Option<EmailConfig>,
    /// SMS over SMPP 3.4 (`[notify.sms]`): the channels' receipts to the MIN.
    #[serde(default)]
    pub sms: Option<channels::SmsConfig>,
}

/// Email over SMTP (`[notify.email]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// The SMTP server, `host:port`. Required.
    pub smtp: String,
    /// The sender address. Required.
    pub from: String,
    /// The recipients, at least one. Required.
    pub to: Vec<String>,
    /// Upgrade the connection with STARTTLS (required, not opportunistic). Default false.
    #[serde(default)]
    pub starttls: bool,
    /// A PEM file of the CA that issued the server's certificate, when it is not a
    /// public one. Default: the public web roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The SMTP user, when the server wants authentication.
    #[serde(default)]
    pub username: Option<String>,
    /// A file holding that user's password (trimmed); required with `username`.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}

impl EmailConfig {
    fn validate(&self) -> Result<(), String> {
        let (host, port) = (self.smtp.rsplit_once(':')).ok_or("smtp: host:port")?;
        if host.is_empty() || port.parse::<u16>().is_err() {
            return Err(format!("smtp: {:?} is not host:port", self.smtp));
        }
        for address in std::iter::once(&self.from).chain(&self.to) {
            if !address.contains('@') {
                return Err(format!("{address:?} is not an email address"));
            }
        }
        if self.to.is_empty() {
            return Err("to: at least one recipient".into());
        }
        if self.username.is_some() != self.password_file.is_some() {
            return Err("username and password_file go together".into());
        }
        Ok(())
    }

    /// The SMTP server's host and port.
    pub fn server(&self) -> (String, u16) {
        match self.smtp.rsplit_once(':') {
            Some((host, port)) => (host.to_owned(), port.parse().unwrap_or(25)),
            None => (self.smtp.clone(), 25),
        }
    }
}

/// Business days (`[settlement]`, BACKOFFICE.md §1).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettlementConfig {
    /// Local time at which a business day ends, `HH:MM`. Default `00:00`.
    #[serde(default = "default_cutover")]
    pub cutover: String,
    /// IANA name of the zone the cutover is read in. Default `UTC`.
    #[serde(default = "default_timezone")]
    pub timezone: String,
}

impl Default for SettlementConfig {
    fn default() -> Self {
        SettlementConfig {
            cutover: default_cutover(),
            timezone: default_timezone(),
        }
    }
}

impl SettlementConfig {
    /// The business-day calendar (a config that passed [`Config::validate`] has a
    /// valid one; otherwise midnight UTC).
    pub fn calendar(&self) -> Calendar {
        Calendar::parse(&self.cutover, &self.timezone).unwrap_or_default()
    }
}

fn default_cutover() -> String {
    "00:00".into()
}
fn default_timezone() -> String {
    "UTC".into()
}

/// A bank (`[[bank]]`, BACKOFFICE.md §2): the acquirer links its traffic comes on.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BankConfig {
    /// Its name in commands and reports; unique. Required.
    pub name: String,
    /// Names of its `[[acquirer]]` links; each link belongs to one bank. Required.
    pub acquirers: Vec<String>,
    /// How its reconciliation file is laid out (`[bank.reconciliation]`). Default: the
    /// CSV of BACKOFFICE.md §2.
    #[serde(default)]
    pub reconciliation: Option<BankReconciliation>,
    /// The account the day's money is disbursed from (`settle`). Default: none (a bank
    /// without one cannot be settled).
    #[serde(default)]
    pub settlement_account: Option<SettlementAccount>,
}

/// The layout of a bank's reconciliation file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BankReconciliation {
    /// A layout file (TOML): CSV column names, or fixed-width fields. Relative paths
    /// are read from the working directory.
    pub layout: PathBuf,
}

/// A bank as the back office sees it: its name and its links.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bank {
    /// Its name.
    pub name: String,
    /// Its acquirer links (config names).
    pub links: Vec<String>,
    /// Its file layout, when not the default CSV.
    pub layout: Option<PathBuf>,
}

/// One acquirer listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcquirerConfig {
    /// Name in logs and metrics; unique. Required.
    pub name: String,
    /// Address to listen on, e.g. `127.0.0.1:8583`. Required.
    pub listen: SocketAddr,
    /// Length prefix: `binary2` (default), `binary2le`, `ascii4`, `bcd2`.
    #[serde(default)]
    pub framing: LengthHeader,
    /// Fixed header bytes (a TPDU) between the length prefix and the MTI. Default 0.
    #[serde(default)]
    pub header_len: usize,
    /// Largest accepted frame in bytes. Default 8192.
    #[serde(default = "default_max_frame")]
    pub max_frame: usize,
    /// Built-in spec name or path to a spec `.toml`. Default `iso87ascii`.
    #[serde(default = "default_spec")]
    pub spec: String,
    /// Acquirer id used in transaction keys when DE32 is absent. Default: the name.
    #[serde(default)]
    pub acquirer_id: String,
    /// A connection with no traffic for this long is closed. Default `300s`.
    #[serde(default = "default_idle", with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Requests of one connection being decided at once. Default 256.
    #[serde(default = "default_in_flight")]
    pub max_in_flight: usize,
    /// Mutual TLS; plain TCP when absent.
    #[serde(default)]
    pub tls: Option<ServerTls>,
}

/// TLS of an acquirer listener: every client must present a certificate issued by
/// `client_ca`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTls {
    /// The server's certificate chain (PEM, leaf first).
    pub cert: PathBuf,
    /// The server's private key (PEM).
    pub key: PathBuf,
    /// The CA (PEM) that issued the clients' certificates.
    pub client_ca: PathBuf,
}

/// One prepaid engine, reached over redundant links.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineConfig {
    /// Name in logs, metrics and outbox entries; unique. Required.
    pub name: String,
    /// Carriers it serves; `*` serves every carrier no other engine names. Required.
    pub carriers: Vec<String>,
    /// One or two link addresses (primary first). Required.
    pub links: Vec<SocketAddr>,
    /// Length prefix. Default `binary2`.
    #[serde(default)]
    pub framing: LengthHeader,
    /// Built-in spec name or path. Default `iso87ascii`.
    #[serde(default = "default_spec")]
    pub spec: String,
    /// Time to wait for an ack before retransmitting. Default `5s`.
    #[serde(default = "default_ack_timeout", with = "humantime_serde")]
    pub ack_timeout: Duration,
    /// Echo test interval on an idle link. Default `30s`.
    #[serde(default = "default_echo", with = "humantime_serde")]
    pub echo_interval: Duration,
    /// Reconnect and retry backoff.
    #[serde(default)]
    pub retry_backoff: BackoffConfig,
    /// TLS towards the engine; plain TCP when absent.
    #[serde(default)]
    pub tls: Option<ClientTls>,
}

/// Exponential backoff with jitter.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackoffConfig {
    /// First delay. Default `200ms`.
    #[serde(default = "default_backoff_initial", with = "humantime_serde")]
    pub initial: Duration,
    /// Largest delay. Default `30s`.
    #[serde(default = "default_backoff_max", with = "humantime_serde")]
    pub max: Duration,
    /// Growth per attempt, at least 1.0. Default 2.0.
    #[serde(default = "default_multiplier")]
    pub multiplier: f64,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig {
            initial: default_backoff_initial(),
            max: default_backoff_max(),
            multiplier: default_multiplier(),
        }
    }
}

/// TLS of an engine link.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientTls {
    /// The CA (PEM) that issued the engine's certificate.
    pub ca: PathBuf,
    /// Our client certificate (PEM), when the engine asks for one.
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// Its private key (PEM).
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// The name the engine's certificate must carry. Default `localhost`.
    #[serde(default = "default_server_name")]
    pub server_name: String,
}

/// Validation limits (the seed's step 303). Amounts are minor units of the currency.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Smallest amount. Default 100.
    #[serde(default = "default_min_amount")]
    pub min_amount: u64,
    /// Largest amount. Default 50000.
    #[serde(default = "default_max_amount")]
    pub max_amount: u64,
    /// Approved replenishments per account per UTC day. Default 10.
    #[serde(default = "default_daily_count")]
    pub daily_count: u32,
    /// Approved amount per account per UTC day. Default 100000.
    #[serde(default = "default_daily_amount")]
    pub daily_amount: u64,
    /// Accepted DE49 currency codes. Default `["840"]`.
    #[serde(default = "default_currencies")]
    pub currencies: Vec<String>,
    /// Accepted first two digits of DE3. Default `["28", "21", "40"]`.
    #[serde(default = "default_processing_codes")]
    pub processing_codes: Vec<String>,
    /// Accepted account number ranges; empty (the default) accepts every account.
    #[serde(default)]
    pub account_ranges: Vec<AccountRange>,
    /// Authorized locations are DE42 + DE41 rather than DE42 alone. Default false.
    #[serde(default)]
    pub check_terminal: bool,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            min_amount: default_min_amount(),
            max_amount: default_max_amount(),
            daily_count: default_daily_count(),
            daily_amount: default_daily_amount(),
            currencies: default_currencies(),
            processing_codes: default_processing_codes(),
            account_ranges: Vec::new(),
            check_terminal: false,
        }
    }
}

/// An inclusive range of account numbers of one length.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountRange {
    /// First account number.
    pub from: String,
    /// Last account number, same length as `from`.
    pub to: String,
}

/// Log files and level.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogsConfig {
    /// Exception log (JSON lines). Default `<data_dir>/exceptions.jsonl`.
    #[serde(default)]
    pub exceptions: Option<PathBuf>,
    /// Fraud log (JSON lines). Default `<data_dir>/fraud.jsonl`.
    #[serde(default)]
    pub fraud: Option<PathBuf>,
    /// `error`, `warn`, `info` (default), `debug` or `trace`; `RUST_LOG` overrides.
    #[serde(default)]
    pub level: Option<String>,
}

/// The metrics endpoint.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address of the Prometheus endpoint; none (the default) serves no metrics.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// A file holding the operators' token (at least 16 characters; surrounding
    /// whitespace ignored). When set, the exception queue and the lookups on the
    /// endpoint answer only requests with `Authorization: Bearer TOKEN`, and the
    /// command line sends it from this file; `/metrics` and `/status` stay open to
    /// scrapers. None (the default): whoever reaches `listen` may use them.
    #[serde(default)]
    pub operator_token_file: Option<PathBuf>,
}

/// Shortest operator token accepted.
const MIN_TOKEN_LEN: usize = 16;

impl MetricsConfig {
    /// The operators' token, read from its file (`None` when none is configured).
    pub fn operator_token(&self) -> Result<Option<String>, String> {
        let Some(path) = &self.operator_token_file else {
            return Ok(None);
        };
        let at = || format!("metrics.operator_token_file {}", path.display());
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", at()))?;
        let token = text.trim();
        if token.len() < MIN_TOKEN_LEN {
            return Err(format!(
                "{}: the token is shorter than {MIN_TOKEN_LEN} characters",
                at()
            ));
        }
        Ok(Some(token.to_owned()))
    }
}

/// What the switch does with a reversal whose original it never saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OrphanReversal {
    /// Answer `00` and change nothing (the default).
    #[default]
    Approve,
    /// Answer `25`.
    Decline,
}

/// The switch's own settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwitchConfig {
    /// Reversal without an original: `approve` (default) or `decline`.
    #[serde(default)]
    pub reversal_without_original: OrphanReversal,
    /// On SIGTERM, time allowed to answer what is in flight. Default `10s`.
    #[serde(default = "default_grace", with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// How long a `0100` approval holds its amount while waiting for its completion
    /// advice. Default `30m`.
    #[serde(default = "default_hold_expiry", with = "humantime_serde")]
    pub hold_expiry: Duration,
}

impl Default for SwitchConfig {
    fn default() -> Self {
        SwitchConfig {
            reversal_without_original: OrphanReversal::Approve,
            shutdown_grace: default_grace(),
            hold_expiry: default_hold_expiry(),
        }
    }
}

fn default_hold_expiry() -> Duration {
    Duration::from_secs(30 * 60)
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("./data")
}
fn default_max_frame() -> usize {
    crate::wire::framing::DEFAULT_MAX_FRAME
}
fn default_spec() -> String {
    "iso87ascii".into()
}
fn default_idle() -> Duration {
    Duration::from_secs(300)
}
fn default_in_flight() -> usize {
    256
}
fn default_ack_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_echo() -> Duration {
    Duration::from_secs(30)
}
fn default_backoff_initial() -> Duration {
    Duration::from_millis(200)
}
fn default_backoff_max() -> Duration {
    Duration::from_secs(30)
}
fn default_multiplier() -> f64 {
    2.0
}
fn default_server_name() -> String {
    "localhost".into()
}
fn default_min_amount() -> u64 {
    100
}
fn default_max_amount() -> u64 {
    50_000
}
fn default_daily_count() -> u32 {
    10
}
fn default_daily_amount() -> u64 {
    100_000
}
fn default_currencies() -> Vec<String> {
    vec!["840".into()]
}
fn default_processing_codes() -> Vec<String> {
    vec!["28".into(), "21".into(), "40".into()]
}
fn default_grace() -> Duration {
    Duration::from_secs(10)
}

impl Config {
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            origin: origin.clone(),
            line: None,
            message: e.to_string(),
        })?;
        Config::from_toml(&text, &origin)
    }

    /// The config that runs when no file is given (DESIGN.md §7).
    pub fn embedded_default() -> Config {
        match Config::from_toml(EMBEDDED_DEFAULT, "embedded default") {
            Ok(config) => config,
            // The embedded text is tested; this only guards against a broken build.
            Err(e) => panic!("{e}"),
        }
    }

    /// Parses and validates config text; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError {
            origin: origin.to_owned(),
            line: e.span().map(|s| line_of(text, s.start)),
            message: e.message().to_owned(),
        })?;
        config.validate().map_err(|message| ConfigError {
            origin: origin.to_owned(),
            line: None,
            message,
        })?;
        Ok(config)
    }

    /// Checks what the types cannot: returns the first problem, naming its key.
    pub fn validate(&self) -> Result<(), String> {
        if self.acquirer.is_empty() {
            return Err("at least one [[acquirer]] is required".into());
        }
        unique(
            "acquirer name",
            self.acquirer.iter().map(|a| a.name.as_str()),
        )?;
        unique(
            "acquirer listen address",
            self.acquirer.iter().map(|a| a.listen.to_string()),
        )?;
        let reserved = |name: &str| name == "console" || name == "adjustment";
        if let Some(a) = self.acquirer.iter().find(|a| reserved(&a.name)) {
            return Err(format!(
                "acquirer name {:?} is reserved (console adjustments)",
                a.name
            ));
        }
        if let Some(b) = self.bank.iter().find(|b| reserved(&b.name)) {
            return Err(format!(
                "bank name {:?} is reserved (console adjustments)",
                b.name
            ));
        }
        for acquirer in &self.acquirer {
            acquirer
                .validate()
                .map_err(|e| format!("acquirer {:?}: {e}", acquirer.name))?;
        }
        unique("engine name", self.engine.iter().map(|e| e.name.as_str()))?;
        unique(
            "carrier (each is served by one engine)",
            self.engine.iter().flat_map(|e| e.carriers.iter()),
        )?;
        for engine in &self.engine {
            engine
                .validate()
                .map_err(|e| format!("engine {:?}: {e}", engine.name))?;
        }
        self.limits.validate().map_err(|e| format!("limits.{e}"))?;
        Calendar::parse(&self.settlement.cutover, &self.settlement.timezone)
            .map_err(|e| format!("settlement.{e}"))?;
        self.validate_banks()?;
        if let Some(email) = &self.notify.email {
            email.validate().map_err(|e| format!("notify.email.{e}"))?;
        }
        self.validate_payees()?;
        self.validate_products()?;
        self.validate_channels()?;
        if let Some(level) = &self.logs.level {
            level
                .parse::<tracing::Level>()
                .map_err(|_| format!("logs.level: {level:?} is not error/warn/info/debug/trace"))?;
        }
        Ok(())
    }

    fn validate_products(&self) -> Result<(), String> {
        unique("product sku", self.product.iter().map(|p| p.sku.as_str()))?;
        let every_carrier = self
            .engine
            .iter()
            .any(|e| e.carriers.iter().any(|c| c == "*"));
        for product in &self.product {
            let at = |e: String| format!("product {:?}: {e}", product.sku);
            product.validate().map_err(at)?;
            let served = every_carrier
                || (self.engine.iter()).any(|e| e.carriers.contains(&product.carrier));
            if !served {
                return Err(at(format!(
                    "carrier: no [[engine]] serves {:?}",
                    product.carrier
                )));
            }
            if !self.limits.currencies.contains(&product.currency) {
                return Err(at(format!(
                    "currency: {} is not in limits.currencies",
                    product.currency
                )));
            }
        }
        if let Some((a, b)) = crate::vocab::products::overlapping(&self.product) {
            return Err(format!(
                "product {:?}: card_prefix {} overlaps product {:?}'s {}",
                b.sku, b.card_prefix, a.sku, a.card_prefix
            ));
        }
        Ok(())
    }

    /// The product whose cards start `pan`'s digits, if any.
    pub fn product_of(&self, pan: &str) -> Option<&Product> {
        self.product.iter().find(|p| p.issued(pan))
    }

    /// The product with `sku`.
    pub fn find_product(&self, sku: &str) -> Option<&Product> {
        self.product.iter().find(|p| p.sku == sku)
    }

    /// The PIN key file: `[pins] key_file`, else `pin.key` in the data directory.
    pub fn pin_key_file(&self) -> PathBuf {
        (self.pins.key_file.clone()).unwrap_or_else(|| self.data_dir.join("pin.key"))
    }

    fn validate_banks(&self) -> Result<(), String> {
        unique("bank name", self.bank.iter().map(|b| b.name.as_str()))?;
        unique(
            "bank acquirer (each link belongs to one bank)",
            self.bank.iter().flat_map(|b| b.acquirers.iter()),
        )?;
        for bank in &self.bank {
            non_empty("bank name", &bank.name)?;
            if bank.acquirers.is_empty() {
                return Err(format!(
                    "bank {:?}: acquirers: at least one link",
                    bank.name
                ));
            }
            for link in &bank.acquirers {
                if !self.acquirer.iter().any(|a| &a.name == link) {
                    return Err(format!(
                        "bank {:?}: acquirers: no [[acquirer]] named {link:?}",
                        bank.name
                    ));
                }
            }
        }
        if !self.bank.is_empty() {
            for acquirer in &self.acquirer {
                if !self
                    .bank
                    .iter()
                    .any(|b| b.acquirers.contains(&acquirer.name))
                {
                    return Err(format!(
                        "acquirer {:?} belongs to no [[bank]]: list it in one bank's acquirers",
                        acquirer.name
                    ));
                }
            }
        }
        Ok(())
    }

    /// Each payee's party is well formed and unique, and, once settlement is configured
    /// at all, every party the config says will be paid has a payee (retailers come from the locations, and carriers served
    /// by a `*` engine from the accounts: `settle` checks those).
    fn validate_payees(&self) -> Result<(), String> {
        unique("payee party", self.payee.iter().map(|p| p.party.as_str()))?;
        for payee in &self.payee {
            let known = payee.party == "provider"
                || ["carrier:", "retailer:", "bank:"].iter().any(|kind| {
                    payee
                        .party
                        .strip_prefix(kind)
                        .is_some_and(|n| !n.is_empty())
                });
            if !known {
                return Err(format!(
                    "payee {:?}: party is provider, carrier:NAME, retailer:NAME or bank:NAME",
                    payee.party
                ));
            }
            non_empty("payee account", &payee.account)?;
        }
        let fees = &self.fees;
        let mut paid: Vec<String> = Vec::new();
        if fees.provider_bp > 0 || fees.provider_fixed > 0 {
            paid.push("provider".into());
        }
        if fees.bank_bp > 0 || fees.bank_fixed > 0 {
            paid.extend(self.banks().into_iter().map(|b| format!("bank:{}", b.name)));
        }
        let carriers = self.engine.iter().flat_map(|e| e.carriers.iter());
        paid.extend(
            carriers
                .filter(|c| *c != "*")
                .map(|c| format!("carrier:{c}")),
        );
        let configured = !self.payee.is_empty()
            || *fees != Schedule::default()
            || self.bank.iter().any(|b| b.settlement_account.is_some());
        if !configured {
            // No settlement configured (no payee, no fee, no settlement account).
            return Ok(());
        }
        match paid
            .iter()
            .find(|party| !self.payee.iter().any(|p| &p.party == *party))
        {
            Some(party) => Err(format!(
                "{party} is paid by settlement but has no [[payee]]"
            )),
            None => Ok(()),
        }
    }

    /// The payee of `party`.
    pub fn payee_of(&self, party: &str) -> Option<&PayeeConfig> {
        self.payee.iter().find(|p| p.party == party)
    }

    /// The banks: the `[[bank]]` sections, or else one bank per acquirer link.
    pub fn banks(&self) -> Vec<Bank> {
        if self.bank.is_empty() {
            return (self.acquirer.iter())
                .map(|a| Bank {
                    name: a.name.clone(),
                    links: vec![a.name.clone()],
                    layout: None,
                })
                .collect();
        }
        (self.bank.iter())
            .map(|b| Bank {
                name: b.name.clone(),
                links: b.acquirers.clone(),
                layout: b.reconciliation.as_ref().map(|r| r.layout.clone()),
            })
            .collect()
    }

    /// The bank named `name`.
    pub fn find_bank(&self, name: &str) -> Option<Bank> {
        self.banks().into_iter().find(|b| b.name == name)
    }

    /// The exception log file.
    pub fn exceptions_log(&self) -> PathBuf {
        (self.logs.exceptions.clone()).unwrap_or_else(|| self.data_dir.join("exceptions.jsonl"))
    }

    /// The fraud log file.
    pub fn fraud_log(&self) -> PathBuf {
        (self.logs.fraud.clone()).unwrap_or_else(|| self.data_dir.join("fraud.jsonl"))
    }

    /// The log level: the config's, else `info`.
    pub fn log_level(&self) -> &str {
        self.logs.level.as_deref().unwrap_or("info")
    }
}

impl AcquirerConfig {
    fn validate(&self) -> Result<(), String> {
        non_empty("name", &self.name)?;
        check_spec(&self.spec)?;
        check_frame(self.framing, self.max_frame, self.header_len)?;
        if self.idle_timeout.is_zero() {
            return Err("idle_timeout must be more than 0".into());
        }
        if self.max_in_flight == 0 {
            return Err("max_in_flight must be at least 1".into());
        }
        if let Some(tls) = &self.tls {
            for (key, path) in [
                ("cert", &tls.cert),
                ("key", &tls.key),
                ("client_ca", &tls.client_ca),
            ] {
                readable(key, path)?;
            }
        }
        Ok(())
    }
}

impl EngineConfig {
    fn validate(&self) -> Result<(), String> {
        non_empty("name", &self.name)?;
        if self.carriers.is_empty() || self.carriers.iter().any(String::is_empty) {
            return Err("carriers: name at least one carrier (or \"*\")".into());
        }
        if self.ack_timeout.is_zero() {
            return Err("ack_timeout must be more than 0".into());
        }
        check_links(
            &self.links,
            &self.spec,
            self.echo_interval,
            &self.retry_backoff,
            self.tls.as_ref(),
        )
    }
}

/// The checks every outbound pair of links shares (engines, debit banks): one or two
/// addresses, a spec, an echo interval, a backoff and the TLS files.
fn check_links(
    links: &[SocketAddr],
    spec: &str,
    echo_interval: Duration,
    backoff: &BackoffConfig,
    tls: Option<&ClientTls>,
) -> Result<(), String> {
    if !(1..=2).contains(&links.len()) {
        return Err(format!(
            "links: one or two addresses, found {}",
            links.len()
        ));
    }
    check_spec(spec)?;
    if echo_interval.is_zero() {
        return Err("echo_interval must be more than 0".into());
    }
    if backoff.initial.is_zero() || backoff.max < backoff.initial {
        return Err("retry_backoff: need 0 < initial <= max".into());
    }
    if !(backoff.multiplier.is_finite() && backoff.multiplier >= 1.0) {
        return Err("retry_backoff.multiplier must be at least 1.0".into());
    }
    if let Some(tls) = tls {
        readable("tls.ca", &tls.ca)?;
        match (&tls.cert, &tls.key) {
            (Some(cert), Some(key)) => {
                readable("tls.cert", cert)?;
                readable("tls.key", key)?;
            }
            (None, None) => {}
            _ => return Err("tls: cert and key go together".into()),
        }
    }
    Ok(())
}

impl LimitsConfig {
    fn validate(&self) -> Result<(), String> {
        if self.min_amount == 0 || self.min_amount > self.max_amount {
            return Err("min_amount/max_amount: need 0 < min_amount <= max_amount".into());
        }
        if self.daily_amount < self.min_amount || self.daily_count == 0 {
            return Err("daily_count/daily_amount: would refuse every transaction".into());
        }
        digits("currencies", &self.currencies, 3)?;
        digits("processing_codes", &self.processing_codes, 2)?;
        for range in &self.account_ranges {
            let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
            if !numeric(&range.from)
                || range.from.len() != range.to.len()
                || !numeric(&range.to)
                || range.from > range.to
            {
                return Err(format!(
                    "account_ranges: {:?}..{:?} must be digits of equal length, from <= to",
                    range.from, range.to
                ));
            }
        }
        Ok(())
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

fn unique<T: AsRef<str>>(what: &str, items: impl Iterator<Item = T>) -> Result<(), String> {
    let mut seen = HashSet::new();
    for item in items {
        if !seen.insert(item.as_ref().to_owned()) {
            return Err(format!("{what} {:?} appears twice", item.as_ref()));
        }
    }
    Ok(())
}

fn non_empty(key: &str, value: &str) -> Result<(), String> {
    if value.trim().is_empty() {
        return Err(format!("{key} must not be empty"));
    }
    Ok(())
}

fn check_spec(spec: &str) -> Result<(), String> {
    Spec::resolve(spec)
        .map(drop)
        .map_err(|e| format!("spec: {e}"))
}

fn check_frame(framing: LengthHeader, max_frame: usize, header_len: usize) -> Result<(), String> {
    let ceiling = framing.max_len();
    if max_frame == 0 || max_frame > ceiling {
        return Err(format!(
            "max_frame: {max_frame} is outside 1..={ceiling} for framing {}",
            framing.name()
        ));
    }
    if header_len + 4 > max_frame {
        return Err(format!(
            "header_len: {header_len} leaves no room in max_frame {max_frame}"
        ));
    }
    Ok(())
}

fn readable(key: &str, path: &Path) -> Result<(), String> {
    std::fs::metadata(path)
        .map(drop)
        .map_err(|e| format!("tls {key} {}: {e}", path.display()))
}

fn digits(key: &str, values: &[String], len: usize) -> Result<(), String> {
    match values
        .iter()
        .find(|v| v.len() != len || !v.bytes().all(|b| b.is_ascii_digit()))
    {
        Some(bad) => Err(format!("{key}: {bad:?} is not {len} digits")),
        None if values.is_empty() => Err(format!("{key}: name at least one")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_matches_the_design() {
        let config = Config::embedded_default();
        assert_eq!(config.acquirer.len(), 1);
        let acquirer = &config.acquirer[0];
        assert_eq!(acquirer.listen.to_string(), "127.0.0.1:8583");
        assert_eq!(
            (acquirer.framing, acquirer.spec.as_str()),
            (LengthHeader::Binary2, "iso87ascii")
        );
        assert_eq!(config.data_dir, PathBuf::from("./data"));
        let engine = &config.engine[0];
        assert_eq!(engine.carriers, vec!["*".to_owned()]);
        assert_eq!(engine.links.len(), 2);
        assert_eq!(engine.ack_timeout, Duration::from_secs(5));
        assert_eq!(
            config.exceptions_log(),
            PathBuf::from("./data/exceptions.jsonl")
        );
    }

    #[test]
    fn the_channels_sample_reads_as_written() {
        let text = include_str!("../fixtures/configs/channels.toml");
        let config = Config::from_toml(text, "channels.toml").expect("valid");
        let bank = config.find_debit_bank("first-bank").expect("debit bank");
        assert_eq!(
            (
                bank.acquirer_id.as_str(),
                bank.response_timeout,
                bank.links.len()
            ),
            ("00099999", Duration::from_secs(5), 2)
        );
        assert_eq!(config.feature_code[0].code, "*25");
        assert_eq!(config.ivr_number[0].amount, 2500);
        assert_eq!(
            config.channel_key_file(),
            PathBuf::from("./data/channel.key")
        );
    }

    #[test]
    fn unknown_keys_are_refused_with_their_line() {
        let text =
            "data_dir = \"x\"\n\n[[acquirer]]\nname = \"a\"\nlisten = \"127.0.0.1:1\"\nport = 3\n";
        let error = Config::from_toml(text, "bad.toml").expect_err("unknown key");
        assert_eq!(error.line, Some(6), "{error}");
        assert!(error.to_string().starts_with("bad.toml:6: "), "{error}");
        assert!(error.message.contains("port"), "{error}");
    }

    #[test]
    fn validation_names_the_key_at_fault() {
        let base = "[[acquirer]]\nname = \"a\"\nlisten = \"127.0.0.1:1\"\n";
        let cases = [
            ("", "at least one [[acquirer]]"),
            (
                "[[acquirer]]\nname = \"a\"\nlisten = \"127.0.0.1:2\"\n",
                "acquirer name \"a\" appears twice",
            ),
            ("spec = \"iso99\"\n", "spec"),
            ("max_frame = 70000\n", "max_frame"),
            ("idle_timeout = \"0s\"\n", "idle_timeout"),
            (
                "[[engine]]\nname = \"e\"\ncarriers = [\"*\"]\nlinks = []\n",
                "links: one or two",
            ),
            (
                "[limits]\nmin_amount = 500\nmax_amount = 100\n",
                "limits.min_amount",
            ),
            ("[limits]\ncurrencies = [\"US\"]\n", "limits.currencies"),
            ("[logs]\nlevel = \"loud\"\n", "logs.level"),
            ("[settlement]\ncutover = \"24:00\"\n", "settlement.cutover"),
            (
                "[settlement]\ntimezone = \"Moon/Base\"\n",
                "settlement.timezone",
            ),
            (
                "[[bank]]\nname = \"b\"\nacquirers = [\"x\"]\n",
                "no [[acquirer]] named \"x\"",
            ),
            (
                "[[acquirer]]\nname = \"c\"\nlisten = \"127.0.0.1:3\"\n[[bank]]\nname = \"b\"\nacquirers = [\"a\"]\n",
                "acquirer \"c\" belongs to no [[bank]]",
            ),
            (
                "[notify.email]\nsmtp = \"mail\"\nfrom = \"a@b\"\nto = [\"c@d\"]\n",
                "notify.email.smtp",
            ),
            // The channels (BACKOFFICE.md §6).
            (
                "[channels]\nlisten = \"127.0.0.1:8081\"\n",
                "[channels] needs at least one [[debit_bank]]",
            ),
            (
                "[[debit_bank]]\nname = \"fb\"\nlinks = [\"127.0.0.1:9\"]\nacquirer_id = \"A1\"\n",
                "debit_bank \"fb\": acquirer_id",
            ),
            (
                "[[debit_bank]]\nname = \"fb\"\nlinks = []\nacquirer_id = \"1\"\n",
                "debit_bank \"fb\": links: one or two",
            ),
            (
                "[[feature_code]]\ncode = \"25\"\namount = 2500\n",
                "feature_code \"25\": code is *",
            ),
            (
                "[[feature_code]]\ncode = \"*25\"\namount = 0\n",
                "feature_code \"*25\": amount",
            ),
            (
                "[[ivr_number]]\nnumber = \"1800-555\"\namount = 2500\n",
                "ivr_number \"1800-555\"",
            ),
            (
                "[notify.sms]\nsmsc = \"127.0.0.1:2775\"\nsystem_id = \"a-system-id-too-long\"\npassword_file = \"x\"\nsource_addr = \"7777\"\n",
                "notify.sms.system_id",
            ),
            // Settlement configured (a fee): every party paid needs a payee, named.
            (
                "[fees]\nbank_bp = 50\n[[payee]]\nparty = \"provider\"\nname = \"P\"\naccount = \"1\"\n",
                "bank:a is paid by settlement but has no [[payee]]",
            ),
            (
                "[[engine]]\nname = \"e\"\ncarriers = [\"carrier-a\"]\nlinks = [\"127.0.0.1:9\"]\n[fees]\nprovider_bp = 150\n[[payee]]\nparty = \"provider\"\nname = \"P\"\naccount = \"1\"\n",
                "carrier:carrier-a is paid by settlement but has no [[payee]]",
            ),
            (
                "[[payee]]\nparty = \"shop\"\nname = \"S\"\naccount = \"1\"\n",
                "party is provider",
            ),
        ];
        for (extra, expected) in cases {
            let text = if extra.is_empty() {
                String::new()
            } else {
                format!("{base}{extra}")
            };
            let error = Config::from_toml(&text, "c.toml").expect_err(expected);
            assert!(error.message.contains(expected), "{extra}: {error}");
        }
    }

    #[test]
    fn the_fuller_sample_parses() {
        let text = include_str!("../fixtures/configs/two-acquirers-mtls.toml");
        let parsed: Config = toml::from_str(text).expect("parses");
        assert_eq!(parsed.acquirer.len(), 2);
        assert_eq!(parsed.acquirer[0].header_len, 5);
        assert_eq!(
            parsed.engine[0].retry_backoff.initial,
            Duration::from_millis(200)
        );
        assert_eq!(parsed.switch.shutdown_grace, Duration::from_secs(10));
    }
}
