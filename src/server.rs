//! `replenish serve`: opens the data directory (journal, indexes, exception logs),
//! replays what the indexes lack, starts the indexer, the decider and one listener per
//! configured acquirer link, and on shutdown drains: listeners stop accepting, sessions
//! stop reading and answer what is in flight within the grace period, the journal syncs
//! and closes, the indexer catches up. The data directory itself is
//! [`crate::durable::datadir`].

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::acquirer::{self, Context, Responses, Settings};
use crate::config::{AcquirerConfig, Config};
use crate::durable::datadir::{DataDir, DataError};
use crate::engine::{self, unsent::Unsent};
use crate::operate::metrics::Metrics;
use crate::switch::decide::{Decider, Link, SwitchError};
use crate::switch::open::decider;
use crate::wire::framing::FrameCodec;
use crate::wire::iso8583::Spec;

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// A listener's address, or the data directory at close.
    #[error("{path}: {source}")]
    Io {
        /// The path or link.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The data directory.
    #[error("{0}")]
    Data(#[from] DataError),
    /// The decider could not start.
    #[error("{0}")]
    Switch(#[from] SwitchError),
    /// A spec or TLS file named by the config.
    #[error("acquirer {link}: {reason}")]
    Setup {
        /// The acquirer link.
        link: String,
        /// What failed.
        reason: String,
    },
    /// An engine could not start.
    #[error("{0}")]
    Engine(#[from] engine::EngineError),
    /// The console could not start (its templates or key).
    #[error("console: {0}")]
    Console(String),
    /// The channels could not start (their key, a debit bank's spec or TLS files).
    #[error("{0}")]
    Channels(String),
    /// A decision could not be made durable; the switch stopped without answering it.
    #[error("stopped: the journal failed")]
    Fatal,
    /// The operator token file named by the config.
    #[error("{0}")]
    OperatorToken(String),
}

/// Runs the switch until `shutdown` is cancelled (SIGTERM) or the journal fails.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), ServeError> {
    run_reporting(config, shutdown, None).await
}

/// [`run`], sending the listeners' bound addresses to `ready` once every acquirer
/// listens (a `listen` with port 0 gets a free port: tests and benches use this).
pub async fn run_reporting(
    config: Config,
    shutdown: CancellationToken,
    ready: Option<tokio::sync::oneshot::Sender<Vec<std::net::SocketAddr>>>,
) -> Result<(), ServeError> {
    let operator_token = (config.metrics.operator_token()).map_err(ServeError::OperatorToken)?;
    let (router, plan) = engine::plan(&config.engine);
    let data = DataDir::open_with(&config, Some(router))?;
    let unsent = Unsent::default();
    let forwarding = CancellationToken::new();
    let decider = Arc::new(decider(&config, &data, unsent.clone())?);
    let vault = decider.catalog().vault().cloned();
    let engines = engine::start(
        plan,
        &data.journal,
        &data.store,
        &unsent,
        vault,
        &forwarding,
    )?;
    let metrics = Arc::new(Metrics::new());
    decider.watch_stock(&metrics.pins_available());
    metrics.watch_engines(&engines);
    metrics.watch_index(&data.journal, &data.applied);
    metrics.watch_notifications(&data.store);
    let senders = crate::notify::Senders::new(&config.notify);
    if !senders.is_empty() {
        tokio::spawn(deliver_notifications(
            decider.clone(),
            senders,
            forwarding.clone(),
        ));
    }
    if let Some(addr) = config.metrics.listen {
        let (metrics, stop) = (metrics.clone(), forwarding.clone());
        let decider = decider.clone();
        let shared = crate::backoffice::Shared {
            decider: decider.clone(),
            config: Arc::new(config.clone()),
        };
        let backoffice = (crate::backoffice::unbound_routes())
            .merge(crate::console::users::routes())
            .with_state(shared);
        tokio::spawn(async move {
            let served = crate::operate::http::serve(
                addr,
                metrics,
                Some(decider),
                Some(backoffice),
                operator_token,
                stop,
            );
            if let Err(e) = served.await {
                warn!("metrics endpoint {addr}: {e}");
            }
        });
    }
    if config.console.enabled {
        let console = crate::console::Console::new(decider.clone(), Arc::new(config.clone()))
            .map_err(ServeError::Console)?;
        tokio::spawn(crate::console::serve(console, forwarding.clone()));
    }
    if let Some(listen) = &config.channels {
        start_channels(
            decider.clone(),
            &config,
            listen.clone(),
            &metrics,
            &forwarding,
        )
        .await?;
    }
    tokio::spawn(housekeeping(decider.clone(), forwarding.clone()));
    let fatal = CancellationToken::new();
    let tracker = TaskTracker::new();
    let mut bound = Vec::new();
    for acquirer in &config.acquirer {
        let settings = Arc::new(settings(acquirer, metrics.responses())?);
        let listener =
            TcpListener::bind(acquirer.listen)
                .await
                .map_err(|source| ServeError::Io {
                    path: acquirer.name.clone(),
                    source,
                })?;
        let local = listener.local_addr().unwrap_or(acquirer.listen);
        bound.push(local);
        info!(link.name = %acquirer.name, "listening on {local}");
        let context = Context {
            settings,
            decider: decider.clone(),
            shutdown: shutdown.clone(),
            fatal: fatal.clone(),
            tracker: tracker.clone(),
        };
        tracker.spawn(acquirer::serve(listener, context));
    }
    if let Some(ready) = ready {
        let _ = ready.send(bound);
    }
    tokio::spawn(stop_when_indexing_fails(
        data.index_failed(),
        fatal.clone(),
        shutdown.clone(),
    ));
    tokio::select! {
        () = shutdown.cancelled() => info!("shutting down: draining in-flight messages"),
        () = fatal.cancelled() => shutdown.cancel(),
    }
    tracker.close();
    let grace = config.switch.shutdown_grace;
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        warn!("grace period of {grace:?} over with messages still in flight");
    }
    drop(decider);
    forwarding.cancel();
    for engine in engines {
        engine.stopped().await;
    }
    let closing = tokio::task::spawn_blocking(move || data.close());
    closing.await.map_err(|e| ServeError::Io {
        path: "journal".into(),
        source: std::io::Error::other(e),
    })??;
    if fatal.is_cancelled() {
        return Err(ServeError::Fatal);
    }
    info!("stopped");
    Ok(())
}

/// Stops the switch (as a fatal error) when the indexer or the router fails: the
/// indexes are what repeats, reversals and restarts rely on.
async fn stop_when_indexing_fails(
    failed: Arc<AtomicBool>,
    fatal: CancellationToken,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(std::time::Duration::from_millis(200)) => {}
        }
        if failed.load(std::sync::atomic::Ordering::Acquire) {
            error!("the indexes can no longer follow the journal: stopping");
            fatal.cancel();
            return;
        }
    }
}

/// Sends the notification outbox's emails and SMS as they fall due, until `stop`, then
/// unbinds from the SMSC; each attempt is journaled, so a sent notification is never
/// sent again and a failed one is retried with backoff. Each pass runs on a blocking
/// thread, off the decider's lock: sending never holds up money.
async fn deliver_notifications(
    decider: Arc<Decider>,
    senders: crate::notify::Senders,
    stop: CancellationToken,
) {
    let senders = Arc::new(std::sync::Mutex::new(senders));
    let mut tick = tokio::time::interval(crate::notify::POLL);
    // A pass that waited on a server (up to 10 s per SMSC request) is not followed by a
    // burst of the passes it missed.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let (decider, senders) = (decider.clone(), senders.clone());
        let delivered = tokio::task::spawn_blocking(move || {
            let now = chrono::Utc::now().timestamp_millis();
            let mut journal = |attempt| decider.journal_records(&[attempt]).map(|_| ());
            let mut senders = senders.lock().unwrap_or_else(|p| p.into_inner());
            crate::notify::deliver_due(decider.store(), &mut senders, now, &mut journal)
                .map_err(|e| e.to_string())
        })
        .await;
        match delivered {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => warn!("notifications: {e}"),
            Err(e) => warn!("notifications: a pass failed: {e}"),
        }
    }
    let unbound = tokio::task::spawn_blocking(move || {
        senders.lock().unwrap_or_else(|p| p.into_inner()).stop();
    });
    let _ = unbound.await;
}

/// Starts the self-service channels: the debit banks' links, what a previous run left
/// open, and the channel API on `[channels] listen`.
async fn start_channels(
    decider: Arc<Decider>,
    config: &Config,
    listen: crate::config::channels::ChannelsConfig,
    metrics: &Metrics,
    stop: &CancellationToken,
) -> Result<(), ServeError> {
    let config = Arc::new(config.clone());
    let tally = metrics.channel_tally();
    let channels = crate::channels::flow::Channels::start(decider, config, tally, stop.clone())
        .map_err(ServeError::Channels)?;
    metrics.watch_debit_banks(channels.bank_links());
    let recovering = channels.clone();
    let recovered = tokio::task::spawn_blocking(move || recovering.recover())
        .await
        .map_err(|e| ServeError::Channels(e.to_string()))?
        .map_err(|e| ServeError::Channels(e.to_string()))?;
    if recovered > 0 {
        info!("channels: {recovered} request(s) left open by the last run finished or resumed");
    }
    let app = crate::channels::api::router(channels);
    let stop = stop.clone();
    tokio::spawn(async move {
        let tls = listen.tls.as_ref();
        crate::console::serve_router("channels", listen.listen, tls, app, stop).await;
    });
    Ok(())
}

/// Once a second until `stop`: releases expired authorization holds and makes the
/// scheduled cutover of the business day when no decision has made it.
async fn housekeeping(decider: Arc<Decider>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        // Both take the decider's lock and may journal: off the runtime's threads.
        let chores = decider.clone();
        let done = tokio::task::spawn_blocking(move || {
            match chores.expire_holds() {
                Ok(0) => {}
                Ok(n) => info!("{n} authorization hold(s) expired"),
                Err(e) => warn!("expiring holds: {e}"),
            }
            if let Err(e) = chores.cutover_if_due() {
                warn!("business day cutover: {e}");
            }
        });
        if let Err(e) = done.await {
            warn!("housekeeping: {e}");
        }
    }
}

fn settings(acquirer: &AcquirerConfig, responses: Responses) -> Result<Settings, ServeError> {
    let setup = |reason: String| ServeError::Setup {
        link: acquirer.name.clone(),
        reason,
    };
    let spec = Spec::resolve(&acquirer.spec).map_err(|e| setup(e.to_string()))?;
    let tls = match &acquirer.tls {
        Some(tls) => {
            let config = crate::wire::tls::server_config(&tls.cert, &tls.key, Some(&tls.client_ca))
                .map_err(|e| setup(e.to_string()))?;
            Some(TlsAcceptor::from(config))
        }
        None => None,
    };
    Ok(Settings {
        link: Link {
            name: acquirer.name.clone(),
            acquirer_id: if acquirer.acquirer_id.is_empty() {
                acquirer.name.clone()
            } else {
                acquirer.acquirer_id.clone()
            },
        },
        spec: Arc::new(spec),
        codec: FrameCodec::new(acquirer.framing)
            .with_header_len(acquirer.header_len)
            .with_max_frame(acquirer.max_frame),
        idle_timeout: acquirer.idle_timeout,
        max_in_flight: acquirer.max_in_flight,
        tls,
        responses,
    })
}
