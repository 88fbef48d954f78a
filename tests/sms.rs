//! SMS over SMPP 3.4 against a real SMSC (the npm `smpp` package's server in a child
//! process, see `tests/support/smsc.rs`): the notification outbox of a data directory
//! delivered by `notify::sms::deliver` as the running switch does it. An SMS goes once
//! with its text in the default mode and alphabet; a refused bind is retried until the
//! password file is fixed; a connection the SMSC closes is bound again; an error status
//! is retried; nothing is sent twice.

mod support;

use std::sync::Arc;
use std::time::Duration;

use replenish::config::Config;
use replenish::config::channels::SmsConfig;
use replenish::durable::datadir::{self, DataDir};
use replenish::durable::record::Record;
use replenish::notify::sms;
use support::smsc::Smsc;
use tokio_util::sync::CancellationToken;

const PASSWORD: &str = "s3cret";

/// A data directory with its indexer, the SMS config for `smsc` and the outbox task.
struct Outbox {
    data: Arc<DataDir>,
    config: SmsConfig,
    stop: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Outbox {
    fn new(smsc: &Smsc, dir: tempfile::TempDir, password: &str) -> Outbox {
        let mut config = Config::embedded_default();
        config.data_dir = dir.path().join("data");
        let data = Arc::new(DataDir::open(&config).expect("data directory"));
        let password_file = dir.path().join("smsc.password");
        std::fs::write(&password_file, format!("{password}\n")).expect("password file");
        let config = SmsConfig {
            smsc: smsc.address(),
            system_id: "replenish".into(),
            password_file,
            source_addr: "7777".into(),
            system_type: String::new(),
            enquire_link: Duration::from_secs(30),
        };
        Outbox {
            data,
            config,
            stop: CancellationToken::new(),
            _dir: dir,
        }
    }

    fn journal(&self) -> sms::Journal {
        let data = self.data.clone();
        Arc::new(move |record| {
            let seqs = datadir::append(&data.journal, &[record]).map_err(|e| e.to_string())?;
            let last = seqs.last().copied().unwrap_or(0);
            for _ in 0..5000 {
                if data.applied.load(std::sync::atomic::Ordering::Acquire) >= last {
                    break;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            Ok(())
        })
    }

    fn queue(&self, n: usize) {
        let sms = sms::receipt(
            &format!("test/{n}"),
            "2065550101",
            &format!("{n:012}"),
            2500,
            "840",
        )
        .expect("receipt");
        (self.journal())(Record::NotificationQueued(Box::new(sms))).expect("queued");
    }

    fn start(&self) {
        let task = sms::deliver(
            self.data.store.clone(),
            self.config.clone(),
            self.journal(),
            self.stop.clone(),
        );
        tokio::spawn(task);
    }

    /// (sent, failed attempts) over the outbox's SMS.
    fn counts(&self) -> (usize, u32) {
        let items = self.data.store.notifications().expect("outbox");
        let sent = items.iter().filter(|i| i.sent_ms.is_some()).count();
        (sent, items.iter().map(|i| i.failures).sum())
    }

    async fn until_sent(&self, want: usize) -> (usize, u32) {
        for _ in 0..400 {
            if self.counts().0 >= want {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.counts()
    }
}

fn smsc(env: &[(&str, &str)]) -> Option<(Smsc, tempfile::TempDir)> {
    let dir = tempfile::tempdir().expect("tempdir");
    let smsc = Smsc::start(dir.path(), "replenish", PASSWORD, env)?;
    Some((smsc, dir))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_due_sms_reaches_the_smsc_once_with_its_text() {
    let Some((smsc, dir)) = smsc(&[]) else { return };
    let outbox = Outbox::new(&smsc, dir, PASSWORD);
    outbox.queue(1);
    outbox.start();
    assert_eq!(outbox.until_sent(1).await, (1, 0));
    let received = smsc.wait_for(1).await;
    assert_eq!(received.len(), 1, "{received:?}");
    let sms = &received[0];
    assert_eq!(sms["destination_addr"], "2065550101");
    assert_eq!(sms["source_addr"], "7777");
    assert_eq!(sms["esm_class"], 0);
    assert_eq!(sms["data_coding"], 0);
    assert_eq!(
        sms["short_message"],
        "Replenishment of 25.00 credited to your prepaid account. Confirmation 000000000001."
    );
    // Later passes send nothing again.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(smsc.messages().len(), 1);
    outbox.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_bind_is_retried_until_the_password_file_is_fixed() {
    let Some((smsc, dir)) = smsc(&[]) else { return };
    let outbox = Outbox::new(&smsc, dir, "wrong");
    outbox.queue(1);
    outbox.start();
    for _ in 0..100 {
        if outbox.counts().1 >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (sent, failed) = outbox.counts();
    assert_eq!(sent, 0);
    assert!(failed >= 1, "the refused bind is a journaled attempt");
    assert!(smsc.messages().is_empty());
    // The password is read at every bind: fixing the file is enough.
    std::fs::write(&outbox.config.password_file, PASSWORD).expect("fixed");
    let (sent, _) = outbox.until_sent(1).await;
    assert_eq!(sent, 1);
    assert_eq!(smsc.wait_for(1).await.len(), 1);
    outbox.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_the_smsc_closes_is_bound_again_and_nothing_goes_twice() {
    let Some((smsc, dir)) = smsc(&[("SMSC_CLOSE_AFTER", "1")]) else {
        return;
    };
    let outbox = Outbox::new(&smsc, dir, PASSWORD);
    outbox.start();
    for n in 1..=3 {
        outbox.queue(n);
        assert_eq!(outbox.until_sent(n).await.0, n);
        // Let the SMSC hang up before the next one.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let received = smsc.wait_for(3).await;
    let texts: Vec<&str> = received
        .iter()
        .filter_map(|m| m["short_message"].as_str())
        .collect();
    assert_eq!(texts.len(), 3, "{texts:?}");
    for n in 1..=3 {
        let confirmation = format!("{n:012}");
        assert_eq!(
            texts.iter().filter(|t| t.contains(&confirmation)).count(),
            1,
            "{texts:?}"
        );
    }
    outbox.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_status_is_retried_with_backoff() {
    let Some((smsc, dir)) = smsc(&[("SMSC_FAIL_FIRST", "1")]) else {
        return;
    };
    let outbox = Outbox::new(&smsc, dir, PASSWORD);
    outbox.queue(1);
    outbox.start();
    let (sent, failed) = outbox.until_sent(1).await;
    assert_eq!((sent, failed), (1, 1), "one failed attempt, then sent");
    assert_eq!(smsc.wait_for(1).await.len(), 1);
    outbox.stop.cancel();
}
