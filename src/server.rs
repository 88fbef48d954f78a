//! `replenish serve`: opens the data directory (journal, indexes, exception logs),
//! replays what the indexes lack, starts the indexer, the decider and one listener per
//! configured acquirer link, and on shutdown drains: listeners stop accepting, sessions
//! stop reading and answer what is in flight within the grace period, the journal syncs
//! and closes, the indexer catches up. The data directory is also opened by the import
//! commands, through [`DataDir`].

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::thread::JoinHandle;

use ring::rand::{SecureRandom, SystemRandom};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::acquirer::{self, Context, Settings};
use crate::config::{AcquirerConfig, Config, OrphanReversal};
use crate::engine::unsent::Unsent;
use crate::engine::{self, Router};
use crate::exceptions::ExceptionLog;
use crate::framing::FrameCodec;
use crate::indexer::{self, IndexError};
use crate::iso8583::Spec;
use crate::journal::{Journal, JournalConfig, JournalError};
use crate::metrics::Metrics;
use crate::record::Record;
use crate::store::{Store, StoreError};
use crate::switch::codes::ResponseCode;
use crate::switch::confirmation::ConfirmationNumbers;
use crate::switch::decide::{Decider, Link, Parts, Policy, Routes, SwitchError};
use crate::switch::validate::Rules;

/// Why the server (or an import) stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// A file or directory of the data directory.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The journal.
    #[error("journal: {0}")]
    Journal(#[from] JournalError),
    /// The indexes.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// Replaying or following the journal.
    #[error("{0}")]
    Index(#[from] IndexError),
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
    /// A decision could not be made durable; the switch stopped without answering it.
    #[error("stopped: the journal failed")]
    Fatal,
    /// The operator token file named by the config.
    #[error("{0}")]
    OperatorToken(String),
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> ServeError + '_ {
    move |source| ServeError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Durable journal batches waiting for the router before the journal writer waits.
const SINK_BATCHES: usize = 64;

/// An open data directory: journal, indexes, and the indexer following the journal.
pub struct DataDir {
    /// The directory.
    pub path: PathBuf,
    /// The journal.
    pub journal: Journal,
    /// The indexes.
    pub store: Store,
    /// The last journal position the indexer applied.
    pub applied: Arc<AtomicU64>,
    indexer: Option<JoinHandle<Result<(), IndexError>>>,
    /// Set when the indexer or the router stopped on an error.
    index_failed: Arc<AtomicBool>,
}

impl DataDir {
    /// Opens (creating) the data directory named by `config`, replays the journal into
    /// the indexes and starts the indexer.
    pub fn open(config: &Config) -> Result<DataDir, ServeError> {
        DataDir::open_with(config, None)
    }

    /// [`DataDir::open`], with the indexer routing durable credits to `router`.
    pub fn open_with(config: &Config, router: Option<Router>) -> Result<DataDir, ServeError> {
        let path = config.data_dir.clone();
        fs::create_dir_all(&path).map_err(io_error(&path))?;
        let store = Store::open(&path.join("index"))?;
        let (sink, batches) = std::sync::mpsc::sync_channel(SINK_BATCHES);
        let journal_dir = path.join("journal");
        let (journal, recovery) =
            Journal::open(JournalConfig::new(journal_dir.clone()), Some(sink))?;
        if let Some(cut) = &recovery.cut {
            warn!("journal: torn tail cut on start: {cut:?}");
        }
        let (exceptions, fraud) = (config.exceptions_log(), config.fraud_log());
        let mut log = ExceptionLog::open(&exceptions, &fraud).map_err(io_error(&exceptions))?;
        let replayed = indexer::replay(&store, &journal_dir, &mut log)?;
        info!(
            journal.last_seq = recovery.last_seq,
            replayed,
            "data directory {} open",
            path.display()
        );
        let applied = Arc::new(AtomicU64::new(store.applied_seq()?));
        let index_failed = Arc::new(AtomicBool::new(false));
        let indexer = indexer::spawn(
            store.clone(),
            log,
            batches,
            applied.clone(),
            router,
            index_failed.clone(),
        )
        .map_err(io_error(&path))?;
        Ok(DataDir {
            path,
            journal,
            store,
            applied,
            indexer: Some(indexer),
            index_failed,
        })
    }

    /// Journals records, waits until they are durable and indexed.
    pub fn commit(&self, records: &[Record]) -> Result<(), ServeError> {
        let bodies: Vec<Vec<u8>> = records.iter().map(Record::to_bytes).collect();
        let slices: Vec<&[u8]> = bodies.iter().map(Vec::as_slice).collect();
        let seqs = self.journal.append_all(&slices)?;
        self.journal.wait_durable_blocking(*seqs.end())?;
        while self.applied.load(std::sync::atomic::Ordering::Acquire) < *seqs.end() {
            if self.indexer.as_ref().is_none_or(|h| h.is_finished()) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        Ok(())
    }

    /// Syncs and closes the journal, then lets the indexer finish.
    pub fn close(mut self) -> Result<(), ServeError> {
        self.journal.close()?;
        if let Some(handle) = self.indexer.take() {
            match handle.join() {
                Ok(result) => result?,
                Err(_) => warn!("indexer thread panicked"),
            }
        }
        self.store.flush()?;
        Ok(())
    }

    /// The key of confirmation numbers, made once per data directory.
    pub fn confirmation_key(&self) -> Result<Vec<u8>, ServeError> {
        let path = self.path.join("confirmation.key");
        match fs::read(&path) {
            Ok(key) if key.len() >= 16 => return Ok(key),
            Ok(_) => {
                return Err(ServeError::Io {
                    path: path.display().to_string(),
                    source: std::io::Error::other("shorter than 16 bytes"),
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(&path)(e)),
        }
        let mut key = vec![0u8; 32];
        SystemRandom::new()
            .fill(&mut key)
            .map_err(|_| io_error(&path)(std::io::Error::other("no system randomness")))?;
        write_durably(&path, &key).map_err(io_error(&path))?;
        Ok(key)
    }
}

/// Writes a new file and makes it and its name durable.
fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let temporary = path.with_extension("tmp");
    let mut file = fs::File::create(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::rename(&temporary, path)?;
    if let Some(dir) = path.parent() {
        fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
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
    let engines = engine::start(plan, &data.journal, &data.store, &unsent, &forwarding)?;
    let decider = Arc::new(decider(&config, &data, unsent)?);
    let metrics = Arc::new(Metrics::new());
    metrics.watch_engines(&engines);
    metrics.watch_index(&data.journal, &data.applied);
    if let Some(addr) = config.metrics.listen {
        let (metrics, stop) = (metrics.clone(), forwarding.clone());
        let decider = decider.clone();
        tokio::spawn(async move {
            let served = crate::metrics::serve(addr, metrics, Some(decider), operator_token, stop);
            if let Err(e) = served.await {
                warn!("metrics endpoint {addr}: {e}");
            }
        });
    }
    tokio::spawn(expire_holds(decider.clone(), forwarding.clone()));
    let fatal = CancellationToken::new();
    let tracker = TaskTracker::new();
    let mut bound = Vec::new();
    for acquirer in &config.acquirer {
        let settings = Arc::new(settings(acquirer, metrics.clone())?);
        let listener = TcpListener::bind(acquirer.listen)
            .await
            .map_err(io_error(Path::new(&acquirer.name)))?;
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
        data.index_failed.clone(),
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

/// The decider of a data directory, with the config's rules, routes and policy.
pub fn decider(config: &Config, data: &DataDir, unsent: Unsent) -> Result<Decider, ServeError> {
    let policy = Policy {
        orphan_reversal: match config.switch.reversal_without_original {
            OrphanReversal::Approve => ResponseCode::Approved,
            OrphanReversal::Decline => ResponseCode::NoOriginal,
        },
        hold_expiry: config.switch.hold_expiry,
    };
    Ok(Decider::new(Parts {
        journal: data.journal.clone(),
        store: data.store.clone(),
        rules: rules(config),
        routes: Routes::new(
            config
                .engine
                .iter()
                .map(|e| (e.name.as_str(), e.carriers.as_slice())),
        ),
        numbers: ConfirmationNumbers::new(&data.confirmation_key()?),
        applied: data.applied.clone(),
        clock: chrono::Utc::now,
        unsent,
        policy,
    })?)
}

/// Releases expired authorization holds once a second until `stop`.
async fn expire_holds(decider: Arc<Decider>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => match decider.expire_holds() {
                Ok(0) => {}
                Ok(n) => info!("{n} authorization hold(s) expired"),
                Err(e) => warn!("expiring holds: {e}"),
            },
        }
    }
}

/// The rules of the `[limits]` section.
pub fn rules(config: &Config) -> Rules {
    let limits = &config.limits;
    Rules {
        min_amount: limits.min_amount,
        max_amount: limits.max_amount,
        daily_count: limits.daily_count,
        daily_amount: limits.daily_amount,
        currencies: limits.currencies.clone(),
        processing_codes: limits.processing_codes.clone(),
        account_ranges: limits
            .account_ranges
            .iter()
            .map(|r| (r.from.clone(), r.to.clone()))
            .collect(),
        check_terminal: limits.check_terminal,
    }
}

fn settings(acquirer: &AcquirerConfig, metrics: Arc<Metrics>) -> Result<Settings, ServeError> {
    let setup = |reason: String| ServeError::Setup {
        link: acquirer.name.clone(),
        reason,
    };
    let spec = Spec::resolve(&acquirer.spec).map_err(|e| setup(e.to_string()))?;
    let tls = match &acquirer.tls {
        Some(tls) => {
            let config = crate::tls::server_config(&tls.cert, &tls.key, Some(&tls.client_ca))
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
        metrics,
    })
}
