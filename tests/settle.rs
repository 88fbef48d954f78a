//! Settlement (BACKOFFICE.md §3): the demo's day (traffic, reversals, the day closed and
//! reconciled against the bank's file and the engine's report) settled with the sample
//! settlement config: each party's share adds up to what the engine was credited net of
//! reversals, the pain.001.001.09 file is valid against the official XSD (the one the
//! PyPI package sepaxml ships, checked with lxml), settling again writes the same bytes
//! and journals nothing, and a day that is not reconciled is refused. PIN sales
//! (BACKOFFICE.md §5) count for their product's carrier and show in the revenue report
//! per business day, product and retailer.

mod support;

use std::path::Path;
use std::process::Command;

use replenish::backoffice::{days, report, settle};
use replenish::config::Config;
use replenish::durable::datadir::DataDir;
use replenish::wire::iso8583::Message;

fn settlement_config(data: &Path) -> Config {
    settlement_config_with(data, "")
}

/// A bank file's header (BACKOFFICE.md §2).
const BANK_HEADER: &str = "business_day,mti,processing_code,acquirer_id,terminal,stan,transmission,rrn,account,amount,currency,response_code,confirmation";

/// The sample settlement config on `data`, with `extra` TOML appended. Its engine is
/// never reached: the demo test runs an engine simulator on the sample ports at the
/// same time, and a test switch's credits must not land in its ledger.
fn settlement_config_with(data: &Path, extra: &str) -> Config {
    let text = std::fs::read_to_string(support::root().join("fixtures/configs/settlement.toml"))
        .expect("sample settlement config");
    let text = text.replace(
        "data_dir = \"./data\"",
        &format!("data_dir = {:?}", data.display().to_string()),
    );
    let mut config =
        Config::from_toml(&format!("{text}{extra}"), "settlement.toml").expect("config");
    for engine in &mut config.engine {
        engine.links = vec!["127.0.0.1:1".parse().expect("address")];
    }
    config
}

/// Two products of two carriers (BACKOFFICE.md §5): CARD-A-25 from imported PINs,
/// CARD-B-10 made at sale time (the SKUs and carriers of fixtures/configs/pins.toml,
/// whose products the demo sells).
fn products() -> String {
    format!(
        "{}{}\n[pins]\nreversed = \"void\"\n",
        support::PIN_PRODUCT,
        support::GENERATED_PRODUCT
    )
}

/// Validates `file` against pain.001.001.09.xsd; returns the validator's complaints.
fn xsd_errors(file: &Path) -> Option<String> {
    let python = support::python::python_with(
        "sepaxml",
        "import sepaxml, lxml",
        &["sepaxml==2.7.0", "lxml"],
    );
    let script = "import sys, os, sepaxml\n\
        from lxml import etree\n\
        xsd = os.path.join(os.path.dirname(sepaxml.__file__), 'schemas', 'pain.001.001.09.xsd')\n\
        schema = etree.XMLSchema(etree.parse(xsd))\n\
        ok = schema.validate(etree.parse(sys.argv[1]))\n\
        print('\\n'.join(f'line {e.line}: {e.message}' for e in schema.error_log))\n\
        sys.exit(0 if ok else 1)\n";
    let output = Command::new(python)
        .args(["-c", script])
        .arg(file)
        .output()
        .expect("python");
    (!output.status.success()).then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_s_reconciled_day_settles_into_a_valid_pain_001() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let summary = replenish::tools::demo::run(120, Some(data.clone()))
        .await
        .expect("demo");
    let config = settlement_config_with(&data, &products());
    let day = days::list(&config).expect("days")[0].day.clone();
    let out = dir.path().join("out");

    let written = settle::settle(&config, "acquirer", &day, &out).expect("settle");
    let settlement = &written.settled.settlements[0];
    let shares: u64 = settlement.parties.iter().map(|p| p.amount).sum();
    assert_eq!(shares, settlement.total, "the parts add up to the amount");
    let revenue = report::revenue_of(&config, &day[..7], report::By::Bank).expect("revenue");
    let pins_sold: u64 = revenue.pin_sales.iter().map(|p| p.net_amount).sum();
    let net = summary.amount - summary.reversed_amount + pins_sold;
    assert_eq!(
        settlement.total, net,
        "what the engine was credited for replenishments and PIN sales, net of reversals"
    );
    let provider = settlement
        .parties
        .iter()
        .find(|p| p.party == "provider")
        .expect("provider");
    assert!(
        provider.amount > 0 && provider.amount < net / 50,
        "1.5 % of the total: {provider:?}"
    );
    let xml = out.join(format!("acquirer-{day}.pain.001.xml"));
    if let Some(errors) = xsd_errors(&xml) {
        panic!("{} is not valid pain.001.001.09:\n{errors}", xml.display());
    }
    let text = std::fs::read_to_string(&xml).expect("xml");
    let paid = settlement.parties.iter().filter(|p| p.amount > 0).count();
    assert_eq!(
        text.matches("<CdtTrfTxInf>").count(),
        paid,
        "one transfer per party paid"
    );
    assert!(
        text.contains(&format!("<NbOfTxs>{paid}</NbOfTxs>")),
        "{text}"
    );
    assert!(text.contains("Ccy=\"USD\""), "{text}");
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join(format!("acquirer-{day}.json"))).expect("json"),
    )
    .expect("parses");
    assert_eq!(json["currency"], "840");
    assert_eq!(json["total"], net);

    // Again: the same bytes, nothing journaled, the day settled.
    let before: Vec<Vec<u8>> = written
        .files
        .iter()
        .map(|f| std::fs::read(f).expect("file"))
        .collect();
    let seq = |config: &Config| {
        let data = DataDir::open(config).expect("data");
        let seq = data.store.applied_seq().expect("seq");
        data.close().expect("close");
        seq
    };
    let journaled = seq(&config);
    let again = settle::settle(&config, "acquirer", &day, &out).expect("settle again");
    let after: Vec<Vec<u8>> = again
        .files
        .iter()
        .map(|f| std::fs::read(f).expect("file"))
        .collect();
    assert_eq!(before, after, "the same bytes");
    assert_eq!(seq(&config), journaled, "nothing journaled");
    assert_eq!(days::list(&config).expect("days")[0].state, "settled");

    // The month's revenue adds up to its settlements; the audit trail to each party's
    // share; the HTML page draws a chart per group and needs nothing from elsewhere.
    assert_eq!(revenue.totals.len(), 1);
    let total = &revenue.totals[0];
    assert_eq!(
        total.net, settlement.total,
        "revenue net = the month's settlements"
    );
    assert_eq!(total.gross - total.reversed, total.net);
    let share = |name: &str| {
        settlement
            .parties
            .iter()
            .filter(|p| p.party.starts_with(name))
            .map(|p| p.amount)
            .sum::<u64>()
    };
    assert_eq!(
        (total.provider, total.retailer, total.bank, total.carrier),
        (
            share("provider"),
            share("retailer:"),
            share("bank:"),
            share("carrier:")
        )
    );
    let by_carrier = report::revenue_of(&config, &day[..7], report::By::Carrier).expect("revenue");
    let html = report::revenue_html(&by_carrier);
    assert_eq!(
        html.matches("<svg").count(),
        by_carrier.rows.len(),
        "one chart per group"
    );
    assert!(
        !html.contains("src=") && !html.contains("href="),
        "self-contained"
    );
    let audit = report::audit_of(&config, "acquirer", &day).expect("audit");
    for party in &settlement.parties {
        let traced: u64 = audit
            .iter()
            .flat_map(|line| &line.parties)
            .filter(|(name, _)| *name == party.party)
            .map(|(_, amount)| amount)
            .sum();
        assert_eq!(
            traced, party.amount,
            "{} traced to its transactions",
            party.party
        );
    }
    assert!(
        audit.iter().all(|line| line.account.contains("******")),
        "accounts masked"
    );

    // The day's fraud log (the demo's unauthorized location) grouped three ways.
    let fraud = report::fraud(&config, &day).expect("fraud");
    let unauthorized = summary.codes.get("58").copied().unwrap_or(0) as u64;
    assert_eq!(fraud.entries, unauthorized, "{fraud:?}");
    assert_eq!(fraud.locations[0].name, "LOC000000009999");
    assert_eq!(
        fraud.accounts.iter().map(|g| g.count).sum::<u64>(),
        unauthorized
    );
    assert!(
        fraud.accounts.iter().all(|g| g.name.contains("******")),
        "accounts masked"
    );

    // The open day is refused, saying why; so is an unknown bank.
    let open = days::list(&config)
        .expect("days")
        .last()
        .expect("open")
        .day
        .clone();
    let refused = settle::settle(&config, "acquirer", &open, &out).expect_err("open day");
    assert!(refused.to_string().contains("is not closed"), "{refused}");
    let unknown = settle::settle(&config, "no-such-bank", &day, &out).expect_err("unknown bank");
    assert!(unknown.to_string().contains("no bank named"), "{unknown}");

    // The engine's report, perturbed. A reversal line for a credit the switch never
    // reversed is not "matched": the engine took money back on its own.
    let ledger = data.join("engine-ledger.jsonl");
    let report = replenish::tools::simulator::Ledger::report(&ledger, &day).expect("report");
    let reversed: Vec<&str> = (report.lines())
        .filter(|l| l.ends_with(",reversal"))
        .filter_map(|l| l.split(',').next())
        .collect();
    let credit = (report.lines().skip(1))
        .find(|l| {
            l.ends_with(",credit") && !reversed.iter().any(|r| l.starts_with(&format!("{r},")))
        })
        .expect("a credit never reversed");
    let perturbed = format!("{report}{}\n", credit.replace(",credit", ",reversal"));
    let file = dir.path().join("engine-perturbed.csv");
    std::fs::write(&file, &perturbed).expect("written");
    let party = replenish::backoffice::reconcile::Party::Engine("prepaid");
    let first = replenish::backoffice::reconcile::reconcile_file(&config, &file, party, &day)
        .expect("reconciled");
    assert_eq!(first.counts["unknown_at_switch"], 1, "{:?}", first.counts);
    let again = replenish::backoffice::reconcile::reconcile_file(&config, &file, party, &day)
        .expect("reconciled again");
    let ids = |r: &replenish::backoffice::reconcile::Report| {
        r.breaks
            .iter()
            .map(|b| (b.id, b.class.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&first), ids(&again), "a re-run finds the same breaks");
}

#[test]
fn a_day_with_open_breaks_is_not_settled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = settlement_config(dir.path());
    support::import_samples(&config);
    let closed = days::close(&config, "tester").expect("close");
    let file = dir.path().join("bank.csv");
    std::fs::write(
        &file,
        format!(
            "{BANK_HEADER}\n\
             {},0200,280000,00012345,T1,000001,1204101010,R1,4761739001010010,2500,840,00,\n",
            closed.closed
        ),
    )
    .expect("file");
    let report = replenish::backoffice::reconcile::reconcile_file(
        &config,
        &file,
        replenish::backoffice::reconcile::Party::Bank("acquirer"),
        &closed.closed,
    )
    .expect("reconcile");
    assert_eq!(report.breaks.len(), 1);
    let refused =
        settle::settle(&config, "acquirer", &closed.closed, dir.path()).expect_err("breaks open");
    assert!(
        refused
            .to_string()
            .contains("is not reconciled (breaks open)"),
        "{refused}"
    );

    // The next day has no traffic: reconciled with an empty file, it settles into a
    // JSON file of zero and no pain.001 (which needs at least one transfer).
    let quiet = days::close(&config, "tester").expect("close").closed;
    let empty = dir.path().join("empty.csv");
    std::fs::write(&empty, format!("{BANK_HEADER}\n")).expect("file");
    let party = replenish::backoffice::reconcile::Party::Bank("acquirer");
    replenish::backoffice::reconcile::reconcile_file(&config, &empty, party, &quiet)
        .expect("reconcile");
    let out = dir.path().join("out");
    let written = settle::settle(&config, "acquirer", &quiet, &out).expect("settled");
    assert_eq!(written.files.len(), 1, "{:?}", written.files);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&written.files[0]).expect("json"))
            .expect("valid");
    assert_eq!(
        (json["total"].as_u64(), json["transactions"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(json["currency"], "840");
}

/// Reconciles bank `acquirer`'s `day` with a file listing every `exchanged` message as
/// the switch answered it; asserts no break.
fn reconcile_cleanly(config: &Config, dir: &Path, day: &str, exchanged: &[(Message, Message)]) {
    let mut text = format!("{BANK_HEADER}\n");
    for (request, answer) in exchanged {
        let field = |n: u8| request.text(n).unwrap_or("").trim().to_owned();
        let amount: u64 = field(4).parse().expect("DE4");
        text += &format!(
            "{day},{},{},{},{},{},{},{},{},{amount},{},{},{}\n",
            request.mti(),
            field(3),
            field(32),
            field(41),
            field(11),
            field(7),
            field(37),
            field(2),
            field(49),
            answer.text(39).unwrap_or(""),
            answer.text(62).unwrap_or("")
        );
    }
    let file = dir.join("bank.csv");
    std::fs::write(&file, text).expect("file");
    let party = replenish::backoffice::reconcile::Party::Bank("acquirer");
    let report = replenish::backoffice::reconcile::reconcile_file(config, &file, party, day)
        .expect("reconcile");
    assert!(!report.has_breaks(), "{:?}", report.breaks);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_in_two_currencies_settles_one_file_pair_per_currency() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = settlement_config(dir.path());
    config.limits.currencies = vec!["840".into(), "978".into()];
    support::import_samples(&config);
    let switch = support::Switch::start(config.clone()).await;
    let mut client = support::Client::connect(switch.addr).await;
    let mut exchanged = Vec::new();
    for (stan, currency) in [(1u32, "840"), (2, "978"), (3, "978")] {
        let mut request = support::request(stan, 1000 * u64::from(stan), support::ACTIVE);
        request.set(49, currency);
        let answer = client.exchange(&request).await;
        assert_eq!(answer.text(39), Some("00"), "{currency}");
        exchanged.push((request, answer));
    }
    let config = switch.stop().await;
    let day = days::close(&config, "tester").expect("close").closed;
    reconcile_cleanly(&config, dir.path(), &day, &exchanged);
    let out = dir.path().join("out");
    let written = settle::settle(&config, "acquirer", &day, &out).expect("settle");
    let totals: Vec<(String, u64)> = written
        .settled
        .settlements
        .iter()
        .map(|s| (s.currency.clone(), s.total))
        .collect();
    assert_eq!(totals, [("840".to_owned(), 1000), ("978".to_owned(), 5000)]);
    for (currency, letters) in [("840", "USD"), ("978", "EUR")] {
        let xml = out.join(format!("acquirer-{day}-{currency}.pain.001.xml"));
        let text = std::fs::read_to_string(&xml).expect("a file per currency");
        assert!(text.contains(&format!("Ccy=\"{letters}\"")), "{text}");
        assert!(out.join(format!("acquirer-{day}-{currency}.json")).exists());
        if let Some(errors) = xsd_errors(&xml) {
            panic!("{} is not valid pain.001.001.09:\n{errors}", xml.display());
        }
    }
}

/// A PIN sale of `card` for `amount` at location `location`.
fn sale(stan: u32, card: &str, amount: u64, location: &str) -> Message {
    let mut message = support::request(stan, amount, card);
    message.set(3, "000000");
    message.set(42, location.to_owned());
    message
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_revenue_report_counts_pins_sold_per_day_product_and_retailer() {
    use replenish::backoffice::report::PinSales;
    use replenish::durable::record::Record;
    use replenish::vocab::accounts::Location;

    let dir = tempfile::tempdir().expect("tempdir");
    let config = settlement_config_with(dir.path(), &products());
    support::import_samples(&config);
    let kiosk = Location {
        id: "LOC000000007777".into(),
        name: "Kiosk 7 Spokane".into(),
        retailer: "Kiosks Inc".into(),
        authorized: true,
    };
    let data = DataDir::open(&config).expect("data");
    data.commit(&[Record::LocationsImported {
        locations: vec![kiosk],
    }])
    .expect("kiosk");
    data.close().expect("close");
    let batch = support::root().join("fixtures/pins/card-a-25.csv");
    replenish::pins::import(&config, &batch, "CARD-A-25", "test").expect("import");

    let switch = support::Switch::start(config.clone()).await;
    let mut till = support::Client::connect(switch.addr).await;
    let (card_a, card_b) = ("6034567000000017", "6034568000000016");
    // Two CARD-A-25 at Corner Stores (two of its shops), one at Kiosks Inc, one
    // CARD-B-10 at Corner Stores reversed, and a replenishment (no PIN).
    let sales = [
        sale(1, card_a, 2500, "LOC000000001234"),
        sale(2, card_a, 2500, "LOC000000001235"),
        sale(3, card_a, 2500, "LOC000000007777"),
        sale(4, card_b, 1000, "LOC000000001234"),
        support::request(5, 2500, support::ACTIVE),
    ];
    let mut exchanged = Vec::new();
    for message in sales {
        let answer = till.exchange(&message).await;
        assert_eq!(answer.text(39), Some("00"), "{:?}", message.text(11));
        exchanged.push((message, answer));
    }
    let mut reversal = exchanged[3].0.clone();
    reversal.set_mti("0400".parse().expect("mti"));
    reversal.set(11, "000006");
    reversal.set(
        90,
        replenish::switch::reverse::original_data(&exchanged[3].0),
    );
    let answer = till.exchange(&reversal).await;
    assert_eq!(
        (answer.mti().as_str(), answer.text(39)),
        ("0410", Some("00"))
    );
    exchanged.push((reversal, answer));
    let config = switch.stop().await;
    let day = days::close(&config, "tester").expect("close").closed;

    let revenue = report::revenue_of(&config, &day[..7], report::By::Carrier).expect("revenue");
    let row = |sku: &str, retailer: &str, counts: [u64; 4]| PinSales {
        day: day.clone(),
        sku: sku.into(),
        retailer: retailer.into(),
        currency: "840".into(),
        sales: counts[0],
        reversed: counts[1],
        net: counts[2],
        net_amount: counts[3],
    };
    assert_eq!(
        revenue.pin_sales,
        [
            row("CARD-A-25", "Corner Stores", [2, 0, 2, 5000]),
            row("CARD-A-25", "Kiosks Inc", [1, 0, 1, 2500]),
            row("CARD-B-10", "Corner Stores", [1, 1, 0, 0]),
        ],
        "the replenishment is no PIN sale"
    );
    // A sale is owed to its product's carrier, like a replenishment to its account's.
    let carriers: Vec<(&str, u64, u64)> = (revenue.rows.iter())
        .map(|r| (r.group.as_str(), r.gross, r.net))
        .collect();
    assert_eq!(
        carriers,
        [("carrier-a", 10_000, 10_000), ("carrier-b", 1000, 0)]
    );
    let text = report::revenue_text(&revenue);
    assert!(
        text.contains("CARD-B-10") && text.contains("Kiosks Inc"),
        "{text}"
    );
    let json = serde_json::to_value(&revenue).expect("json");
    assert_eq!(json["pin_sales"][0]["net_amount"], 5000, "{json}");

    // Settled: the bank owes each carrier its sales' value less the fees, and each
    // retailer its fee; the reversed sale pays nobody.
    reconcile_cleanly(&config, dir.path(), &day, &exchanged);
    let written = settle::settle(&config, "acquirer", &day, &dir.path().join("out"))
        .expect("a day with PIN sales settles");
    let settlement = &written.settled.settlements[0];
    assert_eq!(
        (settlement.total, settlement.transactions),
        (10_000, 4),
        "{settlement:?}"
    );
    let parties: Vec<&str> = (settlement.parties.iter())
        .map(|p| p.party.as_str())
        .collect();
    assert_eq!(
        parties,
        [
            "bank:acquirer",
            "carrier:carrier-a",
            "provider",
            "retailer:Corner Stores",
            "retailer:Kiosks Inc"
        ]
    );
}
