//! Durable commits/s of PhotonDB's engine, sled (flush after every write) and SQLite (WAL,
//! synchronous=FULL) with 1, 8 and 64 writers, in one run on one disk. Around each store the raw
//! 4 KiB write + fdatasync rate is measured again, so each figure is also a ratio to the disk as
//! it was at that moment. PHOTONDB_BENCH_DIR picks the disk.

use photondb_storaged::engine::{Condition, Engine, EngineOptions};
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const RUN: Duration = Duration::from_secs(3);
/// Every store writes the same documents as `storaged/benches/engine.rs`: key `w{w}-{i}` for
/// writer `w`'s `i`th commit, a 100-byte value.
const VALUE: [u8; 100] = [1; 100];

/// One durable commit of writer `w`'s `i`th document.
type Commit = Box<dyn Fn(usize, u64) + Send + Sync>;

/// Opens a fresh store in a directory for a number of writers.
type Open = fn(&Path, usize) -> Commit;

const STORES: [(&str, Open); 3] = [
    ("photondb", photondb),
    ("sled (flush per write)", sled),
    ("sqlite (WAL, synchronous=FULL)", sqlite),
];

fn bench_dir() -> tempfile::TempDir {
    match std::env::var_os("PHOTONDB_BENCH_DIR") {
        Some(dir) => tempfile::tempdir_in(dir),
        None => tempfile::tempdir(),
    }
    .expect("bench directory")
}

/// fdatasyncs per second of a 4 KiB write into a zero-filled 64 MiB file.
fn raw_fsync_rate(dir: &Path, run: Duration) -> f64 {
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

/// Runs `writers` threads calling `commit(writer, i)` for `RUN`; returns commits/s.
fn rate(writers: usize, commit: Commit) -> f64 {
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

fn photondb(dir: &Path, _writers: usize) -> Commit {
    let (e, _) = Engine::open(dir, EngineOptions::default()).unwrap();
    e.create_database("bench").unwrap();
    e.create_table("bench", "t").unwrap();
    Box::new(move |w, i| {
        e.put("bench", "t", &format!("w{w}-{i}"), &VALUE, Condition::Any)
            .unwrap();
    })
}

fn sled(dir: &Path, _writers: usize) -> Commit {
    let db = sled::open(dir).unwrap();
    Box::new(move |w, i| {
        db.insert(format!("w{w}-{i}"), &VALUE[..]).unwrap();
        db.flush().unwrap();
    })
}

/// One connection per writer, as SQLite serialises writers on a connection.
fn sqlite(dir: &Path, writers: usize) -> Commit {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("bench.db");
    let setup = rusqlite::Connection::open(&path).unwrap();
    setup.pragma_update(None, "journal_mode", "WAL").unwrap();
    setup
        .execute("CREATE TABLE docs (k TEXT PRIMARY KEY, v BLOB)", [])
        .unwrap();
    let conns: Vec<_> = (0..writers)
        .map(|_| {
            let c = rusqlite::Connection::open(&path).unwrap();
            c.pragma_update(None, "synchronous", "FULL").unwrap();
            c.busy_timeout(Duration::from_secs(30)).unwrap();
            Mutex::new(c)
        })
        .collect();
    Box::new(move |w, i| {
        let conn = conns[w].lock().unwrap();
        conn.execute(
            "INSERT OR REPLACE INTO docs VALUES (?1, ?2)",
            (format!("w{w}-{i}"), &VALUE[..]),
        )
        .unwrap();
    })
}

/// For each store in turn: its commits/s and the raw rate averaged over the half-runs measured
/// right before and right after it (each half-run is shared with the neighbouring store).
fn measure(root: &Path, writers: usize) -> Vec<(&'static str, f64, f64)> {
    let mut raw_before = raw_fsync_rate(root, RUN / 2);
    let mut out = Vec::new();
    for (name, open) in STORES {
        let dir = root.join(format!("{}-{writers}", name.split(' ').next().unwrap()));
        let commits = rate(writers, open(&dir, writers));
        std::fs::remove_dir_all(&dir).unwrap();
        let raw_after = raw_fsync_rate(root, RUN / 2);
        out.push((name, commits, (raw_before + raw_after) / 2.0));
        raw_before = raw_after;
    }
    out
}

fn main() {
    let root = bench_dir();
    println!("bench directory: {}", root.path().display());
    for writers in [1, 8, 64] {
        let results = measure(root.path(), writers);
        let photondb = results[0].1;
        for (name, commits, raw) in results {
            println!(
                "{writers:>2} writers, {name:<30} {commits:>8.0} commits/s = {:.2}x raw ({raw:.0}/s around it), {:.2}x photondb",
                commits / raw,
                commits / photondb
            );
        }
    }
}
