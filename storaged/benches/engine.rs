//! Engine benchmarks on one disk in one run: raw fdatasync rate, durable commits/s at 1, 8 and
//! 64 writers (as ratios to the raw rate and to one writer), point-get latency from the buffer
//! pool, the OS page cache and the disk (the last as a ratio to a raw read of one page), scan
//! rows/s, WAL replay MB/s during recovery (as a ratio to reading and CRC32C-ing the same WAL),
//! and the time to open after a crash with 1 GiB of WAL.
//! Also commits at 1 and 64 writers with 1 ms added to every fdatasync (`slowsync`), and
//! (`backup`) base backup MB/s and restore replay MB/s, each as a ratio to a raw copy of the
//! same files, and 8 writers' commits/s while backups run as a ratio to their rate without.
//! `PHOTONDB_BENCH_ONLY=commits[=N]`, `slowsync`, `reads`, `replay`, `open1g` or `backup` runs
//! one section.

// A benchmark measures real time.
#![allow(clippy::disallowed_methods)]

use photondb_storaged::engine::{Condition, Engine, EngineOptions, IoBackend, IoFile, Scan, StdFs};
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;

use common::{RUN, VALUE, bench_dir, key, raw_fsync_rate};

fn open(dir: &Path, opts: EngineOptions) -> Engine {
    Engine::open(dir, opts).expect("open").0
}

fn setup(dir: &Path, opts: EngineOptions) -> Engine {
    let e = open(dir, opts);
    create_tables(&e);
    e
}

/// The tables every bench writes to.
fn create_tables(e: &Engine) {
    e.create_database("bench").unwrap();
    e.create_table("bench", "t").unwrap();
}

/// Durable commits per second with `writers` threads each putting 100-byte documents.
fn commit_rate(dir: PathBuf, writers: usize) -> (f64, f64) {
    commit_rate_on(Arc::new(setup(&dir, EngineOptions::default())), writers)
}

/// `commit_rate` on an open engine: commits per second and commits per fsync.
fn commit_rate_on(e: Arc<Engine>, writers: usize) -> (f64, f64) {
    let before = e.stats();
    let writer = e.clone();
    let rate = common::commit_rate(writers, move |w, i| {
        writer
            .put("bench", "t", &key(w, i), &VALUE, Condition::Any)
            .unwrap();
    });
    let after = e.stats();
    let per_sync =
        (after.commits - before.commits) as f64 / (after.fsyncs - before.fsyncs).max(1) as f64;
    (rate, per_sync)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

/// One commit putting `keys`, each a 200-byte value whose byte depends on the key and `round`.
fn put_range(e: &Engine, keys: Range<u64>, round: u64) {
    let batch = keys
        .map(|i| photondb_storaged::engine::BatchOp::Put {
            key: format!("key-{i:08}"),
            value: vec![((i + round) % 251) as u8; 200],
            condition: Condition::Any,
        })
        .collect();
    e.batch("bench", "t", batch).unwrap();
}

fn load(e: &Engine, n: u64) {
    for first in (0..n).step_by(500) {
        put_range(e, first..(first + 500).min(n), 0);
    }
}

/// Times `op` on `samples` pseudo-random numbers, each first passed through an untimed
/// `prepare`; returns p50 and p99.
fn latencies<T>(
    samples: usize,
    mut prepare: impl FnMut(u64) -> T,
    mut op: impl FnMut(T),
) -> (Duration, Duration) {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut times = Vec::with_capacity(samples);
    for _ in 0..samples {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let input = prepare(x);
        let started = Instant::now();
        op(input);
        times.push(started.elapsed());
    }
    times.sort_unstable();
    (percentile(&times, 0.5), percentile(&times, 0.99))
}

/// Gets of random loaded keys, each after an untimed `before`.
fn get_latencies(
    e: &Engine,
    n: u64,
    samples: usize,
    mut before: impl FnMut(),
) -> (Duration, Duration) {
    let key = |x: u64| {
        before();
        format!("key-{:08}", x % n)
    };
    latencies(samples, key, |key| {
        assert!(e.get("bench", "t", &key).unwrap().is_some());
    })
}

/// Drops a file's pages from the OS page cache, so its next reads go to the disk. The engine
/// synced what it wrote, so the cached pages are clean and really leave.
fn evict(path: &Path) {
    let file = std::fs::File::open(path).unwrap();
    rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed).unwrap();
}

fn evict_store(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            evict_store(&entry.path());
        } else {
            evict(&entry.path());
        }
    }
}

/// The store's data file (`storaged/src/engine/layout.rs`) and page size (`page/header.rs`).
const DATA_FILE: &str = "pages.db";
const PAGE_SIZE: u64 = 8192;

/// The floor for a get from the disk: one page-sized pread at a random page of `path`, with the
/// file evicted from the page cache before each sample.
fn cold_read_latencies(path: &Path, samples: usize) -> (Duration, Duration) {
    let file = std::fs::File::open(path).unwrap();
    let pages = file.metadata().unwrap().len() / PAGE_SIZE;
    let mut buf = vec![0u8; PAGE_SIZE as usize];
    let offset = |x: u64| {
        evict(path);
        x % pages * PAGE_SIZE
    };
    latencies(samples, offset, |at| {
        file.read_exact_at(&mut buf, at).unwrap()
    })
}

fn scan_rate(e: &Engine) -> f64 {
    let started = Instant::now();
    let mut rows = 0usize;
    let mut scan = Scan {
        prefix: "key-".into(),
        start_after: None,
        limit: 1000,
    };
    loop {
        let page = e.scan("bench", "t", &scan).unwrap();
        rows += page.docs.len();
        match page.next_start_after {
            Some(after) => scan.start_after = Some(after),
            None => break,
        }
    }
    rows as f64 / started.elapsed().as_secs_f64()
}

/// Copies a store directory (and its subdirectories) durably, so one logged workload
/// can be recovered several times.
fn copy_store(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_store(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
            // Durable, like the log the engine wrote: recovery's sync of it stays cheap.
            std::fs::File::open(target).unwrap().sync_all().unwrap();
        }
    }
}

/// The floor recovery is compared with: read every WAL segment of `dir` sequentially (1 MiB
/// reads) and CRC32C all of it. Returns MB/s over the segment bytes.
fn read_crc_rate(dir: &Path) -> f64 {
    let mut buf = vec![0u8; 1 << 20];
    let started = Instant::now();
    let (mut bytes, mut crc) = (0u64, 0u32);
    let mut paths: Vec<_> = std::fs::read_dir(dir.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    paths.sort();
    for path in paths {
        let file = std::fs::File::open(path).unwrap();
        let mut at = 0u64;
        loop {
            let n = file.read_at(&mut buf, at).unwrap();
            if n == 0 {
                break;
            }
            crc = crc32c::crc32c_append(crc, &buf[..n]);
            at += n as u64;
        }
        bytes += at;
    }
    std::hint::black_box(crc);
    bytes as f64 / started.elapsed().as_secs_f64() / 1e6
}

struct ReplayRun {
    /// WAL bytes replayed per second of the whole `Engine::open`.
    open_mbps: f64,
    /// The same over `RecoveryReport::duration` (recovery alone, without starting the engine).
    recover_mbps: f64,
    bytes: u64,
    /// Segment bytes read + CRC32C per second, measured right before this open.
    baseline_mbps: f64,
    /// WAL bytes per second of open plus the first checkpoint, which writes the replayed pages
    /// recovery left in the buffer pool (so the deferred work is counted too).
    with_checkpoint_mbps: f64,
    pages_held: bool,
}

/// Logs a workload once (no checkpoint), then recovers fresh copies of it `runs` times, each
/// right after measuring the read+CRC baseline over the same WAL files (all in the page cache).
fn replay_rates(dir: &Path, runs: usize) -> Vec<ReplayRun> {
    let opts = EngineOptions {
        checkpoint_wal_bytes: 1 << 40,
        ..EngineOptions::default()
    };
    let logged = dir.join("logged");
    let e = setup(&logged, opts.clone());
    load(&e, 100_000);
    drop(e);
    (0..runs)
        .map(|i| {
            let copy = dir.join(format!("run-{i}"));
            copy_store(&logged, &copy);
            let _ = read_crc_rate(&copy); // warm the page cache
            let baseline_mbps = read_crc_rate(&copy);
            let started = Instant::now();
            let (e, report) = Engine::open(&copy, opts.clone()).unwrap();
            let secs = started.elapsed().as_secs_f64();
            e.checkpoint().unwrap();
            let with_checkpoint = started.elapsed().as_secs_f64();
            drop(e);
            let _ = std::fs::remove_dir_all(&copy);
            let bytes = report.bytes_replayed;
            ReplayRun {
                open_mbps: bytes as f64 / secs / 1e6,
                recover_mbps: bytes as f64 / report.duration.as_secs_f64() / 1e6,
                bytes,
                baseline_mbps,
                with_checkpoint_mbps: bytes as f64 / with_checkpoint / 1e6,
                pages_held: report.pages_held_for_checkpoint,
            }
        })
        .collect()
}

fn print_replay(root: &Path) {
    let mut runs = replay_rates(&root.join("replay"), 5);
    for r in &runs {
        println!(
            "  replay run: open {:.1} MB/s, recovery alone {:.1} MB/s, open + first checkpoint {:.1} MB/s (pages held for it: {}), read+CRC32C of the WAL {:.1} MB/s",
            r.open_mbps, r.recover_mbps, r.with_checkpoint_mbps, r.pages_held, r.baseline_mbps
        );
    }
    runs.sort_by(|a, b| a.open_mbps.total_cmp(&b.open_mbps));
    let m = &runs[runs.len() / 2];
    println!(
        "recovery replay (median of {}): {:.1} MB/s ({:.1} MB of WAL) = {:.2}x read+CRC32C of the same WAL ({:.1} MB/s); recovery alone {:.1} MB/s",
        runs.len(),
        m.open_mbps,
        m.bytes as f64 / 1e6,
        m.open_mbps / m.baseline_mbps,
        m.baseline_mbps,
        m.recover_mbps
    );
    runs.sort_by(|a, b| a.with_checkpoint_mbps.total_cmp(&b.with_checkpoint_mbps));
    let m = &runs[runs.len() / 2];
    println!(
        "recovery replay + first checkpoint (median): {:.1} MB/s = {:.2}x read+CRC32C of the same WAL",
        m.with_checkpoint_mbps,
        m.with_checkpoint_mbps / m.baseline_mbps
    );
}

fn print_commits(root: &Path, only: &str) {
    let writer_counts: Vec<usize> = match only.strip_prefix("commits=") {
        Some(n) => vec![n.parse().expect("commits=N")],
        None => vec![1, 8, 64],
    };
    let mut one = 0.0;
    for writers in writer_counts {
        let before = raw_fsync_rate(root, RUN / 2);
        let (rate, per_sync) = commit_rate(root.join(format!("commits-{writers}")), writers);
        let raw = (before + raw_fsync_rate(root, RUN / 2)) / 2.0;
        if writers == 1 {
            one = rate;
        }
        println!(
            "durable commits, {writers:>2} writers: {rate:>8.0}/s = {:.2}x raw ({raw:.0}/s around it), \
             {:.1}x one writer, {per_sync:.1} commits per fsync",
            rate / raw,
            rate / one
        );
    }
}

/// The real filesystem with a fixed delay after every fdatasync: a disk whose cache flush is
/// slower than the one under test, so commits are bound by the sync instead of the CPU.
struct SlowSync(Duration);

struct SlowSyncFile(Arc<dyn IoFile>, Duration);

impl IoFile for SlowSyncFile {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read_at(offset, buf)
    }
    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.0.write_at(offset, data)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()?;
        std::thread::sleep(self.1);
        Ok(())
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn len(&self) -> io::Result<u64> {
        self.0.len()
    }
}

impl IoBackend for SlowSync {
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn IoFile>> {
        Ok(Arc::new(SlowSyncFile(StdFs.open(path, create)?, self.0)))
    }
    fn exists(&self, path: &Path) -> io::Result<bool> {
        StdFs.exists(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        StdFs.rename(from, to)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        StdFs.remove(path)
    }
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        StdFs.list_dir(dir)
    }
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        StdFs.create_dir_all(dir)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        StdFs.sync_dir(dir)
    }
}

/// Group commit where the sync, not the CPU, is the limit: 1 and 64 writers with 1 ms added to
/// every fdatasync. The 64-writer figure is bound by the CPU on a disk as fast as a local NVMe
/// or a VM's virtio disk; this shows what the same code does on a slower-flushing disk.
fn print_slow_sync(root: &Path) {
    let mut one = 0.0;
    for writers in [1, 64] {
        let dir = root.join(format!("slowsync-{writers}"));
        let io = Arc::new(SlowSync(Duration::from_millis(1)));
        let (e, _) = Engine::open_with(io, &dir, EngineOptions::default()).expect("open");
        create_tables(&e);
        let (rate, per_sync) = commit_rate_on(Arc::new(e), writers);
        if writers == 1 {
            one = rate;
        }
        println!(
            "durable commits, fdatasync + 1 ms, {writers:>2} writers: {rate:>7.0}/s, \
             {:.1}x one writer, {per_sync:.1} commits per fsync",
            rate / one
        );
    }
}

fn print_reads(root: &Path) {
    let dir = root.join("reads");
    let n = 200_000;
    let e = setup(&dir, EngineOptions::default());
    load(&e, n);
    e.checkpoint().unwrap();
    let _ = get_latencies(&e, n, 50_000, || ());
    let (p50, p99) = get_latencies(&e, n, 200_000, || ());
    println!("point get from the buffer pool: p50 {p50:?}, p99 {p99:?}");
    println!(
        "scan: {:.0} rows/s (200-byte values, pages of 1000)",
        scan_rate(&e)
    );
    drop(e);
    let e = open(&dir, small_pool());
    let (p50, p99) = get_latencies(&e, n, 50_000, || ());
    println!(
        "point get through a 1 MiB pool (data file via the OS page cache): p50 {p50:?}, p99 {p99:?}, pool hit rate {:.0}%",
        pool_hit_rate(&e)
    );
    drop(e);
    print_cold_gets(&dir, n);
}

fn small_pool() -> EngineOptions {
    EngineOptions {
        buffer_pool_bytes: 1 << 20,
        ..EngineOptions::default()
    }
}

fn pool_hit_rate(e: &Engine) -> f64 {
    let s = e.stats();
    100.0 * s.pool_hits as f64 / (s.pool_hits + s.pool_misses).max(1) as f64
}

/// Gets through a fresh 1 MiB pool with the data file evicted from the OS page cache before
/// each one, so every pool miss reads the disk; next to a raw page read from the same file.
fn print_cold_gets(dir: &Path, n: u64) {
    let data = dir.join(DATA_FILE);
    let samples = 2_000;
    let (raw50, raw99) = cold_read_latencies(&data, samples);
    let e = open(dir, small_pool());
    let (p50, p99) = get_latencies(&e, n, samples, || evict(&data));
    println!(
        "point get from the disk (1 MiB pool, page cache evicted before each): p50 {p50:?}, p99 {p99:?} \
         = {:.2}x / {:.2}x a raw {PAGE_SIZE}-byte pread from the disk (p50 {raw50:?}, p99 {raw99:?}), \
         {:.2} page reads per get",
        p50.as_secs_f64() / raw50.as_secs_f64(),
        p99.as_secs_f64() / raw99.as_secs_f64(),
        e.stats().pool_misses as f64 / samples as f64
    );
}

/// Overwrites the first `KEYS` keys batch after batch until the store has logged `wal_bytes`.
/// The key set is small, so the dirty pages stay within the pool and nothing forces a checkpoint.
fn log_overwrites(e: &Engine, wal_bytes: u64) {
    const KEYS: u64 = 50_000;
    let mut batch = 0u64;
    while e.stats().wal_bytes < wal_bytes {
        let first = batch * 500 % KEYS;
        put_range(e, first..first + 500, batch * 500 / KEYS + 1);
        batch += 1;
    }
}

/// Opens a crashed store, reports the time and the replay rate next to reading and CRC32C-ing
/// its WAL (each after `prepare`, which sets the page cache up), then deletes the store.
fn timed_open(dir: &Path, opts: &EngineOptions, cache: &str, prepare: impl Fn(&Path)) {
    prepare(dir);
    let floor_mbps = read_crc_rate(dir);
    prepare(dir);
    let started = Instant::now();
    let (e, report) = Engine::open(dir, opts.clone()).unwrap();
    let secs = started.elapsed().as_secs_f64();
    // Replayed pages recovery left in the pool are written by the first checkpoint.
    e.checkpoint().unwrap();
    let with_checkpoint = started.elapsed().as_secs_f64();
    drop(e);
    std::fs::remove_dir_all(dir).unwrap();
    let mb = report.bytes_replayed as f64 / 1e6;
    println!(
        "open after a crash with {mb:.0} MB of WAL, {cache}: {secs:.2} s = {:.1} MB/s replayed \
         = {:.2}x read+CRC32C of the same WAL ({floor_mbps:.1} MB/s); recovery alone {:.2} s, {} records; \
         with the first checkpoint {with_checkpoint:.2} s (pages held for it: {})",
        mb / secs,
        mb / secs / floor_mbps,
        report.duration.as_secs_f64(),
        report.records_replayed,
        report.pages_held_for_checkpoint
    );
}

/// Time to open after a crash with `wal_bytes` of WAL since the last checkpoint: with the
/// store evicted from the OS page cache (a machine that restarted) and with it cached (a
/// process that restarted).
fn print_open_after_crash(root: &Path, wal_bytes: u64) {
    let opts = EngineOptions {
        checkpoint_wal_bytes: 1 << 40,
        checkpoint_interval: Duration::from_secs(1 << 30),
        ..EngineOptions::default()
    };
    let cold = root.join("crash-cold");
    let started = Instant::now();
    let e = setup(&cold, opts.clone());
    log_overwrites(&e, wal_bytes);
    let s = e.stats();
    assert_eq!(s.checkpoints, 0, "the whole log must still need replay");
    println!(
        "logged {:.0} MB of WAL without a checkpoint in {:.1} s ({} commits)",
        s.wal_bytes as f64 / 1e6,
        started.elapsed().as_secs_f64(),
        s.commits
    );
    // The crash. Dropping the engine only closes its files (it has no Drop impl that checkpoints
    // or syncs), and every commit was fsynced before it was acknowledged, so this leaves on disk
    // exactly what a kill -9 after the last acknowledged commit would.
    drop(e);
    let warm = root.join("crash-warm");
    copy_store(&cold, &warm);
    timed_open(&cold, &opts, "cold page cache", evict_store);
    timed_open(&warm, &opts, "warm page cache", |_| ());
}

/// Copies every file under `from` to `to` (fsynced, as a backup is): bytes per second in MB/s.
fn raw_copy_rate(from: &Path, to: &Path) -> f64 {
    let started = Instant::now();
    copy_store(from, to);
    let secs = started.elapsed().as_secs_f64();
    let bytes = dir_bytes(to);
    let _ = std::fs::remove_dir_all(to);
    bytes as f64 / secs / 1e6
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            match e.file_type().unwrap().is_dir() {
                true => dir_bytes(&e.path()),
                false => e.metadata().unwrap().len(),
            }
        })
        .sum()
}

fn print_backup(root: &Path) {
    use photondb_storaged::engine::{ArchiveOptions, RestoreTarget, restore};
    let dir = root.join("backup");
    let archive = dir.join("archive");
    let opts = EngineOptions {
        archive: Some(ArchiveOptions {
            dir: archive.clone(),
            max_unarchived_bytes: 1 << 40,
            command: None,
            command_timeout: Duration::from_secs(60),
            switch_interval: None,
            recipients: None,
        }),
        ..EngineOptions::default()
    };
    let store = dir.join("store");
    let e = Arc::new(setup(&store, opts));
    // A base backup of the empty store: restoring it with the archive replays the whole load.
    e.backup(&dir.join("base"), None).unwrap();
    load(&e, 200_000);
    e.seal_active_segment().unwrap();
    e.archive_pending().unwrap();

    e.checkpoint().unwrap();
    let raw = raw_copy_rate(&store, &dir.join("raw"));
    let started = Instant::now();
    let manifest = e.backup(&dir.join("full"), None).unwrap();
    let secs = started.elapsed().as_secs_f64();
    let bytes: u64 = manifest.files.iter().map(|f| f.size).sum();
    let backup_mbps = bytes as f64 / secs / 1e6;
    println!(
        "base backup: {backup_mbps:.1} MB/s ({:.1} MB, SHA-256 of every file, fsynced) = {:.2}x a raw copy of the store ({raw:.1} MB/s)",
        bytes as f64 / 1e6,
        backup_mbps / raw
    );

    let raw = raw_copy_rate(&archive, &dir.join("raw"));
    let started = Instant::now();
    let report = restore(
        &dir.join("base"),
        Some(&archive),
        &dir.join("restored"),
        RestoreTarget::Latest,
        None,
    )
    .unwrap();
    let secs = started.elapsed().as_secs_f64();
    let wal = report.recovery.bytes_replayed;
    let restore_mbps = wal as f64 / secs / 1e6;
    println!(
        "restore replaying the archive: {restore_mbps:.1} MB/s of WAL ({:.1} MB, {} segments; checked, copied, replayed, checkpointed, verified) = {:.2}x a raw copy of the archive ({raw:.1} MB/s)",
        wal as f64 / 1e6,
        report.segments_from_archive,
        restore_mbps / raw
    );

    let (alone, _) = commit_rate_on(e.clone(), 8);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let backups = {
        let (e, stop, dir) = (e.clone(), stop.clone(), dir.clone());
        std::thread::spawn(move || {
            let mut taken = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let to = dir.join(format!("during-{taken}"));
                e.backup(&to, None).unwrap();
                std::fs::remove_dir_all(&to).unwrap();
                taken += 1;
            }
            taken
        })
    };
    let (during, _) = commit_rate_on(e.clone(), 8);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let taken = backups.join().unwrap();
    println!(
        "8 writers while backups run back to back ({taken} backups): {during:.0} commits/s = {:.2}x their rate without ({alone:.0}/s)",
        during / alone
    );
}

fn main() {
    let root = bench_dir();
    println!("bench directory: {}", root.path().display());
    // PHOTONDB_BENCH_ONLY=<section>[=arg] runs one section; unset runs them all.
    let only = std::env::var("PHOTONDB_BENCH_ONLY").unwrap_or_default();
    let section = only.split('=').next().unwrap_or_default();
    let sections = ["commits", "slowsync", "reads", "replay", "open1g", "backup"];
    assert!(
        only.is_empty() || sections.contains(&section),
        "PHOTONDB_BENCH_ONLY must be one of {sections:?}"
    );
    let run = |name: &str| only.is_empty() || section == name;
    if run("commits") {
        print_commits(root.path(), &only);
    }
    if run("slowsync") {
        print_slow_sync(root.path());
    }
    if run("reads") {
        print_reads(root.path());
    }
    if run("replay") {
        print_replay(root.path());
    }
    if run("open1g") {
        print_open_after_crash(root.path(), 1 << 30);
    }
    if run("backup") {
        print_backup(root.path());
    }
}
