//! An engine simulator running in the test process: two listeners (the two links of
//! one engine) and its ledger.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use replenish::framing::{FrameCodec, LengthHeader};
use replenish::iso8583::Spec;
use replenish::simulator::{self, Faults, SimConfig, Simulator};
use tokio_util::sync::CancellationToken;

use super::free_port;

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
    (0..2)
        .map(|_| format!("127.0.0.1:{}", free_port()).parse().expect("addr"))
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
