//! The spec-driven encoder: writes the MTI, the bitmaps derived from the fields present,
//! and each field with its length prefix, in the spec's encodings. Values are checked
//! against their class and length first; a short value in a fixed `n` field is filled
//! with leading zeros and in a fixed text field with trailing spaces (jPOS behaviour),
//! any other length mismatch is an error. On error nothing is left in the output.

use bytes::{BufMut, Bytes, BytesMut};

use super::charset::{self, Class};
use super::error::EncodeError;
use super::message::Message;
use super::spec::{BitmapEncoding, Encoding, FieldSpec, LengthType, Pad, Spec};

const FIRST_BIT: u64 = 1 << 63;
const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// Encodes `message` with `spec`, appending to `out`. On error `out` is unchanged.
pub fn encode(spec: &Spec, message: &Message, out: &mut BytesMut) -> Result<(), EncodeError> {
    let start = out.len();
    let result = write_message(spec, message, out);
    if result.is_err() {
        out.truncate(start);
    }
    result
}

/// Encodes `message` with `spec` into a new buffer.
pub fn encode_to_bytes(spec: &Spec, message: &Message) -> Result<Bytes, EncodeError> {
    let estimate = 36
        + message
            .fields()
            .map(|(_, v)| v.len() * 2 + 3)
            .sum::<usize>();
    let mut out = BytesMut::with_capacity(estimate);
    write_message(spec, message, &mut out)?;
    Ok(out.freeze())
}

fn write_message(spec: &Spec, message: &Message, out: &mut BytesMut) -> Result<(), EncodeError> {
    write_text(spec.mti, message.mti().as_bytes(), Pad::Left, out);
    write_bitmaps(spec, message, out)?;
    for (number, value) in message.fields() {
        let field = spec
            .field(number)
            .ok_or(EncodeError::UndefinedField(number))?;
        write_field(field, value, out)?;
    }
    Ok(())
}

fn write_bitmaps(spec: &Spec, message: &Message, out: &mut BytesMut) -> Result<(), EncodeError> {
    let mut words = message.field_set().words();
    if words[2] != 0 {
        if !spec.tertiary_bitmap {
            let beyond = message.field_set().iter().find(|&n| n > 128).unwrap_or(129);
            return Err(EncodeError::UndefinedField(beyond));
        }
        words[1] |= FIRST_BIT;
    }
    if words[1] != 0 {
        words[0] |= FIRST_BIT;
    }
    let count = if words[2] != 0 {
        3
    } else if words[1] != 0 {
        2
    } else {
        1
    };
    for word in &words[..count] {
        let bytes = word.to_be_bytes();
        match spec.bitmap {
            BitmapEncoding::Binary => out.put_slice(&bytes),
            BitmapEncoding::Hex => put_hex(&bytes, out),
        }
    }
    Ok(())
}

#[inline]
fn write_field(field: &FieldSpec, value: &[u8], out: &mut BytesMut) -> Result<(), EncodeError> {
    let number = field.number;
    let units = field.units(value.len());
    if units > field.max {
        let (length, max) = (units, field.max);
        return Err(cold(|| EncodeError::TooLong {
            field: number,
            length,
            max,
        }));
    }
    let fill = match field.length {
        LengthType::Fixed if units < field.max => match field.filler() {
            Some(_) => field.max - units,
            None => {
                let (length, expected) = (units, field.max);
                return Err(cold(|| EncodeError::WrongLength {
                    field: number,
                    length,
                    expected,
                }));
            }
        },
        _ => 0,
    };
    if let Some(index) = field.class.first_invalid(value) {
        return Err(cold(|| EncodeError::BadCharacter {
            field: number,
            class: field.class,
            index,
        }));
    }
    if field.length != LengthType::Fixed {
        write_length(field, units, out);
    }
    let short;
    let value = if fill == 0 {
        value
    } else {
        short = filled(field, value, fill);
        &short
    };
    write_value(field, value, out);
    Ok(())
}

/// Builds an error away from the field loop: the closure's code lands in this cold
/// function, not in the loop that would have to keep registers free for it.
#[cold]
#[inline(never)]
fn cold(error: impl FnOnce() -> EncodeError) -> EncodeError {
    error()
}

/// A short fixed value with its filler on the padding side.
fn filled(field: &FieldSpec, value: &[u8], fill: usize) -> Vec<u8> {
    let filler = std::iter::repeat_n(field.filler().unwrap_or(b' '), fill);
    match field.pad {
        Pad::Left => filler.chain(value.iter().copied()).collect(),
        Pad::Right => value.iter().copied().chain(filler).collect(),
    }
}

fn write_length(field: &FieldSpec, units: usize, out: &mut BytesMut) {
    let encoding = field.length_encoding;
    if encoding == Encoding::Binary {
        let bytes = (units as u32).to_be_bytes();
        let width = field.length.prefix_bytes(encoding);
        out.put_slice(&bytes[4 - width..]);
        return;
    }
    let digits = field.length.digits();
    let mut text = [b'0'; 4];
    let mut rest = units;
    for slot in text[..digits].iter_mut().rev() {
        *slot = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    write_text(encoding, &text[..digits], Pad::Left, out);
}

#[inline(always)]
fn write_value(field: &FieldSpec, value: &[u8], out: &mut BytesMut) {
    match field.data {
        // Written as it stands: the common case, kept free of the conversions.
        Encoding::Ascii | Encoding::Binary => out.put_slice(value),
        _ => write_converted(field, value, out),
    }
}

#[inline(never)]
fn write_converted(field: &FieldSpec, value: &[u8], out: &mut BytesMut) {
    match (field.data, field.class, value.split_first()) {
        (Encoding::Bcd, Class::Xn, Some((&sign, digits))) => {
            out.put_u8(sign);
            write_text(Encoding::Bcd, digits, Pad::Left, out);
        }
        (Encoding::Hex, _, _) => put_hex(value, out),
        (encoding, _, _) => write_text(encoding, value, field.pad, out),
    }
}

/// Writes text already checked against its class (ASCII digits for BCD).
fn write_text(encoding: Encoding, text: &[u8], pad: Pad, out: &mut BytesMut) {
    // Class checks ran first, so neither conversion can meet a character it lacks.
    let _ = match encoding {
        Encoding::Bcd => charset::pack_bcd(text, pad == Pad::Right, out),
        Encoding::Ebcdic => charset::ascii_to_ebcdic(text, out),
        Encoding::Ascii | Encoding::Binary | Encoding::Hex => {
            out.put_slice(text);
            Ok(())
        }
    };
}

fn put_hex(bytes: &[u8], out: &mut BytesMut) {
    for &b in bytes {
        out.put_u8(HEX_UPPER[usize::from(b >> 4)]);
        out.put_u8(HEX_UPPER[usize::from(b & 0x0F)]);
    }
}
