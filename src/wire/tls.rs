//! TLS: rustls server and client configs built from PEM files.
//!
//! This module owns turning the `[acquirer.tls]` and `[engine.tls]` files of
//! the config into ready [`rustls::ServerConfig`]s (for acquirer listeners, with
//! mutual TLS when a client CA is given) and [`rustls::ClientConfig`]s (for engine
//! links, with an optional client certificate). Both are built with the `ring` crypto
//! provider passed explicitly, never the process-wide default, and rustls's safe
//! default protocol versions (TLS 1.3 and 1.2). PEM is read with
//! [`rustls_pki_types::pem::PemObject`]. Every error names the file at fault, so
//! `replenish check-config` can say which path to fix. No sockets here: wrap a
//! config in `tokio_rustls::TlsAcceptor` or `TlsConnector` to use it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why a TLS config could not be built. Every variant names the file at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A PEM file could not be opened or read, or is not well-formed PEM.
    #[error("{}: {source}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// What the PEM reader found wrong (an I/O error, a bad section, bad base64).
        source: pem::Error,
    },
    /// A certificate file holds no `CERTIFICATE` section.
    #[error("{}: no certificate found (expected a PEM \"CERTIFICATE\" section)", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// A key file holds no private key (PKCS#8, PKCS#1 or SEC1 PEM section).
    #[error("{}: no private key found (expected a PEM \"PRIVATE KEY\" section)", path.display())]
    NoPrivateKey {
        /// The file.
        path: PathBuf,
    },
    /// A CA file holds a certificate that cannot be a trust anchor.
    #[error("{}: not a usable CA certificate: {source}", path.display())]
    BadCaCertificate {
        /// The CA file.
        path: PathBuf,
        /// Why rustls refused it.
        source: rustls::Error,
    },
    /// The client-certificate verifier could not be built from a CA file.
    #[error("{}: cannot verify client certificates with this CA: {source}", path.display())]
    ClientVerifier {
        /// The CA file.
        path: PathBuf,
        /// Why rustls refused it.
        source: rustls::server::VerifierBuilderError,
    },
    /// The key is unusable or does not belong to the certificate.
    #[error("{} with {}: {source}", cert.display(), key.display())]
    KeyPair {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// Why rustls refused the pair.
        source: rustls::Error,
    },
    /// The crypto provider does not support the default protocol versions (does not
    /// happen with `ring`; kept so nothing panics if it ever does).
    #[error("TLS provider: {0}")]
    Provider(rustls::Error),
}

/// A server config for an acquirer listener: presents `cert` (a PEM chain, leaf first)
/// with `key`. With `client_ca`, every client must present a certificate issued by a CA
/// in that PEM file (mutual TLS); a client without one, or with one from another CA,
/// fails the handshake. Without it, no client certificate is asked for.
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = ring_provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Provider)?;
    let builder = match client_ca {
        Some(ca) => builder.with_client_cert_verifier(client_verifier(ca, provider)?),
        None => builder.with_no_client_auth(),
    };
    let (chain, private_key) = (read_certificates(cert)?, read_private_key(key)?);
    let config = builder
        .with_single_cert(chain, private_key)
        .map_err(|source| key_pair_error(cert, key, source))?;
    Ok(Arc::new(config))
}

/// A client config for an engine link: trusts only the CAs in `ca` (a PEM file) and,
/// with `cert_and_key`, presents that certificate chain and key when the server asks.
pub fn client_config(
    ca: &Path,
    cert_and_key: Option<(&Path, &Path)>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let builder = ClientConfig::builder_with_provider(ring_provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Provider)?
        .with_root_certificates(root_store(ca)?);
    let config = match cert_and_key {
        Some((cert, key)) => builder
            .with_client_auth_cert(read_certificates(cert)?, read_private_key(key)?)
            .map_err(|source| key_pair_error(cert, key, source))?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// The `ring` provider, passed explicitly to every builder.
fn ring_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A verifier requiring a client certificate issued by a CA in `ca`.
fn client_verifier(
    ca: &Path,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    WebPkiClientVerifier::builder_with_provider(Arc::new(root_store(ca)?), provider)
        .build()
        .map_err(|source| TlsError::ClientVerifier {
            path: ca.to_owned(),
            source,
        })
}

/// Every certificate in `ca` as a trust anchor.
fn root_store(ca: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for certificate in read_certificates(ca)? {
        roots
            .add(certificate)
            .map_err(|source| TlsError::BadCaCertificate {
                path: ca.to_owned(),
                source,
            })?;
    }
    Ok(roots)
}

/// All `CERTIFICATE` sections of a PEM file, in file order; at least one.
fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem_error = |source| TlsError::Pem {
        path: path.to_owned(),
        source,
    };
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(pem_error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_error)?;
    if certificates.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certificates)
}

/// The first private key of a PEM file.
fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|source| match source {
        pem::Error::NoItemsFound => TlsError::NoPrivateKey {
            path: path.to_owned(),
        },
        source => TlsError::Pem {
            path: path.to_owned(),
            source,
        },
    })
}

fn key_pair_error(cert: &Path, key: &Path, source: rustls::Error) -> TlsError {
    TlsError::KeyPair {
        cert: cert.to_owned(),
        key: key.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_is_named() {
        let missing = Path::new("/nonexistent/replenish/server.pem");
        let error = server_config(missing, missing, None).expect_err("no such file");
        assert!(matches!(error, TlsError::Pem { .. }), "{error:?}");
        assert!(
            error
                .to_string()
                .starts_with("/nonexistent/replenish/server.pem: "),
            "{error}"
        );
    }

    #[test]
    fn a_file_without_certificates_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not pem at all\n").expect("write");
        let error = client_config(&empty, None).expect_err("no certificate");
        assert!(matches!(error, TlsError::NoCertificate { .. }), "{error:?}");
        assert!(
            error
                .to_string()
                .contains("empty.pem: no certificate found"),
            "{error}"
        );
    }
}
