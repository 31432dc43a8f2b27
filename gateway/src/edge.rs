//! The pingora adapter: reads each request's header within a deadline, hands the pipeline a
//! [`RequestHead`] and the session as a [`BodySource`], and writes the whole answer itself
//! (the gateway terminates requests; it never proxies bytes). Also the connection limit and
//! the HTTP/2 limits.

use std::sync::Arc;

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
use tokio::sync::Semaphore;

use crate::answer::Answer;
use crate::pipeline::Pipeline;
use crate::pipeline::body::{BodyBroken, BodySource};
use crate::pipeline::head::RequestHead;

/// Serves every request on the public listener.
pub struct Edge {
    pipeline: Arc<Pipeline>,
    options: HttpServerOptions,
}

impl Edge {
    pub fn new(pipeline: Arc<Pipeline>) -> Self {
        let mut options = HttpServerOptions::default();
        options.h2_idle_timeout = Some(pipeline.limits.idle_timeout);
        options.keepalive_request_limit = Some(10_000);
        Self { pipeline, options }
    }

    async fn read_header(&self, s: &mut ServerSession) -> bool {
        // A deadline on the whole header (slowloris); pingora alone bounds each read.
        let deadline = self.pipeline.limits.header_timeout;
        matches!(
            tokio::time::timeout(deadline, s.read_request()).await,
            Ok(Ok(true))
        )
    }
}

/// The session's request body, read by the pipeline.
struct SessionBody<'a> {
    session: &'a mut ServerSession,
    /// A read failed (bad chunk framing, a reset): pingora then counts the body as "done", but
    /// the connection's framing is lost and it must never carry another request.
    broken: bool,
}

#[async_trait]
impl BodySource for SessionBody<'_> {
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, BodyBroken> {
        let chunk = self.session.read_request_body().await;
        self.broken |= chunk.is_err();
        chunk.map_err(|_| BodyBroken)
    }

    fn is_done(&mut self) -> bool {
        !self.broken && self.session.is_body_done()
    }
}

/// The pipeline's view of the session's request head.
fn head_of(s: &ServerSession) -> RequestHead {
    let req = s.req_header();
    RequestHead::new(
        req.method.clone(),
        &req.uri,
        req.headers.clone(),
        s.is_http2(),
    )
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
        if !self.read_header(&mut s).await {
            return None;
        }
        let clock = &self.pipeline.clock;
        let started = clock.now();
        let head = head_of(&s);
        let client = s.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip());
        let outcome = self
            .pipeline
            .serve(
                &head,
                &mut SessionBody {
                    session: &mut s,
                    broken: false,
                },
                client,
            )
            .await;
        if outcome.close || *shutdown.borrow() {
            s.set_keepalive(None);
        }
        let status = outcome.answer.status.as_u16();
        let elapsed = clock.now().saturating_duration_since(started);
        let metrics = &self.pipeline.metrics;
        metrics.request(outcome.label, status, elapsed.as_secs_f64());
        let rid = outcome.request_id;
        tracing::debug!(request_id = %rid, route = outcome.label, status, "request");
        write_answer(&mut s, outcome.answer, &rid).await.ok()?;
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
        // A response to HEAD carries no body (HTTP/2 clients reset a stream that sends one).
        None if s.req_header().method == http::Method::HEAD => {
            s.write_response_body(bytes::Bytes::new(), true).await
        }
        None => s.write_response_body(answer.body, true).await,
        Some(t) => {
            if !answer.body.is_empty() {
                s.write_response_body(answer.body, false).await?;
            }
            s.write_response_trailers(t).await
        }
    }
}

/// Caps open connections: past `max`, new connections are closed at once.
pub struct ConnectionLimit<A> {
    inner: Arc<A>,
    permits: Arc<Semaphore>,
    on_refuse: Box<dyn Fn() + Send + Sync>,
}

impl<A> ConnectionLimit<A> {
    pub fn new(inner: A, max: usize, on_refuse: Box<dyn Fn() + Send + Sync>) -> Self {
        Self {
            inner: Arc::new(inner),
            permits: Arc::new(Semaphore::new(max)),
            on_refuse,
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
        let Ok(_permit) = self.permits.clone().try_acquire_owned() else {
            (self.on_refuse)();
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
