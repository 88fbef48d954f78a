//! The hand-off from the indexer to the engine forwarders: as soon as the journal batch
//! that approved a credit (or decided a reversal advice) is durable, the indexer routes
//! it to its engine's queue. The queues are made before the data directory opens, so the
//! indexer can route from its first batch; the engine forwarders read them.

use std::collections::HashMap;

use tokio::sync::mpsc;
use tracing::warn;

use super::record::{Credit, ReversalAdvice};

/// What goes to an engine: a credit, or the reversal of one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outbound {
    /// A `0220` credit advice.
    Credit(Credit),
    /// A `0420` reversal advice.
    Reversal(ReversalAdvice),
}

impl Outbound {
    /// The credit concerned.
    pub fn credit(&self) -> &Credit {
        match self {
            Outbound::Credit(credit) => credit,
            Outbound::Reversal(advice) => &advice.credit,
        }
    }
}

/// Hands credits and reversal advices to their engine's forwarder.
#[derive(Clone, Default)]
pub struct Router {
    engines: HashMap<String, mpsc::UnboundedSender<Outbound>>,
}

impl Router {
    /// Routes the items of `engine` to `queue`.
    pub fn add(&mut self, engine: &str, queue: mpsc::UnboundedSender<Outbound>) {
        self.engines.insert(engine.to_owned(), queue);
    }

    /// Queues `item` for its engine. An item for an engine that is not running (the
    /// config changed) stays in the outbox index and is logged.
    pub fn route(&self, item: Outbound) {
        let engine = item.credit().engine.clone();
        match self.engines.get(&engine) {
            Some(queue) => {
                if queue.send(item).is_err() {
                    warn!(%engine, "forwarder stopped; credit stays in the outbox");
                }
            }
            None => {
                warn!(%engine, "no such engine configured; credit stays in the outbox")
            }
        }
    }
}
