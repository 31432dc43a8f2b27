//! Native `PHOTONDB-ED25519-V1` signed requests (DESIGN §3.2–3.3), checked by the one
//! implementation in `photondb-proto`: each of the four headers exactly once, `X-Key-Version`
//! or the partner's newest valid key, `verify_strict`.

use http::HeaderMap;
use photondb_proto::signing::{self, RequestParts, SignedHeaders, SigningError};

use super::{AuthFailure, AuthRequest, Authenticated, Principal, Proof, partner_key};
use crate::policy::model::PolicySet;

/// Step 5: the headers are there, once each, and of the right shape.
pub(super) fn precheck(headers: &HeaderMap) -> Result<(), AuthFailure> {
    signed_headers(headers).map(|_| ())
}

/// Step 6: the signature verifies with a valid key of the partner it names.
pub(super) fn authenticate(
    req: &AuthRequest<'_>,
    policy: &PolicySet,
) -> Result<Authenticated, AuthFailure> {
    let signed = signed_headers(req.headers)?;
    let partner = signed.fields.partner_id();
    let key = partner_key::choose(policy, partner, signed.key_version, req.now_unix)?;
    let parts = RequestParts {
        method: req.method,
        host: req.host,
        path: req.path,
        query: req.query.unwrap_or(""),
        body: *req.body_digest,
    };
    let verified = signing::verify(&key.key, &parts, &signed).map_err(refusal)?;
    let fields = verified.fields();
    let proof = Proof::Signed {
        partner: partner.to_owned(),
        key_version: key.version,
        replay_key: fields.request_id().to_owned(),
        signed_at: fields.time().unix(),
        expires: None,
    };
    Ok(Authenticated::new(
        Principal::partner(partner),
        proof,
        req.request_id,
    ))
}

fn signed_headers(headers: &HeaderMap) -> Result<SignedHeaders, AuthFailure> {
    let pairs = headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_bytes()));
    signing::parse_signed_headers(pairs).map_err(|_| AuthFailure::SIGNATURE_MALFORMED)
}

/// A request the scheme cannot canonicalise is malformed; only a failed check is invalid.
fn refusal(err: SigningError) -> AuthFailure {
    match err {
        SigningError::SignatureInvalid => AuthFailure::SIGNATURE_INVALID,
        _ => AuthFailure::SIGNATURE_MALFORMED,
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use photondb_proto::signing::{
        AuthFields, BodyDigest, HEADER_KEY_VERSION, HEADER_PARTNER_ID, HEADER_REQUEST_ID,
        HEADER_SIGNATURE, HEADER_TIMESTAMP, PublicKey, SecretKey, Signature, Timestamp,
    };

    use super::super::testkit::{
        NOW, PARTNER, REQUEST_ID, Tamper, TestRequest, add_partner, partner_key, policy_with,
        secret,
    };
    use super::*;

    const TIME: &str = "2026-01-01T00:00:00Z";

    /// `req` signed by `key` as `partner`, with the headers photonctl would send.
    fn sign(req: &mut TestRequest, key: &SecretKey, partner: &str, version: Option<u32>) {
        let fields = AuthFields::new(partner, REQUEST_ID, TIME).expect("fields");
        let parts = RequestParts {
            method: &req.method,
            host: &req.host,
            path: &req.path,
            query: req.query.as_deref().unwrap_or(""),
            body: BodyDigest::of(&req.body),
        };
        let headers = signing::signature_headers(key, &parts, &fields, version).expect("sign");
        for (name, value) in headers {
            req.set(name, &value);
        }
    }

    fn signed_put() -> TestRequest {
        let mut req = TestRequest::put();
        sign(&mut req, &secret(1), PARTNER, None);
        req
    }

    fn run(req: &TestRequest, policy: &PolicySet) -> Result<Authenticated, AuthFailure> {
        authenticate(&req.as_auth(), policy)
    }

    #[test]
    fn a_valid_request_is_the_partner() {
        let policy = policy_with(vec![partner_key(1, 1)]);
        let req = signed_put();
        assert_eq!(precheck(&req.headers), Ok(()));
        let auth = run(&req, &policy).expect("valid");
        assert_eq!(auth.principal().as_str(), "partner:acme");
        assert_eq!(auth.request_id(), REQUEST_ID);
        assert!(auth.is_signed());
        assert_eq!(
            auth.proof(),
            &Proof::Signed {
                partner: PARTNER.into(),
                key_version: 1,
                replay_key: REQUEST_ID.into(),
                signed_at: NOW,
                expires: None,
            }
        );
        assert_eq!(Timestamp::parse(TIME).map(Timestamp::unix), Ok(NOW));
    }

    #[test]
    fn each_signed_component_tampered_is_invalid() {
        let mut policy = policy_with(vec![partner_key(1, 1)]);
        // The same key under another id, so a changed partner id reaches verification.
        add_partner(&mut policy, "acme2", vec![partner_key(1, 1)]);
        let tampers: [(&str, Tamper); 8] = [
            ("method", |r| r.method = "POST".into()),
            ("host", |r| r.host = "api.example:8444".into()),
            ("path", |r| r.path.push('x')),
            ("query", |r| r.query = Some("prefix=b".into())),
            ("body", |r| r.set_body(b"{\"a\":2}")),
            ("timestamp", |r| {
                r.set(HEADER_TIMESTAMP, "2026-01-01T00:00:01Z")
            }),
            ("partner id", |r| r.set(HEADER_PARTNER_ID, "acme2")),
            ("request id", |r| {
                r.set(HEADER_REQUEST_ID, "6f1c2b9e-4d3a-4c8e-9f0a-1b2c3d4e5f61")
            }),
        ];
        for (what, tamper) in tampers {
            let mut req = signed_put();
            tamper(&mut req);
            assert_eq!(
                run(&req, &policy).map(|_| ()),
                Err(AuthFailure::SIGNATURE_INVALID),
                "{what}"
            );
        }
    }

    #[test]
    fn each_header_exactly_once() {
        let policy = policy_with(vec![partner_key(1, 1)]);
        for name in [
            HEADER_PARTNER_ID,
            HEADER_REQUEST_ID,
            HEADER_TIMESTAMP,
            HEADER_SIGNATURE,
        ] {
            let mut missing = signed_put();
            missing.headers.remove(name);
            assert_eq!(
                precheck(&missing.headers),
                Err(AuthFailure::SIGNATURE_MALFORMED),
                "{name}"
            );
            assert_eq!(
                run(&missing, &policy).map(|_| ()),
                Err(AuthFailure::SIGNATURE_MALFORMED),
                "{name}"
            );
            let mut twice = signed_put();
            let value = twice.headers[name].to_str().expect("ascii").to_owned();
            twice.append(name, &value);
            assert_eq!(
                precheck(&twice.headers),
                Err(AuthFailure::SIGNATURE_MALFORMED),
                "{name}"
            );
            assert_eq!(
                run(&twice, &policy).map(|_| ()),
                Err(AuthFailure::SIGNATURE_MALFORMED),
                "{name}"
            );
        }
    }

    #[test]
    fn malformed_values_are_refused_before_any_crypto() {
        let wrong_length = STANDARD.encode([0u8; 63]);
        let cases = [
            (HEADER_SIGNATURE, "!!!not base64!!!"),
            (HEADER_SIGNATURE, wrong_length.as_str()),
            (HEADER_TIMESTAMP, "2026-01-01 00:00:00Z"),
            (HEADER_REQUEST_ID, "not-a-uuid"),
            (HEADER_PARTNER_ID, "ac/me"),
            (HEADER_KEY_VERSION, "01"),
        ];
        for (name, value) in cases {
            let mut req = signed_put();
            req.set(name, value);
            assert_eq!(
                precheck(&req.headers),
                Err(AuthFailure::SIGNATURE_MALFORMED),
                "{name}={value}"
            );
        }
    }

    #[test]
    fn a_non_canonical_signature_is_invalid() {
        let policy = policy_with(vec![partner_key(1, 1)]);
        let mut req = signed_put();
        let sig = Signature::from_base64(req.headers[HEADER_SIGNATURE].to_str().expect("ascii"))
            .expect("signature");
        // S + L encodes the same scalar; verify_strict must refuse the malleated form.
        const L: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let mut bytes = sig.to_bytes();
        let mut carry = 0u16;
        for i in 0..32 {
            let sum = u16::from(bytes[32 + i]) + u16::from(L[i]) + carry;
            bytes[32 + i] = (sum & 0xff) as u8;
            carry = sum >> 8;
        }
        req.set(HEADER_SIGNATURE, &Signature::from_bytes(bytes).to_base64());
        assert_eq!(
            run(&req, &policy).map(|_| ()),
            Err(AuthFailure::SIGNATURE_INVALID)
        );
    }

    #[test]
    fn a_small_order_public_key_cannot_be_a_partner_key() {
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(
            PublicKey::from_bytes(&identity),
            Err(SigningError::BadPublicKey)
        );
    }

    #[test]
    fn another_partners_key_is_invalid() {
        let policy = policy_with(vec![partner_key(1, 2)]);
        assert_eq!(
            run(&signed_put(), &policy).map(|_| ()),
            Err(AuthFailure::SIGNATURE_INVALID)
        );
    }

    #[test]
    fn key_states_and_unknown_partners() {
        let req = signed_put();
        assert_eq!(
            run(&req, &PolicySet::default()).map(|_| ()),
            Err(AuthFailure::UNKNOWN_PARTNER)
        );
        let mut key = partner_key(1, 1);
        key.revoked = true;
        assert_eq!(
            run(&req, &policy_with(vec![key])).map(|_| ()),
            Err(AuthFailure::KEY_REVOKED)
        );
        let mut key = partner_key(1, 1);
        key.not_after = Some(NOW);
        assert_eq!(
            run(&req, &policy_with(vec![key])).map(|_| ()),
            Err(AuthFailure::KEY_EXPIRED)
        );
        let mut key = partner_key(1, 1);
        key.not_before = Some(NOW + 1);
        assert_eq!(
            run(&req, &policy_with(vec![key])).map(|_| ()),
            Err(AuthFailure::KEY_NOT_YET_VALID)
        );
    }

    #[test]
    fn x_key_version_picks_the_key() {
        let policy = policy_with(vec![partner_key(1, 1), partner_key(2, 2)]);
        // Without a version the newest valid key (2) is used, which did not sign.
        assert_eq!(
            run(&signed_put(), &policy).map(|_| ()),
            Err(AuthFailure::SIGNATURE_INVALID)
        );
        let mut req = TestRequest::put();
        sign(&mut req, &secret(1), PARTNER, Some(1));
        let auth = run(&req, &policy).expect("version 1");
        assert!(matches!(auth.proof(), Proof::Signed { key_version: 1, .. }));
        let mut req = TestRequest::put();
        sign(&mut req, &secret(1), PARTNER, Some(3));
        assert_eq!(
            run(&req, &policy).map(|_| ()),
            Err(AuthFailure::UNKNOWN_PARTNER)
        );
    }
}
