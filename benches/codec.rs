//! Codec benchmarks: `decode` and `encode` of the reference 0200 (14 fields) and a
//! 40-field 0200 in each shipped spec, plus the `iso_8583_rs` crate on the very same
//! iso87ascii bytes of the reference 0200 for comparison.
//!
//! Run with `cargo bench --bench codec`. Bench IDs: `decode/<spec>/<message>`,
//! `encode/<spec>/<message>`, `encode_to_bytes/iso87ascii/reference-0200`,
//! `iso_8583_rs/{decode,decode_lazy,encode,pack}/reference-0200`.

use std::hint::black_box;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use replenish::wire::iso8583::{Message, Spec, decode, encode, encode_to_bytes, from_json_str};

const SPECS: [&str; 4] = ["iso87ascii", "iso87binary", "iso87bcd", "iso87ebcdic"];

const MESSAGES: [(&str, &str); 2] = [
    (
        "reference-0200",
        include_str!("../fixtures/messages/reference-0200.json"),
    ),
    (
        "wide-0200",
        include_str!("../fixtures/messages/wide-0200.json"),
    ),
];

/// The iso_8583_rs spec describing the reference 0200's fields, as iso87ascii does.
const ISO_8583_RS_SPEC: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/benches/iso_8583_rs-spec.yaml");

fn resolve(name: &str) -> Spec {
    Spec::resolve(name).unwrap_or_else(|e| panic!("spec {name}: {e}"))
}

fn load(spec: &Spec, label: &str, json: &str) -> Message {
    from_json_str(spec, json).unwrap_or_else(|e| panic!("{label} in {}: {e}", spec.name))
}

/// The message's fields, in ascending order, as plain byte vectors (for comparisons).
fn field_list(message: &Message) -> Vec<(u8, Vec<u8>)> {
    message.fields().map(|(n, v)| (n, v.to_vec())).collect()
}

/// Encodes once to get the wire bytes, and checks they decode back to the same message.
fn wire(spec: &Spec, label: &str, message: &Message) -> Bytes {
    let frame = encode_to_bytes(spec, message)
        .unwrap_or_else(|e| panic!("encoding {label} in {}: {e}", spec.name));
    let back =
        decode(spec, &frame).unwrap_or_else(|e| panic!("decoding {label} in {}: {e:?}", spec.name));
    assert_eq!(back.mti(), message.mti(), "{label} in {}: MTI", spec.name);
    assert_eq!(
        field_list(&back),
        field_list(message),
        "{label} in {}: fields do not round-trip",
        spec.name
    );
    frame
}

fn ours(c: &mut Criterion) {
    for spec_name in SPECS {
        let spec = resolve(spec_name);
        for (label, json) in MESSAGES {
            let message = load(&spec, label, json);
            let frame = wire(&spec, label, &message);

            let mut group = c.benchmark_group(format!("decode/{spec_name}"));
            group.throughput(Throughput::Elements(1));
            group.bench_function(label, |b| {
                b.iter(|| decode(black_box(&spec), black_box(&frame)))
            });
            group.finish();

            let mut group = c.benchmark_group(format!("encode/{spec_name}"));
            group.throughput(Throughput::Elements(1));
            let mut out = BytesMut::with_capacity(frame.len() * 2);
            group.bench_function(label, |b| {
                b.iter(|| {
                    out.clear();
                    encode(black_box(&spec), black_box(&message), &mut out)
                        .expect("encoded once already");
                    black_box(&out);
                })
            });
            group.finish();
        }
    }

    let spec = resolve("iso87ascii");
    let (label, json) = MESSAGES[0];
    let message = load(&spec, label, json);
    let mut group = c.benchmark_group("encode_to_bytes/iso87ascii");
    group.throughput(Throughput::Elements(1));
    group.bench_function(label, |b| {
        b.iter(|| encode_to_bytes(black_box(&spec), black_box(&message)))
    });
    group.finish();
}

fn iso_8583_rs(c: &mut Criterion) {
    use iso_8583_rs::{Builder, CompiledSpec, Message as TheirMessage};

    let spec = resolve("iso87ascii");
    let (label, json) = MESSAGES[0];
    let message = load(&spec, label, json);
    let frame = wire(&spec, label, &message);
    let fields: Vec<(usize, &[u8])> = message.fields().map(|(n, v)| (usize::from(n), v)).collect();
    let mti = *message.mti().as_bytes();

    let theirs = CompiledSpec::from_file(ISO_8583_RS_SPEC)
        .unwrap_or_else(|e| panic!("iso_8583_rs: loading {ISO_8583_RS_SPEC}: {e}"));

    // A comparison with a parser that fails, or reads other values, is worthless: check
    // once, outside the timed loops, that it parses our bytes to our values and that its
    // builder produces our bytes.
    let parsed = TheirMessage::parse(&theirs, &frame).unwrap_or_else(|e| {
        panic!(
            "iso_8583_rs cannot parse the iso87ascii reference 0200 ({e:?}): {}",
            String::from_utf8_lossy(&frame)
        )
    });
    assert_eq!(parsed.mti, mti, "iso_8583_rs: MTI differs");
    for n in [4u8, 11] {
        assert_eq!(
            parsed.get(usize::from(n)),
            message.get(n),
            "iso_8583_rs: field {n} differs from ours"
        );
    }
    let their_fields: Vec<(usize, &[u8])> = parsed.fields().collect();
    assert_eq!(
        their_fields, fields,
        "iso_8583_rs: parsed fields differ from ours"
    );
    let lazy = TheirMessage::parse_lazy(&theirs, &frame)
        .unwrap_or_else(|e| panic!("iso_8583_rs: parse_lazy fails ({e:?})"));
    assert_eq!(
        lazy.fields().count(),
        fields.len(),
        "iso_8583_rs: parse_lazy"
    );

    let build = || {
        let mut builder = Builder::new(&theirs, &mti).expect("iso_8583_rs: MTI");
        for &(n, v) in &fields {
            builder
                .set(n, v)
                .unwrap_or_else(|e| panic!("iso_8583_rs: setting field {n}: {e:?}"));
        }
        builder
    };
    let mut packed = Vec::new();
    build().pack_into(&mut packed);
    assert_eq!(
        packed,
        &frame[..],
        "iso_8583_rs: packed bytes differ from ours:\n theirs {}\n ours   {}",
        String::from_utf8_lossy(&packed),
        String::from_utf8_lossy(&frame)
    );

    let mut group = c.benchmark_group("iso_8583_rs/decode");
    group.throughput(Throughput::Elements(1));
    group.bench_function(label, |b| {
        b.iter(|| TheirMessage::parse(black_box(&theirs), black_box(&frame[..])))
    });
    group.finish();

    let mut group = c.benchmark_group("iso_8583_rs/decode_lazy");
    group.throughput(Throughput::Elements(1));
    group.bench_function(label, |b| {
        b.iter(|| TheirMessage::parse_lazy(black_box(&theirs), black_box(&frame[..])))
    });
    group.finish();

    // Like our `encode`: from field values to wire bytes, validating every value.
    let mut out = Vec::with_capacity(frame.len());
    let mut group = c.benchmark_group("iso_8583_rs/encode");
    group.throughput(Throughput::Elements(1));
    group.bench_function(label, |b| {
        b.iter(|| {
            let mut builder = Builder::new(black_box(&theirs), black_box(&mti)).unwrap();
            for &(n, v) in black_box(&fields) {
                builder.set(n, v).unwrap();
            }
            builder.pack_into(&mut out);
            black_box(&out);
        })
    });
    group.finish();

    // Packing an already built (and validated) Builder: copies only.
    let builder = build();
    let mut group = c.benchmark_group("iso_8583_rs/pack");
    group.throughput(Throughput::Elements(1));
    group.bench_function(label, |b| {
        b.iter(|| {
            black_box(&builder).pack_into(&mut out);
            black_box(&out);
        })
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = ours, iso_8583_rs
}
criterion_main!(benches);
