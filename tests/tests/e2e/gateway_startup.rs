//! The real gateway refuses to start (exit 64, every error listed on stderr) unless dev mode
//! is on and it listens on loopback only — without authentication it must never forward
//! public traffic — and when its configuration is wrong or an address is taken.
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
fn refuses_without_dev_mode() {
    let (status, stderr) = run(|c| c.dev_mode = false);
    assert_eq!(status.code(), Some(EX_USAGE), "{stderr}");
    assert!(stderr.contains("dev_mode"), "{stderr}");
}

#[test]
fn refuses_a_non_loopback_listener_in_dev_mode() {
    let port = free_port().unwrap();
    let (status, stderr) = run(|c| c.listen = format!("0.0.0.0:{port}"));
    assert_eq!(status.code(), Some(EX_USAGE), "{stderr}");
    assert!(stderr.contains("non-loopback"), "{stderr}");
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
