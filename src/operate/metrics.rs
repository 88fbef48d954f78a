//! What an operator watches: responses per acquirer link, MTI and response code, per
//! prepaid engine the outbox depth, the age of its oldest credit, first sends,
//! retransmissions, acks and the state of each link, and the PINs in stock per
//! product. Served by [`super::http`] in the Prometheus text format on `GET /metrics` and as JSON on `GET /status` (the
//! `[metrics] listen` address); `replenish status` reads the JSON and prints it for
//! people.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};

use tracing::warn;

use super::self_service::{ChannelTally, SelfServiceMetrics, SelfServiceStatus};
use crate::acquirer::Responses;
use crate::engine::Running;
use crate::pins::shelf::Available;

/// Labels of an engine gauge.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EngineLabels {
    engine: String,
}

/// Labels of a link gauge.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LinkLabels {
    engine: String,
    link: String,
}

/// The switch's metrics.
pub struct Metrics {
    registry: Registry,
    responses: Responses,
    outbox_depth: Family<EngineLabels, Gauge>,
    oldest_age: Family<EngineLabels, Gauge>,
    sent: Family<EngineLabels, Counter>,
    retransmitted: Family<EngineLabels, Counter>,
    acked: Family<EngineLabels, Counter>,
    link_up: Family<LinkLabels, Gauge>,
    index_lag: Gauge,
    self_service: SelfServiceMetrics,
    emails_pending: Gauge,
    sms_pending: Gauge,
    sms_failures: Gauge,
    email_failures: Gauge,
    pins_available: Available,
    store: Mutex<Option<crate::durable::store::Store>>,
    engines: Mutex<Vec<EngineView>>,
    index: Mutex<Option<IndexView>>,
}

/// What the metrics read of the journal and the indexer following it.
struct IndexView {
    journal: crate::durable::journal::Journal,
    applied: Arc<std::sync::atomic::AtomicU64>,
}

/// What the metrics read of a running engine.
struct EngineView {
    name: String,
    tally: Arc<crate::engine::outbox::Tally>,
    links: Vec<crate::engine::link::LinkHandle>,
}

/// `GET /status`: the engines, for `replenish status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// Per engine.
    pub engines: Vec<EngineStatus>,
    /// Responses per link, MTI and code.
    pub responses: Vec<(String, String, String, u64)>,
    /// Durable journal records the indexes do not have yet (the indexer works when
    /// the sessions leave it time, so a busy switch runs a few seconds behind).
    #[serde(default)]
    pub index_lag: u64,
    /// The self-service channels: requests answered, the debit banks.
    #[serde(default)]
    pub self_service: SelfServiceStatus,
}

/// One engine in [`Status`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EngineStatus {
    /// Its name.
    pub name: String,
    /// Credits not yet acknowledged.
    pub outbox: u64,
    /// Seconds since the outbox was last empty (0 when it is).
    pub oldest_age_s: u64,
    /// First sends.
    pub sent: u64,
    /// Retransmissions.
    pub retransmitted: u64,
    /// Acks.
    pub acked: u64,
    /// Each link: address and whether it is signed on.
    pub links: Vec<(String, bool)>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// An empty registry with every metric declared.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("replenish");
        let responses = Responses::default();
        registry.register(
            "responses",
            "Responses sent to acquirers",
            responses.family(),
        );
        let gauge = |registry: &mut Registry, name: &str, help: &str| {
            let family = Family::<EngineLabels, Gauge>::default();
            registry.register(name, help, family.clone());
            family
        };
        let outbox_depth = gauge(
            &mut registry,
            "outbox_depth",
            "Credits waiting for an engine ack",
        );
        let oldest_age = gauge(
            &mut registry,
            "outbox_oldest_age_seconds",
            "Seconds since the outbox was last empty",
        );
        let counter = |registry: &mut Registry, name: &str, help: &str| {
            let family = Family::<EngineLabels, Counter>::default();
            registry.register(name, help, family.clone());
            family
        };
        let sent = counter(&mut registry, "credits_sent", "Credit advices sent (0220)");
        let retransmitted = counter(
            &mut registry,
            "credits_retransmitted",
            "Credit advices repeated (0221)",
        );
        let acked = counter(
            &mut registry,
            "credits_acked",
            "Credits acknowledged by the engine",
        );
        let link_up = Family::<LinkLabels, Gauge>::default();
        registry.register(
            "engine_link_up",
            "1 when the engine link is signed on",
            link_up.clone(),
        );
        let index_lag = Gauge::default();
        registry.register(
            "index_lag_records",
            "Durable journal records not yet in the indexes",
            index_lag.clone(),
        );
        let emails_pending = Gauge::default();
        registry.register(
            "emails_pending",
            "Emails in the notification outbox not sent yet",
            emails_pending.clone(),
        );
        let sms_pending = Gauge::default();
        registry.register(
            "sms_pending",
            "SMS in the notification outbox not sent yet",
            sms_pending.clone(),
        );
        let sms_failures = Gauge::default();
        registry.register(
            "sms_failures",
            "Failed attempts to send SMS (each is retried)",
            sms_failures.clone(),
        );
        let email_failures = Gauge::default();
        registry.register(
            "email_failures",
            "Failed attempts to send emails (each is retried)",
            email_failures.clone(),
        );
        let self_service = SelfServiceMetrics::register(&mut registry);
        let pins_available = Available::default();
        registry.register(
            "pins_available",
            "PINs in stock per product (SKU)",
            pins_available.family(),
        );
        Metrics {
            registry,
            pins_available,
            index_lag,
            self_service,
            emails_pending,
            sms_pending,
            sms_failures,
            email_failures,
            store: Mutex::new(None),
            index: Mutex::new(None),
            responses,
            outbox_depth,
            oldest_age,
            sent,
            retransmitted,
            acked,
            link_up,
            engines: Mutex::new(Vec::new()),
        }
    }

    /// The counter of responses to acquirers, which the sessions count into.
    pub fn responses(&self) -> Responses {
        self.responses.clone()
    }

    /// The tally of channel requests, which the channel flow counts into.
    pub fn channel_tally(&self) -> ChannelTally {
        self.self_service.tally()
    }

    /// Follows the debit banks' links: each bank's name and links, primary first.
    pub fn watch_debit_banks(&self, banks: Vec<(String, Vec<crate::engine::link::LinkHandle>)>) {
        self.self_service.watch_banks(banks);
    }

    /// The PINs-in-stock gauge, which the decider's shelf keeps.
    pub fn pins_available(&self) -> Available {
        self.pins_available.clone()
    }

    /// Follows the running engines.
    pub fn watch_engines(&self, engines: &[Running]) {
        let views = engines
            .iter()
            .map(|e| EngineView {
                name: e.name.clone(),
                tally: e.tally.clone(),
                links: e.links.clone(),
            })
            .collect();
        *self.engines.lock().unwrap_or_else(|p| p.into_inner()) = views;
    }

    /// Reads the notification outbox from `store`.
    pub fn watch_notifications(&self, store: &crate::durable::store::Store) {
        *self.store.lock().unwrap_or_else(|p| p.into_inner()) = Some(store.clone());
    }

    /// Follows the indexer's position behind `journal`.
    pub fn watch_index(
        &self,
        journal: &crate::durable::journal::Journal,
        applied: &Arc<std::sync::atomic::AtomicU64>,
    ) {
        let view = IndexView {
            journal: journal.clone(),
            applied: applied.clone(),
        };
        *self.index.lock().unwrap_or_else(|p| p.into_inner()) = Some(view);
    }

    fn index_lag(&self) -> u64 {
        let index = self.index.lock().unwrap_or_else(|p| p.into_inner());
        index.as_ref().map_or(0, |view| {
            let applied = view.applied.load(Ordering::Acquire);
            view.journal.durable_seq().saturating_sub(applied)
        })
    }

    /// The engines now.
    pub fn status(&self) -> Status {
        let engines = self.engines.lock().unwrap_or_else(|p| p.into_inner());
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let engines = engines
            .iter()
            .map(|view| {
                let tally = &view.tally;
                let oldest = tally.oldest_ms.load(Ordering::Relaxed);
                EngineStatus {
                    name: view.name.clone(),
                    outbox: tally.outstanding.load(Ordering::Relaxed),
                    oldest_age_s: if oldest == 0 {
                        0
                    } else {
                        now_ms.saturating_sub(oldest) / 1000
                    },
                    sent: tally.sent.load(Ordering::Relaxed),
                    retransmitted: tally.retransmitted.load(Ordering::Relaxed),
                    acked: tally.acked.load(Ordering::Relaxed),
                    links: view
                        .links
                        .iter()
                        .map(|l| (l.address().to_string(), l.is_up()))
                        .collect(),
                }
            })
            .collect();
        let text = self.render_responses();
        let store = self.store.lock().unwrap_or_else(|p| p.into_inner()).clone();
        Status {
            engines,
            responses: text,
            index_lag: self.index_lag(),
            self_service: self.self_service.status(store.as_ref()),
        }
    }

    fn render_responses(&self) -> Vec<(String, String, String, u64)> {
        let mut rows = Vec::new();
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
            return rows;
        }
        for line in text
            .lines()
            .filter(|l| l.starts_with("replenish_responses_total{"))
        {
            let label = |name: &str| {
                let start = line.find(&format!("{name}=\""))? + name.len() + 2;
                let end = line[start..].find('"')? + start;
                Some(line[start..end].to_owned())
            };
            let count = line
                .rsplit(' ')
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            if let (Some(link), Some(mti), Some(code)) =
                (label("link"), label("mti"), label("code"))
            {
                rows.push((link, mti, code, count));
            }
        }
        rows.sort();
        rows
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let status = self.status();
        self.self_service.publish(&status.self_service);
        for engine in status.engines {
            let labels = EngineLabels {
                engine: engine.name.clone(),
            };
            let set = |family: &Family<EngineLabels, Gauge>, value: u64| {
                family
                    .get_or_create(&labels)
                    .set(i64::try_from(value).unwrap_or(i64::MAX));
            };
            set(&self.outbox_depth, engine.outbox);
            set(&self.oldest_age, engine.oldest_age_s);
            // The forwarder's tallies only grow: the counters catch up to them.
            let catch_up = |family: &Family<EngineLabels, Counter>, value: u64| {
                let counter = family.get_or_create(&labels);
                let _ = counter.inc_by(value.saturating_sub(counter.get()));
            };
            catch_up(&self.sent, engine.sent);
            catch_up(&self.retransmitted, engine.retransmitted);
            catch_up(&self.acked, engine.acked);
            for (link, up) in engine.links {
                let labels = LinkLabels {
                    engine: engine.name.clone(),
                    link,
                };
                self.link_up.get_or_create(&labels).set(i64::from(up));
            }
        }
        self.index_lag
            .set(i64::try_from(self.index_lag()).unwrap_or(i64::MAX));
        let store = self.store.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let gauges = [
            ("email", &self.emails_pending, &self.email_failures),
            ("sms", &self.sms_pending, &self.sms_failures),
        ];
        for (channel, pending_gauge, failed_gauge) in gauges {
            if let Some(Ok((pending, failed))) =
                store.as_ref().map(|s| s.notification_tally(channel))
            {
                pending_gauge.set(i64::try_from(pending).unwrap_or(i64::MAX));
                failed_gauge.set(i64::try_from(failed).unwrap_or(i64::MAX));
            }
        }
        let mut text = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            warn!("metrics encoding: {e}");
        }
        text
    }
}

/// Fetches `/status` from a running switch (blocking).
pub fn fetch_status(addr: SocketAddr) -> Result<Status, String> {
    let url = format!("http://{addr}/status");
    let mut response = ureq::get(&url).call().map_err(|e| format!("{url}: {e}"))?;
    let text = response
        .body_mut()
        .read_to_string()
        .map_err(|e| format!("{url}: {e}"))?;
    serde_json::from_str(&text).map_err(|e| format!("{url}: {e}"))
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "engines")?;
        for e in &self.engines {
            let links: Vec<String> = e
                .links
                .iter()
                .map(|(a, up)| format!("{a} {}", if *up { "up" } else { "DOWN" }))
                .collect();
            writeln!(
                f,
                "  {:<16} outbox {:>6}  oldest {:>4}s  sent {:>8}  repeats {:>6}  acked {:>8}  links: {}",
                e.name,
                e.outbox,
                e.oldest_age_s,
                e.sent,
                e.retransmitted,
                e.acked,
                links.join(", ")
            )?;
        }
        writeln!(f, "index lag {} journal records", self.index_lag)?;
        writeln!(f, "responses")?;
        for (link, mti, code, count) in &self.responses {
            writeln!(f, "  {link:<16} {mti} {code} {count:>10}")?;
        }
        write!(f, "{}", self.self_service)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_are_counted_by_link_mti_and_code() {
        let metrics = Metrics::new();
        for code in ["00", "00", "57"] {
            metrics.responses().count("bank-a", "0210", code);
        }
        metrics.responses().count("bank-b", "0810", "00");
        let text = metrics.render();
        assert!(
            text.contains(r#"replenish_responses_total{link="bank-a",mti="0210",code="00"} 2"#),
            "{text}"
        );
        let status = metrics.status();
        assert_eq!(
            status.responses,
            vec![
                ("bank-a".into(), "0210".into(), "00".into(), 2),
                ("bank-a".into(), "0210".into(), "57".into(), 1),
                ("bank-b".into(), "0810".into(), "00".into(), 1),
            ]
        );
        assert!(
            status
                .to_string()
                .contains("bank-a           0210 00          2")
        );
    }

    #[test]
    fn the_index_lag_is_the_durable_records_the_indexer_has_not_applied() {
        use crate::durable::journal::{Journal, JournalConfig};
        let dir = tempfile::tempdir().expect("tempdir");
        let (journal, _) = Journal::open(JournalConfig::new(dir.path()), None).expect("journal");
        for body in [b"a", b"b", b"c"] {
            journal.append(body).expect("append");
        }
        journal.wait_durable_blocking(3).expect("durable");
        let applied = Arc::new(std::sync::atomic::AtomicU64::new(1));
        let metrics = Metrics::new();
        assert_eq!(metrics.status().index_lag, 0, "no index watched yet");
        metrics.watch_index(&journal, &applied);
        assert_eq!(metrics.status().index_lag, 2);
        assert!(metrics.render().contains("replenish_index_lag_records 2"));
        applied.store(3, Ordering::Release);
        assert!(
            metrics
                .status()
                .to_string()
                .contains("index lag 0 journal records")
        );
        journal.close().expect("close");
    }
}
