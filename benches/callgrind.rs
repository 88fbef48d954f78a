//! Fixed iteration counts of the codec for `valgrind --tool=callgrind`: instruction
//! counts are repeatable where wall time on a shared 2-core machine is not. Usage (see
//! README, Benchmarks): `callgrind decode|encode|theirs [SPEC] [N]` runs one loop N
//! times (collect with `--toggle-collect='*decode_loop*'` and so on); `callgrind time`
//! prints best and median wall time per call of each loop.

use bytes::BytesMut;
use replenish::wire::iso8583::{Spec, decode, encode, encode_to_bytes, from_json_str};
use std::hint::black_box;

#[inline(never)]
fn decode_loop(spec: &Spec, frame: &bytes::Bytes, n: usize) {
    for _ in 0..n {
        let _ = black_box(decode(black_box(spec), black_box(frame)));
    }
}

#[inline(never)]
fn encode_loop(spec: &Spec, m: &replenish::wire::iso8583::Message, out: &mut BytesMut, n: usize) {
    for _ in 0..n {
        out.clear();
        encode(black_box(spec), black_box(m), out).expect("bench setup");
        black_box(&out);
    }
}

#[inline(never)]
fn theirs_loop(spec: &iso_8583_rs::CompiledSpec, frame: &[u8], n: usize) {
    for _ in 0..n {
        let _ = black_box(iso_8583_rs::Message::parse(
            black_box(spec),
            black_box(frame),
        ));
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let what = args.get(1).map(String::as_str).unwrap_or("time");
    let spec_name = args.get(2).map(String::as_str).unwrap_or("iso87ascii");
    let n: usize = args
        .get(3)
        .map(|s| s.parse().expect("bench setup"))
        .unwrap_or(1000);
    let spec = Spec::resolve(spec_name).expect("bench setup");
    let json = include_str!("../fixtures/messages/reference-0200.json");
    let m = from_json_str(&spec, json).expect("bench setup");
    let frame = encode_to_bytes(&spec, &m).expect("bench setup");
    let mut out = BytesMut::with_capacity(frame.len() * 2);
    let theirs = iso_8583_rs::CompiledSpec::from_file(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/benches/iso_8583_rs-spec.yaml"
    ))
    .expect("bench setup");
    let mut run = |what: &str, n: usize| match what {
        "decode" => decode_loop(&spec, &frame, n),
        "encode" => encode_loop(&spec, &m, &mut out, n),
        "theirs" => theirs_loop(&theirs, &frame, n),
        other => panic!("unknown loop {other}: decode, encode, theirs or time"),
    };
    if what == "time" {
        for w in ["decode", "encode", "theirs"] {
            let mut all = vec![];
            for _ in 0..15 {
                let t = std::time::Instant::now();
                run(w, n);
                all.push(t.elapsed().as_nanos() as f64 / n as f64);
            }
            all.sort_by(f64::total_cmp);
            println!("{w} best {:.0} median {:.0} ns (15 x {n})", all[0], all[7]);
        }
    } else {
        run(what, n)
    }
}
