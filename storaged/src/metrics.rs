//! Prometheus metrics: request counts and latency by method and code, and the engine's own
//! counters, served as text on a separate private listener.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use prometheus::{
    Encoder as _, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};

use crate::engine::Engine;

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "storaged_requests_total",
                "gRPC requests by method and status code",
            ),
            &["method", "code"],
        )
        .expect("valid metric definition");
        let latency = HistogramVec::new(
            HistogramOpts::new("storaged_request_seconds", "gRPC request latency by method")
                .buckets(vec![
                    0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0, 5.0,
                ]),
            &["method"],
        )
        .expect("valid metric definition");
        registry
            .register(Box::new(requests.clone()))
            .expect("unique metric");
        registry
            .register(Box::new(latency.clone()))
            .expect("unique metric");
        Self {
            registry,
            requests,
            latency,
        }
    }

    pub fn observe(&self, method: &str, code: tonic::Code, elapsed: Duration) {
        self.requests
            .with_label_values(&[method, &format!("{code:?}")])
            .inc();
        self.latency
            .with_label_values(&[method])
            .observe(elapsed.as_secs_f64());
    }

    /// The whole exposition: registered metrics, then the engine's counters.
    pub fn render(&self, engine: &Engine) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        let mut text = String::from_utf8(buf).unwrap_or_default();
        let s = engine.stats();
        let lookups = s.pool_hits + s.pool_misses;
        let hit_rate = if lookups == 0 {
            1.0
        } else {
            s.pool_hits as f64 / lookups as f64
        };
        let rows: [(&str, &str, &str, f64); 10] = [
            (
                "storaged_commits_total",
                "counter",
                "durable commits",
                s.commits as f64,
            ),
            (
                "storaged_fsyncs_total",
                "counter",
                "WAL fdatasync calls",
                s.fsyncs as f64,
            ),
            (
                "storaged_fsync_seconds_sum",
                "counter",
                "time spent in WAL fdatasync",
                s.fsync_nanos_sum as f64 / 1e9,
            ),
            (
                "storaged_fsync_seconds_count",
                "counter",
                "timed WAL fdatasync calls",
                s.fsync_count as f64,
            ),
            (
                "storaged_wal_bytes_total",
                "counter",
                "bytes appended to the WAL",
                s.wal_bytes as f64,
            ),
            (
                "storaged_durable_lsn",
                "gauge",
                "the WAL position known to be on disk",
                s.durable_lsn as f64,
            ),
            (
                "storaged_checkpoints_total",
                "counter",
                "checkpoints taken",
                s.checkpoints as f64,
            ),
            (
                "storaged_last_checkpoint_seconds",
                "gauge",
                "duration of the last checkpoint",
                s.last_checkpoint_duration.as_secs_f64(),
            ),
            (
                "storaged_buffer_pool_hit_ratio",
                "gauge",
                "page lookups served from memory",
                hit_rate,
            ),
            (
                "storaged_corrupt_pages_total",
                "counter",
                "pages found corrupt on read",
                s.corrupt_pages_seen as f64,
            ),
        ];
        for (name, kind, help, value) in rows {
            let _ = write!(
                text,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
            );
        }
        text
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Serves `GET /metrics` on `listener` until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, metrics: Arc<Metrics>, engine: Arc<Engine>) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let (metrics, engine) = (metrics.clone(), engine.clone());
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let response = answer(req.uri().path(), &metrics, &engine);
                    async move { Ok::<_, Infallible>(response) }
                });
            let io = hyper_util::rt::TokioIo::new(tcp);
            // hyper panics on a header timeout without a timer: every scrape failed.
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(5))
                .serve_connection(io, service)
                .await;
        });
    }
}

fn answer(path: &str, metrics: &Metrics, engine: &Engine) -> hyper::Response<Full<Bytes>> {
    let (status, body) = if path == "/metrics" {
        (200, metrics.render(engine))
    } else {
        (404, "not found\n".to_owned())
    };
    hyper::Response::builder()
        .status(status)
        .header("content-type", "text/plain; version=0.0.4")
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_default()
}
