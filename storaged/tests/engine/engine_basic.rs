//! Documents, tables and databases behave as the API promises, and survive a reopen.

use photondb_storaged::engine::{
    BatchOp, Condition, ENGINE_DROP_TABLES_PER_COMMIT, ENGINE_MAX_SCAN_BYTES, Engine,
    EngineOptions, Error, IoBackend, List, ListPage, Scan, SimFs, What, inspect_with,
};
use std::path::Path;
use std::sync::Arc;

fn opts() -> EngineOptions {
    EngineOptions {
        wal_segment_size: 1 << 20,
        buffer_pool_bytes: 1 << 20,
        ..EngineOptions::default()
    }
}

fn open(fs: &SimFs) -> Engine {
    let io: Arc<dyn IoBackend> = Arc::new(fs.clone());
    Engine::open_with(io, Path::new("/db"), opts())
        .expect("open")
        .0
}

fn first_page() -> List {
    List {
        start_after: None,
        limit: 100,
    }
}

fn databases(e: &Engine) -> Vec<String> {
    e.list_databases(&first_page()).unwrap().names
}

fn with_table() -> (SimFs, Engine) {
    let fs = SimFs::new();
    let e = open(&fs);
    e.create_database("app").unwrap();
    e.create_table("app", "users").unwrap();
    (fs, e)
}

#[test]
fn put_get_delete_carry_versions() {
    let (_fs, e) = with_table();
    let v1 = e
        .put("app", "users", "alice", b"{\"a\":1}", Condition::Any)
        .unwrap();
    let doc = e.get("app", "users", "alice").unwrap().unwrap();
    assert_eq!((doc.value.as_slice(), doc.version), (&b"{\"a\":1}"[..], v1));
    let v2 = e
        .put("app", "users", "alice", b"2", Condition::IfVersion(v1))
        .unwrap();
    assert!(v2 > v1);
    let stale = e.put("app", "users", "alice", b"3", Condition::IfVersion(v1));
    assert!(
        matches!(stale, Err(Error::VersionMismatch { expected: Some(_), actual: Some(a) }) if a == v2)
    );
    assert!(matches!(
        e.put("app", "users", "alice", b"3", Condition::IfAbsent),
        Err(Error::VersionMismatch { .. })
    ));
    e.delete("app", "users", "alice", Condition::IfVersion(v2))
        .unwrap();
    assert_eq!(e.get("app", "users", "alice").unwrap(), None);
    assert!(matches!(
        e.delete("app", "users", "alice", Condition::Any),
        Err(Error::NotFound(What::Document))
    ));
}

#[test]
fn missing_and_duplicate_names_are_reported() {
    let (_fs, e) = with_table();
    assert!(matches!(
        e.create_database("app"),
        Err(Error::AlreadyExists(What::Database))
    ));
    assert!(matches!(
        e.create_table("app", "users"),
        Err(Error::AlreadyExists(What::Table))
    ));
    assert!(matches!(
        e.get("nope", "users", "k"),
        Err(Error::NotFound(What::Database))
    ));
    assert!(matches!(
        e.get("app", "nope", "k"),
        Err(Error::NotFound(What::Table))
    ));
    // The engine bounds a name's length and keeps NUL (its catalog separator) out; the shape
    // of a name on the wire ([a-z0-9_-]) is the service's check (storaged/src/wire.rs).
    for bad in [String::new(), "a".repeat(65), "a\0b".to_owned()] {
        assert!(
            matches!(e.create_database(&bad), Err(Error::InvalidArgument(_))),
            "{bad:?}"
        );
    }
    assert!(matches!(
        e.put("app", "users", "", b"", Condition::Any),
        Err(Error::InvalidArgument(_))
    ));
    let big = vec![0u8; (1 << 20) + 1];
    assert!(matches!(
        e.put("app", "users", "k", &big, Condition::Any),
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(databases(&e), ["app"]);
    let tables = e.list_tables("app", &first_page()).unwrap();
    assert_eq!(tables.names, ["users"]);
}

#[test]
fn scans_page_through_a_prefix_in_order() {
    let (_fs, e) = with_table();
    for i in 0..300 {
        e.put(
            "app",
            "users",
            &format!("user/{i:04}"),
            format!("{i}").as_bytes(),
            Condition::Any,
        )
        .unwrap();
        e.put(
            "app",
            "users",
            &format!("other/{i:04}"),
            b"x",
            Condition::Any,
        )
        .unwrap();
    }
    let mut seen = Vec::new();
    let mut scan = Scan {
        prefix: "user/".into(),
        start_after: None,
        limit: 64,
    };
    loop {
        let page = e.scan("app", "users", &scan).unwrap();
        seen.extend(page.docs.into_iter().map(|d| d.key));
        match page.next_start_after {
            Some(after) => scan.start_after = Some(after),
            None => break,
        }
    }
    let expected: Vec<String> = (0..300).map(|i| format!("user/{i:04}")).collect();
    assert_eq!(seen, expected);
}

#[test]
fn a_failed_batch_changes_nothing() {
    let (_fs, e) = with_table();
    let v = e.put("app", "users", "a", b"1", Condition::Any).unwrap();
    let ops = vec![
        BatchOp::Put {
            key: "b".into(),
            value: b"2".to_vec(),
            condition: Condition::Any,
        },
        BatchOp::Put {
            key: "a".into(),
            value: b"x".to_vec(),
            condition: Condition::IfVersion(v + 1),
        },
    ];
    assert!(matches!(
        e.batch("app", "users", ops),
        Err(Error::VersionMismatch { .. })
    ));
    assert_eq!(e.get("app", "users", "b").unwrap(), None);
    let ops = vec![
        BatchOp::Put {
            key: "b".into(),
            value: b"2".to_vec(),
            condition: Condition::IfAbsent,
        },
        BatchOp::Delete {
            key: "a".into(),
            condition: Condition::IfVersion(v),
        },
    ];
    let lsn = e.batch("app", "users", ops).unwrap();
    assert_eq!(e.get("app", "users", "b").unwrap().unwrap().version, lsn);
    assert_eq!(e.get("app", "users", "a").unwrap(), None);
}

#[test]
fn large_values_live_on_overflow_pages_and_are_freed() {
    let io: Arc<dyn IoBackend> = Arc::new(SimFs::new());
    let opts = EngineOptions {
        wal_segment_size: 4 << 20,
        ..opts()
    };
    let (e, _) = Engine::open_with(io, Path::new("/db"), opts).unwrap();
    e.create_database("app").unwrap();
    e.create_table("app", "users").unwrap();
    let big: Vec<u8> = (0..(1 << 20)).map(|i| (i % 251) as u8).collect();
    e.put("app", "users", "big", &big, Condition::Any).unwrap();
    assert_eq!(e.get("app", "users", "big").unwrap().unwrap().value, big);
    e.put("app", "users", "big", b"small", Condition::Any)
        .unwrap();
    let report = e.verify().unwrap();
    assert!(report.is_clean(), "{report}");
    assert!(
        report.free_pages >= 128,
        "the old chain went to the free list: {report}"
    );
}

#[test]
fn dropping_tables_and_databases_frees_their_pages() {
    let (_fs, e) = with_table();
    for i in 0..2000 {
        e.put(
            "app",
            "users",
            &format!("k{i:05}"),
            &[7u8; 300],
            Condition::Any,
        )
        .unwrap();
    }
    e.create_table("app", "other").unwrap();
    e.put("app", "other", "x", b"1", Condition::Any).unwrap();
    e.drop_table("app", "users").unwrap();
    assert!(matches!(
        e.get("app", "users", "k00001"),
        Err(Error::NotFound(What::Table))
    ));
    assert_eq!(e.get("app", "other", "x").unwrap().unwrap().value, b"1");
    let report = e.verify().unwrap();
    assert!(report.is_clean(), "{report}");
    assert!(report.free_pages > 50, "{report}");
    e.drop_database("app").unwrap();
    assert!(databases(&e).is_empty());
    assert!(e.verify().unwrap().is_clean());
}

/// The pages a list returns when its cursor is followed to the end.
fn pages_of(
    mut list: impl FnMut(&List) -> Result<ListPage, Error>,
    limit: usize,
) -> Vec<Vec<String>> {
    let mut next = List {
        start_after: None,
        limit,
    };
    let mut pages = Vec::new();
    loop {
        let page = list(&next).unwrap();
        assert!(pages.len() < 100, "the cursor moves forward");
        match page.next_start_after {
            Some(after) => {
                assert_eq!(
                    page.names.last(),
                    Some(&after),
                    "the cursor is the last name"
                );
                next.start_after = Some(after);
                pages.push(page.names);
            }
            None => {
                pages.push(page.names);
                return pages;
            }
        }
    }
}

fn lens(pages: &[Vec<String>]) -> Vec<usize> {
    pages.iter().map(Vec::len).collect()
}

/// Lists are paged as scans are: every name once and in order, a cursor on every page but the
/// last (none after a full last page either), and no name of a neighbouring database.
#[test]
fn databases_and_tables_are_listed_in_pages() {
    let fs = SimFs::new();
    let e = open(&fs);
    let dbs: Vec<String> = (0..2500).map(|i| format!("db{i:04}")).collect();
    for db in &dbs {
        e.create_database(db).unwrap();
    }
    let pages = pages_of(|list| e.list_databases(list), 1000);
    assert_eq!(lens(&pages), [1000, 1000, 500]);
    assert_eq!(pages.concat(), dbs);

    let tables: Vec<String> = (0..1500).map(|i| format!("t{i:04}")).collect();
    for table in &tables {
        e.create_table("db0001", table).unwrap();
    }
    e.create_table("db0000", "other").unwrap();
    e.create_table("db0002", "other").unwrap();
    let pages = pages_of(|list| e.list_tables("db0001", list), 1000);
    assert_eq!(lens(&pages), [1000, 500]);
    assert_eq!(pages.concat(), tables);
    let pages = pages_of(|list| e.list_tables("db0001", list), 500);
    assert_eq!(lens(&pages), [500, 500, 500]);
    assert_eq!(pages.concat(), tables);

    // A cursor need not be a name that exists.
    let between = List {
        start_after: Some("db0999x".into()),
        limit: 2,
    };
    let page = e.list_databases(&between).unwrap();
    assert_eq!(page.names, ["db1000", "db1001"]);
    assert_eq!(page.next_start_after.as_deref(), Some("db1001"));
    let past = List {
        start_after: Some("zz".into()),
        limit: 10,
    };
    assert_eq!(e.list_databases(&past).unwrap(), ListPage::default());
    let empty = List {
        start_after: None,
        limit: 0,
    };
    assert!(matches!(
        e.list_databases(&empty),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        e.list_tables("nope", &first_page()),
        Err(Error::NotFound(What::Database))
    ));
}

/// A database drop unlinks `ENGINE_DROP_TABLES_PER_COMMIT` tables a commit (their documents
/// purged in commits of their own), so its records stay small however many tables it has.
#[test]
fn dropping_a_database_with_many_tables_commits_in_bounded_records() {
    let fs = SimFs::new();
    let io: Arc<dyn IoBackend> = Arc::new(fs.clone());
    // A pool that holds the whole drop: no checkpoint moves the redo point past its records.
    let roomy = EngineOptions {
        buffer_pool_bytes: 64 << 20,
        ..opts()
    };
    let e = Engine::open_with(io, Path::new("/db"), roomy).unwrap().0;
    e.create_database("app").unwrap();
    e.create_database("keep").unwrap();
    e.create_table("keep", "t").unwrap();
    let tables = 1000;
    let name = |i: usize| format!("{}{i:04}", "t".repeat(60));
    for i in 0..tables {
        e.create_table("app", &name(i)).unwrap();
        e.put("app", &name(i), "k", &[1u8; 200], Condition::Any)
            .unwrap();
    }
    e.checkpoint().unwrap();
    let before = e.verify().unwrap();
    e.drop_database("app").unwrap();

    assert_eq!(databases(&e), ["keep"]);
    assert!(matches!(
        e.get("app", &name(0), "k"),
        Err(Error::NotFound(What::Database))
    ));
    let after = e.verify().unwrap();
    assert!(after.is_clean(), "{after}");
    assert_eq!(after.cells, 2, "only keep and keep/t remain: {after}");
    assert!(after.free_pages > before.free_pages, "{before}\n{after}");

    let records = inspect_with(&fs, Path::new("/db")).unwrap().recent_records;
    // Only the records after the last checkpoint: the drop's (inspect lists older ones too).
    let records: Vec<_> = records.into_iter().filter(|r| !r.checkpointed).collect();
    let drops = records
        .iter()
        .filter(|r| r.summary == "drop database app")
        .count();
    assert_eq!(drops, tables.div_ceil(ENGINE_DROP_TABLES_PER_COMMIT));
    assert!(records.len() < 100, "all of the drop's records are listed");
    for r in &records {
        assert!(r.pages <= 32, "{} changed {} pages", r.summary, r.pages);
    }
    // A database with few tables still goes in one commit.
    e.create_database("small").unwrap();
    e.create_table("small", "t").unwrap();
    e.checkpoint().unwrap();
    e.drop_database("small").unwrap();
    let records = inspect_with(&fs, Path::new("/db")).unwrap().recent_records;
    let summaries: Vec<&str> = records
        .iter()
        .filter(|r| !r.checkpointed)
        .map(|r| r.summary.as_str())
        .collect();
    assert_eq!(summaries.len(), 2, "{summaries:?}");
    assert_eq!(summaries[0], "drop database small");
    assert!(
        summaries[1].starts_with("purge dropped tables"),
        "{summaries:?}"
    );
}

#[test]
fn data_survives_reopen_with_and_without_checkpoint() {
    let (fs, e) = with_table();
    for i in 0..500 {
        e.put(
            "app",
            "users",
            &format!("k{i}"),
            format!("v{i}").as_bytes(),
            Condition::Any,
        )
        .unwrap();
        if i == 250 {
            e.checkpoint().unwrap();
        }
    }
    drop(e);
    let e = open(&fs);
    for i in 0..500 {
        assert_eq!(
            e.get("app", "users", &format!("k{i}"))
                .unwrap()
                .unwrap()
                .value,
            format!("v{i}").as_bytes()
        );
    }
    assert!(e.verify().unwrap().is_clean());
}

#[test]
fn the_wal_rolls_over_segments_and_recycles_them() {
    let (fs, e) = with_table();
    let value = vec![3u8; 900];
    for i in 0..3000 {
        e.put(
            "app",
            "users",
            &format!("k{}", i % 700),
            &value,
            Condition::Any,
        )
        .unwrap();
        if i % 1000 == 999 {
            e.checkpoint().unwrap();
        }
    }
    drop(e);
    let e = open(&fs);
    assert_eq!(e.get("app", "users", "k5").unwrap().unwrap().value, value);
    assert!(e.verify().unwrap().is_clean());
}

#[test]
fn the_real_filesystem_works_too() {
    let dir = tempfile::tempdir().unwrap();
    let (e, _) = Engine::open(dir.path(), opts()).unwrap();
    e.create_database("d").unwrap();
    e.create_table("d", "t").unwrap();
    let v = e.put("d", "t", "k", b"v", Condition::Any).unwrap();
    drop(e);
    let (e, report) = Engine::open(dir.path(), opts()).unwrap();
    assert_eq!(e.get("d", "t", "k").unwrap().unwrap().version, v);
    assert!(report.records_replayed >= 3, "{report}");
}

#[test]
fn the_engine_can_be_shared_across_threads() {
    fn shared<T: Send + Sync>() {}
    shared::<Engine>();
}

#[test]
fn an_idle_engine_checkpoints_by_time_with_the_background_thread() {
    let fs = SimFs::new();
    let io: Arc<dyn IoBackend> = Arc::new(fs.clone());
    let opts = EngineOptions {
        checkpoint_interval: std::time::Duration::from_millis(40),
        ..opts()
    };
    let e = Arc::new(Engine::open_with(io, Path::new("/db"), opts).unwrap().0);
    e.create_database("d").unwrap();
    let before = e.stats().checkpoints;
    let handle = Engine::spawn_checkpointer(&e);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while e.stats().checkpoints == before {
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint within 20 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    drop(e);
    handle.join().unwrap();
}

#[test]
fn a_scan_page_stops_at_the_byte_budget() {
    let io: Arc<dyn IoBackend> = Arc::new(SimFs::new());
    let opts = EngineOptions {
        wal_segment_size: 4 << 20,
        ..opts()
    };
    let (e, _) = Engine::open_with(io, Path::new("/db"), opts).unwrap();
    e.create_database("app").unwrap();
    e.create_table("app", "blobs").unwrap();
    let value = vec![9u8; 1 << 20];
    for i in 0..6 {
        e.put("app", "blobs", &format!("b{i}"), &value, Condition::Any)
            .unwrap();
    }
    let scan = Scan {
        prefix: String::new(),
        start_after: None,
        limit: 100,
    };
    let page = e.scan("app", "blobs", &scan).unwrap();
    assert_eq!(page.docs.len(), ENGINE_MAX_SCAN_BYTES / value.len());
    assert_eq!(page.next_start_after.as_deref(), Some("b3"));
}

/// 512-byte keys and 1000-byte inline values: leaves hold a handful of cells and interior nodes
/// about fifteen separators, so a few thousand documents split interior nodes at every level.
#[test]
fn long_keys_build_a_deep_tree_that_stays_valid() {
    let (fs, e) = with_table();
    let key = |i: u64| format!("{:0>512}", (i * 7919) % 10_007);
    let value = |i: u64| vec![(i % 251) as u8; 1000];
    for i in 0..1500 {
        e.put("app", "users", &key(i), &value(i), Condition::Any)
            .unwrap();
    }
    let report = e.verify().unwrap();
    assert!(report.is_clean(), "{report}");
    assert!(report.tree_pages > 300, "a deep tree: {report}");
    for i in (0..1500).step_by(2) {
        e.delete("app", "users", &key(i), Condition::Any).unwrap();
    }
    e.checkpoint().unwrap();
    drop(e);
    let e = open(&fs);
    let mut expected: Vec<String> = (1..1500).step_by(2).map(key).collect();
    expected.sort();
    let mut seen = Vec::new();
    let mut scan = Scan {
        prefix: String::new(),
        start_after: None,
        limit: 100,
    };
    loop {
        let page = e.scan("app", "users", &scan).unwrap();
        seen.extend(page.docs.into_iter().map(|d| d.key));
        match page.next_start_after {
            Some(after) => scan.start_after = Some(after),
            None => break,
        }
    }
    assert_eq!(seen, expected);
    assert!(e.verify().unwrap().is_clean());
    e.drop_table("app", "users").unwrap();
    let report = e.verify().unwrap();
    assert!(report.is_clean() && report.tree_pages <= 2, "{report}");
}

#[test]
fn a_store_open_in_one_engine_is_refused_to_a_second_until_closed() {
    let dir = tempfile::tempdir().unwrap();
    let (first, _) = Engine::open(dir.path(), opts()).expect("first open");
    first.create_database("app").unwrap();
    match Engine::open(dir.path(), opts()) {
        Err(photondb_storaged::engine::OpenError::Locked(path)) => assert_eq!(path, dir.path()),
        Err(other) => panic!("expected Locked, got {other}"),
        Ok(_) => panic!("a second engine opened a store that is in use"),
    }
    drop(first);
    let (again, _) = Engine::open(dir.path(), opts()).expect("open after the first closed");
    assert_eq!(databases(&again), ["app"]);
}

/// Interior nodes hold whole keys as separators (15 to 526 bytes an entry), so splitting one by
/// count can leave a half over a page: long separators grouped before short ones. Short keys
/// first, then 512-byte keys that sort before them, for several mixes of the two.
#[test]
fn interior_nodes_split_by_size_with_mixed_key_lengths() {
    for short_docs in (40..=160).step_by(24) {
        let (_fs, e) = with_table();
        let short = |i: u64| {
            format!("z{}", char::from(b'0' + (i % 64) as u8)) + &"~".repeat((i / 64) as usize)
        };
        for i in 0..short_docs {
            e.put("app", "users", &short(i), &[1; 1000], Condition::Any)
                .unwrap();
        }
        for i in 0..400u64 {
            let long = format!("a{i:0>511}");
            e.put("app", "users", &long, b"", Condition::Any)
                .unwrap_or_else(|err| panic!("{short_docs} short docs, long put {i}: {err}"));
        }
        let report = e.verify().unwrap();
        assert!(report.is_clean(), "{short_docs} short docs: {report}");
        let all = Scan {
            prefix: String::new(),
            start_after: None,
            limit: 1000,
        };
        assert_eq!(
            e.scan("app", "users", &all).unwrap().docs.len() as u64,
            400 + short_docs
        );
    }
}

#[test]
fn a_batch_of_more_than_a_thousand_operations_is_refused_whole() {
    let (_fs, e) = with_table();
    let ops = |n: usize| {
        (0..n)
            .map(|i| BatchOp::Put {
                key: format!("k{i}"),
                value: b"v".to_vec(),
                condition: Condition::Any,
            })
            .collect::<Vec<_>>()
    };
    match e.batch("app", "users", ops(1001)) {
        Err(Error::InvalidArgument(m)) => assert!(m.contains("at most 1000 operations"), "{m}"),
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
    assert_eq!(e.get("app", "users", "k0").unwrap(), None);
    e.batch("app", "users", ops(1000)).unwrap();
    assert!(e.get("app", "users", "k999").unwrap().is_some());
}
