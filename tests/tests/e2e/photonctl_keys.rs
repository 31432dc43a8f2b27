//! Keys cross tool boundaries both ways (DESIGN §3.5): a `photonctl keygen` key loads in
//! OpenSSL and in Python `cryptography` (same public key), and a key made by
//! `openssl genpkey` — its public half registered as SPKI PEM — signs `photonctl request`s the
//! real gateway serves.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use photondb_proto::signing::PublicKey;
use photondb_tests::gateway::Gateway;
use photondb_tests::{Overrides, Storaged, TestCerts, poll_until};

use crate::gateway_policy_reload::{RELOAD, append_policy, binding_entry, partner_entry};

fn photonctl() -> Command {
    let path: PathBuf = photondb_tests::workspace_binary("photondb-gateway", "photonctl")
        .expect("the photonctl binary");
    let mut cmd = Command::new(path);
    cmd.env_remove("PHOTONDB_KEY")
        .env_remove("PHOTONDB_PARTNER");
    cmd
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs a command to completion; a missing tool fails with what to install.
fn run(cmd: &mut Command, tool: &str) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("{tool} is needed for this test (CI installs it): {e}"))
}

fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).expect("UTF-8 output")
}

/// Loads a PEM private key with Python `cryptography` and prints its raw public key, base64.
const PYTHON_LOAD: &str = "
import base64, sys
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_private_key
with open(sys.argv[1], 'rb') as f:
    key = load_pem_private_key(f.read(), None)
assert isinstance(key, Ed25519PrivateKey), type(key)
print(base64.b64encode(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode())
";

#[test]
fn a_keygen_key_loads_in_openssl_and_python_cryptography() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("partner.pem");
    let out = run(photonctl().args(["keygen", "--out"]).arg(&key), "photonctl");
    let public = ok(&out, "photonctl keygen").trim().to_owned();
    assert!(PublicKey::from_base64(&public).is_ok(), "{public:?}");

    let out = run(
        Command::new("openssl")
            .args(["pkey", "-in"])
            .arg(&key)
            .arg("-noout"),
        "openssl",
    );
    ok(&out, "openssl pkey -noout");
    // OpenSSL derives the same public key.
    let out = run(
        Command::new("openssl")
            .args(["pkey", "-in"])
            .arg(&key)
            .arg("-pubout"),
        "openssl",
    );
    let spki = ok(&out, "openssl pkey -pubout");
    let from_openssl = PublicKey::from_spki_pem(&spki).expect("an SPKI PEM Ed25519 key");
    assert_eq!(from_openssl.to_base64(), public);

    let out = run(
        Command::new("python3")
            .env("PYTHONPATH", repo_root().join(".local/python"))
            .args(["-c", PYTHON_LOAD])
            .arg(&key),
        "python3",
    );
    let from_python = ok(&out, "cryptography's load_pem_private_key");
    assert_eq!(from_python.trim(), public);
}

#[test]
fn an_openssl_key_signs_photonctl_requests_the_gateway_serves() {
    let certs = TestCerts::new().unwrap();
    let storaged = Storaged::start(&certs, Overrides::default()).unwrap();
    let gw = Gateway::start(&certs, storaged.addr(), |_| {}).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("ossl.pem");
    let out = run(
        Command::new("openssl")
            .args(["genpkey", "-algorithm", "ed25519", "-out"])
            .arg(&key),
        "openssl",
    );
    ok(&out, "openssl genpkey");
    let out = run(
        Command::new("openssl")
            .args(["pkey", "-in"])
            .arg(&key)
            .arg("-pubout"),
        "openssl",
    );
    let spki = ok(&out, "openssl pkey -pubout");
    assert!(spki.starts_with("-----BEGIN PUBLIC KEY-----"), "{spki}");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, gw.ca_pem()).unwrap();

    // The SPKI PEM block as a TOML multi-line string, as partners.toml documents it.
    let policies = gw.policy_dir();
    let pem_toml = format!("\"\"\"\n{}\n\"\"\"", spki.trim_end());
    append_policy(
        &policies,
        "partners.toml",
        &partner_entry("ossl", &pem_toml, false),
    );
    append_policy(
        &policies,
        "bindings.toml",
        &binding_entry("partner:ossl", "admin", &["*"]),
    );

    let url = format!("https://{}/v1/dbs", gw.authority());
    let request = || {
        photonctl()
            .args(["request", "--key"])
            .arg(&key)
            .args(["--partner", "ossl", "--ca"])
            .arg(&ca)
            .args(["GET", url.as_str()])
            .output()
            .expect("running photonctl")
    };
    // Until the gateway has reloaded, ossl is unknown (401, exit 1).
    let served = poll_until(RELOAD, || {
        let out = request();
        out.status.success().then_some(out)
    });
    let out = served.unwrap_or_else(|| {
        let out = request();
        panic!(
            "photonctl request as ossl did not succeed within {RELOAD:?} ({}):\nstdout: {}\nstderr: {}\ngateway:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            gw.stderr()
        )
    });
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("200"), "{stdout}");
    assert!(stdout.contains("\"databases\""), "{stdout}");
    // The same key, asked for by version, over HTTP/1.1.
    let out = photonctl()
        .args(["request", "--http1", "--key-version", "1", "--key"])
        .arg(&key)
        .args(["--partner", "ossl", "--ca"])
        .arg(&ca)
        .args(["GET", url.as_str()])
        .output()
        .expect("running photonctl");
    ok(&out, "photonctl request --http1 --key-version 1");
}
