//! Backups, WAL archiving and point-in-time restore, on the real filesystem: what a restore
//! returns is exactly the acknowledged state at its target, and every kind of damage to a backup
//! or an archive is refused by name with nothing left under the target's name.

use photondb_storaged::engine::{
    ArchiveOptions, Condition, Engine, EngineOptions, Error, Identities, Manifest, Recipients,
    RestoreError, RestoreTarget, Scan, generate_identity, restore,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const SEGMENT: u64 = 256 << 10;

/// An acknowledged put: key, value, LSN.
type Ack = (String, Vec<u8>, u64);

struct Fixture {
    root: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture {
            root: tempfile::tempdir().unwrap(),
        }
    }
    fn path(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }
}

fn archive_opts(dir: &Path, bound: u64, recipients: Option<Recipients>) -> ArchiveOptions {
    ArchiveOptions {
        dir: dir.to_path_buf(),
        max_unarchived_bytes: bound,
        command: None,
        command_timeout: Duration::from_secs(30),
        switch_interval: None,
        recipients,
    }
}

fn open(dir: &Path, archive: Option<ArchiveOptions>) -> Arc<Engine> {
    open_checkpointing(dir, archive, 64 << 20)
}

/// `open`, checkpointing after every `checkpoint_wal_bytes` of WAL.
fn open_checkpointing(
    dir: &Path,
    archive: Option<ArchiveOptions>,
    checkpoint_wal_bytes: u64,
) -> Arc<Engine> {
    let opts = EngineOptions {
        wal_segment_size: SEGMENT,
        checkpoint_wal_bytes,
        archive,
        ..EngineOptions::default()
    };
    let (engine, _) = Engine::open(dir, opts).unwrap();
    engine.create_database("d").ok();
    engine.create_table("d", "t").ok();
    Arc::new(engine)
}

fn put(engine: &Engine, key: &str, value: &[u8]) -> Result<Ack, Error> {
    let lsn = engine.put("d", "t", key, value, Condition::Any)?;
    Ok((key.to_string(), value.to_vec(), lsn))
}

fn value(writer: usize, i: usize) -> Vec<u8> {
    format!(
        "{{\"w\":{writer},\"i\":{i},\"pad\":\"{}\"}}",
        "x".repeat(200)
    )
    .into_bytes()
}

/// `writers` threads putting until `stop` (or `count` each): their acknowledgements.
fn write_load(
    engine: &Arc<Engine>,
    writers: usize,
    count: usize,
    stop: &Arc<AtomicBool>,
    tag: &str,
) -> Vec<std::thread::JoinHandle<Vec<Ack>>> {
    (0..writers)
        .map(|w| {
            let (engine, stop, tag) = (engine.clone(), stop.clone(), tag.to_string());
            std::thread::spawn(move || {
                let mut acks = Vec::new();
                for i in 0..count {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let key = format!("{tag}-w{w}-k{}", i % 40);
                    acks.push(put(&engine, &key, &value(w, i)).unwrap());
                }
                acks
            })
        })
        .collect()
}

fn join(handles: Vec<std::thread::JoinHandle<Vec<Ack>>>) -> Vec<Ack> {
    handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect()
}

/// The state the acknowledged writes up to and including `lsn` leave.
fn state_at(acks: &[Ack], lsn: u64) -> BTreeMap<String, Vec<u8>> {
    let mut sorted: Vec<&Ack> = acks.iter().filter(|a| a.2 <= lsn).collect();
    sorted.sort_by_key(|a| a.2);
    sorted
        .into_iter()
        .map(|(k, v, _)| (k.clone(), v.clone()))
        .collect()
}

/// Every document of `d/t` in a restored store.
fn contents(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let opts = EngineOptions {
        create_if_missing: false,
        ..EngineOptions::default()
    };
    let (engine, _) = Engine::open(dir, opts).unwrap();
    let mut out = BTreeMap::new();
    let mut scan = Scan {
        prefix: String::new(),
        start_after: None,
        limit: 1000,
    };
    loop {
        let page = engine.scan("d", "t", &scan).unwrap();
        for doc in page.docs {
            out.insert(doc.key, doc.value);
        }
        match page.next_start_after {
            Some(next) => scan.start_after = Some(next),
            None => return out,
        }
    }
}

fn archived_segments(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".meta"))
        .collect();
    names.sort();
    names
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn flip_byte(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at] ^= 0x40;
    std::fs::write(path, bytes).unwrap();
}

/// Nothing under the target's name, and no staging directory left beside it.
fn assert_nothing_left(to: &Path) {
    assert!(
        !to.exists(),
        "{} exists after a refused restore",
        to.display()
    );
    let parent = to.parent().unwrap();
    let leftovers: Vec<_> = std::fs::read_dir(parent)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".restoring"))
        .collect();
    assert!(leftovers.is_empty(), "staging left: {leftovers:?}");
}

/// Sixteen writers keep committing (and checkpoints keep writing the data file) while a backup
/// copies it; restoring the backup alone returns exactly the writes acknowledged up to its end
/// LSN, and none after it. A restored copy cannot archive into the original's archive.
#[test]
fn a_backup_under_sixteen_writers_restores_exactly_what_was_acknowledged_before_its_end() {
    let f = Fixture::new();
    let archive = archive_opts(&f.path("archive"), 1 << 30, None);
    let engine = open_checkpointing(&f.path("data"), Some(archive.clone()), 128 << 10);
    let stop = Arc::new(AtomicBool::new(false));
    let load = write_load(&engine, 16, 100_000, &stop, "a");
    std::thread::sleep(Duration::from_millis(300));
    let manifest = engine.backup(&f.path("backup"), None).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let acks = join(load);
    let before = acks.iter().filter(|a| a.2 <= manifest.end_lsn).count();
    let after = acks.len() - before;
    assert!(
        before > 100 && after > 100,
        "{before} writes before the end, {after} after"
    );
    assert!(manifest.files.iter().any(|f| f.path == "pages.db"));
    assert!(manifest.files.iter().any(|f| f.path.starts_with("wal/")));

    let report = restore(
        &f.path("backup"),
        None,
        &f.path("restored"),
        RestoreTarget::Latest,
        None,
    )
    .unwrap();
    assert_eq!(report.target_lsn, manifest.end_lsn);
    assert_eq!(
        contents(&f.path("restored")),
        state_at(&acks, manifest.end_lsn)
    );

    // With the archive, the same backup reaches the last acknowledged write.
    assert!(engine.seal_active_segment().unwrap());
    engine.archive_pending().unwrap();
    assert_eq!(engine.archive_stats().waiting_segments, 0);
    let report = restore(
        &f.path("backup"),
        Some(&f.path("archive")),
        &f.path("latest"),
        RestoreTarget::Latest,
        None,
    )
    .unwrap();
    let last = acks.iter().map(|a| a.2).max().unwrap();
    assert_eq!(report.target_lsn, last);
    assert!(report.segments_from_archive > 0, "{report}");
    assert_eq!(contents(&f.path("latest")), state_at(&acks, last));
    assert!(
        engine.stats().checkpoints > 3,
        "no checkpoint ran during the load"
    );

    // The restored store shares the instance id, not the original's claim on its archive.
    let copy = open(&f.path("latest"), Some(archive));
    put(&copy, "fork", b"{}").unwrap();
    copy.seal_active_segment().unwrap();
    let err = copy.archive_pending().unwrap_err();
    assert!(
        err.to_string().contains("another copy of this store"),
        "{err}"
    );
}

/// Restoring to an LSN and to a time returns exactly the acknowledged state at that point;
/// backup and archive are both encrypted to an age recipient, and decrypted with its identity.
#[test]
fn point_in_time_restore_by_lsn_and_by_time_returns_the_acknowledged_state_there() {
    let f = Fixture::new();
    let (identity_text, public) = generate_identity();
    std::fs::write(f.path("identity.txt"), identity_text).unwrap();
    let recipients = Recipients::parse(&[public]).unwrap();
    let archive = archive_opts(&f.path("archive"), 1 << 30, Some(recipients.clone()));
    let engine = open(&f.path("data"), Some(archive));
    let manifest: Manifest = engine.backup(&f.path("backup"), Some(&recipients)).unwrap();
    assert!(manifest.encrypted);
    assert!(f.path("backup/pages.db.age").exists() && !f.path("backup/pages.db").exists());
    let never = Arc::new(AtomicBool::new(false));
    let phase_a = join(write_load(&engine, 4, 300, &never, "a"));
    std::thread::sleep(Duration::from_millis(50));
    let time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    std::thread::sleep(Duration::from_millis(50));
    let phase_b = join(write_load(&engine, 4, 300, &never, "b"));
    assert!(engine.seal_active_segment().unwrap());
    assert!(engine.archive_pending().unwrap() >= 2);
    let stored = std::fs::read(f.path("archive/0000000000000000.wal.age")).unwrap();
    assert!(
        !stored.windows(7).any(|w| w == b"\"pad\":\""),
        "archived plaintext"
    );
    let all: Vec<Ack> = phase_a.iter().chain(&phase_b).cloned().collect();
    let identities = Identities::load(&f.path("identity.txt")).unwrap();

    let by_time = restore(
        &f.path("backup"),
        Some(&f.path("archive")),
        &f.path("by-time"),
        RestoreTarget::UntilTime(time),
        Some(&identities),
    )
    .unwrap();
    let last_a = phase_a.iter().map(|a| a.2).max().unwrap();
    assert_eq!(by_time.target_lsn, last_a);
    assert_eq!(contents(&f.path("by-time")), state_at(&phase_a, last_a));
    // Before the backup is consistent, and after the last commit archived: refused by name.
    let early = restore(
        &f.path("backup"),
        Some(&f.path("archive")),
        &f.path("early"),
        RestoreTarget::UntilTime(manifest.end_unix_ms - 1),
        Some(&identities),
    )
    .unwrap_err();
    assert!(
        matches!(early, RestoreError::BeforeBackup { .. }),
        "{early}"
    );
    let late = restore(
        &f.path("backup"),
        Some(&f.path("archive")),
        &f.path("late"),
        RestoreTarget::UntilTime(time + 3_600_000),
        Some(&identities),
    )
    .unwrap_err();
    assert!(matches!(late, RestoreError::TimeBeyondEnd { .. }), "{late}");
    assert_nothing_left(&f.path("early"));
    assert_nothing_left(&f.path("late"));

    let mut lsns: Vec<u64> = all.iter().map(|a| a.2).collect();
    lsns.sort_unstable();
    let middle = lsns[lsns.len() * 2 / 3];
    let by_lsn = restore(
        &f.path("backup"),
        Some(&f.path("archive")),
        &f.path("by-lsn"),
        RestoreTarget::UntilLsn(middle),
        Some(&identities),
    )
    .unwrap();
    assert_eq!(by_lsn.target_lsn, middle);
    assert_eq!(contents(&f.path("by-lsn")), state_at(&all, middle));

    // Without the identity, nothing is restored.
    let err = restore(
        &f.path("backup"),
        Some(&f.path("archive")),
        &f.path("no-key"),
        RestoreTarget::Latest,
        None,
    )
    .unwrap_err();
    assert!(matches!(err, RestoreError::NeedIdentity), "{err}");
    assert_nothing_left(&f.path("no-key"));
}

/// A store with a backup and, after it, at least four archived segments of acknowledged writes.
fn archived_store(f: &Fixture, recipients: Option<Recipients>) -> Vec<Ack> {
    let archive = archive_opts(&f.path("archive"), 1 << 30, recipients.clone());
    let engine = open(&f.path("data"), Some(archive));
    engine
        .backup(&f.path("backup"), recipients.as_ref())
        .unwrap();
    let never = Arc::new(AtomicBool::new(false));
    let acks = join(write_load(&engine, 4, 1200, &never, "a"));
    engine.seal_active_segment().unwrap();
    assert!(engine.archive_pending().unwrap() >= 4);
    acks
}

/// Each kind of damage is refused with its reason named, and leaves nothing under the target.
#[test]
fn damaged_backups_and_archives_are_refused_by_name() {
    let f = Fixture::new();
    let acks = archived_store(&f, None);
    let segments = archived_segments(&f.path("archive"));
    let third = segments[2].trim_end_matches(".meta").to_string();
    let third_start = u64::from_str_radix(third.trim_end_matches(".wal"), 16).unwrap();
    let case = |name: &str, damage: &dyn Fn(&Path, &Path), target: RestoreTarget| {
        let (backup, archive) = (
            f.path(&format!("{name}-backup")),
            f.path(&format!("{name}-archive")),
        );
        copy_dir(&f.path("backup"), &backup);
        copy_dir(&f.path("archive"), &archive);
        damage(&backup, &archive);
        let to = f.path(&format!("{name}-restored"));
        let result = restore(&backup, Some(&archive), &to, target, None);
        if result.is_err() {
            assert_nothing_left(&to);
        }
        result
    };
    let gap = |err: RestoreError, reason: &str| match err {
        RestoreError::Gap {
            first_missing_lsn,
            latest_reachable_lsn,
            reason: why,
        } => {
            assert_eq!(first_missing_lsn, third_start + 128, "{why}");
            assert!(
                latest_reachable_lsn < third_start,
                "{latest_reachable_lsn:#x}"
            );
            assert!(why.contains(reason) && why.contains(&third), "{why}");
            latest_reachable_lsn
        }
        other => panic!("expected a gap ({reason}), got: {other}"),
    };

    let corrupt = |_: &Path, a: &Path| flip_byte(&a.join(&third), 100_000);
    let reachable = gap(
        case("corrupt", &corrupt, RestoreTarget::Latest).unwrap_err(),
        "damaged",
    );
    // The latest reachable target is restorable from the same damaged archive.
    let ok = case("before-gap", &corrupt, RestoreTarget::UntilLsn(reachable)).unwrap();
    assert_eq!(ok.target_lsn, reachable);
    assert_eq!(
        contents(&f.path("before-gap-restored")),
        state_at(&acks, reachable)
    );

    let truncate = |_: &Path, a: &Path| {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(a.join(&third))
            .unwrap();
        file.set_len(SEGMENT / 2).unwrap();
    };
    gap(
        case("truncated", &truncate, RestoreTarget::Latest).unwrap_err(),
        "damaged",
    );
    let remove = |_: &Path, a: &Path| {
        std::fs::remove_file(a.join(&third)).unwrap();
        std::fs::remove_file(a.join(format!("{third}.meta"))).unwrap();
    };
    let last = acks.iter().map(|a| a.2).max().unwrap();
    gap(
        case("missing", &remove, RestoreTarget::UntilLsn(last)).unwrap_err(),
        "missing",
    );

    let data_file = |b: &Path, _: &Path| flip_byte(&b.join("pages.db"), 4096 + 10);
    match case("manifest", &data_file, RestoreTarget::Latest).unwrap_err() {
        RestoreError::FileMismatch { file, .. } => assert_eq!(file, "pages.db"),
        other => panic!("expected a manifest mismatch, got: {other}"),
    }
    let no_manifest = |b: &Path, _: &Path| std::fs::remove_file(b.join("manifest.json")).unwrap();
    let err = case("incomplete", &no_manifest, RestoreTarget::Latest).unwrap_err();
    assert!(matches!(err, RestoreError::Incomplete(_)), "{err}");

    // Another store's archive, even with segments at the same positions.
    let other = Fixture::new();
    archived_store(&other, None);
    let foreign = |_: &Path, a: &Path| {
        std::fs::remove_dir_all(a).unwrap();
        copy_dir(&other.path("archive"), a);
    };
    let err = case("foreign", &foreign, RestoreTarget::Latest).unwrap_err();
    assert!(matches!(err, RestoreError::ForeignArchive { .. }), "{err}");
    assert!(err.to_string().contains("another store"), "{err}");
    // A target past what the archive holds names the latest reachable one.
    let err = case(
        "beyond",
        &|_, _| {},
        RestoreTarget::UntilLsn(last + (64 << 20)),
    )
    .unwrap_err();
    match err {
        RestoreError::BeyondEnd {
            latest_reachable_lsn,
            ..
        } => assert_eq!(latest_reachable_lsn, last),
        other => panic!("expected beyond-the-end, got: {other}"),
    }
}

/// Tampered ciphertext is refused: by the manifest's digest of the stored file, and, with that
/// digest forged to match, by age's authentication itself. A wrong key is refused too.
#[test]
fn tampered_ciphertext_and_a_wrong_key_are_refused() {
    let f = Fixture::new();
    let (identity_text, public) = generate_identity();
    std::fs::write(f.path("identity.txt"), identity_text).unwrap();
    let (wrong_text, _) = generate_identity();
    std::fs::write(f.path("wrong.txt"), wrong_text).unwrap();
    let recipients = Recipients::parse(&[public]).unwrap();
    archived_store(&f, Some(recipients));
    let identities = Identities::load(&f.path("identity.txt")).unwrap();
    let ciphertext = f.path("backup/pages.db.age");
    let len = std::fs::metadata(&ciphertext).unwrap().len() as usize;
    flip_byte(&ciphertext, len / 2);
    let err = restore(
        &f.path("backup"),
        None,
        &f.path("r1"),
        RestoreTarget::Latest,
        Some(&identities),
    )
    .unwrap_err();
    assert!(err.to_string().contains("SHA-256 as stored"), "{err}");
    assert_nothing_left(&f.path("r1"));

    // Forge the manifest's digest of the tampered file: age must still refuse it.
    let manifest_path = f.path("backup/manifest.json");
    let mut manifest: Manifest =
        serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    let (digest, _) = sha256_of(&ciphertext);
    manifest
        .files
        .iter_mut()
        .find(|m| m.path == "pages.db")
        .unwrap()
        .stored_sha256 = digest;
    std::fs::write(&manifest_path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    let err = restore(
        &f.path("backup"),
        None,
        &f.path("r2"),
        RestoreTarget::Latest,
        Some(&identities),
    )
    .unwrap_err();
    match &err {
        RestoreError::FileMismatch { file, reason } => {
            assert_eq!(file, "pages.db");
            assert!(reason.contains("cannot decrypt"), "{reason}");
        }
        other => panic!("expected a decryption refusal, got: {other}"),
    }
    assert_nothing_left(&f.path("r2"));

    let wrong = Identities::load(&f.path("wrong.txt")).unwrap();
    let err = restore(
        &f.path("backup"),
        Some(&f.path("archive")),
        &f.path("r3"),
        RestoreTarget::Latest,
        Some(&wrong),
    )
    .unwrap_err();
    assert!(err.to_string().contains("cannot decrypt"), "{err}");
    assert_nothing_left(&f.path("r3"));
}

fn sha256_of(path: &Path) -> (String, u64) {
    use sha2::{Digest, Sha256};
    let bytes = std::fs::read(path).unwrap();
    let digest = Sha256::digest(&bytes);
    (
        digest.iter().map(|b| format!("{b:02x}")).collect(),
        bytes.len() as u64,
    )
}

/// While the archive is unavailable, sealed segments are kept (checkpoints retire none of them)
/// and past the bound writes are refused; once it is back, they are shipped in order, writes
/// resume, and a restore reaches every acknowledged write.
#[test]
fn an_unavailable_archive_keeps_segments_refuses_writes_past_the_bound_then_catches_up() {
    let f = Fixture::new();
    // A regular file where the archive's parent should be: the archive cannot be created.
    std::fs::write(f.path("mount"), b"not a directory").unwrap();
    let archive_dir = f.path("mount/archive");
    let engine = open(
        &f.path("data"),
        Some(archive_opts(&archive_dir, 3 * SEGMENT, None)),
    );
    engine.backup(&f.path("backup"), None).unwrap();
    let mut acks = Vec::new();
    let refused = loop {
        match put(
            &engine,
            &format!("k{}", acks.len() % 500),
            &value(0, acks.len()),
        ) {
            Ok(ack) => acks.push(ack),
            Err(e) => break e,
        }
        if acks.len() % 100 == 0 {
            let sealed = engine.archive_stats().waiting_segments > 0;
            assert!(!sealed || engine.archive_pending().is_err());
            engine.checkpoint().unwrap();
        }
        assert!(acks.len() < 100_000, "writes were never refused");
    };
    assert!(matches!(refused, Error::ArchiveBehind { .. }), "{refused}");
    let stats = engine.archive_stats();
    assert!(
        stats.waiting_bytes > 3 * SEGMENT && stats.failures > 0,
        "{stats:?}"
    );
    let wal_files = std::fs::read_dir(f.path("data/wal")).unwrap().count();
    assert!(
        wal_files as u64 > stats.waiting_segments,
        "sealed segments were retired"
    );
    // Reads still work.
    assert!(engine.get("d", "t", "k0").unwrap().is_some());

    std::fs::remove_file(f.path("mount")).unwrap();
    let shipped = engine.archive_pending().unwrap();
    assert_eq!(shipped as u64, stats.waiting_segments);
    assert_eq!(engine.archive_stats().waiting_segments, 0);
    let names = archived_segments(&archive_dir);
    let starts: Vec<u64> = names
        .iter()
        .map(|n| u64::from_str_radix(n.trim_end_matches(".wal.meta"), 16).unwrap())
        .collect();
    assert_eq!(
        starts,
        (0..starts.len() as u64)
            .map(|i| i * SEGMENT)
            .collect::<Vec<_>>()
    );
    acks.push(put(&engine, "after", b"{\"back\":true}").unwrap());
    engine.seal_active_segment().unwrap();
    engine.archive_pending().unwrap();
    let last = acks.last().unwrap().2;
    let report = restore(
        &f.path("backup"),
        Some(&archive_dir),
        &f.path("restored"),
        RestoreTarget::Latest,
        None,
    )
    .unwrap();
    assert_eq!(report.target_lsn, last);
    assert_eq!(contents(&f.path("restored")), state_at(&acks, last));
}

/// A copy cut short by a kill (a temporary file, a segment without its sidecar) is never taken
/// for an archived segment; the mark is still there, and the next pass ships it whole. A
/// command hook ships each segment elsewhere, and while it fails the segment keeps waiting.
#[test]
fn a_copy_cut_short_is_shipped_again_and_the_hook_must_succeed() {
    let f = Fixture::new();
    let (archive_dir, offsite, fail) = (f.path("archive"), f.path("offsite"), f.path("fail"));
    std::fs::create_dir_all(&offsite).unwrap();
    let mut opts = archive_opts(&archive_dir, 1 << 30, None);
    opts.command = Some(format!(
        "test -e {} && exit 1; cp %p {}/%f",
        fail.display(),
        offsite.display()
    ));
    let engine = open(&f.path("data"), Some(opts));
    engine.backup(&f.path("backup"), None).unwrap();
    let never = Arc::new(AtomicBool::new(false));
    let acks = join(write_load(&engine, 2, 1500, &never, "a"));
    engine.seal_active_segment().unwrap();
    let waiting = engine.archive_stats().waiting_segments;
    assert!(waiting >= 2, "{waiting}");
    // The first pass copies every segment but the hook fails: all stay waiting, none offsite.
    std::fs::write(&fail, b"").unwrap();
    let err = engine.archive_pending().unwrap_err();
    assert!(err.to_string().contains("archive command failed"), "{err}");
    assert_eq!(
        engine.archive_stats().waiting_segments,
        waiting,
        "a failed hook archived it"
    );
    assert_eq!(std::fs::read_dir(&offsite).unwrap().count(), 0);
    // What a kill during the copy of the second segment leaves: a partial temporary file, and
    // a half segment under the final name without its sidecar.
    let second = format!("{:016x}.wal", SEGMENT);
    std::fs::write(archive_dir.join(format!("{second}.tmp")), vec![7u8; 1000]).unwrap();
    std::fs::write(archive_dir.join(&second), vec![0u8; (SEGMENT / 2) as usize]).unwrap();
    let to = f.path("early");
    match restore(
        &f.path("backup"),
        Some(&archive_dir),
        &to,
        RestoreTarget::Latest,
        None,
    ) {
        Err(RestoreError::Gap {
            reason,
            first_missing_lsn,
            ..
        }) => {
            assert!(
                reason.contains(&second) && reason.contains("no sidecar"),
                "{reason}"
            );
            assert_eq!(first_missing_lsn, SEGMENT + 128);
        }
        other => panic!("a half-copied segment was taken as archived: {other:?}"),
    }
    assert_nothing_left(&to);

    std::fs::remove_file(&fail).unwrap();
    assert_eq!(engine.archive_pending().unwrap() as u64, waiting);
    assert_eq!(std::fs::read_dir(&offsite).unwrap().count() as u64, waiting);
    let tmp = std::fs::read_dir(&archive_dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".tmp")
        })
        .count();
    assert_eq!(tmp, 0, "temporary files left in the archive");
    let last = acks.iter().map(|a| a.2).max().unwrap();
    let report = restore(
        &f.path("backup"),
        Some(&archive_dir),
        &f.path("restored"),
        RestoreTarget::Latest,
        None,
    )
    .unwrap();
    assert_eq!(report.target_lsn, last);
    assert_eq!(contents(&f.path("restored")), state_at(&acks, last));
}
