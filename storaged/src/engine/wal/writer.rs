//! Appending records and group commit.
//!
//! Appends go to an in-memory buffer under a short lock. A writer that needs durability waits;
//! if nobody is syncing it becomes the leader: it takes every buffered byte, writes it, issues
//! one fdatasync per touched segment and wakes everyone whose record is now durable. Writers
//! that arrive meanwhile buffer behind it and are covered by the next sync: no timer, no delay.

use crate::engine::clock::Clock;
use crate::engine::error::StorageError;
use crate::engine::io::read_exact_at;
use crate::engine::io::{IoBackend, IoFile};
use crate::engine::sync::lock;
use crate::engine::wal::files::create_segment;
use crate::engine::wal::record::{self, KIND_COMMIT, KIND_COMMIT_TIMED, RecordHeader};
use crate::engine::wal::segment::{SEGMENT_HEADER_LEN, SegmentHeader, holds_commit_times};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

pub(crate) struct Wal {
    io: Arc<dyn IoBackend>,
    dir: PathBuf,
    segment_size: u64,
    instance_id: [u8; 16],
    append: Mutex<AppendState>,
    sync: Mutex<SyncState>,
    synced: Condvar,
    pub(crate) stats: WalStats,
    clock: Arc<dyn Clock>,
    /// Mark each segment for the archive as it is sealed (`archive.rs`).
    archiving: bool,
    /// Sealed segments marked and not yet archived.
    unarchived: AtomicU64,
}

/// Counters for `Engine::stats`.
#[derive(Default)]
pub(crate) struct WalStats {
    pub(crate) fsyncs: AtomicU64,
    pub(crate) fsync_nanos: AtomicU64,
    pub(crate) bytes: AtomicU64,
}

struct AppendState {
    /// Where the next record goes.
    tail: u64,
    last_lsn: u64,
    active_start: u64,
    /// The record kind the active segment takes: timed, unless it is a format 1 segment.
    kind: u8,
    /// The last commit time stamped (Unix ms): stamps never go back, even if the clock does,
    /// so a restore by time cuts the log at one place.
    last_commit_ms: u64,
    /// Buffered bytes as (log position, bytes), contiguous within a chunk.
    pending: Vec<(u64, Vec<u8>)>,
    segments: BTreeMap<u64, Arc<dyn IoFile>>,
}

struct SyncState {
    /// Every byte below this position is durable.
    durable: u64,
    syncing: bool,
    failed: bool,
}

/// Where the WAL continues after recovery.
pub(crate) struct WalStart {
    pub(crate) tail: u64,
    pub(crate) last_lsn: u64,
    pub(crate) active: Arc<dyn IoFile>,
}

impl Wal {
    pub(crate) fn new(
        io: Arc<dyn IoBackend>,
        dir: PathBuf,
        segment_size: u64,
        instance_id: [u8; 16],
        start: WalStart,
        clock: Arc<dyn Clock>,
        archiving: bool,
    ) -> Wal {
        let active_start = (start.tail - 1) / segment_size * segment_size;
        let mut header = [0u8; SEGMENT_HEADER_LEN];
        // Recovery has just read this header; a failure here only means the next write fails.
        let read = read_exact_at(&*start.active, 0, &mut header).unwrap_or(false);
        let kind = if read && !holds_commit_times(&header) {
            KIND_COMMIT
        } else {
            KIND_COMMIT_TIMED
        };
        let append = AppendState {
            tail: start.tail,
            last_lsn: start.last_lsn,
            active_start,
            kind,
            last_commit_ms: 0,
            pending: Vec::new(),
            segments: BTreeMap::from([(active_start, start.active)]),
        };
        let sync = SyncState {
            durable: start.tail,
            syncing: false,
            failed: false,
        };
        Wal {
            io,
            dir,
            segment_size,
            instance_id,
            append: Mutex::new(append),
            sync: Mutex::new(sync),
            synced: Condvar::new(),
            stats: WalStats::default(),
            clock,
            archiving,
            unarchived: AtomicU64::new(0),
        }
    }

    /// Where the active segment starts.
    pub(crate) fn active_start(&self) -> u64 {
        lock(&self.append).active_start
    }

    /// Whether the active segment holds any record yet.
    pub(crate) fn active_has_records(&self) -> bool {
        let state = lock(&self.append);
        state.tail > state.active_start + SEGMENT_HEADER_LEN as u64
    }

    pub(crate) fn unarchived(&self) -> u64 {
        self.unarchived.load(Ordering::Relaxed)
    }

    /// Sets the count of sealed segments waiting for the archive (at open).
    pub(crate) fn set_unarchived(&self, count: u64) {
        self.unarchived.store(count, Ordering::Relaxed);
    }

    /// One waiting segment was archived.
    pub(crate) fn archived_one(&self) {
        let _ = self
            .unarchived
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    /// The last record's LSN, the end of the log and the last commit time stamped by this
    /// process (0: none yet), once every byte before that end is durable: a point a backup can
    /// stop at (the records below it never change again).
    pub(crate) fn durable_point(&self) -> Result<(u64, u64, u64), StorageError> {
        let (last_lsn, tail, time) = {
            let state = lock(&self.append);
            (state.last_lsn, state.tail, state.last_commit_ms)
        };
        self.wait_durable(tail)?;
        Ok((last_lsn, tail, time))
    }

    pub(crate) fn tail(&self) -> u64 {
        lock(&self.append).tail
    }

    pub(crate) fn last_lsn(&self) -> u64 {
        lock(&self.append).last_lsn
    }

    pub(crate) fn durable(&self) -> u64 {
        lock(&self.sync).durable
    }

    pub(crate) fn segment_size(&self) -> u64 {
        self.segment_size
    }

    /// The largest payload that fits in an empty segment (with its commit time).
    pub(crate) fn max_payload(&self) -> usize {
        self.segment_size as usize - SEGMENT_HEADER_LEN - record::RECORD_HEADER_LEN - 16
    }

    /// Whether a record with this payload fits in the rest of the active segment.
    pub(crate) fn fits(&self, payload_len: usize) -> bool {
        let state = lock(&self.append);
        let len = record::record_len_of(state.kind, payload_len);
        state.tail + len <= state.active_start + self.segment_size
    }

    /// Buffers a record at the tail; returns (its LSN, the log position after it).
    /// The caller serialises appends and has checked `fits`.
    pub(crate) fn append(&self, payload: &[u8]) -> (u64, u64) {
        let mut state = lock(&self.append);
        let lsn = state.tail;
        // Bytes before the first still-buffered byte were taken by a flush that completes its
        // fsync before the flush that will write this record starts.
        let durable_before = state.pending.first().map_or(lsn, |(at, _)| *at);
        state.last_commit_ms = state.last_commit_ms.max(self.clock.unix_ms());
        let header = RecordHeader {
            payload_len: 0,
            lsn,
            prev_lsn: state.last_lsn,
            durable_before,
            kind: state.kind,
            commit_unix_ms: state.last_commit_ms,
        };
        let len = record::record_len_of(state.kind, payload.len());
        let end = lsn + len;
        self.stats.bytes.fetch_add(len, Ordering::Relaxed);
        match state.pending.last_mut() {
            Some((at, buf)) if *at + buf.len() as u64 == lsn => {
                record::encode_into(&header, payload, buf)
            }
            _ => state.pending.push((lsn, record::encode(&header, payload))),
        }
        state.tail = end;
        state.last_lsn = lsn;
        (lsn, end)
    }

    /// Seals the active segment and starts the next one.
    ///
    /// Everything buffered is synced first, so a segment that has a successor never holds a
    /// torn record: recovery may then call any bad record in it corruption.
    pub(crate) fn switch_segment(&self) -> Result<(), StorageError> {
        let tail = self.tail();
        self.wait_durable(tail)?;
        let mut state = lock(&self.append);
        if self.archiving {
            // Before the successor exists: a sealed segment is never without its mark.
            crate::engine::archive::mark_ready(&*self.io, &self.dir, state.active_start)?;
            self.unarchived.fetch_add(1, Ordering::Relaxed);
        }
        let header = SegmentHeader {
            segment_size: self.segment_size,
            instance_id: self.instance_id,
            start_lsn: state.active_start + self.segment_size,
            prev_start_lsn: state.active_start,
            prev_last_lsn: state.last_lsn,
        };
        let file = create_segment(&*self.io, &self.dir, &header)?;
        state.segments = BTreeMap::from([(header.start_lsn, file)]);
        state.active_start = header.start_lsn;
        state.kind = KIND_COMMIT_TIMED;
        state.tail = header.start_lsn + SEGMENT_HEADER_LEN as u64;
        drop(state);
        let mut sync = lock(&self.sync);
        sync.durable = sync
            .durable
            .max(header.start_lsn + SEGMENT_HEADER_LEN as u64);
        drop(sync);
        Ok(())
    }

    /// Blocks until every byte below `end` is durable, syncing as leader if nobody else is.
    pub(crate) fn wait_durable(&self, end: u64) -> Result<(), StorageError> {
        let mut sync = lock(&self.sync);
        loop {
            if sync.failed {
                return Err(StorageError::PreviousIo);
            }
            if sync.durable >= end {
                return Ok(());
            }
            if !sync.syncing {
                sync.syncing = true;
                drop(sync);
                let result = self.flush();
                sync = lock(&self.sync);
                sync.syncing = false;
                match result {
                    Ok(upto) => sync.durable = sync.durable.max(upto),
                    Err(_) => sync.failed = true,
                }
                // Notified after the lock is released, so waiters do not wake into a held lock.
                drop(sync);
                self.synced.notify_all();
                result?;
                sync = lock(&self.sync);
            } else {
                sync = self.synced.wait(sync).unwrap_or_else(|e| e.into_inner());
            }
        }
    }

    /// Writes and syncs everything buffered; returns the position it is durable up to.
    fn flush(&self) -> Result<u64, StorageError> {
        let (chunks, files, upto) = {
            let mut state = lock(&self.append);
            let chunks = std::mem::take(&mut state.pending);
            (chunks, state.segments.clone(), state.tail)
        };
        let mut touched: BTreeMap<u64, Arc<dyn IoFile>> = BTreeMap::new();
        for (at, bytes) in chunks {
            let start = at / self.segment_size * self.segment_size;
            let file = files.get(&start).ok_or_else(|| missing_segment(start))?;
            file.write_at(at - start, &bytes)?;
            touched.insert(start, file.clone());
        }
        for file in touched.values() {
            self.timed_sync(&**file)?;
        }
        Ok(upto)
    }

    fn timed_sync(&self, file: &dyn IoFile) -> Result<(), StorageError> {
        let started = self.clock.now();
        file.sync_data()?;
        self.stats.fsyncs.fetch_add(1, Ordering::Relaxed);
        let nanos = self.clock.since(started).as_nanos() as u64;
        self.stats.fsync_nanos.fetch_add(nanos, Ordering::Relaxed);
        Ok(())
    }
}

fn missing_segment(start: u64) -> StorageError {
    StorageError::corrupted(
        None,
        format!("WAL segment {start:#x} is not open for writing"),
    )
}
