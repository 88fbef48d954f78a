//! Decode and encode errors. A decode error names the element at fault (MTI, a bitmap or
//! a field number), the byte offset in the message and what was wrong, and keeps the
//! fields that were read, so a switch can still answer `30` with the request's MTI and
//! STAN. No error ever carries a field's content, so none can leak a PAN or track data.

use std::fmt;

use super::charset::Class;
use super::message::{Message, Mti};

/// The part of a message an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Element {
    /// The message type indicator.
    Mti,
    /// The primary (1), secondary (2) or tertiary (3) bitmap.
    Bitmap(u8),
    /// A data element.
    Field(u8),
    /// The message as a whole (e.g. bytes left after the last field).
    Message,
}

impl fmt::Display for Element {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Element::Mti => f.write_str("MTI"),
            Element::Bitmap(1) => f.write_str("primary bitmap"),
            Element::Bitmap(2) => f.write_str("secondary bitmap"),
            Element::Bitmap(_) => f.write_str("tertiary bitmap"),
            Element::Field(n) => write!(f, "field {n}"),
            Element::Message => f.write_str("message"),
        }
    }
}

/// What went wrong while decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    /// The input ended inside the element.
    Truncated {
        /// Bytes the element needs.
        needed: usize,
        /// Bytes that were left.
        available: usize,
    },
    /// A length prefix is not a number in its encoding.
    BadLengthPrefix,
    /// A length prefix declares more than the field's maximum.
    TooLong {
        /// Declared length.
        length: usize,
        /// The spec's maximum.
        max: usize,
    },
    /// A character outside the field's class.
    BadCharacter {
        /// The field's class.
        class: Class,
        /// The field's length, for the message ("expected 12 digits").
        length: usize,
    },
    /// A packed BCD byte holds a nibble that is not a digit (or a valid pad).
    BadBcd,
    /// A hex-encoded element holds a character that is not a hex digit, or an odd count.
    BadHex,
    /// An EBCDIC byte with no ASCII equivalent.
    NotAscii,
    /// The bitmap flags a field the spec does not define.
    UndefinedField,
    /// Bytes remain after the last field.
    TrailingBytes {
        /// How many.
        count: usize,
    },
}

impl fmt::Display for DecodeErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeErrorKind::Truncated { needed, available } => {
                write!(f, "needs {needed} bytes but only {available} remain")
            }
            DecodeErrorKind::BadLengthPrefix => f.write_str("length prefix is not a number"),
            DecodeErrorKind::TooLong { length, max } => {
                write!(f, "length {length} exceeds the maximum {max}")
            }
            DecodeErrorKind::BadCharacter {
                class: Class::N,
                length,
            } => write!(f, "expected {length} digits, found non-digit"),
            DecodeErrorKind::BadCharacter { class, length } => write!(
                f,
                "expected {length} {}, found a character outside class {}",
                class.noun(),
                class.name()
            ),
            DecodeErrorKind::BadBcd => f.write_str("bad BCD nibble"),
            DecodeErrorKind::BadHex => f.write_str("bad hex digit"),
            DecodeErrorKind::NotAscii => f.write_str("EBCDIC byte with no ASCII equivalent"),
            DecodeErrorKind::UndefinedField => {
                f.write_str("flagged in the bitmap but not defined by the spec")
            }
            DecodeErrorKind::TrailingBytes { count } => {
                write!(f, "{count} bytes left after the last field")
            }
        }
    }
}

/// A message that could not be decoded.
#[derive(Debug, Clone)]
pub struct DecodeError {
    /// Where the fault is.
    pub element: Element,
    /// Byte offset of the fault from the start of the message.
    pub offset: usize,
    /// What is wrong.
    pub kind: DecodeErrorKind,
    partial: Option<Box<Message>>,
}

impl DecodeError {
    pub(crate) fn new(element: Element, offset: usize, kind: DecodeErrorKind) -> DecodeError {
        DecodeError {
            element,
            offset,
            kind,
            partial: None,
        }
    }

    pub(crate) fn with_partial(mut self, message: Message) -> DecodeError {
        self.partial = Some(Box::new(message));
        self
    }

    /// The fields that decoded cleanly (every field up to a structural fault, every
    /// field but the bad ones after a content fault), when the MTI could be read.
    pub fn partial(&self) -> Option<&Message> {
        self.partial.as_deref()
    }

    /// The MTI, when it could be read.
    pub fn mti(&self) -> Option<Mti> {
        self.partial().map(Message::mti)
    }

    /// DE11 (the STAN), when it could be read.
    pub fn stan(&self) -> Option<&str> {
        self.partial()?.text(11)
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} at offset {}",
            self.element, self.kind, self.offset
        )
    }
}

impl std::error::Error for DecodeError {}

/// A message that cannot be encoded with a spec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The message has a field the spec does not define.
    #[error("field {0}: not defined by spec")]
    UndefinedField(u8),
    /// A value is longer than the field allows.
    #[error("field {field}: length {length} exceeds the maximum {max}")]
    TooLong {
        /// The field.
        field: u8,
        /// The value's length in the field's units.
        length: usize,
        /// The spec's maximum.
        max: usize,
    },
    /// A fixed field's value has the wrong length and the class has no filler.
    #[error("field {field}: fixed length {expected}, value has {length}")]
    WrongLength {
        /// The field.
        field: u8,
        /// The value's length.
        length: usize,
        /// The fixed length.
        expected: usize,
    },
    /// A character outside the field's class (or not representable in its encoding).
    #[error("field {field}: character {index} is not allowed in class {}", class.name())]
    BadCharacter {
        /// The field.
        field: u8,
        /// The field's class.
        class: Class,
        /// Index of the first bad character in the value.
        index: usize,
    },
}
