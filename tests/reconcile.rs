//! Daily reconciliation against a bank file (BACKOFFICE.md §2), end to end: traffic over
//! real sockets (approvals, declines, repeats, advices and their repeats, reversals, a
//! restart in the middle), the day closed through the running switch, then a bank file
//! written by an independent writer from what the acquirer saw, perturbed at random.
//! The breaks must be exactly the perturbations; running the file again changes nothing;
//! resolving every break (crediting the lost advice) makes the day `reconciled`.

mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use replenish::backoffice::reconcile::Party;
use replenish::backoffice::{days, reconcile};
use replenish::config::Config;
use replenish::durable::datadir::DataDir;
use replenish::durable::record::Side;
use replenish::operate::{lookup, queue};
use replenish::switch::reverse::original_data;
use replenish::wire::iso8583::{Message, Mti};
use support::{
    Client, Switch, approving_accounts, config_text, free_port, import_samples, request,
};

/// A small deterministic generator (xorshift), so every failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// One exchange as the acquirer saw it.
#[derive(Clone)]
struct Seen {
    request: Message,
    response: Message,
}

const HEADER: &str = "business_day,mti,processing_code,acquirer_id,terminal,stan,transmission,rrn,account,amount,currency,response_code,confirmation";

/// The bank's line for an exchange: written from the messages alone.
fn bank_line(day: &str, seen: &Seen) -> Vec<String> {
    let field = |m: &Message, n: u8| m.text(n).unwrap_or("").trim().to_owned();
    let r = &seen.request;
    let amount: u64 = field(r, 4).parse().expect("amount");
    vec![
        day.to_owned(),
        r.mti().to_string(),
        field(r, 3),
        field(r, 32),
        field(r, 41),
        field(r, 11),
        field(r, 7),
        field(r, 37),
        field(r, 2),
        amount.to_string(),
        field(r, 49),
        field(&seen.response, 39),
        field(&seen.response, 62),
    ]
}

fn mti(text: &str) -> Mti {
    Mti::new(text.as_bytes()).expect("mti")
}

/// The key the switch gives a line's transaction.
fn key_of(line: &[String]) -> String {
    let class = &line[1][1..2];
    format!("{}|{}|{}|{}|{class}", line[3], line[4], line[5], line[6])
}

/// Random traffic of `count` transactions; returns what should be in the bank's file
/// (repeats of a request are the same line; an advice repeat sometimes gets its own).
async fn traffic(mut switch: Switch, rng: &mut Rng, count: u32, tag: &str) -> (Switch, Vec<Seen>) {
    let accounts = approving_accounts();
    let mut client = Client::connect(switch.addr).await;
    let mut lines: Vec<Seen> = Vec::new();
    let mut approved: Vec<Message> = Vec::new();
    for stan in 1..=count {
        let mut message = match rng.below(10) {
            // A blocked account: declined.
            0 => request(stan, 700, "4761739001010044"),
            _ => request(
                stan,
                100 + rng.below(4000) as u64,
                &accounts[rng.below(accounts.len())],
            ),
        };
        message.set(41, format!("RC{tag}"));
        message.set(37, format!("{tag}{stan:08}"));
        match rng.below(8) {
            // An advice, sometimes repeated as 0221 (its line kept as well).
            0 => {
                message.set_mti(mti("0220"));
                let response = client.exchange(&message).await;
                lines.push(Seen {
                    request: message.clone(),
                    response: response.clone(),
                });
                if rng.below(2) == 0 {
                    let mut repeat = message.clone();
                    repeat.set_mti(mti("0221"));
                    let again = client.exchange(&repeat).await;
                    lines.push(Seen {
                        request: repeat,
                        response: again,
                    });
                }
            }
            // A reversal of an earlier approval.
            1 if !approved.is_empty() => {
                let original = approved.swap_remove(rng.below(approved.len()));
                let mut reversal = original.clone();
                reversal.set_mti(mti("0420"));
                reversal.set(11, format!("{:06}", 500_000 + stan));
                reversal.set(90, original_data(&original));
                let response = client.exchange(&reversal).await;
                lines.push(Seen {
                    request: reversal,
                    response,
                });
            }
            // A request, sometimes sent twice (the repeat is answered, not decided).
            _ => {
                let response = client.exchange(&message).await;
                if rng.below(5) == 0 {
                    let again = client.exchange(&message).await;
                    assert_eq!(
                        again.text(39),
                        response.text(39),
                        "a repeat gets the same answer"
                    );
                }
                if response.text(39) == Some("00") {
                    approved.push(message.clone());
                }
                lines.push(Seen {
                    request: message,
                    response,
                });
            }
        }
        // A restart in the middle of the traffic.
        if stan == count / 2 {
            drop(client);
            switch = Switch::start(switch.stop().await).await;
            client = Client::connect(switch.addr).await;
        }
    }
    (switch, lines)
}

fn write_file(path: &Path, lines: &[Vec<String>]) {
    let mut text = format!("{HEADER}\n");
    for line in lines {
        text += &line.join(",");
        text += "\n";
    }
    std::fs::write(path, text).expect("write bank file");
}

/// Perturbs the file at random; returns the breaks it must give, as (class, key).
fn perturb(rng: &mut Rng, lines: &mut Vec<Vec<String>>, tag: &str) -> BTreeSet<(String, String)> {
    let mut expected = BTreeSet::new();
    let mut touched = BTreeSet::new();
    let mut pick = |rng: &mut Rng, lines: &Vec<Vec<String>>| loop {
        let i = rng.below(lines.len());
        // Leave advice repeats and the lines of their originals alone.
        if lines[i][1].ends_with('1') || touched.contains(&key_of(&lines[i])) {
            continue;
        }
        if lines
            .iter()
            .filter(|l| key_of(l) == key_of(&lines[i]))
            .count()
            > 1
        {
            continue;
        }
        touched.insert(key_of(&lines[i]));
        return i;
    };
    let i = pick(rng, lines);
    let amount: u64 = lines[i][9].parse().expect("amount");
    lines[i][9] = (amount + 1).to_string();
    expected.insert(("amount_mismatch".to_owned(), key_of(&lines[i])));
    let i = pick(rng, lines);
    lines[i][11] = if lines[i][11] == "00" { "05" } else { "00" }.into();
    expected.insert(("status_mismatch".to_owned(), key_of(&lines[i])));
    let i = pick(rng, lines);
    expected.insert(("missing_at_bank".to_owned(), key_of(&lines[i])));
    lines.remove(i);
    let i = pick(rng, lines);
    let copy = lines[i].clone();
    expected.insert(("duplicate_in_file".to_owned(), key_of(&copy)));
    lines.push(copy);
    // An approval the switch never saw.
    let mut lost = lines[0].clone();
    lost[1] = "0200".into();
    lost[5] = "999999".into();
    lost[7] = format!("{tag}LOST");
    lost[8] = approving_accounts()[0].clone();
    lost[9] = "1234".into();
    lost[11] = "00".into();
    lost[12] = String::new();
    expected.insert(("missing_at_switch".to_owned(), key_of(&lost)));
    lines.push(lost);
    expected
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_traffic_perturbed_files_give_exactly_their_perturbations() {
    for seed in [7u64, 1_234_567] {
        let mut rng = Rng(seed);
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config =
            Config::from_toml(&config_text(dir.path(), free_port()), "test").expect("config");
        config.metrics.listen = Some(SocketAddr::from(([127, 0, 0, 1], free_port())));
        import_samples(&config);
        let tag = format!("{}", seed % 1000);
        let (switch, seen) =
            traffic(Switch::start(config.clone()).await, &mut rng, 120, &tag).await;

        // Closed through the running switch.
        let closing = config.clone();
        let closed = tokio::task::spawn_blocking(move || days::close(&closing, "tester"))
            .await
            .expect("task")
            .expect("close");
        let day = closed.closed.clone();
        let mut lines: Vec<Vec<String>> = seen.iter().map(|s| bank_line(&day, s)).collect();
        let expected = perturb(&mut rng, &mut lines, &tag);
        let file = dir.path().join("bank.csv");
        write_file(&file, &lines);
        let config = switch.stop().await;

        // Offline, on the data directory.
        let report = reconcile::reconcile_file(&config, &file, Party::Bank("bank-a"), &day)
            .expect("reconcile");
        eprintln!(
            "seed {seed}: {}; {} repeats",
            report.summary(&reconcile::bank::CLASSES),
            report.repeats
        );
        let mtis: BTreeSet<String> = lines
            .iter()
            .map(|l| format!("{} {}", l[1], l[11]))
            .collect();
        eprintln!("seed {seed}: lines by MTI and answer: {mtis:?}");
        let found: BTreeSet<(String, String)> = report
            .breaks
            .iter()
            .map(|b| (b.class.clone(), b.key.clone()))
            .collect();
        assert_eq!(found, expected, "seed {seed}: {:#?}", report.breaks);
        assert_eq!(report.breaks.len(), expected.len(), "seed {seed}");
        let matched = report.counts["matched"];
        assert_eq!(
            report.lines,
            matched + report.repeats + 4,
            "seed {seed}: every line but the perturbed ones matched: {:?}",
            report.counts
        );
        let summary = report.summary(&reconcile::bank::CLASSES);
        assert!(
            summary.starts_with(&format!(
                "reconciliation bank-a {day}: {} lines, {matched} matched",
                report.lines
            )),
            "{summary}"
        );

        // Again through the running switch: the same result, no new items.
        let switch = Switch::start(config.clone()).await;
        let (again_config, again_file, again_day) = (config.clone(), file.clone(), day.clone());
        let again = tokio::task::spawn_blocking(move || {
            reconcile::reconcile_file(
                &again_config,
                &again_file,
                Party::Bank("bank-a"),
                &again_day,
            )
        })
        .await
        .expect("task")
        .expect("reconcile again");
        assert_eq!(again.counts, report.counts);
        let ids = |r: &reconcile::Report| r.breaks.iter().map(|b| b.id).collect::<Vec<_>>();
        assert_eq!(ids(&again), ids(&report), "the same items, none added");

        // Resolve every break: the lost advice is credited, the rest closed with a note.
        let listing = config.clone();
        let items = tokio::task::spawn_blocking(move || queue::list(&listing))
            .await
            .expect("task")
            .expect("list");
        let open: Vec<_> = items
            .iter()
            .filter(|i| i.is_open() && i.class != "advice")
            .collect();
        assert_eq!(
            open.len(),
            expected.len(),
            "each break is one exception-queue item"
        );
        let mut credited = None;
        for item in open {
            let (config, id, class) = (config.clone(), item.id, item.class.clone());
            let lost = tokio::task::spawn_blocking(move || {
                if class == "missing_at_switch" {
                    let confirmation =
                        queue::resubmit(&config, id, "tester").expect("credit lost advice");
                    assert_eq!(confirmation.len(), 12);
                    return Some(confirmation);
                }
                queue::resolve(&config, id, "checked with the bank", "tester").expect("resolve");
                None
            })
            .await
            .expect("task");
            credited = credited.or(lost);
        }
        let config = switch.stop().await;
        // The three-way view of a transaction: the lost advice, now credited, and one
        // that matched.
        let lost = lookup::lookup(&config, &credited.expect("the lost advice credited"))
            .expect("lookup")
            .expect("found");
        assert!(
            lost.bank.starts_with("missing_at_switch (break ") && lost.bank.ends_with("resolved"),
            "{lost:?}"
        );
        let matched = seen
            .iter()
            .filter(|s| s.request.mti().as_str() == "0200" && s.response.text(39) == Some("00"))
            .find(|s| {
                !expected
                    .iter()
                    .any(|(_, key)| *key == key_of(&bank_line(&day, s)))
            })
            .and_then(|s| s.response.text(62))
            .expect("an approval");
        let found = lookup::lookup(&config, matched)
            .expect("lookup")
            .expect("found");
        assert_eq!(
            (found.bank.as_str(), found.engine.as_str()),
            ("matched", "not reconciled"),
            "{found:?}"
        );
        let list = days::list(&config).expect("days");
        let state = list
            .iter()
            .find(|d| d.day == day)
            .expect("the day")
            .state
            .clone();
        assert_eq!(state, "reconciled", "seed {seed}: {list:?}");
        let data = DataDir::open(&config).expect("data");
        let run = data
            .store
            .reconciliation(Side::Bank, "bank-a", &day)
            .expect("read");
        assert!(run.is_some_and(|r| r.file_sha256 == report.file_sha256));
        data.close().expect("close");

        // The lost advice was credited on the next business day; the bank's file of
        // that day does not list it (the file of its own day did): no break for it.
        let next = days::close(&config, "tester").expect("close the next day");
        let file = dir.path().join(format!("bank-{}.csv", next.closed));
        write_file(&file, &[]);
        let report = reconcile::reconcile_file(&config, &file, Party::Bank("bank-a"), &next.closed)
            .expect("the next day reconciled");
        assert_eq!(report.counts["missing_at_bank"], 0, "{:?}", report.counts);
        assert_eq!(report.counts["matched"], 1, "{:?}", report.counts);
    }
}

#[test]
fn a_bad_file_names_every_bad_line_exits_2_and_records_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config_path = dir.path().join("replenish.toml");
    std::fs::write(&config_path, config_text(dir.path(), free_port())).expect("config");
    let config = Config::load(&config_path).expect("config");
    import_samples(&config);
    let replenish = env!("CARGO_BIN_EXE_replenish");
    let run = |args: &[&str]| {
        Command::new(replenish)
            .args(args)
            .arg("--config")
            .arg(&config_path)
            .output()
            .expect("run replenish")
    };
    let closed = run(&["day", "close", "--by", "tester"]);
    assert!(
        closed.status.success(),
        "{}",
        String::from_utf8_lossy(&closed.stderr)
    );
    let day = String::from_utf8_lossy(&closed.stdout)
        .split_whitespace()
        .nth(3)
        .expect("closed day")
        .trim_end_matches(';')
        .to_owned();
    let good =
        format!("{day},0200,280000,00012345,T1,000001,1204101010,R1,4761739001010010,2500,840,00,");
    let bad_lines = [
        format!("{day},0200,280000,00012345,T1,00001,1204101010,R1,4761739001010010,2500,840,00,"),
        format!(
            "{day},0200,280000,00012345,T1,000002,1204101010,R1,4761739001010010,25.00,840,00,"
        ),
        "2001-01-01,0200,280000,00012345,T1,000003,1204101010,R1,4761739001010010,2500,840,00,"
            .to_string(),
        format!("{day},0900,280000,00012345,T1,000004,1204101010,R1,4761739001010010,2500,840,00,"),
        format!("{day},0200,280000,00012345,T1,000005,1204101010,R1,4761739001010010,2500,840"),
        format!("{day},0200,280000,,T1,000006,1204101010,R1,4761739001010010,2500,840,00,"),
        format!("{day},0200,280000,00012345,T1,000007,1204101010,R1,47617390010100X0,2500,840,00,"),
    ];
    let file = dir.path().join("bad.csv");
    std::fs::write(
        &file,
        format!("{HEADER}\n{good}\n{}\n", bad_lines.join("\n")),
    )
    .expect("file");
    let json = dir.path().join("report.json");
    let out = run(&[
        "reconcile",
        "bank",
        file.to_str().expect("path"),
        "--bank",
        "bank-a",
        "--day",
        &day,
        "--json",
        json.to_str().expect("path"),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let name = file.display().to_string();
    for (line, column) in [
        (3, "stan"),
        (4, "amount"),
        (5, "business_day"),
        (6, "mti"),
        (7, "line"),
        (8, "acquirer_id"),
        (9, "account"),
    ] {
        assert!(
            stderr.contains(&format!("{name}:{line}: {column}: ")),
            "line {line} {column} not named:\n{stderr}"
        );
    }
    assert!(
        !stderr.contains("4761739001010010") && !stderr.contains("47617390010100X0"),
        "accounts masked:\n{stderr}"
    );
    assert!(!json.exists(), "no report for a bad file");
    let data = DataDir::open(&config).expect("data");
    assert!(
        data.store
            .reconciliation(Side::Bank, "bank-a", &day)
            .expect("read")
            .is_none()
    );
    assert!(
        data.store.breaks().expect("breaks").is_empty(),
        "nothing recorded"
    );
    data.close().expect("close");
}

/// A real SMTP server (aiosmtpd from PyPI) on loopback, saving each email to a Maildir.
struct Smtp {
    process: std::process::Child,
    maildir: std::path::PathBuf,
}

impl Smtp {
    fn start(dir: &Path, port: u16) -> Smtp {
        Smtp::start_with(dir, port, &[])
    }

    /// With more of aiosmtpd's options (`--tlscert`, `--tlskey`: STARTTLS required).
    fn start_with(dir: &Path, port: u16, options: &[&str]) -> Smtp {
        let python =
            support::python::python_with("aiosmtpd", "import aiosmtpd", &["aiosmtpd==1.4.6"]);
        let maildir = dir.join("maildir");
        let process = Command::new(python)
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
            .args(options)
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start aiosmtpd");
        // Dropped (killed and waited for) on every path, also when it never listens.
        let smtp = Smtp { process, maildir };
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return smtp;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("aiosmtpd did not listen on {port}");
    }

    /// Every email received so far, raw.
    fn emails(&self) -> Vec<String> {
        let mut emails = Vec::new();
        for folder in ["new", "cur"] {
            if let Ok(entries) = std::fs::read_dir(self.maildir.join(folder)) {
                for entry in entries.flatten() {
                    emails.push(std::fs::read_to_string(entry.path()).expect("email"));
                }
            }
        }
        emails
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// A day with one transaction and a file that disagrees with it.
fn day_with_a_break(config: &Config, dir: &Path) -> (String, std::path::PathBuf) {
    let closed = days::close(config, "tester").expect("close");
    let line = format!(
        "{},0200,280000,00012345,T9,000042,1204101010,R42,4761739001010010,2500,840,00,",
        closed.closed
    );
    let file = dir.join("bank.csv");
    std::fs::write(&file, format!("{HEADER}\n{line}\n")).expect("file");
    (closed.closed, file)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaks_are_emailed_once_and_an_smtp_outage_only_delays_the_email() {
    let dir = tempfile::tempdir().expect("tempdir");
    let smtp_port = free_port();
    let mut config = Config::from_toml(
        &format!(
            "{}\n[notify.email]\nsmtp = \"127.0.0.1:{smtp_port}\"\nfrom = \"replenish@switch.test\"\nto = [\"recon@bank.test\", \"ops@provider.test\"]\n",
            config_text(dir.path(), free_port())
        ),
        "test",
    )
    .expect("config");
    config.metrics.listen = Some(SocketAddr::from(([127, 0, 0, 1], free_port())));
    import_samples(&config);
    let (day, file) = day_with_a_break(&config, dir.path());

    // The SMTP server is down: the reconciliation is not held up; the email waits.
    let report =
        reconcile::reconcile_file(&config, &file, Party::Bank("bank-a"), &day).expect("reconcile");
    assert_eq!(report.breaks.len(), 1, "{:?}", report.breaks);
    let data = DataDir::open(&config).expect("data");
    let (pending, failed) = data.store.notification_tally("email").expect("tally");
    data.close().expect("close");
    assert_eq!((pending, failed), (1, 1), "queued, one failed attempt");

    // The server comes up; the running switch sends the email from its outbox.
    let smtp = Smtp::start(dir.path(), smtp_port);
    let switch = Switch::start(config.clone()).await;
    let mut emails = Vec::new();
    for _ in 0..200 {
        emails = smtp.emails();
        if !emails.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(emails.len(), 1, "one email once the server is up");
    let email = &emails[0];
    assert!(
        email.contains(&format!(
            "Subject: replenish reconciliation bank-a {day}: 1 breaks"
        )),
        "{email}"
    );
    assert!(email.contains("recon@bank.test") && email.contains("ops@provider.test"));
    assert!(
        email.contains(&format!("breaks-bank-a-{day}.csv")),
        "the CSV attachment: {email}"
    );
    assert!(email.contains("missing_at_switch"), "{email}");
    assert!(
        !email.contains("4761739001010010"),
        "accounts masked in the email"
    );
    let metrics = ureq::get(&format!(
        "http://{}/metrics",
        config.metrics.listen.expect("listen")
    ))
    .call()
    .expect("metrics")
    .body_mut()
    .read_to_string()
    .expect("text");
    assert!(metrics.contains("replenish_emails_pending 0"), "{metrics}");
    assert!(metrics.contains("replenish_email_failures 1"), "{metrics}");

    // The same file again through the switch: the same breaks, no second email.
    let (again_config, again_file, again_day) = (config.clone(), file.clone(), day.clone());
    tokio::task::spawn_blocking(move || {
        reconcile::reconcile_file(
            &again_config,
            &again_file,
            Party::Bank("bank-a"),
            &again_day,
        )
    })
    .await
    .expect("task")
    .expect("again");
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(
        smtp.emails().len(),
        1,
        "no second email for the same breaks"
    );
    switch.stop().await;
}

#[test]
fn the_email_goes_over_starttls_to_a_server_of_the_configured_ca() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = dir.path().join("certs");
    let made = Command::new("bash")
        .arg(support::root().join("certs/make-dev-certs.sh"))
        .arg(&certs)
        .status()
        .expect("run make-dev-certs.sh (needs openssl)");
    assert!(made.success(), "make-dev-certs.sh failed");
    let port = free_port();
    let (cert, key) = (certs.join("server.pem"), certs.join("server.key"));
    let options = [
        "--tlscert",
        cert.to_str().expect("path"),
        "--tlskey",
        key.to_str().expect("path"),
    ];
    let smtp = Smtp::start_with(dir.path(), port, &options);
    let email = |ca: &str| {
        format!(
            "{}\n[notify.email]\nsmtp = \"127.0.0.1:{port}\"\nfrom = \"replenish@switch.test\"\nto = [\"recon@bank.test\"]\nstarttls = true\n{ca}",
            config_text(dir.path(), free_port())
        )
    };
    // Without the CA the server's certificate is not trusted: nothing is sent.
    let untrusting = Config::from_toml(&email(""), "test").expect("config");
    import_samples(&untrusting);
    let (day, file) = day_with_a_break(&untrusting, dir.path());
    reconcile::reconcile_file(&untrusting, &file, Party::Bank("bank-a"), &day).expect("reconcile");
    assert!(smtp.emails().is_empty(), "no email to an untrusted server");
    // With it, the next reconciliation's attempt sends the waiting email over TLS.
    let ca = format!(
        "ca_file = {:?}\n",
        certs.join("ca.pem").display().to_string()
    );
    let trusting = Config::from_toml(&email(&ca), "test").expect("config");
    let data = DataDir::open(&trusting).expect("data");
    let waiting = data.store.notifications().expect("outbox");
    data.close().expect("close");
    assert_eq!(
        (waiting.len(), waiting[0].failures),
        (1, 1),
        "queued, one failed attempt"
    );
    // The retry is due after its backoff (2 s after one failure).
    std::thread::sleep(std::time::Duration::from_millis(2100));
    reconcile::reconcile_file(&trusting, &file, Party::Bank("bank-a"), &day)
        .expect("reconcile again");
    let emails = smtp.emails();
    assert_eq!(
        emails.len(),
        1,
        "sent over STARTTLS once the CA is configured"
    );
    assert!(emails[0].contains(&format!("replenish reconciliation bank-a {day}: 1 breaks")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stand_in_advice_after_a_declined_request_pairs_each_decision_with_its_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config =
        Config::from_toml(&config_text(dir.path(), free_port()), "t.toml").expect("config");
    import_samples(&config);
    let switch = Switch::start(config).await;
    let mut client = Client::connect(switch.addr).await;
    // The switch declines (blocked account); the bank approves in stand-in and advises.
    let request = support::request(1, 2500, "4761739001010044");
    let declined = client.exchange(&request).await;
    assert_ne!(declined.text(39), Some("00"));
    let mut advice = request.clone();
    advice.set_mti(mti("0220"));
    let credited = client.exchange(&advice).await;
    assert_eq!(credited.text(39), Some("00"));
    assert!(credited.text(62).is_some(), "the advice is credited");
    let config = switch.stop().await;
    let day = days::close(&config, "tester").expect("close").closed;
    let lines = [
        bank_line(
            &day,
            &Seen {
                request,
                response: declined,
            },
        ),
        bank_line(
            &day,
            &Seen {
                request: advice,
                response: credited,
            },
        ),
    ];
    let file = dir.path().join("bank.csv");
    write_file(&file, &lines);
    let report =
        reconcile::reconcile_file(&config, &file, Party::Bank("bank-a"), &day).expect("reconciled");
    assert_eq!(report.counts["matched"], 2, "{:?}", report.counts);
    let breaks: u64 = (report.counts.iter())
        .filter(|(class, _)| *class != "matched")
        .map(|(_, n)| n)
        .sum();
    assert_eq!(breaks, 0, "{:?}", report.counts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_in_two_days_files_is_a_duplicate_in_whichever_is_reconciled_second() {
    for d_first in [true, false] {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = config_text(dir.path(), free_port());
        let config = Config::from_toml(&text, "t.toml").expect("config");
        import_samples(&config);
        let switch = Switch::start(config).await;
        let mut client = Client::connect(switch.addr).await;
        let request = support::request(1, 2500, support::ACTIVE);
        let response = client.exchange(&request).await;
        assert_eq!(response.text(39), Some("00"));
        let config = switch.stop().await;
        let day = days::close(&config, "tester").expect("close").closed;
        let next = days::close(&config, "tester").expect("close").closed;
        let seen = Seen { request, response };
        let reconcile = |on: &str| {
            let mut line = bank_line(on, &seen);
            line[0] = on.to_owned();
            let file = dir.path().join(format!("bank-{on}.csv"));
            write_file(&file, &[line]);
            reconcile::reconcile_file(&config, &file, Party::Bank("bank-a"), on)
                .expect("reconciled")
        };
        let (first, second) = match d_first {
            true => (reconcile(&day), reconcile(&next)),
            false => (reconcile(&next), reconcile(&day)),
        };
        assert_eq!(first.counts["matched"], 1, "{d_first}: {:?}", first.counts);
        assert_eq!(
            second.counts["duplicate_in_file"], 1,
            "{d_first}: {:?}",
            second.counts
        );
    }
}
