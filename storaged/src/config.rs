//! storaged's configuration: a TOML file whose every field has a serde default, environment
//! overrides, then `validate()` listing every problem at once (field and problem, one per line),
//! then the domain types the daemon runs on. Validation also parses the certificate, key and CA,
//! so nothing is opened or bound with a configuration that cannot serve. Durations are `_ms`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use photondb_proto::audit::AuditSettings;
use photondb_proto::limits::MAX_MESSAGE_BYTES;
use serde::{Deserialize, Serialize};

use crate::engine::{ArchiveOptions, EngineOptions, Recipients, RecoveryMode};
use crate::tls::TlsFiles;

/// The file as written; `Default` holds every default. Only the TLS files have none.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    /// gRPC over mTLS.
    pub listen: String,
    /// Prometheus text over plain HTTP: keep it on a private address. Absent: no metrics.
    pub metrics_listen: Option<String>,
    pub data_dir: PathBuf,
    /// Audit log (JSON lines, hash-chained). Absent: `<data_dir>/audit.log`.
    pub audit_log: Option<PathBuf>,
    /// `[audit]`: the anchor key, anchoring and rotation (DESIGN §8).
    pub audit: AuditSettings,
    pub buffer_pool_mib: u64,
    pub tls: RawTls,
    pub limits: RawLimits,
    pub recovery: RawRecovery,
    pub checkpoint: RawCheckpoint,
    /// WAL segment size for a new store (an existing store keeps its own): 1 to 1024 MiB. A
    /// segment is what the archive receives once it is full (or `archive.switch_interval_ms`).
    pub wal_segment_mib: u64,
    pub archive: RawArchive,
    pub backup: RawBackup,
}

/// Continuous WAL archiving; off unless `dir` is set.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawArchive {
    /// Receives every sealed WAL segment (a local disk or a mounted bucket).
    pub dir: Option<PathBuf>,
    /// Sealed WAL kept waiting for the archive past which writes are refused
    /// (RESOURCE_EXHAUSTED) until it catches up: continuity over availability.
    pub max_unarchived_mib: u64,
    /// Run by `sh -c` for each archived segment (`%p` its path, `%f` its name); a segment is
    /// archived only once it exits 0.
    pub command: Option<String>,
    pub command_timeout_ms: u64,
    /// Seal the active segment once it has been active this long and holds a record (0: only
    /// when full; else at least 1000): bounds how far the archive lags in time.
    pub switch_interval_ms: u64,
    /// age public keys (age1...) archived segments are encrypted to; none: not encrypted.
    pub recipients: Vec<String>,
}

/// Base backups taken through the admin `Backup` call.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawBackup {
    /// The only directory online backups are written under (each into a new subdirectory);
    /// unset: the admin `Backup` call is refused.
    pub dir: Option<PathBuf>,
    /// age public keys backups are encrypted to; none: not encrypted.
    pub recipients: Vec<String>,
}

impl Default for RawArchive {
    fn default() -> Self {
        Self {
            dir: None,
            max_unarchived_mib: 4096,
            command: None,
            command_timeout_ms: 300_000,
            switch_interval_ms: 0,
            recipients: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTls {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// The internal CA that client (gateway) certificates must chain to.
    pub client_ca: Option<PathBuf>,
    /// Client identities allowed to connect: URI SANs such as SPIFFE IDs. Only URI SANs are
    /// compared, so a DNS name spelled like an identity is not one.
    pub allowed_clients: Vec<String>,
    /// How often the certificate files are read to see whether their contents changed.
    pub reload_interval_ms: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLimits {
    /// Requests served at once across all connections; more are refused (RESOURCE_EXHAUSTED).
    pub max_concurrent_requests: usize,
    /// The largest request accepted; at most (and by default) the wire contract's
    /// `MAX_MESSAGE_BYTES`. Lower it only knowing that legal batches may then be refused.
    pub max_message_bytes: usize,
    pub request_timeout_ms: u64,
    /// The whole TLS handshake, from `accept`.
    pub handshake_timeout_ms: u64,
    /// Authenticated connections open at once. A slot is taken only once mTLS has succeeded
    /// (peers still in their handshake hold none); an authenticated connection past it is
    /// closed.
    pub max_connections: usize,
    /// TLS handshakes in progress at once, all peers together; a newcomer past it evicts the
    /// oldest, so sockets that never finish cannot lock a gateway out.
    pub max_pending_handshakes: usize,
    /// TLS handshakes in progress from one IPv4 address or IPv6 /64; more are closed at once.
    /// At most `max_pending_handshakes`.
    pub max_pending_handshakes_per_ip: usize,
    /// Refused connections are audited per interval: the first per peer network and reason
    /// at once, the rest as one line with their `count` when the interval ends (at most 33
    /// lines per interval in all). 1 s to 1 h.
    pub refusal_audit_interval_ms: u64,
    pub max_concurrent_streams: u32,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRecovery {
    /// `torn-tail` (default) or `strict`; `point-in-time` and `salvage` are offline
    /// (`photondb-storaged recover`).
    pub mode: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawCheckpoint {
    /// Checkpoint after this much WAL since the last one.
    pub wal_mib: u64,
    /// Checkpoint when the last one is older than this.
    pub interval_ms: u64,
    /// Record the durable end of the log in the control file this often (when it moved), so
    /// recovery can tell acknowledged commits that vanished from the log (DESIGN §6).
    pub durable_mark_ms: u64,
}

impl Default for RawConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:7443".into(),
            metrics_listen: None,
            data_dir: PathBuf::from("data"),
            audit_log: None,
            audit: AuditSettings::default(),
            buffer_pool_mib: 64,
            tls: RawTls::default(),
            limits: RawLimits::default(),
            recovery: RawRecovery::default(),
            checkpoint: RawCheckpoint::default(),
            wal_segment_mib: 16,
            archive: RawArchive::default(),
            backup: RawBackup::default(),
        }
    }
}

impl Default for RawTls {
    fn default() -> Self {
        Self {
            cert: None,
            key: None,
            client_ca: None,
            allowed_clients: Vec::new(),
            reload_interval_ms: 5_000,
        }
    }
}

impl Default for RawLimits {
    fn default() -> Self {
        Self {
            max_concurrent_requests: 512,
            max_message_bytes: MAX_MESSAGE_BYTES,
            request_timeout_ms: 30_000,
            handshake_timeout_ms: 10_000,
            max_connections: 1024,
            max_pending_handshakes: 64,
            max_pending_handshakes_per_ip: 16,
            refusal_audit_interval_ms: 10_000,
            max_concurrent_streams: 256,
        }
    }
}

impl Default for RawRecovery {
    fn default() -> Self {
        Self {
            mode: "torn-tail".into(),
        }
    }
}

impl Default for RawCheckpoint {
    fn default() -> Self {
        Self {
            wal_mib: 64,
            interval_ms: 300_000,
            durable_mark_ms: 1_000,
        }
    }
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub metrics_listen: Option<SocketAddr>,
    pub data_dir: PathBuf,
    pub audit_log: PathBuf,
    pub audit: AuditSettings,
    pub tls: TlsFiles,
    pub limits: Limits,
    pub engine: EngineOptions,
    pub backup: BackupConfig,
}

#[derive(Debug, Clone, Default)]
pub struct BackupConfig {
    pub dir: Option<PathBuf>,
    pub recipients: Option<Recipients>,
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_concurrent_requests: usize,
    pub max_message_bytes: usize,
    pub request_timeout: Duration,
    pub handshake_timeout: Duration,
    pub max_connections: usize,
    pub max_pending_handshakes: usize,
    pub max_pending_handshakes_per_ip: usize,
    pub refusal_audit_interval: Duration,
    pub max_concurrent_streams: u32,
}

/// Every problem found in a configuration, one line each.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.join("\n"))]
pub struct ConfigErrors(pub Vec<String>);

/// Reads `path`, applies the environment overrides from `env`, and validates: the one way the
/// daemon gets its configuration.
pub fn load(
    path: &std::path::Path,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    let mut raw = RawConfig::load(path)?;
    let mut errors = raw.apply_env(env);
    match raw.validate() {
        Ok(config) if errors.is_empty() => Ok(config),
        Ok(_) => Err(ConfigErrors(errors)),
        Err(ConfigErrors(more)) => {
            errors.extend(more);
            Err(ConfigErrors(errors))
        }
    }
}

impl RawConfig {
    /// Reads and parses a TOML file.
    pub fn load(path: &std::path::Path) -> Result<Self, ConfigErrors> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigErrors(vec![format!("{}: {e}", path.display())]))?;
        toml::from_str(&text).map_err(|e| ConfigErrors(vec![format!("{}: {e}", path.display())]))
    }

    /// Applies DESIGN §7's environment overrides that storaged honours.
    pub fn apply_env(&mut self, env: impl Fn(&str) -> Option<String>) -> Vec<String> {
        let mut errors = Vec::new();
        if let Some(cert) = env("PHOTONDB_TLS_CERT") {
            self.tls.cert = Some(cert.into());
        }
        if let Some(key) = env("PHOTONDB_TLS_KEY") {
            self.tls.key = Some(key.into());
        }
        for refused in ["PHOTONDB_DISABLE_TLS", "PHOTONDB_TLS_DISABLE_VERIFY"] {
            if env(refused).is_some_and(|v| !v.is_empty() && v != "0") {
                errors.push(format!(
                    "{refused}: storaged only serves mutual TLS; unset it"
                ));
            }
        }
        errors
    }

    /// Checks every field and builds the domain configuration, or lists every problem.
    pub fn validate(&self) -> Result<Config, ConfigErrors> {
        let mut c = Check::default();
        let listen = c.addr("listen", &self.listen);
        // Outer `None`: invalid; inner `None`: no metrics listener.
        let metrics_listen = match &self.metrics_listen {
            None => Some(None),
            Some(at) => c.addr("metrics_listen", at).map(Some),
        };
        if self.data_dir.as_os_str().is_empty() {
            c.fail("data_dir: must not be empty");
        }
        let audit_log = self
            .audit_log
            .clone()
            .unwrap_or_else(|| self.data_dir.join("audit.log"));
        let tls_key: Vec<&std::path::Path> = self.tls.key.iter().map(PathBuf::as_path).collect();
        for problem in self.audit.problems(&tls_key) {
            c.fail(problem);
        }
        let tls = self.tls.validate(&mut c);
        let limits = self.limits.validate(&mut c);
        let engine = self.engine_options(&mut c);
        if let Some(dir) = &self.backup.dir {
            if inside(dir, &self.data_dir) || inside(&self.data_dir, dir) {
                c.fail("backup.dir: must be outside data_dir, and not hold it (a backup must outlive the store)");
            }
            if self
                .archive
                .dir
                .as_ref()
                .is_some_and(|a| inside(dir, a) || inside(a, dir))
            {
                c.fail("backup.dir: must not be inside archive.dir, nor hold it");
            }
        }
        let backup = BackupConfig {
            dir: self.backup.dir.clone(),
            recipients: recipients(&mut c, "backup.recipients", &self.backup.recipients),
        };
        match (listen, metrics_listen, tls, limits, engine) {
            (Some(listen), Some(metrics_listen), Some(tls), Some(limits), Some(engine))
                if c.0.is_empty() =>
            {
                Ok(Config {
                    listen,
                    metrics_listen,
                    data_dir: self.data_dir.clone(),
                    audit_log,
                    audit: self.audit.clone(),
                    tls,
                    limits,
                    engine,
                    backup,
                })
            }
            _ => Err(ConfigErrors(c.0)),
        }
    }

    fn engine_options(&self, c: &mut Check) -> Option<EngineOptions> {
        let recovery = match self.recovery.mode.as_str() {
            "torn-tail" => Some(RecoveryMode::TornTail),
            "strict" => Some(RecoveryMode::Strict),
            other => {
                c.fail(format!(
                    "recovery.mode: {other:?} is not torn-tail or strict (point-in-time and salvage run offline: photondb-storaged recover)"
                ));
                None
            }
        };
        c.positive("buffer_pool_mib", self.buffer_pool_mib);
        c.at_most("buffer_pool_mib", self.buffer_pool_mib, MAX_MIB);
        c.positive("checkpoint.wal_mib", self.checkpoint.wal_mib);
        c.at_most("checkpoint.wal_mib", self.checkpoint.wal_mib, MAX_MIB);
        c.positive("checkpoint.interval_ms", self.checkpoint.interval_ms);
        let mark = self.checkpoint.durable_mark_ms;
        c.at_least("checkpoint.durable_mark_ms", mark, 10);
        c.at_most("checkpoint.durable_mark_ms", mark, 60_000);
        let pool_bytes = self.buffer_pool_mib.saturating_mul(1 << 20);
        c.positive("wal_segment_mib", self.wal_segment_mib);
        c.at_most("wal_segment_mib", self.wal_segment_mib, 1024);
        let archive = self.archive_options(c);
        Some(EngineOptions {
            buffer_pool_bytes: usize::try_from(pool_bytes).unwrap_or(usize::MAX),
            checkpoint_wal_bytes: self.checkpoint.wal_mib.saturating_mul(1 << 20),
            checkpoint_interval: Duration::from_millis(self.checkpoint.interval_ms),
            durable_mark_interval: Duration::from_millis(mark),
            recovery: recovery?,
            wal_segment_size: self.wal_segment_mib.clamp(1, 1024) << 20,
            archive,
            ..EngineOptions::default()
        })
    }

    fn archive_options(&self, c: &mut Check) -> Option<ArchiveOptions> {
        let a = &self.archive;
        let dir = a.dir.clone()?;
        if dir.as_os_str().is_empty() {
            c.fail("archive.dir: must not be empty (leave it out to turn archiving off)");
        }
        if inside(&dir, &self.data_dir) || inside(&self.data_dir, &dir) {
            c.fail("archive.dir: must be outside data_dir, and not hold it (the archive must outlive the store)");
        }
        // Fewer than two segments' worth would refuse writes after every seal.
        let min = self.wal_segment_mib.saturating_mul(2);
        c.at_least("archive.max_unarchived_mib", a.max_unarchived_mib, min);
        c.at_most("archive.max_unarchived_mib", a.max_unarchived_mib, MAX_MIB);
        if a.switch_interval_ms > 0 {
            // Each forced seal zero-fills and syncs a whole segment: not more than once a second.
            c.at_least("archive.switch_interval_ms", a.switch_interval_ms, 1000);
        }
        c.positive("archive.command_timeout_ms", a.command_timeout_ms);
        if a.command
            .as_deref()
            .is_some_and(|cmd| cmd.trim().is_empty())
        {
            c.fail("archive.command: must not be empty (leave it out for no command)");
        }
        let recipients = recipients(c, "archive.recipients", &a.recipients);
        Some(ArchiveOptions {
            dir,
            max_unarchived_bytes: a.max_unarchived_mib.saturating_mul(1 << 20),
            command: a.command.clone(),
            command_timeout: Duration::from_millis(a.command_timeout_ms),
            switch_interval: (a.switch_interval_ms > 0)
                .then(|| Duration::from_millis(a.switch_interval_ms)),
            recipients,
        })
    }
}

/// Whether `path` is `dir` or inside it, comparing real paths where they exist (a relative
/// path, `..` or a symbolic link does not hide that a directory is inside another).
fn inside(path: &std::path::Path, dir: &std::path::Path) -> bool {
    let real = |p: &std::path::Path| {
        // The nearest existing ancestor's real path, with the rest appended.
        let mut existing = p.to_path_buf();
        let mut rest = Vec::new();
        while !existing.exists() {
            match (
                existing.file_name().map(|n| n.to_os_string()),
                existing.parent(),
            ) {
                (Some(name), Some(parent)) => {
                    rest.push(name);
                    existing = parent.to_path_buf();
                }
                _ => break,
            }
        }
        let mut out = std::fs::canonicalize(&existing).unwrap_or(existing);
        out.extend(rest.iter().rev());
        out
    };
    real(path).starts_with(real(dir))
}

/// age recipients for a field: `None` when the list is empty; a bad key is an error.
fn recipients(c: &mut Check, field: &str, keys: &[String]) -> Option<Recipients> {
    if keys.is_empty() {
        return None;
    }
    match Recipients::parse(keys) {
        Ok(r) => Some(r),
        Err(e) => {
            c.fail(format!("{field}: {e}"));
            None
        }
    }
}

impl TryFrom<&RawConfig> for Config {
    type Error = ConfigErrors;

    fn try_from(raw: &RawConfig) -> Result<Self, ConfigErrors> {
        raw.validate()
    }
}

impl RawTls {
    fn validate(&self, c: &mut Check) -> Option<TlsFiles> {
        let cert = c.file("tls.cert", &self.cert);
        let key = c.file("tls.key", &self.key);
        let client_ca = c.file("tls.client_ca", &self.client_ca);
        if self.allowed_clients.is_empty() {
            c.fail("tls.allowed_clients: list at least one gateway identity, e.g. \"spiffe://photondb.local/gateway\"");
        }
        for id in &self.allowed_clients {
            if id.is_empty() || id.chars().any(|ch| ch.is_whitespace() || ch.is_control()) {
                c.fail(format!("tls.allowed_clients: {id:?} is not an identity"));
            } else if !id.contains("://") {
                c.fail(format!(
                    "tls.allowed_clients: {id:?} is not a URI; only URI SANs are compared, e.g. \"spiffe://photondb.local/gateway\""
                ));
            }
        }
        c.positive("tls.reload_interval_ms", self.reload_interval_ms);
        let files = TlsFiles {
            cert: cert?,
            key: key?,
            client_ca: client_ca?,
            allowed_clients: self.allowed_clients.clone(),
            reload_interval: Duration::from_millis(self.reload_interval_ms),
        };
        // Unreadable or invalid PEM is a configuration error like any other (exit 64).
        if let Err(e) = crate::tls::check(&files) {
            c.fail(format!("tls: {e:#}"));
            return None;
        }
        Some(files)
    }
}

impl RawLimits {
    fn validate(&self, c: &mut Check) -> Option<Limits> {
        let requests = self.max_concurrent_requests as u64;
        c.positive("limits.max_concurrent_requests", requests);
        c.at_most("limits.max_concurrent_requests", requests, MAX_COUNT);
        let message = self.max_message_bytes as u64;
        c.positive("limits.max_message_bytes", message);
        c.at_most(
            "limits.max_message_bytes",
            message,
            MAX_MESSAGE_BYTES as u64,
        );
        c.positive("limits.request_timeout_ms", self.request_timeout_ms);
        c.positive("limits.handshake_timeout_ms", self.handshake_timeout_ms);
        let connections = self.max_connections as u64;
        c.positive("limits.max_connections", connections);
        c.at_most("limits.max_connections", connections, MAX_COUNT);
        let pending = self.max_pending_handshakes as u64;
        c.positive("limits.max_pending_handshakes", pending);
        c.at_most("limits.max_pending_handshakes", pending, MAX_COUNT);
        let per_ip = self.max_pending_handshakes_per_ip as u64;
        c.positive("limits.max_pending_handshakes_per_ip", per_ip);
        if per_ip > pending {
            c.fail(format!(
                "limits.max_pending_handshakes_per_ip: must be at most limits.max_pending_handshakes ({pending})"
            ));
        }
        let interval = self.refusal_audit_interval_ms;
        c.at_least("limits.refusal_audit_interval_ms", interval, 1_000);
        c.at_most("limits.refusal_audit_interval_ms", interval, 3_600_000);
        c.positive(
            "limits.max_concurrent_streams",
            u64::from(self.max_concurrent_streams),
        );
        Some(Limits {
            max_concurrent_requests: self.max_concurrent_requests,
            max_message_bytes: self.max_message_bytes,
            request_timeout: Duration::from_millis(self.request_timeout_ms),
            handshake_timeout: Duration::from_millis(self.handshake_timeout_ms),
            max_connections: self.max_connections,
            max_pending_handshakes: self.max_pending_handshakes,
            max_pending_handshakes_per_ip: self.max_pending_handshakes_per_ip,
            refusal_audit_interval: Duration::from_millis(self.refusal_audit_interval_ms),
            max_concurrent_streams: self.max_concurrent_streams,
        })
    }
}

/// 1 PiB: sizes in MiB above this are typos (and would overflow as bytes).
const MAX_MIB: u64 = 1 << 30;

/// Requests or connections at once: more than this is a typo (and past what a semaphore holds).
const MAX_COUNT: u64 = 1 << 20;

/// Collects field errors, so `validate` reports all of them: `field: problem`, one per line.
#[derive(Default)]
struct Check(Vec<String>);

impl Check {
    fn fail(&mut self, msg: impl Into<String>) {
        self.0.push(msg.into());
    }

    fn addr(&mut self, field: &str, value: &str) -> Option<SocketAddr> {
        let parsed = value.parse().ok();
        if parsed.is_none() {
            self.fail(format!(
                "{field}: {value:?} is not an address like 127.0.0.1:7443"
            ));
        }
        parsed
    }

    fn file(&mut self, field: &str, value: &Option<PathBuf>) -> Option<PathBuf> {
        match value {
            None => self.fail(format!(
                "{field}: required (storaged only serves mutual TLS)"
            )),
            Some(path) if !path.is_file() => self.fail(format!(
                "{field}: {} is not a readable file",
                path.display()
            )),
            Some(path) => return Some(path.clone()),
        }
        None
    }

    fn positive(&mut self, field: &str, value: u64) {
        if value == 0 {
            self.fail(format!("{field}: must be positive"));
        }
    }

    fn at_most(&mut self, field: &str, value: u64, max: u64) {
        if value > max {
            self.fail(format!("{field}: must be at most {max}"));
        }
    }

    fn at_least(&mut self, field: &str, value: u64, min: u64) {
        if value < min {
            self.fail(format!("{field}: must be at least {min}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_is_listed_at_once() {
        let raw: RawConfig = toml::from_str(
            r#"
            listen = "nowhere"
            buffer_pool_mib = 18014398509481984
            [tls]
            reload_interval_ms = 0
            [limits]
            max_message_bytes = 0
            [checkpoint]
            wal_mib = 18014398509481984
            [recovery]
            mode = "salvage"
            "#,
        )
        .expect("parses");
        let errors = raw.validate().expect_err("invalid").0;
        for needle in [
            "listen",
            "tls.cert",
            "tls.key",
            "tls.client_ca",
            "tls.allowed_clients",
            "tls.reload_interval_ms: must be positive",
            "limits.max_message_bytes",
            "recovery.mode",
            "buffer_pool_mib: must be at most",
            "checkpoint.wal_mib: must be at most",
        ] {
            assert!(
                errors.iter().any(|e| e.starts_with(needle)),
                "{needle} missing from {errors:?}"
            );
        }
    }

    #[test]
    fn the_message_limit_may_only_be_lowered() {
        let raw: RawConfig = toml::from_str(&format!(
            "[limits]\nmax_message_bytes = {}",
            MAX_MESSAGE_BYTES + 1
        ))
        .expect("parses");
        let errors = raw.validate().expect_err("invalid").0;
        let needle = format!("limits.max_message_bytes: must be at most {MAX_MESSAGE_BYTES}");
        assert!(errors.contains(&needle), "{errors:?}");
        assert_eq!(RawLimits::default().max_message_bytes, MAX_MESSAGE_BYTES);
    }

    #[test]
    fn durations_are_milliseconds() {
        let raw: RawConfig =
            toml::from_str("[tls]\nreload_interval_ms = 1500\n[checkpoint]\ninterval_ms = 250")
                .expect("parses");
        assert_eq!(raw.tls.reload_interval_ms, 1500);
        assert_eq!(raw.checkpoint.interval_ms, 250);
        for old in [
            "[tls]\nreload_interval_secs = 5",
            "[checkpoint]\ninterval_secs = 300",
        ] {
            assert!(toml::from_str::<RawConfig>(old).is_err(), "{old}");
        }
    }

    #[test]
    fn a_garbage_certificate_is_a_configuration_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name);
        for name in ["cert.pem", "key.pem", "ca.pem"] {
            std::fs::write(path(name), "not a pem file").unwrap();
        }
        let raw = RawConfig {
            tls: RawTls {
                cert: Some(path("cert.pem")),
                key: Some(path("key.pem")),
                client_ca: Some(path("ca.pem")),
                allowed_clients: vec!["spiffe://photondb.local/gateway".into()],
                ..RawTls::default()
            },
            ..RawConfig::default()
        };
        let errors = raw.validate().expect_err("invalid").0;
        assert!(errors.iter().any(|e| e.starts_with("tls: ")), "{errors:?}");
    }

    #[test]
    fn handshake_limits_and_identities_are_checked() {
        let raw: RawConfig = toml::from_str(
            r#"
            [tls]
            allowed_clients = ["gateway.internal"]
            [limits]
            max_pending_handshakes = 8
            max_pending_handshakes_per_ip = 9
            refusal_audit_interval_ms = 999
            "#,
        )
        .expect("parses");
        let errors = raw.validate().expect_err("invalid").0;
        for needle in [
            "tls.allowed_clients: \"gateway.internal\" is not a URI",
            "limits.max_pending_handshakes_per_ip: must be at most limits.max_pending_handshakes (8)",
            "limits.refusal_audit_interval_ms: must be at least 1000",
        ] {
            assert!(
                errors.iter().any(|e| e.starts_with(needle)),
                "{needle} missing from {errors:?}"
            );
        }
        let mut c = Check::default();
        let limits = RawLimits::default().validate(&mut c).expect("defaults");
        assert!(c.0.is_empty(), "the defaults are invalid: {:?}", c.0);
        assert_eq!(limits.max_pending_handshakes, 64);
        assert_eq!(limits.max_pending_handshakes_per_ip, 16);
        assert_eq!(limits.refusal_audit_interval, Duration::from_secs(10));
    }

    #[test]
    fn unknown_fields_are_refused() {
        assert!(toml::from_str::<RawConfig>("listne = \"127.0.0.1:1\"").is_err());
    }

    #[test]
    fn disabling_tls_by_environment_is_refused() {
        let mut raw = RawConfig::default();
        let errors = raw.apply_env(|name| (name == "PHOTONDB_DISABLE_TLS").then(|| "1".into()));
        assert_eq!(errors.len(), 1);
        assert!(errors[0].contains("mutual TLS"));
    }
}
