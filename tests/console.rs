//! The operators' console end to end, against `replenish serve` in a child process
//! with an engine simulator: sign-in, sessions and CSRF, scope for every route and
//! role, activation (by a csr and by an IVR client), four eyes on adjustments and
//! unblocks, the audit trail, and no secret in any page, log or the data directory.

mod support;

use std::collections::BTreeMap;

use serde_json::{Value, json};
use support::console::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_every_role_by_its_scope() {
    let running = std::sync::Arc::new(start().await);
    // A transaction of carrier-a's subscriber that came from bank-a, and an advice for a
    // carrier-a account without a MIN: acknowledged, and queued as an exception.
    assert_eq!(running.replenish(1, CARRIER_A_ACTIVE).await, "00");
    let mut advice = support::request(2, 1500, CARRIER_A_NO_MIN);
    advice.set_mti(replenish::wire::iso8583::Mti::new(b"0220").expect("mti"));
    let mut client = support::Client::connect(running.acquirer).await;
    assert_eq!(client.exchange(&advice).await.text(39), Some("00"));
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
        let root_auth = Auth::Session(r.sign_in("root"), true);
        let (_, queue) = r.call(&root_auth, "GET", "/api/v1/exceptions", None);
        let item = queue[0]["id"].as_u64().expect("the queued advice");
        let body = json!({"account": CARRIER_A_ACTIVE, "amount": 200, "reason": "goodwill"});
        let (status, pending) = r.call(
            &Auth::Session(ana.clone(), true),
            "POST",
            "/api/v1/adjustments",
            Some(body),
        );
        assert_eq!(status, 202, "{pending}");
        let pending = pending["approval"].as_u64().expect("id");
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
            (
                "POST",
                format!("/api/v1/accounts/{CARRIER_A_ACTIVE}/activation"),
                Some(json!({"min": "2065550101"})),
            ),
            (
                "POST",
                format!("/api/v1/accounts/{CARRIER_A_BLOCKED}/unblock"),
                None,
            ),
            (
                "POST",
                format!("/api/v1/accounts/{CARRIER_A_ACTIVE}/channel-unlock"),
                None,
            ),
            ("POST", format!("/api/v1/exceptions/{item}/resubmit"), None),
            ("POST", format!("/api/v1/approvals/{pending}/approve"), None),
            (
                "POST",
                "/api/v1/search".into(),
                Some(json!({"q": CARRIER_A_ACTIVE})),
            ),
            (
                "POST",
                "/api/v1/activations".into(),
                Some(json!({"account": CARRIER_A_ACTIVE, "min": "2065550101"})),
            ),
            ("GET", "/api/v1/session".into(), None),
            ("GET", "/search".into(), None),
            ("GET", "/exceptions".into(), None),
            ("GET", "/approvals".into(), None),
            ("GET", "/breaks".into(), None),
            ("GET", "/audit".into(), None),
        ];
        // Expected status per route (rows) and role (columns, in USERS order:
        // admin, supervisor, csr-a, csr-b, bank-a, bank-z, auditor).
        let expected: [[u16; 7]; 22] = [
            [200, 200, 200, 404, 404, 404, 200], // carrier-a account
            [200, 200, 404, 200, 404, 404, 200], // carrier-b account
            [200, 200, 200, 404, 200, 404, 200], // carrier-a's transaction from bank-a
            [200, 403, 200, 404, 403, 403, 403], // block (csr-b: out of scope)
            [202, 403, 404, 202, 403, 403, 403], // adjustment for carrier-b
            [200, 200, 403, 403, 403, 403, 200], // audit
            [200, 200, 200, 200, 200, 200, 200], // exceptions (scoped lists)
            [200, 200, 403, 403, 200, 200, 200], // breaks
            [200, 200, 200, 200, 200, 200, 200], // approvals (scoped lists)
            [200, 403, 200, 404, 403, 403, 403], // activation of carrier-a's account
            [202, 403, 202, 404, 403, 403, 403], // unblock request for carrier-a's account
            [409, 403, 409, 404, 403, 403, 403], // channel unlock: not enrolled
            [202, 403, 202, 404, 403, 403, 403], // resubmission of carrier-a's advice
            [200, 409, 403, 403, 403, 403, 403], // approve ana's request: once, by a checker
            [200, 200, 200, 200, 200, 200, 200], // search (scoped hits)
            [403, 403, 403, 403, 403, 403, 403], // the IVR route, for users
            [200, 200, 200, 200, 200, 200, 200], // who am I
            [200, 200, 200, 200, 200, 200, 200], // search page
            [200, 200, 200, 200, 200, 200, 200], // exceptions page (scoped)
            [200, 200, 200, 200, 200, 200, 200], // approvals page (scoped)
            [200, 200, 403, 403, 200, 200, 200], // breaks page
            [200, 200, 403, 403, 403, 403, 200], // audit page
        ];
        let sessions: BTreeMap<&str, Session> = USERS
            .iter()
            .map(|(name, ..)| (*name, r.sign_in(name)))
            .collect();
        assert_eq!(
            routes.len(),
            expected.len(),
            "one row of statuses per route"
        );
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

/// A subscriber's account at their bank (BACKOFFICE.md §6), enrolled for debits.
const DEBIT_ACCOUNT: &str = "5413330089010012";

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

        // Enrolment for the channels rides on activation (§4, §6): each field checked.
        let enrol = |fields: Value| {
            let mut body = json!({"account": CARRIER_A_NO_MIN, "min": "2065551000"});
            if let (Some(body), Some(fields)) = (body.as_object_mut(), fields.as_object()) {
                body.extend(fields.clone());
            }
            r.call(&ivr, "POST", "/api/v1/activations", Some(body))
        };
        let full = json!({"pin": "4321", "debit_bank": "first-bank",
                          "debit_account": DEBIT_ACCOUNT});
        let bad = [
            (json!({"pin": "12a4"}), "invalid_pin"),
            (json!({"pin": "123"}), "invalid_pin"),
            (json!({"debit_bank": "no-such-bank"}), "invalid_debit_bank"),
            (json!({"debit_account": "1234567"}), "invalid_debit_account"),
            (json!({"pin": "4321"}), "invalid_enrolment"),
        ];
        for (fields, error) in bad {
            let (status, answer) = enrol(fields.clone());
            assert_eq!(
                (status, answer["error"].as_str()),
                (422, Some(error)),
                "{fields}"
            );
        }
        let (status, answer) = enrol(full);
        assert_eq!(status, 200, "{answer}");
        let shown = json!({"debit_bank": "first-bank", "debit_account": "541333******0012",
                           "locked": false});
        assert_eq!(answer["enrolment"], shown, "masked: {answer}");
        let (status, answer) = enrol(json!({"pin": "987654"}));
        assert_eq!(
            (status, &answer["enrolment"]),
            (200, &shown),
            "a new PIN alone"
        );
        // An operator may unlock the channels (nothing to unlock here: as it stands).
        let ana = Auth::Session(r.sign_in("ana"), true);
        let unlock = format!("/api/v1/accounts/{CARRIER_A_NO_MIN}/channel-unlock");
        assert_eq!(r.call(&ana, "POST", &unlock, None), (200, shown.clone()));
    })
    .await;
    // The debit account and the PINs are in no file of the data directory, nor the log.
    for path in files(&running.dir.path().join("data")) {
        let bytes = std::fs::read(&path).unwrap_or_default();
        for secret in [DEBIT_ACCOUNT, "987654\"", "\"4321\""] {
            let found = bytes.windows(secret.len()).any(|w| w == secret.as_bytes());
            assert!(!found, "{} holds {secret}", path.display());
        }
    }
    assert!(!running.log().contains(DEBIT_ACCOUNT));
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
