//! The audit log's hash chain (DESIGN §8): every JSON line carries, in `prev`, the SHA-256 of
//! the line before it, so removing or editing any line breaks the chain at that point.
//! [`AuditLog`] is the one writer both daemons use.

use std::io::Write as _;
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
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        if let Err(std::fs::TryLockError::WouldBlock) = file.try_lock() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::WouldBlock,
                "another process is writing this audit log",
            ));
        }
        let existing = std::fs::read_to_string(path).unwrap_or_default();
        let prev = existing
            .lines()
            .last()
            .map_or_else(|| GENESIS.to_owned(), line_hash);
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

/// `prev` of the first line of a log.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Lowercase hex SHA-256 of one line (without its newline).
pub fn line_hash(line: &str) -> String {
    crate::signing::BodyDigest::of(line.as_bytes()).to_hex()
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
}
