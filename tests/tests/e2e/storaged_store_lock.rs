//! A store belongs to one process at a time: while storaged serves it, the offline `verify` and
//! a second `serve` on the same data directory are refused, write nothing to the audit log, and
//! the running daemon keeps serving.

use photondb_tests::{Overrides, Storaged, TestCerts, create_table, pb, run_storaged, table};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_store_is_refused_to_verify_and_to_a_second_daemon() -> anyhow::Result<()> {
    let certs = TestCerts::new()?;
    let mut storaged = Storaged::start(&certs, Overrides::default())?;
    let mut client = storaged.client().await?;
    create_table(&mut client, "app", "t").await?;
    let chain_before = storaged.audit_chain_len()?;

    let dir = storaged.data_dir();
    let out = run_storaged(&["verify", "--data-dir", dir.to_str().expect("utf-8 path")])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        stderr.contains("another process has this store open"),
        "{stderr}"
    );

    let config = storaged.config_path();
    let out = run_storaged(&["serve", "--config", config.to_str().expect("utf-8 path")])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        stderr.contains("another process is writing this audit log"),
        "{stderr}"
    );

    assert_eq!(
        storaged.audit_chain_len()?,
        chain_before,
        "refused openers must not touch the audit chain"
    );
    let put = client
        .put(pb::PutRequest {
            table: table("app", "t"),
            key: "still-serving".into(),
            value: b"yes".to_vec(),
            ..Default::default()
        })
        .await?;
    assert!(put.into_inner().version > 0);
    drop(client);
    assert!(storaged.stop()?.success());

    let out = run_storaged(&["verify", "--data-dir", dir.to_str().expect("utf-8 path")])?;
    assert_eq!(out.status.code(), Some(0), "verify after stop: {out:?}");
    Ok(())
}
