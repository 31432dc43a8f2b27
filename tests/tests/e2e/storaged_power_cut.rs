//! A power cut at a random fsync loses nothing that was acknowledged, on the real binary.
//! `kill -9` never tears a write (the page cache outlives the process), so this test runs
//! storaged under an LD_PRELOAD shim (`tests/powercut/powercut.c`) that remembers what every
//! write to the data directory replaced since its file's last fsync and, at a random fsync,
//! puts back a random half of those 512-byte sectors and dies by SIGKILL: the disk a power cut
//! could leave, mid-commit or mid-checkpoint. After each cut a restart without the shim has
//! every acknowledged write at its acknowledged version, no acknowledged delete, no difference
//! but the writes in flight at the cut, and `photondb-storaged verify` finds the recovered
//! store clean.

use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use pb::admin_client::AdminClient;
use pb::storage_client::StorageClient;
use photondb_tests::ledger::{KeyState, Ledger, Val, check_and_resync, precondition, scan_all};
use photondb_tests::{Overrides, Storaged, TestCerts, pb, run_storaged, table};
use rand::Rng as _;
use rand::distributions::Alphanumeric;
use tonic::Code;
use tonic::transport::Channel;

const WRITERS: usize = 8;
/// Keys each writer updates and deletes again and again (besides its unique inserts).
const HOT_KEYS: usize = 6;
/// Cut/recover cycles on the same data directory (`PHOTONDB_POWERCUT_CYCLES` for more).
const CYCLES: usize = 4;
/// A cut can land where nothing is unsynced (a directory sync) or keep every sector; while no
/// cut has reverted anything yet, up to this many cycles run, so the test is never vacuous.
const MAX_CYCLES: usize = 8;
/// The writers stop after this even if the cut never came (and the test then fails).
const CYCLE_LIMIT: Duration = Duration::from_secs(20);
/// The cut is this fsync of the daemon's life, counted from its start: past the few syncs of
/// opening the store, after some hundred commits.
const CUT_SYNCS: std::ops::Range<u64> = 100..600;
/// Checkpoints every MiB of WAL and every second, so cuts land in checkpoints too.
const CONFIG: &str = "[checkpoint]\nwal_mib = 1\ninterval_ms = 1000\n";
const SIGKILL: i32 = 9;

/// How a writer's run ended: what it got acknowledged, and the error that stopped it (`None`:
/// the cycle's time ran out first).
#[derive(Debug)]
struct Ended {
    acked: usize,
    error: Option<tonic::Status>,
}

/// A JSON document of varied size: mostly small, some past a page (8 KiB), on overflow pages.
fn document(cycle: usize, w: usize, n: u64) -> Vec<u8> {
    let mut rng = rand::thread_rng();
    let pad = match rng.gen_range(0..10) {
        0..=5 => rng.gen_range(0..200),
        6 | 7 => rng.gen_range(1_000..6_000),
        _ => rng.gen_range(9_000..24_000),
    };
    let pad: String = rng
        .sample_iter(&Alphanumeric)
        .take(pad)
        .map(char::from)
        .collect();
    format!("{{\"cycle\":{cycle},\"writer\":{w},\"n\":{n},\"pad\":\"{pad}\"}}").into_bytes()
}

/// Runs until the daemon dies or `until` passes.
async fn writer(
    mut c: StorageClient<Channel>,
    ledger: Ledger,
    cycle: usize,
    w: usize,
    until: Instant,
) -> Ended {
    let mut acked = 0;
    for n in 0u64.. {
        if Instant::now() >= until {
            return Ended { acked, error: None };
        }
        let roll = rand::thread_rng().gen_range(0..10);
        let key = if roll < 6 {
            format!("c{cycle}-w{w}-{n:06}")
        } else {
            format!("hot-w{w}-{}", n as usize % HOT_KEYS)
        };
        let sent = {
            let mut l = ledger.lock().expect("ledger");
            let state = l.entry(key.clone()).or_insert(KeyState {
                acked: Val::Absent,
                pending: None,
            });
            let delete = roll == 9 && state.acked != Val::Absent;
            state.pending = Some((!delete).then(|| document(cycle, w, n)));
            state.clone()
        };
        let pre = precondition(&sent.acked);
        let result = match sent.pending.expect("just set") {
            Some(value) => c
                .put(pb::PutRequest {
                    table: table("app", "load"),
                    key: key.clone(),
                    value: value.clone(),
                    precondition: pre,
                })
                .await
                .map(|r| Val::Present(r.into_inner().version, value)),
            None => c
                .delete(pb::DeleteRequest {
                    table: table("app", "load"),
                    key: key.clone(),
                    precondition: pre,
                })
                .await
                .map(|_| Val::Absent),
        };
        match result {
            Ok(val) => {
                let mut l = ledger.lock().expect("ledger");
                let state = l.get_mut(&key).expect("entry");
                state.acked = val;
                state.pending = None;
                acked += 1;
            }
            Err(status) => {
                return Ended {
                    acked,
                    error: Some(status),
                };
            }
        }
    }
    unreachable!("the loop only ends by returning")
}

/// Builds the shim with the system C compiler. scripts/install-deps installs build-essential,
/// so a missing `cc` is a broken setup: the test fails, it does not skip.
fn build_shim(dir: &Path) -> anyhow::Result<PathBuf> {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("powercut/powercut.c");
    let shim = dir.join("powercut.so");
    let out = match Command::new("cc")
        .args(["-shared", "-fPIC", "-O2", "-o"])
        .arg(&shim)
        .arg(&source)
        .args(["-ldl", "-lpthread"])
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => anyhow::bail!(
            "expected a C compiler `cc` to build {} but found none: run scripts/install-deps (build-essential)",
            source.display()
        ),
        Err(e) => return Err(e).context("running cc"),
    };
    anyhow::ensure!(
        out.status.success(),
        "expected cc to build {} (exit 0), got {}:\n{}",
        source.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(shim)
}

/// The shim's environment for one cut.
fn shim_env(
    shim: &Path,
    data: &Path,
    at_sync: u64,
    seed: u64,
    report: &Path,
) -> Vec<(String, String)> {
    [
        ("LD_PRELOAD", shim.display().to_string()),
        ("PHOTONDB_POWERCUT_DIR", data.display().to_string()),
        ("PHOTONDB_POWERCUT_AT_SYNC", at_sync.to_string()),
        ("PHOTONDB_POWERCUT_SEED", seed.to_string()),
        ("PHOTONDB_POWERCUT_REPORT", report.display().to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// The number just before `what` in the shim's report, e.g. 17 in
/// "cut at sync 137: 12 unsynced writes in 2 files, 40 sectors, 17 sectors reverted (9 changed), 3 writes torn".
fn count_before(line: &str, what: &str) -> Option<u64> {
    let at = line.find(what)?;
    line[..at]
        .split_whitespace()
        .last()?
        .trim_start_matches('(')
        .parse()
        .ok()
}

/// The end of the daemon's log, for failure messages.
fn stderr_tail(storaged: &Storaged) -> String {
    let log = storaged.stderr();
    let from = log.len().saturating_sub(3000);
    let from = (from..log.len())
        .find(|&i| log.is_char_boundary(i))
        .unwrap_or(log.len());
    log[from..].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_power_cut_at_a_random_sync_loses_no_acknowledged_write() -> anyhow::Result<()> {
    let cycles: usize = std::env::var("PHOTONDB_POWERCUT_CYCLES")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(CYCLES);
    let started = Instant::now();
    // Next to the test binary, not in /tmp: a noexec /tmp would make the preload fail.
    let exe = std::env::current_exe()?;
    let shim_dir = tempfile::Builder::new()
        .prefix("powercut-")
        .tempdir_in(exe.parent().context("test binary directory")?)?;
    let shim = build_shim(shim_dir.path())?;
    let certs = TestCerts::new()?;
    let overrides = Overrides {
        extra_toml: CONFIG.into(),
        ..Overrides::default()
    };
    // The store is created without the shim; every cycle then starts the daemon under it.
    let mut storaged = Storaged::start(&certs, overrides)?;
    {
        let mut c = storaged.client().await?;
        photondb_tests::create_table(&mut c, "app", "load").await?;
    }
    let status = storaged.stop()?;
    assert!(
        status.success(),
        "expected a clean exit on SIGTERM, got {status}"
    );
    let data = storaged.data_dir().canonicalize()?;
    let data_arg = data.to_str().context("utf-8 data directory")?.to_owned();

    let ledger: Ledger = Arc::default();
    let (mut reverted_total, mut changed_total, mut torn_cuts) = (0, 0, 0);
    let mut cycle = 0;
    while cycle < cycles
        || ((changed_total == 0 || torn_cuts == 0) && cycle < MAX_CYCLES.max(cycles))
    {
        let at_sync = rand::thread_rng().gen_range(CUT_SYNCS);
        let seed = rand::thread_rng().gen_range(0..u64::MAX);
        let report = storaged.work_dir().join(format!("powercut-{cycle}.txt"));
        let run = format!("cycle {cycle} (cut at fsync {at_sync}, seed {seed})");
        storaged.set_env(shim_env(&shim, &data, at_sync, seed, &report));
        storaged
            .restart()
            .with_context(|| format!("{run}: starting under the shim"))?;
        // ld.so only warns when a preload fails; the shim says when it is armed.
        let armed = storaged.stderr().matches("powercut: armed: ").count();
        assert_eq!(
            armed,
            cycle + 1,
            "{run}: expected the shim armed once per start under it ({}), found {armed}; log tail:\n{}",
            cycle + 1,
            stderr_tail(&storaged)
        );

        let channel = storaged.channel().await?;
        let until = Instant::now() + CYCLE_LIMIT;
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let c = StorageClient::new(channel.clone());
                tokio::spawn(writer(c, ledger.clone(), cycle, w, until))
            })
            .collect();
        let mut admin = AdminClient::new(channel.clone());
        let checkpoints = tokio::spawn(async move {
            while Instant::now() < until && admin.checkpoint(pb::CheckpointRequest {}).await.is_ok()
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        let mut ended = Vec::with_capacity(WRITERS);
        for t in writers {
            let end = tokio::time::timeout(CYCLE_LIMIT + Duration::from_secs(15), t)
                .await
                .with_context(|| format!("{run}: a writer hung past the cycle's time"))??;
            ended.push(end);
        }
        tokio::time::timeout(Duration::from_secs(30), checkpoints).await??;
        drop(channel);
        let acked: usize = ended.iter().map(|e| e.acked).sum();
        let status = storaged.wait_for_exit(Duration::from_secs(10)).with_context(|| {
            format!(
                "{run}: expected the daemon to die at the cut within {CYCLE_LIMIT:?}, but it was still running after {acked} acknowledged writes"
            )
        })?;
        assert_eq!(
            status.signal(),
            Some(SIGKILL),
            "{run}: expected storaged to die by SIGKILL at the cut, got {status}; log tail:\n{}",
            stderr_tail(&storaged)
        );
        for (w, end) in ended.iter().enumerate() {
            let code = end.error.as_ref().map(tonic::Status::code);
            assert!(
                matches!(
                    code,
                    Some(Code::Unavailable | Code::Unknown | Code::Cancelled)
                ),
                "{run}: expected writer {w} to stop when the daemon died, but it stopped on {:?}",
                end.error
            );
        }
        assert!(
            acked > 0,
            "{run}: expected writes acknowledged before the cut, found none"
        );
        let line = std::fs::read_to_string(&report).with_context(|| {
            format!("{run}: expected the shim's report at {}", report.display())
        })?;
        let line = line.trim();
        eprintln!("{run}: {line}");
        assert!(
            line.starts_with(&format!("cut at sync {at_sync}:")),
            "{run}: expected a report of the cut at sync {at_sync}, found {line:?}"
        );
        let count = |what: &str| {
            count_before(line, what)
                .with_context(|| format!("{run}: expected a count before {what:?} in {line:?}"))
        };
        reverted_total += count(" sectors reverted")?;
        changed_total += count(" changed)")?;

        // Recovery, without the shim.
        storaged.set_env(Vec::new());
        storaged
            .restart()
            .with_context(|| format!("{run}: recovering after the cut"))?;
        // What recovery did, from its audit event: a torn WAL write is cut as a torn tail.
        let recovery = storaged
            .audit_events()
            .into_iter()
            .rev()
            .find(|e| e["kind"] == "recovery")
            .with_context(|| format!("{run}: no recovery audit event after the restart"))?;
        let report = recovery["report"].as_str().unwrap_or_default().to_owned();
        torn_cuts += usize::from(report.contains("(TornTail)"));
        eprintln!(
            "{run}: recovery: {}",
            report.lines().last().unwrap_or_default()
        );
        let found = scan_all(&storaged, "app", "load").await?;
        let (keys, applied) = {
            let mut ledger = ledger.lock().expect("ledger");
            let applied = check_and_resync(&run, &mut ledger, &found, WRITERS);
            (ledger.len(), applied)
        };
        eprintln!(
            "{run}: {acked} writes acknowledged before the cut; {keys} keys checked against the ledger, {} present, {applied} in-flight writes applied",
            found.len()
        );
        let status = storaged.stop()?;
        assert!(
            status.success(),
            "{run}: expected a clean exit on SIGTERM after recovery, got {status}"
        );
        let out = run_storaged(&["verify", "--data-dir", data_arg.as_str()])?;
        assert_eq!(
            out.status.code(),
            Some(0),
            "{run}: expected verify of the recovered store to exit 0 (clean), got {}\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        cycle += 1;
    }
    eprintln!(
        "{cycle} power cuts in {:?}: {reverted_total} sectors reverted, {changed_total} of them changed",
        started.elapsed()
    );
    assert!(
        reverted_total > 0,
        "expected the cuts to revert some unsynced sectors (else the test proves nothing), but {cycle} cuts reverted none"
    );
    assert!(
        torn_cuts > 0,
        "expected some cut to tear a WAL write that recovery then cut as a torn tail (else the log's torn-write path went untested), but none of {cycle} recoveries did"
    );
    assert!(
        changed_total > 0,
        "expected some reverted sector to get other bytes back than the write it undid (else the test proves nothing), but all {reverted_total} reverted sectors got their own bytes back"
    );
    Ok(())
}
