//! `replenish`: an ISO 8583 switch for prepaid-account replenishment.
//!
//! The library holds everything; the `replenish` binary only parses the command line.
//! [`iso8583`] is the wire format alone (no I/O), [`framing`] splits byte streams into
//! messages.
#![forbid(unsafe_code)]

pub mod acquirer;
pub mod admin;
pub mod bench;
pub mod capture;
pub mod client;
pub mod config;
pub mod demo;
pub mod engine;
pub mod exceptions;
pub mod framing;
pub mod indexer;
pub mod inspect;
pub mod iso8583;
pub mod journal;
pub mod load;
pub mod logging;
pub mod lookup;
pub mod metrics;
pub mod operator;
pub mod plot;
pub mod queue;
pub mod record;
pub mod replay;
pub mod server;
pub mod simulator;
pub mod store;
pub mod switch;
pub mod tls;
