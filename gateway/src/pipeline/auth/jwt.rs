//! JWT bearer tokens (DESIGN §3.5): the issuer named by the token's `iss` must be one of the
//! policy set's; its JWKS file holds the key named by `kid`; the algorithm must be in the
//! issuer's allowlist and match the key's type (never `none`, never HS*); `exp`, `iss`, `aud`
//! and `sub` are required and `nbf` / `iat` honoured, with the issuer's leeway, against the
//! gateway's clock (jsonwebtoken's own time checks read the system clock, so they are off).
//!
//! JWKS files are read lazily and cached per file. A `kid` the cached file lacks re-reads it
//! at most once per `reread_min_interval`, so a key rotation is picked up without letting
//! unknown kids make the gateway read files in a loop.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::{AuthFailure, AuthRequest, Authenticated, Principal, Proof};
use crate::clock::Clock;
use crate::policy::model::{Issuer, JwtAlgorithm, PolicySet};

const INVALID: AuthFailure = AuthFailure::TOKEN_INVALID;

/// Step 5: three dot-separated, non-empty base64url parts.
pub(super) fn precheck(token: &str) -> Result<(), AuthFailure> {
    let parts: Vec<&str> = token.split('.').collect();
    let base64url = |p: &&str| {
        !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    (parts.len() == 3 && parts.iter().all(base64url))
        .then_some(())
        .ok_or(INVALID)
}

/// Verifies tokens against the issuers of the request's policy set.
pub(super) struct JwtVerifier {
    keys: JwksCache,
}

impl JwtVerifier {
    pub(super) fn new(reread_min_interval: Duration, clock: Arc<dyn Clock>) -> Self {
        Self {
            keys: JwksCache {
                files: Mutex::new(HashMap::new()),
                reread_min_interval,
                clock,
                reads: AtomicU64::new(0),
            },
        }
    }

    /// Step 6.
    pub(super) fn authenticate(
        &self,
        token: &str,
        req: &AuthRequest<'_>,
        policy: &PolicySet,
    ) -> Result<Authenticated, AuthFailure> {
        precheck(token)?;
        let issuer = policy
            .issuers
            .get(&unverified_issuer(token)?)
            .ok_or(INVALID)?;
        let header = jsonwebtoken::decode_header(token).map_err(|_| INVALID)?;
        let alg = allowed_algorithm(header.alg, issuer)?;
        let kid = header.kid.as_deref().ok_or(INVALID)?;
        let key = self.keys.find(&issuer.jwks_file, kid).ok_or(INVALID)?;
        if key.alg != alg {
            return Err(INVALID);
        }
        let claims = verify(token, &key.key, header.alg, issuer)?;
        check_claims(&claims, issuer, req.now_unix)?;
        let principal = Principal::jwt(&claims.iss, &claims.sub);
        let proof = Proof::Jwt {
            iss: claims.iss,
            sub: claims.sub,
        };
        Ok(Authenticated::new(principal, proof, req.request_id))
    }
}

/// The `iss` of a token not yet verified: it only chooses which issuer's keys to try.
fn unverified_issuer(token: &str) -> Result<String, AuthFailure> {
    #[derive(Deserialize)]
    struct Unverified {
        iss: String,
    }
    let payload = token.split('.').nth(1).ok_or(INVALID)?;
    let json = URL_SAFE_NO_PAD.decode(payload).map_err(|_| INVALID)?;
    let claims: Unverified = serde_json::from_slice(&json).map_err(|_| INVALID)?;
    Ok(claims.iss)
}

/// The token's algorithm, if this gateway supports it and the issuer allows it.
fn allowed_algorithm(alg: Algorithm, issuer: &Issuer) -> Result<JwtAlgorithm, AuthFailure> {
    let ours = match alg {
        Algorithm::EdDSA => JwtAlgorithm::EdDsa,
        Algorithm::ES256 => JwtAlgorithm::Es256,
        Algorithm::RS256 => JwtAlgorithm::Rs256,
        // HS* would take a public key for a shared secret (algorithm confusion); `none` does
        // not even parse as a header.
        _ => return Err(INVALID),
    };
    issuer
        .algorithms
        .contains(&ours)
        .then_some(ours)
        .ok_or(INVALID)
}

/// The claims the gateway requires.
#[derive(Debug, Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    aud: Audience,
    exp: i64,
    #[serde(default)]
    nbf: Option<i64>,
    #[serde(default)]
    iat: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn any_of(&self, accepted: &[String]) -> bool {
        match self {
            Self::One(aud) => accepted.contains(aud),
            Self::Many(auds) => auds.iter().any(|a| accepted.contains(a)),
        }
    }
}

/// The signature, with `alg` pinned to the header's (already allowed) algorithm; `iss` and
/// `aud` checked here too. Time claims are left to [`check_claims`].
fn verify(
    token: &str,
    key: &DecodingKey,
    alg: Algorithm,
    issuer: &Issuer,
) -> Result<Claims, AuthFailure> {
    let mut validation = Validation::new(alg);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.required_spec_claims = HashSet::new();
    validation.set_audience(&issuer.audiences);
    validation.set_issuer(&[issuer.iss.as_str()]);
    let data = jsonwebtoken::decode::<Claims>(token, key, &validation).map_err(|_| INVALID)?;
    Ok(data.claims)
}

/// `iss`, `aud`, `sub`, then time: expired is its own code; not yet valid is invalid.
fn check_claims(claims: &Claims, issuer: &Issuer, now_unix: i64) -> Result<(), AuthFailure> {
    if claims.iss != issuer.iss || claims.sub.is_empty() || !claims.aud.any_of(&issuer.audiences) {
        return Err(INVALID);
    }
    let leeway = i64::try_from(issuer.leeway_secs).unwrap_or(i64::MAX);
    if now_unix >= claims.exp.saturating_add(leeway) {
        return Err(AuthFailure::TOKEN_EXPIRED);
    }
    let early = |t: Option<i64>| t.is_some_and(|t| now_unix.saturating_add(leeway) < t);
    if early(claims.nbf) || early(claims.iat) {
        return Err(INVALID);
    }
    Ok(())
}

/// One verification key of a JWKS file.
struct VerifyKey {
    kid: String,
    /// The one algorithm the key's type allows.
    alg: JwtAlgorithm,
    key: DecodingKey,
}

/// The JWKS files read so far, by path.
struct JwksCache {
    files: Mutex<HashMap<PathBuf, Loaded>>,
    reread_min_interval: Duration,
    clock: Arc<dyn Clock>,
    /// File reads so far (tests count the re-reads).
    reads: AtomicU64,
}

struct Loaded {
    keys: Vec<Arc<VerifyKey>>,
    read_at: Instant,
}

impl Loaded {
    fn find(&self, kid: &str) -> Option<Arc<VerifyKey>> {
        self.keys.iter().find(|k| k.kid == kid).cloned()
    }
}

impl JwksCache {
    /// The key `kid` of `file`: read on first use, re-read (rate limited) when `kid` is not
    /// in the cached copy.
    fn find(&self, file: &Path, kid: &str) -> Option<Arc<VerifyKey>> {
        let mut files = self.files.lock().unwrap_or_else(PoisonError::into_inner);
        let cached = files.get(file);
        if let Some(key) = cached.and_then(|loaded| loaded.find(kid)) {
            return Some(key);
        }
        let now = self.clock.now();
        let due = cached.is_none_or(|loaded| {
            now.saturating_duration_since(loaded.read_at) >= self.reread_min_interval
        });
        if !due {
            return None;
        }
        let loaded = Loaded {
            keys: self.read(file),
            read_at: now,
        };
        let key = loaded.find(kid);
        files.insert(file.to_owned(), loaded);
        key
    }

    fn read(&self, file: &Path) -> Vec<Arc<VerifyKey>> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        match std::fs::read_to_string(file) {
            Ok(text) => parse_jwks(&text, file),
            Err(err) => {
                tracing::warn!(file = %file.display(), error = %err, "cannot read a JWKS file");
                Vec::new()
            }
        }
    }
}

/// The usable keys of a JWKS document; a key this gateway cannot use is skipped, not fatal.
fn parse_jwks(text: &str, file: &Path) -> Vec<Arc<VerifyKey>> {
    #[derive(Deserialize)]
    struct JwksFile {
        keys: Vec<serde_json::Value>,
    }
    match serde_json::from_str::<JwksFile>(text) {
        Ok(jwks) => jwks
            .keys
            .into_iter()
            .filter_map(verify_key)
            .map(Arc::new)
            .collect(),
        Err(err) => {
            tracing::warn!(file = %file.display(), error = %err, "a JWKS file is not a JWK set");
            Vec::new()
        }
    }
}

/// A JWK with a `kid`, a signature key type (OKP Ed25519, EC P-256, RSA) and, when it says
/// so, `use: sig` and the `alg` its type implies.
fn verify_key(value: serde_json::Value) -> Option<VerifyKey> {
    let text = |name: &str| value.get(name).and_then(|v| v.as_str()).map(str::to_owned);
    let (declared_use, declared_alg) = (text("use"), text("alg"));
    let jwk: Jwk = serde_json::from_value(value).ok()?;
    let kid = jwk.common.key_id.clone()?;
    let alg = key_algorithm(&jwk)?;
    if declared_use.is_some_and(|u| u != "sig") || declared_alg.is_some_and(|a| a != jose_name(alg))
    {
        return None;
    }
    let key = DecodingKey::from_jwk(&jwk).ok()?;
    Some(VerifyKey { kid, alg, key })
}

/// The algorithm a key's type is for; `oct` (HMAC secrets) and other curves never.
fn key_algorithm(jwk: &Jwk) -> Option<JwtAlgorithm> {
    match &jwk.algorithm {
        AlgorithmParameters::OctetKeyPair(p) if matches!(p.curve, EllipticCurve::Ed25519) => {
            Some(JwtAlgorithm::EdDsa)
        }
        AlgorithmParameters::EllipticCurve(p) if matches!(p.curve, EllipticCurve::P256) => {
            Some(JwtAlgorithm::Es256)
        }
        AlgorithmParameters::RSA(_) => Some(JwtAlgorithm::Rs256),
        _ => None,
    }
}

fn jose_name(alg: JwtAlgorithm) -> &'static str {
    match alg {
        JwtAlgorithm::EdDsa => "EdDSA",
        JwtAlgorithm::Es256 => "ES256",
        JwtAlgorithm::Rs256 => "RS256",
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    use super::super::testkit::{NOW, TestRequest, secret};
    use super::*;
    use crate::clock::ManualClock;

    const ISS: &str = "https://idp.example";
    const AUD: &str = "photondb";

    struct Fixture {
        dir: tempfile::TempDir,
        clock: ManualClock,
        verifier: JwtVerifier,
        policy: PolicySet,
    }

    /// An OKP JWK for the public half of `secret(seed)`.
    fn okp(kid: &str, seed: u8) -> serde_json::Value {
        let x = URL_SAFE_NO_PAD.encode(secret(seed).public_key().to_bytes());
        json!({"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "use": "sig", "alg": "EdDSA"})
    }

    fn write_jwks(dir: &tempfile::TempDir, keys: &[serde_json::Value]) {
        let text = json!({ "keys": keys }).to_string();
        std::fs::write(dir.path().join("jwks.json"), text).expect("write jwks");
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        write_jwks(&dir, &[okp("k1", 11)]);
        let clock = ManualClock::default();
        let verifier = JwtVerifier::new(Duration::from_secs(30), Arc::new(clock.clone()));
        let mut policy = PolicySet::default();
        let issuer = Issuer {
            iss: ISS.into(),
            audiences: vec![AUD.into(), "other-aud".into()],
            jwks_file: dir.path().join("jwks.json"),
            algorithms: vec![
                JwtAlgorithm::EdDsa,
                JwtAlgorithm::Es256,
                JwtAlgorithm::Rs256,
            ],
            leeway_secs: 5,
        };
        policy.issuers.insert(ISS.into(), issuer);
        Fixture {
            dir,
            clock,
            verifier,
            policy,
        }
    }

    fn claims() -> serde_json::Value {
        json!({"iss": ISS, "sub": "alice", "aud": AUD, "exp": NOW + 60, "iat": NOW, "nbf": NOW})
    }

    fn eddsa(claims: &serde_json::Value, kid: &str, seed: u8) -> String {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(kid.into());
        let pem = secret(seed).to_pkcs8_pem().expect("pem");
        let key = EncodingKey::from_ed_pem(pem.as_bytes()).expect("ed key");
        jsonwebtoken::encode(&header, claims, &key).expect("encode")
    }

    fn b64(value: &serde_json::Value) -> String {
        URL_SAFE_NO_PAD.encode(value.to_string())
    }

    impl Fixture {
        fn run(&self, token: &str) -> Result<Authenticated, AuthFailure> {
            let req = TestRequest::new("GET", "api.example", "/v1/dbs", None, b"");
            self.verifier
                .authenticate(token, &req.as_auth(), &self.policy)
        }

        fn refusal(&self, token: &str) -> Option<AuthFailure> {
            self.run(token).err()
        }

        fn reads(&self) -> u64 {
            self.verifier.keys.reads.load(Ordering::Relaxed)
        }
    }

    #[test]
    fn a_valid_token_is_its_subject() {
        let f = fixture();
        let token = eddsa(&claims(), "k1", 11);
        assert_eq!(precheck(&token), Ok(()));
        let auth = f.run(&token).expect("valid");
        assert_eq!(auth.principal().as_str(), "jwt:https://idp.example#alice");
        assert_eq!(
            auth.proof(),
            &Proof::Jwt {
                iss: ISS.into(),
                sub: "alice".into()
            }
        );
        assert!(!auth.is_signed());
        let mut many = claims();
        many["aud"] = json!(["someone-else", "other-aud"]);
        assert!(f.run(&eddsa(&many, "k1", 11)).is_ok());
    }

    /// A P-256 key pair: its JWK and the signing key.
    fn p256(kid: &str) -> (serde_json::Value, EncodingKey) {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("p256");
        // The uncompressed point: 0x04 || x || y.
        let point = pair.public_key_raw();
        let (x, y) = point[1..].split_at(32);
        let jwk = json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
            "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y)});
        (jwk, EncodingKey::from_ec_der(&pair.serialize_der()))
    }

    /// A 2048-bit RSA key pair made by the `openssl` command (ring cannot generate RSA keys):
    /// its JWK and the signing key.
    fn rsa(kid: &str, dir: &tempfile::TempDir) -> (serde_json::Value, EncodingKey) {
        let path = dir.path().join(format!("{kid}.pem"));
        let openssl = |args: &[&str]| {
            let out = std::process::Command::new("openssl")
                .args(args)
                .output()
                .expect("openssl (scripts/install-deps installs it)");
            assert!(out.status.success(), "openssl {args:?}: {out:?}");
            String::from_utf8(out.stdout).expect("utf-8")
        };
        let path_str = path.to_str().expect("path");
        openssl(&[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            path_str,
        ]);
        let modulus = openssl(&["rsa", "-in", path_str, "-noout", "-modulus"]);
        let hex = modulus.trim().strip_prefix("Modulus=").expect("modulus");
        let n: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
            .collect();
        let jwk = json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
            "n": URL_SAFE_NO_PAD.encode(n), "e": "AQAB"});
        let pem = std::fs::read(&path).expect("key");
        (jwk, EncodingKey::from_rsa_pem(&pem).expect("rsa key"))
    }

    fn signed(alg: Algorithm, kid: &str, key: &EncodingKey, claims: &serde_json::Value) -> String {
        let mut header = Header::new(alg);
        header.kid = Some(kid.into());
        jsonwebtoken::encode(&header, claims, key).expect("encode")
    }

    #[test]
    fn es256_and_rs256_tokens_are_their_subjects_and_their_tampering_is_refused() {
        let f = fixture();
        let (ec_jwk, ec_key) = p256("ec1");
        let (rsa_jwk, rsa_key) = rsa("rsa1", &f.dir);
        write_jwks(&f.dir, &[okp("k1", 11), ec_jwk, rsa_jwk]);
        for (alg, kid, key) in [
            (Algorithm::ES256, "ec1", &ec_key),
            (Algorithm::RS256, "rsa1", &rsa_key),
        ] {
            let token = signed(alg, kid, key, &claims());
            let auth = f.run(&token).unwrap_or_else(|e| panic!("{alg:?}: {e:?}"));
            assert_eq!(auth.principal().as_str(), "jwt:https://idp.example#alice");
            // Another subject under the same signature.
            let (head, rest) = token.split_once('.').expect("header");
            let (_, sig) = rest.split_once('.').expect("signature");
            let mut other = claims();
            other["sub"] = json!("mallory");
            let forged = format!("{head}.{}.{sig}", b64(&other));
            assert_eq!(f.refusal(&forged), Some(INVALID), "{alg:?} forged claims");
            let mut expired = claims();
            expired["exp"] = json!(NOW - 60);
            assert_eq!(
                f.refusal(&signed(alg, kid, key, &expired)),
                Some(AuthFailure::TOKEN_EXPIRED),
                "{alg:?} expired"
            );
        }
        // Each key only for its own algorithm: the RSA key named by an ES256 header, the EC
        // key by an RS256 one.
        let crossed = [
            signed(Algorithm::ES256, "rsa1", &ec_key, &claims()),
            signed(Algorithm::RS256, "ec1", &rsa_key, &claims()),
        ];
        for token in crossed {
            assert_eq!(f.refusal(&token), Some(INVALID));
        }
    }

    #[test]
    fn alg_none_is_refused() {
        let f = fixture();
        let header = json!({"alg": "none", "typ": "JWT"});
        for signature in ["", "AAAA"] {
            let token = format!("{}.{}.{signature}", b64(&header), b64(&claims()));
            assert_eq!(f.refusal(&token), Some(INVALID), "{signature:?}");
        }
    }

    #[test]
    fn hs256_with_the_public_key_as_secret_is_refused() {
        let f = fixture();
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("k1".into());
        let public = secret(11).public_key().to_bytes();
        let x = URL_SAFE_NO_PAD.encode(public);
        for secret_bytes in [public.to_vec(), x.into_bytes()] {
            let key = EncodingKey::from_secret(&secret_bytes);
            let token = jsonwebtoken::encode(&header, &claims(), &key).expect("encode");
            assert_eq!(f.refusal(&token), Some(INVALID));
        }
    }

    #[test]
    fn an_hmac_jwk_is_never_a_key() {
        let f = fixture();
        let oct = json!({"kty": "oct", "k": URL_SAFE_NO_PAD.encode(b"secret"), "kid": "h1"});
        write_jwks(&f.dir, &[oct]);
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("h1".into());
        let token = jsonwebtoken::encode(&header, &claims(), &EncodingKey::from_secret(b"secret"))
            .expect("encode");
        assert_eq!(f.refusal(&token), Some(INVALID));
    }

    #[test]
    fn the_algorithm_must_be_allowed_and_match_the_key() {
        let mut f = fixture();
        let token = eddsa(&claims(), "k1", 11);
        if let Some(issuer) = f.policy.issuers.get_mut(ISS) {
            issuer.algorithms = vec![JwtAlgorithm::Es256];
        }
        assert_eq!(f.refusal(&token), Some(INVALID));
        // An ES256 header naming an Ed25519 key fails before any signature check.
        let header = json!({"alg": "ES256", "kid": "k1"});
        let forged = format!("{}.{}.AAAA", b64(&header), b64(&claims()));
        assert_eq!(f.refusal(&forged), Some(INVALID));
    }

    #[test]
    fn time_claims_use_the_gateways_clock_and_leeway() {
        let f = fixture();
        let with = |name: &str, value: i64| {
            let mut c = claims();
            c[name] = json!(value);
            eddsa(&c, "k1", 11)
        };
        assert_eq!(
            f.refusal(&with("exp", NOW - 5)),
            Some(AuthFailure::TOKEN_EXPIRED)
        );
        assert_eq!(
            f.refusal(&with("exp", NOW - 100)),
            Some(AuthFailure::TOKEN_EXPIRED)
        );
        assert!(f.run(&with("exp", NOW - 4)).is_ok(), "within the leeway");
        assert_eq!(f.refusal(&with("nbf", NOW + 6)), Some(INVALID));
        assert!(f.run(&with("nbf", NOW + 5)).is_ok());
        assert_eq!(f.refusal(&with("iat", NOW + 6)), Some(INVALID));
    }

    #[test]
    fn required_claims_and_their_values() {
        let f = fixture();
        for name in ["exp", "iss", "aud", "sub"] {
            let mut c = claims();
            if let Some(map) = c.as_object_mut() {
                map.remove(name);
            }
            assert_eq!(
                f.refusal(&eddsa(&c, "k1", 11)),
                Some(INVALID),
                "without {name}"
            );
        }
        let mut wrong_aud = claims();
        wrong_aud["aud"] = json!("someone-else");
        assert_eq!(f.refusal(&eddsa(&wrong_aud, "k1", 11)), Some(INVALID));
        let mut wrong_iss = claims();
        wrong_iss["iss"] = json!("https://evil.example");
        assert_eq!(f.refusal(&eddsa(&wrong_iss, "k1", 11)), Some(INVALID));
        let mut empty_sub = claims();
        empty_sub["sub"] = json!("");
        assert_eq!(f.refusal(&eddsa(&empty_sub, "k1", 11)), Some(INVALID));
        // Signed by another key under the known kid.
        assert_eq!(f.refusal(&eddsa(&claims(), "k1", 12)), Some(INVALID));
    }

    #[test]
    fn an_unknown_kid_rereads_the_jwks_file_at_most_once_per_interval() {
        let f = fixture();
        assert!(f.run(&eddsa(&claims(), "k1", 11)).is_ok());
        assert_eq!(f.reads(), 1, "read on first use");
        let rotated = eddsa(&claims(), "k2", 12);

        // Too soon after the first read: no re-read.
        assert_eq!(f.refusal(&rotated), Some(INVALID));
        assert_eq!(f.reads(), 1);

        f.clock.advance(Duration::from_secs(30));
        assert_eq!(f.refusal(&rotated), Some(INVALID));
        assert_eq!(f.reads(), 2, "one re-read for the unknown kid");
        assert_eq!(f.refusal(&rotated), Some(INVALID));
        assert_eq!(f.reads(), 2, "and no more within the interval");

        // The issuer rotates its key; the cached copy is trusted until the interval passes.
        write_jwks(&f.dir, &[okp("k1", 11), okp("k2", 12)]);
        assert_eq!(f.refusal(&rotated), Some(INVALID));
        assert_eq!(f.reads(), 2);
        f.clock.advance(Duration::from_secs(29));
        assert_eq!(f.refusal(&rotated), Some(INVALID));
        assert_eq!(f.reads(), 2);
        f.clock.advance(Duration::from_secs(1));
        assert!(f.run(&rotated).is_ok());
        assert_eq!(f.reads(), 3);
        // Known kids never re-read.
        f.clock.advance(Duration::from_secs(60));
        assert!(f.run(&eddsa(&claims(), "k1", 11)).is_ok());
        assert_eq!(f.reads(), 3);
    }

    #[test]
    fn unusable_jwks_entries_are_skipped() {
        let f = fixture();
        let mut enc = okp("k3", 13);
        enc["use"] = json!("enc");
        let mut wrong_alg = okp("k4", 14);
        wrong_alg["alg"] = json!("ES256");
        let no_kid = json!({"kty": "OKP", "crv": "Ed25519", "x": "AAAA"});
        let oct = json!({"kty": "oct", "k": URL_SAFE_NO_PAD.encode(b"k"), "kid": "k5"});
        let entries = [
            okp("k1", 11),
            enc,
            wrong_alg,
            no_kid,
            oct,
            json!({"kty": "weird"}),
        ];
        write_jwks(&f.dir, &entries);
        f.clock.advance(Duration::from_secs(30));
        assert_eq!(f.refusal(&eddsa(&claims(), "k3", 13)), Some(INVALID));
        assert!(f.run(&eddsa(&claims(), "k1", 11)).is_ok());
        assert_eq!(f.refusal(&eddsa(&claims(), "k4", 14)), Some(INVALID));
        assert_eq!(f.refusal(&eddsa(&claims(), "k5", 15)), Some(INVALID));
    }

    #[test]
    fn malformed_tokens() {
        let f = fixture();
        for bad in ["", "a.b", "a.b.c.d", "a..c", "a.b.c d", "a.b+.c"] {
            assert_eq!(precheck(bad), Err(INVALID), "{bad:?}");
            assert_eq!(f.refusal(bad), Some(INVALID), "{bad:?}");
        }
        // A payload that is not JSON, or names no issuer of the set.
        assert_eq!(
            f.refusal("eyJhbGciOiJFZERTQSJ9.bm90LWpzb24.AAAA"),
            Some(INVALID)
        );
    }
}
