//! Field specs as data (what jPOS calls a packager): for each data element its class,
//! length type, maximum length, data and length-prefix encodings, padding and masking,
//! read from TOML files in `specs/`. The four shipped specs are embedded in the binary;
//! any other spec is a TOML file a user writes, with no code to touch. A spec is checked
//! whole when it loads, so the codec never meets an inconsistent field definition.

use std::path::Path;

use serde::Deserialize;

use super::charset::Class;
use super::message::{FieldSet, Masking};

/// The highest field number any spec can define (with a tertiary bitmap).
pub const MAX_FIELD: u8 = 192;

/// How characters, digits or bytes are written on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// One ASCII byte per character.
    Ascii,
    /// One EBCDIC (code page 037) byte per character.
    Ebcdic,
    /// Packed decimal, two digits per byte.
    Bcd,
    /// Raw bytes (binary fields, binary length prefixes).
    Binary,
    /// Binary data written as ASCII hex characters, two per byte (upper case).
    Hex,
}

/// How bitmaps are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BitmapEncoding {
    /// Eight raw bytes per bitmap.
    Binary,
    /// Sixteen ASCII hex characters per bitmap (upper case when written).
    Hex,
}

/// A field's length type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LengthType {
    /// Always exactly `max` long.
    Fixed,
    /// Up to 99, with a 2-digit length prefix (1 byte when BCD or binary).
    Llvar,
    /// Up to 999, with a 3-digit length prefix (2 bytes when BCD or binary).
    Lllvar,
    /// Up to 9999, with a 4-digit length prefix (2 bytes when BCD or binary).
    Llllvar,
}

impl LengthType {
    /// Number of decimal digits in the prefix; 0 for fixed fields.
    pub fn digits(self) -> usize {
        match self {
            LengthType::Fixed => 0,
            LengthType::Llvar => 2,
            LengthType::Lllvar => 3,
            LengthType::Llllvar => 4,
        }
    }

    /// Size of the prefix on the wire in the given encoding.
    pub fn prefix_bytes(self, encoding: Encoding) -> usize {
        match (self, encoding) {
            (LengthType::Fixed, _) => 0,
            (LengthType::Llvar, Encoding::Binary) => 1,
            (_, Encoding::Binary) => 2,
            (t, Encoding::Bcd) => t.digits().div_ceil(2),
            (t, _) => t.digits(),
        }
    }

    /// The largest length the prefix can express in the given encoding.
    fn limit(self, encoding: Encoding) -> usize {
        match (self, encoding) {
            (LengthType::Fixed, _) => usize::MAX,
            (LengthType::Llvar, Encoding::Binary) => 255,
            (_, Encoding::Binary) => 65535,
            (t, _) => 10usize.pow(t.digits() as u32) - 1,
        }
    }
}

/// The side a value is padded on: where the filler goes when a fixed field's value is
/// short (`0` for numerics, space for text), and where the pad nibble of an odd-length
/// BCD value sits (0 on the left, F on the right).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pad {
    /// Right-justified: filler before the value. The default for `n`.
    Left,
    /// Left-justified: filler after the value. The default for all other classes.
    Right,
}

/// How a field is shown in logs, errors and `Debug` output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mask {
    /// An account number: first 6 and last 4 digits shown.
    Pan,
    /// Secret (track data, PIN block, EMV data): only its length is shown.
    Redact,
}

/// One data element's definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldSpec {
    /// Data element number, 2 to 128 (192 with a tertiary bitmap).
    pub number: u8,
    /// Human name, for `decode --pretty` and documentation.
    pub name: String,
    /// Character class of the value.
    pub class: Class,
    /// Fixed or variable length.
    pub length: LengthType,
    /// Exact length (fixed) or maximum (variable), in characters; digits for BCD;
    /// bytes for binary; hex characters for hex.
    pub max: usize,
    /// Encoding of the value.
    pub data: Encoding,
    /// Encoding of the length prefix (unused for fixed fields).
    pub length_encoding: Encoding,
    /// Padding side (see [`Pad`]).
    pub pad: Pad,
    /// Masking in logs, if any.
    pub mask: Option<Mask>,
}

impl FieldSpec {
    /// Length of a value in this field's units (hex counts two characters per byte).
    pub fn units(&self, value_len: usize) -> usize {
        match self.data {
            Encoding::Hex => value_len * 2,
            _ => value_len,
        }
    }

    /// Bytes on the wire for a value of `units` length, without the prefix.
    pub fn wire_len(&self, units: usize) -> usize {
        match (self.data, self.class) {
            (Encoding::Bcd, Class::Xn) if units > 0 => 1 + (units - 1).div_ceil(2),
            (Encoding::Bcd, _) => units.div_ceil(2),
            _ => units,
        }
    }

    /// The character that fills a short fixed value, if this field may be filled.
    pub fn filler(&self) -> Option<u8> {
        match self.class {
            Class::N => Some(b'0'),
            Class::A | Class::An | Class::S | Class::As | Class::Ns | Class::Ans => Some(b' '),
            Class::Z | Class::Xn | Class::B => None,
        }
    }
}

/// What the decoder needs to know of a field, worked out once when the spec loads: with
/// it the decoder takes a run of fixed fields in one piece and checks ASCII and binary
/// fields without looking at their [`FieldSpec`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FieldPlan {
    /// Bytes on the wire of a fixed field; 0 for a variable one (or an undefined field).
    pub fixed_wire: usize,
    /// Bytes of a variable field's length prefix; 0 for a fixed one.
    pub prefix_bytes: usize,
    /// The field's class.
    pub class: Class,
    /// Whether the value is kept as it stands on the wire (ASCII or binary data), so that
    /// its length in units is its length in bytes.
    pub as_on_wire: bool,
    /// The class, when the value is kept as on the wire and the class is checked byte by
    /// byte (not `x+n`): such fields in a row can be checked in one pass.
    pub grouped: Option<Class>,
}

impl FieldPlan {
    /// The plan of a field the spec does not define.
    const UNDEFINED: FieldPlan = FieldPlan {
        fixed_wire: 0,
        prefix_bytes: 0,
        class: Class::B,
        as_on_wire: false,
        grouped: None,
    };

    fn of(field: &FieldSpec) -> FieldPlan {
        let (fixed_wire, prefix_bytes) = match field.length {
            // `max` is at least 1, so a fixed field is never 0 bytes long.
            LengthType::Fixed => (field.wire_len(field.max), 0),
            length => (0, length.prefix_bytes(field.length_encoding)),
        };
        let as_on_wire = matches!(field.data, Encoding::Ascii | Encoding::Binary);
        FieldPlan {
            fixed_wire,
            prefix_bytes,
            class: field.class,
            as_on_wire,
            grouped: (as_on_wire && field.class != Class::Xn).then_some(field.class),
        }
    }
}

/// A complete message format: MTI and bitmap encodings plus the data elements.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Short name, e.g. `iso87ascii`.
    pub name: String,
    /// One line on what the spec is for.
    pub description: String,
    /// Encoding of the MTI: ascii, ebcdic (4 bytes) or bcd (2 bytes).
    pub mti: Encoding,
    /// Encoding of the bitmaps.
    pub bitmap: BitmapEncoding,
    /// Whether bit 65 announces a tertiary bitmap (fields 129-192). Default false.
    pub tertiary_bitmap: bool,
    fields: Vec<Option<FieldSpec>>,
    /// Each field's [`FieldPlan`], by number (any `u8` indexes it).
    plans: Box<[FieldPlan; 256]>,
    /// The fields defined, as a set (one mask test finds a flagged undefined field).
    defined: FieldSet,
    masking: Masking,
}

/// The specs that ship inside the binary, by name.
const BUILTIN: &[(&str, &str)] = &[
    ("iso87ascii", include_str!("../../../specs/iso87ascii.toml")),
    (
        "iso87binary",
        include_str!("../../../specs/iso87binary.toml"),
    ),
    ("iso87bcd", include_str!("../../../specs/iso87bcd.toml")),
    (
        "iso87ebcdic",
        include_str!("../../../specs/iso87ebcdic.toml"),
    ),
];

/// Why a spec could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpecError {
    /// The name is neither a shipped spec nor a readable `.toml` file.
    #[error("unknown spec {name:?}: not one of {known} and not a .toml file")]
    Unknown {
        /// What was asked for.
        name: String,
        /// The shipped spec names.
        known: String,
    },
    /// The spec file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for a spec (the message gives line and column).
    #[error("{origin}: {message}")]
    Syntax {
        /// Spec name or file.
        origin: String,
        /// The TOML parser's description, with position.
        message: String,
    },
    /// A field definition is inconsistent.
    #[error("{origin}: field {number}: {reason}")]
    Field {
        /// Spec name or file.
        origin: String,
        /// The field at fault.
        number: u8,
        /// What is wrong.
        reason: String,
    },
    /// A spec-level setting is inconsistent.
    #[error("{origin}: {reason}")]
    Invalid {
        /// Spec name or file.
        origin: String,
        /// What is wrong.
        reason: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SpecFile {
    name: String,
    #[serde(default)]
    description: String,
    mti: Encoding,
    bitmap: BitmapEncoding,
    #[serde(default)]
    tertiary_bitmap: bool,
    defaults: Defaults,
    fields: Vec<FieldEntry>,
}

/// Encodings a field gets when it names none, by kind of class.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Defaults {
    /// For `n`, `xn` and `z`.
    numeric: Encoding,
    /// For `a`, `an`, `s`, `as`, `ns`, `ans`.
    text: Encoding,
    /// For `b`.
    binary: Encoding,
    /// For length prefixes.
    length: Encoding,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FieldEntry {
    number: u8,
    name: String,
    class: Class,
    length: LengthType,
    max: usize,
    data: Option<Encoding>,
    length_encoding: Option<Encoding>,
    pad: Option<Pad>,
    mask: Option<Mask>,
}

impl Spec {
    /// The names of the shipped specs.
    pub fn builtin_names() -> impl Iterator<Item = &'static str> {
        BUILTIN.iter().map(|(name, _)| *name)
    }

    /// A shipped spec by name, or a spec file by path (anything ending in `.toml`).
    pub fn resolve(name_or_path: &str) -> Result<Spec, SpecError> {
        if let Some((_, text)) = BUILTIN.iter().find(|(name, _)| *name == name_or_path) {
            return Spec::from_toml(text, name_or_path);
        }
        let path = Path::new(name_or_path);
        if path.extension().is_some_and(|e| e == "toml") {
            return Spec::load(path);
        }
        Err(SpecError::Unknown {
            name: name_or_path.to_owned(),
            known: Spec::builtin_names().collect::<Vec<_>>().join(", "),
        })
    }

    /// Reads and checks a spec file.
    pub fn load(path: &Path) -> Result<Spec, SpecError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read {
            path: origin.clone(),
            source,
        })?;
        Spec::from_toml(&text, &origin)
    }

    /// Parses and checks spec TOML; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Spec, SpecError> {
        let file: SpecFile = toml::from_str(text).map_err(|e| SpecError::Syntax {
            origin: origin.to_owned(),
            message: e.to_string(),
        })?;
        SpecBuilder {
            origin,
            file: &file,
        }
        .build()
    }

    /// The definition of field `number`, if the spec has one.
    pub fn field(&self, number: u8) -> Option<&FieldSpec> {
        self.fields.get(usize::from(number))?.as_ref()
    }

    /// The decoder's plan of field `number` (all zero for a field the spec lacks).
    #[inline]
    pub(crate) fn plan(&self, number: u8) -> &FieldPlan {
        &self.plans[usize::from(number)]
    }

    /// Every defined field in ascending order.
    pub fn fields(&self) -> impl Iterator<Item = &FieldSpec> {
        self.fields.iter().flatten()
    }

    /// Which fields are masked when a message of this spec is shown: the standard set
    /// of [`Masking::default`] plus every field the spec marks.
    pub fn masking(&self) -> Masking {
        self.masking
    }

    /// The first field of `present` the spec does not define, if any.
    pub fn first_undefined(&self, present: FieldSet) -> Option<u8> {
        let (present, defined) = (present.words(), self.defined.words());
        let extra = FieldSet::from_words([0, 1, 2].map(|i| present[i] & !defined[i]));
        extra.iter().next()
    }
}

/// Turns a parsed spec file into a checked [`Spec`].
struct SpecBuilder<'a> {
    origin: &'a str,
    file: &'a SpecFile,
}

impl SpecBuilder<'_> {
    fn build(self) -> Result<Spec, SpecError> {
        let file = self.file;
        if !matches!(file.mti, Encoding::Ascii | Encoding::Ebcdic | Encoding::Bcd) {
            return Err(self.invalid("mti must be ascii, ebcdic or bcd"));
        }
        if file.defaults.length == Encoding::Hex {
            return Err(self.invalid("defaults.length cannot be hex"));
        }
        let mut fields: Vec<Option<FieldSpec>> = vec![None; usize::from(MAX_FIELD) + 1];
        let mut masking = Masking::default();
        let mut defined = FieldSet::new();
        for entry in &file.fields {
            let field = self.field(entry)?;
            match field.mask {
                Some(Mask::Pan) => masking.pan.insert(field.number),
                Some(Mask::Redact) => masking.redact.insert(field.number),
                None => {}
            }
            let slot = &mut fields[usize::from(field.number)];
            if slot.is_some() {
                return Err(self.field_error(entry.number, "defined twice"));
            }
            defined.insert(field.number);
            *slot = Some(field);
        }
        let mut plans = Box::new([FieldPlan::UNDEFINED; 256]);
        for (plan, field) in plans.iter_mut().zip(&fields) {
            if let Some(field) = field {
                *plan = FieldPlan::of(field);
            }
        }
        Ok(Spec {
            name: file.name.clone(),
            description: file.description.clone(),
            mti: file.mti,
            bitmap: file.bitmap,
            tertiary_bitmap: file.tertiary_bitmap,
            fields,
            plans,
            defined,
            masking,
        })
    }

    fn field(&self, entry: &FieldEntry) -> Result<FieldSpec, SpecError> {
        let number = entry.number;
        let highest = if self.file.tertiary_bitmap {
            MAX_FIELD
        } else {
            128
        };
        let fault = |reason: String| Err(self.field_error(number, &reason));
        if number < 2 || number > highest {
            return fault(format!(
                "field numbers run from 2 to {highest} (1 is the bitmap)"
            ));
        }
        if number == 65 && self.file.tertiary_bitmap {
            return fault("is the tertiary bitmap in this spec".into());
        }
        let defaults = &self.file.defaults;
        let data = entry.data.unwrap_or(match entry.class {
            Class::B => defaults.binary,
            Class::N | Class::Xn | Class::Z => defaults.numeric,
            _ => defaults.text,
        });
        let length_encoding = entry.length_encoding.unwrap_or(defaults.length);
        let field = FieldSpec {
            number,
            name: entry.name.clone(),
            class: entry.class,
            length: entry.length,
            max: entry.max,
            data,
            length_encoding,
            pad: entry.pad.unwrap_or(match entry.class {
                Class::N => Pad::Left,
                _ => Pad::Right,
            }),
            mask: entry.mask,
        };
        match check_field(&field) {
            Ok(()) => Ok(field),
            Err(reason) => fault(reason),
        }
    }

    fn invalid(&self, reason: &str) -> SpecError {
        SpecError::Invalid {
            origin: self.origin.to_owned(),
            reason: reason.to_owned(),
        }
    }

    fn field_error(&self, number: u8, reason: &str) -> SpecError {
        SpecError::Field {
            origin: self.origin.to_owned(),
            number,
            reason: reason.to_owned(),
        }
    }
}

/// The consistency rules of one field definition.
fn check_field(field: &FieldSpec) -> Result<(), String> {
    let class = field.class;
    let encoding_fits = match field.data {
        Encoding::Ascii | Encoding::Ebcdic => class != Class::B,
        Encoding::Bcd => matches!(class, Class::N | Class::Z | Class::Xn),
        Encoding::Binary | Encoding::Hex => class == Class::B,
    };
    if !encoding_fits {
        return Err(format!(
            "class {} cannot be encoded as {:?}",
            class.name(),
            field.data
        ));
    }
    if field.length_encoding == Encoding::Hex {
        return Err("a length prefix cannot be hex".into());
    }
    if field.max == 0 {
        return Err("max must be at least 1".into());
    }
    let limit = field.length.limit(field.length_encoding);
    if field.max > limit {
        return Err(format!(
            "max {} is more than a {:?} prefix can express ({limit})",
            field.max, field.length
        ));
    }
    if field.data == Encoding::Hex && field.length == LengthType::Fixed && field.max % 2 == 1 {
        return Err("a fixed hex field needs an even number of hex characters".into());
    }
    if class == Class::Xn && field.length == LengthType::Fixed && field.max < 2 {
        return Err("an x+n field needs room for the sign and a digit".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_spec_loads_with_all_fields() {
        for name in Spec::builtin_names() {
            let spec = Spec::resolve(name).expect(name);
            assert_eq!(spec.name, name);
            assert_eq!(spec.fields().count(), 127, "{name}: fields 2-128");
            assert!(spec.masking().pan.contains(103));
            assert!(spec.masking().redact.contains(52));
        }
    }

    #[test]
    fn shipped_specs_match_their_families() {
        let ascii = Spec::resolve("iso87ascii").expect("ascii");
        let pin = ascii.field(52).expect("52");
        assert_eq!((pin.data, pin.max), (Encoding::Hex, 16));
        let bcd = Spec::resolve("iso87bcd").expect("bcd");
        let pan = bcd.field(2).expect("2");
        assert_eq!(
            (pan.data, pan.length_encoding),
            (Encoding::Bcd, Encoding::Bcd)
        );
        assert_eq!(pan.length.prefix_bytes(pan.length_encoding), 1);
        assert_eq!(bcd.field(35).expect("35").pad, Pad::Right);
    }

    fn one_field(line: &str) -> Result<Spec, SpecError> {
        let text = format!(
            "name = \"t\"\nmti = \"ascii\"\nbitmap = \"hex\"\n\
             defaults = {{ numeric = \"ascii\", text = \"ascii\", binary = \"binary\", length = \"ascii\" }}\n\
             fields = [\n{line}\n]\n"
        );
        Spec::from_toml(&text, "t.toml")
    }

    #[test]
    fn bad_definitions_name_the_field() {
        let cases = [
            (
                r#"{ number = 1, name = "x", class = "n", length = "fixed", max = 4 }"#,
                "field 1",
            ),
            (
                r#"{ number = 3, name = "x", class = "n", length = "llvar", max = 100 }"#,
                "field 3: max 100",
            ),
            (
                r#"{ number = 3, name = "x", class = "ans", length = "fixed", max = 4, data = "bcd" }"#,
                "class ans",
            ),
            (
                r#"{ number = 3, name = "x", class = "b", length = "fixed", max = 3, data = "hex" }"#,
                "even",
            ),
            (
                r#"{ number = 3, name = "x", class = "n", length = "fixed", max = 0 }"#,
                "at least 1",
            ),
        ];
        for (line, expected) in cases {
            let err = one_field(line).expect_err(line).to_string();
            assert!(
                err.contains(expected),
                "{err:?} should contain {expected:?}"
            );
            assert!(err.starts_with("t.toml"), "{err}");
        }
    }

    #[test]
    fn unknown_keys_and_names_are_refused() {
        let err = one_field(
            r#"{ number = 3, name = "x", class = "n", length = "fixed", max = 4, colour = 1 }"#,
        )
        .expect_err("unknown key");
        assert!(err.to_string().contains("colour"), "{err}");
        let err = Spec::resolve("iso93").expect_err("unknown");
        assert!(err.to_string().contains("iso87ascii"), "{err}");
    }

    #[test]
    fn duplicate_fields_are_refused() {
        let line = r#"{ number = 3, name = "x", class = "n", length = "fixed", max = 6 },
                      { number = 3, name = "y", class = "n", length = "fixed", max = 6 },"#;
        let err = one_field(line).expect_err("duplicate");
        assert!(err.to_string().contains("defined twice"), "{err}");
    }
}
