//! RFC 9421 signatures made by a third-party library reach storaged through the real gateway
//! (DESIGN §3.6): `tests/python/rfc9421_sign.py` signs with the PyPI package
//! `http-message-signatures` (installed into `.local/python` by `scripts/install-deps`); the
//! gateway serves what it signs and refuses, with 401 and the code `rfc9421.rs` gives, every
//! tampering the script can do.

use std::path::{Path, PathBuf};
use std::process::Command;

use photondb_tests::gateway::{Gateway, Protocol, Reply};
use photondb_tests::{Overrides, Storaged, TestCerts};

const DOC: &str = "/v1/dbs/shop/tables/t/docs/k";
const TAMPERED_DOC: &str = "/v1/dbs/shop/tables/t/docs/tampered";
const BODY: &[u8] = br#"{"colour":"blue","n":7}"#;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn script() -> PathBuf {
    repo_root().join("tests/python/rfc9421_sign.py")
}

/// `python3` with the repository's Python packages on its path.
fn python() -> Command {
    let mut cmd = Command::new("python3");
    cmd.env("PYTHONPATH", repo_root().join(".local/python"));
    cmd
}

/// Fails the test, clearly, when python3 or the signing library is missing.
fn require_python() {
    let out = python()
        .args(["-c", "import http_message_signatures, cryptography"])
        .output();
    match out {
        Err(e) => panic!(
            "python3 is needed to run tests/python/rfc9421_sign.py ({e}); CI installs it, \
             locally run scripts/install-deps"
        ),
        Ok(out) if !out.status.success() => panic!(
            "the Python package http-message-signatures (and cryptography) is not importable \
             from {}; run scripts/install-deps:\n{}",
            repo_root().join(".local/python").display(),
            String::from_utf8_lossy(&out.stderr)
        ),
        Ok(_) => {}
    }
}

/// The `--tamper` values the script supports, read from its `TAMPERABLE` tuple, so a new one
/// cannot go untested.
fn tamper_values() -> Vec<String> {
    let text = std::fs::read_to_string(script()).expect("the signing script");
    let line = text
        .lines()
        .find(|l| l.starts_with("TAMPERABLE = ("))
        .expect("TAMPERABLE in rfc9421_sign.py");
    let values: Vec<String> = line
        .split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect();
    assert!(!values.is_empty(), "no values in {line}");
    values
}

/// The code `rfc9421.rs` refuses each tampering with: everything the script alters makes the
/// signature base differ from what was signed, or the digest differ from the body.
fn expected_code(tamper: &str) -> &'static str {
    match tamper {
        // A covered component differs from the request sent.
        "method" | "authority" | "path" | "query" => "signature_invalid",
        // Content-Digest no longer matches the body (check_content_digest).
        "digest" => "signature_invalid",
        // A parameter of Signature-Input changed after signing: the `@signature-params` line
        // differs (keyid `e2e-tests:1` -> `e2e-tests` still chooses the same key).
        "created" | "nonce" | "keyid" => "signature_invalid",
        other => panic!(
            "rfc9421_sign.py supports --tamper {other}, which this test does not know: add \
             the code the gateway answers it with"
        ),
    }
}

/// Runs the script and returns the headers it prints.
fn sign(
    key_file: &Path,
    keyid: &str,
    method: &str,
    url: &str,
    body_file: Option<&Path>,
    tamper: Option<&str>,
) -> Vec<(String, String)> {
    let mut cmd = python();
    cmd.arg(script()).arg(key_file).args([keyid, method, url]);
    if let Some(body) = body_file {
        cmd.arg(body);
    }
    if let Some(t) = tamper {
        cmd.args(["--tamper", t]);
    }
    let out = cmd.output().expect("running python3");
    assert!(
        out.status.success(),
        "rfc9421_sign.py {method} {url} {tamper:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("the script prints a JSON object");
    let headers: Vec<(String, String)> = printed
        .as_object()
        .expect("a JSON object")
        .iter()
        .map(|(name, value)| {
            let value = value.as_str().expect("header values are strings");
            (name.clone(), value.to_owned())
        })
        .collect();
    assert!(
        headers.iter().any(|(n, _)| n == "Signature-Input"),
        "{headers:?}"
    );
    headers
}

/// The request exactly as signed (unless the signature was tampered with), over HTTP/1.1.
async fn send(
    gw: &Gateway,
    method: &str,
    target: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Reply {
    let request_id = uuid::Uuid::new_v4().to_string();
    let mut all = vec![("X-Request-Id".to_owned(), request_id.clone())];
    all.extend_from_slice(headers);
    let raw = gw.http1_request(method, target, &all, body);
    let mut reply = gw.raw_http1(&raw).await.expect("an HTTP/1.1 answer");
    reply.sent_request_id = Some(request_id);
    reply
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_third_party_rfc9421_signer_is_served_and_its_tamperings_refused() {
    require_python();
    let certs = TestCerts::new().unwrap();
    let storaged = Storaged::start(&certs, Overrides::default()).unwrap();
    let gw = Gateway::start(&certs, storaged.addr(), |_| {}).unwrap();
    let admin = gw.client(Protocol::Http2).await.unwrap();
    admin.create_table("shop", "t").await;

    let work = tempfile::tempdir().unwrap();
    let key_file = work.path().join("partner.pem");
    let pem = gw.partner_key().to_pkcs8_pem().expect("PKCS#8 PEM");
    std::fs::write(&key_file, pem.as_bytes()).unwrap();
    let body_file = work.path().join("body.json");
    std::fs::write(&body_file, BODY).unwrap();
    let url = |target: &str| format!("https://{}{target}", gw.authority());
    let partner_v1 = format!("{}:1", photondb_tests::gateway::PARTNER);

    // A PUT with a JSON body (Content-Digest covered), naming key version 1.
    let headers = sign(
        &key_file,
        &partner_v1,
        "PUT",
        &url(DOC),
        Some(body_file.as_path()),
        None,
    );
    assert!(
        headers.iter().any(|(n, _)| n == "Content-Digest"),
        "{headers:?}"
    );
    send(&gw, "PUT", DOC, &headers, BODY)
        .await
        .expect(200, None);

    // A GET without a body, naming the partner alone (its newest valid key).
    let headers = sign(
        &key_file,
        photondb_tests::gateway::PARTNER,
        "GET",
        &url(DOC),
        None,
        None,
    );
    let r = send(&gw, "GET", DOC, &headers, b"").await;
    let v = r.expect(200, None);
    assert_eq!(v["value"]["colour"], "blue", "{r}");
    assert_eq!(v["value"]["n"], 7, "{r}");

    // Every tampering the script supports: 401 with the verifier's code, nothing written.
    let tampers = tamper_values();
    for tamper in &tampers {
        let headers = sign(
            &key_file,
            &partner_v1,
            "PUT",
            &url(TAMPERED_DOC),
            Some(body_file.as_path()),
            Some(tamper.as_str()),
        );
        let r = send(&gw, "PUT", TAMPERED_DOC, &headers, BODY).await;
        assert_eq!(r.status, 401, "--tamper {tamper}: {r}");
        assert_eq!(
            r.code().as_deref(),
            Some(expected_code(tamper)),
            "--tamper {tamper}: {r}"
        );
        r.expect(401, Some(expected_code(tamper)));
    }
    admin
        .get(TAMPERED_DOC)
        .await
        .unwrap()
        .expect(404, Some("not_found"));
    // The untampered request still works after the refusals (nothing was poisoned).
    let headers = sign(
        &key_file,
        &partner_v1,
        "PUT",
        &url(TAMPERED_DOC),
        Some(body_file.as_path()),
        None,
    );
    send(&gw, "PUT", TAMPERED_DOC, &headers, BODY)
        .await
        .expect(200, None);
    assert!(tampers.len() >= 8, "the script's tamperings: {tampers:?}");
}
