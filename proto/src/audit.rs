//! The audit log's hash chain (DESIGN §8): every JSON line carries, in `prev`, the SHA-256 of
//! the line before it, so removing or editing any line breaks the chain at that point.
//! [`AuditLog`] is the one writer both daemons use.

use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::Path;
use std::sync::Mutex;

use serde_json::{Map, Value};

use crate::signing::Timestamp;

/// An append-only, hash-chained event log; one writer per file (an exclusive lock), so the
/// chain never forks.
#[derive(Debug)]
pub struct AuditLog {
    source: &'static str,
    state: Mutex<ChainState>,
}

#[derive(Debug)]
struct ChainState {
    file: std::fs::File,
    prev: String,
}

impl AuditLog {
    /// Opens (or creates) the log and continues its chain; `source` names the daemon on every
    /// line. Refused (`WouldBlock`) while another process writes it.
    pub fn open(path: &Path, source: &'static str) -> std::io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
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
        let prev = last_line(&mut file)?.map_or_else(|| GENESIS.to_owned(), |l| bytes_hash(&l));
        Ok(Self {
            source,
            state: Mutex::new(ChainState { file, prev }),
        })
    }

    /// Appends one event stamped `at`. Failing to audit is logged, never fatal to the caller.
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
        let (line, hash) = chain_line(event, &state.prev);
        // One write call per line (O_APPEND): lines never interleave, a crash tears only the last.
        match state.file.write_all(format!("{line}\n").as_bytes()) {
            Ok(()) => state.prev = hash,
            Err(err) => eprintln!("audit log write failed: {err}"),
        }
    }
}

/// How much of the log's end is read at a time while looking for the start of its last line.
const TAIL_BLOCK: u64 = 8 * 1024;

/// The last line of `file` as [`str::lines`] would give it (without its `\n` or `\r\n`), read
/// backwards from the end a block at a time: opening a log costs its last line, not its size.
/// `None` for an empty file. The bytes are returned as they are, so the next line's `prev` is
/// the hash of what is on disk even if that is not UTF-8.
fn last_line(file: &mut std::fs::File) -> std::io::Result<Option<Vec<u8>>> {
    let len = file.seek(SeekFrom::End(0))?;
    let mut start = len;
    // The file's bytes from `start` to its end.
    let mut tail = Vec::new();
    while start > 0 {
        let step = TAIL_BLOCK.min(start);
        start -= step;
        let mut block = vec![0; step as usize]; // at most TAIL_BLOCK
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut block)?;
        block.extend_from_slice(&tail);
        tail = block;
        if let Some(line) = line_at_end(&tail, start == 0) {
            return Ok(Some(line.to_vec()));
        }
        if tail.len() > MAX_LAST_LINE {
            // No audit line is this long: the end of the file is not the log's (a torn or
            // foreign write). Refuse rather than read the whole file into memory.
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("the audit log's last line is longer than {MAX_LAST_LINE} bytes"),
            ));
        }
    }
    Ok(None)
}

/// The longest last line [`last_line`] reads back (audit lines are a few hundred bytes).
const MAX_LAST_LINE: usize = 1 << 20;

/// The last line of `tail` (the end of a file; `whole`: all of it), or `None` if the line may
/// begin before `tail` does.
fn line_at_end(tail: &[u8], whole: bool) -> Option<&[u8]> {
    let (body, terminated) = match tail.strip_suffix(b"\n") {
        Some(body) => (body, true),
        None => (tail, false),
    };
    let begin = match body.iter().rposition(|&b| b == b'\n') {
        Some(newline) => newline + 1,
        None if whole => 0,
        None => return None,
    };
    let line = &body[begin..];
    // `str::lines` drops the `\r` of a `\r\n` ending, and only of that.
    Some(match line.strip_suffix(b"\r") {
        Some(without) if terminated => without,
        _ => line,
    })
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

/// Appends `prev` to an event and renders it as one line; returns the line and its hash.
pub fn chain_line(
    mut event: serde_json::Map<String, serde_json::Value>,
    prev: &str,
) -> (String, String) {
    event.insert("prev".into(), prev.into());
    let line = serde_json::Value::Object(event).to_string();
    let hash = line_hash(&line);
    (line, hash)
}

/// Where and why a log failed verification (lines count from 1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("line {0} is not a JSON object")]
    NotJson(usize),
    #[error("line {0} has no prev field")]
    MissingPrev(usize),
    #[error("line {0} does not follow the line before it (edited, removed or reordered)")]
    Broken(usize),
}

/// Checks every line's `prev`; returns the number of lines and the hash of the last one.
pub fn verify_chain(text: &str) -> Result<(usize, String), ChainError> {
    let mut prev = GENESIS.to_owned();
    let mut count = 0;
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let value: serde_json::Value =
            serde_json::from_str(line).map_err(|_| ChainError::NotJson(n))?;
        let claimed = value
            .as_object()
            .ok_or(ChainError::NotJson(n))?
            .get("prev")
            .and_then(|p| p.as_str())
            .ok_or(ChainError::MissingPrev(n))?;
        if claimed != prev {
            return Err(ChainError::Broken(n));
        }
        prev = line_hash(line);
        count = n;
    }
    Ok((count, prev))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(n: usize) -> String {
        let mut prev = GENESIS.to_owned();
        let mut out = String::new();
        for i in 0..n {
            let mut event = serde_json::Map::new();
            event.insert("kind".into(), "test".into());
            event.insert("i".into(), i.into());
            let (line, hash) = chain_line(event, &prev);
            out.push_str(&line);
            out.push('\n');
            prev = hash;
        }
        out
    }

    #[test]
    fn an_intact_log_verifies() {
        assert_eq!(verify_chain(&log(5)).map(|(n, _)| n), Ok(5));
    }

    #[test]
    fn removing_or_editing_a_line_is_detected_at_that_point() {
        let text = log(5);
        let lines: Vec<&str> = text.lines().collect();
        let removed = [&lines[..2], &lines[3..]].concat().join("\n");
        assert_eq!(verify_chain(&removed), Err(ChainError::Broken(3)));
        let edited = text.replacen("\"i\":1", "\"i\":7", 1);
        assert_eq!(verify_chain(&edited), Err(ChainError::Broken(3)));
    }

    #[test]
    fn the_last_line_is_the_one_str_lines_gives() {
        let texts = [
            "a", "a\n", "ab\ncd", "ab\ncd\n", "a\n\n", "\n", "a\r\n", "a\r", "\r\n",
        ];
        for text in texts {
            let expected = text.lines().next_back().map(str::as_bytes);
            let bytes = text.as_bytes();
            // Every suffix is an end of the file as reading it block by block may hold it.
            for start in 0..bytes.len() {
                let found = line_at_end(&bytes[start..], start == 0);
                assert!(
                    found.is_none() || found == expected,
                    "{text:?} from {start}"
                );
            }
            assert_eq!(line_at_end(bytes, true), expected, "{text:?}");
        }
    }

    #[test]
    fn a_large_log_is_continued_from_its_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let at = Timestamp::from_unix(1_700_000_000);
        let log = AuditLog::open(&path, "test").unwrap();
        assert!(
            last_line(&mut std::fs::File::open(&path).unwrap())
                .unwrap()
                .is_none()
        );
        for i in 0..20_000 {
            log.record(at, "test", [("i", Value::from(i))]);
        }
        // A last line longer than a block, so finding its start takes several reads.
        let long = "x".repeat(3 * TAIL_BLOCK as usize);
        log.record(at, "test", [("long", Value::from(long))]);
        drop(log);
        let len = std::fs::metadata(&path).unwrap().len();
        assert!(len > 100 * TAIL_BLOCK, "{len} bytes is not many blocks");

        let reopened = AuditLog::open(&path, "test").unwrap();
        reopened.record(at, "test", [("reopened", Value::from(true))]);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(verify_chain(&text).map(|(n, _)| n), Ok(20_002));
    }

    #[test]
    fn a_file_ending_in_megabytes_without_a_newline_is_refused_not_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        std::fs::write(&path, vec![b'x'; 4 * MAX_LAST_LINE]).unwrap();
        let err = AuditLog::open(&path, "test").unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "{err}");
    }
}
