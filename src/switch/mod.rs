//! The business rules of replenishment, with no sockets: what a message is
//! ([`classify`]), whether it may be approved ([`validate`]), the decisions themselves
//! ([`decide`], with advices and holds in [`advise`], reversals in [`reverse`] and PIN
//! sales at the point of sale in [`sell`]) and
//! the responses ([`respond`]); the business day decisions belong to ([`days`]). The words they decide with (keys, codes, accounts,
//! confirmation numbers) are in [`crate::vocab`]; [`open`] makes the decider of a data
//! directory with the config's rules.
//!
//! May import: [`crate::engine`] (only [`crate::engine::unsent`], which a reversal uses
//! to stop a credit that has not left), [`crate::pins`] (the products and the PINs in
//! stock), [`crate::durable`], [`crate::vocab`],
//! [`crate::wire`], [`crate::config`].

pub mod advise;
pub mod classify;
pub mod days;
pub mod decide;
pub mod lost;
pub mod open;
pub mod respond;
pub mod reverse;
pub mod sell;
pub mod validate;
