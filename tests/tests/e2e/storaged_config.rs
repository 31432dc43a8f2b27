//! A bad configuration stops storaged before it binds anything: exit 64 and every error listed;
//! turning TLS off by environment is refused the same way, and so is a certificate, key or CA
//! that cannot be read or parsed (found before the data directory is touched).

use std::path::Path;

use photondb_tests::certs::files;
use photondb_tests::{Overrides, Storaged, TestCerts, run_storaged};

fn toml_path(path: &Path) -> String {
    toml::Value::String(path.display().to_string()).to_string()
}

/// A configuration for `certs` whose data directory (and default audit log) is `data_dir`.
fn config_with(certs: &TestCerts, cert: &Path, key: &Path, data_dir: &Path) -> String {
    format!(
        "listen = \"127.0.0.1:0\"\ndata_dir = {}\n\n[tls]\ncert = {}\nkey = {}\nclient_ca = {}\nallowed_clients = [\"spiffe://photondb.local/gateway\"]\n",
        toml_path(data_dir),
        toml_path(cert),
        toml_path(key),
        toml_path(&certs.path(files::CA_CERT)),
    )
}

/// Runs `serve` on `config` and checks it exited 64 naming the TLS problem, bound nothing, and
/// never created the data directory (nothing ran before validation: no recovery, no audit log).
fn assert_refused_before_anything_ran(
    config: &str,
    work: &Path,
    data_dir: &Path,
) -> anyhow::Result<String> {
    let path = work.join("storaged.toml");
    std::fs::write(&path, config)?;
    let out = run_storaged(&["serve", "--config", path.to_str().expect("utf-8 path")])?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    assert!(stderr.contains("invalid configuration"), "{stderr}");
    assert!(stderr.contains("tls: "), "{stderr}");
    assert!(out.stdout.is_empty(), "nothing was bound: {:?}", out.stdout);
    assert!(!data_dir.exists(), "the data directory was created");
    Ok(stderr)
}

#[test]
fn a_garbage_certificate_exits_64_before_the_store_is_touched() -> anyhow::Result<()> {
    let certs = TestCerts::new()?;
    let work = tempfile::tempdir()?;
    let cert = work.path().join("garbage.pem");
    std::fs::write(
        &cert,
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
    )?;
    let data_dir = work.path().join("data");
    let config = config_with(&certs, &cert, &certs.path(files::STORAGED_KEY), &data_dir);
    assert_refused_before_anything_ran(&config, work.path(), &data_dir)?;
    Ok(())
}

#[test]
fn an_unreadable_key_exits_64_before_the_store_is_touched() -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let certs = TestCerts::new()?;
    let work = tempfile::tempdir()?;
    let key = work.path().join("key.pem");
    std::fs::copy(certs.path(files::STORAGED_KEY), &key)?;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o000))?;
    if std::fs::read(&key).is_ok() {
        // Root reads any file; the mode cannot make it unreadable here.
        eprintln!("skipped: running as a user who can read a mode-000 file");
        return Ok(());
    }
    let data_dir = work.path().join("data");
    let config = config_with(&certs, &certs.path(files::STORAGED_CERT), &key, &data_dir);
    let stderr = assert_refused_before_anything_ran(&config, work.path(), &data_dir)?;
    assert!(stderr.contains("private key"), "{stderr}");
    Ok(())
}

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
reload_interval_ms = 0

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
        "tls.reload_interval_ms: must be positive",
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
