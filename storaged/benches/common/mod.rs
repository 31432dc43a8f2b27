//! What the engine bench (`storaged/benches/engine.rs`) and the peer bench (`bench-peers/`,
//! which includes this file by path) share: where they run, the raw fdatasync baseline, and the
//! durable-commit workload every store runs.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long each commit-rate run lasts.
pub(crate) const RUN: Duration = Duration::from_secs(3);

/// The document every commit writes: 100 bytes, under key `w{w}-{i}` for writer `w`'s `i`th.
pub(crate) const VALUE: [u8; 100] = [1; 100];

pub(crate) fn key(writer: usize, i: u64) -> String {
    format!("w{writer}-{i}")
}

/// A temporary directory in `PHOTONDB_BENCH_DIR` (the disk under test), else the system's.
pub(crate) fn bench_dir() -> tempfile::TempDir {
    match std::env::var_os("PHOTONDB_BENCH_DIR") {
        Some(dir) => tempfile::tempdir_in(dir),
        None => tempfile::tempdir(),
    }
    .expect("bench directory")
}

/// fdatasyncs per second of a 4 KiB write into a zero-filled 64 MiB file. The disks this runs
/// on are shared and their sync rate drifts, so callers measure it again around each run.
pub(crate) fn raw_fsync_rate(dir: &Path, run: Duration) -> f64 {
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(dir.join("raw"))
        .unwrap();
    file.write_all_at(&vec![0u8; 64 << 20], 0).unwrap();
    file.sync_all().unwrap();
    let block = [7u8; 4096];
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < run {
        file.write_all_at(&block, (n * 4096) % (64 << 20)).unwrap();
        file.sync_data().unwrap();
        n += 1;
    }
    n as f64 / started.elapsed().as_secs_f64()
}

/// Runs `writers` threads calling `commit(writer, i)` (one durable commit each) for `RUN`;
/// returns commits per second.
pub(crate) fn commit_rate(
    writers: usize,
    commit: impl Fn(usize, u64) + Send + Sync + 'static,
) -> f64 {
    let commit = Arc::new(commit);
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let handles: Vec<_> = (0..writers)
        .map(|w| {
            let (commit, stop, count) = (commit.clone(), stop.clone(), count.clone());
            std::thread::spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    commit(w, i);
                    count.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            })
        })
        .collect();
    std::thread::sleep(RUN);
    stop.store(true, Ordering::Relaxed);
    handles.into_iter().for_each(|h| h.join().unwrap());
    count.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}
