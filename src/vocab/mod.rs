//! The words every room shares, with no I/O: the transaction key that deduplicates and
//! matches repeats ([`key`]), the response codes and decline reasons ([`codes`]),
//! prepaid accounts, locations and their daily usage ([`accounts`]), confirmation
//! numbers ([`confirmation`]), business days ([`calendar`]), fees ([`fees`]), amounts in
//! their currency's decimals ([`money`]) and the
//! console's users, clients, approvals and audit trail ([`people`]), and the products
//! of PIN sales ([`products`]). Records carry these, the switch decides with them and the
//! operators see them, so they live below all three.
//!
//! May import: [`crate::wire`].

pub mod accounts;
pub mod calendar;
pub mod codes;
pub mod confirmation;
pub mod fees;
pub mod key;
pub mod money;
pub mod people;
pub mod products;
