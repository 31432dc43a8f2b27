//! The request pipeline of DESIGN §2, in order. Each step is a small function; forwarding
//! needs a [`Cleared`], which only [`Pipeline`] builds and only from the proofs of steps 6–9
//! (`Authenticated`, `Fresh`, `WithinLimit`, `Permit`), so a skipped step does not compile.

pub mod auth;
pub mod policy;
pub mod rate_limit;
pub mod replay;

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use pingora::protocols::http::ServerSession;

use crate::answer::Answer;
use crate::body::{self, Body};
use crate::config::{DevMode, Limits};
use crate::errors::Refusal;
use crate::gate::Gate;
use crate::grpc::{self, GrpcMethod};
use crate::ip_limit::IpLimiter;
use crate::metrics::Metrics;
use crate::operation::{Action, Draft, Operation, PayloadLimits, Target};
use crate::rest;
use crate::route::{self, Route, RouteInput};
use crate::upstream::{Reply, Upstream};
use auth::{AuthRequest, Authenticated, Authenticator, Principal};
use policy::{Denied, Permit, Policy};
use rate_limit::{PrincipalLimiter, WithinLimit};
use replay::{Fresh, ReplayGuard};

/// The pluggable steps 6–9.
pub struct Slots {
    pub auth: Arc<dyn Authenticator>,
    pub replay: Arc<dyn ReplayGuard>,
    pub limiter: Arc<dyn PrincipalLimiter>,
    pub policy: Arc<dyn Policy>,
}

impl Slots {
    /// The dev-mode slots: a dev principal, no replay store, no limit, permit all. Needs the
    /// [`DevMode`] proof that only a validated dev-mode, loopback-only config yields.
    pub fn dev(dev: DevMode) -> Self {
        Self {
            auth: Arc::new(auth::DevAuthenticator::new(dev)),
            replay: Arc::new(replay::DevReplayGuard::new(dev)),
            limiter: Arc::new(rate_limit::DevUnlimited::new(dev)),
            policy: Arc::new(policy::DevAllowAll::new(dev)),
        }
    }
}

/// Steps 6–9 passed: the only ticket to storaged.
#[derive(Debug)]
pub struct Cleared {
    request_id: String,
    auth: Authenticated,
    _fresh: Fresh,
    _within: WithinLimit,
    permit: Permit,
}

impl Cleared {
    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    pub fn principal(&self) -> &Principal {
        self.auth.principal()
    }
}

/// Steps 6–8 passed.
struct Identified {
    auth: Authenticated,
    fresh: Fresh,
    within: WithinLimit,
}

/// What step 4 found.
#[derive(Debug, Clone)]
enum Routed {
    Rest(Route),
    Grpc(GrpcMethod),
}

/// The request line and headers, owned (the session is borrowed again to read the body).
#[derive(Debug, Clone)]
struct Head {
    method: http::Method,
    path: String,
    query: Option<String>,
    host: String,
    headers: HeaderMap,
    http2: bool,
}

impl Head {
    fn of(req: &pingora::http::RequestHeader, http2: bool) -> Self {
        let host = req.uri.authority().map(|a| a.as_str().to_owned());
        let host = host.or_else(|| {
            req.headers
                .get(http::header::HOST)?
                .to_str()
                .ok()
                .map(str::to_owned)
        });
        Self {
            method: req.method.clone(),
            path: req.uri.path().to_owned(),
            query: req.uri.query().map(str::to_owned),
            host: host.unwrap_or_default(),
            headers: req.headers.clone(),
            http2,
        }
    }

    fn header(&self, name: http::header::HeaderName) -> Option<&str> {
        self.headers.get(name)?.to_str().ok()
    }

    /// gRPC needs HTTP/2 (trailers); over HTTP/1 such a request is routed as REST (404).
    fn is_grpc(&self) -> bool {
        self.http2 && grpc::is_grpc(self.header(http::header::CONTENT_TYPE))
    }
}

/// The result of one request, for the edge to write and count.
#[derive(Debug)]
pub struct Outcome {
    pub answer: Answer,
    pub label: &'static str,
    /// The body may be partly unread: do not reuse the connection.
    pub close: bool,
}

/// Everything a request goes through.
pub struct Pipeline {
    pub slots: Slots,
    pub limits: Limits,
    pub ip: Option<IpLimiter>,
    pub gate: Gate,
    pub upstream: Upstream,
    pub metrics: Metrics,
    pub dev_mode: bool,
}

impl Pipeline {
    /// Runs the pipeline for one request whose header has been read.
    pub async fn serve(&self, s: &mut ServerSession, request_id: &str) -> Outcome {
        let head = Head::of(s.req_header(), s.is_http2());
        let mut label = "unrouted";
        let result = self.run(s, &head, request_id, &mut label).await;
        let close = result.is_err();
        let answer = result.unwrap_or_else(|r| self.refuse(&r, &head, request_id));
        Outcome {
            answer,
            label,
            close,
        }
    }

    fn refuse(&self, r: &Refusal, head: &Head, request_id: &str) -> Answer {
        self.metrics.refusal(r.describe().code);
        if head.is_grpc() {
            Answer::grpc_refusal(r)
        } else {
            Answer::problem(r, request_id)
        }
    }

    async fn run(
        &self,
        s: &mut ServerSession,
        head: &Head,
        rid: &str,
        label: &mut &'static str,
    ) -> Result<Answer, Refusal> {
        self.check_headers(s.req_header())?; // 2
        self.admit_ip(s.client_addr())?; // 3
        let routed = route_request(head)?; // 4
        *label = label_of(&routed);
        if matches!(routed, Routed::Rest(Route::PublicHealth)) {
            return Ok(self.health());
        }
        body::refuse_content_encoding(&head.headers)?; // 5
        let body = body::read(s, self.limits.max_body_bytes, self.limits.body_timeout).await?;
        let public = matches!(routed, Routed::Rest(Route::PublicGetDoc { .. }));
        let who = self.identify(head, &body, public)?; // 6-8
        // Only now is the body decoded (gRPC) into the typed request policy decides on.
        let draft = draft(routed, body.bytes)?;
        let cleared = self.authorize(who, draft.as_ref(), rid)?; // 9
        let Some(draft) = draft else {
            return Ok(self.health());
        };
        let op = draft.check(&self.payload_limits())?; // 10
        let reply = self.forward(&op, &cleared).await?; // 11-12
        respond(reply, head.is_grpc()) // 13
    }

    /// Step 2 (the part pingora does not bound tightly enough): header count and size.
    fn check_headers(&self, req: &pingora::http::RequestHeader) -> Result<(), Refusal> {
        let size: usize = req
            .headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 4)
            .sum();
        let size = size + req.uri.to_string().len();
        let too_big =
            req.headers.len() > self.limits.max_headers || size > self.limits.max_header_bytes;
        if too_big {
            Err(Refusal::HeadersTooLarge)
        } else {
            Ok(())
        }
    }

    /// Step 3.
    fn admit_ip(
        &self,
        addr: Option<&pingora::protocols::l4::socket::SocketAddr>,
    ) -> Result<(), Refusal> {
        let (Some(limiter), Some(ip)) = (&self.ip, addr.and_then(|a| a.as_inet()).map(|a| a.ip()))
        else {
            return Ok(());
        };
        limiter.admit(ip).map_err(|l| Refusal::IpRateLimited {
            retry_after_secs: l.retry_after_secs,
        })
    }

    /// Steps 6–8, in order.
    fn identify(&self, head: &Head, body: &Body, public: bool) -> Result<Identified, Refusal> {
        let auth = if public {
            Authenticated::anonymous()
        } else {
            self.authenticate(head, body)?
        };
        let fresh = self
            .slots
            .replay
            .check(&auth)
            .map_err(|_| Refusal::Replayed)?;
        let within = self.slots.limiter.admit(auth.principal());
        let within = within.map_err(|l| Refusal::RateLimited {
            retry_after_secs: l.retry_after_secs,
        })?;
        Ok(Identified {
            auth,
            fresh,
            within,
        })
    }

    /// Step 9: policy on the typed request; yields the ticket to storaged.
    fn authorize(
        &self,
        who: Identified,
        draft: Option<&Draft>,
        rid: &str,
    ) -> Result<Cleared, Refusal> {
        let Identified {
            auth,
            fresh,
            within,
        } = who;
        let target = draft.map_or(Target::all(Action::HealthRead), Draft::target);
        let permit = self.slots.policy.authorize(auth.principal(), &target);
        let permit = permit.map_err(|Denied(t)| Refusal::Forbidden {
            action: t.action,
            resource: t.resource,
        })?;
        Ok(Cleared {
            request_id: rid.to_owned(),
            auth,
            _fresh: fresh,
            _within: within,
            permit,
        })
    }

    fn authenticate(&self, head: &Head, body: &Body) -> Result<Authenticated, Refusal> {
        let req = AuthRequest {
            method: head.method.as_str(),
            host: &head.host,
            path: &head.path,
            query: head.query.as_deref(),
            headers: &head.headers,
            body_digest: &body.digest,
        };
        self.slots
            .auth
            .authenticate(&req)
            .map_err(|f| Refusal::Unauthenticated(f.code))
    }

    fn payload_limits(&self) -> PayloadLimits {
        PayloadLimits {
            max_json_depth: self.limits.max_json_depth,
            max_batch_operations: self.limits.max_batch_operations,
            max_scan_limit: self.limits.max_scan_limit,
        }
    }

    /// Steps 11 and 12: the health gate, then the typed call.
    async fn forward(&self, op: &Operation, cleared: &Cleared) -> Result<Reply, Refusal> {
        if cleared.permit.target() != &op.target() {
            tracing::error!(
                request_id = cleared.request_id(),
                "permit does not cover the operation"
            );
            return Err(Refusal::Internal);
        }
        let admission = self.gate.admit(op.is_read())?;
        let started = Instant::now();
        let result = self.upstream.call(op, cleared, &admission).await;
        self.metrics
            .upstream(op.name(), started.elapsed().as_secs_f64());
        let result = result.map_err(|status| upstream_refusal(&status, op, cleared));
        admission.finish(result.as_ref().is_err_and(Refusal::is_upstream_failure));
        result
    }

    /// The health document, also refreshing the state gauges.
    pub fn health(&self) -> Answer {
        self.metrics
            .set_state(self.gate.breaker.state(), self.gate.degraded.read_only());
        Answer::json(StatusCode::OK, &self.gate.health(self.dev_mode))
    }
}

/// storaged's status as a refusal; its message is logged at most, never answered.
fn upstream_refusal(status: &tonic::Status, op: &Operation, cleared: &Cleared) -> Refusal {
    let refusal = Refusal::from_upstream(status.code());
    let (rid, code, op) = (cleared.request_id(), status.code(), op.name());
    if refusal.is_upstream_failure() {
        tracing::warn!(
            request_id = rid,
            ?code,
            op,
            message = status.message(),
            "storaged failed"
        );
    } else {
        tracing::debug!(request_id = rid, ?code, op, "storaged refused");
    }
    refusal
}

/// Step 4: a gRPC method or a REST route; the path must be in normal form either way.
fn route_request(head: &Head) -> Result<Routed, Refusal> {
    if head.is_grpc() {
        let segs = route::segments(&head.path)?;
        if head.method != http::Method::POST {
            return Err(Refusal::MethodNotAllowed("POST"));
        }
        return Ok(Routed::Grpc(GrpcMethod::from_segments(&segs)?));
    }
    let input = RouteInput {
        method: &head.method,
        path: &head.path,
        query: head.query.as_deref(),
        if_match: head.header(http::header::IF_MATCH),
        if_none_match: head.header(http::header::IF_NONE_MATCH),
    };
    Ok(Routed::Rest(route::route(&input)?))
}

/// The typed draft (names checked; payload not yet). `None`: `/v1/health`.
fn draft(routed: Routed, body: Bytes) -> Result<Option<Draft>, Refusal> {
    match routed {
        Routed::Rest(route) => Ok(rest::draft(route, body)?),
        Routed::Grpc(method) => Ok(Some(method.decode(&body)?)),
    }
}

/// Step 13: storaged's reply in the client's protocol.
fn respond(reply: Reply, grpc: bool) -> Result<Answer, Refusal> {
    if grpc {
        Ok(Answer::grpc_ok(grpc::encode_reply(&reply)))
    } else {
        rest::answer(reply)
    }
}

fn label_of(routed: &Routed) -> &'static str {
    match routed {
        Routed::Grpc(m) => m.label(),
        Routed::Rest(r) => match r {
            Route::PublicHealth => "public_health",
            Route::V1Health => "health",
            Route::PublicGetDoc { .. } => "public_get_doc",
            Route::ListDbs => "list_dbs",
            Route::CreateDb(_) => "create_db",
            Route::DropDb(_) => "drop_db",
            Route::ListTables(_) => "list_tables",
            Route::CreateTable(_) => "create_table",
            Route::DropTable(_) => "drop_table",
            Route::GetDoc { .. } => "get_doc",
            Route::PutDoc { .. } => "put_doc",
            Route::DeleteDoc { .. } => "delete_doc",
            Route::Scan { .. } => "scan",
            Route::Batch(_) => "batch",
            Route::Verify => "verify",
        },
    }
}
