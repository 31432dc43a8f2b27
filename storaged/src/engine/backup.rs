//! Base backups (storaged/DESIGN.md §12): the control state of a checkpoint, the data file
//! (copied after that checkpoint, while later ones may write it), and every WAL segment from
//! the checkpoint's redo point to the backup's end, then a manifest, written last.
//!
//! ```text
//! BACKUP_DIR/control            the checkpoint's control state (in both slots)
//! BACKUP_DIR/pages.db[.age]     the data file, consistent once replayed to end_lsn
//! BACKUP_DIR/wal/<seg>.wal[.age] segments from the redo point's; the last ends at end_position
//! BACKUP_DIR/manifest.json      instance, LSNs, time, every file's size and SHA-256
//! ```
//! Online, one backup runs at a time; it starts with a checkpoint, copies the data file while
//! checkpoints and commits go on (replay from the checkpoint's redo point repairs what the
//! copy caught mid-write, see `Engine::backup`), and keeps checkpoints from retiring the
//! segments it still has to copy. The last segment is copied up to the end the backup stops at and zero-filled
//! after it, so the backup's log ends cleanly where its manifest says.

use crate::engine::archive::{FileReader, copy_hashed, hex, sync_dir, write_durably};
use crate::engine::control::{self, ControlState};
use crate::engine::crypt::Recipients;
use crate::engine::engine::Engine;
use crate::engine::error::{Error, OpenError};
use crate::engine::io::{IoBackend, IoFile, StdFs};
use crate::engine::layout;
use crate::engine::sync::lock;
use crate::engine::types::EngineOptions;
use crate::engine::wal::files::list_segments;
use crate::engine::wal::segment::{file_name, segment_of};
use serde::{Deserialize, Serialize};
use std::io::{self, Read};
use std::path::Path;
use std::sync::atomic::Ordering;

/// A backup's manifest, its last file.
pub const MANIFEST: &str = "manifest.json";
pub(crate) const MANIFEST_FORMAT: u32 = 1;

/// What a backup holds; `manifest.json`, the backup's last file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: u32,
    /// The store's instance id (hex); its archive must name the same.
    pub instance_id: String,
    pub segment_size: u64,
    /// The checkpoint's redo point: replay starts here.
    pub start_lsn: u64,
    /// The last record before that checkpoint.
    pub checkpoint_last_lsn: u64,
    /// The last record the backup's own log holds: restorable without an archive, and the
    /// earliest target a restore of this backup accepts.
    pub end_lsn: u64,
    /// Where the next record would go after `end_lsn`.
    pub end_position: u64,
    /// The commit time of the record at `end_lsn` (or a time after it): the earliest time a
    /// restore of this backup can target, since the data file was copied while it changed and
    /// is consistent only once replay reaches `end_lsn`.
    pub end_unix_ms: u64,
    pub created_unix_ms: u64,
    /// Whether the files are age ciphertext (stored as `<path>.age`).
    pub encrypted: bool,
    pub files: Vec<ManifestFile>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestFile {
    /// Relative to the backup directory, `/`-separated, as restored (without `.age`).
    pub path: String,
    /// Size and SHA-256 of the file's content.
    pub size: u64,
    pub sha256: String,
    /// SHA-256 of the file as stored (equal to `sha256` unless encrypted).
    pub stored_sha256: String,
}

/// Why a backup was not taken. A backup directory without a manifest is incomplete.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("a backup of this store is already running")]
    AlreadyRunning,
    #[error("{} already exists and is not empty: a backup goes into a new directory", .0.display())]
    TargetExists(std::path::PathBuf),
    #[error("writing the backup failed: {0}")]
    Write(#[source] io::Error),
    #[error(transparent)]
    Engine(#[from] Error),
    #[error("cannot open the store: {0}")]
    Open(#[from] OpenError),
}

impl From<crate::engine::error::StorageError> for BackupError {
    fn from(e: crate::engine::error::StorageError) -> Self {
        BackupError::Engine(e.into())
    }
}

/// Takes a backup of the stopped store in `dir` (opening it, which recovers it first).
pub fn backup_offline(
    dir: &Path,
    to: &Path,
    recipients: Option<&Recipients>,
) -> Result<Manifest, BackupError> {
    let opts = EngineOptions {
        create_if_missing: false,
        ..EngineOptions::default()
    };
    let (engine, _) = Engine::open(dir, opts)?;
    engine.backup(to, recipients)
}

impl Engine {
    /// Takes a base backup into the new directory `to` while the store keeps serving.
    pub fn backup(
        &self,
        to: &Path,
        recipients: Option<&Recipients>,
    ) -> Result<Manifest, BackupError> {
        self.check_open()?;
        // A backup that panicked leaves the slot poisoned, not taken.
        let _slot = match self.backing_up.try_lock() {
            Ok(slot) => slot,
            Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return Err(BackupError::AlreadyRunning),
        };
        prepare_target(to)?;
        let taken = self.copy_backup(to, recipients);
        if taken.is_err() {
            // Not a backup, and its name is free again for the next try.
            let _ = std::fs::remove_dir_all(to);
        }
        taken
    }

    /// The backup's copy into the prepared directory `to`.
    fn copy_backup(
        &self,
        to: &Path,
        recipients: Option<&Recipients>,
    ) -> Result<Manifest, BackupError> {
        let started = self.opts.clock.now();
        let (state, _pin) = {
            let _busy = lock(&self.checkpoint_busy);
            self.checkpoint_busy_held()?;
            let state: ControlState = *lock(&self.control);
            // Until the WAL is copied, no checkpoint retires a segment from this redo point on.
            (state, RetirePin::set(self, state.redo_lsn))
        };
        // Copied while checkpoints may write it (a fuzzy copy, as PostgreSQL's base backups
        // are): every page a later checkpoint writes was changed after this redo point, so
        // its first change since is a full image in the WAL the backup holds, which replay
        // puts over whatever the copy caught. The backup is consistent from its end LSN on.
        let mut files = Vec::new();
        let data = self
            .io
            .open_read(&layout::data(&self.dir))
            .map_err(Error::from)?;
        let data_len = data.len().map_err(Error::from)?;
        files.push(copy_file(
            &*data, data_len, data_len, to, "pages.db", recipients,
        )?);
        let (end_lsn, end_position, end_ms) = self.wal.durable_point()?;
        let wal_dir = layout::wal(&self.dir);
        let first = segment_of(state.redo_lsn, state.segment_size);
        let last = segment_of(end_position, state.segment_size);
        for start in list_segments(&*self.io, &wal_dir)? {
            if start < first || start > last {
                continue;
            }
            let file = self
                .io
                .open_read(&wal_dir.join(file_name(start)))
                .map_err(Error::from)?;
            let upto = if start == last {
                end_position - start
            } else {
                state.segment_size
            };
            let name = format!("wal/{}", file_name(start));
            files.push(copy_file(
                &*file,
                upto,
                state.segment_size,
                to,
                &name,
                recipients,
            )?);
        }
        let mut control_state = state;
        control_state.durable_lsn = control_state.durable_lsn.min(end_position);
        files.push(write_control(to, &mut control_state)?);
        let manifest = Manifest {
            format: MANIFEST_FORMAT,
            instance_id: hex(&state.instance_id),
            segment_size: state.segment_size,
            start_lsn: state.redo_lsn,
            checkpoint_last_lsn: state.last_lsn,
            end_lsn,
            end_position,
            // No commit in this process: the end is the checkpoint's last record, committed
            // before the checkpoint's time.
            end_unix_ms: if end_ms > 0 {
                end_ms
            } else {
                state.checkpoint_unix_ms
            },
            created_unix_ms: self.opts.clock.unix_ms(),
            encrypted: recipients.is_some(),
            files,
        };
        let text = serde_json::to_vec_pretty(&manifest)
            .map_err(io::Error::other)
            .map_err(BackupError::Write)?;
        sync_dir(&to.join("wal")).map_err(BackupError::Write)?;
        write_durably(to, MANIFEST, |out| io::Write::write_all(out, &text))
            .map_err(BackupError::Write)?;
        tracing::info!(
            to = %to.display(),
            start_lsn = manifest.start_lsn,
            end_lsn = manifest.end_lsn,
            files = manifest.files.len(),
            millis = self.opts.clock.since(started).as_millis() as u64,
            "base backup taken"
        );
        Ok(manifest)
    }
}

/// Keeps checkpoints from retiring segments from `lsn` on until dropped.
struct RetirePin<'a>(&'a Engine);

impl<'a> RetirePin<'a> {
    fn set(engine: &'a Engine, lsn: u64) -> RetirePin<'a> {
        engine.retire_pin.store(lsn, Ordering::Release);
        RetirePin(engine)
    }
}

impl Drop for RetirePin<'_> {
    fn drop(&mut self) {
        self.0.retire_pin.store(u64::MAX, Ordering::Release);
    }
}

/// Creates `to` (or takes it if it is empty) and its `wal` directory, durably.
fn prepare_target(to: &Path) -> Result<(), BackupError> {
    let empty = match std::fs::read_dir(to) {
        Ok(mut entries) => entries.next().is_none(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => true,
        Err(e) => return Err(BackupError::Write(e)),
    };
    if !empty {
        return Err(BackupError::TargetExists(to.to_path_buf()));
    }
    std::fs::create_dir_all(to.join("wal")).map_err(BackupError::Write)?;
    if let Some(parent) = to.parent().filter(|p| !p.as_os_str().is_empty()) {
        sync_dir(parent).map_err(BackupError::Write)?;
    }
    sync_dir(to).map_err(BackupError::Write)?;
    Ok(())
}

/// Copies `upto` bytes of `file` into `to/name` (with `.age` if encrypted), zero-filled to
/// `len`; fsynced.
fn copy_file(
    file: &dyn IoFile,
    upto: u64,
    len: u64,
    to: &Path,
    name: &str,
    recipients: Option<&Recipients>,
) -> Result<ManifestFile, BackupError> {
    let stored = match recipients {
        Some(_) => format!("{name}{}", crate::engine::archive::AGE_SUFFIX),
        None => name.to_string(),
    };
    let path = to.join(&stored);
    let mut out = std::fs::File::create(&path).map_err(BackupError::Write)?;
    let mut input = FileReader { file, at: 0, upto }.chain(io::repeat(0).take(len - upto));
    let (sha256, stored_sha256, size) =
        copy_hashed(&mut input, &mut out, recipients).map_err(BackupError::Write)?;
    out.sync_all().map_err(BackupError::Write)?;
    Ok(ManifestFile {
        path: name.to_string(),
        size,
        sha256,
        stored_sha256,
    })
}

/// The control file of the backup: the checkpoint's state in both slots (one written slot
/// after a store's first would read as a damaged other one). Never encrypted: it holds no
/// document data.
fn write_control(to: &Path, state: &mut ControlState) -> Result<ManifestFile, BackupError> {
    let path = layout::control(to);
    let file = StdFs.open(&path, true).map_err(BackupError::Write)?;
    for _ in 0..2 {
        control::store(&*file, state).map_err(|e| BackupError::Write(io::Error::other(e)))?;
    }
    file.sync_data().map_err(BackupError::Write)?;
    let (sha256, size) = crate::engine::archive::sha256_file(&path).map_err(BackupError::Write)?;
    Ok(ManifestFile {
        path: "control".into(),
        size,
        stored_sha256: sha256.clone(),
        sha256,
    })
}
