//! Cutting the log: copy the bytes to `quarantine/` and make the copy durable, then remove them.

use crate::engine::error::StorageError;
use crate::engine::io::{IoBackend, read_exact_at, write_zeros};
use crate::engine::layout;
use crate::engine::wal::segment::file_name;
use std::path::{Path, PathBuf};

pub(crate) struct Cut {
    pub(crate) files: Vec<PathBuf>,
    pub(crate) bytes: u64,
}

/// Cuts the log at `at`: the rest of its segment is copied then zeroed; later segments move.
/// The copies are named after `stamp` (Unix milliseconds), so repeated cuts never collide.
pub(crate) fn cut(
    io: &dyn IoBackend,
    dir: &Path,
    segments: &[u64],
    segment_size: u64,
    at: u64,
    stamp: u64,
) -> Result<Cut, StorageError> {
    let qdir = layout::quarantine(dir);
    let wal_dir = layout::wal(dir);
    io.create_dir_all(&qdir)?;
    // The folder's own entry must be durable before the only copy of the cut bytes is in it.
    io.sync_dir(dir)?;
    let mut out = Cut {
        files: Vec::new(),
        bytes: 0,
    };
    for &start in segments
        .iter()
        .filter(|&&s| s.saturating_add(segment_size) > at)
    {
        let name = file_name(start);
        if start >= at {
            let target = qdir.join(format!("{stamp}-{name}"));
            io.rename(&wal_dir.join(&name), &target)?;
            out.files.push(target);
            out.bytes += segment_size;
        } else {
            let target = qdir.join(format!("{stamp}-{name}.from-{at:016x}"));
            out.bytes +=
                copy_and_zero(io, &wal_dir.join(&name), &target, at - start, segment_size)?;
            out.files.push(target);
        }
    }
    io.sync_dir(&qdir)?;
    io.sync_dir(&wal_dir)?;
    Ok(out)
}

/// Copies `[from, len)` of a segment (trailing zeros trimmed) to `target`, syncs the copy, and
/// only then zeroes the range in the segment. A segment cut short (salvage cuts inside it) is
/// copied as far as it goes and then made whole again (zeros up to `len`), so the log after
/// the cut is an ordinary clean end.
fn copy_and_zero(
    io: &dyn IoBackend,
    seg: &Path,
    target: &Path,
    from: u64,
    len: u64,
) -> Result<u64, StorageError> {
    let file = io.open(seg, false)?;
    let present = file.len()?.min(len);
    let mut bytes = vec![0u8; present.saturating_sub(from) as usize];
    if !read_exact_at(&*file, from, &mut bytes)? {
        return Err(StorageError::corrupted(
            None,
            format!("{} changed while it was being cut", seg.display()),
        ));
    }
    let used = bytes.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
    let copy = io.open(target, true)?;
    copy.write_at(0, &bytes[..used])?;
    copy.sync_data()?;
    io.sync_dir(target.parent().unwrap_or(Path::new(".")))?;
    write_zeros(&*file, from, used as u64)?;
    if present < len {
        // Zeros written, not a sparse extension: a later fdatasync must not need to allocate.
        write_zeros(&*file, present, len - present)?;
    }
    file.sync_data()?;
    Ok(used as u64)
}
