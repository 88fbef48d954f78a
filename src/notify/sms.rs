//! SMS over SMPP 3.4 (`[notify.sms]`): the channels' receipts (the seed's step 407) and
//! failures (step 406) to the subscriber's MIN. [`receipt`] and [`failure`] make the
//! notifications the flow queues in the durable outbox, refusing a text that is not one
//! plain GSM 7-bit message. [`Sender`] is the outbox's SMS side: one blocking session
//! with the SMSC kept across the outbox's passes (rusmpp's PDUs and codec over a
//! `std::net` socket, as the passes run on blocking threads), bound as a transmitter when
//! an SMS is due (the password read from its file at every bind, never logged),
//! `submit_sm` with `esm_class` 0 and the default alphabet, each request answered within
//! [`PDU_TIMEOUT`] (a status other than `ESME_ROK` is an error naming it), between passes
//! the SMSC's own `enquire_link` and `unbind` answered and an `enquire_link` sent when
//! idle, a new session at the next SMS after any error, an `unbind` at stop.
//!
//! rusmpp's `tracing` feature must stay off: it logs whole PDUs, the bind's password
//! among them.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::str::FromStr;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rusmpp::pdus::{BindTransmitter, SubmitSm};
use rusmpp::tokio_codec::CommandCodec;
use rusmpp::types::{COctetString, OctetString};
use rusmpp::values::{
    DataCoding, EsmClass, InterfaceVersion, Npi, RegisteredDelivery, ServiceType, Ton,
};
use rusmpp::{Command, CommandId, CommandStatus, Pdu};
use tokio_util::codec::{Decoder, Encoder};

use crate::config::channels::SmsConfig;
use crate::durable::record::Notification;

/// How long one request to the SMSC (a bind, a `submit_sm`, an `enquire_link`) may wait
/// for its response; also the connect timeout.
pub const PDU_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the `unbind` at stop may wait for its response.
const UNBIND_TIMEOUT: Duration = Duration::from_secs(2);

/// The longest SMS text: one message of the GSM 7-bit default alphabet.
pub const MAX_TEXT: usize = 160;

/// The channel name of SMS notifications in the outbox.
pub const CHANNEL: &str = "sms";

/// The receipt of a completed replenishment (step 407): the amount (`amount` minor units
/// of ISO 4217 `currency`, numeric) and the confirmation number, to `min`.
pub fn receipt(
    identity: &str,
    min: &str,
    confirmation: &str,
    amount: u64,
    currency: &str,
) -> Result<Notification, String> {
    let text = format!(
        "Replenishment of {} credited to your prepaid account. Confirmation {confirmation}.",
        money(amount, currency)
    );
    notification(identity, min, "receipt", text)
}

/// The message of a replenishment that failed (step 406), saying why in plain words and
/// what becomes of the money.
pub fn failure(
    identity: &str,
    min: &str,
    amount: u64,
    currency: &str,
    reason: &str,
) -> Result<Notification, String> {
    let text = format!(
        "Your replenishment of {} did not go through: {}. {}",
        money(amount, currency),
        plain(reason),
        the_money(reason)
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

/// `minor` units of ISO 4217 currency `numeric` as a decimal amount (2 decimals for a
/// code that is not one).
fn money(minor: u64, numeric: &str) -> String {
    crate::vocab::money::decimal(
        minor,
        crate::vocab::money::exponent_of(numeric).unwrap_or(2),
    )
}

/// A decline reason (the channel API's `reason`) in words.
fn plain(reason: &str) -> String {
    let words = match reason {
        "insufficient_funds" => "insufficient funds in your bank account",
        "bank_unavailable" => "your bank did not answer",
        "bank_limit_exceeded" => "over your bank's limit",
        "bank_declined" => "your bank declined it",
        "debit_account_refused" => "your bank refused the account",
        "debit_card_expired" => "your bank card has expired",
        "debit_not_permitted" => "your bank does not allow it",
        "daily_count_exceeded" | "daily_amount_exceeded" => "over today's replenishment limit",
        "over_maximum" => "more than a replenishment may be",
        "bad_amount" => "the amount is not valid",
        "unsupported_currency" => "the currency is not accepted",
        "not_activated" => "your prepaid account is not active yet",
        "blocked" => "your prepaid account is blocked",
        "expired" => "your prepaid account has expired",
        "unknown_account" | "out_of_range" | "bad_check_digit" | "no_min" => {
            "your prepaid account was not found"
        }
        "no_engine" => "the service is not available",
        other if other.starts_with("declined") => "it was declined",
        other => return other.replace('_', " "),
    };
    words.to_owned()
}

/// What the subscriber should know of the money: when the bank did not answer, a debit
/// it made is being reversed; otherwise nothing was debited.
fn the_money(reason: &str) -> &'static str {
    match reason {
        "bank_unavailable" => "If your bank took the amount, it is being given back.",
        _ => "Nothing was taken from your account.",
    }
}

/// Refuses a text an SMSC could garble: beyond [`MAX_TEXT`], or with a character outside
/// what ASCII and the GSM 03.38 default alphabet share without an escape (`@`, `$` and
/// `_` sit elsewhere in GSM; brackets, braces, `\`, `^`, `~`, `|` and `` ` `` need the
/// extension table; nothing beyond ASCII).
pub fn check_text(text: &str) -> Result<(), String> {
    let gsm = |c: char| c.is_ascii_alphanumeric() || " !\"#%&'()*+,-./:;<=>?".contains(c);
    if let Some(c) = text.chars().find(|c| !gsm(*c)) {
        return Err(format!("{c:?} is not in the GSM default alphabet"));
    }
    if text.len() > MAX_TEXT {
        return Err(format!("{} characters, more than {MAX_TEXT}", text.len()));
    }
    Ok(())
}

/// The `submit_sm` of one SMS: from `source_addr` (TON and NPI unknown: a short code or
/// an alphanumeric sender) to the MIN `to` (TON unknown, NPI ISDN: a MIN is a national
/// number, so the SMSC applies its own numbering plan), `esm_class` 0 (default mode, a
/// plain message: rusmpp's default 0x08 would make it a delivery acknowledgement), no
/// delivery receipt, the SMSC's default alphabet (`data_coding` 0).
pub fn submit_sm(config: &SmsConfig, to: &str, text: &str) -> Result<SubmitSm, String> {
    check_text(text)?;
    let short_message = OctetString::from_str(text).map_err(|e| format!("text: {e:?}"))?;
    Ok(SubmitSm::builder()
        .service_type(ServiceType::default())
        .source_addr_ton(Ton::Unknown)
        .source_addr_npi(Npi::Unknown)
        .source_addr(c_string("source_addr", &config.source_addr)?)
        .dest_addr_ton(Ton::Unknown)
        .dest_addr_npi(Npi::Isdn)
        .destination_addr(c_string("destination_addr", to)?)
        .esm_class(EsmClass::from(0u8))
        .registered_delivery(RegisteredDelivery::from(0u8))
        .data_coding(DataCoding::McSpecific)
        .short_message(short_message)
        .build())
}

/// The `bind_transmitter` of `system_id` with `password`, SMPP 3.4.
fn bind_transmitter(config: &SmsConfig, password: &str) -> Result<BindTransmitter, String> {
    // The password's own error would show it: say only what is wrong with it.
    let password = COctetString::from_str(password)
        .map_err(|_| "the password is more than 8 characters or not ASCII".to_owned())?;
    Ok(BindTransmitter::builder()
        .system_id(c_string("system_id", &config.system_id)?)
        .password(password)
        .system_type(c_string("system_type", &config.system_type)?)
        .interface_version(InterfaceVersion::Smpp3_4)
        .addr_ton(Ton::Unknown)
        .addr_npi(Npi::Unknown)
        .address_range(COctetString::empty())
        .build())
}

fn c_string<const MIN: usize, const MAX: usize>(
    field: &str,
    text: &str,
) -> Result<COctetString<MIN, MAX>, String> {
    COctetString::from_str(text).map_err(|e| format!("{field} {text:?}: {e:?}"))
}

/// The SMS side of the outbox: the session with the SMSC, kept from one pass to the
/// next (none until an SMS is due, none again after an error).
pub struct Sender {
    config: SmsConfig,
    session: Option<Session>,
}

impl Sender {
    /// A sender for `config`, not connected yet.
    pub fn new(config: SmsConfig) -> Sender {
        Sender {
            config,
            session: None,
        }
    }

    /// Sends `notification` to its MIN, binding first when there is no session; after an
    /// error the session is dropped (the next SMS binds again).
    pub fn send(&mut self, notification: &Notification) -> Result<String, String> {
        let to = notification.to.first().ok_or("an SMS without a MIN")?;
        let submit = submit_sm(&self.config, to, &notification.body)?;
        // A session the SMSC closed or unbound since the last pass is noticed here, so
        // the SMS goes on a new one instead of failing.
        if let Some(Err(e)) = self.session.as_mut().map(Session::answer_waiting) {
            tracing::info!(smsc = %self.config.smsc, "SMSC session ended: {e}");
            self.session = None;
        }
        let session = match &mut self.session {
            Some(session) => session,
            None => self.session.insert(Session::bind(&self.config)?),
        };
        let answered = session.submit(submit);
        if answered.is_err() {
            self.session = None;
        }
        answered
    }

    /// Between passes: answers what the SMSC sent meanwhile (`enquire_link`, `unbind`)
    /// and sends an `enquire_link` when the session has been idle for `enquire_link`.
    /// A session that fails either is dropped.
    pub fn keep_alive(&mut self) {
        let Some(session) = &mut self.session else {
            return;
        };
        let idle = self.config.enquire_link;
        let kept = session.answer_waiting().and_then(|()| {
            if session.idle_since.elapsed() < idle {
                return Ok(());
            }
            session.request(Pdu::EnquireLink, PDU_TIMEOUT).map(drop)
        });
        if let Err(e) = kept {
            tracing::info!(smsc = %self.config.smsc, "SMSC session ended: {e}");
            self.session = None;
        }
    }

    /// Unbinds (at stop), waiting briefly for the answer.
    pub fn unbind(&mut self) {
        if let Some(mut session) = self.session.take() {
            match session.request(Pdu::Unbind, UNBIND_TIMEOUT) {
                Ok(_) => tracing::info!(smsc = %self.config.smsc, "SMSC unbound"),
                Err(e) => tracing::debug!(smsc = %self.config.smsc, "SMSC unbind: {e}"),
            }
        }
    }
}

/// A bound transmitter session over a blocking socket.
struct Session {
    stream: TcpStream,
    codec: CommandCodec,
    /// Bytes read and not decoded yet.
    unread: BytesMut,
    sequence: u32,
    /// When the SMSC last sent anything.
    idle_since: Instant,
}

impl Session {
    /// Connects and binds as a transmitter, reading the password file now.
    fn bind(config: &SmsConfig) -> Result<Session, String> {
        let password = std::fs::read_to_string(&config.password_file)
            .map_err(|e| format!("{}: {e}", config.password_file.display()))?;
        let bind = bind_transmitter(config, password.trim())?;
        let mut session = Session {
            stream: connect(&config.smsc)?,
            codec: CommandCodec::new(),
            unread: BytesMut::new(),
            sequence: 0,
            idle_since: Instant::now(),
        };
        session.request(Pdu::BindTransmitter(bind), PDU_TIMEOUT)?;
        tracing::info!(smsc = %config.smsc, system_id = %config.system_id, "SMSC bound (transmitter)");
        Ok(session)
    }

    /// Sends `submit`; the SMSC's message id.
    fn submit(&mut self, submit: SubmitSm) -> Result<String, String> {
        let answer = self.request(Pdu::SubmitSm(submit), PDU_TIMEOUT)?;
        Ok(match answer.pdu() {
            Some(Pdu::SubmitSmResp(resp)) => resp.message_id().to_string(),
            _ => String::new(),
        })
    }

    /// Sends `pdu` and waits at most `timeout` for its response, answering what the SMSC
    /// sends meanwhile; a status other than `ESME_ROK` is an error naming it.
    fn request(&mut self, pdu: Pdu, timeout: Duration) -> Result<Command, String> {
        self.sequence = self.sequence.wrapping_add(1).max(1);
        let sequence = self.sequence;
        let asked = pdu_name(&pdu);
        self.write(Command::new(CommandStatus::EsmeRok, sequence, pdu))?;
        let deadline = Instant::now() + timeout;
        loop {
            let command = self.read(deadline, asked)?;
            if command.sequence_number() != sequence || !is_response(command.id()) {
                self.answer(&command)?;
                continue;
            }
            return match command.status() {
                CommandStatus::EsmeRok => Ok(command),
                status => Err(format!(
                    "the SMSC answered {asked} with {status:?} (0x{:08X})",
                    u32::from(status)
                )),
            };
        }
    }

    /// Answers every command the SMSC has sent without being asked, without waiting.
    fn answer_waiting(&mut self) -> Result<(), String> {
        while let Some(command) = self.poll()? {
            self.answer(&command)?;
        }
        Ok(())
    }

    /// Answers what the SMSC asks of its own accord: `enquire_link`, and `unbind`
    /// (answered, then the session ends with an error).
    fn answer(&mut self, command: &Command) -> Result<(), String> {
        let reply = |pdu: Pdu| Command::new(CommandStatus::EsmeRok, command.sequence_number(), pdu);
        match command.id() {
            CommandId::EnquireLink => self.write(reply(Pdu::EnquireLinkResp)),
            CommandId::Unbind => {
                let _ = self.write(reply(Pdu::UnbindResp));
                Err("unbound by the SMSC".into())
            }
            other => {
                tracing::debug!("SMSC sent {other:?}: ignored");
                Ok(())
            }
        }
    }

    fn write(&mut self, command: Command) -> Result<(), String> {
        let mut bytes = BytesMut::new();
        (self.codec.encode(&command, &mut bytes)).map_err(|e| format!("encode: {e}"))?;
        (self.stream.set_write_timeout(Some(PDU_TIMEOUT)))
            .and_then(|()| self.stream.write_all(&bytes))
            .map_err(|e| format!("send: {e}"))
    }

    /// The next command, waiting until `deadline` for it (the answer to `asked`).
    fn read(&mut self, deadline: Instant, asked: &str) -> Result<Command, String> {
        loop {
            if let Some(command) = self.decoded()? {
                return Ok(command);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!("no answer to {asked} within {PDU_TIMEOUT:?}"));
            }
            let filled = (self.stream.set_read_timeout(Some(left))).and_then(|()| self.fill());
            match filled {
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                other => other.map_err(|e| format!("read: {e}"))?,
            }
        }
    }

    /// A command already received, if there is one, without waiting.
    fn poll(&mut self) -> Result<Option<Command>, String> {
        if let Some(command) = self.decoded()? {
            return Ok(Some(command));
        }
        let filled = (self.stream.set_nonblocking(true)).and_then(|()| self.fill());
        let blocking = self.stream.set_nonblocking(false);
        match filled {
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            other => other.map_err(|e| format!("read: {e}"))?,
        }
        blocking.map_err(|e| format!("socket: {e}"))?;
        self.decoded()
    }

    /// Reads what the socket has (at least a byte); the SMSC closing is an error.
    fn fill(&mut self) -> std::io::Result<()> {
        let mut chunk = [0u8; 4096];
        let n = self.stream.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::Error::new(
                ErrorKind::UnexpectedEof,
                "closed by the SMSC",
            ));
        }
        self.unread.extend_from_slice(&chunk[..n]);
        self.idle_since = Instant::now();
        Ok(())
    }

    /// The next whole command among the bytes read.
    fn decoded(&mut self) -> Result<Option<Command>, String> {
        (self.codec.decode(&mut self.unread)).map_err(|e| format!("from the SMSC: {e}"))
    }
}

/// A connection to `smsc` (`host:port`), trying each of its addresses.
fn connect(smsc: &str) -> Result<TcpStream, String> {
    let addresses = smsc.to_socket_addrs().map_err(|e| format!("{smsc}: {e}"))?;
    let mut last = format!("{smsc}: no address");
    for address in addresses {
        match TcpStream::connect_timeout(&address, PDU_TIMEOUT) {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(e) => last = format!("connect {address}: {e}"),
        }
    }
    Err(last)
}

fn is_response(id: CommandId) -> bool {
    u32::from(id) & 0x8000_0000 != 0
}

/// The SMPP name of a request this module sends.
fn pdu_name(pdu: &Pdu) -> &'static str {
    match pdu {
        Pdu::BindTransmitter(_) => "bind_transmitter",
        Pdu::SubmitSm(_) => "submit_sm",
        Pdu::EnquireLink => "enquire_link",
        Pdu::Unbind => "unbind",
        _ => "a request",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn encoded(pdu: Pdu) -> Vec<u8> {
        let mut bytes = BytesMut::new();
        let command = Command::new(CommandStatus::EsmeRok, 7, pdu);
        CommandCodec::new()
            .encode(command, &mut bytes)
            .expect("encoded");
        bytes.to_vec()
    }

    /// A PDU with sequence number 7: the header before `body`.
    fn pdu_bytes(command_id: u32, body: &[u8]) -> Vec<u8> {
        let length = u32::try_from(16 + body.len()).expect("small");
        [
            &length.to_be_bytes()[..],
            &command_id.to_be_bytes(),
            &0u32.to_be_bytes(),
            &7u32.to_be_bytes(),
            body,
        ]
        .concat()
    }

    #[test]
    fn a_receipt_says_the_amount_and_the_confirmation_number() {
        let sms = receipt("k", "2065550101", "476497846503", 2500, "840").expect("receipt");
        assert_eq!(
            sms.body,
            "Replenishment of 25.00 credited to your prepaid account. Confirmation 476497846503."
        );
        assert_eq!(
            (
                sms.channel.as_str(),
                sms.to.as_slice(),
                sms.subject.as_str()
            ),
            ("sms", &["2065550101".to_owned()][..], "receipt")
        );
        assert!(receipt("k", "not-a-min", "1", 1, "392").is_err());
    }

    #[test]
    fn a_failure_says_why_in_plain_words() {
        let failed = |reason| {
            failure("k", "2065550101", 2500, "840", reason)
                .expect("failure")
                .body
        };
        assert_eq!(
            failed("insufficient_funds"),
            "Your replenishment of 25.00 did not go through: insufficient funds in your bank account. Nothing was taken from your account."
        );
        assert_eq!(
            failed("bank_unavailable"),
            "Your replenishment of 25.00 did not go through: your bank did not answer. If your bank took the amount, it is being given back."
        );
        assert!(failed("declined_05").contains(": it was declined."));
        assert!(failed("some_new_reason").contains(": some new reason."));
        let reasons = [
            "bank_limit_exceeded",
            "bank_declined",
            "debit_account_refused",
            "debit_card_expired",
            "debit_not_permitted",
            "daily_count_exceeded",
            "over_maximum",
            "bad_amount",
            "unsupported_currency",
            "not_activated",
            "blocked",
            "expired",
            "unknown_account",
            "no_engine",
        ];
        for reason in reasons {
            // The longest amount the API takes still fits one message.
            let body = failure("k", "1", 99_999_999_999, "840", reason)
                .expect(reason)
                .body;
            assert!(!body.contains('_'), "{body}");
        }
        assert!(failure("k", "1", 1, "840", "caf\u{e9}").is_err());
    }

    #[test]
    fn amounts_take_their_currency_s_decimals() {
        let body = |amount, currency| {
            receipt("k", "1", "1", amount, currency)
                .expect("receipt")
                .body
        };
        assert!(body(2500, "840").contains(" 25.00 "));
        assert!(body(5, "840").contains(" 0.05 "));
        assert!(body(2500, "392").contains(" 2500 "), "yen: no decimals");
        assert!(body(2500, "048").contains(" 2.500 "), "dinar: three");
        assert!(body(2500, "999").contains(" 25.00 "), "unknown: two");
    }

    #[test]
    fn texts_stay_in_the_gsm_default_alphabet_and_one_message() {
        assert!(check_text("Confirmation 123. Thanks! (25.00) #1 50% 'a' \"b\" <c=d>?").is_ok());
        for bad in [
            "price $5",
            "a@b",
            "x_y",
            "[1]",
            "{1}",
            "a\\b",
            "a^b",
            "a~b",
            "a|b",
            "a`b",
            "caf\u{e9}",
            "\u{20ac}5",
            "line\nbreak",
            "tab\t",
        ] {
            assert!(check_text(bad).is_err(), "{bad:?}");
        }
        assert!(check_text(&"a".repeat(160)).is_ok());
        assert!(check_text(&"a".repeat(161)).is_err());
    }

    #[test]
    fn submit_sm_goes_in_default_mode_and_alphabet() {
        let submit = submit_sm(&config(), "2065550101", "Hi").expect("submit_sm");
        let body: Vec<u8> = [
            &b"\0"[..],      // service_type: the SMSC's default
            &[0, 0],         // source_addr_ton, source_addr_npi: unknown
            b"7777\0",       // source_addr
            &[0, 1],         // dest_addr_ton unknown, dest_addr_npi ISDN
            b"2065550101\0", // destination_addr
            &[0, 0, 0],      // esm_class 0, protocol_id, priority_flag
            b"\0\0",         // schedule_delivery_time, validity_period: now, the default
            &[0],            // registered_delivery: no receipt
            &[0],            // replace_if_present_flag
            &[0],            // data_coding: the SMSC's default alphabet
            &[0],            // sm_default_msg_id
            &[2],            // sm_length
            b"Hi",           // short_message
        ]
        .concat();
        assert_eq!(
            encoded(Pdu::SubmitSm(submit)),
            pdu_bytes(0x0000_0004, &body)
        );
        assert!(submit_sm(&config(), "2065550101", "50% off_").is_err());
    }

    #[test]
    fn bind_transmitter_says_smpp_3_4_and_hides_a_bad_password() {
        let mut config = config();
        config.system_type = "VMA".into();
        let bind = bind_transmitter(&config, "s3cret").expect("bind");
        let body: Vec<u8> = [
            &b"replenish\0"[..], // system_id
            b"s3cret\0",         // password
            b"VMA\0",            // system_type
            &[0x34],             // interface_version
            &[0, 0],             // addr_ton, addr_npi
            b"\0",               // address_range
        ]
        .concat();
        assert_eq!(
            encoded(Pdu::BindTransmitter(bind)),
            pdu_bytes(0x0000_0002, &body)
        );
        let refused = bind_transmitter(&config, "much-too-long-secret").err();
        let refused = refused.expect("a password over 8 characters");
        assert!(!refused.contains("secret"), "{refused}");
    }

    #[test]
    fn a_response_has_the_high_bit() {
        assert!(is_response(CommandId::SubmitSmResp));
        assert!(is_response(CommandId::GenericNack));
        assert!(!is_response(CommandId::EnquireLink));
    }
}
