//! Durable commits/s of PhotonDB's engine, sled (flush after every write) and SQLite (WAL,
//! synchronous=FULL) with 1, 8 and 64 writers, in one run on one disk. Around each store the raw
//! 4 KiB write + fdatasync rate is measured again, so each figure is also a ratio to the disk as
//! it was at that moment. PHOTONDB_BENCH_DIR picks the disk.

use photondb_storaged::engine::{Condition, Engine, EngineOptions};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

#[path = "../../storaged/benches/common/mod.rs"]
mod common;

use common::{RUN, VALUE, bench_dir, commit_rate, key, raw_fsync_rate};

/// One durable commit of writer `w`'s `i`th document.
type Commit = Box<dyn Fn(usize, u64) + Send + Sync>;

/// Opens a fresh store in a directory for a number of writers.
type Open = fn(&Path, usize) -> Commit;

const STORES: [(&str, Open); 3] = [
    ("photondb", photondb),
    ("sled (flush per write)", sled),
    ("sqlite (WAL, synchronous=FULL)", sqlite),
];

fn photondb(dir: &Path, _writers: usize) -> Commit {
    let (e, _) = Engine::open(dir, EngineOptions::default()).unwrap();
    e.create_database("bench").unwrap();
    e.create_table("bench", "t").unwrap();
    Box::new(move |w, i| {
        e.put("bench", "t", &key(w, i), &VALUE, Condition::Any)
            .unwrap();
    })
}

fn sled(dir: &Path, _writers: usize) -> Commit {
    let db = sled::open(dir).unwrap();
    Box::new(move |w, i| {
        db.insert(key(w, i), &VALUE[..]).unwrap();
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
            (key(w, i), &VALUE[..]),
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
        let commits = commit_rate(writers, open(&dir, writers));
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
