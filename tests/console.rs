//! The operators' console end to end, against `replenish serve` in a child process
//! with an engine simulator: sign-in, sessions and CSRF, scope for every route and
//! role, activation (by a csr and by an IVR client), four eyes on adjustments and
//! unblocks, the audit trail, and no secret in any page, log or the data directory.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use support::engine::{Engine, HIGH_LIMITS, loopback_pair};
use support::{Client, free_ports, request};

const PASSWORD: &str = "correct horse battery";
const CARRIER_A_ACTIVE: &str = "4761739001010010";
const CARRIER_A_NO_MIN: &str = "4761739001010028";
const CARRIER_A_BLOCKED: &str = "4761739001010044";
const CARRIER_A_EXPIRED: &str = "4761739001010051";
const CARRIER_B_ACTIVE: &str = "4761739001010085";

/// The roles every table runs through, with the user of each.
const USERS: [(&str, &str, &str); 7] = [
    ("root", "admin", ""),
    ("sue", "supervisor", ""),
    ("ana", "csr", "--carrier=carrier-a"),
    ("bob", "csr", "--carrier=carrier-b"),
    ("bank-user", "bank", "--bank=bank-a"),
    ("other-bank", "bank", "--bank=bank-z"),
    ("audrey", "auditor", ""),
];

/// A switch in a child process with its console, and what the tests need of it.
struct Running {
    child: Child,
    dir: tempfile::TempDir,
    config: PathBuf,
    console: String,
    acquirer: std::net::SocketAddr,
    engine: Engine,
    ivr_token: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn replenish() -> Command {
    Command::new(env!("CARGO_BIN_EXE_replenish"))
}

/// Runs `replenish ARGS --config CONFIG` with `stdin`; returns (exit code, stdout).
fn cli(config: &Path, args: &[&str], stdin: &str) -> (i32, String) {
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

async fn start() -> Running {
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
    let root = support::root().join("fixtures/reference");
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

fn add_user(config: &Path, name: &str, role: &str, scope: &str) {
    let mut args = vec!["users", "add", name, "--role", role, "--password-stdin"];
    if !scope.is_empty() {
        args.push(scope);
    }
    let (code, out) = cli(config, &args, &format!("{PASSWORD}\n"));
    assert_eq!(code, 0, "users add {name}: {out}");
}

impl Running {
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("serve.log")).unwrap_or_default()
    }

    fn sign_in(&self, user: &str) -> Session {
        let (status, body, cookie) = sign_in(&self.console, user, PASSWORD);
        assert_eq!(status, 200, "sign-in of {user}: {body}");
        Session {
            cookie: cookie.expect("a session cookie"),
            csrf: body["csrf"].as_str().expect("csrf").to_owned(),
        }
    }

    fn call(&self, auth: &Auth, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let (status, text, _) = http(&self.console, method, path, auth, body.as_ref());
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    fn page(&self, session: &Session, path: &str) -> (u16, String) {
        let auth = Auth::Session(session.clone(), false);
        let (status, text, _) = http(&self.console, "GET", path, &auth, None);
        (status, text)
    }

    /// Replenishes `account` over ISO 8583; returns DE39.
    async fn replenish(&self, stan: u32, account: &str) -> String {
        let mut client = Client::connect(self.acquirer).await;
        let answer = client.exchange(&request(stan, 2500, account)).await;
        answer.text(39).unwrap_or("").to_owned()
    }
}

#[derive(Clone, Debug)]
struct Session {
    cookie: String,
    csrf: String,
}

/// How a request authenticates.
enum Auth {
    None,
    /// A session cookie, with (`true`) or without its CSRF header.
    Session(Session, bool),
    /// A session cookie with a CSRF header of another value.
    ForgedCsrf(Session),
    Bearer(String),
}

/// One request; returns (status, body, the session cookie set).
fn http(
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

fn sign_in(base: &str, user: &str, password: &str) -> (u16, Value, Option<String>) {
    let body = json!({ "username": user, "password": password });
    let (status, text, cookie) = http(base, "POST", "/api/v1/session", &Auth::None, Some(&body));
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::Null),
        cookie,
    )
}

/// Runs blocking HTTP work off the runtime's threads.
async fn off<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(work)
        .await
        .expect("blocking work")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_every_role_by_its_scope() {
    let running = std::sync::Arc::new(start().await);
    // A transaction of carrier-a's subscriber that came from bank-a.
    assert_eq!(running.replenish(1, CARRIER_A_ACTIVE).await, "00");
    let r = running.clone();
    off(move || {
        let ana = r.sign_in("ana");
        let confirmation = {
            let (status, view) = r.call(
                &Auth::Session(ana.clone(), false),
                "GET",
                &format!("/api/v1/accounts/{CARRIER_A_ACTIVE}"),
                None,
            );
            assert_eq!(status, 200, "{view}");
            view["history"][0]["confirmation"]
                .as_str()
                .expect("the approval in the history")
                .to_owned()
        };
        let routes: Vec<(&str, String, Option<Value>)> = vec![
            ("GET", format!("/api/v1/accounts/{CARRIER_A_ACTIVE}"), None),
            ("GET", format!("/api/v1/accounts/{CARRIER_B_ACTIVE}"), None),
            ("GET", format!("/api/v1/transactions/{confirmation}"), None),
            (
                "POST",
                format!("/api/v1/accounts/{CARRIER_A_ACTIVE}/block"),
                None,
            ),
            (
                "POST",
                "/api/v1/adjustments".into(),
                Some(json!({"account": CARRIER_B_ACTIVE, "amount": 100, "reason": "goodwill"})),
            ),
            ("GET", "/api/v1/audit".into(), None),
            ("GET", "/api/v1/exceptions".into(), None),
            ("GET", "/api/v1/breaks".into(), None),
            ("GET", "/api/v1/approvals".into(), None),
        ];
        // Expected status per route (rows) and role (columns, in USERS order:
        // admin, supervisor, csr-a, csr-b, bank-a, bank-z, auditor).
        let expected: [[u16; 7]; 9] = [
            [200, 200, 200, 404, 404, 404, 200], // carrier-a account
            [200, 200, 404, 200, 404, 404, 200], // carrier-b account
            [200, 200, 200, 404, 200, 404, 200], // carrier-a's transaction from bank-a
            [200, 403, 200, 404, 403, 403, 403], // block (csr-b: out of scope)
            [202, 403, 404, 202, 403, 403, 403], // adjustment for carrier-b
            [200, 200, 403, 403, 403, 403, 200], // audit
            [200, 200, 200, 200, 200, 200, 200], // exceptions (scoped lists)
            [200, 200, 403, 403, 200, 200, 200], // breaks
            [200, 200, 200, 200, 200, 200, 200], // approvals (scoped lists)
        ];
        let sessions: BTreeMap<&str, Session> = USERS
            .iter()
            .map(|(name, ..)| (*name, r.sign_in(name)))
            .collect();
        let mut wrong = Vec::new();
        for ((method, path, body), row) in routes.iter().zip(expected) {
            for ((name, role, _), want) in USERS.iter().zip(row) {
                let auth = Auth::Session(sessions[name].clone(), true);
                let (got, answer) = r.call(&auth, method, path, body.clone());
                if got != want {
                    wrong.push(format!(
                        "{method} {path} as {name} ({role}): {got}, want {want}: {answer}"
                    ));
                }
                if got == 202 {
                    // One pending adjustment per account: reject it for the next role.
                    let id = answer["approval"].as_u64().expect("approval id");
                    let sue = Auth::Session(sessions["sue"].clone(), true);
                    let path = format!("/api/v1/approvals/{id}/reject");
                    assert_eq!(r.call(&sue, "POST", &path, None).0, 200);
                }
                if got == 200 && path.ends_with("/block") {
                    let root = Auth::Session(sessions["root"].clone(), true);
                    let (status, pending) = r.call(
                        &auth_of(&sessions, "ana"),
                        "POST",
                        &path.replace("/block", "/unblock"),
                        None,
                    );
                    assert_eq!(status, 202, "{pending}");
                    let id = pending["approval"].as_u64().expect("approval");
                    let approve = format!("/api/v1/approvals/{id}/approve");
                    assert_eq!(r.call(&root, "POST", &approve, None).0, 200);
                }
            }
        }
        assert!(
            wrong.is_empty(),
            "{} route answers wrong:\n{}",
            wrong.len(),
            wrong.join("\n")
        );

        // Scoped lists: a csr of carrier-b sees none of carrier-a's requests.
        let (_, approvals) = r.call(&auth_of(&sessions, "bob"), "GET", "/api/v1/approvals", None);
        let shown = approvals.as_array().expect("list");
        assert!(
            !shown.is_empty()
                && shown
                    .iter()
                    .all(|a| a["target"] != json!("476173******0010"))
        );
        let (_, all) = r.call(
            &auth_of(&sessions, "audrey"),
            "GET",
            "/api/v1/approvals",
            None,
        );
        assert!(all.as_array().expect("list").len() > shown.len());

        // A machine client may activate and nothing else.
        let ivr = Auth::Bearer(r.ivr_token.clone());
        let path = format!("/api/v1/accounts/{CARRIER_A_ACTIVE}");
        assert_eq!(r.call(&ivr, "GET", &path, None).0, 403);
        assert_eq!(r.call(&ivr, "GET", "/api/v1/audit", None).0, 403);
        let forged = Auth::Bearer("f".repeat(64));
        let body = json!({"account": CARRIER_A_NO_MIN, "min": "2065551111"});
        assert_eq!(
            r.call(&forged, "POST", "/api/v1/activations", Some(body)).0,
            401
        );
    })
    .await;
}

fn auth_of(sessions: &BTreeMap<&str, Session>, name: &str) -> Auth {
    Auth::Session(sessions[name].clone(), true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_need_csrf_change_id_at_sign_in_lock_out_and_end() {
    let running = std::sync::Arc::new(start().await);
    let r = running.clone();
    off(move || {
        let base = &r.console;
        // Session fixation: a cookie planted before sign-in is not the one after it.
        let planted = Session {
            cookie: "a".repeat(64),
            csrf: String::new(),
        };
        let body = json!({"username": "ana", "password": PASSWORD});
        let (status, _, cookie) = http(
            base,
            "POST",
            "/api/v1/session",
            &Auth::Session(planted.clone(), false),
            Some(&body),
        );
        assert_eq!(status, 200);
        assert_ne!(cookie.as_deref(), Some(planted.cookie.as_str()));
        assert_eq!(
            r.call(
                &Auth::Session(planted, false),
                "GET",
                "/api/v1/session",
                None
            )
            .0,
            401
        );
        let first = r.sign_in("ana");
        let second = r.sign_in("ana");
        assert_ne!(first.cookie, second.cookie, "every sign-in makes a new id");

        // CSRF: a change without the header, or with another token, is refused.
        let path = format!("/api/v1/accounts/{CARRIER_A_NO_MIN}/activation");
        let body = Some(json!({"min": "2065551234"}));
        let (status, answer) = r.call(
            &Auth::Session(first.clone(), false),
            "POST",
            &path,
            body.clone(),
        );
        assert_eq!(status, 403, "{answer}");
        assert_eq!(
            r.call(
                &Auth::ForgedCsrf(first.clone()),
                "POST",
                &path,
                body.clone()
            )
            .0,
            403
        );
        let crossed = Session {
            cookie: first.cookie.clone(),
            csrf: second.csrf.clone(),
        };
        assert_eq!(
            r.call(&Auth::Session(crossed, true), "POST", &path, body.clone())
                .0,
            403,
            "another session's token does not count"
        );
        let (status, answer) = r.call(&Auth::Session(first.clone(), true), "POST", &path, body);
        assert_eq!(
            (status, &answer["status"]),
            (200, &json!("active")),
            "{answer}"
        );

        // Throttling: five failures in a row, then 429 even with the right password.
        for attempt in 1..=5 {
            let (status, ..) = sign_in(base, "bob", "wrong password!");
            assert_eq!(status, 401, "attempt {attempt}");
        }
        let (status, ..) = sign_in(base, "bob", PASSWORD);
        assert_eq!(status, 429);
        let (status, ..) = sign_in(base, "nobody-at-all", PASSWORD);
        assert_eq!(
            status, 401,
            "an unknown user is refused like a wrong password"
        );

        // Sign-out ends the session; a disabled user's sessions end too.
        let out = Auth::Session(second.clone(), true);
        assert_eq!(r.call(&out, "DELETE", "/api/v1/session", None).0, 204);
        assert_eq!(r.call(&out, "GET", "/api/v1/session", None).0, 401);
        let (code, text) = cli(&r.config, &["users", "disable", "ana"], "");
        assert_eq!(code, 0, "{text}");
        assert_eq!(
            r.call(&Auth::Session(first, true), "GET", "/api/v1/session", None)
                .0,
            401
        );
        assert_eq!(sign_in(base, "ana", PASSWORD).0, 401);
        let (code, text) = cli(&r.config, &["users", "list", "--json"], "");
        assert_eq!(code, 0, "{text}");
        let listed: Value = serde_json::from_str(text.trim()).expect("users list --json");
        let ana = listed
            .as_array()
            .and_then(|l| l.iter().find(|u| u["name"] == "ana"));
        assert_eq!(ana.map(|u| u["disabled"].clone()), Some(json!(true)));
        assert!(!text.contains("argon2"), "no hash in the listing");
        let (code, text) = cli(
            &r.config,
            &["users", "add", "x", "--role", "csr", "--password-stdin"],
            "long enough pw\n",
        );
        assert_eq!(code, 2, "a csr without a carrier is bad input: {text}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activation_four_eyes_and_the_audit_trail() {
    let running = std::sync::Arc::new(start().await);
    let r = running.clone();
    off(move || {
        let ivr = Auth::Bearer(r.ivr_token.clone());
        let activate = |account: &str, min: &str| {
            let body = json!({"account": account, "min": min});
            r.call(&ivr, "POST", "/api/v1/activations", Some(body))
        };
        // Step 317's account checks and step 318's MIN check, each with its §4 error.
        let cases = [
            ("4761739001010011", "2065551000", "invalid_account"), // check digit
            (CARRIER_A_EXPIRED, "2065551000", "invalid_account"),
            (CARRIER_A_BLOCKED, "2065551000", "invalid_account"),
            (CARRIER_A_NO_MIN, "206555100", "invalid_min"),
            (CARRIER_A_NO_MIN, "20655510OO", "invalid_min"),
            (CARRIER_A_NO_MIN, "2065550101", "min_in_use"),
        ];
        for (account, min, error) in cases {
            let (status, answer) = activate(account, min);
            assert_eq!(
                (status, answer["error"].as_str()),
                (422, Some(error)),
                "{account} {min}: {answer}"
            );
        }
        let (status, answer) = activate(CARRIER_A_NO_MIN, "2065551000");
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer, json!({"status": "active", "min": "2065551000"}));
        assert_eq!(
            activate(CARRIER_A_NO_MIN, "2065551000").0,
            200,
            "again with its own MIN"
        );
        assert_eq!(
            activate(CARRIER_A_ACTIVE, "2065551000").1["error"],
            "min_in_use"
        );
    })
    .await;
    // An activated account replenishes at once.
    assert_eq!(running.replenish(7, CARRIER_A_NO_MIN).await, "00");
    assert_eq!(
        running.engine_balance_eventually("2065551000", 2500).await,
        2500
    );

    let r = running.clone();
    off(move || {
        let (ana, sue, root) = (r.sign_in("ana"), r.sign_in("sue"), r.sign_in("root"));
        let ana_auth = Auth::Session(ana, true);
        let body = json!({"account": CARRIER_A_NO_MIN, "amount": 1500, "reason": "dropped call"});
        let (status, pending) =
            r.call(&ana_auth, "POST", "/api/v1/adjustments", Some(body.clone()));
        assert_eq!(status, 202, "{pending}");
        assert_eq!(pending["state"], "pending");
        let id = pending["approval"].as_u64().expect("id");
        let (status, again) = r.call(&ana_auth, "POST", "/api/v1/adjustments", Some(body));
        assert_eq!(
            status, 409,
            "a second pending request for the same item: {again}"
        );
        let approve = format!("/api/v1/approvals/{id}/approve");
        assert_eq!(
            r.call(&ana_auth, "POST", &approve, None).0,
            403,
            "a csr cannot approve"
        );

        // An admin who makes a request cannot approve it either.
        let root_auth = Auth::Session(root, true);
        let block = format!("/api/v1/accounts/{CARRIER_A_ACTIVE}/block");
        assert_eq!(r.call(&root_auth, "POST", &block, None).0, 200);
        let unblock = format!("/api/v1/accounts/{CARRIER_A_ACTIVE}/unblock");
        let (status, own) = r.call(&root_auth, "POST", &unblock, None);
        assert_eq!(status, 202);
        let own_path = format!("/api/v1/approvals/{}/approve", own["approval"]);
        assert_eq!(
            r.call(&root_auth, "POST", &own_path, None).0,
            403,
            "the maker"
        );

        let sue_auth = Auth::Session(sue, true);
        let (status, done) = r.call(&sue_auth, "POST", &approve, None);
        assert_eq!(status, 200, "{done}");
        assert_eq!(done["state"], "done");
        let confirmation = done["confirmation"]
            .as_str()
            .expect("confirmation")
            .to_owned();
        assert_eq!(r.call(&sue_auth, "POST", &approve, None).0, 409, "once");
        assert_eq!(r.call(&sue_auth, "POST", &own_path, None).0, 200);
        let account = format!("/api/v1/accounts/{CARRIER_A_ACTIVE}");
        assert_eq!(
            r.call(&sue_auth, "GET", &account, None).1["status"],
            "active"
        );

        // The adjustment is a transaction of its own, seen in the account's history.
        let (status, found) = r.call(
            &sue_auth,
            "GET",
            &format!("/api/v1/transactions/{confirmation}"),
            None,
        );
        assert_eq!(status, 200, "{found}");
        assert_eq!(found["mti"], "0220");
        let (_, view) = r.call(
            &ana_auth,
            "GET",
            &format!("/api/v1/accounts/{CARRIER_A_NO_MIN}"),
            None,
        );
        let lines = view["history"].as_array().expect("history");
        assert!(
            lines
                .iter()
                .any(|l| l["confirmation"] == json!(confirmation) && l["amount"] == 1500)
        );

        // The audit trail: who did what, with before and after, newest first.
        let (status, trail) = r.call(&sue_auth, "GET", "/api/v1/audit", None);
        assert_eq!(status, 200);
        let trail = trail.as_array().expect("trail").clone();
        let find = |action: &str| trail.iter().find(|e| e["action"] == action).cloned();
        let request = find("adjustment.request").expect("the request is audited");
        assert_eq!(
            (request["user"].as_str(), request["result"].as_str()),
            (Some("ana"), Some("pending"))
        );
        let target = format!("approval {id}");
        let approval = (trail.iter())
            .find(|e| e["action"] == "approval.approve" && e["target"] == json!(target))
            .expect("the approval is audited");
        assert_eq!(approval["user"], "sue");
        assert_eq!(approval["before"]["state"], "pending");
        assert_eq!(approval["after"]["confirmation"], json!(confirmation));
        let activation = find("account.activate").expect("the activation is audited");
        assert_eq!(
            (activation["user"].as_str(), activation["target"].as_str()),
            (Some("ivr"), Some("476173******0028"))
        );
        assert_eq!(activation["before"]["status"], "active");
        assert_eq!(activation["after"]["min"], "2065551000");
        for key in ["at", "user", "action", "target", "result"] {
            assert!(
                trail.iter().all(|e| e.get(key).is_some()),
                "every entry has {key}"
            );
        }
    })
    .await;
    // Credited once: the first replenishment and the adjustment.
    assert_eq!(
        running.engine_balance_eventually("2065551000", 4000).await,
        4000
    );
}

impl Running {
    /// The engine's balance of `min` once it reaches `want` (or after 10 s).
    async fn engine_balance_eventually(&self, min: &str, want: i64) -> i64 {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_any_page_log_or_the_data_directory() {
    let running = std::sync::Arc::new(start().await);
    assert_eq!(running.replenish(3, CARRIER_A_ACTIVE).await, "00");
    let r = running.clone();
    let (pages, secrets, csrf) = off(move || {
        let ana = r.sign_in("ana");
        let sue = r.sign_in("sue");
        let audrey = r.sign_in("audrey");
        let wrong = sign_in(&r.console, "sue", "a wrong password typed");
        assert_eq!(wrong.0, 401);
        let body = json!({"account": CARRIER_A_ACTIVE, "amount": 300, "reason": "goodwill"});
        let (status, pending) = r.call(
            &Auth::Session(ana.clone(), true),
            "POST",
            "/api/v1/adjustments",
            Some(body),
        );
        assert_eq!(status, 202);
        let approve = format!("/api/v1/approvals/{}/approve", pending["approval"]);
        assert_eq!(
            r.call(&Auth::Session(sue.clone(), true), "POST", &approve, None)
                .0,
            200
        );
        let (_, hits) = r.call(
            &Auth::Session(ana.clone(), true),
            "POST",
            "/api/v1/search",
            Some(json!({"q": CARRIER_A_ACTIVE})),
        );
        let handle = hits[0]["target"]
            .as_str()
            .expect("an account hit")
            .to_owned();
        let mut pages = Vec::new();
        for (session, path) in [
            (&ana, "/search".to_owned()),
            (&ana, format!("/accounts/{handle}")),
            (&ana, "/approvals".to_owned()),
            (&ana, "/exceptions".to_owned()),
            (&sue, "/approvals".to_owned()),
            (&audrey, "/audit".to_owned()),
            (&audrey, "/breaks".to_owned()),
        ] {
            let (status, html) = r.page(session, &path);
            assert_eq!(status, 200, "{path}: {html}");
            pages.push((path, html));
        }
        let secrets = vec![
            PASSWORD.to_owned(),
            "a wrong password typed".to_owned(),
            r.ivr_token.clone(),
            ana.cookie.clone(),
            ana.csrf.clone(),
        ];
        (pages, secrets, ana.csrf)
    })
    .await;
    // The account page shows the account masked, its MIN and the adjustment.
    let account = &pages[1].1;
    assert!(account.contains("476173******0010") && account.contains("2065550101"));
    assert!(account.contains("Activate") && account.contains("Request adjustment"));
    // A page carries its session's CSRF token (that is how it sends changes), nothing else.
    for (path, html) in &pages {
        for secret in secrets
            .iter()
            .filter(|s| **s != csrf)
            .chain([&CARRIER_A_ACTIVE.to_owned()])
        {
            assert!(!html.contains(secret.as_str()), "{path} shows a secret");
        }
    }
    let log = running.log();
    assert!(log.contains("sign-in refused"), "the refusal is logged");
    for secret in secrets.iter().chain([&CARRIER_A_ACTIVE.to_owned()]) {
        assert!(!log.contains(secret.as_str()), "the log holds a secret");
    }
    // The data directory keeps account numbers (they are the accounts) but no secret.
    for file in files(&running.dir.path().join("data")) {
        let bytes = std::fs::read(&file).unwrap_or_default();
        for secret in &secrets {
            let found = bytes.windows(secret.len()).any(|w| w == secret.as_bytes());
            assert!(!found, "{} holds a secret", file.display());
        }
    }
}

fn files(dir: &Path) -> Vec<PathBuf> {
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
