//! Public TLS: loading and checking the certificate and key (with the ring provider), and a
//! rustls certificate resolver whose key is swapped by a background reload — no restart.

use std::path::Path;
use std::sync::{Arc, RwLock};

use rustls::crypto::ring;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use sha2::{Digest, Sha256};

/// The public certificate chain and its private key, as files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{}: {}", path.display(), e.kind()))
}

/// Every certificate in a PEM file (at least one).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| format!("{}: not a PEM certificate file", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate found", path.display()));
    }
    Ok(certs)
}

/// The private key in a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(&read(path)?)
        .map_err(|_| format!("{}: no PEM private key found", path.display()))
}

/// The certificate chain and its key, checked to match.
pub fn load_certified_key(files: &TlsFiles) -> Result<CertifiedKey, String> {
    let certs = load_certs(&files.cert)?;
    let key = load_key(&files.key)?;
    CertifiedKey::from_der(certs, key, &ring::default_provider()).map_err(|_| {
        format!(
            "{} and {} do not form a usable certificate and key",
            files.cert.display(),
            files.key.display()
        )
    })
}

/// Serves the current certificate; [`CertResolver::reload`] swaps it.
#[derive(Debug)]
pub struct CertResolver {
    files: TlsFiles,
    current: RwLock<(Vec<u8>, Arc<CertifiedKey>)>,
    /// The stamp of the last pair that failed to load, so a bad edit is logged once.
    failed: std::sync::Mutex<Option<Vec<u8>>>,
}

impl CertResolver {
    pub fn new(files: TlsFiles) -> Result<Self, String> {
        let key = load_certified_key(&files)?;
        let stamp = stamp(&files);
        Ok(Self {
            files,
            current: RwLock::new((stamp, Arc::new(key))),
            failed: std::sync::Mutex::new(None),
        })
    }

    /// Loads the files again if they changed; a bad pair is logged (once per change) and the
    /// old one kept.
    pub fn reload(&self) -> bool {
        let stamp = stamp(&self.files);
        if self.current.read().unwrap_or_else(|p| p.into_inner()).0 == stamp {
            return false;
        }
        let mut failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        if failed.as_ref() == Some(&stamp) {
            return false;
        }
        match load_certified_key(&self.files) {
            Ok(key) => {
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = (stamp, Arc::new(key));
                tracing::info!("TLS certificate reloaded");
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "TLS certificate reload failed; keeping the previous one");
                *failed = Some(stamp);
                false
            }
        }
    }
}

/// A digest of the files' contents, so any change (even a same-second rewrite) is seen
/// without keeping a copy of the key.
fn stamp(files: &TlsFiles) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(std::fs::read(&files.cert).unwrap_or_default());
    h.update(zeroize::Zeroizing::new(
        std::fs::read(&files.key).unwrap_or_default(),
    ));
    h.finalize().to_vec()
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .1
                .clone(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path, name: &str) -> TlsFiles {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let files = TlsFiles {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        };
        std::fs::write(&files.cert, cert.pem()).unwrap();
        std::fs::write(&files.key, key.serialize_pem()).unwrap();
        files
    }

    fn served(r: &CertResolver) -> Vec<u8> {
        r.current.read().unwrap().1.cert[0].to_vec()
    }

    #[test]
    fn reload_swaps_a_good_pair_and_keeps_the_old_on_a_bad_one() {
        let dir = tempfile::tempdir().unwrap();
        let files = write_pair(dir.path(), "one.test");
        let r = CertResolver::new(files.clone()).unwrap();
        let first = served(&r);
        assert!(!r.reload(), "unchanged files are not reloaded");
        write_pair(dir.path(), "two.test");
        assert!(r.reload());
        let second = served(&r);
        assert_ne!(first, second);
        std::fs::write(&files.key, "not a key").unwrap();
        assert!(!r.reload());
        // The failure is remembered by content, so the next poll neither retries nor logs.
        assert_eq!(r.failed.lock().unwrap().as_ref(), Some(&stamp(&files)));
        assert!(!r.reload());
        assert_eq!(served(&r), second);
    }

    #[test]
    fn mismatched_cert_and_key_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let files = write_pair(dir.path(), "one.test");
        let other = tempfile::tempdir().unwrap();
        let stray = write_pair(other.path(), "two.test");
        std::fs::copy(&stray.key, &files.key).unwrap();
        assert!(load_certified_key(&files).is_err());
    }
}
