//! Reversals, advices, authorizations with holds, corrections and the exception queue,
//! end to end: a switch and the engine simulator in this process over loopback, the
//! engine's ledger read back after each scenario. What a user cares about is the
//! balance at the engine: every approved amount credited once, every reversed amount
//! taken back once, nothing credited for a transaction reversed before it arrived.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use replenish::config::Config;
use replenish::operate::{lookup, queue};
use replenish::switch::reverse::original_data;
use replenish::tools::simulator::Entry;
use replenish::vocab::confirmation::{luhn_check_digit, luhn_valid};
use replenish::wire::iso8583::{Message, Mti};
use support::engine::{Engine, HIGH_LIMITS, config, loopback_pair};
use support::{ACTIVE, Client, Switch, free_port, import_samples, request};

/// Account → MIN of sample accounts that approve (all carrier-a or carrier-b).
const ACCOUNTS: [(&str, &str); 5] = [
    (ACTIVE, "2065550101"),
    ("4761739001010077", "2065550107"),
    ("4761739001010085", "2065550108"),
    ("4761739001010093", "2065550109"),
    ("4761739001010101", "2065550110"),
];

/// A switch with the sample data, an engine, and a client connected to the switch.
struct Rig {
    dir: tempfile::TempDir,
    engine: Engine,
    switch: Option<Switch>,
    client: Client,
}

impl Rig {
    async fn start(extra: &str) -> Rig {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = Engine::start(&ledger(dir.path()), &loopback_pair()).await;
        let config = config(dir.path(), &engine.addrs(), extra);
        import_samples(&config);
        let switch = Switch::start(config).await;
        let client = Client::connect(switch.addr).await;
        Rig {
            dir,
            engine,
            switch: Some(switch),
            client,
        }
    }

    /// A rig whose switch serves its HTTP endpoint (queue, lookups) on a free port.
    async fn with_endpoint() -> Rig {
        let extra = format!(
            "{HIGH_LIMITS}\n[metrics]\nlisten = \"127.0.0.1:{}\"\n",
            free_port()
        );
        Rig::start(&extra).await
    }

    async fn exchange(&mut self, message: &Message) -> Message {
        self.client.exchange(message).await
    }

    /// Stops the switch (as SIGTERM would) and returns its config.
    async fn stop(&mut self) -> Config {
        self.switch.take().expect("running").stop().await
    }

    /// Starts the switch again on `config` and reconnects.
    async fn restart(&mut self, config: Config) {
        let switch = Switch::start(config).await;
        self.client = Client::connect(switch.addr).await;
        self.switch = Some(switch);
    }

    fn ledger(&self) -> Vec<Entry> {
        let text = std::fs::read_to_string(ledger(self.dir.path())).unwrap_or_default();
        text.lines()
            .map(|l| serde_json::from_str(l).expect("ledger line"))
            .collect()
    }

    /// Waits until the engine's balance of `min` is `expected`.
    async fn balance_becomes(&self, min: &str, expected: i64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while self.engine.balance(min) != expected {
            assert!(
                tokio::time::Instant::now() < deadline,
                "balance of {min} is {}, expected {expected}; ledger: {:?}",
                self.engine.balance(min),
                self.ledger()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Ledger lines of one confirmation number, by kind.
    fn lines_of(&self, confirmation: &str) -> Vec<(String, u64)> {
        self.ledger()
            .into_iter()
            .filter(|e| e.confirmation == confirmation)
            .map(|e| (e.kind, e.amount))
            .collect()
    }
}

fn ledger(dir: &Path) -> PathBuf {
    dir.join("ledger.jsonl")
}

fn mti(text: &str) -> Mti {
    Mti::new(text.as_bytes()).expect("mti")
}

/// A `0200` of `amount` for `account` with STAN `stan` (and a DE37 of its own).
fn credit(stan: u32, amount: u64, account: &str) -> Message {
    let mut message = request(stan, amount, account);
    message.set(37, format!("5327{stan:08}"));
    message
}

/// The same request as another MTI (an advice `0220`, an authorization `0100`).
fn as_mti(mut message: Message, text: &str) -> Message {
    message.set_mti(mti(text));
    message
}

/// A reversal (`mti`: 0400, 0420, ...) of `original` with its own STAN `stan`.
fn reversal_of(original: &Message, stan: u32, text: &str) -> Message {
    let mut message = as_mti(original.clone(), text);
    message.set(11, format!("{stan:06}"));
    message.set(7, "1123101500");
    message.set(90, original_data(original));
    message
}

/// A partial reversal leaving `remaining` credited (DE95).
fn partial_reversal_of(original: &Message, stan: u32, remaining: u64) -> Message {
    let mut message = reversal_of(original, stan, "0420");
    message.set(95, format!("{remaining:012}{:012}C{:08}C{:08}", 0, 0, 0));
    message
}

fn code(answer: &Message) -> &str {
    answer.text(39).unwrap_or("")
}

fn confirmation(answer: &Message) -> String {
    answer.text(62).expect("DE62 on an approval").to_owned()
}

/// A Luhn-valid account number that is not in the sample accounts.
fn unknown_account() -> String {
    (0..10)
        .map(|d| format!("476173900109999{d}"))
        .find(|n| luhn_valid(n.as_bytes()))
        .expect("one check digit fits")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reversal_of_a_delivered_credit_is_advised_once() {
    let mut rig = Rig::start(HIGH_LIMITS).await;
    let original = credit(1, 2500, ACTIVE);
    let answer = rig.exchange(&original).await;
    assert_eq!(code(&answer), "00");
    let number = confirmation(&answer);
    rig.balance_becomes("2065550101", 2500).await;

    let reversal = reversal_of(&original, 2, "0420");
    let answer = rig.exchange(&reversal).await;
    assert_eq!((answer.mti(), code(&answer)), (mti("0430"), "00"));
    assert_eq!(answer.text(90), reversal.text(90), "DE90 echoed");
    rig.balance_becomes("2065550101", 0).await;

    // Its repeat and a second reversal with another STAN: answered, no second effect.
    let repeat = rig.exchange(&as_mti(reversal.clone(), "0421")).await;
    assert_eq!(code(&repeat), "00");
    let again = rig.exchange(&reversal_of(&original, 3, "0400")).await;
    assert_eq!((again.mti(), code(&again)), (mti("0410"), "00"));
    // A fresh credit on the same account is the sync point: everything before it is
    // through the engine's ledger once it arrives.
    assert_eq!(code(&rig.exchange(&credit(4, 100, ACTIVE)).await), "00");
    rig.balance_becomes("2065550101", 100).await;
    assert_eq!(
        rig.lines_of(&number),
        vec![("credit".into(), 2500), ("reversal".into(), 2500)]
    );
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reversal_before_the_credit_leaves_removes_it_from_the_outbox() {
    let dir = tempfile::tempdir().expect("tempdir");
    let links = loopback_pair();
    let config = config(dir.path(), &links, HIGH_LIMITS);
    import_samples(&config);
    let switch = Switch::start(config).await;
    let mut client = Client::connect(switch.addr).await;
    // No engine listens yet: credits wait in the outbox.
    let full = credit(1, 2500, ACTIVE);
    let full_number = confirmation(&client.exchange(&full).await);
    let partial = credit(2, 5000, "4761739001010077");
    let partial_number = confirmation(&client.exchange(&partial).await);
    assert_eq!(
        code(&client.exchange(&reversal_of(&full, 3, "0420")).await),
        "00"
    );
    assert_eq!(
        code(
            &client
                .exchange(&partial_reversal_of(&partial, 4, 3000))
                .await
        ),
        "00"
    );
    let sync = confirmation(&client.exchange(&credit(5, 700, "4761739001010093")).await);

    let engine = Engine::start(&ledger(dir.path()), &links).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while engine.balance("2065550109") != 700 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "sync credit never arrived"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let text = std::fs::read_to_string(ledger(dir.path())).expect("ledger");
    let lines: Vec<Entry> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("line"))
        .collect();
    let of = |number: &str| -> Vec<(String, u64)> {
        lines
            .iter()
            .filter(|e| e.confirmation == number)
            .map(|e| (e.kind.clone(), e.amount))
            .collect()
    };
    assert_eq!(
        of(&full_number),
        vec![],
        "a cancelled credit never reaches the engine"
    );
    assert_eq!(
        of(&partial_number),
        vec![("credit".to_owned(), 3000)],
        "a reduced credit goes out with what remains, and no reversal follows"
    );
    assert_eq!(of(&sync).len(), 1);
    let config = switch.stop().await;
    let store =
        replenish::durable::store::Store::open(&config.data_dir.join("index")).expect("index");
    assert!(store.outbox("prepaid").expect("outbox").is_empty());
    assert!(store.reversals("prepaid").expect("reversals").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_reversal_after_delivery_takes_back_the_difference() {
    let mut rig = Rig::start(HIGH_LIMITS).await;
    let original = credit(1, 5000, ACTIVE);
    assert_eq!(code(&rig.exchange(&original).await), "00");
    rig.balance_becomes("2065550101", 5000).await;
    let answer = rig.exchange(&partial_reversal_of(&original, 2, 1500)).await;
    assert_eq!(code(&answer), "00");
    rig.balance_becomes("2065550101", 1500).await;
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reversal_that_arrives_first_makes_the_late_original_decline() {
    let mut rig = Rig::start(HIGH_LIMITS).await;
    let original = credit(900, 2500, ACTIVE);
    let answer = rig.exchange(&reversal_of(&original, 901, "0420")).await;
    assert_eq!(
        code(&answer),
        "00",
        "no original: approved and nothing changed"
    );
    let late = rig.exchange(&original).await;
    assert_eq!(code(&late), "12", "the late original is declined");
    assert!(late.get(62).is_none());
    // Its repeat gets the same decline.
    assert_eq!(code(&rig.exchange(&original).await), "12");
    assert_eq!(code(&rig.exchange(&credit(902, 100, ACTIVE)).await), "00");
    rig.balance_becomes("2065550101", 100).await;
    assert_eq!(
        rig.ledger().len(),
        1,
        "only the sync credit: {:?}",
        rig.ledger()
    );
    let config = rig.stop().await;
    let log = std::fs::read_to_string(config.exceptions_log()).expect("exception log");
    assert!(log.contains("reversal without an original"), "{log}");
    assert!(log.contains("reversed_before_arrival"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmatched_reversals_change_nothing_and_can_be_declined_25() {
    let extra = format!("{HIGH_LIMITS}\n[switch]\nreversal_without_original = \"decline\"\n");
    let mut rig = Rig::start(&extra).await;
    let orphan = credit(50, 2500, ACTIVE);
    assert_eq!(
        code(&rig.exchange(&reversal_of(&orphan, 51, "0400")).await),
        "25"
    );
    let original = credit(1, 2500, ACTIVE);
    assert_eq!(code(&rig.exchange(&original).await), "00");
    // Wrong amount, then wrong account: the original is not the one they reverse.
    let mut wrong_amount = reversal_of(&original, 2, "0420");
    wrong_amount.set(4, "000000002400");
    assert_eq!(code(&rig.exchange(&wrong_amount).await), "25");
    let mut wrong_account = reversal_of(&original, 3, "0420");
    wrong_account.set(2, "4761739001010077");
    assert_eq!(code(&rig.exchange(&wrong_account).await), "25");
    rig.balance_becomes("2065550101", 2500).await;
    assert_eq!(code(&rig.exchange(&credit(4, 100, ACTIVE)).await), "00");
    rig.balance_becomes("2065550101", 2600).await;
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reversal_found_by_retrieval_reference_without_de90() {
    let mut rig = Rig::start(HIGH_LIMITS).await;
    let mut original = credit(1, 2500, ACTIVE);
    original.set(37, "532709770001");
    assert_eq!(code(&rig.exchange(&original).await), "00");
    rig.balance_becomes("2065550101", 2500).await;
    let mut reversal = reversal_of(&original, 2, "0420");
    reversal.remove(90);
    assert_eq!(code(&rig.exchange(&reversal).await), "00");
    rig.balance_becomes("2065550101", 0).await;
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn advices_are_acknowledged_deduplicated_and_credited_once() {
    let mut rig = Rig::start(HIGH_LIMITS).await;
    let advice = as_mti(credit(1, 2500, ACTIVE), "0220");
    let answer = rig.exchange(&advice).await;
    assert_eq!((answer.mti(), code(&answer)), (mti("0230"), "00"));
    let number = confirmation(&answer);
    let repeat = rig.exchange(&as_mti(advice.clone(), "0221")).await;
    assert_eq!(
        (code(&repeat), confirmation(&repeat)),
        ("00", number.clone())
    );
    // An advice ignores the limits a request obeys: the bank approved already.
    let mut big = as_mti(credit(2, 90_000, "4761739001010077"), "0220");
    big.set(42, "LOC000000009999");
    assert_eq!(code(&rig.exchange(&big).await), "00");
    rig.balance_becomes("2065550101", 2500).await;
    rig.balance_becomes("2065550107", 90_000).await;
    assert_eq!(rig.lines_of(&number).len(), 1);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unroutable_advice_is_queued_and_resubmitted_after_correction() {
    let mut rig = Rig::with_endpoint().await;
    let account = unknown_account();
    let advice = as_mti(credit(1, 4200, &account), "0220");
    let answer = rig.exchange(&advice).await;
    assert_eq!(code(&answer), "00", "always acknowledged");
    assert!(answer.get(62).is_none(), "but not credited");
    let config = rig.stop().await;

    let items = queue::list(&config).expect("list offline");
    assert_eq!(items.len(), 1);
    let item = &items[0];
    assert!(item.is_open() && item.amount == 4200, "{item:?}");
    assert!(item.reason.contains("unknown"), "{item:?}");
    assert!(!item.account.contains(&account), "masked: {}", item.account);
    let refused = queue::resubmit(&config, item.id, "alice").expect_err("still unknown");
    assert!(refused.to_string().contains("still unknown"), "{refused}");

    // The operator adds the account, then resubmits through the running switch.
    correct_account(&config, &account, "2065550199");
    rig.restart(config.clone()).await;
    let number = tokio::task::spawn_blocking({
        let (config, id) = (config.clone(), item.id);
        move || queue::resubmit(&config, id, "alice")
    })
    .await
    .expect("task")
    .expect("resubmitted through the running switch");
    rig.balance_becomes("2065550199", 4200).await;
    assert_eq!(rig.lines_of(&number).len(), 1);
    let again = tokio::task::spawn_blocking({
        let (config, id) = (config.clone(), item.id);
        move || queue::resubmit(&config, id, "bob")
    })
    .await
    .expect("task");
    assert!(again.is_err(), "a second resubmission is refused");
    let config = rig.stop().await;
    let items = queue::list(&config).expect("list");
    assert!(
        items[0].status.starts_with("resubmitted by alice"),
        "{items:?}"
    );

    // The bank holds the money of the advice it approved: once credited, it is in the
    // day's books (revenue, and so settlement) like any approval.
    let closed = replenish::backoffice::days::close(&config, "test").expect("day closed");
    let month = &closed.closed[..7];
    let revenue = replenish::backoffice::report::revenue_of(
        &config,
        month,
        replenish::backoffice::report::By::Bank,
    )
    .expect("revenue");
    let total = &revenue.totals[0];
    assert_eq!((total.transactions, total.gross), (1, 4200), "{revenue:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authorization_holds_and_its_completion_credits() {
    let mut rig = Rig::start(HIGH_LIMITS).await;
    let authorization = as_mti(credit(1, 3000, ACTIVE), "0100");
    let answer = rig.exchange(&authorization).await;
    assert_eq!((answer.mti(), code(&answer)), (mti("0110"), "00"));
    let number = confirmation(&answer);
    let approval_code = answer.text(38).expect("DE38").to_owned();

    // Completion by DE90, for less than was held.
    let mut completion = as_mti(credit(2, 2800, ACTIVE), "0220");
    completion.set(90, original_data(&authorization));
    let done = rig.exchange(&completion).await;
    assert_eq!((code(&done), confirmation(&done)), ("00", number.clone()));
    rig.balance_becomes("2065550101", 2800).await;

    // Completion by DE38 alone.
    let second = as_mti(credit(3, 1000, "4761739001010077"), "0100");
    let answer = rig.exchange(&second).await;
    let second_number = confirmation(&answer);
    let mut completion = as_mti(credit(4, 1000, "4761739001010077"), "0220");
    completion.set(38, answer.text(38).expect("DE38").to_owned());
    assert_eq!(
        confirmation(&rig.exchange(&completion).await),
        second_number
    );
    rig.balance_becomes("2065550107", 1000).await;
    assert_ne!(approval_code, "");
    assert_eq!(rig.lines_of(&number), vec![("credit".into(), 2800)]);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_counts_against_the_limits_until_it_expires() {
    let extra = "\n[limits]\ndaily_count = 1\n\n[switch]\nhold_expiry = \"1s\"\n";
    let mut rig = Rig::start(extra).await;
    let authorization = as_mti(credit(1, 3000, ACTIVE), "0100");
    assert_eq!(code(&rig.exchange(&authorization).await), "00");
    assert_eq!(
        code(&rig.exchange(&credit(2, 100, ACTIVE)).await),
        "65",
        "the hold uses the day's one transaction"
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        code(&rig.exchange(&credit(3, 100, ACTIVE)).await),
        "00",
        "the expired hold gave it back"
    );
    rig.balance_becomes("2065550101", 100).await;
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reversed_authorization_is_never_completed_into_a_hold() {
    let mut rig = Rig::start(HIGH_LIMITS).await;
    let authorization = as_mti(credit(1, 3000, ACTIVE), "0100");
    assert_eq!(code(&rig.exchange(&authorization).await), "00");
    let answer = rig.exchange(&reversal_of(&authorization, 2, "0400")).await;
    assert_eq!(code(&answer), "00");
    // The bank completes anyway (stand-in): the advice is credited, once, as such.
    let mut completion = as_mti(credit(3, 3000, ACTIVE), "0220");
    completion.set(90, original_data(&authorization));
    assert_eq!(code(&rig.exchange(&completion).await), "00");
    rig.balance_becomes("2065550101", 3000).await;
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_correction_reverses_and_credits_the_right_amount() {
    let mut rig = Rig::start(HIGH_LIMITS).await;
    // The clerk keyed 25.00 instead of 2.50: reversal plus a new transaction with the
    // same transaction identification (DE37), once with a new STAN and once re-using
    // the original's key.
    let wrong = credit(1, 2500, ACTIVE);
    assert_eq!(code(&rig.exchange(&wrong).await), "00");
    assert_eq!(
        code(&rig.exchange(&reversal_of(&wrong, 2, "0420")).await),
        "00"
    );
    let corrected = credit(3, 250, ACTIVE);
    assert_eq!(code(&rig.exchange(&corrected).await), "00");

    let wrong = credit(10, 4000, "4761739001010077");
    assert_eq!(code(&rig.exchange(&wrong).await), "00");
    assert_eq!(
        code(&rig.exchange(&reversal_of(&wrong, 11, "0420")).await),
        "00"
    );
    let mut same_key = wrong.clone();
    same_key.set(4, "000000000400");
    assert_eq!(
        code(&rig.exchange(&same_key).await),
        "00",
        "a reversed key may carry its correction"
    );
    rig.balance_becomes("2065550101", 250).await;
    rig.balance_becomes("2065550107", 400).await;
    let config = rig.stop().await;

    // The day's books count the reversed originals as nothing, the corrections in full:
    // the original under the reused key is not read as the correction's open entry.
    let closed = replenish::backoffice::days::close(&config, "test").expect("day closed");
    let by_bank = replenish::backoffice::report::By::Bank;
    let revenue = replenish::backoffice::report::revenue_of(&config, &closed.closed[..7], by_bank)
        .expect("revenue");
    let total = &revenue.totals[0];
    assert_eq!(
        (total.gross, total.net),
        (2500 + 250 + 4000 + 400, 250 + 400),
        "{revenue:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_advice_backlog_does_not_hold_up_other_traffic() {
    let mut rig = Rig::start(HIGH_LIMITS).await;
    let addr = rig.switch.as_ref().expect("running").addr;
    const ADVICES: u32 = 2000;
    let backlog = tokio::spawn(async move {
        let mut client = Client::connect(addr).await;
        let (mut sent, mut approved) = (0u32, 0u32);
        let mut received = 0u32;
        while received < ADVICES {
            while sent < ADVICES && sent < received + 256 {
                sent += 1;
                let (account, _) = ACCOUNTS[sent as usize % ACCOUNTS.len()];
                let mut advice = as_mti(credit(sent, 100, account), "0220");
                advice.set(41, "BACKLOG1");
                assert!(client.try_send(&advice).await);
            }
            let answer = client.try_receive().await.expect("advice answered");
            received += 1;
            approved += u32::from(code(&answer) == "00" && answer.get(62).is_some());
        }
        approved
    });
    // Meanwhile, requests on another connection are answered well within a timeout.
    for stan in 1..=100 {
        let answer = tokio::time::timeout(
            Duration::from_secs(5),
            rig.exchange(&credit(stan, 100, "4761739001010119")),
        )
        .await
        .expect("answered in time while the backlog is absorbed");
        assert_eq!(code(&answer), "00");
    }
    assert_eq!(backlog.await.expect("backlog"), ADVICES);
    rig.balance_becomes("2065550111", 100 * 100).await;
    let total: i64 = ACCOUNTS
        .iter()
        .map(|(_, min)| rig.engine.balance(min))
        .sum();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut total = total;
    while total != i64::from(ADVICES) * 100 {
        assert!(tokio::time::Instant::now() < deadline, "credited {total}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        total = ACCOUNTS
            .iter()
            .map(|(_, min)| rig.engine.balance(min))
            .sum();
    }
    rig.stop().await;
}

/// A small deterministic generator (xorshift64), so a failing mix can be replayed.
struct Dice(u64);

impl Dice {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// An original the mix sent (or will send, after its early reversal).
struct Original {
    message: Message,
    min: &'static str,
    amount: u64,
    /// The first answer's DE39 and DE62.
    answer: Option<(String, Option<String>)>,
    /// Amount reversed, once reversed.
    reversed: Option<u64>,
    /// Reversed before it was sent: it must be declined.
    early: bool,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_random_mix_leaves_every_engine_balance_right() {
    let seed = 0x5eed_1234_abcd_0001u64;
    let mut dice = Dice(seed);
    let mut rig = Rig::start(HIGH_LIMITS).await;
    let mut originals: Vec<Original> = Vec::new();
    let mut expected: std::collections::BTreeMap<&str, i64> = Default::default();
    let mut stan = 0u32;
    let mut next_stan = || {
        stan += 1;
        stan
    };
    let mut restarts = 0;
    for step in 0..400 {
        let roll = dice.below(100);
        let sent: Vec<usize> = (0..originals.len())
            .filter(|&i| originals[i].answer.is_some())
            .collect();
        let context = format!("seed {seed:#x} step {step}");
        if roll < 35 || sent.is_empty() {
            // A new credit, as a request or (one in four) as an advice.
            let (account, min) = ACCOUNTS[dice.below(ACCOUNTS.len() as u64) as usize];
            let amount = 100 + dice.below(4900);
            let mut message = credit(next_stan(), amount, account);
            if dice.below(4) == 0 {
                message = as_mti(message, "0220");
            }
            let answer = rig.exchange(&message).await;
            assert_eq!(code(&answer), "00", "{context}");
            *expected.entry(min).or_default() += amount as i64;
            originals.push(Original {
                message,
                min,
                amount,
                answer: Some(("00".into(), answer.text(62).map(str::to_owned))),
                reversed: None,
                early: false,
            });
        } else if roll < 50 {
            // A repeat of something sent: the same answer, no second effect.
            let original = &originals[sent[dice.below(sent.len() as u64) as usize]];
            let mut repeat = original.message.clone();
            if repeat.mti() == mti("0220") {
                repeat = as_mti(repeat, "0221");
            }
            let answer = rig.exchange(&repeat).await;
            let first = original.answer.clone().expect("sent");
            assert_eq!(
                (code(&answer).to_owned(), answer.text(62).map(str::to_owned)),
                first,
                "{context}: a repeat gets the first answer"
            );
        } else if roll < 80 {
            // A reversal after the original: full or partial; a second one of an
            // original reversed already has no effect.
            let index = sent[dice.below(sent.len() as u64) as usize];
            let original = &mut originals[index];
            let remaining = match dice.below(3) {
                0 => dice.below(original.amount),
                _ => 0,
            };
            let reversal = if remaining > 0 {
                partial_reversal_of(&original.message, next_stan(), remaining)
            } else {
                reversal_of(&original.message, next_stan(), "0420")
            };
            let answer = rig.exchange(&reversal).await;
            assert_eq!(code(&answer), "00", "{context}");
            let approved = original.answer.as_ref().is_some_and(|(c, _)| c == "00");
            if approved && original.reversed.is_none() && !original.early {
                let amount = original.amount - remaining;
                *expected.entry(original.min).or_default() -= amount as i64;
                original.reversed = Some(amount);
            }
            if dice.below(4) == 0 {
                let repeat = rig.exchange(&as_mti(reversal, "0421")).await;
                assert_eq!(code(&repeat), "00", "{context}: repeated reversal");
            }
        } else if roll < 90 {
            // A reversal before its original; the original follows at once or later.
            let (account, min) = ACCOUNTS[dice.below(ACCOUNTS.len() as u64) as usize];
            let amount = 100 + dice.below(4900);
            let message = credit(next_stan(), amount, account);
            let answer = rig
                .exchange(&reversal_of(&message, next_stan(), "0420"))
                .await;
            assert_eq!(code(&answer), "00", "{context}");
            originals.push(Original {
                message,
                min,
                amount,
                answer: None,
                reversed: None,
                early: true,
            });
        } else if roll < 98 {
            // A late original whose reversal came first: declined, never credited.
            if let Some(original) = originals.iter_mut().find(|o| o.answer.is_none()) {
                let answer = rig.exchange(&original.message).await;
                assert_eq!(code(&answer), "12", "{context}: a late original");
                original.answer = Some(("12".into(), None));
            }
        } else if restarts < 3 {
            restarts += 1;
            let config = rig.stop().await;
            rig.restart(config).await;
        }
    }
    for (min, amount) in &expected {
        rig.balance_becomes(min, *amount).await;
    }
    let mut seen = std::collections::BTreeSet::new();
    for entry in rig.ledger() {
        assert!(
            seen.insert((entry.kind.clone(), entry.confirmation.clone())),
            "applied twice: {entry:?}"
        );
    }
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stand_in_advice_for_a_declined_request_is_credited_once() {
    let mut rig = Rig::start(HIGH_LIMITS).await;
    // Declined 58 (location), then the bank approves in stand-in and advises.
    let mut request = credit(1, 2500, ACTIVE);
    request.set(42, "LOC000000009999");
    assert_eq!(code(&rig.exchange(&request).await), "58");
    let advice = rig.exchange(&as_mti(request.clone(), "0220")).await;
    assert_eq!(code(&advice), "00");
    let number = confirmation(&advice);
    let repeat = rig.exchange(&as_mti(request.clone(), "0221")).await;
    assert_eq!(confirmation(&repeat), number, "its repeat: the same answer");
    // Other content under a key already used: acknowledged, queued, not credited.
    let mut other = as_mti(request, "0220");
    other.set(12, "101010");
    let answer = rig.exchange(&other).await;
    assert_eq!(code(&answer), "00");
    assert!(answer.get(62).is_none());
    rig.balance_becomes("2065550101", 2500).await;
    let config = rig.stop().await;
    let items = queue::list(&config).expect("list");
    assert_eq!(items.len(), 1, "{items:?}");
    assert!(items[0].reason.contains("key reused"), "{items:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_reversals_and_completions_change_nothing_they_should_not() {
    let mut rig = Rig::start(HIGH_LIMITS).await;
    // DE95 that is not 12 digits: not taken for a full reversal.
    let original = credit(1, 5000, ACTIVE);
    assert_eq!(code(&rig.exchange(&original).await), "00");
    let mut bad = partial_reversal_of(&original, 2, 3000);
    bad.set(95, format!("00000000300A{:030}", 0));
    assert_eq!(code(&rig.exchange(&bad).await), "00");
    // After a partial reversal the key is not free for other content.
    assert_eq!(
        code(&rig.exchange(&partial_reversal_of(&original, 3, 1000)).await),
        "00"
    );
    let mut other = original.clone();
    other.set(4, "000000000700");
    assert_eq!(code(&rig.exchange(&other).await), "94");
    rig.balance_becomes("2065550101", 1000).await;

    // A completion naming another account's authorization is not credited to either.
    let authorization = as_mti(credit(10, 3000, "4761739001010077"), "0100");
    assert_eq!(code(&rig.exchange(&authorization).await), "00");
    let mut foreign = as_mti(credit(11, 3000, "4761739001010093"), "0220");
    foreign.set(90, original_data(&authorization));
    let answer = rig.exchange(&foreign).await;
    assert_eq!(code(&answer), "00");
    assert!(answer.get(62).is_none(), "queued, not credited");
    // Completed once; a second completion is acknowledged and not credited again.
    let mut completion = as_mti(credit(12, 3000, "4761739001010077"), "0220");
    completion.set(90, original_data(&authorization));
    assert_eq!(code(&rig.exchange(&completion).await), "00");
    let mut again = as_mti(credit(13, 3000, "4761739001010077"), "0220");
    again.set(90, original_data(&authorization));
    let answer = rig.exchange(&again).await;
    assert_eq!(code(&answer), "00");
    assert!(answer.get(62).is_none());
    rig.balance_becomes("2065550107", 3000).await;
    // Reversing the completed authorization reverses its completion.
    assert_eq!(
        code(&rig.exchange(&reversal_of(&authorization, 14, "0400")).await),
        "00"
    );
    rig.balance_becomes("2065550107", 0).await;
    assert_eq!(rig.engine.balance("2065550109"), 0);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_early_reversal_without_de90_stops_its_original_by_reference() {
    let mut rig = Rig::start(HIGH_LIMITS).await;
    // The reversal carries its own STAN and DE7 and no DE90: only DE37 + DE41, the
    // account and the amount tie it to its original.
    let original = credit(600, 2500, ACTIVE);
    let mut reversal = reversal_of(&original, 601, "0420");
    reversal.remove(90);
    assert_eq!(code(&rig.exchange(&reversal).await), "00");
    let config = rig.stop().await;
    rig.restart(config).await;
    let late = rig.exchange(&original).await;
    assert_eq!(code(&late), "12", "remembered across a restart");
    // Another transaction with another reference is not affected.
    assert_eq!(code(&rig.exchange(&credit(602, 2500, ACTIVE)).await), "00");
    rig.balance_becomes("2065550101", 2500).await;
    assert_eq!(rig.ledger().len(), 1, "{:?}", rig.ledger());
    rig.stop().await;
}

/// Imports `account` (active, MIN `min`) into the stopped switch's data directory, as
/// an operator correcting it would.
fn correct_account(config: &Config, account: &str, min: &str) {
    let data = replenish::durable::datadir::DataDir::open(config).expect("data");
    let corrected = replenish::vocab::accounts::parse_accounts(
        format!("account,min,carrier,status,expiry\n{account},{min},carrier-a,active,2030-12\n")
            .as_bytes(),
    )
    .expect("csv");
    data.commit(&[replenish::durable::record::Record::AccountsImported {
        accounts: corrected,
    }])
    .expect("import");
    data.close().expect("close");
}

/// Looks `number` up as `replenish lookup` does (through the running switch when one
/// holds the data directory), until `done` holds for the answer or 30 s have passed.
async fn look_up_until(
    config: &Config,
    number: &str,
    done: impl Fn(&lookup::Found) -> bool,
) -> lookup::Found {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let found = tokio::task::spawn_blocking({
            let (config, number) = (config.clone(), number.to_owned());
            move || lookup::lookup(&config, &number)
        })
        .await
        .expect("task")
        .expect("lookup");
        // Not found yet: the decision may not be indexed yet.
        let late = tokio::time::Instant::now() > deadline;
        match found {
            Some(found) if done(&found) || late => return found,
            None if late => panic!("{number} never found"),
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customer_service_finds_a_replenishment_by_its_confirmation_number() {
    let mut rig = Rig::with_endpoint().await;
    let config = rig.switch.as_ref().expect("running").config.clone();
    let original = credit(1, 2500, ACTIVE);
    let number = confirmation(&rig.exchange(&original).await);
    rig.balance_becomes("2065550101", 2500).await;
    let acked = |f: &lookup::Found| f.delivery.starts_with("acknowledged");
    let found = look_up_until(&config, &number, acked).await;
    assert!(acked(&found), "{found:?}");
    assert_eq!((found.mti.as_str(), found.code.as_str()), ("0200", "00"));
    let credited = found.credit.as_ref().expect("a credit");
    assert_eq!(
        (credited.amount, credited.min.as_str()),
        (2500, "2065550101")
    );
    let account = found.account.as_deref().expect("account");
    assert!(
        account.contains('*') && !account.contains(ACTIVE),
        "{account}"
    );

    // An authorization's number shows the completion that credited it.
    let authorization = as_mti(credit(2, 3000, "4761739001010077"), "0100");
    let held = confirmation(&rig.exchange(&authorization).await);
    let mut completion = as_mti(credit(3, 2800, "4761739001010077"), "0220");
    completion.set(90, original_data(&authorization));
    assert_eq!(confirmation(&rig.exchange(&completion).await), held);
    rig.balance_becomes("2065550107", 2800).await;
    let found = look_up_until(&config, &held, |f| f.mti == "0220" && acked(f)).await;
    assert_eq!(found.mti, "0220", "{found:?}");
    assert_eq!(found.credit.as_ref().map(|c| c.amount), Some(2800));

    // After a reversal, and from the data directory once the switch has stopped.
    let reversal = reversal_of(&original, 4, "0420");
    assert_eq!(code(&rig.exchange(&reversal).await), "00");
    let reversed = |f: &lookup::Found| f.standing.starts_with("reversed in full");
    let found = look_up_until(&config, &number, reversed).await;
    assert!(reversed(&found), "{found:?}");
    let config = rig.stop().await;
    let offline = lookup::lookup(&config, &number).expect("offline lookup");
    assert_eq!(offline.as_ref().map(|f| &f.standing), Some(&found.standing));
    // A well-formed number (check digit right) that was never issued, and a mistyped one.
    let body = format!(
        "{}{}",
        &number[..5],
        if &number[5..11] == "000000" {
            "000001"
        } else {
            "000000"
        }
    );
    let unissued = format!("{body}{}", luhn_check_digit(body.as_bytes()));
    assert_eq!(lookup::lookup(&config, &unissued).expect("lookup"), None);
    let mut mistyped = number.into_bytes();
    mistyped[5] = if mistyped[5] == b'9' {
        b'0'
    } else {
        mistyped[5] + 1
    };
    let mistyped = String::from_utf8(mistyped).expect("digits");
    assert_eq!(lookup::lookup(&config, &mistyped).expect("lookup"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reversal_by_reference_reaches_a_queued_advice_and_its_resubmitted_credit() {
    let mut rig = Rig::with_endpoint().await;
    let account = unknown_account();
    // Two advices the switch cannot route; each reversal carries its own STAN and DE7
    // and no DE90: only DE37 + DE41, the account and the amount tie it to its advice.
    let first = as_mti(credit(700, 1500, &account), "0220");
    let second = as_mti(credit(701, 1700, &account), "0220");
    for advice in [&first, &second] {
        assert_eq!(code(&rig.exchange(advice).await), "00");
    }
    let mut reversal = reversal_of(&first, 702, "0420");
    reversal.remove(90);
    assert_eq!(code(&rig.exchange(&reversal).await), "00");
    // A request of another account that shares the second advice's DE37 + DE41,
    // reversed by reference twice: neither reversal touches what the advice owes.
    let mut other = credit(704, 900, ACTIVE);
    other.set(37, second.text(37).expect("DE37").to_owned());
    assert_eq!(code(&rig.exchange(&other).await), "00");
    for stan in [705, 706] {
        let mut reversal = reversal_of(&other, stan, "0420");
        reversal.remove(90);
        assert_eq!(code(&rig.exchange(&reversal).await), "00");
    }
    let config = rig.stop().await;

    let items = queue::list(&config).expect("list");
    let shown = |amount: u64| {
        items
            .iter()
            .find(|i| i.amount == amount)
            .cloned()
            .expect("queued")
    };
    let (reversed, open) = (shown(1500), shown(1700));
    assert!(!reversed.is_open(), "{reversed:?}");
    assert!(reversed.status.starts_with("reversed by the acquirer"));
    assert!(open.is_open(), "{open:?}");

    // Corrected and resubmitted, the open one is credited; its reversal by reference
    // then takes the credit back at the engine.
    correct_account(&config, &account, "2065550188");
    let refused = queue::resubmit(&config, reversed.id, "alice").expect_err("reversed");
    assert!(refused.to_string().contains("reversed"), "{refused}");
    rig.restart(config.clone()).await;
    let number = tokio::task::spawn_blocking({
        let (config, id) = (config.clone(), open.id);
        move || queue::resubmit(&config, id, "alice")
    })
    .await
    .expect("task")
    .expect("resubmitted");
    rig.balance_becomes("2065550188", 1700).await;
    let mut reversal = reversal_of(&second, 703, "0420");
    reversal.remove(90);
    assert_eq!(code(&rig.exchange(&reversal).await), "00");
    rig.balance_becomes("2065550188", 0).await;
    assert_eq!(
        rig.lines_of(&number),
        vec![("credit".into(), 1700), ("reversal".into(), 1700)]
    );
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_operator_token_the_queue_and_lookups_answer_only_its_holders() {
    let secrets = tempfile::tempdir().expect("tempdir");
    let token_file = secrets.path().join("operator.token");
    std::fs::write(&token_file, "s3cret-operator-token-0123\n").expect("token");
    let metrics = format!("127.0.0.1:{}", free_port());
    let extra = format!(
        "{HIGH_LIMITS}\n[metrics]\nlisten = \"{metrics}\"\noperator_token_file = \"{}\"\n",
        token_file.display()
    );
    let mut rig = Rig::start(&extra).await;
    let config = rig.switch.as_ref().expect("running").config.clone();
    let number = confirmation(&rig.exchange(&credit(1, 2500, ACTIVE)).await);

    // The command line sends the token from the config's file.
    let found = look_up_until(&config, &number, |_| true).await;
    assert_eq!(found.confirmation, number);
    let listed = tokio::task::spawn_blocking({
        let config = config.clone();
        move || queue::list(&config)
    });
    assert!(listed.await.expect("task").expect("list").is_empty());

    // Without it, or with another, the operator routes refuse; metrics stay open.
    let status = move |path: &str, token: Option<&str>| {
        let mut request = ureq::get(format!("http://{metrics}{path}"))
            .config()
            .http_status_as_error(false)
            .build();
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        request.call().expect("an answer").status().as_u16()
    };
    let (path, metrics_path) = (format!("/transactions/{number}"), "/metrics".to_owned());
    let statuses = tokio::task::spawn_blocking(move || {
        [
            status(&path, None),
            status(&path, Some("s3cret-operator-token-0124")),
            status("/exceptions", None),
            status(&path, Some("s3cret-operator-token-0123")),
            status(&metrics_path, None),
        ]
    })
    .await
    .expect("task");
    assert_eq!(statuses, [401, 401, 401, 200, 200]);
    rig.stop().await;
}
