//! The request pipeline of DESIGN §2, in order, as a library function: [`Pipeline::serve`]
//! takes a [`RequestHead`], a [`BodySource`] and the client's address and returns the answer.
//! The server (pingora, in `edge.rs`) only adapts its session to these; no step sees a
//! server type. Forwarding needs a [`Cleared`], built only from the proofs of steps 6–9.

pub mod auth;
pub mod body;
pub mod cleared;
pub mod gate;
pub mod head;
pub mod ip_limit;
pub mod payload;
pub mod policy;
pub mod rate_limit;
pub mod replay;
#[cfg(test)]
mod tests;
mod write_behind;

use std::net::IpAddr;
use std::sync::Arc;

use photondb_proto::signing::Timestamp;

use bytes::Bytes;
use http::StatusCode;
use tracing::Instrument;

use crate::answer::Answer;
use crate::audit::Audit;
use crate::clock::Clock;
use crate::config::{DevMode, Limits};
use crate::detect::Detector;
use crate::draft::{Draft, PayloadLimits};
use crate::errors::Refusal;
use crate::grpc::{self, GrpcMethod};
use crate::metrics::Metrics;
use crate::operation::{Action, Kind, Operation, Reply, Target};
use crate::ops::{self, Ops};
use crate::policy::model::PolicySet;
use crate::policy::store::PolicyStore;
use crate::rest;
use crate::route::{self, Route, RouteInput};
use crate::upstream::Forward;
use crate::usage::{Metered, Usage, principal_label};
use auth::{AuthRequest, Authenticated, Authenticator};
use body::{Body, BodySource};
use cleared::Cleared;
use gate::Gate;
use head::RequestHead;
use ip_limit::IpLimiter;
use policy::{Denied, Policy};
use rate_limit::{PrincipalLimiter, WithinLimit};
use replay::{Fresh, ReplayGuard, ReplayRefusal};

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

/// Extra response headers (step 8's `RateLimit` headers).
type Headers = Vec<(&'static str, String)>;

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

impl Routed {
    fn kind(&self) -> Kind {
        match self {
            Self::Rest(r) => r.kind(),
            Self::Grpc(m) => m.kind(),
        }
    }
}

/// What the pipeline learns of a request as it runs, for metrics and metering.
#[derive(Debug)]
struct Seen {
    /// What the request did (`unrouted` before step 4 decided).
    label: &'static str,
    /// Who it is, once authenticated (`anonymous` for public reads).
    principal: Option<String>,
    /// The plan limiter admitted it (it counts against the quota).
    admitted: bool,
    bytes_in: u64,
}

impl Default for Seen {
    fn default() -> Self {
        Self {
            label: "unrouted",
            principal: None,
            admitted: false,
            bytes_in: 0,
        }
    }
}

/// The result of one request, for the server to write and count.
#[derive(Debug)]
pub struct Outcome {
    pub request_id: String,
    pub answer: Answer,
    /// What the request did, for metrics (`unrouted` before step 4 decided).
    pub label: &'static str,
    /// The body was not read to its end: the connection cannot carry another request.
    pub close: bool,
}

/// Everything a request goes through.
pub struct Pipeline {
    pub slots: Slots,
    /// The policy set; each request reads one snapshot of it.
    pub policy: Arc<PolicyStore>,
    /// Lowercased `Host` / `:authority` values served; empty: no check (dev mode only).
    pub hosts: Vec<String>,
    pub audit: Audit,
    /// The operator's incident switches.
    pub ops: Ops,
    /// Attack signals counted per minute.
    pub detect: Detector,
    /// Usage per principal and hour.
    pub usage: Usage,
    pub limits: Limits,
    pub ip: Option<IpLimiter>,
    pub gate: Gate,
    pub upstream: Arc<dyn Forward>,
    pub metrics: Metrics,
    /// What all request bodies being read may hold together (step 5).
    pub body_budget: body::BodyBudget,
    pub clock: Arc<dyn Clock>,
    pub dev_mode: bool,
}

impl Pipeline {
    /// Runs the pipeline for one request whose head has been read.
    pub async fn serve(
        &self,
        head: &RequestHead,
        body: &mut dyn BodySource,
        client: Option<IpAddr>,
    ) -> Outcome {
        let request_id = head.request_id();
        let span = tracing::info_span!("request", request_id = %request_id);
        let mut seen = Seen::default();
        let run = self.run(head, body, client, &request_id, &mut seen);
        let result = run.instrument(span).await;
        let (answer, refused) = match result {
            Ok(answer) => (answer, None),
            Err(r) => {
                self.detect.note(&r);
                self.audit.refusal(&r, head, client, &request_id);
                (self.refuse(&r, head, &request_id), Some(r.describe().code))
            }
        };
        if let Some(principal) = &seen.principal {
            let metered = Metered {
                now_unix: self.clock.unix_secs(),
                principal,
                operation: seen.label,
                bytes_in: seen.bytes_in,
                bytes_out: answer.body.len() as u64,
                refused,
                admitted: seen.admitted,
            };
            let policy = self.policy.current();
            self.usage
                .record(&metered, principal_label(principal, &policy));
        }
        Outcome {
            answer,
            label: seen.label,
            close: !body.is_done(),
            request_id,
        }
    }

    /// The answer to a request the server could not take on now (no room for its body): 503
    /// `overloaded` before any step runs. Counted, not audited (a flood would fill the log).
    pub fn overloaded(&self, head: &RequestHead) -> Outcome {
        let request_id = head.request_id();
        Outcome {
            answer: self.refuse(&Refusal::Overloaded, head, &request_id),
            label: "unrouted",
            close: true,
            request_id,
        }
    }

    fn refuse(&self, r: &Refusal, head: &RequestHead, request_id: &str) -> Answer {
        self.metrics.refusal(r.describe().code);
        if head.is_grpc() {
            Answer::grpc_refusal(r)
        } else {
            Answer::problem(r, request_id)
        }
    }

    async fn run(
        &self,
        head: &RequestHead,
        source: &mut dyn BodySource,
        client: Option<IpAddr>,
        rid: &str,
        seen: &mut Seen,
    ) -> Result<Answer, Refusal> {
        self.check_headers(head)?; // 2
        self.admit_ip(client)?; // 3
        self.check_host(head)?; // 4: host allowlist, then route
        if self.dev_mode {
            refuse_proxied(head)?;
        }
        let routed = route_request(head)?;
        seen.label = routed.kind().label();
        if matches!(routed, Routed::Rest(Route::PublicHealth)) {
            return Ok(self.health());
        }
        let public = matches!(routed, Routed::Rest(Route::PublicGetDoc { .. }));
        match self.ops.mode() {
            ops::Mode::Closed => return Err(Refusal::Closed),
            ops::Mode::PartnersOnly if public => return Err(Refusal::PublicDisabled),
            _ => {}
        }
        if !public {
            // 5: credentials present and well-formed before any body byte is buffered.
            self.slots
                .auth
                .precheck(&head.headers)
                .map_err(|f| Refusal::Unauthenticated(f.code))?;
        }
        body::refuse_content_encoding(&head.headers)?;
        let limits = &self.limits;
        let body = body::read(
            &head.headers,
            source,
            limits.max_body_bytes,
            limits.body_timeout,
            &self.body_budget,
            client,
        );
        let body = body.await?;
        seen.bytes_in = body.bytes.len() as u64;
        let policy = self.policy.current();
        let now = self.clock.unix_secs();
        let auth = if public {
            Authenticated::anonymous(rid)
        } else {
            self.authenticate(head, &body, rid, now, &policy)? // 6
        };
        seen.principal = Some(auth.principal().as_str().to_owned());
        let who = self.admit(auth, now, client, &policy).await?; // 7-8
        seen.admitted = true;
        // Only now is the body decoded (gRPC) into the typed request policy decides on.
        let draft = draft(routed, body.bytes)?;
        let (cleared, limit_headers) = self.authorize(who, draft.as_ref(), rid, &policy)?; // 9
        // `None`: the authenticated health check, answered here.
        let forwarded = match draft {
            None => None,
            Some(draft) => Some(match payload::check(draft, &self.payload_limits()) {
                Ok(op) => self.forward(&op, &cleared).await, // 11-12
                Err(e) => Err(Refusal::from(e)),             // 10
            }),
        };
        // Every authorized request is audited with what came of it (storaged's answer, before
        // re-encoding).
        let outcome = forwarded
            .as_ref()
            .map_or(Ok(()), |r| r.as_ref().map(|_| ()));
        let target = cleared.permit().target();
        self.audit
            .access(rid, cleared.principal(), client, target, outcome);
        let Some(reply) = forwarded else {
            return Ok(self.health());
        };
        let answer = respond(reply?, head.is_grpc())?; // 13
        Ok(answer.with_headers(limit_headers))
    }

    /// Step 4's first half (DESIGN §3.7): only the configured hosts; only then does a
    /// signature over the host bind a request to this deployment.
    fn check_host(&self, head: &RequestHead) -> Result<(), Refusal> {
        if self.hosts.is_empty() {
            return Ok(());
        }
        let host = head.host.to_ascii_lowercase();
        let allowed = !host.is_empty() && self.hosts.contains(&host);
        allowed.then_some(()).ok_or(Refusal::HostNotAllowed)
    }

    /// Step 2 (the part the server does not bound tightly enough): header count and size.
    fn check_headers(&self, head: &RequestHead) -> Result<(), Refusal> {
        let (count, bytes) = head.size();
        if count > self.limits.max_headers || bytes > self.limits.max_header_bytes {
            Err(Refusal::HeadersTooLarge)
        } else {
            Ok(())
        }
    }

    /// Step 3.
    fn admit_ip(&self, client: Option<IpAddr>) -> Result<(), Refusal> {
        let (Some(limiter), Some(ip)) = (&self.ip, client) else {
            return Ok(());
        };
        limiter.admit(ip).map_err(|l| Refusal::IpRateLimited {
            retry_after_secs: l.retry_after_secs,
        })
    }

    /// Steps 7 and 8 for an authenticated request (a suspended principal stops first).
    async fn admit(
        &self,
        auth: Authenticated,
        now: i64,
        client: Option<IpAddr>,
        policy: &PolicySet,
    ) -> Result<Identified, Refusal> {
        if self.ops.is_suspended(auth.principal().as_str()) {
            return Err(Refusal::PartnerSuspended);
        }
        let fresh = self.slots.replay.check(&auth, now).await;
        let fresh = fresh.map_err(|r| match r {
            ReplayRefusal::Replayed => Refusal::Replayed,
            ReplayRefusal::OutOfWindow => Refusal::TimestampOutOfWindow {
                server_date: http_date(now),
            },
            ReplayRefusal::StoreUnavailable => Refusal::ReplayStoreUnavailable,
        })?;
        let within = self.slots.limiter.admit(&auth, client, policy, now).await;
        let within = within.map_err(|l| match l.code {
            rate_limit::STORE_UNAVAILABLE => Refusal::RateLimitStoreUnavailable,
            code => Refusal::RateLimited {
                code,
                retry_after_secs: l.retry_after_secs,
                headers: l.headers,
            },
        })?;
        Ok(Identified {
            auth,
            fresh,
            within,
        })
    }

    /// Step 9: policy on the typed request; yields the ticket to storaged and step 8's
    /// rate-limit headers for the answer.
    fn authorize(
        &self,
        who: Identified,
        draft: Option<&Draft>,
        rid: &str,
        policy: &PolicySet,
    ) -> Result<(Cleared, Headers), Refusal> {
        let target = draft.map_or(Target::all(Action::HealthRead), Draft::target);
        let permit = self.slots.policy.authorize(&who.auth, &target, policy);
        let permit = permit.map_err(|Denied(t)| Refusal::Forbidden {
            action: t.action.as_str(),
            resource: t.resource.to_string(),
        })?;
        let mut within = who.within;
        let headers = std::mem::take(&mut within.headers);
        let cleared = Cleared::new(who.auth, who.fresh, within, permit).map_err(|_| {
            tracing::error!(request_id = rid, "proofs vouch for different requests");
            Refusal::Internal
        })?;
        Ok((cleared, headers))
    }

    fn authenticate(
        &self,
        head: &RequestHead,
        body: &Body,
        rid: &str,
        now_unix: i64,
        policy: &PolicySet,
    ) -> Result<Authenticated, Refusal> {
        let req = AuthRequest {
            request_id: rid,
            method: head.method.as_str(),
            host: &head.host,
            path: &head.path,
            query: head.query.as_deref(),
            headers: &head.headers,
            body: &body.bytes,
            body_digest: &body.digest,
            now_unix,
        };
        self.slots
            .auth
            .authenticate(&req, policy)
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
        if cleared.permit().target() != &op.target() {
            tracing::error!(
                request_id = cleared.request_id(),
                "permit does not cover the operation"
            );
            return Err(Refusal::Internal);
        }
        let admission = self.gate.admit(op.is_read())?;
        let started = self.clock.now();
        let result = self.upstream.call(op, cleared, &admission).await;
        let elapsed = self.clock.now().saturating_duration_since(started);
        let kind = op.kind();
        self.metrics.upstream(kind.label(), elapsed.as_secs_f64());
        let result = result.map_err(|status| upstream_refusal(&status, kind, cleared));
        // An admin call (verify) that outlasts its deadline says nothing about storaged's
        // health: only other calls' failures count for the circuit breaker.
        let failed = result.as_ref().is_err_and(Refusal::is_upstream_failure);
        admission.finish(failed && !op.is_admin());
        result
    }

    /// The health document, also refreshing the state gauges.
    pub fn health(&self) -> Answer {
        self.metrics
            .set_state(self.gate.breaker.state(), self.gate.degraded.read_only());
        Answer::json(StatusCode::OK, &self.gate.health(self.dev_mode))
    }
}

/// An IMF-fixdate (`Date` header, RFC 9110 §5.6.7) for Unix seconds.
fn http_date(unix: i64) -> String {
    let ts = Timestamp::from_unix(unix).format(); // YYYY-MM-DDTHH:MM:SSZ
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    let weekday = weekday[unix.div_euclid(86_400).rem_euclid(7) as usize];
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = months[ts[5..7].parse::<usize>().unwrap_or(1).clamp(1, 12) - 1];
    format!(
        "{weekday}, {} {month} {} {} GMT",
        &ts[8..10],
        &ts[0..4],
        &ts[11..19]
    )
}

/// Dev mode only: a request that came through a proxy is refused, so a same-host proxy cannot
/// expose the unauthenticated gateway.
fn refuse_proxied(head: &RequestHead) -> Result<(), Refusal> {
    let proxied = ["forwarded", "x-forwarded-for", "via"]
        .iter()
        .any(|h| head.headers.contains_key(*h));
    if proxied {
        Err(Refusal::DevModeProxied)
    } else {
        Ok(())
    }
}

/// storaged's status as a refusal; its message is logged at most, never answered.
fn upstream_refusal(status: &tonic::Status, kind: Kind, cleared: &Cleared) -> Refusal {
    use tonic::Code;
    let refusal = match (kind, status.code()) {
        // One verify at a time: a second is refused.
        (Kind::Verify, Code::FailedPrecondition) => Refusal::VerifyBusy,
        // A verify that gave way to a checkpoint (writes outgrew it): try again later.
        (Kind::Verify, Code::Aborted) => Refusal::Overloaded,
        (_, code) => Refusal::from_upstream(code),
    };
    let op = kind.label();
    let (rid, code) = (cleared.request_id(), status.code());
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
fn route_request(head: &RequestHead) -> Result<Routed, Refusal> {
    if head.fragment {
        return Err(Refusal::PathNotNormal);
    }
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
