//! The signing scheme against `testdata/signing-vectors.json`, which an independent Python
//! implementation wrote (`python3 proto/testdata/gen_vectors.py > proto/testdata/signing-vectors.json`).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use photondb_proto::signing::{
    self, AuthFields, BodyDigest, RequestParts, SecretKey, Signature, SignedHeaders, SigningError,
};
use serde::Deserialize;

#[derive(Deserialize)]
struct File {
    vectors: Vec<Vector>,
}

#[derive(Deserialize)]
struct Vector {
    name: String,
    seed: String,
    public_key: String,
    method: String,
    host: String,
    path: String,
    query: String,
    body: String,
    timestamp: String,
    partner_id: String,
    request_id: String,
    canonical: Option<String>,
    signature: Option<String>,
    error: Option<String>,
}

fn vectors() -> Vec<Vector> {
    let text = include_str!("../testdata/signing-vectors.json");
    serde_json::from_str::<File>(text)
        .expect("vectors parse")
        .vectors
}

fn b64(text: &str) -> Vec<u8> {
    STANDARD.decode(text).expect("base64 in vectors")
}

fn key(v: &Vector) -> SecretKey {
    let seed: [u8; 32] = b64(&v.seed).try_into().expect("32-byte seed");
    SecretKey::from_seed(&seed)
}

/// Canonicalises a vector's inputs the way the gateway would.
fn canonical(v: &Vector, body: &[u8]) -> Result<(String, AuthFields), SigningError> {
    let fields = AuthFields::new(&v.partner_id, &v.request_id, &v.timestamp)?;
    let parts = RequestParts {
        method: &v.method,
        host: &v.host,
        path: &v.path,
        query: &v.query,
        body: BodyDigest::of(body),
    };
    Ok((signing::canonical_message(&parts, &fields)?, fields))
}

#[test]
fn there_are_vectors_of_both_kinds() {
    let all = vectors();
    assert!(all.iter().filter(|v| v.error.is_none()).count() >= 15);
    assert!(all.iter().filter(|v| v.error.is_some()).count() >= 15);
}

#[test]
fn public_keys_match_seeds() {
    for v in vectors() {
        assert_eq!(key(&v).public_key().to_base64(), v.public_key, "{}", v.name);
    }
}

#[test]
fn accepted_vectors_canonicalise_sign_and_verify() {
    for v in vectors().into_iter().filter(|v| v.error.is_none()) {
        let body = b64(&v.body);
        let (message, fields) = canonical(&v, &body).unwrap_or_else(|e| panic!("{}: {e}", v.name));
        assert_eq!(Some(&message), v.canonical.as_ref(), "{}", v.name);

        let parts = RequestParts {
            method: &v.method,
            host: &v.host,
            path: &v.path,
            query: &v.query,
            body: BodyDigest::of(&body),
        };
        let signature = signing::sign(&key(&v), &parts, &fields).expect("sign");
        assert_eq!(Some(signature.to_base64()), v.signature, "{}", v.name);

        let public = signing::PublicKey::from_base64(&v.public_key).expect("public key");
        let headers = SignedHeaders {
            fields,
            signature: Signature::from_base64(v.signature.as_deref().unwrap_or_default())
                .expect("signature"),
            key_version: None,
        };
        let verified = signing::verify(&public, &parts, &headers).expect(&v.name);
        assert_eq!(verified.fields().partner_id(), v.partner_id);
    }
}

#[test]
fn refused_vectors_fail_with_their_code() {
    for v in vectors() {
        let Some(code) = &v.error else { continue };
        let err = canonical(&v, &b64(&v.body)).expect_err(&v.name);
        assert_eq!(err.code(), code, "{}", v.name);
    }
}
