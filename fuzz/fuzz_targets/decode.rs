//! Decoding arbitrary bytes with any of the bundled specs must not panic.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use replenish::wire::iso8583::{Spec, decode_slice};

static SPECS: LazyLock<Vec<Spec>> = LazyLock::new(|| {
    ["iso87ascii", "iso87binary", "iso87bcd", "iso87ebcdic"]
        .into_iter()
        .map(|name| Spec::resolve(name).expect(name))
        .collect()
});

fuzz_target!(|data: &[u8]| {
    for spec in SPECS.iter() {
        let _ = decode_slice(spec, data);
    }
});
