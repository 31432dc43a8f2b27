//! Assembles and runs the pingora server: the public edge (TLS with a reloadable certificate,
//! ALPN h2 + http/1.1), the private metrics listener, and the background reload task.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use photondb_proto::signing::SecretKey;
use pingora::apps::HttpServerApp;
use pingora::apps::ReusedHttpStream;
use pingora::http::ResponseHeader;
use pingora::listeners::tls::TlsSettings;
use pingora::protocols::http::ServerSession;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server, ShutdownWatch};
use pingora::services::background::{BackgroundService, background_service};
use pingora::services::listening::Service;
use tokio::signal::unix::{Signal, SignalKind, signal};

use std::path::PathBuf;

use crate::audit::Audit;
use crate::breaker::Breaker;
use crate::clock::{Clock, SystemClock};
use crate::config::{
    DevMode, GatewayConfig, LimitStoreKind, Limits, Mode, ReplayStoreKind, Security,
};
use crate::connections::{ConnectionLimits, Connections, PreTls};
use crate::degraded::Degraded;
use crate::detect::Detector;
use crate::edge::{ConnectionLimit, Edge};
use crate::metrics::Metrics;
use crate::ops::{Ops, Reloaded};
use crate::pipeline::auth::Credentials;
use crate::pipeline::body::BodyBudget;
use crate::pipeline::gate::{DEV_MODE_WARNING, Gate, StorageHealth, StorageStatus};
use crate::pipeline::ip_limit::IpLimiter;
use crate::pipeline::policy::FilePolicy;
use crate::pipeline::rate_limit::{OnRedisError, PlanLimits, QuotaStore};
use crate::pipeline::replay::{MemoryStore, RedisStore, Replay, ReplayStore, SledStore};
use crate::pipeline::{Pipeline, Slots};
use crate::policy::model::PolicySet;
use crate::policy::store::{PolicyStore, ReloadOutcome};
use crate::policy::watch::PolicyWatch;
use crate::redis_conn::SharedRedis;
use crate::tls::CertResolver;
use crate::upstream::Upstream;
use crate::usage::Usage;

/// Everything built from the config before any port is bound.
pub struct Gateway {
    cfg: GatewayConfig,
    pipeline: Arc<Pipeline>,
    resolver: Option<Arc<CertResolver>>,
    /// The public listener's connection accounting (counted from `accept`).
    connections: Arc<Connections>,
    housekeeping: Option<Housekeeping>,
    /// The sled database, flushed once the server has stopped (replay ids, quotas).
    state: Option<sled::Db>,
    /// storaged, whose health service a background task polls (none over a test upstream).
    storage: Option<Arc<Upstream>>,
}

/// What the security pipeline is made of in each mode.
struct SecurityParts {
    slots: Slots,
    policy: Arc<PolicyStore>,
    audit: Audit,
    housekeeping: Option<Housekeeping>,
    state: Option<sled::Db>,
}

impl SecurityParts {
    fn dev(dev: DevMode, clock: Arc<dyn Clock>) -> Self {
        Self {
            slots: Slots::dev(dev),
            policy: Arc::new(PolicyStore::from_set(PathBuf::new(), PolicySet::default())),
            audit: Audit::off(clock),
            housekeeping: None,
            state: None,
        }
    }

    fn secure(sec: &Security, clock: Arc<dyn Clock>) -> Result<Self, Vec<String>> {
        let options = sec.audit.options().map_err(|e| vec![e])?;
        let reserved = options.signer.iter().map(SecretKey::public_key).collect();
        let policy = PolicyStore::open(&sec.policy_dir, reserved).map_err(|errs| {
            errs.iter()
                .map(|e| format!("policy: {e}"))
                .collect::<Vec<_>>()
        })?;
        let state = open_state(&sec.state_dir).map_err(|e| vec![e])?;
        let redis = match &sec.redis {
            Some(r) => Some(
                SharedRedis::new(&r.url, r.timeout)
                    .map_err(|_| vec!["redis.url: not a valid Redis URL".to_string()])?,
            ),
            None => None,
        };
        let tree = |name: &str| {
            state
                .open_tree(name)
                .map_err(|e| vec![format!("state_dir: cannot open the {name} tree: {e}")])
        };
        let mut sled_replay = None;
        let replay_store: Arc<dyn ReplayStore> = match (sec.replay, &redis) {
            (ReplayStoreKind::Sled { max_entries }, _) => {
                let store = SledStore::new(tree("replay")?, max_entries, clock.unix_secs())
                    .map_err(|e| vec![format!("state_dir: cannot load the replay store: {e}")])?;
                let store = Arc::new(store);
                sled_replay = Some(store.clone());
                store
            }
            (ReplayStoreKind::Redis, Some(redis)) => Arc::new(RedisStore::new(redis.clone())),
            (ReplayStoreKind::Memory, _) => {
                tracing::warn!("replay.store = memory: a restart forgets every request id");
                Arc::new(MemoryStore::default())
            }
            (ReplayStoreKind::Redis, None) => return Err(vec!["redis.url is required".into()]),
        };
        let quota = QuotaStore::new(tree("quota")?)
            .map_err(|e| vec![format!("state_dir: cannot start the quota store: {e}")])?;
        let limits = Arc::new(match (sec.limits, redis) {
            (LimitStoreKind::Redis { refuse_on_error }, Some(redis)) => {
                let on_error = if refuse_on_error {
                    OnRedisError::Refuse
                } else {
                    OnRedisError::Local
                };
                PlanLimits::shared(quota, redis, on_error)
            }
            _ => PlanLimits::local(quota),
        });
        if options.signer.is_none() {
            tracing::warn!(
                "[audit] signing_key is not set: the audit log has no signed anchors, so a \
                 cut-off tail cannot be detected"
            );
        }
        let log = sec.state_dir.join("audit.log");
        let audit = Audit::open(&log, options, clock.clone())
            .map_err(|e| vec![format!("state_dir: cannot open {}: {e}", log.display())])?;
        Ok(Self {
            slots: Slots {
                auth: Arc::new(Credentials::new(sec.jwks_reread, clock.clone())),
                replay: Arc::new(Replay::new(sec.window, replay_store)),
                limiter: limits.clone(),
                policy: Arc::new(FilePolicy::new()),
            },
            policy: Arc::new(policy),
            audit,
            housekeeping: Some(Housekeeping {
                replay: sled_replay,
                limits,
                policy_every: sec.policy_reload,
            }),
            state: Some(state),
        })
    }
}

/// The gateway's sled database (replay ids, daily quotas), created on first start.
fn open_state(dir: &std::path::Path) -> Result<sled::Db, String> {
    std::fs::create_dir_all(dir)
        .map_err(|e| format!("state_dir: cannot create {}: {e}", dir.display()))?;
    sled::Config::new()
        .path(dir.join("state.sled"))
        .open()
        .map_err(|e| {
            format!(
                "state_dir: cannot open {} (another gateway running?): {e}",
                dir.display()
            )
        })
}

/// Periodic work of the security pipeline: policy reloads, expired replay ids, idle limiter
/// buckets and old quota days.
#[derive(Clone)]
struct Housekeeping {
    replay: Option<Arc<SledStore>>,
    limits: Arc<PlanLimits>,
    policy_every: Duration,
}

impl Housekeeping {
    /// Writes what the replay and quota stores hold only in memory (shutdown).
    fn persist(&self) {
        if let Some(Err(err)) = self.replay.as_ref().map(|r| r.persist()) {
            tracing::error!(error = %err, "could not write the replay store's last ids");
        }
        if let Err(err) = self.limits.persist() {
            tracing::error!(error = %err, "could not write the last quota counts");
        }
    }
}

impl Gateway {
    /// Loads certificates, keys and the policy set, opens the state stores and builds the
    /// pipeline; every failure is a configuration error (exit 64), before any port is bound.
    pub fn build(cfg: GatewayConfig) -> Result<Self, Vec<String>> {
        let upstream = Arc::new(Upstream::new(&cfg.upstream).map_err(|e| vec![e])?);
        let mut gateway = Self::assemble(cfg, upstream.clone())?;
        gateway.storage = Some(upstream);
        Ok(gateway)
    }

    /// As [`Gateway::build`], forwarding to `upstream` instead of storaged: the pipeline
    /// benchmark measures the gateway's own work without a network hop.
    #[cfg(feature = "testing")]
    pub fn with_upstream(
        cfg: GatewayConfig,
        upstream: Arc<dyn crate::upstream::Forward>,
    ) -> Result<Self, Vec<String>> {
        Self::assemble(cfg, upstream)
    }

    /// The pipeline requests go through (benchmarks).
    #[cfg(feature = "testing")]
    pub fn pipeline(&self) -> &Arc<Pipeline> {
        &self.pipeline
    }

    fn assemble(
        cfg: GatewayConfig,
        upstream: Arc<dyn crate::upstream::Forward>,
    ) -> Result<Self, Vec<String>> {
        probe_listeners(&cfg)?;
        private_dir(&cfg.server.runtime_dir).map_err(|e| vec![e])?;
        let resolver = match &cfg.tls {
            Some(files) => Some(Arc::new(
                CertResolver::new(files.clone()).map_err(|e| vec![e])?,
            )),
            None => None,
        };
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let security = match &cfg.mode {
            Mode::Dev(dev) => SecurityParts::dev(*dev, clock.clone()),
            Mode::Secure(sec) => SecurityParts::secure(sec, clock.clone())?,
        };
        let l = &cfg.limits;
        let metrics = Metrics::new();
        let usage_tree = match &security.state {
            Some(state) => Some(
                state
                    .open_tree("usage")
                    .map_err(|e| vec![format!("state_dir: cannot open the usage tree: {e}")])?,
            ),
            None => None,
        };
        let usage = Usage::new(usage_tree, metrics.registry());
        let pipeline = Pipeline {
            slots: security.slots,
            policy: security.policy,
            hosts: cfg.hosts.clone(),
            audit: security.audit,
            ops: Ops::new(cfg.ops_file.clone()),
            detect: Detector::new(
                cfg.alerts.signature_failures_per_min,
                cfg.alerts.quota_bypass_per_min,
                clock.now(),
            ),
            usage,
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
                storage: StorageHealth::default(),
            },
            upstream,
            metrics,
            body_budget: BodyBudget::new(
                l.max_body_bytes_in_flight,
                l.max_body_bytes_in_flight_per_ip,
            ),
            clock,
            dev_mode: matches!(cfg.mode, Mode::Dev(_)),
        };
        let connections = Arc::new(connections(
            l,
            pipeline.clock.clone(),
            pipeline.metrics.clone(),
        ));
        Ok(Self {
            cfg,
            pipeline: Arc::new(pipeline),
            resolver,
            connections,
            housekeeping: security.housekeeping,
            state: security.state,
            storage: None,
        })
    }

    /// Binds the listeners and serves until a signal (SIGTERM: graceful, SIGINT: fast).
    /// Must not be called inside a tokio runtime (pingora makes its own).
    pub fn run_forever(self) -> ! {
        if matches!(self.cfg.mode, Mode::Dev(_)) {
            tracing::warn!("{DEV_MODE_WARNING}");
        } else {
            let version = self.pipeline.policy.current().version.clone();
            tracing::info!(policy_version = %version, hosts = ?self.cfg.hosts, "security pipeline on");
        }
        let mut server = Server::new_with_opt_and_conf(None, self.server_conf());
        server.bootstrap();
        server.add_service(self.edge_service());
        let sweeper = Sweeper(Arc::downgrade(&self.connections));
        server.add_service(background_service("photondb-gateway handshakes", sweeper));
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
            housekeeping: self.housekeeping.clone(),
        };
        server.add_service(background_service("photondb-gateway reload", reload));
        if let Some(upstream) = &self.storage {
            let poll = StoragePoll {
                pipeline: self.pipeline.clone(),
                upstream: upstream.clone(),
            };
            server.add_service(background_service("photondb-gateway storage health", poll));
        }
        tracing::info!(listen = %self.cfg.listen, tls = self.resolver.is_some(), "gateway listening");
        server.run(RunArgs::default());
        self.pipeline.audit.close();
        if let Err(err) = self.pipeline.usage.persist() {
            tracing::error!(error = %err, "could not write the last usage counts");
        }
        if let Some(h) = &self.housekeeping {
            h.persist();
        }
        // A restarted gateway must still refuse a replay and keep counting quotas: what sled
        // has not written yet (it flushes every 500 ms) goes to disk before the process ends.
        if let Some(state) = &self.state
            && let Err(err) = state.flush()
        {
            tracing::error!(error = %err, "could not flush the gateway's state");
        }
        std::process::exit(0)
    }

    fn server_conf(&self) -> ServerConf {
        let s = &self.cfg.server;
        ServerConf {
            threads: s.threads,
            // pingora counts both in whole seconds; round up so a short setting is not zero.
            grace_period_seconds: Some(whole_secs(s.grace_period)),
            graceful_shutdown_timeout_seconds: Some(whole_secs(s.graceful_shutdown_timeout)),
            pid_file: s.runtime_dir.join("gateway.pid").display().to_string(),
            upgrade_sock: s.runtime_dir.join("upgrade.sock").display().to_string(),
            ..ServerConf::default()
        }
    }

    fn edge_service(&self) -> Service<ConnectionLimit<Edge>> {
        let app = ConnectionLimit::new(
            Edge::new(self.pipeline.clone(), self.connections.clone()),
            self.connections.clone(),
        );
        let mut service = Service::new("photondb-gateway edge".into(), app);
        let addr = self.cfg.listen.to_string();
        match &self.resolver {
            Some(resolver) => {
                let pre_tls = Arc::new(PreTls(self.connections.clone()));
                service.endpoints().set_pre_tls_callback(pre_tls);
                service.add_tls_with_settings(&addr, None, tls_settings(resolver.clone()))
            }
            None => service.add_tcp(&addr),
        }
        service
    }
}

fn connections(l: &Limits, clock: Arc<dyn Clock>, metrics: Metrics) -> Connections {
    let limits = ConnectionLimits {
        max_connections: l.max_connections,
        max_per_ip: l.max_connections_per_ip,
        max_pending: l.max_pending_handshakes,
        handshake_timeout: l.handshake_timeout,
        bodies_per_connection: l.max_bodies_per_connection,
    };
    Connections::new(
        limits,
        clock,
        Box::new(move |reason| metrics.refusal(reason)),
    )
}

/// Creates `dir` (mode 0700) or checks that it is ours and closed to everyone else: the
/// upgrade socket in it hands the listening sockets to whoever connects.
fn private_dir(dir: &std::path::Path) -> Result<(), String> {
    use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _};
    let field = "server.runtime_dir";
    let shown = dir.display();
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("{field}: cannot create {shown}: {}", e.kind())),
    }
    let meta = std::fs::symlink_metadata(dir)
        .map_err(|e| format!("{field}: cannot read {shown}: {}", e.kind()))?;
    let ours = std::fs::metadata("/proc/self").map(|m| m.uid()).ok();
    if !meta.is_dir() || Some(meta.uid()) != ours || meta.mode() & 0o077 != 0 {
        return Err(format!(
            "{field}: {shown} must be a directory owned by the gateway's user with mode 0700"
        ));
    }
    Ok(())
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

/// Closes TLS handshakes past their deadline.
struct Sweeper(std::sync::Weak<Connections>);

#[async_trait]
impl BackgroundService for Sweeper {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        tokio::select! {
            _ = shutdown.changed() => {}
            () = Connections::sweep_forever(self.0.clone()) => {}
        }
    }
}

/// How often storaged's health service is asked.
const STORAGE_HEALTH_EVERY: Duration = Duration::from_secs(2);

/// Asks storaged's `grpc.health.v1.Health/Check` (service "") every
/// [`STORAGE_HEALTH_EVERY`] and keeps the answer for the health document's `storage`:
/// serving, not_serving (storaged found damage), or unknown (no answer yet, unreachable).
/// Only the health document reads it; admission does not (the breaker judges the calls).
struct StoragePoll {
    pipeline: Arc<Pipeline>,
    upstream: Arc<Upstream>,
}

#[async_trait]
impl BackgroundService for StoragePoll {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        // Made here, in this service's runtime: the calls' channel stays in the edge's.
        let channel = self.upstream.health_channel();
        let storage = &self.pipeline.gate.storage;
        loop {
            let status = tokio::select! {
                _ = shutdown.changed() => return,
                status = self.upstream.check_health(&channel) => status,
            };
            let before = storage.get();
            storage.set(status);
            if status != before {
                match status {
                    StorageStatus::NotServing => tracing::error!(
                        storage = status.as_str(),
                        "storaged's health service says NOT_SERVING (damaged storage); the \
                         health document reports unavailable"
                    ),
                    _ => tracing::info!(storage = status.as_str(), "storaged's health changed"),
                }
            }
            tokio::select! {
                _ = shutdown.changed() => return,
                () = tokio::time::sleep(STORAGE_HEALTH_EVERY) => {}
            }
        }
    }
}

/// Re-reads the certificate files, the read-only flag file and the policy directory
/// periodically and on SIGHUP, and runs the security pipeline's housekeeping.
struct Reloader {
    pipeline: Arc<Pipeline>,
    resolver: Option<Arc<CertResolver>>,
    every: Duration,
    housekeeping: Option<Housekeeping>,
}

/// How often expired replay ids, idle limiter buckets and old quota days are dropped.
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(60);

#[async_trait]
impl BackgroundService for Reloader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let policy_every = self.housekeeping.as_ref().map(|h| h.policy_every);
        let tick = [Some(Duration::from_secs(1)), Some(self.every), policy_every]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(Duration::from_secs(1));
        let (mut since_tls, mut since_policy, mut since_chores) = Default::default();
        let mut rejected = None;
        // SIGHUP reloads at once (and must not kill the process, its default action).
        let mut hangup = signal(SignalKind::hangup()).ok();
        let mut watch = self.policy_watch();
        loop {
            let (forced, edited) = tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(tick) => (false, false),
                Some(()) = recv(&mut hangup) => (true, false),
                edited = changed(&mut watch) => {
                    if edited.is_none() {
                        tracing::warn!("the policy directory's file watch failed; edits apply at the periodic check or on SIGHUP");
                        watch = None;
                    }
                    (false, edited.is_some())
                }
            };
            self.pipeline.gate.degraded.reload();
            self.reload_ops();
            self.detect();
            if let Err(err) = self.pipeline.usage.persist() {
                tracing::error!(error = %err, "could not write usage counts (kept in memory)");
            }
            self.pipeline.audit.tick();
            if !edited {
                for since in [&mut since_tls, &mut since_policy, &mut since_chores] {
                    *since += tick;
                }
            }
            if forced || since_tls >= self.every {
                since_tls = Duration::ZERO;
                self.reload_tls();
            }
            if forced || edited || policy_every.is_some_and(|every| since_policy >= every) {
                since_policy = Duration::ZERO;
                self.reload_policy(&mut rejected).await;
            }
            if since_chores >= HOUSEKEEPING_EVERY {
                since_chores = Duration::ZERO;
                self.chores().await;
            }
        }
    }
}

impl Reloader {
    /// Ends a minute of attack signals: its counts to the metrics, alerts to the log and audit.
    fn detect(&self) {
        let p = &self.pipeline;
        let Some(minutes) = p.detect.roll(p.clock.now()) else {
            return;
        };
        for m in minutes {
            let signal = m.signal.as_str();
            p.metrics.anomaly(signal, m.count, m.alert);
            if !m.changed {
                continue;
            }
            if m.alert {
                tracing::warn!(signal, count = m.count, "anomaly: alert threshold reached");
            } else {
                tracing::info!(signal, count = m.count, "anomaly alert ended");
            }
            p.audit.record(
                "anomaly",
                [
                    ("signal", signal.into()),
                    ("count", m.count.into()),
                    ("alert", m.alert.into()),
                ],
            );
        }
    }

    /// Applies and audits a change of the operator's switches.
    fn reload_ops(&self) {
        let p = &self.pipeline;
        match p.ops.reload() {
            Reloaded::Unchanged => {}
            Reloaded::Changed(now, changes) => {
                p.gate.degraded.set_ops_read_only(now.read_only);
                tracing::warn!(by = %now.by, reason = %now.reason, ?changes, "operator switches changed");
                p.audit.record(
                    "operator_switch",
                    [
                        ("by", now.by.clone().into()),
                        ("reason", now.reason.clone().into()),
                        ("changes", changes.into()),
                        ("mode", now.mode.as_str().into()),
                        ("read_only", now.read_only.into()),
                        (
                            "suspended",
                            now.suspended.iter().cloned().collect::<Vec<_>>().into(),
                        ),
                    ],
                );
            }
            Reloaded::Rejected(why) => {
                tracing::error!(error = %why, "the ops file does not parse: the switches in force stay");
                p.audit
                    .record("operator_switch_rejected", [("error", why.into())]);
            }
        }
    }

    /// The policy directory's watch; `None` in dev mode or when inotify is unavailable.
    fn policy_watch(&self) -> Option<PolicyWatch> {
        self.housekeeping.as_ref()?;
        let dir = self.pipeline.policy.dir();
        match PolicyWatch::new(dir) {
            Ok(watch) => Some(watch),
            Err(err) => {
                tracing::warn!(dir = %dir.display(), error = %err, "cannot watch the policy directory; edits apply at the periodic check or on SIGHUP");
                None
            }
        }
    }

    fn reload_tls(&self) {
        if let Some(r) = &self.resolver {
            r.reload();
        }
    }

    /// A bad edit keeps the last good set; it is logged, counted and audited once per edit.
    async fn reload_policy(&self, rejected: &mut Option<Vec<String>>) {
        if self.housekeeping.is_none() {
            return;
        }
        let store = self.pipeline.policy.clone();
        let Ok(outcome) = tokio::task::spawn_blocking(move || store.reload()).await else {
            return;
        };
        let p = &self.pipeline;
        match outcome {
            ReloadOutcome::Unchanged => {}
            ReloadOutcome::Swapped { version } => {
                *rejected = None;
                tracing::info!(%version, "policy set reloaded");
                p.metrics.policy_reload("swapped");
                p.audit
                    .record("policy_reloaded", [("version", version.into())]);
            }
            ReloadOutcome::Rejected { errors } => {
                let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
                if rejected.as_ref() == Some(&errors) {
                    return;
                }
                let version = p.policy.current().version.clone();
                tracing::error!(errors = ?errors, %version, "policy edit rejected; the last good set keeps serving");
                p.metrics.policy_reload("rejected");
                p.audit.record(
                    "policy_rejected",
                    [
                        ("errors", errors.clone().into()),
                        ("serving_version", version.into()),
                    ],
                );
                *rejected = Some(errors);
            }
        }
    }

    /// Drops expired replay ids, idle limiter buckets and quota counters of past days.
    async fn chores(&self) {
        let Some(h) = self.housekeeping.clone() else {
            return;
        };
        let now = self.pipeline.clock.unix_secs();
        let _ = tokio::task::spawn_blocking(move || {
            let purged = h.replay.as_ref().map_or(0, |r| r.purge_expired(now));
            let trimmed = h.limits.housekeeping(now);
            tracing::debug!(purged, trimmed, "security housekeeping");
        })
        .await;
    }
}

/// The next settled edit of the policy directory, or never without a watch.
async fn changed(watch: &mut Option<PolicyWatch>) -> Option<()> {
    match watch {
        Some(w) => w.changed().await,
        None => std::future::pending().await,
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
        let (status, body, kind) = match s.req_header().uri.path() {
            "/metrics" => {
                self.0.health();
                (200, self.0.metrics.render(), "text/plain; version=0.0.4")
            }
            "/ops/status" => (200, ops_status(&self.0).to_string(), "application/json"),
            "/usage" => {
                let rows = serde_json::to_string(&self.0.usage.rows()).unwrap_or_default();
                (200, rows, "application/json")
            }
            _ => (404, String::new(), "text/plain"),
        };
        let mut h = ResponseHeader::build(status, Some(2)).ok()?;
        h.insert_header("content-type", kind).ok()?;
        h.set_content_length(body.len()).ok()?;
        s.set_keepalive(None);
        s.write_response_header(Box::new(h)).await.ok()?;
        s.write_response_body(body.into(), true).await.ok()?;
        let _ = s.finish().await;
        None
    }
}

/// `photonctl ops status`: the switches in force, the breaker, read-only and why, storaged's
/// health, and the policy set's version (private listener only, like the metrics).
fn ops_status(p: &Pipeline) -> serde_json::Value {
    let switches = p.ops.snapshot();
    let mut status = p.gate.health(p.dev_mode);
    status["switches"] = serde_json::to_value(&*switches).unwrap_or_default();
    status["ops_file"] = p.ops.file().map(|f| f.display().to_string()).into();
    status["policy_version"] = p.policy.current().version.clone().into();
    status
}

#[cfg(test)]
mod runtime_dir_tests {
    use super::private_dir;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn the_runtime_directory_is_created_private_and_an_open_one_refused() {
        let base = tempfile::tempdir().unwrap();
        let fresh = base.path().join("fresh");
        private_dir(&fresh).unwrap();
        let mode = std::fs::metadata(&fresh).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        // Ours and private: accepted again.
        private_dir(&fresh).unwrap();
        std::fs::set_permissions(&fresh, std::fs::Permissions::from_mode(0o755)).unwrap();
        let err = private_dir(&fresh).unwrap_err();
        assert!(err.contains("mode 0700"), "{err}");
    }
}
