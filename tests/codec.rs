//! The codec against fixed byte expectations, hostile input and random messages.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use replenish::wire::iso8583::{
    self, DecodeErrorKind, Element, EncodeError, Message, Mti, Spec, decode_slice, encode_to_bytes,
};

const SPECS: [&str; 4] = ["iso87ascii", "iso87binary", "iso87bcd", "iso87ebcdic"];

fn spec(name: &str) -> Spec {
    Spec::resolve(name).expect("shipped spec")
}

fn fixture(name: &str) -> Message {
    let path = format!("{}/fixtures/messages/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("fixture readable");
    iso8583::from_json_str(&spec("iso87ascii"), &text).expect("fixture valid")
}

fn mti(s: &str) -> Mti {
    s.parse().expect("valid MTI")
}

/// The 0800 echo used for exact byte expectations: DE7, DE11, DE70 (secondary bitmap).
fn echo() -> Message {
    let mut m = Message::new(mti("0800"));
    m.set(7, "1123095500");
    m.set(11, "000001");
    m.set(70, "301");
    m
}

#[test]
fn fixtures_round_trip_in_every_spec() {
    for name in SPECS {
        let spec = spec(name);
        for message in [fixture("reference-0200.json"), fixture("wide-0200.json")] {
            let wire = encode_to_bytes(&spec, &message).expect("encodes");
            let back = iso8583::decode(&spec, &wire).expect("decodes");
            assert_eq!(back, message, "{name}");
        }
    }
}

#[test]
fn ascii_echo_bytes() {
    let wire = encode_to_bytes(&spec("iso87ascii"), &echo()).expect("encodes");
    assert_eq!(
        &wire[..],
        b"0800822000000000000004000000000000001123095500000001301"
    );
}

#[test]
fn binary_echo_bytes() {
    let wire = encode_to_bytes(&spec("iso87binary"), &echo()).expect("encodes");
    let mut expected = b"0800".to_vec();
    expected.extend_from_slice(&[0x82, 0x20, 0, 0, 0, 0, 0, 0, 0x04, 0, 0, 0, 0, 0, 0, 0]);
    expected.extend_from_slice(b"1123095500000001301");
    assert_eq!(&wire[..], &expected[..]);
}

#[test]
fn bcd_packs_numerics_lengths_and_the_mti() {
    let mut m = Message::new(mti("0200"));
    m.set(2, "4761739001010010"); // LLVAR n, even
    m.set(3, "280000");
    m.set(22, "021"); // fixed n 3: odd, left-padded nibble
    m.set(28, "C00000010"); // x+n: ASCII sign, packed digits
    m.set(32, "12345"); // LLVAR n, odd
    m.set(35, "4761739001010010=2512"); // z, right-padded with F
    m.set(41, "TERM0001"); // text stays ASCII
    let wire = encode_to_bytes(&spec("iso87bcd"), &m).expect("encodes");
    let expected = hex::decode(concat!(
        "0200",
        "6000041120800000",
        "164761739001010010",
        "280000",
        "0021",
        "4300000010",
        "05012345",
        "214761739001010010D2512F",
        "5445524D30303031",
    ))
    .expect("hex");
    assert_eq!(hex::encode_upper(&wire), hex::encode_upper(&expected));
    let back = iso8583::decode(&spec("iso87bcd"), &wire).expect("decodes");
    assert_eq!(
        back.text(35),
        Some("4761739001010010=2512"),
        "separator reads back as ="
    );
    assert_eq!(back.text(28), Some("C00000010"));
}

#[test]
fn ebcdic_echo_bytes() {
    let wire = encode_to_bytes(&spec("iso87ebcdic"), &echo()).expect("encodes");
    assert_eq!(
        &wire[..4],
        &[0xF0, 0xF8, 0xF0, 0xF0],
        "MTI in EBCDIC digits"
    );
    assert_eq!(&wire[4..12], &[0x82, 0x20, 0, 0, 0, 0, 0, 0]);
    assert_eq!(&wire[20..22], &[0xF1, 0xF1]);
}

#[test]
fn ascii_values_are_slices_of_the_frame() {
    let spec = spec("iso87ascii");
    let frame = encode_to_bytes(&spec, &fixture("reference-0200.json")).expect("encodes");
    let message = iso8583::decode(&spec, &frame).expect("decodes");
    let pan = message.get(2).expect("DE2");
    let range = frame.as_ptr_range();
    assert!(
        range.contains(&pan.as_ptr()),
        "DE2 should point into the frame"
    );
}

#[test]
fn fixed_fields_are_filled_and_checked() {
    let spec = spec("iso87ascii");
    let mut m = Message::new(mti("0200"));
    m.set(4, "2500");
    m.set(41, "T1");
    let back =
        iso8583::decode(&spec, &encode_to_bytes(&spec, &m).expect("encodes")).expect("decodes");
    assert_eq!(back.text(4), Some("000000002500"));
    assert_eq!(back.text(41), Some("T1      "));

    let mut long = Message::new(mti("0200"));
    long.set(4, "0000000000001");
    let err = encode_to_bytes(&spec, &long).expect_err("13 digits");
    assert_eq!(
        err,
        EncodeError::TooLong {
            field: 4,
            length: 13,
            max: 12
        }
    );

    let mut letters = Message::new(mti("0200"));
    letters.set(11, "00A001");
    let err = encode_to_bytes(&spec, &letters).expect_err("letter in n");
    assert_eq!(
        err.to_string(),
        "field 11: character 2 is not allowed in class n"
    );

    let mut short_pin = Message::new(mti("0200"));
    short_pin.set(52, vec![1u8, 2, 3]);
    assert!(matches!(
        encode_to_bytes(&spec, &short_pin),
        Err(EncodeError::WrongLength { field: 52, .. })
    ));
}

#[test]
fn encode_leaves_nothing_behind_on_error() {
    let spec = spec("iso87ascii");
    let mut out = BytesMut::from(&b"keep"[..]);
    let mut m = echo();
    m.set(11, "bad!!!");
    assert!(iso8583::encode(&spec, &m, &mut out).is_err());
    assert_eq!(&out[..], b"keep");
}

#[test]
fn fields_beyond_128_need_a_tertiary_spec() {
    let mut m = echo();
    m.set(130, "x");
    assert_eq!(
        encode_to_bytes(&spec("iso87ascii"), &m),
        Err(EncodeError::UndefinedField(130))
    );
}

/// The reference 0200 in iso87ascii, as text for hand-made corruptions.
fn reference_ascii() -> String {
    let wire =
        encode_to_bytes(&spec("iso87ascii"), &fixture("reference-0200.json")).expect("encodes");
    String::from_utf8(wire.to_vec()).expect("ascii")
}

fn decode_ascii(text: &[u8]) -> iso8583::DecodeError {
    decode_slice(&spec("iso87ascii"), text).expect_err("must not decode")
}

#[test]
fn a_bad_amount_keeps_mti_and_stan_and_names_field_and_offset() {
    let mut text = reference_ascii().into_bytes();
    // MTI 4 + bitmap 16 + DE2 (2 + 16) + DE3 6 = 44: DE4 starts there.
    text[44 + 5] = b'X';
    let err = decode_ascii(&text);
    assert_eq!(err.element, Element::Field(4));
    assert_eq!(
        err.to_string(),
        "field 4: expected 12 digits, found non-digit at offset 49"
    );
    assert_eq!(err.mti(), Some(mti("0200")));
    assert_eq!(
        err.stan(),
        Some("000417"),
        "DE11 after the bad field is still read"
    );
    let partial = err.partial().expect("partial");
    assert!(partial.get(4).is_none());
    assert!(
        !format!("{err:?}").contains("4761739001010010"),
        "no clear PAN in errors"
    );
}

#[test]
fn hostile_inputs_are_refused_with_the_element_at_fault() {
    let good = reference_ascii().into_bytes();
    type KindCheck = fn(&DecodeErrorKind) -> bool;
    let cases: Vec<(Vec<u8>, Element, KindCheck)> = vec![
        (good[..2].to_vec(), Element::Mti, |k| {
            matches!(k, DecodeErrorKind::Truncated { .. })
        }),
        (b"02X0".to_vec(), Element::Mti, |k| {
            matches!(k, DecodeErrorKind::BadCharacter { .. })
        }),
        (good[..12].to_vec(), Element::Bitmap(1), |k| {
            matches!(k, DecodeErrorKind::Truncated { .. })
        }),
        (b"0200ZZ00000000000000".to_vec(), Element::Bitmap(1), |k| {
            *k == DecodeErrorKind::BadHex
        }),
        // Bit 1 flags a secondary bitmap that is not there.
        (b"02008000000000000000".to_vec(), Element::Bitmap(2), |k| {
            matches!(k, DecodeErrorKind::Truncated { .. })
        }),
        // DE2 LLVAR prefix "99" beyond the maximum 19.
        ([&good[..20], b"99"].concat(), Element::Field(2), |k| {
            *k == DecodeErrorKind::TooLong {
                length: 99,
                max: 19,
            }
        }),
        // DE2 prefix not a number.
        ([&good[..20], b"1x"].concat(), Element::Field(2), |k| {
            *k == DecodeErrorKind::BadLengthPrefix
        }),
        // Prefix claims 16 digits but the input ends after 3.
        (good[..25].to_vec(), Element::Field(2), |k| {
            *k == DecodeErrorKind::Truncated {
                needed: 16,
                available: 3,
            }
        }),
        ([&good[..], b"00"].concat(), Element::Message, |k| {
            *k == DecodeErrorKind::TrailingBytes { count: 2 }
        }),
    ];
    for (input, element, kind) in cases {
        let err = decode_ascii(&input);
        assert_eq!(err.element, element, "{err}");
        assert!(kind(&err.kind), "unexpected kind: {err}");
    }
}

#[test]
fn a_bitmap_bit_for_an_undefined_field_is_refused_before_any_field() {
    let text = r#"
        name = "small"
        mti = "ascii"
        bitmap = "hex"
        defaults = { numeric = "ascii", text = "ascii", binary = "hex", length = "ascii" }
        fields = [ { number = 11, name = "STAN", class = "n", length = "fixed", max = 6 } ]
    "#;
    let small = Spec::from_toml(text, "small.toml").expect("valid spec");
    // Bitmap flags fields 3 and 11; the spec lacks 3.
    let err = decode_slice(&small, b"08002020000000000000280000000001").expect_err("undefined");
    assert_eq!(err.element, Element::Field(3));
    assert_eq!(err.kind, DecodeErrorKind::UndefinedField);
    assert_eq!(err.offset, 4);
    assert_eq!(err.mti(), Some(mti("0800")));
}

#[test]
fn bad_bcd_nibbles_and_ebcdic_bytes_are_refused() {
    let bcd = spec("iso87bcd");
    // MTI 0200, bitmap with only DE3, DE3 = 28 0A 00 (A is not a digit).
    let input = hex::decode("02002000000000000000280A00").expect("hex");
    let err = decode_slice(&bcd, &input).expect_err("bad nibble");
    assert_eq!(
        (err.element, err.kind.clone(), err.offset),
        (Element::Field(3), DecodeErrorKind::BadBcd, 11)
    );

    let ebcdic = spec("iso87ebcdic");
    // MTI with 0x4A (cent sign, no ASCII equivalent).
    let err = decode_slice(&ebcdic, &[0xF0, 0xF2, 0x4A, 0xF0]).expect_err("not ascii");
    assert_eq!(
        (err.element, err.kind),
        (Element::Mti, DecodeErrorKind::NotAscii)
    );
}

#[test]
fn lower_case_hex_bitmaps_are_accepted() {
    let decoded = decode_slice(
        &spec("iso87ascii"),
        b"0800822000000000000004000000000000001123095500000001301",
    )
    .expect("upper");
    let lower = decode_slice(
        &spec("iso87ascii"),
        b"0800822000000000000004000000000000001123095500000001301"
            .to_ascii_lowercase()
            .as_slice(),
    );
    assert_eq!(lower.expect("lower"), decoded);
}

/// A random message valid for iso87ascii: a subset of fields with values of their class.
fn arbitrary_message() -> impl Strategy<Value = Message> {
    let spec = spec("iso87ascii");
    let fields: Vec<(u8, usize, bool, iso8583::Class)> = spec
        .fields()
        .map(|f| {
            (
                f.number,
                f.max,
                f.length == iso8583::LengthType::Fixed,
                f.class,
            )
        })
        .collect();
    let picks = proptest::collection::vec((0..fields.len(), any::<u64>()), 0..24);
    ("[0-9]{4}", picks).prop_map(move |(mti, picks)| {
        let mut m = Message::new(mti.parse().expect("4 digits"));
        for (index, seed) in picks {
            let (number, max, fixed, class) = fields[index];
            m.set(number, value_for(class, max, fixed, seed));
        }
        m
    })
}

/// A deterministic value of `class` from `seed` (a simple generator, no PRNG needed).
fn value_for(class: iso8583::Class, max: usize, fixed: bool, seed: u64) -> Bytes {
    use iso8583::Class;
    let units = if fixed {
        max
    } else {
        (seed % (max as u64 + 1)) as usize
    };
    let pick =
        |i: usize, set: &[u8]| set[(seed.rotate_left(i as u32 % 64) as usize + i) % set.len()];
    let value: Vec<u8> = match class {
        Class::B => (0..units / 2)
            .map(|i| pick(i, &[0x00, 0x7F, 0xA5, 0xFF]))
            .collect(),
        Class::Xn => (0..units)
            .map(|i| if i == 0 { b'D' } else { pick(i, b"0123456789") })
            .collect(),
        Class::N => (0..units).map(|i| pick(i, b"0123456789")).collect(),
        // `=` only: packed track data reads its separator back as `=`.
        Class::Z => (0..units).map(|i| pick(i, b"0123456789=")).collect(),
        Class::An => (0..units).map(|i| pick(i, b"AZaz09 ")).collect(),
        Class::A => (0..units).map(|i| pick(i, b"AZaz ")).collect(),
        Class::S => (0..units).map(|i| pick(i, b" ~!^*")).collect(),
        Class::As => (0..units).map(|i| pick(i, b"Az ~!")).collect(),
        Class::Ns => (0..units).map(|i| pick(i, b"09 ~!")).collect(),
        Class::Ans => (0..units).map(|i| pick(i, b"A z~!0 ^")).collect(),
    };
    Bytes::from(value)
}

proptest! {
    #[test]
    fn decode_never_panics_on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        for name in SPECS {
            let _ = decode_slice(&spec(name), &bytes);
        }
    }

    #[test]
    fn decode_never_panics_on_mutated_messages(position in 0usize..400, byte in any::<u8>(), cut in 0usize..400) {
        let mut wire = reference_ascii().into_bytes();
        let at = position % wire.len();
        wire[at] = byte;
        wire.truncate(cut.max(1).min(wire.len()));
        let _ = decode_slice(&spec("iso87ascii"), &wire);
    }

    #[test]
    fn every_spec_round_trips_random_messages(message in arbitrary_message()) {
        for name in ["iso87ascii", "iso87binary", "iso87bcd", "iso87ebcdic"] {
            let spec = spec(name);
            let mut m = message.clone();
            // Binary widths differ between specs: iso87ascii counts hex characters.
            if name != "iso87ascii" {
                for (n, _) in message.fields() {
                    if spec.field(n).is_some_and(|f| f.class == iso8583::Class::B) {
                        m.remove(n);
                    }
                }
            }
            let wire = encode_to_bytes(&spec, &m).map_err(|e| TestCaseError::fail(format!("{name}: {e}")))?;
            let back = iso8583::decode(&spec, &wire).map_err(|e| TestCaseError::fail(format!("{name}: {e}")))?;
            prop_assert_eq!(back, m);
        }
    }
}

/// Feeds `stream` to every framing in `chunk`-byte pieces as the `framing` fuzz target
/// does (256-byte maximum frame) and checks that the read buffer never holds more than
/// twice one maximum frame plus one piece. `bytes` are the stream's non-zero bytes.
fn framing_stays_within_two_frames(len: usize, bytes: &[(usize, u8)], chunk: usize) {
    use replenish::wire::framing::{FrameCodec, LengthHeader};
    use tokio_util::codec::Decoder;

    const MAX_CHUNK: usize = 64;
    let mut stream = vec![0u8; len];
    for &(at, byte) in bytes {
        stream[at] = byte;
    }
    for length_header in LengthHeader::ALL {
        for header_len in [0, 5] {
            let mut codec = FrameCodec::new(length_header)
                .with_header_len(header_len)
                .with_max_frame(256);
            let max = length_header.prefix_len() + codec.max_frame() + MAX_CHUNK;
            let mut buf = BytesMut::new();
            'feed: for piece in stream.chunks(chunk) {
                buf.extend_from_slice(piece);
                loop {
                    let capacity = buf.capacity();
                    assert!(
                        capacity <= 2 * max,
                        "{length_header}/{header_len}: capacity {capacity} > 2 * {max}"
                    );
                    match codec.decode(&mut buf) {
                        Ok(Some(_)) => {}
                        Ok(None) => break,
                        Err(_) => break 'feed,
                    }
                }
            }
        }
    }
}

/// The `framing` fuzz target's crashes (minimised): keep-alives and short frames mixed
/// with long ones. `FrameCodec::decode` used `BytesMut::reserve` for an incomplete frame,
/// which keeps the frames already consumed in front of the buffer inside its allocation;
/// the next growth doubled all of it, past twice a maximum frame.
#[test]
fn framing_read_buffer_stays_near_one_maximum_frame() {
    framing_stays_within_two_frames(
        389,
        &[
            (26, 0x40),
            (131, 0x01),
            (141, 0x14),
            (162, 0x01),
            (188, 0x05),
            (221, 0x37),
            (222, 0x33),
            (223, 0x30),
            (224, 0x11),
            (225, 0x31),
            (313, 0x37),
            (314, 0x33),
            (315, 0x30),
            (316, 0x11),
            (317, 0x31),
        ],
        34,
    );
    framing_stays_within_two_frames(
        1075,
        &[
            (72, 0x01),
            (271, 0x73),
            (767, 0x01),
            (770, 0x02),
            (789, 0x01),
            (884, 0x72),
            (885, 0x72),
            (886, 0x72),
            (887, 0x72),
            (888, 0x72),
            (894, 0x72),
            (895, 0x72),
            (896, 0x72),
            (897, 0x07),
            (898, 0x5B),
            (980, 0x07),
            (981, 0x5B),
        ],
        43,
    );
}
