//! The `replenish serve` process under abuse: killed with SIGKILL in the middle of a
//! load of thousands of requests and restarted, and stopped with SIGTERM while requests
//! are in flight. What an acquirer was told must hold: every request that received an
//! answer gets the identical answer again after the restart (it was durable before it
//! was sent), no approval is credited twice, and the data directory opens cleanly.

mod support;

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use replenish::config::Config;
use replenish::durable::store::Store;
use replenish::vocab::confirmation::ConfirmationNumbers;
use replenish::wire::iso8583::Message;
use support::{Client, free_port, free_ports, request, root};

/// Sample accounts that approve: active, unexpired, with a MIN and a routed carrier
/// (see fixtures/reference/README.md).
fn active_accounts() -> Vec<String> {
    let text =
        std::fs::read_to_string(root().join("fixtures/reference/accounts.csv")).expect("accounts");
    text.lines()
        .skip(1)
        .filter(|l| l.contains(",active,") && !l.contains(",,") && !l.contains("unrouted"))
        .filter(|l| !l.ends_with("2024-01"))
        .filter_map(|l| l.split(',').next().map(str::to_owned))
        .collect()
}

/// A config with limits no load here reaches, written to `dir/replenish.toml`.
fn write_config(dir: &Path, port: u16) -> std::path::PathBuf {
    write_config_with(dir, port, DUMMY_ENGINES)
}

/// Engines that are never reachable: credits stay in the outbox.
const DUMMY_ENGINES: &str = r#"
[[engine]]
name = "engine-a"
carriers = ["carrier-a"]
links = ["127.0.0.1:1"]

[[engine]]
name = "engine-b"
carriers = ["carrier-b"]
links = ["127.0.0.1:3"]
"#;

fn write_config_with(dir: &Path, port: u16, engines: &str) -> std::path::PathBuf {
    let text = format!(
        r#"
data_dir = "{dir}/data"

[[acquirer]]
name = "bank-a"
listen = "127.0.0.1:{port}"
acquirer_id = "00012345"
{engines}
[limits]
daily_count = 1000000
daily_amount = 1000000000000
"#,
        dir = dir.display()
    );
    let path = dir.join("replenish.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

fn replenish(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_replenish"));
    command.args(args);
    command
}

fn import(config: &Path) {
    for (table, file) in [("accounts", "accounts.csv"), ("locations", "locations.csv")] {
        let path = root().join("fixtures/reference").join(file);
        let output = replenish(&[table, "import"])
            .arg(&path)
            .arg("--config")
            .arg(config)
            .output()
            .expect("run import");
        assert!(output.status.success(), "{output:?}");
    }
}

/// Starts `replenish serve` and waits until it accepts connections.
async fn serve(config: &Path, addr: SocketAddr, log: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log file");
    let mut child = replenish(&["serve", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start replenish serve");
    for _ in 0..1000 {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("replenish serve exited ({status}) before listening on {addr}: see its log");
        }
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return child;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("replenish serve did not listen on {addr}");
}

/// Request `n` of a load: unique STAN per connection's terminal, accounts in turn.
fn nth(connection: usize, n: u32, accounts: &[String]) -> Message {
    let account = &accounts[(n as usize + connection) % accounts.len()];
    let mut message = request(n, 1000 + u64::from(n % 50), account);
    message.set(41, format!("CRASH{connection:03}"));
    message
}

/// Sends requests `0..` on one connection with a window of `window` in flight until
/// the connection breaks; returns the answers received, by STAN.
async fn pump(
    addr: SocketAddr,
    connection: usize,
    accounts: Vec<String>,
    window: u32,
    answered: Arc<AtomicUsize>,
) -> HashMap<u32, Message> {
    pump_with(nth, addr, connection, accounts, window, answered).await
}

/// [`pump`] with the requests `make` builds.
async fn pump_with(
    make: fn(usize, u32, &[String]) -> Message,
    addr: SocketAddr,
    connection: usize,
    accounts: Vec<String>,
    window: u32,
    answered: Arc<AtomicUsize>,
) -> HashMap<u32, Message> {
    let mut client = Client::connect(addr).await;
    let mut answers = HashMap::new();
    let mut sent = 0u32;
    loop {
        while sent < answers.len() as u32 + window {
            sent += 1;
            if !client.try_send(&make(connection, sent, &accounts)).await {
                return answers;
            }
        }
        match client.try_receive().await {
            Some(answer) => {
                let stan = answer.text(11).and_then(|s| s.parse().ok()).expect("DE11");
                answers.insert(stan, answer);
                answered.fetch_add(1, Ordering::Relaxed);
            }
            None => return answers,
        }
    }
}

/// Kills `server` with SIGKILL once `count` answers came (or a minute passed) and
/// returns what each of `pumps` was answered.
async fn kill_after(
    mut server: Child,
    answered: &AtomicUsize,
    count: usize,
    pumps: Vec<tokio::task::JoinHandle<HashMap<u32, Message>>>,
) -> Vec<HashMap<u32, Message>> {
    let started = std::time::Instant::now();
    while answered.load(Ordering::Relaxed) < count && started.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.kill().expect("SIGKILL");
    server.wait().expect("reaped");
    let mut before = Vec::new();
    for pump in pumps {
        before.push(pump.await.expect("pump"));
    }
    before
}

fn confirmations(answers: &[HashMap<u32, Message>]) -> BTreeSet<String> {
    answers
        .iter()
        .flat_map(|a| a.values())
        .filter_map(|m| m.text(62).map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_load_loses_no_answered_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let config_path = write_config(dir.path(), port);
    import(&config_path);
    let log = dir.path().join("serve.log");
    let accounts = active_accounts();
    assert!(accounts.len() >= 10, "{accounts:?}");

    let server = serve(&config_path, addr, &log).await;
    let answered = Arc::new(AtomicUsize::new(0));
    let pumps: Vec<_> = (0..4)
        .map(|c| tokio::spawn(pump(addr, c, accounts.clone(), 32, Arc::clone(&answered))))
        .collect();
    // Let thousands of requests through, then kill without warning.
    let before = kill_after(server, &answered, 4000, pumps).await;
    let answered: usize = before.iter().map(HashMap::len).sum();
    assert!(answered >= 2000, "only {answered} answers before the kill");
    eprintln!("{answered} answers before SIGKILL");

    // Restart; every answered request gets the identical answer.
    let mut server = serve(&config_path, addr, &log).await;
    for (connection, answers) in before.iter().enumerate() {
        let mut client = Client::connect(addr).await;
        for (&stan, answer) in answers {
            let again = client.exchange(&nth(connection, stan, &accounts)).await;
            assert_eq!(&again, answer, "connection {connection} STAN {stan}");
        }
    }
    // Requests that were in flight at the kill are decided now, or were then: either
    // way each key has one decision.
    let mut after = Vec::new();
    for (connection, answers) in before.iter().enumerate() {
        let mut client = Client::connect(addr).await;
        let mut again = HashMap::new();
        let top = answers.keys().max().copied().unwrap_or(0) + 40;
        for stan in 1..=top {
            let answer = client.exchange(&nth(connection, stan, &accounts)).await;
            again.insert(stan, answer);
        }
        after.push(again);
    }
    Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .expect("kill -TERM");
    let status = server.wait().expect("reaped");
    assert!(status.success(), "SIGTERM exits 0: {status}");

    let config = Config::load(&config_path).expect("config");
    let store = Store::open(&config.data_dir.join("index")).expect("index");
    let outbox: Vec<String> = ["engine-a", "engine-b"]
        .iter()
        .flat_map(|e| store.outbox(e).expect("outbox"))
        .map(|c| c.confirmation)
        .collect();
    let unique: BTreeSet<String> = outbox.iter().cloned().collect();
    assert_eq!(outbox.len(), unique.len(), "one outbox entry per approval");
    assert_eq!(
        unique,
        confirmations(&after),
        "every approval, and only those, credited"
    );
    assert!(confirmations(&before).is_subset(&unique));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_answers_what_is_in_flight_then_exits_0() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let config_path = write_config(dir.path(), port);
    import(&config_path);
    let log = dir.path().join("serve.log");
    let accounts = active_accounts();
    let mut server = serve(&config_path, addr, &log).await;
    // The binary starts itself again with its allocator setting; `exec` keeps the
    // PID, so the supervisor's signal still reaches the switch.
    let environ = std::fs::read(format!("/proc/{}/environ", server.id())).expect("environ");
    assert!(
        environ
            .split(|&b| b == 0)
            .any(|v| v == b"MIMALLOC_PURGE_DELAY=10000"),
        "the switch runs without its allocator setting"
    );

    let mut client = Client::connect(addr).await;
    let burst = 300u32;
    for stan in 1..=burst {
        assert!(client.try_send(&nth(0, stan, &accounts)).await);
    }
    let first = client.try_receive().await.expect("a first answer");
    Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .expect("kill -TERM");
    let mut answers = vec![first];
    while let Some(answer) = client.try_receive().await {
        answers.push(answer);
    }
    let status = server.wait().expect("reaped");
    assert!(status.success(), "exit status {status}");
    eprintln!("{} of {burst} answered around SIGTERM", answers.len());
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(text.contains("draining"), "{text}");

    // Whatever was answered is durable: the restarted switch repeats it exactly.
    let mut server = serve(&config_path, addr, &log).await;
    let mut client = Client::connect(addr).await;
    for answer in &answers {
        let stan: u32 = answer.text(11).and_then(|s| s.parse().ok()).expect("DE11");
        assert_eq!(&client.exchange(&nth(0, stan, &accounts)).await, answer);
    }
    server.kill().expect("kill");
    server.wait().expect("reaped");
}

/// Starts `replenish engine-sim` on two loopback ports with `ledger`.
async fn engine_sim(links: &[SocketAddr; 2], ledger: &Path, log: &Path) -> Child {
    let log = std::fs::File::create(log).expect("sim log");
    let child = replenish(&["engine-sim"])
        .args([
            "--listen",
            &links[0].to_string(),
            "--listen",
            &links[1].to_string(),
        ])
        .arg("--ledger")
        .arg(ledger)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start engine-sim");
    for addr in links {
        for _ in 0..500 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    child
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_load_credits_every_approval_exactly_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Four distinct ports: the acquirer, two engine links, metrics.
    let [port, link_a, link_b, metrics_port] = free_ports::<4>();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let links: [SocketAddr; 2] =
        [link_a, link_b].map(|p| format!("127.0.0.1:{p}").parse().expect("addr"));
    let metrics: SocketAddr = format!("127.0.0.1:{metrics_port}").parse().expect("addr");
    let engines = format!(
        "\n[[engine]]\nname = \"prepaid\"\ncarriers = [\"*\"]\nlinks = [\"{}\", \"{}\"]\nack_timeout = \"500ms\"\n\
         [engine.retry_backoff]\ninitial = \"50ms\"\nmax = \"1s\"\n\n[metrics]\nlisten = \"{metrics}\"\n",
        links[0], links[1]
    );
    let config_path = write_config_with(dir.path(), port, &engines);
    import(&config_path);
    let (log, ledger) = (
        dir.path().join("serve.log"),
        dir.path().join("ledger.jsonl"),
    );
    let mut sim = engine_sim(&links, &ledger, &dir.path().join("sim.log")).await;
    let accounts = active_accounts();

    let mut server = serve(&config_path, addr, &log).await;
    let pumps: Vec<_> = (0..3)
        .map(|c| tokio::spawn(pump(addr, c, accounts.clone(), 16, Arc::default())))
        .collect();
    let started = std::time::Instant::now();
    while std::fs::read_to_string(&ledger)
        .map(|t| t.lines().count())
        .unwrap_or(0)
        < 1500
        && started.elapsed() < Duration::from_secs(60)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.kill().expect("SIGKILL");
    server.wait().expect("reaped");
    let mut before = Vec::new();
    for pump in pumps {
        before.push(pump.await.expect("pump"));
    }

    // Restart: answered requests are repeated identically; the outbox drains.
    let mut server = serve(&config_path, addr, &log).await;
    for (connection, answers) in before.iter().enumerate() {
        let mut client = Client::connect(addr).await;
        for (&stan, answer) in answers {
            let again = client.exchange(&nth(connection, stan, &accounts)).await;
            assert_eq!(&again, answer, "connection {connection} STAN {stan}");
        }
    }
    let approvals = confirmations(&before);
    assert!(approvals.len() >= 1000, "{} approvals", approvals.len());
    // Every approval the switch ever made: those answered, and those decided but
    // unanswered at the kill (in the outbox or already sent).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let credited = loop {
        let text = std::fs::read_to_string(&ledger).unwrap_or_default();
        let lines: Vec<String> = text
            .lines()
            .map(|l| {
                let entry: replenish::tools::simulator::Entry =
                    serde_json::from_str(l).expect("ledger line");
                entry.confirmation
            })
            .collect();
        let unique: BTreeSet<String> = lines.iter().cloned().collect();
        assert_eq!(unique.len(), lines.len(), "a confirmation credited twice");
        if approvals.is_subset(&unique) {
            break unique;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "approvals missing from the ledger"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Let in-flight credits (decided but unanswered at the kill) finish too: the
    // status endpoint shows the outbox draining to zero.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let status =
            tokio::task::spawn_blocking(move || replenish::operate::metrics::fetch_status(metrics))
                .await
                .expect("status task");
        if status.is_ok_and(|s| s.engines.iter().all(|e| e.outbox == 0)) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the outbox never drained"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(server.wait().expect("reaped").success());
    let config = Config::load(&config_path).expect("config");
    let store = Store::open(&config.data_dir.join("index")).expect("index");
    let secret = std::fs::read(config.data_dir.join("confirmation.key")).expect("key");
    let numbers = ConfirmationNumbers::new(&secret);
    let pending: Vec<String> = store
        .outbox("prepaid")
        .expect("outbox")
        .into_iter()
        .map(|c| c.confirmation)
        .collect();
    for confirmation in &credited {
        assert!(
            store
                .by_confirmation(&numbers, confirmation)
                .expect("index")
                .is_some(),
            "{confirmation} credited but never approved"
        );
    }
    assert!(
        pending.is_empty(),
        "every credit acked, outbox empty: {pending:?}"
    );
    sim.kill().expect("kill sim");
    sim.wait().expect("reaped");
}

/// Sale `n` of connection `connection`: the same reusable card at every till.
fn nth_sale(connection: usize, n: u32, _: &[String]) -> Message {
    let mut message = support::pin_sale(n);
    message.set(41, format!("TILL{connection:04}"));
    message
}

/// Imports `count` PINs for CARD-A-25 in files of 4,000; returns every PIN.
fn import_pins(config: &Path, dir: &Path, count: usize) -> BTreeSet<String> {
    let mut pins = BTreeSet::new();
    for (file, start) in (0..count).step_by(4000).enumerate() {
        let mut text = String::from("serial,pin\n");
        for n in start..(start + 4000).min(count) {
            // Distinct 12-digit PINs that do not follow each other.
            let pin = format!("{:012}", 100_000_000_000u64 + (n as u64) * 7_919_113);
            text.push_str(&format!("K{n:07},{pin}\n"));
            pins.insert(pin);
        }
        let path = dir.join(format!("pins-{file}.csv"));
        std::fs::write(&path, text).expect("batch");
        let output = replenish(&["pins", "import"])
            .arg(&path)
            .args(["--sku", "CARD-A-25", "--config"])
            .arg(config)
            .output()
            .expect("run pins import");
        assert!(output.status.success(), "{output:?}");
    }
    pins
}

/// The PIN of each approved sale, checking that no PIN was answered to two sales.
fn pins_of(answers: &[HashMap<u32, Message>]) -> BTreeSet<String> {
    let mut owners: HashMap<String, (usize, u32)> = HashMap::new();
    for (connection, answers) in answers.iter().enumerate() {
        for (&stan, answer) in answers {
            assert_eq!(answer.text(39), Some("00"), "{answer:?}");
            let pin = answer.text(63).expect("DE63").to_owned();
            if let Some(earlier) = owners.insert(pin, (connection, stan)) {
                panic!(
                    "one PIN answered to sale {earlier:?} and sale {:?}",
                    (connection, stan)
                );
            }
        }
    }
    owners.into_keys().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_sales_never_answers_one_pin_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let engines = format!("{DUMMY_ENGINES}{}", support::PIN_PRODUCT);
    let config_path = write_config_with(dir.path(), port, &engines);
    import(&config_path);
    let stocked = import_pins(&config_path, dir.path(), 8000);
    let log = dir.path().join("serve.log");

    // Four tills selling concurrently on the same card; killed without warning.
    let server = serve(&config_path, addr, &log).await;
    let answered = Arc::new(AtomicUsize::new(0));
    let pumps: Vec<_> = (0..4)
        .map(|c| {
            tokio::spawn(pump_with(
                nth_sale,
                addr,
                c,
                Vec::new(),
                16,
                answered.clone(),
            ))
        })
        .collect();
    let before = kill_after(server, &answered, 1500, pumps).await;
    let sold_before = pins_of(&before);
    assert!(
        sold_before.len() >= 1000,
        "only {} sales before the kill",
        sold_before.len()
    );
    assert!(
        sold_before.is_subset(&stocked),
        "every PIN answered is one of the stock"
    );

    // Restart: each answered sale's repeat gets the same PIN; the sales in flight at
    // the kill are decided once; more sales draw PINs no sale was answered before.
    let mut server = serve(&config_path, addr, &log).await;
    let mut after = Vec::new();
    for (connection, answers) in before.iter().enumerate() {
        let mut client = Client::connect(addr).await;
        let mut again = HashMap::new();
        let top = answers.keys().max().copied().unwrap_or(0) + 100;
        for stan in 1..=top {
            let answer = client.exchange(&nth_sale(connection, stan, &[])).await;
            if let Some(earlier) = answers.get(&stan) {
                assert_eq!(&answer, earlier, "till {connection} sale {stan} repeated");
            }
            again.insert(stan, answer);
        }
        after.push(again);
    }
    let sold = pins_of(&after);
    assert!(sold_before.is_subset(&sold) && sold.is_subset(&stocked));
    Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(server.wait().expect("reaped").success());

    // The stock agrees: every sale decided is sold, the rest available.
    let output = replenish(&["pins", "stock", "--json", "--config"])
        .arg(&config_path)
        .output()
        .expect("pins stock");
    assert!(output.status.success(), "{output:?}");
    let stock: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    let line = &stock[0];
    assert_eq!(line["sold"], sold.len() as u64, "{stock}");
    assert_eq!(line["available"], (8000 - sold.len()) as u64, "{stock}");
}
