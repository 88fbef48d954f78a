//! The spec-driven decoder: a cursor over the frame takes the MTI, bitmaps, length
//! prefixes and field bodies with nom as a [`Spec`] describes them. It recognises the whole
//! message before returning it: every bitmap bit must name a defined field, every length
//! is checked against the spec's maximum before a byte is taken (so no allocation follows an untrusted length),
//! and no byte may remain at the end. A field whose length is known but whose content is
//! wrong does not stop the walk, so the MTI and DE11 that follow it can still be kept
//! for a `30` response.

use bytes::Bytes;
use nom::bytes::take;
use nom::{IResult, Parser};

use super::charset::{self, Class};
use super::error::{DecodeError, DecodeErrorKind as Kind, Element};
use super::message::{FieldSet, Message, Mti};
use super::spec::{BitmapEncoding, Encoding, FieldSpec, Pad, Spec};

const FIRST_BIT: u64 = 1 << 63;

/// Decodes one message (without framing) from `frame`. The message keeps `frame`, and
/// ASCII and binary field values are ranges of it, not copies.
pub fn decode(spec: &Spec, frame: &Bytes) -> Result<Message, DecodeError> {
    let mut cursor = Cursor { frame, at: 0 };
    let mti = read_mti(spec, &mut cursor)?;
    let empty = |e: DecodeError| e.with_partial(Message::new(mti));
    let present = read_bitmaps(spec, &mut cursor).map_err(empty)?;
    if let Some(undefined) = spec.first_undefined(present.fields) {
        let offset = present.offset_of(undefined);
        return Err(empty(DecodeError::new(
            Element::Field(undefined),
            offset,
            Kind::UndefinedField,
        )));
    }
    let mut message = Message::reading(mti, frame.clone(), present.fields.len(), spec.masking());
    let mut first_content_error = None;
    // Every flagged field is defined (checked above).
    for field in present.fields.iter().filter_map(|n| spec.field(n)) {
        match read_field(field, &mut cursor) {
            Ok(Value::Frame { start, end }) => message.push_frame_range(field.number, start, end),
            Ok(Value::Converted(value)) => message.push_ascending(field.number, value.into()),
            Err(Fault::Content(e)) => {
                first_content_error.get_or_insert(e);
            }
            Err(Fault::Structure(e)) => return Err(e.with_partial(message)),
        }
    }
    if let Some(e) = first_content_error {
        return Err(e.with_partial(message));
    }
    let count = cursor.remaining();
    if count > 0 {
        let trailing = DecodeError::new(
            Element::Message,
            cursor.offset(),
            Kind::TrailingBytes { count },
        );
        return Err(trailing.with_partial(message));
    }
    Ok(message)
}

/// Decodes a message from a byte slice (copies it once into a `Bytes`).
pub fn decode_slice(spec: &Spec, frame: &[u8]) -> Result<Message, DecodeError> {
    decode(spec, &Bytes::copy_from_slice(frame))
}

/// Position in the frame being decoded.
struct Cursor<'a> {
    frame: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn offset(&self) -> usize {
        self.at
    }

    fn remaining(&self) -> usize {
        self.frame.len().saturating_sub(self.at)
    }

    /// Takes exactly `n` bytes with nom's `take`, or fails with `Truncated` for
    /// `element`. nom's unit error keeps the success path free of error bookkeeping:
    /// the error this decoder reports (element, offset, what was wrong) is built only
    /// on failure.
    #[inline(always)]
    fn take(&mut self, n: usize, element: Element) -> Result<&'a [u8], DecodeError> {
        let rest = self.frame.get(self.at..).unwrap_or_default();
        let parsed: IResult<&'a [u8], &'a [u8], ()> = take(n).parse_complete(rest);
        match parsed {
            Ok((_, taken)) => {
                self.at += taken.len();
                Ok(taken)
            }
            Err(_) => Err(self.truncated(n, element)),
        }
    }

    #[cold]
    #[inline(never)]
    fn truncated(&self, needed: usize, element: Element) -> DecodeError {
        let available = self.remaining();
        self.error(element, Kind::Truncated { needed, available })
    }

    fn error(&self, element: Element, kind: Kind) -> DecodeError {
        DecodeError::new(element, self.offset(), kind)
    }
}

fn read_mti(spec: &Spec, cursor: &mut Cursor<'_>) -> Result<Mti, DecodeError> {
    let offset = cursor.offset();
    let bad = |kind| DecodeError::new(Element::Mti, offset, kind);
    let not_digits = Kind::BadCharacter {
        class: Class::N,
        length: 4,
    };
    let digits = match spec.mti {
        Encoding::Bcd => {
            let packed = cursor.take(2, Element::Mti)?;
            charset::unpack_bcd(packed, 4, false, false).map_err(|_| bad(Kind::BadBcd))?
        }
        Encoding::Ebcdic => {
            let text = cursor.take(4, Element::Mti)?;
            charset::ebcdic_to_ascii(text).map_err(|_| bad(Kind::NotAscii))?
        }
        _ => {
            let text = cursor.take(4, Element::Mti)?;
            return Mti::new(text).ok_or_else(|| bad(not_digits));
        }
    };
    Mti::new(&digits).ok_or_else(|| bad(not_digits))
}

/// The fields a message's bitmaps flag, and where each bitmap started.
struct Present {
    fields: FieldSet,
    offsets: [usize; 3],
}

impl Present {
    fn offset_of(&self, field: u8) -> usize {
        self.offsets[usize::from((field - 1) / 64)]
    }
}

fn read_bitmaps(spec: &Spec, cursor: &mut Cursor<'_>) -> Result<Present, DecodeError> {
    let mut words = [0u64; 3];
    let mut offsets = [cursor.offset(); 3];
    words[0] = read_bitmap(spec, cursor, 1)?;
    if words[0] & FIRST_BIT != 0 {
        offsets[1] = cursor.offset();
        words[1] = read_bitmap(spec, cursor, 2)?;
        words[0] &= !FIRST_BIT;
    }
    if spec.tertiary_bitmap && words[1] & FIRST_BIT != 0 {
        offsets[2] = cursor.offset();
        words[2] = read_bitmap(spec, cursor, 3)?;
        words[1] &= !FIRST_BIT;
    }
    Ok(Present {
        fields: FieldSet::from_words(words),
        offsets,
    })
}

fn read_bitmap(spec: &Spec, cursor: &mut Cursor<'_>, which: u8) -> Result<u64, DecodeError> {
    let element = Element::Bitmap(which);
    let mut bytes = [0u8; 8];
    match spec.bitmap {
        BitmapEncoding::Binary => bytes.copy_from_slice(cursor.take(8, element)?),
        BitmapEncoding::Hex => {
            let offset = cursor.offset();
            let text = cursor.take(16, element)?;
            return hex_word(text).ok_or_else(|| DecodeError::new(element, offset, Kind::BadHex));
        }
    }
    Ok(u64::from_be_bytes(bytes))
}

/// The value of 16 hex digits (either case), `None` if any is not a hex digit.
fn hex_word(text: &[u8]) -> Option<u64> {
    let (high, low) = text.split_at_checked(8)?;
    Some(u64::from(hex_half(high)?) << 32 | u64::from(hex_half(low)?))
}

/// The value of eight hex digits, all tested and converted at once in a `u64` (as the
/// class checks do); `None` unless `digits` is eight hex digits.
fn hex_half(digits: &[u8]) -> Option<u32> {
    const LOW_BITS: u64 = 0x0101_0101_0101_0101;
    const HIGH_BITS: u64 = LOW_BITS * 0x80;
    let splat = |b: u8| u64::from(b) * LOW_BITS;
    // The high bit of each byte is set where that byte lies in `low..=high`: with the
    // high bits cleared, the adds cannot carry from one byte into the next.
    let within = |word: u64, low: u8, high: u8| {
        let seven = word & !HIGH_BITS;
        (seven + splat(0x80 - low)) & !(seven + splat(0x7F - high)) & !word & HIGH_BITS
    };
    // The first digit in the most significant byte.
    let word = u64::from_be_bytes(digits.try_into().ok()?);
    let valid = within(word, b'0', b'9') | within(word | splat(0x20), b'a', b'f');
    if valid != HIGH_BITS {
        return None;
    }
    // '0'-'9' give their low nibble; 'A'-'F' and 'a'-'f' (bit 6 set) 1-6, plus 9.
    let nibbles = (word & splat(0x0F)) + (word >> 6 & LOW_BITS) * 9;
    // Squeeze adjacent nibbles, then bytes, then pairs of bytes, together.
    let bytes = (nibbles | nibbles >> 4) & 0x00FF_00FF_00FF_00FF;
    let pairs = (bytes | bytes >> 8) & 0x0000_FFFF_0000_FFFF;
    Some((pairs | pairs >> 16) as u32)
}

/// A field's value as read: a range of the frame when it is kept as it stood on the wire
/// (ASCII, binary), or bytes of its own when converted (BCD, EBCDIC, hex).
enum Value {
    Frame { start: usize, end: usize },
    Converted(Vec<u8>),
}

/// A field fault that stops the walk (the next field's position is unknown), or one
/// confined to the field's content.
enum Fault {
    Structure(DecodeError),
    Content(DecodeError),
}

fn read_field(field: &FieldSpec, cursor: &mut Cursor<'_>) -> Result<Value, Fault> {
    let element = Element::Field(field.number);
    let units = read_length(field, cursor).map_err(Fault::Structure)?;
    let start = cursor.offset();
    let wire = cursor
        .take(field.wire_len(units), element)
        .map_err(Fault::Structure)?;
    match field.data {
        // Kept as it stands on the wire: the common case, with no copy.
        Encoding::Ascii | Encoding::Binary => match field.class.first_invalid(wire) {
            None => Ok(Value::Frame {
                start,
                end: start + wire.len(),
            }),
            Some(i) => Err(bad_character(field, units, start + i)),
        },
        _ => read_converted(field, wire, units, start),
    }
}

/// A field's value converted from BCD, EBCDIC or hex (out of the common path).
#[inline(never)]
fn read_converted(
    field: &FieldSpec,
    wire: &[u8],
    units: usize,
    start: usize,
) -> Result<Value, Fault> {
    let element = Element::Field(field.number);
    let bad = |index: usize, kind| Fault::Content(DecodeError::new(element, start + index, kind));
    let converted = match field.data {
        Encoding::Ebcdic => charset::ebcdic_to_ascii(wire).map_err(|i| bad(i, Kind::NotAscii))?,
        Encoding::Bcd => unpack_numeric(field, wire, units).map_err(|i| bad(i, Kind::BadBcd))?,
        Encoding::Hex if units % 2 == 1 => return Err(bad(0, Kind::BadHex)),
        Encoding::Hex => hex::decode(wire).map_err(|_| bad(0, Kind::BadHex))?,
        // Not reached: `read_field` keeps these as ranges of the frame.
        Encoding::Ascii | Encoding::Binary => wire.to_vec(),
    };
    match field.class.first_invalid(&converted) {
        None => Ok(Value::Converted(converted)),
        // Two BCD digits share a byte.
        Some(i) if field.data == Encoding::Bcd => Err(bad_character(field, units, start + i / 2)),
        Some(i) => Err(bad_character(field, units, start + i)),
    }
}

/// A character outside the field's class at `offset`.
#[cold]
#[inline(never)]
fn bad_character(field: &FieldSpec, length: usize, offset: usize) -> Fault {
    let kind = Kind::BadCharacter {
        class: field.class,
        length,
    };
    Fault::Content(DecodeError::new(Element::Field(field.number), offset, kind))
}

/// Reads a field's length in its units: the spec's for fixed fields, the prefix's
/// otherwise, refused when above the spec's maximum.
fn read_length(field: &FieldSpec, cursor: &mut Cursor<'_>) -> Result<usize, DecodeError> {
    let digits = field.length.digits();
    if digits == 0 {
        return Ok(field.max);
    }
    let element = Element::Field(field.number);
    let offset = cursor.offset();
    let prefix = cursor.take(field.length.prefix_bytes(field.length_encoding), element)?;
    let length = prefix_value(prefix, digits, field.length_encoding)
        .ok_or_else(|| DecodeError::new(element, offset, Kind::BadLengthPrefix))?;
    if length > field.max {
        let kind = Kind::TooLong {
            length,
            max: field.max,
        };
        return Err(DecodeError::new(element, offset, kind));
    }
    Ok(length)
}

/// The number a length prefix holds, `None` if it is not a number in its encoding.
fn prefix_value(prefix: &[u8], digits: usize, encoding: Encoding) -> Option<usize> {
    match encoding {
        Encoding::Binary => Some(prefix.iter().fold(0, |n, &b| n << 8 | usize::from(b))),
        Encoding::Bcd => decimal(&charset::unpack_bcd(prefix, digits, false, false).ok()?),
        Encoding::Ebcdic => decimal(&charset::ebcdic_to_ascii(prefix).ok()?),
        Encoding::Ascii | Encoding::Hex => decimal(prefix),
    }
}

/// The value of ASCII decimal digits, `None` if any is not a digit.
fn decimal(text: &[u8]) -> Option<usize> {
    text.iter().try_fold(0usize, |n, &c| {
        c.is_ascii_digit().then(|| n * 10 + usize::from(c - b'0'))
    })
}

/// Unpacks a BCD field: digits (`n`), track data (`z`) or an ASCII sign and digits
/// (`x+n`). `Err` gives the index of the bad byte.
fn unpack_numeric(field: &FieldSpec, wire: &[u8], units: usize) -> Result<Vec<u8>, usize> {
    let right_pad = field.pad == Pad::Right;
    match (field.class, wire.split_first()) {
        (Class::Xn, Some((&sign, digits))) => {
            let mut value = Vec::with_capacity(units);
            value.push(sign);
            let unpacked =
                charset::unpack_bcd(digits, units - 1, false, false).map_err(|i| i + 1)?;
            value.extend_from_slice(&unpacked);
            Ok(value)
        }
        (class, _) => charset::unpack_bcd(wire, units, right_pad, class == Class::Z),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_words_agree_with_the_hex_crate() {
        let digits = *b"0123456789ABCDEF";
        for at in 0..16 {
            for b in 0..=255u8 {
                let mut text = digits;
                text[at] = b;
                let expected = hex::decode(text)
                    .ok()
                    .map(|bytes| u64::from_be_bytes(bytes.try_into().expect("eight bytes")));
                assert_eq!(hex_word(&text), expected, "{at} {b:#04x}");
            }
        }
        assert_eq!(hex_word(b"fedcba9876543210"), Some(0xFEDC_BA98_7654_3210));
        assert_eq!(hex_word(b"0123"), None);
    }
}
