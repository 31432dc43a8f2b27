//! What the real gateway's TLS offers to a client that is not rustls: `openssl s_client`
//! (skipped when `openssl` is not on PATH) may not get TLS 1.0/1.1 or a non-AEAD suite, and
//! does get TLS 1.2 and 1.3 with AEAD suites — the positive controls show the client could
//! have negotiated, so the refusals are the server's.

use std::io::Read as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use photondb_tests::gateway::{GATEWAY_NAME, Gateway};
use photondb_tests::{Overrides, Storaged, TestCerts, poll_until};

/// `openssl s_client` against the gateway with `args`; (handshake succeeded, output).
fn s_client(gw: &Gateway, certs: &TestCerts, args: &[&str]) -> (bool, String) {
    let ca = certs.path(photondb_tests::certs::files::CA_CERT);
    let mut child = Command::new("openssl")
        .arg("s_client")
        .arg("-connect")
        .arg(gw.addr().to_string())
        .args([
            "-servername",
            GATEWAY_NAME,
            "-verify_return_error",
            "-CAfile",
        ])
        .arg(ca)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running openssl");
    let status = poll_until(Duration::from_secs(20), || child.try_wait().ok().flatten());
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("openssl s_client {args:?} did not finish");
    };
    let mut out = String::new();
    let _ = child.stdout.take().unwrap().read_to_string(&mut out);
    let _ = child.stderr.take().unwrap().read_to_string(&mut out);
    let negotiated = status.success() && out.contains("Protocol version:");
    eprintln!("openssl s_client {args:?}: negotiated={negotiated}\n{out}");
    (negotiated, out)
}

fn openssl_present() -> bool {
    Command::new("openssl")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn old_protocols_and_non_aead_suites_are_refused() {
    if !openssl_present() {
        eprintln!("SKIPPED: openssl is not on PATH");
        return;
    }
    let certs = TestCerts::new().unwrap();
    let storaged = Storaged::start(&certs, Overrides::default()).unwrap();
    let gw = Gateway::start(&certs, storaged.addr(), |_| {}).unwrap();
    // OpenSSL 3 refuses TLS < 1.2 itself unless the security level is 0.
    let legacy = "DEFAULT@SECLEVEL=0";

    for (name, flag) in [("TLS 1.0", "-tls1"), ("TLS 1.1", "-tls1_1")] {
        let (ok, out) = s_client(&gw, &certs, &["-brief", flag, "-cipher", legacy]);
        assert!(!ok, "{name} was negotiated:\n{out}");
        assert!(
            out.contains("alert"),
            "the server refused with an alert:\n{out}"
        );
        assert!(
            !out.contains("no protocols available"),
            "the client did not offer {name}, so this proves nothing:\n{out}"
        );
    }
    let non_aead = [
        "ECDHE-ECDSA-AES128-SHA",
        "ECDHE-ECDSA-AES256-SHA384",
        "ECDHE-RSA-AES128-SHA256",
        "AES128-SHA",
        "AES256-SHA256",
        "DES-CBC3-SHA",
    ]
    .join(":");
    let (ok, out) = s_client(
        &gw,
        &certs,
        &[
            "-brief",
            "-tls1_2",
            "-cipher",
            &format!("{non_aead}@SECLEVEL=0"),
        ],
    );
    assert!(!ok, "a non-AEAD TLS 1.2 suite was negotiated:\n{out}");
    assert!(
        out.contains("alert"),
        "the server refused with an alert:\n{out}"
    );

    // Positive controls: the same client does negotiate TLS 1.2 (AEAD) and TLS 1.3.
    let (ok, out) = s_client(&gw, &certs, &["-brief", "-tls1_2"]);
    assert!(ok, "TLS 1.2 with default suites failed:\n{out}");
    assert!(out.contains("Protocol version: TLSv1.2"), "{out}");
    assert!(
        ["GCM", "CHACHA20"].iter().any(|s| out.contains(s)),
        "TLS 1.2 suite is AEAD:\n{out}"
    );
    let (ok, out) = s_client(&gw, &certs, &["-brief", "-tls1_3"]);
    assert!(ok && out.contains("Protocol version: TLSv1.3"), "{out}");
    let (ok, out) = s_client(&gw, &certs, &["-brief", "-alpn", "h2,http/1.1"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("Protocol version: TLSv1.3"),
        "the best is chosen: {out}"
    );
}
