//! A bad configuration stops storaged before it binds anything: exit 64 and every error listed;
//! turning TLS off by environment is refused the same way.

use photondb_tests::{Overrides, Storaged, TestCerts, run_storaged};

#[test]
fn a_bad_config_exits_64_listing_every_error() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("bad.toml");
    std::fs::write(
        &config,
        r#"
listen = "nowhere"
metrics_listen = "also-nowhere"
buffer_pool_mib = 0

[tls]
cert = "/nonexistent/storaged.pem"
allowed_clients = []
reload_interval_secs = 0

[limits]
max_message_bytes = 0
max_concurrent_requests = 0

[recovery]
mode = "salvage"
"#,
    )?;
    let out = run_storaged(&["serve", "--config", config.to_str().expect("utf-8 path")])?;
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("invalid configuration"), "{stderr}");
    for needle in [
        "listen: \"nowhere\" is not an address",
        "metrics_listen: \"also-nowhere\" is not an address",
        "buffer_pool_mib: must be positive",
        "tls.cert: /nonexistent/storaged.pem is not a readable file",
        "tls.key: required",
        "tls.client_ca: required",
        "tls.allowed_clients: list at least one gateway identity",
        "tls.reload_interval_secs: must be positive",
        "limits.max_message_bytes: must be positive",
        "limits.max_concurrent_requests: must be positive",
        "recovery.mode: \"salvage\" is not torn-tail or strict",
    ] {
        assert!(
            stderr.contains(needle),
            "{needle:?} missing from:\n{stderr}"
        );
    }
    assert!(out.stdout.is_empty(), "nothing was bound: {:?}", out.stdout);
    Ok(())
}

#[test]
fn unknown_fields_exit_64() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("typo.toml");
    std::fs::write(&config, "listne = \"127.0.0.1:0\"\n")?;
    let out = run_storaged(&["serve", "--config", config.to_str().expect("utf-8 path")])?;
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown field `listne`"), "{stderr}");
    Ok(())
}

#[test]
fn disabling_tls_by_environment_is_refused() -> anyhow::Result<()> {
    let certs = TestCerts::new()?;
    for var in ["PHOTONDB_DISABLE_TLS", "PHOTONDB_TLS_DISABLE_VERIFY"] {
        let overrides = Overrides {
            env: vec![(var.into(), "1".into())],
            ..Overrides::default()
        };
        let err = match Storaged::start(&certs, overrides) {
            Ok(_) => panic!("storaged started with {var}=1"),
            Err(err) => format!("{err:#}"),
        };
        assert!(err.contains("exit status: 64"), "{var}: {err}");
        assert!(
            err.contains(&format!("{var}: storaged only serves mutual TLS; unset it")),
            "{var}: {err}"
        );
    }
    Ok(())
}
