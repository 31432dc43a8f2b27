//! API keys (DESIGN §3.5): `Authorization: Bearer pdb_<key-id>_<secret>`, the secret being
//! base64url (no padding) of 32 random bytes. Only the SHA-256 of the secret is stored (the
//! secret is 256-bit random, so a slow hash would buy nothing and cost a DoS vector); it is
//! compared in constant time. The token format lives here alone: `photonctl apikey new` makes
//! tokens with [`token`] and [`secret_sha256_hex`].

use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

use super::{AuthFailure, AuthRequest, Authenticated, Principal, Proof};
use crate::policy::model::PolicySet;

/// How every API key token starts.
pub const PREFIX: &str = "pdb_";
/// The secret's length in bytes.
pub const SECRET_BYTES: usize = 32;
/// The longest key id (the policy directory's limit).
pub const MAX_KEY_ID: usize = 64;

const INVALID: AuthFailure = AuthFailure::API_KEY_INVALID;

/// `[a-z0-9-]{1,64}`: no `_`, which ends the id in `pdb_<key-id>_<secret>`.
pub fn is_key_id(id: &str) -> bool {
    (1..=MAX_KEY_ID).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The bearer token for key `key_id` with `secret`; it zeroises itself on drop.
pub fn token(key_id: &str, secret: &[u8; SECRET_BYTES]) -> Zeroizing<String> {
    let mut token = Zeroizing::new(String::with_capacity(PREFIX.len() + key_id.len() + 44));
    token.push_str(PREFIX);
    token.push_str(key_id);
    token.push('_');
    URL_SAFE_NO_PAD.encode_string(secret, &mut token);
    token
}

/// What the policy directory stores for a secret: 64 lowercase hex digits of its SHA-256.
pub fn secret_sha256_hex(secret: &[u8; SECRET_BYTES]) -> String {
    let digest = Sha256::digest(secret);
    digest.iter().fold(String::with_capacity(64), |mut hex, b| {
        let _ = write!(hex, "{b:02x}");
        hex
    })
}

/// A token taken apart. Deliberately not `Debug`: it holds the secret.
struct Presented<'t> {
    key_id: &'t str,
    secret: Zeroizing<Vec<u8>>,
}

fn parse(token: &str) -> Result<Presented<'_>, AuthFailure> {
    let rest = token.strip_prefix(PREFIX).ok_or(INVALID)?;
    let (key_id, encoded) = rest.split_once('_').ok_or(INVALID)?;
    if !is_key_id(key_id) {
        return Err(INVALID);
    }
    // Strict: no padding, no non-canonical trailing bits.
    let secret = Zeroizing::new(URL_SAFE_NO_PAD.decode(encoded).map_err(|_| INVALID)?);
    if secret.len() != SECRET_BYTES {
        return Err(INVALID);
    }
    Ok(Presented { key_id, secret })
}

/// Step 5: the token has the shape of a key.
pub(super) fn precheck(token: &str) -> Result<(), AuthFailure> {
    parse(token).map(|_| ())
}

/// Step 6: a known, enabled key whose hash matches; revoked only tells a holder of the secret.
pub(super) fn authenticate(
    token: &str,
    req: &AuthRequest<'_>,
    policy: &PolicySet,
) -> Result<Authenticated, AuthFailure> {
    let presented = parse(token)?;
    if !policy.api_keys_enabled {
        return Err(INVALID);
    }
    let key = policy.api_keys.get(presented.key_id).ok_or(INVALID)?;
    let digest = Sha256::digest(presented.secret.as_slice());
    if !bool::from(digest.as_slice().ct_eq(key.secret_sha256.as_slice())) {
        return Err(INVALID);
    }
    if key.revoked {
        return Err(AuthFailure::KEY_REVOKED);
    }
    let proof = Proof::ApiKey {
        key_id: key.id.clone(),
    };
    Ok(Authenticated::new(
        Principal::named(&key.principal),
        proof,
        req.request_id,
    ))
}

#[cfg(test)]
mod tests {
    use sha2::{Digest as _, Sha256};

    use super::super::testkit::TestRequest;
    use super::*;
    use crate::policy::model::ApiKey;

    const SECRET: [u8; 32] = [5; 32];

    fn policy(revoked: bool, enabled: bool) -> PolicySet {
        let mut policy = PolicySet {
            api_keys_enabled: enabled,
            ..PolicySet::default()
        };
        let key = ApiKey {
            id: "ci-bot".into(),
            secret_sha256: Sha256::digest(SECRET).into(),
            principal: "key:ci-bot".into(),
            revoked,
        };
        policy.api_keys.insert("ci-bot".into(), key);
        policy
    }

    fn run(token: &str, policy: &PolicySet) -> Result<Authenticated, AuthFailure> {
        let req = TestRequest::new("GET", "api.example", "/v1/dbs", None, b"");
        authenticate(token, &req.as_auth(), policy)
    }

    #[test]
    fn tokens_round_trip_and_hash_as_stored() {
        let token = token("ci-bot", &SECRET);
        assert_eq!(
            token.as_str(),
            "pdb_ci-bot_BQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQU"
        );
        assert_eq!(precheck(&token), Ok(()));
        assert_eq!(
            secret_sha256_hex(&SECRET),
            "f849d67325facf04177bc663b2dc544051831c589ef581d412f2eba44834e77c"
        );
    }

    #[test]
    fn a_valid_key_is_its_principal() {
        let auth = run(&token("ci-bot", &SECRET), &policy(false, true)).expect("valid");
        assert_eq!(auth.principal().as_str(), "key:ci-bot");
        assert_eq!(
            auth.proof(),
            &Proof::ApiKey {
                key_id: "ci-bot".into()
            }
        );
        assert!(!auth.is_signed());
    }

    #[test]
    fn wrong_secret_unknown_id_revoked_disabled() {
        let policy_ok = policy(false, true);
        assert_eq!(
            run(&token("ci-bot", &[6; 32]), &policy_ok).map(|_| ()),
            Err(INVALID)
        );
        assert_eq!(
            run(&token("other", &SECRET), &policy_ok).map(|_| ()),
            Err(INVALID)
        );
        assert_eq!(
            run(&token("ci-bot", &SECRET), &policy(true, true)).map(|_| ()),
            Err(AuthFailure::KEY_REVOKED)
        );
        // A revoked key with a wrong secret says nothing about the key.
        assert_eq!(
            run(&token("ci-bot", &[6; 32]), &policy(true, true)).map(|_| ()),
            Err(INVALID)
        );
        assert_eq!(
            run(&token("ci-bot", &SECRET), &policy(false, false)).map(|_| ()),
            Err(INVALID)
        );
    }

    #[test]
    fn malformed_tokens() {
        let good = URL_SAFE_NO_PAD.encode(SECRET);
        let short = URL_SAFE_NO_PAD.encode([5u8; 31]);
        let cases = [
            format!("pdb_ci-bot_{good}="),
            format!("pdb_ci-bot_{short}"),
            format!("pdb_ci-bot_{}", good.replace('B', "+")),
            format!("pdb_CI-bot_{good}"),
            format!("pdb_ci_bot_{good}"),
            format!("pdb__{good}"),
            format!("pdb_{}_{good}", "a".repeat(MAX_KEY_ID + 1)),
            format!("pdb_ci-bot{good}"),
            "pdb_".to_owned(),
        ];
        for bad in &cases {
            assert_eq!(precheck(bad), Err(INVALID), "{bad}");
            assert_eq!(
                run(bad, &policy(false, true)).map(|_| ()),
                Err(INVALID),
                "{bad}"
            );
        }
        assert!(is_key_id(&"a".repeat(MAX_KEY_ID)));
    }
}
