//! Checkpoints: make the data file hold every change below a new redo point.
//!
//! Order, with the tree write lock held (so no commit interleaves):
//! 1. redo := WAL tail; sync the WAL to it (WAL-before-data for every dirty page);
//! 2. write every dirty page, then fsync the data file;
//! 3. write the other control slot with the new redo point, then fsync it;
//! 4. mark the pages clean (their next change logs a full image), retire old segments.
//!
//! A crash before 3 completes leaves the old redo point, from which replay rewrites every page
//! touched since (each has a full image after it), including any torn by step 2.

use crate::engine::control;
use crate::engine::engine::Engine;
use crate::engine::error::Error;
use crate::engine::layout;
use crate::engine::page::{Meta, Node};
use crate::engine::sync::lock;
use crate::engine::txn::META_PAGE;
use crate::engine::types::CheckpointStats;
use crate::engine::wal::files::retire_below;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

impl Engine {
    /// Starts a thread that checks the checkpoint triggers (notably `checkpoint_interval`) even
    /// when no commit arrives to check them. It holds only a weak reference and stops once the
    /// engine is dropped or has latched after an I/O error.
    ///
    /// The same thread records the durable end of the log in the control file every
    /// `durable_mark_interval` (when it moved), so that a log later found to end before it is
    /// known to have lost acknowledged commits (DESIGN §6).
    pub fn spawn_checkpointer(engine: &Arc<Engine>) -> std::thread::JoinHandle<()> {
        let weak = Arc::downgrade(engine);
        let tick = (engine.opts.checkpoint_interval / 4)
            .min(engine.opts.durable_mark_interval)
            .clamp(Duration::from_millis(10), Duration::from_secs(1));
        let every = engine.opts.durable_mark_interval;
        let clock = engine.opts.clock.clone();
        std::thread::spawn(move || {
            let mut last_mark = clock.now();
            loop {
                std::thread::sleep(tick);
                match weak.upgrade() {
                    Some(engine) if !engine.io.is_latched() => {
                        engine.maybe_checkpoint();
                        if clock.since(last_mark) < every {
                            continue;
                        }
                        last_mark = clock.now();
                        if let Err(e) = engine.mark_durable() {
                            tracing::error!(error = %e, "recording the durable end of the log failed");
                        }
                    }
                    _ => return,
                }
            }
        })
    }

    /// Records in the control file how far the log is durable now, if that moved since it was
    /// last recorded; true if it wrote. A crash never takes durable bytes away, so a log found
    /// ending before this point at the next open has lost acknowledged commits.
    pub fn mark_durable(&self) -> Result<bool, Error> {
        self.check_open()?;
        let durable = self.wal.durable();
        // Held across the write: checkpoints write the control file under the same lock, so
        // two writers never pick the same slot or publish an older state.
        let mut control = lock(&self.control);
        if durable <= control.durable_lsn {
            return Ok(false);
        }
        let mut next = *control;
        next.durable_lsn = durable;
        control::store(&*self.control_file, &mut next)?;
        *control = next;
        Ok(true)
    }

    /// Runs a checkpoint now; first waits for a running verify, which reads the data file as
    /// the last checkpoint left it (`verify.rs`).
    pub fn checkpoint(&self) -> Result<CheckpointStats, Error> {
        self.check_open()?;
        let _busy = lock(&self.checkpoint_busy);
        self.checkpoint_busy_held()
    }

    /// Runs a checkpoint; the caller holds `checkpoint_busy`.
    pub(crate) fn checkpoint_busy_held(&self) -> Result<CheckpointStats, Error> {
        self.check_open()?;
        let _tree = self.tree.write().unwrap_or_else(|e| e.into_inner());
        self.checkpoint_locked()
    }

    fn checkpoint_locked(&self) -> Result<CheckpointStats, Error> {
        let started = self.opts.clock.now();
        let redo_lsn = self.wal.tail();
        let last_lsn = self.wal.last_lsn();
        self.wal.wait_durable(redo_lsn)?;
        let dirty = self.store.dirty_pages();
        let pages = dirty
            .iter()
            .map(|(page_no, image, lsn)| (*page_no, &image[..], *lsn));
        self.store.write_pages(pages)?;
        self.store.sync()?;
        let meta = self.current_meta()?;
        let mut control = lock(&self.control);
        let mut next = *control;
        next.redo_lsn = redo_lsn;
        next.last_lsn = last_lsn;
        next.page_count = meta.page_count;
        next.checkpoint_unix_ms = self.opts.clock.unix_ms();
        next.durable_lsn = next.durable_lsn.max(self.wal.durable());
        control::store(&*self.control_file, &mut next)?;
        *control = next;
        drop(control);
        self.store.mark_clean(&dirty);
        let segment_size = self.wal.segment_size();
        let keep_from = redo_lsn.min(self.retire_pin.load(Ordering::Acquire));
        let segments_retired =
            retire_below(&*self.io, &layout::wal(&self.dir), keep_from, segment_size)?;
        let duration = self.opts.clock.since(started);
        self.note_checkpoint(duration);
        Ok(CheckpointStats {
            redo_lsn,
            pages_written: dirty.len(),
            segments_retired,
            duration,
        })
    }

    fn note_checkpoint(&self, duration: std::time::Duration) {
        *lock(&self.last_checkpoint) = self.opts.clock.now();
        self.counters.checkpoints.fetch_add(1, Ordering::Relaxed);
        self.counters
            .last_checkpoint_nanos
            .store(duration.as_nanos() as u64, Ordering::Relaxed);
    }

    fn current_meta(&self) -> Result<Meta, Error> {
        match &*self.store.node(META_PAGE)?.0 {
            Node::Meta(meta) => Ok(meta.clone()),
            _ => Err(crate::engine::error::StorageError::corrupted(
                Some(0),
                "page 0 is not the meta page",
            )
            .into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::engine::clock::ManualClock;
    use crate::engine::io::SimFs;
    use crate::engine::{Engine, EngineOptions};
    use std::path::Path;
    use std::sync::Arc;
    use std::time::Duration;

    /// `checkpoint_interval` is measured on the injected clock: moving it is what makes a
    /// checkpoint due, no sleeping involved.
    #[test]
    fn the_interval_checkpoints_once_the_clock_passes_it() {
        let clock = ManualClock::default();
        let opts = EngineOptions {
            checkpoint_interval: Duration::from_secs(300),
            clock: Arc::new(clock.clone()),
            ..EngineOptions::default()
        };
        let io = Arc::new(SimFs::new());
        let (engine, _) = Engine::open_with(io, Path::new("/db"), opts).unwrap();
        engine.create_database("d").unwrap();
        let before = engine.stats().checkpoints;
        clock.advance(Duration::from_secs(299));
        engine.maybe_checkpoint();
        assert_eq!(
            engine.stats().checkpoints,
            before,
            "not due before the interval"
        );
        clock.advance(Duration::from_secs(1));
        engine.maybe_checkpoint();
        assert_eq!(
            engine.stats().checkpoints,
            before + 1,
            "due at the interval"
        );
        engine.maybe_checkpoint();
        assert_eq!(
            engine.stats().checkpoints,
            before + 1,
            "the interval restarts at the checkpoint"
        );
        clock.advance(Duration::from_secs(300));
        engine.create_database("e").unwrap();
        assert_eq!(
            engine.stats().checkpoints,
            before + 2,
            "a commit checks the interval too"
        );
    }
}
