//! The policy set (DESIGN §3.5, §4): everything an operator edits in the policy directory,
//! validated as one set. Principals (partners with versioned Ed25519 keys, API keys, JWT
//! issuers), roles, bindings, plans. Built only by `policy::load`; read by the pipeline's
//! slots through one snapshot per request.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use photondb_proto::signing::PublicKey;

use crate::operation::Action;

/// One validated policy directory.
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    /// Lowercase hex SHA-256 over every file's name and contents: the set's version, shown by
    /// `photonctl ops status`, metrics and audit lines.
    pub version: String,
    /// By partner id.
    pub partners: BTreeMap<String, Partner>,
    /// By key id (the `<key-id>` of `pdb_<key-id>_<secret>`).
    pub api_keys: BTreeMap<String, ApiKey>,
    /// Whether API keys are accepted at all (a deployment may disable them).
    pub api_keys_enabled: bool,
    /// By `iss`.
    pub issuers: BTreeMap<String, Issuer>,
    /// By role name.
    pub roles: BTreeMap<String, Role>,
    pub bindings: Vec<Binding>,
    /// By plan name.
    pub plans: BTreeMap<String, Plan>,
    /// The plan of principals that name none (API-key principals, JWT subjects).
    pub default_plan: String,
    /// The one shared budget of anonymous `/public/*` reads.
    pub public_plan: Option<String>,
}

/// A partner (principal `partner:<id>`): signs requests with one of its keys.
#[derive(Debug, Clone)]
pub struct Partner {
    pub id: String,
    pub plan: String,
    /// Sorted by version, ascending; versions are unique.
    pub keys: Vec<PartnerKey>,
    /// Where it is defined, for messages (`partners.toml:12`).
    pub at: String,
}

/// One version of a partner's Ed25519 public key.
#[derive(Debug, Clone)]
pub struct PartnerKey {
    pub version: u32,
    pub key: PublicKey,
    /// Unix seconds; `None`: no bound.
    pub not_before: Option<i64>,
    pub not_after: Option<i64>,
    pub revoked: bool,
}

/// An API key: only the SHA-256 of its 256-bit secret is kept.
#[derive(Clone)]
pub struct ApiKey {
    pub id: String,
    pub secret_sha256: [u8; 32],
    /// The principal the key stands for, e.g. `key:ci-bot` or `partner:acme`.
    pub principal: String,
    pub revoked: bool,
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKey")
            .field("id", &self.id)
            .field("principal", &self.principal)
            .field("revoked", &self.revoked)
            .finish_non_exhaustive()
    }
}

/// A JWT issuer (principals `jwt:<iss>#<sub>`).
#[derive(Debug, Clone)]
pub struct Issuer {
    pub iss: String,
    /// Accepted `aud` values (at least one).
    pub audiences: Vec<String>,
    /// The JWKS file, relative paths resolved against the policy directory.
    pub jwks_file: PathBuf,
    /// A subset of EdDSA, ES256, RS256.
    pub algorithms: Vec<JwtAlgorithm>,
    /// Leeway for `exp` / `nbf` / `iat`, seconds.
    pub leeway_secs: u64,
}

/// The JWT algorithms an issuer may allow: never `none`, never HS*.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum JwtAlgorithm {
    EdDsa,
    Es256,
    Rs256,
}

/// A role: a set of permissions.
#[derive(Debug, Clone)]
pub struct Role {
    pub name: String,
    pub permissions: BTreeSet<Permission>,
}

/// The permissions of DESIGN §4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Permission {
    TableRead,
    TableWrite,
    TableCreate,
    TableDelete,
    DbCreate,
    DbDelete,
    DbList,
    StorageInspect,
    MetricsRead,
    HealthRead,
    ClusterJoin,
    ClusterRemove,
}

impl Permission {
    pub const ALL: [Permission; 12] = [
        Self::TableRead,
        Self::TableWrite,
        Self::TableCreate,
        Self::TableDelete,
        Self::DbCreate,
        Self::DbDelete,
        Self::DbList,
        Self::StorageInspect,
        Self::MetricsRead,
        Self::HealthRead,
        Self::ClusterJoin,
        Self::ClusterRemove,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::TableRead => "table.read",
            Self::TableWrite => "table.write",
            Self::TableCreate => "table.create",
            Self::TableDelete => "table.delete",
            Self::DbCreate => "db.create",
            Self::DbDelete => "db.delete",
            Self::DbList => "db.list",
            Self::StorageInspect => "storage.inspect",
            Self::MetricsRead => "metrics.read",
            Self::HealthRead => "health.read",
            Self::ClusterJoin => "cluster.join",
            Self::ClusterRemove => "cluster.remove",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// The permission an edge action needs.
    pub fn of(action: Action) -> Self {
        match action {
            Action::TableRead => Self::TableRead,
            Action::TableWrite => Self::TableWrite,
            Action::TableCreate => Self::TableCreate,
            Action::TableDelete => Self::TableDelete,
            Action::DbCreate => Self::DbCreate,
            Action::DbDelete => Self::DbDelete,
            Action::DbList => Self::DbList,
            Action::StorageInspect => Self::StorageInspect,
            Action::HealthRead => Self::HealthRead,
        }
    }
}

/// Principal → role on resources.
#[derive(Debug, Clone)]
pub struct Binding {
    /// `bindings.toml:7`: shown by `photonctl policy explain` and named in a `Permit`.
    pub at: String,
    /// A principal (`partner:acme`, `key:ci`, `jwt:https://idp#alice`, `anonymous`).
    pub principal: String,
    pub role: String,
    pub resources: Vec<ResourcePattern>,
}

/// `*`, `db:<db>`, `db:<db>/table:<table>`; each of `<db>`, `<table>` may be `*` (the whole
/// segment; `db:a*` is a name, not a wildcard, and names cannot contain `*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResourcePattern {
    All,
    Db(Segment),
    Table(Segment, Segment),
}

/// One segment of a resource pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Any,
    Name(String),
}

/// Rate, burst and daily quota.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub name: String,
    pub rate_per_sec: u32,
    pub burst: u32,
    /// Requests per UTC day; 0: unlimited.
    pub daily_quota: u64,
}
