//! decode → encode → decode is stable: whatever decodes must re-encode, and the
//! re-encoding must decode to the same message. The first byte picks the spec.
#![no_main]

use std::sync::LazyLock;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use replenish::wire::iso8583::{Spec, decode, encode_to_bytes};

static SPECS: LazyLock<Vec<Spec>> = LazyLock::new(|| {
    ["iso87ascii", "iso87binary", "iso87bcd", "iso87ebcdic"]
        .into_iter()
        .map(|name| Spec::resolve(name).expect(name))
        .collect()
});

fuzz_target!(|data: &[u8]| {
    let Some((&selector, frame)) = data.split_first() else {
        return;
    };
    let spec = &SPECS[usize::from(selector) % SPECS.len()];
    let Ok(first) = decode(spec, &Bytes::copy_from_slice(frame)) else {
        return;
    };
    let encoded = encode_to_bytes(spec, &first).expect("a decoded message must re-encode");
    let second = decode(spec, &encoded).expect("a re-encoded message must decode");
    assert_eq!(
        first, second,
        "decode -> encode -> decode changed the message"
    );
});
