//! The engine handle: its parts, and the two ways in (read and write) every operation uses.

use crate::engine::buffer::{Changed, PageStore};
use crate::engine::clock::Clock;
use crate::engine::combine::{Body, Done, Job, Outcome, Queue, batch_errors};
use crate::engine::control::ControlState;
use crate::engine::error::{Error, StorageError};
use crate::engine::io::{IoFile, LatchedIo};
use crate::engine::redo::{Change, PageChange, Payload, diff};
use crate::engine::sync::lock;
use crate::engine::txn::{ReadView, Txn};
use crate::engine::types::{EngineOptions, EngineStats};
use crate::engine::wal::Wal;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// An open store. `Send + Sync`; share it as `Arc<Engine>`. Every call blocks.
pub struct Engine {
    pub(crate) io: Arc<LatchedIo>,
    pub(crate) dir: PathBuf,
    pub(crate) opts: EngineOptions,
    /// The combining writer holds it exclusively while it runs a batch (first page read to WAL
    /// append); readers share it. The wait for fsync happens outside it, which is what lets
    /// commits share one fsync.
    pub(crate) tree: RwLock<()>,
    /// Write transactions waiting for a combiner.
    pub(crate) queue: Queue,
    pub(crate) store: PageStore,
    pub(crate) wal: Wal,
    pub(crate) control: Mutex<ControlState>,
    pub(crate) control_file: Arc<dyn IoFile>,
    /// Held by whoever checkpoints, and by a verify for its whole scan: the data file is
    /// written only by checkpoints, so while a verify holds it the file stays as it was.
    pub(crate) checkpoint_busy: Mutex<()>,
    /// Held by the one verify that may run at a time (`verify.rs`).
    pub(crate) verifying: Mutex<()>,
    pub(crate) last_checkpoint: Mutex<Instant>,
    pub(crate) counters: Counters,
    pub(crate) archive_counters: crate::engine::archive::ArchiveCounters,
    /// Held by the one backup that may run at a time (`backup.rs`).
    pub(crate) backing_up: Mutex<()>,
    /// Checkpoints retire no segment from this LSN on (a running backup's redo point;
    /// `u64::MAX`: none).
    pub(crate) retire_pin: AtomicU64,
    /// The store's lock file, held while open (real filesystem only).
    pub(crate) dir_lock: Option<std::fs::File>,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) commits: AtomicU64,
    pub(crate) checkpoints: AtomicU64,
    pub(crate) last_checkpoint_nanos: AtomicU64,
}

impl Engine {
    /// The clock the engine runs on; the daemon times its calls with it too.
    pub fn clock(&self) -> Arc<dyn Clock> {
        self.opts.clock.clone()
    }

    /// Whether an I/O failure (on any path: a commit, a checkpoint, the background
    /// checkpointer) stopped the engine; only reopening, which recovers from the WAL, clears it.
    pub fn has_failed(&self) -> bool {
        self.io.is_latched()
    }

    /// After an I/O failure every call is refused until the store is reopened.
    pub(crate) fn check_open(&self) -> Result<(), Error> {
        if self.io.is_latched() {
            Err(StorageError::PreviousIo.into())
        } else {
            Ok(())
        }
    }

    /// Runs a read; returns only once everything it saw is durable.
    pub(crate) fn read<T>(
        &self,
        op: impl FnOnce(&mut ReadView<'_>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        self.check_open()?;
        let guard = self.tree.read().unwrap_or_else(|e| e.into_inner());
        let mut view = ReadView::new(&self.store);
        let out = op(&mut view);
        drop(guard);
        // An answer that something is missing rests on what it read as much as a document
        // does: it too waits until those pages' records are durable.
        self.wal.wait_durable(view.max_lsn + 1)?;
        out
    }

    /// Runs a client's write transaction as one WAL record; returns once it is durable, with
    /// its LSN. Refused while the WAL archive is too far behind (`check_archive`).
    pub(crate) fn write<T: Send + 'static>(
        &self,
        summary: String,
        op: impl FnMut(&mut Txn<'_>) -> Result<T, Error> + Send + 'static,
    ) -> Result<(T, u64), Error> {
        self.check_archive()?;
        self.write_any(summary, op)
    }

    /// `write` without the archive's bound, for the engine's own work (purges of dropped
    /// tables, which an open must be able to finish). The body may run on another writer's
    /// thread (see `combine`), so it owns its inputs.
    pub(crate) fn write_any<T: Send + 'static>(
        &self,
        summary: String,
        mut op: impl FnMut(&mut Txn<'_>) -> Result<T, Error> + Send + 'static,
    ) -> Result<(T, u64), Error> {
        self.check_open()?;
        let value = Arc::new(Mutex::new(None));
        let slot = value.clone();
        let body: Body = Box::new(move |txn| {
            let v = op(txn)?;
            *lock(&slot) = Some(v);
            Ok(())
        });
        let done = Arc::new(Done::default());
        let job = Job {
            summary,
            body,
            done: done.clone(),
        };
        let mut must_combine = self.queue.push(job);
        let lsn = loop {
            if must_combine {
                self.combine();
            }
            match done.wait() {
                Outcome::Committed(lsn) => break lsn,
                Outcome::Failed(e) => return Err(e),
                Outcome::Combine => must_combine = true,
            }
        };
        let value = lock(&value)
            .take()
            .ok_or_else(|| Error::Internal("a committed transaction left no result".into()))?;
        Ok((value, lsn))
    }

    /// Runs the queued transactions in order under the tree lock, each as its own record, hands
    /// the combining role on, then waits until the batch is durable and wakes each owner.
    fn combine(&self) {
        let jobs = self.queue.take();
        let mut staged = Vec::with_capacity(jobs.len());
        // Refusals (version mismatch, not found, already exists) rest on the records before
        // them, which may not be durable yet: they are answered with the batch.
        let mut refused = Vec::new();
        let mut end = 0;
        let tree = self.tree.write().unwrap_or_else(|e| e.into_inner());
        for mut job in jobs {
            // A panicking body must not strand the other writers of the batch.
            let run = catch_unwind(AssertUnwindSafe(|| {
                self.commit_locked(&job.summary, &mut job.body)
            }));
            let panicked = || Error::Internal("a write transaction panicked".into());
            match run.unwrap_or_else(|_| Err(panicked())) {
                Ok(((), lsn, record_end)) => {
                    end = record_end;
                    staged.push((job.done, lsn));
                }
                Err(e) => {
                    end = end.max(self.wal.tail());
                    refused.push((job.done, e));
                }
            }
        }
        drop(tree);
        self.queue.hand_on();
        match self.wal.wait_durable(end) {
            Ok(()) => {
                for (done, e) in refused {
                    done.finish(Outcome::Failed(e));
                }
                let committed = staged.len() as u64;
                self.counters
                    .commits
                    .fetch_add(committed, Ordering::Relaxed);
                for (done, lsn) in staged {
                    done.finish(Outcome::Committed(lsn));
                }
                // Once per batch, by the combiner: the woken writers return without touching
                // the locks the next combiner is using.
                self.maybe_checkpoint();
            }
            Err(first) => {
                // What a refusal saw may now never be durable: it gets the I/O error too.
                let owners = staged.into_iter().map(|(done, _)| done);
                let owners = owners.chain(refused.into_iter().map(|(done, _)| done));
                for (done, e) in owners.zip(batch_errors(first)) {
                    done.finish(Outcome::Failed(e));
                }
            }
        }
    }

    /// Applies `op` privately, logs its page changes, and installs them; returns the value,
    /// the record's LSN and the log position durability must reach.
    fn commit_locked<T>(
        &self,
        summary: &str,
        op: &mut impl FnMut(&mut Txn<'_>) -> Result<T, Error>,
    ) -> Result<(T, u64, u64), Error> {
        for fresh_segment in [false, true] {
            let mut txn = Txn::begin(&self.store, self.wal.tail())?;
            let value = op(&mut txn)?;
            let lsn = txn.lsn;
            let pages = self.changed(txn.finish());
            let payload = self.payload(summary, &pages).encode();
            if payload.len() > self.wal.max_payload() {
                return Err(Error::InvalidArgument(
                    "transaction is too large for one WAL record".into(),
                ));
            }
            if !self.wal.fits(payload.len()) && !fresh_segment {
                self.wal.switch_segment()?;
                continue;
            }
            let (appended, end) = self.wal.append(&payload);
            debug_assert_eq!(appended, lsn);
            self.store.install(pages, lsn);
            return Ok((value, lsn, end));
        }
        Err(Error::Internal("WAL segment switch left no room".into()))
    }

    /// Drops pages the transaction rewrote without changing (the meta page, usually).
    fn changed(&self, pages: Vec<Changed>) -> Vec<Changed> {
        let same = |c: &Changed| {
            self.store
                .peek(c.page_no)
                .is_some_and(|(current, _)| current == c.image)
        };
        pages.into_iter().filter(|c| !same(c)).collect()
    }

    /// Full images for pages clean since the last checkpoint (so redo can repair a torn write
    /// of them), diffs against the last logged image for the rest.
    fn payload(&self, summary: &str, pages: &[Changed]) -> Payload {
        let change = |c: &Changed| match self.store.diff_base(c.page_no) {
            Some(base) => Change::Diff(diff(&base, &c.image)),
            None => Change::Image(c.image.to_vec()),
        };
        let pages = pages.iter().map(|c| PageChange {
            page_no: c.page_no,
            change: change(c),
        });
        Payload {
            summary: summary.to_string(),
            pages: pages.collect(),
        }
    }

    /// Checkpoints when the WAL, the dirty pages or the clock say so. A failure here latches
    /// the engine but does not undo the commit that triggered it, which is already durable.
    pub(crate) fn maybe_checkpoint(&self) {
        let redo = lock(&self.control).redo_lsn;
        let wal_due = self.wal.tail().saturating_sub(redo) >= self.opts.checkpoint_wal_bytes;
        let since = self.opts.clock.since(*lock(&self.last_checkpoint));
        let time_due = since >= self.opts.checkpoint_interval;
        if !(wal_due || time_due || self.store.over_budget()) {
            return;
        }
        // Busy: a checkpoint is running, or a verify holds them off; the next commit retries.
        let Ok(_busy) = self.checkpoint_busy.try_lock() else {
            return;
        };
        if let Err(e) = self.checkpoint_busy_held() {
            tracing::error!(error = %e, "automatic checkpoint failed");
        }
    }

    pub fn stats(&self) -> EngineStats {
        let wal = &self.wal.stats;
        let fsyncs = wal.fsyncs.load(Ordering::Relaxed);
        EngineStats {
            commits: self.counters.commits.load(Ordering::Relaxed),
            fsyncs,
            fsync_nanos_sum: wal.fsync_nanos.load(Ordering::Relaxed),
            fsync_count: fsyncs,
            wal_bytes: wal.bytes.load(Ordering::Relaxed),
            durable_lsn: self.wal.durable(),
            checkpoints: self.counters.checkpoints.load(Ordering::Relaxed),
            last_checkpoint_duration: Duration::from_nanos(
                self.counters.last_checkpoint_nanos.load(Ordering::Relaxed),
            ),
            pool_hits: self.store.stats.hits.load(Ordering::Relaxed),
            pool_misses: self.store.stats.misses.load(Ordering::Relaxed),
            corrupt_pages_seen: self.store.stats.corrupt_pages.load(Ordering::Relaxed),
        }
    }
}
