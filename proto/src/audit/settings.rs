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
    /// An anchor once a line has waited this long for one (whole seconds: at least 1000).
    pub anchor_interval_ms: u64,
    /// Where the last anchor is copied; absent: `<log>.anchor`. Put it where whoever can edit
    /// the log cannot (another filesystem, another owner).
    pub anchor_copy: Option<PathBuf>,
    /// Rotate the log at this size; 0: never by size.
    pub rotate_kib: u64,
    /// Rotate the log when its first line is this old (whole seconds); 0: never by age.
    pub rotate_interval_ms: u64,
}

impl Default for AuditSettings {
    fn default() -> Self {
        let d = AuditOptions::default();
        Self {
            signing_key: None,
            anchor_lines: d.anchor_lines,
            anchor_interval_ms: d.anchor_interval_secs.unsigned_abs() * 1000,
            anchor_copy: None,
            rotate_kib: d.rotate_bytes >> 10,
            rotate_interval_ms: d.rotate_secs.unsigned_abs() * 1000,
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
        for (field, ms, zero_ok) in [
            ("anchor_interval_ms", self.anchor_interval_ms, false),
            ("rotate_interval_ms", self.rotate_interval_ms, true),
        ] {
            if ms == 0 && zero_ok {
                continue;
            }
            if ms < 1000 || ms % 1000 != 0 {
                problems.push(format!(
                    "audit.{field}: must be whole seconds (a multiple of 1000), at least 1000{}",
                    if zero_ok { ", or 0" } else { "" }
                ));
            }
        }
        if let Some(copy) = &self.anchor_copy {
            let dir = match copy.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => Path::new("."),
            };
            if !dir.is_dir() {
                problems.push(format!(
                    "audit.anchor_copy: the directory {} does not exist",
                    dir.display()
                ));
            }
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
            anchor_interval_secs: secs(self.anchor_interval_ms),
            anchor_copy: self.anchor_copy.clone(),
            rotate_bytes: self.rotate_kib << 10,
            rotate_secs: secs(self.rotate_interval_ms),
        })
    }
}

fn secs(ms: u64) -> i64 {
    i64::try_from(ms / 1000).unwrap_or(i64::MAX)
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
