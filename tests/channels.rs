//! The self-service channels end to end over real sockets (BACKOFFICE.md §6): the
//! switch (`replenish serve` in a child process) with its channel API, `bank-sim` as the
//! subscribers' bank (two links), `engine-sim` as the prepaid engine. Every row of the
//! §6 table, the wrong-PIN lock and its unlock on the console, and a SIGKILL during a
//! stream of requests: each `201` debited and credited once, each `402` neither.

mod support;

use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use replenish::operate::metrics::Status;
use replenish::tools::banksim::{self, BankConfig, BankSim};
use replenish::wire::framing::{FrameCodec, LengthHeader};
use replenish::wire::iso8583::Spec;
use serde_json::{Value, json};
use support::console::{Auth, cli, http, replenish};
use support::engine::{Engine, HIGH_LIMITS, loopback_pair};
use support::smsc::Smsc;
use tokio_util::sync::CancellationToken;

/// Prepaid accounts of `fixtures/reference/accounts.csv` (carrier-a, active) and MINs.
const SUBSCRIBERS: [(&str, &str); 6] = [
    ("4761739001010010", "2065550101"),
    ("4761739001010077", "2065550107"),
    ("4761739001010093", "2065550109"),
    ("4761739001010119", "2065550111"),
    ("4761739001010135", "2065550113"),
    ("4761739001010150", "2065550115"),
];
/// Debit accounts of `fixtures/channels/bank-accounts.csv`: 10,000.00, 2,500.00, 500.00
/// and 10.00.
const RICH: &str = "5413330000000019";
const POOR: &str = "5413330000000043";
const PIN: &str = "4321";

/// A switch with channels, its bank and its engine.
struct Channels {
    child: Child,
    dir: tempfile::TempDir,
    config: PathBuf,
    base: String,
    console: String,
    /// The metrics listener.
    metrics: String,
    token: String,
    activation: String,
    bank: BankSim,
    _bank_stop: CancellationToken,
    engine: Engine,
    /// The SMSC the switch sends its SMS to (none where Node.js cannot be had).
    smsc: Option<Smsc>,
}

impl Drop for Channels {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An answer of the channel API.
#[derive(Debug, Clone)]
struct Answer {
    status: u16,
    body: Value,
    replayed: bool,
}

fn bank_accounts(dir: &std::path::Path) -> PathBuf {
    // The fixture's accounts, and a rich one per subscriber for the crash test.
    let mut text =
        std::fs::read_to_string(support::root().join("fixtures/channels/bank-accounts.csv"))
            .expect("fixture");
    for n in 1..=SUBSCRIBERS.len() {
        text.push_str(&format!("54133300000010{n:02},100000000\n"));
    }
    let path = dir.join("bank-accounts.csv");
    std::fs::write(&path, text).expect("bank accounts");
    path
}

async fn start(response_timeout: &str) -> Channels {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = Engine::start(&dir.path().join("ledger.jsonl"), &loopback_pair()).await;
    let bank_stop = CancellationToken::new();
    let bank = banksim::start(
        BankConfig {
            listen: vec!["127.0.0.1:0".parse().expect("addr"); 2],
            accounts: bank_accounts(dir.path()),
            ledger: Some(dir.path().join("bank.jsonl")),
            spec: Arc::new(Spec::resolve("iso87ascii").expect("spec")),
            codec: FrameCodec::new(LengthHeader::Binary2),
            sync: false,
        },
        bank_stop.clone(),
    )
    .await
    .expect("bank-sim");
    let [acquirer, console, channels, metrics] = support::free_ports::<4>();
    let smsc = Smsc::start(dir.path(), "replenish", "s3cret", &[]);
    let sms = match &smsc {
        Some(smsc) => {
            let password = dir.path().join("smsc.password");
            std::fs::write(&password, "s3cret\n").expect("password");
            format!(
                "\n[notify.sms]\nsmsc = \"{}\"\nsystem_id = \"replenish\"\npassword_file = \"{}\"\nsource_addr = \"7777\"\n",
                smsc.address(),
                password.display()
            )
        }
        None => String::new(),
    };
    let quoted = |addrs: Vec<std::net::SocketAddr>| {
        addrs
            .iter()
            .map(|a| format!("\"{a}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let text = format!(
        r#"
data_dir = "{dir}/data"

[[acquirer]]
name = "bank-a"
listen = "127.0.0.1:{acquirer}"
acquirer_id = "00012345"

[[engine]]
name = "prepaid"
carriers = ["*"]
links = [{engine}]
ack_timeout = "400ms"
echo_interval = "1s"

[[debit_bank]]
name = "first-bank"
links = [{bank}]
acquirer_id = "00099999"
response_timeout = "{response_timeout}"
echo_interval = "1s"

[debit_bank.retry_backoff]
initial = "50ms"
max = "300ms"

[channels]
listen = "127.0.0.1:{channels}"

[[feature_code]]
code = "*25"
amount = 2500

[[ivr_number]]
number = "18005552525"
amount = 2500

[console]
listen = "127.0.0.1:{console}"

[metrics]
listen = "127.0.0.1:{metrics}"
{sms}
{HIGH_LIMITS}
"#,
        dir = dir.path().display(),
        engine = quoted(engine.addrs()),
        bank = quoted(bank.listeners.iter().map(|(a, _)| *a).collect()),
    );
    let config = dir.path().join("switch.toml");
    std::fs::write(&config, text).expect("config");
    let locations = dir.path().join("locations.csv");
    std::fs::write(
        &locations,
        "location,name,retailer,authorized\nCHANNELS,Self-service channels,replenish,true\n",
    )
    .expect("locations");
    let accounts = support::root().join("fixtures/reference/accounts.csv");
    for args in [
        vec!["accounts", "import", accounts.to_str().expect("path")],
        vec!["locations", "import", locations.to_str().expect("path")],
    ] {
        let (code, out) = cli(&config, &args, "");
        assert_eq!(code, 0, "{out}");
    }
    let token = |name: &str, scope: &str| {
        let (code, out) = cli(&config, &["clients", "add", name, "--scope", scope], "");
        assert_eq!(code, 0, "{out}");
        out.lines().last().expect("token").trim().to_owned()
    };
    let (token, activation) = (token("gateway", "channels"), token("ivr", "activation"));
    let mut running = Channels {
        child: serve(&config, dir.path()),
        base: format!("http://127.0.0.1:{channels}"),
        console: format!("http://127.0.0.1:{console}"),
        metrics: format!("127.0.0.1:{metrics}"),
        dir,
        config,
        token,
        activation,
        bank,
        _bank_stop: bank_stop,
        engine,
        smsc,
    };
    running.wait_up().await;
    running
}

fn serve(config: &std::path::Path, dir: &std::path::Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("serve.log"))
        .expect("log");
    replenish()
        .args(["serve", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("replenish serve")
}

impl Channels {
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("serve.log")).unwrap_or_default()
    }

    async fn wait_up(&mut self) {
        for _ in 0..600 {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("replenish serve exited ({status}): {}", self.log());
            }
            let (base, console) = (self.base.clone(), self.console.clone());
            let up = off(move || {
                let open =
                    |b: &str| std::net::TcpStream::connect(b.trim_start_matches("http://")).is_ok();
                open(&base) && open(&console)
            })
            .await;
            if up {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the channel API did not answer: {}", self.log());
    }

    /// Enrols subscriber `n` with the PIN and `debit_account` through the IVR client's
    /// activation.
    async fn enrol(&self, n: usize, debit_account: &str) {
        let (account, min) = SUBSCRIBERS[n];
        let body = json!({"account": account, "min": min, "pin": PIN,
                          "debit_bank": "first-bank", "debit_account": debit_account});
        let (console, auth) = (self.console.clone(), Auth::Bearer(self.activation.clone()));
        let (status, text, _) =
            off(move || http(&console, "POST", "/api/v1/activations", &auth, Some(&body))).await;
        assert_eq!(status, 200, "enrolment of {account}: {text}");
    }

    async fn post(&self, key: &str, body: Value) -> Answer {
        post_with(&self.base, &self.token, key, body).await
    }

    async fn get(&self, key: &str) -> Answer {
        let (base, token) = (self.base.clone(), self.token.clone());
        let path = format!("/api/v1/replenishments/{key}");
        let (status, text, _) =
            off(move || http(&base, "GET", &path, &Auth::Bearer(token), None)).await;
        Answer {
            status,
            body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
            replayed: false,
        }
    }

    /// The answer of `GET` once it is no longer pending (or after 15 s).
    async fn end_of(&self, key: &str) -> Answer {
        for _ in 0..300 {
            let answer = self.get(key).await;
            if answer.body["status"] != "pending" {
                return answer;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.get(key).await
    }

    /// What `replenish status` shows: `GET /status` on the metrics listener.
    async fn status(&self) -> Status {
        let addr = self.metrics.parse().expect("metrics address");
        off(move || replenish::operate::metrics::fetch_status(addr))
            .await
            .expect("status")
    }

    /// The debits of the first bank waiting for their reversal's acknowledgement, once
    /// they are `want` (or after 5 s).
    async fn reversals_due(&self, want: u64) -> u64 {
        let due = |status: Status| status.self_service.debit_banks[0].reversals_due;
        for _ in 0..100 {
            if due(self.status().await) == want {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        due(self.status().await)
    }

    fn balance(&self, account: &str) -> u64 {
        self.bank.balance(account).expect("a bank account")
    }

    /// The engine's balance of `min` once it reaches `want` (or after 10 s).
    async fn credited(&self, min: &str, want: i64) -> i64 {
        for _ in 0..200 {
            if self.engine.balance(min) == want {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.engine.balance(min)
    }
}

async fn post_with(base: &str, token: &str, key: &str, body: Value) -> Answer {
    (try_post(base, token, key, body).await).expect("the channel API answers")
}

/// A `POST`, or `None` when the connection failed (the switch was killed).
async fn try_post(base: &str, token: &str, key: &str, body: Value) -> Option<Answer> {
    let (base, token, key) = (base.to_owned(), token.to_owned(), key.to_owned());
    off(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let request = ureq::http::Request::builder()
            .method("POST")
            .uri(format!("{base}/api/v1/replenishments"))
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {token}"))
            .header("idempotency-key", key)
            .body(body.to_string().into_bytes())
            .expect("request");
        let mut response = agent.run(request).ok()?;
        let replayed = (response.headers().get("idempotency-replayed"))
            .is_some_and(|v| v.as_bytes() == b"true");
        let text = response.body_mut().read_to_string().unwrap_or_default();
        Some(Answer {
            status: response.status().as_u16(),
            body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
            replayed,
        })
    })
    .await
}

async fn off<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(work)
        .await
        .expect("blocking work")
}

fn web(n: usize, amount: u64, pin: &str) -> Value {
    json!({"channel": "web", "min": SUBSCRIBERS[n].1, "pin": pin, "amount": amount})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_row_of_the_section_6_table() {
    let switch = start("2s").await;
    for n in 0..4 {
        switch.enrol(n, RICH).await;
    }
    switch.enrol(4, POOR).await;
    let (rich, poor) = (switch.balance(RICH), switch.balance(POOR));

    // Bank 00, credited: 201 with the confirmation number; one debit, one credit.
    let first = switch.post("web-1", web(0, 2500, PIN)).await;
    assert_eq!(first.status, 201, "{:?}\n{}", first.body, switch.log());
    assert_eq!(first.body["status"], "completed");
    assert_eq!(first.body["id"], "web-1");
    assert_eq!(first.body["amount"], 2500);
    let confirmation = first.body["confirmation"]
        .as_str()
        .expect("confirmation")
        .to_owned();
    assert_eq!(confirmation.len(), 12);
    assert!(!first.replayed);
    assert_eq!(switch.balance(RICH), rich - 2500);
    let credited = switch.credited(SUBSCRIBERS[0].1, 2500).await;
    assert_eq!(credited, 2500, "{}", switch.log());

    // Same key, same body: the first answer again, replayed, no second debit.
    let again = switch.post("web-1", web(0, 2500, PIN)).await;
    assert_eq!(
        (again.status, &again.body, again.replayed),
        (201, &first.body, true)
    );
    assert_eq!(switch.balance(RICH), rich - 2500);
    // Same key, another body: 422.
    let other = switch.post("web-1", web(0, 3000, PIN)).await;
    assert_eq!(
        (other.status, other.body["error"].as_str()),
        (422, Some("key_reused"))
    );

    // The wireless feature code and the IVR number, by MIN and ANI.
    let dialed =
        json!({"channel": "wireless", "min": SUBSCRIBERS[1].1, "dialed": format!("*25{PIN}")});
    let wireless = switch.post("wireless-1", dialed).await;
    assert_eq!(wireless.status, 201, "{:?}", wireless.body);
    let call = json!({"channel": "ivr", "ani": SUBSCRIBERS[2].1, "dialed_number": "18005552525", "pin": PIN});
    let ivr = switch.post("ivr-1", call).await;
    assert_eq!(ivr.status, 201, "{:?}", ivr.body);
    let by_account =
        json!({"channel": "web", "account": SUBSCRIBERS[3].0, "pin": PIN, "amount": 1000});
    assert_eq!(switch.post("web-acct", by_account).await.status, 201);
    assert_eq!(switch.balance(RICH), rich - 2500 * 3 - 1000);
    assert_eq!(switch.credited(SUBSCRIBERS[1].1, 2500).await, 2500);
    assert_eq!(switch.credited(SUBSCRIBERS[2].1, 2500).await, 2500);

    // Bank declined: 402 insufficient_funds, nothing debited or credited.
    let declined = switch.post("poor-1", web(4, 2500, PIN)).await;
    assert_eq!(declined.status, 402, "{:?}", declined.body);
    assert_eq!(declined.body["reason"], "insufficient_funds");
    assert_eq!(switch.balance(POOR), poor);
    // The rules of step 303 before the debit: over the maximum amount.
    let too_much = switch.post("big-1", web(0, 99_999_999_999, PIN)).await;
    assert_eq!(too_much.status, 402, "{:?}", too_much.body);
    assert_eq!(too_much.body["reason"], "over_maximum");
    assert_eq!(switch.balance(RICH), rich - 2500 * 3 - 1000);

    // Bad bodies and unknown codes: 422, nothing journaled.
    for body in [
        json!({"channel": "fax"}),
        json!({"channel": "wireless", "min": SUBSCRIBERS[1].1, "dialed": "*994321"}),
        json!({"channel": "ivr", "ani": SUBSCRIBERS[2].1, "dialed_number": "18009999999", "pin": PIN}),
    ] {
        let bad = switch.post("bad-1", body.clone()).await;
        assert_eq!(bad.status, 422, "{body}: {:?}", bad.body);
        assert!(!bad.body.to_string().contains(PIN), "{:?}", bad.body);
    }
    assert_eq!(
        switch
            .post(
                "nobody",
                json!({"channel": "web", "min": "2065550199", "pin": PIN, "amount": 100})
            )
            .await
            .status,
        422
    );
    assert_eq!(switch.post("", web(0, 100, PIN)).await.status, 422);

    // Not a channels client: 401 unauthorized.
    let stranger = post_with(&switch.base, &switch.activation, "k", web(0, 100, PIN)).await;
    assert_eq!(
        (stranger.status, stranger.body["error"].as_str()),
        (401, Some("unauthorized"))
    );

    // GET tells where a request stands; 404 for a key never used.
    let shown = switch.get("web-1").await;
    assert_eq!((shown.status, &shown.body), (200, &first.body));
    assert_eq!(switch.get("never").await.status, 404);
    let declined_shown = switch.get("poor-1").await;
    assert_eq!(declined_shown.body["status"], "declined");

    // The SMS: a receipt with the confirmation number to the MIN of each completed
    // request, a failure to the one whose bank declined; none for a bad body.
    match &switch.smsc {
        None => eprintln!("SKIPPED: the SMS part (no SMSC)"),
        Some(smsc) => {
            let received = smsc.wait_for(6).await;
            let to = |min: &str| -> Vec<String> {
                (received.iter())
                    .filter(|m| m["destination_addr"] == min)
                    .filter_map(|m| m["short_message"].as_str().map(str::to_owned))
                    .collect()
            };
            assert_eq!(
                to(SUBSCRIBERS[0].1),
                vec![format!(
                    "Replenishment of 25.00 credited to your prepaid account. Confirmation {confirmation}."
                ), "Your replenishment of 999999999.99 did not go through: more than a replenishment may be. Nothing was taken from your account.".to_owned()],
                "{received:?}"
            );
            assert_eq!(
                to(SUBSCRIBERS[4].1),
                vec!["Your replenishment of 25.00 did not go through: insufficient funds in your bank account. Nothing was taken from your account.".to_owned()]
            );
            for (_, min) in &SUBSCRIBERS[1..4] {
                let texts = to(min);
                assert_eq!(texts.len(), 1, "{received:?}");
                assert!(texts[0].starts_with("Replenishment of "), "{texts:?}");
            }
            assert!(
                received
                    .iter()
                    .all(|m| m["source_addr"] == "7777" && m["esm_class"] == 0)
            );
            assert_eq!(received.len(), 6, "{received:?}");
        }
    }

    // What an operator sees: the answers by channel, outcome and reason (a replay or a
    // body the API refused is not a request), the bank's two links up, nothing to reverse.
    let status = switch.status().await;
    let answered: Vec<(&str, &str, &str, u64)> = (status.self_service.answered.iter())
        .map(|a| {
            (
                a.channel.as_str(),
                a.outcome.as_str(),
                a.reason.as_str(),
                a.count,
            )
        })
        .collect();
    assert_eq!(
        answered,
        [
            ("ivr", "completed", "", 1),
            ("web", "completed", "", 2),
            ("web", "declined", "insufficient_funds", 1),
            ("web", "declined", "over_maximum", 1),
            ("web", "refused", "not_enrolled", 1),
            ("wireless", "completed", "", 1),
        ]
    );
    let bank = &status.self_service.debit_banks[..];
    assert_eq!(bank.len(), 1, "{bank:?}");
    assert_eq!(
        (bank[0].name.as_str(), bank[0].reversals_due),
        ("first-bank", 0)
    );
    assert!(
        bank[0].links.len() == 2 && bank[0].links.iter().all(|l| l.1),
        "{bank:?}"
    );
    let shown = status.to_string();
    assert!(shown.contains("debit banks\n  first-bank"), "{shown}");
    let metrics = switch.metrics.clone();
    let (code, text, _) = off(move || {
        http(
            &format!("http://{metrics}"),
            "GET",
            "/metrics",
            &Auth::None,
            None,
        )
    })
    .await;
    assert_eq!(code, 200);
    for line in [
        r#"replenish_channel_requests_total{channel="web",outcome="completed",reason=""} 2"#,
        r#"replenish_channel_request_seconds_count{channel="web"} 5"#,
        r#"replenish_debit_reversals_due{bank="first-bank"} 0"#,
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
    }

    // The OpenAPI document.
    let (base, path) = (switch.base.clone(), "/api/v1/openapi.json");
    let (status, text, _) = off(move || http(&base, "GET", path, &Auth::None, None)).await;
    assert_eq!(status, 200);
    let served: Value = serde_json::from_str(&text).expect("JSON");
    let file =
        std::fs::read_to_string(support::root().join("specs/channels.openapi.json")).expect("spec");
    assert_eq!(served, serde_json::from_str::<Value>(&file).expect("JSON"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_wrong_pins_lock_until_an_operator_unlocks() {
    let switch = start("2s").await;
    switch.enrol(0, RICH).await;
    let rich = switch.balance(RICH);
    for (n, left) in [(1, 2), (2, 1)] {
        let wrong = switch
            .post(&format!("wrong-{n}"), web(0, 2500, "9999"))
            .await;
        assert_eq!(wrong.status, 401, "{:?}", wrong.body);
        assert_eq!(
            wrong.body,
            json!({"error": "wrong_pin", "attempts_left": left})
        );
    }
    // Replaying a wrong PIN's key answers it again without counting it again.
    let replay = switch.post("wrong-1", web(0, 2500, "9999")).await;
    assert_eq!((replay.status, replay.replayed), (401, true));
    assert_eq!(replay.body["attempts_left"], 2);
    let third = switch.post("wrong-3", web(0, 2500, "9999")).await;
    assert_eq!(
        (third.status, &third.body),
        (423, &json!({"error": "locked"}))
    );
    let right = switch.post("right-locked", web(0, 2500, PIN)).await;
    assert_eq!(right.status, 423, "the right PIN too while locked");
    assert_eq!(switch.balance(RICH), rich, "nothing debited");

    // Each wrong PIN is in the fraud log, the account masked and no PIN.
    let fraud_log = switch.dir.path().join("data/fraud.jsonl");
    let mut fraud = String::new();
    for _ in 0..100 {
        fraud = std::fs::read_to_string(&fraud_log).unwrap_or_default();
        if fraud.matches("wrong channel PIN").count() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let lines: Vec<&str> = fraud
        .lines()
        .filter(|l| l.contains("wrong channel PIN"))
        .collect();
    assert_eq!(lines.len(), 3, "{fraud}");
    assert!(
        lines
            .iter()
            .all(|l| l.contains("476173******0010") && !l.contains("9999"))
    );

    // A CSR unlocks on the console (no four eyes); the right PIN goes through.
    support::console::add_user(&switch.config, "ana", "csr", "--carrier=carrier-a");
    let console = switch.console.clone();
    let path = format!("/api/v1/accounts/{}/channel-unlock", SUBSCRIBERS[0].0);
    let (status, text) = off(move || {
        let (_, body, cookie) =
            support::console::sign_in(&console, "ana", support::console::PASSWORD);
        let session = support::console::Session {
            cookie: cookie.expect("cookie"),
            csrf: body["csrf"].as_str().expect("csrf").to_owned(),
        };
        let (status, text, _) = http(&console, "POST", &path, &Auth::Session(session, true), None);
        (status, text)
    })
    .await;
    assert_eq!(status, 200, "{text}");
    let after = switch.post("right-unlocked", web(0, 2500, PIN)).await;
    assert_eq!(after.status, 201, "{:?}", after.body);
    assert_eq!(switch.balance(RICH), rich - 2500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bank_that_does_not_answer_is_declined_and_reversed_until_it_acknowledges() {
    let switch = start("1s").await;
    switch.enrol(0, RICH).await;
    let rich = switch.balance(RICH);
    // The bank debits but never answers, on both links (reversals included).
    for (_, faults) in &switch.bank.listeners {
        faults.drop_ack_percent.store(100, Ordering::Relaxed);
    }
    let lost = switch.post("lost-1", web(0, 2500, PIN)).await;
    assert_eq!(lost.status, 402, "{:?}", lost.body);
    assert_eq!(lost.body["reason"], "bank_unavailable");
    assert_eq!(switch.reversals_due(1).await, 1, "the operator sees it");
    // The 0420 and 0421s reach the bank (it applies them): the money is back.
    for _ in 0..100 {
        if switch.balance(RICH) == rich {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        switch.balance(RICH),
        rich,
        "the reversal put the debit back"
    );
    let mut log = String::new();
    for _ in 0..100 {
        log = switch.log();
        if log.contains("repeating it as 0421") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        log.contains("repeating it as 0421"),
        "repeats go out: {log}"
    );
    // Once the bank answers again the reversal is acknowledged, and nothing was credited.
    for (_, faults) in &switch.bank.listeners {
        faults.drop_ack_percent.store(0, Ordering::Relaxed);
    }
    let mut acknowledged = false;
    for _ in 0..100 {
        if switch.log().contains("debit reversal acknowledged") {
            acknowledged = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(acknowledged, "{}", switch.log());
    assert_eq!(switch.reversals_due(0).await, 0);
    assert_eq!(switch.engine.balance(SUBSCRIBERS[0].1), 0);

    // A bank slower than a request's turn: the second request of the same account waits
    // for the first and is answered 202, then GET tells its end.
    for (_, faults) in &switch.bank.listeners {
        faults.delay_ack_ms.store(900, Ordering::Relaxed);
    }
    let ahead: Vec<_> = ["slow-1", "slow-2"]
        .into_iter()
        .map(|key| {
            let (base, token) = (switch.base.clone(), switch.token.clone());
            tokio::spawn(async move { post_with(&base, &token, key, web(0, 100, PIN)).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let third = switch.post("slow-3", web(0, 100, PIN)).await;
    for earlier in ahead {
        assert_eq!(earlier.await.expect("earlier").status, 201);
    }
    assert_eq!(
        (third.status, &third.body["status"]),
        (202, &json!("pending")),
        "{:?}",
        third.body
    );
    let end = switch.end_of("slow-3").await;
    assert_eq!(end.body["status"], "completed", "{:?}", end.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reversal_due_at_a_kill_is_repeated_as_0421_after_the_restart() {
    let mut switch = start("1s").await;
    switch.enrol(0, RICH).await;
    let rich = switch.balance(RICH);
    // The bank applies what it gets but answers nothing: the reversal stays due.
    for (_, faults) in &switch.bank.listeners {
        faults.drop_ack_percent.store(100, Ordering::Relaxed);
    }
    let lost = switch.post("lost-1", web(0, 2500, PIN)).await;
    assert_eq!(lost.body["reason"], "bank_unavailable", "{:?}", lost.body);
    assert_eq!(switch.reversals_due(1).await, 1);
    switch.child.kill().expect("SIGKILL");
    let _ = switch.child.wait();
    for (_, faults) in &switch.bank.listeners {
        faults.drop_ack_percent.store(0, Ordering::Relaxed);
    }
    let before = switch.log().len();
    switch.child = serve(&switch.config, switch.dir.path());
    switch.wait_up().await;
    assert_eq!(switch.reversals_due(0).await, 0, "{}", switch.log());
    let resumed = switch.log()[before..].to_owned();
    let sent: Vec<&str> = (resumed.lines())
        .filter(|l| l.contains("reversal 04"))
        .collect();
    assert!(
        !sent.is_empty() && sent.iter().all(|l| l.contains("reversal 0421 sent")),
        "after the restart only repeats go out: {resumed}"
    );
    assert!(resumed.contains("debit reversal acknowledged"), "{resumed}");
    // The bank put the money back once, and nothing reached the engine.
    assert_eq!(switch.balance(RICH), rich);
    assert_eq!(switch.engine.balance(SUBSCRIBERS[0].1), 0);
    let answer = switch.get("lost-1").await;
    assert_eq!(answer.body["reason"], "bank_unavailable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_late_approval_changes_nothing_and_a_silent_link_fails_over() {
    let switch = start("1s").await;
    switch.enrol(0, RICH).await;
    let rich = switch.balance(RICH);
    // The bank answers 00, but after response_timeout: the request is declined, the
    // reversal goes out, the late 0210 is only logged, and nothing is credited.
    for (_, faults) in &switch.bank.listeners {
        faults.delay_ack_ms.store(1500, Ordering::Relaxed);
    }
    let late = switch.post("late-1", web(0, 2500, PIN)).await;
    assert_eq!(late.status, 402, "{:?}", late.body);
    assert_eq!(late.body["reason"], "bank_unavailable");
    let mut log = String::new();
    for _ in 0..100 {
        log = switch.log();
        if log.contains("late reply 0210") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(log.contains("late reply 0210"), "{log}");
    for (_, faults) in &switch.bank.listeners {
        faults.delay_ack_ms.store(0, Ordering::Relaxed);
    }
    for _ in 0..100 {
        if switch.log().contains("debit reversal acknowledged") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(switch.balance(RICH), rich, "the late debit was put back");
    assert_eq!(switch.get("late-1").await.body["status"], "declined");
    assert_eq!(
        switch.engine.balance(SUBSCRIBERS[0].1),
        0,
        "nothing credited"
    );

    // The primary link goes silent (echoes unanswered too): the switch marks it down
    // and debits over the other one.
    switch.bank.listeners[0]
        .1
        .silent
        .store(true, Ordering::Relaxed);
    for _ in 0..100 {
        if switch.log().matches("link down").count() >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let over_second = switch.post("failover-1", web(0, 2500, PIN)).await;
    assert_eq!(
        over_second.status,
        201,
        "{:?}\n{}",
        over_second.body,
        switch.log()
    );
    assert_eq!(switch.balance(RICH), rich - 2500);
    assert_eq!(switch.credited(SUBSCRIBERS[0].1, 2500).await, 2500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_copies_of_one_request_debit_once() {
    let switch = start("2s").await;
    switch.enrol(0, RICH).await;
    let rich = switch.balance(RICH);
    let copies: Vec<_> = (0..6)
        .map(|_| {
            let (base, token) = (switch.base.clone(), switch.token.clone());
            tokio::spawn(async move { post_with(&base, &token, "same", web(0, 2500, PIN)).await })
        })
        .collect();
    let mut answers = Vec::new();
    for copy in copies {
        answers.push(copy.await.expect("copy"));
    }
    assert!(
        answers
            .iter()
            .all(|a| a.status == 201 && a.body == answers[0].body),
        "{answers:?}"
    );
    assert_eq!(
        answers.iter().filter(|a| !a.replayed).count(),
        1,
        "{answers:?}"
    );
    assert_eq!(switch.balance(RICH), rich - 2500, "one debit");
    assert_eq!(switch.credited(SUBSCRIBERS[0].1, 2500).await, 2500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_mid_stream_leaves_each_201_debited_and_credited_once_and_each_402_neither() {
    let mut switch = start("2s").await;
    let accounts: Vec<String> = (1..=SUBSCRIBERS.len())
        .map(|n| format!("54133300000010{n:02}"))
        .collect();
    for (n, account) in accounts.iter().enumerate() {
        switch.enrol(n, account).await;
    }
    let opening: u64 = accounts.iter().map(|a| switch.balance(a)).sum();
    // A bank that takes its time: the kill finds debits out without their answers.
    for (_, faults) in &switch.bank.listeners {
        faults.delay_ack_ms.store(150, Ordering::Relaxed);
    }
    // One stream per subscriber; every fourth request asks more than the rules allow
    // (a 402 before any debit).
    let answered = Arc::new(std::sync::Mutex::new(Vec::<(String, Answer)>::new()));
    let stop = CancellationToken::new();
    let mut streams = Vec::new();
    for n in 0..SUBSCRIBERS.len() {
        let (base, token, answered, stop) = (
            switch.base.clone(),
            switch.token.clone(),
            answered.clone(),
            stop.clone(),
        );
        streams.push(tokio::spawn(async move {
            for i in 0.. {
                if stop.is_cancelled() {
                    return;
                }
                let key = format!("s{n}-{i}");
                let amount = if i % 4 == 3 { 99_999_999_999 } else { 100 + i };
                let (base, token, body) = (base.clone(), token.clone(), web(n, amount, PIN));
                match try_post(&base, &token, &key, body).await {
                    Some(answer) => answered
                        .lock()
                        .expect("answers")
                        .push((format!("s{n}-{i}"), answer)),
                    None => return, // the connection died with the switch
                }
            }
        }));
    }
    for _ in 0..600 {
        if answered.lock().expect("answers").len() >= 60 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // SIGKILL: no shutdown, whatever is in flight is cut.
    switch.child.kill().expect("SIGKILL");
    let _ = switch.child.wait();
    stop.cancel();
    for stream in streams {
        let _ = stream.await;
    }
    let before: Vec<(String, Answer)> = answered.lock().expect("answers").clone();
    assert!(before.len() >= 60, "{} answers", before.len());
    switch.child = serve(&switch.config, switch.dir.path());
    switch.wait_up().await;

    // Every key sent (answered or cut) has an end now; replays keep their answers.
    let mut completed = 0u64;
    let mut amount = 0u64;
    let mut unanswered = 0;
    let highest = before.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
    for (key, answer) in &before {
        let replay = switch.post(key, body_of(key)).await;
        match answer.status {
            201 => assert_eq!((replay.status, &replay.body), (201, &answer.body), "{key}"),
            402 => assert_eq!(replay.status, 402, "{key}: {:?}", replay.body),
            202 => {}
            other => panic!("{key}: answered {other} {:?}", answer.body),
        }
    }
    // Count the ends of every key any stream may have sent (answered or cut by the kill).
    for n in 0..SUBSCRIBERS.len() {
        let sent = highest
            .iter()
            .filter(|k| k.starts_with(&format!("s{n}-")))
            .count()
            + 1;
        for i in 0..sent {
            let key = format!("s{n}-{i}");
            let end = switch.end_of(&key).await;
            match (end.status, end.body["status"].as_str()) {
                (404, _) => {} // cut before the switch took it
                _ if !before.iter().any(|(k, _)| *k == key) => {
                    unanswered += 1;
                    if end.body["status"] == "completed" {
                        completed += 1;
                        amount += end.body["amount"].as_u64().expect("amount");
                    }
                }
                (200, Some("completed")) => {
                    completed += 1;
                    amount += end.body["amount"].as_u64().expect("amount");
                }
                (200, Some("declined")) => {}
                other => panic!("{key}: {other:?} {:?}", end.body),
            }
        }
    }
    // Reversals of debits the crash left without an answer settle at the bank.
    let mut debited = 0;
    for _ in 0..200 {
        let closing: u64 = accounts.iter().map(|a| switch.balance(a)).sum();
        debited = opening - closing;
        if debited == amount {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        debited, amount,
        "the bank holds exactly the completed requests' debits ({completed} completed)"
    );
    let mut credited = 0;
    for _ in 0..200 {
        credited = SUBSCRIBERS
            .iter()
            .map(|(_, min)| switch.engine.balance(min))
            .sum::<i64>();
        if credited == amount as i64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        credited, amount as i64,
        "the engine credited exactly the completed requests"
    );
    let declined = before.iter().filter(|(_, a)| a.status == 402).count();
    eprintln!(
        "{} answered before the kill ({declined} declined), {unanswered} taken but unanswered; {completed} completed in all, {amount} debited and credited",
        before.len()
    );
    assert!(completed > 0 && declined > 0);
}

/// The body a stream key was sent with.
fn body_of(key: &str) -> Value {
    let (n, i) = key[1..].split_once('-').expect("sN-I");
    let (n, i): (usize, u64) = (n.parse().expect("n"), i.parse().expect("i"));
    let amount = if i % 4 == 3 { 99_999_999_999 } else { 100 + i };
    web(n, amount, PIN)
}
