//! Readers running alongside writers (and checkpoints) see each key move only forward, see
//! their own acknowledged writes, and never see a half-applied batch.

use photondb_storaged::engine::{
    BatchOp, Condition, Engine, EngineOptions, IoBackend, Scan, SimFs,
};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

const WRITERS: usize = 3;
const READERS: usize = 3;
const ROUNDS: u64 = 600;

fn open() -> Arc<Engine> {
    let io: Arc<dyn IoBackend> = Arc::new(SimFs::new());
    let opts = EngineOptions {
        wal_segment_size: 256 << 10,
        checkpoint_wal_bytes: 64 << 10,
        buffer_pool_bytes: 128 << 10,
        ..EngineOptions::default()
    };
    let e = Engine::open_with(io, Path::new("/db"), opts).unwrap().0;
    e.create_database("d").unwrap();
    e.create_table("d", "t").unwrap();
    Arc::new(e)
}

/// Each round a writer writes the round number to both keys of its pair in one batch.
fn writer(e: &Engine, w: usize) {
    for round in 1..=ROUNDS {
        let value = round.to_le_bytes().repeat(1 + (round as usize % 40));
        let ops = ["a", "b"]
            .map(|side| BatchOp::Put {
                key: format!("w{w}-{side}"),
                value: value.clone(),
                condition: Condition::Any,
            })
            .to_vec();
        let version = e.batch("d", "t", ops).unwrap();
        let seen = e.get("d", "t", &format!("w{w}-a")).unwrap().unwrap();
        assert!(
            seen.version >= version,
            "a writer reads its own acknowledged write"
        );
    }
}

fn round_of(value: &[u8]) -> u64 {
    u64::from_le_bytes(value[..8].try_into().unwrap())
}

/// Scans everything; both keys of a pair always carry the same round, and rounds only grow.
fn reader(e: &Engine, stop: &AtomicBool) {
    let mut last = [0u64; WRITERS];
    while !stop.load(Ordering::Relaxed) {
        let page = e
            .scan(
                "d",
                "t",
                &Scan {
                    prefix: String::new(),
                    start_after: None,
                    limit: 100,
                },
            )
            .unwrap();
        for pair in page.docs.chunks(2) {
            let w: usize = pair[0].key[1..2].parse().unwrap();
            assert_eq!(pair.len(), 2, "a batch is visible whole");
            assert_eq!(
                pair[0].version, pair[1].version,
                "both keys come from one batch"
            );
            let round = round_of(&pair[0].value);
            assert_eq!(round, round_of(&pair[1].value));
            assert!(
                round >= last[w],
                "writer {w} went back from round {} to {round}",
                last[w]
            );
            last[w] = round;
        }
    }
}

#[test]
fn readers_see_only_whole_batches_moving_forward() {
    let e = open();
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..READERS)
        .map(|_| {
            let (e, stop) = (e.clone(), stop.clone());
            std::thread::spawn(move || reader(&e, &stop))
        })
        .collect();
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let e = e.clone();
            std::thread::spawn(move || writer(&e, w))
        })
        .collect();
    writers.into_iter().for_each(|h| h.join().unwrap());
    stop.store(true, Ordering::Relaxed);
    readers.into_iter().for_each(|h| h.join().unwrap());
    assert!(e.stats().checkpoints > 0, "checkpoints ran during the test");
    assert!(e.verify().unwrap().is_clean());
}

/// A database drop takes several commits, and tables created meanwhile go with it: the commit
/// that removes the database is the one that finds no table left, so none outlives it.
#[test]
fn tables_created_during_a_database_drop_do_not_outlive_it() {
    use photondb_storaged::engine::{Error, What};
    let e = open();
    for i in 0..600 {
        e.create_table("d", &format!("t{i:04}")).unwrap();
    }
    let creator = {
        let e = e.clone();
        std::thread::spawn(move || {
            let mut created = 0;
            loop {
                match e.create_table("d", &format!("z{created:06}")) {
                    Ok(_) => created += 1,
                    Err(Error::NotFound(What::Database)) => return created,
                    Err(other) => panic!("creating a table: {other}"),
                }
            }
        })
    };
    e.drop_database("d").unwrap();
    let created: u32 = creator.join().unwrap();
    let report = e.verify().unwrap();
    assert!(
        report.is_clean() && report.cells == 0,
        "no table of the {created} created meanwhile remains: {report}"
    );
}

/// Many writers share fsyncs through the combining writer; an fsync that fails mid-run fails
/// every write it covered and every later one (no writer hangs, none is told "committed" for a
/// record that was not synced), and after a power cut every acknowledged write is there.
#[test]
fn concurrent_writers_through_a_failing_fsync_keep_every_acknowledged_write() {
    const THREADS: usize = 16;
    for (seed, fail_after) in [(1u64, 5u64), (2, 40), (3, 120)] {
        let fs = SimFs::new();
        let io: Arc<dyn IoBackend> = Arc::new(fs.clone());
        let opts = EngineOptions {
            wal_segment_size: 256 << 10,
            ..EngineOptions::default()
        };
        let e = Arc::new(
            Engine::open_with(io, Path::new("/db"), opts.clone())
                .unwrap()
                .0,
        );
        e.create_database("d").unwrap();
        e.create_table("d", "t").unwrap();
        fs.fail_sync_after(fail_after);
        let (tx, rx) = std::sync::mpsc::channel();
        for w in 0..THREADS {
            let (e, tx) = (e.clone(), tx.clone());
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                let mut failed = false;
                for i in 0..200 {
                    let key = format!("w{w:02}-{i:03}");
                    match e.put("d", "t", &key, key.as_bytes(), Condition::Any) {
                        Ok(version) => {
                            assert!(!failed, "a write succeeded after one failed");
                            acked.push((key, version));
                        }
                        Err(_) => failed = true,
                    }
                }
                tx.send((acked, failed)).unwrap();
            });
        }
        drop(tx);
        let mut acked = Vec::new();
        for _ in 0..THREADS {
            let (mine, failed) = rx
                .recv_timeout(std::time::Duration::from_secs(60))
                .expect("every writer returns (none is left waiting)");
            assert!(failed, "the fsync failure reached every writer");
            acked.extend(mine);
        }
        assert!(!acked.is_empty(), "some writes were acknowledged first");
        drop(e);
        let after: Arc<dyn IoBackend> = Arc::new(fs.crash(seed));
        let e = Engine::open_with(after, Path::new("/db"), opts).unwrap().0;
        for (key, version) in &acked {
            let doc = e.get("d", "t", key).unwrap();
            let doc = doc.unwrap_or_else(|| panic!("acknowledged {key} is lost (seed {seed})"));
            assert_eq!(doc.version, *version, "{key}");
            assert_eq!(doc.value, key.as_bytes());
        }
        assert!(e.verify().unwrap().is_clean());
    }
}

/// Runs `f` on its own thread and reports whether it finished within `within`.
fn finishes_within<T: Send + 'static>(
    within: std::time::Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> (bool, std::thread::JoinHandle<T>) {
    let handle = std::thread::spawn(f);
    let deadline = std::time::Instant::now() + within;
    while !handle.is_finished() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    (handle.is_finished(), handle)
}

/// Appends a record on its own thread (its sync held) and returns once it is in the log.
fn logged_not_durable<T: Send + 'static>(
    e: &Arc<Engine>,
    f: impl FnOnce(&Engine) -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let before = e.stats().wal_bytes;
    let writer = e.clone();
    let handle = std::thread::spawn(move || f(&writer));
    while e.stats().wal_bytes == before {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    handle
}

/// A refusal or a miss rests on the records before it as much as an answer with data does: if
/// it were answered before they are durable, a power cut could take back what it relied on.
#[test]
fn refusals_and_misses_wait_for_the_records_they_rest_on() {
    use photondb_storaged::engine::{Error, What};
    let patience = std::time::Duration::from_millis(300);
    let fs = SimFs::new();
    let io: Arc<dyn IoBackend> = Arc::new(fs.clone());
    let e = Arc::new(
        Engine::open_with(io, Path::new("/db"), EngineOptions::default())
            .unwrap()
            .0,
    );
    e.create_database("d").unwrap();
    e.create_table("d", "t").unwrap();
    e.create_table("d", "gone").unwrap();
    fs.hold_syncs();

    // A write refused because of a put that is logged but not yet durable.
    let put = logged_not_durable(&e, |e| e.put("d", "t", "k", b"v", Condition::Any));
    let writer = e.clone();
    let (answered, refused) = finishes_within(patience, move || {
        writer.put("d", "t", "k", b"w", Condition::IfAbsent)
    });
    assert!(
        !answered,
        "a refusal was answered before the put it rests on was durable"
    );

    // A read that finds no table because of a drop that is logged but not yet durable.
    let dropped = logged_not_durable(&e, |e| e.drop_table("d", "gone"));
    let reader = e.clone();
    let (answered, missed) = finishes_within(patience, move || reader.get("d", "gone", "k"));
    assert!(
        !answered,
        "a miss was answered before the drop it rests on was durable"
    );

    fs.release_syncs();
    let version = put.join().unwrap().unwrap();
    assert!(matches!(
        refused.join().unwrap(),
        Err(Error::VersionMismatch { actual: Some(v), .. }) if v == version
    ));
    dropped.join().unwrap().unwrap();
    assert!(matches!(
        missed.join().unwrap(),
        Err(Error::NotFound(What::Table))
    ));
}
