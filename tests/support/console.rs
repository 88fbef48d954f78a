//! A switch with its console in a child process, and an HTTP client for the console:
//! what the console and browser tests share.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use super::engine::{Engine, HIGH_LIMITS, loopback_pair};
use super::{Client, free_ports, request};

pub const PASSWORD: &str = "correct horse battery";
pub const CARRIER_A_ACTIVE: &str = "4761739001010010";
pub const CARRIER_A_NO_MIN: &str = "4761739001010028";
pub const CARRIER_A_BLOCKED: &str = "4761739001010044";
pub const CARRIER_A_EXPIRED: &str = "4761739001010051";
pub const CARRIER_B_ACTIVE: &str = "4761739001010085";

/// The roles every table runs through, with the user of each.
pub const USERS: [(&str, &str, &str); 7] = [
    ("root", "admin", ""),
    ("sue", "supervisor", ""),
    ("ana", "csr", "--carrier=carrier-a"),
    ("bob", "csr", "--carrier=carrier-b"),
    ("bank-user", "bank", "--bank=bank-a"),
    ("other-bank", "bank", "--bank=bank-z"),
    ("audrey", "auditor", ""),
];

/// A switch in a child process with its console, and what the tests need of it.
pub struct Running {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub console: String,
    pub acquirer: std::net::SocketAddr,
    pub engine: Engine,
    pub ivr_token: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn replenish() -> Command {
    Command::new(env!("CARGO_BIN_EXE_replenish"))
}

/// Runs `replenish ARGS --config CONFIG` with `stdin`; returns (exit code, stdout).
pub fn cli(config: &Path, args: &[&str], stdin: &str) -> (i32, String) {
    use std::io::Write;
    let mut child = replenish()
        .args(args)
        .arg("--config")
        .arg(config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("replenish runs");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin.as_bytes()).expect("stdin written");
    drop(input);
    let output = child.wait_with_output().expect("replenish ends");
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.code().unwrap_or(-1), text)
}

pub async fn start() -> Running {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = Engine::start(&dir.path().join("ledger.jsonl"), &loopback_pair()).await;
    let [acquirer, metrics, console, bank_z] = free_ports::<4>();
    let links: Vec<String> = engine.addrs().iter().map(|a| format!("\"{a}\"")).collect();
    let text = format!(
        r#"
data_dir = "{dir}/data"

[[acquirer]]
name = "bank-a"
listen = "127.0.0.1:{acquirer}"
acquirer_id = "00012345"

[[acquirer]]
name = "bank-z-link"
listen = "127.0.0.1:{bank_z}"
acquirer_id = "00099999"

[[bank]]
name = "bank-a"
acquirers = ["bank-a"]

[[bank]]
name = "bank-z"
acquirers = ["bank-z-link"]

[[engine]]
name = "prepaid"
carriers = ["*"]
links = [{links}]
ack_timeout = "400ms"
echo_interval = "1s"

[[debit_bank]]
name = "first-bank"
links = ["127.0.0.1:1"]
acquirer_id = "00099999"

[metrics]
listen = "127.0.0.1:{metrics}"

[console]
listen = "127.0.0.1:{console}"

[logs]
level = "debug"
{HIGH_LIMITS}
"#,
        dir = dir.path().display(),
        links = links.join(", "),
    );
    let config = dir.path().join("switch.toml");
    std::fs::write(&config, text).expect("config written");
    let root = super::root().join("fixtures/reference");
    for (table, file) in [("accounts", "accounts.csv"), ("locations", "locations.csv")] {
        let file = root.join(file);
        let (code, out) = cli(&config, &[table, "import", &file.to_string_lossy()], "");
        assert_eq!(code, 0, "{out}");
    }
    // All but one user are added on the data directory; the last through the switch.
    for (name, role, scope) in &USERS[..USERS.len() - 1] {
        add_user(&config, name, role, scope);
    }
    let (code, out) = cli(
        &config,
        &["clients", "add", "ivr", "--scope", "activation"],
        "",
    );
    assert_eq!(code, 0, "{out}");
    let ivr_token = out.lines().last().expect("token line").trim().to_owned();
    assert_eq!(ivr_token.len(), 64, "{out}");

    let log = std::fs::File::create(dir.path().join("serve.log")).expect("log");
    let child = replenish()
        .args(["serve", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("replenish serve");
    let console = format!("http://127.0.0.1:{console}");
    let mut running = Running {
        child,
        dir,
        config,
        console,
        acquirer: format!("127.0.0.1:{acquirer}").parse().expect("addr"),
        engine,
        ivr_token,
    };
    for _ in 0..600 {
        if let Ok(Some(status)) = running.child.try_wait() {
            panic!("replenish serve exited ({status}): {}", running.log());
        }
        let addr = running.console.trim_start_matches("http://");
        if std::net::TcpStream::connect(addr).is_ok() {
            let (name, role, scope) = USERS[USERS.len() - 1];
            add_user(&running.config, name, role, scope);
            return running;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the console did not answer: {}", running.log());
}

pub fn add_user(config: &Path, name: &str, role: &str, scope: &str) {
    let mut args = vec!["users", "add", name, "--role", role, "--password-stdin"];
    if !scope.is_empty() {
        args.push(scope);
    }
    let (code, out) = cli(config, &args, &format!("{PASSWORD}\n"));
    assert_eq!(code, 0, "users add {name}: {out}");
}

impl Running {
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("serve.log")).unwrap_or_default()
    }

    pub fn sign_in(&self, user: &str) -> Session {
        let (status, body, cookie) = sign_in(&self.console, user, PASSWORD);
        assert_eq!(status, 200, "sign-in of {user}: {body}");
        Session {
            cookie: cookie.expect("a session cookie"),
            csrf: body["csrf"].as_str().expect("csrf").to_owned(),
        }
    }

    pub fn call(&self, auth: &Auth, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let (status, text, _) = http(&self.console, method, path, auth, body.as_ref());
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub fn page(&self, session: &Session, path: &str) -> (u16, String) {
        let auth = Auth::Session(session.clone(), false);
        let (status, text, _) = http(&self.console, "GET", path, &auth, None);
        (status, text)
    }

    /// Replenishes `account` over ISO 8583; returns DE39.
    pub async fn replenish(&self, stan: u32, account: &str) -> String {
        let mut client = Client::connect(self.acquirer).await;
        let answer = client.exchange(&request(stan, 2500, account)).await;
        answer.text(39).unwrap_or("").to_owned()
    }
}

#[derive(Clone, Debug)]
pub struct Session {
    pub cookie: String,
    pub csrf: String,
}

/// How a request authenticates.
pub enum Auth {
    None,
    /// A session cookie, with (`true`) or without its CSRF header.
    Session(Session, bool),
    /// A session cookie with a CSRF header of another value.
    ForgedCsrf(Session),
    Bearer(String),
}

/// One request; returns (status, body, the session cookie set).
pub fn http(
    base: &str,
    method: &str,
    path: &str,
    auth: &Auth,
    body: Option<&Value>,
) -> (u16, String, Option<String>) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into();
    let mut builder = ureq::http::Request::builder()
        .method(method)
        .uri(format!("{base}{path}"))
        .header("content-type", "application/json");
    match auth {
        Auth::None => {}
        Auth::Session(session, csrf) => {
            builder = builder.header("cookie", format!("replenish_session={}", session.cookie));
            if *csrf {
                builder = builder.header("x-csrf-token", &session.csrf);
            }
        }
        Auth::ForgedCsrf(session) => {
            builder = builder
                .header("cookie", format!("replenish_session={}", session.cookie))
                .header("x-csrf-token", "0".repeat(64));
        }
        Auth::Bearer(token) => builder = builder.header("authorization", format!("Bearer {token}")),
    }
    let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
    let request = builder.body(bytes).expect("request");
    let mut response = agent.run(request).expect("the console answers");
    let status = response.status().as_u16();
    let cookie = (response.headers().get_all("set-cookie").iter())
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            let value = v.strip_prefix("replenish_session=")?;
            let id = value.split(';').next()?;
            (!id.is_empty()).then(|| id.to_owned())
        });
    let text = response.body_mut().read_to_string().unwrap_or_default();
    (status, text, cookie)
}

pub fn sign_in(base: &str, user: &str, password: &str) -> (u16, Value, Option<String>) {
    let body = json!({ "username": user, "password": password });
    let (status, text, cookie) = http(base, "POST", "/api/v1/session", &Auth::None, Some(&body));
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::Null),
        cookie,
    )
}

/// Runs blocking HTTP work off the runtime's threads.
pub async fn off<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(work)
        .await
        .expect("blocking work")
}

impl Running {
    /// The engine's balance of `min` once it reaches `want` (or after 10 s).
    pub async fn engine_balance_eventually(&self, min: &str, want: i64) -> i64 {
        for _ in 0..200 {
            if self.engine.balance(min) == want {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        self.engine.balance(min)
    }
}

pub fn files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files(&path));
        } else {
            found.push(path);
        }
    }
    found
}
