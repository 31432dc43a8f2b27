//! Segment files on disk: creation (zero-filled, header, sync, rename), listing and recycling.

use crate::engine::error::StorageError;
use crate::engine::io::{IoBackend, IoFile, write_zeros};
use crate::engine::wal::segment::{SegmentHeader, file_name, parse_file_name, segment_of};
use std::path::Path;
use std::sync::Arc;

/// A segment being built; renamed into place only once complete and synced.
const CREATING: &str = "creating.tmp";
const SPARE_PREFIX: &str = "spare-";
/// Retired segments kept for reuse; more are deleted.
const MAX_SPARES: usize = 2;

/// Creates the segment `header` describes, reusing a spare file when one exists.
///
/// The file is zero-filled with real writes (a sparse file would allocate blocks on the first
/// commit, inside the fsync we are trying to keep short), synced, and only then given its name,
/// so a segment file that exists under its name always has a complete header.
pub(crate) fn create_segment(
    io: &dyn IoBackend,
    dir: &Path,
    header: &SegmentHeader,
) -> Result<Arc<dyn IoFile>, StorageError> {
    let tmp = dir.join(CREATING);
    if let Some(spare) = spares(io, dir)?.first() {
        io.rename(&dir.join(spare), &tmp)?;
    }
    let file = io.open(&tmp, true)?;
    file.set_len(header.segment_size)?;
    write_zeros(&*file, 0, header.segment_size)?;
    file.write_at(0, &header.encode())?;
    file.sync_data()?;
    io.rename(&tmp, &dir.join(file_name(header.start_lsn)))?;
    io.sync_dir(dir)?;
    Ok(file)
}

/// Segment start LSNs present in `dir`, ascending.
pub(crate) fn list_segments(io: &dyn IoBackend, dir: &Path) -> Result<Vec<u64>, StorageError> {
    list_starts(io, dir, parse_file_name)
}

/// The start LSNs `parse` finds in the names of the files in `dir`, ascending.
pub(crate) fn list_starts(
    io: &dyn IoBackend,
    dir: &Path,
    parse: impl Fn(&str) -> Option<u64>,
) -> Result<Vec<u64>, StorageError> {
    let mut starts: Vec<u64> = io.list_dir(dir)?.iter().filter_map(|n| parse(n)).collect();
    starts.sort_unstable();
    Ok(starts)
}

fn spares(io: &dyn IoBackend, dir: &Path) -> Result<Vec<String>, StorageError> {
    let names = io.list_dir(dir)?;
    Ok(names
        .into_iter()
        .filter(|n| n.starts_with(SPARE_PREFIX))
        .collect())
}

/// Retires the segments before the one recovery starts from (`segment_of(redo_lsn)`: a redo
/// point exactly on a boundary belongs to the segment it ends): a few become spares, the rest
/// are deleted. A segment marked for the archive (`archive::READY_SUFFIX`) is kept until the
/// archiver has shipped it and removed its mark, whichever process checkpoints.
pub(crate) fn retire_below(
    io: &dyn IoBackend,
    dir: &Path,
    redo_lsn: u64,
    segment_size: u64,
) -> Result<usize, StorageError> {
    let keep_from = segment_of(redo_lsn, segment_size);
    let mut spare_count = spares(io, dir)?.len();
    let unarchived = crate::engine::archive::waiting(io, dir)?;
    let mut retired = 0;
    for start in list_segments(io, dir)? {
        if start >= keep_from {
            break;
        }
        if unarchived.binary_search(&start).is_ok() {
            continue;
        }
        let path = dir.join(file_name(start));
        if spare_count < MAX_SPARES {
            io.rename(&path, &dir.join(format!("{SPARE_PREFIX}{start:016x}")))?;
            spare_count += 1;
        } else {
            io.remove(&path)?;
        }
        retired += 1;
    }
    if retired > 0 {
        io.sync_dir(dir)?;
    }
    Ok(retired)
}

/// Removes a half-built segment left by a crash during creation.
pub(crate) fn remove_leftovers(io: &dyn IoBackend, dir: &Path) -> Result<(), StorageError> {
    if io.list_dir(dir)?.iter().any(|n| n == CREATING) {
        io.remove(&dir.join(CREATING))?;
        io.sync_dir(dir)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::io::SimFs;
    use crate::engine::wal::segment::NO_PREVIOUS;

    const SIZE: u64 = 64 << 10;

    fn three_segments() -> SimFs {
        let fs = SimFs::new();
        let dir = Path::new("/wal");
        fs.create_dir_all(dir).unwrap();
        for i in 0..3 {
            let header = SegmentHeader {
                segment_size: SIZE,
                instance_id: [1; 16],
                start_lsn: i * SIZE,
                prev_start_lsn: if i == 0 { NO_PREVIOUS } else { (i - 1) * SIZE },
                prev_last_lsn: 0,
            };
            create_segment(&fs, dir, &header).unwrap();
        }
        fs
    }

    #[test]
    fn retiring_keeps_the_segment_recovery_starts_from() {
        // A log that ends exactly at a segment's end has its redo point on the boundary;
        // recovery reads that segment, so a checkpoint there must not retire it.
        for redo in [SIZE + 1, 2 * SIZE - 1, 2 * SIZE, 2 * SIZE + 1, 3 * SIZE] {
            let fs = three_segments();
            let dir = Path::new("/wal");
            retire_below(&fs, dir, redo, SIZE).unwrap();
            let left = list_segments(&fs, dir).unwrap();
            let first = segment_of(redo, SIZE);
            assert_eq!(left.first(), Some(&first), "redo {redo}: left {left:?}");
        }
    }

    #[test]
    fn a_segment_marked_for_the_archive_is_never_retired() {
        let fs = three_segments();
        let dir = Path::new("/wal");
        crate::engine::archive::mark_ready(&fs, dir, SIZE).unwrap();
        assert_eq!(retire_below(&fs, dir, 3 * SIZE, SIZE).unwrap(), 1);
        assert_eq!(list_segments(&fs, dir).unwrap(), vec![SIZE, 2 * SIZE]);
        fs.remove(&dir.join(crate::engine::archive::ready_name(SIZE)))
            .unwrap();
        assert_eq!(retire_below(&fs, dir, 3 * SIZE, SIZE).unwrap(), 1);
        assert_eq!(list_segments(&fs, dir).unwrap(), vec![2 * SIZE]);
    }
}
