//! The responses an acquirer link was sent, counted per link, MTI and response code.
//! The sessions count into it; the operators' metrics registry registers it and serves it.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

/// Labels of a response counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResponseLabels {
    link: String,
    mti: String,
    code: String,
}

/// Responses sent to acquirers (cheap to clone: the counters are shared).
#[derive(Debug, Clone, Default)]
pub struct Responses {
    family: Family<ResponseLabels, Counter>,
}

impl Responses {
    /// Counts one response on `link`.
    pub fn count(&self, link: &str, mti: &str, code: &str) {
        let labels = ResponseLabels {
            link: link.to_owned(),
            mti: mti.to_owned(),
            code: code.to_owned(),
        };
        self.family.get_or_create(&labels).inc();
    }

    /// The counter family, for a registry.
    pub fn family(&self) -> Family<ResponseLabels, Counter> {
        self.family.clone()
    }
}
