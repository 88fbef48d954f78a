//! Transaction keys and content fingerprints. The key says which transaction a message
//! belongs to (repeats and retransmissions carry their original's key); the fingerprint
//! says whether a second message with that key is the same transaction or a different
//! one that reused the key (answered `94`). Fingerprints are SHA-256 digests, so the
//! journal keeps no account number of a debit card it only saw in passing.

use ring::digest;

use crate::wire::iso8583::Message;

/// Acquirer id + DE41 + DE11 + DE7 + message class, `|`-separated.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct TransactionKey(pub String);

impl TransactionKey {
    /// The key of `message`, with `acquirer_id` from DE32 when present, else from the link.
    pub fn of(message: &Message, link_acquirer_id: &str) -> TransactionKey {
        TransactionKey::with_class(message, link_acquirer_id, message.mti().class())
    }

    /// The key `message` would have in message class `class` (a reversal looks for its
    /// original's key in class 2).
    pub fn with_class(message: &Message, link_acquirer_id: &str, class: u8) -> TransactionKey {
        let field = |n| message.text(n).unwrap_or("").trim();
        TransactionKey::from_parts(
            acquirer_of(message, link_acquirer_id),
            field(41),
            field(11),
            field(7),
            class,
        )
    }

    /// The key of the given acquirer id, DE41, DE11, DE7 and message class.
    pub fn from_parts(
        acquirer: &str,
        terminal: &str,
        stan: &str,
        time: &str,
        class: u8,
    ) -> TransactionKey {
        TransactionKey(format!("{acquirer}|{terminal}|{stan}|{time}|{class}"))
    }

    /// The key under which an advice that reuses this key with other content is kept
    /// apart (with the first 16 hex digits of its fingerprint).
    pub fn apart(&self, fingerprint: &str) -> TransactionKey {
        let digits = fingerprint.get(..16).unwrap_or(fingerprint);
        TransactionKey(format!("{}#{digits}", self.0))
    }

    /// The key as bytes, for index lookups.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

/// The acquirer id of a message: DE32 when present, else the link's.
pub fn acquirer_of<'a>(message: &'a Message, link_acquirer_id: &'a str) -> &'a str {
    message.text(32).map_or(link_acquirer_id, str::trim)
}

/// Fields whose content makes two messages with one key the same transaction.
const CONTENT_FIELDS: [u8; 13] = [2, 3, 4, 7, 11, 12, 13, 32, 37, 41, 42, 49, 103];

/// SHA-256 over the MTI class and the content fields of a message, hex-encoded.
pub fn fingerprint(message: &Message) -> String {
    let mut context = digest::Context::new(&digest::SHA256);
    context.update(&[message.mti().class()]);
    for number in CONTENT_FIELDS {
        context.update(&[number]);
        match message.get(number) {
            Some(value) => {
                context.update(&(value.len() as u32).to_be_bytes());
                context.update(value);
            }
            None => context.update(&[0xFF; 4]),
        }
    }
    // Reversal content: hashed only when present, so that other messages' fingerprints
    // stay what they were before reversals were handled.
    for number in [90u8, 95] {
        if let Some(value) = message.get(number) {
            context.update(&[number]);
            context.update(&(value.len() as u32).to_be_bytes());
            context.update(value);
        }
    }
    hex::encode(context.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::iso8583::Mti;

    fn request(mti: &str) -> Message {
        let mut m = Message::new(Mti::new(mti.as_bytes()).expect("mti"));
        for (n, v) in [
            (2, "4761739001010010"),
            (4, "000000002500"),
            (7, "1123095500"),
            (11, "000417"),
            (41, "TERM0001"),
        ] {
            m.set(n, v);
        }
        m
    }

    #[test]
    fn repeats_share_their_originals_key_and_fingerprint() {
        let (original, repeat) = (request("0220"), request("0221"));
        assert_eq!(
            TransactionKey::of(&original, "77"),
            TransactionKey::of(&repeat, "77")
        );
        assert_eq!(fingerprint(&original), fingerprint(&repeat));
        assert_eq!(
            TransactionKey::of(&original, "77").0,
            "77|TERM0001|000417|1123095500|2"
        );
    }

    #[test]
    fn de32_overrides_the_link_id_and_content_changes_the_fingerprint() {
        let mut m = request("0200");
        m.set(32, "12345");
        assert!(TransactionKey::of(&m, "77").0.starts_with("12345|"));
        let before = fingerprint(&m);
        m.set(4, "000000002501");
        assert_ne!(before, fingerprint(&m));
    }

    #[test]
    fn an_absent_field_differs_from_an_empty_one() {
        let mut with_empty = request("0200");
        with_empty.set(103, "");
        assert_ne!(fingerprint(&request("0200")), fingerprint(&with_empty));
    }
}
