//! Starting storaged from a validated configuration: open the audit log, load the TLS files,
//! open the engine (running recovery), bind, and serve gRPC over mTLS with health,
//! reflection, limits and tracing until told to stop.

use std::net::SocketAddr;
use std::sync::{Arc, Weak};

use anyhow::Context as _;
use photondb_proto::limits::MAX_MESSAGE_BYTES;
use photondb_proto::v1::admin_server::AdminServer;
use photondb_proto::v1::storage_server::StorageServer;
use tokio::sync::{Notify, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use crate::audit::Audit;
use crate::config::Config;
use crate::conn::Acceptor;
use crate::engine::Engine;
use crate::metrics::Metrics;
use crate::refusals::RefusalLog;
use crate::service::{Handler, StorageHealth};
use crate::tls::Reloading;

/// How often an idle HTTP/2 connection is pinged, and how long the ping may go unanswered
/// before the connection is closed: a gateway that vanished gives its slot back in well under
/// a minute.
const HTTP2_KEEPALIVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);
const HTTP2_KEEPALIVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// How a running server ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// Asked to stop (signal or [`Running::stop`]).
    Requested,
    /// The disk failed; restart runs recovery from the WAL.
    StorageFailure,
}

/// A started server.
pub struct Running {
    pub addr: SocketAddr,
    pub metrics_addr: Option<SocketAddr>,
    stop: Arc<Notify>,
    task: tokio::task::JoinHandle<anyhow::Result<Stopped>>,
}

impl Running {
    /// Asks the server to stop; in-flight calls finish first.
    pub fn stop(&self) {
        self.stop.notify_one();
    }

    /// A handle that stops the server when notified (for signal handlers).
    pub fn stop_handle(&self) -> Arc<Notify> {
        self.stop.clone()
    }

    /// Waits until the server has stopped.
    pub async fn wait(self) -> anyhow::Result<Stopped> {
        self.task.await.context("server task panicked")?
    }
}

/// Opens everything and starts serving; returns once the listeners are bound.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    let options = config.audit.options().map_err(anyhow::Error::msg)?;
    if options.signer.is_none() {
        tracing::warn!(
            "[audit] signing_key is not set: the audit log has no signed anchors, so a cut-off \
             tail cannot be detected"
        );
    }
    let audit = Arc::new(
        Audit::open_with(&config.audit_log, options, config.engine.clock.clone())
            .with_context(|| format!("opening audit log {}", config.audit_log.display()))?,
    );
    Audit::spawn_ticker(&audit);
    // Validation parsed the TLS files already; building them before the engine opens means a
    // file that went bad since still stops the start before recovery runs.
    let tls = Arc::new(Reloading::new(config.tls.clone(), audit.clone())?);
    let engine = Arc::new(open_engine(&config, &audit).await?);
    // Time-based checkpoints also happen when no commit arrives to trigger them.
    Engine::spawn_checkpointer(&engine);
    if config.engine.archive.is_none() && engine.is_archived().context("reading the store")? {
        // A configuration that lost its [archive] must not quietly end the archive's continuity.
        anyhow::bail!(
            "{} is archived (it has an archive-claim file) but [archive] is not configured: \
             configure it again, or stop archiving this store on purpose with \
             `photondb-storaged stop-archiving --data-dir {}`",
            config.data_dir.display(),
            config.data_dir.display()
        );
    }
    if config.engine.archive.is_none() && engine.archive_stats().waiting_segments > 0 {
        tracing::warn!(
            waiting = engine.archive_stats().waiting_segments,
            "sealed WAL segments are marked for an archive but [archive] is not configured: \
             they are kept until it is, or until `photondb-storaged stop-archiving`"
        );
    }
    Engine::spawn_archiver(&engine);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr()?;
    let metrics = Arc::new(Metrics::new());
    // Damage of the catalog makes every call fail: found now, storaged starts NOT_SERVING.
    let health = Arc::new(StorageHealth::new(metrics.clone(), audit.clone()));
    probe_catalog(&engine, &health).await;
    let metrics_addr = match config.metrics_listen {
        Some(at) => {
            let l = tokio::net::TcpListener::bind(at)
                .await
                .with_context(|| format!("binding metrics {at}"))?;
            let bound = l.local_addr()?;
            tokio::spawn(crate::metrics::serve(l, metrics.clone(), engine.clone()));
            Some(bound)
        }
        None => None,
    };
    let (tx, rx) = mpsc::channel(64);
    let limits = config.limits.clone();
    let refusals = RefusalLog::new(
        audit.clone(),
        config.engine.clock.clone(),
        limits.refusal_audit_interval,
    );
    RefusalLog::spawn_flusher(&refusals);
    let acceptor = Acceptor::new(tls.clone(), &limits, refusals, metrics.clone());
    tokio::spawn(crate::conn::accept_loop(listener, acceptor, tx));
    tokio::spawn(reload_loop(tls));
    let stop = Arc::new(Notify::new());
    let fatal = Arc::new(Notify::new());
    // A failure no call sees (a checkpoint on the background thread) stops the daemon too.
    tokio::spawn(stop_when_failed(
        Arc::downgrade(&engine),
        fatal.clone(),
        audit.clone(),
    ));
    let handler = Handler::new(
        engine.clone(),
        limits.max_concurrent_requests,
        metrics,
        audit.clone(),
        fatal.clone(),
    )
    .with_health(health)
    .with_backup(config.backup.clone(), limits.request_timeout);
    let task = tokio::spawn(serve(
        config,
        engine.clone(),
        handler,
        ReceiverStream::new(rx),
        stop.clone(),
        fatal,
        audit,
    ));
    tracing::info!(%addr, "storaged serving gRPC over mutual TLS");
    Ok(Running {
        addr,
        metrics_addr,
        stop,
        task,
    })
}

/// Reads the whole catalog (every database, table and pending purge entry) once: a damaged
/// page on the way makes storaged start NOT_SERVING, with one error line naming the page and
/// what lives in it, a `storage_damaged` audit event, and the serving gauge at 0 (DESIGN §8).
/// Any other failure is left to the calls (an I/O error latches the engine, which stops the
/// daemon).
async fn probe_catalog(engine: &Arc<Engine>, health: &Arc<StorageHealth>) {
    let (e, h) = (engine.clone(), health.clone());
    let probed = tokio::task::spawn_blocking(move || match e.probe_catalog() {
        Ok(entries) => Ok(entries),
        Err(err) => Err((h.examine(&e, &err, true), err.to_string())),
    })
    .await;
    match probed {
        Ok(Ok(entries)) => tracing::info!(entries, "catalog readable"),
        Ok(Err((Some(damage), _))) => health.report(damage, None).await,
        Ok(Err((None, error))) => tracing::warn!(%error, "the catalog could not be read at start"),
        Err(error) => tracing::error!(%error, "the catalog probe panicked"),
    }
}

async fn open_engine(config: &Config, audit: &Audit) -> anyhow::Result<Engine> {
    let (dir, opts) = (config.data_dir.clone(), config.engine.clone());
    let opened = tokio::task::spawn_blocking(move || Engine::open(&dir, opts)).await?;
    match opened {
        Ok((engine, report)) => {
            tracing::info!(report = %report, "recovery finished");
            audit.record("recovery", [("report", report.to_string().into())]);
            Ok(engine)
        }
        Err(err) => {
            audit.record("recovery_refused", [("report", err.to_string().into())]);
            Err(anyhow::anyhow!("{err}")).context("opening the data directory")
        }
    }
}

/// How often the daemon looks for an engine stopped by an I/O failure outside any call.
const FAILURE_POLL: std::time::Duration = std::time::Duration::from_millis(200);

/// Returns true once the engine has failed (it never recovers without a reopen), false if it
/// was dropped first. Holds no strong reference, so the store's lock goes with the engine.
async fn until_failed(engine: &Weak<Engine>) -> bool {
    let mut tick = tokio::time::interval(FAILURE_POLL);
    loop {
        match engine.upgrade() {
            Some(e) if e.has_failed() => return true,
            Some(_) => {}
            None => return false,
        }
        tick.tick().await;
    }
}

async fn stop_when_failed(engine: Weak<Engine>, fatal: Arc<Notify>, audit: Arc<Audit>) {
    if !until_failed(&engine).await {
        return;
    }
    tracing::error!("the engine stopped after an I/O failure; stopping the daemon");
    audit.record(
        "storage_failure_stopping",
        [("reason", "engine failed".into())],
    );
    fatal.notify_one();
}

async fn reload_loop(tls: Arc<Reloading>) {
    let mut tick = tokio::time::interval(tls.interval());
    loop {
        tick.tick().await;
        tls.reload_if_changed();
    }
}

async fn serve(
    config: Config,
    engine: Arc<Engine>,
    handler: Handler,
    incoming: ReceiverStream<std::io::Result<crate::conn::Conn>>,
    stop: Arc<Notify>,
    fatal: Arc<Notify>,
    audit: Arc<Audit>,
) -> anyhow::Result<Stopped> {
    let limits = &config.limits;
    let (health, health_service) = tonic_health::server::health_reporter();
    // SERVING, or NOT_SERVING if the start-up probe found the catalog damaged; damage a call
    // finds later turns it off through the same handle.
    handler.health().attach(health).await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(photondb_proto::v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("building reflection")?;
    // Replies may always be as large as the wire contract allows (a full scan page); requests
    // as large as the operator's cap, which validation keeps at or under the same limit.
    let storage = StorageServer::new(handler.clone())
        .max_decoding_message_size(limits.max_message_bytes)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let admin = AdminServer::new(handler)
        .max_decoding_message_size(limits.max_message_bytes)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let outcome = Arc::new(std::sync::Mutex::new(Stopped::Requested));
    let recorded = outcome.clone();
    let shutdown = async move {
        tokio::select! {
            () = stop.notified() => {}
            () = fatal.notified() => {
                if let Ok(mut o) = recorded.lock() { *o = Stopped::StorageFailure; }
            }
        }
    };
    tonic::transport::Server::builder()
        .timeout(limits.request_timeout)
        .max_concurrent_streams(limits.max_concurrent_streams)
        .http2_max_header_list_size(16 * 1024)
        // Applied to incoming streams too (unlike tonic's TCP options; conn.rs sets those).
        .http2_keepalive_interval(Some(HTTP2_KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(HTTP2_KEEPALIVE_TIMEOUT))
        .layer(
            // Client refusals (NOT_FOUND, ...) are normal: the handler logs each call's
            // outcome itself and what needs an operator (corruption, disk failure) at error.
            tower_http::trace::TraceLayer::new_for_grpc()
                .make_span_with(crate::trace::span)
                .on_failure(()),
        )
        .add_service(health_service)
        .add_service(reflection)
        .add_service(storage)
        .add_service(admin)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .context("serving gRPC")?;
    let stopped = outcome
        .lock()
        .map(|o| *o)
        .unwrap_or(Stopped::StorageFailure);
    let stopped = match stopped {
        Stopped::Requested => stop_cleanly(engine, &audit).await,
        failed => failed,
    };
    audit.record("stopped", [("reason", format!("{stopped:?}").into())]);
    audit.close();
    Ok(stopped)
}

/// A requested stop, once no call is left: a checkpoint, which writes every page, moves the
/// redo point to the end of the log and records that end as durable in the control file. At
/// the next open a log ending anywhere before it has lost acknowledged commits, and is refused
/// (DESIGN §6). A failed checkpoint is a storage failure: the next start recovers from the WAL.
async fn stop_cleanly(engine: Arc<Engine>, audit: &Audit) -> Stopped {
    let checkpointed = tokio::task::spawn_blocking(move || engine.checkpoint()).await;
    match checkpointed {
        Ok(Ok(done)) => {
            tracing::info!(
                log_end = format_args!("{:#x}", done.redo_lsn),
                pages = done.pages_written,
                "stopped cleanly: the end of the log is recorded in the control file"
            );
            audit.record(
                "clean_stop",
                [("log_end", format!("{:#x}", done.redo_lsn).into())],
            );
            Stopped::Requested
        }
        Ok(Err(err)) => {
            tracing::error!(error = %err, "the checkpoint at stop failed");
            Stopped::StorageFailure
        }
        Err(err) => {
            tracing::error!(error = %err, "the checkpoint at stop panicked");
            Stopped::StorageFailure
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{EngineOptions, SimFs};
    use std::path::Path;

    /// DESIGN §6: an fsync failure stops the daemon, also when no call sees it.
    #[tokio::test]
    async fn a_checkpoint_failure_outside_any_call_is_noticed() {
        let fs = SimFs::new();
        let opened = Engine::open_with(
            Arc::new(fs.clone()),
            Path::new("/db"),
            EngineOptions::default(),
        );
        let engine = Arc::new(opened.unwrap().0);
        engine.create_database("d").unwrap();
        let watching = Arc::downgrade(&engine);
        let noticed = tokio::spawn(async move { until_failed(&watching).await });
        tokio::time::sleep(FAILURE_POLL * 2).await;
        assert!(
            !noticed.is_finished(),
            "a healthy engine was taken as failed"
        );
        fs.fail_sync_after(0);
        assert!(engine.checkpoint().is_err());
        let failed = tokio::time::timeout(FAILURE_POLL * 10, noticed)
            .await
            .expect("the failure was not noticed")
            .unwrap();
        assert!(failed);

        // Watching holds the engine open no longer than its owner does.
        let opened = Engine::open_with(
            Arc::new(SimFs::new()),
            Path::new("/db"),
            EngineOptions::default(),
        );
        let engine = Arc::new(opened.unwrap().0);
        let watching = Arc::downgrade(&engine);
        let watcher = tokio::spawn(async move { until_failed(&watching).await });
        drop(engine);
        let failed = tokio::time::timeout(FAILURE_POLL * 10, watcher).await;
        assert!(!failed.expect("the watcher outlived the engine").unwrap());
    }
}
