//! The messages the switch sends to a prepaid engine (DESIGN.md §4, outbound): the
//! `0220` credit advice and its `0221` repeat, and `0800` network management. A credit
//! carries DE3, DE4, DE7, DE11, DE37, DE49, DE62 (the confirmation number: the engine's
//! idempotency key) and DE102 (the MIN); never a PAN or track data. The `0220` of a
//! PIN sale carries DE63 (the voucher's serial, or a generated PIN) and no DE102. DE11 is derived
//! from the confirmation number so that every send of one credit, before and after a
//! restart, carries the same DE11 and DE62.

use chrono::{DateTime, Utc};

use crate::durable::record::{Credit, ReversalAdvice};
use crate::wire::iso8583::{Message, Mti};

/// DE70 codes of `0800`.
pub const SIGN_ON: &str = "001";
/// DE70: sign-off.
pub const SIGN_OFF: &str = "002";
/// DE70: echo test.
pub const ECHO: &str = "301";

/// DE11 of a credit: the last six digits of its confirmation number.
pub fn credit_stan(confirmation: &str) -> &str {
    &confirmation[confirmation.len().saturating_sub(6)..]
}

/// DE7, `MMDDhhmmss` UTC.
pub fn transmission_time(now: DateTime<Utc>) -> String {
    now.format("%m%d%H%M%S").to_string()
}

/// A credit advice: `0220` the first time, `0221` for every repeat.
pub fn credit(credit: &Credit, repeat: bool, now: DateTime<Utc>) -> Message {
    let mut message = Message::new(mti(if repeat { b"0221" } else { b"0220" }));
    message.set(3, credit.processing_code.clone());
    message.set(4, format!("{:012}", credit.amount));
    message.set(7, transmission_time(now));
    message.set(11, credit_stan(&credit.confirmation).to_owned());
    message.set(37, credit.rrn.clone());
    message.set(49, credit.currency.clone());
    message.set(62, credit.confirmation.clone());
    if let Some(voucher) = &credit.voucher {
        // A PIN sale: the serial (a generated PIN's sale: the caller puts the PIN).
        message.set(63, voucher.serial.clone());
    }
    if !credit.min.is_empty() {
        message.set(102, credit.min.clone());
    }
    message
}

/// A network management request with DE70 `code` and DE11 `stan`.
pub fn network(code: &str, stan: u32, now: DateTime<Utc>) -> Message {
    let mut message = Message::new(mti(b"0800"));
    message.set(7, transmission_time(now));
    message.set(11, format!("{:06}", stan % 1_000_000));
    message.set(70, code.to_owned());
    message
}

/// What a reply is matched to its request by: the message class, DE11 and DE62 (a
/// credit and its reversal share DE11 and DE62, never the class).
pub type MatchKey = (u8, String, String);

/// The key a reply is matched by: class, DE11 and DE62 (empty for network management).
pub fn match_key(message: &Message) -> MatchKey {
    let field = |n| message.text(n).unwrap_or("").to_owned();
    (message.mti().class(), field(11), field(62))
}

/// A reversal advice: `0420` the first time, `0421` for every repeat. DE4 is the
/// credit's amount, DE95 (present for a partial reversal) what remains of it, DE90 the
/// credit's original data elements.
pub fn reversal(advice: &ReversalAdvice, repeat: bool, now: DateTime<Utc>) -> Message {
    let mut message = credit(&advice.credit, false, now);
    message.set_mti(mti(if repeat { b"0421" } else { b"0420" }));
    let stan = credit_stan(&advice.credit.confirmation);
    message.set(90, format!("0220{stan:0>6}{:0<32}", ""));
    if advice.remaining > 0 {
        message.set(
            95,
            format!("{:012}{:012}C{:08}C{:08}", advice.remaining, 0, 0, 0),
        );
    }
    message
}

fn mti(digits: &[u8; 4]) -> Mti {
    match Mti::new(digits) {
        Some(mti) => mti,
        None => unreachable!("constant MTIs are valid"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Credit {
        Credit {
            engine: "prepaid".into(),
            min: "2065550101".into(),
            amount: 2500,
            currency: "840".into(),
            confirmation: "476497846503".into(),
            processing_code: "280000".into(),
            rrn: "532709000417".into(),
            voucher: None,
        }
    }

    #[test]
    fn a_credit_advice_carries_the_outbound_profile_and_no_pan() {
        let now = DateTime::from_timestamp(1_795_433_178, 0).expect("time");
        let first = credit(&sample(), false, now);
        assert_eq!(first.mti().as_str(), "0220");
        assert_eq!(first.text(4), Some("000000002500"));
        assert_eq!(first.text(11), Some("846503"));
        assert_eq!(first.text(62), Some("476497846503"));
        assert_eq!(first.text(102), Some("2065550101"));
        assert!(first.get(2).is_none() && first.get(35).is_none());
        let repeat = credit(&sample(), true, now);
        assert_eq!(repeat.mti().as_str(), "0221");
        assert_eq!(match_key(&repeat), match_key(&first), "same DE11 and DE62");
    }
}
