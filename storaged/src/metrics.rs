//! Prometheus metrics: request counts and latency by method and code, refused connections,
//! whether storaged is serving (damage turns it off) and how many damaged pages it reported,
//! and the engine's own counters, served as text on a separate private listener that holds at
//! most [`MAX_SCRAPES`] connections, each for at most [`SCRAPE_DEADLINE`].

use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use prometheus::{
    Encoder as _, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};
use tokio::sync::Semaphore;

use crate::engine::Engine;

/// Connections the metrics listener serves at once (a scraper needs one); more are closed.
pub const MAX_SCRAPES: usize = 32;
/// How long one metrics connection may stay open, keep-alive included.
pub const SCRAPE_DEADLINE: Duration = Duration::from_secs(10);

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    connections_refused: IntCounterVec,
    serving: IntGauge,
    damaged_pages: IntCounter,
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
        let connections_refused = IntCounterVec::new(
            Opts::new(
                "storaged_connections_refused_total",
                "connections closed before they could make a call, by reason",
            ),
            &["reason"],
        )
        .expect("valid metric definition");
        registry
            .register(Box::new(requests.clone()))
            .expect("unique metric");
        registry
            .register(Box::new(latency.clone()))
            .expect("unique metric");
        let serving = IntGauge::new(
            "photondb_storaged_serving",
            "1 while the health service says SERVING; 0 once damage made the catalog or a table \
             unreadable (until a restart)",
        )
        .expect("valid metric definition");
        serving.set(1);
        let damaged_pages = IntCounter::new(
            "photondb_storaged_damaged_pages_total",
            "distinct damaged pages reported (logged and audited once each)",
        )
        .expect("valid metric definition");
        registry
            .register(Box::new(connections_refused.clone()))
            .expect("unique metric");
        registry
            .register(Box::new(serving.clone()))
            .expect("unique metric");
        registry
            .register(Box::new(damaged_pages.clone()))
            .expect("unique metric");
        Self {
            registry,
            requests,
            latency,
            connections_refused,
            serving,
            damaged_pages,
        }
    }

    /// Whether the health service says SERVING (1) or NOT_SERVING (0).
    pub fn set_serving(&self, serving: bool) {
        self.serving.set(i64::from(serving));
    }

    /// Counts a damaged page reported for the first time.
    pub fn damaged_page(&self) {
        self.damaged_pages.inc();
    }

    /// Counts a connection closed before it could make a call; `reason` is one of a few
    /// fixed labels (never peer-supplied text).
    pub fn connection_refused(&self, reason: &'static str) {
        self.connections_refused.with_label_values(&[reason]).inc();
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
        let a = engine.archive_stats();
        let rows: [(&str, &str, &str, f64); 14] = [
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
            (
                "storaged_archive_waiting_segments",
                "gauge",
                "sealed WAL segments kept until the archive has them",
                a.waiting_segments as f64,
            ),
            (
                "storaged_archive_waiting_bytes",
                "gauge",
                "bytes of sealed WAL waiting for the archive (writes are refused past the bound)",
                a.waiting_bytes as f64,
            ),
            (
                "storaged_archive_segments_total",
                "counter",
                "WAL segments archived by this process",
                a.segments_archived as f64,
            ),
            (
                "storaged_archive_failures_total",
                "counter",
                "failed attempts to archive a WAL segment",
                a.failures as f64,
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
    serve_bounded(listener, metrics, engine, MAX_SCRAPES, SCRAPE_DEADLINE).await;
}

/// How long accepting pauses after it failed (out of descriptors), rather than spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

async fn serve_bounded(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    engine: Arc<Engine>,
    max_connections: usize,
    deadline: Duration,
) {
    let slots = Arc::new(Semaphore::new(max_connections));
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            tokio::time::sleep(ACCEPT_BACKOFF).await;
            continue;
        };
        // Past the cap the connection is dropped, so closed at once.
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let (metrics, engine) = (metrics.clone(), engine.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let _ = tokio::time::timeout(deadline, serve_one(tcp, metrics, engine)).await;
        });
    }
}

async fn serve_one(tcp: tokio::net::TcpStream, metrics: Arc<Metrics>, engine: Arc<Engine>) {
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{EngineOptions, SimFs};
    use std::path::Path;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::{TcpListener, TcpStream};

    /// True if the server closes `s` (EOF or reset) within a few seconds.
    async fn closes(s: &mut TcpStream) -> bool {
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await;
        matches!(read, Ok(Ok(0) | Err(_)))
    }

    async fn scrape(addr: std::net::SocketAddr) -> std::io::Result<String> {
        let mut s = TcpStream::connect(addr).await?;
        let request = b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        s.write_all(request).await?;
        let mut reply = String::new();
        s.read_to_string(&mut reply).await?;
        Ok(reply)
    }

    #[test]
    fn serving_and_damaged_pages_are_exposed() {
        let opened = Engine::open_with(
            Arc::new(SimFs::new()),
            Path::new("/db"),
            EngineOptions::default(),
        );
        let engine = opened.unwrap().0;
        let metrics = Metrics::new();
        let text = metrics.render(&engine);
        for line in [
            "# TYPE photondb_storaged_serving gauge",
            "photondb_storaged_serving 1",
            "# TYPE photondb_storaged_damaged_pages_total counter",
            "photondb_storaged_damaged_pages_total 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} in:\n{text}");
        }
        metrics.set_serving(false);
        metrics.damaged_page();
        let text = metrics.render(&engine);
        for line in [
            "photondb_storaged_serving 0",
            "photondb_storaged_damaged_pages_total 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} in:\n{text}");
        }
    }

    #[tokio::test]
    async fn connections_past_the_cap_are_closed_at_once_and_each_has_a_deadline() {
        let opened = Engine::open_with(
            Arc::new(SimFs::new()),
            Path::new("/db"),
            EngineOptions::default(),
        );
        let engine = Arc::new(opened.unwrap().0);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = Arc::new(Metrics::new());
        let deadline = Duration::from_secs(1);
        tokio::spawn(serve_bounded(listener, metrics, engine, 2, deadline));

        let mut held = Vec::new();
        for _ in 0..2 {
            held.push(TcpStream::connect(addr).await.unwrap());
        }
        let mut third = TcpStream::connect(addr).await.unwrap();
        assert!(
            closes(&mut third).await,
            "a connection past the cap was kept"
        );
        let mut buf = [0u8; 8];
        let open = held[0].try_read(&mut buf);
        assert!(
            matches!(&open, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "a connection within the cap was closed early: {open:?}"
        );
        for s in &mut held {
            assert!(closes(s).await, "a silent connection outlived its deadline");
        }
        // The closed connections' slots are free again (their tasks end just after the close).
        let mut reply = String::new();
        for _ in 0..50 {
            reply = scrape(addr).await.unwrap_or_default();
            if !reply.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    }
}
