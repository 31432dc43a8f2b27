//! The real gateway refuses to start (exit 64, every error listed on stderr) when its
//! configuration or policy directory is wrong, when dev mode is asked for on a non-loopback
//! address, or when an address is taken. Never fail open: no policy set, no gateway.
//!
//! The gateway exits before it would connect to storaged, so none is started: storaged's
//! address is only checked for being an address.

use std::net::{SocketAddr, TcpListener};
use std::process::ExitStatus;

use photondb_tests::TestCerts;
use photondb_tests::gateway::{Gateway, RawConfig, free_port};

/// EX_USAGE (sysexits.h): what every PhotonDB binary exits with for a bad invocation.
const EX_USAGE: i32 = 64;

fn run(tweak: impl Fn(&mut RawConfig)) -> (ExitStatus, String) {
    let certs = TestCerts::new().unwrap();
    let nowhere = SocketAddr::from(([127, 0, 0, 1], 9));
    Gateway::run_to_exit(&certs, nowhere, tweak).unwrap()
}

#[test]
fn a_broken_policy_directory_stops_the_start_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let roles = "[[role]]\nname = \"admin\"\npermissions = [\"table.read\", \"table.fly\"]\n";
    std::fs::write(dir.path().join("roles.toml"), roles).unwrap();
    std::fs::write(dir.path().join("bindings.toml"), "").unwrap();
    std::fs::write(dir.path().join("plans.toml"), "default_plan = \"nope\"\n").unwrap();
    let policies = dir.path().to_path_buf();
    let (status, stderr) = run(move |c| c.policy.dir = Some(policies.clone()));
    assert_eq!(status.code(), Some(EX_USAGE), "{stderr}");
    assert!(stderr.contains("roles.toml:3:"), "{stderr}");
    assert!(stderr.contains("table.fly"), "{stderr}");
    assert!(stderr.contains("plans.toml:1:"), "{stderr}");
}

#[test]
fn no_policy_directory_no_gateway() {
    let (status, stderr) = run(|c| c.policy.dir = Some("/nonexistent/policies".into()));
    assert_eq!(status.code(), Some(EX_USAGE), "{stderr}");
    assert!(stderr.contains("policy.dir"), "{stderr}");
    let (status, stderr) = run(|c| c.hosts.clear());
    assert_eq!(status.code(), Some(EX_USAGE), "{stderr}");
    assert!(stderr.contains("hosts:"), "{stderr}");
}

#[test]
fn refuses_a_non_loopback_listener_in_dev_mode() {
    let port = free_port().unwrap();
    let (status, stderr) = run(|c| {
        c.dev_mode = Some(true);
        c.listen = format!("0.0.0.0:{port}");
    });
    assert_eq!(status.code(), Some(EX_USAGE), "{stderr}");
    assert!(stderr.contains("non-loopback"), "{stderr}");
    let (status, stderr) = run(|c| {
        c.dev_mode = Some(true);
        c.metrics.listen = Some(format!("0.0.0.0:{port}"));
    });
    assert_eq!(status.code(), Some(EX_USAGE), "{stderr}");
    assert!(
        stderr.contains("metrics.listen: dev mode refuses"),
        "{stderr}"
    );
}

#[test]
fn lists_every_config_error() {
    let (status, stderr) = run(|c| {
        c.upstream.ca = Some("/nonexistent/ca.pem".into());
        c.limits.max_body_bytes = 0;
    });
    assert_eq!(status.code(), Some(EX_USAGE), "{stderr}");
    assert!(stderr.contains("upstream.ca"), "{stderr}");
    assert!(stderr.contains("limits.max_body_bytes"), "{stderr}");
}

#[test]
fn a_taken_address_stops_the_start() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_metrics = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let metrics = taken_metrics.local_addr().unwrap();
    let (status, stderr) = run(|c| {
        c.listen = addr.to_string();
        c.metrics.listen = Some(metrics.to_string());
    });
    assert_eq!(status.code(), Some(EX_USAGE), "{stderr}");
    assert!(stderr.contains("cannot listen"), "{stderr}");
    for field in ["listen", "metrics.listen"] {
        let prefix = format!("config error: {field}: cannot listen");
        assert!(
            stderr.lines().any(|l| l.starts_with(&prefix)),
            "{field} is reported: {stderr}"
        );
    }
    drop((taken, taken_metrics));
}

#[test]
fn a_runtime_directory_others_can_enter_stops_the_start() {
    // The upgrade socket in it hands the listening sockets to whoever connects.
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let open = dir.path().join("run");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let given = open.clone();
    let (status, stderr) = run(move |c| c.server.runtime_dir = Some(given.clone()));
    assert_eq!(status.code(), Some(EX_USAGE), "{stderr}");
    assert!(stderr.contains("server.runtime_dir"), "{stderr}");
    assert!(stderr.contains("mode 0700"), "{stderr}");
}
