//! PIN sales at the point of sale (BACKOFFICE.md §5) end to end: a till's `0200` with
//! DE3 `000000` and a product card against a running switch, the carrier's engine a
//! real engine simulator on loopback. Each sale answers a new PIN of the product's
//! stock (DE63, its expiry in DE73), a repeat the same one, declines carry the
//! profile's codes, the engine is advised of each sale with the serial (or a generated
//! PIN), a reversal voids or restocks the PIN, and no PIN is ever in clear in the data
//! directory.

mod support;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::time::Duration;

use replenish::config::Config;
use replenish::durable::datadir::DataDir;
use replenish::operate::lookup;
use replenish::switch::reverse::original_data;
use replenish::vocab::confirmation::ConfirmationNumbers;
use replenish::vocab::confirmation::luhn_valid;
use replenish::wire::iso8583::Message;
use support::engine::{Engine, HIGH_LIMITS, config, loopback_pair};
use support::{
    Client, GENERATED_PRODUCT, PIN_PRODUCT, Switch, free_port, import_samples, pin_sale, root,
};

/// A product card of CARD-A-25 (bucket) and of CARD-B-10 (generated).
const CARD_A: &str = support::PIN_CARD;
const CARD_B: &str = "6034568000000016";

/// The bucket product of the test support with `low_stock`, its generated product, and
/// `[pins] reversed`.
fn products(reversed: &str, low_stock: u64) -> String {
    format!(
        "{PIN_PRODUCT}low_stock = {low_stock}\n{GENERATED_PRODUCT}\n[pins]\nreversed = \"{reversed}\"\n"
    )
}

/// A sale of `card` for `amount` with STAN `stan`.
fn sale(stan: u32, card: &str, amount: u64) -> Message {
    let mut message = pin_sale(stan);
    message.set(2, card.to_owned());
    message.set(4, format!("{amount:012}"));
    message
}

/// The reversal (`0400`) of `original`.
fn reversal(original: &Message, stan: u32) -> Message {
    let mut message = original.clone();
    message.set_mti("0400".parse().expect("mti"));
    message.set(11, format!("{stan:06}"));
    message.set(90, original_data(original));
    message
}

/// The serial of each PIN of a `serial,pin,expiry` file.
fn serials(file: &Path) -> HashMap<String, String> {
    let text = std::fs::read_to_string(file).expect("batch");
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let mut parts = l.split(',');
            let serial = parts.next()?.to_owned();
            Some((parts.next()?.to_owned(), serial))
        })
        .collect()
}

fn import(config: &Config, file: &Path, sku: &str) {
    replenish::pins::import(config, file, sku, "test").expect("import");
}

fn stock(config: &Config) -> HashMap<String, (u64, u64, u64)> {
    let lines = replenish::pins::stock(config).expect("stock");
    lines
        .into_iter()
        .map(|s| (s.sku, (s.available, s.sold, s.voided)))
        .collect()
}

/// Waits until `check` holds on the engine's ledger (at most 20 s).
async fn until_ledger(engine: &Engine, what: &str, check: impl Fn(&Engine) -> bool) {
    for _ in 0..400 {
        if check(engine) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the engine's ledger never showed {what}");
}

/// Whether any file under `dir` holds `needle`.
fn anywhere(dir: &Path, needle: &str) -> Option<String> {
    for entry in std::fs::read_dir(dir).expect("dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            if let Some(found) = anywhere(&path, needle) {
                return Some(found);
            }
        } else if let Ok(bytes) = std::fs::read(&path) {
            if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                return Some(path.display().to_string());
            }
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_sale_answers_a_new_pin_a_repeat_the_same_and_the_engine_is_advised() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = Engine::start(&dir.path().join("ledger.jsonl"), &loopback_pair()).await;
    let extra = format!("{HIGH_LIMITS}{}", products("void", 0));
    let config = config(dir.path(), &engine.addrs(), &extra);
    import_samples(&config);
    let batch = root().join("fixtures/pins/card-a-25.csv");
    import(&config, &batch, "CARD-A-25");
    let serial_of = serials(&batch);
    let switch = Switch::start(config).await;
    let mut till = Client::connect(switch.addr).await;

    let first = till.exchange(&sale(1, CARD_A, 2500)).await;
    assert_eq!((first.mti().as_str(), first.text(39)), ("0210", Some("00")));
    let pin = first.text(63).expect("DE63 the PIN").to_owned();
    assert!(
        serial_of.contains_key(&pin),
        "a PIN of the batch: {first:?}"
    );
    assert_eq!(first.text(73), Some("271231"), "DE73 the PIN's expiry");
    assert!(first.text(62).is_some_and(|c| c.len() == 12));
    assert!(
        !format!("{first:?} {first}").contains(&pin),
        "the PIN is redacted wherever a message is shown"
    );

    // The same reusable card at the next sale: a new PIN. A repeat: the same one.
    let second = till.exchange(&sale(2, CARD_A, 2500)).await;
    let second_pin = second.text(63).expect("PIN").to_owned();
    assert_ne!(second_pin, pin, "each sale draws a new PIN");
    assert!(serial_of.contains_key(&second_pin));
    let repeat = till.exchange(&sale(1, CARD_A, 2500)).await;
    assert_eq!(repeat, first, "a repeat is answered the same PIN");

    // The profile's declines.
    let mut elsewhere = sale(3, CARD_A, 2500);
    elsewhere.set(42, "LOC000000009999");
    let mut euros = sale(7, CARD_A, 2500);
    euros.set(49, "978");
    let declines = [
        (sale(4, CARD_A, 2400), "13", "wrong amount"),
        (sale(5, "6034569000000014", 2500), "14", "no product's card"),
        (elsewhere, "58", "location not authorized"),
        (euros, "13", "not the product's currency"),
    ];
    for (message, code, why) in declines {
        let answer = till.exchange(&message).await;
        assert_eq!(answer.text(39), Some(code), "{why}: {answer:?}");
        assert!(answer.get(63).is_none(), "{why}: no PIN");
    }

    // A generated product: the PIN is made at sale time, 14 digits with a Luhn digit.
    let made = till.exchange(&sale(6, CARD_B, 1000)).await;
    assert_eq!(made.text(39), Some("00"), "{made:?}");
    let made_pin = made.text(63).expect("PIN").to_owned();
    assert_eq!(made_pin.len(), 14);
    assert!(luhn_valid(made_pin.as_bytes()), "{made_pin}");
    assert!(made.get(73).is_none(), "a generated PIN has no expiry");

    // The engine is told of each sale: the serial, or the generated PIN itself.
    let confirmation = |m: &Message| m.text(62).expect("DE62").to_owned();
    let (first_c, made_c) = (confirmation(&first), confirmation(&made));
    until_ledger(&engine, "the sales", |e| {
        let ledger = e.simulator.ledger.lock().expect("ledger");
        ledger.voucher(&first_c).is_some() && ledger.voucher(&made_c).is_some()
    })
    .await;
    {
        let ledger = engine.simulator.ledger.lock().expect("ledger");
        assert_eq!(ledger.voucher(&first_c), Some(serial_of[&pin].as_str()));
        assert_eq!(ledger.voucher(&made_c), Some(made_pin.as_str()));
    }

    // A reversal voids the PIN and is advised to the engine (or stops its credit).
    let reversed = till.exchange(&reversal(&second, 20)).await;
    assert_eq!(
        (reversed.mti().as_str(), reversed.text(39)),
        ("0410", Some("00"))
    );
    let second_c = confirmation(&second);
    until_ledger(&engine, "the reversal", |e| {
        let ledger = e.simulator.ledger.lock().expect("ledger");
        ledger.voucher(&second_c).is_none() && ledger.sales() == 2
    })
    .await;
    let config = switch.stop().await;

    let stock = stock(&config);
    assert_eq!(stock["CARD-A-25"], (23, 1, 1), "available, sold, voided");
    assert_eq!(stock["CARD-B-10"], (0, 1, 0));
    // Customer service looks the sale up by its confirmation number: the serial,
    // never the PIN.
    let data = DataDir::open(&config).expect("data");
    let numbers = ConfirmationNumbers::new(&data.confirmation_key().expect("key"));
    let found = lookup::find(&data.store, &numbers, &first_c)
        .expect("lookup")
        .expect("found");
    let voided = lookup::find(&data.store, &numbers, &second_c)
        .expect("lookup")
        .expect("found");
    data.close().expect("closed");
    let shown = format!("{found}");
    assert!(
        shown.contains(&format!("CARD-A-25 serial {} (sold)", serial_of[&pin])),
        "{shown}"
    );
    assert!(!shown.contains(&pin) && !format!("{found:?}").contains(&pin));
    assert_eq!(voided.pin.expect("pin").state, "voided");

    // The serials are in the data directory in clear (the control); the PINs never.
    assert!(anywhere(&config.data_dir, &serial_of[&pin]).is_some());
    for answered in [&pin, &second_pin, &made_pin] {
        assert_eq!(
            anywhere(&config.data_dir, answered),
            None,
            "a PIN in clear in the data directory"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restocked_pins_sell_again_and_the_last_one_warns_then_declines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = Engine::start(&dir.path().join("ledger.jsonl"), &loopback_pair()).await;
    let metrics = free_port();
    let extra = format!(
        "{HIGH_LIMITS}{}\n[metrics]\nlisten = \"127.0.0.1:{metrics}\"\n\n\
         [notify.email]\nsmtp = \"127.0.0.1:{}\"\nfrom = \"switch@example.com\"\n\
         to = [\"stock@example.com\"]\n",
        products("restock", 2),
        free_port()
    );
    let config = config(dir.path(), &engine.addrs(), &extra);
    import_samples(&config);
    let batch = dir.path().join("five.csv");
    std::fs::write(
        &batch,
        "serial,pin\nS1,700000000001\nS2,700000000002\nS3,700000000003\nS4,700000000004\n\
         S5,700000000005\n",
    )
    .expect("batch");
    import(&config, &batch, "CARD-A-25");
    let switch = Switch::start(config).await;
    let mut till = Client::connect(switch.addr).await;

    let first = till.exchange(&sale(1, CARD_A, 2500)).await;
    let pin = first.text(63).expect("PIN").to_owned();
    let reversed = till.exchange(&reversal(&first, 2)).await;
    assert_eq!(reversed.text(39), Some("00"));
    let again = till.exchange(&sale(3, CARD_A, 2500)).await;
    assert_eq!(again.text(63), Some(pin.as_str()), "restocked: sold again");
    assert_ne!(again.text(62), first.text(62), "as a new sale");

    let mut sold: BTreeSet<String> = BTreeSet::from([pin]);
    for stan in 4..8 {
        let answer = till.exchange(&sale(stan, CARD_A, 2500)).await;
        assert_eq!(answer.text(39), Some("00"), "{answer:?}");
        assert!(sold.insert(answer.text(63).expect("PIN").to_owned()));
    }
    assert_eq!(sold.len(), 5, "every PIN of the batch, each once");
    let out = till.exchange(&sale(8, CARD_A, 2500)).await;
    assert_eq!(out.text(39), Some("N1"), "out of stock: {out:?}");

    let text = http_get(metrics, "/metrics").await;
    assert!(
        text.contains("replenish_pins_available{sku=\"CARD-A-25\"} 0"),
        "{text}"
    );
    let config = switch.stop().await;
    assert_eq!(stock(&config)["CARD-A-25"], (0, 5, 0));
    let data = DataDir::open(&config).expect("data");
    let alerts: Vec<_> = (data.store.notifications().expect("outbox").into_iter())
        .filter(|n| n.notification.subject.contains("CARD-A-25 low on PINs"))
        .collect();
    data.close().expect("closed");
    assert_eq!(alerts.len(), 1, "one email per crossing of low_stock");
    assert!(alerts[0].notification.body.contains("2 PIN(s) in stock"));
}

/// The body of `GET path` on the metrics listener.
async fn http_get(port: u16, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("metrics listener");
    let request = format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut text = String::new();
    stream.read_to_string(&mut text).await.expect("read");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pins_imported_while_the_switch_runs_sell_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = Engine::start(&dir.path().join("ledger.jsonl"), &loopback_pair()).await;
    let extra = format!(
        "{HIGH_LIMITS}{}\n[metrics]\nlisten = \"127.0.0.1:{}\"\n",
        products("void", 0),
        free_port()
    );
    let config = config(dir.path(), &engine.addrs(), &extra);
    import_samples(&config);
    let switch = Switch::start(config.clone()).await;
    let mut till = Client::connect(switch.addr).await;
    let empty = till.exchange(&sale(1, CARD_A, 2500)).await;
    assert_eq!(empty.text(39), Some("N1"), "nothing in stock yet");

    // Restocked through the running switch: the next sale draws one of the new PINs.
    let batch = root().join("fixtures/pins/card-a-25.csv");
    let serial_of = serials(&batch);
    let (c, b) = (config.clone(), batch.clone());
    let imported = tokio::task::spawn_blocking(move || {
        replenish::backoffice::stock::import(&c, &b, "CARD-A-25", "test")
    })
    .await
    .expect("task")
    .expect("imported through the switch");
    assert_eq!(imported.count, 25);
    let sold = till.exchange(&sale(2, CARD_A, 2500)).await;
    assert_eq!(sold.text(39), Some("00"), "{sold:?}");
    assert!(serial_of.contains_key(sold.text(63).expect("PIN")));

    // The same file again: every line refused by FILE:LINE, nothing imported.
    let (c, b) = (config.clone(), batch.clone());
    let again = tokio::task::spawn_blocking(move || {
        replenish::backoffice::stock::import(&c, &b, "CARD-A-25", "test")
    })
    .await
    .expect("task")
    .expect_err("refused");
    let text = again.to_string();
    assert!(
        text.contains("card-a-25.csv:2: serial: CA25-000001 is in stock already"),
        "{text}"
    );
    assert!(
        !serial_of.keys().any(|pin| text.contains(pin.as_str())),
        "no PIN in the error"
    );

    let c = config.clone();
    let stock = tokio::task::spawn_blocking(move || replenish::backoffice::stock::stock(&c))
        .await
        .expect("task")
        .expect("stock through the switch");
    let line = stock
        .iter()
        .find(|s| s.sku == "CARD-A-25")
        .expect("CARD-A-25");
    assert_eq!((line.available, line.sold, line.voided), (24, 1, 0));
    switch.stop().await;
}
