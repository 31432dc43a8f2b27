//! Creating a new store: data file with an empty tree, the first WAL segment, then the control
//! file, which is renamed into place last so that its presence means "initialised".

use crate::engine::control::{self, ControlState};
use crate::engine::error::StorageError;
use crate::engine::io::IoBackend;
use crate::engine::layout;
use crate::engine::page::{Leaf, Meta, Node, PAGE_SIZE, seal};
use crate::engine::txn::META_PAGE;
use crate::engine::wal::files::{create_segment, list_segments};
use crate::engine::wal::segment::{NO_PREVIOUS, SEGMENT_HEADER_LEN, SegmentHeader};
use std::path::Path;

const ROOT_PAGE: u64 = 1;

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
        page_count: 2,
        checkpoint_unix_ms: 0,
    };
    let tmp = layout::control_tmp(dir);
    control::store(&*io.open(&tmp, true)?, &mut state)?;
    io.rename(&tmp, &layout::control(dir))?;
    io.sync_dir(dir)?;
    Ok(())
}

/// A directory with a log beyond its first segment but no control file lost its control file;
/// re-initialising would destroy the data.
fn refuse_if_populated(io: &dyn IoBackend, dir: &Path) -> Result<(), StorageError> {
    if list_segments(io, &layout::wal(dir))?.len() > 1 {
        return Err(StorageError::corrupted(
            None,
            "the control file is missing but the WAL holds data",
        ));
    }
    Ok(())
}

fn write_empty_tree(io: &dyn IoBackend, dir: &Path) -> Result<(), StorageError> {
    let data = io.open(&layout::data(dir), true)?;
    data.set_len(0)?;
    let meta = Node::Meta(Meta {
        page_count: 2,
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
