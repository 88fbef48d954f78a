//! Capture replay against a running switch: every fixture in `fixtures/captures/`
//! replays with no differences (DE38 and DE62, the approval code and confirmation number,
//! ignored), a capture replays twice against one switch when DE7/DE11/DE37 are
//! rewritten, and the command line reports mismatches (exit 1, PANs masked) and bad
//! captures (exit 2, naming the file and line). `record_fixtures` (ignored) rebuilds the
//! fixtures from the real switch: `cargo test --test replay -- --ignored record_fixtures`.

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use replenish::tools::capture::{self, Capture, Captured, Direction, LinkOptions, Location};
use replenish::tools::replay::{self, ReplayPace, ReplayPlan, ReplayReport, Rewrite, Verdict};
use replenish::wire::framing::{FrameCodec, LengthHeader};
use replenish::wire::iso8583::{self, Message, Mti, Spec};
use support::{ACTIVE, fresh_selling, pin_sale, request, root};

fn spec() -> Arc<Spec> {
    Arc::new(Spec::resolve("iso87ascii").expect("spec"))
}

fn link() -> LinkOptions {
    LinkOptions {
        port: Some(8583),
        codec: FrameCodec::new(LengthHeader::Binary2),
    }
}

fn plan(target: std::net::SocketAddr, rewrite: bool) -> ReplayPlan {
    ReplayPlan {
        target,
        spec: spec(),
        codec: FrameCodec::new(LengthHeader::Binary2),
        pace: ReplayPace::Fast,
        window: 1,
        ignore: replay::parse_fields("38,62").expect("fields"),
        rewrite: Rewrite {
            de7: rewrite,
            de11: rewrite,
            de37: rewrite,
        },
        timeout: Duration::from_secs(10),
    }
}

fn captures_dir() -> PathBuf {
    root().join("fixtures/captures")
}

/// Every fixture capture, pcap and text.
fn fixtures() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(captures_dir())
        .expect("fixtures/captures")
        .map(|e| e.expect("entry").path())
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("pcap" | "txt")))
        .collect();
    files.sort();
    files
}

async fn replay_on_fresh_switch(capture: &Capture, rewrite: bool) -> ReplayReport {
    let (_dir, switch) = fresh_selling().await;
    let report = replay::run(&plan(switch.addr, rewrite), capture, |_| {})
        .await
        .expect("replay runs");
    switch.stop().await;
    report
}

#[tokio::test]
async fn every_fixture_replays_with_no_differences() {
    let files = fixtures();
    assert!(files.len() >= 20, "pcap and text per scenario: {files:?}");
    for file in files {
        let capture = capture::read(&file, &link()).expect("fixture reads");
        let requests = capture
            .frames
            .iter()
            .filter(|c| c.direction == Some(Direction::ToServer))
            .count();
        for rewrite in [false, true] {
            let report = replay_on_fresh_switch(&capture, rewrite).await;
            assert_eq!(report.outcomes.len(), requests, "{}", file.display());
            for outcome in &report.outcomes {
                assert_eq!(
                    outcome.verdict,
                    Verdict::Same,
                    "{} (rewrite {rewrite}): {outcome}",
                    file.display()
                );
            }
        }
    }
}

#[tokio::test]
async fn a_capture_replays_twice_against_one_switch_when_keys_are_rewritten() {
    let file = captures_dir().join("repeat.pcap");
    let capture = capture::read(&file, &link()).expect("fixture");
    let (_dir, switch) = fresh_selling().await;
    let first = replay::run(&plan(switch.addr, true), &capture, |_| {})
        .await
        .expect("first");
    let second = replay::run(&plan(switch.addr, true), &capture, |_| {})
        .await
        .expect("second");
    let plain = replay::run(&plan(switch.addr, false), &capture, |_| {})
        .await
        .expect("plain");
    switch.stop().await;
    for report in [&first, &second, &plain] {
        assert_eq!(report.mismatches(), 0, "{}", replay::diff_report(report));
    }
    let confirmations = |r: &ReplayReport| -> Vec<String> {
        r.traffic
            .frames
            .iter()
            .filter(|c| c.direction == Some(Direction::FromServer))
            .filter_map(|c| iso8583::decode(&spec(), &c.frame).ok())
            .filter_map(|m| m.text(62).map(str::to_owned))
            .collect()
    };
    let (a, b) = (confirmations(&first), confirmations(&second));
    assert_eq!(a.len(), 2, "an approval and its repeat: {a:?}");
    assert_eq!(a[0], a[1], "the repeat is answered as its original");
    assert_ne!(a[0], b[0], "the second run is a new transaction");
}

fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_replenish")
}

async fn run_cli(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(binary())
            .args(&args)
            .output()
            .expect("runs")
    })
    .await
    .expect("joins")
}

#[tokio::test]
async fn the_command_line_reports_differences_with_exit_1_and_masks_pans() {
    let (_dir, switch) = fresh_selling().await;
    let fixture = captures_dir().join("approval.pcap");
    let args = |extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = vec![
            "replay".into(),
            fixture.display().to_string(),
            "--to".into(),
            switch.addr.to_string(),
            "--spec".into(),
            "iso87ascii".into(),
            "--framing".into(),
            "binary2".into(),
            "--rewrite".into(),
        ];
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let differs = run_cli(args(&[])).await;
    let stdout = String::from_utf8_lossy(&differs.stdout);
    let stderr = String::from_utf8_lossy(&differs.stderr);
    assert_eq!(differs.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stdout.contains("DIFFERS") && stdout.contains("DE62"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("    DE39") && !stdout.contains(ACTIVE),
        "only the per-run fields differ; no full PAN: {stdout}"
    );
    let same = run_cli(args(&["--ignore", "38,62"])).await;
    let out = String::from_utf8_lossy(&same.stdout);
    assert_eq!(same.status.code(), Some(0), "{out}");
    assert!(out.contains("1 same, 0 differ"), "{out}");
    switch.stop().await;
}

#[tokio::test]
async fn bad_captures_exit_2_naming_file_and_line_or_packet() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = dir.path().join("bad.txt");
    std::fs::write(&text, "# fine\n> 30323030\n> 30ZZ\n").expect("write");
    let out = run_cli(vec!["replay".into(), text.display().to_string()]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("bad.txt: line 3: not hex"), "{stderr}");

    let mut pcap = std::fs::read(captures_dir().join("approval.pcap")).expect("fixture");
    pcap.truncate(pcap.len() - 10);
    let cut = dir.path().join("cut.pcap");
    std::fs::write(&cut, &pcap).expect("write");
    let out = run_cli(vec![
        "decode".into(),
        "--capture".into(),
        cut.display().to_string(),
    ])
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("cut.pcap: packet 5: corrupt or truncated"),
        "{stderr}"
    );
}

#[tokio::test]
async fn decode_lists_a_capture_with_pans_masked_and_convert_round_trips() {
    let fixture = captures_dir().join("approval.pcap");
    let out = run_cli(vec![
        "decode".into(),
        "--capture".into(),
        fixture.display().to_string(),
        "--pretty".into(),
    ])
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("476173******0010"), "{stdout}");
    assert!(!stdout.contains(ACTIVE), "{stdout}");
    assert!(
        stdout.contains("(packet 4)") && stdout.contains(" > connection 0"),
        "{stdout}"
    );
    let json = run_cli(vec![
        "decode".into(),
        "--capture".into(),
        fixture.display().to_string(),
    ])
    .await;
    let json = String::from_utf8_lossy(&json.stdout);
    assert_eq!(json.lines().count(), 2, "{json}");
    assert!(
        json.contains(r#""2":"476173******0010""#) && !json.contains(ACTIVE),
        "{json}"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let (ng, text) = (dir.path().join("a.pcapng"), dir.path().join("a.txt"));
    for target in [&ng, &text] {
        let out = run_cli(vec![
            "capture".into(),
            "convert".into(),
            fixture.display().to_string(),
            target.display().to_string(),
        ])
        .await;
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let frames = |p: &Path| -> Vec<Bytes> {
        capture::read(p, &link())
            .expect("reads")
            .frames
            .into_iter()
            .map(|c| c.frame)
            .collect()
    };
    assert_eq!(frames(&ng), frames(&fixture));
    assert_eq!(frames(&text), frames(&fixture));
}

/// The malformed request: the reference 0200 with a letter in DE4 (the amount).
fn malformed(stan: u32) -> Bytes {
    let body = iso8583::encode_to_bytes(&spec(), &request(stan, 2500, ACTIVE)).expect("encodes");
    let mut bytes = body.to_vec();
    let at = bytes
        .windows(12)
        .position(|w| w == b"000000002500")
        .expect("DE4 in the ASCII message");
    bytes[at + 11] = b'X';
    Bytes::from(bytes)
}

/// A scenario: its name and the requests sent, in order, on one connection.
fn scenarios() -> Vec<(&'static str, Vec<Bytes>)> {
    let encode = |m: Message| iso8583::encode_to_bytes(&spec(), &m).expect("encodes");
    let with = |stan: u32, change: &dyn Fn(&mut Message)| {
        let mut m = request(stan, 2500, ACTIVE);
        change(&mut m);
        encode(m)
    };
    let mut repeat = request(1, 2500, ACTIVE);
    repeat.set_mti(Mti::new(b"0201").expect("mti"));
    let velocity: Vec<Bytes> = (1..=6)
        .map(|stan| encode(request(stan, 1000, "4761739001010077")))
        .collect();
    vec![
        ("approval", vec![with(1, &|_| {})]),
        (
            "decline-14-invalid-account",
            vec![with(2, &|m| m.set(2, "4761739001010011"))],
        ),
        (
            "decline-57-not-permitted",
            vec![with(3, &|m| m.set(2, "4761739001010036"))],
        ),
        (
            "decline-54-expired",
            vec![with(4, &|m| m.set(2, "4761739001010051"))],
        ),
        (
            "decline-61-over-maximum",
            vec![with(5, &|m| m.set(4, "000000050001"))],
        ),
        (
            "decline-13-invalid-amount",
            vec![with(6, &|m| m.set(4, "000000000000"))],
        ),
        (
            "decline-58-location",
            vec![with(7, &|m| m.set(42, "LOC000000009999"))],
        ),
        (
            "decline-12-processing-code",
            vec![with(8, &|m| m.set(3, "010000"))],
        ),
        (
            "decline-91-no-engine",
            vec![with(9, &|m| m.set(2, "4761739001010069"))],
        ),
        ("decline-65-daily-count", velocity),
        (
            "repeat",
            vec![encode(request(1, 2500, ACTIVE)), encode(repeat)],
        ),
        (
            "duplicate-94",
            vec![
                encode(request(1, 2500, ACTIVE)),
                encode(request(1, 2600, ACTIVE)),
            ],
        ),
        ("format-error-30", vec![malformed(10)]),
        ("reversal", reversal_scenario(&encode)),
        ("reversal-before-original", early_reversal_scenario(&encode)),
        ("advice", advice_scenario(&encode)),
        ("authorization-completion", completion_scenario(&encode)),
        ("pin-sale", pin_sale_scenario(&encode)),
    ]
}

/// A PIN sale (answered with the PIN in DE63), its repeat (the same PIN), and its
/// reversal 0420 (the PIN voided).
fn pin_sale_scenario(encode: &dyn Fn(Message) -> Bytes) -> Vec<Bytes> {
    let sale = pin_sale(61);
    let reversal = referring(&sale, b"0420", 62);
    vec![encode(sale.clone()), encode(sale), encode(reversal)]
}

/// `original` as MTI `mti` with STAN `stan` and DE90 naming the original.
fn referring(original: &Message, mti: &[u8; 4], stan: u32) -> Message {
    let mut m = original.clone();
    m.set_mti(Mti::new(mti).expect("mti"));
    m.set(11, format!("{stan:06}"));
    m.set(90, replenish::switch::reverse::original_data(original));
    m
}

/// A 0200, its reversal 0420 (answered 0430), and the reversal's repeat 0421.
fn reversal_scenario(encode: &dyn Fn(Message) -> Bytes) -> Vec<Bytes> {
    let original = request(21, 2500, ACTIVE);
    let reversal = referring(&original, b"0420", 22);
    let mut repeat = reversal.clone();
    repeat.set_mti(Mti::new(b"0421").expect("mti"));
    vec![encode(original), encode(reversal), encode(repeat)]
}

/// A 0420 whose original has not arrived (answered 00), then the late 0200 (`12`).
fn early_reversal_scenario(encode: &dyn Fn(Message) -> Bytes) -> Vec<Bytes> {
    let original = request(31, 2500, ACTIVE);
    let reversal = referring(&original, b"0420", 32);
    vec![encode(reversal), encode(original)]
}

/// A stand-in 0220 advice (credited, DE62) and its repeat 0221 (the same answer).
fn advice_scenario(encode: &dyn Fn(Message) -> Bytes) -> Vec<Bytes> {
    let mut advice = request(41, 2500, ACTIVE);
    advice.set_mti(Mti::new(b"0220").expect("mti"));
    let mut repeat = advice.clone();
    repeat.set_mti(Mti::new(b"0221").expect("mti"));
    vec![encode(advice), encode(repeat)]
}

/// A 0100 authorization (held) and its 0220 completion matched by DE90.
fn completion_scenario(encode: &dyn Fn(Message) -> Bytes) -> Vec<Bytes> {
    let mut authorization = request(51, 3000, ACTIVE);
    authorization.set_mti(Mti::new(b"0100").expect("mti"));
    let mut completion = referring(&authorization, b"0220", 52);
    completion.set(4, "000000002800");
    vec![encode(authorization), encode(completion)]
}

/// Records every scenario from a fresh switch into `fixtures/captures/NAME.pcap` and
/// `NAME.txt`. Run by hand after a change of the switch's answers.
#[tokio::test]
#[ignore = "rewrites fixtures/captures; run by hand"]
async fn record_fixtures() {
    std::fs::create_dir_all(captures_dir()).expect("dir");
    for (name, requests) in scenarios() {
        let capture = Capture {
            frames: requests
                .into_iter()
                .map(|frame| Captured {
                    time_us: None,
                    direction: Some(Direction::ToServer),
                    stream: 0,
                    frame,
                    at: Location::File,
                })
                .collect(),
        };
        let report = replay_on_fresh_switch(&capture, false).await;
        assert!(
            report
                .outcomes
                .iter()
                .all(|o| o.verdict == Verdict::Unrecorded),
            "{name}: every request answered"
        );
        for ext in ["pcap", "txt"] {
            let path = captures_dir().join(format!("{name}.{ext}"));
            capture::write(&path, &report.traffic, &link()).expect("written");
        }
    }
}

/// A recorded sale keeps its frame's length but not its PIN: no PIN of the batch is in
/// any capture fixture, as bytes (pcap) or as hex (text).
#[test]
fn captures_never_hold_a_sold_pin() {
    let batch = std::fs::read_to_string(root().join("fixtures/pins/card-a-25.csv")).expect("batch");
    let pins: Vec<&str> = (batch.lines().skip(1))
        .filter_map(|l| l.split(',').nth(1))
        .collect();
    assert_eq!(pins.len(), 25);
    let sale = std::fs::read(captures_dir().join("pin-sale.txt")).expect("the sale's capture");
    assert!(!sale.is_empty());
    for path in fixtures() {
        let bytes = std::fs::read(&path).expect("fixture");
        for pin in &pins {
            let hex = hex::encode_upper(pin.as_bytes());
            let found = [pin.as_bytes(), hex.as_bytes()]
                .iter()
                .any(|needle| bytes.windows(needle.len()).any(|w| w == *needle));
            assert!(!found, "{} holds a sold PIN", path.display());
        }
    }
}
