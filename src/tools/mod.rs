//! What a test harness or an operator runs around the switch, never inside it: the
//! [`demo`], the [`bench`]mark and its [`load`] generator (with [`plot`]ted latency),
//! message [`capture`]s and their [`replay`], the one-shot [`client`] (`send`), the
//! prepaid engine [`simulator`] (`engine-sim`), the subscriber's bank ([`banksim`], `bank-sim`; both on [`sim_server`]) and [`inspect`] (`decode`/`encode`).
//!
//! May import: everything below it, and [`crate::server`] to run a switch in-process.

pub mod banksim;
pub mod bench;
pub mod bench_channels;
pub mod capture;
pub mod client;
pub mod demo;
pub mod demo_channels;
pub mod inspect;
pub mod load;
pub mod plot;
pub mod replay;
pub mod sim_server;
pub mod simulator;
pub mod smsc_sim;
