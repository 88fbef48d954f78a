//! SMS over SMPP 3.4 against a real SMSC (the npm `smpp` package's server in a child
//! process, see `tests/support/smsc.rs`), over loopback sockets. Most tests make the
//! outbox passes the running switch makes (`notify::deliver_due`) on a data directory of
//! their own, one at a time and with the clock moved past the backoff, so nothing waits
//! on a timer: an SMS goes once with its text in the default mode and alphabet; a
//! refused bind is retried until the password file is fixed; a connection the SMSC
//! closes, and an `unbind` it sends, are bound again at the next SMS; an error status is
//! retried; `enquire_link` both ways; `unbind` at stop; nothing is sent twice. The last
//! one runs the switch itself on a data directory holding a queued SMS (there is no way
//! to queue one through a running switch but the channel API, which `tests/channels.rs`
//! covers end to end).

mod support;

use std::path::PathBuf;
use std::time::Duration;

use replenish::config::channels::SmsConfig;
use replenish::config::{Config, NotifyConfig};
use replenish::durable::datadir::{self, DataDir};
use replenish::durable::record::{Notification, Record};
use replenish::durable::store::NotificationItem;
use replenish::notify::{self, Senders, sms};
use serde_json::Value;
use support::smsc::Smsc;

const PASSWORD: &str = "s3cret";
const MIN: &str = "2065550101";

type Error = Box<dyn std::error::Error + Send + Sync>;

/// A data directory with its outbox, the SMS config for an SMSC and the senders the
/// passes use (kept from one pass to the next, as the switch keeps them).
struct Outbox {
    data: DataDir,
    config: SmsConfig,
    senders: Senders,
    /// How far the passes' clock is ahead of the real one (past the backoffs).
    ahead_ms: i64,
    _dir: tempfile::TempDir,
}

impl Outbox {
    fn new(smsc: &Smsc, dir: tempfile::TempDir, password: &str) -> Outbox {
        let config = sms_config(smsc, write_password(dir.path(), password));
        Outbox::with(dir, config)
    }

    fn with(dir: tempfile::TempDir, config: SmsConfig) -> Outbox {
        let mut switch = Config::embedded_default();
        switch.data_dir = dir.path().join("data");
        let data = DataDir::open(&switch).expect("data directory");
        let senders = Senders::new(&NotifyConfig {
            email: None,
            sms: Some(config.clone()),
        });
        Outbox {
            data,
            config,
            senders,
            ahead_ms: 0,
            _dir: dir,
        }
    }

    /// Queues the receipt of confirmation `n` to [`MIN`].
    fn queue(&self, n: usize) {
        let sms = sms::receipt(&format!("test/{n}"), MIN, &format!("{n:012}"), 2500, "840")
            .expect("receipt");
        self.queue_notification(sms);
    }

    fn queue_notification(&self, notification: Notification) {
        journal(
            &self.data,
            Record::NotificationQueued(Box::new(notification)),
        )
        .expect("queued");
    }

    /// One pass of the outbox: how many were attempted.
    fn pass(&mut self) -> usize {
        let now = chrono::Utc::now().timestamp_millis() + self.ahead_ms;
        let data = &self.data;
        let mut attempted = |record| journal(data, record);
        notify::deliver_due::<Error>(&data.store, &mut self.senders, now, &mut attempted)
            .expect("a pass")
    }

    /// The next pass as if the backoffs (at most 5 minutes) were over.
    fn pass_later(&mut self) -> usize {
        self.ahead_ms += 10 * 60 * 1000;
        self.pass()
    }

    fn items(&self) -> Vec<NotificationItem> {
        self.data.store.notifications().expect("outbox")
    }

    /// (sent, failed attempts) over the outbox.
    fn counts(&self) -> (usize, u32) {
        let items = self.items();
        let sent = items.iter().filter(|i| i.sent_ms.is_some()).count();
        (sent, items.iter().map(|i| i.failures).sum())
    }
}

/// Journals `record` and waits until the outbox index has it.
fn journal(data: &DataDir, record: Record) -> Result<(), Error> {
    let seqs = datadir::append(&data.journal, &[record])?;
    let last = seqs.last().copied().unwrap_or(0);
    for _ in 0..5000 {
        if data.applied.load(std::sync::atomic::Ordering::Acquire) >= last {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}

fn write_password(dir: &std::path::Path, password: &str) -> PathBuf {
    let file = dir.join("smsc.password");
    std::fs::write(&file, format!("{password}\n")).expect("password file");
    file
}

fn sms_config(smsc: &Smsc, password_file: PathBuf) -> SmsConfig {
    SmsConfig {
        smsc: smsc.address(),
        system_id: "replenish".into(),
        password_file,
        source_addr: "7777".into(),
        system_type: String::new(),
        enquire_link: Duration::from_secs(30),
    }
}

fn smsc(env: &[(&str, &str)]) -> Option<(Smsc, tempfile::TempDir)> {
    let dir = tempfile::tempdir().expect("tempdir");
    let smsc = Smsc::start(dir.path(), "replenish", PASSWORD, env)?;
    Some((smsc, dir))
}

/// The confirmation numbers of the SMS the SMSC received, in order.
fn confirmations(smsc: &Smsc) -> Vec<String> {
    (smsc.messages().iter())
        .filter_map(|m| m["short_message"].as_str())
        .filter_map(|t| t.rsplit(' ').next())
        .map(|c| c.trim_end_matches('.').to_owned())
        .collect()
}

#[test]
fn a_due_sms_reaches_the_smsc_once_with_its_text() {
    let Some((smsc, dir)) = smsc(&[]) else { return };
    let mut outbox = Outbox::new(&smsc, dir, PASSWORD);
    outbox.queue(1);
    assert_eq!(outbox.pass(), 1);
    assert_eq!(outbox.counts(), (1, 0));
    let received = smsc.messages();
    assert_eq!(received.len(), 1, "{received:?}");
    let sms = &received[0];
    assert_eq!(sms["destination_addr"], MIN);
    assert_eq!(sms["source_addr"], "7777");
    assert_eq!(sms["esm_class"], 0);
    assert_eq!(sms["data_coding"], 0);
    assert_eq!(sms["registered_delivery"], 0);
    assert_eq!(
        (&sms["dest_addr_ton"], &sms["dest_addr_npi"]),
        (&0.into(), &1.into())
    );
    assert_eq!(
        sms["short_message"],
        "Replenishment of 25.00 credited to your prepaid account. Confirmation 000000000001."
    );
    let binds = smsc.events();
    assert_eq!(binds[0]["event"], "bind_transmitter", "{binds:?}");
    assert_eq!(binds[0]["system_id"], "replenish");
    assert_eq!(binds[0]["interface_version"], 0x34);
    // Later passes send nothing again.
    assert_eq!(outbox.pass(), 0);
    assert_eq!(outbox.pass_later(), 0);
    assert_eq!(smsc.messages().len(), 1);
}

#[test]
fn a_refused_bind_is_retried_until_the_password_file_is_fixed() {
    let Some((smsc, dir)) = smsc(&[]) else { return };
    let mut outbox = Outbox::new(&smsc, dir, "wrong");
    outbox.queue(1);
    outbox.queue(2);
    // One attempt: after it fails, the other SMS waits for the next pass.
    assert_eq!(outbox.pass(), 1);
    let items = outbox.items();
    let failures: Vec<u32> = items.iter().map(|i| i.failures).collect();
    assert_eq!(failures, [1, 0]);
    let error = items[0].last_error.clone().expect("why it failed");
    assert!(error.contains("EsmeRbindfail"), "{error}");
    assert!(
        !error.contains("wrong"),
        "no password in the journal: {error}"
    );
    assert!(smsc.messages().is_empty());
    // The second one is tried at the next pass (and refused), the first waits its backoff.
    assert_eq!(outbox.pass(), 1);
    assert_eq!(outbox.counts(), (0, 2));
    // The password is read at every bind: fixing the file is enough.
    write_password(outbox.config.password_file.parent().expect("dir"), PASSWORD);
    assert_eq!(outbox.pass_later(), 2);
    assert_eq!(outbox.counts(), (2, 2));
    assert_eq!(confirmations(&smsc), ["000000000001", "000000000002"]);
    assert_eq!(outbox.pass_later(), 0);
    assert_eq!(smsc.messages().len(), 2, "nothing twice");
}

#[test]
fn a_connection_the_smsc_closes_is_bound_again_and_nothing_goes_twice() {
    let Some((smsc, dir)) = smsc(&[("SMSC_CLOSE_AFTER", "1")]) else {
        return;
    };
    let mut outbox = Outbox::new(&smsc, dir, PASSWORD);
    for n in 1..=3 {
        outbox.queue(n);
        assert_eq!(outbox.pass(), 1);
        // Let the SMSC hang up before the next one.
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        outbox.counts(),
        (3, 0),
        "a closed session is noticed before the next submit_sm"
    );
    assert_eq!(
        confirmations(&smsc),
        ["000000000001", "000000000002", "000000000003"]
    );
    assert_eq!(smsc.count("bind_transmitter"), 3);
}

#[test]
fn an_error_status_is_retried_with_backoff() {
    let Some((smsc, dir)) = smsc(&[("SMSC_FAIL_FIRST", "1")]) else {
        return;
    };
    let mut outbox = Outbox::new(&smsc, dir, PASSWORD);
    outbox.queue(1);
    assert_eq!(outbox.pass(), 1);
    let item = &outbox.items()[0];
    assert_eq!((item.sent_ms, item.failures), (None, 1));
    let error = item.last_error.as_deref().unwrap_or("");
    assert!(
        error.contains("submit_sm") && error.contains("EsmeRsyserr"),
        "{error}"
    );
    assert_eq!(outbox.pass(), 0, "its backoff is not over");
    assert_eq!(outbox.pass_later(), 1);
    assert_eq!(outbox.counts(), (1, 1), "one failed attempt, then sent");
    assert_eq!(smsc.messages().len(), 1);
}

#[test]
fn the_smsc_s_enquire_link_and_unbind_are_answered_and_the_next_sms_binds_again() {
    let Some((smsc, dir)) = smsc(&[("SMSC_PROBE", "1")]) else {
        return;
    };
    let mut outbox = Outbox::new(&smsc, dir, PASSWORD);
    outbox.queue(1);
    assert_eq!(outbox.pass(), 1);
    // Passes with nothing due answer what the SMSC sends meanwhile.
    for _ in 0..100 {
        if smsc.count("unbind_resp") == 1 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        outbox.pass();
    }
    let events = smsc.events();
    let answered: Vec<&Value> = (events.iter())
        .filter(|e| e["event"] == "enquire_link_resp" || e["event"] == "unbind_resp")
        .collect();
    assert_eq!(answered.len(), 2, "{events:?}");
    assert!(
        answered.iter().all(|e| e["command_status"] == 0),
        "{events:?}"
    );
    outbox.queue(2);
    assert_eq!(outbox.pass(), 1);
    assert_eq!(outbox.counts(), (2, 0));
    assert_eq!(smsc.count("bind_transmitter"), 2);
    assert_eq!(confirmations(&smsc), ["000000000001", "000000000002"]);
}

#[test]
fn an_idle_session_sends_enquire_link_and_unbinds_at_stop() {
    let Some((smsc, dir)) = smsc(&[]) else { return };
    let mut config = sms_config(&smsc, write_password(dir.path(), PASSWORD));
    config.enquire_link = Duration::from_millis(100);
    let mut outbox = Outbox::with(dir, config);
    outbox.queue(1);
    assert_eq!(outbox.pass(), 1);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(outbox.pass(), 0);
    assert_eq!(smsc.count("enquire_link"), 1);
    // Still bound: the next SMS goes on the same session.
    outbox.queue(2);
    assert_eq!(outbox.pass(), 1);
    assert_eq!(smsc.count("bind_transmitter"), 1);
    outbox.senders.stop();
    assert_eq!(smsc.count("unbind"), 1);
    assert_eq!(outbox.counts(), (2, 0));
}

#[test]
fn a_notification_of_a_channel_not_configured_stays_pending() {
    // No SMSC needed: only SMS is configured, and only an email is queued.
    let dir = tempfile::tempdir().expect("tempdir");
    let config = SmsConfig {
        smsc: "127.0.0.1:9".into(),
        system_id: "replenish".into(),
        password_file: dir.path().join("none"),
        source_addr: "7777".into(),
        system_type: String::new(),
        enquire_link: Duration::from_secs(30),
    };
    let mut outbox = Outbox::with(dir, config);
    outbox.queue_notification(email());
    assert_eq!(outbox.pass(), 0);
    assert_eq!(outbox.pass_later(), 0);
    let items = outbox.items();
    assert_eq!((items[0].sent_ms, items[0].failures), (None, 0));
}

fn email() -> Notification {
    Notification {
        identity: "test/email".into(),
        channel: "email".into(),
        to: vec!["ops@provider.test".into()],
        subject: "a report".into(),
        body: "text".into(),
        attachment: None,
        at_ms: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_running_switch_sends_a_queued_sms_once() {
    let Some((smsc, dir)) = smsc(&[]) else { return };
    let password = write_password(dir.path(), PASSWORD);
    let metrics = support::free_port();
    let text = format!(
        "{}\n[metrics]\nlisten = \"127.0.0.1:{metrics}\"\n\n[notify.sms]\nsmsc = \"{}\"\nsystem_id = \"replenish\"\npassword_file = \"{}\"\nsource_addr = \"7777\"\n",
        support::config_text(&dir.path().join("data"), support::free_port()),
        smsc.address(),
        password.display()
    );
    let config = Config::from_toml(&text, "test.toml").expect("config");
    support::import_samples(&config);
    // An SMS queued while the switch was down, and an email with no [notify.email].
    let data = DataDir::open(&config).expect("data");
    let sms = sms::receipt("test/1", MIN, "000000000001", 2500, "840").expect("receipt");
    for queued in [sms, email()] {
        journal(&data, Record::NotificationQueued(Box::new(queued))).expect("queued");
    }
    data.close().expect("closed");

    let switch = support::Switch::start(config).await;
    let received = smsc.wait_for(1).await;
    assert_eq!(confirmations(&smsc), ["000000000001"], "{received:?}");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(smsc.messages().len(), 1, "sent once");
    let metrics = tokio::task::spawn_blocking(move || {
        ureq::get(&format!("http://127.0.0.1:{metrics}/metrics"))
            .call()
            .expect("metrics")
            .body_mut()
            .read_to_string()
            .expect("text")
    })
    .await
    .expect("metrics");
    assert!(metrics.contains("replenish_sms_pending 0"), "{metrics}");
    assert!(metrics.contains("replenish_emails_pending 1"), "{metrics}");
    let config = switch.stop().await;
    // The stop unbinds, and the journal says it was sent.
    for _ in 0..40 {
        if smsc.count("unbind") == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(smsc.count("unbind"), 1, "{:?}", smsc.events());
    let data = DataDir::open(&config).expect("data");
    let items = data.store.notifications().expect("outbox");
    let sent: Vec<bool> = items.iter().map(|i| i.sent_ms.is_some()).collect();
    assert_eq!(sent, [true, false]);
    data.close().expect("closed");
}
