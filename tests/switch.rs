//! The switch end to end over loopback: approvals, every decline code, dedup and
//! repeats (also concurrent and across restarts), format errors, network management,
//! and the exception and fraud logs.

mod support;

use std::time::Duration;

use bytes::Bytes;
use replenish::durable::store::Store;
use replenish::vocab::confirmation::luhn_valid;
use replenish::wire::iso8583::{Message, Mti};
use support::{ACTIVE, Client, Switch, fresh, request};

#[tokio::test]
async fn an_approval_carries_a_confirmation_number_and_echoes_the_request() {
    let (_dir, switch) = fresh().await;
    let mut client = Client::connect(switch.addr).await;
    let sent = request(1, 2500, ACTIVE);
    let answer = client.exchange(&sent).await;
    assert_eq!(answer.mti().as_str(), "0210");
    assert_eq!(answer.text(39), Some("00"));
    let confirmation = answer.text(62).expect("DE62").to_owned();
    assert_eq!(confirmation.len(), 12);
    assert!(luhn_valid(confirmation.as_bytes()), "{confirmation}");
    assert_eq!(answer.text(38), Some(&confirmation[6..]));
    for field in [2, 3, 4, 7, 11, 12, 13, 32, 37, 41, 42, 49] {
        assert_eq!(answer.get(field), sent.get(field), "DE{field} echoed");
    }
    switch.stop().await;
}

/// A change to the reference request.
type Change = Box<dyn Fn(&mut Message)>;

#[tokio::test]
async fn each_rule_declines_with_its_code() {
    let (_dir, switch) = fresh().await;
    let mut client = Client::connect(switch.addr).await;
    let cases: [(Change, &str); 11] = [
        (Box::new(|m| m.set(2, "4761739001010011")), "14"), // check digit
        (Box::new(|m| m.set(2, "4761739001019995")), "14"), // Luhn-valid, unknown
        (Box::new(|m| m.set(2, "4761739001010036")), "57"), // issued
        (Box::new(|m| m.set(2, "4761739001010044")), "57"), // blocked
        (Box::new(|m| m.set(2, "4761739001010028")), "57"), // no MIN
        (Box::new(|m| m.set(2, "4761739001010051")), "54"), // expired
        (Box::new(|m| m.set(42, "LOC000000009999")), "58"), // location not authorized
        (Box::new(|m| m.set(4, "000000050001")), "61"),     // over maximum
        (Box::new(|m| m.set(4, "000000000000")), "13"),     // zero
        (Box::new(|m| m.set(3, "010000")), "12"),           // processing code
        (Box::new(|m| m.set(2, "4761739001010069")), "91"), // carrier without engine
    ];
    for (stan, (change, code)) in (100..).zip(cases.iter()) {
        let mut m = request(stan, 2500, ACTIVE);
        change(&mut m);
        let answer = client.exchange(&m).await;
        assert_eq!(answer.text(39), Some(*code), "case STAN {stan}");
        assert_eq!(answer.get(62), None, "declines carry no confirmation");
    }
    switch.stop().await;
}

#[tokio::test]
async fn velocity_limits_decline_with_65_and_61_and_reach_the_fraud_log() {
    let (dir, switch) = fresh().await;
    let mut client = Client::connect(switch.addr).await;
    let account = "4761739001010077";
    for stan in 1..=5 {
        let answer = client.exchange(&request(stan, 1000, account)).await;
        assert_eq!(
            answer.text(39),
            Some("00"),
            "approval {stan} of the daily 5"
        );
    }
    let answer = client.exchange(&request(6, 1000, account)).await;
    assert_eq!(answer.text(39), Some("65"));
    let other = "4761739001010085";
    assert_eq!(
        client.exchange(&request(7, 50_000, other)).await.text(39),
        Some("00")
    );
    assert_eq!(
        client.exchange(&request(8, 50_000, other)).await.text(39),
        Some("00")
    );
    assert_eq!(
        client.exchange(&request(9, 100, other)).await.text(39),
        Some("61")
    );
    switch.stop().await;
    let fraud = std::fs::read_to_string(dir.path().join("fraud.jsonl")).expect("fraud log");
    assert_eq!(fraud.lines().count(), 2, "{fraud}");
    assert!(fraud.contains("daily_count_exceeded") && fraud.contains("daily_amount_exceeded"));
    assert!(
        fraud.contains("476173******0077") && !fraud.contains(account),
        "PANs masked"
    );
}

#[tokio::test]
async fn a_repeat_gets_the_same_answer_and_no_second_effect() {
    let (dir, switch) = fresh().await;
    let mut client = Client::connect(switch.addr).await;
    let first = client.exchange(&request(1, 2500, ACTIVE)).await;
    let mut repeat = request(1, 2500, ACTIVE);
    repeat.set_mti(Mti::new(b"0200").expect("mti"));
    let second = client.exchange(&repeat).await;
    assert_eq!(first, second, "identical response fields");
    let mut changed = request(1, 2600, ACTIVE);
    changed.set(11, "000001");
    assert_eq!(client.exchange(&changed).await.text(39), Some("94"));
    let config = switch.stop().await;
    let store = Store::open(&config.data_dir.join("index")).expect("index");
    let outbox = store.outbox("engine-a").expect("outbox");
    assert_eq!(outbox.len(), 1, "one credit for two copies");
    drop(dir);
}

#[tokio::test]
async fn copies_arriving_together_on_two_connections_are_decided_once() {
    let (_dir, switch) = fresh().await;
    let mut a = Client::connect(switch.addr).await;
    let mut b = Client::connect(switch.addr).await;
    let mut approved = 0;
    for stan in 1..=20 {
        let m = request(
            stan,
            1000,
            &format!(
                "47617390010100{}",
                ["10", "77", "85", "93"][stan as usize % 4]
            ),
        );
        let (ra, rb) = tokio::join!(a.exchange(&m), b.exchange(&m));
        assert_eq!(ra, rb, "STAN {stan}");
        approved += usize::from(ra.text(39) == Some("00"));
    }
    assert_eq!(approved, 20, "each account stays within its daily 5");
    let config = switch.stop().await;
    let store = Store::open(&config.data_dir.join("index")).expect("index");
    let credits =
        store.outbox("engine-a").expect("a").len() + store.outbox("engine-b").expect("b").len();
    assert_eq!(credits, approved, "one credit per key, not per copy");
}

#[tokio::test]
async fn answers_survive_a_restart() {
    let (_dir, switch) = fresh().await;
    let mut client = Client::connect(switch.addr).await;
    let before = client.exchange(&request(42, 3000, ACTIVE)).await;
    let declined = client
        .exchange(&request(43, 3000, "4761739001010036"))
        .await;
    drop(client);
    let config = switch.stop().await;
    let switch = Switch::start(config).await;
    let mut client = Client::connect(switch.addr).await;
    assert_eq!(client.exchange(&request(42, 3000, ACTIVE)).await, before);
    assert_eq!(
        client
            .exchange(&request(43, 3000, "4761739001010036"))
            .await,
        declined
    );
    let fresh_answer = client.exchange(&request(44, 3000, ACTIVE)).await;
    assert_ne!(
        fresh_answer.text(62),
        before.text(62),
        "numbers continue, never repeat"
    );
    switch.stop().await;
}

#[tokio::test]
async fn format_errors_are_answered_30_or_close_only_their_connection() {
    let (dir, switch) = fresh().await;
    let mut bad = Client::connect(switch.addr).await;
    let mut good = Client::connect(switch.addr).await;
    // DE4 with a letter: MTI and DE11 readable, so 30 comes back.
    let mut wire = replenish::wire::iso8583::encode_to_bytes(
        &replenish::wire::iso8583::Spec::resolve("iso87ascii").expect("spec"),
        &request(5, 2500, ACTIVE),
    )
    .expect("encodes")
    .to_vec();
    let de4 = 4 + 16 + 2 + 16 + 6;
    wire[de4 + 3] = b'X';
    bad.send_raw(Bytes::from(wire)).await;
    let answer = bad.receive().await.expect("a 30");
    assert_eq!(
        (answer.mti().as_str(), answer.text(39), answer.text(11)),
        ("0210", Some("30"), Some("000005"))
    );
    // Garbage without an MTI: the connection closes.
    bad.send_raw(Bytes::from_static(b"\x01\x02")).await;
    assert!(bad.receive().await.is_none(), "closed");
    // The other session goes on.
    assert_eq!(
        good.exchange(&request(6, 2500, ACTIVE)).await.text(39),
        Some("00")
    );
    switch.stop().await;
    let exceptions = std::fs::read_to_string(dir.path().join("exceptions.jsonl")).expect("log");
    assert!(exceptions.contains("field 4"), "{exceptions}");
}

#[tokio::test]
async fn network_management_is_answered_at_once() {
    let (_dir, switch) = fresh().await;
    let mut client = Client::connect(switch.addr).await;
    for code in ["001", "301", "002"] {
        let mut m = Message::new(Mti::new(b"0800").expect("mti"));
        m.set(7, "1123095500");
        m.set(11, "000001");
        m.set(70, code);
        let answer = client.exchange(&m).await;
        assert_eq!(
            (answer.mti().as_str(), answer.text(39), answer.text(70)),
            ("0810", Some("00"), Some(code))
        );
    }
    switch.stop().await;
}

#[tokio::test]
async fn the_exception_log_names_the_reason_and_masks_the_pan() {
    let (dir, switch) = fresh().await;
    let mut client = Client::connect(switch.addr).await;
    client.exchange(&request(1, 2500, "4761739001010044")).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    switch.stop().await;
    let log = std::fs::read_to_string(dir.path().join("exceptions.jsonl")).expect("log");
    let line: serde_json::Value =
        serde_json::from_str(log.lines().next().expect("a line")).expect("json");
    assert_eq!(line["reason"], "blocked");
    assert_eq!(line["code"], "57");
    assert_eq!(line["pan"], "476173******0044");
    assert!(!log.contains("4761739001010044"));
}
