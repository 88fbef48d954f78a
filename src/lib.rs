//! `replenish`: an ISO 8583 switch for prepaid-account replenishment.
//!
//! The library holds everything; the `replenish` binary only parses the command line.
//! [`iso8583`] is the wire format alone (no I/O), [`framing`] splits byte streams into
//! messages.
#![forbid(unsafe_code)]

pub mod framing;
pub mod inspect;
pub mod iso8583;
pub mod record;
pub mod store;
pub mod switch;
