//! The security pipeline's configuration (outside dev mode): public host names, the policy
//! directory, the signing window, and where replay and rate-limit state live (sled by default,
//! Redis when several gateways share it).

use std::path::{Path, PathBuf};
use std::time::Duration;

use photondb_proto::audit::AuditSettings;
use serde::{Deserialize, Serialize};

use super::Check;

/// `[policy]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawPolicy {
    /// The policy directory (DESIGN §4); required outside dev mode.
    pub dir: Option<PathBuf>,
    /// How often the directory is checked for changes (SIGHUP checks at once).
    pub reload_interval_ms: u64,
}

impl Default for RawPolicy {
    fn default() -> Self {
        Self {
            dir: None,
            reload_interval_ms: 2_000,
        }
    }
}

/// `[auth]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawAuth {
    /// A signed request's time (`X-Timestamp`, RFC 9421 `created`) may differ from the
    /// gateway's by at most this much; its request id is remembered this long.
    pub window_ms: u64,
    /// An unknown JWT `kid` re-reads the issuer's JWKS file at most this often.
    pub jwks_reread_min_interval_ms: u64,
}

impl Default for RawAuth {
    fn default() -> Self {
        Self {
            window_ms: 60_000,
            jwks_reread_min_interval_ms: 30_000,
        }
    }
}

/// `[replay]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawReplay {
    /// `sled` (default: in `state_dir`, survives a restart), `redis` (shared by gateways) or
    /// `memory` (tests only: a restart forgets every request id).
    pub store: String,
    /// The sled store refuses new requests (503) rather than forget past this many ids.
    pub max_entries: u64,
}

impl Default for RawReplay {
    fn default() -> Self {
        Self {
            store: "sled".into(),
            max_entries: crate::pipeline::replay::DEFAULT_MAX_ENTRIES,
        }
    }
}

/// `[rate_limit]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawRateLimit {
    /// `local` (default: in process, quotas in `state_dir`) or `redis` (shared by gateways).
    pub store: String,
    /// With `store = "redis"`, what a Redis failure does: `local` (default: this gateway's
    /// own limiter serves, with a metric and a log line) or `refuse` (503).
    pub on_redis_error: String,
}

impl Default for RawRateLimit {
    fn default() -> Self {
        Self {
            store: "local".into(),
            on_redis_error: "local".into(),
        }
    }
}

/// `[redis]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawRedis {
    /// `redis://host:port/db` (or `rediss://`); required when a store is `redis`.
    pub url: Option<String>,
    /// Every Redis command is bounded by this; past it the store counts as down.
    pub timeout_ms: u64,
}

impl Default for RawRedis {
    fn default() -> Self {
        Self {
            url: None,
            timeout_ms: 500,
        }
    }
}

/// Where the replay guard remembers request ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayStoreKind {
    Sled { max_entries: u64 },
    Redis,
    Memory,
}

/// Where per-principal limits are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitStoreKind {
    Local,
    Redis { refuse_on_error: bool },
}

/// A Redis server the gateways share.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    pub url: String,
    pub timeout: Duration,
}

/// The validated security configuration.
#[derive(Debug, Clone)]
pub struct Security {
    /// Lowercased `Host` / `:authority` values served (port included when not the default).
    pub hosts: Vec<String>,
    pub policy_dir: PathBuf,
    pub policy_reload: Duration,
    /// The gateway's sled database (replay ids, daily quotas).
    pub state_dir: PathBuf,
    pub window: Duration,
    pub jwks_reread: Duration,
    pub replay: ReplayStoreKind,
    pub limits: LimitStoreKind,
    pub redis: Option<RedisConfig>,
    /// `[audit]`: the anchor key, anchoring and rotation of `<state_dir>/audit.log`.
    pub audit: AuditSettings,
}

/// The raw sections the security configuration is built from.
pub(super) struct RawSecurity<'a> {
    pub(super) hosts: &'a [String],
    pub(super) state_dir: &'a Option<PathBuf>,
    pub(super) policy: &'a RawPolicy,
    pub(super) auth: &'a RawAuth,
    pub(super) replay: &'a RawReplay,
    pub(super) rate_limit: &'a RawRateLimit,
    pub(super) redis: &'a RawRedis,
    pub(super) audit: &'a AuditSettings,
    /// The gateway's other private keys (TLS), which the audit key must not be.
    pub(super) other_keys: Vec<&'a Path>,
}

impl RawSecurity<'_> {
    /// Checks every field; `None` when any is wrong (the errors are in `c`).
    pub(super) fn validate(&self, c: &mut Check) -> Option<Security> {
        let hosts = check_hosts(c, self.hosts);
        let policy_dir = check_dir(c, "policy.dir", self.policy.dir.as_ref());
        c.positive("policy.reload_interval_ms", self.policy.reload_interval_ms);
        c.at_least("auth.window_ms", self.auth.window_ms, 1_000);
        c.at_most("auth.window_ms", self.auth.window_ms, 3_600_000);
        c.positive(
            "auth.jwks_reread_min_interval_ms",
            self.auth.jwks_reread_min_interval_ms,
        );
        let replay = self.replay_kind(c);
        let limits = self.limit_kind(c);
        let needs_redis = replay == Some(ReplayStoreKind::Redis)
            || matches!(limits, Some(LimitStoreKind::Redis { .. }));
        let redis = self.redis_config(c, needs_redis);
        let state_dir = self.state_dir(c);
        for problem in self.audit.problems(&self.other_keys) {
            c.fail(problem);
        }
        Some(Security {
            hosts: hosts?,
            policy_dir: policy_dir?,
            policy_reload: Duration::from_millis(self.policy.reload_interval_ms),
            state_dir: state_dir?,
            window: Duration::from_millis(self.auth.window_ms),
            jwks_reread: Duration::from_millis(self.auth.jwks_reread_min_interval_ms),
            replay: replay?,
            limits: limits?,
            redis: if needs_redis { Some(redis?) } else { None },
            audit: self.audit.clone(),
        })
    }

    fn replay_kind(&self, c: &mut Check) -> Option<ReplayStoreKind> {
        match self.replay.store.as_str() {
            "sled" => {
                c.positive("replay.max_entries", self.replay.max_entries);
                Some(ReplayStoreKind::Sled {
                    max_entries: self.replay.max_entries,
                })
            }
            "redis" => Some(ReplayStoreKind::Redis),
            "memory" => Some(ReplayStoreKind::Memory),
            other => {
                c.fail(format!(
                    "replay.store: {other:?} is not one of sled, redis, memory"
                ));
                None
            }
        }
    }

    fn limit_kind(&self, c: &mut Check) -> Option<LimitStoreKind> {
        let refuse = match self.rate_limit.on_redis_error.as_str() {
            "local" => false,
            "refuse" => true,
            other => {
                c.fail(format!(
                    "rate_limit.on_redis_error: {other:?} is not one of local, refuse"
                ));
                return None;
            }
        };
        match self.rate_limit.store.as_str() {
            "local" => Some(LimitStoreKind::Local),
            "redis" => Some(LimitStoreKind::Redis {
                refuse_on_error: refuse,
            }),
            other => {
                c.fail(format!(
                    "rate_limit.store: {other:?} is not one of local, redis"
                ));
                None
            }
        }
    }

    fn redis_config(&self, c: &mut Check, needed: bool) -> Option<RedisConfig> {
        c.positive("redis.timeout_ms", self.redis.timeout_ms);
        let url = match (&self.redis.url, needed) {
            (None, true) => {
                c.fail("redis.url is required when replay.store or rate_limit.store is redis");
                return None;
            }
            (None, false) => return None,
            (Some(url), _) => url,
        };
        if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
            c.fail("redis.url must start with redis:// or rediss://");
            return None;
        }
        Some(RedisConfig {
            url: url.clone(),
            timeout: Duration::from_millis(self.redis.timeout_ms),
        })
    }

    fn state_dir(&self, c: &mut Check) -> Option<PathBuf> {
        let Some(dir) = self.state_dir else {
            c.fail("state_dir is required outside dev mode (replay ids and quotas live there)");
            return None;
        };
        let parent_ok = dir.is_dir() || dir.parent().is_some_and(std::path::Path::is_dir);
        if !parent_ok {
            c.fail(format!(
                "state_dir: neither {} nor its parent is a directory",
                dir.display()
            ));
            return None;
        }
        Some(dir.clone())
    }
}

fn check_hosts(c: &mut Check, hosts: &[String]) -> Option<Vec<String>> {
    if hosts.is_empty() {
        c.fail("hosts: list the public host names this gateway serves (e.g. [\"db.example.com\"])");
        return None;
    }
    let valid = |h: &str| {
        !h.is_empty()
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
    };
    let mut out = Vec::new();
    for h in hosts {
        if valid(h) {
            out.push(h.to_ascii_lowercase());
        } else {
            c.fail(format!(
                "hosts: {h:?} is not a host name with an optional port"
            ));
        }
    }
    (out.len() == hosts.len()).then_some(out)
}

fn check_dir(c: &mut Check, field: &str, dir: Option<&PathBuf>) -> Option<PathBuf> {
    match dir {
        None => c.fail(format!("{field} is required outside dev mode")),
        Some(d) if !d.is_dir() => c.fail(format!("{field}: {} is not a directory", d.display())),
        Some(d) => return Some(d.clone()),
    }
    None
}
