//! Opening a store: initialise if new, recover, then start the engine.

use crate::engine::buffer::PageStore;
use crate::engine::combine::Queue;
use crate::engine::engine::{Counters, Engine};
use crate::engine::error::{Error, OpenError, StorageError};
use crate::engine::io::{IoBackend, LatchedIo, StdFs};
use crate::engine::page::PAGE_SIZE;
use crate::engine::recovery::{self, RecoveryReport};
use crate::engine::types::EngineOptions;
use crate::engine::wal::Wal;
use crate::engine::{init, layout};
use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

impl Engine {
    /// Opens (creating if needed and allowed) the store in `dir` on the real filesystem. The
    /// store's `LOCK` file is held until the engine is dropped: a second process is refused.
    pub fn open(dir: &Path, opts: EngineOptions) -> Result<(Engine, RecoveryReport), OpenError> {
        // Before the lock, which would create the directory and its LOCK file.
        refuse_unless_store(&StdFs, dir, &opts)?;
        let lock = lock_dir(dir)?;
        let (mut engine, report) = Self::open_with(Arc::new(StdFs), dir, opts)?;
        engine.dir_lock = Some(lock);
        Ok((engine, report))
    }

    /// Opens the store through the given I/O backend (tests pass a simulated filesystem).
    pub fn open_with(
        io: Arc<dyn IoBackend>,
        dir: &Path,
        opts: EngineOptions,
    ) -> Result<(Engine, RecoveryReport), OpenError> {
        opts.validate().map_err(OpenError::InvalidOptions)?;
        refuse_unless_store(&*io, dir, &opts)?;
        let io = Arc::new(LatchedIo::new(io));
        init::ensure_initialized(&*io, dir, opts.wal_segment_size)?;
        // Replayed pages are kept in up to three quarters of the pool (the rest is for the
        // working set) and written by the first checkpoint.
        let hold_pages = opts.buffer_pool_bytes / PAGE_SIZE / 4 * 3;
        let clock = opts.clock.clone();
        let rec = recovery::recover(&*io, dir, opts.recovery, hold_pages, &*clock)?;
        let wal_io: Arc<dyn IoBackend> = io.clone();
        let wal = Wal::new(
            wal_io,
            layout::wal(dir),
            rec.control.segment_size,
            rec.control.instance_id,
            rec.wal,
            clock.clone(),
            // A store that has been archived keeps marking what it seals whoever opens it (an
            // offline recover, a backup), so nothing sealed is retired before it is archived.
            opts.archive.is_some() || io.exists(&layout::archive_claim(dir))?,
        );
        let active = wal.active_start();
        let marked = crate::engine::archive::waiting(&*io, &layout::wal(dir))?;
        wal.set_unarchived(marked.iter().filter(|&&s| s < active).count() as u64);
        let engine = Engine {
            io,
            dir: dir.to_path_buf(),
            store: PageStore::new(rec.data_file, opts.buffer_pool_bytes),
            opts,
            tree: RwLock::new(()),
            queue: Queue::default(),
            wal,
            control: Mutex::new(rec.control),
            control_file: rec.control_file,
            checkpoint_busy: Mutex::new(()),
            verifying: Mutex::new(()),
            last_checkpoint: Mutex::new(clock.now()),
            counters: Counters::default(),
            archive_counters: Default::default(),
            backing_up: Mutex::new(()),
            retire_pin: std::sync::atomic::AtomicU64::new(u64::MAX),
            dir_lock: None,
        };
        engine.store.install_replayed(rec.replayed);
        engine.finish_interrupted_drops()?;
        Ok((engine, rec.report))
    }
}

/// Takes the store's lock file (an advisory `flock`, released when the file is closed, so a
/// killed process never leaves it held).
fn refuse_unless_store(
    io: &dyn IoBackend,
    dir: &Path,
    opts: &EngineOptions,
) -> Result<(), OpenError> {
    if opts.create_if_missing || io.exists(&layout::control(dir))? {
        Ok(())
    } else {
        Err(OpenError::NotAStore(dir.to_path_buf()))
    }
}

/// Takes the store's lock shared, for a tool that only reads (`verify`): refused while a
/// process has the store open, and it keeps one from opening it meanwhile. A store without a
/// lock file was never opened by a process that takes it; nothing is created.
pub(crate) fn lock_dir_shared(dir: &Path) -> Result<Option<File>, OpenError> {
    let file = match File::open(layout::lock(dir)) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    match file.try_lock_shared() {
        Ok(()) => Ok(Some(file)),
        Err(TryLockError::WouldBlock) => Err(OpenError::Locked(dir.to_path_buf())),
        Err(TryLockError::Error(e)) => Err(e.into()),
    }
}

fn lock_dir(dir: &Path) -> Result<File, OpenError> {
    std::fs::create_dir_all(dir)?;
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(layout::lock(dir))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(OpenError::Locked(dir.to_path_buf())),
        Err(TryLockError::Error(e)) => Err(e.into()),
    }
}

impl Engine {
    /// A corrupted page must not keep the whole store closed just because a purge crosses it:
    /// the purge is retried at the next open, and reads of that page report the corruption.
    /// The log says what happened: a damaged catalog page found while looking for pending
    /// purges is that (with what the page holds), not a drop; only a purge that was pending
    /// and hit damage is "an interrupted drop".
    fn finish_interrupted_drops(&self) -> Result<(), OpenError> {
        use crate::engine::purge::ResumeError;
        let error = match self.resume_purges() {
            Ok(()) => return Ok(()),
            Err(ResumeError::Catalog(Error::Storage(StorageError::Corrupted { page, detail }))) => {
                match page {
                    Some(n) => {
                        let owner = self.describe_page(n);
                        tracing::warn!(
                            page = n,
                            holds = %owner,
                            "catalog page {n} ({owner}) is damaged: {detail}"
                        );
                    }
                    None => tracing::warn!("the catalog is damaged: {detail}"),
                }
                return Ok(());
            }
            Err(ResumeError::Purge {
                table_id,
                error: Error::Storage(StorageError::Corrupted { page, detail }),
            }) => {
                match page {
                    Some(n) => {
                        let owner = self.describe_page(n);
                        tracing::warn!(
                            table_id,
                            page = n,
                            holds = %owner,
                            "could not finish an interrupted drop: purging dropped table id \
                             {table_id} hit damaged page {n} ({owner}): {detail}; it is \
                             retried at the next open"
                        );
                    }
                    None => tracing::warn!(
                        table_id,
                        "could not finish an interrupted drop: purging dropped table id \
                         {table_id} hit damage: {detail}; it is retried at the next open"
                    ),
                }
                return Ok(());
            }
            Err(ResumeError::Catalog(error) | ResumeError::Purge { error, .. }) => error,
        };
        match error {
            Error::Storage(s) => Err(OpenError::Storage(s)),
            other => Err(OpenError::Storage(StorageError::corrupted(
                None,
                other.to_string(),
            ))),
        }
    }
}
