//! Point-in-time restore (storaged/DESIGN.md §12): a base backup plus the archive's segments
//! after it, replayed to a target, into a new directory.
//!
//! Everything is built in a staging directory beside the target (`.<name>.restoring`) and
//! renamed to the target only after the restored store passed recovery, a checkpoint and the
//! full `verify`: a refused or failed restore leaves nothing under the target's name. Every
//! file is checked against the manifest (size and SHA-256, before and after decryption), every
//! archived segment against its sidecar and its own header; the chain of segments must be
//! contiguous from the backup to the target, and a gap is a refusal naming the first missing
//! position and the latest target that can still be reached.

use crate::engine::archive::{
    INSTANCE_FILE, SIDECAR_SUFFIX, Sidecar, copy_hashed, hex, read_instance, sidecar_name,
    stored_name, sync_dir,
};
use crate::engine::backup::{MANIFEST, MANIFEST_FORMAT, Manifest};
use crate::engine::crypt::Identities;
use crate::engine::engine::Engine;
use crate::engine::error::OpenError;
use crate::engine::io::{IoBackend, StdFs};
use crate::engine::recovery::RecoveryReport;
use crate::engine::types::{EngineOptions, RecoveryMode};
use crate::engine::verify::{LogFinding, verify_offline};
use crate::engine::wal::record;
use crate::engine::wal::segment::{SEGMENT_HEADER_LEN, SegmentHeader, file_name, parse_file_name};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// How far to replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreTarget {
    /// Every record the backup and the archive hold.
    Latest,
    /// Records up to and including this LSN.
    UntilLsn(u64),
    /// Records committed at or before this time (Unix milliseconds): replay stops before the
    /// first record committed after it. A record after the backup's end without a commit time
    /// (format 1 segments, from before commit times were logged) makes it a refusal.
    UntilTime(u64),
}

#[derive(Debug)]
pub struct RestoreReport {
    pub target_lsn: u64,
    /// The commit time of the target record, if the log holds one.
    pub target_unix_ms: Option<u64>,
    pub segments_from_backup: usize,
    pub segments_from_archive: usize,
    /// The newest record the backup and archive hold (the latest reachable target).
    pub latest_lsn: u64,
    pub recovery: RecoveryReport,
    pub pages_checked: u64,
}

impl fmt::Display for RestoreReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let time = self
            .target_unix_ms
            .map(|t| format!(" (committed at Unix ms {t})"))
            .unwrap_or_default();
        writeln!(f, "restored to LSN {:#x}{time}", self.target_lsn)?;
        writeln!(
            f,
            "segments: {} from the backup, {} from the archive; latest reachable LSN {:#x}",
            self.segments_from_backup, self.segments_from_archive, self.latest_lsn
        )?;
        write!(f, "{}", self.recovery)?;
        writeln!(f, "verify: clean, {} pages checked", self.pages_checked)
    }
}

/// Why a restore was refused; nothing was left under the target's name.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("{} already exists: restore only into a new directory, never over a store", .0.display())]
    TargetExists(PathBuf),
    #[error("{} has no {MANIFEST}: the backup is incomplete (it never finished) or not a backup", .0.display())]
    Incomplete(PathBuf),
    #[error("the manifest is unusable: {0}")]
    Manifest(String),
    #[error("backup file {file} does not match the manifest: {reason}")]
    FileMismatch { file: String, reason: String },
    #[error("the backup or archive is encrypted: pass --identity with the age identity file")]
    NeedIdentity,
    #[error(
        "the archive belongs to another store: its instance is {archive}, the backup's {backup}"
    )]
    ForeignArchive { archive: String, backup: String },
    #[error(
        "the archive has a gap: {reason}; the first missing LSN is {first_missing_lsn:#x}, and \
         the latest target still reachable is LSN {latest_reachable_lsn:#x}"
    )]
    Gap {
        first_missing_lsn: u64,
        latest_reachable_lsn: u64,
        reason: String,
    },
    #[error(
        "target LSN {target:#x} is past the end of the backup and archive: the latest \
         reachable target is LSN {latest_reachable_lsn:#x}"
    )]
    BeyondEnd {
        target: u64,
        latest_reachable_lsn: u64,
    },
    #[error(
        "the target {target} is before this backup is consistent (LSN {earliest_lsn:#x}); use \
         an older backup"
    )]
    BeforeBackup { target: String, earliest_lsn: u64 },
    #[error(
        "the target time {target_ms} (Unix ms) is at or after the last commit the backup and \
         archive hold ({last_ms}, LSN {latest_reachable_lsn:#x}): the archive may not have the rest yet; \
         to restore everything it holds, use --latest"
    )]
    TimeBeyondEnd {
        target_ms: u64,
        last_ms: u64,
        latest_reachable_lsn: u64,
    },
    #[error(
        "the record at LSN {lsn:#x} has no commit time (it was written before commit times were \
         logged, segment format 1): restore to it by --until-lsn instead"
    )]
    Untimed { lsn: u64 },
    #[error("recovery of the restored store failed: {0}")]
    Recovery(#[from] OpenError),
    #[error("the restored store did not verify clean:\n{0}")]
    Verify(String),
    #[error("restore failed: {0}")]
    Io(#[from] io::Error),
}

/// Restores `backup` (plus `archive`'s segments) into the new directory `to`.
pub fn restore(
    backup: &Path,
    archive: Option<&Path>,
    to: &Path,
    target: RestoreTarget,
    identities: Option<&Identities>,
) -> Result<RestoreReport, RestoreError> {
    if to.exists() {
        return Err(RestoreError::TargetExists(to.to_path_buf()));
    }
    let staging = staging_dir(to)?;
    if staging.exists() {
        // A staging directory of an earlier restore that was interrupted: ours by its name.
        std::fs::remove_dir_all(&staging)?;
    }
    let result = restore_into(backup, archive, &staging, target, identities);
    match result {
        Ok(report) => {
            std::fs::rename(&staging, to)?;
            sync_dir(to.parent().unwrap_or(Path::new(".")))?;
            Ok(report)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            Err(e)
        }
    }
}

fn staging_dir(to: &Path) -> Result<PathBuf, RestoreError> {
    let name = to
        .file_name()
        .ok_or_else(|| RestoreError::Manifest(format!("{} names no directory", to.display())))?;
    let parent = match to.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent)?;
    Ok(parent.join(format!(".{}.restoring", name.to_string_lossy())))
}

fn restore_into(
    backup: &Path,
    archive: Option<&Path>,
    staging: &Path,
    target: RestoreTarget,
    identities: Option<&Identities>,
) -> Result<RestoreReport, RestoreError> {
    let manifest = read_manifest(backup)?;
    std::fs::create_dir_all(staging.join("wal"))?;
    let mut backup_segments = Vec::new();
    for file in &manifest.files {
        let stored = match manifest.encrypted {
            true => format!("{}{}", file.path, crate::engine::archive::AGE_SUFFIX),
            false => file.path.clone(),
        };
        let relative = Path::new(&file.path);
        let safe = relative
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
        if !safe {
            return Err(RestoreError::Manifest(format!(
                "{:?} is not a path inside the backup",
                file.path
            )));
        }
        let mismatch = |reason: String| RestoreError::FileMismatch {
            file: file.path.clone(),
            reason,
        };
        let encrypted = manifest.encrypted && file.path != "control";
        let stored = if encrypted { stored } else { file.path.clone() };
        let stored_as = Expected {
            stored_sha256: &file.stored_sha256,
            differs: "its SHA-256 as stored differs from the manifest's",
        };
        let (plain, size) = unpack(
            &backup.join(&stored),
            &staging.join(relative),
            encrypted,
            identities,
            stored_as,
        )
        .map_err(|e| match e {
            Unpack::NeedIdentity => RestoreError::NeedIdentity,
            Unpack::Absent(reason) | Unpack::Failed(reason) => mismatch(reason),
        })?;
        if plain != file.sha256 || size != file.size {
            return Err(mismatch(format!(
                "its content (size {size}) differs from the manifest's (size {})",
                file.size
            )));
        }
        if let Some(start) = file.path.strip_prefix("wal/").and_then(parse_file_name) {
            backup_segments.push(start);
        }
    }
    backup_segments.sort_unstable();
    let size = manifest.segment_size;
    let instance = crate::engine::archive::parse_instance(&manifest.instance_id)
        .map_err(RestoreError::Manifest)?;
    let Some(&last_backup) = backup_segments.last() else {
        return Err(RestoreError::Manifest("it lists no WAL segment".into()));
    };
    if backup_segments.windows(2).any(|w| w[1] != w[0] + size) {
        return Err(RestoreError::Manifest(
            "its WAL segments are not contiguous".into(),
        ));
    }
    // An LSN target needs the archive only up to the segment holding it.
    let stop_at = match target {
        // The next one too: a target in the zero tail of its segment is reached only when
        // the records after it are known to start in the next.
        RestoreTarget::UntilLsn(lsn) => Some((lsn / size + 1) * size),
        _ => None,
    };
    let chain = match archive {
        Some(dir) => {
            let from = ArchiveFrom {
                dir,
                instance,
                first: last_backup,
                stop_at,
            };
            extend_from_archive(&from, staging, &manifest, identities)?
        }
        None => Chain {
            last: last_backup,
            from_archive: 0,
            gap: None,
        },
    };
    let records = chain_records(staging, &backup_segments, chain.last, size)?;
    let (target_lsn, target_unix_ms) = choose_target(target, &manifest, &records, &chain)?;
    let opts = EngineOptions {
        recovery: RecoveryMode::PointInTime {
            until_lsn: target_lsn,
        },
        create_if_missing: false,
        ..EngineOptions::default()
    };
    let (engine, recovery) = Engine::open(staging, opts)?;
    engine
        .checkpoint()
        .map_err(|e| RestoreError::Io(io::Error::other(e)))?;
    drop(engine);
    // What the cut moved aside is the log after the target, which the archive still holds:
    // the restored store does not keep a copy of it.
    let quarantine = staging.join("quarantine");
    if quarantine.exists() {
        std::fs::remove_dir_all(&quarantine)?;
    }
    let verified = verify_offline(staging)?;
    let clean = matches!(verified.log, LogFinding::Clean { .. })
        && verified.pages.is_clean()
        && verified.control_warning.is_none();
    if !clean {
        return Err(RestoreError::Verify(verified.to_string()));
    }
    sync_dir(&staging.join("wal"))?;
    sync_dir(staging)?;
    Ok(RestoreReport {
        target_lsn,
        target_unix_ms: target_unix_ms.filter(|&t| t > 0),
        segments_from_backup: backup_segments.len(),
        segments_from_archive: chain.from_archive,
        latest_lsn: records.last().map_or(manifest.end_lsn, |r| r.0),
        recovery,
        pages_checked: verified.pages.pages_checked,
    })
}

/// The LSN to replay to (and its commit time) for `target`, given the records the backup and
/// archive hold as (LSN, commit time; 0 for untimed records) in log order.
fn choose_target(
    target: RestoreTarget,
    manifest: &Manifest,
    records: &[(u64, u64)],
    chain: &Chain,
) -> Result<(u64, Option<u64>), RestoreError> {
    let latest = records.last().map_or(manifest.end_lsn, |r| r.0);
    let gap = |g: &(u64, String)| RestoreError::Gap {
        first_missing_lsn: g.0,
        latest_reachable_lsn: latest,
        reason: g.1.clone(),
    };
    let earliest = manifest.end_lsn;
    let time_of = |lsn: u64| records.iter().rev().find(|r| r.0 <= lsn).map(|r| r.1);
    match target {
        RestoreTarget::Latest => match &chain.gap {
            Some(g) => Err(gap(g)),
            None => Ok((latest, time_of(latest))),
        },
        RestoreTarget::UntilLsn(lsn) if lsn < earliest => Err(RestoreError::BeforeBackup {
            target: format!("LSN {lsn:#x}"),
            earliest_lsn: earliest,
        }),
        RestoreTarget::UntilLsn(lsn) if lsn > latest => Err(match &chain.gap {
            Some(g) => gap(g),
            None => RestoreError::BeyondEnd {
                target: lsn,
                latest_reachable_lsn: latest,
            },
        }),
        RestoreTarget::UntilLsn(lsn) => Ok((lsn, time_of(lsn))),
        RestoreTarget::UntilTime(ms) if ms < manifest.end_unix_ms => {
            Err(RestoreError::BeforeBackup {
                target: format!(
                    "time {ms} (Unix ms; the backup is consistent from {})",
                    manifest.end_unix_ms
                ),
                earliest_lsn: earliest,
            })
        }
        RestoreTarget::UntilTime(ms) => {
            let mut at = (earliest, None);
            for &(lsn, time) in records.iter().filter(|r| r.0 > earliest) {
                if time == 0 {
                    return Err(RestoreError::Untimed { lsn });
                }
                if time > ms {
                    return Ok(at);
                }
                at = (lsn, Some(time));
            }
            match &chain.gap {
                Some(g) => Err(gap(g)),
                None => Err(RestoreError::TimeBeyondEnd {
                    target_ms: ms,
                    last_ms: at.1.unwrap_or(manifest.end_unix_ms),
                    latest_reachable_lsn: latest,
                }),
            }
        }
    }
}

fn read_manifest(backup: &Path) -> Result<Manifest, RestoreError> {
    let path = backup.join(MANIFEST);
    let text = match std::fs::read(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(RestoreError::Incomplete(backup.to_path_buf()));
        }
        Err(e) => return Err(e.into()),
    };
    let manifest: Manifest =
        serde_json::from_slice(&text).map_err(|e| RestoreError::Manifest(e.to_string()))?;
    if manifest.format != MANIFEST_FORMAT {
        return Err(RestoreError::Manifest(format!(
            "format {} is not one this version reads ({MANIFEST_FORMAT})",
            manifest.format
        )));
    }
    Ok(manifest)
}

enum Unpack {
    NeedIdentity,
    /// The archive has no sidecar for the segment: never archived (or cut short).
    Absent(String),
    Failed(String),
}

impl Unpack {
    /// Whether the segment is simply absent from the archive, and why it was not taken.
    fn reason(self) -> (bool, String) {
        match self {
            Unpack::Absent(reason) => (true, reason),
            Unpack::Failed(reason) => (false, reason),
            Unpack::NeedIdentity => (false, "it is encrypted and no identity was given".into()),
        }
    }
}

/// The digest a stored file must have, and how to say it does not.
struct Expected<'a> {
    stored_sha256: &'a str,
    differs: &'a str,
}

/// Checks `from` against the digest it was stored with, then copies it to `to`, decrypting if
/// `encrypted`; returns the SHA-256 and size of the content. A decryption failure (wrong key,
/// tampered ciphertext) is Failed.
fn unpack(
    from: &Path,
    to: &Path,
    encrypted: bool,
    identities: Option<&Identities>,
    expected: Expected<'_>,
) -> Result<(String, u64), Unpack> {
    let failed =
        |what: &str, e: io::Error| Unpack::Failed(format!("{what} {}: {e}", from.display()));
    let (stored_sha, _) =
        crate::engine::archive::sha256_file(from).map_err(|e| failed("cannot read", e))?;
    if stored_sha != expected.stored_sha256 {
        return Err(Unpack::Failed(expected.differs.to_string()));
    }
    let input = std::fs::File::open(from).map_err(|e| failed("cannot read", e))?;
    let mut out = std::fs::File::create(to).map_err(|e| failed("cannot write a copy of", e))?;
    let (plain, _, size) = if encrypted {
        let identities = identities.ok_or(Unpack::NeedIdentity)?;
        let mut reader = identities
            .decrypt(io::BufReader::new(input))
            .map_err(|e| failed("cannot decrypt", e))?;
        copy_hashed(&mut reader, &mut out, None).map_err(|e| failed("cannot decrypt", e))?
    } else {
        let mut input = input;
        copy_hashed(&mut input, &mut out, None).map_err(|e| failed("cannot copy", e))?
    };
    out.sync_all()
        .map_err(|e| failed("cannot write a copy of", e))?;
    Ok((plain, size))
}

/// The WAL the restore can replay: up to segment `last`, `from_archive` of them from the
/// archive, and the first gap (position, reason) if the archive has segments past one.
struct Chain {
    last: u64,
    from_archive: usize,
    gap: Option<(u64, String)>,
}

/// Where restore takes archived segments from.
struct ArchiveFrom<'a> {
    dir: &'a Path,
    instance: [u8; 16],
    /// The backup's last segment, which the archive holds whole.
    first: u64,
    /// The last segment needed (an LSN target's), if not all.
    stop_at: Option<u64>,
}

/// Copies the archive's segments from `from.first` on, as long as they are contiguous and
/// intact (and needed).
fn extend_from_archive(
    from: &ArchiveFrom<'_>,
    staging: &Path,
    manifest: &Manifest,
    identities: Option<&Identities>,
) -> Result<Chain, RestoreError> {
    let (dir, first) = (from.dir, from.first);
    let names: Vec<String> = match StdFs.list_dir(dir) {
        Ok(names) => names,
        Err(e) => {
            return Err(RestoreError::Io(io::Error::new(
                e.kind(),
                format!("cannot read the archive {}: {e}", dir.display()),
            )));
        }
    };
    let segment_of_name = |n: &String| {
        let base = n.strip_suffix(SIDECAR_SUFFIX).unwrap_or(n);
        let base = base
            .strip_suffix(crate::engine::archive::AGE_SUFFIX)
            .unwrap_or(base);
        parse_file_name(base)
    };
    let newest = names.iter().filter_map(segment_of_name).max();
    match read_instance(dir).map_err(RestoreError::Manifest)? {
        Some(found) if found != from.instance => {
            return Err(RestoreError::ForeignArchive {
                archive: hex(&found),
                backup: hex(&from.instance),
            });
        }
        Some(_) => {}
        None if newest.is_none() => {}
        None => {
            return Err(RestoreError::Manifest(format!(
                "{} holds segments but no {INSTANCE_FILE} file: not a PhotonDB archive",
                dir.display()
            )));
        }
    }
    let mut chain = Chain {
        last: first,
        from_archive: 0,
        gap: None,
    };
    let Some(newest) = newest.filter(|&n| n >= first) else {
        return Ok(chain);
    };
    let last = from.stop_at.map_or(newest, |s| s.min(newest));
    let mut start = first;
    while start <= last {
        // The backup's own copy of its last segment must be what the archive holds below the
        // backup's end, or the archive is another history of this store.
        let prefix = (start == first).then(|| manifest.end_position - first);
        match take_segment(
            from,
            staging,
            start,
            manifest.segment_size,
            prefix,
            identities,
        ) {
            Ok(()) => {
                chain.last = start;
                chain.from_archive += 1;
            }
            Err(Unpack::NeedIdentity) => return Err(RestoreError::NeedIdentity),
            Err(failed) => {
                let (missing, reason) = failed.reason();
                let at = if start == first {
                    manifest.end_position
                } else {
                    start + SEGMENT_HEADER_LEN as u64
                };
                // The backup's copy of its last segment stands in for a missing archived one;
                // an archived copy that fails its checks is damage (or another history).
                if start != first || newest > first || !missing {
                    let name = file_name(start);
                    chain.gap = Some((at, format!("archived segment {name}: {reason}")));
                }
                return Ok(chain);
            }
        }
        start += manifest.segment_size;
    }
    Ok(chain)
}

/// Checks one archived segment against its sidecar and its header (and, for the backup's last
/// segment, that its first `prefix` bytes are the backup's), then puts it in the staging WAL
/// directory; on a failure, the staged file is left as it was.
fn take_segment(
    from: &ArchiveFrom<'_>,
    staging: &Path,
    start: u64,
    size: u64,
    prefix: Option<u64>,
    identities: Option<&Identities>,
) -> Result<(), Unpack> {
    let sidecar_path = from.dir.join(sidecar_name(start));
    let text = match std::fs::read_to_string(&sidecar_path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(Unpack::Absent(
                "missing (no sidecar: never archived, or its copy was cut short)".into(),
            ));
        }
        Err(e) => return Err(Unpack::Failed(format!("its sidecar is unreadable: {e}"))),
    };
    let sidecar = Sidecar::parse(&text)
        .map_err(|e| Unpack::Failed(format!("its sidecar is damaged: {e}")))?;
    if sidecar.instance_id != from.instance
        || sidecar.start_lsn != start
        || sidecar.segment_size != size
    {
        return Err(Unpack::Failed(
            "its sidecar names another store, position or size".into(),
        ));
    }
    let stored = from.dir.join(stored_name(start, sidecar.encrypted));
    if !stored.exists() {
        return Err(Unpack::Failed(
            "missing (its sidecar is there, the segment is not)".into(),
        ));
    }
    let to = staging.join("wal").join(file_name(start));
    let incoming = staging
        .join("wal")
        .join(format!("{}.incoming", file_name(start)));
    let checked = check_segment(
        &stored,
        &incoming,
        &sidecar,
        from.instance,
        prefix.map(|p| (&*to, p)),
        identities,
    );
    match checked {
        Ok(()) => std::fs::rename(&incoming, &to).map_err(|e| Unpack::Failed(e.to_string())),
        Err(e) => {
            let _ = std::fs::remove_file(&incoming);
            Err(e)
        }
    }
}

/// Unpacks `stored` into `incoming` and checks it: digests, length, header, and the first
/// bytes of `same_as` if given.
fn check_segment(
    stored: &Path,
    incoming: &Path,
    sidecar: &Sidecar,
    instance: [u8; 16],
    same_as: Option<(&Path, u64)>,
    identities: Option<&Identities>,
) -> Result<(), Unpack> {
    let stored_as = Expected {
        stored_sha256: &sidecar.stored_sha256,
        differs: "damaged (its SHA-256 differs from its sidecar's)",
    };
    let (plain, len) = unpack(stored, incoming, sidecar.encrypted, identities, stored_as)?;
    if plain != sidecar.sha256 || len != sidecar.segment_size {
        return Err(Unpack::Failed(format!(
            "damaged or truncated ({len} bytes, content differs from its sidecar's)"
        )));
    }
    let bytes = std::fs::read(incoming).map_err(|e| Unpack::Failed(e.to_string()))?;
    let header = SegmentHeader::decode(&bytes).map_err(Unpack::Failed)?;
    if header.instance_id != instance || header.start_lsn != sidecar.start_lsn {
        return Err(Unpack::Failed(
            "its header names another store or position".into(),
        ));
    }
    if let Some((backup_copy, prefix)) = same_as {
        let ours = std::fs::read(backup_copy).map_err(|e| Unpack::Failed(e.to_string()))?;
        let n = prefix as usize;
        if ours.get(..n) != bytes.get(..n) {
            return Err(Unpack::Failed(
                "it differs from the backup's copy below the backup's end: the archive holds \
                 another history of this store"
                    .into(),
            ));
        }
    }
    Ok(())
}

/// (LSN, commit time; 0 if the record has none) of every record in the staged segments up to
/// `last`, in log order.
fn chain_records(
    staging: &Path,
    backup_segments: &[u64],
    last: u64,
    size: u64,
) -> Result<Vec<(u64, u64)>, RestoreError> {
    let mut out = Vec::new();
    let mut start = backup_segments[0];
    while start <= last {
        let bytes = std::fs::read(staging.join("wal").join(file_name(start)))?;
        let records = record::records_of(&bytes, start);
        out.extend(records.iter().map(|h| (h.lsn, h.commit_unix_ms)));
        start += size;
    }
    Ok(out)
}
