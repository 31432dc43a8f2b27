//! photonctl as a user runs it: `keygen` and `sign` produce what the signing scheme's test
//! vectors predict.

use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::process::Command;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use photondb_proto::signing::SecretKey;

fn photonctl() -> Command {
    let path: PathBuf = photondb_tests::workspace_binary("photondb-gateway", "photonctl")
        .expect("the photonctl binary");
    Command::new(path)
}

fn vectors() -> Vec<serde_json::Value> {
    let text = include_str!("../../../proto/testdata/signing-vectors.json");
    let file: serde_json::Value = serde_json::from_str(text).expect("vectors parse");
    file["vectors"].as_array().expect("vectors array").clone()
}

fn field<'a>(v: &'a serde_json::Value, name: &str) -> &'a str {
    v[name]
        .as_str()
        .unwrap_or_else(|| panic!("vector field {name}"))
}

#[test]
fn sign_prints_the_signature_the_vectors_predict() {
    let dir = tempfile::tempdir().expect("tempdir");
    let accepted: Vec<_> = vectors()
        .into_iter()
        .filter(|v| v.get("error").is_none())
        .collect();
    let total = accepted.len();
    let mut compared = 0;
    for v in accepted {
        let name = field(&v, "name");
        let seed: [u8; 32] = STANDARD
            .decode(field(&v, "seed"))
            .expect("seed")
            .try_into()
            .expect("32 bytes");
        let key_file = dir.path().join(format!("{name}.pem"));
        let pem = SecretKey::from_seed(&seed).to_pkcs8_pem().expect("pem");
        std::fs::write(&key_file, pem.as_bytes()).expect("write key");
        let body_file = dir.path().join(format!("{name}.body"));
        std::fs::write(
            &body_file,
            STANDARD.decode(field(&v, "body")).expect("body"),
        )
        .expect("write body");
        let query = field(&v, "query");
        let url = format!(
            "https://{}{}{}{query}",
            field(&v, "host"),
            field(&v, "path"),
            if query.is_empty() { "" } else { "?" }
        );
        let Ok(_) = url.parse::<http::Uri>() else {
            // Raw unicode in a URL is not something a command line can carry; the library
            // test covers those vectors.
            continue;
        };
        let out = photonctl()
            .args(["sign", "--key"])
            .arg(&key_file)
            .args(["--partner", field(&v, "partner_id")])
            .args(["--timestamp", field(&v, "timestamp")])
            .args(["--request-id", field(&v, "request_id")])
            .arg("--data")
            .arg(format!("@{}", body_file.display()))
            .args([field(&v, "method"), url.as_str()])
            .env_remove("PHOTONDB_KEY")
            .env_remove("PHOTONDB_PARTNER")
            .output()
            .expect("run photonctl");
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8(out.stdout).expect("utf-8");
        let want = format!("X-Signature: {}", field(&v, "signature"));
        assert!(stdout.lines().any(|l| l == want), "{name}: got\n{stdout}");
        assert!(
            stdout
                .lines()
                .any(|l| l == format!("X-Request-Id: {}", field(&v, "request_id"))),
            "{name}: got\n{stdout}"
        );
        compared += 1;
    }
    assert!(
        compared + 3 >= total,
        "only {compared} of {total} vectors went through photonctl"
    );
}

#[test]
fn keygen_writes_a_0600_key_prints_its_public_key_and_never_overwrites() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key_file = dir.path().join("partner.pem");
    let out = photonctl()
        .args(["keygen", "--out"])
        .arg(&key_file)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mode = std::fs::metadata(&key_file)
        .expect("key")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let printed = String::from_utf8(out.stdout).expect("utf-8");
    let key = SecretKey::from_pkcs8_pem(&std::fs::read_to_string(&key_file).expect("read"))
        .expect("pkcs8");
    assert_eq!(printed.trim(), key.public_key().to_base64());

    let again = photonctl()
        .args(["keygen", "--out"])
        .arg(&key_file)
        .output()
        .expect("run");
    assert!(!again.status.success());
    let unchanged = SecretKey::from_pkcs8_pem(&std::fs::read_to_string(&key_file).expect("read"))
        .expect("pkcs8");
    assert_eq!(unchanged.public_key(), key.public_key());
}

#[test]
fn sign_refuses_a_path_that_is_not_in_normal_form() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key_file = dir.path().join("k.pem");
    std::fs::write(
        &key_file,
        SecretKey::from_seed(&[3; 32])
            .to_pkcs8_pem()
            .expect("pem")
            .as_bytes(),
    )
    .expect("write");
    let out = photonctl()
        .args(["sign", "--key"])
        .arg(&key_file)
        .args([
            "--partner",
            "acme",
            "GET",
            "https://localhost/v1/dbs/../admin",
        ])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("normal form"));
}
