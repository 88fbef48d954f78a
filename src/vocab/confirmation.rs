//! Confirmation numbers (DE62): 12 digits, the last a Luhn check digit, unique and not
//! guessable. The first 11 digits are a keyed permutation of a counter over the 10^11
//! possible values (a Feistel network on 37 bits with HMAC-SHA-256 rounds, cycle-walked
//! into range), so numbers never repeat until 10^11 have been issued (24 months at 1,500
//! a second, sustained) and knowing one says nothing about the next without the key.

use ring::hmac;

/// Count of distinct 11-digit bodies.
pub const SPACE: u64 = 100_000_000_000;
const HALF_BITS: u32 = 19;
const BITS: u32 = 37; // 2^37 > 10^11
const ROUNDS: u8 = 4;

/// Issues confirmation numbers from a counter and a secret key.
pub struct ConfirmationNumbers {
    key: hmac::Key,
}

impl ConfirmationNumbers {
    /// A generator keyed by `secret` (at least 16 bytes, kept in the data directory).
    pub fn new(secret: &[u8]) -> ConfirmationNumbers {
        ConfirmationNumbers {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
        }
    }

    /// The confirmation number for counter value `counter` (taken modulo 10^11).
    pub fn number(&self, counter: u64) -> String {
        let body = self.permute(counter % SPACE);
        let digits = format!("{body:011}");
        let check = luhn_check_digit(digits.as_bytes());
        format!("{digits}{check}")
    }

    /// The counter value (modulo 10^11) that `confirmation` was issued for, if it is
    /// 12 digits with a valid check digit: the permutation run backwards.
    pub fn counter_of(&self, confirmation: &str) -> Option<u64> {
        let digits = confirmation.as_bytes();
        if digits.len() != 12 || !luhn_valid(digits) {
            return None;
        }
        let body: u64 = confirmation.get(..11)?.parse().ok()?;
        let mut x = body;
        loop {
            x = self.feistel_inverse(x);
            if x < SPACE {
                return Some(x);
            }
        }
    }

    /// A permutation of 0..SPACE: Feistel on 37 bits, repeated while out of range.
    fn permute(&self, value: u64) -> u64 {
        let mut x = value;
        loop {
            x = self.feistel(x);
            if x < SPACE {
                return x;
            }
        }
    }

    fn feistel(&self, x: u64) -> u64 {
        let low_bits = BITS - HALF_BITS; // 18
        let (mut left, mut right) = (x >> low_bits, x & ((1 << low_bits) - 1));
        // Unbalanced halves (19 and 18 bits): alternate the widths each round.
        let mut widths = (HALF_BITS, low_bits);
        for round in 0..ROUNDS {
            let mixed = left ^ (self.round(round, right) & ((1 << widths.0) - 1));
            (left, right) = (right, mixed);
            widths = (widths.1, widths.0);
        }
        (left << widths.1) | right
    }

    /// [`Self::feistel`] backwards: the rounds in reverse order, each undoing its mix.
    fn feistel_inverse(&self, y: u64) -> u64 {
        let low_bits = BITS - HALF_BITS;
        let (mut left, mut right) = (y >> low_bits, y & ((1 << low_bits) - 1));
        // After an even number of rounds the widths are the starting ones again.
        let mut widths = (HALF_BITS, low_bits);
        for round in (0..ROUNDS).rev() {
            let earlier = right ^ (self.round(round, left) & ((1 << widths.1) - 1));
            (left, right) = (earlier, left);
            widths = (widths.1, widths.0);
        }
        (left << widths.1) | right
    }

    fn round(&self, round: u8, half: u64) -> u64 {
        let mut input = [0u8; 9];
        input[0] = round;
        input[1..].copy_from_slice(&half.to_be_bytes());
        let tag = hmac::sign(&self.key, &input);
        let mut word = [0u8; 8];
        word.copy_from_slice(&tag.as_ref()[..8]);
        u64::from_be_bytes(word)
    }
}

/// The Luhn (mod 10) check digit for ASCII digits `body`.
pub fn luhn_check_digit(body: &[u8]) -> char {
    let sum = luhn_sum(body, true);
    char::from(b'0' + ((10 - sum % 10) % 10) as u8)
}

/// Whether ASCII digits `number` end in a valid Luhn check digit.
pub fn luhn_valid(number: &[u8]) -> bool {
    number.len() >= 2 && number.iter().all(u8::is_ascii_digit) && luhn_sum(number, false) % 10 == 0
}

/// Luhn sum; `double_last` is true when the check digit is not yet appended.
fn luhn_sum(digits: &[u8], double_last: bool) -> u32 {
    digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &c)| {
            let d = u32::from(c - b'0');
            if (i % 2 == 0) == double_last {
                let twice = d * 2;
                if twice > 9 { twice - 9 } else { twice }
            } else {
                d
            }
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn luhn_known_values() {
        assert!(luhn_valid(b"4761739001010010"));
        assert!(luhn_valid(b"79927398713"));
        assert!(!luhn_valid(b"79927398710"));
        assert_eq!(luhn_check_digit(b"7992739871"), '3');
        assert!(!luhn_valid(b"4761X39001010010"));
    }

    #[test]
    fn numbers_are_twelve_digits_with_a_valid_check_digit() {
        let numbers = ConfirmationNumbers::new(b"test key of sixteen+ bytes");
        for counter in [0, 1, 2, 99, SPACE - 1, SPACE, 123_456_789] {
            let n = numbers.number(counter);
            assert_eq!(n.len(), 12, "{n}");
            assert!(luhn_valid(n.as_bytes()), "{n}");
        }
    }

    #[test]
    fn consecutive_counters_give_distinct_scattered_numbers() {
        let numbers = ConfirmationNumbers::new(b"test key of sixteen+ bytes");
        let issued: Vec<String> = (0..50_000).map(|c| numbers.number(c)).collect();
        let distinct: HashSet<&String> = issued.iter().collect();
        assert_eq!(distinct.len(), issued.len());
        // Not sequential: neighbours differ in more than the last digits.
        let close = issued.windows(2).filter(|w| w[0][..6] == w[1][..6]).count();
        assert!(
            close < 50,
            "{close} neighbouring pairs share their first 6 digits"
        );
    }

    #[test]
    fn a_confirmation_number_gives_back_its_counter() {
        let numbers = ConfirmationNumbers::new(b"test key of sixteen+ bytes");
        for counter in (0..2_000).chain([SPACE - 1, 123_456_789, 99_999_999_999]) {
            let number = numbers.number(counter);
            assert_eq!(numbers.counter_of(&number), Some(counter), "{number}");
        }
        let other = ConfirmationNumbers::new(b"another key, long enough");
        let number = numbers.number(42);
        assert_ne!(other.counter_of(&number), Some(42));
        for bad in [
            "",
            "12345678901",
            "1234567890123",
            "12345678901X",
            "000000000001",
        ] {
            assert_eq!(numbers.counter_of(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_key_changes_the_sequence() {
        let a = ConfirmationNumbers::new(b"key number one, long enough");
        let b = ConfirmationNumbers::new(b"key number two, long enough");
        assert_ne!(a.number(7), b.number(7));
        assert_eq!(a.number(7), a.number(7));
    }

    #[test]
    fn the_permutation_is_a_bijection_on_a_sample_walk() {
        // The Feistel network is invertible by construction; spot-check that cycle
        // walking never maps two counters to one number over a dense window.
        let numbers = ConfirmationNumbers::new(b"bijection check key 0123");
        let bodies: HashSet<u64> = (SPACE - 20_000..SPACE)
            .map(|c| numbers.permute(c))
            .collect();
        assert_eq!(bodies.len(), 20_000);
        assert!(bodies.iter().all(|&b| b < SPACE));
    }
}
