//! The console in a real browser: Debian's Chromium, headless, driven through
//! chromedriver by Python's selenium (`tests/browser/console_flow.py`). A csr signs
//! in, activates an account and requests an adjustment; a supervisor in another
//! session approves it and sees it on the audit page; the engine is credited once.
//! Skipped, saying why, only where Chromium or chromedriver is not installed (`.ci/run`
//! installs both: `apt-get install chromium chromium-driver`).

mod support;

use std::path::Path;
use std::process::Command;

use serde_json::Value;
use support::console::*;

const ACCOUNT: &str = "4761739001010028";
const MIN: &str = "2065554321";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_csr_and_a_supervisor_credit_an_adjustment_in_chromium() {
    for part in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
        if !Path::new(part).exists() {
            eprintln!(
                "SKIPPED: {part} is not installed (apt-get install chromium chromium-driver)"
            );
            return;
        }
    }
    let python = support::python::python_with(
        "selenium",
        "import selenium.webdriver",
        &["selenium==4.27.1"],
    );
    let running = start().await;
    let screenshot = running.dir.path().join("account.png");
    let script = support::root().join("tests/browser/console_flow.py");
    let args = [
        running.console.clone(),
        ACCOUNT.into(),
        MIN.into(),
        PASSWORD.into(),
        screenshot.to_string_lossy().into_owned(),
    ];
    let output =
        tokio::task::spawn_blocking(move || Command::new(python).arg(script).args(args).output())
            .await
            .expect("blocking")
            .expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the browser flow failed:\n{stdout}\n{}\nswitch log:\n{}",
        String::from_utf8_lossy(&output.stderr),
        running.log()
    );
    let seen: Value = serde_json::from_str(stdout.trim()).expect("the flow's JSON");
    let text = |name: &str| seen[name].as_str().unwrap_or("").to_owned();

    assert_eq!(
        seen["cookie_http_only"], true,
        "the session cookie is HttpOnly"
    );
    assert_eq!(
        text("cookie_visible_to_script"),
        "",
        "no cookie visible to scripts"
    );
    assert!(text("search_hit").contains("476173******0028"), "{seen}");
    assert_eq!(text("status_after"), "active");
    assert_eq!(text("account_shown"), "476173******0028");
    assert!(text("adjust_result").contains("pending"), "{seen}");
    assert_eq!(seen["csr_approve_buttons"], 0, "a csr cannot approve");
    assert!(text("approval_row").contains("done"), "{seen}");
    assert!(text("approval_row").contains("sue"), "{seen}");
    let audit = text("audit");
    assert!(
        audit.contains("approval.approve") && audit.contains("sue"),
        "{audit}"
    );
    assert!(
        audit.contains("adjustment.request") && audit.contains("ana"),
        "{audit}"
    );
    assert!(audit.contains("account.activate"), "{audit}");
    assert!(text("history").contains("1250"), "{seen}");
    assert!(
        !text("page_source").contains(ACCOUNT),
        "the page shows the account masked"
    );

    // The engine was credited the adjustment once.
    assert_eq!(running.engine_balance_eventually(MIN, 1250).await, 1250);
    let png = std::fs::read(&screenshot).expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    if let Some(keep) = std::env::var_os("REPLENISH_SCREENSHOT") {
        std::fs::write(keep, png).expect("screenshot kept");
    }
}
