//! Self-service replenishment (BACKOFFICE.md §6, the seed's figure 4): the subscriber
//! starts it on the web, by dialing a feature code or by calling an IVR number, and the
//! switch, as the acquirer, debits the subscriber's bank and credits the engine. The
//! HTTP API ([`api`]) reads the requests ([`request`]); the [`flow`] checks the PIN
//! ([`pin`]) and the rules, debits over the bank's links ([`bank`]), has the credit
//! decided only after the bank's `00`, reverses debits the bank did not answer in time,
//! and queues the SMS.
//!
//! May import: [`crate::console`], [`crate::backoffice`], [`crate::notify`],
//! [`crate::operate`], [`crate::switch`], [`crate::engine`] (its links),
//! [`crate::durable`], [`crate::vocab`], [`crate::wire`], [`crate::config`].

pub mod api;
pub mod bank;
pub mod flow;
pub mod pin;
pub mod request;
