//! The demo's self-service round (BACKOFFICE.md §6): the sample channels config
//! (`fixtures/configs/channels.toml`), three subscribers enrolled with a PIN and a debit
//! account at `bank-sim` (started in process on the debit bank's links with
//! `fixtures/channels/bank-accounts.csv`), a channels client, and one replenishment per
//! channel (web, wireless feature code, IVR number) through the channel API, reported
//! with the bank's balances and the SMS the subscribers got.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::console::secrets;
use crate::durable::record::{Enrolment, Record, Saved};
use crate::durable::vault::Vault;
use crate::tools::banksim::{self, BankConfig, BankSim};
use crate::tools::smsc_sim::{self, SmscSim};
use crate::vocab::accounts::{Account, AccountStatus, Location};
use crate::vocab::people::{Client, ClientScope};
use crate::wire::framing::FrameCodec;
use crate::wire::iso8583::{Spec, mask_pan};

/// The sample channels config.
pub const SAMPLE_CHANNELS: &str = include_str!("../../fixtures/configs/channels.toml");
/// The sample bank's accounts.
pub const SAMPLE_BANK_ACCOUNTS: &str = include_str!("../../fixtures/channels/bank-accounts.csv");

/// The PIN the demo's subscribers chose.
const PIN: &str = "4321";

/// The demo's subscribers: prepaid account, MIN, debit account at the sample bank.
const SUBSCRIBERS: [(&str, &str, &str); 3] = [
    ("47617390020000015", "2065559001", "5413330000000019"),
    ("47617390020000023", "2065559002", "5413330000000027"),
    ("47617390020000031", "2065559003", "5413330000000035"),
];

/// Adds the sample's `[channels]`, `[[debit_bank]]`, `[[feature_code]]` and
/// `[[ivr_number]]` to `config`.
pub fn configure(config: &mut Config) -> Result<(), String> {
    let sample = Config::from_toml(SAMPLE_CHANNELS, "fixtures/configs/channels.toml")
        .map_err(|e| e.to_string())?;
    config.channels = sample.channels;
    config.debit_bank = sample.debit_bank;
    config.feature_code = sample.feature_code;
    config.ivr_number = sample.ivr_number;
    Ok(())
}

/// Where the demo's SMSC listens.
pub const DEMO_SMSC: &str = "127.0.0.1:2775";

/// Adds `[notify.sms]` for the demo's SMSC ([`crate::tools::smsc_sim`]), its password
/// file written in the data directory (which must exist).
pub fn with_sms(config: &mut Config) -> Result<(), String> {
    let password_file = config.data_dir.join("smsc.password");
    std::fs::write(&password_file, "demo-sms\n").map_err(|e| e.to_string())?;
    config.notify.sms = Some(crate::config::channels::SmsConfig {
        smsc: DEMO_SMSC.to_owned(),
        system_id: "replenish".to_owned(),
        password_file,
        source_addr: "7777".to_owned(),
        system_type: String::new(),
        enquire_link: std::time::Duration::from_secs(30),
    });
    Ok(())
}

/// Starts the demo's SMSC for `config`'s `[notify.sms]`.
pub async fn start_smsc(config: &Config, stop: CancellationToken) -> Result<SmscSim, String> {
    let sms = config.notify.sms.as_ref().ok_or("no [notify.sms]")?;
    let listen = sms.smsc.parse().map_err(|e| format!("{}: {e}", sms.smsc))?;
    (smsc_sim::start(listen, &sms.system_id, "demo-sms", stop).await)
        .map_err(|e| format!("SMSC on {}: {e} (is another replenish running?)", sms.smsc))
}

/// The SMS the subscribers got (waiting up to 10 s for `count`), one line each.
pub async fn sms_lines(smsc: &SmscSim, count: usize) -> Vec<String> {
    let taken = || smsc.received.lock().map(|r| r.clone()).unwrap_or_default();
    for _ in 0..200 {
        if taken().len() >= count {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let mut lines = vec![format!(
        "  SMS received by the SMSC (SMPP submit_sm from 7777): {}",
        taken().len()
    )];
    lines.extend(
        taken()
            .iter()
            .map(|sms| format!("    to {}: {}", sms.to, sms.text)),
    );
    lines
}

/// The records that set the round up (the subscribers' accounts, the `CHANNELS`
/// location, their enrolments, a client of scope `channels`) and the client's token.
pub fn seed(config: &Config) -> Result<(Vec<Record>, String), String> {
    let subscribers: Vec<Subscriber> = (SUBSCRIBERS.iter())
        .map(|(account, min, debit)| Subscriber {
            account: (*account).to_owned(),
            min: (*min).to_owned(),
            debit: (*debit).to_owned(),
        })
        .collect();
    let mut records = enrolled(config, &subscribers, PIN)?;
    let (client, token) = client("demo-gateway")?;
    records.push(client);
    Ok((records, token))
}

/// A prepaid subscriber and the bank account the channels debit.
#[derive(Debug, Clone)]
pub struct Subscriber {
    /// The prepaid account (carrier-a, active).
    pub account: String,
    /// Its MIN.
    pub min: String,
    /// The debit account at the config's first debit bank.
    pub debit: String,
}

/// The records that make `subscribers` active accounts enrolled for the channels with
/// `pin` (one argon2id hash for all), and the authorized `CHANNELS` location.
pub fn enrolled(
    config: &Config,
    subscribers: &[Subscriber],
    pin: &str,
) -> Result<Vec<Record>, String> {
    let vault = Vault::open_or_create(&config.channel_key_file()).map_err(|e| e.to_string())?;
    let pin_hash = secrets::hash_secret(pin).map_err(|e| e.to_string())?;
    let bank = (config.debit_bank.first()).ok_or("the config has no [[debit_bank]]")?;
    let accounts = (subscribers.iter())
        .map(|s| Account {
            number: s.account.clone(),
            min: s.min.clone(),
            carrier: "carrier-a".to_owned(),
            status: AccountStatus::Active,
            expiry: Some((2030, 12)),
        })
        .collect();
    let location = Location {
        id: crate::channels::bank::LOCATION.to_owned(),
        name: "Self-service channels".to_owned(),
        retailer: "replenish".to_owned(),
        authorized: true,
    };
    let mut records = vec![
        Record::AccountsImported { accounts },
        Record::LocationsImported {
            locations: vec![location],
        },
    ];
    for subscriber in subscribers {
        let masked = mask_pan(subscriber.account.as_bytes());
        let enrolment = Enrolment {
            account: subscriber.account.clone(),
            pin_hash: pin_hash.clone(),
            debit_bank: bank.name.clone(),
            debit_account: (vault.seal(&subscriber.account, &subscriber.debit))
                .map_err(|e| e.to_string())?,
            debit_masked: mask_pan(subscriber.debit.as_bytes()),
            failures: 0,
            locked: false,
        };
        let audit = crate::console::users::audit("demo", "channel.enrol", &masked, "ok");
        records.push(Record::Enrolled(Box::new(Saved {
            item: enrolment,
            audit,
        })));
    }
    Ok(records)
}

/// A client `name` of scope `channels`: its record and its token.
pub fn client(name: &str) -> Result<(Record, String), String> {
    let token = secrets::token().map_err(|e| e.to_string())?;
    let client = Client {
        name: name.to_owned(),
        scope: ClientScope::Channels,
        token_hash: secrets::digest_hex(&token),
        disabled: false,
    };
    let audit = crate::console::users::audit("demo", "client.add", name, "ok");
    Ok((
        Record::ClientSaved(Box::new(Saved {
            item: client,
            audit,
        })),
        token,
    ))
}

/// Starts `bank-sim` on the debit bank's links with the sample accounts (its ledger in
/// the data directory).
pub async fn start_bank(config: &Config, stop: CancellationToken) -> Result<BankSim, String> {
    start_bank_with(config, SAMPLE_BANK_ACCOUNTS, stop).await
}

/// Starts `bank-sim` on the debit bank's links with `accounts` (`account,balance` CSV).
pub async fn start_bank_with(
    config: &Config,
    accounts: &str,
    stop: CancellationToken,
) -> Result<BankSim, String> {
    let bank = (config.debit_bank.first()).ok_or("the config has no [[debit_bank]]")?;
    let file = config.data_dir.join("bank-accounts.csv");
    std::fs::write(&file, accounts).map_err(|e| e.to_string())?;
    let settings = BankConfig {
        listen: bank.links.clone(),
        accounts: file,
        ledger: Some(config.data_dir.join("bank-ledger.jsonl")),
        spec: Arc::new(Spec::resolve(&bank.spec).map_err(|e| e.to_string())?),
        codec: FrameCodec::new(bank.framing),
        sync: false,
    };
    (banksim::start(settings, stop).await)
        .map_err(|e| format!("bank simulator: {e} (is another replenish running?)"))
}

/// One replenishment per channel through the channel API; the lines reporting them and
/// the confirmation numbers of the completed ones.
pub async fn replenish(
    config: &Config,
    token: &str,
    bank: &BankSim,
) -> Result<(Vec<String>, Vec<String>), String> {
    let listen = (config.channels.as_ref())
        .ok_or("the sample has [channels]")?
        .listen;
    let (web, wireless, ivr) = (SUBSCRIBERS[0], SUBSCRIBERS[1], SUBSCRIBERS[2]);
    let requests = [
        (
            "demo-web-1",
            serde_json::json!({"channel": "web", "min": web.1, "pin": PIN, "amount": 1500}),
        ),
        (
            "demo-wireless-1",
            serde_json::json!({"channel": "wireless", "min": wireless.1, "dialed": format!("*25{PIN}")}),
        ),
        (
            "demo-ivr-1",
            serde_json::json!({"channel": "ivr", "ani": ivr.1, "dialed_number": "18005552525", "pin": PIN}),
        ),
    ];
    let opening: Vec<u64> = SUBSCRIBERS
        .iter()
        .map(|s| bank.balance(s.2).unwrap_or(0))
        .collect();
    let mut lines = vec!["self-service channels (POST /api/v1/replenishments; the switch debits the subscriber's bank, then credits the engine):".to_owned()];
    let mut completed = Vec::new();
    for (n, (key, body)) in requests.into_iter().enumerate() {
        let (status, answer) = post(listen, token, key, &body).await?;
        let confirmation = answer["confirmation"].as_str().map(str::to_owned);
        lines.push(format!(
            "  {:<8} MIN {} -> {status} {} {}; {} debited {}",
            body["channel"].as_str().unwrap_or(""),
            SUBSCRIBERS[n].1,
            answer["status"].as_str().unwrap_or("?"),
            confirmation
                .as_deref()
                .map_or_else(|| answer.to_string(), |c| format!("confirmation {c}")),
            mask_pan(SUBSCRIBERS[n].2.as_bytes()),
            money(opening[n].saturating_sub(bank.balance(SUBSCRIBERS[n].2).unwrap_or(0))),
        ));
        completed.extend(confirmation);
    }
    Ok((lines, completed))
}

fn money(minor: u64) -> String {
    format!("{}.{:02}", minor / 100, minor % 100)
}

/// One `POST /api/v1/replenishments`: the status and the JSON answer.
pub async fn post(
    listen: std::net::SocketAddr,
    token: &str,
    key: &str,
    body: &serde_json::Value,
) -> Result<(u16, serde_json::Value), String> {
    let (token, key, body) = (token.to_owned(), key.to_owned(), body.to_string());
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let request = ureq::http::Request::builder()
            .method("POST")
            .uri(format!("http://{listen}/api/v1/replenishments"))
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {token}"))
            .header("idempotency-key", key)
            .body(body.into_bytes())
            .map_err(|e| e.to_string())?;
        let mut response = agent
            .run(request)
            .map_err(|e| format!("channel API: {e}"))?;
        let text = response
            .body_mut()
            .read_to_string()
            .map_err(|e| e.to_string())?;
        let answer = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        Ok((response.status().as_u16(), answer))
    })
    .await
    .map_err(|e| e.to_string())?
}
