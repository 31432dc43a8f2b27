//! Checking an audit log: the chain across its files, every anchor's signature, and the last
//! anchor's copy kept outside the log. The first problem is named by file, line and `seq`,
//! and classified (edited, inserted, removed, reordered, truncated, forged) as far as the
//! lines around it allow.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{ANCHOR, GENESIS, anchor_message, line_hash};
use crate::signing::{PublicKey, Signature};

/// What to check besides the chain.
#[derive(Debug, Default, Clone)]
pub struct VerifyOptions {
    /// The audit keys anchors may be signed with; empty: signatures are not checked.
    pub keys: Vec<PublicKey>,
    /// The last anchor as kept outside the log (its file's text), if there is one.
    pub anchor_copy: Option<String>,
    /// The files may start in the middle of the chain (older files deleted on purpose).
    pub partial: bool,
}

/// An intact log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub lines: u64,
    /// `seq` of the first and the last line (0 for an empty log).
    pub first_seq: u64,
    pub last_seq: u64,
    /// Anchor lines found (their signatures checked when keys were given).
    pub anchors: u64,
    /// Lines after the last anchor: a truncation within them cannot be detected.
    pub unanchored_tail: u64,
    /// `seq` of the anchor copy that was matched against the log.
    pub anchor_copy_seq: Option<u64>,
}

/// Where a line is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    pub file: String,
    /// From 1, within its file.
    pub line: usize,
    pub seq: Option<u64>,
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)?;
        if let Some(seq) = self.seq {
            write!(f, " (seq {seq})")?;
        }
        Ok(())
    }
}

/// The first thing wrong with a log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Broken {
    #[error("{0}: not a JSON object")]
    NotJson(Place),
    #[error("{at}: no {field} field")]
    Missing { at: Place, field: &'static str },
    #[error("{0}: edited (its hash no longer matches the next line's prev)")]
    Edited(Place),
    #[error("{0}: inserted (it is not part of the chain around it)")]
    Inserted(Place),
    #[error("lines with seq {from} to {to} were removed before {at}")]
    Removed { at: Place, from: u64, to: u64 },
    #[error("{0}: out of order (lines were moved)")]
    Reordered(Place),
    #[error(
        "{0}: the chain starts here, not at seq 1: earlier lines or files are missing (give every rotated file, or --partial if older files were deleted on purpose)"
    )]
    StartsMidChain(Place),
    #[error("{at}: anchor does not verify: {why}")]
    AnchorForged { at: Place, why: String },
    #[error(
        "truncated: the log ends at seq {ends}, but the anchor kept outside it was written at seq {anchored}"
    )]
    Truncated { ends: u64, anchored: u64 },
    #[error("{0}: differs from the anchor kept outside the log (the log was rewritten)")]
    AnchorCopyDiffers(Place),
    #[error("the anchor copy is not a valid anchor: {0}")]
    BadAnchorCopy(String),
}

/// One line as read.
struct Line<'a> {
    place: Place,
    text: &'a str,
    value: Value,
    seq: u64,
    prev: String,
}

/// Checks the files given as `(name, text)`, in chain order.
pub fn verify(files: &[(String, String)], options: &VerifyOptions) -> Result<Report, Broken> {
    let lines = parse(files)?;
    let mut seen: HashMap<u64, usize> = HashMap::new();
    for line in &lines {
        *seen.entry(line.seq).or_default() += 1;
    }
    let mut anchors = 0;
    let mut last_anchor = None;
    for (i, line) in lines.iter().enumerate() {
        check_link(&lines, i, &seen, options.partial)?;
        if line.value.get("kind").and_then(Value::as_str) == Some(ANCHOR) {
            check_anchor(&line.value, line.seq, &line.prev, &options.keys).map_err(|why| {
                Broken::AnchorForged {
                    at: line.place.clone(),
                    why,
                }
            })?;
            anchors += 1;
            last_anchor = Some(i);
        }
    }
    let first_seq = lines.first().map_or(0, |l| l.seq);
    let last_seq = lines.last().map_or(0, |l| l.seq);
    let anchor_copy_seq = match &options.anchor_copy {
        None => None,
        Some(copy) => Some(check_copy(copy, &lines, last_seq, &options.keys)?),
    };
    Ok(Report {
        lines: lines.len() as u64,
        first_seq,
        last_seq,
        anchors,
        unanchored_tail: (lines.len() - last_anchor.map_or(0, |i| i + 1)) as u64,
        anchor_copy_seq,
    })
}

/// Reads the files and checks them in chain order: by the `seq` of their first lines, so a
/// shell glob (`audit.log*`) may name them in any order.
pub fn verify_files(
    paths: &[PathBuf],
    options: &VerifyOptions,
) -> std::io::Result<Result<Report, Broken>> {
    let mut files = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(path).map_err(|e| {
            std::io::Error::new(e.kind(), format!("reading {}: {e}", path.display()))
        })?;
        files.push((path.display().to_string(), text));
    }
    files.sort_by_key(|(_, text)| first_seq(text));
    Ok(verify(&files, options))
}

/// `seq` of a text's first line (`u64::MAX` when it has none, so such files go last).
fn first_seq(text: &str) -> u64 {
    text.lines()
        .next()
        .and_then(|l| serde_json::from_str::<Value>(l).ok())
        .and_then(|v| v.get("seq").and_then(Value::as_u64))
        .unwrap_or(u64::MAX)
}

fn parse(files: &[(String, String)]) -> Result<Vec<Line<'_>>, Broken> {
    let mut lines = Vec::new();
    for (file, text) in files {
        for (i, text) in text.lines().enumerate() {
            let mut place = Place {
                file: file.clone(),
                line: i + 1,
                seq: None,
            };
            let value: Value = serde_json::from_str(text)
                .ok()
                .filter(Value::is_object)
                .ok_or_else(|| Broken::NotJson(place.clone()))?;
            let seq = value.get("seq").and_then(Value::as_u64);
            let Some(seq) = seq else {
                return Err(Broken::Missing {
                    at: place,
                    field: "seq",
                });
            };
            place.seq = Some(seq);
            let Some(prev) = value.get("prev").and_then(Value::as_str) else {
                return Err(Broken::Missing {
                    at: place,
                    field: "prev",
                });
            };
            let prev = prev.to_owned();
            lines.push(Line {
                place,
                text,
                value,
                seq,
                prev,
            });
        }
    }
    Ok(lines)
}

/// Checks that line `i` follows line `i - 1`, and if not, says what happened.
fn check_link(
    lines: &[Line<'_>],
    i: usize,
    seen: &HashMap<u64, usize>,
    partial: bool,
) -> Result<(), Broken> {
    let line = &lines[i];
    let Some(before) = i.checked_sub(1).map(|b| &lines[b]) else {
        return match (line.seq, line.prev == GENESIS) {
            (1, true) => Ok(()),
            (1, false) => Err(Broken::Edited(line.place.clone())),
            _ if partial => Ok(()),
            _ => Err(Broken::StartsMidChain(line.place.clone())),
        };
    };
    let before_hash = line_hash(before.text);
    let expected = before.seq + 1;
    if line.seq == expected && line.prev == before_hash {
        return Ok(());
    }
    let later = |seq: u64| lines[i + 1..].iter().any(|l| l.seq == seq);
    if line.seq > expected && later(expected) {
        return Err(Broken::Reordered(line.place.clone()));
    }
    // The next line follows the one before this: this one was put in between.
    if let Some(next) = lines.get(i + 1)
        && next.seq == expected
        && next.prev == before_hash
    {
        return Err(Broken::Inserted(line.place.clone()));
    }
    if line.seq == expected {
        return Err(Broken::Edited(before.place.clone()));
    }
    if line.seq > expected {
        return Err(Broken::Removed {
            at: line.place.clone(),
            from: expected,
            to: line.seq - 1,
        });
    }
    if seen.get(&line.seq).copied().unwrap_or(0) > 1 {
        // Name the first line that carries this seq: the one that was slipped in.
        let first = lines.iter().find(|l| l.seq == line.seq).unwrap_or(line);
        return Err(Broken::Inserted(first.place.clone()));
    }
    Err(Broken::Reordered(line.place.clone()))
}

/// Checks an anchor line's signature (when keys are given); `Err` says why it fails.
fn check_anchor(value: &Value, seq: u64, prev: &str, keys: &[PublicKey]) -> Result<(), String> {
    let field = |name: &str| value.get(name).and_then(Value::as_str);
    let (Some(source), Some(ts), Some(key), Some(sig)) =
        (field("source"), field("ts"), field("key"), field("sig"))
    else {
        return Err("it lacks source, ts, key or sig".into());
    };
    if keys.is_empty() {
        return Ok(());
    }
    let signer = PublicKey::from_base64(key)
        .ok()
        .filter(|k| keys.contains(k))
        .ok_or_else(|| format!("signed by {key}, which is not an audit key given"))?;
    let sig = Signature::from_base64(sig).map_err(|_| "its signature is not base64 of 64 bytes")?;
    signer
        .verify_strict(&anchor_message(source, ts, seq, prev), &sig)
        .map_err(|_| "the signature does not match the line (forged or edited)".to_owned())
}

/// Checks the anchor kept outside the log against the log; returns its `seq`.
fn check_copy(
    copy: &str,
    lines: &[Line<'_>],
    last_seq: u64,
    keys: &[PublicKey],
) -> Result<u64, Broken> {
    let text = copy.trim_end_matches(['\n', '\r']);
    let value: Value =
        serde_json::from_str(text).map_err(|_| Broken::BadAnchorCopy("not a JSON line".into()))?;
    let seq = value.get("seq").and_then(Value::as_u64);
    let prev = value.get("prev").and_then(Value::as_str);
    let is_anchor = value.get("kind").and_then(Value::as_str) == Some(ANCHOR);
    let (Some(seq), Some(prev), true) = (seq, prev, is_anchor) else {
        return Err(Broken::BadAnchorCopy("not an anchor line".into()));
    };
    check_anchor(&value, seq, prev, keys).map_err(Broken::BadAnchorCopy)?;
    if seq > last_seq {
        return Err(Broken::Truncated {
            ends: last_seq,
            anchored: seq,
        });
    }
    match lines.iter().find(|l| l.seq == seq) {
        Some(line) if line.text == text => Ok(seq),
        Some(line) => Err(Broken::AnchorCopyDiffers(line.place.clone())),
        // Before the first file given (--partial): nothing to compare.
        None => Ok(seq),
    }
}

/// `<log>.anchor`, where the writer keeps the copy by default.
pub fn default_anchor_copy(log: &Path) -> PathBuf {
    super::sibling(log, "anchor")
}
