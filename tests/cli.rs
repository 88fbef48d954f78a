//! The `replenish` command line as an operator meets it: exit codes, the file, line and
//! field named on bad input, imports that are all or nothing, and the demo that runs the
//! whole job on the embedded default config.

use std::path::Path;
use std::process::{Command, Output};

fn replenish(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_replenish"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run replenish")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn a_bad_config_exits_2_naming_file_line_and_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        "[[acquirer]]\nname = \"a\"\nlisten = \"127.0.0.1:8583\"\nframing = \"binary3\"\n",
    )
    .expect("write");
    let output = replenish(&["check-config", "bad.toml"], dir.path());
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = text(&output.stderr);
    assert!(stderr.contains("bad.toml:4"), "{stderr}");
    assert!(stderr.contains("binary3"), "{stderr}");

    let good = replenish(
        &["check-config", "fixtures/configs/default.toml"],
        Path::new(env!("CARGO_MANIFEST_DIR")),
    );
    assert!(good.status.success(), "{good:?}");
}

#[test]
fn an_import_with_bad_rows_names_them_and_imports_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("accounts.csv"),
        "account,min,carrier,status,expiry\n\
         4761739001010010,2065550101,carrier-a,active,2030-12\n\
         4761739001010011,2065550102,carrier-a,active,2030-12\n\
         4761739001010028,2065550103,carrier-a,sleeping,2030-12\n",
    )
    .expect("write");
    let output = replenish(&["accounts", "import", "accounts.csv"], dir.path());
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = text(&output.stderr);
    assert!(stderr.contains("accounts.csv:3: account"), "{stderr}");
    assert!(stderr.contains("accounts.csv:4: status"), "{stderr}");
    assert!(
        !stderr.contains("4761739001010011"),
        "account numbers stay out of errors: {stderr}"
    );

    // Nothing of the bad file arrived: importing only the good row reports one row.
    std::fs::write(
        dir.path().join("good.csv"),
        "account,min,carrier,status,expiry\n4761739001010010,2065550101,carrier-a,active,2030-12\n",
    )
    .expect("write");
    let output = replenish(&["accounts", "import", "good.csv"], dir.path());
    assert!(output.status.success(), "{output:?}");
    assert!(text(&output.stdout).contains("1 row(s) imported"));
}

#[test]
fn the_demo_credits_every_approval_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = replenish(
        &["demo", "--requests", "120", "--data-dir", "demo"],
        dir.path(),
    );
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(
        stdout.contains("sent 120 replenishment requests"),
        "{stdout}"
    );
    assert!(stdout.contains("0 credited twice"), "{stdout}");
    let ledger =
        std::fs::read_to_string(dir.path().join("demo/engine-ledger.jsonl")).expect("ledger");
    let approved = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("00 approved"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|n| n.parse::<usize>().ok())
        .expect("approved count");
    let reversed = stdout
        .lines()
        .find(|l| l.starts_with("reversed "))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse::<usize>().ok())
        .expect("reversed count");
    assert_eq!(
        reversed,
        approved.div_ceil(10),
        "one approval in ten reversed"
    );
    // Replenishments (the PIN sales, with their voucher, are counted below).
    let kinds: Vec<&str> = (ledger.lines())
        .filter(|l| !l.contains("\"voucher\""))
        .map(|l| {
            if l.contains("\"reversal\"") {
                "reversal"
            } else {
                "credit"
            }
        })
        .collect();
    // One replenishment per self-service channel, each debited at bank-sim first.
    let channels: Vec<&str> = (stdout.lines())
        .filter(|l| l.contains(" -> 201 completed confirmation "))
        .collect();
    assert_eq!(channels.len(), 3, "{stdout}");
    for channel in ["web", "wireless", "ivr"] {
        assert!(
            channels.iter().any(|l| l.trim_start().starts_with(channel)),
            "{stdout}"
        );
    }
    // Each subscriber got the receipt SMS with its confirmation number.
    for line in &channels {
        let confirmation = (line.split_whitespace().nth(7))
            .map(|c| c.trim_end_matches(';'))
            .expect("confirmation");
        let sms = format!("credited to your prepaid account. Confirmation {confirmation}.");
        assert!(stdout.contains(&sms), "{stdout}");
    }
    let bank = std::fs::read_to_string(dir.path().join("demo/bank-ledger.jsonl")).expect("bank");
    assert_eq!(
        bank.lines().filter(|l| l.contains("\"00\"")).count(),
        3,
        "{bank}"
    );
    assert_eq!(
        kinds.iter().filter(|k| **k == "credit").count(),
        approved + 3
    );
    assert_eq!(
        kinds.iter().filter(|k| **k == "reversal").count(),
        reversed,
        "each reversal applied once by the engine"
    );
    // Six PINs sold, each advised once, the last one's reversal too.
    let sales: Vec<&str> = (ledger.lines())
        .filter(|l| l.contains("\"voucher\""))
        .collect();
    assert_eq!(sales.iter().filter(|l| l.contains("\"credit\"")).count(), 6);
    assert_eq!(
        sales.iter().filter(|l| l.contains("\"reversal\"")).count(),
        1
    );
    let stock = "PIN stock after: CARD-A-25 available 21, sold 4, voided 0; \
                 CARD-B-10 available 0, sold 1, voided 1";
    assert!(stdout.contains(stock), "{stdout}");
    let exceptions =
        std::fs::read_to_string(dir.path().join("demo/exceptions.jsonl")).expect("exceptions");
    assert_eq!(
        exceptions.lines().count(),
        120 - approved,
        "every decline is in the exception log"
    );

    // Customer service looks a receipt's number up in the demo's data directory.
    let lines: Vec<serde_json::Value> = ledger
        .lines()
        .map(|l| serde_json::from_str(l).expect("ledger line"))
        .collect();
    let reversed: Vec<&str> = (lines.iter())
        .filter(|l| l["kind"] == "reversal")
        .filter_map(|l| l["confirmation"].as_str())
        .collect();
    let number = (lines.iter())
        .filter_map(|l| l["confirmation"].as_str())
        .find(|n| !reversed.contains(n))
        .expect("a credit not reversed");
    std::fs::write(
        dir.path().join("lookup.toml"),
        "data_dir = \"demo\"\n[[acquirer]]\nname = \"a\"\nlisten = \"127.0.0.1:0\"\nacquirer_id = \"1\"\n",
    )
    .expect("config");
    let output = replenish(&["lookup", number, "--config", "lookup.toml"], dir.path());
    let shown = text(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(shown.contains(&format!("confirmation {number}")), "{shown}");
    assert!(shown.contains("acknowledged by prepaid"), "{shown}");
    assert!(shown.contains("since        as decided"), "{shown}");
    let output = replenish(&["lookup", "12345", "--config", "lookup.toml"], dir.path());
    assert_eq!(output.status.code(), Some(2), "{output:?}");

    // The demo made two console users and said how to sign in.
    let console = (stdout.lines())
        .find(|l| l.starts_with("console: http://127.0.0.1:8080/"))
        .unwrap_or_else(|| panic!("the console line: {stdout}"));
    assert!(console.contains("demo-csr") && console.contains("demo-supervisor"));
    let output = replenish(&["users", "list", "--config", "lookup.toml"], dir.path());
    let users = text(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(
        users.contains("demo-csr") && users.contains("demo-supervisor"),
        "{users}"
    );
}

#[test]
fn a_short_operator_token_stops_serve_with_exit_2_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("operator.token"), "short\n").expect("token");
    std::fs::write(
        dir.path().join("switch.toml"),
        "data_dir = \"data\"\n[[acquirer]]\nname = \"a\"\nlisten = \"127.0.0.1:0\"\nacquirer_id = \"1\"\n\
         [metrics]\nlisten = \"127.0.0.1:0\"\noperator_token_file = \"operator.token\"\n",
    )
    .expect("config");
    let output = replenish(&["serve", "--config", "switch.toml"], dir.path());
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("operator.token") && stderr.contains("shorter than 16"),
        "{stderr}"
    );
    assert!(!dir.path().join("data").exists(), "nothing was started");
}

#[test]
fn pins_are_imported_whole_sealed_and_counted_in_stock() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = root.join("fixtures/configs/pins.toml");
    let config = config.to_str().expect("path");
    let batch = root.join("fixtures/pins/card-a-25.csv");
    let batch = batch.to_str().expect("path");
    let stock = |dir: &Path| -> serde_json::Value {
        let output = replenish(&["pins", "stock", "--json", "--config", config], dir);
        assert!(output.status.success(), "{output:?}");
        serde_json::from_str(text(&output.stdout).trim()).expect("stock JSON")
    };

    let output = replenish(
        &[
            "pins",
            "import",
            batch,
            "--sku",
            "CARD-A-25",
            "--config",
            config,
        ],
        dir.path(),
    );
    assert!(output.status.success(), "{output:?}");
    assert!(text(&output.stdout).contains("25 PIN(s) of CARD-A-25 in stock"));
    let counted = stock(dir.path());
    assert_eq!(
        counted[0],
        serde_json::json!({"sku": "CARD-A-25", "available": 25, "sold": 0, "voided": 0})
    );
    assert_eq!(
        counted[1]["available"], 0,
        "the generated product has no stock"
    );

    // The same batch again: every serial is in stock already; nothing is imported.
    let output = replenish(
        &[
            "pins",
            "import",
            batch,
            "--sku",
            "CARD-A-25",
            "--config",
            config,
        ],
        dir.path(),
    );
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "{batch}:2: serial: CA25-000001 is in stock already"
        )),
        "{stderr}"
    );
    assert!(stderr.contains(&format!("{batch}:26: ")), "{stderr}");
    // A new serial with a PIN already in stock, and bad lines: named, nothing imported.
    let first_pin = std::fs::read_to_string(batch)
        .expect("batch")
        .lines()
        .nth(1)
        .expect("line")
        .split(',')
        .nth(1)
        .expect("pin")
        .to_owned();
    let other = dir.path().join("other.csv");
    std::fs::write(
        &other,
        format!("serial,pin\nNEW-1,{first_pin}\nNEW-2,12ab\nNEW-3,99998888777\n"),
    )
    .expect("file");
    let output = replenish(
        &[
            "pins",
            "import",
            "other.csv",
            "--sku",
            "CARD-A-25",
            "--config",
            config,
        ],
        dir.path(),
    );
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("other.csv:2: pin: in stock already (serial CA25-000001)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("other.csv:3: pin: 4 to 32 digits"),
        "{stderr}"
    );
    assert!(!stderr.contains(&first_pin), "no PIN in an error: {stderr}");
    assert_eq!(stock(dir.path())[0]["available"], 25, "nothing imported");
    let output = replenish(
        &[
            "pins",
            "import",
            batch,
            "--sku",
            "CARD-B-10",
            "--config",
            config,
        ],
        dir.path(),
    );
    assert_eq!(
        output.status.code(),
        Some(2),
        "a generated product takes no import: {output:?}"
    );

    // No PIN in clear anywhere in the data directory; the key file is the switch's alone.
    let key = dir.path().join("data/pin.key");
    let mode = std::fs::metadata(&key)
        .expect("key file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let pins: Vec<String> = std::fs::read_to_string(batch)
        .expect("batch")
        .lines()
        .skip(1)
        .filter_map(|l| l.split(',').nth(1).map(str::to_owned))
        .collect();
    let mut files = vec![dir.path().join("data")];
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(
                std::fs::read_dir(&path)
                    .expect("dir")
                    .flatten()
                    .map(|e| e.path()),
            );
            continue;
        }
        let bytes = std::fs::read(&path).expect("file");
        for pin in &pins {
            let found = bytes.windows(pin.len()).any(|w| w == pin.as_bytes());
            assert!(!found, "{} holds a PIN in clear", path.display());
        }
    }

    // A new key: the stock is sealed again under it and every PIN still opens to itself.
    let output = replenish(&["pins", "rekey", "--config", config], dir.path());
    assert!(output.status.success(), "{output:?}");
    assert!(
        text(&output.stdout).contains("25 PIN(s) in stock sealed again"),
        "{output:?}"
    );
    assert_eq!(stock(dir.path())[0]["available"], 25);
    let mut loaded = replenish::config::Config::load(Path::new(config)).expect("config");
    loaded.data_dir = dir.path().join("data");
    let vault =
        replenish::durable::vault::Vault::open_or_create(&loaded.pin_key_file()).expect("vault");
    let data = replenish::durable::datadir::DataDir::open(&loaded).expect("data");
    let items = data.store.pins("CARD-A-25").expect("pins");
    data.close().expect("closed");
    let batch_text = std::fs::read_to_string(batch).expect("batch");
    for (item, line) in items.iter().zip(batch_text.lines().skip(1)) {
        assert_eq!(item.sealed.key, vault.current(), "sealed under the new key");
        let pin = vault.open(&item.serial, &item.sealed).expect("opens");
        assert_eq!(line, format!("{},{pin},2027-12-31", item.serial));
    }
    let retired = std::fs::read_dir(dir.path().join("data"))
        .expect("dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("pin.key."))
        .count();
    assert_eq!(retired, 1, "the old key is kept beside the new one");
}
