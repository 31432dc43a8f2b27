//! Pipeline step 6 (slot): authentication. [`Authenticated`] can only be built here, from a
//! proof; the authentication issue adds proofs (signature, JWT, API key) and their
//! [`Authenticator`]s. Until then only the dev authenticator exists, and it needs [`DevMode`].

use photondb_proto::signing::BodyDigest;

use crate::config::DevMode;

/// Who made a request (DESIGN §3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal(String);

impl Principal {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// How the principal was established.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Proof {
    /// `/public/*`: no credentials, principal `anonymous`.
    Anonymous,
    /// Dev mode only: every request is the dev principal.
    Dev,
}

/// Proof that step 6 ran for one request: only this module builds it, and it can be neither
/// cloned nor copied into another request (the later proofs carry its request id).
#[derive(Debug)]
pub struct Authenticated {
    principal: Principal,
    proof: Proof,
    request_id: String,
}

impl Authenticated {
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// The request this proof vouches for.
    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    /// Whether the request carried a signature whose id the replay guard must remember.
    pub fn is_signed(&self) -> bool {
        match self.proof {
            Proof::Anonymous | Proof::Dev => false,
        }
    }

    /// The principal of unauthenticated `/public/*` reads.
    pub(crate) fn anonymous(request_id: &str) -> Self {
        Self {
            principal: Principal("anonymous".into()),
            proof: Proof::Anonymous,
            request_id: request_id.to_owned(),
        }
    }
}

/// What authentication sees of a request.
#[derive(Debug, Clone, Copy)]
pub struct AuthRequest<'a> {
    /// The gateway's id for the request (the client's `X-Request-Id` when it is a UUID).
    pub request_id: &'a str,
    pub method: &'a str,
    pub host: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a http::HeaderMap,
    pub body_digest: &'a BodyDigest,
}

/// Authentication failed; `code` names the check (DESIGN §2 step 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthFailure {
    pub code: &'static str,
}

/// The step-6 slot.
pub trait Authenticator: Send + Sync {
    fn authenticate(&self, req: &AuthRequest<'_>) -> Result<Authenticated, AuthFailure>;
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
    fn authenticate(&self, req: &AuthRequest<'_>) -> Result<Authenticated, AuthFailure> {
        Ok(Authenticated {
            principal: Principal(DEV_PRINCIPAL.into()),
            proof: Proof::Dev,
            request_id: req.request_id.to_owned(),
        })
    }
}
