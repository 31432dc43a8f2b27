//! Model-based test: random operations against the engine and a `BTreeMap` model, with
//! checkpoints, clean reopens, crashes and injected I/O errors. After an I/O error the engine
//! must refuse everything, and a reopen must recover exactly the acknowledged state (plus, at
//! most, the one operation whose acknowledgement the error prevented).
//!
//! Seeded and deterministic: a failure prints the seed and step; rerun with
//! `PHOTONDB_MODEL_SEED=<seed>`. `PHOTONDB_LONG_TESTS=1` runs more seeds and steps.

use photondb_storaged::engine::{
    BatchOp, Condition, ENGINE_MAX_SCAN_BYTES, Engine, EngineOptions, Error, IoBackend, List,
    ListPage, Scan, SimFs, StorageError, What,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

type Table = BTreeMap<String, (Vec<u8>, u64)>;
type Model = BTreeMap<String, BTreeMap<String, Table>>;

const DBS: [&str; 3] = ["alpha", "beta", "gamma"];
const TABLES: [&str; 2] = ["t1", "t2"];
/// The version of a write made earlier in the same batch.
const PENDING: u64 = u64::MAX;

/// Every name a list returns, two a page (so the model pages too).
fn every_name(mut list: impl FnMut(&List) -> Result<ListPage, Error>) -> Vec<String> {
    let mut next = List {
        start_after: None,
        limit: 2,
    };
    let mut names = Vec::new();
    loop {
        let page = list(&next).unwrap();
        names.extend(page.names);
        match page.next_start_after {
            Some(after) => next.start_after = Some(after),
            None => return names,
        }
    }
}

fn long() -> bool {
    std::env::var("PHOTONDB_LONG_TESTS").is_ok_and(|v| v == "1")
}

fn opts() -> EngineOptions {
    EngineOptions {
        wal_segment_size: 1 << 20,
        checkpoint_wal_bytes: 256 << 10,
        buffer_pool_bytes: 512 << 10,
        ..EngineOptions::default()
    }
}

/// What an operation should do, by kind (versions are checked separately).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Ok,
    NotFound(What),
    AlreadyExists(What),
    Mismatch,
}

fn outcome_of<T>(r: &Result<T, Error>) -> Option<Outcome> {
    match r {
        Ok(_) => Some(Outcome::Ok),
        Err(Error::NotFound(w)) => Some(Outcome::NotFound(*w)),
        Err(Error::AlreadyExists(w)) => Some(Outcome::AlreadyExists(*w)),
        Err(Error::VersionMismatch { .. }) => Some(Outcome::Mismatch),
        Err(Error::Storage(_)) => None,
        Err(e @ Error::InvalidArgument(_)) => panic!("the generator made an invalid request: {e}"),
        Err(e @ Error::Internal(_)) => panic!("an engine invariant failed: {e}"),
        Err(e @ Error::ArchiveBehind { .. }) => panic!("archiving is off, yet: {e}"),
    }
}

struct Harness {
    seed: u64,
    step: usize,
    rng: StdRng,
    fs: SimFs,
    engine: Option<Engine>,
    model: Model,
    counts: BTreeMap<&'static str, usize>,
}

/// A state change the model makes if the engine acknowledges the operation.
type Change = Box<dyn Fn(&mut Model, u64)>;

impl Harness {
    fn new(seed: u64) -> Self {
        let fs = SimFs::new();
        let mut h = Harness {
            seed,
            step: 0,
            rng: StdRng::seed_from_u64(seed),
            fs,
            engine: None,
            model: Model::new(),
            counts: BTreeMap::new(),
        };
        h.open();
        h
    }

    fn ctx(&self) -> String {
        format!("seed {} step {}", self.seed, self.step)
    }

    fn e(&self) -> &Engine {
        self.engine.as_ref().expect("engine open")
    }

    fn open(&mut self) {
        let io: Arc<dyn IoBackend> = Arc::new(self.fs.clone());
        match Engine::open_with(io, Path::new("/db"), opts()) {
            Ok((e, _)) => self.engine = Some(e),
            Err(err) => panic!("{}: open failed:\n{err}", self.ctx()),
        }
    }

    fn pick<'a>(&mut self, names: &[&'a str]) -> &'a str {
        names[self.rng.gen_range(0..names.len())]
    }

    /// Mostly an existing table, sometimes any name (to exercise the not-found paths).
    fn pick_table(&mut self) -> (&'static str, &'static str) {
        let existing: Vec<(&'static str, &'static str)> = DBS
            .iter()
            .flat_map(|d| TABLES.iter().map(move |t| (*d, *t)))
            .filter(|(d, t)| self.table(d, t).is_ok())
            .collect();
        if !existing.is_empty() && self.rng.gen_bool(0.85) {
            return existing[self.rng.gen_range(0..existing.len())];
        }
        (self.pick(&DBS), self.pick(&TABLES))
    }

    fn key(&mut self) -> String {
        match self.rng.gen_range(0..3) {
            0 => format!("p/{}", self.rng.gen_range(0..10)),
            _ => format!("k{:02}", self.rng.gen_range(0..40)),
        }
    }

    fn value(&mut self) -> Vec<u8> {
        let len = match self.rng.gen_range(0..100) {
            0..=4 => self.rng.gen_range(1025..60_000),
            5 => self.rng.gen_range(100_000..300_000),
            _ => self.rng.gen_range(0..300),
        };
        let seed = self.rng.r#gen::<u8>();
        (0..len)
            .map(|i| seed.wrapping_add((i % 97) as u8))
            .collect()
    }

    fn condition(&mut self, actual: Option<u64>) -> Condition {
        match (self.rng.gen_range(0..6), actual) {
            (0, _) => Condition::IfAbsent,
            (1, Some(v)) => Condition::IfVersion(v),
            (2, _) => Condition::IfVersion(self.rng.gen_range(1..1_000_000)),
            (3, Some(v)) => Condition::IfVersion(v),
            _ => Condition::Any,
        }
    }

    fn table(&self, db: &str, t: &str) -> Result<&Table, Outcome> {
        let tables = self
            .model
            .get(db)
            .ok_or(Outcome::NotFound(What::Database))?;
        tables.get(t).ok_or(Outcome::NotFound(What::Table))
    }

    /// Runs one mutating call; on success applies `change` with the returned LSN.
    fn mutate(
        &mut self,
        expected: Outcome,
        change: Change,
        call: impl FnOnce(&Engine) -> Result<u64, Error>,
    ) {
        let result = call(self.e());
        match outcome_of(&result) {
            None => self.after_io_error(Some(change).filter(|_| expected == Outcome::Ok)),
            Some(got) => {
                assert_eq!(got, expected, "{}: {result:?}", self.ctx());
                let kind = match got {
                    Outcome::Ok => "acknowledged",
                    Outcome::Mismatch => "version mismatch",
                    Outcome::NotFound(_) => "not found",
                    Outcome::AlreadyExists(_) => "already exists",
                };
                *self.counts.entry(kind).or_default() += 1;
                if let Ok(lsn) = result {
                    change(&mut self.model, lsn);
                }
            }
        }
    }

    fn check_condition(cond: Condition, actual: Option<u64>) -> bool {
        match cond {
            Condition::Any => true,
            Condition::IfVersion(v) => actual == Some(v),
            Condition::IfAbsent => actual.is_none(),
        }
    }

    fn put(&mut self) {
        let (db, t) = self.pick_table();
        let (key, value) = (self.key(), self.value());
        let actual = self
            .table(db, t)
            .ok()
            .and_then(|tb| tb.get(&key))
            .map(|(_, v)| *v);
        let cond = self.condition(actual);
        let expected = match self.table(db, t) {
            Err(o) => o,
            Ok(_) if !Self::check_condition(cond, actual) => Outcome::Mismatch,
            Ok(_) => Outcome::Ok,
        };
        let (k, v) = (key.clone(), value.clone());
        let change: Change = Box::new(move |m, lsn| {
            m.get_mut(db)
                .unwrap()
                .get_mut(t)
                .unwrap()
                .insert(k.clone(), (v.clone(), lsn));
        });
        self.mutate(expected, change, |e| e.put(db, t, &key, &value, cond));
    }

    fn delete(&mut self) {
        let (db, t) = self.pick_table();
        let keys: Vec<String> = self
            .table(db, t)
            .map(|tb| tb.keys().cloned().collect())
            .unwrap_or_default();
        let key = match keys.len() {
            0 => self.key(),
            n if self.rng.gen_bool(0.8) => keys[self.rng.gen_range(0..n)].clone(),
            _ => self.key(),
        };
        let actual = self
            .table(db, t)
            .ok()
            .and_then(|tb| tb.get(&key))
            .map(|(_, v)| *v);
        let cond = self.condition(actual);
        let expected = match self.table(db, t) {
            Err(o) => o,
            Ok(_) if actual.is_none() => Outcome::NotFound(What::Document),
            Ok(_) if !Self::check_condition(cond, actual) => Outcome::Mismatch,
            Ok(_) => Outcome::Ok,
        };
        let k = key.clone();
        let change: Change = Box::new(move |m, _| {
            m.get_mut(db).unwrap().get_mut(t).unwrap().remove(&k);
        });
        self.mutate(expected, change, |e| e.delete(db, t, &key, cond));
    }

    fn batch(&mut self) {
        let (db, t) = self.pick_table();
        let mut sim = self.table(db, t).cloned().unwrap_or_default();
        let mut expected = self.table(db, t).err().unwrap_or(Outcome::Ok);
        let mut ops = Vec::new();
        for _ in 0..self.rng.gen_range(1..6) {
            let key = self.key();
            let actual = sim.get(&key).map(|(_, v)| *v);
            let condition = self.condition(actual);
            let op = if self.rng.gen_bool(0.7) {
                BatchOp::Put {
                    key: key.clone(),
                    value: self.value(),
                    condition,
                }
            } else {
                BatchOp::Delete {
                    key: key.clone(),
                    condition,
                }
            };
            // A key this batch already wrote carries the batch's version, unknown until the
            // commit, so no `IfVersion` the generator makes can match it.
            let pending = actual == Some(PENDING) && matches!(condition, Condition::IfVersion(_));
            if expected == Outcome::Ok {
                expected = match &op {
                    BatchOp::Delete { .. } if actual.is_none() => Outcome::NotFound(What::Document),
                    _ if pending || !Self::check_condition(condition, actual) => Outcome::Mismatch,
                    BatchOp::Put { value, .. } => {
                        sim.insert(key, (value.clone(), PENDING));
                        Outcome::Ok
                    }
                    BatchOp::Delete { .. } => {
                        sim.remove(&key);
                        Outcome::Ok
                    }
                };
            }
            ops.push(op);
        }
        let applied = ops.clone();
        let change: Change = Box::new(move |m, lsn| {
            let table = m.get_mut(db).unwrap().get_mut(t).unwrap();
            for op in &applied {
                match op {
                    BatchOp::Put { key, value, .. } => {
                        table.insert(key.clone(), (value.clone(), lsn))
                    }
                    BatchOp::Delete { key, .. } => table.remove(key),
                };
            }
        });
        self.mutate(expected, change, |e| e.batch(db, t, ops));
    }

    fn ddl(&mut self) {
        let (db, t) = (self.pick(&DBS), self.pick(&TABLES));
        let has_db = self.model.contains_key(db);
        let has_table = self.table(db, t).is_ok();
        // Creation is likelier than dropping, so most operations find their table.
        match [0, 0, 0, 2, 2, 2, 2, 1, 3, 3][self.rng.gen_range(0..10)] {
            0 => {
                let expected = if has_db {
                    Outcome::AlreadyExists(What::Database)
                } else {
                    Outcome::Ok
                };
                let change: Change = Box::new(move |m, _| {
                    m.insert(db.to_string(), BTreeMap::new());
                });
                self.mutate(expected, change, |e| e.create_database(db));
            }
            1 => {
                let expected = if has_db {
                    Outcome::Ok
                } else {
                    Outcome::NotFound(What::Database)
                };
                let change: Change = Box::new(move |m, _| {
                    m.remove(db);
                });
                self.mutate(expected, change, |e| e.drop_database(db));
            }
            2 => {
                let expected = match (has_db, has_table) {
                    (false, _) => Outcome::NotFound(What::Database),
                    (true, true) => Outcome::AlreadyExists(What::Table),
                    (true, false) => Outcome::Ok,
                };
                let change: Change = Box::new(move |m, _| {
                    m.get_mut(db).unwrap().insert(t.to_string(), Table::new());
                });
                self.mutate(expected, change, |e| e.create_table(db, t));
            }
            _ => {
                let expected = self.table(db, t).err().unwrap_or(Outcome::Ok);
                let change: Change = Box::new(move |m, _| {
                    m.get_mut(db).unwrap().remove(t);
                });
                self.mutate(expected, change, |e| e.drop_table(db, t));
            }
        }
    }

    fn get(&mut self) {
        let (db, t) = self.pick_table();
        let key = self.key();
        let result = self.e().get(db, t, &key);
        if matches!(result, Err(Error::Storage(_))) {
            return self.after_io_error(None);
        }
        let expected = self.table(db, t).map(|tb| tb.get(&key).cloned());
        match (result, expected) {
            (Ok(doc), Ok(want)) => {
                assert_eq!(
                    doc.map(|d| (d.value, d.version)),
                    want,
                    "{}: get {db}/{t}/{key}",
                    self.ctx()
                )
            }
            (Err(e), Err(o)) => assert_eq!(outcome_of::<()>(&Err(e)), Some(o), "{}", self.ctx()),
            (r, want) => panic!(
                "{}: get {db}/{t}/{key} gave {r:?}, model {want:?}",
                self.ctx()
            ),
        }
    }

    fn scan(&mut self) {
        let (db, t) = self.pick_table();
        let prefix = ["", "p/", "k", "k1", "q"][self.rng.gen_range(0..5)].to_string();
        let start_after = self.rng.gen_bool(0.5).then(|| self.key());
        let limit = self.rng.gen_range(1..20);
        let scan = Scan {
            prefix: prefix.clone(),
            start_after: start_after.clone(),
            limit,
        };
        let result = self.e().scan(db, t, &scan);
        if matches!(result, Err(Error::Storage(_))) {
            return self.after_io_error(None);
        }
        let Ok(table) = self.table(db, t) else {
            assert!(result.is_err(), "{}: scan of a missing table", self.ctx());
            return;
        };
        let mut want: Vec<_> = table
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix) && start_after.as_ref().is_none_or(|a| *k > a))
            .take(limit + 1)
            .map(|(k, (v, ver))| (k.clone(), v.clone(), *ver))
            .collect();
        let available = want.len();
        want.truncate(limit);
        // The engine ends a page early once its values reach ENGINE_MAX_SCAN_BYTES.
        let mut bytes = 0;
        let keep = want
            .iter()
            .position(|(_, v, _)| {
                bytes += v.len();
                bytes >= ENGINE_MAX_SCAN_BYTES
            })
            .map_or(want.len(), |i| i + 1);
        want.truncate(keep);
        let more = available > want.len();
        let page = result.unwrap_or_else(|e| panic!("{}: scan failed: {e}", self.ctx()));
        let got: Vec<_> = page
            .docs
            .iter()
            .map(|d| (d.key.clone(), d.value.clone(), d.version))
            .collect();
        assert_eq!(got, want, "{}: scan {scan:?}", self.ctx());
        assert_eq!(
            page.next_start_after.is_some(),
            more,
            "{}: scan {scan:?}",
            self.ctx()
        );
    }

    /// After an I/O error: everything is refused; a crash-reopen recovers the acknowledged
    /// state, or that state plus the operation that failed (it may have reached the disk).
    fn after_io_error(&mut self, maybe: Option<Change>) {
        let refused = self.e().get("alpha", "t1", "k00");
        assert!(
            matches!(refused, Err(Error::Storage(StorageError::PreviousIo))),
            "{}: engine still serving after an i/o error: {refused:?}",
            self.ctx()
        );
        *self.counts.entry("i/o errors").or_default() += 1;
        self.engine = None;
        self.fs = self.fs.crash(self.seed ^ self.step as u64);
        self.open();
        let found = self.read_all();
        if found == self.model {
            return;
        }
        let change = maybe
            .unwrap_or_else(|| panic!("{}: recovered state differs from the model", self.ctx()));
        let mut with_op = self.model.clone();
        change(&mut with_op, 0);
        *self.counts.entry("failed op was durable").or_default() += 1;
        assert_eq!(
            without_versions(&found),
            without_versions(&with_op),
            "{}: after an i/o error",
            self.ctx()
        );
        self.model = found;
    }

    fn read_all(&self) -> Model {
        let e = self.e();
        let mut out = Model::new();
        for db in every_name(|list| e.list_databases(list)) {
            let tables = out.entry(db.clone()).or_default();
            for t in every_name(|list| e.list_tables(&db, list)) {
                let page = e
                    .scan(
                        &db,
                        &t,
                        &Scan {
                            prefix: String::new(),
                            start_after: None,
                            limit: 10_000,
                        },
                    )
                    .unwrap();
                let docs = page
                    .docs
                    .into_iter()
                    .map(|d| (d.key, (d.value, d.version)))
                    .collect();
                tables.insert(t, docs);
            }
        }
        out
    }

    fn check_all(&self) {
        assert_eq!(
            self.read_all(),
            self.model,
            "{}: full comparison",
            self.ctx()
        );
        let report = self.e().verify().unwrap();
        assert!(report.is_clean(), "{}: verify\n{report}", self.ctx());
    }

    fn reopen(&mut self, crash: bool) {
        self.engine = None;
        if crash {
            self.fs = self.fs.crash(self.seed.wrapping_mul(31) ^ self.step as u64);
        }
        self.open();
        self.check_all();
    }

    fn inject_fault(&mut self) {
        if self.rng.gen_bool(0.5) {
            self.fs.fail_write_after(self.rng.gen_range(0..4));
        } else {
            self.fs.fail_sync_after(self.rng.gen_range(0..3));
        }
        // Make sure the fault fires while the engine is running, not in a later reopen.
        for _ in 0..50 {
            if self
                .engine
                .as_ref()
                .is_some_and(|e| e.checkpoint().is_err())
            {
                return self.after_io_error(None);
            }
            self.put();
        }
    }

    fn run(&mut self, steps: usize) {
        for step in 0..steps {
            self.step = step;
            match self.rng.gen_range(0..100) {
                0..=9 => self.ddl(),
                10..=39 => self.put(),
                40..=49 => self.delete(),
                50..=59 => self.batch(),
                60..=74 => self.get(),
                75..=87 => self.scan(),
                88..=90 => {
                    if let Err(e) = self.e().checkpoint() {
                        assert!(matches!(e, Error::Storage(_)), "{}", self.ctx());
                        self.after_io_error(None);
                    }
                }
                91..=93 => self.reopen(false),
                94..=96 => self.reopen(true),
                _ => self.inject_fault(),
            }
        }
        self.check_all();
        let tables: usize = self.model.values().map(BTreeMap::len).sum();
        eprintln!(
            "seed {}: {} dbs, {tables} tables at the end; {:?}",
            self.seed,
            self.model.len(),
            self.counts
        );
    }
}

fn without_versions(m: &Model) -> BTreeMap<String, BTreeMap<String, BTreeMap<String, Vec<u8>>>> {
    m.iter()
        .map(|(db, ts)| {
            let ts = ts.iter().map(|(t, docs)| {
                (
                    t.clone(),
                    docs.iter()
                        .map(|(k, (v, _))| (k.clone(), v.clone()))
                        .collect(),
                )
            });
            (db.clone(), ts.collect())
        })
        .collect()
}

#[test]
fn the_engine_matches_a_btreemap_model() {
    let seeds: Vec<u64> = match std::env::var("PHOTONDB_MODEL_SEED") {
        Ok(s) => vec![s.parse().expect("PHOTONDB_MODEL_SEED is a number")],
        Err(_) if long() => (1..=40).collect(),
        Err(_) => (1..=10).collect(),
    };
    let steps = if long() { 3000 } else { 500 };
    for seed in seeds {
        Harness::new(seed).run(steps);
    }
}
