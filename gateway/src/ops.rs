//! The operator's incident switches (hardening spec §13: contain, then re-enable by tier),
//! hot: a JSON file (`ops_file`, default `<state_dir>/ops.json`) that `photonctl ops` edits
//! and the gateway re-reads every second. The file is the truth, so a restarted gateway keeps
//! a switch that was on.
//!
//! - `mode`: `open`; `partners-only` (public endpoints answer 503 `public_disabled`);
//!   `closed` (everything but `/public/health` answers 503 `closed`).
//! - `read_only`: writes answer 503 `read_only` (with the older `read_only_flag` file, either
//!   one switches it on).
//! - `suspended`: principals (`partner:<id>`, `key:<name>`, `jwt:<iss>#<sub>`) whose requests
//!   answer 403 `partner_suspended` once authenticated.
//!
//! Each change the gateway sees is audited with who made it and why (`by`, `reason`).

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

/// Who may call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    #[default]
    Open,
    PartnersOnly,
    Closed,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::PartnersOnly => "partners-only",
            Self::Closed => "closed",
        }
    }

    fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::PartnersOnly,
            2 => Self::Closed,
            _ => Self::Open,
        }
    }

    fn to_u8(self) -> u8 {
        match self {
            Self::Open => 0,
            Self::PartnersOnly => 1,
            Self::Closed => 2,
        }
    }
}

/// The switches as the file holds them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Switches {
    pub mode: Mode,
    pub read_only: bool,
    pub suspended: BTreeSet<String>,
    /// Who made the last change, and why, and when (RFC 3339).
    pub by: String,
    pub reason: String,
    pub changed: String,
}

impl Switches {
    /// What differs from `before`, for the audit line and the log.
    pub fn changes_from(&self, before: &Self) -> Vec<String> {
        let mut changes = Vec::new();
        if self.mode != before.mode {
            changes.push(format!(
                "mode {} -> {}",
                before.mode.as_str(),
                self.mode.as_str()
            ));
        }
        if self.read_only != before.read_only {
            changes.push(format!(
                "read_only {} -> {}",
                before.read_only, self.read_only
            ));
        }
        for p in self.suspended.difference(&before.suspended) {
            changes.push(format!("suspended {p}"));
        }
        for p in before.suspended.difference(&self.suspended) {
            changes.push(format!("resumed {p}"));
        }
        changes
    }
}

/// The switches in force, read on every request without a lock (the suspended set only when
/// it is not empty).
#[derive(Debug)]
pub struct Ops {
    file: Option<PathBuf>,
    mode: AtomicU8,
    read_only: AtomicBool,
    any_suspended: AtomicBool,
    current: RwLock<Arc<Switches>>,
    /// The text of a file that did not parse, so it is reported once, not every second.
    rejected: RwLock<Option<String>>,
}

/// What [`Ops::reload`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Reloaded {
    Unchanged,
    /// The new switches and what changed.
    Changed(Arc<Switches>, Vec<String>),
    /// The file does not parse; the switches in force stay.
    Rejected(String),
}

impl Ops {
    /// Switches read from `file` (none: always open).
    pub fn new(file: Option<PathBuf>) -> Self {
        let ops = Self {
            file,
            mode: AtomicU8::new(0),
            read_only: AtomicBool::new(false),
            any_suspended: AtomicBool::new(false),
            current: RwLock::new(Arc::new(Switches::default())),
            rejected: RwLock::new(None),
        };
        let _ = ops.reload();
        ops
    }

    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    pub fn mode(&self) -> Mode {
        Mode::from_u8(self.mode.load(Ordering::Acquire))
    }

    pub fn read_only(&self) -> bool {
        self.read_only.load(Ordering::Acquire)
    }

    /// Whether requests of `principal` are refused.
    pub fn is_suspended(&self, principal: &str) -> bool {
        self.any_suspended.load(Ordering::Acquire) && self.snapshot().suspended.contains(principal)
    }

    pub fn snapshot(&self) -> Arc<Switches> {
        self.current
            .read()
            .map(|c| c.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Re-reads the file. A missing file is all switches off; a file that does not parse
    /// leaves the switches as they are.
    pub fn reload(&self) -> Reloaded {
        let Some(file) = &self.file else {
            return Reloaded::Unchanged;
        };
        let text = match std::fs::read_to_string(file) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return self.rejected(format!("{}: {e}", file.display()), String::new()),
        };
        let parsed = if text.trim().is_empty() {
            Ok(Switches::default())
        } else {
            serde_json::from_str::<Switches>(&text)
        };
        let new = match parsed {
            Ok(new) => new,
            Err(e) => return self.rejected(format!("{}: {e}", file.display()), text),
        };
        if let Ok(mut r) = self.rejected.write() {
            *r = None;
        }
        let before = self.snapshot();
        let changes = new.changes_from(&before);
        if changes.is_empty() {
            return Reloaded::Unchanged;
        }
        let new = Arc::new(new);
        self.mode.store(new.mode.to_u8(), Ordering::Release);
        self.read_only.store(new.read_only, Ordering::Release);
        self.any_suspended
            .store(!new.suspended.is_empty(), Ordering::Release);
        if let Ok(mut c) = self.current.write() {
            *c = new.clone();
        }
        Reloaded::Changed(new, changes)
    }

    fn rejected(&self, why: String, text: String) -> Reloaded {
        let Ok(mut r) = self.rejected.write() else {
            return Reloaded::Unchanged;
        };
        if r.as_deref() == Some(text.as_str()) {
            return Reloaded::Unchanged;
        }
        *r = Some(text);
        Reloaded::Rejected(why)
    }
}

/// Changes the switches in `file` under an exclusive lock (`<file>.lock`), so two operators'
/// edits never lose one another, and replaces the file atomically. Returns the new switches.
pub fn update(file: &Path, change: impl FnOnce(&mut Switches)) -> std::io::Result<Switches> {
    let mut lock_name = file.as_os_str().to_owned();
    lock_name.push(".lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(PathBuf::from(lock_name))?;
    lock.lock()?;
    let mut switches = match std::fs::read_to_string(file) {
        Ok(text) if !text.trim().is_empty() => serde_json::from_str(&text).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {e} (fix or remove the file)", file.display()),
            )
        })?,
        Ok(_) => Switches::default(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Switches::default(),
        Err(e) => return Err(e),
    };
    change(&mut switches);
    let mut tmp_name = file.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    let mut out = std::fs::File::create(&tmp)?;
    let text = serde_json::to_string_pretty(&switches).map_err(std::io::Error::other)?;
    out.write_all(format!("{text}\n").as_bytes())?;
    out.sync_all()?;
    std::fs::rename(&tmp, file)?;
    Ok(switches)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switches_are_read_hot_and_a_bad_file_keeps_them() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ops.json");
        let ops = Ops::new(Some(file.clone()));
        assert_eq!(ops.mode(), Mode::Open);
        update(&file, |s| {
            s.mode = Mode::PartnersOnly;
            s.suspended.insert("partner:acme".into());
            s.by = "alice".into();
        })
        .unwrap();
        let Reloaded::Changed(now, changes) = ops.reload() else {
            panic!("a change")
        };
        assert_eq!(now.by, "alice");
        assert_eq!(
            changes,
            ["mode open -> partners-only", "suspended partner:acme"]
        );
        assert!(ops.is_suspended("partner:acme"));
        assert!(!ops.is_suspended("partner:other"));
        assert_eq!(ops.reload(), Reloaded::Unchanged);

        std::fs::write(&file, "{not json").unwrap();
        assert!(matches!(ops.reload(), Reloaded::Rejected(_)));
        assert_eq!(ops.reload(), Reloaded::Unchanged, "reported once");
        assert_eq!(
            ops.mode(),
            Mode::PartnersOnly,
            "the last good switches stay"
        );
        assert!(
            update(&file, |_| {}).is_err(),
            "photonctl refuses to overwrite it"
        );

        std::fs::remove_file(&file).unwrap();
        assert!(matches!(ops.reload(), Reloaded::Changed(..)));
        assert_eq!(ops.mode(), Mode::Open);
        assert!(!ops.is_suspended("partner:acme"));
    }
}
