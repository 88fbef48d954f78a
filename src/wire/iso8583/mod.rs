//! The ISO 8583 wire format alone: [`Message`] and [`Mti`], field [`Spec`]s loaded from
//! TOML data, the spec-driven [`decode`]r and the [`encode`]r, the JSON form used
//! by the command line, and masking of account numbers and secrets. No sockets, no
//! files but spec files, no async: everything above builds on this.

mod charset;
mod decode;
mod display;
mod encode;
mod error;
mod json;
mod message;
mod spec;

pub use charset::Class;
pub use decode::{decode, decode_slice};
pub use display::{carries_pin, mask_pan, pretty};
pub use encode::{encode, encode_to_bytes};
pub use error::{DecodeError, DecodeErrorKind, Element, EncodeError};
pub use json::{JsonError, from_json, from_json_str, to_json};
pub use message::{FieldSet, Masking, Message, Mti};
pub use spec::{
    BitmapEncoding, Encoding, FieldSpec, LengthType, MAX_FIELD, Mask, Pad, Spec, SpecError,
};
