//! Creating a new store: data file with an empty tree, the first WAL segment, then the control
//! file, which is renamed into place last so that its presence means "initialised".

use crate::engine::control::{self, ControlState};
use crate::engine::error::StorageError;
use crate::engine::io::IoBackend;
use crate::engine::layout;
use crate::engine::page::{Leaf, Meta, Node, PAGE_SIZE, seal};
use crate::engine::txn::META_PAGE;
use crate::engine::wal::files::{create_segment, list_segments};
use crate::engine::wal::scan::last_nonzero;
use crate::engine::wal::segment::{NO_PREVIOUS, SEGMENT_HEADER_LEN, SegmentHeader, file_name};
use std::path::Path;

const ROOT_PAGE: u64 = 1;
/// The meta page and the empty root leaf.
const INITIAL_PAGES: u64 = 2;

/// Creates the store in `dir` unless a control file says it exists.
pub(crate) fn ensure_initialized(
    io: &dyn IoBackend,
    dir: &Path,
    segment_size: u64,
) -> Result<(), StorageError> {
    io.create_dir_all(dir)?;
    io.create_dir_all(&layout::wal(dir))?;
    if io.exists(&layout::control(dir))? {
        return Ok(());
    }
    refuse_if_populated(io, dir)?;
    let instance_id: [u8; 16] = rand::random();
    write_empty_tree(io, dir)?;
    let header = SegmentHeader {
        segment_size,
        instance_id,
        start_lsn: 0,
        prev_start_lsn: NO_PREVIOUS,
        prev_last_lsn: 0,
    };
    create_segment(io, &layout::wal(dir), &header)?;
    let mut state = ControlState {
        sequence: 0,
        instance_id,
        segment_size,
        redo_lsn: SEGMENT_HEADER_LEN as u64,
        last_lsn: 0,
        page_count: INITIAL_PAGES,
        checkpoint_unix_ms: 0,
        durable_lsn: SEGMENT_HEADER_LEN as u64,
    };
    let tmp = layout::control_tmp(dir);
    control::store(&*io.open(&tmp, true)?, &mut state)?;
    io.rename(&tmp, &layout::control(dir))?;
    io.sync_dir(dir)?;
    Ok(())
}

/// Without a control file a directory is either new or was cut off by a crash during
/// initialisation (which leaves at most the empty tree and an empty first segment). Anything
/// more means the control file was lost, and re-initialising would destroy the data.
fn refuse_if_populated(io: &dyn IoBackend, dir: &Path) -> Result<(), StorageError> {
    let refuse = |what: &str| {
        Err(StorageError::corrupted(
            None,
            format!("the control file is missing but {what}; refusing to re-initialise"),
        ))
    };
    let segments = list_segments(io, &layout::wal(dir))?;
    if segments.iter().any(|&start| start != 0) {
        return refuse("the WAL has segments beyond the first");
    }
    let data = layout::data(dir);
    if io.exists(&data)? && io.open(&data, false)?.len()? > INITIAL_PAGES * PAGE_SIZE as u64 {
        return refuse("the data file holds more than an empty tree");
    }
    if segments.contains(&0) && !records_empty(io, &layout::wal(dir).join(file_name(0)))? {
        return refuse("the first WAL segment holds records");
    }
    Ok(())
}

/// Whether everything after a segment's header is zero (no record was ever written).
fn records_empty(io: &dyn IoBackend, path: &Path) -> Result<bool, StorageError> {
    const CHUNK: usize = 1 << 20;
    let file = io.open(path, false)?;
    let len = file.len()?;
    let mut buf = vec![0u8; CHUNK];
    let mut at = SEGMENT_HEADER_LEN as u64;
    while at < len {
        let n = file.read_at(at, &mut buf)?;
        if n == 0 {
            break;
        }
        if last_nonzero(&buf[..n]).is_some() {
            return Ok(false);
        }
        at += n as u64;
    }
    Ok(true)
}

fn write_empty_tree(io: &dyn IoBackend, dir: &Path) -> Result<(), StorageError> {
    let data = io.open(&layout::data(dir), true)?;
    data.set_len(0)?;
    let meta = Node::Meta(Meta {
        page_count: INITIAL_PAGES,
        free_head: 0,
        root: ROOT_PAGE,
        next_table_id: 1,
    });
    data.write_at(0, &seal(&meta.encode(), META_PAGE, 0))?;
    let root = Node::Leaf(Leaf::default());
    data.write_at(PAGE_SIZE as u64, &seal(&root.encode(), ROOT_PAGE, 0))?;
    data.sync_data()?;
    Ok(())
}
