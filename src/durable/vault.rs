//! The PIN vault: voucher PINs are kept only sealed with AES-256-GCM (`ring`), in the
//! journal and in the index alike, each with the id of the key that sealed it and bound
//! to its serial (the serial is the additional data: a sealed PIN moved to another
//! serial does not open). The key file (`[pins] key_file`, default `pin.key` in the data
//! directory) is made `0600` on first use and refused when others may read it. `rekey`
//! makes a new current key and keeps the old one beside it (`pin.key.ID`) so PINs sealed
//! under it still open until they are sealed again. A second, stable key makes the
//! PINs' digests (HMAC-SHA256), by which a PIN already in stock is recognised without
//! opening anything.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

/// Why the vault could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// The key file could not be read, written or parsed.
    #[error("{path}: {reason}")]
    KeyFile {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// A sealed PIN names a key the vault does not have, or does not open.
    #[error("PIN of serial {serial}: {reason}")]
    Sealed {
        /// The PIN's serial.
        serial: String,
        /// Why.
        reason: String,
    },
    /// The system random generator failed.
    #[error("the system random generator failed")]
    Random,
}

/// A PIN as it is stored: the key id and the nonce and ciphertext, hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sealed {
    /// The id of the key that sealed it.
    pub key: String,
    /// Nonce (12 bytes) then ciphertext and tag, hex.
    pub data: String,
}

#[derive(Serialize, Deserialize)]
struct KeyFile {
    id: String,
    aes: String,
    digest: String,
}

/// The keys of the PINs.
pub struct Vault {
    current: String,
    keys: HashMap<String, LessSafeKey>,
    digest: hmac::Key,
}

impl Vault {
    /// The vault of `path`, made (with a new key, mode `0600`) when it does not exist.
    pub fn open_or_create(path: &Path) -> Result<Vault, VaultError> {
        if !path.exists() {
            let digest = hex::encode(random(32)?);
            write_key(path, &new_key(digest)?)?;
        }
        let file = read_key(path)?;
        let mut keys = HashMap::new();
        for retired in retired_files(path)? {
            let old = read_key(&retired)?;
            keys.insert(old.id.clone(), aes_key(&retired, &old.aes)?);
        }
        keys.insert(file.id.clone(), aes_key(path, &file.aes)?);
        let digest = hex::decode(&file.digest).map_err(|e| key_error(path, e))?;
        Ok(Vault {
            current: file.id,
            keys,
            digest: hmac::Key::new(hmac::HMAC_SHA256, &digest),
        })
    }

    /// Makes a new current key; the old one is kept as `PATH.ID`. Returns the new id.
    pub fn rekey(path: &Path) -> Result<String, VaultError> {
        let old = read_key(path)?;
        let retired = path.with_file_name(format!(
            "{}.{}",
            path.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("pin.key"),
            old.id
        ));
        write_key(&retired, &old)?;
        let new = new_key(old.digest)?;
        let id = new.id.clone();
        let temporary = path.with_extension("new");
        let _ = std::fs::remove_file(&temporary);
        write_key(&temporary, &new)?;
        std::fs::rename(&temporary, path).map_err(|e| key_error(path, e))?;
        Ok(id)
    }

    /// The id of the key new PINs are sealed with.
    pub fn current(&self) -> &str {
        &self.current
    }

    /// Seals `pin` of `serial` under the current key.
    pub fn seal(&self, serial: &str, pin: &str) -> Result<Sealed, VaultError> {
        let key = self.keys.get(&self.current).ok_or(VaultError::Random)?;
        let nonce_bytes = random(12)?;
        let nonce =
            Nonce::try_assume_unique_for_key(&nonce_bytes).map_err(|_| VaultError::Random)?;
        let mut data = pin.as_bytes().to_vec();
        key.seal_in_place_append_tag(nonce, Aad::from(serial.as_bytes()), &mut data)
            .map_err(|_| VaultError::Random)?;
        Ok(Sealed {
            key: self.current.clone(),
            data: format!("{}{}", hex::encode(nonce_bytes), hex::encode(data)),
        })
    }

    /// The PIN of `serial` sealed as `sealed`.
    pub fn open(&self, serial: &str, sealed: &Sealed) -> Result<String, VaultError> {
        let refused = |reason: &str| VaultError::Sealed {
            serial: serial.to_owned(),
            reason: reason.to_owned(),
        };
        let key = (self.keys.get(&sealed.key))
            .ok_or_else(|| refused("sealed under a key this vault does not have"))?;
        let bytes = hex::decode(&sealed.data).map_err(|_| refused("not hex"))?;
        if bytes.len() < 12 + 16 {
            return Err(refused("too short"));
        }
        let (nonce, data) = bytes.split_at(12);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| refused("nonce"))?;
        let mut data = data.to_vec();
        let pin = key
            .open_in_place(nonce, Aad::from(serial.as_bytes()), &mut data)
            .map_err(|_| refused("does not open (another serial's, or altered)"))?;
        String::from_utf8(pin.to_vec()).map_err(|_| refused("not text"))
    }

    /// The PIN's digest: how a PIN already in stock is recognised.
    pub fn digest(&self, pin: &str) -> String {
        hex::encode(hmac::sign(&self.digest, pin.as_bytes()))
    }
}

fn random(bytes: usize) -> Result<Vec<u8>, VaultError> {
    let mut buffer = vec![0u8; bytes];
    SystemRandom::new()
        .fill(&mut buffer)
        .map_err(|_| VaultError::Random)?;
    Ok(buffer)
}

fn new_key(digest: String) -> Result<KeyFile, VaultError> {
    let aes = random(32)?;
    let id = hex::encode(&ring::digest::digest(&ring::digest::SHA256, &aes).as_ref()[..4]);
    Ok(KeyFile {
        id,
        aes: hex::encode(aes),
        digest,
    })
}

fn key_error(path: &Path, reason: impl std::fmt::Display) -> VaultError {
    VaultError::KeyFile {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

fn write_key(path: &Path, key: &KeyFile) -> Result<(), VaultError> {
    let text = serde_json::to_string(key).map_err(|e| key_error(path, e))?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| key_error(path, e))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| key_error(path, e))
}

fn read_key(path: &Path) -> Result<KeyFile, VaultError> {
    let metadata = std::fs::metadata(path).map_err(|e| key_error(path, e))?;
    if metadata.permissions().mode() & 0o077 != 0 {
        return Err(key_error(
            path,
            "others may read it: chmod 600 (the PINs' key must be the switch's alone)",
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| key_error(path, e))?;
    serde_json::from_str(&text).map_err(|e| key_error(path, e))
}

fn aes_key(path: &Path, hexed: &str) -> Result<LessSafeKey, VaultError> {
    let bytes = hex::decode(hexed).map_err(|e| key_error(path, e))?;
    let unbound =
        UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| key_error(path, "not a 256-bit key"))?;
    Ok(LessSafeKey::new(unbound))
}

/// The retired keys beside `path` (`NAME.ID`).
fn retired_files(path: &Path) -> Result<Vec<PathBuf>, VaultError> {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return Ok(Vec::new());
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(Vec::new());
    };
    let prefix = format!("{name}.");
    Ok(entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            (p.file_name().and_then(|n| n.to_str()))
                .is_some_and(|n| n.starts_with(&prefix) && n.len() == prefix.len() + 8)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_seal_under_a_0600_key_bound_to_their_serial() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("pin.key");
        let vault = Vault::open_or_create(&path).expect("made");
        let mode = std::fs::metadata(&path).expect("key").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let sealed = vault.seal("S0001", "123456789012").expect("sealed");
        assert!(!sealed.data.contains("123456789012"));
        assert_eq!(vault.open("S0001", &sealed).expect("opens"), "123456789012");
        assert!(vault.open("S0002", &sealed).is_err(), "bound to its serial");
        assert_eq!(vault.digest("123456789012"), vault.digest("123456789012"));
        assert_ne!(vault.digest("123456789012"), vault.digest("123456789013"));

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(
            Vault::open_or_create(&path).is_err(),
            "a readable key is refused"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }

    #[test]
    fn a_rekey_keeps_old_pins_opening_and_digests_stable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("pin.key");
        let before = Vault::open_or_create(&path).expect("made");
        let old = before.seal("S1", "4444").expect("sealed");
        let id = Vault::rekey(&path).expect("rekeyed");
        let after = Vault::open_or_create(&path).expect("opened");
        assert_eq!(after.current(), id);
        assert_ne!(id, old.key);
        assert_eq!(after.open("S1", &old).expect("the old key is kept"), "4444");
        assert_eq!(after.seal("S1", "4444").expect("sealed").key, id);
        assert_eq!(after.digest("4444"), before.digest("4444"));
    }
}
