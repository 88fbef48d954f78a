//! What crosses a socket, with no business rules: the ISO 8583 format itself
//! ([`iso8583`], no I/O at all), the length-prefixed framing of a byte stream into
//! messages ([`framing`]) and TLS with the `ring` provider ([`tls`]).
//!
//! May import: nothing of the crate outside this folder.

pub mod framing;
pub mod iso8583;
pub mod tls;
