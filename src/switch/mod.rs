//! The business rules of replenishment, with no sockets: what a message is
//! ([`classify`]), which transaction it belongs to ([`key`]), whether it may be approved
//! ([`validate`]), the confirmation numbers of approvals ([`confirmation`]), the
//! decisions themselves ([`decide`], with advices and holds in [`advise`] and reversals
//! in [`reverse`]) and the responses ([`respond`]).

pub mod accounts;
pub mod advise;
pub mod classify;
pub mod codes;
pub mod confirmation;
pub mod decide;
pub mod key;
pub mod respond;
pub mod reverse;
pub mod validate;

pub use codes::{Decline, ResponseCode};
