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
