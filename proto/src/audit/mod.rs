//! The audit log (DESIGN §8), the one writer both daemons use and its checker.
//!
//! Every line is a JSON object carrying `seq` (its place in the whole chain, from 1) and
//! `prev` (the SHA-256 of the line before it), so editing, removing, inserting or reordering a
//! line breaks the chain at that point. Every [`AuditOptions::anchor_lines`] lines or
//! [`AuditOptions::anchor_interval_secs`] seconds, at open, at rotation and at a clean close,
//! the writer appends an **anchor**: a line signed with the audit key (used for nothing else)
//! over its `seq` and `prev`, so a rewritten chain cannot be re-signed. The last anchor is
//! also kept outside the log ([`AuditOptions::anchor_copy`]): a log cut short before it is
//! caught. The log rotates by size and age; a new file's first line links to the last line of
//! the file before. [`verify`] checks all of it; [`flood`] keeps floods of identical refusals
//! from filling the disk.

pub mod flood;
mod settings;
mod verify;

pub use settings::AuditSettings;

pub use verify::{Broken, Place, Report, VerifyOptions, default_anchor_copy, verify, verify_files};

use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::{Map, Value};

use crate::signing::{SecretKey, Timestamp};

/// How an [`AuditLog`] anchors and rotates.
pub struct AuditOptions {
    /// Signs the anchors; `None`: no anchors (a truncated tail cannot be detected).
    pub signer: Option<SecretKey>,
    /// An anchor after this many lines without one.
    pub anchor_lines: u64,
    /// An anchor when lines have waited this long without one (checked by [`AuditLog::tick`],
    /// which the daemons call every second).
    pub anchor_interval_secs: i64,
    /// Where the last anchor is copied (atomically) after each one; `None`: `<log>.anchor`.
    pub anchor_copy: Option<PathBuf>,
    /// Rotate once the file reaches this size; 0: never by size.
    pub rotate_bytes: u64,
    /// Rotate once the file's first line is this old; 0: never by age.
    pub rotate_secs: i64,
}

impl Default for AuditOptions {
    fn default() -> Self {
        Self {
            signer: None,
            anchor_lines: 1000,
            anchor_interval_secs: 60,
            anchor_copy: None,
            rotate_bytes: 64 << 20,
            rotate_secs: 86_400,
        }
    }
}

impl std::fmt::Debug for AuditOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditOptions")
            .field("signed", &self.signer.is_some())
            .field("anchor_lines", &self.anchor_lines)
            .field("anchor_interval_secs", &self.anchor_interval_secs)
            .field("anchor_copy", &self.anchor_copy)
            .field("rotate_bytes", &self.rotate_bytes)
            .field("rotate_secs", &self.rotate_secs)
            .finish()
    }
}

/// The `kind` of anchor lines.
pub const ANCHOR: &str = "anchor";

/// An append-only, hash-chained, anchored event log; one writer per file (an exclusive lock),
/// so the chain never forks.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    source: &'static str,
    options: AuditOptions,
    anchor_copy: PathBuf,
    state: Mutex<ChainState>,
}

#[derive(Debug)]
struct ChainState {
    file: std::fs::File,
    /// Hash of the last line written (GENESIS before the first).
    prev: String,
    /// `seq` of the last line written (0 before the first).
    seq: u64,
    /// `seq` of the current file's first line (names the file when it is rotated away).
    file_first_seq: u64,
    /// When the current file's first line was written (Unix seconds).
    file_started: i64,
    file_bytes: u64,
    /// Lines since the last anchor, and when the first of them was written.
    unanchored: u64,
    unanchored_since: i64,
    /// Lines lost since writing began to fail (logged once when it starts, once when it ends).
    lost: Option<u64>,
}

impl AuditLog {
    /// Opens (or creates) the log and continues its chain; `source` names the daemon on every
    /// line. Refused (`WouldBlock`) while another process writes it. A torn last line (a crash
    /// in the middle of a write: no newline at the end) is cut off and the cut is recorded.
    /// With a signer, an anchor is written at once: what was on disk at open is signed for.
    pub fn open(
        path: &Path,
        source: &'static str,
        options: AuditOptions,
        at: Timestamp,
    ) -> std::io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let (file, tail) = open_locked(path)?;
        let anchor_copy = options
            .anchor_copy
            .clone()
            .unwrap_or_else(|| sibling(path, "anchor"));
        // An empty live file (a stop or crash right after a rotation) continues the chain of
        // the newest rotated file, never a new one that would reuse its names.
        let last = match &tail.last {
            Some(line) => Some(line.clone()),
            None => last_rotated_line(path)?,
        };
        let (prev, seq) = match &last {
            None => (GENESIS.to_owned(), 0),
            Some(line) => (
                bytes_hash(line),
                seq_of(line).map_or_else(|| count_lines(path), Ok)?,
            ),
        };
        let file_bytes = file.metadata()?.len();
        // A file's age, which rotation by time counts, starts at its first line's stamp.
        let (file_first_seq, file_started) = match tail.last {
            Some(_) => {
                let first = first_line(path)?;
                let ts = first_field(&first, "ts")
                    .and_then(|v| v.as_str().and_then(|t| Timestamp::parse(t).ok()));
                (
                    first_field(&first, "seq")
                        .and_then(|v| v.as_u64())
                        .unwrap_or(1),
                    ts.map_or(at.unix(), Timestamp::unix),
                )
            }
            None => (seq + 1, at.unix()),
        };
        let log = Self {
            path: path.to_owned(),
            source,
            options,
            anchor_copy,
            state: Mutex::new(ChainState {
                file,
                prev,
                seq,
                file_first_seq,
                file_started,
                file_bytes,
                unanchored: 0,
                unanchored_since: at.unix(),
                lost: None,
            }),
        };
        if tail.cut > 0 {
            log.record(at, "torn_line_removed", [("bytes", Value::from(tail.cut))]);
        }
        if seq > 0 || tail.cut > 0 {
            log.anchor_now(at, "open");
        }
        Ok(log)
    }

    /// Appends one event stamped `at`, rotating and anchoring first when they are due.
    /// Failing to audit is logged, never fatal to the caller.
    pub fn record<'a>(
        &self,
        at: Timestamp,
        kind: &str,
        fields: impl IntoIterator<Item = (&'a str, Value)>,
    ) {
        let mut event = Map::new();
        event.insert("ts".into(), at.format().into());
        event.insert("source".into(), self.source.into());
        event.insert("kind".into(), kind.into());
        for (name, value) in fields {
            event.insert(name.into(), value);
        }
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        self.rotate_if_due(&mut state, at);
        if state.unanchored == 0 {
            state.unanchored_since = at.unix();
        }
        if self.append(&mut state, event).is_some() {
            state.unanchored += 1;
        }
        if state.unanchored >= self.options.anchor_lines {
            self.write_anchor(&mut state, at, "lines");
        }
    }

    /// Writes the anchor or rotation that time alone has made due (the daemons call it every
    /// second or so, so a quiet log is anchored within the interval of its last line).
    pub fn tick(&self, at: Timestamp) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        self.rotate_if_due(&mut state, at);
        let waited = at.unix().saturating_sub(state.unanchored_since);
        if state.unanchored > 0 && waited >= self.options.anchor_interval_secs {
            self.write_anchor(&mut state, at, "interval");
        }
    }

    /// A clean stop: an anchor for whatever is not signed for yet.
    pub fn close(&self, at: Timestamp) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        if state.unanchored > 0 {
            self.write_anchor(&mut state, at, "close");
        }
    }

    /// The public key anchors are signed with, if any.
    pub fn anchor_key(&self) -> Option<crate::signing::PublicKey> {
        self.options.signer.as_ref().map(SecretKey::public_key)
    }

    fn anchor_now(&self, at: Timestamp, reason: &str) {
        if let Ok(mut state) = self.state.lock() {
            self.write_anchor(&mut state, at, reason);
        }
    }

    /// Appends one line (adding `seq` and `prev`) and returns it; `None` if it could not be
    /// written.
    fn append(&self, state: &mut ChainState, event: Map<String, Value>) -> Option<String> {
        let seq = state.seq + 1;
        let (line, hash) = chain_line(event, seq, &state.prev);
        // One write call per line (O_APPEND): lines never interleave, a crash tears only the
        // last, which the next open cuts off.
        match state.file.write_all(format!("{line}\n").as_bytes()) {
            Ok(()) => {
                state.prev = hash;
                state.seq = seq;
                state.file_bytes += line.len() as u64 + 1;
                if let Some(lost) = state.lost.take() {
                    tracing::warn!(lost, path = %self.path.display(), "audit log writes resumed");
                }
                Some(line)
            }
            Err(err) => {
                match &mut state.lost {
                    Some(lost) => *lost += 1,
                    None => {
                        tracing::error!(path = %self.path.display(), error = %err, "audit log write failed; events are lost until it succeeds again");
                        state.lost = Some(1);
                    }
                }
                None
            }
        }
    }

    /// Appends a signed anchor (if there is a signer), makes the file durable up to it, and
    /// replaces the copy kept outside the log.
    fn write_anchor(&self, state: &mut ChainState, at: Timestamp, reason: &str) {
        let Some(signer) = &self.options.signer else {
            state.unanchored = 0;
            return;
        };
        let seq = state.seq + 1;
        let ts = at.format();
        let sig = signer.sign(&anchor_message(self.source, &ts, seq, &state.prev));
        let mut event = Map::new();
        event.insert("ts".into(), ts.into());
        event.insert("source".into(), self.source.into());
        event.insert("kind".into(), ANCHOR.into());
        event.insert("reason".into(), reason.into());
        event.insert("key".into(), signer.public_key().to_base64().into());
        event.insert("sig".into(), sig.to_base64().into());
        let Some(line) = self.append(state, event) else {
            return;
        };
        state.unanchored = 0;
        // The copy never names a line that a crash could still take from the log.
        if let Err(err) = state.file.sync_data() {
            tracing::error!(path = %self.path.display(), error = %err, "audit log fsync failed");
            return;
        }
        if let Err(err) = replace_file(&self.anchor_copy, format!("{line}\n").as_bytes()) {
            tracing::error!(path = %self.anchor_copy.display(), error = %err, "writing the audit anchor copy failed");
        }
    }

    /// Rotation: the old file ends with an anchor and is renamed `<log>.<first seq>`; the new
    /// file's first line links to that anchor.
    fn rotate_if_due(&self, state: &mut ChainState, at: Timestamp) {
        let has_lines = state.seq >= state.file_first_seq;
        let by_size =
            self.options.rotate_bytes > 0 && state.file_bytes >= self.options.rotate_bytes;
        let by_age = self.options.rotate_secs > 0
            && at.unix().saturating_sub(state.file_started) >= self.options.rotate_secs;
        if !has_lines || !(by_size || by_age) {
            return;
        }
        self.write_anchor(state, at, "rotate");
        let rotated = sibling(&self.path, &format!("{:012}", state.file_first_seq));
        let reopened = std::fs::rename(&self.path, &rotated)
            .and_then(|()| sync_parent(&self.path))
            .and_then(|()| open_locked(&self.path));
        match reopened {
            Ok((file, _)) => {
                state.file = file;
                state.file_first_seq = state.seq + 1;
                state.file_started = at.unix();
                state.file_bytes = 0;
            }
            Err(err) => tracing::error!(
                path = %self.path.display(),
                error = %err,
                "rotating the audit log failed; writing on in the old file"
            ),
        }
    }
}

/// What the signature of an anchor covers: its source, time, place in the chain and the hash
/// of the line before it (which, through the chain, covers every line before).
pub fn anchor_message(source: &str, ts: &str, seq: u64, prev: &str) -> Vec<u8> {
    format!("photondb-audit-anchor-v1\n{source}\n{ts}\n{seq}\n{prev}\n").into_bytes()
}

/// `<path>.<suffix>`.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".");
    name.push(suffix);
    PathBuf::from(name)
}

/// The log file opened for append and locked, its torn tail cut off.
fn open_locked(path: &Path) -> std::io::Result<(std::fs::File, Tail)> {
    // Readable too: the chain continues from the last line of the very file that is locked.
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(path)?;
    if let Err(std::fs::TryLockError::WouldBlock) = file.try_lock() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::WouldBlock,
            "another process is writing this audit log",
        ));
    }
    let tail = read_tail(&mut file)?;
    Ok((file, tail))
}

/// The end of a log at open.
struct Tail {
    /// The last complete line, as on disk (without its newline).
    last: Option<Vec<u8>>,
    /// Bytes of a torn last line that were cut off.
    cut: u64,
}

/// How much of the log's end is read at a time while looking for the start of its last line.
const TAIL_BLOCK: u64 = 8 * 1024;

/// The longest last line [`read_tail`] reads back (audit lines are a few hundred bytes).
const MAX_LAST_LINE: usize = 1 << 20;

/// Reads the log's end backwards a block at a time (opening a log costs its last line, not
/// its size), cuts off a torn last line, and returns the last complete one.
fn read_tail(file: &mut std::fs::File) -> std::io::Result<Tail> {
    let len = file.seek(SeekFrom::End(0))?;
    let mut start = len;
    // The file's bytes from `start` to its end.
    let mut tail = Vec::new();
    let mut cut = None;
    while start > 0 {
        let step = TAIL_BLOCK.min(start);
        start -= step;
        let mut block = vec![0; step as usize]; // at most TAIL_BLOCK
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut block)?;
        block.extend_from_slice(&tail);
        tail = block;
        if cut.is_none() {
            // A file that does not end in a newline ends in a write a crash tore.
            match tail.iter().rposition(|&b| b == b'\n') {
                Some(newline) => {
                    let torn = tail.len() - newline - 1;
                    cut = Some(torn as u64);
                    tail.truncate(newline + 1);
                }
                None if start == 0 => {
                    cut = Some(tail.len() as u64);
                    tail.clear();
                }
                None => {}
            }
        }
        if cut.is_some()
            && let Some(line) = line_at_end(&tail, start == 0)
        {
            let last = Some(line.to_vec());
            return finish_tail(file, len, cut.unwrap_or(0), last);
        }
        if tail.len() > MAX_LAST_LINE {
            // No audit line is this long: the end of the file is not the log's (a foreign
            // write). Refuse rather than read the whole file into memory.
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("the audit log's last line is longer than {MAX_LAST_LINE} bytes"),
            ));
        }
    }
    finish_tail(file, len, cut.unwrap_or(0), None)
}

fn finish_tail(
    file: &mut std::fs::File,
    len: u64,
    cut: u64,
    last: Option<Vec<u8>>,
) -> std::io::Result<Tail> {
    if cut > 0 {
        file.set_len(len - cut)?;
        file.sync_data()?;
    }
    Ok(Tail { last, cut })
}

/// The last line of `tail` (the end of a file ending in a newline; `whole`: all of it), or
/// `None` if the line may begin before `tail` does.
fn line_at_end(tail: &[u8], whole: bool) -> Option<&[u8]> {
    let body = tail.strip_suffix(b"\n")?;
    let begin = match body.iter().rposition(|&b| b == b'\n') {
        Some(newline) => newline + 1,
        None if whole => 0,
        None => return None,
    };
    let line = &body[begin..];
    // `str::lines` drops the `\r` of a `\r\n` ending.
    Some(line.strip_suffix(b"\r").unwrap_or(line))
}

/// The last line of the newest `<log>.<first seq>` file beside `log`, if there is one.
fn last_rotated_line(log: &Path) -> std::io::Result<Option<Vec<u8>>> {
    let dir = match log.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let Some(name) = log.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return Ok(None);
    };
    let rotated_seq = |entry: std::fs::DirEntry| {
        let file = entry.file_name().to_string_lossy().into_owned();
        let digits = file.strip_prefix(&name)?.strip_prefix('.')?;
        let seq = (digits.len() == 12).then(|| digits.parse::<u64>().ok())??;
        Some((seq, entry.path()))
    };
    let newest = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter_map(rotated_seq)
        .max_by_key(|(seq, _)| *seq);
    let Some((_, path)) = newest else {
        return Ok(None);
    };
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)?;
    Ok(read_tail(&mut file)?.last)
}

/// `seq` of a line, if it is a JSON object that has one.
fn seq_of(line: &[u8]) -> Option<u64> {
    let value: Value = serde_json::from_slice(line).ok()?;
    value.get("seq")?.as_u64()
}

/// The chain position of a log whose last line has no `seq`: its line count.
fn count_lines(path: &Path) -> std::io::Result<u64> {
    let text = std::fs::read(path)?;
    Ok(text.iter().filter(|&&b| b == b'\n').count() as u64)
}

/// `seq` of the file's first line.
/// The first line of `path` (at most [`MAX_LAST_LINE`] bytes of it).
fn first_line(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut first = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_LAST_LINE as u64)
        .read_to_end(&mut first)?;
    let end = first
        .iter()
        .position(|&b| b == b'\n')
        .unwrap_or(first.len());
    first.truncate(end);
    Ok(first)
}

fn first_field(line: &[u8], name: &str) -> Option<Value> {
    let mut value: Value = serde_json::from_slice(line).ok()?;
    Some(value.get_mut(name)?.take())
}

/// Replaces `path` with `bytes` atomically (a sibling temporary file, fsync, rename, fsync of
/// the directory).
fn replace_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = sibling(path, "tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    sync_parent(path)
}

fn sync_parent(path: &Path) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)?.sync_all()
}

/// `prev` of the first line of a log.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Lowercase hex SHA-256 of one line (without its newline).
pub fn line_hash(line: &str) -> String {
    bytes_hash(line.as_bytes())
}

fn bytes_hash(line: &[u8]) -> String {
    crate::signing::BodyDigest::of(line).to_hex()
}

/// Adds `seq` and `prev` to an event and renders it as one line; returns the line and its
/// hash.
pub fn chain_line(mut event: Map<String, Value>, seq: u64, prev: &str) -> (String, String) {
    event.insert("seq".into(), seq.into());
    event.insert("prev".into(), prev.into());
    let line = Value::Object(event).to_string();
    let hash = line_hash(&line);
    (line, hash)
}

#[cfg(test)]
mod tests;
