//! Argument checks: names, keys, values, scans, batches.

use crate::engine::error::Error;

pub(crate) const MAX_KEY_LEN: usize = 512;
pub(crate) const MAX_VALUE_LEN: usize = 1 << 20;
pub(crate) const MAX_NAME_LEN: usize = 64;
/// Keeps one batch inside one WAL record and one segment.
pub(crate) const MAX_BATCH_BYTES: usize = 4 << 20;

pub(crate) fn name(kind: &str, name: &str) -> Result<(), Error> {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-';
    let ok = (1..=MAX_NAME_LEN).contains(&name.len()) && name.chars().all(ok_char);
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "{kind} name must match [a-z0-9_-]{{1,64}}"
        )))
    }
}

pub(crate) fn key(key: &str) -> Result<(), Error> {
    if (1..=MAX_KEY_LEN).contains(&key.len()) {
        Ok(())
    } else {
        Err(Error::InvalidArgument(
            "key must be 1 to 512 bytes of UTF-8".into(),
        ))
    }
}

pub(crate) fn value(value: &[u8]) -> Result<(), Error> {
    if value.len() <= MAX_VALUE_LEN {
        Ok(())
    } else {
        Err(Error::InvalidArgument("value must be at most 1 MiB".into()))
    }
}

pub(crate) fn db_table(db: &str, table: &str) -> Result<(), Error> {
    name("database", db)?;
    name("table", table)
}
