//! Pipeline step 6 (slot): authentication (DESIGN §3). [`Authenticated`] can only be built in
//! this module tree, from a proof: a native or RFC 9421 signature, a JWT, an API key, the
//! anonymous principal of `/public/*`, or dev mode (which needs [`DevMode`]).
//!
//! [`Credentials`] is the real authenticator: it finds which one credential a request carries
//! and hands it to that scheme's file. Step 5 calls [`Authenticator::precheck`] before any
//! body byte is read, so a client without well-formed credentials cannot make the gateway
//! buffer a body; step 6 verifies once the body and its digest are known.

pub mod api_key;
mod jwt;
mod native;
mod partner_key;
mod rfc9421;
#[cfg(test)]
mod testkit;

use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;
use photondb_proto::signing::BodyDigest;

use crate::clock::Clock;
use crate::config::DevMode;
use crate::policy::model::PolicySet;

/// Who made a request (DESIGN §3.1). A name only: it proves nothing; [`Authenticated`] does.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Principal(String);

impl Principal {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `partner:<id>`: a partner that signed the request.
    pub fn partner(id: &str) -> Self {
        Self(format!("partner:{id}"))
    }

    /// `jwt:<iss>#<sub>`: the subject of a verified token.
    pub fn jwt(iss: &str, sub: &str) -> Self {
        Self(format!("jwt:{iss}#{sub}"))
    }

    /// `anonymous`: unauthenticated `/public/*` reads.
    pub fn anonymous() -> Self {
        Self("anonymous".into())
    }

    /// A principal as the policy directory names it (an API key's `principal`, or the
    /// `--principal` of `photonctl policy explain`).
    pub fn named(name: &str) -> Self {
        Self(name.to_owned())
    }
}

impl std::fmt::Display for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// How the principal was established; the replay guard and the limiter read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proof {
    /// `/public/*`: no credentials, principal `anonymous`.
    Anonymous,
    /// Dev mode only: every request is the dev principal.
    Dev,
    /// Native `PHOTONDB-ED25519-V1` or RFC 9421: the replay guard must remember `replay_key`
    /// (the `X-Request-Id`, or the RFC 9421 `nonce`) for `partner`.
    Signed {
        partner: String,
        /// The version of the partner's key that verified the signature.
        key_version: u32,
        replay_key: String,
        /// `X-Timestamp` or `created`, Unix seconds, as the client claims it.
        signed_at: i64,
        /// RFC 9421 `expires`, Unix seconds.
        expires: Option<i64>,
    },
    /// A verified JWT bearer token.
    Jwt { iss: String, sub: String },
    /// An API key (`pdb_<key_id>_<secret>`).
    ApiKey { key_id: String },
}

/// Proof that step 6 ran for one request: only this module tree builds it, and it can be
/// neither cloned nor copied into another request (the later proofs carry its request id).
#[derive(Debug)]
pub struct Authenticated {
    principal: Principal,
    proof: Proof,
    request_id: String,
}

impl Authenticated {
    fn new(principal: Principal, proof: Proof, request_id: &str) -> Self {
        Self {
            principal,
            proof,
            request_id: request_id.to_owned(),
        }
    }

    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    pub fn proof(&self) -> &Proof {
        &self.proof
    }

    /// The request this proof vouches for.
    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    /// Whether the request carried a signature whose id the replay guard must remember.
    pub fn is_signed(&self) -> bool {
        matches!(self.proof, Proof::Signed { .. })
    }

    /// The principal of unauthenticated `/public/*` reads.
    pub(crate) fn anonymous(request_id: &str) -> Self {
        Self::new(Principal::anonymous(), Proof::Anonymous, request_id)
    }
}

/// What authentication sees of a request. Its `Debug` leaves out the headers and the body:
/// they carry tokens and API key secrets.
#[derive(Clone, Copy)]
pub struct AuthRequest<'a> {
    /// The gateway's id for the request (the client's `X-Request-Id` when it is a UUID).
    pub request_id: &'a str,
    pub method: &'a str,
    /// `Host` / `:authority` as sent (step 4 checked it against the allowlist).
    pub host: &'a str,
    /// The path exactly as received, in normal form (step 4 refused any other).
    pub path: &'a str,
    /// The raw query without `?`.
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
    /// SHA-256 of `body`, computed as it arrived.
    pub body_digest: &'a BodyDigest,
    /// The gateway's wall clock for this request (key validity, token expiry).
    pub now_unix: i64,
}

impl std::fmt::Debug for AuthRequest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthRequest")
            .field("request_id", &self.request_id)
            .field("method", &self.method)
            .field("host", &self.host)
            .field("path", &self.path)
            .field("now_unix", &self.now_unix)
            .finish_non_exhaustive()
    }
}

/// Authentication failed; `code` names the check (issue 10 item 8), answered as 401.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthFailure {
    pub code: &'static str,
}

impl AuthFailure {
    /// No credential at all.
    pub const SIGNATURE_MISSING: Self = Self::new("signature_missing");
    /// Credential headers of the wrong shape, repeated, or of more than one kind.
    pub const SIGNATURE_MALFORMED: Self = Self::new("signature_malformed");
    /// A well-formed signature that does not verify, or does not cover what it must.
    pub const SIGNATURE_INVALID: Self = Self::new("signature_invalid");
    /// No such partner (or no such version of its key).
    pub const UNKNOWN_PARTNER: Self = Self::new("unknown_partner");
    pub const KEY_REVOKED: Self = Self::new("key_revoked");
    pub const KEY_EXPIRED: Self = Self::new("key_expired");
    pub const KEY_NOT_YET_VALID: Self = Self::new("key_not_yet_valid");
    pub const TOKEN_INVALID: Self = Self::new("token_invalid");
    pub const TOKEN_EXPIRED: Self = Self::new("token_expired");
    pub const API_KEY_INVALID: Self = Self::new("api_key_invalid");

    const fn new(code: &'static str) -> Self {
        Self { code }
    }
}

/// The step-6 slot.
pub trait Authenticator: Send + Sync {
    /// Step 5's cheap pre-check, before any body byte is read: the credential headers are
    /// present exactly once and well-formed (no crypto, no policy lookup). Err = 401 at once.
    fn precheck(&self, headers: &HeaderMap) -> Result<(), AuthFailure>;

    /// Step 6: verifies the credential against the request's policy snapshot.
    fn authenticate(
        &self,
        req: &AuthRequest<'_>,
        policy: &PolicySet,
    ) -> Result<Authenticated, AuthFailure>;
}

/// The dev-mode principal's name: loud on purpose.
pub const DEV_PRINCIPAL: &str = "dev:anonymous-unauthenticated";

/// Dev mode only: every request is [`DEV_PRINCIPAL`].
#[derive(Debug)]
pub struct DevAuthenticator(DevMode);

impl DevAuthenticator {
    pub fn new(dev: DevMode) -> Self {
        Self(dev)
    }
}

impl Authenticator for DevAuthenticator {
    fn precheck(&self, _: &HeaderMap) -> Result<(), AuthFailure> {
        Ok(())
    }

    fn authenticate(
        &self,
        req: &AuthRequest<'_>,
        _: &PolicySet,
    ) -> Result<Authenticated, AuthFailure> {
        Ok(Authenticated::new(
            Principal(DEV_PRINCIPAL.into()),
            Proof::Dev,
            req.request_id,
        ))
    }
}

/// The real authenticator: exactly one credential per request, verified by its scheme.
pub struct Credentials {
    jwt: jwt::JwtVerifier,
}

impl Credentials {
    /// `jwks_reread_min_interval`: an unknown JWT `kid` re-reads its issuer's JWKS file at
    /// most once per this interval (measured on `clock`), so unknown kids cannot make the
    /// gateway read files in a loop.
    pub fn new(jwks_reread_min_interval: Duration, clock: Arc<dyn Clock>) -> Self {
        Self {
            jwt: jwt::JwtVerifier::new(jwks_reread_min_interval, clock),
        }
    }
}

impl Authenticator for Credentials {
    fn precheck(&self, headers: &HeaderMap) -> Result<(), AuthFailure> {
        match credential(headers)? {
            Credential::Native => native::precheck(headers),
            Credential::Rfc9421 => rfc9421::precheck(headers),
            Credential::ApiKey(token) => api_key::precheck(token),
            Credential::Jwt(token) => jwt::precheck(token),
        }
    }

    fn authenticate(
        &self,
        req: &AuthRequest<'_>,
        policy: &PolicySet,
    ) -> Result<Authenticated, AuthFailure> {
        match credential(req.headers)? {
            Credential::Native => native::authenticate(req, policy),
            Credential::Rfc9421 => rfc9421::authenticate(req, policy),
            Credential::ApiKey(token) => api_key::authenticate(token, req, policy),
            Credential::Jwt(token) => self.jwt.authenticate(token, req, policy),
        }
    }
}

/// The one credential a request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Credential<'h> {
    /// `X-Signature` and its companions.
    Native,
    /// `Signature-Input` / `Signature`.
    Rfc9421,
    /// `Authorization: Bearer pdb_...`.
    ApiKey(&'h str),
    /// `Authorization: Bearer <jwt>`.
    Jwt(&'h str),
}

/// Headers that say a native signature is meant (`X-Request-Id` is not one: every client may
/// send it).
const NATIVE_HEADERS: [&str; 4] = [
    photondb_proto::signing::HEADER_SIGNATURE,
    photondb_proto::signing::HEADER_PARTNER_ID,
    photondb_proto::signing::HEADER_TIMESTAMP,
    photondb_proto::signing::HEADER_KEY_VERSION,
];
const RFC9421_HEADERS: [&str; 2] = ["signature-input", "signature"];

/// Which credential is present: none is `signature_missing`, two kinds `signature_malformed`.
fn credential(headers: &HeaderMap) -> Result<Credential<'_>, AuthFailure> {
    let native = NATIVE_HEADERS.iter().any(|h| headers.contains_key(*h));
    let rfc9421 = RFC9421_HEADERS.iter().any(|h| headers.contains_key(*h));
    let bearer = headers.contains_key(http::header::AUTHORIZATION);
    match (native, rfc9421, bearer) {
        (false, false, false) => Err(AuthFailure::SIGNATURE_MISSING),
        (true, false, false) => Ok(Credential::Native),
        (false, true, false) => Ok(Credential::Rfc9421),
        (false, false, true) => bearer_token(headers),
        _ => Err(AuthFailure::SIGNATURE_MALFORMED),
    }
}

/// The token of the one `Authorization: Bearer <token>` header (scheme name without case).
fn bearer_token(headers: &HeaderMap) -> Result<Credential<'_>, AuthFailure> {
    let mut values = headers.get_all(http::header::AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(AuthFailure::SIGNATURE_MALFORMED);
    };
    let text = value.to_str().map_err(|_| AuthFailure::TOKEN_INVALID)?;
    let token = text
        .get(..7)
        .filter(|scheme| scheme.eq_ignore_ascii_case("bearer "))
        .map(|_| &text[7..])
        .ok_or(AuthFailure::TOKEN_INVALID)?;
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(AuthFailure::TOKEN_INVALID);
    }
    if token.starts_with(api_key::PREFIX) {
        Ok(Credential::ApiKey(token))
    } else {
        Ok(Credential::Jwt(token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().expect("header value"));
        }
        map
    }

    #[test]
    fn exactly_one_kind_of_credential() {
        assert_eq!(
            credential(&headers(&[])),
            Err(AuthFailure::SIGNATURE_MISSING)
        );
        let only_request_id = headers(&[("x-request-id", "6f1c2b9e-4d3a-4c8e-9f0a-1b2c3d4e5f60")]);
        assert_eq!(
            credential(&only_request_id),
            Err(AuthFailure::SIGNATURE_MISSING)
        );
        assert_eq!(
            credential(&headers(&[("x-signature", "AAAA")])),
            Ok(Credential::Native)
        );
        assert_eq!(
            credential(&headers(&[("signature-input", "a=()")])),
            Ok(Credential::Rfc9421)
        );
        assert_eq!(
            credential(&headers(&[("authorization", "Bearer pdb_ci_x")])),
            Ok(Credential::ApiKey("pdb_ci_x"))
        );
        assert_eq!(
            credential(&headers(&[("authorization", "bearer a.b.c")])),
            Ok(Credential::Jwt("a.b.c"))
        );
        let two = headers(&[("x-signature", "AAAA"), ("authorization", "Bearer a.b.c")]);
        assert_eq!(credential(&two), Err(AuthFailure::SIGNATURE_MALFORMED));
        let two = headers(&[("x-partner-id", "acme"), ("signature", "a=:AA==:")]);
        assert_eq!(credential(&two), Err(AuthFailure::SIGNATURE_MALFORMED));
    }

    #[test]
    fn one_bearer_header_with_a_visible_token() {
        let twice = headers(&[
            ("authorization", "Bearer a.b.c"),
            ("authorization", "Bearer a.b.c"),
        ]);
        assert_eq!(credential(&twice), Err(AuthFailure::SIGNATURE_MALFORMED));
        for bad in [
            "Basic YTpi",
            "Bearer ",
            "Bearer a b",
            "Bearer",
            "Bearera.b.c",
        ] {
            assert_eq!(
                credential(&headers(&[("authorization", bad)])),
                Err(AuthFailure::TOKEN_INVALID),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn credentials_precheck_refuses_before_any_crypto() {
        let creds = Credentials::new(
            Duration::from_secs(30),
            Arc::new(crate::clock::ManualClock::default()),
        );
        assert_eq!(
            creds.precheck(&headers(&[])),
            Err(AuthFailure::SIGNATURE_MISSING)
        );
        assert_eq!(
            creds.precheck(&headers(&[("x-signature", "AAAA")])),
            Err(AuthFailure::SIGNATURE_MALFORMED)
        );
        assert_eq!(
            creds.precheck(&headers(&[("signature-input", "not a dictionary ((")])),
            Err(AuthFailure::SIGNATURE_MALFORMED)
        );
        assert_eq!(
            creds.precheck(&headers(&[("authorization", "Bearer pdb_ci_short")])),
            Err(AuthFailure::API_KEY_INVALID)
        );
        assert_eq!(
            creds.precheck(&headers(&[("authorization", "Bearer not-a-jwt")])),
            Err(AuthFailure::TOKEN_INVALID)
        );
    }

    #[test]
    fn principals_are_named_as_design_3_1_says() {
        assert_eq!(Principal::partner("acme").as_str(), "partner:acme");
        assert_eq!(
            Principal::jwt("https://idp", "alice").as_str(),
            "jwt:https://idp#alice"
        );
        assert_eq!(Principal::anonymous().to_string(), "anonymous");
        let anon = Authenticated::anonymous("rid");
        assert_eq!(anon.proof(), &Proof::Anonymous);
        assert!(!anon.is_signed());
    }
}
