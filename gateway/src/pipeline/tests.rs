//! The order of checks (DESIGN §2), in process: each refusal comes from its own step, and a
//! request that would fail several steps is refused by the first of them. A fake upstream
//! records what reaches "storaged".

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;

use async_trait::async_trait;
use http::{HeaderMap, HeaderValue, Method, Uri};
use photondb_proto::v1 as pb;

use super::*;
use crate::breaker::Breaker;
use crate::clock::ManualClock;
use crate::config::BreakerConfig;
use crate::degraded::Degraded;
use crate::pipeline::auth::AuthFailure;
use crate::pipeline::gate::{Admission, StorageHealth};
use crate::pipeline::rate_limit::OverLimit;

/// Records each forwarded call as (operation label, principal, request id).
#[derive(Default)]
struct FakeStorage(Mutex<Vec<(&'static str, String, String)>>);

#[async_trait]
impl Forward for FakeStorage {
    async fn call(
        &self,
        op: &Operation,
        cleared: &Cleared,
        _admitted: &Admission<'_>,
    ) -> Result<Reply, tonic::Status> {
        let call = (
            op.kind().label(),
            cleared.principal().as_str().to_owned(),
            cleared.request_id().to_owned(),
        );
        self.0.lock().unwrap().push(call);
        Ok(match op {
            Operation::Put { .. } => Reply::Put(pb::PutResponse { version: 7 }),
            _ => Reply::ListDatabases(pb::ListDatabasesResponse::default()),
        })
    }
}

/// A body given in chunks, done (as pingora says) only once its end was read; `broken`
/// fails the read after the chunks instead of ending the body.
struct Chunks {
    chunks: Vec<Bytes>,
    ended: bool,
    broken: bool,
}

impl Chunks {
    fn new(chunks: Vec<Bytes>) -> Self {
        Self {
            chunks,
            ended: false,
            broken: false,
        }
    }
}

#[async_trait]
impl BodySource for Chunks {
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, body::BodyBroken> {
        if !self.chunks.is_empty() {
            return Ok(Some(self.chunks.remove(0)));
        }
        if self.broken {
            return Err(body::BodyBroken);
        }
        self.ended = true;
        Ok(None)
    }

    fn is_done(&mut self) -> bool {
        self.ended
    }
}

struct RefuseAuth;
impl Authenticator for RefuseAuth {
    fn precheck(&self, _: &HeaderMap) -> Result<(), AuthFailure> {
        Ok(())
    }

    fn authenticate(
        &self,
        _: &AuthRequest<'_>,
        _: &PolicySet,
    ) -> Result<Authenticated, AuthFailure> {
        Err(AuthFailure {
            code: "signature_invalid",
        })
    }
}

struct RefuseReplay;
#[async_trait]
impl ReplayGuard for RefuseReplay {
    async fn check(&self, _: &Authenticated, _: i64) -> Result<Fresh, ReplayRefusal> {
        Err(ReplayRefusal::Replayed)
    }
}

struct RefuseLimit;
#[async_trait]
impl PrincipalLimiter for RefuseLimit {
    async fn admit(
        &self,
        _: &Authenticated,
        _: Option<IpAddr>,
        _: &PolicySet,
        _: i64,
    ) -> Result<WithinLimit, OverLimit> {
        Err(OverLimit {
            code: rate_limit::RATE_LIMITED,
            retry_after_secs: 3,
            headers: Vec::new(),
        })
    }
}

struct RefusePolicy;
impl Policy for RefusePolicy {
    fn authorize(
        &self,
        _: &Authenticated,
        t: &Target,
        _: &PolicySet,
    ) -> Result<policy::Permit, Denied> {
        Err(Denied(t.clone()))
    }
}

/// Which steps refuse; the rest accept (dev slots).
#[derive(Default, Clone, Copy)]
struct Failing {
    ip: bool,
    auth: bool,
    replay: bool,
    limit: bool,
    policy: bool,
    breaker_open: bool,
    /// The body budget in bytes (default 1 MiB).
    body_budget: Option<usize>,
}

fn pipeline(f: Failing) -> (Pipeline, Arc<FakeStorage>) {
    let dev = DevMode::for_tests();
    let mut slots = Slots::dev(dev);
    if f.auth {
        slots.auth = Arc::new(RefuseAuth);
    }
    if f.replay {
        slots.replay = Arc::new(RefuseReplay);
    }
    if f.limit {
        slots.limiter = Arc::new(RefuseLimit);
    }
    if f.policy {
        slots.policy = Arc::new(RefusePolicy);
    }
    let clock = Arc::new(ManualClock::default());
    let breaker_cfg = BreakerConfig {
        failure_threshold: 1,
        open_for: std::time::Duration::from_secs(60),
        half_open_probes: 1,
    };
    let breaker = Breaker::new(breaker_cfg, clock.clone());
    if f.breaker_open {
        let allowed = breaker.allow().unwrap();
        breaker.record(allowed, true);
    }
    let limits = Limits {
        max_headers: 8,
        max_body_bytes: 64,
        ..Limits::default()
    };
    let storage = Arc::new(FakeStorage::default());
    let p = Pipeline {
        slots,
        policy: Arc::new(PolicyStore::from_set("", PolicySet::default())),
        hosts: Vec::new(),
        audit: Audit::off(clock.clone()),
        ops: crate::ops::Ops::new(None),
        detect: crate::detect::Detector::new(0, 0, clock.now()),
        usage: crate::usage::Usage::new(None, &prometheus::Registry::new()),
        ip: f.ip.then(|| IpLimiter::new(1, 1, clock.clone())),
        gate: Gate {
            breaker,
            degraded: Degraded::new(None, limits.shed_writes_at, limits.max_inflight),
            storage: StorageHealth::default(),
        },
        limits,
        upstream: storage.clone(),
        metrics: Metrics::new(),
        body_budget: {
            let total = f.body_budget.unwrap_or(1 << 20);
            body::BodyBudget::new(total, total)
        },
        clock,
        dev_mode: true,
    };
    if f.ip {
        // The first request from this address spends the only token.
        p.ip.as_ref().unwrap().admit(client().unwrap()).unwrap();
    }
    (p, storage)
}

fn client() -> Option<IpAddr> {
    Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)))
}

fn head(method: Method, target: &str, headers: &[(&'static str, &str)]) -> RequestHead {
    let uri: Uri = format!("https://gw.example{target}").parse().unwrap();
    let mut map = HeaderMap::new();
    for (n, v) in headers {
        map.append(*n, HeaderValue::from_str(v).unwrap());
    }
    RequestHead::new(method, &uri, map, true)
}

async fn serve(p: &Pipeline, head: &RequestHead, body: &[u8]) -> Outcome {
    let mut source = Chunks::new(vec![Bytes::copy_from_slice(body)]);
    p.serve(head, &mut source, client()).await
}

fn code(o: &Outcome) -> String {
    let v: serde_json::Value = serde_json::from_slice(&o.answer.body).unwrap_or_default();
    v["code"].as_str().unwrap_or("").to_owned()
}

const DOC: &str = "/v1/dbs/d/tables/t/docs/k";

/// Failing steps, path, extra headers, body, expected code.
type Case<'a> = (
    Failing,
    &'a str,
    Vec<(&'static str, &'a str)>,
    &'a [u8],
    &'a str,
);

/// A PUT that would fail every step from `first` on: each scenario turns on one more
/// failure at an earlier step, and the refusal must always be that earliest step's.
#[tokio::test]
async fn each_refusal_comes_from_the_first_failing_step() {
    let all = Failing {
        ip: true,
        auth: true,
        replay: true,
        limit: true,
        policy: true,
        breaker_open: true,
        body_budget: None,
    };
    let many_headers: Vec<(&'static str, &str)> = vec![("x-a", "1"); 9];
    let bad_json = b"[1]".as_slice();
    let too_big = vec![b'x'; 65];
    let cases: Vec<Case<'_>> = vec![
        (
            all,
            "/v1/dbs/d/./x",
            many_headers.clone(),
            &too_big,
            "headers_too_large",
        ), // 2
        (all, "/v1/dbs/d/./x", vec![], &too_big, "ip_rate_limited"), // 3
        (
            Failing { ip: false, ..all },
            "/v1/dbs/d/./x",
            vec![],
            &too_big,
            "path_not_normal",
        ), // 4
        (
            Failing { ip: false, ..all },
            DOC,
            vec![("content-encoding", "gzip")],
            &too_big,
            "content_encoding_refused",
        ), // 5
        (
            Failing { ip: false, ..all },
            DOC,
            vec![],
            &too_big,
            "payload_too_large",
        ), // 5
        (
            Failing { ip: false, ..all },
            DOC,
            vec![],
            bad_json,
            "signature_invalid",
        ), // 6
        (
            Failing {
                ip: false,
                auth: false,
                ..all
            },
            DOC,
            vec![],
            bad_json,
            "replayed_request",
        ), // 7
        (
            Failing {
                ip: false,
                auth: false,
                replay: false,
                ..all
            },
            DOC,
            vec![],
            bad_json,
            "rate_limited",
        ), // 8
        (
            Failing {
                breaker_open: true,
                policy: true,
                ..Failing::default()
            },
            DOC,
            vec![],
            bad_json,
            "forbidden",
        ), // 9
        (
            Failing {
                breaker_open: true,
                ..Failing::default()
            },
            DOC,
            vec![],
            bad_json,
            "document_not_object",
        ), // 10
        (
            Failing {
                breaker_open: true,
                ..Failing::default()
            },
            DOC,
            vec![],
            b"{}",
            "storage_unavailable",
        ), // 11
    ];
    for (failing, path, headers, body, expected) in cases {
        let (p, storage) = pipeline(failing);
        let outcome = serve(&p, &head(Method::PUT, path, &headers), body).await;
        assert_eq!(code(&outcome), expected, "{path} {headers:?}");
        assert!(
            storage.0.lock().unwrap().is_empty(),
            "{expected}: nothing forwarded"
        );
    }
}

#[tokio::test]
async fn a_cleared_request_reaches_storage_with_its_principal_and_request_id() {
    let (p, storage) = pipeline(Failing::default());
    let rid = "2f0c8e4a-1b7d-4c55-9a31-6d0e8f4b2c19";
    let outcome = serve(&p, &head(Method::PUT, DOC, &[("x-request-id", rid)]), b"{}").await;
    assert_eq!(outcome.answer.status, StatusCode::OK);
    assert_eq!(outcome.request_id, rid);
    assert_eq!(outcome.label, "put");
    let calls = storage.0.lock().unwrap().clone();
    assert_eq!(
        calls,
        vec![("put", auth::DEV_PRINCIPAL.to_owned(), rid.to_owned())]
    );
}

#[tokio::test]
async fn forbidden_names_the_action_and_resource() {
    let (p, _) = pipeline(Failing {
        policy: true,
        ..Failing::default()
    });
    let o = serve(&p, &head(Method::PUT, DOC, &[]), b"{}").await;
    assert_eq!(o.answer.status, StatusCode::FORBIDDEN);
    let v: serde_json::Value = serde_json::from_slice(&o.answer.body).unwrap();
    assert_eq!(v["detail"], "table.write on db:d/table:t is not allowed");
}

/// Only a refusal raised before the body was read to its end closes the connection.
#[tokio::test]
async fn refusals_after_a_complete_body_keep_the_connection() {
    let (p, _) = pipeline(Failing {
        policy: true,
        ..Failing::default()
    });
    let o = serve(&p, &head(Method::PUT, DOC, &[]), b"{}").await;
    assert_eq!(o.answer.status, StatusCode::FORBIDDEN);
    assert!(!o.close, "403 after a complete body keeps the connection");

    let (p, _) = pipeline(Failing::default());
    let mut unread = Chunks::new(vec![Bytes::from_static(b"{}")]);
    let o = p
        .serve(&head(Method::PUT, "/v1/nope", &[]), &mut unread, client())
        .await;
    assert_eq!(o.answer.status, StatusCode::NOT_FOUND);
    assert!(
        o.close,
        "404 before the body was read closes the connection"
    );
}

#[tokio::test]
async fn public_health_answers_before_any_other_step() {
    let (p, storage) = pipeline(Failing {
        auth: true,
        policy: true,
        ..Failing::default()
    });
    let o = serve(&p, &head(Method::GET, "/public/health", &[]), b"").await;
    assert_eq!(o.answer.status, StatusCode::OK);
    assert_eq!(o.label, "public_health");
    assert!(storage.0.lock().unwrap().is_empty());
}

#[tokio::test]
async fn grpc_refusals_are_trailers() {
    let (p, _) = pipeline(Failing::default());
    let h = head(
        Method::POST,
        "/photondb.v1.Storage/Nope",
        &[("content-type", "application/grpc")],
    );
    let o = serve(&p, &h, b"").await;
    let trailers = o.answer.trailers.expect("gRPC answers end with trailers");
    assert_eq!(trailers["grpc-status"], "12");
    assert_eq!(trailers["grpc-message"], "grpc_unknown_method");
}

/// Dev mode refuses requests that came through a proxy; the host allowlist answers 421 to any
/// other host, before credentials are looked at.
#[tokio::test]
async fn dev_mode_refuses_proxied_requests_and_hosts_are_allowlisted() {
    let (p, storage) = pipeline(Failing::default());
    for proxy in ["forwarded", "x-forwarded-for", "via"] {
        let o = serve(&p, &head(Method::PUT, DOC, &[(proxy, "1.2.3.4")]), b"{}").await;
        assert_eq!(code(&o), "dev_mode_proxied", "{proxy}");
    }
    let (mut p, _) = pipeline(Failing::default());
    p.hosts = vec!["db.example.com".into()];
    let o = serve(&p, &head(Method::PUT, DOC, &[]), b"{}").await;
    assert_eq!(o.answer.status, StatusCode::MISDIRECTED_REQUEST);
    assert_eq!(code(&o), "host_not_allowed");
    assert!(storage.0.lock().unwrap().is_empty());
}
