//! Bearer credentials through the real gateway (DESIGN §3.5): an API key made by
//! `photonctl apikey new` and an EdDSA JWT from an issuer of `issuers.toml` (its JWKS file in
//! the policy directory) are served, and storaged logs each call under the principal the
//! gateway established (`key:<name>`, `jwt:<iss>#<sub>`); a wrong secret, an `alg: none`
//! token and an expired token are refused with their own codes.

use std::process::Command;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use photondb_proto::signing::{SecretKey, Timestamp};
use photondb_tests::gateway::{Gateway, Reply};
use photondb_tests::{Overrides, Storaged, TestCerts};
use serde_json::json;

use crate::gateway_policy_reload::{
    RELOAD, append_policy, binding_entry, poll_reply, write_policy,
};
use crate::gateway_request_id::{principal, storaged_call_line};

const ISS: &str = "https://idp.test";
const JWT_PRINCIPAL: &str = "jwt:https://idp.test#alice";

fn photonctl() -> Command {
    let path = photondb_tests::workspace_binary("photondb-gateway", "photonctl")
        .expect("the photonctl binary");
    Command::new(path)
}

/// `GET /v1/dbs` with `Authorization: Bearer <token>` and nothing else (no signature), over
/// HTTP/1.1; the reply remembers the request id sent.
async fn bearer_get(gw: &Gateway, token: &str) -> Reply {
    let request_id = uuid::Uuid::new_v4().to_string();
    let raw = format!(
        "GET /v1/dbs HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAuthorization: Bearer {token}\r\nX-Request-Id: {request_id}\r\nContent-Length: 0\r\n\r\n",
        gw.authority()
    );
    let mut reply = gw.raw_http1(raw.as_bytes()).await.expect("an answer");
    reply.sent_request_id = Some(request_id);
    reply
}

/// `photonctl apikey new --id <id>`: the token (stdout) and the `[[api_key]]` entry (stderr).
fn new_api_key(id: &str) -> (String, String) {
    let out = photonctl()
        .args(["apikey", "new", "--id", id])
        .output()
        .expect("running photonctl");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "photonctl apikey new: {stderr}");
    let token = String::from_utf8(out.stdout)
        .expect("UTF-8")
        .trim()
        .to_owned();
    assert!(token.starts_with(&format!("pdb_{id}_")), "{token:?}");
    // The entry: from `[[api_key]]` through its `key = value` lines.
    let entry: Vec<&str> = stderr
        .lines()
        .skip_while(|l| l.trim() != "[[api_key]]")
        .take_while(|l| l.trim() == "[[api_key]]" || l.contains(" = "))
        .collect();
    assert!(
        entry.iter().any(|l| l.starts_with("secret_sha256 = ")),
        "no [[api_key]] entry on stderr:\n{stderr}"
    );
    assert!(
        !entry.iter().any(|l| l.contains(&token)),
        "the entry holds no secret"
    );
    (token, format!("\n{}\n", entry.join("\n")))
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A compact JWS: base64url(header).base64url(claims).base64url(Ed25519 signature).
fn jwt(key: &SecretKey, header: &serde_json::Value, claims: &serde_json::Value) -> String {
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let signature = key.sign(input.as_bytes());
    format!("{input}.{}", b64(&signature.to_bytes()))
}

fn claims(sub: &str, iat: i64, exp: i64) -> serde_json::Value {
    json!({ "iss": ISS, "aud": "photondb", "sub": sub, "iat": iat, "exp": exp })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_key_and_a_jwt_reach_storaged_as_their_principals() {
    let certs = TestCerts::new().unwrap();
    let storaged = Storaged::start(
        &certs,
        Overrides {
            env: vec![("RUST_LOG".into(), "info".into())],
            ..Overrides::default()
        },
    )
    .unwrap();
    let gw = Gateway::start(&certs, storaged.addr(), |_| {}).unwrap();
    let dir = gw.policy_dir();
    assert!(
        dir.join("api_keys.toml").is_file(),
        "the repository's policies/ has api_keys.toml (enabled = true)"
    );

    // The API key: its entry, then the binding that names its principal.
    let (token, entry) = new_api_key("ci-bot");
    append_policy(&dir, "api_keys.toml", &entry);
    // The issuer: its JWKS file, then issuers.toml, then the binding.
    let idp = SecretKey::generate();
    let jwks = json!({ "keys": [{
        "kty": "OKP",
        "crv": "Ed25519",
        "x": b64(&idp.public_key().to_bytes()),
        "kid": "k1",
        "alg": "EdDSA",
        "use": "sig"
    }]});
    write_policy(&dir, "idp.test.jwks.json", &jwks.to_string());
    append_policy(
        &dir,
        "issuers.toml",
        &format!(
            "\n[[issuer]]\niss = \"{ISS}\"\naudiences = [\"photondb\"]\njwks_file = \"idp.test.jwks.json\"\nalgorithms = [\"EdDSA\"]\n"
        ),
    );
    append_policy(
        &dir,
        "bindings.toml",
        &format!(
            "{}{}",
            binding_entry("key:ci-bot", "reader", &["*"]),
            binding_entry(JWT_PRINCIPAL, "reader", &["*"])
        ),
    );

    // (a) The API key lists databases once the edit is live. API keys are on the default
    // plan (10/s, burst 20); refusals before the edit applies (401) are not counted, so the
    // poll stays well within it.
    let key_reply = poll_reply(
        "the API key served after the edit",
        RELOAD,
        || bearer_get(&gw, &token),
        |r| r.status == 200,
    )
    .await;
    key_reply.expect(200, None);
    assert!(key_reply.json()["databases"].is_array(), "{key_reply}");
    // The same id with another (well-formed) secret.
    let wrong = format!("pdb_ci-bot_{}", b64(&[0u8; 32]));
    assert_ne!(wrong, token);
    bearer_get(&gw, &wrong)
        .await
        .expect(401, Some("api_key_invalid"));

    // (b) A JWT signed by the issuer's key.
    let now = Timestamp::now().unix();
    let header = json!({ "alg": "EdDSA", "typ": "JWT", "kid": "k1" });
    let good = jwt(&idp, &header, &claims("alice", now, now + 300));
    let jwt_reply = bearer_get(&gw, &good).await;
    jwt_reply.expect(200, None);

    // `alg: none`, with an empty signature and with a real one: never accepted.
    let none = json!({ "alg": "none", "typ": "JWT" });
    let unsigned = jwt(&idp, &none, &claims("alice", now, now + 300));
    let (input, _) = unsigned.rsplit_once('.').expect("three parts");
    for token in [format!("{input}."), unsigned.clone()] {
        bearer_get(&gw, &token)
            .await
            .expect(401, Some("token_invalid"));
    }
    // Expired well past the leeway (30 s), validly signed.
    let expired = jwt(&idp, &header, &claims("alice", now - 900, now - 600));
    bearer_get(&gw, &expired)
        .await
        .expect(401, Some("token_expired"));

    // storaged saw each served call under the gateway's principal.
    let rid = key_reply.sent_request_id.clone().expect("sent id");
    let line = storaged_call_line(&storaged, &rid).await;
    assert!(line.contains("ListDatabases"), "{line}");
    assert_eq!(principal(&line), "key:ci-bot", "{line}");
    let rid = jwt_reply.sent_request_id.clone().expect("sent id");
    let line = storaged_call_line(&storaged, &rid).await;
    assert_eq!(principal(&line), JWT_PRINCIPAL, "{line}");
}
