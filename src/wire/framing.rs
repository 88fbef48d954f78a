//! Framing: where one message ends and the next begins on a link's TCP stream.
//!
//! This module owns the bytes *around* each ISO 8583 message and nothing inside it: the
//! length prefix ([`LengthHeader`]) and an optional fixed header such as a 5-byte TPDU.
//! [`FrameCodec`] is the tokio-util [`Decoder`]/[`Encoder`] that turns a byte stream into
//! [`Frame`]s and back; the message in [`Frame::body`] belongs to [`crate::wire::iso8583`].
//! In jPOS vocabulary this is the *channel*: `ASCIIChannel` is [`LengthHeader::Ascii4`],
//! `NACChannel` is [`LengthHeader::Binary2`] with a 5-byte TPDU header, and `PostChannel`
//! is plain [`LengthHeader::Binary2`]. The decoder follows the tokio-util contract:
//! `Ok(None)` means more bytes are needed, `Err` means the stream is corrupt and that one
//! connection must be closed. A declared length is checked against the maximum frame
//! length before any buffer space is reserved for it, so a hostile or broken peer cannot
//! make the switch allocate more than that maximum per connection.

use std::fmt;
use std::str::FromStr;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use tokio_util::codec::{Decoder, Encoder};

/// Default maximum frame length in bytes, counted as the length prefix counts it: the
/// fixed header plus the body, not the prefix itself.
pub const DEFAULT_MAX_FRAME: usize = 8192;

/// How a frame's length is written in front of it. The length never counts the prefix
/// itself but does count the fixed header, if any.
///
/// Config files and the command line use the names `binary2` (the default), `binary2le`,
/// `ascii4` and `bcd2`; [`FromStr`], [`fmt::Display`] and serde all agree on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LengthHeader {
    /// `binary2`: 2-byte unsigned big-endian length, at most 65535. The default.
    #[default]
    Binary2,
    /// `binary2le`: 2-byte unsigned little-endian length, at most 65535.
    Binary2Le,
    /// `ascii4`: 4 ASCII decimal digits, zero-padded (`"0258"`), at most 9999.
    Ascii4,
    /// `bcd2`: 2 bytes of packed BCD, 4 digits (`0x02 0x58` is 258), at most 9999.
    Bcd2,
}

impl LengthHeader {
    /// Every length header, in documentation order.
    pub const ALL: [Self; 4] = [Self::Binary2, Self::Binary2Le, Self::Ascii4, Self::Bcd2];

    /// The name used in config files and on the command line, e.g. `"binary2"`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Binary2 => "binary2",
            Self::Binary2Le => "binary2le",
            Self::Ascii4 => "ascii4",
            Self::Bcd2 => "bcd2",
        }
    }

    /// Bytes the length prefix itself occupies on the wire: 4 for `ascii4`, otherwise 2.
    pub const fn prefix_len(self) -> usize {
        match self {
            Self::Ascii4 => 4,
            Self::Binary2 | Self::Binary2Le | Self::Bcd2 => 2,
        }
    }

    /// Largest length the prefix can express: 65535 for the binary kinds, 9999 for the
    /// decimal ones.
    pub const fn max_len(self) -> usize {
        match self {
            Self::Binary2 | Self::Binary2Le => u16::MAX as usize,
            Self::Ascii4 | Self::Bcd2 => 9999,
        }
    }

    /// Reads a length prefix of exactly [`Self::prefix_len`] bytes. The only place a
    /// prefix is read.
    fn read(self, prefix: &[u8]) -> Result<usize, FramingError> {
        let two_bytes = <[u8; 2]>::try_from(prefix).ok();
        let declared = match self {
            Self::Binary2 => two_bytes.map(u16::from_be_bytes).map(usize::from),
            Self::Binary2Le => two_bytes.map(u16::from_le_bytes).map(usize::from),
            Self::Ascii4 => from_decimal(prefix.iter().map(|byte| byte.wrapping_sub(b'0'))),
            Self::Bcd2 => from_decimal(prefix.iter().flat_map(|byte| [byte >> 4, byte & 0x0f])),
        };
        declared.ok_or_else(|| FramingError::InvalidLengthHeader {
            length_header: self,
            prefix_hex: hex::encode(prefix),
        })
    }

    /// Appends `len` as a length prefix. The only place a prefix is written; fails,
    /// writing nothing, if `len` is more than [`Self::max_len`].
    fn write(self, len: usize, dst: &mut BytesMut) -> Result<(), FramingError> {
        let too_large = || FramingError::OutboundTooLarge {
            len,
            max: self.max_len(),
        };
        match self {
            Self::Binary2 => dst.put_u16(u16::try_from(len).map_err(|_| too_large())?),
            Self::Binary2Le => dst.put_u16_le(u16::try_from(len).map_err(|_| too_large())?),
            Self::Ascii4 => {
                let digits = to_decimal(len).ok_or_else(too_large)?;
                dst.put_slice(&digits.map(|digit| b'0' + digit));
            }
            Self::Bcd2 => {
                let [thousands, hundreds, tens, units] = to_decimal(len).ok_or_else(too_large)?;
                dst.put_slice(&[thousands << 4 | hundreds, tens << 4 | units]);
            }
        }
        Ok(())
    }
}

/// Folds decimal digits into a number; `None` if any "digit" is above 9.
fn from_decimal(digits: impl IntoIterator<Item = u8>) -> Option<usize> {
    digits.into_iter().try_fold(0, |value: usize, digit| {
        (digit <= 9).then(|| value * 10 + usize::from(digit))
    })
}

/// The four decimal digits of `len`, most significant first; `None` above 9999.
fn to_decimal(len: usize) -> Option<[u8; 4]> {
    // Each digit is below 10, so the cast is lossless.
    (len <= 9999).then(|| [1000, 100, 10, 1].map(|place| (len / place % 10) as u8))
}

impl fmt::Display for LengthHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

impl FromStr for LengthHeader {
    type Err = FramingError;

    /// Parses a config/CLI name (`binary2`, `binary2le`, `ascii4`, `bcd2`), exactly as
    /// serde does: lower case only.
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|length_header| length_header.name() == name)
            .ok_or_else(|| FramingError::UnknownLengthHeader {
                name: name.to_owned(),
            })
    }
}

/// One message as it travels on a link: what follows the length prefix, split into the
/// fixed header and the body.
///
/// A frame whose header and body are both empty is a keep-alive: a zero length prefix
/// and nothing else, whatever fixed header length the codec is configured with.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Frame {
    /// The fixed header, e.g. a TPDU: exactly [`FrameCodec::header_len`] bytes, or empty
    /// when no fixed header is configured (the default) and for a keep-alive.
    pub header: Bytes,
    /// The message itself, usually ISO 8583 for [`crate::wire::iso8583`]; empty for a
    /// keep-alive.
    pub body: Bytes,
}

impl Frame {
    /// Whether this is a keep-alive: header and body both empty (a zero length prefix).
    pub fn is_keep_alive(&self) -> bool {
        self.header.is_empty() && self.body.is_empty()
    }
}

/// The framing of one link: a tokio-util [`Decoder`] yielding [`Frame`]s and an
/// [`Encoder`] for [`Frame`] (and for [`Bytes`] when there is no fixed header).
///
/// Built with [`FrameCodec::new`] and the `with_*` methods; defaults: no fixed header,
/// maximum frame [`DEFAULT_MAX_FRAME`] bytes. [`Default`] also picks
/// [`LengthHeader::Binary2`].
///
/// ```
/// use replenish::wire::framing::{FrameCodec, LengthHeader};
///
/// // jPOS NACChannel: binary length, then a 5-byte TPDU counted inside it.
/// let codec = FrameCodec::new(LengthHeader::Binary2).with_header_len(5).with_max_frame(4096);
/// assert_eq!(codec.max_frame(), 4096);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameCodec {
    length_header: LengthHeader,
    header_len: usize,
    max_frame: usize,
}

impl FrameCodec {
    /// A codec for `length_header` with no fixed header and a maximum frame of
    /// [`DEFAULT_MAX_FRAME`] bytes.
    pub const fn new(length_header: LengthHeader) -> Self {
        Self {
            length_header,
            header_len: 0,
            max_frame: DEFAULT_MAX_FRAME,
        }
        .with_max_frame(DEFAULT_MAX_FRAME)
    }

    /// Sets the fixed header length in bytes (e.g. 5 for a TPDU); default 0 (none). The
    /// header follows the length prefix and is counted inside the length.
    pub const fn with_header_len(mut self, header_len: usize) -> Self {
        self.header_len = header_len;
        self
    }

    /// Sets the maximum frame length in bytes, counted as the length prefix counts it
    /// (fixed header plus body); default [`DEFAULT_MAX_FRAME`]. A value above what the
    /// length header can express ([`LengthHeader::max_len`]) is lowered to that.
    pub const fn with_max_frame(mut self, max_frame: usize) -> Self {
        let expressible = self.length_header.max_len();
        self.max_frame = if max_frame < expressible {
            max_frame
        } else {
            expressible
        };
        self
    }

    /// The length prefix format.
    pub const fn length_header(&self) -> LengthHeader {
        self.length_header
    }

    /// The fixed header length in bytes; 0 when there is none.
    pub const fn header_len(&self) -> usize {
        self.header_len
    }

    /// The effective maximum frame length in bytes (fixed header plus body).
    pub const fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// Accepts a peer's declared length or says why the stream is corrupt.
    fn check_declared(&self, declared: usize) -> Result<usize, FramingError> {
        if declared > self.max_frame {
            Err(FramingError::LengthTooLarge {
                declared,
                max: self.max_frame,
            })
        } else if declared != 0 && declared < self.header_len {
            Err(FramingError::ShorterThanHeader {
                declared,
                header_len: self.header_len,
            })
        } else {
            Ok(declared)
        }
    }

    /// Checks an outbound frame against the configured header length and maximum and
    /// returns the length to put in its prefix.
    fn check_outbound(&self, frame: &Frame) -> Result<usize, FramingError> {
        if frame.header.len() != self.header_len && !frame.is_keep_alive() {
            return Err(FramingError::HeaderLenMismatch {
                expected: self.header_len,
                actual: frame.header.len(),
            });
        }
        let len = frame.header.len().saturating_add(frame.body.len());
        if len > self.max_frame {
            return Err(FramingError::OutboundTooLarge {
                len,
                max: self.max_frame,
            });
        }
        Ok(len)
    }
}

impl Default for FrameCodec {
    /// `binary2`, no fixed header, maximum frame [`DEFAULT_MAX_FRAME`] bytes.
    fn default() -> Self {
        Self::new(LengthHeader::default())
    }
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = FramingError;

    /// Yields the next complete frame. A zero length prefix yields an empty [`Frame`]
    /// (a keep-alive, which some peers send) even when a fixed header is configured.
    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FramingError> {
        let prefix_len = self.length_header.prefix_len();
        let Some(prefix) = src.get(..prefix_len) else {
            return Ok(None);
        };
        let declared = self.check_declared(self.length_header.read(prefix)?)?;
        let frame_end = prefix_len + declared;
        if src.len() < frame_end {
            // While a frame is incomplete the buffer is exactly one maximum frame (prefix
            // included), so the frame fits. Not `src.reserve`: that keeps the frames
            // already consumed in front of `src` inside the allocation, and any later
            // growth doubles that too, so a peer mixing short and long frames could grow
            // the buffer to several maximum frames. Moving the partial frame into a new
            // buffer happens once per incomplete frame (appending never changes the
            // capacity), and `declared` is within `max_frame` here.
            let one_frame = prefix_len + self.max_frame;
            if src.capacity() != one_frame {
                let mut fresh = BytesMut::with_capacity(one_frame);
                fresh.extend_from_slice(src);
                *src = fresh;
            }
            return Ok(None);
        }
        src.advance(prefix_len);
        let mut body = src.split_to(declared).freeze();
        // `declared` is 0 (a keep-alive) or at least `header_len`.
        let header = body.split_to(self.header_len.min(declared));
        Ok(Some(Frame { header, body }))
    }

    /// As [`Decoder::decode`], but bytes left over when the peer closes are an error.
    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FramingError> {
        match self.decode(src)? {
            Some(frame) => Ok(Some(frame)),
            None if src.is_empty() => Ok(None),
            None => Err(FramingError::Truncated {
                buffered: src.len(),
            }),
        }
    }
}

impl Encoder<Frame> for FrameCodec {
    type Error = FramingError;

    /// Writes prefix, header and body. Fails, writing nothing, if the header is not
    /// [`FrameCodec::header_len`] bytes (unless the frame is a keep-alive) or the frame
    /// is longer than [`FrameCodec::max_frame`].
    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), FramingError> {
        let len = self.check_outbound(&frame)?;
        dst.reserve(self.length_header.prefix_len() + len);
        self.length_header.write(len, dst)?;
        dst.put_slice(&frame.header);
        dst.put_slice(&frame.body);
        Ok(())
    }
}

impl Encoder<Bytes> for FrameCodec {
    type Error = FramingError;

    /// Writes `body` as a frame with no fixed header; fails if a fixed header is
    /// configured.
    fn encode(&mut self, body: Bytes, dst: &mut BytesMut) -> Result<(), FramingError> {
        if self.header_len != 0 {
            return Err(FramingError::HeaderLenMismatch {
                expected: self.header_len,
                actual: 0,
            });
        }
        let frame = Frame {
            header: Bytes::new(),
            body,
        };
        Encoder::<Frame>::encode(self, frame, dst)
    }
}

/// Everything that can go wrong in framing. A decode error means the stream can no
/// longer be trusted: close that connection (and only that one) and log the message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FramingError {
    /// The peer's length prefix declares more than the maximum frame length. Nothing was
    /// reserved for it.
    #[error("length header declares {declared} bytes, maximum is {max}")]
    LengthTooLarge {
        /// The length the peer declared.
        declared: usize,
        /// The codec's maximum frame length.
        max: usize,
    },
    /// The peer's length prefix is not a number in its format: a non-digit in `ascii4`
    /// or a nibble above 9 in `bcd2`.
    #[error("length header 0x{prefix_hex} is not a valid {length_header} length")]
    InvalidLengthHeader {
        /// The format the prefix was read as.
        length_header: LengthHeader,
        /// The prefix bytes as received, in hex.
        prefix_hex: String,
    },
    /// The peer's frame is not empty but shorter than the configured fixed header.
    #[error("frame of {declared} bytes is shorter than the {header_len}-byte fixed header")]
    ShorterThanHeader {
        /// The length the peer declared.
        declared: usize,
        /// The configured fixed header length.
        header_len: usize,
    },
    /// The peer closed the connection in the middle of a frame.
    #[error("connection closed inside a frame, {buffered} bytes of it unread")]
    Truncated {
        /// Bytes of the incomplete frame (prefix included) that were received.
        buffered: usize,
    },
    /// An outbound frame's header is not the configured fixed header length.
    #[error("outbound frame header is {actual} bytes, this link's fixed header is {expected}")]
    HeaderLenMismatch {
        /// The configured fixed header length.
        expected: usize,
        /// The header length of the frame given to the encoder (0 for a bare body).
        actual: usize,
    },
    /// An outbound frame is longer than the maximum frame length or than the length
    /// prefix can express.
    #[error("outbound frame of {len} bytes exceeds the maximum of {max}")]
    OutboundTooLarge {
        /// The frame's length as the prefix would count it.
        len: usize,
        /// The limit it exceeds.
        max: usize,
    },
    /// A configured length header name is not `binary2`, `binary2le`, `ascii4` or `bcd2`.
    #[error("unknown length header `{name}`, expected one of binary2, binary2le, ascii4, bcd2")]
    UnknownLengthHeader {
        /// The name as given.
        name: String,
    },
    /// Reading from or writing to the socket failed (required by tokio-util's codec
    /// traits).
    #[error("framing I/O error: {0}")]
    Io(#[from] std::io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TPDU: &[u8] = &[0x60, 0x00, 0x01, 0x00, 0x00];

    /// Every length header, without and with a 5-byte TPDU.
    fn codecs() -> impl Iterator<Item = FrameCodec> {
        LengthHeader::ALL.into_iter().flat_map(|length_header| {
            let plain = FrameCodec::new(length_header);
            [plain, plain.with_header_len(TPDU.len())]
        })
    }

    fn body(len: usize) -> Bytes {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    fn frame(codec: &FrameCodec, body: impl Into<Bytes>) -> Frame {
        Frame {
            header: Bytes::copy_from_slice(&TPDU[..codec.header_len()]),
            body: body.into(),
        }
    }

    /// Frames of 0, 1, 300 and the maximum body length, then a keep-alive.
    fn fixture_frames(codec: &FrameCodec) -> Vec<Frame> {
        let max_body = codec.max_frame() - codec.header_len();
        let mut frames: Vec<Frame> = [0, 1, 300, max_body, 1]
            .into_iter()
            .map(|len| frame(codec, body(len)))
            .collect();
        frames.push(Frame::default());
        frames
    }

    fn encode_all(mut codec: FrameCodec, frames: &[Frame]) -> BytesMut {
        let mut stream = BytesMut::new();
        for frame in frames {
            codec
                .encode(frame.clone(), &mut stream)
                .expect("frame within limits");
        }
        stream
    }

    /// Feeds `chunks` to a fresh decoder; asserts nothing is left over at the end.
    fn decode_chunks<'a>(
        mut codec: FrameCodec,
        chunks: impl IntoIterator<Item = &'a [u8]>,
    ) -> Vec<Frame> {
        let mut buffer = BytesMut::new();
        let mut frames = Vec::new();
        for chunk in chunks {
            buffer.extend_from_slice(chunk);
            while let Some(frame) = codec.decode(&mut buffer).expect("valid stream") {
                frames.push(frame);
            }
        }
        let last = codec.decode_eof(&mut buffer).expect("no partial frame");
        assert!(last.is_none() && buffer.is_empty());
        frames
    }

    fn decode_once(mut codec: FrameCodec, bytes: &[u8]) -> Result<Option<Frame>, FramingError> {
        codec.decode(&mut BytesMut::from(bytes))
    }

    fn split_at_offsets<'a>(stream: &'a [u8], sorted_offsets: &[usize]) -> Vec<&'a [u8]> {
        let mut chunks = Vec::new();
        let mut start = 0;
        for &end in sorted_offsets {
            chunks.push(&stream[start..end]);
            start = end;
        }
        chunks.push(&stream[start..]);
        chunks
    }

    #[test]
    fn every_split_offset_yields_the_same_frames() {
        for codec in codecs() {
            let frames = fixture_frames(&codec);
            let stream = encode_all(codec, &frames);
            for offset in 0..=stream.len() {
                let (head, tail) = stream.split_at(offset);
                let decoded = decode_chunks(codec, [head, tail]);
                assert!(decoded == frames, "{codec:?} split at {offset}");
            }
        }
    }

    #[test]
    fn byte_by_byte_yields_the_same_frames() {
        for codec in codecs() {
            let frames = fixture_frames(&codec);
            let stream = encode_all(codec, &frames);
            assert!(
                decode_chunks(codec, stream.chunks(1)) == frames,
                "{codec:?}"
            );
        }
    }

    #[test]
    fn prefixes_match_known_bytes() {
        let cases: [(LengthHeader, &[u8]); 4] = [
            (LengthHeader::Binary2, &[0x01, 0x02]),
            (LengthHeader::Binary2Le, &[0x02, 0x01]),
            (LengthHeader::Ascii4, b"0258"),
            (LengthHeader::Bcd2, &[0x02, 0x58]),
        ];
        for (length_header, prefix) in cases {
            let codec = FrameCodec::new(length_header).with_header_len(TPDU.len());
            let sent = frame(&codec, body(258 - TPDU.len()));
            let stream = encode_all(codec, std::slice::from_ref(&sent));
            assert_eq!(&stream[..prefix.len()], prefix, "{length_header}");
            assert_eq!(&stream[prefix.len()..][..TPDU.len()], TPDU);
            assert_eq!(stream.len(), prefix.len() + 258);
            assert_eq!(decode_once(codec, &stream).expect("valid"), Some(sent));
        }
    }

    #[test]
    fn oversized_length_is_rejected_before_reserving() {
        let cases: [(LengthHeader, &[u8]); 4] = [
            (LengthHeader::Binary2, &[0xff, 0xff]),
            (LengthHeader::Binary2Le, &[0x01, 0x20]),
            (LengthHeader::Ascii4, b"9000"),
            (LengthHeader::Bcd2, &[0x99, 0x99]),
        ];
        for (length_header, prefix) in cases {
            let mut src = BytesMut::from(prefix);
            let error = FrameCodec::new(length_header)
                .decode(&mut src)
                .expect_err("oversized");
            assert!(
                matches!(error, FramingError::LengthTooLarge { max: 8192, .. }),
                "{error}"
            );
            assert!(src.capacity() <= 16, "grew to {}", src.capacity());
        }
    }

    #[test]
    fn oversized_length_names_declared_and_maximum() {
        let error = decode_once(FrameCodec::new(LengthHeader::Ascii4), b"9000").expect_err("9000");
        assert_eq!(
            error.to_string(),
            "length header declares 9000 bytes, maximum is 8192"
        );
    }

    #[test]
    fn reservation_for_an_accepted_length_is_bounded_by_the_maximum() {
        let mut src = BytesMut::from(&[0x20, 0x00][..]);
        let pending = FrameCodec::default()
            .decode(&mut src)
            .expect("8192 is allowed");
        assert!(pending.is_none());
        assert!(src.capacity() <= 2 * (2 + DEFAULT_MAX_FRAME));
    }

    #[test]
    fn garbage_decimal_prefixes_are_rejected() {
        let cases: [(LengthHeader, &[u8]); 7] = [
            (LengthHeader::Ascii4, b"00a1"),
            (LengthHeader::Ascii4, b" 123"),
            (LengthHeader::Ascii4, b"-123"),
            (LengthHeader::Ascii4, b"12:4"),
            (LengthHeader::Bcd2, &[0x0a, 0x00]),
            (LengthHeader::Bcd2, &[0x00, 0xf0]),
            (LengthHeader::Bcd2, &[0x12, 0x3f]),
        ];
        for (length_header, prefix) in cases {
            let error = decode_once(FrameCodec::new(length_header), prefix).expect_err("garbage");
            assert!(
                matches!(&error, FramingError::InvalidLengthHeader { length_header: kind, .. } if *kind == length_header),
                "{error}"
            );
            let message = error.to_string();
            assert!(message.contains(&hex::encode(prefix)), "{message}");
            assert!(message.contains(length_header.name()), "{message}");
        }
    }

    #[test]
    fn frame_shorter_than_fixed_header_is_rejected() {
        let codec = FrameCodec::new(LengthHeader::Binary2).with_header_len(TPDU.len());
        let error = decode_once(codec, &[0x00, 0x03, 1, 2, 3]).expect_err("short");
        assert!(matches!(
            error,
            FramingError::ShorterThanHeader {
                declared: 3,
                header_len: 5
            }
        ));
    }

    #[test]
    fn zero_length_frame_is_a_keep_alive_even_with_a_fixed_header() {
        for codec in codecs() {
            let zero = encode_all(codec, &[Frame::default()]);
            assert_eq!(zero.len(), codec.length_header().prefix_len());
            let decoded = decode_once(codec, &zero).expect("valid").expect("complete");
            assert!(decoded.is_keep_alive(), "{codec:?}");
        }
    }

    #[test]
    fn header_len_mismatch_on_encode_is_rejected() {
        let mut with_tpdu = FrameCodec::new(LengthHeader::Binary2).with_header_len(TPDU.len());
        let plain = FrameCodec::new(LengthHeader::Binary2);
        let mut dst = BytesMut::new();
        let cases = [
            (with_tpdu, Bytes::from_static(&TPDU[..4]), 5, 4),
            (with_tpdu, Bytes::new(), 5, 0),
            (plain, Bytes::from_static(TPDU), 0, 5),
        ];
        for (mut codec, header, expected_len, actual_len) in cases {
            let sent = Frame {
                header,
                body: body(10),
            };
            let error = codec.encode(sent, &mut dst).expect_err("mismatch");
            assert!(
                matches!(error, FramingError::HeaderLenMismatch { expected, actual } if expected == expected_len && actual == actual_len),
                "{error}"
            );
        }
        let error = with_tpdu.encode(body(10), &mut dst).expect_err("bare body");
        assert!(matches!(
            error,
            FramingError::HeaderLenMismatch {
                expected: 5,
                actual: 0
            }
        ));
        assert!(dst.is_empty(), "a failed encode wrote {dst:?}");
    }

    #[test]
    fn bare_body_encodes_like_a_frame_without_header() {
        for mut codec in codecs().filter(|codec| codec.header_len() == 0) {
            let mut from_bytes = BytesMut::new();
            codec.encode(body(300), &mut from_bytes).expect("no header");
            assert_eq!(from_bytes, encode_all(codec, &[frame(&codec, body(300))]));
        }
    }

    #[test]
    fn max_frame_exactly_is_accepted_and_one_more_is_rejected() {
        for codec in codecs() {
            let mut limited = codec.with_max_frame(100);
            let body_at_limit = 100 - codec.header_len();
            let at_limit = frame(&codec, body(body_at_limit));
            let stream = encode_all(limited, std::slice::from_ref(&at_limit));
            assert_eq!(
                decode_once(limited, &stream).expect("valid"),
                Some(at_limit)
            );

            let over = frame(&codec, body(body_at_limit + 1));
            let mut dst = BytesMut::new();
            let error = limited.encode(over.clone(), &mut dst).expect_err("101");
            assert!(matches!(
                error,
                FramingError::OutboundTooLarge { len: 101, max: 100 }
            ));
            assert!(dst.is_empty());

            let stream = encode_all(codec, &[over]);
            let error = decode_once(limited, &stream).expect_err("101");
            assert!(matches!(
                error,
                FramingError::LengthTooLarge {
                    declared: 101,
                    max: 100
                }
            ));
        }
    }

    #[test]
    fn max_frame_is_capped_at_what_the_prefix_can_express() {
        for length_header in LengthHeader::ALL {
            let mut codec = FrameCodec::new(length_header).with_max_frame(usize::MAX);
            let expressible = length_header.max_len();
            assert_eq!(codec.max_frame(), expressible);
            let at_limit = frame(&codec, body(expressible));
            let stream = encode_all(codec, std::slice::from_ref(&at_limit));
            assert_eq!(decode_once(codec, &stream).expect("valid"), Some(at_limit));
            let error = codec
                .encode(body(expressible + 1), &mut BytesMut::new())
                .expect_err("not expressible");
            assert!(matches!(error, FramingError::OutboundTooLarge { .. }));
        }
    }

    #[test]
    fn peer_closing_inside_a_frame_is_reported() {
        let mut codec = FrameCodec::default();
        for partial in [&[0x00][..], &[0x00, 0x0a, 1, 2, 3][..]] {
            let mut src = BytesMut::from(partial);
            let error = codec.decode_eof(&mut src).expect_err("truncated");
            assert!(
                matches!(error, FramingError::Truncated { buffered } if buffered == partial.len()),
                "{error}"
            );
        }
        assert!(
            codec
                .decode_eof(&mut BytesMut::new())
                .expect("clean close")
                .is_none()
        );
    }

    #[test]
    fn names_agree_across_from_str_display_and_serde() {
        assert_eq!(LengthHeader::default(), LengthHeader::Binary2);
        assert_eq!(
            FrameCodec::default(),
            FrameCodec::new(LengthHeader::Binary2)
        );
        for length_header in LengthHeader::ALL {
            let name = length_header.name();
            assert_eq!(length_header.to_string(), name);
            assert_eq!(name.parse::<LengthHeader>().expect("known"), length_header);
            let quoted = format!("\"{name}\"");
            let from_json: LengthHeader = serde_json::from_str(&quoted).expect("known");
            assert_eq!(from_json, length_header);
            assert_eq!(
                serde_json::to_string(&length_header).expect("serialize"),
                quoted
            );
        }
    }

    #[test]
    fn unknown_name_is_rejected_listing_the_known_ones() {
        for name in ["", "BINARY2", "ascii", "binary2-le"] {
            let error = name.parse::<LengthHeader>().expect_err("unknown");
            let message = error.to_string();
            for known in LengthHeader::ALL {
                assert!(message.contains(known.name()), "{message}");
            }
        }
    }

    fn arbitrary_codec() -> impl Strategy<Value = FrameCodec> {
        (
            prop::sample::select(LengthHeader::ALL.to_vec()),
            any::<bool>(),
            8_usize..=600,
        )
            .prop_map(|(length_header, with_tpdu, max_frame)| {
                let header_len = if with_tpdu { TPDU.len() } else { 0 };
                FrameCodec::new(length_header)
                    .with_header_len(header_len)
                    .with_max_frame(max_frame)
            })
    }

    proptest! {
        #[test]
        fn random_frames_survive_random_splits(
            codec in arbitrary_codec(),
            bodies in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..=600), 0..8),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
        ) {
            let max_body = codec.max_frame() - codec.header_len();
            let frames: Vec<Frame> = bodies
                .into_iter()
                .map(|mut bytes| {
                    bytes.truncate(max_body);
                    frame(&codec, bytes)
                })
                .collect();
            let stream = encode_all(codec, &frames);
            let mut offsets: Vec<usize> = cuts.iter().map(|cut| cut.index(stream.len() + 1)).collect();
            offsets.sort_unstable();
            let decoded = decode_chunks(codec, split_at_offsets(&stream, &offsets));
            prop_assert_eq!(decoded, frames);
        }

        #[test]
        fn arbitrary_bytes_never_panic_or_overallocate(
            mut codec in arbitrary_codec(),
            bytes in prop::collection::vec(any::<u8>(), 0..2000),
        ) {
            let mut src = BytesMut::from(&bytes[..]);
            while let Ok(Some(decoded)) = codec.decode(&mut src) {
                prop_assert!(decoded.header.len() + decoded.body.len() <= codec.max_frame());
            }
            let bound = bytes.len() + 2 * (codec.length_header().prefix_len() + codec.max_frame());
            prop_assert!(src.capacity() <= bound, "capacity {} > {}", src.capacity(), bound);
        }
    }
}
