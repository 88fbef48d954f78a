//! What the indexer costs per approval: applying journal records of approved 0200s to
//! the sled indexes (transaction, confirmation, reference, usage, outbox), on a store
//! that already holds 100,000 transactions. Run: `cargo bench --bench index`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use replenish::durable::record::{Approval, Credit, Decision, Record, Summary, UsageChange};
use replenish::durable::store::Store;
use replenish::vocab::confirmation::ConfirmationNumbers;
use replenish::vocab::key::TransactionKey;

/// Approvals per applied batch (the indexer gathers 10 ms of batches: about this many
/// at 10,000 approvals a second).
const BATCH: u64 = 100;
/// Transactions in the store before measuring.
const PRELOAD: u64 = 100_000;

/// The record of the `n`th approval: distinct key, reference, confirmation; one of
/// 10,000 accounts.
fn approval(numbers: &ConfirmationNumbers, n: u64) -> Record {
    let stan = format!("{:06}", n % 1_000_000);
    let terminal = format!("T{:07}", n % 977);
    let time = format!("{:010}", 1_123_000_000 + n / 1_000_000);
    let key = TransactionKey::from_parts("00012345", &terminal, &stan, &time, 2);
    let account = format!("476173{:010}", 500_000_000 + n % 10_000);
    let confirmation = numbers.number(n);
    let summary = Summary {
        pan: format!("{}******{}", &account[..6], &account[12..]),
        processing_code: "280000".into(),
        amount: "000000002500".into(),
        currency: "840".into(),
        stan,
        rrn: format!("{:012}", n),
        terminal,
        location: "LOC000000001234".into(),
        acquirer: "00012345".into(),
        link: "bench".into(),
        ..Summary::default()
    };
    let mut decision = Decision::new(key, format!("{n:016x}"), "0200".into(), summary);
    decision.day = "2026-11-23".into();
    decision.account = Some(account.clone());
    decision.approval = Some(Approval {
        counter: n,
        confirmation: confirmation.clone(),
    });
    decision.credit = Some(Credit {
        engine: "prepaid".into(),
        min: format!("2065{:06}", n % 10_000),
        amount: 2500,
        currency: "840".into(),
        confirmation,
        processing_code: "280000".into(),
        rrn: format!("{:012}", n),
        voucher: None,
    });
    decision.usage = Some(UsageChange {
        account,
        day: "2026-11-23".into(),
        count: 1,
        amount: 2500,
    });
    Record::Decided(Box::new(decision))
}

fn batch(numbers: &ConfirmationNumbers, from: u64) -> Vec<(u64, Record)> {
    (from..from + BATCH)
        .map(|n| (n, approval(numbers, n)))
        .collect()
}

fn apply(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("scratch directory");
    let store = Store::open(dir.path()).expect("store");
    let numbers = ConfirmationNumbers::new(b"index bench key, sixteen+ bytes");
    let mut next = 1;
    while next <= PRELOAD {
        store.apply(&batch(&numbers, next)).expect("preload");
        next += BATCH;
    }
    let mut group = c.benchmark_group("index");
    group.throughput(Throughput::Elements(BATCH));
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("apply-100-approvals", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                let records = batch(&numbers, next);
                next += BATCH;
                let started = Instant::now();
                store.apply(black_box(&records)).expect("apply");
                spent += started.elapsed();
            }
            spent
        })
    });
    group.finish();
}

criterion_group!(benches, apply);
criterion_main!(benches);
