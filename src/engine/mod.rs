//! Forwarding approved credits to the prepaid engines (DESIGN.md §6): at least once on
//! the wire, exactly once in effect. Each configured engine gets two [`link`]s and an
//! [`outbox`] forwarder; the indexer hands every credit to its engine's forwarder
//! through the [`Router`] (in [`crate::durable::handoff`]) as soon as the journal batch that approved it is durable,
//! and likewise every reversal advice. [`advice`] builds the outbound messages,
//! [`backoff`] spaces reconnects and retries, and [`unsent`] lets a reversal cancel a
//! credit that has not left yet.

pub mod advice;
pub mod backoff;
pub mod link;
pub mod outbox;
pub mod unsent;

use std::sync::Arc;

use rustls_pki_types::ServerName;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;

use crate::config::EngineConfig;
use crate::durable::handoff::{Outbound, Router};
use crate::durable::journal::Journal;
use crate::durable::store::{Store, StoreError};
use crate::wire::framing::FrameCodec;
use crate::wire::iso8583::Spec;
use link::{LinkHandle, LinkSettings};
use outbox::{Forwarder, Tally};

use crate::durable::vault::Vault;

/// What the forwarders are started from: made before the data directory opens, so the
/// indexer can route from its first batch.
pub struct Plan {
    configs: Vec<EngineConfig>,
    queues: Vec<mpsc::UnboundedReceiver<Outbound>>,
}

/// Channels for every configured engine: the router for the indexer, the plan for
/// [`start`].
pub fn plan(configs: &[EngineConfig]) -> (Router, Plan) {
    let mut router = Router::default();
    let mut queues = Vec::new();
    for config in configs {
        let (sender, receiver) = mpsc::unbounded_channel();
        router.add(&config.name, sender);
        queues.push(receiver);
    }
    let plan = Plan {
        configs: configs.to_vec(),
        queues,
    };
    (router, plan)
}

/// A running engine: its links and counters.
pub struct Running {
    /// The engine's name.
    pub name: String,
    /// Its links, primary first.
    pub links: Vec<LinkHandle>,
    /// Forwarding counters.
    pub tally: Arc<Tally>,
    task: JoinHandle<()>,
}

impl Running {
    /// Waits for the forwarder to stop (after the shutdown token was cancelled).
    pub async fn stopped(self) {
        let _ = self.task.await;
    }
}

/// Why an engine could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// Its spec or TLS files.
    #[error("engine {engine}: {reason}")]
    Setup {
        /// The engine.
        engine: String,
        /// What failed.
        reason: String,
    },
    /// Reading its outbox.
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// Starts every engine's links and forwarder; the backlog comes from the outbox index
/// (credits first, then reversal advices).
pub fn start(
    plan: Plan,
    journal: &Journal,
    store: &Store,
    unsent: &unsent::Unsent,
    vault: Option<Arc<Vault>>,
    shutdown: &CancellationToken,
) -> Result<Vec<Running>, EngineError> {
    let mut running = Vec::new();
    for (config, queue) in plan.configs.into_iter().zip(plan.queues) {
        let links = links(&config, shutdown)?;
        let tally = Arc::new(Tally::default());
        let forwarder = Forwarder {
            engine: config.name.clone(),
            links: links.clone(),
            journal: journal.clone(),
            backoff: config.retry_backoff.clone(),
            tally: tally.clone(),
            unsent: unsent.clone(),
            crediting: Default::default(),
            vault: vault.clone(),
        };
        let credits = store
            .outbox(&config.name)?
            .into_iter()
            .map(Outbound::Credit);
        let reversals = store.reversals(&config.name)?.into_iter();
        let backlog = credits.chain(reversals.map(Outbound::Reversal)).collect();
        let task = tokio::spawn(forwarder.run(backlog, queue, shutdown.clone()));
        running.push(Running {
            name: config.name,
            links,
            tally,
            task,
        });
    }
    Ok(running)
}

fn links(
    config: &EngineConfig,
    shutdown: &CancellationToken,
) -> Result<Vec<LinkHandle>, EngineError> {
    let setup = |reason: String| EngineError::Setup {
        engine: config.name.clone(),
        reason,
    };
    let spec = Arc::new(Spec::resolve(&config.spec).map_err(|e| setup(e.to_string()))?);
    let tls = match &config.tls {
        None => None,
        Some(tls) => {
            let pair = tls.cert.as_deref().zip(tls.key.as_deref());
            let client =
                crate::wire::tls::client_config(&tls.ca, pair).map_err(|e| setup(e.to_string()))?;
            let name = ServerName::try_from(tls.server_name.clone())
                .map_err(|e| setup(format!("tls.server_name: {e}")))?;
            Some((TlsConnector::from(client), name))
        }
    };
    Ok(config
        .links
        .iter()
        .map(|&address| {
            let settings = LinkSettings {
                peer: config.name.clone(),
                match_key: advice::match_key,
                address,
                spec: spec.clone(),
                codec: FrameCodec::new(config.framing),
                ack_timeout: config.ack_timeout,
                echo_interval: config.echo_interval,
                backoff: config.retry_backoff.clone(),
                tls: tls.clone(),
            };
            link::spawn(settings, shutdown.clone())
        })
        .collect())
}
