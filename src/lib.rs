//! `replenish`: an ISO 8583 switch for prepaid-account replenishment.
//!
//! The library holds everything; the `replenish` binary only parses the command line.
//! The folders are rooms with one job each, and imports point one way, from the top of
//! this list to the bottom:
//!
//! - [`tools`]: what runs around the switch (demo, bench, load, capture, replay, send,
//!   engine-sim, decode/encode);
//! - [`server`]: wires `replenish serve` together;
//! - [`channels`]: self-service replenishment (web, feature code, IVR);
//! - [`console`]: the operators' console; [`backoffice`]: business days,
//!   reconciliation, settlement, reports and the PIN stock; [`notify`]: email and SMS;
//! - [`operate`]: what operators reach (the HTTP endpoint, metrics, the exception queue,
//!   lookups, imports);
//! - [`acquirer`]: inbound listeners and sessions;
//! - [`switch`]: the business rules; [`pins`]: PIN sales' products and stock;
//!   [`engine`]: forwarding to the prepaid engines;
//! - [`durable`]: the journal, its records, the indexes and the data directory;
//! - [`vocab`]: the words every room shares (transaction key, response codes, accounts,
//!   confirmation numbers);
//! - [`wire`]: what crosses a socket (ISO 8583, framing, TLS).
//!
//! [`config`] is read by every room and imports only [`wire`] and [`vocab`].
#![forbid(unsafe_code)]

pub mod acquirer;
pub mod backoffice;
pub mod channels;
pub mod config;
pub mod console;
pub mod durable;
pub mod engine;
pub mod logging;
pub mod notify;
pub mod operate;
pub mod pins;
pub mod server;
pub mod switch;
pub mod tools;
pub mod vocab;
pub mod wire;
