//! A real SMSC for the SMS tests: `tests/smsc/server.js`, the npm `smpp` package's
//! server (version pinned by `tests/smsc/package-lock.json`), installed with `npm ci`
//! under the target directory once and run as a child process on a free port. Where
//! Node.js and npm are missing (`.ci/run` installs them) the tests that need it skip,
//! saying so.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;

/// A running SMSC and the file it writes each received SMS to (one JSON line each).
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

/// The directory with the server and its `node_modules`, or why there is none.
fn installed() -> Result<PathBuf, String> {
    static INSTALLED: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    INSTALLED.get_or_init(install).clone()
}

fn install() -> Result<PathBuf, String> {
    let node = Command::new("node").arg("--version").output();
    if !node.is_ok_and(|o| o.status.success()) {
        return Err("node is not installed (apt-get install nodejs npm)".into());
    }
    let source = super::root().join("tests/smsc");
    let dir = target_dir().join("smsc-test");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    for file in ["package.json", "package-lock.json", "server.js"] {
        std::fs::copy(source.join(file), dir.join(file)).map_err(|e| format!("{file}: {e}"))?;
    }
    if !dir.join("node_modules/smpp/package.json").exists() {
        let ci = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .output()
            .map_err(|e| format!("npm: {e} (apt-get install npm)"))?;
        if !ci.status.success() {
            return Err(format!(
                "npm ci failed: {}",
                String::from_utf8_lossy(&ci.stderr)
            ));
        }
    }
    Ok(dir)
}

impl Smsc {
    /// Starts the SMSC for `system_id` / `password` with the server's knobs in `env`
    /// (`SMSC_CLOSE_AFTER`, `SMSC_FAIL_FIRST`); `None` (after saying why) where Node.js
    /// cannot be had.
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
        (std::fs::read_to_string(&self.received)
            .unwrap_or_default()
            .lines())
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
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
