//! photondb-pki: the internal PKI — a CA, storaged's server certificate, the gateway's client
//! identity for mTLS, and the gateway's public TLS certificate. `photonctl certs init` and the
//! tests of both daemons use this crate, so tests run with the certificates operators get; it
//! links neither daemon.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType,
};
use time::{Duration, OffsetDateTime};
use zeroize::Zeroizing;

/// File names inside a certificate directory; the daemons' example configs use them.
pub mod files {
    pub const CA_CERT: &str = "ca.pem";
    pub const CA_KEY: &str = "ca-key.pem";
    pub const STORAGED_CERT: &str = "storaged.pem";
    pub const STORAGED_KEY: &str = "storaged-key.pem";
    pub const GATEWAY_CLIENT_CERT: &str = "gateway-client.pem";
    pub const GATEWAY_CLIENT_KEY: &str = "gateway-client-key.pem";
    pub const GATEWAY_CERT: &str = "gateway.pem";
    pub const GATEWAY_KEY: &str = "gateway-key.pem";
}

/// The gateway's default mTLS identity, which storaged's default allowlist accepts.
pub const DEFAULT_GATEWAY_IDENTITY: &str = "spiffe://photondb.local/gateway";
/// The DNS name the gateway expects on storaged's certificate by default.
pub const DEFAULT_STORAGED_NAME: &str = "storaged.photondb.local";

/// What to put in the certificates.
#[derive(Debug, Clone)]
pub struct CertsSpec {
    /// DNS names or IP addresses on storaged's server certificate.
    pub storaged_names: Vec<String>,
    /// The URI SAN on the gateway's client certificate.
    pub gateway_identity: String,
    /// DNS names or IP addresses on the gateway's public certificate.
    pub gateway_names: Vec<String>,
    /// Lifetime of the leaf certificates; the CA lives ten times as long.
    pub validity_days: i64,
}

impl Default for CertsSpec {
    fn default() -> Self {
        Self {
            storaged_names: vec![
                DEFAULT_STORAGED_NAME.into(),
                "localhost".into(),
                "127.0.0.1".into(),
            ],
            gateway_identity: DEFAULT_GATEWAY_IDENTITY.into(),
            gateway_names: vec!["localhost".into(), "127.0.0.1".into()],
            validity_days: 365,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("invalid certificate name {0:?}")]
    BadName(String),
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// A PEM certificate and its PEM private key (zeroised on drop, never printed).
pub struct CertAndKey {
    pub cert_pem: String,
    key_pem: Zeroizing<String>,
}

impl CertAndKey {
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }
}

/// A CA that can issue leaf certificates.
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    pub cert: CertAndKey,
}

/// Which way a leaf certificate authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Server,
    Client,
}

/// A leaf certificate to issue.
#[derive(Debug, Clone)]
pub struct LeafSpec {
    pub common_name: String,
    /// DNS names, IP addresses, or URIs (anything containing `://`).
    pub names: Vec<String>,
    pub role: Role,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

impl LeafSpec {
    /// A certificate valid from an hour ago for `days`.
    pub fn valid_for(common_name: &str, names: &[String], role: Role, days: i64) -> Self {
        let now = OffsetDateTime::now_utc();
        Self {
            common_name: common_name.into(),
            names: names.to_vec(),
            role,
            not_before: now - Duration::hours(1),
            not_after: now + Duration::days(days),
        }
    }
}

impl Authority {
    /// A new CA with a fresh P-256 key.
    pub fn new(common_name: &str, days: i64) -> Result<Self, CertError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name(common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::hours(1);
        params.not_after = now + Duration::days(days);
        let cert_pem = params.self_signed(&key)?.pem();
        let key_pem = Zeroizing::new(key.serialize_pem());
        Ok(Self {
            issuer: Issuer::new(params, key),
            cert: CertAndKey { cert_pem, key_pem },
        })
    }

    /// Issues a leaf certificate with a fresh P-256 key.
    pub fn issue(&self, leaf: &LeafSpec) -> Result<CertAndKey, CertError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name(&leaf.common_name);
        params.subject_alt_names = leaf
            .names
            .iter()
            .map(|n| san(n))
            .collect::<Result<_, _>>()?;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![match leaf.role {
            Role::Server => ExtendedKeyUsagePurpose::ServerAuth,
            Role::Client => ExtendedKeyUsagePurpose::ClientAuth,
        }];
        params.not_before = leaf.not_before;
        params.not_after = leaf.not_after;
        let cert_pem = params.signed_by(&key, &self.issuer)?.pem();
        Ok(CertAndKey {
            cert_pem,
            key_pem: Zeroizing::new(key.serialize_pem()),
        })
    }
}

/// Everything `photonctl certs init` writes.
pub struct CertSet {
    pub ca: Authority,
    pub storaged: CertAndKey,
    pub gateway_client: CertAndKey,
    pub gateway_public: CertAndKey,
}

/// Generates a CA and the three leaf certificates of `spec`.
pub fn generate(spec: &CertsSpec) -> Result<CertSet, CertError> {
    let ca = Authority::new("PhotonDB internal CA", spec.validity_days * 10)?;
    let days = spec.validity_days;
    let storaged = ca.issue(&LeafSpec::valid_for(
        "photondb-storaged",
        &spec.storaged_names,
        Role::Server,
        days,
    ))?;
    let identity = [spec.gateway_identity.clone()];
    let gateway_client = ca.issue(&LeafSpec::valid_for(
        "photondb-gateway",
        &identity,
        Role::Client,
        days,
    ))?;
    let gateway_public = ca.issue(&LeafSpec::valid_for(
        "photondb-gateway",
        &spec.gateway_names,
        Role::Server,
        days,
    ))?;
    Ok(CertSet {
        ca,
        storaged,
        gateway_client,
        gateway_public,
    })
}

impl CertSet {
    /// Writes every file into `dir` (created if missing). Private keys get mode 0600; existing
    /// files are never overwritten.
    pub fn write_to(&self, dir: &Path) -> Result<(), CertError> {
        std::fs::create_dir_all(dir).map_err(|source| io_error(dir, source))?;
        let pairs = [
            (&self.ca.cert, files::CA_CERT, files::CA_KEY),
            (&self.storaged, files::STORAGED_CERT, files::STORAGED_KEY),
            (
                &self.gateway_client,
                files::GATEWAY_CLIENT_CERT,
                files::GATEWAY_CLIENT_KEY,
            ),
            (
                &self.gateway_public,
                files::GATEWAY_CERT,
                files::GATEWAY_KEY,
            ),
        ];
        for (pair, cert, key) in pairs {
            write_new(&dir.join(cert), pair.cert_pem.as_bytes(), 0o644)?;
            write_new(&dir.join(key), pair.key_pem.as_bytes(), 0o600)?;
        }
        Ok(())
    }
}

/// Creates `path` with `mode`, failing if it exists.
pub fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<(), CertError> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|source| io_error(path, source))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(|source| io_error(path, source))
}

fn io_error(path: &Path, source: std::io::Error) -> CertError {
    CertError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "PhotonDB");
    dn.push(DnType::CommonName, common_name);
    dn
}

fn san(name: &str) -> Result<SanType, CertError> {
    let bad = || CertError::BadName(name.to_owned());
    if name.contains("://") {
        return Ok(SanType::URI(name.try_into().map_err(|_| bad())?));
    }
    if let Ok(ip) = name.parse() {
        return Ok(SanType::IpAddress(ip));
    }
    if !is_dns_name(name) {
        return Err(bad());
    }
    Ok(SanType::DnsName(name.try_into().map_err(|_| bad())?))
}

/// Letters, digits and hyphens in dot-separated labels of 1-63 bytes.
fn is_dns_name(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn init_writes_every_file_with_private_keys_0600_and_never_overwrites() {
        let dir = tempfile::tempdir().expect("tempdir");
        let set = generate(&CertsSpec::default()).expect("generate");
        set.write_to(dir.path()).expect("write");
        for key in [
            files::CA_KEY,
            files::STORAGED_KEY,
            files::GATEWAY_CLIENT_KEY,
            files::GATEWAY_KEY,
        ] {
            let mode = std::fs::metadata(dir.path().join(key))
                .expect("key file")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{key}");
            let pem = std::fs::read_to_string(dir.path().join(key)).expect("read");
            assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{key}");
        }
        for cert in [
            files::CA_CERT,
            files::STORAGED_CERT,
            files::GATEWAY_CLIENT_CERT,
            files::GATEWAY_CERT,
        ] {
            let pem = std::fs::read_to_string(dir.path().join(cert)).expect("read");
            assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{cert}");
        }
        let again = generate(&CertsSpec::default()).expect("generate");
        assert!(matches!(
            again.write_to(dir.path()),
            Err(CertError::Io { .. })
        ));
    }

    #[test]
    fn bad_names_are_refused() {
        let spec = CertsSpec {
            storaged_names: vec!["not a name\n".into()],
            ..CertsSpec::default()
        };
        assert!(matches!(generate(&spec), Err(CertError::BadName(_))));
    }
}
