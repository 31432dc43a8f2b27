//! Writes the seed inputs of the storage fuzz targets (`fuzz/seeds/wal_record`, `fuzz/seeds/page`)
//! from a real store: every WAL record and every data page a small workload leaves behind.
//!
//! `cargo run -p photondb-storaged --features testing --example fuzz_seeds -- fuzz/seeds`
#![allow(clippy::print_stdout)]

use std::path::Path;

use photondb_storaged::engine::{BatchOp, Condition, Engine, EngineOptions, fuzzing};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::env::args().nth(1).ok_or("usage: fuzz_seeds OUT_DIR")?;
    let store = std::env::temp_dir().join(format!("photondb-fuzz-seeds-{}", std::process::id()));
    let result = write_seeds(&store, Path::new(&out));
    let _ = std::fs::remove_dir_all(&store);
    result
}

fn write_seeds(store: &Path, out: &Path) -> Result<(), Box<dyn std::error::Error>> {
    workload(store)?;
    let (wal, data) = fuzzing::store_files(store);
    let dir = out.join("wal_record");
    std::fs::create_dir_all(&dir)?;
    let mut n = 0;
    for entry in std::fs::read_dir(&wal)? {
        for (lsn, record) in fuzzing::segment_records(&std::fs::read(entry?.path())?) {
            let seed = [lsn.to_le_bytes().as_slice(), &record].concat();
            std::fs::write(dir.join(format!("record-{n:02}")), seed)?;
            n += 1;
        }
    }
    let dir = out.join("page");
    std::fs::create_dir_all(&dir)?;
    for (i, page) in std::fs::read(&data)?.chunks(8192).enumerate() {
        if page.iter().any(|&b| b != 0) {
            std::fs::write(dir.join(format!("page-{i:02}")), page)?;
        }
    }
    println!(
        "{n} WAL records and the data pages written under {}",
        out.display()
    );
    Ok(())
}

/// A little of everything the log and the tree hold: catalog entries, inline and overflow
/// values, a batch, a delete, a checkpoint (full-page images after it).
fn workload(store: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let (engine, _) = Engine::open(store, EngineOptions::default())?;
    engine.create_database("db")?;
    engine.create_table("db", "t")?;
    engine.put("db", "t", "small", br#"{"a":1}"#, Condition::Any)?;
    engine.put("db", "t", "big", &[b'x'; 20_000], Condition::Any)?;
    engine.checkpoint()?;
    let ops = (0..20)
        .map(|i| BatchOp::Put {
            key: format!("k{i:02}"),
            value: format!("{{\"i\":{i}}}").into_bytes(),
            condition: Condition::Any,
        })
        .collect::<Vec<_>>();
    engine.batch("db", "t", ops)?;
    engine.delete("db", "t", "small", Condition::Any)?;
    Ok(())
}
