//! The real daemon never passes lost log bytes off as a clean end: a SIGTERM records the end of
//! the log (after a checkpoint, so a zeroed log loses nothing); after a kill -9 the durable end
//! recorded every `durable_mark_ms` makes a log zeroed below it a refusal naming the range, the
//! segment and the offset; `verify` then exits 4 and changes no byte; a cut-short segment is
//! refused where it stops.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use photondb_tests::{Overrides, Storaged, TestCerts, pb, run_storaged, table};

const SEGMENT: &str = "0000000000000000.wal";

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Marks every 50 ms, so a test need not wait long for one.
fn overrides() -> Overrides {
    Overrides {
        extra_toml: "[checkpoint]\ndurable_mark_ms = 50".into(),
        ..Overrides::default()
    }
}

async fn put_docs(storaged: &Storaged, n: usize) -> anyhow::Result<()> {
    let mut c = storaged.client().await?;
    photondb_tests::create_table(&mut c, "app", "docs").await?;
    for i in 0..n {
        c.put(pb::PutRequest {
            table: table("app", "docs"),
            key: format!("doc-{i:04}"),
            value: format!("{{\"n\":{i}}}").into_bytes(),
            precondition: None,
        })
        .await?;
    }
    Ok(())
}

async fn count_docs(storaged: &Storaged, n: usize) -> anyhow::Result<usize> {
    let mut c = storaged.client().await?;
    let mut found = 0;
    for i in 0..n {
        let got = c
            .get(pb::GetRequest {
                table: table("app", "docs"),
                key: format!("doc-{i:04}"),
            })
            .await;
        found += usize::from(got.is_ok());
    }
    Ok(found)
}

/// The LSNs `inspect` lists for the newest records (oldest first).
fn record_lsns(dir: &Path) -> anyhow::Result<Vec<u64>> {
    let out = run_storaged(&["inspect", "--data-dir", dir.to_str().expect("utf-8 path")])?;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let lsns = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("0x"))
        .filter_map(|l| l.split_whitespace().next())
        .filter_map(|hex| u64::from_str_radix(hex, 16).ok())
        .collect();
    Ok(lsns)
}

/// Zeroes the segment from `from` to its end.
fn zero_from(segment: &Path, from: u64) -> anyhow::Result<()> {
    let mut bytes = std::fs::read(segment)?;
    bytes[from as usize..].fill(0);
    std::fs::write(segment, bytes)?;
    Ok(())
}

fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).expect("readable dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                todo.push(path);
            } else {
                out.insert(path.clone(), std::fs::read(&path).expect("readable file"));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_stop_records_the_log_end_and_a_zeroed_log_then_loses_nothing() -> anyhow::Result<()>
{
    let certs = TestCerts::new()?;
    let mut storaged = Storaged::start(&certs, overrides())?;
    put_docs(&storaged, 200).await?;
    let status = storaged.stop()?;
    assert!(status.success(), "SIGTERM exit: {status}");
    let stop = storaged
        .audit_events()
        .into_iter()
        .find(|e| e["kind"] == "clean_stop")
        .expect("no clean_stop audit event");
    let end = stop["log_end"].as_str().unwrap_or_default().to_owned();
    assert!(end.starts_with("0x"), "{stop}");
    // The control file's newest slot: redo point and durable end both at that end.
    let dir = storaged.data_dir();
    let out = run_storaged(&["inspect", "--data-dir", dir.to_str().expect("utf-8 path")])?;
    let expected = format!("redo {end} last");
    let slot = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("control slot") && l.contains(&expected))
        .map(str::to_owned)
        .next()
        .unwrap_or_else(|| panic!("no slot with {expected}: {}", text(&out)));
    assert!(slot.contains(&format!("durable {end}")), "{slot}");

    // Before: zeroing the log from its first record lost every document not checkpointed,
    // reported as a clean end. Now everything is in the data file.
    zero_from(&dir.join("wal").join(SEGMENT), 128)?;
    storaged.restart()?;
    assert_eq!(count_docs(&storaged, 200).await?, 200);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_kill_a_log_zeroed_below_the_durable_mark_is_refused_and_verify_exits_4()
-> anyhow::Result<()> {
    let certs = TestCerts::new()?;
    let mut storaged = Storaged::start(&certs, overrides())?;
    put_docs(&storaged, 40).await?;
    // Several marks come and go (every 50 ms); the last covers every put.
    tokio::time::sleep(Duration::from_millis(400)).await;
    storaged.kill9()?;
    let dir = storaged.data_dir();
    let lsns = record_lsns(&dir)?;
    assert!(lsns.len() >= 40, "inspect listed {lsns:?}");
    let from = lsns[lsns.len() - 10];
    zero_from(&dir.join("wal").join(SEGMENT), from)?;

    let before = files(&dir);
    let out = run_storaged(&["verify", "--data-dir", dir.to_str().expect("utf-8 path")])?;
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(
        text(&out).contains("recovery would refuse"),
        "{}",
        text(&out)
    );
    assert_eq!(files(&dir), before, "verify changed the store");

    let err = storaged
        .restart()
        .expect_err("a log that lost 10 commits was opened");
    let said = format!("{err:#}");
    let position = format!("LSN {from:#x}: segment {SEGMENT}, byte offset {from}");
    assert!(said.contains(&position), "{said}");
    assert!(said.contains(&format!("[{from:#x}, ")), "{said}");
    assert!(said.contains("are missing or damaged"), "{said}");
    assert_eq!(files(&dir), before, "a refused start changed the store");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_short_segment_is_refused_naming_the_segment_and_offset() -> anyhow::Result<()> {
    let certs = TestCerts::new()?;
    let mut storaged = Storaged::start(&certs, overrides())?;
    put_docs(&storaged, 20).await?;
    storaged.kill9()?;
    let dir = storaged.data_dir();
    let lsns = record_lsns(&dir)?;
    let cut = lsns[lsns.len() - 5] + 8;
    let segment = dir.join("wal").join(SEGMENT);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)?
        .set_len(cut)?;
    let err = storaged
        .restart()
        .expect_err("a cut-short segment was opened");
    let said = format!("{err:#}");
    let stop = lsns[lsns.len() - 5];
    assert!(
        said.contains(&format!("segment {SEGMENT}, byte offset {stop}")),
        "{said}"
    );
    assert!(said.contains("cut short"), "{said}");
    let valid = format!("last valid one at LSN {:#x}", lsns[lsns.len() - 6]);
    assert!(said.contains(&valid), "{said}");
    Ok(())
}
