//! What operators reach: the HTTP endpoint of a running switch ([`http`]: metrics,
//! status, and behind the operator token the exception queue and lookups), the
//! [`metrics`] it serves, the exception [`queue`], [`lookup`]s by confirmation number,
//! table imports ([`admin`]) and how the command line finds a running switch
//! ([`operator`]). Every command works on the data directory when no switch runs and
//! through the running switch's endpoint when one does.
//!
//! May import: [`crate::switch`], [`crate::engine`], [`crate::durable`],
//! [`crate::vocab`], [`crate::wire`], [`crate::config`].

pub mod admin;
pub mod http;
pub mod lookup;
pub mod metrics;
pub mod operator;
pub mod queue;
pub mod self_service;
