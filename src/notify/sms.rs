//! SMS over SMPP 3.4 (`[notify.sms]`): the channels' receipts (the seed's step 407) and
//! failures (step 406) to the subscriber's MIN. [`receipt`] and [`failure`] make the
//! notifications the flow queues in the durable outbox; [`deliver`] runs beside the
//! switch and sends them as they fall due over one session with the SMSC (rusmpp's
//! PDUs and framing): bound as a transmitter when an SMS is due (the password read from
//! its file at every bind, never logged), `submit_sm` with `esm_class` 0 and the default
//! alphabet, each request answered within [`PDU_TIMEOUT`], `enquire_link` when idle, the
//! SMSC's own `enquire_link` and `unbind` answered, a new session after any error, an
//! `unbind` at stop. Each attempt is journaled (sent, or failed and why) before the next,
//! so an SMS is never sent twice by a restart and a failed one waits its backoff.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use rusmpp::pdus::{BindTransmitter, SubmitSm};
use rusmpp::tokio_codec::CommandCodec;
use rusmpp::types::{COctetString, OctetString};
use rusmpp::values::{
    DataCoding, EsmClass, InterfaceVersion, Npi, RegisteredDelivery, ServiceType, Ton,
};
use rusmpp::{Command, CommandId, CommandStatus, Pdu};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

use crate::config::channels::SmsConfig;
use crate::durable::record::{Notification, NotificationAttempt, Record};
use crate::durable::store::{NotificationItem, Store};

/// How long one request to the SMSC (a bind, a `submit_sm`, an `enquire_link`) may wait
/// for its response.
pub const PDU_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest SMS text: one message of the GSM 7-bit default alphabet.
pub const MAX_TEXT: usize = 160;

/// The channel name of SMS notifications in the outbox.
pub const CHANNEL: &str = "sms";

/// The receipt of a completed replenishment (step 407): the amount and the confirmation
/// number, to `min`.
pub fn receipt(
    identity: &str,
    min: &str,
    confirmation: &str,
    amount: u64,
    currency: &str,
) -> Result<Notification, String> {
    let text = format!(
        "Replenishment of {} credited to your prepaid account. Confirmation {confirmation}.",
        money(amount, exponent(currency))
    );
    notification(identity, min, "receipt", text)
}

/// The message of a replenishment that failed (step 406), saying why in plain words.
pub fn failure(
    identity: &str,
    min: &str,
    amount: u64,
    currency: &str,
    reason: &str,
) -> Result<Notification, String> {
    let text = format!(
        "Your replenishment of {} did not go through: {}. Nothing was taken from your account.",
        money(amount, exponent(currency)),
        plain(reason)
    );
    notification(identity, min, "failure", text)
}

fn notification(
    identity: &str,
    min: &str,
    subject: &str,
    body: String,
) -> Result<Notification, String> {
    check_text(&body)?;
    if min.is_empty() || min.len() > 20 || !min.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("not a MIN: {min:?}"));
    }
    Ok(Notification {
        identity: identity.to_owned(),
        channel: CHANNEL.to_owned(),
        to: vec![min.to_owned()],
        subject: subject.to_owned(),
        body,
        attachment: None,
        at_ms: chrono::Utc::now().timestamp_millis(),
    })
}

/// The decimals of ISO 4217 currency `numeric` (2 when unknown).
fn exponent(numeric: &str) -> u32 {
    (numeric.parse().ok())
        .and_then(iso_currency::Currency::from_numeric)
        .and_then(|c| c.exponent())
        .map_or(2, u32::from)
}

/// `minor` units as a decimal amount with `exponent` decimals.
fn money(minor: u64, exponent: u32) -> String {
    let scale = 10u64.pow(exponent.min(6));
    match exponent {
        0 => minor.to_string(),
        _ => format!(
            "{}.{:0width$}",
            minor / scale,
            minor % scale,
            width = exponent as usize
        ),
    }
}

/// A decline reason in words.
fn plain(reason: &str) -> String {
    match reason {
        "insufficient_funds" => "insufficient funds in your bank account".into(),
        "bank_unavailable" => "your bank did not answer".into(),
        "bank_limit_exceeded" => "over your bank's limit".into(),
        "daily_count_exceeded" | "daily_amount_exceeded" => {
            "over today's replenishment limit".into()
        }
        "over_maximum" => "more than a replenishment may be".into(),
        other => other.replace('_', " "),
    }
}

/// Refuses a text an SMSC could garble: beyond [`MAX_TEXT`], or with a character outside
/// what ASCII and the GSM 03.38 default alphabet share without an escape (`@`, `$` and
/// `_` sit elsewhere in GSM; brackets, braces, `\`, `^`, `~`, `|` and `` ` `` need the
/// extension table).
pub fn check_text(text: &str) -> Result<(), String> {
    if text.len() > MAX_TEXT {
        return Err(format!("{} characters, more than {MAX_TEXT}", text.len()));
    }
    let unsafe_char =
        |c: char| !(c.is_ascii_alphanumeric() || c == ' ' || " !\"#%&'()*+,-./:;<=>?".contains(c));
    match text.chars().find(|c| unsafe_char(*c)) {
        Some(c) => Err(format!("{c:?} is not in the GSM default alphabet")),
        None => Ok(()),
    }
}

/// How the delivery task journals an attempt (and waits until the outbox index has it).
pub type Journal = Arc<dyn Fn(Record) -> Result<(), String> + Send + Sync>;

/// Sends the outbox's SMS as they fall due, until `stop`: one pass a second (and at
/// once when the SMSC talks), each attempt journaled.
pub async fn deliver(store: Store, config: SmsConfig, journal: Journal, stop: CancellationToken) {
    let mut session: Option<Session> = None;
    let mut tick = tokio::time::interval(super::POLL);
    loop {
        let incoming = async {
            match session.as_mut() {
                Some(open) => Some(open.framed.next().await),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = stop.cancelled() => break,
            _ = tick.tick() => {}
            command = incoming => {
                let answered = match command.flatten() {
                    Some(Ok(command)) => match session.as_mut() {
                        Some(open) => open.answer(&command).await,
                        None => Ok(()),
                    },
                    Some(Err(e)) => Err(e.to_string()),
                    None => Err("closed by the SMSC".into()),
                };
                if let Err(e) = answered {
                    tracing::info!(smsc = %config.smsc, "SMS session ended: {e}");
                    session = None;
                }
                continue;
            }
        }
        session = pass(&store, &config, &journal, session).await;
    }
    if let Some(open) = session {
        open.unbind().await;
    }
}

/// One pass: every SMS that is due, over `session` (bound when one is due); after a
/// failure the rest wait for the next pass. Returns the session if it is still good.
async fn pass(
    store: &Store,
    config: &SmsConfig,
    journal: &Journal,
    mut session: Option<Session>,
) -> Option<Session> {
    let now = chrono::Utc::now().timestamp_millis();
    for item in due(store, now) {
        let sent = match session.as_mut() {
            Some(open) => open.submit(config, &item.notification).await,
            None => match Session::bind(config).await {
                Ok(open) => {
                    session
                        .insert(open)
                        .submit(config, &item.notification)
                        .await
                }
                Err(e) => Err(e),
            },
        };
        let error = sent.err();
        match &error {
            Some(e) => {
                tracing::warn!(notification = item.id, smsc = %config.smsc, "SMS not sent (will retry): {e}")
            }
            None => tracing::info!(
                notification = item.id,
                "SMS sent: {}",
                item.notification.subject
            ),
        }
        let attempt = Record::NotificationAttempt(NotificationAttempt {
            id: item.id,
            at_ms: chrono::Utc::now().timestamp_millis(),
            error: error.clone(),
        });
        let journal = journal.clone();
        let journaled = tokio::task::spawn_blocking(move || journal(attempt)).await;
        if !matches!(journaled, Ok(Ok(()))) {
            tracing::error!(
                notification = item.id,
                "SMS attempt not journaled: stopping this pass"
            );
            return session;
        }
        if error.is_some() {
            return None;
        }
    }
    if let Some(open) = session.as_mut() {
        if open.idle_since.elapsed() >= config.enquire_link {
            if let Err(e) = open.enquire_link().await {
                tracing::info!(smsc = %config.smsc, "SMSC did not answer enquire_link: {e}");
                return None;
            }
        }
    }
    session
}

/// The unsent SMS whose backoff has passed.
fn due(store: &Store, now_ms: i64) -> Vec<NotificationItem> {
    match store.notifications() {
        Ok(items) => (items.into_iter())
            .filter(|i| {
                i.sent_ms.is_none()
                    && i.notification.channel == CHANNEL
                    && super::due_at(i) <= now_ms
            })
            .collect(),
        Err(e) => {
            tracing::error!("SMS outbox unreadable: {e}");
            Vec::new()
        }
    }
}

/// A bound transmitter session.
struct Session {
    framed: Framed<TcpStream, CommandCodec>,
    sequence: u32,
    idle_since: Instant,
}

impl Session {
    /// Connects and binds as a transmitter.
    async fn bind(config: &SmsConfig) -> Result<Session, String> {
        let tcp = tokio::time::timeout(PDU_TIMEOUT, TcpStream::connect(&config.smsc))
            .await
            .map_err(|_| "connect timed out".to_owned())?
            .map_err(|e| format!("connect: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let mut session = Session {
            framed: Framed::new(tcp, CommandCodec::new()),
            sequence: 0,
            idle_since: Instant::now(),
        };
        let password = std::fs::read_to_string(&config.password_file)
            .map_err(|e| format!("{}: {e}", config.password_file.display()))?;
        let bind = BindTransmitter::builder()
            .system_id(c_string(&config.system_id)?)
            .password(c_string(password.trim())?)
            .system_type(c_string(&config.system_type)?)
            .interface_version(InterfaceVersion::Smpp3_4)
            .addr_ton(Ton::Unknown)
            .addr_npi(Npi::Unknown)
            .address_range(COctetString::empty())
            .build();
        session.request(Pdu::BindTransmitter(bind)).await?;
        tracing::info!(smsc = %config.smsc, system_id = %config.system_id, "SMSC bound (transmitter)");
        Ok(session)
    }

    /// Sends `notification` to its MIN.
    async fn submit(
        &mut self,
        config: &SmsConfig,
        notification: &Notification,
    ) -> Result<(), String> {
        let to = notification.to.first().ok_or("an SMS without a MIN")?;
        let submit = submit_sm(config, to, &notification.body)?;
        self.request(Pdu::SubmitSm(submit)).await.map(drop)
    }

    async fn enquire_link(&mut self) -> Result<(), String> {
        self.request(Pdu::EnquireLink).await.map(drop)
    }

    /// Sends `pdu` and waits for its response (answering what the SMSC sends meanwhile);
    /// a status other than `ESME_ROK` is an error naming it.
    async fn request(&mut self, pdu: Pdu) -> Result<Command, String> {
        self.sequence = self.sequence.wrapping_add(1).max(1);
        let sequence = self.sequence;
        let command = Command::new(CommandStatus::EsmeRok, sequence, pdu);
        let deadline = Instant::now() + PDU_TIMEOUT;
        tokio::time::timeout_at(deadline, self.framed.send(command))
            .await
            .map_err(|_| "send timed out".to_owned())?
            .map_err(|e| format!("send: {e}"))?;
        loop {
            let read = tokio::time::timeout_at(deadline, self.framed.next())
                .await
                .map_err(|_| format!("no response within {PDU_TIMEOUT:?}"))?;
            let command = match read {
                None => return Err("closed by the SMSC".into()),
                Some(Err(e)) => return Err(format!("read: {e}")),
                Some(Ok(command)) => command,
            };
            if command.sequence_number() == sequence && is_response(command.id()) {
                self.idle_since = Instant::now();
                return match command.status() {
                    CommandStatus::EsmeRok => Ok(command),
                    status => Err(format!("{:?} answered {status:?}", command.id())),
                };
            }
            self.answer(&command).await?;
        }
    }

    /// Answers what the SMSC asks of its own accord: `enquire_link`, and `unbind`
    /// (answered, then the session ends with an error).
    async fn answer(&mut self, command: &Command) -> Result<(), String> {
        let reply = |pdu| Command::new(CommandStatus::EsmeRok, command.sequence_number(), pdu);
        match command.id() {
            CommandId::EnquireLink => self
                .framed
                .send(reply(Pdu::EnquireLinkResp))
                .await
                .map_err(|e| e.to_string()),
            CommandId::Unbind => {
                let _ = self.framed.send(reply(Pdu::UnbindResp)).await;
                Err("unbound by the SMSC".into())
            }
            other => {
                tracing::debug!("SMSC sent {other:?}: ignored");
                Ok(())
            }
        }
    }

    /// Unbinds (at stop), waiting briefly for the answer.
    async fn unbind(mut self) {
        let done = tokio::time::timeout(Duration::from_secs(2), self.request(Pdu::Unbind)).await;
        if !matches!(done, Ok(Ok(_))) {
            tracing::debug!("SMSC unbind not answered");
        }
    }
}

fn is_response(id: CommandId) -> bool {
    u32::from(id) & 0x8000_0000 != 0
}

/// The `submit_sm` of one SMS: from `source_addr` to `to`, `esm_class` 0 (default mode,
/// no delivery receipt requested by the class), the SMSC's default alphabet
/// (`data_coding` 0), no delivery receipt.
pub fn submit_sm(config: &SmsConfig, to: &str, text: &str) -> Result<SubmitSm, String> {
    check_text(text)?;
    let short_message = OctetString::from_str(text).map_err(|e| format!("text: {e:?}"))?;
    Ok(SubmitSm::builder()
        .service_type(ServiceType::default())
        .source_addr_ton(Ton::Unknown)
        .source_addr_npi(Npi::Unknown)
        .source_addr(c_string(&config.source_addr)?)
        .dest_addr_ton(Ton::International)
        .dest_addr_npi(Npi::Isdn)
        .destination_addr(c_string(to)?)
        .esm_class(EsmClass::from(0u8))
        .registered_delivery(RegisteredDelivery::from(0u8))
        .data_coding(DataCoding::McSpecific)
        .short_message(short_message)
        .build())
}

fn c_string<const MIN: usize, const MAX: usize>(
    text: &str,
) -> Result<COctetString<MIN, MAX>, String> {
    COctetString::from_str(text).map_err(|e| format!("{text:?}: {e:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use tokio_util::codec::Encoder;

    fn config() -> SmsConfig {
        SmsConfig {
            smsc: "127.0.0.1:2775".into(),
            system_id: "replenish".into(),
            password_file: "smsc.password".into(),
            source_addr: "7777".into(),
            system_type: String::new(),
            enquire_link: Duration::from_secs(30),
        }
    }

    #[test]
    fn a_receipt_says_the_amount_and_the_confirmation_number() {
        let sms = receipt("k", "2065550101", "476497846503", 2500, "840").expect("receipt");
        assert_eq!(
            sms.body,
            "Replenishment of 25.00 credited to your prepaid account. Confirmation 476497846503."
        );
        assert_eq!(
            (sms.channel.as_str(), sms.to.as_slice()),
            ("sms", &["2065550101".to_owned()][..])
        );
        let failed =
            failure("k", "2065550101", 2500, "840", "insufficient_funds").expect("failure");
        assert!(
            failed.body.contains("insufficient funds") && failed.body.len() <= MAX_TEXT,
            "{}",
            failed.body
        );
        assert!(receipt("k", "not-a-min", "1", 1, "392").is_err());
        assert_eq!(money(5, 3), "0.005");
        assert_eq!(money(500, 0), "500");
    }

    #[test]
    fn texts_stay_in_the_gsm_default_alphabet_and_one_message() {
        assert!(check_text("Confirmation 123. Thanks!").is_ok());
        for bad in ["price $5", "a@b", "x_y", "[1]", "caf\u{e9}", "a~b", "a|b"] {
            assert!(check_text(bad).is_err(), "{bad}");
        }
        assert!(check_text(&"a".repeat(160)).is_ok());
        assert!(check_text(&"a".repeat(161)).is_err());
    }

    #[test]
    fn submit_sm_goes_in_default_mode_and_alphabet() {
        let submit = submit_sm(&config(), "2065550101", "Hi").expect("submit_sm");
        let command = Command::new(CommandStatus::EsmeRok, 7, Pdu::SubmitSm(submit));
        let mut bytes = BytesMut::new();
        CommandCodec::new()
            .encode(command, &mut bytes)
            .expect("encoded");
        let mut expected = Vec::new();
        let body: Vec<u8> = [
            &b"\0"[..],      // service_type
            &[0, 0],         // source ton, npi
            b"7777\0",       // source_addr
            &[1, 1],         // dest ton international, npi ISDN
            b"2065550101\0", // destination_addr
            &[0, 0, 0],      // esm_class 0, protocol_id, priority_flag
            b"\0\0",         // schedule_delivery_time, validity_period
            &[0, 0, 0, 0], // registered_delivery, replace_if_present, data_coding, sm_default_msg_id
            &[2],          // sm_length
            b"Hi",         // short_message
        ]
        .concat();
        expected.extend_from_slice(&(16 + body.len() as u32).to_be_bytes());
        expected.extend_from_slice(&0x0000_0004u32.to_be_bytes()); // submit_sm
        expected.extend_from_slice(&0u32.to_be_bytes());
        expected.extend_from_slice(&7u32.to_be_bytes());
        expected.extend_from_slice(&body);
        assert_eq!(bytes.to_vec(), expected);
    }
}
