//! Exactly-once forwarding to a prepaid engine over real loopback sockets: a switch and
//! the engine simulator (two listeners = the two links) run in this process while the
//! links misbehave. In every case each approved confirmation number must appear exactly
//! once in the simulator's ledger, and none may be missing once the links recover.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use replenish::config::Config;
use replenish::tools::simulator;
use replenish::wire::iso8583::Message;
use support::engine::{Engine, HIGH_LIMITS, loopback_pair};
use support::{Switch, import_samples, load};

/// A switch config with one engine serving every carrier over `links`, short timers.
fn config(dir: &Path, links: &[SocketAddr]) -> Config {
    support::engine::config(dir, links, HIGH_LIMITS)
}

fn approved(answers: &[Message]) -> BTreeSet<String> {
    answers
        .iter()
        .filter(|m| m.text(39) == Some("00"))
        .filter_map(|m| m.text(62).map(str::to_owned))
        .collect()
}

/// Confirmation number → how many credit lines the ledger holds for it.
fn ledger_counts(ledger: &Path) -> BTreeMap<String, usize> {
    let text = std::fs::read_to_string(ledger).unwrap_or_default();
    let mut counts = BTreeMap::new();
    for line in text.lines() {
        let entry: simulator::Entry = serde_json::from_str(line).expect("ledger line");
        assert_eq!(entry.kind, "credit");
        *counts.entry(entry.confirmation).or_default() += 1;
    }
    counts
}

/// Waits until every approval is in the ledger, then checks: each exactly once and
/// nothing else.
async fn assert_exactly_once(ledger: &Path, approvals: &BTreeSet<String>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let counts = ledger_counts(ledger);
        let missing = approvals
            .iter()
            .filter(|c| !counts.contains_key(*c))
            .count();
        if missing == 0 {
            let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
            assert!(twice.is_empty(), "credited more than once: {twice:?}");
            let unknown: Vec<_> = counts.keys().filter(|c| !approvals.contains(*c)).collect();
            assert!(unknown.is_empty(), "credited without approval: {unknown:?}");
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{missing} of {} approvals never reached the engine",
            approvals.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A switch on a fresh directory with the sample data, engine links to `links`.
async fn switch(dir: &Path, links: &[SocketAddr]) -> Switch {
    let config = config(dir, links);
    import_samples(&config);
    Switch::start(config).await
}

fn ledger_path(dir: &Path) -> PathBuf {
    dir.join("ledger.jsonl")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_approval_is_credited_exactly_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = Engine::start(&ledger_path(dir.path()), &loopback_pair()).await;
    let switch = switch(dir.path(), &engine.addrs()).await;
    let answers = load(switch.addr, 4, 250, 16, "A").await;
    let approvals = approved(&answers);
    assert_eq!(approvals.len(), 1000, "the sample accounts approve");
    assert_exactly_once(&ledger_path(dir.path()), &approvals).await;
    let config = switch.stop().await;
    let store =
        replenish::durable::store::Store::open(&config.data_dir.join("index")).expect("index");
    assert!(
        store.outbox("prepaid").expect("outbox").is_empty(),
        "acks empty the outbox"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_primary_stops_answering_mid_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = Engine::start(&ledger_path(dir.path()), &loopback_pair()).await;
    let switch = switch(dir.path(), &engine.addrs()).await;
    let mut answers = load(switch.addr, 2, 150, 16, "B").await;
    engine.faults(0).silent.store(true, Ordering::Relaxed);
    answers.extend(load(switch.addr, 2, 150, 16, "C").await);
    assert_exactly_once(&ledger_path(dir.path()), &approved(&answers)).await;
    switch.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_primary_is_closed_mid_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = Engine::start(&ledger_path(dir.path()), &loopback_pair()).await;
    let switch = switch(dir.path(), &engine.addrs()).await;
    let mut answers = load(switch.addr, 2, 150, 16, "D").await;
    engine.faults(0).close_every.store(7, Ordering::Relaxed);
    answers.extend(load(switch.addr, 2, 300, 16, "E").await);
    assert_exactly_once(&ledger_path(dir.path()), &approved(&answers)).await;
    switch.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_arriving_after_the_timeout_cause_no_second_credit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = Engine::start(&ledger_path(dir.path()), &loopback_pair()).await;
    for link in 0..2 {
        engine
            .faults(link)
            .delay_ack_ms
            .store(700, Ordering::Relaxed);
    }
    let switch = switch(dir.path(), &engine.addrs()).await;
    let answers = load(switch.addr, 2, 100, 16, "F").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    for link in 0..2 {
        engine.faults(link).delay_ack_ms.store(0, Ordering::Relaxed);
    }
    assert_exactly_once(&ledger_path(dir.path()), &approved(&answers)).await;
    switch.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credits_wait_for_an_engine_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = ledger_path(dir.path());
    let addrs = loopback_pair();
    let engine = Engine::start(&ledger, &addrs).await;
    let switch = switch(dir.path(), &addrs).await;
    let mut answers = load(switch.addr, 2, 100, 16, "G").await;
    engine.stop.cancel();
    drop(engine);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // More credits than the forwarder starts as tasks at once (1,024): the rest wait
    // in its queue for the engine and must all go out, once each, when it is back.
    answers.extend(load(switch.addr, 4, 400, 16, "H").await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _engine = Engine::start(&ledger, &addrs).await;
    assert_exactly_once(&ledger, &approved(&answers)).await;
    switch.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_echo_test_is_answered() {
    use replenish::wire::iso8583::Mti;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let engine_addr = listener.local_addr().expect("addr");
    let dir = tempfile::tempdir().expect("tempdir");
    let switch = switch(dir.path(), &[engine_addr]).await;
    let (stream, _) = tokio::time::timeout(Duration::from_secs(10), listener.accept())
        .await
        .expect("the link connects")
        .expect("accept");
    let mut engine = support::Client::over(stream);
    let sign_on = engine.try_receive().await.expect("sign-on");
    assert_eq!(
        (sign_on.mti().as_str(), sign_on.text(70)),
        ("0800", Some("001"))
    );
    let mut answer = Message::new(Mti::new(b"0810").expect("mti"));
    answer.set(11, sign_on.text(11).expect("DE11").to_owned());
    answer.set(39, "00");
    assert!(engine.try_send(&answer).await);

    let mut echo = Message::new(Mti::new(b"0800").expect("mti"));
    echo.set(7, "1123120000");
    echo.set(11, "424242");
    echo.set(70, "301");
    assert!(engine.try_send(&echo).await);
    let reply = engine.try_receive().await.expect("an 0810");
    assert_eq!(
        (
            reply.mti().as_str(),
            reply.text(11),
            reply.text(39),
            reply.text(70)
        ),
        ("0810", Some("424242"), Some("00"), Some("301"))
    );
    switch.stop().await;
}
