//! The gateway refuses to start (exit 64, every error listed) unless dev mode is on and it
//! listens on loopback only: without authentication it must never forward public traffic.

use crate::support;

use crate::support::{certs, config_text, run_to_exit};

#[test]
fn refuses_without_dev_mode() {
    let certs = certs();
    let (status, stderr) = run_to_exit(&config_text(&certs, 1, 2, 3, ""), false);
    assert_eq!(status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("dev_mode"), "{stderr}");
}

#[test]
fn refuses_a_non_loopback_listener_in_dev_mode() {
    let certs = certs();
    let text = config_text(&certs, 1, 2, 3, "")
        .replace("listen = \"127.0.0.1:1\"", "listen = \"0.0.0.0:1\"");
    let (status, stderr) = run_to_exit(&text, true);
    assert_eq!(status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("non-loopback"), "{stderr}");
}

#[test]
fn lists_every_config_error() {
    let certs = certs();
    let text = config_text(&certs, 1, 2, 3, "").replace(
        &certs.path("ca.pem").display().to_string(),
        "/nonexistent/ca.pem",
    );
    let text = text.replace("max_body_bytes = 1024", "max_body_bytes = 0");
    let (status, stderr) = run_to_exit(&text, true);
    assert_eq!(status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("upstream.ca"), "{stderr}");
    assert!(stderr.contains("limits.max_body_bytes"), "{stderr}");
}

#[test]
fn a_taken_address_stops_the_start() {
    let certs = certs();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let text = support::config_text(&certs, port, support::free_port(), 3, "");
    let (status, stderr) = run_to_exit(&text, true);
    assert_eq!(status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("cannot listen"), "{stderr}");
}
