//! Self-service replenishment (BACKOFFICE.md §6, the seed's figure 4): the subscriber
//! starts it on the web, by dialing a feature code or by calling an IVR number, and the
//! switch, as the acquirer, debits the subscriber's bank and credits the engine. This
//! room reads the channel requests ([`request`]) and checks the PIN ([`pin`]); the HTTP API and the
//! flow through the bank debit links come next (issue 18).
//!
//! May import: [`crate::console`], [`crate::backoffice`], [`crate::operate`],
//! [`crate::switch`], [`crate::durable`], [`crate::vocab`], [`crate::wire`],
//! [`crate::config`].

pub mod pin;
pub mod request;
