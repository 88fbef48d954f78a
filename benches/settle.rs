//! Settling a business day of 1,000,000 approvals (issue 15's scale target: at most
//! 10 s): the day's decisions (approvals with their credits, across 100,000 accounts of
//! two carriers and 1,000 locations of ten retailers, one in ten reversed in part) are
//! journaled and indexed as the switch would, the day closed and reconciled; each sample
//! makes the settlement (the journal read, each approval's standing from the index, the
//! split) without journaling it, so every sample does the whole work.
//!
//! `cargo bench --bench settle` (`SETTLE_APPROVALS=100000` for a quicker run).

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use replenish::backoffice::reconcile::Books;
use replenish::backoffice::settle;
use replenish::config::Config;
use replenish::durable::datadir::DataDir;
use replenish::durable::record::{
    Approval, Credit, DayClose, Decision, Reconciliation, Record, Reversal, ReversalEffect, Side,
    Standing, Summary, Touched, TransactionEntry,
};
use replenish::vocab::accounts::{Account, AccountStatus, Location};
use replenish::vocab::confirmation::ConfirmationNumbers;
use replenish::vocab::key::TransactionKey;

const DAY: &str = "2026-12-04";

fn approvals() -> u64 {
    std::env::var("SETTLE_APPROVALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

fn config(dir: &std::path::Path) -> Config {
    let sample = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/configs/settlement.toml"),
    )
    .expect("sample");
    let mut text = sample.replace(
        "data_dir = \"./data\"",
        &format!("data_dir = {:?}", dir.display().to_string()),
    );
    for n in 0..10 {
        text += &format!(
            "\n[[payee]]\nparty = \"retailer:Retailer {n}\"\nname = \"R{n}\"\naccount = \"NL91ABNA041716430{n}\"\n"
        );
    }
    Config::from_toml(&text, "settle bench").expect("config")
}

fn approval(n: u64) -> Decision {
    let terminal = format!("T{:05}", n % 10_000);
    let stan = format!("{:06}", n % 1_000_000);
    let transmission = format!("1204{:06}", n / 1_000_000 * 10_000 + n % 10_000);
    let key = TransactionKey::from_parts("00012345", &terminal, &stan, &transmission, 2);
    let amount = 100 + n % 5_000;
    let summary = Summary {
        amount: format!("{amount:012}"),
        link: "acquirer".into(),
        location: format!("LOC{:012}", n % 1_000),
        terminal,
        stan,
        acquirer: "00012345".into(),
        currency: "840".into(),
        processing_code: "280000".into(),
        ..Summary::default()
    };
    let mut decision = Decision::new(key, String::new(), "0200".into(), summary);
    decision.business_day = DAY.into();
    decision.day = DAY.into();
    decision.account = Some(format!("476173{:010}", n % 100_000));
    let confirmation = format!("{:012}", n + 1);
    decision.approval = Some(Approval {
        counter: n + 1,
        confirmation: confirmation.clone(),
    });
    decision.credit = Some(Credit {
        engine: "prepaid".into(),
        min: "2065550101".into(),
        amount,
        currency: "840".into(),
        confirmation,
        processing_code: "280000".into(),
        rrn: String::new(),
        voucher: None,
    });
    decision
}

/// The day journaled and indexed: accounts, locations, approvals, one in ten reversed
/// in part, the close, a clean reconciliation.
fn set_up(config: &Config, count: u64) {
    let data = DataDir::open(config).expect("data dir");
    let accounts: Vec<Account> = (0..100_000)
        .map(|n| Account {
            number: format!("476173{n:010}"),
            min: format!("20655{n:05}"),
            carrier: if n % 2 == 0 { "carrier-a" } else { "carrier-b" }.into(),
            status: AccountStatus::Active,
            expiry: None,
        })
        .collect();
    let locations = (0..1_000)
        .map(|n| Location {
            id: format!("LOC{n:012}"),
            name: format!("Store {n}"),
            retailer: format!("Retailer {}", n % 10),
            authorized: true,
        })
        .collect();
    // A journal record holds at most 1 MiB: the accounts go in parts.
    let mut reference: Vec<Record> = (accounts.chunks(5_000))
        .map(|part| Record::AccountsImported {
            accounts: part.to_vec(),
        })
        .collect();
    reference.push(Record::LocationsImported { locations });
    data.commit(&reference).expect("reference data");
    let mut batch = Vec::with_capacity(4096);
    for n in 0..count {
        let decision = approval(n);
        if n % 10 == 3 {
            // A partial reversal: its decision touches the original's entry.
            let mut entry = TransactionEntry::of(0, &decision);
            entry.standing = Standing::Reversed {
                amount: 50,
                full: false,
            };
            let mut reversal = Decision::new(
                TransactionKey(format!("{}#r", decision.key.0)),
                String::new(),
                "0420".into(),
                decision.summary.clone(),
            );
            reversal.business_day = DAY.into();
            reversal.reversal = Some(Reversal {
                original: Some(decision.key.clone()),
                reversed: 50,
                effect: ReversalEffect::Ignored,
                early: None,
            });
            reversal.touches = Some(Touched {
                key: decision.key.clone(),
                entry,
            });
            batch.push(Record::Decided(Box::new(decision)));
            batch.push(Record::Decided(Box::new(reversal)));
        } else {
            batch.push(Record::Decided(Box::new(decision)));
        }
        if batch.len() >= 4096 {
            data.commit(&batch).expect("approvals");
            batch.clear();
        }
    }
    batch.push(Record::DayClosed(DayClose {
        day: DAY.into(),
        next: "2026-12-05".into(),
        at_ms: 0,
        by: "bench".into(),
        early: true,
    }));
    batch.push(Record::Reconciled(Box::new(Reconciliation {
        side: Side::Bank,
        party: "acquirer".into(),
        day: DAY.into(),
        file_sha256: String::new(),
        at_ms: 0,
        lines: count,
        counts: Default::default(),
        breaks: Vec::new(),
        other_day: Vec::new(),
    })));
    data.commit(&batch).expect("close");
    data.close().expect("close data dir");
}

fn settle_day(c: &mut Criterion) {
    let count = approvals();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path());
    let started = Instant::now();
    set_up(&config, count);
    eprintln!(
        "set up {count} approvals in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let data = DataDir::open(&config).expect("data dir");
    let numbers = ConfirmationNumbers::new(&data.confirmation_key().expect("key"));
    // Nothing is journaled: each sample settles afresh.
    let commit = |_: &[Record]| Ok(Vec::new());
    let books = Books {
        store: &data.store,
        journal_dir: data.path.join("journal"),
        commit: &commit,
        numbers: &numbers,
    };
    let mut group = c.benchmark_group("settle");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(60));
    group.bench_function(format!("a day of {count} approvals"), |b| {
        b.iter(|| {
            let settled = settle::settled_on(&books, &config, "acquirer", DAY).expect("settle");
            assert_eq!(settled.settlements[0].transactions, count);
            settled
        })
    });
    group.finish();
}

criterion_group!(benches, settle_day);
criterion_main!(benches);
