//! The subscribers' banks, which the channels debit as an acquirer (BACKOFFICE.md §6):
//! each `[[debit_bank]]` gets the engine links' machinery ([`crate::engine::link`]:
//! sign-on, echo, reconnect with backoff) on one or two addresses, with replies matched
//! by class, DE11 and DE41. [`Bank::debit`] sends the `0200` on the first link that is
//! up (the other when it goes down) and gives up after `response_timeout`;
//! [`Bank::reverse`] sends the `0420`, then `0421`s with backoff, until the bank answers.
//! The messages are built here ([`debit`], [`reversal`]); what they are for, and the
//! journal, belong to [`super::flow`].

use std::sync::Arc;
use std::time::Duration;

use chrono::DateTime;
use rustls_pki_types::ServerName;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;

use crate::config::BackoffConfig;
use crate::config::channels::DebitBankConfig;
use crate::durable::record::ChannelRequest;
use crate::engine::advice::MatchKey;
use crate::engine::backoff::Backoff;
use crate::engine::link::{self, ExchangeError, LinkHandle, LinkSettings};
use crate::wire::framing::FrameCodec;
use crate::wire::iso8583::{Message, Mti, Spec};

/// DE3 of a debit: a transfer (`40`) from the default account (`10`) to none (`00`).
pub const DEBIT_CODE: &str = "401000";

/// What a bank's reply is matched to its request by: class, DE11 and DE41 (DE41 is
/// empty on network management).
pub fn match_key(message: &Message) -> MatchKey {
    let field = |n| message.text(n).unwrap_or("").trim().to_owned();
    (message.mti().class(), field(11), field(41))
}

/// The `0200` debiting `debit_account` for `request` (BACKOFFICE.md §6): DE2 the debit
/// account, DE3 `401000`, DE4, DE7, DE11, DE12, DE13, DE32, DE37, DE41, DE49 and
/// DE103 the prepaid account.
pub fn debit(request: &ChannelRequest, debit_account: &str, acquirer_id: &str) -> Message {
    let mut message = transfer(request, acquirer_id, b"0200");
    message.set(2, debit_account.to_owned());
    message
}

/// The transfer as the switch decides its credit: the debit without DE2 (the debit
/// account stays out of the decision), DE42 [`LOCATION`].
pub fn credit_request(request: &ChannelRequest, acquirer_id: &str) -> Message {
    let mut message = transfer(request, acquirer_id, b"0200");
    message.set(42, LOCATION.to_owned());
    message
}

/// The card acceptor id (DE42) of the channels' credits: the location the rules check
/// (with the channel's terminal when `check_terminal`), so an operator can stop the
/// channels, or one of them, by deauthorizing it.
pub const LOCATION: &str = "CHANNELS";

/// The reversal of `request`'s debit: `0420` the first time, `0421` after; DE39 `68`
/// (no answer in time), DE90 the debit's original data elements.
pub fn reversal(
    request: &ChannelRequest,
    debit_account: Option<&str>,
    acquirer_id: &str,
    repeat: bool,
) -> Message {
    let mut message = transfer(request, acquirer_id, if repeat { b"0421" } else { b"0420" });
    if let Some(account) = debit_account {
        message.set(2, account.to_owned());
    }
    message.set(39, "68");
    message.set(
        90,
        format!(
            "0200{:0>6}{:0>10}{:0>11}{:0>11}",
            request.stan, request.transmitted, acquirer_id, 0
        ),
    );
    message
}

fn transfer(request: &ChannelRequest, acquirer_id: &str, mti: &[u8; 4]) -> Message {
    let Some(mti) = Mti::new(mti) else {
        unreachable!("the channels' MTIs are valid")
    };
    let mut message = Message::new(mti);
    let local = DateTime::from_timestamp_millis(request.at_ms).unwrap_or_default();
    message.set(3, DEBIT_CODE);
    message.set(4, format!("{:012}", request.amount));
    message.set(7, request.transmitted.clone());
    message.set(11, request.stan.clone());
    message.set(12, local.format("%H%M%S").to_string());
    message.set(13, local.format("%m%d").to_string());
    message.set(32, acquirer_id.to_owned());
    message.set(37, request.rrn.clone());
    message.set(41, request.terminal.clone());
    message.set(49, request.currency.clone());
    message.set(103, request.account.clone());
    message
}

/// No answer from the bank in time (or no link up): the debit must be reversed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the bank did not answer in time")]
pub struct Unanswered;

/// A running `[[debit_bank]]`: its links and settings.
pub struct Bank {
    /// Its name.
    pub name: String,
    /// DE32 the switch sends it.
    pub acquirer_id: String,
    links: Vec<LinkHandle>,
    timeout: Duration,
    backoff: BackoffConfig,
}

impl Bank {
    /// Starts the bank's links; they run until `shutdown`.
    pub fn start(
        config: &DebitBankConfig,
        shutdown: &CancellationToken,
    ) -> Result<Arc<Bank>, String> {
        let setup = |reason: String| format!("debit_bank {}: {reason}", config.name);
        let spec = Arc::new(Spec::resolve(&config.spec).map_err(|e| setup(e.to_string()))?);
        let tls = match &config.tls {
            None => None,
            Some(tls) => {
                let pair = tls.cert.as_deref().zip(tls.key.as_deref());
                let client = crate::wire::tls::client_config(&tls.ca, pair)
                    .map_err(|e| setup(e.to_string()))?;
                let name = ServerName::try_from(tls.server_name.clone())
                    .map_err(|e| setup(format!("tls.server_name: {e}")))?;
                Some((TlsConnector::from(client), name))
            }
        };
        let links = (config.links.iter())
            .map(|&address| {
                let settings = LinkSettings {
                    peer: config.name.clone(),
                    match_key,
                    address,
                    spec: spec.clone(),
                    codec: FrameCodec::new(config.framing),
                    ack_timeout: config.response_timeout,
                    echo_interval: config.echo_interval,
                    backoff: config.retry_backoff.clone(),
                    tls: tls.clone(),
                };
                link::spawn(settings, shutdown.clone())
            })
            .collect();
        Ok(Arc::new(Bank {
            name: config.name.clone(),
            acquirer_id: config.acquirer_id.clone(),
            links,
            timeout: config.response_timeout,
            backoff: config.retry_backoff.clone(),
        }))
    }

    /// Its links, primary first.
    pub fn links(&self) -> &[LinkHandle] {
        &self.links
    }

    /// Whether a link is up.
    pub fn is_up(&self) -> bool {
        self.links.iter().any(LinkHandle::is_up)
    }

    /// Sends the debit and returns the bank's `0210`: on the first link that is up,
    /// again on the other when that one goes down while waiting (the bank sees the same
    /// DE11, DE7, DE32 and DE41: a repeat, not a second debit); [`Unanswered`] when no
    /// answer came within `response_timeout` of the first try.
    pub async fn debit(&self, message: Message) -> Result<Message, Unanswered> {
        let deadline = Instant::now() + self.timeout;
        while Instant::now() < deadline {
            let Some(link) = self.links.iter().find(|l| l.is_up()) else {
                let _ = tokio::time::timeout_at(deadline, link::any_change(&self.links)).await;
                continue;
            };
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, link.exchange(message.clone())).await {
                Ok(Ok(reply)) => return Ok(reply),
                Ok(Err(ExchangeError::Down)) => tokio::task::yield_now().await,
                Ok(Err(ExchangeError::Timeout)) | Err(_) => {
                    link.probe();
                    return Err(Unanswered);
                }
            }
        }
        Err(Unanswered)
    }

    /// Sends the reversal `first` until the bank answers it (any `0430`: a bank that
    /// never had the debit answers it too): as it is the first time, as `0421` from then
    /// on (`repeat` makes it), with backoff between tries. Returns the bank's DE39, or
    /// `None` at shutdown (the reversal is still due: the next start sends it).
    pub async fn reverse(
        &self,
        first: Message,
        repeat: impl Fn() -> Message,
        stop: &CancellationToken,
    ) -> Option<String> {
        let seed = first.text(11).and_then(|s| s.parse().ok()).unwrap_or(1);
        let mut backoff = Backoff::new(self.backoff.clone(), seed);
        let mut message = first;
        loop {
            if let Some(link) = self.links.iter().find(|l| l.is_up()) {
                tracing::info!(
                    bank = %self.name,
                    link = %link.address(),
                    stan = message.text(11).unwrap_or(""),
                    "reversal {} sent",
                    message.mti().as_str()
                );
                if let Ok(reply) = link.exchange(message.clone()).await {
                    if reply.mti().class() == message.mti().class() {
                        return Some(reply.text(39).unwrap_or("").to_owned());
                    }
                }
                tracing::info!(
                    bank = %self.name,
                    stan = message.text(11).unwrap_or(""),
                    "reversal {} not answered: repeating it as 0421",
                    message.mti().as_str()
                );
                message = repeat();
            }
            tokio::select! {
                () = stop.cancelled() => return None,
                () = tokio::time::sleep(backoff.next_delay()) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> ChannelRequest {
        ChannelRequest {
            id: "ivr/k1".into(),
            fingerprint: String::new(),
            channel: "web".into(),
            account: "5999990000000001".into(),
            min: "2065550101".into(),
            amount: 2500,
            currency: "840".into(),
            bank: "first-bank".into(),
            debit_masked: "411111******1111".into(),
            stan: "000042".into(),
            rrn: "000000000042".into(),
            terminal: "WEB00001".into(),
            transmitted: "1205103000".into(),
            at_ms: 1_796_466_600_000,
            ..ChannelRequest::default()
        }
    }

    #[test]
    fn the_debit_carries_the_profile_of_section_6() {
        let message = debit(&request(), "4111111111111111", "00099999");
        assert_eq!(message.mti().as_str(), "0200");
        for (field, value) in [
            (2, "4111111111111111"),
            (3, "401000"),
            (4, "000000002500"),
            (7, "1205103000"),
            (11, "000042"),
            (32, "00099999"),
            (37, "000000000042"),
            (41, "WEB00001"),
            (49, "840"),
            (103, "5999990000000001"),
        ] {
            assert_eq!(message.text(field), Some(value), "DE{field}");
        }
        assert!(message.get(12).is_some() && message.get(13).is_some());
        let credit = credit_request(&request(), "00099999");
        assert!(
            credit.get(2).is_none(),
            "the debit account stays out of the decision"
        );
        assert_eq!(credit.text(42), Some(LOCATION));
    }

    #[test]
    fn a_reversal_names_its_debit_and_matches_like_it() {
        let first = reversal(&request(), None, "00099999", false);
        let again = reversal(&request(), None, "00099999", true);
        assert_eq!(first.mti().as_str(), "0420");
        assert_eq!(again.mti().as_str(), "0421");
        assert_eq!(
            first.text(90),
            Some("020000004212051030000000009999900000000000")
        );
        assert_eq!(match_key(&first), match_key(&again));
        let debit = debit(&request(), "4111111111111111", "00099999");
        assert_eq!(match_key(&debit).1, match_key(&first).1);
        assert_eq!(match_key(&debit).2, "WEB00001");
    }
}
