//! Mutual TLS for storaged: TLS 1.3 only, a client certificate that chains to the internal CA
//! and names an allowed gateway, and certificate files reloaded when their contents change.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use sha2::{Digest as _, Sha256};

use crate::audit::Audit;

/// The TLS files and settings of a validated configuration.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: PathBuf,
    pub allowed_clients: Vec<String>,
    pub reload_interval: Duration,
}

/// The identities on a certificate: its URI SANs (SPIFFE IDs), and only those. A DNS SAN is
/// not an identity even when spelled like one (`spiffe://photondb.local/gateway` as a DNS
/// name): what a CA checks before it signs a DNS name is not what it checks for an identity.
pub fn identities(cert: &CertificateDer<'_>) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert) else {
        return Vec::new();
    };
    let Ok(Some(san)) = parsed.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::URI(uri) => Some((*uri).to_owned()),
            _ => None,
        })
        .collect()
}

/// Checks the chain with webpki, then that the leaf names an allowed client.
#[derive(Debug)]
struct AllowlistVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    allowed: Vec<String>,
    /// Where refused identities are recorded (none when only checking the files).
    audit: Option<Arc<Audit>>,
}

impl ClientCertVerifier for AllowlistVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let names = identities(end_entity);
        if names.iter().any(|n| self.allowed.contains(n)) {
            return Ok(ClientCertVerified::assertion());
        }
        if let Some(audit) = &self.audit {
            audit.record(
                "mtls_identity_refused",
                [("identities", names.join(",").into())],
            );
        }
        Err(rustls::Error::InvalidCertificate(
            rustls::CertificateError::ApplicationVerificationFailure,
        ))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Builds the server configuration from the files named in `files`.
pub fn server_config(
    files: &TlsFiles,
    audit: Arc<Audit>,
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    build(files, Some(audit))
}

/// Reads and parses the certificate, key and CA into a server configuration that is then
/// dropped: configuration validation runs this, so a bad file is a configuration error (exit
/// 64) found before the store is opened or a port bound.
pub fn check(files: &TlsFiles) -> anyhow::Result<()> {
    build(files, None).map(drop)
}

fn build(files: &TlsFiles, audit: Option<Arc<Audit>>) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    use anyhow::Context as _;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("reading certificate {}", files.cert.display()))?;
    anyhow::ensure!(
        !certs.is_empty(),
        "certificate {} holds no PEM certificate",
        files.cert.display()
    );
    for cert in &certs {
        x509_parser::parse_x509_certificate(cert)
            .map_err(|e| anyhow::anyhow!("parsing certificate {}: {e}", files.cert.display()))?;
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .with_context(|| format!("reading private key {}", files.key.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(&files.client_ca)
        .with_context(|| format!("reading CA {}", files.client_ca.display()))?
    {
        roots.add(ca.with_context(|| format!("parsing CA {}", files.client_ca.display()))?)?;
    }
    let inner = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .context("building the client verifier")?;
    let verifier = AllowlistVerifier {
        inner,
        allowed: files.allowed_clients.clone(),
        audit,
    };
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_single_cert(certs, key)
        .context("certificate and private key do not match")?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// The current server configuration, rebuilt when a certificate file's contents change.
pub struct Reloading {
    files: TlsFiles,
    audit: Arc<Audit>,
    /// The configuration and the digest of the files it was built from (or last tried).
    current: RwLock<(Arc<rustls::ServerConfig>, Vec<u8>)>,
}

impl Reloading {
    pub fn new(files: TlsFiles, audit: Arc<Audit>) -> anyhow::Result<Self> {
        let seen = digest(&files);
        let config = server_config(&files, audit.clone())?;
        Ok(Self {
            files,
            audit,
            current: RwLock::new((config, seen)),
        })
    }

    /// The configuration for a new connection.
    pub fn current(&self) -> Arc<rustls::ServerConfig> {
        self.current
            .read()
            .map(|c| c.0.clone())
            .unwrap_or_else(|p| p.into_inner().0.clone())
    }

    /// Rebuilds if any file's contents changed; a bad new file keeps the old configuration
    /// and is reported once (until the files change again).
    pub fn reload_if_changed(&self) {
        let now = digest(&self.files);
        let changed = self.current.read().map(|c| c.1 != now).unwrap_or(false);
        if !changed {
            return;
        }
        match server_config(&self.files, self.audit.clone()) {
            Ok(config) => {
                if let Ok(mut current) = self.current.write() {
                    *current = (config, now);
                }
                tracing::info!("TLS certificates reloaded");
                self.audit.record("tls_reloaded", []);
            }
            Err(err) => {
                // Remember these files as seen, so a bad edit is reported once, not every tick.
                if let Ok(mut current) = self.current.write() {
                    current.1 = now;
                }
                tracing::error!(error = %err, "TLS reload failed; keeping the previous certificates");
                self.audit.record("tls_reload_failed", []);
            }
        }
    }

    pub fn interval(&self) -> std::time::Duration {
        self.files.reload_interval
    }
}

/// A digest of the files' contents. Modification times miss a rewrite within the
/// filesystem's timestamp granularity and a file swapped in with an older time (a renamed
/// Kubernetes secret, `cp -p`); the contents do not. Nothing of the key is kept but the digest.
fn digest(files: &TlsFiles) -> Vec<u8> {
    let mut h = Sha256::new();
    for path in [&files.cert, &files.key, &files.client_ca] {
        match std::fs::read(path) {
            // Length-prefixed, so bytes moving between files still change the digest.
            Ok(bytes) => {
                h.update([1u8]);
                h.update((bytes.len() as u64).to_le_bytes());
                h.update(&bytes);
            }
            Err(_) => h.update([0u8]),
        }
    }
    h.finalize().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GATEWAY: &str = "spiffe://photondb.local/gateway";

    /// A chain check that passes anything, so that only the allowlist decides.
    #[derive(Debug)]
    struct AnyChain;

    impl ClientCertVerifier for AnyChain {
        fn root_hint_subjects(&self) -> &[DistinguishedName] {
            &[]
        }

        fn verify_client_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: UnixTime,
        ) -> Result<ClientCertVerified, rustls::Error> {
            Ok(ClientCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Ok(HandshakeSignatureValid::assertion())
        }

        fn verify_tls13_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Ok(HandshakeSignatureValid::assertion())
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            Vec::new()
        }
    }

    fn leaf(san: rcgen::SanType) -> CertificateDer<'static> {
        let mut params = rcgen::CertificateParams::default();
        params.subject_alt_names = vec![san];
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().clone()
    }

    #[test]
    fn a_dns_name_spelled_like_an_allowed_identity_is_not_that_identity() {
        let dns = leaf(rcgen::SanType::DnsName(GATEWAY.try_into().unwrap()));
        let uri = leaf(rcgen::SanType::URI(GATEWAY.try_into().unwrap()));
        assert!(identities(&dns).is_empty(), "{:?}", identities(&dns));
        assert_eq!(identities(&uri), vec![GATEWAY.to_owned()]);
        let verifier = AllowlistVerifier {
            inner: Arc::new(AnyChain),
            allowed: vec![GATEWAY.to_owned()],
            audit: None,
        };
        let now = UnixTime::since_unix_epoch(Duration::from_secs(1_700_000_000));
        assert!(verifier.verify_client_cert(&dns, &[], now).is_err());
        assert!(verifier.verify_client_cert(&uri, &[], now).is_ok());
    }

    #[test]
    fn a_rewrite_with_the_same_modification_time_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let files = TlsFiles {
            cert: dir.path().join("cert.pem"),
            key: dir.path().join("key.pem"),
            client_ca: dir.path().join("ca.pem"),
            allowed_clients: Vec::new(),
            reload_interval: Duration::from_secs(1),
        };
        for (path, text) in [
            (&files.cert, "one"),
            (&files.key, "key"),
            (&files.client_ca, "ca"),
        ] {
            std::fs::write(path, text).unwrap();
        }
        let before = digest(&files);
        assert_eq!(digest(&files), before, "unchanged files digest the same");
        let mtime = std::fs::metadata(&files.cert).unwrap().modified().unwrap();
        std::fs::write(&files.cert, "two").unwrap();
        let f = std::fs::File::options()
            .write(true)
            .open(&files.cert)
            .unwrap();
        f.set_modified(mtime).unwrap();
        assert_ne!(
            digest(&files),
            before,
            "same size, same mtime, new contents"
        );
        std::fs::remove_file(&files.key).unwrap();
        assert_ne!(digest(&files), before, "a missing file is a change too");
    }

    #[test]
    fn unreadable_or_invalid_files_fail_the_check() {
        let dir = tempfile::tempdir().unwrap();
        let files = TlsFiles {
            cert: dir.path().join("cert.pem"),
            key: dir.path().join("key.pem"),
            client_ca: dir.path().join("ca.pem"),
            allowed_clients: vec!["spiffe://photondb.local/gateway".into()],
            reload_interval: Duration::from_secs(1),
        };
        assert!(check(&files).is_err(), "missing files");
        for path in [&files.cert, &files.key, &files.client_ca] {
            std::fs::write(
                path,
                "-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n",
            )
            .unwrap();
        }
        assert!(check(&files).is_err(), "garbage PEM");
    }
}
