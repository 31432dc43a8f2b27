//! The files as written: serde shapes with the byte span of every value a message may point
//! at. Nothing here is validated; unknown fields are refused by serde.

use serde::Deserialize;
use toml::Spanned;

/// `roles.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RolesFile {
    #[serde(default)]
    pub(super) role: Vec<RawRole>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRole {
    pub(super) name: Spanned<String>,
    pub(super) permissions: Vec<Spanned<String>>,
}

/// `bindings.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BindingsFile {
    #[serde(default)]
    pub(super) binding: Vec<RawBinding>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBinding {
    pub(super) principal: Spanned<String>,
    pub(super) role: Spanned<String>,
    pub(super) resources: Vec<Spanned<String>>,
}

/// `plans.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PlansFile {
    /// Required; optional here so that its absence is reported like every other error.
    pub(super) default_plan: Option<Spanned<String>>,
    pub(super) public_plan: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) plan: Vec<RawPlan>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPlan {
    pub(super) name: Spanned<String>,
    pub(super) rate_per_sec: Spanned<u32>,
    pub(super) burst: Spanned<u32>,
    /// Requests per UTC day; 0 or absent: unlimited.
    #[serde(default)]
    pub(super) daily_quota: u64,
}

/// `partners.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PartnersFile {
    #[serde(default)]
    pub(super) partner: Vec<RawPartner>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPartner {
    pub(super) id: Spanned<String>,
    /// Absent: `plans.toml`'s `default_plan`.
    pub(super) plan: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) key: Vec<RawKey>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKey {
    pub(super) version: Spanned<u32>,
    pub(super) public_key: Spanned<String>,
    pub(super) not_before: Option<Spanned<String>>,
    pub(super) not_after: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) revoked: bool,
}

/// `api_keys.toml`. `Default` (the file is absent) disables API keys.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ApiKeysFile {
    #[serde(default = "enabled_when_present")]
    pub(super) enabled: bool,
    #[serde(default)]
    pub(super) api_key: Vec<RawApiKey>,
}

fn enabled_when_present() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawApiKey {
    pub(super) id: Spanned<String>,
    pub(super) secret_sha256: Spanned<String>,
    /// Absent: `key:<id>`.
    pub(super) principal: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) revoked: bool,
}

/// `issuers.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct IssuersFile {
    #[serde(default)]
    pub(super) issuer: Vec<RawIssuer>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIssuer {
    pub(super) iss: Spanned<String>,
    pub(super) audiences: Spanned<Vec<String>>,
    pub(super) jwks_file: Spanned<String>,
    pub(super) algorithms: Spanned<Vec<Spanned<String>>>,
    pub(super) leeway_secs: Option<Spanned<u64>>,
}
