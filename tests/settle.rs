//! Settlement (BACKOFFICE.md §3): the demo's day (traffic, reversals, the day closed and
//! reconciled against the bank's file and the engine's report) settled with the sample
//! settlement config: each party's share adds up to what the engine was credited net of
//! reversals, the pain.001.001.09 file is valid against the official XSD (the one the
//! PyPI package sepaxml ships, checked with lxml), settling again writes the same bytes
//! and journals nothing, and a day that is not reconciled is refused.

mod support;

use std::path::Path;
use std::process::Command;

use replenish::backoffice::{days, report, settle};
use replenish::config::Config;
use replenish::durable::datadir::DataDir;

fn settlement_config(data: &Path) -> Config {
    let text = std::fs::read_to_string(support::root().join("fixtures/configs/settlement.toml"))
        .expect("sample settlement config");
    let text = text.replace(
        "data_dir = \"./data\"",
        &format!("data_dir = {:?}", data.display().to_string()),
    );
    Config::from_toml(&text, "settlement.toml").expect("config")
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
    let config = settlement_config(&data);
    let day = days::list(&config).expect("days")[0].day.clone();
    let out = dir.path().join("out");

    let written = settle::settle(&config, "acquirer", &day, &out).expect("settle");
    let settlement = &written.settled.settlements[0];
    let shares: u64 = settlement.parties.iter().map(|p| p.amount).sum();
    assert_eq!(shares, settlement.total, "the parts add up to the amount");
    let net = summary.amount - summary.reversed_amount;
    assert_eq!(
        settlement.total, net,
        "what the engine was credited, net of reversals"
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
    let revenue = report::revenue_of(&config, &day[..7], report::By::Bank).expect("revenue");
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
            "business_day,mti,processing_code,acquirer_id,terminal,stan,transmission,rrn,account,amount,currency,response_code,confirmation\n\
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
    std::fs::write(&empty, "business_day,mti,processing_code,acquirer_id,terminal,stan,transmission,rrn,account,amount,currency,response_code,confirmation\n")
        .expect("file");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_in_two_currencies_settles_one_file_pair_per_currency() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = settlement_config(dir.path());
    config.limits.currencies = vec!["840".into(), "978".into()];
    support::import_samples(&config);
    let switch = support::Switch::start(config.clone()).await;
    let mut client = support::Client::connect(switch.addr).await;
    let mut lines = Vec::new();
    for (stan, currency) in [(1u32, "840"), (2, "978"), (3, "978")] {
        let mut request = support::request(stan, 1000 * u64::from(stan), support::ACTIVE);
        request.set(49, currency);
        let answer = client.exchange(&request).await;
        assert_eq!(answer.text(39), Some("00"), "{currency}");
        let field = |n: u8| request.text(n).unwrap_or("").to_owned();
        lines.push(format!(
            "{{day}},0200,{},{},{},{},{},{},{},{},{currency},00,{}",
            field(3),
            field(32),
            field(41),
            field(11),
            field(7),
            field(37),
            field(2),
            1000 * u64::from(stan),
            answer.text(62).unwrap_or("")
        ));
    }
    let config = switch.stop().await;
    let day = days::close(&config, "tester").expect("close").closed;
    let file = dir.path().join("bank.csv");
    let body: Vec<String> = lines.iter().map(|l| l.replace("{day}", &day)).collect();
    std::fs::write(
        &file,
        format!(
            "business_day,mti,processing_code,acquirer_id,terminal,stan,transmission,rrn,account,amount,currency,response_code,confirmation\n{}\n",
            body.join("\n")
        ),
    )
    .expect("file");
    let report = replenish::backoffice::reconcile::reconcile_file(
        &config,
        &file,
        replenish::backoffice::reconcile::Party::Bank("acquirer"),
        &day,
    )
    .expect("reconcile");
    assert!(!report.has_breaks(), "{:?}", report.breaks);
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
