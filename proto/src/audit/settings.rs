//! The `[audit]` section both daemons read: the anchor key and how often to anchor and
//! rotate. Checked at startup with every other field; the key is read again when the log opens.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::AuditOptions;
use crate::signing::SecretKey;

/// `[audit]` as written.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditSettings {
    /// The Ed25519 key (PKCS#8 PEM, `photonctl keygen`) anchors are signed with: a key for
    /// nothing else. Absent: no anchors, and a truncated tail cannot be detected (a warning).
    pub signing_key: Option<PathBuf>,
    /// An anchor after this many lines.
    pub anchor_lines: u64,
    /// An anchor once a line has waited this long for one.
    pub anchor_interval_s: i64,
    /// Where the last anchor is copied; absent: `<log>.anchor`. Put it where whoever can edit
    /// the log cannot (another filesystem, another owner).
    pub anchor_copy: Option<PathBuf>,
    /// Rotate the log at this size; 0: never by size.
    pub rotate_kib: u64,
    /// Rotate the log when its first line is this old; 0: never by age.
    pub rotate_interval_s: i64,
}

impl Default for AuditSettings {
    fn default() -> Self {
        let d = AuditOptions::default();
        Self {
            signing_key: None,
            anchor_lines: d.anchor_lines,
            anchor_interval_s: d.anchor_interval_secs,
            anchor_copy: None,
            rotate_kib: d.rotate_bytes >> 10,
            rotate_interval_s: d.rotate_secs,
        }
    }
}

impl AuditSettings {
    /// Every problem with the section, as `audit.<field>: ...` lines. `other_keys` are the
    /// daemon's other private key files, which the audit key must not be.
    pub fn problems(&self, other_keys: &[&Path]) -> Vec<String> {
        let mut problems = Vec::new();
        if self.anchor_lines == 0 {
            problems.push("audit.anchor_lines: must be at least 1".to_owned());
        }
        if self.anchor_interval_s <= 0 {
            problems.push("audit.anchor_interval_s: must be at least 1".to_owned());
        }
        if self.rotate_interval_s < 0 {
            problems.push("audit.rotate_interval_s: must not be negative".to_owned());
        }
        if let Some(key) = &self.signing_key {
            if let Err(e) = read_key(key) {
                problems.push(format!("audit.signing_key: {e}"));
            }
            let same = |other: &&Path| {
                *other == key.as_path()
                    || std::fs::canonicalize(other).ok() == std::fs::canonicalize(key).ok()
            };
            if other_keys.iter().any(same) {
                problems.push(
                    "audit.signing_key: must be a key used for nothing else (it is a TLS key)"
                        .to_owned(),
                );
            }
        }
        problems
    }

    /// The writer's options, the key read from its file.
    pub fn options(&self) -> Result<AuditOptions, String> {
        let signer = match &self.signing_key {
            Some(path) => Some(read_key(path)?),
            None => None,
        };
        Ok(AuditOptions {
            signer,
            anchor_lines: self.anchor_lines,
            anchor_interval_secs: self.anchor_interval_s,
            anchor_copy: self.anchor_copy.clone(),
            rotate_bytes: self.rotate_kib << 10,
            rotate_secs: self.rotate_interval_s,
        })
    }
}

fn read_key(path: &Path) -> Result<SecretKey, String> {
    let pem = zeroize::Zeroizing::new(
        std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?,
    );
    SecretKey::from_pkcs8_pem(&pem).map_err(|_| {
        format!(
            "{}: not an Ed25519 private key in PKCS#8 PEM (make one with photonctl keygen)",
            path.display()
        )
    })
}
