//! Test helpers shared by the schemes' unit tests: a policy set with one partner, and an owned
//! request that lends itself as an [`AuthRequest`].

use http::{HeaderMap, HeaderValue};
use photondb_proto::signing::{BodyDigest, SecretKey};

use super::AuthRequest;
use crate::policy::model::{Partner, PartnerKey, PolicySet};

/// The tests' wall clock: 2026-01-01T00:00:00Z.
pub(super) const NOW: i64 = 1_767_225_600;
pub(super) const PARTNER: &str = "acme";
pub(super) const REQUEST_ID: &str = "6f1c2b9e-4d3a-4c8e-9f0a-1b2c3d4e5f60";

pub(super) fn secret(seed: u8) -> SecretKey {
    SecretKey::from_seed(&[seed; 32])
}

/// Version `version` of a partner key, the public half of `secret(seed)`, without bounds.
pub(super) fn partner_key(version: u32, seed: u8) -> PartnerKey {
    PartnerKey {
        version,
        key: secret(seed).public_key(),
        not_before: None,
        not_after: None,
        revoked: false,
    }
}

/// A policy set whose only principal is partner [`PARTNER`] with `keys`.
pub(super) fn policy_with(keys: Vec<PartnerKey>) -> PolicySet {
    let mut policy = PolicySet::default();
    add_partner(&mut policy, PARTNER, keys);
    policy
}

pub(super) fn add_partner(policy: &mut PolicySet, id: &str, keys: Vec<PartnerKey>) {
    let partner = Partner {
        id: id.to_owned(),
        plan: "free".into(),
        keys,
        at: "partners.toml:1".into(),
    };
    policy.partners.insert(id.to_owned(), partner);
}

/// A request as the pipeline would hand it to step 6, owned so tests can tamper with it.
#[derive(Debug, Clone)]
pub(super) struct TestRequest {
    pub(super) method: String,
    pub(super) host: String,
    pub(super) path: String,
    pub(super) query: Option<String>,
    pub(super) headers: HeaderMap,
    pub(super) body: Vec<u8>,
    pub(super) digest: BodyDigest,
    pub(super) now_unix: i64,
}

impl TestRequest {
    pub(super) fn new(
        method: &str,
        host: &str,
        path: &str,
        query: Option<&str>,
        body: &[u8],
    ) -> Self {
        Self {
            method: method.to_owned(),
            host: host.to_owned(),
            path: path.to_owned(),
            query: query.map(str::to_owned),
            headers: HeaderMap::new(),
            body: body.to_vec(),
            digest: BodyDigest::of(body),
            now_unix: NOW,
        }
    }

    /// A signed-looking PUT with a query and a body.
    pub(super) fn put() -> Self {
        Self::new(
            "PUT",
            "api.example:8443",
            "/v1/dbs/shop/tables/t/docs/k",
            Some("prefix=a"),
            b"{\"a\":1}",
        )
    }

    /// Replaces every value of `name` with `value`.
    pub(super) fn set(&mut self, name: &'static str, value: &str) {
        let value = HeaderValue::from_str(value).expect("header value");
        self.headers.insert(name, value);
    }

    /// Adds one more value of `name`.
    pub(super) fn append(&mut self, name: &'static str, value: &str) {
        let value = HeaderValue::from_str(value).expect("header value");
        self.headers.append(name, value);
    }

    /// Replaces the body (and its digest, as the pipeline computes it).
    pub(super) fn set_body(&mut self, body: &[u8]) {
        self.body = body.to_vec();
        self.digest = BodyDigest::of(body);
    }

    pub(super) fn as_auth(&self) -> AuthRequest<'_> {
        AuthRequest {
            request_id: REQUEST_ID,
            method: &self.method,
            host: &self.host,
            path: &self.path,
            query: self.query.as_deref(),
            headers: &self.headers,
            body: &self.body,
            body_digest: &self.digest,
            now_unix: self.now_unix,
        }
    }
}

/// A named change to a signed request, for the tampering tests.
pub(super) type Tamper = fn(&mut TestRequest);
