//! The offline tools (`verify`, `recover`) on the real binary: a mistyped directory is an
//! error that creates nothing (never a new, empty, "clean" store), `--until-lsn` takes the hex
//! LSNs the reports print and only goes with point-in-time, a refusal is exit 2, and
//! `--audit-log` puts an offline recovery in the daemon's hash-chained audit log.

use photondb_tests::{Overrides, Storaged, TestCerts, create_table, pb, run_storaged, table};

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn a_directory_without_a_store_is_refused_and_left_alone() -> anyhow::Result<()> {
    let scratch = tempfile::tempdir()?;
    let missing = scratch.path().join("typo");
    let path = missing.to_str().expect("utf-8 path");

    let out = run_storaged(&["verify", "--data-dir", path])?;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("holds no store"), "{}", text(&out));

    let out = run_storaged(&["recover", "--data-dir", path, "--mode", "salvage"])?;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("holds no store"), "{}", text(&out));
    let out = run_storaged(&["inspect", "--data-dir", path])?;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("holds no store"), "{}", text(&out));
    assert!(!missing.exists(), "an offline tool created {path}");

    // An existing but empty directory stays empty.
    std::fs::create_dir(&missing)?;
    let out = run_storaged(&["verify", "--data-dir", path])?;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_eq!(std::fs::read_dir(&missing)?.count(), 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recover_takes_hex_lsns_for_point_in_time_only() -> anyhow::Result<()> {
    let certs = TestCerts::new()?;
    let mut storaged = Storaged::start(&certs, Overrides::default())?;
    let mut client = storaged.client().await?;
    create_table(&mut client, "app", "t").await?;
    let version = client
        .put(pb::PutRequest {
            table: table("app", "t"),
            key: "k".into(),
            value: b"{}".to_vec(),
            precondition: None,
        })
        .await?
        .into_inner()
        .version;
    drop(client);
    assert!(storaged.stop()?.success());
    let dir = storaged.data_dir();
    let dir = dir.to_str().expect("utf-8 path");
    let lsn = format!("{version:#x}");

    // inspect lists the put with the LSN a point-in-time target takes.
    let out = run_storaged(&["inspect", "--data-dir", dir])?;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("{lsn} put app/t/k")),
        "{}",
        text(&out)
    );

    let out = run_storaged(&[
        "recover",
        "--data-dir",
        dir,
        "--mode",
        "strict",
        "--until-lsn",
        &lsn,
    ])?;
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    assert!(text(&out).contains("--until-lsn goes with --mode point-in-time"));

    let out = run_storaged(&[
        "recover",
        "--data-dir",
        dir,
        "--mode",
        "point-in-time",
        "--until-lsn",
        "0xzz",
    ])?;
    // A usage error is 64, never 2 (which means "refused, with a report").
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    assert!(text(&out).contains("is not an LSN"), "{}", text(&out));

    // A mistyped audit log is an error, not the start of a new hash chain.
    let typo = storaged.work_dir().join("audit-typo.log");
    let out = run_storaged(&[
        "recover",
        "--data-dir",
        dir,
        "--mode",
        "torn-tail",
        "--audit-log",
        typo.to_str().expect("utf-8 path"),
    ])?;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("does not exist"), "{}", text(&out));
    assert!(!typo.exists());

    let audit_log = storaged.audit_log_path();
    let events_before = storaged.audit_chain_len()?;
    let out = run_storaged(&[
        "recover",
        "--data-dir",
        dir,
        "--mode",
        "point-in-time",
        "--until-lsn",
        &lsn,
        "--audit-log",
        audit_log.to_str().expect("utf-8 path"),
    ])?;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // On record in the daemon's hash chain, which still verifies end to end.
    assert_eq!(storaged.audit_chain_len()?, events_before + 1);
    let event = storaged.audit_events().pop().expect("an audit event");
    assert_eq!(
        (&event["kind"], &event["offline"]),
        (&"recovery".into(), &true.into())
    );
    let report = event["report"].as_str().unwrap_or_default();
    assert!(report.contains("point-in-time"), "{event}");

    let out = run_storaged(&["verify", "--data-dir", dir])?;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // Bytes at the end of the active segment with no valid record after them: a torn tail,
    // which recovery would cut. Verify says so, exits 3, and cuts nothing itself (it once ran
    // recovery first, which cut the tail and exited 0).
    let mut segments: Vec<_> = std::fs::read_dir(storaged.data_dir().join("wal"))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    segments.sort();
    let active = segments.last().expect("a WAL segment");
    let file = std::fs::OpenOptions::new().write(true).open(active)?;
    let len = file.metadata()?.len();
    std::os::unix::fs::FileExt::write_all_at(&file, &[0xAB; 16], len - 16)?;
    drop(file);
    let segment_before = std::fs::read(active)?;
    let quarantine = storaged.data_dir().join("quarantine");
    let listed = |q: &std::path::Path| -> Vec<std::path::PathBuf> {
        let mut names: Vec<_> = std::fs::read_dir(q)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        names.sort();
        names
    };
    let quarantined_before = listed(&quarantine);
    let out = run_storaged(&["verify", "--data-dir", dir])?;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        text(&out).contains("recovery would cut a torn tail of "),
        "{}",
        text(&out)
    );
    assert_eq!(
        std::fs::read(active)?,
        segment_before,
        "verify changed the log"
    );
    assert_eq!(
        listed(&quarantine),
        quarantined_before,
        "verify quarantined bytes"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_prints_keys_escaped_never_raw_terminal_controls() -> anyhow::Result<()> {
    let certs = TestCerts::new()?;
    let mut storaged = Storaged::start(&certs, Overrides::default())?;
    let mut client = storaged.client().await?;
    create_table(&mut client, "app", "t").await?;
    // A key that would clear the operator's screen and retitle the terminal if printed raw.
    let key = "x\u{1b}[2J\u{1b}]0;owned\u{7}y";
    client
        .put(pb::PutRequest {
            table: table("app", "t"),
            key: key.into(),
            value: b"{}".to_vec(),
            precondition: None,
        })
        .await?;
    drop(client);
    assert!(storaged.stop()?.success());
    let dir = storaged.data_dir();
    let out = run_storaged(&["inspect", "--data-dir", dir.to_str().expect("utf-8 path")])?;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let shown = text(&out);
    assert!(
        !shown.contains('\u{1b}') && !shown.contains('\u{7}'),
        "{shown:?}"
    );
    assert!(
        shown.contains("x\\u{1b}[2J"),
        "the key is shown escaped: {shown}"
    );
    Ok(())
}

/// `recover --config` finds the store and the audit log in storaged's configuration and signs
/// what it appends with the `[audit]` key, as the daemon would: the log ends with a fresh
/// anchor over the recovery event, and verifies against that key and the anchor copy.
#[test]
fn recover_with_the_config_anchors_its_audit_event_with_the_audit_key() -> anyhow::Result<()> {
    use photondb_proto::audit::{VerifyOptions, default_anchor_copy, verify};
    use photondb_proto::signing::SecretKey;
    let certs = TestCerts::new()?;
    let keys = tempfile::tempdir()?;
    let key = SecretKey::generate();
    let key_file = keys.path().join("storaged-audit.key");
    std::fs::write(&key_file, key.to_pkcs8_pem()?.as_bytes())?;
    let mut storaged = Storaged::start(
        &certs,
        Overrides {
            extra_toml: format!(
                "\n[audit]\nsigning_key = {:?}\n",
                key_file.display().to_string()
            ),
            ..Overrides::default()
        },
    )?;
    assert!(storaged.stop()?.success());
    let config = storaged.config_path();
    let out = run_storaged(&[
        "recover",
        "--config",
        config.to_str().expect("utf-8 path"),
        "--mode",
        "torn-tail",
    ])?;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    let log = storaged.audit_log_path();
    let events = storaged.audit_events();
    let [.., recovery, anchor] = events.as_slice() else {
        panic!("{events:?}")
    };
    assert_eq!(
        (&recovery["kind"], &recovery["offline"]),
        (&"recovery".into(), &true.into())
    );
    assert_eq!(
        (&anchor["kind"], &anchor["reason"]),
        (&"anchor".into(), &"close".into())
    );
    let options = VerifyOptions {
        keys: vec![key.public_key()],
        anchor_copy: Some(std::fs::read_to_string(default_anchor_copy(&log))?),
        partial: false,
    };
    let files = [("audit.log".to_owned(), std::fs::read_to_string(&log)?)];
    let report = verify(&files, &options).map_err(|e| anyhow::anyhow!("{e}"))?;
    assert_eq!(report.lines as usize, events.len());

    // --config and --audit-log name the log twice: a usage error.
    let out = run_storaged(&[
        "recover",
        "--config",
        config.to_str().expect("utf-8 path"),
        "--audit-log",
        log.to_str().expect("utf-8 path"),
        "--mode",
        "torn-tail",
    ])?;
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    Ok(())
}
