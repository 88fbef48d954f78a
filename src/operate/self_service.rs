//! What operators watch of the self-service channels: the requests answered per
//! channel, outcome and reason, how long each took to answer, and per debit bank the
//! state of its links and the debits still to be reversed (money taken from a
//! subscriber's account and not yet given back, because the bank has not answered the
//! `0420`). Shown on `GET /metrics` and `GET /status` beside the engines.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};

use crate::durable::record::DebitReversal;
use crate::durable::store::Store;
use crate::engine::link::LinkHandle;

/// Labels of the requests counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct AnsweredLabels {
    channel: String,
    outcome: String,
    reason: String,
}

/// Labels of the latency histogram.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChannelLabels {
    channel: String,
}

/// Labels of a debit bank's link gauge.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BankLinkLabels {
    bank: String,
    link: String,
}

/// Labels of a debit bank's gauge.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BankLabels {
    bank: String,
}

/// One row of requests answered, in [`SelfServiceStatus`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answered {
    /// `web`, `wireless` or `ivr`.
    pub channel: String,
    /// `completed`, `declined` (journaled: the bank's refusal, `bank_unavailable`, a
    /// wrong PIN, a locked account, a rule) or `refused` (nothing journaled: an unknown
    /// subscriber, one not enrolled).
    pub outcome: String,
    /// The decline reason or the refusal's error code; empty for `completed`.
    pub reason: String,
    /// How many.
    pub count: u64,
}

/// One debit bank in [`SelfServiceStatus`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DebitBankStatus {
    /// Its name (`[[debit_bank]] name`).
    pub name: String,
    /// Each link: address and whether it is signed on.
    pub links: Vec<(String, bool)>,
    /// Debits waiting for the bank to acknowledge their reversal.
    pub reversals_due: u64,
}

/// The self-service part of `GET /status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelfServiceStatus {
    /// Requests answered since the switch started.
    pub answered: Vec<Answered>,
    /// The debit banks.
    pub debit_banks: Vec<DebitBankStatus>,
}

/// Counts the channel requests as the flow answers them (cheap to clone: shared).
#[derive(Clone)]
pub struct ChannelTally {
    answered: Arc<Mutex<BTreeMap<AnsweredLabels, u64>>>,
    latency: Family<ChannelLabels, Histogram, fn() -> Histogram>,
}

impl Default for ChannelTally {
    fn default() -> Self {
        // 10 ms to about 40 s: an argon2id check alone is tens of milliseconds, a
        // bank's `response_timeout` several seconds.
        let latency: Family<ChannelLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.01, 2.0, 13)));
        ChannelTally {
            answered: Arc::default(),
            latency,
        }
    }
}

impl ChannelTally {
    /// Counts one answer of `channel` and the time it took.
    pub fn answered(&self, channel: &str, outcome: &str, reason: &str, took: Duration) {
        let key = AnsweredLabels {
            channel: channel.to_owned(),
            outcome: outcome.to_owned(),
            reason: reason.to_owned(),
        };
        *lock(&self.answered).entry(key).or_default() += 1;
        let labels = ChannelLabels {
            channel: channel.to_owned(),
        };
        self.latency
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    fn rows(&self) -> Vec<Answered> {
        (lock(&self.answered).iter())
            .map(|(labels, count)| Answered {
                channel: labels.channel.clone(),
                outcome: labels.outcome.clone(),
                reason: labels.reason.clone(),
                count: *count,
            })
            .collect()
    }
}

/// The self-service channels as the metrics follow them.
pub(super) struct SelfServiceMetrics {
    tally: ChannelTally,
    answered: Family<AnsweredLabels, Counter>,
    link_up: Family<BankLinkLabels, Gauge>,
    reversals_due: Family<BankLabels, Gauge>,
    banks: Mutex<Vec<(String, Vec<LinkHandle>)>>,
}

impl SelfServiceMetrics {
    /// Declares the channels' metrics in `registry`.
    pub(super) fn register(registry: &mut Registry) -> SelfServiceMetrics {
        let tally = ChannelTally::default();
        let answered = Family::<AnsweredLabels, Counter>::default();
        registry.register(
            "channel_requests",
            "Self-service requests answered, by channel, outcome and reason",
            answered.clone(),
        );
        registry.register(
            "channel_request_seconds",
            "Time from a self-service request's arrival to its end (completed, declined or refused)",
            tally.latency.clone(),
        );
        let link_up = Family::<BankLinkLabels, Gauge>::default();
        registry.register(
            "debit_bank_link_up",
            "1 when the debit bank link is signed on",
            link_up.clone(),
        );
        let reversals_due = Family::<BankLabels, Gauge>::default();
        registry.register(
            "debit_reversals_due",
            "Debits whose reversal the bank has not acknowledged yet",
            reversals_due.clone(),
        );
        SelfServiceMetrics {
            tally,
            answered,
            link_up,
            reversals_due,
            banks: Mutex::new(Vec::new()),
        }
    }

    /// The tally the channel flow counts into.
    pub(super) fn tally(&self) -> ChannelTally {
        self.tally.clone()
    }

    /// Follows the debit banks' links.
    pub(super) fn watch_banks(&self, banks: Vec<(String, Vec<LinkHandle>)>) {
        *lock(&self.banks) = banks;
    }

    /// Where the channels stand; the reversals due are read from `store`.
    pub(super) fn status(&self, store: Option<&Store>) -> SelfServiceStatus {
        let due = store.map(reversals_due).unwrap_or_default();
        let debit_banks = (lock(&self.banks).iter())
            .map(|(name, links)| DebitBankStatus {
                name: name.clone(),
                links: (links.iter())
                    .map(|l| (l.address().to_string(), l.is_up()))
                    .collect(),
                reversals_due: due.get(name).copied().unwrap_or(0),
            })
            .collect();
        SelfServiceStatus {
            answered: self.tally.rows(),
            debit_banks,
        }
    }

    /// Brings the Prometheus families up to `status`.
    pub(super) fn publish(&self, status: &SelfServiceStatus) {
        for row in &status.answered {
            let labels = AnsweredLabels {
                channel: row.channel.clone(),
                outcome: row.outcome.clone(),
                reason: row.reason.clone(),
            };
            let counter = self.answered.get_or_create(&labels);
            let _ = counter.inc_by(row.count.saturating_sub(counter.get()));
        }
        for bank in &status.debit_banks {
            for (link, up) in &bank.links {
                let labels = BankLinkLabels {
                    bank: bank.name.clone(),
                    link: link.clone(),
                };
                self.link_up.get_or_create(&labels).set(i64::from(*up));
            }
            let labels = BankLabels {
                bank: bank.name.clone(),
            };
            let due = i64::try_from(bank.reversals_due).unwrap_or(i64::MAX);
            self.reversals_due.get_or_create(&labels).set(due);
        }
    }
}

/// Debits waiting for their reversal's acknowledgement, by bank (the open requests are
/// few: the pending ones and these).
fn reversals_due(store: &Store) -> BTreeMap<String, u64> {
    let mut due = BTreeMap::new();
    let open = match store.open_channel_requests() {
        Ok(open) => open,
        Err(e) => {
            tracing::warn!("metrics: open channel requests: {e}");
            return due;
        }
    };
    for request in open.iter().filter(|r| r.reversal == DebitReversal::Due) {
        *due.entry(request.bank.clone()).or_default() += 1;
    }
    due
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl std::fmt::Display for SelfServiceStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !self.debit_banks.is_empty() {
            writeln!(f, "debit banks")?;
        }
        for bank in &self.debit_banks {
            let links: Vec<String> = (bank.links.iter())
                .map(|(a, up)| format!("{a} {}", if *up { "up" } else { "DOWN" }))
                .collect();
            writeln!(
                f,
                "  {:<16} reversals due {:>4}  links: {}",
                bank.name,
                bank.reversals_due,
                links.join(", ")
            )?;
        }
        if !self.answered.is_empty() {
            writeln!(f, "channel requests")?;
        }
        for row in &self.answered {
            let outcome = match row.reason.as_str() {
                "" => row.outcome.clone(),
                reason => format!("{} {reason}", row.outcome),
            };
            writeln!(f, "  {:<10} {outcome:<36} {:>10}", row.channel, row.count)?;
        }
        Ok(())
    }
}
