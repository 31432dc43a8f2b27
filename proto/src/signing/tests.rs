use proptest::prelude::*;

use super::*;

const PARTNER: &str = "acme";
const REQUEST_ID: &str = "6f1c2b9e-4d3a-4c8e-9f0a-1b2c3d4e5f60";
const TIME: &str = "2026-11-23T12:00:00Z";

fn fields() -> AuthFields {
    AuthFields::new(PARTNER, REQUEST_ID, TIME).expect("valid fields")
}

fn parts<'a>(path: &'a str, query: &'a str, body: &[u8]) -> RequestParts<'a> {
    RequestParts {
        method: "PUT",
        host: "api.example:8443",
        path,
        query,
        body: BodyDigest::of(body),
    }
}

fn signed(key: &SecretKey, parts: &RequestParts<'_>, fields: AuthFields) -> SignedHeaders {
    let signature = sign(key, parts, &fields).expect("sign");
    SignedHeaders {
        fields,
        signature,
        key_version: None,
    }
}

#[test]
fn empty_body_digest_is_the_sha256_of_nothing() {
    assert_eq!(
        BodyDigest::of(b"").to_hex(),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
}

#[test]
fn streamed_and_whole_body_digests_agree() {
    let mut hasher = BodyHasher::default();
    hasher.update(b"{\"a\":");
    hasher.update(b"1}");
    assert_eq!(hasher.finish(), BodyDigest::of(b"{\"a\":1}"));
}

#[test]
fn signature_with_non_canonical_s_is_refused() {
    let key = SecretKey::from_seed(&[7; 32]);
    let p = parts("/v1/dbs", "", b"");
    let mut headers = signed(&key, &p, fields());
    // s + L encodes the same scalar; verify_strict must refuse the malleated form.
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let mut bytes = headers.signature.0;
    let mut carry = 0u16;
    for i in 0..32 {
        let sum = u16::from(bytes[32 + i]) + u16::from(L[i]) + carry;
        bytes[32 + i] = sum as u8;
        carry = sum >> 8;
    }
    headers.signature = Signature(bytes);
    let err = verify(&key.public_key(), &p, &headers).expect_err("malleated signature");
    assert_eq!(err, SigningError::SignatureInvalid);
}

#[test]
fn small_order_public_key_is_refused() {
    // The identity point (y = 1) has order 1.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let text = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, identity);
    assert_eq!(
        PublicKey::from_base64(&text),
        Err(SigningError::BadPublicKey)
    );
}

#[test]
fn headers_each_exactly_once() {
    let sig = Signature([1; 64]).to_base64();
    let base = vec![
        ("X-Partner-Id", PARTNER.as_bytes()),
        ("x-request-id", REQUEST_ID.as_bytes()),
        ("X-TIMESTAMP", TIME.as_bytes()),
        ("x-signature", sig.as_bytes()),
        ("content-type", b"application/json".as_slice()),
    ];
    let parsed = parse_signed_headers(base.clone()).expect("all four once");
    assert_eq!(parsed.fields.partner_id(), PARTNER);
    assert_eq!(parsed.key_version, None);

    for i in 0..4 {
        let mut missing = base.clone();
        missing.remove(i);
        assert_eq!(
            parse_signed_headers(missing).unwrap_err().code(),
            "missing_header"
        );
        let mut twice = base.clone();
        twice.push(base[i]);
        assert_eq!(
            parse_signed_headers(twice).unwrap_err().code(),
            "duplicate_header"
        );
    }
}

#[test]
fn key_version_is_a_positive_integer() {
    let sig = Signature([1; 64]).to_base64();
    let with_version = |v: &'static str| {
        parse_signed_headers(vec![
            ("x-partner-id", PARTNER.as_bytes()),
            ("x-request-id", REQUEST_ID.as_bytes()),
            ("x-timestamp", TIME.as_bytes()),
            ("x-signature", sig.as_bytes()),
            ("x-key-version", v.as_bytes()),
        ])
    };
    assert_eq!(with_version("3").expect("3").key_version, Some(3));
    for bad in ["0", "03", "-1", "+1", "1.0", "", "99999999999"] {
        assert_eq!(
            with_version(bad).unwrap_err(),
            SigningError::BadKeyVersion,
            "{bad:?}"
        );
    }
}

#[test]
fn header_values_must_be_visible_ascii() {
    let sig = Signature([1; 64]).to_base64();
    let err = parse_signed_headers(vec![
        ("x-partner-id", b"ac me".as_slice()),
        ("x-request-id", REQUEST_ID.as_bytes()),
        ("x-timestamp", TIME.as_bytes()),
        ("x-signature", sig.as_bytes()),
    ])
    .unwrap_err();
    assert_eq!(err, SigningError::BadPartnerId);
}

#[test]
fn signature_must_be_64_bytes_of_standard_base64() {
    for bad in ["", "AAAA", "!!!!", &"A".repeat(88)] {
        assert_eq!(
            Signature::from_base64(bad),
            Err(SigningError::BadSignatureEncoding)
        );
    }
}

#[test]
fn timestamps_are_strict() {
    assert_eq!(
        Timestamp::parse("1970-01-01T00:00:00Z").map(Timestamp::unix),
        Ok(0)
    );
    assert_eq!(
        Timestamp::parse("2026-11-23T12:00:00Z").map(Timestamp::unix),
        Ok(1_795_435_200)
    );
    for bad in [
        "2026-02-29T00:00:00Z",
        "2026-13-01T00:00:00Z",
        "2026-11-23T24:00:00Z",
        "2026-11-23T12:00:60Z",
        "2026-11-23t12:00:00Z",
        "2026-11-23T12:00:00z",
        "2026-11-23 12:00:00Z",
        "1969-12-31T23:59:59Z",
        "+026-11-23T12:00:00Z",
    ] {
        assert_eq!(
            Timestamp::parse(bad),
            Err(SigningError::BadTimestamp),
            "{bad}"
        );
    }
}

proptest! {
    #[test]
    fn timestamp_format_round_trips(secs in 0i64..253_402_300_799) {
        let t = Timestamp::from_unix(secs);
        prop_assert_eq!(Timestamp::parse(&t.format()), Ok(t));
    }

    #[test]
    fn canonical_query_is_idempotent_and_order_free(
        pairs in proptest::collection::btree_map("[a-zA-Z0-9 %+~é]{1,6}", "[a-zA-Z0-9 +=é]{0,6}", 0..5)
    ) {
        let encode = |s: &str| percent::encode(s.as_bytes());
        let raw: Vec<String> = pairs.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect();
        let forward = query::canonical_query(&raw.join("&")).expect("valid");
        let reversed: Vec<String> = raw.iter().rev().cloned().collect();
        prop_assert_eq!(&query::canonical_query(&reversed.join("&")).expect("valid"), &forward);
        prop_assert_eq!(query::canonical_query(&forward).expect("valid"), forward);
    }

    /// Changing any one signed component makes verification fail.
    #[test]
    fn any_changed_component_fails_verification(
        seed in any::<[u8; 32]>(),
        key_segment in "[a-z0-9]{1,12}",
        query_value in "[a-z0-9]{1,8}",
        body in proptest::collection::vec(any::<u8>(), 0..64),
        which in 0usize..8,
    ) {
        let key = SecretKey::from_seed(&seed);
        let path = format!("/v1/dbs/shop/tables/t/docs/{key_segment}");
        let query = format!("prefix={query_value}");
        let original = parts(&path, &query, &body);
        let headers = signed(&key, &original, fields());
        prop_assert!(verify(&key.public_key(), &original, &headers).is_ok());

        let other_path = format!("{path}x");
        let other_query = format!("{query}x");
        let mut other_body = body.clone();
        other_body.push(0);
        let mut changed = original;
        let mut changed_headers = headers.clone();
        match which {
            0 => changed.method = "POST",
            1 => changed.host = "api.example:8444",
            2 => changed.path = &other_path,
            3 => changed.query = &other_query,
            4 => changed.body = BodyDigest::of(&other_body),
            5 => changed_headers.fields = AuthFields::new(PARTNER, REQUEST_ID, "2026-11-23T12:00:01Z").expect("valid"),
            6 => changed_headers.fields = AuthFields::new("acme2", REQUEST_ID, TIME).expect("valid"),
            _ => changed_headers.fields = AuthFields::new(PARTNER, "6f1c2b9e-4d3a-4c8e-9f0a-1b2c3d4e5f61", TIME).expect("valid"),
        }
        prop_assert_eq!(
            verify(&key.public_key(), &changed, &changed_headers),
            Err(SigningError::SignatureInvalid)
        );
    }

    #[test]
    fn another_key_fails_verification(a in any::<[u8; 32]>(), b in any::<[u8; 32]>()) {
        prop_assume!(a != b);
        let p = parts("/v1/dbs", "", b"");
        let headers = signed(&SecretKey::from_seed(&a), &p, fields());
        prop_assert_eq!(
            verify(&SecretKey::from_seed(&b).public_key(), &p, &headers),
            Err(SigningError::SignatureInvalid)
        );
    }
}
