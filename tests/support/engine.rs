//! An engine simulator running in the test process: two listeners (the two links of
//! one engine) and its ledger.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use replenish::config::Config;
use replenish::tools::simulator::{self, Faults, SimConfig, Simulator};
use replenish::wire::framing::{FrameCodec, LengthHeader};
use replenish::wire::iso8583::Spec;
use tokio_util::sync::CancellationToken;

use super::{free_port, free_ports};

/// A running simulator and how to stop it.
pub struct Engine {
    pub simulator: Simulator,
    pub stop: CancellationToken,
}

impl Engine {
    /// Starts a simulator on `listen` with its ledger at `ledger`.
    pub async fn start(ledger: &Path, listen: &[SocketAddr]) -> Engine {
        let stop = CancellationToken::new();
        let config = SimConfig {
            listen: listen.to_vec(),
            ledger: ledger.to_path_buf(),
            spec: Arc::new(Spec::resolve("iso87ascii").expect("spec")),
            codec: FrameCodec::new(LengthHeader::Binary2),
            sync: false,
        };
        let simulator = simulator::start(config, stop.clone())
            .await
            .expect("engine-sim");
        Engine { simulator, stop }
    }

    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.simulator.listeners.iter().map(|(a, _)| *a).collect()
    }

    pub fn faults(&self, link: usize) -> &Faults {
        &self.simulator.listeners[link].1
    }
}

/// Two free loopback addresses.
pub fn loopback_pair() -> Vec<SocketAddr> {
    free_ports::<2>()
        .iter()
        .map(|p| format!("127.0.0.1:{p}").parse().expect("addr"))
        .collect()
}

impl Engine {
    /// The balance of `min` in the ledger, minor units.
    pub fn balance(&self, min: &str) -> i64 {
        let ledger = self
            .simulator
            .ledger
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        ledger.balance(min)
    }
}

/// A switch config on `dir` with one acquirer (id `00012345`) and one engine serving
/// every carrier over `links` with short timers; `extra` is appended (more sections).
pub fn config(dir: &Path, links: &[SocketAddr], extra: &str) -> Config {
    let links: Vec<String> = links.iter().map(|a| format!("\"{a}\"")).collect();
    let text = format!(
        r#"
data_dir = "{dir}/data"

[[acquirer]]
name = "bank-a"
listen = "127.0.0.1:{port}"
acquirer_id = "00012345"

[[engine]]
name = "prepaid"
carriers = ["*"]
links = [{links}]
ack_timeout = "400ms"
echo_interval = "1s"

[engine.retry_backoff]
initial = "50ms"
max = "500ms"
{extra}
"#,
        dir = dir.display(),
        port = free_port(),
        links = links.join(", "),
    );
    Config::from_toml(&text, "engine-test.toml").expect("config")
}

/// `[limits]` that never decline for velocity.
pub const HIGH_LIMITS: &str = "\n[limits]\ndaily_count = 1000000\ndaily_amount = 1000000000000\n";
