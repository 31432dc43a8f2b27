//! Reads a policy directory and validates it as one set; every problem found is reported, each
//! as `file:line: message`. Never fails open: a missing or unreadable directory, a missing
//! required file or any error yields no set at all.
//!
//! # The directory
//!
//! Files sit directly in the directory (symlinks are followed, so a Kubernetes ConfigMap mount
//! works; names starting with `.` are skipped). Each `*.toml` file must be one of:
//!
//! | file            | required | holds                                                      |
//! |-----------------|----------|------------------------------------------------------------|
//! | `roles.toml`    | yes      | `[[role]]`: `name`, `permissions`                          |
//! | `bindings.toml` | yes      | `[[binding]]`: `principal`, `role`, `resources`            |
//! | `plans.toml`    | yes      | `default_plan`, `public_plan`; `[[plan]]`: `name`, `rate_per_sec`, `burst`, `daily_quota` |
//! | `partners.toml` | no       | `[[partner]]`: `id`, `plan`; `[[partner.key]]`: `version`, `public_key`, `not_before`, `not_after`, `revoked` |
//! | `api_keys.toml` | no       | `enabled`; `[[api_key]]`: `id`, `secret_sha256`, `principal`, `revoked` |
//! | `issuers.toml`  | no       | `[[issuer]]`: `iss`, `audiences`, `jwks_file`, `algorithms`, `leeway_secs` |
//!
//! Unknown fields and unknown `*.toml` files are errors; other files (JWKS files) are only
//! hashed into the version. An absent optional file defines nothing (an absent `api_keys.toml`
//! disables API keys; a present one enables them unless it says `enabled = false`).
//!
//! # Rules
//!
//! - Names of roles and plans are `[a-z0-9_-]{1,64}`; partner ids are the `X-Partner-Id`
//!   shape; API key ids `[a-z0-9-]{1,64}` (no `_`: it ends the id in `pdb_<id>_<secret>`).
//! - Every role, plan, partner, key version (per partner), API key id and issuer is defined
//!   once; a second definition is an error naming the first.
//! - Public keys are standard base64 of the 32 raw bytes or an SPKI PEM block
//!   (`-----BEGIN PUBLIC KEY-----`); weak (small-order) keys are refused.
//! - Key validity: `not_before` / `not_after` are `YYYY-MM-DDTHH:MM:SSZ` and a key is valid
//!   on the half-open range `[not_before, not_after)`, an absent bound being unbounded on that
//!   side. Two non-revoked versions of one partner **overlap**, an error, when
//!   `max(not_before) < min(not_after)`: so two keys without bounds overlap, and a rotation
//!   gives the old key `not_after = T` and the new one `not_before = T` (or revokes the old).
//! - Bindings name a defined role, a principal that exists (`partner:<id>` of a partner;
//!   `key:<name>` that some API key stands for; `jwt:<iss>#<sub>` of a defined issuer;
//!   `anonymous`), and at least one resource pattern (`*`, `db:<db>`,
//!   `db:<db>/table:<table>`, a segment being a name or exactly `*`). An `anonymous` binding's
//!   role may grant only `table.read`, and needs a `public_plan`.
//! - API key secrets are given as 64 lowercase hex characters of their SHA-256.
//!
//! # Version
//!
//! The lowercase hex SHA-256 over the directory's files in byte order of their names, each
//! framed as `name NUL length-in-decimal NUL contents`.

mod grants;
mod keys;
mod principals;
mod raw;
mod source;

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::policy::model::PolicySet;
use source::Docs;

/// The policy files and whether each must exist.
pub const FILES: [(&str, bool); 6] = [
    ("roles.toml", true),
    ("bindings.toml", true),
    ("plans.toml", true),
    ("partners.toml", false),
    ("api_keys.toml", false),
    ("issuers.toml", false),
];

/// A file larger than this is refused rather than read whole.
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// One problem in a policy directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    /// The file's name within the directory (or the directory's path for directory errors).
    pub file: String,
    /// 1-based; `None` when the problem is the file as a whole.
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.file, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

impl std::error::Error for LoadError {}

/// One file of the directory, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    pub name: String,
    pub contents: Vec<u8>,
}

/// Loads and validates `dir` as one set.
pub fn load_dir(dir: &Path) -> Result<PolicySet, Vec<LoadError>> {
    let files = read_dir(dir)?;
    load_files(dir, &files)
}

/// Reads the directory's files, sorted by name. Relative JWKS paths are later resolved
/// against `dir`.
pub fn read_dir(dir: &Path) -> Result<Vec<SourceFile>, Vec<LoadError>> {
    source::read_dir(dir)
}

/// The set's version: see the module doc. `files` must be sorted by name, as
/// [`read_dir`] returns them.
pub fn version(files: &[SourceFile]) -> String {
    let mut hash = Sha256::new();
    for file in files {
        hash.update(file.name.as_bytes());
        hash.update([0u8]);
        hash.update(file.contents.len().to_string().as_bytes());
        hash.update([0u8]);
        hash.update(&file.contents);
    }
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Validates files already read (what [`load_dir`] does after reading; the fuzz target's
/// entry). `dir` only resolves relative JWKS paths.
pub fn load_files(dir: &Path, files: &[SourceFile]) -> Result<PolicySet, Vec<LoadError>> {
    let mut errors = Vec::new();
    let docs = Docs::new(files, &mut errors);
    let roles = grants::roles(&docs, &mut errors);
    let plans = grants::plans(&docs, &mut errors);
    let partners = principals::partners(&docs, plans.as_ref(), &mut errors);
    let api_keys = principals::api_keys(&docs, partners.as_ref(), &mut errors);
    let issuers = principals::issuers(&docs, dir, &mut errors);
    let known = grants::Known {
        roles: roles.as_ref(),
        partners: partners.as_ref(),
        api_keys: api_keys.as_ref().map(|a| &a.keys),
        issuers: issuers.as_ref(),
        plans: plans.as_ref(),
    };
    let bindings = grants::bindings(&docs, &known, &mut errors);
    match (roles, plans, partners, api_keys, issuers, bindings) {
        (Some(roles), Some(plans), Some(partners), Some(api), Some(issuers), Some(bindings))
            if errors.is_empty() =>
        {
            Ok(PolicySet {
                version: version(files),
                partners,
                api_keys: api.keys,
                api_keys_enabled: api.enabled,
                issuers,
                roles,
                bindings,
                plans: plans.plans,
                default_plan: plans.default_plan,
                public_plan: plans.public_plan,
            })
        }
        _ => Err(errors),
    }
}

/// Records the first definition of `key` at `at`; on a second one returns where the first was.
fn first_definition(seen: &mut BTreeMap<String, String>, key: &str, at: String) -> Option<String> {
    match seen.get(key) {
        Some(first) => Some(first.clone()),
        None => {
            seen.insert(key.to_owned(), at);
            None
        }
    }
}

#[cfg(test)]
mod tests;
