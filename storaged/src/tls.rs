//! Mutual TLS for storaged: TLS 1.3 only, a client certificate that chains to the internal CA
//! and names an allowed gateway, and certificate files reloaded when they change.

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use crate::audit::Audit;
use crate::config::TlsFiles;

/// The identities (URI and DNS SANs) on a certificate.
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
            GeneralName::DNSName(dns) => Some((*dns).to_owned()),
            _ => None,
        })
        .collect()
}

/// Checks the chain with webpki, then that the leaf names an allowed client.
#[derive(Debug)]
struct AllowlistVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    allowed: Vec<String>,
    audit: Arc<Audit>,
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
        self.audit.record(
            "mtls_identity_refused",
            [("identities", names.join(",").into())],
        );
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
    use anyhow::Context as _;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("reading certificate {}", files.cert.display()))?;
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

/// The current server configuration, rebuilt when a certificate file changes.
pub struct Reloading {
    files: TlsFiles,
    audit: Arc<Audit>,
    current: RwLock<(Arc<rustls::ServerConfig>, Vec<Option<SystemTime>>)>,
}

impl Reloading {
    pub fn new(files: TlsFiles, audit: Arc<Audit>) -> anyhow::Result<Self> {
        let config = server_config(&files, audit.clone())?;
        let stamps = stamps(&files);
        Ok(Self {
            files,
            audit,
            current: RwLock::new((config, stamps)),
        })
    }

    /// The configuration for a new connection.
    pub fn current(&self) -> Arc<rustls::ServerConfig> {
        self.current
            .read()
            .map(|c| c.0.clone())
            .unwrap_or_else(|p| p.into_inner().0.clone())
    }

    /// Rebuilds if any file changed; a bad new file keeps the old configuration.
    pub fn reload_if_changed(&self) {
        let now = stamps(&self.files);
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

fn stamps(files: &TlsFiles) -> Vec<Option<SystemTime>> {
    [&files.cert, &files.key, &files.client_ca]
        .into_iter()
        .map(|p: &std::path::PathBuf| modified(p))
        .collect()
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}
