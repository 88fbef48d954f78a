//! Process plumbing shared by the long-running commands: the tracing subscriber (level
//! from the config, overridden by `RUST_LOG`) and the signal handler that starts a
//! graceful shutdown on SIGTERM or Ctrl-C.

use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// Installs the log subscriber: human-readable lines on stderr.
pub fn init(level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Cancels `shutdown` on the first SIGTERM or Ctrl-C.
pub async fn cancel_on_signal(shutdown: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut terminate) = signal(SignalKind::terminate()) else {
            let _ = tokio::signal::ctrl_c().await;
            return shutdown.cancel();
        };
        tokio::select! {
            _ = terminate.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
    tracing::info!("signal received: shutting down");
    shutdown.cancel();
}
