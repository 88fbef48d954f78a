//! Character sets and packings below the field level: EBCDIC (code page 037) to and
//! from ASCII, packed BCD, and the character classes of ISO 8583 (`n`, `an`, `ans`,
//! `z`, `x+n`, ...). Everything here works on byte slices and knows nothing of fields.

use bytes::BufMut;
use serde::Deserialize;

/// An ISO 8583 data element class: which characters a field's value may contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    /// Numeric digits `0-9`.
    N,
    /// Alphabetic characters and space.
    A,
    /// Alphabetic, numeric and space.
    An,
    /// Special (printable, not alphanumeric) characters.
    S,
    /// Alphabetic and special characters.
    As,
    /// Numeric and special characters.
    Ns,
    /// Any printable ASCII character.
    Ans,
    /// Track 2/3 code set: digits, the field separator `=` or `D`.
    Z,
    /// A sign `C` (credit) or `D` (debit) followed by digits.
    Xn,
    /// Binary data, any byte.
    B,
}

impl Class {
    /// Whether `value` is made only of characters this class allows.
    /// Returns the index of the first offending byte.
    #[inline]
    pub fn first_invalid(self, value: &[u8]) -> Option<usize> {
        if self.allows_all(value) {
            None
        } else {
            self.first_refused(value)
        }
    }

    /// Whether every byte of `value` is allowed. Nearly every value passes, so this
    /// seeks no position and takes no early exit; the two most common classes are ranges,
    /// checked eight bytes at a time.
    #[inline(always)]
    pub(crate) fn allows_all(self, value: &[u8]) -> bool {
        match self {
            Class::B => true,
            Class::N => all_within::<b'0', b'9'>(value),
            Class::Ans => all_within::<0x20, 0x7E>(value),
            Class::An => all_words(value, |word| {
                !(digits(word) | letters(word) | within(word, b' ', b' ')) & HIGH_BITS
            }),
            Class::Z => all_words(value, |word| {
                !(digits(word) | within(word, b'=', b'=') | within(word, b'D', b'D')) & HIGH_BITS
            }),
            Class::Xn => match value.split_first() {
                None => true,
                Some((b'C' | b'D', digits)) => all_within::<b'0', b'9'>(digits),
                Some(_) => false,
            },
            _ => {
                let allowed = self.table();
                value
                    .iter()
                    .fold(true, |all, &b| all & allowed[usize::from(b)])
            }
        }
    }

    /// The index of the first byte the class refuses, once a value has failed.
    #[cold]
    #[inline(never)]
    fn first_refused(self, value: &[u8]) -> Option<usize> {
        match (self, value.split_first()) {
            (Class::Xn, Some((b'C' | b'D', digits))) => digits
                .iter()
                .position(|b| !b.is_ascii_digit())
                .map(|i| i + 1),
            (Class::Xn, Some(_)) => Some(0),
            _ => {
                let allowed = self.table();
                value.iter().position(|&b| !allowed[usize::from(b)])
            }
        }
    }

    /// Which bytes the class allows, as a lookup table (one load per byte instead of
    /// a chain of range tests: this check runs on every byte the switch decodes).
    fn table(self) -> &'static [bool; 256] {
        static N: [bool; 256] = table(Class::N);
        static A: [bool; 256] = table(Class::A);
        static AN: [bool; 256] = table(Class::An);
        static S: [bool; 256] = table(Class::S);
        static AS: [bool; 256] = table(Class::As);
        static NS: [bool; 256] = table(Class::Ns);
        static ANS: [bool; 256] = table(Class::Ans);
        static Z: [bool; 256] = table(Class::Z);
        static ANY: [bool; 256] = [true; 256];
        match self {
            Class::N => &N,
            Class::A => &A,
            Class::An => &AN,
            Class::S => &S,
            Class::As => &AS,
            Class::Ns => &NS,
            Class::Ans => &ANS,
            Class::Z => &Z,
            Class::Xn | Class::B => &ANY,
        }
    }
}

const LOW_BITS: u64 = 0x0101_0101_0101_0101;
const HIGH_BITS: u64 = 0x8080_8080_8080_8080;

/// `b` in every byte of a word.
const fn splat(b: u8) -> u64 {
    b as u64 * LOW_BITS
}

/// The high bit of each byte of `word` set where that byte lies in `low..=high`
/// (`0 < low <= high < 0x80`; a byte with its high bit set never does). With the high
/// bits cleared, the adds cannot carry from one byte into the next.
#[inline(always)]
fn within(word: u64, low: u8, high: u8) -> u64 {
    let seven = word & !HIGH_BITS;
    (seven + splat(0x80 - low)) & !(seven + splat(0x7F - high)) & !word & HIGH_BITS
}

/// High bits where a byte is a digit.
#[inline(always)]
fn digits(word: u64) -> u64 {
    within(word, b'0', b'9')
}

/// High bits where a byte is a letter of either case (setting bit 5 maps `A-Z` onto
/// `a-z` and nothing else onto it).
#[inline(always)]
fn letters(word: u64) -> u64 {
    within(word | splat(0x20), b'a', b'z')
}

/// Whether every byte of `value` lies in `LOW..=HIGH` (`0 < LOW <= HIGH < 0x80`).
#[inline]
fn all_within<const LOW: u8, const HIGH: u8>(value: &[u8]) -> bool {
    // With each byte's high bit cleared, adding at most 0x7F never carries into the next
    // byte; the sum's high bit then tells `>= low` and `> high` apart.
    let (to_low, past_high) = (splat(0x80 - LOW), splat(0x7F - HIGH));
    all_words(value, |word| {
        let seven = word & !HIGH_BITS;
        (word | !(seven + to_low) | (seven + past_high)) & HIGH_BITS
    })
}

/// Whether `outside` finds no refused byte in `value`: `outside` gives, for eight bytes
/// read as a `u64`, the high bit of each byte the class refuses. Field values are mostly
/// 3 to 40 bytes: too short for SIMD to pay, so eight bytes are tested at once, the last
/// word overlapping the one before (up to 16 bytes, the usual case, without a loop).
/// Shorter values are padded with their own last byte, which changes nothing.
#[inline(always)]
fn all_words(value: &[u8], outside: impl Fn(u64) -> u64) -> bool {
    let len = value.len();
    let word = |at: usize| u64::from_le_bytes(value[at..at + 8].try_into().unwrap_or_default());
    let half = |at: usize| u32::from_le_bytes(value[at..at + 4].try_into().unwrap_or_default());
    match len {
        // A plain loop with no early exit (nearly every value passes) and no bounds checks.
        17.. => {
            let words = value.chunks_exact(8);
            let words = words.map(|w| u64::from_le_bytes(w.try_into().unwrap_or_default()));
            words.fold(outside(word(len - 8)), |refused, w| refused | outside(w)) == 0
        }
        8..=16 => outside(word(0)) | outside(word(len - 8)) == 0,
        4..8 => outside(u64::from(half(0)) | u64::from(half(len - 4)) << 32) == 0,
        0 => true,
        _ => {
            let at = |i: usize| value.get(i.min(len - 1)).copied().unwrap_or_default();
            outside(splat(at(2)) & !0xFFFF | u64::from(at(1)) << 8 | u64::from(at(0))) == 0
        }
    }
}

/// The lookup table of a class, built at compile time from [`allows`].
const fn table(class: Class) -> [bool; 256] {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = allows(class, b as u8);
        b += 1;
    }
    table
}

/// Whether one character belongs to the class (for every class but `xn` and `b`).
const fn allows(class: Class, b: u8) -> bool {
    let printable = b >= 0x20 && b <= 0x7E;
    let special = printable && !b.is_ascii_alphanumeric();
    match class {
        Class::N => b.is_ascii_digit(),
        Class::A => b.is_ascii_alphabetic() || b == b' ',
        Class::An => b.is_ascii_alphanumeric() || b == b' ',
        Class::S => special,
        Class::As => b.is_ascii_alphabetic() || special,
        Class::Ns => b.is_ascii_digit() || special,
        Class::Ans => printable,
        Class::Z => b.is_ascii_digit() || b == b'=' || b == b'D',
        Class::Xn | Class::B => true,
    }
}

impl Class {
    /// What a value of this class is made of, for error messages ("12 digits").
    pub fn noun(self) -> &'static str {
        match self {
            Class::N => "digits",
            Class::A => "letters",
            Class::An => "alphanumeric characters",
            Class::S => "special characters",
            Class::As => "letters or special characters",
            Class::Ns => "digits or special characters",
            Class::Ans => "printable characters",
            Class::Z => "track characters (digits, '=' or 'D')",
            Class::Xn => "characters of a C/D sign and digits",
            Class::B => "bytes",
        }
    }

    /// The class's name as written in the standard and in spec files.
    pub fn name(self) -> &'static str {
        match self {
            Class::N => "n",
            Class::A => "a",
            Class::An => "an",
            Class::S => "s",
            Class::As => "as",
            Class::Ns => "ns",
            Class::Ans => "ans",
            Class::Z => "z",
            Class::Xn => "xn",
            Class::B => "b",
        }
    }
}

/// Translates EBCDIC bytes to ASCII; `Err` gives the index of the first byte with no
/// ASCII equivalent.
pub fn ebcdic_to_ascii(ebcdic: &[u8]) -> Result<Vec<u8>, usize> {
    ebcdic
        .iter()
        .enumerate()
        .map(|(i, &b)| match EBCDIC_TO_ASCII[usize::from(b)] {
            0 if b != 0 => Err(i),
            a => Ok(a),
        })
        .collect()
}

/// Appends the EBCDIC form of ASCII text; `Err` names the first non-ASCII byte.
pub fn ascii_to_ebcdic(ascii: &[u8], out: &mut impl BufMut) -> Result<(), usize> {
    if let Some(i) = ascii.iter().position(|b| !b.is_ascii()) {
        return Err(i);
    }
    for &b in ascii {
        out.put_u8(ASCII_TO_EBCDIC[usize::from(b)]);
    }
    Ok(())
}

/// The nibble that stands for `=` or `D` in packed track data.
const TRACK_SEPARATOR_NIBBLE: u8 = 0xD;
/// The filler nibble of right-padded BCD.
const FILLER_NIBBLE: u8 = 0xF;

/// Unpacks `digits` digits from packed BCD. With an odd count, the pad nibble sits first
/// (`right_pad == false`, value 0) or last (`right_pad == true`, value 0 or F).
/// `track` admits the separator nibble D, decoded as `=` (the ISO 7813 track 2 form).
/// `Err` gives the index of the first byte holding a bad nibble.
pub fn unpack_bcd(
    packed: &[u8],
    digits: usize,
    right_pad: bool,
    track: bool,
) -> Result<Vec<u8>, usize> {
    let skip = usize::from(digits % 2 == 1 && !right_pad);
    let mut out = Vec::with_capacity(digits);
    for i in 0..packed.len() * 2 {
        let nibble = (packed[i / 2] >> (4 - 4 * (i % 2))) & 0x0F;
        let position = i.checked_sub(skip);
        match position {
            Some(p) if p < digits => out.push(nibble_to_char(nibble, track).ok_or(i / 2)?),
            // A pad nibble: 0, or F on the right.
            _ if nibble == 0 || (right_pad && nibble == FILLER_NIBBLE) => {}
            _ => return Err(i / 2),
        }
    }
    Ok(out)
}

fn nibble_to_char(nibble: u8, track: bool) -> Option<u8> {
    match nibble {
        0..=9 => Some(b'0' + nibble),
        TRACK_SEPARATOR_NIBBLE if track => Some(b'='),
        _ => None,
    }
}

/// Packs digit characters (and `=`/`D` as the separator nibble) into BCD, with the pad
/// nibble of an odd count first (0) or last (F, `right_pad`).
/// `Err` gives the index of the first character that has no nibble.
pub fn pack_bcd(text: &[u8], right_pad: bool, out: &mut impl BufMut) -> Result<(), usize> {
    if let Some(i) = text.iter().position(|&c| char_to_nibble(c).is_none()) {
        return Err(i);
    }
    let odd = text.len() % 2 == 1;
    let lead = (odd && !right_pad).then_some(0);
    let trail = (odd && right_pad).then_some(FILLER_NIBBLE);
    let mut nibbles = lead
        .into_iter()
        .chain(text.iter().filter_map(|&c| char_to_nibble(c)))
        .chain(trail);
    while let Some(high) = nibbles.next() {
        let low = nibbles.next().unwrap_or(0);
        out.put_u8((high << 4) | low);
    }
    Ok(())
}

fn char_to_nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'=' | b'D' => Some(TRACK_SEPARATOR_NIBBLE),
        _ => None,
    }
}

/// Code page 037, generated from Python's `cp037` codec; 0 where the character is not ASCII.
const EBCDIC_TO_ASCII: [u8; 256] = [
    0x00, 0x01, 0x02, 0x03, 0x00, 0x09, 0x00, 0x7F, 0x00, 0x00, 0x00, 0x0B, 0x0C, 0x0D, 0x0E, 0x0F,
    0x10, 0x11, 0x12, 0x13, 0x00, 0x00, 0x08, 0x00, 0x18, 0x19, 0x00, 0x00, 0x1C, 0x1D, 0x1E, 0x1F,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x0A, 0x17, 0x1B, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x06, 0x07,
    0x00, 0x00, 0x16, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x14, 0x15, 0x00, 0x1A,
    0x20, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x2E, 0x3C, 0x28, 0x2B, 0x7C,
    0x26, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x21, 0x24, 0x2A, 0x29, 0x3B, 0x00,
    0x2D, 0x2F, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x2C, 0x25, 0x5F, 0x3E, 0x3F,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x60, 0x3A, 0x23, 0x40, 0x27, 0x3D, 0x22,
    0x00, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x6A, 0x6B, 0x6C, 0x6D, 0x6E, 0x6F, 0x70, 0x71, 0x72, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x7E, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7A, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x5E, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x5B, 0x5D, 0x00, 0x00, 0x00, 0x00,
    0x7B, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x7D, 0x4A, 0x4B, 0x4C, 0x4D, 0x4E, 0x4F, 0x50, 0x51, 0x52, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x5C, 0x00, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5A, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
];
/// ASCII to code page 037, generated from Python's `cp037` codec.
const ASCII_TO_EBCDIC: [u8; 128] = [
    0x00, 0x01, 0x02, 0x03, 0x37, 0x2D, 0x2E, 0x2F, 0x16, 0x05, 0x25, 0x0B, 0x0C, 0x0D, 0x0E, 0x0F,
    0x10, 0x11, 0x12, 0x13, 0x3C, 0x3D, 0x32, 0x26, 0x18, 0x19, 0x3F, 0x27, 0x1C, 0x1D, 0x1E, 0x1F,
    0x40, 0x5A, 0x7F, 0x7B, 0x5B, 0x6C, 0x50, 0x7D, 0x4D, 0x5D, 0x5C, 0x4E, 0x6B, 0x60, 0x4B, 0x61,
    0xF0, 0xF1, 0xF2, 0xF3, 0xF4, 0xF5, 0xF6, 0xF7, 0xF8, 0xF9, 0x7A, 0x5E, 0x4C, 0x7E, 0x6E, 0x6F,
    0x7C, 0xC1, 0xC2, 0xC3, 0xC4, 0xC5, 0xC6, 0xC7, 0xC8, 0xC9, 0xD1, 0xD2, 0xD3, 0xD4, 0xD5, 0xD6,
    0xD7, 0xD8, 0xD9, 0xE2, 0xE3, 0xE4, 0xE5, 0xE6, 0xE7, 0xE8, 0xE9, 0xBA, 0xE0, 0xBB, 0xB0, 0x6D,
    0x79, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x91, 0x92, 0x93, 0x94, 0x95, 0x96,
    0x97, 0x98, 0x99, 0xA2, 0xA3, 0xA4, 0xA5, 0xA6, 0xA7, 0xA8, 0xA9, 0xC0, 0x4F, 0xD0, 0xA1, 0x07,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ebcdic_round_trips_every_ascii_character() {
        let ascii: Vec<u8> = (0u8..128).collect();
        let mut ebcdic = Vec::new();
        ascii_to_ebcdic(&ascii, &mut ebcdic).expect("all ASCII maps");
        assert_eq!(ebcdic_to_ascii(&ebcdic).expect("maps back"), ascii);
    }

    #[test]
    fn ebcdic_known_points() {
        let mut out = Vec::new();
        ascii_to_ebcdic(b"0A a", &mut out).expect("ascii");
        assert_eq!(out, [0xF0, 0xC1, 0x40, 0x81]);
        // 0x4A is the cent sign in cp037: not ASCII.
        assert_eq!(ebcdic_to_ascii(&[0xF1, 0x4A]), Err(1));
        assert_eq!(ascii_to_ebcdic("é".as_bytes(), &mut out), Err(0));
    }

    #[test]
    fn bcd_odd_lengths_pad_on_the_configured_side() {
        let mut left = Vec::new();
        pack_bcd(b"123", false, &mut left).expect("digits");
        assert_eq!(left, [0x01, 0x23]);
        let mut right = Vec::new();
        pack_bcd(b"123", true, &mut right).expect("digits");
        assert_eq!(right, [0x12, 0x3F]);
        assert_eq!(unpack_bcd(&left, 3, false, false).expect("valid"), b"123");
        assert_eq!(unpack_bcd(&right, 3, true, false).expect("valid"), b"123");
    }

    #[test]
    fn bcd_rejects_bad_nibbles_and_pads() {
        assert_eq!(unpack_bcd(&[0x1A], 2, false, false), Err(0));
        assert_eq!(
            unpack_bcd(&[0x51, 0x23], 3, false, false),
            Err(0),
            "left pad must be 0"
        );
        assert_eq!(
            unpack_bcd(&[0x12, 0x3D], 3, true, false),
            Err(1),
            "right pad must be 0 or F"
        );
        assert_eq!(
            unpack_bcd(&[0x4D, 0x12], 4, false, true).expect("track"),
            b"4=12"
        );
        let mut out = Vec::new();
        assert_eq!(pack_bcd(b"12X4", false, &mut out), Err(2));
    }

    #[test]
    fn ranges_eight_at_a_time_agree_with_byte_by_byte() {
        fn check<const LOW: u8, const HIGH: u8>() {
            for len in 0..20 {
                for at in 0..len {
                    for b in 0..=255u8 {
                        let mut value = vec![LOW; len];
                        value[at] = b;
                        let expected = (LOW..=HIGH).contains(&b);
                        assert_eq!(all_within::<LOW, HIGH>(&value), expected, "{len} {at} {b}");
                        value[at] = HIGH;
                        assert!(all_within::<LOW, HIGH>(&value));
                    }
                }
            }
        }
        check::<b'0', b'9'>();
        check::<0x20, 0x7E>();
    }

    #[test]
    fn words_at_a_time_agree_with_the_tables() {
        for class in [Class::An, Class::Z, Class::N, Class::Ans] {
            for len in 0..20 {
                for at in 0..len {
                    for b in 0..=255u8 {
                        let mut value = vec![b'0'; len];
                        value[at] = b;
                        let expected = allows(class, b);
                        assert_eq!(
                            class.allows_all(&value),
                            expected,
                            "{class:?} {len} {at} {b}"
                        );
                        assert_eq!(
                            class.first_invalid(&value),
                            (!expected).then_some(at),
                            "{class:?} {len} {at} {b}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn classes_accept_and_reject() {
        assert_eq!(Class::N.first_invalid(b"00012a"), Some(5));
        assert_eq!(Class::Xn.first_invalid(b"C00000100"), None);
        assert_eq!(Class::Xn.first_invalid(b"X00000100"), Some(0));
        assert_eq!(Class::Z.first_invalid(b"4761=2512D"), None);
        assert_eq!(Class::An.first_invalid(b"AB 12"), None);
        assert_eq!(Class::An.first_invalid(b"AB-12"), Some(2));
        assert_eq!(Class::Ans.first_invalid(b"ok\n"), Some(2));
        assert_eq!(Class::B.first_invalid(&[0, 255]), None);
    }
}
