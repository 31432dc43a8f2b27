//! Crash simulation: concurrent writers, power cuts at many points, and after each one every
//! acknowledged write is present with its version, no batch is partly visible, verify is clean.
//!
//! The simulated crash is seeded (which unsynced writes survive, torn at 512-byte sectors);
//! thread interleaving is not, so a failure prints the seed and the crash point to rerun with
//! `PHOTONDB_CRASH_SEED`. `PHOTONDB_LONG_TESTS=1` runs more and longer workloads.

use photondb_storaged::engine::{
    BatchOp, Condition, Engine, EngineOptions, Error, IoBackend, List, Scan, SimFs, What,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

const KEYS_PER_WRITER: usize = 12;

type State = BTreeMap<String, (Vec<u8>, u64)>;
type Values = BTreeMap<String, Vec<u8>>;

fn long() -> bool {
    std::env::var("PHOTONDB_LONG_TESTS").is_ok_and(|v| v == "1")
}

fn opts() -> EngineOptions {
    EngineOptions {
        wal_segment_size: 256 << 10,
        checkpoint_wal_bytes: 96 << 10,
        buffer_pool_bytes: 256 << 10,
        ..EngineOptions::default()
    }
}

fn open(fs: &SimFs) -> Engine {
    let io: Arc<dyn IoBackend> = Arc::new(fs.clone());
    match Engine::open_with(io, Path::new("/db"), opts()) {
        Ok((e, _)) => e,
        Err(err) => panic!("reopen after a crash failed:\n{err}"),
    }
}

/// One writer's acknowledged history: the state of its keys after each acknowledged op, and
/// the values it would have after the op in flight.
#[derive(Default, Clone)]
struct History {
    acked: Vec<State>,
    in_flight: Option<Values>,
}

fn values(state: &State) -> Values {
    state
        .iter()
        .map(|(k, (v, _))| (k.clone(), v.clone()))
        .collect()
}

struct Writer {
    id: usize,
    rng: StdRng,
    state: State,
    log: Arc<Mutex<History>>,
}

impl Writer {
    fn key(&mut self) -> String {
        format!("w{}-{:02}", self.id, self.rng.gen_range(0..KEYS_PER_WRITER))
    }

    fn value(&mut self) -> Vec<u8> {
        let len = if self.rng.gen_bool(0.05) {
            self.rng.gen_range(1500..6000)
        } else {
            self.rng.gen_range(0..200)
        };
        let fill = self.rng.r#gen::<u8>();
        vec![fill; len]
    }

    fn random_ops(&mut self) -> Vec<BatchOp> {
        let n = if self.rng.gen_bool(0.3) {
            self.rng.gen_range(2..6)
        } else {
            1
        };
        let mut planned = self.state.clone();
        let mut ops = Vec::new();
        for _ in 0..n {
            let key = self.key();
            // A key this batch already wrote has the batch's (unknown) version: no condition.
            let touched = ops.iter().any(|op| matches!(op, BatchOp::Put { key: k, .. } | BatchOp::Delete { key: k, .. } if *k == key));
            if touched {
                let value = self.value();
                planned.insert(key.clone(), (value.clone(), 0));
                ops.push(BatchOp::Put {
                    key,
                    value,
                    condition: Condition::Any,
                });
                continue;
            }
            let current = planned.get(&key).map(|(_, v)| *v);
            let op = match (current, self.rng.gen_range(0..3)) {
                (Some(v), 0) => BatchOp::Delete {
                    key: key.clone(),
                    condition: Condition::IfVersion(v),
                },
                (Some(v), 1) => BatchOp::Put {
                    key: key.clone(),
                    value: self.value(),
                    condition: Condition::IfVersion(v),
                },
                (None, 1) => BatchOp::Put {
                    key: key.clone(),
                    value: self.value(),
                    condition: Condition::IfAbsent,
                },
                _ => BatchOp::Put {
                    key: key.clone(),
                    value: self.value(),
                    condition: Condition::Any,
                },
            };
            match &op {
                BatchOp::Delete { .. } => planned.remove(&key),
                BatchOp::Put { value, .. } => planned.insert(key, (value.clone(), 0)),
            };
            ops.push(op);
        }
        ops
    }

    fn apply(&mut self, ops: &[BatchOp], version: u64) {
        for op in ops {
            match op {
                BatchOp::Put { key, value, .. } => {
                    self.state.insert(key.clone(), (value.clone(), version))
                }
                BatchOp::Delete { key, .. } => self.state.remove(key),
            };
        }
    }

    fn step(&mut self, e: &Engine) {
        let ops = self.random_ops();
        let mut next = self.state.clone();
        for op in &ops {
            match op {
                BatchOp::Put { key, value, .. } => next.insert(key.clone(), (value.clone(), 0)),
                BatchOp::Delete { key, .. } => next.remove(key),
            };
        }
        self.log.lock().unwrap().in_flight = Some(values(&next));
        let version = match ops.as_slice() {
            [
                BatchOp::Put {
                    key,
                    value,
                    condition,
                },
            ] => e.put("d", "t", key, value, *condition),
            [BatchOp::Delete { key, condition }] => e.delete("d", "t", key, *condition),
            _ => e.batch("d", "t", ops.clone()),
        };
        let version = version.unwrap_or_else(|err| panic!("writer {} op failed: {err}", self.id));
        self.apply(&ops, version);
        let mut log = self.log.lock().unwrap();
        log.acked.push(self.state.clone());
        log.in_flight = None;
    }
}

/// A crash image and, per writer, what had been acknowledged around the instant it was taken.
struct CrashPoint {
    fs: SimFs,
    seed: u64,
    before: Vec<usize>,
    after: Vec<History>,
}

/// Counts a writer as finished even when it panics, so the crash loop never waits forever.
struct Finished(Arc<AtomicUsize>);

impl Drop for Finished {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn read_writer(e: &Engine, id: usize) -> State {
    let scan = Scan {
        prefix: format!("w{id}-"),
        start_after: None,
        limit: 1000,
    };
    let page = e.scan("d", "t", &scan).unwrap();
    page.docs
        .into_iter()
        .map(|d| (d.key, (d.value, d.version)))
        .collect()
}

fn describe_difference(expected: Option<&State>, found: &State) -> String {
    let empty = State::new();
    let expected = expected.unwrap_or(&empty);
    let keys: std::collections::BTreeSet<&String> = expected.keys().chain(found.keys()).collect();
    let show = |s: Option<&(Vec<u8>, u64)>| {
        s.map(|(v, ver)| format!("{} bytes of {:?} @ {ver}", v.len(), v.first()))
    };
    keys.into_iter()
        .filter(|k| expected.get(*k) != found.get(*k))
        .map(|k| {
            format!(
                "{k}: expected {:?}, found {:?}\n",
                show(expected.get(k)),
                show(found.get(k))
            )
        })
        .collect()
}

fn check(point: &CrashPoint, writers: usize) {
    let e = open(&point.fs);
    let report = e.verify().unwrap();
    assert!(
        report.is_clean(),
        "seed {}: verify after crash:\n{report}",
        point.seed
    );
    for id in 0..writers {
        let found = read_writer(&e, id);
        let history = &point.after[id];
        // The state after j acknowledged ops, for every j the crash may have caught.
        let empty = State::new();
        let after_j = |j: usize| {
            if j == 0 {
                &empty
            } else {
                &history.acked[j - 1]
            }
        };
        let acked_ok = (point.before[id]..=history.acked.len()).any(|j| *after_j(j) == found);
        let in_flight_ok = history
            .in_flight
            .as_ref()
            .is_some_and(|v| *v == values(&found));
        assert!(
            acked_ok || in_flight_ok,
            "seed {}: writer {id} recovered a state that is not an acknowledged prefix \
             (acknowledged before the crash: {}, after: {})\nfound: {:?}",
            point.seed,
            point.before[id],
            history.acked.len(),
            describe_difference(Some(after_j(history.acked.len())), &found)
        );
    }
}

fn run(seed: u64, writers: usize, ops_per_writer: usize, crash_every: usize) {
    let fs = SimFs::new();
    let e = Arc::new(open(&fs));
    e.create_database("d").unwrap();
    e.create_table("d", "t").unwrap();
    let logs: Vec<Arc<Mutex<History>>> = (0..writers).map(|_| Arc::default()).collect();
    let acks = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..writers)
        .map(|id| {
            let (e, log, acks, finished) =
                (e.clone(), logs[id].clone(), acks.clone(), finished.clone());
            let rng = StdRng::seed_from_u64(seed * 1000 + id as u64);
            std::thread::spawn(move || {
                let mut w = Writer {
                    id,
                    rng,
                    state: State::new(),
                    log,
                };
                let _finish = Finished(finished);
                for _ in 0..ops_per_writer {
                    w.step(&e);
                    acks.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    let mut points = Vec::new();
    let mut next = crash_every;
    let total = writers * ops_per_writer;
    while next < total {
        while acks.load(Ordering::SeqCst) < next && finished.load(Ordering::SeqCst) < writers {
            std::thread::yield_now();
        }
        let before = logs.iter().map(|l| l.lock().unwrap().acked.len()).collect();
        let crash_seed = seed * 7919 + next as u64;
        let crashed = fs.crash(crash_seed);
        let after = logs.iter().map(|l| l.lock().unwrap().clone()).collect();
        points.push(CrashPoint {
            fs: crashed,
            seed: crash_seed,
            before,
            after,
        });
        next += crash_every;
    }
    handles.into_iter().for_each(|h| h.join().unwrap());
    let last_seed = seed * 7919 + total as u64;
    let before: Vec<usize> = logs.iter().map(|l| l.lock().unwrap().acked.len()).collect();
    let after = logs.iter().map(|l| l.lock().unwrap().clone()).collect();
    points.push(CrashPoint {
        fs: fs.crash(last_seed),
        seed: last_seed,
        before,
        after,
    });
    for point in &points {
        check(point, writers);
    }
}

fn seeds() -> Vec<u64> {
    match std::env::var("PHOTONDB_CRASH_SEED") {
        Ok(s) => vec![s.parse().expect("PHOTONDB_CRASH_SEED is a number")],
        Err(_) if long() => (1..=20).collect(),
        Err(_) => (1..=6).collect(),
    }
}

#[test]
fn acknowledged_writes_survive_crashes_at_many_points() {
    for seed in seeds() {
        eprintln!("crash simulation seed {seed}");
        let ops = if long() { 400 } else { 150 };
        run(seed, 4, ops, if long() { 25 } else { 10 });
    }
}

#[test]
fn a_lone_writer_loses_nothing_it_was_told_was_durable() {
    for seed in seeds() {
        run(seed + 100, 1, if long() { 300 } else { 80 }, 7);
    }
}

#[test]
fn a_crash_during_drop_finishes_the_drop_on_reopen() {
    let fs = SimFs::new();
    let e = open(&fs);
    e.create_database("d").unwrap();
    e.create_table("d", "t").unwrap();
    for i in 0..600 {
        e.put("d", "t", &format!("k{i:04}"), &[5u8; 64], Condition::Any)
            .unwrap();
    }
    e.drop_table("d", "t").unwrap();
    for seed in 0..5 {
        let e = open(&fs.crash(seed));
        assert!(matches!(e.get("d", "t", "k0001"), Err(Error::NotFound(_))));
        let report = e.verify().unwrap();
        assert!(
            report.is_clean() && report.cells == 1,
            "only the database entry remains: {report}"
        );
    }
}

/// The tables of `db` (every page), or `None` once the database is gone.
fn tables_of(e: &Engine, db: &str) -> Option<Vec<String>> {
    let mut list = List {
        start_after: None,
        limit: 1000,
    };
    let mut tables = Vec::new();
    loop {
        match e.list_tables(db, &list) {
            Ok(page) => {
                tables.extend(page.names);
                match page.next_start_after {
                    Some(after) => list.start_after = Some(after),
                    None => return Some(tables),
                }
            }
            Err(Error::NotFound(What::Database)) => return None,
            Err(other) => panic!("listing {db}: {other}"),
        }
    }
}

/// Dropping a database with many tables takes several commits. Cut off after any of them (an
/// injected sync failure, then a power cut), the store is consistent: the database is gone, or
/// it remains with the last of its tables in name order (the drop unlinks the first ones
/// first), every dropped table is gone whole, documents included, and dropping the database
/// again finishes the job.
#[test]
fn a_database_drop_cut_off_midway_leaves_fewer_tables_and_a_second_drop_finishes() {
    let fs = SimFs::new();
    let e = open(&fs);
    e.create_database("d").unwrap();
    let tables: Vec<String> = (0..700).map(|i| format!("t{i:04}")).collect();
    for t in &tables {
        e.create_table("d", t).unwrap();
        e.put("d", t, "k", &[3u8; 32], Condition::Any).unwrap();
    }
    e.checkpoint().unwrap();
    drop(e);
    let mut partly_dropped = 0;
    for fail_at in 0..12u64 {
        // Everything above was acknowledged, so every power cut keeps all of it.
        let attempt = fs.crash(fail_at);
        let e = open(&attempt);
        attempt.fail_sync_after(fail_at);
        // Fails unless the drop needs fewer syncs than `fail_at`; checked by what remains.
        let _ = e.drop_database("d");
        drop(e);
        let e = open(&attempt.crash(fail_at + 1000));
        let report = e.verify().unwrap();
        assert!(report.is_clean(), "failure at sync {fail_at}: {report}");
        let left = tables_of(&e, "d").unwrap_or_default();
        let gone = tables.len() - left.len();
        assert_eq!(left, tables[gone..], "failure at sync {fail_at}");
        for t in &tables[..gone] {
            assert!(matches!(e.get("d", t, "k"), Err(Error::NotFound(_))), "{t}");
        }
        for t in &left {
            assert!(e.get("d", t, "k").unwrap().is_some(), "{t}");
        }
        partly_dropped += usize::from(0 < gone && gone < tables.len());
        if tables_of(&e, "d").is_some() {
            e.drop_database("d").unwrap();
        }
        assert!(tables_of(&e, "d").is_none());
        let report = e.verify().unwrap();
        assert!(
            report.is_clean() && report.cells == 0,
            "nothing remains after the second drop: {report}"
        );
    }
    assert!(
        partly_dropped >= 2,
        "some cuts fell between the drop's commits ({partly_dropped} of 12)"
    );
}

/// Recovery writes pages, a control slot and maybe a cut (or, when the replayed pages fit in the
/// pool, leaves the pages to the first checkpoint); an error or power cut at any of those writes
/// must leave a store that the next recovery opens with the same contents.
#[test]
fn a_crash_during_recovery_is_recovered_by_recovery() {
    let fs = SimFs::new();
    let e = open(&fs);
    e.create_database("d").unwrap();
    e.create_table("d", "t").unwrap();
    e.checkpoint().unwrap();
    let mut expected = BTreeMap::new();
    for i in 0..300 {
        let key = format!("k{:03}", i % 150);
        let value = vec![i as u8; 50 + i % 700];
        let version = e.put("d", "t", &key, &value, Condition::Any).unwrap();
        expected.insert(key, (value, version));
    }
    drop(e);
    // A torn tail too, so recovery also has a cut to make.
    let crashed = fs.crash(99);
    let wal = Path::new("/db/wal");
    let names = crashed.list_dir(wal).unwrap();
    let active = wal.join(names.iter().filter(|n| n.ends_with(".wal")).max().unwrap());
    let tail = crashed.read_file(&active).unwrap();
    let end = tail.iter().rposition(|&b| b != 0).unwrap() as u64 + 1;
    crashed.corrupt(&active, end + 64, &[0xAB; 100]);
    // A one-page pool holds none of them: recovery writes them itself. The default test pool
    // holds them, and the first checkpoint writes them.
    let written_now = EngineOptions {
        buffer_pool_bytes: 8 << 10,
        ..opts()
    };
    for (pool, options, held) in [("8 KiB", written_now, false), ("256 KiB", opts(), true)] {
        let mut interrupted = 0;
        for fail_at in 0..40u64 {
            let attempt = crashed.crash(fail_at);
            if fail_at % 2 == 0 {
                attempt.fail_write_after(fail_at / 2);
            } else {
                attempt.fail_sync_after(fail_at / 2);
            }
            let io: Arc<dyn IoBackend> = Arc::new(attempt.clone());
            let failed = match Engine::open_with(io, Path::new("/db"), options.clone()) {
                Ok((e, report)) => {
                    assert_eq!(report.pages_held_for_checkpoint, held, "{pool}");
                    e.checkpoint().is_err()
                }
                Err(_) => true,
            };
            interrupted += usize::from(failed);
            let e = open(&attempt.crash(fail_at + 1000));
            assert_eq!(
                read_all(&e),
                expected,
                "{pool} pool, failure at i/o {fail_at}"
            );
            assert!(e.verify().unwrap().is_clean());
        }
        assert!(
            interrupted >= 10,
            "the injected errors hit recovery and its checkpoint ({interrupted} of 40, {pool})"
        );
    }
}

fn read_all(e: &Engine) -> State {
    let page = e
        .scan(
            "d",
            "t",
            &Scan {
                prefix: String::new(),
                start_after: None,
                limit: 1000,
            },
        )
        .unwrap();
    page.docs
        .into_iter()
        .map(|d| (d.key, (d.value, d.version)))
        .collect()
}

/// Pages recovery left in the pool are not yet in the data file: commits made on top of them
/// and further power cuts before any checkpoint replay from the old redo point, losing nothing.
#[test]
fn commits_on_replayed_pages_survive_a_crash_before_the_first_checkpoint() {
    let no_checkpoint = EngineOptions {
        checkpoint_wal_bytes: 64 << 20,
        ..opts()
    };
    let open_held = |fs: &SimFs| {
        let io: Arc<dyn IoBackend> = Arc::new(fs.clone());
        Engine::open_with(io, Path::new("/db"), no_checkpoint.clone()).unwrap()
    };
    let mut expected = BTreeMap::new();
    let mut put = |e: &Engine, i: usize| {
        let key = format!("k{:03}", i % 40);
        let value = vec![i as u8; 20 + i % 300];
        let version = e.put("d", "t", &key, &value, Condition::Any).unwrap();
        expected.insert(key, (value, version));
    };
    let fs = SimFs::new();
    let (e, _) = open_held(&fs);
    e.create_database("d").unwrap();
    e.create_table("d", "t").unwrap();
    e.checkpoint().unwrap();
    (0..60).for_each(|i| put(&e, i));
    drop(e);
    let mut current = fs.crash(7);
    for round in 0..3 {
        let (e, report) = open_held(&current);
        assert!(report.pages_held_for_checkpoint, "round {round}: {report}");
        (0..30).for_each(|i| put(&e, 100 * (round + 1) + i));
        assert_eq!(e.stats().checkpoints, 0, "round {round} ran no checkpoint");
        drop(e);
        current = current.crash(round as u64);
    }
    let e = open(&current);
    assert_eq!(read_all(&e), expected);
    assert!(e.verify().unwrap().is_clean());
}
