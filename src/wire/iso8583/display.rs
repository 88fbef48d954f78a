//! How messages are shown to people: `Debug` and `Display` with account numbers masked
//! (first 6, last 4) and secrets (track data, PIN block, EMV data, the PIN a sale
//! answers in DE63) redacted to their length, and the one-line-per-field listing of
//! `decode --pretty`.

use std::fmt::{self, Write as _};

use super::message::{FieldSet, Masking, Message};
use super::spec::Spec;

/// An account number with all but the first 6 and last 4 digits hidden. Shorter
/// numbers show less, so that at most about half of any number is visible: 9 to 11
/// digits show the last 4, 8 or fewer show nothing.
pub fn mask_pan(pan: &[u8]) -> String {
    let text = String::from_utf8_lossy(pan);
    let chars: Vec<char> = text.chars().collect();
    let n = chars.len();
    let (head, tail) = match n {
        0..=8 => (0, 0),
        9..=11 => (0, 4),
        _ => (6, 4),
    };
    chars
        .iter()
        .enumerate()
        .map(|(i, &c)| if i < head || i >= n - tail { c } else { '*' })
        .collect()
}

impl Masking {
    /// One field's value as it may be shown: masked, redacted, text, or hex for bytes
    /// that are not printable.
    pub fn show(&self, number: u8, value: &[u8]) -> String {
        if self.redact.contains(number) {
            return format!("[redacted, {} bytes]", value.len());
        }
        if self.pan.contains(number) {
            return mask_pan(value);
        }
        match std::str::from_utf8(value) {
            Ok(text) if text.bytes().all(|b| (0x20..0x7F).contains(&b)) => text.to_owned(),
            _ => format!("0x{}", hex::encode_upper(value)),
        }
    }

    /// This masking with the default's fields masked and redacted as well: what a tool
    /// that shows a link's traffic uses, whatever the link's spec relaxed.
    pub fn at_least_default(&self) -> Masking {
        let union = |a: FieldSet, b: FieldSet| {
            let (a, b) = (a.words(), b.words());
            FieldSet::from_words([a[0] | b[0], a[1] | b[1], a[2] | b[2]])
        };
        let default = Masking::default();
        Masking {
            pan: union(self.pan, default.pan),
            redact: union(self.redact, default.redact),
        }
    }
}

/// DE3 of a PIN sale at the point of sale (BACKOFFICE.md §5).
const PIN_SALE: &[u8] = b"000000";

/// The field that carries a sold PIN: DE63 of any message of a PIN sale (its answer,
/// the engine's advice of a generated PIN, their repeats and reversals).
pub fn carries_pin(message: &Message, number: u8) -> bool {
    number == 63
        && message
            .get(3)
            .is_some_and(|code| code.trim_ascii() == PIN_SALE)
}

impl Masking {
    /// Field `number` of `message` as it may be shown: [`Masking::show`], and the PIN
    /// of a sale redacted whatever the masking says.
    pub fn show_in(&self, message: &Message, number: u8, value: &[u8]) -> String {
        if carries_pin(message, number) {
            return format!("[redacted, {} bytes]", value.len());
        }
        self.show(number, value)
    }
}

fn shown(message: &Message, number: u8, value: &[u8]) -> String {
    message.masking().show_in(message, number, value)
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        map.entry(&"mti", &self.mti());
        for (number, value) in self.fields() {
            map.entry(&number, &shown(self, number, value));
        }
        map.finish()
    }
}

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.mti())?;
        for (number, value) in self.fields() {
            write!(f, " {number}={}", shown(self, number, value))?;
        }
        Ok(())
    }
}

/// One line per field with the spec's field names, sensitive fields masked:
/// what `replenish decode --pretty` prints.
pub fn pretty(spec: &Spec, message: &Message) -> String {
    let mut out = format!("MTI  {}\n", message.mti());
    for (number, value) in message.fields() {
        let name = spec
            .field(number)
            .map_or("(undefined)", |f| f.name.as_str());
        let _ = writeln!(
            out,
            "{number:>3}  {name:<42} {}",
            shown(message, number, value)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::iso8583::Mti;

    #[test]
    fn pans_show_first_six_and_last_four() {
        assert_eq!(mask_pan(b"4761739001010010"), "476173******0010");
        assert_eq!(mask_pan(b"6011000990139424123"), "601100*********4123");
        assert_eq!(mask_pan(b"12345678901"), "*******8901");
        assert_eq!(mask_pan(b"12345678"), "********");
    }

    #[test]
    fn debug_and_display_never_show_secrets() {
        let mut m = Message::new(Mti::new(b"0200").expect("mti"));
        m.set(2, "4761739001010010");
        m.set(35, "4761739001010010=25122011143857589");
        m.set(52, vec![0x12u8, 0x34, 0x56, 0x78, 0x9A, 0xBC, 0xDE, 0xF0]);
        m.set(55, vec![0x9Fu8, 0x02]);
        m.set(4, "000000001000");
        for text in [format!("{m:?}"), m.to_string()] {
            assert!(!text.contains("4761739001010010"), "{text}");
            assert!(!text.contains("123456"), "{text}");
            assert!(!text.contains("9F02"), "{text}");
            assert!(text.contains("476173******0010"), "{text}");
            assert!(text.contains("000000001000"), "{text}");
        }
    }
}
