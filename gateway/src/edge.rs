//! The pingora adapter: reads each request's header within a deadline, hands the pipeline a
//! [`RequestHead`] and the session as a [`BodySource`], and writes the whole answer itself
//! (the gateway terminates requests; it never proxies bytes). Also the connection limit and
//! the HTTP/2 limits.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use photondb_proto::signing::HEADER_REQUEST_ID;
use pingora::apps::{
    HttpPersistentSettings, HttpServerApp, HttpServerOptions, ReusedHttpStream, ServerApp,
};
use pingora::http::ResponseHeader;
use pingora::protocols::Stream;
use pingora::protocols::http::ServerSession;
use pingora::protocols::http::v2::server::{H2Options, default_h2_options};
use pingora::server::ShutdownWatch;

use crate::answer::Answer;
use crate::connections::{BodySlot, Connections, key_of};
use crate::errors::Refusal;
use crate::pipeline::body::{BodyBroken, BodySource};
use crate::pipeline::head::RequestHead;
use crate::pipeline::{Outcome, Pipeline};

/// Serves every request on the public listener.
pub struct Edge {
    pipeline: Arc<Pipeline>,
    connections: Arc<Connections>,
    options: HttpServerOptions,
}

/// After an answer sent before the request body ended (413, 401, 404, ...), the rest of the
/// body is read and dropped, up to this much and this long, so the client reads the answer
/// instead of a reset; a longer upload is then cut off.
const DRAIN_MAX_BYTES: usize = 4 << 20;
const DRAIN_MAX_TIME: Duration = Duration::from_secs(2);

impl Edge {
    pub fn new(pipeline: Arc<Pipeline>, connections: Arc<Connections>) -> Self {
        let mut options = HttpServerOptions::default();
        options.h2_idle_timeout = Some(pipeline.limits.idle_timeout);
        options.keepalive_request_limit = Some(10_000);
        Self {
            pipeline,
            connections,
            options,
        }
    }

    /// Runs the pipeline, once the request has a place for its body on its connection; also
    /// says whether the client may still be sending a body.
    async fn serve(&self, s: &mut ServerSession, head: &RequestHead) -> (Outcome, bool) {
        let peer = s.client_addr().and_then(|a| a.as_inet()).copied();
        let local = s.server_addr().and_then(|a| a.as_inet()).copied();
        let slot = if s.is_body_empty() {
            None
        } else {
            match self.connections.body_slot(local.zip(peer)) {
                Ok(slot) => Some(slot),
                Err(_) => return (self.pipeline.overloaded(head), !expects_continue(s)),
            }
        };
        let mut body = SessionBody {
            session: s,
            broken: false,
            continued: false,
            slot,
        };
        let client = peer.map(|a| a.ip());
        let outcome = self.pipeline.serve(head, &mut body, client).await;
        // A client waiting for `100 Continue` that did not get it sends no body.
        let sending = body.continued || !expects_continue(body.session);
        (outcome, sending)
    }

    async fn read_header(&self, s: &mut ServerSession) -> Header {
        // A deadline on the whole header (slowloris); pingora alone bounds each read.
        let deadline = self.pipeline.limits.header_timeout;
        match tokio::time::timeout(deadline, s.read_request()).await {
            Ok(Ok(true)) => Header::Read,
            // pingora refuses an ambiguous head (a duplicate `Host`, differing
            // `Content-Length`s, an absolute-form target naming another host) after parsing
            // it; the client is told why before the connection closes.
            Ok(Err(e)) if !s.is_http2() && e.etype() == &pingora::ErrorType::InvalidHTTPHeader => {
                Header::Malformed
            }
            _ => Header::Gone,
        }
    }

    /// 400 `malformed_request` and close: the head could not be read as one request.
    async fn refuse_malformed(&self, s: &mut ServerSession) {
        let refusal = Refusal::MalformedRequest;
        self.pipeline.metrics.refusal(refusal.describe().code);
        let rid = uuid::Uuid::new_v4().hyphenated().to_string();
        let answer = Answer::problem(&refusal, &rid);
        s.set_keepalive(None);
        let _ = write_head_and_body(s, answer, &rid, false).await;
    }
}

/// What reading a request head gave.
enum Header {
    Read,
    /// Parsed, but refused as ambiguous (HTTP/1.1).
    Malformed,
    /// Closed, timed out, or unreadable: nothing to answer.
    Gone,
}

/// The session's request body, read by the pipeline.
struct SessionBody<'a> {
    session: &'a mut ServerSession,
    /// A read failed (bad chunk framing, a reset): pingora then counts the body as "done", but
    /// the connection's framing is lost and it must never carry another request.
    broken: bool,
    /// `100 Continue` was sent (HTTP/1.1 clients that sent `Expect: 100-continue` wait for it
    /// before the body; it is sent only once the pipeline has decided to read the body).
    continued: bool,
    /// The body's place among its connection's bodies being read, given back once it ended.
    slot: Option<BodySlot>,
}

#[async_trait]
impl BodySource for SessionBody<'_> {
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, BodyBroken> {
        if !self.continued {
            self.continued = true;
            if expects_continue(self.session) {
                let sent = self.session.write_continue_response().await;
                self.broken |= sent.is_err();
                sent.map_err(|_| BodyBroken)?;
            }
        }
        let chunk = self.session.read_request_body().await;
        self.broken |= chunk.is_err();
        if !matches!(chunk, Ok(Some(_))) {
            self.slot = None;
        }
        chunk.map_err(|_| BodyBroken)
    }

    fn is_done(&mut self) -> bool {
        !self.broken && self.session.is_body_done()
    }
}

fn expects_continue(s: &ServerSession) -> bool {
    !s.is_http2()
        && s.req_header()
            .headers
            .get(http::header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

/// Reads and drops what is left of the request body, within [`DRAIN_MAX_BYTES`] and
/// [`DRAIN_MAX_TIME`]; true if the body ended cleanly.
async fn drain(s: &mut ServerSession) -> bool {
    let read = async {
        let mut drained = 0usize;
        while drained <= DRAIN_MAX_BYTES {
            match s.read_request_body().await {
                Ok(Some(chunk)) => drained += chunk.len(),
                Ok(None) => return true,
                Err(_) => return false,
            }
        }
        false
    };
    tokio::time::timeout(DRAIN_MAX_TIME, read)
        .await
        .unwrap_or(false)
}

/// The target of an HTTP/1 request line (`METHOD target VERSION`).
fn request_target(raw: &[u8]) -> &[u8] {
    let line = raw.split(|&b| b == b'\r').next().unwrap_or_default();
    line.split(|&b| b == b' ').nth(1).unwrap_or_default()
}

/// The pipeline's view of the session's request head.
fn head_of(s: &ServerSession) -> RequestHead {
    let req = s.req_header();
    let mut head = RequestHead::new(
        req.method.clone(),
        &req.uri,
        req.headers.clone(),
        s.is_http2(),
    );
    // URI parsing drops a fragment; the request line still has it (HTTP/2's `:path` may not
    // carry one at all).
    head.fragment = !s.is_http2() && request_target(&s.to_h1_raw()).contains(&b'#');
    head
}

#[async_trait]
impl HttpServerApp for Edge {
    async fn process_new_http(
        self: &Arc<Self>,
        mut s: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        // pingora counts keep-alive in whole seconds; config is in ms (at least 1 s).
        s.set_keepalive(Some(self.pipeline.limits.idle_timeout.as_secs()));
        match self.read_header(&mut s).await {
            Header::Read => {}
            Header::Malformed => {
                self.refuse_malformed(&mut s).await;
                return None;
            }
            Header::Gone => return None,
        }
        let clock = &self.pipeline.clock;
        let started = clock.now();
        let head = head_of(&s);
        let (outcome, sending) = self.serve(&mut s, &head).await;
        if outcome.close || *shutdown.borrow() {
            s.set_keepalive(None);
        }
        let status = outcome.answer.status.as_u16();
        let elapsed = clock.now().saturating_duration_since(started);
        let metrics = &self.pipeline.metrics;
        metrics.request(outcome.label, status, elapsed.as_secs_f64());
        let rid = outcome.request_id;
        let micros = elapsed.as_micros() as u64;
        tracing::info!(request_id = %rid, route = outcome.label, status, micros, "request");
        write_answer(&mut s, outcome.answer, &rid).await.ok()?;
        // A client still uploading reads the answer only if its stream ends cleanly (HTTP/2)
        // or the connection is not reset under it (HTTP/1.1).
        if outcome.close && sending && !s.is_body_done() {
            drain(&mut s).await;
        }
        let settings = HttpPersistentSettings::for_session(&s);
        let stream = s.finish().await.ok()??;
        Some(ReusedHttpStream::from_reusable_stream(stream, settings))
    }

    fn h2_options(&self) -> Option<H2Options> {
        let l = &self.pipeline.limits;
        let mut o = default_h2_options();
        o.max_concurrent_streams(l.h2_max_concurrent_streams)
            .max_header_list_size(l.max_header_bytes as u32)
            .max_pending_accept_reset_streams(l.h2_max_pending_reset_streams)
            .max_local_error_reset_streams(Some(l.h2_max_local_error_resets));
        Some(o)
    }

    fn server_options(&self) -> Option<&HttpServerOptions> {
        Some(&self.options)
    }
}

async fn write_answer(s: &mut ServerSession, answer: Answer, rid: &str) -> pingora::Result<()> {
    // A response to HEAD carries no body (HTTP/2 clients reset a stream that sends one).
    let head = s.req_header().method == http::Method::HEAD;
    write_head_and_body(s, answer, rid, head).await
}

async fn write_head_and_body(
    s: &mut ServerSession,
    answer: Answer,
    rid: &str,
    head_only: bool,
) -> pingora::Result<()> {
    let mut h = ResponseHeader::build(answer.status, Some(answer.headers.len() + 3))?;
    for (name, value) in answer.headers {
        h.insert_header(name, value)?;
    }
    h.insert_header(HEADER_REQUEST_ID, rid)?;
    h.insert_header("cache-control", "no-store")?;
    let trailers = answer.trailers.filter(|_| s.is_http2());
    if trailers.is_none() {
        h.set_content_length(answer.body.len())?;
    }
    s.write_response_header(Box::new(h)).await?;
    match trailers {
        None if head_only => s.write_response_body(bytes::Bytes::new(), true).await,
        None => s.write_response_body(answer.body, true).await,
        Some(t) => {
            if !answer.body.is_empty() {
                s.write_response_body(answer.body, false).await?;
            }
            s.write_response_trailers(t).await
        }
    }
}

/// Serves only the connections [`Connections`] keeps: each holds its place in the counts while
/// it is served.
pub struct ConnectionLimit<A> {
    inner: Arc<A>,
    connections: Arc<Connections>,
}

impl<A> ConnectionLimit<A> {
    pub fn new(inner: A, connections: Arc<Connections>) -> Self {
        Self {
            inner: Arc::new(inner),
            connections,
        }
    }
}

#[async_trait]
impl<A: HttpServerApp + Send + Sync + 'static> ServerApp for ConnectionLimit<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let key = stream.get_socket_digest().and_then(|d| key_of(&d));
        let Ok(_connection) = self.connections.established(key) else {
            return None;
        };
        // The inner app serves the whole connection (HTTP/1 keep-alive or HTTP/2 streams).
        let mut next = ServerApp::process_new(&self.inner, stream, shutdown).await;
        while let Some(stream) = next {
            next = ServerApp::process_new(&self.inner, stream, shutdown).await;
        }
        None
    }

    async fn cleanup(&self) {
        self.inner.http_cleanup().await;
    }
}
