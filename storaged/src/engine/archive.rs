//! Continuous WAL archiving (storaged/DESIGN.md §12).
//!
//! A sealed segment is marked `<segment>.ready` in the WAL directory before its successor is
//! created (`Wal::switch_segment`), and only the archiver removes the mark, once the segment is
//! in the archive: copied, fsynced, described by a sidecar with its SHA-256, and (if a command
//! is configured) shipped by it. Retiring skips marked segments (`files::retire_below`), in
//! every process that opens the store: the daemon, an offline `recover`, a backup. So a segment
//! is never removed before it is archived, however long the archive is unavailable.
//!
//! In the archive directory:
//! ```text
//! INSTANCE                     "photondb-archive 1\ninstance <hex>\nclaim <hex>\n": whose
//!                              archive this is (the claim: which copy of the store, below)
//! <segment>.wal[.age]          the segment as it was sealed (encrypted to age recipients)
//! <segment>.wal.meta           its sidecar (below); written last, so its presence means whole
//! ```
//! A kill mid-copy leaves at most `<name>.tmp` files and a segment without a sidecar: restore
//! treats those as missing, and the mark, still there, ships the segment again.

use crate::engine::crypt::Recipients;
use crate::engine::engine::Engine;
use crate::engine::error::{Error, StorageError};
use crate::engine::io::{IoBackend, read_exact_at};
use crate::engine::layout;
use crate::engine::wal::segment::{SEGMENT_HEADER_LEN, SegmentHeader, file_name, parse_file_name};
use sha2::{Digest, Sha256};
use std::io::{self, Read, Write};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// The mark of a sealed segment that is not archived yet (in the WAL directory).
pub(crate) const READY_SUFFIX: &str = ".ready";
/// Names the store an archive (or a backup) belongs to.
pub(crate) const INSTANCE_FILE: &str = "INSTANCE";
pub(crate) const SIDECAR_SUFFIX: &str = ".meta";
pub(crate) const AGE_SUFFIX: &str = ".age";
const TMP_SUFFIX: &str = ".tmp";
const SIDECAR_HEADER: &str = "photondb-wal-archive 1";
const INSTANCE_HEADER: &str = "photondb-archive 1";

/// `[archive]` in storaged's configuration.
#[derive(Debug, Clone)]
pub struct ArchiveOptions {
    /// Receives every sealed segment (a local disk or a mounted bucket).
    pub dir: PathBuf,
    /// Sealed, unarchived WAL the store may hold; past it, writes are refused
    /// (`Error::ArchiveBehind`) until the archive catches up.
    pub max_unarchived_bytes: u64,
    /// Run (by `sh -c`) for each segment after it is in `dir`; `%p` is replaced by the archived
    /// file's path, `%f` by its name. The segment counts as archived only once it exits 0.
    pub command: Option<String>,
    /// A command still running after this is killed, and counts as a failure.
    pub command_timeout: Duration,
    /// Seal the active segment once it has been active this long and holds a record, so the
    /// archive lags the log by at most about this much (PostgreSQL's `archive_timeout`; a
    /// store that commits less often than this archives one segment per commit). `None`: seal
    /// only when full.
    pub switch_interval: Option<Duration>,
    /// Encrypt archived segments to these age recipients.
    pub recipients: Option<Recipients>,
}

/// Counters for metrics and `photondb-storaged inspect`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchiveStats {
    /// Sealed segments waiting for the archive.
    pub waiting_segments: u64,
    pub waiting_bytes: u64,
    pub segments_archived: u64,
    pub failures: u64,
    /// Start LSN of the newest archived segment (0: none yet in this process).
    pub last_archived_lsn: u64,
}

#[derive(Default)]
pub(crate) struct ArchiveCounters {
    pub(crate) archived: std::sync::atomic::AtomicU64,
    pub(crate) failures: std::sync::atomic::AtomicU64,
    pub(crate) last_lsn: std::sync::atomic::AtomicU64,
}

pub(crate) fn ready_name(start: u64) -> String {
    format!("{}{READY_SUFFIX}", file_name(start))
}

fn parse_ready(name: &str) -> Option<u64> {
    parse_file_name(name.strip_suffix(READY_SUFFIX)?)
}

/// Start LSNs of the marked (sealed, unarchived) segments in `wal_dir`, ascending.
pub(crate) fn waiting(io: &dyn IoBackend, wal_dir: &Path) -> Result<Vec<u64>, StorageError> {
    crate::engine::wal::files::list_starts(io, wal_dir, parse_ready)
}

/// Marks the segment at `start` for the archive, durably (before its successor exists).
pub(crate) fn mark_ready(
    io: &dyn IoBackend,
    wal_dir: &Path,
    start: u64,
) -> Result<(), StorageError> {
    let mark = io.open(&wal_dir.join(ready_name(start)), true)?;
    mark.sync_data()?;
    io.sync_dir(wal_dir)?;
    Ok(())
}

/// What the sidecar of an archived segment says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Sidecar {
    pub(crate) instance_id: [u8; 16],
    pub(crate) start_lsn: u64,
    pub(crate) segment_size: u64,
    /// SHA-256 of the segment itself.
    pub(crate) sha256: String,
    /// SHA-256 of the file as stored (the ciphertext, if encrypted).
    pub(crate) stored_sha256: String,
    pub(crate) encrypted: bool,
}

impl Sidecar {
    fn encode(&self) -> String {
        format!(
            "{SIDECAR_HEADER}\ninstance {}\nstart_lsn {:#x}\nsegment_size {}\nsha256 {}\n\
             stored_sha256 {}\nencrypted {}\n",
            hex(&self.instance_id),
            self.start_lsn,
            self.segment_size,
            self.sha256,
            self.stored_sha256,
            self.encrypted
        )
    }

    pub(crate) fn parse(text: &str) -> Result<Sidecar, String> {
        let mut lines = text.lines();
        if lines.next() != Some(SIDECAR_HEADER) {
            return Err("not a PhotonDB archive sidecar".into());
        }
        let mut field = |name: &str| {
            let line = lines.next().unwrap_or_default();
            line.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix(' '))
                .map(str::to_string)
                .ok_or_else(|| format!("the sidecar has no {name} line"))
        };
        let instance_id = parse_instance(&field("instance")?)?;
        let start = field("start_lsn")?;
        let start_lsn = start
            .strip_prefix("0x")
            .and_then(|h| u64::from_str_radix(h, 16).ok())
            .ok_or("the sidecar's start_lsn is not a number")?;
        let segment_size = field("segment_size")?
            .parse()
            .map_err(|_| "the sidecar's segment_size is not a number")?;
        let sha256 = field("sha256")?;
        let stored_sha256 = field("stored_sha256")?;
        let encrypted = match field("encrypted")?.as_str() {
            "true" => true,
            "false" => false,
            _ => return Err("the sidecar's encrypted line is neither true nor false".into()),
        };
        let is_digest = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
        if !is_digest(&sha256) || !is_digest(&stored_sha256) {
            return Err("the sidecar's digests are not SHA-256 hex".into());
        }
        Ok(Sidecar {
            instance_id,
            start_lsn,
            segment_size,
            sha256,
            stored_sha256,
            encrypted,
        })
    }
}

/// The name an archived segment is stored under.
pub(crate) fn stored_name(start: u64, encrypted: bool) -> String {
    let suffix = if encrypted { AGE_SUFFIX } else { "" };
    format!("{}{suffix}", file_name(start))
}

pub(crate) fn sidecar_name(start: u64) -> String {
    format!("{}{SIDECAR_SUFFIX}", file_name(start))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn parse_instance(text: &str) -> Result<[u8; 16], String> {
    let text = text.trim();
    let mut out = [0u8; 16];
    if text.len() != 32 || !text.is_ascii() {
        return Err(format!(
            "{text:?} is not a store instance id (32 hex digits)"
        ));
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16)
            .map_err(|_| format!("{text:?} is not a store instance id (32 hex digits)"))?;
    }
    Ok(out)
}

/// The instance id an archive directory's `INSTANCE` file names; `None` if it has none yet.
pub(crate) fn read_instance(dir: &Path) -> Result<Option<[u8; 16]>, String> {
    Ok(read_instance_file(dir)?.map(|(instance, _)| instance))
}

/// A store instance id, or a claim token.
type Id = [u8; 16];

/// `INSTANCE`'s instance id and claim token, if the file exists.
fn read_instance_file(dir: &Path) -> Result<Option<(Id, Option<Id>)>, String> {
    let path = dir.join(INSTANCE_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let mut lines = text.lines();
    let instance = match (lines.next(), lines.next()) {
        (Some(INSTANCE_HEADER), Some(line)) => line.strip_prefix("instance "),
        _ => None,
    };
    let not_ours = || format!("{} is not an archive's INSTANCE file", path.display());
    let instance = parse_instance(instance.ok_or_else(not_ours)?)?;
    let claim = match lines.next().map(|l| l.strip_prefix("claim ")) {
        Some(Some(token)) => Some(parse_instance(token)?),
        Some(None) => return Err(not_ours()),
        None => None,
    };
    Ok(Some((instance, claim)))
}

/// The store's claim on its archive (`archive-claim` in the store's directory).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Claim {
    /// Never archived.
    None,
    /// A claim begun: the token is chosen, the archive's `INSTANCE` may not be written yet.
    Pending(Id),
    /// The archive's `INSTANCE` names this token: the store has archived there.
    Claimed(Id),
}

fn store_claim(data_dir: &Path) -> Result<Claim, String> {
    let path = layout::archive_claim(data_dir);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Claim::None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    for line in text.lines() {
        if let Some(token) = line.strip_prefix("claim ") {
            return parse_instance(token).map(Claim::Claimed);
        }
        if let Some(token) = line.strip_prefix("pending ") {
            return parse_instance(token).map(Claim::Pending);
        }
    }
    Err(format!("{} holds no claim", path.display()))
}

fn write_store_claim(data_dir: &Path, state: &str, token: &Id) -> Result<(), String> {
    let text = format!("photondb-archive-claim 1\n{state} {}\n", hex(token));
    write_durably(data_dir, layout::ARCHIVE_CLAIM, |out| {
        out.write_all(text.as_bytes())
    })
    .map_err(|e| {
        format!(
            "cannot write {}: {e}",
            layout::archive_claim(data_dir).display()
        )
    })
}

/// Files that do not make a directory an archive already: temporary files of an interrupted
/// write, and a fresh filesystem's `lost+found`.
fn counts_as_content(name: &str) -> bool {
    !name.ends_with(TMP_SUFFIX) && name != "lost+found"
}

/// Checks that `dir` is this store's archive, claiming it on first use.
///
/// The claim is a random token kept both in the archive's `INSTANCE` file and in the store's
/// `archive-claim` file, in three durable steps: the store's file says `pending`, `INSTANCE`
/// is written, the store's file says `claim`. Backups never copy the store's file, so a
/// restored copy of a store, which shares its instance id, cannot archive into the original's
/// archive (its log is another history past the restore point). Once the claim is complete,
/// an archive directory without its `INSTANCE` (missing, or an empty, unmounted mount point)
/// is an error, never a new archive.
pub(crate) fn claim_instance(
    dir: &Path,
    data_dir: &Path,
    instance_id: &[u8; 16],
) -> Result<(), String> {
    let ours = store_claim(data_dir)?;
    if matches!(ours, Claim::Claimed(_)) && !dir.is_dir() {
        return Err(format!(
            "the archive directory {} does not exist (not mounted?); this store has archived \
             there before, so it is not created anew",
            dir.display()
        ));
    }
    if !matches!(ours, Claim::Claimed(_)) {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(parent).map_err(|e| format!("cannot sync {}: {e}", parent.display()))?;
        }
    }
    match (read_instance_file(dir)?, ours) {
        (Some((found, _)), _) if found != *instance_id => Err(format!(
            "{} belongs to another store (instance {}, this one is {}): refusing to mix their \
             logs",
            dir.display(),
            hex(&found),
            hex(instance_id)
        )),
        (Some((_, Some(claim))), Claim::Claimed(token)) if claim == token => Ok(()),
        (Some((_, Some(claim))), Claim::Pending(token)) if claim == token => {
            write_store_claim(data_dir, "claim", &token)
        }
        (Some(_), _) => Err(format!(
            "{} is the archive of another copy of this store (the original of a restored store, \
             or this store before `stop-archiving`): its log there is another history; archive \
             this one into a new directory",
            dir.display()
        )),
        (None, Claim::Claimed(_)) => Err(format!(
            "{} has no {INSTANCE_FILE} file though this store archived there: is the archive \
             mounted? (it is not created anew)",
            dir.display()
        )),
        (None, ours) => {
            let names = std::fs::read_dir(dir)
                .map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
            let has_content = names
                .filter_map(Result::ok)
                .any(|e| counts_as_content(&e.file_name().to_string_lossy()));
            if has_content {
                return Err(format!(
                    "{} holds files but no {INSTANCE_FILE}: not an archive of this store",
                    dir.display()
                ));
            }
            let token = match ours {
                Claim::Pending(token) => token,
                _ => {
                    let token: Id = rand::random();
                    write_store_claim(data_dir, "pending", &token)?;
                    token
                }
            };
            let text = format!(
                "{INSTANCE_HEADER}\ninstance {}\nclaim {}\n",
                hex(instance_id),
                hex(&token)
            );
            write_durably(dir, INSTANCE_FILE, |out| out.write_all(text.as_bytes()))
                .map_err(|e| format!("cannot write {}: {e}", dir.join(INSTANCE_FILE).display()))?;
            write_store_claim(data_dir, "claim", &token)
        }
    }
}

/// Writes `dir/name` through a temporary file: written, fsynced, renamed, directory fsynced;
/// the name appears only with its whole content.
pub(crate) fn write_durably(
    dir: &Path,
    name: &str,
    fill: impl FnOnce(&mut std::fs::File) -> io::Result<()>,
) -> io::Result<()> {
    let tmp = dir.join(format!("{name}{TMP_SUFFIX}"));
    let mut file = std::fs::File::create(&tmp)?;
    fill(&mut file)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, dir.join(name))?;
    sync_dir(dir)
}

/// Writes `dir/name` durably, failing if it exists (a hard link of the written temporary file,
/// so no rename can replace a file another writer put there meanwhile).
fn write_once(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!("{name}{TMP_SUFFIX}"));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    let linked = std::fs::hard_link(&tmp, dir.join(name));
    std::fs::remove_file(&tmp)?;
    match linked {
        // Bucket mounts (FUSE) often have no hard links: create the name exclusively instead;
        // a sidecar torn by a crash there fails to parse, and is reported, never trusted.
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::Unsupported | io::ErrorKind::PermissionDenied
            ) =>
        {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(dir.join(name))?;
            file.write_all(bytes)?;
            file.sync_all()?;
        }
        other => other?,
    }
    sync_dir(dir)
}

pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Copies `input` to `out`, encrypting to `recipients` if given; returns the SHA-256 of what
/// was read and of what was written, and the bytes read.
pub(crate) fn copy_hashed(
    input: &mut dyn Read,
    out: &mut dyn Write,
    recipients: Option<&Recipients>,
) -> io::Result<(String, String, u64)> {
    let mut stored = HashingWriter {
        inner: out,
        hash: Sha256::new(),
    };
    let (plain, len) = match recipients {
        Some(r) => {
            let mut enc = r.encrypt(&mut stored)?;
            let read = copy_hashing(input, &mut enc)?;
            enc.finish()?;
            read
        }
        None => copy_hashing(input, &mut stored)?,
    };
    Ok((plain, hex(&stored.hash.finalize()), len))
}

fn copy_hashing(input: &mut dyn Read, out: &mut dyn Write) -> io::Result<(String, u64)> {
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hash.update(&buf[..n]);
        out.write_all(&buf[..n])?;
        total += n as u64;
    }
    Ok((hex(&hash.finalize()), total))
}

struct HashingWriter<'a> {
    inner: &'a mut dyn Write,
    hash: Sha256,
}

impl Write for HashingWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// SHA-256 (hex) and length of a file.
pub(crate) fn sha256_file(path: &Path) -> io::Result<(String, u64)> {
    let mut file = std::fs::File::open(path)?;
    copy_hashing(&mut file, &mut io::sink())
}

/// Why a segment could not be archived; it stays marked and is retried.
#[derive(Debug, thiserror::Error)]
#[error("archiving WAL segment {segment}: {reason}")]
pub struct ArchiveError {
    pub segment: String,
    pub reason: String,
}

/// Reads a file of the store through the engine's I/O, from `at` up to `upto`.
pub(crate) struct FileReader<'a> {
    pub(crate) file: &'a dyn crate::engine::io::IoFile,
    pub(crate) at: u64,
    pub(crate) upto: u64,
}

impl Read for FileReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = buf.len().min((self.upto - self.at) as usize);
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(self.at, &mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file ended early",
            ));
        }
        self.at += n as u64;
        Ok(n)
    }
}

impl Engine {
    /// What the archiver has done and what waits (zeros when archiving is off).
    pub fn archive_stats(&self) -> ArchiveStats {
        let a = &self.archive_counters;
        let waiting = self.wal.unarchived();
        ArchiveStats {
            waiting_segments: waiting,
            waiting_bytes: waiting * self.wal.segment_size(),
            segments_archived: a.archived.load(Ordering::Relaxed),
            failures: a.failures.load(Ordering::Relaxed),
            last_archived_lsn: a.last_lsn.load(Ordering::Relaxed),
        }
    }

    /// Refuses a write while more sealed WAL than the bound waits for the archive: the
    /// archive's continuity is kept over availability (DESIGN §12 says why).
    pub(crate) fn check_archive(&self) -> Result<(), Error> {
        let Some(opts) = &self.opts.archive else {
            return Ok(());
        };
        let waiting = self.wal.unarchived() * self.wal.segment_size();
        if waiting > opts.max_unarchived_bytes {
            return Err(Error::ArchiveBehind {
                waiting_bytes: waiting,
                bound_bytes: opts.max_unarchived_bytes,
            });
        }
        Ok(())
    }

    /// Ships every sealed, marked segment to the archive, oldest first, stopping at the first
    /// failure (segments reach the archive in order); returns how many it shipped.
    pub fn archive_pending(&self) -> Result<usize, ArchiveError> {
        let Some(opts) = self.opts.archive.clone() else {
            return Ok(0);
        };
        let wal_dir = layout::wal(&self.dir);
        let fail = |segment: String, reason: String| {
            self.archive_counters
                .failures
                .fetch_add(1, Ordering::Relaxed);
            ArchiveError { segment, reason }
        };
        let marked =
            waiting(&*self.io, &wal_dir).map_err(|e| fail("(listing)".into(), e.to_string()))?;
        let active = self.wal.active_start();
        let mut shipped = 0;
        for start in marked.into_iter().filter(|&s| s < active) {
            let name = file_name(start);
            self.ship(&opts, &wal_dir, start)
                .map_err(|reason| fail(name.clone(), reason))?;
            self.io
                .remove(&wal_dir.join(ready_name(start)))
                .and_then(|()| self.io.sync_dir(&wal_dir))
                .map_err(|e| fail(name.clone(), format!("removing its mark: {e}")))?;
            self.wal.archived_one();
            let a = &self.archive_counters;
            a.archived.fetch_add(1, Ordering::Relaxed);
            a.last_lsn.fetch_max(start, Ordering::Relaxed);
            shipped += 1;
        }
        Ok(shipped)
    }

    /// Puts one sealed segment in the archive (idempotent: a copy already there with the same
    /// digest is kept), then runs the command hook on it.
    fn ship(&self, opts: &ArchiveOptions, wal_dir: &Path, start: u64) -> Result<(), String> {
        let instance_id = lock_control_instance(self);
        claim_instance(&opts.dir, &self.dir, &instance_id)?;
        let file = self
            .io
            .open_read(&wal_dir.join(file_name(start)))
            .map_err(|e| format!("cannot open it: {e}"))?;
        let mut head = [0u8; SEGMENT_HEADER_LEN];
        read_exact_at(&*file, 0, &mut head).map_err(|e| format!("cannot read it: {e}"))?;
        let header = SegmentHeader::decode(&head)?;
        if header.instance_id != instance_id || header.start_lsn != start {
            return Err("its header names another store or position".into());
        }
        let encrypted = opts.recipients.is_some();
        let stored = stored_name(start, encrypted);
        let sidecar_path = opts.dir.join(sidecar_name(start));
        let mut reader = FileReader {
            file: &*file,
            at: 0,
            upto: header.segment_size,
        };
        let (sha256, _) = copy_hashing(&mut reader, &mut io::sink())
            .map_err(|e| format!("cannot read it: {e}"))?;
        let existing = match std::fs::read_to_string(&sidecar_path) {
            Ok(text) => Some(Sidecar::parse(&text).map_err(|e| {
                format!(
                    "{} is damaged ({e}); move it away to re-archive",
                    sidecar_path.display()
                )
            })?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(format!("cannot read {}: {e}", sidecar_path.display())),
        };
        let stored = match existing {
            Some(found) if found.sha256 == sha256 => {
                // Already archived (a pass cut short before its mark was removed): the stored
                // file must still be the one its sidecar describes.
                let name = stored_name(start, found.encrypted);
                let (digest, _) = sha256_file(&opts.dir.join(&name))
                    .map_err(|e| format!("its archived copy {name} is unreadable: {e}"))?;
                if digest != found.stored_sha256 {
                    return Err(format!(
                        "its archived copy {name} no longer matches its sidecar: move both away \
                         to archive it again"
                    ));
                }
                name
            }
            Some(_) => {
                return Err(format!(
                    "the archive already holds a different segment {} (another history of this \
                     store, e.g. after a restore): refusing to overwrite it; archive this store \
                     into a new directory",
                    file_name(start)
                ));
            }
            None => {
                let mut digests = None;
                reader.at = 0;
                write_durably(&opts.dir, &stored, |out| {
                    digests = Some(copy_hashed(&mut reader, out, opts.recipients.as_ref())?);
                    Ok(())
                })
                .map_err(|e| format!("cannot write {}: {e}", opts.dir.join(&stored).display()))?;
                let (copied, stored_sha256, _) = digests.unwrap_or_default();
                if copied != sha256 {
                    return Err("it changed while it was copied".into());
                }
                let sidecar = Sidecar {
                    instance_id,
                    start_lsn: start,
                    segment_size: header.segment_size,
                    sha256,
                    stored_sha256,
                    encrypted,
                };
                // The sidecar is what makes the segment archived: it never replaces one.
                write_once(&opts.dir, &sidecar_name(start), sidecar.encode().as_bytes())
                    .map_err(|e| format!("cannot write {}: {e}", sidecar_path.display()))?;
                // Another writer may have renamed its copy over ours meanwhile.
                let (digest, _) = sha256_file(&opts.dir.join(&stored))
                    .map_err(|e| format!("cannot read back {stored}: {e}"))?;
                if digest != sidecar.stored_sha256 {
                    return Err(format!("{stored} changed after it was archived"));
                }
                stored
            }
        };
        if let Some(command) = &opts.command {
            let clock = &*self.opts.clock;
            run_hook(
                command,
                &opts.dir.join(&stored),
                &stored,
                opts.command_timeout,
                clock,
            )?;
        }
        Ok(())
    }

    /// Whether the store has been archived (it holds an `archive-claim`).
    pub fn is_archived(&self) -> Result<bool, Error> {
        Ok(self.io.exists(&layout::archive_claim(&self.dir))?)
    }

    /// Stops archiving this store: removes every archive mark (their segments are then retired
    /// as usual) and the store's claim on its archive. The operator's decision
    /// (`photondb-storaged stop-archiving`); returns how many marks it removed.
    pub fn stop_archiving(&self) -> Result<usize, Error> {
        // The claim first: a crash before the marks are gone leaves marks without a claim
        // (kept, harmless), never a claim with segments already let go.
        if self.is_archived()? {
            self.io.remove(&layout::archive_claim(&self.dir))?;
            self.io.sync_dir(&self.dir)?;
        }
        let wal_dir = layout::wal(&self.dir);
        let marked = waiting(&*self.io, &wal_dir)?;
        for start in &marked {
            self.io.remove(&wal_dir.join(ready_name(*start)))?;
        }
        self.io.sync_dir(&wal_dir)?;
        self.wal.set_unarchived(0);
        Ok(marked.len())
    }

    /// Seals the active segment now if it holds any record (it is then the archiver's to
    /// ship); true if it sealed one.
    pub fn seal_active_segment(&self) -> Result<bool, Error> {
        self.check_open()?;
        let _tree = self.tree.write().unwrap_or_else(|e| e.into_inner());
        if !self.wal.active_has_records() {
            return Ok(false);
        }
        self.wal.switch_segment()?;
        Ok(true)
    }

    /// Seals the active segment if it holds records and has been active for `interval`: the
    /// archive then lags the log by about that much at most. True if it sealed one.
    pub(crate) fn seal_if_older(&self, since: Instant, interval: Duration) -> Result<bool, Error> {
        if self.opts.clock.since(since) < interval {
            return Ok(false);
        }
        self.seal_active_segment()
    }

    /// Starts the thread that ships sealed segments (and seals the active one on
    /// `switch_interval`), if archiving is configured. It retries a failure every second,
    /// logging it when it starts, every minute while it lasts, and when it is over.
    pub fn spawn_archiver(engine: &Arc<Engine>) -> Option<std::thread::JoinHandle<()>> {
        let opts = engine.opts.archive.clone()?;
        let weak = Arc::downgrade(engine);
        let clock = engine.opts.clock.clone();
        Some(std::thread::spawn(move || {
            let mut active = (u64::MAX, clock.now());
            let mut failing_since: Option<Instant> = None;
            let mut last_logged = clock.now();
            loop {
                std::thread::sleep(Duration::from_millis(200));
                let Some(engine) = weak.upgrade() else { return };
                if engine.io.is_latched() {
                    return;
                }
                let start = engine.wal.active_start();
                if start != active.0 {
                    active = (start, clock.now());
                }
                if let Some(interval) = opts.switch_interval
                    && let Err(e) = engine.seal_if_older(active.1, interval)
                {
                    tracing::error!(error = %e, "sealing the active WAL segment for the archive failed");
                }
                match engine.archive_pending() {
                    Ok(_) => {
                        if failing_since.take().is_some() {
                            tracing::info!("WAL archiving caught up");
                        }
                    }
                    Err(e) => {
                        let stats = engine.archive_stats();
                        let first = failing_since.is_none();
                        if first || clock.since(last_logged) >= Duration::from_secs(60) {
                            last_logged = clock.now();
                            tracing::warn!(
                                error = %e,
                                waiting_segments = stats.waiting_segments,
                                waiting_bytes = stats.waiting_bytes,
                                bound_bytes = opts.max_unarchived_bytes,
                                "WAL archiving is failing: {e}; {} sealed segments ({} bytes) \
                                 are kept for it, and writes are refused once more than {} \
                                 bytes wait",
                                stats.waiting_segments,
                                stats.waiting_bytes,
                                opts.max_unarchived_bytes
                            );
                        }
                        failing_since.get_or_insert_with(|| clock.now());
                        drop(engine);
                        std::thread::sleep(Duration::from_millis(800));
                    }
                }
            }
        }))
    }
}

fn lock_control_instance(engine: &Engine) -> [u8; 16] {
    crate::engine::sync::lock(&engine.control).instance_id
}

/// Runs the archive command on one archived file, killing it after `timeout`.
fn run_hook(
    command: &str,
    path: &Path,
    name: &str,
    timeout: Duration,
    clock: &dyn crate::engine::clock::Clock,
) -> Result<(), String> {
    let line = substitute(
        command,
        &shell_quote(&path.display().to_string()),
        &shell_quote(name),
    );
    // Its own process group, so a timeout kills what the command started too.
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(&line)
        .env("PHOTONDB_ARCHIVE_PATH", path)
        .env("PHOTONDB_ARCHIVE_FILE", name)
        .stdin(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot run the archive command: {e}"))?;
    let started = clock.now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(format!("the archive command failed ({status})")),
            Ok(None) if clock.since(started) >= timeout => {
                let group = format!("-{}", child.id());
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", "--", &group])
                    .status();
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "the archive command was still running after {} ms and was killed",
                    timeout.as_millis()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("waiting for the archive command: {e}")),
        }
    }
}

/// `command` with `%p` and `%f` replaced in one pass (a `%f` inside the path stays as it is).
fn substitute(command: &str, path: &str, name: &str) -> String {
    let mut out = String::with_capacity(command.len() + path.len());
    let mut chars = command.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek()) {
            ('%', Some('p')) => {
                out.push_str(path);
                chars.next();
            }
            ('%', Some('f')) => {
                out.push_str(name);
                chars.next();
            }
            _ => out.push(c),
        }
    }
    out
}

/// `text` as one shell word.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sidecar_round_trips_and_a_damaged_one_is_refused() {
        let sidecar = Sidecar {
            instance_id: [7; 16],
            start_lsn: 0x100000,
            segment_size: 1 << 20,
            sha256: "ab".repeat(32),
            stored_sha256: "cd".repeat(32),
            encrypted: true,
        };
        let text = sidecar.encode();
        assert_eq!(Sidecar::parse(&text).unwrap(), sidecar);
        for (from, to) in [
            ("instance 07", "instance zz"),
            ("sha256 ab", "sha256 x"),
            ("encrypted true", "encrypted maybe"),
        ] {
            assert!(Sidecar::parse(&text.replacen(from, to, 1)).is_err(), "{to}");
        }
        assert!(Sidecar::parse(&text[..text.len() / 2]).is_err());
    }

    #[test]
    fn an_archive_is_claimed_by_one_copy_of_one_store() {
        let root = tempfile::tempdir().unwrap();
        let (archive, store, copy) = (
            root.path().join("a"),
            root.path().join("s"),
            root.path().join("c"),
        );
        for d in [&store, &copy] {
            std::fs::create_dir_all(d).unwrap();
        }
        claim_instance(&archive, &store, &[1; 16]).unwrap();
        claim_instance(&archive, &store, &[1; 16]).unwrap();
        let err = claim_instance(&archive, &store, &[2; 16]).unwrap_err();
        assert!(err.contains("belongs to another store"), "{err}");
        // A copy of the store (same instance id, no claim of its own) is refused.
        let err = claim_instance(&archive, &copy, &[1; 16]).unwrap_err();
        assert!(err.contains("another copy of this store"), "{err}");
        // Once claimed, a missing archive (an unmounted bucket) is not created anew, nor is an
        // empty directory (an unmounted mount point) taken for it.
        std::fs::remove_dir_all(&archive).unwrap();
        let err = claim_instance(&archive, &store, &[1; 16]).unwrap_err();
        assert!(err.contains("does not exist"), "{err}");
        assert!(!archive.exists());
        std::fs::create_dir_all(&archive).unwrap();
        let err = claim_instance(&archive, &store, &[1; 16]).unwrap_err();
        assert!(err.contains("is the archive mounted"), "{err}");
        // A claim a crash interrupted (pending, no INSTANCE yet) completes in an empty
        // directory; leftovers of an interrupted write and lost+found do not count.
        let fresh = root.path().join("fresh");
        std::fs::create_dir_all(fresh.join("lost+found")).unwrap();
        std::fs::write(fresh.join("INSTANCE.tmp"), b"torn").unwrap();
        write_store_claim(&copy, "pending", &[9; 16]).unwrap();
        claim_instance(&fresh, &copy, &[1; 16]).unwrap();
        assert_eq!(store_claim(&copy).unwrap(), Claim::Claimed([9; 16]));
        claim_instance(&fresh, &copy, &[1; 16]).unwrap();
    }

    #[test]
    fn the_hook_must_succeed_in_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg");
        std::fs::write(&path, b"x").unwrap();
        let copy = dir.path().join("copied");
        let cmd = format!("cp %p {}", copy.display());
        let clock = crate::engine::clock::SystemClock;
        run_hook(&cmd, &path, "seg", Duration::from_secs(10), &clock).unwrap();
        assert_eq!(std::fs::read(&copy).unwrap(), b"x");
        let err = run_hook("exit 3", &path, "seg", Duration::from_secs(10), &clock).unwrap_err();
        assert!(err.contains("failed"), "{err}");
        let err =
            run_hook("sleep 5", &path, "seg", Duration::from_millis(100), &clock).unwrap_err();
        assert!(err.contains("killed"), "{err}");
        // A path with spaces and quotes reaches the command as one word; what the command
        // started is killed with it on a timeout.
        let odd = dir.path().join("it's a seg");
        std::fs::write(&odd, b"y").unwrap();
        run_hook(&cmd, &odd, "seg", Duration::from_secs(10), &clock).unwrap();
        assert_eq!(std::fs::read(&copy).unwrap(), b"y");
        let marker = dir.path().join("survived");
        let late = format!("(sleep 1; touch {}) & sleep 5", marker.display());
        let err = run_hook(&late, &path, "seg", Duration::from_millis(100), &clock).unwrap_err();
        assert_eq!(
            substitute("cp %p x/%f %%", "'/a%f'", "'n'"),
            "cp '/a%f' x/'n' %%"
        );
        std::thread::sleep(Duration::from_millis(1500));
        assert!(
            !marker.exists(),
            "a process the command started outlived its timeout"
        );
        assert!(err.contains("killed"), "{err}");
    }
}
