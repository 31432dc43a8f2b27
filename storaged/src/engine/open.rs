//! Opening a store: initialise if new, recover, then start the engine.

use crate::engine::buffer::PageStore;
use crate::engine::engine::{Counters, Engine};
use crate::engine::error::{Error, OpenError, StorageError};
use crate::engine::io::{IoBackend, LatchedIo, StdFs};
use crate::engine::recovery::{self, RecoveryReport};
use crate::engine::types::EngineOptions;
use crate::engine::wal::Wal;
use crate::engine::{init, layout};
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

impl Engine {
    /// Opens (creating if needed) the store in `dir` on the real filesystem.
    pub fn open(dir: &Path, opts: EngineOptions) -> Result<(Engine, RecoveryReport), OpenError> {
        Self::open_with(Arc::new(StdFs), dir, opts)
    }

    /// Opens the store through the given I/O backend (tests pass a simulated filesystem).
    pub fn open_with(
        io: Arc<dyn IoBackend>,
        dir: &Path,
        opts: EngineOptions,
    ) -> Result<(Engine, RecoveryReport), OpenError> {
        opts.validate().map_err(OpenError::InvalidOptions)?;
        let io = Arc::new(LatchedIo::new(io));
        init::ensure_initialized(&*io, dir, opts.wal_segment_size)?;
        let rec = recovery::recover(&*io, dir, opts.recovery)?;
        let wal_io: Arc<dyn IoBackend> = io.clone();
        let wal = Wal::new(wal_io, layout::wal(dir), rec.control.segment_size, rec.control.instance_id, rec.wal);
        let engine = Engine {
            io,
            dir: dir.to_path_buf(),
            store: PageStore::new(rec.data_file, opts.buffer_pool_bytes),
            opts,
            tree: RwLock::new(()),
            wal,
            control: Mutex::new(rec.control),
            control_file: rec.control_file,
            checkpoint_busy: Mutex::new(()),
            last_checkpoint: Mutex::new(Instant::now()),
            counters: Counters::default(),
        };
        engine.resume_purges().map_err(open_error)?;
        Ok((engine, rec.report))
    }
}

fn open_error(e: Error) -> OpenError {
    match e {
        Error::Storage(s) => OpenError::Storage(s),
        other => OpenError::Storage(StorageError::corrupted(None, format!("finishing a drop: {other}"))),
    }
}
