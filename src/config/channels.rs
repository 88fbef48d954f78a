//! The self-service channels' settings (BACKOFFICE.md §6): the channel API
//! (`[channels]`), the subscribers' banks the switch debits as an acquirer
//! (`[[debit_bank]]`, two links each like an engine), the dialed feature codes and IVR
//! numbers that stand for amounts, and SMS over SMPP 3.4 (`[notify.sms]`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{
    BackoffConfig, ClientTls, Config, ConsoleTls, check_links, default_echo, default_spec,
    non_empty, readable, unique,
};
use crate::wire::framing::LengthHeader;

/// The channel API (`[channels]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelsConfig {
    /// Address of `/api/v1/replenishments`. Required.
    pub listen: SocketAddr,
    /// HTTPS; plain HTTP when absent.
    #[serde(default)]
    pub tls: Option<ConsoleTls>,
    /// The key that seals enrolled debit accounts. Default: `channel.key` in the data
    /// directory (made `0600` on first use).
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

/// A bank the switch debits (`[[debit_bank]]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DebitBankConfig {
    /// Its name, as enrolments name it; unique. Required.
    pub name: String,
    /// One or two link addresses (primary first). Required.
    pub links: Vec<SocketAddr>,
    /// Length prefix. Default `binary2`.
    #[serde(default)]
    pub framing: LengthHeader,
    /// Built-in spec name or path. Default `iso87ascii`.
    #[serde(default = "default_spec")]
    pub spec: String,
    /// DE32 the switch sends as the acquirer: up to 11 digits. Required.
    pub acquirer_id: String,
    /// No answer within this long: the debit is reversed (`0420`) and the request
    /// declined `bank_unavailable`. Default `5s`.
    #[serde(default = "default_response_timeout", with = "humantime_serde")]
    pub response_timeout: Duration,
    /// Echo test interval on an idle link. Default `30s`.
    #[serde(default = "default_echo", with = "humantime_serde")]
    pub echo_interval: Duration,
    /// Reconnect and retry backoff.
    #[serde(default)]
    pub retry_backoff: BackoffConfig,
    /// TLS towards the bank; plain TCP when absent.
    #[serde(default)]
    pub tls: Option<ClientTls>,
}

fn default_response_timeout() -> Duration {
    Duration::from_secs(5)
}

/// A dialed feature code (`[[feature_code]]`): `*25` then the PIN is a replenishment
/// of `amount`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureCode {
    /// `*` and 1 to 6 digits. Required, unique.
    pub code: String,
    /// Minor units, positive. Required.
    pub amount: u64,
}

/// A number an IVR answers (`[[ivr_number]]`): calling it is a replenishment of
/// `amount`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IvrNumber {
    /// 3 to 15 digits. Required, unique.
    pub number: String,
    /// Minor units, positive. Required.
    pub amount: u64,
}

/// SMS over SMPP 3.4 (`[notify.sms]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsConfig {
    /// The SMSC, `host:port`. Required.
    pub smsc: String,
    /// The `system_id` of `bind_transmitter`: 1 to 15 characters. Required.
    pub system_id: String,
    /// A file holding the password (trimmed, at most 8 characters). Required.
    pub password_file: PathBuf,
    /// The sender (`source_addr`): 1 to 20 characters. Required.
    pub source_addr: String,
    /// `system_type` of the bind: at most 12 characters. Default empty.
    #[serde(default)]
    pub system_type: String,
    /// `enquire_link` interval on an idle bind. Default `30s`.
    #[serde(default = "default_echo", with = "humantime_serde")]
    pub enquire_link: Duration,
}

impl DebitBankConfig {
    fn validate(&self) -> Result<(), String> {
        non_empty("name", &self.name)?;
        let id = &self.acquirer_id;
        if id.is_empty() || id.len() > 11 || !id.bytes().all(|b| b.is_ascii_digit()) {
            return Err("acquirer_id: 1 to 11 digits (DE32)".into());
        }
        if self.response_timeout.is_zero() {
            return Err("response_timeout must be more than 0".into());
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

impl SmsConfig {
    fn validate(&self) -> Result<(), String> {
        let (host, port) = (self.smsc.rsplit_once(':')).ok_or("smsc: host:port")?;
        if host.is_empty() || port.parse::<u16>().is_err() {
            return Err(format!("smsc: {:?} is not host:port", self.smsc));
        }
        let sized = |key: &str, value: &str, most: usize| {
            if value.is_empty() || value.len() > most || !value.is_ascii() {
                return Err(format!("{key}: 1 to {most} ASCII characters"));
            }
            Ok(())
        };
        sized("system_id", &self.system_id, 15)?;
        sized("source_addr", &self.source_addr, 20)?;
        if self.system_type.len() > 12 {
            return Err("system_type: at most 12 characters".into());
        }
        if self.enquire_link.is_zero() {
            return Err("enquire_link must be more than 0".into());
        }
        readable("password_file", &self.password_file)
    }
}

fn check_amount(amount: u64) -> Result<(), String> {
    match amount {
        0 => Err("amount: must be positive (minor units)".into()),
        _ => Ok(()),
    }
}

impl Config {
    /// The channels' sections checked: names unique, debit banks' links, feature codes
    /// and IVR numbers well formed, amounts positive, SMS settings.
    pub(super) fn validate_channels(&self) -> Result<(), String> {
        let banks = self.debit_bank.iter().map(|b| b.name.as_str());
        unique("debit_bank name", banks)?;
        for bank in &self.debit_bank {
            bank.validate()
                .map_err(|e| format!("debit_bank {:?}: {e}", bank.name))?;
        }
        unique("feature_code", self.feature_code.iter().map(|f| &f.code))?;
        for code in &self.feature_code {
            let digits = code.code.strip_prefix('*').unwrap_or("");
            if !(1..=6).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!(
                    "feature_code {:?}: code is * and 1 to 6 digits",
                    code.code
                ));
            }
            check_amount(code.amount).map_err(|e| format!("feature_code {:?}: {e}", code.code))?;
        }
        unique("ivr_number", self.ivr_number.iter().map(|n| &n.number))?;
        for ivr in &self.ivr_number {
            let n = &ivr.number;
            if !(3..=15).contains(&n.len()) || !n.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("ivr_number {n:?}: number is 3 to 15 digits"));
            }
            check_amount(ivr.amount).map_err(|e| format!("ivr_number {n:?}: {e}"))?;
        }
        if let Some(sms) = &self.notify.sms {
            sms.validate().map_err(|e| format!("notify.sms.{e}"))?;
        }
        if self.channels.is_some() && self.debit_bank.is_empty() {
            return Err("[channels] needs at least one [[debit_bank]] to debit".into());
        }
        Ok(())
    }

    /// The debit bank named `name`.
    pub fn find_debit_bank(&self, name: &str) -> Option<&DebitBankConfig> {
        self.debit_bank.iter().find(|b| b.name == name)
    }

    /// The key sealing enrolled debit accounts: `[channels] key_file`, else
    /// `channel.key` in the data directory.
    pub fn channel_key_file(&self) -> PathBuf {
        (self.channels.as_ref())
            .and_then(|c| c.key_file.clone())
            .unwrap_or_else(|| self.data_dir.join("channel.key"))
    }
}
