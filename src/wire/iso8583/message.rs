//! The in-memory message: an MTI plus the values of the fields present, kept in field
//! order beside a 192-bit presence set, so a lookup is a population count rather than a
//! search. A decoded message holds its frame once (one `bytes::Bytes`) and a field read
//! as it stood on the wire (ASCII text, binary) is a range of it: no copy and no
//! reference count per field. The ranges of up to [`INLINE_FIELDS`] fields live inside
//! the message, so decoding an ASCII or binary message of that size allocates nothing.
//! Other values (set in code, or converted from BCD, EBCDIC or hex) are `Bytes` of their
//! own. A message knows nothing of wire encodings; text values are ASCII, binary values
//! raw bytes.

use std::fmt;
use std::str::FromStr;

use bytes::Bytes;

use super::spec::MAX_FIELD;

/// A message type indicator: four ASCII digits (version, class, function, origin).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mti([u8; 4]);

impl Mti {
    /// An MTI from four ASCII digits; `None` if `digits` is anything else.
    pub fn new(digits: &[u8]) -> Option<Mti> {
        let array: [u8; 4] = digits.try_into().ok()?;
        array.iter().all(u8::is_ascii_digit).then_some(Mti(array))
    }

    /// The four digits as text.
    pub fn as_str(&self) -> &str {
        // Invariant: four ASCII digits.
        std::str::from_utf8(&self.0).unwrap_or("????")
    }

    /// The four digits as bytes.
    pub fn as_bytes(&self) -> &[u8; 4] {
        &self.0
    }

    /// Message class, the second digit (1 authorization, 2 financial, 4 reversal,
    /// 8 network management).
    pub fn class(&self) -> u8 {
        self.0[1] - b'0'
    }

    /// Message function, the third digit (0 request, 1 response, 2 advice,
    /// 3 advice response).
    pub fn function(&self) -> u8 {
        self.0[2] - b'0'
    }

    /// Whether this is a repeat (the origin digit is odd: 0121, 0221, 0401, 0421).
    pub fn is_repeat(&self) -> bool {
        (self.0[3] - b'0') % 2 == 1
    }

    /// The same message type without the repeat flag (0221 becomes 0220).
    pub fn original(&self) -> Mti {
        let mut digits = self.0;
        digits[3] &= !1;
        Mti(digits)
    }

    /// The response type to a request or advice (0200 → 0210, 0221 → 0230); `None`
    /// when this is already a response.
    pub fn response(&self) -> Option<Mti> {
        let function = self.function();
        if function % 2 == 1 {
            return None;
        }
        let mut digits = self.0;
        digits[2] = b'0' + function + 1;
        digits[3] = b'0';
        Some(Mti(digits))
    }
}

impl FromStr for Mti {
    type Err = String;

    fn from_str(s: &str) -> Result<Mti, String> {
        Mti::new(s.as_bytes()).ok_or_else(|| format!("MTI must be 4 digits, not {s:?}"))
    }
}

impl fmt::Display for Mti {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Mti {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of field numbers 1 to 192, laid out as the wire bitmaps are: word 0 holds
/// fields 1-64 with field 1 in the most significant bit.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct FieldSet([u64; 3]);

impl FieldSet {
    /// The empty set.
    pub const fn new() -> FieldSet {
        FieldSet([0; 3])
    }

    /// A set from the three 64-bit bitmap words as read from the wire.
    pub const fn from_words(words: [u64; 3]) -> FieldSet {
        FieldSet(words)
    }

    /// A set holding `numbers`.
    pub fn from_numbers(numbers: &[u8]) -> FieldSet {
        let mut set = FieldSet::new();
        numbers.iter().for_each(|&n| set.insert(n));
        set
    }

    /// The three bitmap words.
    pub const fn words(&self) -> [u64; 3] {
        self.0
    }

    fn locate(number: u8) -> Option<(usize, u64)> {
        let index = usize::from(number).checked_sub(1)?;
        (index < usize::from(MAX_FIELD)).then(|| (index / 64, 1u64 << (63 - index % 64)))
    }

    /// Whether `number` is in the set (false for numbers outside 1-192).
    pub fn contains(&self, number: u8) -> bool {
        Self::locate(number).is_some_and(|(word, bit)| self.0[word] & bit != 0)
    }

    /// Adds `number`; numbers outside 1-192 are ignored.
    pub fn insert(&mut self, number: u8) {
        if let Some((word, bit)) = Self::locate(number) {
            self.0[word] |= bit;
        }
    }

    /// Adds `number`, which the caller knows to be in 1-192 (one outside is ignored,
    /// as by [`FieldSet::insert`]): the decoder's cheaper insert.
    #[inline(always)]
    pub(crate) fn insert_in_range(&mut self, number: u8) {
        let index = usize::from(number.wrapping_sub(1));
        if let Some(word) = self.0.get_mut(index / 64) {
            *word |= (1u64 << 63) >> (index % 64);
        }
    }

    /// Removes `number`.
    pub fn remove(&mut self, number: u8) {
        if let Some((word, bit)) = Self::locate(number) {
            self.0[word] &= !bit;
        }
    }

    /// How many members are smaller than `number`.
    pub fn rank(&self, number: u8) -> usize {
        let Some((word, bit)) = Self::locate(number) else {
            return self.len();
        };
        let below: u32 = self.0[..word].iter().map(|w| w.count_ones()).sum();
        // Smaller numbers sit in the more significant bits of the same word.
        let higher_bits = !(bit | (bit - 1));
        (below + (self.0[word] & higher_bits).count_ones()) as usize
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.0.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0 == [0; 3]
    }

    /// The members in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = u8> + '_ {
        let (mut rest, mut word) = (self.0, 0);
        std::iter::from_fn(move || {
            while let Some(bits) = rest.get_mut(word) {
                if *bits != 0 {
                    let zeros = bits.leading_zeros();
                    *bits &= !(1u64 << (63 - zeros));
                    // At most 3 * 64 = 192: fits a u8.
                    return Some((word * 64) as u8 + zeros as u8 + 1);
                }
                word += 1;
            }
            None
        })
    }
}

impl fmt::Debug for FieldSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// Which fields are masked when a message is shown (see [`super::Mask`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Masking {
    /// Shown as masked account numbers (first 6, last 4).
    pub pan: FieldSet,
    /// Never shown, only their length.
    pub redact: FieldSet,
}

impl Default for Masking {
    /// DE2 and DE34 masked; DE35, DE36, DE45, DE52, DE55 redacted.
    fn default() -> Masking {
        Masking {
            pan: FieldSet::from_numbers(&[2, 34]),
            redact: FieldSet::from_numbers(&[35, 36, 45, 52, 55]),
        }
    }
}

/// An ISO 8583 message: MTI and field values. Field 1 (and 65 under a tertiary bitmap)
/// are never stored: bitmaps are derived from the fields present when encoding.
#[derive(Clone)]
pub struct Message {
    mti: Mti,
    present: FieldSet,
    /// The frame a decoded message was read from (empty for one built in code).
    frame: Bytes,
    /// Where each present field's value is, in field order.
    slots: Slots,
    /// The values of their own that owned slots point into (in no particular order).
    owned: Vec<Bytes>,
    masking: Masking,
}

/// How many fields' places a message keeps inline before it moves them to the heap: a
/// typical authorization or financial message has 10 to 30 fields, and with 28 a whole
/// message is at most 256 bytes (cheaper to move).
pub const INLINE_FIELDS: usize = 28;

/// Where a field's value is kept: bytes `start..end` of the message's frame (checked in
/// range when decoded), or `owned[end]` when `start` is [`Slot::OWNED`]. Four bytes, so
/// the inline slots of a message fit in two cache lines; a value beyond the first 64 KiB
/// of a frame is kept as `Bytes` of its own instead (sharing the frame, not copied).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Slot {
    start: u16,
    end: u16,
}

impl Slot {
    const OWNED: u16 = u16::MAX;

    fn owned(index: u16) -> Slot {
        Slot {
            start: Slot::OWNED,
            end: index,
        }
    }

    /// A range of the frame, if it can be written as one (`start <= end` given).
    #[inline(always)]
    fn frame(start: usize, end: usize) -> Option<Slot> {
        // `start <= end < OWNED`: both fit and `start` is not the marker.
        (end < usize::from(Slot::OWNED)).then_some(Slot {
            start: start as u16,
            end: end as u16,
        })
    }

    /// The index into `owned`, or the range of the frame.
    #[inline(always)]
    fn place(self) -> Result<usize, std::ops::Range<usize>> {
        if self.start == Slot::OWNED {
            Ok(usize::from(self.end))
        } else {
            Err(usize::from(self.start)..usize::from(self.end))
        }
    }
}

/// The slots of the fields present, in field order: inline up to [`INLINE_FIELDS`], on
/// the heap beyond (a small-vector without `unsafe`; every inline slot is initialized).
#[derive(Clone)]
enum Slots {
    Inline {
        /// At most `INLINE_FIELDS`.
        len: u8,
        slots: [Slot; INLINE_FIELDS],
    },
    Heap(Vec<Slot>),
}

impl Slots {
    const EMPTY: Slot = Slot { start: 0, end: 0 };

    fn with_capacity(fields: usize) -> Slots {
        if fields <= INLINE_FIELDS {
            Slots::Inline {
                len: 0,
                slots: [Self::EMPTY; INLINE_FIELDS],
            }
        } else {
            Slots::Heap(Vec::with_capacity(fields))
        }
    }

    #[inline]
    fn as_slice(&self) -> &[Slot] {
        match self {
            Slots::Inline { len, slots } => slots.get(..usize::from(*len)).unwrap_or_default(),
            Slots::Heap(slots) => slots,
        }
    }

    #[inline]
    fn as_mut_slice(&mut self) -> &mut [Slot] {
        match self {
            Slots::Inline { len, slots } => slots.get_mut(..usize::from(*len)).unwrap_or_default(),
            Slots::Heap(slots) => slots,
        }
    }

    fn len(&self) -> usize {
        self.as_slice().len()
    }

    /// Moves inline slots to the heap when there is no room for one more.
    fn make_room(&mut self) {
        if let Slots::Inline { len, slots } = self
            && usize::from(*len) == INLINE_FIELDS
        {
            let mut heap = Vec::with_capacity(2 * INLINE_FIELDS);
            heap.extend_from_slice(slots);
            *self = Slots::Heap(heap);
        }
    }

    #[inline(always)]
    fn push(&mut self, slot: Slot) {
        match self {
            Slots::Inline { len, slots } if usize::from(*len) < INLINE_FIELDS => {
                slots[usize::from(*len)] = slot;
                *len += 1;
            }
            _ => self.push_spilled(slot),
        }
    }

    #[inline(never)]
    fn push_spilled(&mut self, slot: Slot) {
        self.make_room();
        if let Slots::Heap(slots) = self {
            slots.push(slot);
        }
    }

    /// Inserts `slot` at `index` (at most the length).
    fn insert(&mut self, index: usize, slot: Slot) {
        self.make_room();
        match self {
            Slots::Inline { len, slots } => {
                slots.copy_within(index..usize::from(*len), index + 1);
                slots[index] = slot;
                *len += 1;
            }
            Slots::Heap(slots) => slots.insert(index, slot),
        }
    }

    /// Removes and returns the slot at `index` (below the length).
    fn remove(&mut self, index: usize) -> Slot {
        match self {
            Slots::Inline { len, slots } => {
                let slot = slots[index];
                slots.copy_within(index + 1..usize::from(*len), index);
                *len -= 1;
                slot
            }
            Slots::Heap(slots) => slots.remove(index),
        }
    }
}

impl Message {
    /// An empty message of type `mti`, with the default masking.
    pub fn new(mti: Mti) -> Message {
        Message::with_capacity(mti, 0, Masking::default())
    }

    /// An empty message with room for `fields` values and the given masking.
    pub fn with_capacity(mti: Mti, fields: usize, masking: Masking) -> Message {
        Message::reading(mti, Bytes::new(), fields, masking)
    }

    /// An empty message whose values will be read from `frame` (the decoder's start).
    #[inline]
    pub(crate) fn reading(mti: Mti, frame: Bytes, fields: usize, masking: Masking) -> Message {
        Message {
            mti,
            present: FieldSet::new(),
            frame,
            slots: Slots::with_capacity(fields),
            owned: Vec::new(),
            masking,
        }
    }

    /// The message type.
    pub fn mti(&self) -> Mti {
        self.mti
    }

    /// Changes the message type (e.g. to build a response in place).
    pub fn set_mti(&mut self, mti: Mti) {
        self.mti = mti;
    }

    /// The value of field `number`.
    pub fn get(&self, number: u8) -> Option<&[u8]> {
        self.slot(number).map(|slot| self.bytes_of(slot))
    }

    /// The value of field `number` as `Bytes` of its own, sharing the frame of a decoded
    /// message rather than copying it (to keep a value beyond the message, or to put it
    /// into another message).
    pub fn get_bytes(&self, number: u8) -> Option<Bytes> {
        self.slot(number).map(|slot| self.share(slot))
    }

    /// The value of a text field as `&str` (`None` if absent or not UTF-8).
    pub fn text(&self, number: u8) -> Option<&str> {
        std::str::from_utf8(self.get(number)?).ok()
    }

    fn slot(&self, number: u8) -> Option<Slot> {
        if !self.present.contains(number) {
            return None;
        }
        self.slots
            .as_slice()
            .get(self.present.rank(number))
            .copied()
    }

    fn bytes_of(&self, slot: Slot) -> &[u8] {
        match slot.place() {
            Ok(index) => self.owned.get(index).map_or(&[], |b| &b[..]),
            // The decoder pushes only ranges it took from this frame.
            Err(range) => self.frame.get(range).unwrap_or_default(),
        }
    }

    fn share(&self, slot: Slot) -> Bytes {
        match slot.place() {
            Ok(index) => self.owned.get(index).cloned().unwrap_or_default(),
            // In range by construction; never panic on a broken invariant.
            Err(range) => match self.frame.get(range.clone()) {
                Some(_) => self.frame.slice(range),
                None => Bytes::new(),
            },
        }
    }

    /// Stores a value of its own and returns its slot.
    fn own(&mut self, value: Bytes) -> Slot {
        // At most one owned value per field: at most 192.
        let index = self.owned.len() as u16;
        self.owned.push(value);
        Slot::owned(index)
    }

    /// Sets field `number` (2 to 192), replacing any earlier value.
    ///
    /// # Panics
    /// If `number` is outside 2-192: field numbers come from code, not input.
    pub fn set(&mut self, number: u8, value: impl Into<Bytes>) {
        assert!(
            (2..=MAX_FIELD).contains(&number),
            "field number {number} outside 2-{MAX_FIELD}"
        );
        let value = value.into();
        let index = self.present.rank(number);
        if self.present.contains(number) {
            let old = self.slots.as_slice()[index];
            if let Ok(owned) = old.place()
                && let Some(place) = self.owned.get_mut(owned)
            {
                *place = value;
            } else {
                let slot = self.own(value);
                self.slots.as_mut_slice()[index] = slot;
            }
        } else {
            let slot = self.own(value);
            self.present.insert(number);
            self.slots.insert(index, slot);
        }
    }

    /// Appends a field above every field present (the decoder's path for converted
    /// values); `room` is how many more such values may follow, reserved at the first.
    pub(crate) fn push_ascending(&mut self, number: u8, value: Bytes, room: usize) {
        if self.owned.capacity() == 0 {
            self.owned.reserve_exact(room.min(usize::from(MAX_FIELD)));
        }
        let slot = self.own(value);
        self.push(number, slot);
    }

    /// Appends a field above every field present whose value is bytes `start..end` of
    /// the frame given to [`Message::reading`].
    #[inline(always)]
    pub(crate) fn push_frame_range(&mut self, number: u8, start: usize, end: usize) {
        debug_assert!(start <= end && end <= self.frame.len());
        match Slot::frame(start, end) {
            Some(slot) => self.push(number, slot),
            // Beyond the first 64 KiB of the frame: shared, not copied.
            None if start <= end && end <= self.frame.len() => {
                let value = self.frame.slice(start..end);
                self.push_ascending(number, value, 0);
            }
            None => {}
        }
    }

    #[inline(always)]
    fn push(&mut self, number: u8, slot: Slot) {
        debug_assert!(self.present.iter().all(|n| n < number));
        self.present.insert_in_range(number);
        self.slots.push(slot);
    }

    /// Removes field `number`, returning its value.
    pub fn remove(&mut self, number: u8) -> Option<Bytes> {
        if !self.present.contains(number) {
            return None;
        }
        let index = self.present.rank(number);
        self.present.remove(number);
        let slot = self.slots.remove(index);
        let Ok(owned) = slot.place() else {
            return Some(self.share(slot));
        };
        let value = (owned < self.owned.len()).then(|| self.owned.swap_remove(owned));
        // The value that was last now sits at `owned`: repoint its slot.
        let moved = self.owned.len();
        if let Some(slot) = self
            .slots
            .as_mut_slice()
            .iter_mut()
            .find(|slot| slot.place() == Ok(moved))
        {
            *slot = Slot::owned(owned as u16);
        }
        value
    }

    /// The fields present, in ascending order.
    pub fn fields(&self) -> impl Iterator<Item = (u8, &[u8])> {
        self.present.iter().zip(
            self.slots
                .as_slice()
                .iter()
                .map(|&slot| self.bytes_of(slot)),
        )
    }

    /// The set of fields present.
    pub fn field_set(&self) -> FieldSet {
        self.present
    }

    /// Number of fields present.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether no field is present.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Which fields are masked when shown.
    pub fn masking(&self) -> Masking {
        self.masking
    }

    /// Replaces the masking (a decoder sets the spec's).
    pub fn set_masking(&mut self, masking: Masking) {
        self.masking = masking;
    }
}

impl PartialEq for Message {
    /// Messages are equal when type and field values are; masking is presentation, and
    /// whether a value is kept in the frame or on its own does not matter.
    fn eq(&self, other: &Message) -> bool {
        self.mti == other.mti
            && self.present == other.present
            && self
                .fields()
                .map(|(_, v)| v)
                .eq(other.fields().map(|(_, v)| v))
    }
}

impl Eq for Message {}

#[cfg(test)]
mod tests {
    use super::*;

    fn mti(s: &str) -> Mti {
        s.parse().expect("valid MTI")
    }

    #[test]
    fn mti_responses_and_repeats() {
        assert_eq!(mti("0200").response(), Some(mti("0210")));
        assert_eq!(mti("0221").response(), Some(mti("0230")));
        assert_eq!(mti("0421").response(), Some(mti("0430")));
        assert_eq!(mti("0800").response(), Some(mti("0810")));
        assert_eq!(mti("0210").response(), None);
        assert!(mti("0221").is_repeat());
        assert!(!mti("0220").is_repeat());
        assert_eq!(mti("0401").original(), mti("0400"));
        assert_eq!((mti("0420").class(), mti("0420").function()), (4, 2));
        assert!("02x0".parse::<Mti>().is_err());
        assert!(Mti::new(b"020").is_none());
    }

    #[test]
    fn field_set_orders_like_the_wire() {
        let set = FieldSet::from_numbers(&[128, 2, 65, 64, 1, 192, 129]);
        assert_eq!(
            set.iter().collect::<Vec<_>>(),
            [1, 2, 64, 65, 128, 129, 192]
        );
        assert_eq!(set.words()[0], (1u64 << 63) | (1 << 62) | 1);
        assert_eq!(set.rank(2), 1);
        assert_eq!(set.rank(65), 3);
        assert_eq!(set.rank(129), 5);
        assert_eq!(set.len(), 7);
        assert!(!set.contains(0) && !set.contains(193));
    }

    #[test]
    fn set_get_remove_keep_fields_in_order() {
        let mut m = Message::new(mti("0200"));
        m.set(11, "000001");
        m.set(3, "280000");
        m.set(102, "5551234");
        m.set(4, "000000001000");
        m.set(11, "000002");
        assert_eq!(m.text(11), Some("000002"));
        assert_eq!(
            m.fields().map(|(n, _)| n).collect::<Vec<_>>(),
            [3, 4, 11, 102]
        );
        assert_eq!(m.remove(4).as_deref(), Some(&b"000000001000"[..]));
        assert_eq!(m.get(4), None);
        assert_eq!(m.text(102), Some("5551234"));
        assert_eq!(m.len(), 3);
    }

    #[test]
    fn a_message_is_small_enough_to_move_cheaply() {
        assert!(std::mem::size_of::<Message>() <= 256);
    }

    #[test]
    fn more_fields_than_fit_inline_move_to_the_heap_in_order() {
        let mut m = Message::new(mti("0200"));
        // Descending, so every set inserts at the front.
        for n in (2..=128u8).rev() {
            m.set(n, format!("{n}"));
        }
        assert!(m.len() > INLINE_FIELDS);
        assert_eq!(m.len(), 127);
        assert!(m.fields().all(|(n, v)| v == format!("{n}").as_bytes()));
        for n in (2..=128u8).step_by(2) {
            assert_eq!(m.remove(n).as_deref(), Some(format!("{n}").as_bytes()));
        }
        assert!(
            m.fields()
                .all(|(n, v)| n % 2 == 1 && v == format!("{n}").as_bytes())
        );
    }

    #[test]
    fn removing_and_replacing_owned_values_keeps_the_others() {
        let mut m = Message::new(mti("0200"));
        for n in [3, 4, 11, 41] {
            m.set(n, format!("v{n}"));
        }
        // The value stored last (41) moves into 4's place among the owned values.
        assert_eq!(m.remove(4).as_deref(), Some(&b"v4"[..]));
        m.set(41, "w41");
        m.set(4, "w4");
        let fields: Vec<_> = m.fields().map(|(n, v)| (n, v.to_vec())).collect();
        let expected: Vec<(u8, Vec<u8>)> = vec![
            (3, b"v3".to_vec()),
            (4, b"w4".to_vec()),
            (11, b"v11".to_vec()),
            (41, b"w41".to_vec()),
        ];
        assert_eq!(fields, expected);
        assert_eq!(m.get_bytes(11).as_deref(), Some(&b"v11"[..]));
    }

    #[test]
    fn frame_ranges_beyond_64_kib_are_shared_values() {
        let frame = Bytes::from(vec![b'7'; 70_000]);
        let mut m = Message::reading(mti("0200"), frame, 2, Masking::default());
        m.push_frame_range(2, 10, 20);
        m.push_frame_range(3, 69_990, 70_000);
        assert_eq!(m.get(2), Some(&b"7777777777"[..]));
        assert_eq!(m.get(3), Some(&b"7777777777"[..]));
        assert_eq!(m.remove(3).as_deref(), Some(&b"7777777777"[..]));
        assert_eq!(m.len(), 1);
    }

    #[test]
    #[should_panic(expected = "outside 2-192")]
    fn field_one_is_the_bitmap() {
        Message::new(mti("0800")).set(1, "x");
    }
}
