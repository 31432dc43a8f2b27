//! The audit log's hash chain (DESIGN §8): every JSON line carries, in `prev`, the SHA-256 of
//! the line before it, so removing or editing any line breaks the chain at that point.

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
