//! The console's secrets, handled in one place: passwords hashed with argon2id (a PHC
//! string with its own salt), random tokens and session ids from the operating
//! system's CSPRNG, and their SHA-256 digests, which are all the switch keeps of them.
//! Comparisons go through digests, so their time says nothing about the secret.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use ring::digest::{SHA256, digest};
use ring::rand::{SecureRandom, SystemRandom};

/// Shortest password accepted.
pub const MIN_PASSWORD_LEN: usize = 10;

/// Why a secret could not be made.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SecretError(String);

/// `bytes` random bytes from the system's CSPRNG.
pub fn random(bytes: usize) -> Result<Vec<u8>, SecretError> {
    let mut buffer = vec![0u8; bytes];
    SystemRandom::new()
        .fill(&mut buffer)
        .map_err(|_| SecretError("the system random generator failed".into()))?;
    Ok(buffer)
}

/// A new random token: 32 bytes, hex.
pub fn token() -> Result<String, SecretError> {
    Ok(hex::encode(random(32)?))
}

/// SHA-256 of `secret`, hex: what is kept of a token or session id.
pub fn digest_hex(secret: &str) -> String {
    hex::encode(digest(&SHA256, secret.as_bytes()))
}

/// Whether `a` and `b` are the same secret, in time that does not depend on where
/// they differ.
pub fn same(a: &str, b: &str) -> bool {
    digest(&SHA256, a.as_bytes()).as_ref() == digest(&SHA256, b.as_bytes()).as_ref()
}

/// The argon2id PHC string of `password` (refused when shorter than
/// [`MIN_PASSWORD_LEN`]).
pub fn hash_password(password: &str) -> Result<String, SecretError> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(SecretError(format!(
            "the password is shorter than {MIN_PASSWORD_LEN} characters"
        )));
    }
    hash_secret(password)
}

/// The argon2id PHC string of `secret`, whatever its length (a subscriber's channel
/// PIN: its form is checked by the caller).
pub fn hash_secret(secret: &str) -> Result<String, SecretError> {
    let salt =
        SaltString::encode_b64(&random(16)?).map_err(|e| SecretError(format!("salt: {e}")))?;
    Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| SecretError(format!("argon2: {e}")))
}

/// Whether `password` matches the PHC string `hash`. With no hash (an unknown user) a
/// dummy hash is checked, so the answer takes as long either way.
pub fn verify_password(password: &str, hash: Option<&str>) -> bool {
    const DUMMY: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$\
                         xqBT8Aw6bxGqdcSqnYDq2pDuGcbhFqkvmU6x2Wj7R5w";
    let Ok(parsed) = PasswordHash::new(hash.unwrap_or(DUMMY)) else {
        return false;
    };
    let matches = Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok();
    matches && hash.is_some()
}

/// Opaque handles for account numbers in the pages' links and forms: the number sealed
/// with AES-256-GCM under a key made at start (so a page never holds a full account
/// number, and a handle stops working when the switch restarts).
pub struct Handles {
    key: ring::aead::LessSafeKey,
}

/// What a handle starts with (an account number never does).
pub const HANDLE_PREFIX: &str = "h-";

impl Handles {
    /// Handles under a new random key.
    pub fn new() -> Result<Handles, SecretError> {
        let bytes = random(32)?;
        let unbound = ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, &bytes)
            .map_err(|_| SecretError("AES key".into()))?;
        Ok(Handles {
            key: ring::aead::LessSafeKey::new(unbound),
        })
    }

    /// The handle of `number`.
    pub fn seal(&self, number: &str) -> String {
        let Ok(nonce) = random(12) else {
            return String::new();
        };
        let mut sealed = number.as_bytes().to_vec();
        let Ok(fixed) = ring::aead::Nonce::try_assume_unique_for_key(&nonce) else {
            return String::new();
        };
        if (self.key)
            .seal_in_place_append_tag(fixed, ring::aead::Aad::empty(), &mut sealed)
            .is_err()
        {
            return String::new();
        }
        format!(
            "{HANDLE_PREFIX}{}{}",
            hex::encode(nonce),
            hex::encode(sealed)
        )
    }

    /// The number behind `text` when it is a handle; `text` itself otherwise; `None`
    /// for a handle that does not open (forged, or from before a restart).
    pub fn open(&self, text: &str) -> Option<String> {
        let Some(hexed) = text.strip_prefix(HANDLE_PREFIX) else {
            return Some(text.to_owned());
        };
        let bytes = hex::decode(hexed).ok()?;
        if bytes.len() < 12 + 16 {
            return None;
        }
        let (nonce, sealed) = bytes.split_at(12);
        let nonce = ring::aead::Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut sealed = sealed.to_vec();
        let opened = (self.key)
            .open_in_place(nonce, ring::aead::Aad::empty(), &mut sealed)
            .ok()?;
        String::from_utf8(opened.to_vec()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_hide_numbers_and_open_only_under_their_key() {
        let handles = Handles::new().expect("key");
        let handle = handles.seal("4761739001010010");
        assert!(handle.starts_with(HANDLE_PREFIX) && !handle.contains("4761739001010010"));
        assert_eq!(handles.open(&handle).as_deref(), Some("4761739001010010"));
        assert_eq!(
            handles.open("4761739001010010").as_deref(),
            Some("4761739001010010")
        );
        let other = Handles::new().expect("key");
        assert_eq!(other.open(&handle), None);
        assert_eq!(handles.open("h-00ff"), None);
    }

    #[test]
    fn passwords_hash_with_argon2id_and_verify() {
        let hash = hash_password("correct horse battery").expect("hashes");
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(!hash.contains("correct horse"));
        assert!(verify_password("correct horse battery", Some(&hash)));
        assert!(!verify_password("correct horse battery!", Some(&hash)));
        assert!(!verify_password("correct horse battery", None));
        assert!(hash_password("short").is_err());
        assert_ne!(
            hash,
            hash_password("correct horse battery").expect("salted")
        );
    }

    #[test]
    fn tokens_are_random_and_kept_as_digests() {
        let (a, b) = (token().expect("a"), token().expect("b"));
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert_eq!(digest_hex(&a).len(), 64);
        assert_ne!(digest_hex(&a), a);
        assert!(same(&a, &a.clone()) && !same(&a, &b));
    }
}
