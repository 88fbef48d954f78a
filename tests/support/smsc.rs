//! A real SMSC for the SMS tests: `tests/smsc/server.js`, the npm `smpp` package's
//! server (version pinned by `tests/smsc/package-lock.json`), installed with `npm ci`
//! under the target directory once and run as a child process on a free port. The
//! install goes to a directory named after the files it comes from, made under another
//! name and renamed into place, so test binaries running at once neither race nor see a
//! half-made one. Where Node.js or npm is missing (`.ci/run` installs them) the tests
//! that need the SMSC skip, saying so; an `npm ci` that fails fails the test.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;

/// The files of `tests/smsc/` the SMSC runs from.
const FILES: [&str; 3] = ["package.json", "package-lock.json", "server.js"];

/// A running SMSC and the files it writes: each received SMS (one JSON line each) and
/// what happened on its sessions (`received` with `.events` appended).
pub struct Smsc {
    child: Child,
    pub port: u16,
    pub received: PathBuf,
}

impl Drop for Smsc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

fn runs(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success())
}

/// The directory with the server and its `node_modules`, or why there can be none.
fn installed() -> Result<PathBuf, String> {
    static INSTALLED: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    INSTALLED.get_or_init(install).clone()
}

fn install() -> Result<PathBuf, String> {
    for program in ["node", "npm"] {
        if !runs(program) {
            return Err(format!(
                "{program} is not installed (apt-get install nodejs npm)"
            ));
        }
    }
    let source = super::root().join("tests/smsc");
    let contents: Vec<Vec<u8>> = (FILES.iter())
        .map(|file| std::fs::read(source.join(file)).expect("tests/smsc"))
        .collect();
    let dir = target_dir().join(format!("smsc-{:016x}", fnv1a(&contents)));
    if dir.join("node_modules/smpp/package.json").exists() {
        return Ok(dir);
    }
    let staging = target_dir().join(format!("smsc-installing-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).expect("the SMSC's staging directory");
    for (file, content) in FILES.iter().zip(&contents) {
        std::fs::write(staging.join(file), content).expect("the SMSC's files");
    }
    let ci = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(&staging)
        .output()
        .expect("npm ci");
    assert!(
        ci.status.success(),
        "npm ci in {} failed:\n{}",
        staging.display(),
        String::from_utf8_lossy(&ci.stderr)
    );
    // Another test binary may have put its own in place first: then use that one.
    if std::fs::rename(&staging, &dir).is_err() {
        let _ = std::fs::remove_dir_all(&staging);
        assert!(dir.join("node_modules/smpp").exists(), "{}", dir.display());
    }
    Ok(dir)
}

/// FNV-1a of `parts`: a name for the install that changes with its files.
fn fnv1a(parts: &[Vec<u8>]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for byte in parts.iter().flatten() {
        hash = (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

impl Smsc {
    /// Starts the SMSC for `system_id` / `password` with the server's knobs in `env`
    /// (`SMSC_CLOSE_AFTER`, `SMSC_FAIL_FIRST`, `SMSC_PROBE`: see `tests/smsc/server.js`);
    /// `None` (after saying why) where Node.js or npm is missing.
    pub fn start(
        dir: &Path,
        system_id: &str,
        password: &str,
        env: &[(&str, &str)],
    ) -> Option<Smsc> {
        let installed = match installed() {
            Ok(installed) => installed,
            Err(why) => {
                eprintln!("SKIPPED: no SMSC to test against: {why}");
                return None;
            }
        };
        let received = dir.join(format!("smsc-{}.jsonl", super::free_port()));
        let mut child = Command::new("node")
            .arg(installed.join("server.js"))
            .args(["0", system_id, password])
            .arg(&received)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node server.js");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("the SMSC's first line");
        let port = (line.trim().strip_prefix("listening "))
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("the SMSC said {line:?}"));
        Some(Smsc {
            child,
            port,
            received,
        })
    }

    /// `host:port`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Every SMS received so far.
    pub fn messages(&self) -> Vec<Value> {
        json_lines(&self.received)
    }

    /// What happened on the sessions so far: `{"event": "bind_transmitter", ...}`,
    /// `enquire_link`, `unbind`, and the answers to the server's own requests
    /// (`enquire_link_resp`, `unbind_resp`).
    pub fn events(&self) -> Vec<Value> {
        let mut path = self.received.clone().into_os_string();
        path.push(".events");
        json_lines(Path::new(&path))
    }

    /// How many events named `name` there were so far.
    pub fn count(&self, name: &str) -> usize {
        (self.events().iter())
            .filter(|e| e["event"] == name)
            .count()
    }

    /// The SMS received once there are at least `count` (or after 20 s).
    pub async fn wait_for(&self, count: usize) -> Vec<Value> {
        for _ in 0..400 {
            let messages = self.messages();
            if messages.len() >= count {
                return messages;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.messages()
    }
}

fn json_lines(path: &Path) -> Vec<Value> {
    (std::fs::read_to_string(path).unwrap_or_default().lines())
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}
