//! Gateway configuration: TOML with serde defaults, environment overrides (DESIGN §7),
//! `validate()` reporting every bad field at once, then the domain type [`GatewayConfig`].
//!
//! Tests and tools can build a [`RawConfig`] in code and write it with `toml::to_string`.
//! Start the binary with `photondb-gateway --config FILE`; see `gateway/README.md` for an
//! example file. The gateway runs the security pipeline ([`Mode::Secure`]) unless dev mode is
//! asked for, and dev mode only on loopback addresses: [`DevMode`] is the proof of that, built
//! only here.

mod security;

pub use security::{
    LimitStoreKind, RawAuth, RawPolicy, RawRateLimit, RawRedis, RawReplay, RedisConfig,
    ReplayStoreKind, Security,
};

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use photondb_proto::audit::AuditSettings;
use photondb_proto::limits::{MAX_BATCH_OPERATIONS, MAX_MESSAGE_BYTES, MAX_SCAN_LIMIT};
use serde::{Deserialize, Serialize};

use crate::tls::{self, TlsFiles};

/// Environment variables read as overrides (DESIGN §7).
pub const ENV_DEV_MODE: &str = "PHOTONDB_DEV_MODE";
pub const ENV_TLS_CERT: &str = "PHOTONDB_TLS_CERT";
pub const ENV_TLS_KEY: &str = "PHOTONDB_TLS_KEY";
pub const ENV_DISABLE_TLS: &str = "PHOTONDB_DISABLE_TLS";
pub const ENV_TLS_DISABLE_VERIFY: &str = "PHOTONDB_TLS_DISABLE_VERIFY";

/// Every configuration problem found, reported together (the binary exits 64 with them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<String>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in &self.0 {
            writeln!(f, "config error: {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Proof that dev mode is on and the public listener is loopback-only. Only
/// [`GatewayConfig`] validation builds it; the dev-only pipeline slots demand it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DevMode(());

#[cfg(test)]
impl DevMode {
    /// Unit tests of the pipeline run the dev slots without a config.
    pub(crate) fn for_tests() -> Self {
        Self(())
    }
}

/// The file as written: every field has a default, nothing is trusted yet.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawConfig {
    /// `None`: not said in the file (`PHOTONDB_DEV_MODE=1` may turn it on; a file that says
    /// `false` while the variable says 1 is a contradiction).
    pub dev_mode: Option<bool>,
    pub listen: String,
    /// The public host names served (`Host` / `:authority`, port included when not 443);
    /// any other host is refused with 421 before authentication (DESIGN §3.7).
    pub hosts: Vec<String>,
    /// The gateway's own state (sled: replay ids, daily quotas).
    pub state_dir: Option<PathBuf>,
    /// When this file exists and is not empty of `0`, the gateway is read-only (hot).
    pub read_only_flag: Option<PathBuf>,
    /// The operator's incident switches (`photonctl ops`), re-read every second. Absent:
    /// `<state_dir>/ops.json` (none in dev mode without a state directory).
    pub ops_file: Option<PathBuf>,
    pub tls: RawTls,
    pub upstream: RawUpstream,
    pub limits: RawLimits,
    pub breaker: RawBreaker,
    pub metrics: RawMetrics,
    pub server: RawServer,
    pub policy: RawPolicy,
    pub auth: RawAuth,
    pub replay: RawReplay,
    pub rate_limit: RawRateLimit,
    pub redis: RawRedis,
    pub audit: AuditSettings,
    pub alerts: RawAlerts,
}

/// `[alerts]`: per-minute thresholds of attack signals (0: counted, never alerted).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawAlerts {
    /// Authentication refusals (401) per minute.
    pub signature_failures_per_min: u64,
    /// Rate-limit and quota refusals (429) per minute.
    pub quota_bypass_per_min: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawTls {
    pub disable: bool,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub reload_interval_ms: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawUpstream {
    pub address: String,
    pub ca: Option<PathBuf>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    pub server_name: String,
    pub timeout_ms: u64,
    pub connect_timeout_ms: u64,
    pub read_retries: u32,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawLimits {
    pub max_body_bytes: usize,
    pub max_json_depth: usize,
    pub max_batch_operations: usize,
    pub max_scan_limit: u32,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub max_pending_handshakes: usize,
    pub handshake_timeout_ms: u64,
    pub max_body_bytes_in_flight: usize,
    pub max_body_bytes_in_flight_per_ip: usize,
    pub max_bodies_per_connection: usize,
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub header_timeout_ms: u64,
    pub body_timeout_ms: u64,
    pub idle_timeout_ms: u64,
    pub h2_max_concurrent_streams: u32,
    pub h2_max_pending_reset_streams: usize,
    pub h2_max_local_error_resets: usize,
    pub max_inflight: usize,
    pub shed_writes_at: usize,
    pub ip_rate_per_sec: u32,
    pub ip_burst: u32,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawBreaker {
    pub failure_threshold: u32,
    pub open_ms: u64,
    pub half_open_probes: u32,
}

#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct RawMetrics {
    pub listen: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawServer {
    pub threads: usize,
    pub grace_period_ms: u64,
    pub graceful_shutdown_timeout_ms: u64,
    /// Where the pid file and the upgrade socket live (the socket hands over the listening
    /// sockets: only the gateway's user may enter). Absent: `$RUNTIME_DIRECTORY` (systemd),
    /// else `$XDG_RUNTIME_DIR/photondb-gateway`, else `<tmp>/photondb-gateway-<uid>`.
    pub runtime_dir: Option<PathBuf>,
}

impl Default for RawConfig {
    fn default() -> Self {
        Self {
            dev_mode: None,
            listen: "127.0.0.1:8443".into(),
            hosts: Vec::new(),
            state_dir: None,
            read_only_flag: None,
            ops_file: None,
            tls: RawTls::default(),
            upstream: RawUpstream::default(),
            limits: RawLimits::default(),
            breaker: RawBreaker::default(),
            metrics: RawMetrics::default(),
            server: RawServer::default(),
            policy: RawPolicy::default(),
            auth: RawAuth::default(),
            replay: RawReplay::default(),
            rate_limit: RawRateLimit::default(),
            redis: RawRedis::default(),
            audit: AuditSettings::default(),
            alerts: RawAlerts::default(),
        }
    }
}

impl Default for RawTls {
    fn default() -> Self {
        Self {
            disable: false,
            cert: None,
            key: None,
            reload_interval_ms: 10_000,
        }
    }
}

impl Default for RawUpstream {
    fn default() -> Self {
        Self {
            address: "127.0.0.1:7443".into(),
            ca: None,
            client_cert: None,
            client_key: None,
            server_name: "storaged.photondb.local".into(),
            timeout_ms: 5_000,
            connect_timeout_ms: 2_000,
            read_retries: 2,
        }
    }
}

impl Default for RawLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: 1 << 20,
            max_json_depth: 32,
            max_batch_operations: MAX_BATCH_OPERATIONS,
            max_scan_limit: MAX_SCAN_LIMIT as u32,
            max_connections: 4_096,
            max_connections_per_ip: 256,
            max_pending_handshakes: 512,
            handshake_timeout_ms: 5_000,
            max_body_bytes_in_flight: 64 << 20,
            max_body_bytes_in_flight_per_ip: 8 << 20,
            max_bodies_per_connection: 32,
            max_header_bytes: 16 * 1024,
            max_headers: 64,
            header_timeout_ms: 10_000,
            body_timeout_ms: 30_000,
            idle_timeout_ms: 60_000,
            h2_max_concurrent_streams: 100,
            h2_max_pending_reset_streams: 20,
            h2_max_local_error_resets: 256,
            // Below storaged's `max_concurrent_requests` (512): the gateway sheds overload
            // itself, before storaged has to refuse (RESOURCE_EXHAUSTED).
            max_inflight: 384,
            shed_writes_at: 288,
            ip_rate_per_sec: 200,
            ip_burst: 400,
        }
    }
}

impl Default for RawBreaker {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            open_ms: 5_000,
            half_open_probes: 1,
        }
    }
}

impl Default for RawServer {
    fn default() -> Self {
        Self {
            threads: 2,
            grace_period_ms: 5_000,
            graceful_shutdown_timeout_ms: 5_000,
            runtime_dir: None,
        }
    }
}

/// Which pipeline the gateway runs.
#[derive(Debug, Clone)]
pub enum Mode {
    /// Every request is the dev principal, allowed everything; loopback only, loud.
    Dev(DevMode),
    /// Authentication, replay guard, limits and policy (DESIGN §2 steps 6-9).
    Secure(Box<Security>),
}

/// The validated configuration the gateway runs with.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub mode: Mode,
    /// Lowercased allowed hosts; empty only in dev mode without `hosts` (no host check).
    pub hosts: Vec<String>,
    pub listen: SocketAddr,
    pub read_only_flag: Option<PathBuf>,
    pub ops_file: Option<PathBuf>,
    pub alerts: RawAlerts,
    /// `None` only in dev mode with `PHOTONDB_DISABLE_TLS=1` / `tls.disable`.
    pub tls: Option<TlsFiles>,
    pub tls_reload_interval: Duration,
    pub upstream: UpstreamConfig,
    pub limits: Limits,
    pub breaker: BreakerConfig,
    pub metrics_listen: Option<SocketAddr>,
    pub server: ServerConfig,
}

#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub address: SocketAddr,
    pub ca: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    pub server_name: String,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub read_retries: u32,
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub max_json_depth: usize,
    pub max_batch_operations: usize,
    pub max_scan_limit: u32,
    pub max_connections: usize,
    /// Per client IP (IPv6: per /64), counted from `accept`.
    pub max_connections_per_ip: usize,
    /// Connections whose TLS handshake has not finished; past it the oldest is closed.
    pub max_pending_handshakes: usize,
    /// The whole TLS handshake, from `accept`.
    pub handshake_timeout: Duration,
    /// Request bodies being buffered (bytes that arrived), all connections together.
    pub max_body_bytes_in_flight: usize,
    /// The same for one client network (IPv4 address or IPv6 /64).
    pub max_body_bytes_in_flight_per_ip: usize,
    /// Request bodies being buffered at once on one connection (HTTP/2 streams).
    pub max_bodies_per_connection: usize,
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub idle_timeout: Duration,
    pub h2_max_concurrent_streams: u32,
    pub h2_max_pending_reset_streams: usize,
    pub h2_max_local_error_resets: usize,
    pub max_inflight: usize,
    pub shed_writes_at: usize,
    /// `None`: per-IP limiting off.
    pub ip_rate: Option<(u32, u32)>,
}

impl Default for Limits {
    /// The defaults of the config file.
    fn default() -> Self {
        RawLimits::default().to_domain()
    }
}

#[derive(Debug, Clone, Copy)]
pub struct BreakerConfig {
    pub failure_threshold: u32,
    pub open_for: Duration,
    pub half_open_probes: u32,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub threads: usize,
    pub grace_period: Duration,
    pub graceful_shutdown_timeout: Duration,
    /// Private to the gateway's user (mode 0700): pid file and upgrade socket.
    pub runtime_dir: PathBuf,
}

impl GatewayConfig {
    /// Reads `path`, applies the `PHOTONDB_*` overrides from `env`, and validates.
    pub fn load(path: &Path, env: &BTreeMap<String, String>) -> Result<Self, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![format!(
                "cannot read {}: {}",
                path.display(),
                e.kind()
            )])
        })?;
        Self::from_toml(&text, env)
    }

    /// Parses TOML text, applies overrides from `env`, and validates.
    pub fn from_toml(text: &str, env: &BTreeMap<String, String>) -> Result<Self, ConfigErrors> {
        let mut raw: RawConfig =
            toml::from_str(text).map_err(|e| ConfigErrors(vec![toml_error(&e)]))?;
        let mut errors = apply_env(&mut raw, env);
        match raw.validate() {
            Ok(cfg) if errors.is_empty() => Ok(cfg),
            Ok(_) => Err(ConfigErrors(errors)),
            Err(ConfigErrors(more)) => {
                errors.extend(more);
                Err(ConfigErrors(errors))
            }
        }
    }
}

/// The `PHOTONDB_*` variables of the current process (the only ones the gateway reads).
pub fn process_env() -> BTreeMap<String, String> {
    std::env::vars()
        .filter(|(k, _)| k.starts_with("PHOTONDB_"))
        .collect()
}

fn toml_error(e: &toml::de::Error) -> String {
    // The message names the field and line; it never echoes values of other fields.
    format!("invalid TOML: {}", e.message())
        + &e.span()
            .map(|s| format!(" (at byte {})", s.start))
            .unwrap_or_default()
}

fn env_flag(env: &BTreeMap<String, String>, name: &str, errors: &mut Vec<String>) -> Option<bool> {
    match env.get(name).map(String::as_str) {
        None => None,
        Some("1" | "true") => Some(true),
        Some("0" | "false" | "") => Some(false),
        Some(_) => {
            errors.push(format!("{name} must be 1 or 0"));
            None
        }
    }
}

fn apply_env(raw: &mut RawConfig, env: &BTreeMap<String, String>) -> Vec<String> {
    let mut errors = Vec::new();
    if let Some(on) = env_flag(env, ENV_DEV_MODE, &mut errors) {
        if on && raw.dev_mode == Some(false) {
            errors.push(format!(
                "dev_mode = false in the file contradicts {ENV_DEV_MODE}=1; remove one"
            ));
        } else {
            raw.dev_mode = Some(on);
        }
    }
    if let Some(off) = env_flag(env, ENV_DISABLE_TLS, &mut errors) {
        raw.tls.disable = off;
    }
    if env_flag(env, ENV_TLS_DISABLE_VERIFY, &mut errors) == Some(true) {
        errors.push(format!(
            "{ENV_TLS_DISABLE_VERIFY}: the gateway always verifies storaged"
        ));
    }
    if let Some(cert) = env.get(ENV_TLS_CERT) {
        raw.tls.cert = Some(cert.into());
    }
    if let Some(key) = env.get(ENV_TLS_KEY) {
        raw.tls.key = Some(key.into());
    }
    errors
}

/// Collects field errors so `validate` reports all of them.
#[derive(Default)]
struct Check(Vec<String>);

impl Check {
    fn fail(&mut self, msg: impl Into<String>) {
        self.0.push(msg.into());
    }

    fn addr(&mut self, field: &str, value: &str) -> Option<SocketAddr> {
        let parsed = value.parse().ok();
        if parsed.is_none() {
            self.fail(format!("{field}: {value:?} is not an IP:port address"));
        }
        parsed
    }

    fn file(&mut self, field: &str, value: &Option<PathBuf>) -> Option<PathBuf> {
        match value {
            None => self.fail(format!("{field} is required")),
            Some(p) if !p.is_file() => {
                self.fail(format!("{field}: {} is not a readable file", p.display()))
            }
            Some(p) => return Some(p.clone()),
        }
        None
    }

    fn at_least(&mut self, field: &str, value: u64, min: u64) {
        if value < min {
            self.fail(format!("{field} must be at least {min}"));
        }
    }

    fn positive(&mut self, field: &str, value: u64) {
        if value == 0 {
            self.fail(format!("{field} must be greater than 0"));
        }
    }

    fn at_most(&mut self, field: &str, value: u64, max: u64) {
        if value > max {
            self.fail(format!("{field} must be at most {max}"));
        }
    }
}

impl RawConfig {
    /// Checks every field and builds the domain config, or lists every problem.
    pub fn validate(&self) -> Result<GatewayConfig, ConfigErrors> {
        let mut c = Check::default();
        let listen = c.addr("listen", &self.listen);
        let dev_mode = self.dev_mode == Some(true);
        let tls = self.tls.validate(&mut c, dev_mode);
        let upstream = self.upstream.validate(&mut c);
        let limits = self.limits.validate(&mut c);
        let breaker = self.breaker.validate(&mut c);
        let metrics_listen = self
            .metrics
            .listen
            .as_deref()
            .and_then(|m| c.addr("metrics.listen", m));
        let server = self.server.validate(&mut c);
        let flag = self.read_only_flag.clone();
        if flag.as_deref().is_some_and(|p| p.as_os_str().is_empty()) {
            c.fail("read_only_flag must not be empty");
        }
        let mode = self.mode(&mut c, listen, metrics_listen);
        match (c.0.is_empty(), listen, mode, tls, upstream, limits) {
            (true, Some(listen), Some(mode), Some(tls), Some(upstream), Some(limits)) => {
                Ok(GatewayConfig {
                    hosts: self.hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
                    mode,
                    listen,
                    read_only_flag: flag,
                    ops_file: self
                        .ops_file
                        .clone()
                        .or_else(|| self.state_dir.as_ref().map(|d| d.join("ops.json"))),
                    alerts: self.alerts.clone(),
                    tls,
                    tls_reload_interval: Duration::from_millis(self.tls.reload_interval_ms),
                    upstream,
                    limits,
                    breaker,
                    metrics_listen,
                    server,
                })
            }
            _ => Err(ConfigErrors(c.0)),
        }
    }
}

impl RawConfig {
    /// Dev mode (loopback listeners only), or the security pipeline with its configuration.
    fn mode(
        &self,
        c: &mut Check,
        listen: Option<SocketAddr>,
        metrics: Option<SocketAddr>,
    ) -> Option<Mode> {
        if self.dev_mode != Some(true) {
            let raw = security::RawSecurity {
                hosts: &self.hosts,
                state_dir: &self.state_dir,
                policy: &self.policy,
                auth: &self.auth,
                replay: &self.replay,
                rate_limit: &self.rate_limit,
                redis: &self.redis,
                audit: &self.audit,
                other_keys: [&self.tls.key, &self.upstream.client_key]
                    .into_iter()
                    .flatten()
                    .map(PathBuf::as_path)
                    .collect(),
            };
            return raw.validate(c).map(|s| Mode::Secure(Box::new(s)));
        }
        let mut loopback = true;
        for (field, addr) in [("listen", listen), ("metrics.listen", metrics)] {
            if let Some(addr) = addr.filter(|a| !a.ip().is_loopback()) {
                c.fail(format!(
                    "{field}: dev mode refuses the non-loopback address {addr}"
                ));
                loopback = false;
            }
        }
        (loopback && listen.is_some()).then_some(Mode::Dev(DevMode(())))
    }
}

impl RawTls {
    fn validate(&self, c: &mut Check, dev_mode: bool) -> Option<Option<TlsFiles>> {
        c.positive("tls.reload_interval_ms", self.reload_interval_ms);
        if self.disable {
            if !dev_mode {
                c.fail(format!(
                    "tls.disable / {ENV_DISABLE_TLS} is allowed only in dev mode"
                ));
            }
            return Some(None);
        }
        let cert = c.file("tls.cert", &self.cert);
        let key = c.file("tls.key", &self.key);
        let files = TlsFiles {
            cert: cert?,
            key: key?,
        };
        if let Err(e) = tls::load_certified_key(&files) {
            c.fail(format!("tls: {e}"));
            return None;
        }
        Some(Some(files))
    }
}

impl RawUpstream {
    fn validate(&self, c: &mut Check) -> Option<UpstreamConfig> {
        let address = c.addr("upstream.address", &self.address);
        let ca = c.file("upstream.ca", &self.ca);
        let client_cert = c.file("upstream.client_cert", &self.client_cert);
        let client_key = c.file("upstream.client_key", &self.client_key);
        if rustls::pki_types::ServerName::try_from(self.server_name.as_str()).is_err() {
            c.fail("upstream.server_name is not a valid DNS name or IP address");
        }
        c.positive("upstream.timeout_ms", self.timeout_ms);
        c.positive("upstream.connect_timeout_ms", self.connect_timeout_ms);
        c.at_most("upstream.read_retries", self.read_retries.into(), 5);
        Some(UpstreamConfig {
            address: address?,
            ca: ca?,
            client_cert: client_cert?,
            client_key: client_key?,
            server_name: self.server_name.clone(),
            timeout: Duration::from_millis(self.timeout_ms),
            connect_timeout: Duration::from_millis(self.connect_timeout_ms),
            read_retries: self.read_retries,
        })
    }
}

impl RawLimits {
    fn validate(&self, c: &mut Check) -> Option<Limits> {
        c.positive("limits.max_body_bytes", self.max_body_bytes as u64);
        c.at_most(
            "limits.max_body_bytes",
            self.max_body_bytes as u64,
            MAX_MESSAGE_BYTES as u64,
        );
        c.positive("limits.max_json_depth", self.max_json_depth as u64);
        c.at_most("limits.max_json_depth", self.max_json_depth as u64, 128);
        c.positive(
            "limits.max_batch_operations",
            self.max_batch_operations as u64,
        );
        // storaged refuses larger batches; the gateway may only be stricter.
        c.at_most(
            "limits.max_batch_operations",
            self.max_batch_operations as u64,
            MAX_BATCH_OPERATIONS as u64,
        );
        c.positive("limits.max_scan_limit", self.max_scan_limit.into());
        c.at_most(
            "limits.max_scan_limit",
            self.max_scan_limit.into(),
            MAX_SCAN_LIMIT as u64,
        );
        c.positive("limits.max_connections", self.max_connections as u64);
        for (field, n) in [
            ("limits.max_connections_per_ip", self.max_connections_per_ip),
            ("limits.max_pending_handshakes", self.max_pending_handshakes),
            (
                "limits.max_bodies_per_connection",
                self.max_bodies_per_connection,
            ),
        ] {
            c.positive(field, n as u64);
        }
        c.positive("limits.handshake_timeout_ms", self.handshake_timeout_ms);
        // One body of the largest size must fit, or large requests could never be served.
        for (field, n) in [
            (
                "limits.max_body_bytes_in_flight",
                self.max_body_bytes_in_flight,
            ),
            (
                "limits.max_body_bytes_in_flight_per_ip",
                self.max_body_bytes_in_flight_per_ip,
            ),
        ] {
            c.at_least(field, n as u64, self.max_body_bytes as u64);
        }
        c.at_most(
            "limits.max_body_bytes_in_flight_per_ip",
            self.max_body_bytes_in_flight_per_ip as u64,
            self.max_body_bytes_in_flight as u64,
        );
        c.positive("limits.max_header_bytes", self.max_header_bytes as u64);
        c.at_most(
            "limits.max_header_bytes",
            self.max_header_bytes as u64,
            1 << 20,
        );
        c.positive("limits.max_headers", self.max_headers as u64);
        c.at_most("limits.max_headers", self.max_headers as u64, 256);
        c.positive("limits.header_timeout_ms", self.header_timeout_ms);
        c.positive("limits.body_timeout_ms", self.body_timeout_ms);
        c.at_least("limits.idle_timeout_ms", self.idle_timeout_ms, 1_000);
        c.positive(
            "limits.h2_max_concurrent_streams",
            self.h2_max_concurrent_streams.into(),
        );
        c.positive("limits.max_inflight", self.max_inflight as u64);
        if self.shed_writes_at == 0 || self.shed_writes_at > self.max_inflight {
            c.fail("limits.shed_writes_at must be between 1 and limits.max_inflight");
        }
        if (self.ip_rate_per_sec == 0) != (self.ip_burst == 0) {
            c.fail("limits.ip_rate_per_sec and limits.ip_burst are both 0 (off) or both positive");
        }
        Some(self.to_domain())
    }

    fn to_domain(&self) -> Limits {
        Limits {
            max_body_bytes: self.max_body_bytes,
            max_json_depth: self.max_json_depth,
            max_batch_operations: self.max_batch_operations,
            max_scan_limit: self.max_scan_limit,
            max_connections: self.max_connections,
            max_connections_per_ip: self.max_connections_per_ip,
            max_pending_handshakes: self.max_pending_handshakes,
            handshake_timeout: Duration::from_millis(self.handshake_timeout_ms),
            max_body_bytes_in_flight: self.max_body_bytes_in_flight,
            max_body_bytes_in_flight_per_ip: self.max_body_bytes_in_flight_per_ip,
            max_bodies_per_connection: self.max_bodies_per_connection,
            max_header_bytes: self.max_header_bytes,
            max_headers: self.max_headers,
            header_timeout: Duration::from_millis(self.header_timeout_ms),
            body_timeout: Duration::from_millis(self.body_timeout_ms),
            idle_timeout: Duration::from_millis(self.idle_timeout_ms),
            h2_max_concurrent_streams: self.h2_max_concurrent_streams,
            h2_max_pending_reset_streams: self.h2_max_pending_reset_streams,
            h2_max_local_error_resets: self.h2_max_local_error_resets,
            max_inflight: self.max_inflight,
            shed_writes_at: self.shed_writes_at,
            ip_rate: (self.ip_rate_per_sec > 0).then_some((self.ip_rate_per_sec, self.ip_burst)),
        }
    }
}

impl RawBreaker {
    fn validate(&self, c: &mut Check) -> BreakerConfig {
        c.positive("breaker.failure_threshold", self.failure_threshold.into());
        c.positive("breaker.open_ms", self.open_ms);
        c.positive("breaker.half_open_probes", self.half_open_probes.into());
        BreakerConfig {
            failure_threshold: self.failure_threshold,
            open_for: Duration::from_millis(self.open_ms),
            half_open_probes: self.half_open_probes,
        }
    }
}

impl RawServer {
    fn validate(&self, c: &mut Check) -> ServerConfig {
        c.positive("server.threads", self.threads as u64);
        c.at_most("server.threads", self.threads as u64, 256);
        c.at_most("server.grace_period_ms", self.grace_period_ms, 3_600_000);
        c.at_most(
            "server.graceful_shutdown_timeout_ms",
            self.graceful_shutdown_timeout_ms,
            3_600_000,
        );
        ServerConfig {
            threads: self.threads,
            grace_period: Duration::from_millis(self.grace_period_ms),
            graceful_shutdown_timeout: Duration::from_millis(self.graceful_shutdown_timeout_ms),
            runtime_dir: self.runtime_dir.clone().unwrap_or_else(default_runtime_dir),
        }
    }
}

/// The runtime directory when the config names none.
fn default_runtime_dir() -> PathBuf {
    let env = |name| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(dir) = env("RUNTIME_DIRECTORY") {
        return dir;
    }
    if let Some(dir) = env("XDG_RUNTIME_DIR") {
        return dir.join("photondb-gateway");
    }
    // Our uid without libc: the owner of /proc/self is the process's user.
    let uid = std::fs::metadata("/proc/self").map_or(0, |m| {
        use std::os::unix::fs::MetadataExt as _;
        m.uid()
    });
    std::env::temp_dir().join(format!("photondb-gateway-{uid}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn errors(text: &str, e: &[(&str, &str)]) -> Vec<String> {
        GatewayConfig::from_toml(text, &env(e)).unwrap_err().0
    }

    #[test]
    fn outside_dev_mode_the_security_settings_are_required_and_every_error_listed() {
        let errs = errors("listen = \"nope\"\n", &[]);
        assert!(errs.iter().any(|e| e.starts_with("listen:")), "{errs:?}");
        assert!(errs.iter().any(|e| e.starts_with("hosts:")), "{errs:?}");
        assert!(errs.iter().any(|e| e.starts_with("policy.dir")), "{errs:?}");
        assert!(errs.iter().any(|e| e.starts_with("state_dir")), "{errs:?}");
        assert!(
            errs.iter().any(|e| e.starts_with("upstream.ca")),
            "{errs:?}"
        );
        assert!(errs.iter().any(|e| e.starts_with("tls.cert")), "{errs:?}");
    }

    #[test]
    fn dev_mode_refuses_public_addresses() {
        let errs = errors("listen = \"0.0.0.0:8443\"\n", &[(ENV_DEV_MODE, "1")]);
        assert!(errs.iter().any(|e| e.contains("non-loopback")), "{errs:?}");
        // The metrics listener is covered by the same proof.
        let text = "[metrics]\nlisten = \"0.0.0.0:9464\"\n";
        let errs = errors(text, &[(ENV_DEV_MODE, "1")]);
        assert!(
            errs.iter()
                .any(|e| e.starts_with("metrics.listen: dev mode refuses the non-loopback")),
            "{errs:?}"
        );
    }

    #[test]
    fn a_file_that_says_no_dev_mode_while_the_environment_says_yes_is_an_error() {
        let errs = errors("dev_mode = false\n", &[(ENV_DEV_MODE, "1")]);
        assert!(
            errs.iter()
                .any(|e| e.contains("contradicts PHOTONDB_DEV_MODE=1")),
            "{errs:?}"
        );
    }

    #[test]
    fn redis_stores_need_a_url() {
        let errs = errors("[replay]\nstore = \"redis\"\n", &[]);
        assert!(
            errs.iter().any(|e| e.starts_with("redis.url is required")),
            "{errs:?}"
        );
        let errs = errors("[rate_limit]\nstore = \"disk\"\n", &[]);
        assert!(
            errs.iter().any(|e| e.starts_with("rate_limit.store")),
            "{errs:?}"
        );
    }

    #[test]
    fn unknown_fields_and_bad_env_are_errors() {
        assert!(errors("bogus = 1\n", &[])[0].contains("bogus"));
        let errs = errors("", &[(ENV_DEV_MODE, "yes"), (ENV_TLS_DISABLE_VERIFY, "1")]);
        assert!(errs.iter().any(|e| e.contains(ENV_DEV_MODE)), "{errs:?}");
        assert!(
            errs.iter().any(|e| e.contains(ENV_TLS_DISABLE_VERIFY)),
            "{errs:?}"
        );
    }

    #[test]
    fn raw_config_round_trips_through_toml() {
        let raw = RawConfig {
            dev_mode: Some(true),
            hosts: vec!["db.example.com".into()],
            ..RawConfig::default()
        };
        let text = toml::to_string(&raw).unwrap();
        let back: RawConfig = toml::from_str(&text).unwrap();
        assert_eq!(back.dev_mode, Some(true));
        assert_eq!(back.hosts, ["db.example.com"]);
        assert_eq!(back.limits.max_body_bytes, 1 << 20);
    }

    #[test]
    fn batches_larger_than_storaged_accepts_are_refused() {
        let errs = errors("[limits]\nmax_batch_operations = 1001\n", &[]);
        assert!(
            errs.contains(&"limits.max_batch_operations must be at most 1000".to_string()),
            "{errs:?}"
        );
    }

    #[test]
    fn disabling_tls_needs_dev_mode() {
        let errs = errors("[tls]\ndisable = true\n", &[]);
        assert!(
            errs.iter().any(|e| e.starts_with("tls.disable")),
            "{errs:?}"
        );
    }
}
