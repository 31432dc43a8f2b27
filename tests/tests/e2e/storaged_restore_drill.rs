//! The restore drill, on the real binaries (`scripts/restore-drill` runs it with a larger
//! `PHOTONDB_DRILL_WRITES`; CI runs it at the default, small size): storaged archives its WAL
//! while writers commit with an acknowledgement log, an online backup is taken mid-load through
//! the admin service, writing goes on; then the backup plus the archive are restored to a
//! target LSN and to the latest point, each restored store passes `verify` and is served, and
//! it holds exactly the acknowledged writes up to its target: same keys, values and versions.
//! Prints the RTO (restore, then start until the first answer) and the RPO bound.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use photondb_tests::ledger::scan_all;
use photondb_tests::{
    Overrides, Storaged, TestCerts, certs, create_table, pb, run_storaged, table, wait_until,
};

const WRITERS: usize = 8;
const SEGMENT_MIB: u64 = 1;
/// `[archive] switch_interval_ms`: how long the active segment may hold unarchived records.
const SWITCH_MS: u64 = 1000;

/// key -> (version, value) after the acknowledged writes up to and including `lsn`.
type State = BTreeMap<String, (u64, Vec<u8>)>;

fn state_at(acks: &[(String, Vec<u8>, u64)], lsn: u64) -> State {
    let mut sorted: Vec<_> = acks.iter().filter(|a| a.2 <= lsn).collect();
    sorted.sort_by_key(|a| a.2);
    sorted
        .into_iter()
        .map(|(k, v, version)| (k.clone(), (*version, v.clone())))
        .collect()
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Restores with `target_args`, verifies, serves the result and returns what it holds with the
/// restore's and the start's durations.
async fn restore_and_serve(
    certs: &TestCerts,
    scratch: &Path,
    name: &str,
    target_args: &[&str],
) -> anyhow::Result<(State, Duration, Duration)> {
    let to = scratch.join(name);
    let (backup, archive) = (scratch.join("backups/mid-load"), scratch.join("archive"));
    let started = Instant::now();
    let mut args = vec![
        "restore",
        "--backup",
        path(&backup),
        "--archive",
        path(&archive),
        "--to",
        path(&to),
    ];
    args.extend_from_slice(target_args);
    let out = tokio::task::block_in_place(|| run_storaged(&args))?;
    let restore_took = started.elapsed();
    assert!(
        out.status.success(),
        "restore {target_args:?}: {}",
        text(&out)
    );
    let out = tokio::task::block_in_place(|| run_storaged(&["verify", "--data-dir", path(&to)]))?;
    assert_eq!(out.status.code(), Some(0), "verify: {}", text(&out));
    let started = Instant::now();
    let overrides = Overrides {
        data_dir: Some(to),
        ..Overrides::default()
    };
    let served = Storaged::start(certs, overrides)?;
    let mut c = served.client().await?;
    c.get(pb::GetRequest {
        table: table("drill", "t"),
        key: "w0-k0".into(),
    })
    .await?;
    let serving_took = started.elapsed();
    Ok((
        scan_all(&served, "drill", "t").await?,
        restore_took,
        serving_took,
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restore_drill_returns_exactly_the_acknowledged_writes_at_each_target() -> anyhow::Result<()>
{
    let writes: usize = std::env::var("PHOTONDB_DRILL_WRITES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2400);
    let certs = TestCerts::new()?;
    let scratch = tempfile::tempdir()?;
    let (archive, backups) = (
        scratch.path().join("archive"),
        scratch.path().join("backups"),
    );
    std::fs::create_dir_all(&backups)?;
    let q = |p: &Path| serde_json::Value::from(path(p)).to_string();
    let overrides = Overrides {
        top_level: vec![format!("wal_segment_mib = {SEGMENT_MIB}")],
        extra_toml: format!(
            "[archive]\ndir = {}\nswitch_interval_ms = {SWITCH_MS}\n\n[backup]\ndir = {}\n",
            q(&archive),
            q(&backups)
        ),
        ..Overrides::default()
    };
    let storaged = Storaged::start(&certs, overrides)?;
    let mut c = storaged.client().await?;
    create_table(&mut c, "drill", "t").await?;

    let acks = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let (mut c, acks) = (storaged.client().await?, acks.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..writes / WRITERS {
                let key = format!("w{w}-k{}", i % 50);
                let value = format!("{{\"w\":{w},\"i\":{i},\"pad\":\"{}\"}}", "p".repeat(300));
                let version = c
                    .put(pb::PutRequest {
                        table: table("drill", "t"),
                        key: key.clone(),
                        value: value.clone().into_bytes(),
                        precondition: None,
                    })
                    .await?
                    .into_inner()
                    .version;
                acks.lock()
                    .unwrap()
                    .push((key, value.into_bytes(), version));
            }
            anyhow::Ok(())
        }));
    }
    let third = writes / 3;
    wait_until(Duration::from_secs(120), || {
        (acks.lock().unwrap().len() >= third).then_some(())
    })
    .await
    .expect("writers made no progress");
    let gateway = certs::files::GATEWAY_CLIENT_CERT;
    let backup_args = [
        "backup",
        "--connect",
        &storaged.addr().to_string(),
        "--cert",
        path(&certs.path(gateway)),
        "--key",
        path(&certs.path(certs::files::GATEWAY_CLIENT_KEY)),
        "--ca",
        path(&certs.path(certs::files::CA_CERT)),
        "--to",
        "mid-load",
    ]
    .map(str::to_string);
    let started = Instant::now();
    let out = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = backup_args.iter().map(String::as_str).collect();
        run_storaged(&args)
    })
    .await??;
    let backup_took = started.elapsed();
    assert!(out.status.success(), "online backup: {}", text(&out));
    let acked_at_backup = acks.lock().unwrap().len();
    for task in tasks {
        task.await??;
    }
    let acks = acks.lock().unwrap().clone();
    assert!(
        acked_at_backup < acks.len(),
        "the writers stopped during the backup ({acked_at_backup} of {})",
        acks.len()
    );
    // The drill's own RPO: with writes over, the active segment is sealed within the switch
    // interval and shipped; until then, its records are what the archive could lose.
    let last = acks.iter().map(|a| a.2).max().unwrap_or(0);
    let archived_after = storaged.metric("storaged_archive_segments_total").await?;
    let shipped = Instant::now();
    loop {
        let waiting = storaged.metric("storaged_archive_waiting_segments").await?;
        let total = storaged.metric("storaged_archive_segments_total").await?;
        if waiting == 0.0 && total > archived_after {
            break;
        }
        assert!(
            shipped.elapsed() < Duration::from_secs(30),
            "the archive never caught up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let archive_lag = shipped.elapsed();

    let mut versions: Vec<u64> = acks.iter().map(|a| a.2).collect();
    versions.sort_unstable();
    let target = versions[versions.len() * 3 / 5];
    let target_arg = format!("{target:#x}");
    let (pitr, restore_took, serve_took) = restore_and_serve(
        &certs,
        scratch.path(),
        "pitr",
        &["--until-lsn", &target_arg],
    )
    .await?;
    let expected = state_at(&acks, target);
    assert_eq!(pitr.len(), expected.len(), "keys at LSN {target:#x}");
    assert_eq!(pitr, expected, "the state at LSN {target:#x}");
    let (latest, latest_took, _) =
        restore_and_serve(&certs, scratch.path(), "latest", &["--latest"]).await?;
    assert_eq!(latest, state_at(&acks, last), "the latest state");

    // A target the archive cannot reach is refused, naming the latest that it can.
    let beyond = format!("{:#x}", last + (1 << 30));
    let out = run_storaged(&[
        "restore",
        "--backup",
        path(&backups.join("mid-load")),
        "--archive",
        path(&archive),
        "--to",
        path(&scratch.path().join("beyond")),
        "--until-lsn",
        &beyond,
    ])?;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("latest reachable target is LSN {last:#x}")),
        "{}",
        text(&out)
    );
    assert!(!scratch.path().join("beyond").exists());

    println!(
        "restore drill: {} acknowledged writes by {WRITERS} writers; online backup {} ms \
         mid-load ({acked_at_backup} acknowledged before it returned)",
        acks.len(),
        backup_took.as_millis()
    );
    println!(
        "RTO: restore to LSN {target:#x} {} ms + start until the first answer {} ms = {} ms \
         (latest: restore {} ms)",
        restore_took.as_millis(),
        serve_took.as_millis(),
        (restore_took + serve_took).as_millis(),
        latest_took.as_millis()
    );
    println!(
        "RPO: at most the active, unsealed segment ({SEGMENT_MIB} MiB here, wal_segment_mib), \
         sealed after {SWITCH_MS} ms at the latest (switch_interval_ms); here the archive held \
         the last write {} ms after it was acknowledged",
        archive_lag.as_millis()
    );
    Ok(())
}
