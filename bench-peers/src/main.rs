//! Durable commits/s of sled (flush after every write) and SQLite (WAL, synchronous=FULL) with
//! 1, 8 and 64 writers, next to the raw 4 KiB write + fdatasync rate of the same disk.
//! PHOTONDB_BENCH_DIR picks the disk.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const RUN: Duration = Duration::from_secs(3);

fn bench_dir() -> tempfile::TempDir {
    match std::env::var_os("PHOTONDB_BENCH_DIR") {
        Some(dir) => tempfile::tempdir_in(dir),
        None => tempfile::tempdir(),
    }
    .expect("bench directory")
}

fn raw_fsync_rate(dir: &Path) -> f64 {
    let file = OpenOptions::new().create(true).read(true).write(true).open(dir.join("raw")).unwrap();
    file.write_all_at(&vec![0u8; 64 << 20], 0).unwrap();
    file.sync_all().unwrap();
    let block = [7u8; 4096];
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < RUN {
        file.write_all_at(&block, (n * 4096) % (64 << 20)).unwrap();
        file.sync_data().unwrap();
        n += 1;
    }
    n as f64 / started.elapsed().as_secs_f64()
}

/// Runs `writers` threads calling `commit(writer, i)` for `RUN`; returns commits/s.
fn rate(writers: usize, commit: impl Fn(usize, u64) + Send + Sync + 'static) -> f64 {
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

fn sled_rate(dir: &Path, writers: usize) -> f64 {
    let db = sled::open(dir.join(format!("sled-{writers}"))).unwrap();
    rate(writers, move |w, i| {
        db.insert(format!("w{w}-{i}"), &[1u8; 100][..]).unwrap();
        db.flush().unwrap();
    })
}

fn sqlite_rate(dir: &Path, writers: usize) -> f64 {
    let path = dir.join(format!("sqlite-{writers}.db"));
    let setup = rusqlite::Connection::open(&path).unwrap();
    setup.pragma_update(None, "journal_mode", "WAL").unwrap();
    setup.execute("CREATE TABLE docs (k TEXT PRIMARY KEY, v BLOB)", []).unwrap();
    let conns: Vec<_> = (0..writers)
        .map(|_| {
            let c = rusqlite::Connection::open(&path).unwrap();
            c.pragma_update(None, "synchronous", "FULL").unwrap();
            c.busy_timeout(Duration::from_secs(30)).unwrap();
            std::sync::Mutex::new(c)
        })
        .collect();
    rate(writers, move |w, i| {
        let conn = conns[w].lock().unwrap();
        conn.execute("INSERT OR REPLACE INTO docs VALUES (?1, ?2)", (format!("w{w}-{i}"), &[1u8; 100][..])).unwrap();
    })
}

fn main() {
    let root = bench_dir();
    let raw = raw_fsync_rate(root.path());
    println!("raw 4 KiB write + fdatasync: {raw:.0}/s");
    for writers in [1, 8, 64] {
        let s = sled_rate(root.path(), writers);
        println!("sled (flush per write), {writers:>2} writers: {s:>8.0}/s = {:.2}x raw", s / raw);
    }
    for writers in [1, 8, 64] {
        let s = sqlite_rate(root.path(), writers);
        println!("sqlite (WAL, synchronous=FULL), {writers:>2} writers: {s:>8.0}/s = {:.2}x raw", s / raw);
    }
}
