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
