//! storaged killed with SIGKILL while a segment is being archived (its command hook still
//! running) keeps the segment and its mark; after the restart the segment is shipped again,
//! whole, and only then is it let go. Writes are refused while too much waits for the archive.

use std::path::Path;
use std::time::Duration;

use photondb_tests::{Overrides, Storaged, TestCerts, create_table, pb, table, wait_until};

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_during_archiving_ships_the_segment_again_after_the_restart() -> anyhow::Result<()> {
    let certs = TestCerts::new()?;
    let scratch = tempfile::tempdir()?;
    let (archive, offsite) = (
        scratch.path().join("archive"),
        scratch.path().join("offsite"),
    );
    std::fs::create_dir_all(&offsite)?;
    let (hang, started) = (
        scratch.path().join("hang"),
        scratch.path().join("hook-started"),
    );
    std::fs::write(&hang, b"")?;
    // The hook: says it started, waits while the hang flag exists, then ships the file.
    let hook = format!(
        "touch {started}; while [ -e {hang} ]; do sleep 0.05; done; cp %p {offsite}/%f",
        started = started.display(),
        hang = hang.display(),
        offsite = offsite.display()
    );
    let q = |s: &str| serde_json::Value::from(s).to_string();
    let overrides = Overrides {
        top_level: vec!["wal_segment_mib = 1".into()],
        extra_toml: format!(
            "[archive]\ndir = {}\ncommand = {}\nmax_unarchived_mib = 2\n",
            q(&archive.display().to_string()),
            q(&hook)
        ),
        ..Overrides::default()
    };
    let mut storaged = Storaged::start(&certs, overrides)?;
    let mut c = storaged.client().await?;
    create_table(&mut c, "a", "t").await?;
    let put = |i: usize| pb::PutRequest {
        table: table("a", "t"),
        key: format!("k{}", i % 200),
        value: format!("{{\"i\":{i},\"pad\":\"{}\"}}", "x".repeat(2000)).into_bytes(),
        precondition: None,
    };
    // Fill past one segment, so the first is sealed and its hook starts (and hangs).
    let mut written = 0;
    while !started.exists() {
        c.put(put(written)).await?;
        written += 1;
        assert!(written < 5_000, "no segment was ever handed to the hook");
    }
    assert!(storaged.metric("storaged_archive_waiting_segments").await? >= 1.0);
    // Past the bound (2 MiB waiting), writes are refused, reads are not.
    let refused = loop {
        match c.put(put(written)).await {
            Ok(_) => written += 1,
            Err(status) => break status,
        }
        assert!(written < 20_000, "writes were never refused");
    };
    assert_eq!(
        refused.code(),
        tonic::Code::ResourceExhausted,
        "{refused:?}"
    );
    assert!(
        refused.message().contains("archive is behind"),
        "{refused:?}"
    );
    c.get(pb::GetRequest {
        table: table("a", "t"),
        key: "k0".into(),
    })
    .await?;

    storaged.kill9()?;
    // The hook storaged started outlives it: stop it before it could ship anything.
    let killed = std::process::Command::new("pkill")
        .args(["-KILL", "-f", &hang.display().to_string()])
        .status()?;
    assert!(killed.success(), "the hook was not running at the kill");
    std::fs::remove_file(&hang)?;
    let first = "0000000000000000.wal";
    let data_wal = storaged.data_dir().join("wal");
    assert!(
        names(&data_wal).contains(&format!("{first}.ready")),
        "{:?}",
        names(&data_wal)
    );
    assert!(
        !names(&offsite).contains(&first.to_string()),
        "the hook never finished"
    );

    storaged.restart()?;
    let shipped = wait_until(Duration::from_secs(20), || {
        names(&offsite).contains(&first.to_string()).then_some(())
    })
    .await;
    assert!(
        shipped.is_some(),
        "the segment was not shipped again: {:?}",
        names(&offsite)
    );
    let caught_up = async {
        for _ in 0..400 {
            if storaged.metric("storaged_archive_waiting_segments").await? == 0.0 {
                return anyhow::Ok(true);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(false)
    };
    assert!(caught_up.await?, "segments still waiting after the restart");
    let segment = std::fs::read(archive.join(first))?;
    assert_eq!(
        std::fs::read(offsite.join(first))?,
        segment,
        "the hook shipped another file"
    );
    assert!(
        !names(&data_wal).iter().any(|n| n.ends_with(".ready")),
        "{:?}",
        names(&data_wal)
    );
    assert!(names(&archive).contains(&format!("{first}.meta")));
    // Writes are accepted again.
    let mut c = storaged.client().await?;
    c.put(put(written)).await?;

    // A configuration that lost its [archive] does not quietly end the archive: storaged
    // refuses to start until archiving is stopped on purpose.
    storaged.stop()?;
    let config = std::fs::read_to_string(storaged.config_path())?;
    let without = config[..config.find("[archive]").expect("an [archive] section")].to_string();
    std::fs::write(storaged.config_path(), without)?;
    let refused = storaged.restart().expect_err("started without [archive]");
    assert!(
        refused.to_string().contains("stop-archiving"),
        "{refused:#}"
    );
    let data = storaged.data_dir();
    let out =
        photondb_tests::run_storaged(&["stop-archiving", "--data-dir", data.to_str().unwrap()])?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    storaged.restart()?;
    Ok(())
}
