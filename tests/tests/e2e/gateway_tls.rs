//! The real gateway's TLS. To a client that is not rustls, `openssl s_client` (skipped when
//! `openssl` is not on PATH): no TLS 1.0/1.1 and no non-AEAD suite, while TLS 1.2 and 1.3 with
//! AEAD suites work — the positive controls show the client could have negotiated, so the
//! refusals are the server's. To a rustls client: TLS 1.3 with ALPN h2 preferred, TLS 1.2
//! still offered. And a certificate replaced on disk is served without a restart.

use std::io::Read as _;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use photondb_tests::certs::files;
use photondb_tests::gateway::{GATEWAY_NAME, Gateway, tls_config};
use photondb_tests::{Overrides, Storaged, TestCerts, poll_until};
use rustls::ProtocolVersion;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls13_with_alpn_h2_first_and_tls12_with_aead_suites() {
    let certs = TestCerts::new().unwrap();
    let storaged = Storaged::start(&certs, Overrides::default()).unwrap();
    let gw = Gateway::start(&certs, storaged.addr(), |_| {}).unwrap();

    let tls = gw.tls(&[b"h2", b"http/1.1"]).await.unwrap();
    let (_, conn) = tls.get_ref();
    assert_eq!(conn.protocol_version(), Some(ProtocolVersion::TLSv1_3));
    assert_eq!(conn.alpn_protocol(), Some(&b"h2"[..]), "h2 is preferred");
    let tls = gw.tls(&[b"http/1.1"]).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));

    // A client that speaks only TLS 1.2 still gets in, with an AEAD suite.
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(gw.ca_pem().as_bytes()).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    let tls = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from(GATEWAY_NAME).unwrap(), tcp)
        .await
        .unwrap();
    let (_, conn) = tls.get_ref();
    assert_eq!(conn.protocol_version(), Some(ProtocolVersion::TLSv1_2));
    let suite = format!("{:?}", conn.negotiated_cipher_suite().unwrap().suite());
    assert!(
        suite.contains("GCM") || suite.contains("CHACHA20_POLY1305"),
        "{suite}"
    );
}

fn served_cert(tls: &TlsStream<tokio::net::TcpStream>) -> Vec<u8> {
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_reloads_without_restart() {
    let certs = TestCerts::new().unwrap();
    let storaged = Storaged::start(&certs, Overrides::default()).unwrap();
    let gw = Gateway::start(&certs, storaged.addr(), |_| {}).unwrap();
    let pid = gw.pid();
    let before = served_cert(&gw.tls(&[b"h2"]).await.unwrap());

    // A new key pair from a new CA, written over the gateway's public certificate and key
    // (storaged's files and the CA file are left alone: they are not the gateway's to serve).
    let fresh = TestCerts::new().unwrap();
    for file in [files::GATEWAY_CERT, files::GATEWAY_KEY] {
        std::fs::copy(fresh.path(file), certs.path(file)).unwrap();
    }
    let trusts_fresh = TlsConnector::from(tls_config(fresh.ca_pem(), &[b"h2"]).unwrap());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let tcp = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
        let name = ServerName::try_from(GATEWAY_NAME).unwrap();
        if let Ok(tls) = trusts_fresh.connect(name, tcp).await {
            assert_ne!(served_cert(&tls), before);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(gw.pid(), pid, "the same process serves it");
    // The old certificate is no longer served: a client trusting only the old CA is refused.
    assert!(
        gw.tls(&[b"h2"]).await.is_err(),
        "the old certificate is still served"
    );
}
