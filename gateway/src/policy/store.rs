//! The gateway's current policy set: each request takes one snapshot ([`PolicyStore::current`]);
//! [`PolicyStore::reload`] swaps in a new set atomically only when the whole directory
//! validates, so a bad edit keeps the last good set serving (never fail open, never half a set).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use photondb_proto::signing::PublicKey;

use crate::policy::load::{self, LoadError};
use crate::policy::model::PolicySet;

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// The directory's version is the current set's: nothing to swap.
    Unchanged,
    /// A new set is current.
    Swapped { version: String },
    /// The directory does not validate; the last good set stays current.
    Rejected { errors: Vec<LoadError> },
}

/// The current set of one policy directory.
#[derive(Debug)]
pub struct PolicyStore {
    dir: PathBuf,
    current: RwLock<Arc<PolicySet>>,
    /// Keys kept for one other use (the audit log's anchor key): a set that gives one of them
    /// to a partner is refused, or that partner could sign anchors.
    reserved: Vec<PublicKey>,
    /// One reload at a time (SIGHUP, the file watch and the poll may coincide), so an older
    /// read of the directory never replaces a newer one.
    reloading: Mutex<()>,
}

impl PolicyStore {
    /// Loads `dir`; a gateway whose directory does not validate, or that gives a partner one
    /// of the `reserved` keys, does not start.
    pub fn open(dir: impl Into<PathBuf>, reserved: Vec<PublicKey>) -> Result<Self, Vec<LoadError>> {
        let dir = dir.into();
        let set = load::load_dir(&dir)?;
        reserved_key_used(&set, &reserved)?;
        let mut store = Self::from_set(dir, set);
        store.reserved = reserved;
        Ok(store)
    }

    /// A store holding `set` as if loaded from `dir` (dev mode and tests).
    pub fn from_set(dir: impl Into<PathBuf>, set: PolicySet) -> Self {
        Self {
            dir: dir.into(),
            current: RwLock::new(Arc::new(set)),
            reserved: Vec::new(),
            reloading: Mutex::new(()),
        }
    }

    /// The directory it loads.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The current set; a request keeps this one snapshot even if a reload swaps meanwhile.
    pub fn current(&self) -> Arc<PolicySet> {
        // The lock only guards an `Arc` assignment, which cannot leave it half-written, so a
        // poisoned lock still holds a whole set.
        Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Re-reads the directory: cheap when nothing changed (files are hashed before parsing).
    pub fn reload(&self) -> ReloadOutcome {
        let _one_at_a_time = self.reloading.lock().unwrap_or_else(|e| e.into_inner());
        let files = match load::read_dir(&self.dir) {
            Ok(files) => files,
            Err(errors) => return ReloadOutcome::Rejected { errors },
        };
        if load::version(&files) == self.current().version {
            return ReloadOutcome::Unchanged;
        }
        let loaded = load::load_files(&self.dir, &files)
            .and_then(|set| reserved_key_used(&set, &self.reserved).map(|()| set));
        match loaded {
            Ok(set) => {
                let version = set.version.clone();
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(set);
                ReloadOutcome::Swapped { version }
            }
            Err(errors) => ReloadOutcome::Rejected { errors },
        }
    }
}

/// Refuses a set in which a partner key is one of `reserved`.
fn reserved_key_used(set: &PolicySet, reserved: &[PublicKey]) -> Result<(), Vec<LoadError>> {
    let errors: Vec<LoadError> = set
        .partners
        .values()
        .flat_map(|p| p.keys.iter().map(move |k| (p, k)))
        .filter(|(_, k)| reserved.contains(&k.key))
        .map(|(p, k)| LoadError {
            file: p.at.clone(),
            line: None,
            message: format!(
                "partner {:?} key version {} is the audit log's signing key; that key must \
                 be used for nothing else",
                p.id, k.version
            ),
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLES: &str = "[[role]]\nname = \"reader\"\npermissions = [\"table.read\"]\n";
    const PLANS: &str =
        "default_plan = \"free\"\n\n[[plan]]\nname = \"free\"\nrate_per_sec = 1\nburst = 1\n";
    const BINDINGS: &str = "";

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    fn good_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "roles.toml", ROLES);
        write(dir.path(), "plans.toml", PLANS);
        write(dir.path(), "bindings.toml", BINDINGS);
        dir
    }

    #[test]
    fn reload_keeps_the_last_good_set_and_swaps_on_a_good_edit() {
        let dir = good_dir();
        let store = PolicyStore::open(dir.path(), Vec::new()).unwrap();
        let first = store.current();
        assert_eq!(store.dir(), dir.path());
        assert_eq!(store.reload(), ReloadOutcome::Unchanged);

        write(
            dir.path(),
            "roles.toml",
            "[[role]]\nname = \"reader\"\npermissions = [\"table.raed\"]\n",
        );
        match store.reload() {
            ReloadOutcome::Rejected { errors } => {
                assert_eq!(errors.len(), 1, "{errors:?}");
                assert_eq!(errors[0].file, "roles.toml");
                assert_eq!(errors[0].line, Some(3));
            }
            other => panic!("{other:?}"),
        }
        assert!(
            Arc::ptr_eq(&first, &store.current()),
            "the last good set stays"
        );

        let edited =
            format!("{ROLES}\n[[role]]\nname = \"writer\"\npermissions = [\"table.write\"]\n");
        write(dir.path(), "roles.toml", &edited);
        let version = match store.reload() {
            ReloadOutcome::Swapped { version } => version,
            other => panic!("{other:?}"),
        };
        let now = store.current();
        assert_eq!(now.version, version);
        assert_ne!(now.version, first.version);
        assert!(now.roles.contains_key("writer"));
        // The snapshot taken before the swap is unchanged.
        assert!(!first.roles.contains_key("writer"));
        assert_eq!(store.reload(), ReloadOutcome::Unchanged);
    }

    #[test]
    fn a_vanished_directory_is_rejected_and_the_set_kept() {
        let dir = good_dir();
        let store = PolicyStore::open(dir.path(), Vec::new()).unwrap();
        let before = store.current();
        let path = dir.path().to_owned();
        drop(dir);
        match store.reload() {
            ReloadOutcome::Rejected { errors } => {
                assert_eq!(errors.len(), 1);
                assert_eq!(errors[0].file, path.display().to_string());
                assert_eq!(errors[0].line, None);
            }
            other => panic!("{other:?}"),
        }
        assert!(Arc::ptr_eq(&before, &store.current()));
    }

    #[test]
    fn open_refuses_a_missing_directory() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let errors = PolicyStore::open(&missing, Vec::new()).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0]
                .message
                .starts_with("cannot read the policy directory"),
            "{errors:?}"
        );
    }

    #[test]
    fn a_partner_holding_the_audit_key_is_refused_at_open_and_at_reload() {
        use photondb_proto::signing::SecretKey;
        let audit = SecretKey::from_seed(&[7; 32]).public_key();
        let other = SecretKey::from_seed(&[8; 32]).public_key();
        let partner = |key: &PublicKey| {
            format!(
                "[[partner]]\nid = \"acme\"\nplan = \"free\"\n\n[[partner.key]]\nversion = 1\n\
                 public_key = \"{}\"\n",
                key.to_base64()
            )
        };
        let dir = good_dir();
        write(dir.path(), "partners.toml", &partner(&audit));
        let errors = PolicyStore::open(dir.path(), vec![audit]).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0]
                .to_string()
                .contains("partner \"acme\" key version 1 is the audit log's"),
            "{}",
            errors[0]
        );
        assert!(
            PolicyStore::open(dir.path(), Vec::new()).is_ok(),
            "only the reserved key"
        );

        write(dir.path(), "partners.toml", &partner(&other));
        let store = PolicyStore::open(dir.path(), vec![audit]).unwrap();
        let first = store.current();
        write(dir.path(), "partners.toml", &partner(&audit));
        assert!(matches!(store.reload(), ReloadOutcome::Rejected { .. }));
        assert!(
            Arc::ptr_eq(&first, &store.current()),
            "the last good set stays"
        );
    }
}
