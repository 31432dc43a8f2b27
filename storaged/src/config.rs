//! storaged's configuration: a TOML file with defaults, environment overrides, then
//! `validate()` listing every problem at once, then the domain types the daemon runs on.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::engine::{EngineOptions, RecoveryMode};

/// The file as written. Every field has a default except the TLS files.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    /// gRPC over mTLS.
    pub listen: Option<String>,
    /// Prometheus text over plain HTTP: keep it on a private address.
    pub metrics_listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    /// Audit log (JSON lines, hash-chained); default `<data_dir>/audit.log`.
    pub audit_log: Option<PathBuf>,
    pub tls: RawTls,
    pub limits: RawLimits,
    pub recovery: RawRecovery,
    pub checkpoint: RawCheckpoint,
    pub buffer_pool_mib: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTls {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// The internal CA that client (gateway) certificates must chain to.
    pub client_ca: Option<PathBuf>,
    /// Client identities (URI or DNS SANs) allowed to connect.
    pub allowed_clients: Vec<String>,
    /// How often certificate files are checked for changes.
    pub reload_interval_secs: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLimits {
    /// Requests served at once across all connections; more are refused (RESOURCE_EXHAUSTED).
    pub max_concurrent_requests: Option<usize>,
    pub max_message_bytes: Option<usize>,
    pub request_timeout_ms: Option<u64>,
    pub handshake_timeout_ms: Option<u64>,
    pub max_connections: Option<usize>,
    pub max_concurrent_streams: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRecovery {
    /// `torn-tail` (default) or `strict`; `point-in-time` and `salvage` are offline
    /// (`photondb-storaged recover`).
    pub mode: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawCheckpoint {
    pub wal_mib: Option<u64>,
    pub interval_secs: Option<u64>,
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub metrics_listen: Option<SocketAddr>,
    pub data_dir: PathBuf,
    pub audit_log: PathBuf,
    pub tls: TlsFiles,
    pub limits: Limits,
    pub engine: EngineOptions,
}

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: PathBuf,
    pub allowed_clients: Vec<String>,
    pub reload_interval: Duration,
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_concurrent_requests: usize,
    pub max_message_bytes: usize,
    pub request_timeout: Duration,
    pub handshake_timeout: Duration,
    pub max_connections: usize,
    pub max_concurrent_streams: u32,
}

/// Every problem found in a configuration, one line each.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.join("\n"))]
pub struct ConfigErrors(pub Vec<String>);

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
        let mut errors = Vec::new();
        let listen = addr(
            &mut errors,
            "listen",
            self.listen.as_deref().unwrap_or("127.0.0.1:7443"),
        );
        let metrics_listen = self
            .metrics_listen
            .as_deref()
            .map(|a| addr(&mut errors, "metrics_listen", a));
        let data_dir = self
            .data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("data"));
        let audit_log = self
            .audit_log
            .clone()
            .unwrap_or_else(|| data_dir.join("audit.log"));
        let tls = self.tls.validate(&mut errors);
        let limits = self.limits.validate(&mut errors);
        let engine = self.engine_options(&mut errors);
        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        Ok(Config {
            listen,
            metrics_listen,
            data_dir,
            audit_log,
            tls,
            limits,
            engine,
        })
    }

    fn engine_options(&self, errors: &mut Vec<String>) -> EngineOptions {
        let defaults = EngineOptions::default();
        let recovery = match self.recovery.mode.as_deref().unwrap_or("torn-tail") {
            "torn-tail" => RecoveryMode::TornTail,
            "strict" => RecoveryMode::Strict,
            other => {
                errors.push(format!(
                    "recovery.mode: {other:?} is not torn-tail or strict (point-in-time and salvage run offline: photondb-storaged recover)"
                ));
                RecoveryMode::TornTail
            }
        };
        let pool_mib = positive(errors, "buffer_pool_mib", self.buffer_pool_mib, 64);
        let pool_mib = at_most(errors, "buffer_pool_mib", pool_mib, MAX_MIB, 64);
        let wal_mib = positive(errors, "checkpoint.wal_mib", self.checkpoint.wal_mib, 64);
        let wal_mib = at_most(errors, "checkpoint.wal_mib", wal_mib, MAX_MIB, 64);
        let interval = positive(
            errors,
            "checkpoint.interval_secs",
            self.checkpoint.interval_secs,
            300,
        );
        EngineOptions {
            buffer_pool_bytes: usize::try_from(pool_mib << 20).unwrap_or(usize::MAX),
            checkpoint_wal_bytes: wal_mib << 20,
            checkpoint_interval: Duration::from_secs(interval),
            recovery,
            ..defaults
        }
    }
}

impl RawTls {
    fn validate(&self, errors: &mut Vec<String>) -> TlsFiles {
        let mut file = |name: &str, value: &Option<PathBuf>| match value {
            Some(path) if path.is_file() => path.clone(),
            Some(path) => {
                errors.push(format!(
                    "tls.{name}: {} is not a readable file",
                    path.display()
                ));
                path.clone()
            }
            None => {
                errors.push(format!(
                    "tls.{name}: required (storaged only serves mutual TLS)"
                ));
                PathBuf::new()
            }
        };
        let cert = file("cert", &self.cert);
        let key = file("key", &self.key);
        let client_ca = file("client_ca", &self.client_ca);
        if self.allowed_clients.is_empty() {
            errors.push("tls.allowed_clients: list at least one gateway identity, e.g. \"spiffe://photondb.local/gateway\"".into());
        }
        for id in &self.allowed_clients {
            if id.is_empty() || id.chars().any(|c| c.is_whitespace() || c.is_control()) {
                errors.push(format!("tls.allowed_clients: {id:?} is not an identity"));
            }
        }
        let reload = positive(
            errors,
            "tls.reload_interval_secs",
            self.reload_interval_secs,
            5,
        );
        TlsFiles {
            cert,
            key,
            client_ca,
            allowed_clients: self.allowed_clients.clone(),
            reload_interval: Duration::from_secs(reload),
        }
    }
}

impl RawLimits {
    fn validate(&self, errors: &mut Vec<String>) -> Limits {
        let max_message_bytes = positive(
            errors,
            "limits.max_message_bytes",
            self.max_message_bytes.map(|v| v as u64),
            4 << 20,
        );
        let streams = positive(
            errors,
            "limits.max_concurrent_streams",
            self.max_concurrent_streams.map(u64::from),
            256,
        );
        Limits {
            max_concurrent_requests: positive(
                errors,
                "limits.max_concurrent_requests",
                self.max_concurrent_requests.map(|v| v as u64),
                512,
            ) as usize,
            max_message_bytes: max_message_bytes as usize,
            request_timeout: Duration::from_millis(positive(
                errors,
                "limits.request_timeout_ms",
                self.request_timeout_ms,
                30_000,
            )),
            handshake_timeout: Duration::from_millis(positive(
                errors,
                "limits.handshake_timeout_ms",
                self.handshake_timeout_ms,
                10_000,
            )),
            max_connections: positive(
                errors,
                "limits.max_connections",
                self.max_connections.map(|v| v as u64),
                1024,
            ) as usize,
            max_concurrent_streams: u32::try_from(streams).unwrap_or(u32::MAX),
        }
    }
}

fn addr(errors: &mut Vec<String>, name: &str, value: &str) -> SocketAddr {
    value.parse().unwrap_or_else(|_| {
        errors.push(format!(
            "{name}: {value:?} is not an address like 127.0.0.1:7443"
        ));
        SocketAddr::from(([127, 0, 0, 1], 0))
    })
}

/// 1 PiB: sizes in MiB above this are typos (and would overflow as bytes).
const MAX_MIB: u64 = 1 << 30;

fn at_most(errors: &mut Vec<String>, name: &str, value: u64, max: u64, default: u64) -> u64 {
    if value > max {
        errors.push(format!("{name}: must be at most {max}"));
        return default;
    }
    value
}

fn positive(errors: &mut Vec<String>, name: &str, value: Option<u64>, default: u64) -> u64 {
    match value {
        Some(0) => {
            errors.push(format!("{name}: must be positive"));
            default
        }
        Some(v) => v,
        None => default,
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
