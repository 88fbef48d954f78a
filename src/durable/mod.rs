//! What makes an answer safe to send and a restart lose nothing (DESIGN.md §5): the
//! append-only [`journal`] with group commit (the durability barrier and the audit
//! trail), the [`record`]s it holds, the sled indexes derived from it ([`store`], the
//! only module that imports sled), the [`indexer`] that keeps them up with the journal,
//! the exception and fraud logs ([`exceptions`]), the hand-off of durable credits to
//! the forwarders ([`handoff`]), the data directory that holds it all ([`datadir`]) and the
//! keys that seal voucher PINs in it ([`vault`]).
//!
//! May import: [`crate::vocab`], [`crate::wire`], [`crate::config`].

pub mod datadir;
pub mod exceptions;
pub mod handoff;
pub mod indexer;
pub mod journal;
pub mod record;
pub mod store;
pub mod vault;
