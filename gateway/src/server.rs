//! Assembles and runs the pingora server: the public edge (TLS with a reloadable certificate,
//! ALPN h2 + http/1.1), the private metrics listener, and the background reload task.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::HttpServerApp;
use pingora::apps::ReusedHttpStream;
use pingora::http::ResponseHeader;
use pingora::listeners::tls::TlsSettings;
use pingora::protocols::http::ServerSession;
use pingora::server::configuration::ServerConf;
use pingora::server::{Server, ShutdownWatch};
use pingora::services::background::{BackgroundService, background_service};
use pingora::services::listening::Service;
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::breaker::Breaker;
use crate::clock::SystemClock;
use crate::config::GatewayConfig;
use crate::degraded::Degraded;
use crate::edge::{ConnectionLimit, Edge};
use crate::metrics::Metrics;
use crate::pipeline::gate::{DEV_MODE_WARNING, Gate};
use crate::pipeline::ip_limit::IpLimiter;
use crate::pipeline::{Pipeline, Slots};
use crate::tls::CertResolver;
use crate::upstream::Upstream;

/// Everything built from the config before any port is bound.
pub struct Gateway {
    cfg: GatewayConfig,
    pipeline: Arc<Pipeline>,
    resolver: Option<Arc<CertResolver>>,
}

impl Gateway {
    /// Loads certificates and keys and builds the pipeline; errors are config errors.
    pub fn build(cfg: GatewayConfig) -> Result<Self, Vec<String>> {
        probe_listeners(&cfg)?;
        let resolver = match &cfg.tls {
            Some(files) => Some(Arc::new(
                CertResolver::new(files.clone()).map_err(|e| vec![e])?,
            )),
            None => None,
        };
        let upstream = Upstream::new(&cfg.upstream).map_err(|e| vec![e])?;
        let clock = Arc::new(SystemClock);
        let l = &cfg.limits;
        let pipeline = Pipeline {
            slots: Slots::dev(cfg.dev),
            limits: l.clone(),
            ip: l
                .ip_rate
                .map(|(rate, burst)| IpLimiter::new(rate, burst, clock.clone())),
            gate: Gate {
                breaker: Breaker::new(cfg.breaker, clock.clone()),
                degraded: Degraded::new(
                    cfg.read_only_flag.clone(),
                    l.shed_writes_at,
                    l.max_inflight,
                ),
            },
            upstream: Arc::new(upstream),
            metrics: Metrics::new(),
            clock: clock.clone(),
            dev_mode: true,
        };
        Ok(Self {
            cfg,
            pipeline: Arc::new(pipeline),
            resolver,
        })
    }

    /// Binds the listeners and serves until a signal (SIGTERM: graceful, SIGINT: fast).
    /// Must not be called inside a tokio runtime (pingora makes its own).
    pub fn run_forever(self) -> ! {
        tracing::warn!("{DEV_MODE_WARNING}");
        let mut server = Server::new_with_opt_and_conf(None, self.server_conf());
        server.bootstrap();
        server.add_service(self.edge_service());
        if let Some(addr) = self.cfg.metrics_listen {
            let mut metrics = Service::new(
                "photondb-gateway metrics".into(),
                MetricsApp(self.pipeline.clone()),
            );
            metrics.add_tcp(&addr.to_string());
            server.add_service(metrics);
        }
        let reload = Reloader {
            pipeline: self.pipeline.clone(),
            resolver: self.resolver.clone(),
            every: self.cfg.tls_reload_interval,
        };
        server.add_service(background_service("photondb-gateway reload", reload));
        tracing::info!(listen = %self.cfg.listen, tls = self.resolver.is_some(), "gateway listening");
        server.run_forever()
    }

    fn server_conf(&self) -> ServerConf {
        let s = &self.cfg.server;
        ServerConf {
            threads: s.threads,
            // pingora counts both in whole seconds; round up so a short setting is not zero.
            grace_period_seconds: Some(whole_secs(s.grace_period)),
            graceful_shutdown_timeout_seconds: Some(whole_secs(s.graceful_shutdown_timeout)),
            pid_file: std::env::temp_dir()
                .join("photondb-gateway.pid")
                .display()
                .to_string(),
            upgrade_sock: std::env::temp_dir()
                .join("photondb-gateway-upgrade.sock")
                .display()
                .to_string(),
            ..ServerConf::default()
        }
    }

    fn edge_service(&self) -> Service<ConnectionLimit<Edge>> {
        let metrics = self.pipeline.metrics.clone();
        let on_refuse = Box::new(move || metrics.refusal("max_connections"));
        let app = ConnectionLimit::new(
            Edge::new(self.pipeline.clone()),
            self.cfg.limits.max_connections,
            on_refuse,
        );
        let mut service = Service::new("photondb-gateway edge".into(), app);
        let addr = self.cfg.listen.to_string();
        match &self.resolver {
            Some(resolver) => {
                service.add_tls_with_settings(&addr, None, tls_settings(resolver.clone()))
            }
            None => service.add_tcp(&addr),
        }
        service
    }
}

fn whole_secs(d: Duration) -> u64 {
    d.as_millis().div_ceil(1_000) as u64
}

/// pingora binds inside its service threads and only logs a failure there, leaving a process
/// that serves nothing; so each address is tried first and a taken one is reported like a
/// config error.
fn probe_listeners(cfg: &GatewayConfig) -> Result<(), Vec<String>> {
    let addrs = std::iter::once(("listen", cfg.listen))
        .chain(cfg.metrics_listen.map(|a| ("metrics.listen", a)));
    let errors: Vec<String> = addrs
        .filter_map(|(field, addr)| {
            let err = std::net::TcpListener::bind(addr).err()?;
            Some(format!("{field}: cannot listen on {addr}: {}", err.kind()))
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// TLS 1.3 and 1.2 (rustls offers only AEAD suites), ALPN h2 then http/1.1, and the
/// reloadable certificate.
fn tls_settings(resolver: Arc<CertResolver>) -> TlsSettings {
    // `intermediate` only stores the paths, which a resolver makes unused.
    let mut settings = TlsSettings::intermediate("", "").expect("no I/O happens here");
    settings.set_cert_resolver(resolver);
    settings.enable_h2();
    settings
}

/// Re-reads the certificate files and the read-only flag file periodically and on SIGHUP.
struct Reloader {
    pipeline: Arc<Pipeline>,
    resolver: Option<Arc<CertResolver>>,
    every: Duration,
}

#[async_trait]
impl BackgroundService for Reloader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let flag_every = Duration::from_secs(1).min(self.every);
        let mut since_tls = Duration::ZERO;
        // SIGHUP reloads at once (and must not kill the process, its default action).
        let mut hangup = signal(SignalKind::hangup()).ok();
        loop {
            let forced = tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(flag_every) => false,
                Some(()) = recv(&mut hangup) => true,
            };
            self.pipeline.gate.degraded.reload();
            since_tls += flag_every;
            if forced || since_tls >= self.every {
                since_tls = Duration::ZERO;
                self.reload_tls();
            }
        }
    }
}

impl Reloader {
    fn reload_tls(&self) {
        if let Some(r) = &self.resolver {
            r.reload();
        }
    }
}

/// The next signal, or never when no handler could be installed.
async fn recv(s: &mut Option<Signal>) -> Option<()> {
    match s {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

/// `GET /metrics` (and `/health`) on the private listener; nothing else.
struct MetricsApp(Arc<Pipeline>);

#[async_trait]
impl HttpServerApp for MetricsApp {
    async fn process_new_http(
        self: &Arc<Self>,
        mut s: ServerSession,
        _shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        if !matches!(
            tokio::time::timeout(Duration::from_secs(10), s.read_request()).await,
            Ok(Ok(true))
        ) {
            return None;
        }
        let (status, body) = match s.req_header().uri.path() {
            "/metrics" => {
                self.0.health();
                (200, self.0.metrics.render())
            }
            _ => (404, String::new()),
        };
        let mut h = ResponseHeader::build(status, Some(2)).ok()?;
        h.insert_header("content-type", "text/plain; version=0.0.4")
            .ok()?;
        h.set_content_length(body.len()).ok()?;
        s.set_keepalive(None);
        s.write_response_header(Box::new(h)).await.ok()?;
        s.write_response_body(body.into(), true).await.ok()?;
        let _ = s.finish().await;
        None
    }
}
