//! The spec-driven decoder: a cursor over the frame takes the MTI, bitmaps, length
//! prefixes and field bodies with nom as a [`Spec`] describes them. It recognises the whole
//! message before returning it: every bitmap bit must name a defined field, every length
//! is checked against the spec's maximum before a byte is taken (so no allocation follows an untrusted length),
//! and no byte may remain at the end. A field whose length is known but whose content is
//! wrong does not stop the walk, so the MTI and DE11 that follow it can still be kept
//! for a `30` response. Whatever length is known ahead is taken at once: the MTI with
//! the primary bitmap, and each *segment* (the body of a variable field whose prefix was
//! read, the fixed fields after it and the next variable field's prefix) in one `take`,
//! then split by the lengths the spec's field plans give. Only when a segment does not
//! fit the input is it taken again piece by piece, to name the element that ran out.

use bytes::Bytes;
use nom::bytes::take;
use nom::{IResult, Parser};

use super::charset::{self, Class};
use super::error::{DecodeError, DecodeErrorKind as Kind, Element};
use super::message::{FieldSet, Message, Mti};
use super::spec::{BitmapEncoding, Encoding, FieldSpec, MAX_FIELD, Pad, Spec};

const FIRST_BIT: u64 = 1 << 63;

/// Decodes one message (without framing) from `frame`. The message keeps `frame`, and
/// ASCII and binary field values are ranges of it, not copies.
pub fn decode(spec: &Spec, frame: &Bytes) -> Result<Message, DecodeError> {
    let mut cursor = Cursor { frame, at: 0 };
    let (mti, primary) = read_header(spec, &mut cursor)?;
    let empty = |e: DecodeError| e.with_partial(Message::new(mti));
    let present = read_bitmaps(spec, &mut cursor, primary).map_err(empty)?;
    if let Some(undefined) = spec.first_undefined(present.fields) {
        let offset = present.offset_of(undefined);
        return Err(empty(DecodeError::new(
            Element::Field(undefined),
            offset,
            Kind::UndefinedField,
        )));
    }
    // The flagged field numbers in ascending order (a segment looks ahead in them).
    let mut numbers = [0u8; MAX_FIELD as usize];
    let mut count = 0;
    for (base, mut bits) in (0u8..).step_by(64).zip(present.fields.words()) {
        while bits != 0 {
            let zeros = bits.leading_zeros();
            bits &= !(FIRST_BIT >> zeros);
            if let Some(slot) = numbers.get_mut(count) {
                // At most 3 * 64 = 192: fits a u8.
                *slot = base + zeros as u8 + 1;
                count += 1;
            }
        }
    }
    let mut message = Message::reading(mti, frame.clone(), count, spec.masking());
    let mut walk = Walk {
        spec,
        cursor,
        message: &mut message,
        count,
        first_content_error: None,
    };
    // Every flagged field is defined (checked above).
    let walked = walk.fields(numbers.get(..count).unwrap_or_default());
    let (cursor, first_content_error) = (walk.cursor, walk.first_content_error);
    if let Err(e) = walked {
        return Err(e.with_partial(message));
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

    /// Takes exactly `n` bytes with nom's `take`, or `None` (and takes nothing) when
    /// fewer remain. nom's unit error keeps the success path free of error bookkeeping.
    #[inline(always)]
    fn try_take(&mut self, n: usize) -> Option<&'a [u8]> {
        let rest = self.frame.get(self.at..).unwrap_or_default();
        let parsed: IResult<&'a [u8], &'a [u8], ()> = take(n).parse_complete(rest);
        match parsed {
            Ok((_, taken)) => {
                self.at += taken.len();
                Some(taken)
            }
            Err(_) => None,
        }
    }

    /// Takes exactly `n` bytes, or fails with `Truncated` for `element`: the error this
    /// decoder reports (element, offset, what was wrong) is built only on failure.
    #[inline(always)]
    fn take(&mut self, n: usize, element: Element) -> Result<&'a [u8], DecodeError> {
        match self.try_take(n) {
            Some(taken) => Ok(taken),
            None => Err(self.truncated(n, element)),
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

/// Reads the MTI and the primary bitmap, in one take when both are there.
fn read_header(spec: &Spec, cursor: &mut Cursor<'_>) -> Result<(Mti, u64), DecodeError> {
    let mti_len = match spec.mti {
        Encoding::Bcd => 2,
        _ => 4,
    };
    let bitmap_len = bitmap_bytes(spec.bitmap);
    let start = cursor.offset();
    let Some(header) = cursor.try_take(mti_len + bitmap_len) else {
        // Short: read them one by one, to name the one that ran out.
        let mti = read_mti(spec, cursor)?;
        let primary =
            read_bitmap(spec, cursor, 1).map_err(|e| e.with_partial(Message::new(mti)))?;
        return Ok((mti, primary));
    };
    let (mti_bytes, bitmap) = header.split_at_checked(mti_len).unwrap_or_default();
    let mti = parse_mti(spec, mti_bytes, start)?;
    let primary = parse_bitmap(spec, bitmap, 1, start + mti_len)
        .map_err(|e| e.with_partial(Message::new(mti)))?;
    Ok((mti, primary))
}

fn read_mti(spec: &Spec, cursor: &mut Cursor<'_>) -> Result<Mti, DecodeError> {
    let offset = cursor.offset();
    let len = match spec.mti {
        Encoding::Bcd => 2,
        _ => 4,
    };
    let taken = cursor.take(len, Element::Mti)?;
    parse_mti(spec, taken, offset)
}

fn parse_mti(spec: &Spec, taken: &[u8], offset: usize) -> Result<Mti, DecodeError> {
    let bad = |kind| DecodeError::new(Element::Mti, offset, kind);
    let not_digits = Kind::BadCharacter {
        class: Class::N,
        length: 4,
    };
    let digits = match spec.mti {
        Encoding::Bcd => {
            charset::unpack_bcd(taken, 4, false, false).map_err(|_| bad(Kind::BadBcd))?
        }
        Encoding::Ebcdic => charset::ebcdic_to_ascii(taken).map_err(|_| bad(Kind::NotAscii))?,
        _ => return Mti::new(taken).ok_or_else(|| bad(not_digits)),
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

/// Reads the secondary (and tertiary) bitmaps that the primary one announces.
fn read_bitmaps(
    spec: &Spec,
    cursor: &mut Cursor<'_>,
    primary: u64,
) -> Result<Present, DecodeError> {
    let mut words = [primary, 0, 0];
    let primary_at = cursor.offset() - bitmap_bytes(spec.bitmap);
    let mut offsets = [primary_at; 3];
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

fn bitmap_bytes(encoding: BitmapEncoding) -> usize {
    match encoding {
        BitmapEncoding::Binary => 8,
        BitmapEncoding::Hex => 16,
    }
}

fn read_bitmap(spec: &Spec, cursor: &mut Cursor<'_>, which: u8) -> Result<u64, DecodeError> {
    let offset = cursor.offset();
    let taken = cursor.take(bitmap_bytes(spec.bitmap), Element::Bitmap(which))?;
    parse_bitmap(spec, taken, which, offset)
}

fn parse_bitmap(spec: &Spec, taken: &[u8], which: u8, offset: usize) -> Result<u64, DecodeError> {
    let bad_hex = || DecodeError::new(Element::Bitmap(which), offset, Kind::BadHex);
    match spec.bitmap {
        BitmapEncoding::Binary => taken
            .try_into()
            .map(u64::from_be_bytes)
            .map_err(|_| bad_hex()),
        BitmapEncoding::Hex => hex_word(taken).ok_or_else(bad_hex),
    }
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

/// The walk over the fields: where it is, the message it fills and the first content
/// fault it met.
struct Walk<'s, 'f, 'm> {
    spec: &'s Spec,
    cursor: Cursor<'f>,
    message: &'m mut Message,
    /// How many fields the bitmaps flag (to reserve room for converted values once).
    count: usize,
    first_content_error: Option<DecodeError>,
}

/// A variable field whose prefix has been read: its body comes next.
#[derive(Clone, Copy)]
struct Body {
    number: u8,
    units: usize,
    wire: usize,
}

/// Consecutive fields of one class kept as they stand on the wire, pushed as they come
/// and checked in one pass when the group ends (a refused byte sends it back to a field
/// by field check).
#[derive(Clone, Copy)]
struct Group {
    class: Class,
    /// Offset of the group's first byte.
    from: usize,
    /// The variable field's body the group starts with, if it does.
    body: Option<Body>,
    /// Index of the group's first fixed field in the segment.
    first: usize,
}

impl Walk<'_, '_, '_> {
    /// Reads the fields `numbers` (ascending, all defined), segment by segment. `Err` is
    /// a structural fault: the walk cannot go on.
    fn fields(&mut self, numbers: &[u8]) -> Result<(), DecodeError> {
        let spec = self.spec;
        let mut body: Option<Body> = None;
        let mut rest = numbers;
        while body.is_some() || !rest.is_empty() {
            // The segment: `body`, the fixed fields that follow it, and the prefix of the
            // variable field after them (if any).
            let mut len = body.map_or(0, |b| b.wire);
            let mut fixed = 0;
            for &number in rest {
                let plan = spec.plan(number);
                if plan.fixed_wire == 0 {
                    len = len.saturating_add(plan.prefix_bytes);
                    break;
                }
                len = len.saturating_add(plan.fixed_wire);
                fixed += 1;
            }
            let (fixed_numbers, after) = rest.split_at_checked(fixed).unwrap_or_default();
            let (next, after) = match after.split_first() {
                Some((&next, after)) => (Some(next), after),
                None => (None, after),
            };
            let start = self.cursor.offset();
            body = match self.cursor.try_take(len) {
                Some(segment) => self.split_segment(segment, start, body, fixed_numbers, next)?,
                None => self.read_piecewise(body, fixed_numbers, next)?,
            };
            rest = after;
        }
        Ok(())
    }

    /// Checks and keeps the pieces of a segment taken whole (`start` is its offset).
    #[inline(always)]
    fn split_segment(
        &mut self,
        segment: &[u8],
        start: usize,
        body: Option<Body>,
        fixed: &[u8],
        next: Option<u8>,
    ) -> Result<Option<Body>, DecodeError> {
        let spec = self.spec;
        let mut group: Option<Group> = None;
        let mut at = start;
        if let Some(b) = body {
            if let Some(class) = spec.plan(b.number).grouped {
                group = Some(Group {
                    class,
                    from: at,
                    body: Some(b),
                    first: 0,
                });
                self.message.push_frame_range(b.number, at, at + b.wire);
            } else {
                let wire = piece(segment, start, at, b.wire);
                self.keep(b.number, wire, b.units, at);
            }
            at += b.wire;
        }
        for (index, &number) in fixed.iter().enumerate() {
            let plan = spec.plan(number);
            let len = plan.fixed_wire;
            if let Some(class) = plan.grouped {
                if group.is_none_or(|g| g.class != class) {
                    if let Some(g) = group {
                        let members = fixed.get(g.first..index).unwrap_or_default();
                        self.check_group(g, segment, start, members, at);
                    }
                    group = Some(Group {
                        class,
                        from: at,
                        body: None,
                        first: index,
                    });
                }
                self.message.push_frame_range(number, at, at + len);
            } else {
                if let Some(g) = group.take() {
                    let members = fixed.get(g.first..index).unwrap_or_default();
                    self.check_group(g, segment, start, members, at);
                }
                let units = spec.field(number).map_or(len, |field| field.max);
                self.keep(number, piece(segment, start, at, len), units, at);
            }
            at += len;
        }
        if let Some(g) = group {
            let members = fixed.get(g.first..).unwrap_or_default();
            self.check_group(g, segment, start, members, at);
        }
        let (Some(number), Some(field)) = (next, next.and_then(|n| spec.field(n))) else {
            return Ok(None);
        };
        let prefix = piece(segment, start, at, spec.plan(number).prefix_bytes);
        let units = prefix_length(field, prefix, at)?;
        Ok(Some(body_of(field, units)))
    }

    /// Checks a group's bytes (`from` up to `end`) at once; on a refused byte, checks
    /// each member on its own, notes the fault and takes the bad fields back out.
    #[inline(always)]
    fn check_group(
        &mut self,
        group: Group,
        segment: &[u8],
        start: usize,
        fixed: &[u8],
        end: usize,
    ) {
        let bytes = segment
            .get(group.from - start..end - start)
            .unwrap_or_default();
        if !group.class.allows_all(bytes) {
            self.recheck(group, fixed);
        }
    }

    #[cold]
    #[inline(never)]
    fn recheck(&mut self, group: Group, fixed: &[u8]) {
        let spec = self.spec;
        let body = group.body.map(|b| (b.number, b.wire, b.units));
        let fixed = fixed.iter().map(|&number| {
            let len = spec.plan(number).fixed_wire;
            (number, len, len)
        });
        let mut at = group.from;
        for (number, len, units) in body.into_iter().chain(fixed) {
            let wire = self.cursor.frame.get(at..at + len).unwrap_or_default();
            if let Some(i) = group.class.first_invalid(wire) {
                self.fault(bad_character(number, group.class, units, at + i));
                self.message.remove(number);
            }
            at += len;
        }
    }

    /// Reads a segment that does not fit the input one piece at a time, so the error
    /// names the piece that ran out (the fields before it are kept, as always).
    #[cold]
    #[inline(never)]
    fn read_piecewise(
        &mut self,
        body: Option<Body>,
        fixed: &[u8],
        next: Option<u8>,
    ) -> Result<Option<Body>, DecodeError> {
        if let Some(b) = body {
            let offset = self.cursor.offset();
            let wire = self.cursor.take(b.wire, Element::Field(b.number))?;
            self.keep(b.number, wire, b.units, offset);
        }
        for field in fixed.iter().filter_map(|&n| self.spec.field(n)) {
            let offset = self.cursor.offset();
            let len = self.spec.plan(field.number).fixed_wire;
            let wire = self.cursor.take(len, Element::Field(field.number))?;
            self.keep(field.number, wire, field.max, offset);
        }
        match next.and_then(|n| self.spec.field(n)) {
            Some(field) => {
                let offset = self.cursor.offset();
                let len = self.spec.plan(field.number).prefix_bytes;
                let prefix = self.cursor.take(len, Element::Field(field.number))?;
                let units = prefix_length(field, prefix, offset)?;
                Ok(Some(body_of(field, units)))
            }
            None => Ok(None),
        }
    }

    /// Checks one field's content (`units` long, taken at `start`) and keeps it, or
    /// notes the first content fault and leaves the field out.
    fn keep(&mut self, number: u8, wire: &[u8], units: usize, start: usize) {
        let plan = self.spec.plan(number);
        if plan.as_on_wire {
            // Kept as it stands on the wire, with no copy.
            match plan.class.first_invalid(wire) {
                None => self
                    .message
                    .push_frame_range(number, start, start + wire.len()),
                Some(i) => self.fault(bad_character(number, plan.class, units, start + i)),
            }
            return;
        }
        let Some(field) = self.spec.field(number) else {
            return;
        };
        match read_converted(field, wire, units, start) {
            Ok(value) => {
                let room = self.count.saturating_sub(self.message.len());
                self.message.push_ascending(number, value.into(), room);
            }
            Err(e) => self.fault(e),
        }
    }

    fn fault(&mut self, e: DecodeError) {
        self.first_content_error.get_or_insert(e);
    }
}

/// `len` bytes of `segment` (which starts at offset `start`) from offset `at`. Always
/// within the segment, as the segment is the sum of its pieces (empty if not).
#[inline(always)]
fn piece(segment: &[u8], start: usize, at: usize, len: usize) -> &[u8] {
    let from = at - start;
    segment.get(from..from + len).unwrap_or_default()
}

/// The body a variable field's prefix announces.
fn body_of(field: &FieldSpec, units: usize) -> Body {
    Body {
        number: field.number,
        units,
        wire: field.wire_len(units),
    }
}

/// A field's value converted from BCD, EBCDIC or hex (out of the common path).
#[inline(never)]
fn read_converted(
    field: &FieldSpec,
    wire: &[u8],
    units: usize,
    start: usize,
) -> Result<Vec<u8>, DecodeError> {
    let element = Element::Field(field.number);
    let bad = |index: usize, kind| DecodeError::new(element, start + index, kind);
    let converted = match field.data {
        Encoding::Ebcdic => charset::ebcdic_to_ascii(wire).map_err(|i| bad(i, Kind::NotAscii))?,
        Encoding::Bcd => unpack_numeric(field, wire, units).map_err(|i| bad(i, Kind::BadBcd))?,
        Encoding::Hex if units % 2 == 1 => return Err(bad(0, Kind::BadHex)),
        Encoding::Hex => hex::decode(wire).map_err(|_| bad(0, Kind::BadHex))?,
        // Not reached: `keep` keeps these as ranges of the frame.
        Encoding::Ascii | Encoding::Binary => wire.to_vec(),
    };
    match field.class.first_invalid(&converted) {
        None => Ok(converted),
        // Two BCD digits share a byte.
        Some(i) if field.data == Encoding::Bcd => Err(bad_character(
            field.number,
            field.class,
            units,
            start + i / 2,
        )),
        Some(i) => Err(bad_character(field.number, field.class, units, start + i)),
    }
}

/// A character outside field `number`'s class at `offset`.
#[cold]
#[inline(never)]
fn bad_character(number: u8, class: Class, length: usize, offset: usize) -> DecodeError {
    let kind = Kind::BadCharacter { class, length };
    DecodeError::new(Element::Field(number), offset, kind)
}

/// A variable field's length in its units from its `prefix` (taken at `offset`),
/// refused when above the spec's maximum.
fn prefix_length(field: &FieldSpec, prefix: &[u8], offset: usize) -> Result<usize, DecodeError> {
    let element = Element::Field(field.number);
    let length = prefix_value(prefix, field.length.digits(), field.length_encoding)
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
#[inline(always)]
fn prefix_value(prefix: &[u8], digits: usize, encoding: Encoding) -> Option<usize> {
    let digit = |c: u8| {
        let d = c.wrapping_sub(b'0');
        (d < 10).then_some(usize::from(d))
    };
    match (encoding, prefix) {
        // The common ASCII prefixes, without a loop.
        (Encoding::Ascii, &[tens, ones]) => Some(digit(tens)? * 10 + digit(ones)?),
        (Encoding::Ascii, &[hundreds, tens, ones]) => {
            Some(digit(hundreds)? * 100 + digit(tens)? * 10 + digit(ones)?)
        }
        _ => prefix_value_of(prefix, digits, encoding),
    }
}

fn prefix_value_of(prefix: &[u8], digits: usize, encoding: Encoding) -> Option<usize> {
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
