//! Reconciling a business day of 1,000,000 decisions against a 1,000,000-line bank file
//! (issue 14's scale target: at most 20 s and 300 MB on this 2-core machine). The day
//! is written straight into a journal (the reconciliation reads decisions from the
//! journal, so the indexes need only the day's close), the file as the bank would send
//! it with five lines perturbed, and each sample runs `replenish reconcile bank` as an
//! operator would. The children's peak RSS is printed after the samples.
//!
//! `cargo bench --bench reconcile` (`RECONCILE_LINES=100000` for a quicker run).

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use replenish::durable::journal::{Journal, JournalConfig};
use replenish::durable::record::{DayClose, Decision, Record, Summary};
use replenish::durable::store::Store;
use replenish::vocab::key::TransactionKey;

const DAY: &str = "2026-12-04";

fn lines() -> u64 {
    std::env::var("RECONCILE_LINES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

/// Transaction `n`: its key fields, account and amount.
fn transaction(n: u64) -> (String, String, String, String, u64) {
    let terminal = format!("T{:05}", n % 10_000);
    let stan = format!("{:06}", n % 1_000_000);
    let transmission = format!("1204{:06}", n / 1_000_000 * 10_000 + n % 10_000);
    let account = format!("476173{:010}", n);
    (terminal, stan, transmission, account, 100 + n % 5_000)
}

/// The day's decisions in a journal, closed; the indexes know only the close.
fn write_day(dir: &Path, count: u64) {
    let (journal, _) =
        Journal::open(JournalConfig::new(dir.join("journal")), None).expect("journal");
    let mut batch = Vec::with_capacity(1024);
    let mut last = 0;
    for n in 0..count {
        let (terminal, stan, transmission, account, amount) = transaction(n);
        let key = TransactionKey::from_parts("00012345", &terminal, &stan, &transmission, 2);
        let summary = Summary {
            amount: format!("{amount:012}"),
            link: "bank-a".into(),
            terminal,
            stan,
            acquirer: "00012345".into(),
            ..Summary::default()
        };
        let mut decision = Decision::new(key, String::new(), "0200".into(), summary);
        decision.business_day = DAY.into();
        decision.account = Some(account);
        batch.push(Record::Decided(Box::new(decision)).to_bytes());
        if batch.len() == 1024 || n + 1 == count {
            let slices: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
            last = *journal.append_all(&slices).expect("append").end();
            batch.clear();
        }
    }
    let close = Record::DayClosed(DayClose {
        day: DAY.into(),
        next: "2026-12-05".into(),
        at_ms: 0,
        by: "bench".into(),
        early: true,
    });
    let seq = journal.append(&close.to_bytes()).expect("close");
    journal
        .wait_durable_blocking(seq.max(last))
        .expect("durable");
    journal.close().expect("close journal");
    let store = Store::open(&dir.join("index")).expect("store");
    store.apply(&[(seq, close)]).expect("apply the close");
    store.flush().expect("flush");
}

/// The bank's file: every transaction, five of them perturbed.
fn write_file(path: &Path, count: u64) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).expect("file"));
    writeln!(out, "business_day,mti,processing_code,acquirer_id,terminal,stan,transmission,rrn,account,amount,currency,response_code,confirmation").expect("write");
    for n in 0..count {
        let (terminal, stan, transmission, account, mut amount) = transaction(n);
        if n % (count / 5).max(1) == 7 {
            amount += 1;
        }
        writeln!(out, "{DAY},0200,280000,00012345,{terminal},{stan},{transmission},,{account},{amount},840,00,")
            .expect("write");
    }
}

/// Runs `command` to its end; returns its output and its peak RSS in MB (VmHWM, read
/// from /proc while it runs: the peak so far, so the last reading is the peak).
fn run_measured(command: &mut Command) -> (std::process::Output, u64) {
    let child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run replenish (cargo build --release first)");
    let status = format!("/proc/{}/status", child.id());
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let watcher = {
        let peak = peak.clone();
        std::thread::spawn(move || {
            while let Ok(text) = std::fs::read_to_string(&status) {
                let kb = text
                    .lines()
                    .find(|l| l.starts_with("VmHWM:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(0);
                peak.fetch_max(kb, std::sync::atomic::Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let output = child.wait_with_output().expect("wait");
    let _ = watcher.join();
    (
        output,
        peak.load(std::sync::atomic::Ordering::Relaxed) / 1024,
    )
}

fn reconcile(c: &mut Criterion) {
    let count = lines();
    let dir = tempfile::tempdir().expect("tempdir");
    let started = Instant::now();
    write_day(dir.path(), count);
    let file = dir.path().join("bank.csv");
    write_file(&file, count);
    let config = dir.path().join("replenish.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\n[[acquirer]]\nname = \"bank-a\"\nlisten = \"127.0.0.1:0\"\nacquirer_id = \"00012345\"\n",
            dir.path().display().to_string()
        ),
    )
    .expect("config");
    eprintln!(
        "set up {count} decisions and lines in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let binary = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/replenish");
    let mut peak_mb = 0;
    let mut group = c.benchmark_group("reconcile");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(60));
    group.bench_function(format!("bank file of {count} lines"), |b| {
        b.iter_custom(|iterations| {
            let mut total = Duration::ZERO;
            for _ in 0..iterations {
                let started = Instant::now();
                let (output, rss) = run_measured(
                    Command::new(&binary)
                        .args(["reconcile", "bank"])
                        .arg(&file)
                        .args(["--bank", "bank-a", "--day", DAY, "--config"])
                        .arg(&config),
                );
                total += started.elapsed();
                peak_mb = peak_mb.max(rss);
                let stdout = String::from_utf8_lossy(&output.stdout);
                assert!(
                    stdout.contains(" 5 amount_mismatch"),
                    "{stdout}\n{}",
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            total
        })
    });
    group.finish();
    eprintln!("peak RSS of a reconciliation: {peak_mb} MB");
}

criterion_group!(benches, reconcile);
criterion_main!(benches);
