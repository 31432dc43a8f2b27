//! The gRPC services `photondb.v1.Storage` and `photondb.v1.Admin` on the engine. Each handler
//! checks its message against the wire contract (`wire`: INVALID_ARGUMENT before the engine is
//! called), runs one blocking engine call, and maps the result in one place.
//!
//! Two kinds of call: requests (the data path, `Stats`, `Checkpoint`) run under a permit
//! from `max_concurrent_requests`, held by the blocking task until the engine returns; `Verify`
//! is an admin scan that takes no permit: the engine runs one at a time (the task itself holds
//! that slot) and refuses another at once, and the scan stops once nobody waits for it.
//!
//! Health (DESIGN §8): damage that makes the catalog or a table unreadable turns the gRPC
//! health service to NOT_SERVING for good (until a restart probes again), with one log line
//! and one audit event per damaged page naming what lives in it ([`StorageHealth`]).

use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use photondb_proto::v1 as pb;
use photondb_proto::v1::admin_server::Admin;
use photondb_proto::v1::storage_server::{Storage, StorageServer};
use tokio::sync::{Notify, Semaphore};
use tonic::{Request, Response, Status};
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use tracing::Instrument as _;

use crate::audit::Audit;
use crate::config::BackupConfig;
use crate::context::CallContext;
use crate::engine::{self, Clock, Engine};
use crate::metrics::Metrics;
use crate::status::{self, Refusal};
use crate::wire;

/// Shared by both services.
#[derive(Clone)]
pub struct Handler {
    engine: Arc<Engine>,
    permits: Arc<Semaphore>,
    metrics: Arc<Metrics>,
    audit: Arc<Audit>,
    /// Signalled when the disk failed: the daemon stops and recovery runs on restart.
    fatal: Arc<Notify>,
    /// Deadlines and call durations (the engine's clock).
    clock: Arc<dyn Clock>,
    /// Whether storaged serves; damage a call finds is reported through it.
    health: Arc<StorageHealth>,
    /// Where online backups may be written, and to whom they are encrypted.
    backup: Arc<BackupConfig>,
    /// The last backup asked for (running or finished).
    backup_job: Arc<Mutex<Option<BackupJob>>>,
    backup_wait: std::time::Duration,
}

/// How long a `Backup` call waits for the backup before answering that it still runs, at
/// most (and at most half the request timeout, see `with_backup`).
const BACKUP_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// A backup's result, once there is one.
type BackupOutcome = tokio::sync::watch::Receiver<Option<Result<pb::BackupResponse, Status>>>;

struct BackupJob {
    path: std::path::PathBuf,
    outcome: BackupOutcome,
}

/// The backup's name as the client gave it (a name or the last component of a path).
fn to_name(to: &str) -> String {
    std::path::Path::new(to)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

impl Handler {
    pub fn new(
        engine: Arc<Engine>,
        max_concurrent: usize,
        metrics: Arc<Metrics>,
        audit: Arc<Audit>,
        fatal: Arc<Notify>,
    ) -> Self {
        let permits = Arc::new(Semaphore::new(max_concurrent));
        let clock = engine.clock();
        let health = Arc::new(StorageHealth::new(metrics.clone(), audit.clone()));
        Self {
            engine,
            permits,
            metrics,
            audit,
            fatal,
            clock,
            health,
            backup: Arc::new(BackupConfig::default()),
            backup_job: Arc::new(Mutex::new(None)),
            backup_wait: BACKUP_WAIT,
        }
    }

    /// The handler taking online backups under `backup.dir` (without one, `Backup` is refused);
    /// a call answers within half of `request_timeout` (and 10 s), so the server's timeout never
    /// cuts it.
    pub fn with_backup(
        mut self,
        backup: BackupConfig,
        request_timeout: std::time::Duration,
    ) -> Self {
        self.backup = Arc::new(backup);
        self.backup_wait = BACKUP_WAIT.min(request_timeout / 2);
        self
    }

    async fn backup_call(&self, ctx: &CallContext, to: &str) -> Result<pb::BackupResponse, Status> {
        let path = self.backup_target(to)?;
        let mut outcome = {
            let mut job = self.backup_job.lock().unwrap_or_else(|e| e.into_inner());
            let running = job.as_ref().is_some_and(|j| j.outcome.borrow().is_none());
            let same = job.as_ref().is_some_and(|j| j.path == path);
            // A finished backup is reported again only while it is still there; a failed one,
            // or one moved away since, is taken anew.
            let reusable = same
                && job.as_ref().is_some_and(|j| match &*j.outcome.borrow() {
                    None => true,
                    Some(Ok(_)) => path.join(engine::MANIFEST_FILE).is_file(),
                    Some(Err(_)) => false,
                });
            match &*job {
                Some(j) if reusable => j.outcome.clone(),
                Some(_) if running => {
                    return Err(Status::failed_precondition(
                        "another backup is running; ask again for that one, or wait",
                    ));
                }
                _ => {
                    let outcome = self.start_backup(ctx, path.clone());
                    *job = Some(BackupJob {
                        path,
                        outcome: outcome.clone(),
                    });
                    outcome
                }
            }
        };
        let closed = matches!(
            tokio::time::timeout(self.backup_wait, outcome.wait_for(Option::is_some)).await,
            Ok(Err(_))
        );
        let answer = outcome.borrow().clone();
        match answer {
            Some(result) => result,
            // The task ended without an answer (it panicked): the job is over.
            None if closed => {
                *self.backup_job.lock().unwrap_or_else(|e| e.into_inner()) = None;
                Err(Status::internal(
                    "the backup stopped without an answer; see storaged's log",
                ))
            }
            None => Ok(pb::BackupResponse {
                name: to_name(to),
                done: false,
                ..pb::BackupResponse::default()
            }),
        }
    }

    /// Runs a backup into `path` on the blocking pool; its outcome (audited) arrives on the
    /// returned channel whether or not anyone still waits for it.
    fn start_backup(&self, ctx: &CallContext, path: std::path::PathBuf) -> BackupOutcome {
        let (tx, rx) = tokio::sync::watch::channel(None);
        let (engine, audit, clock) = (self.engine.clone(), self.audit.clone(), self.clock.clone());
        let recipients = self.backup.recipients.clone();
        let (request_id, ctx) = (ctx.request_id.clone(), ctx.clone());
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || {
            let _call = span.enter();
            let started = clock.now();
            let result = match engine.backup(&path, recipients.as_ref()) {
                Ok(m) => {
                    audit.record(
                        "backup",
                        [
                            ("name", name.clone().into()),
                            ("start_lsn", m.start_lsn.into()),
                            ("end_lsn", m.end_lsn.into()),
                        ],
                    );
                    Ok(pb::BackupResponse {
                        name,
                        done: true,
                        start_lsn: m.start_lsn,
                        end_lsn: m.end_lsn,
                        files: m.files.len() as u64,
                        bytes: m.files.iter().map(|f| f.size).sum(),
                        encrypted: m.encrypted,
                        duration_micros: u64::try_from(clock.since(started).as_micros())
                            .unwrap_or(u64::MAX),
                    })
                }
                Err(err) => {
                    tracing::error!(%request_id, to = %path.display(), error = %err, "online backup failed");
                    audit.record("backup_failed", [("name", name.into())]);
                    Err(match err {
                        engine::BackupError::TargetExists(_) => {
                            Status::already_exists("that backup directory already exists")
                        }
                        engine::BackupError::AlreadyRunning => {
                            Status::failed_precondition("another backup is running")
                        }
                        engine::BackupError::Engine(e) => status::from_engine(&e, &ctx),
                        _ => Status::unavailable(
                            "the backup could not be written; see storaged's log",
                        ),
                    })
                }
            };
            let _ = tx.send(Some(result));
        });
        rx
    }

    /// The directory a `Backup` call writes: a new one directly under `[backup] dir`.
    fn backup_target(&self, to: &str) -> Result<std::path::PathBuf, Status> {
        let Some(dir) = &self.backup.dir else {
            return Err(Status::failed_precondition(
                "online backups are off: set [backup] dir in storaged's configuration",
            ));
        };
        let path = std::path::Path::new(to);
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let valid_name = !name.is_empty()
            && name.len() <= 128
            && !name.starts_with('.')
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !valid_name {
            return Err(Status::invalid_argument(
                "backup name: 1-128 of [A-Za-z0-9._-], not starting with a dot",
            ));
        }
        let canonical = |p: &std::path::Path| std::fs::canonicalize(p).ok();
        let root = canonical(dir).ok_or_else(|| {
            tracing::error!(dir = %dir.display(), "the [backup] dir does not exist");
            Status::failed_precondition("the backup directory does not exist on storaged's host")
        })?;
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
        if let Some(parent) = parent
            && canonical(parent) != Some(root.clone())
        {
            return Err(Status::permission_denied(
                "backups are written only directly under storaged's [backup] dir",
            ));
        }
        let target = root.join(name);
        // A symbolic link planted under the backup dir would lead the backup elsewhere.
        if std::fs::symlink_metadata(&target).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(Status::permission_denied(
                "backups are written only directly under storaged's [backup] dir",
            ));
        }
        Ok(target)
    }

    /// The handler reporting damage through `health` (the daemon's one, which the start-up
    /// probe used and `serve` attaches the gRPC health service to) instead of its own.
    pub fn with_health(mut self, health: Arc<StorageHealth>) -> Self {
        self.health = health;
        self
    }

    /// Whether storaged serves, and where damage is reported.
    pub fn health(&self) -> &Arc<StorageHealth> {
        &self.health
    }

    fn context(
        &self,
        method: &'static str,
        metadata: &tonic::metadata::MetadataMap,
    ) -> CallContext {
        CallContext::from_metadata(method, metadata, &*self.clock)
    }

    /// Runs `work` on the blocking pool, unless overloaded or past the deadline.
    async fn run<T, F>(&self, ctx: CallContext, work: F) -> Result<T, Status>
    where
        T: Send + 'static,
        F: FnOnce(&Engine) -> Result<T, engine::Error> + Send + 'static,
    {
        let span = call_span(&ctx);
        let result = self.run_inner(&ctx, work).instrument(span).await;
        self.observe(&ctx, code_of(&result));
        result
    }

    /// Counts, logs and audits a finished call (the gateway's request id and principal, the
    /// method and its code: never a key or a document).
    fn observe(&self, ctx: &CallContext, code: tonic::Code) {
        let elapsed = self.clock.since(ctx.started);
        self.metrics.observe(ctx.method, code, elapsed);
        self.audit.record(
            "call",
            [
                ("request_id", ctx.request_id.clone().into()),
                ("principal", ctx.principal.clone().into()),
                ("action", ctx.method.into()),
                ("code", format!("{code:?}").into()),
            ],
        );
        tracing::info!(
            method = ctx.method,
            request_id = %ctx.request_id,
            principal = %ctx.principal,
            code = ?code,
            micros = elapsed.as_micros() as u64,
            "call"
        );
    }

    async fn run_inner<T, F>(&self, ctx: &CallContext, work: F) -> Result<T, Status>
    where
        T: Send + 'static,
        F: FnOnce(&Engine) -> Result<T, engine::Error> + Send + 'static,
    {
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            return Err(status::from_refusal(Refusal::Overloaded));
        };
        if ctx.expired(&*self.clock) {
            return Err(status::from_refusal(Refusal::DeadlineExceeded));
        }
        let (engine, health) = (self.engine.clone(), self.health.clone());
        let request_id = ctx.request_id.clone();
        let runtime = tokio::runtime::Handle::current();
        // The task keeps the permit: a call dropped on timeout frees it only once the engine
        // call it started has returned, so abandoned work still counts against the limit.
        // The call's span goes with the work onto the blocking pool, so the engine's own log
        // lines carry the request id too.
        let span = tracing::Span::current();
        let (outcome, reporting) = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let _call = span.enter();
            let outcome = work(&engine);
            tracing::debug!(ok = outcome.is_ok(), "engine call returned");
            // Damage seen for the first time is described here (the engine reads interior
            // pages and the catalog) and reported by a task of its own: it is logged, audited
            // and the health service told even if this call is abandoned meanwhile.
            let damage = match &outcome {
                Err(err) => health.examine(&engine, err, false),
                Ok(_) => None,
            };
            let reporting = damage.map(|damage| {
                runtime.spawn(async move { health.report(damage, Some(request_id)).await })
            });
            (outcome, reporting)
        })
        .await
        .map_err(|_| Status::internal("internal error"))?;
        if let Some(reporting) = reporting {
            // DATA_LOSS is answered once the health service says NOT_SERVING.
            let _ = reporting.await;
        }
        outcome.map_err(|err| self.refuse(&err, ctx))
    }

    /// Runs a verify on the blocking pool, outside the request permits. The engine's
    /// one-verify slot is taken and released inside the task, so a call dropped by a client
    /// timeout cannot free it while the scan still runs; dropping the call (or passing its
    /// deadline) makes the scan stop at its next step.
    async fn run_verify(&self, ctx: CallContext) -> Result<engine::VerifyReport, Status> {
        let span = call_span(&ctx);
        let result = self.run_verify_inner(&ctx).instrument(span).await;
        self.observe(&ctx, code_of(&result));
        result
    }

    async fn run_verify_inner(&self, ctx: &CallContext) -> Result<engine::VerifyReport, Status> {
        if ctx.expired(&*self.clock) {
            return Err(status::from_refusal(Refusal::DeadlineExceeded));
        }
        let abandoned = Arc::new(AtomicBool::new(false));
        let _abandon_on_drop = AbandonOnDrop(abandoned.clone());
        let (engine, clock, deadline) = (self.engine.clone(), self.clock.clone(), ctx.deadline);
        let (health, request_id) = (self.health.clone(), ctx.request_id.clone());
        let runtime = tokio::runtime::Handle::current();
        let span = tracing::Span::current();
        let (outcome, reporting) = tokio::task::spawn_blocking(move || {
            let _call = span.enter();
            let past_deadline = || deadline.is_some_and(|d| clock.now() >= d);
            let outcome =
                engine.verify_until(&|| abandoned.load(Ordering::Relaxed) || past_deadline());
            // A bad page the verify found is damage a read would meet: health is told as if a
            // read had (a leaked page is wasted space, not unreadable data).
            let damage: Vec<Damage> = match &outcome {
                Ok(report) => report
                    .bad_pages
                    .iter()
                    .filter(|b| b.reason != engine::LEAKED_PAGE)
                    .filter_map(|b| {
                        let err = engine::StorageError::corrupted(Some(b.page), b.reason.clone());
                        health.examine(&engine, &err.into(), false)
                    })
                    .collect(),
                Err(_) => Vec::new(),
            };
            let reporting = (!damage.is_empty()).then(|| {
                runtime.spawn(async move {
                    for d in damage {
                        health.report(d, Some(request_id.clone())).await;
                    }
                })
            });
            (outcome, reporting)
        })
        .await
        .map_err(|_| Status::internal("internal error"))?;
        if let Some(reporting) = reporting {
            let _ = reporting.await;
        }
        outcome.map_err(|err| self.refuse_verify(&err, ctx))
    }

    /// A request that breaks the wire contract, refused before the engine sees it: counted
    /// and logged like every other call.
    fn invalid(&self, ctx: &CallContext, invalid: wire::Invalid) -> Status {
        let status = Status::from(invalid);
        self.observe(ctx, status.code());
        status
    }

    fn refuse_verify(&self, err: &engine::VerifyError, ctx: &CallContext) -> Status {
        use engine::VerifyError as V;
        match err {
            V::AlreadyRunning => status::from_refusal(Refusal::VerifyRunning),
            V::CheckpointDue => status::from_refusal(Refusal::VerifyGaveWay),
            V::Stopped => status::from_refusal(Refusal::VerifyStopped),
            V::Engine(e) => self.refuse(e, ctx),
        }
    }

    fn refuse(&self, err: &engine::Error, ctx: &CallContext) -> Status {
        if let engine::Error::Storage(engine::StorageError::Corrupted { page, .. }) = err {
            self.audit.record(
                "corruption",
                [
                    ("request_id", ctx.request_id.clone().into()),
                    ("page", (*page).into()),
                ],
            );
        }
        if status::is_fatal(err) {
            self.audit.record(
                "storage_failure_stopping",
                [("request_id", ctx.request_id.clone().into())],
            );
            self.fatal.notify_one();
        }
        status::from_engine(err, ctx)
    }
}

/// Pages whose damage is logged and audited one by one; past this many, more damage keeps
/// storaged NOT_SERVING (it already is) without a line each.
const MAX_REPORTED_PAGES: usize = 1024;

/// Damage a read found, described for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// The damaged page, if the engine named one (a control file or WAL problem names none).
    pub page: Option<u64>,
    /// Found reading the catalog (the start-up probe), or the page holds catalog entries.
    pub catalog: bool,
    /// What lives in the page (`Engine::describe_page`).
    pub owner: Option<engine::PageOwner>,
    /// The engine's reason (e.g. "page checksum mismatch").
    pub detail: String,
}

/// The log line: `storage damaged: catalog page 1 (the root: everything) is unreadable: page
/// checksum mismatch`, or `storage damaged (no page named): <detail>`.
impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(page) = self.page else {
            return write!(f, "storage damaged (no page named): {}", self.detail);
        };
        let kind = if self.catalog { "catalog page" } else { "page" };
        write!(f, "storage damaged: {kind} {page}")?;
        if let Some(owner) = &self.owner {
            write!(f, " ({owner})")?;
        }
        write!(f, " is unreadable: {}", self.detail)
    }
}

/// Whether storaged serves. It starts serving and stops for good once damage makes the
/// catalog or a table unreadable (damage does not heal; a restart probes again): the gRPC
/// health service says NOT_SERVING for "" and `photondb.v1.Storage`, the
/// `photondb_storaged_serving` gauge drops to 0, and each damaged page is logged (at error)
/// and audited (`storage_damaged`) once, with what lives in it, and counted in
/// `photondb_storaged_damaged_pages_total`. Calls keep their DATA_LOSS answers.
pub struct StorageHealth {
    serving: AtomicBool,
    reported: Mutex<Reported>,
    /// The gRPC health service's handle, once `serve` has made it.
    reporter: tokio::sync::Mutex<Option<HealthReporter>>,
    metrics: Arc<Metrics>,
    audit: Arc<Audit>,
}

/// Damage already reported: pages (at most `MAX_REPORTED_PAGES`), and whether any without one.
#[derive(Default)]
struct Reported {
    pages: HashSet<u64>,
    unpaged: bool,
}

impl StorageHealth {
    /// Serving (the gauge starts at 1 with the metrics; this leaves it alone).
    pub fn new(metrics: Arc<Metrics>, audit: Arc<Audit>) -> Self {
        Self {
            serving: AtomicBool::new(true),
            reported: Mutex::default(),
            reporter: tokio::sync::Mutex::new(None),
            metrics,
            audit,
        }
    }

    pub fn is_serving(&self) -> bool {
        self.serving.load(Ordering::SeqCst)
    }

    /// Connects the gRPC health service and sets it to what is known now (NOT_SERVING if the
    /// start-up probe found damage).
    pub async fn attach(&self, reporter: HealthReporter) {
        let mut slot = self.reporter.lock().await;
        set_status(&reporter, self.is_serving()).await;
        *slot = Some(reporter);
    }

    /// The damage `err` shows (corruption), described, unless it was reported before.
    /// Blocking: describing reads interior pages and the catalog. `reading_catalog` says the
    /// failed read was of the catalog.
    pub fn examine(
        &self,
        store: &Engine,
        err: &engine::Error,
        reading_catalog: bool,
    ) -> Option<Damage> {
        let engine::Error::Storage(engine::StorageError::Corrupted { page, detail }) = err else {
            return None;
        };
        let page = *page;
        if !self.first_report(page) {
            return None;
        }
        let owner = page.map(|n| store.describe_page(n));
        let holds_catalog = owner.as_ref().is_some_and(engine::PageOwner::holds_catalog);
        Some(Damage {
            page,
            catalog: reading_catalog || holds_catalog,
            owner,
            detail: detail.clone(),
        })
    }

    fn first_report(&self, page: Option<u64>) -> bool {
        let mut reported = self.reported.lock().unwrap_or_else(|e| e.into_inner());
        match page {
            Some(_) if reported.pages.len() >= MAX_REPORTED_PAGES => false,
            Some(n) => reported.pages.insert(n),
            None => !std::mem::replace(&mut reported.unpaged, true),
        }
    }

    /// Logs and audits `damage` (one line, one event), counts the page, and stops serving.
    pub async fn report(&self, damage: Damage, request_id: Option<String>) {
        match &request_id {
            Some(id) => tracing::error!(page = ?damage.page, request_id = %id, "{damage}"),
            None => tracing::error!(page = ?damage.page, "{damage}"),
        }
        self.audit.record(
            "storage_damaged",
            [
                ("page", damage.page.into()),
                ("catalog", damage.catalog.into()),
                (
                    "holds",
                    damage.owner.as_ref().map(ToString::to_string).into(),
                ),
                ("detail", damage.detail.clone().into()),
                ("request_id", request_id.into()),
            ],
        );
        if damage.page.is_some() {
            self.metrics.damaged_page();
        }
        self.serving.store(false, Ordering::SeqCst);
        self.metrics.set_serving(false);
        let slot = self.reporter.lock().await;
        if let Some(reporter) = slot.as_ref() {
            set_status(reporter, false).await;
        }
    }
}

/// SERVING (the overall service "" already is, from the start) or NOT_SERVING for both ""
/// and `photondb.v1.Storage`.
async fn set_status(reporter: &HealthReporter, serving: bool) {
    if serving {
        reporter.set_serving::<StorageServer<Handler>>().await;
    } else {
        reporter
            .set_service_status("", ServingStatus::NotServing)
            .await;
        reporter.set_not_serving::<StorageServer<Handler>>().await;
    }
}

fn call_span(ctx: &CallContext) -> tracing::Span {
    tracing::info_span!("call", method = ctx.method, request_id = %ctx.request_id, principal = %ctx.principal)
}

fn code_of<T>(result: &Result<T, Status>) -> tonic::Code {
    result
        .as_ref()
        .map_or_else(|s| s.code(), |_| tonic::Code::Ok)
}

/// Set when dropped, that is when the call's future is gone (answered, or abandoned by a
/// client timeout or reset): a scan still running for it may stop.
struct AbandonOnDrop(Arc<AtomicBool>);

impl Drop for AbandonOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

fn condition(p: Option<pb::Precondition>) -> engine::Condition {
    use pb::precondition::Condition as C;
    match p.and_then(|p| p.condition) {
        Some(C::IfVersion(v)) => engine::Condition::IfVersion(v),
        Some(C::IfAbsent(true)) => engine::Condition::IfAbsent,
        Some(C::IfAbsent(false)) | None => engine::Condition::Any,
    }
}

fn document(d: engine::Document) -> pb::Document {
    pb::Document {
        key: d.key,
        value: d.value,
        version: d.version,
    }
}

fn batch_op(op: pb::BatchOperation) -> Result<engine::BatchOp, wire::Invalid> {
    use pb::batch_operation::Op;
    match op.op {
        Some(Op::Put(p)) => Ok(engine::BatchOp::Put {
            key: p.key,
            value: p.value,
            condition: condition(p.precondition),
        }),
        Some(Op::Delete(d)) => Ok(engine::BatchOp::Delete {
            key: d.key,
            condition: condition(d.precondition),
        }),
        None => Err(wire::Invalid::EmptyOperation),
    }
}

#[tonic::async_trait]
impl Storage for Handler {
    async fn list_databases(
        &self,
        req: Request<pb::ListDatabasesRequest>,
    ) -> Result<Response<pb::ListDatabasesResponse>, Status> {
        let ctx = self.context("ListDatabases", req.metadata());
        let r = req.into_inner();
        let list = wire::list(&r.start_after, r.limit).map_err(|e| self.invalid(&ctx, e))?;
        let page = self.run(ctx, move |e| e.list_databases(&list)).await?;
        Ok(Response::new(pb::ListDatabasesResponse {
            databases: page.names,
            next_start_after: page.next_start_after.unwrap_or_default(),
        }))
    }

    async fn create_database(
        &self,
        req: Request<pb::CreateDatabaseRequest>,
    ) -> Result<Response<pb::CreateDatabaseResponse>, Status> {
        let ctx = self.context("CreateDatabase", req.metadata());
        let db = wire::database(&req.into_inner().db).map_err(|e| self.invalid(&ctx, e))?;
        self.run(ctx, move |e| e.create_database(db.as_str()))
            .await?;
        Ok(Response::new(pb::CreateDatabaseResponse {}))
    }

    async fn drop_database(
        &self,
        req: Request<pb::DropDatabaseRequest>,
    ) -> Result<Response<pb::DropDatabaseResponse>, Status> {
        let ctx = self.context("DropDatabase", req.metadata());
        let db = wire::database(&req.into_inner().db).map_err(|e| self.invalid(&ctx, e))?;
        self.run(ctx, move |e| e.drop_database(db.as_str())).await?;
        Ok(Response::new(pb::DropDatabaseResponse {}))
    }

    async fn list_tables(
        &self,
        req: Request<pb::ListTablesRequest>,
    ) -> Result<Response<pb::ListTablesResponse>, Status> {
        let ctx = self.context("ListTables", req.metadata());
        let r = req.into_inner();
        let db = wire::database(&r.db).map_err(|e| self.invalid(&ctx, e))?;
        let list = wire::list(&r.start_after, r.limit).map_err(|e| self.invalid(&ctx, e))?;
        let page = self
            .run(ctx, move |e| e.list_tables(db.as_str(), &list))
            .await?;
        Ok(Response::new(pb::ListTablesResponse {
            tables: page.names,
            next_start_after: page.next_start_after.unwrap_or_default(),
        }))
    }

    async fn create_table(
        &self,
        req: Request<pb::CreateTableRequest>,
    ) -> Result<Response<pb::CreateTableResponse>, Status> {
        let ctx = self.context("CreateTable", req.metadata());
        let t = wire::table(req.into_inner().table).map_err(|e| self.invalid(&ctx, e))?;
        self.run(ctx, move |e| {
            e.create_table(t.db.as_str(), t.table.as_str())
        })
        .await?;
        Ok(Response::new(pb::CreateTableResponse {}))
    }

    async fn drop_table(
        &self,
        req: Request<pb::DropTableRequest>,
    ) -> Result<Response<pb::DropTableResponse>, Status> {
        let ctx = self.context("DropTable", req.metadata());
        let t = wire::table(req.into_inner().table).map_err(|e| self.invalid(&ctx, e))?;
        self.run(ctx, move |e| e.drop_table(t.db.as_str(), t.table.as_str()))
            .await?;
        Ok(Response::new(pb::DropTableResponse {}))
    }

    async fn get(&self, req: Request<pb::GetRequest>) -> Result<Response<pb::GetResponse>, Status> {
        let ctx = self.context("Get", req.metadata());
        let r = req.into_inner();
        let t = wire::table(r.table).map_err(|e| self.invalid(&ctx, e))?;
        let key = wire::key(&r.key).map_err(|e| self.invalid(&ctx, e))?;
        let missing = engine::Error::NotFound(engine::What::Document);
        let doc = self
            .run(ctx, move |e| {
                e.get(t.db.as_str(), t.table.as_str(), key.as_str())?
                    .ok_or(missing)
            })
            .await?;
        Ok(Response::new(pb::GetResponse {
            document: Some(document(doc)),
        }))
    }

    async fn put(&self, req: Request<pb::PutRequest>) -> Result<Response<pb::PutResponse>, Status> {
        let ctx = self.context("Put", req.metadata());
        let r = req.into_inner();
        let t = wire::table(r.table).map_err(|e| self.invalid(&ctx, e))?;
        let key = wire::key(&r.key).map_err(|e| self.invalid(&ctx, e))?;
        wire::document(&r.value).map_err(|e| self.invalid(&ctx, e))?;
        let cond = condition(r.precondition);
        let version = self
            .run(ctx, move |e| {
                e.put(
                    t.db.as_str(),
                    t.table.as_str(),
                    key.as_str(),
                    &r.value,
                    cond,
                )
            })
            .await?;
        Ok(Response::new(pb::PutResponse { version }))
    }

    async fn delete(
        &self,
        req: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let ctx = self.context("Delete", req.metadata());
        let r = req.into_inner();
        let t = wire::table(r.table).map_err(|e| self.invalid(&ctx, e))?;
        let key = wire::key(&r.key).map_err(|e| self.invalid(&ctx, e))?;
        let cond = condition(r.precondition);
        let version = self
            .run(ctx, move |e| {
                e.delete(t.db.as_str(), t.table.as_str(), key.as_str(), cond)
            })
            .await?;
        Ok(Response::new(pb::DeleteResponse { version }))
    }

    async fn scan(
        &self,
        req: Request<pb::ScanRequest>,
    ) -> Result<Response<pb::ScanResponse>, Status> {
        let ctx = self.context("Scan", req.metadata());
        let r = req.into_inner();
        let t = wire::table(r.table).map_err(|e| self.invalid(&ctx, e))?;
        wire::scan_bounds(&r.prefix, &r.start_after).map_err(|e| self.invalid(&ctx, e))?;
        let scan = engine::Scan {
            prefix: r.prefix,
            start_after: Some(r.start_after).filter(|s| !s.is_empty()),
            limit: wire::scan_limit(r.limit),
        };
        let page = self
            .run(ctx, move |e| e.scan(t.db.as_str(), t.table.as_str(), &scan))
            .await?;
        let page = wire::scan_page(page);
        Ok(Response::new(pb::ScanResponse {
            documents: page.docs.into_iter().map(document).collect(),
            next_start_after: page.next_start_after.unwrap_or_default(),
        }))
    }

    async fn batch(
        &self,
        req: Request<pb::BatchRequest>,
    ) -> Result<Response<pb::BatchResponse>, Status> {
        let ctx = self.context("Batch", req.metadata());
        let r = req.into_inner();
        let t = wire::table(r.table).map_err(|e| self.invalid(&ctx, e))?;
        let ops = r
            .operations
            .into_iter()
            .map(batch_op)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.invalid(&ctx, e))?;
        wire::batch(&ops).map_err(|e| self.invalid(&ctx, e))?;
        let version = self
            .run(ctx, move |e| e.batch(t.db.as_str(), t.table.as_str(), ops))
            .await?;
        Ok(Response::new(pb::BatchResponse { version }))
    }
}

#[tonic::async_trait]
impl Admin for Handler {
    async fn verify(
        &self,
        req: Request<pb::VerifyRequest>,
    ) -> Result<Response<pb::VerifyResponse>, Status> {
        let ctx = self.context("Verify", req.metadata());
        let report = self.run_verify(ctx).await?;
        if !report.is_clean() {
            self.audit.record(
                "verify_found_bad_pages",
                [("count", report.bad_pages.len().into())],
            );
        }
        Ok(Response::new(pb::VerifyResponse {
            clean: report.is_clean(),
            pages_checked: report.pages_checked,
            bad_pages: report
                .bad_pages
                .into_iter()
                .map(|b| pb::BadPage {
                    page: b.page,
                    reason: b.reason,
                })
                .collect(),
        }))
    }

    async fn stats(
        &self,
        req: Request<pb::StatsRequest>,
    ) -> Result<Response<pb::StatsResponse>, Status> {
        let ctx = self.context("Stats", req.metadata());
        let s = self.run(ctx, |e| Ok(e.stats())).await?;
        Ok(Response::new(pb::StatsResponse {
            commits: s.commits,
            fsyncs: s.fsyncs,
            wal_bytes: s.wal_bytes,
            durable_lsn: s.durable_lsn,
            checkpoints: s.checkpoints,
            buffer_pool_hits: s.pool_hits,
            buffer_pool_misses: s.pool_misses,
            corrupt_pages_seen: s.corrupt_pages_seen,
        }))
    }

    /// Starts a backup, or reports on the one already asked for under this name: the call
    /// waits up to `backup_wait` and answers `done: false` while it still runs, so no call
    /// outlives the request timeout however long the copy takes. One runs at a time, outside
    /// the request permits.
    async fn backup(
        &self,
        req: Request<pb::BackupRequest>,
    ) -> Result<Response<pb::BackupResponse>, Status> {
        let ctx = self.context("Backup", req.metadata());
        let result = self.backup_call(&ctx, &req.get_ref().to).await;
        self.observe(&ctx, code_of(&result));
        result.map(Response::new)
    }

    async fn checkpoint(
        &self,
        req: Request<pb::CheckpointRequest>,
    ) -> Result<Response<pb::CheckpointResponse>, Status> {
        let ctx = self.context("Checkpoint", req.metadata());
        let c = self.run(ctx, |e| e.checkpoint()).await?;
        Ok(Response::new(pb::CheckpointResponse {
            redo_lsn: c.redo_lsn,
            pages_written: c.pages_written as u64,
            duration_micros: u64::try_from(c.duration.as_micros()).unwrap_or(u64::MAX),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{EngineOptions, SimFs};
    use std::path::Path;

    fn handler() -> (Handler, tempfile::TempDir) {
        let io = Arc::new(SimFs::new());
        let (engine, _) =
            Engine::open_with(io, Path::new("/db"), EngineOptions::default()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let audit = Arc::new(Audit::open(&dir.path().join("audit.log")).unwrap());
        let metrics = Arc::new(Metrics::new());
        let handler = Handler::new(Arc::new(engine), 8, metrics, audit, Arc::new(Notify::new()));
        (handler, dir)
    }

    /// An online backup goes only into a new directory directly under `[backup] dir`: other
    /// paths (`..`, absolute paths elsewhere, hidden names, a symbolic link's target) are
    /// refused, and without a `[backup] dir` the call is.
    #[test]
    fn a_backup_is_written_only_directly_under_the_backup_dir() {
        let (handler, dir) = handler();
        let refused = handler.backup_target("nightly").unwrap_err();
        assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
        let root = dir.path().join("backups");
        std::fs::create_dir_all(root.join("inner")).unwrap();
        std::os::unix::fs::symlink("/tmp", root.join("link")).unwrap();
        let handler = handler.with_backup(
            BackupConfig {
                dir: Some(root.clone()),
                recipients: None,
            },
            std::time::Duration::from_secs(30),
        );
        let real = std::fs::canonicalize(&root).unwrap();
        assert_eq!(
            handler.backup_target("nightly-1").unwrap(),
            real.join("nightly-1")
        );
        let full = root.join("n2").display().to_string();
        assert_eq!(handler.backup_target(&full).unwrap(), real.join("n2"));
        for bad in [
            "..",
            ".hidden",
            "a/../../etc",
            "/etc/photondb",
            "inner/x",
            "link/x",
            "link",
            "",
            "x y",
            "a\0b",
        ] {
            let code = handler.backup_target(bad).map(|p| p.display().to_string());
            assert!(
                matches!(code, Err(ref s) if matches!(s.code(), tonic::Code::InvalidArgument | tonic::Code::PermissionDenied)),
                "{bad:?} was accepted: {code:?}"
            );
        }
    }

    /// A Get that reaches a damaged leaf of `app/t` is DATA_LOSS, and after it storaged no
    /// longer serves; the page is logged and audited once (with its table), however many calls
    /// hit it, and counted.
    #[tokio::test]
    async fn a_damaged_table_page_stops_serving_and_is_reported_once() {
        let fs = SimFs::new();
        let open = || {
            let opened = Engine::open_with(
                Arc::new(fs.clone()),
                Path::new("/db"),
                EngineOptions::default(),
            );
            opened.unwrap().0
        };
        let e = open();
        e.create_database("app").unwrap();
        e.create_table("app", "t").unwrap();
        for i in 0..200 {
            let key = format!("key-{i:04}");
            e.put("app", "t", &key, &[7u8; 600], engine::Condition::Any)
                .unwrap();
        }
        e.checkpoint().unwrap();
        drop(e);
        let data = Path::new("/db/pages.db");
        let pages = fs.read_file(data).unwrap();
        let leaf = pages
            .chunks(8192)
            .position(|p| p[4] == 2 && p.windows(8).any(|w| w == b"key-0100"))
            .expect("the leaf holding key-0100") as u64;
        fs.corrupt(data, leaf * 8192 + 3000, &[0x42]);

        let engine = Arc::new(open());
        let dir = tempfile::tempdir().unwrap();
        let audit = Arc::new(Audit::open(&dir.path().join("audit.log")).unwrap());
        let metrics = Arc::new(Metrics::new());
        let h = Handler::new(
            engine.clone(),
            8,
            metrics.clone(),
            audit,
            Arc::new(Notify::new()),
        );
        assert!(h.health().is_serving());
        let get = |key: &str| {
            Request::new(pb::GetRequest {
                table: Some(pb::TableRef {
                    db: "app".into(),
                    table: "t".into(),
                }),
                key: key.into(),
            })
        };
        assert!(h.get(get("key-0000")).await.is_ok());
        assert!(h.health().is_serving(), "an undamaged read changes nothing");
        for _ in 0..3 {
            let status = h.get(get("key-0100")).await.expect_err("damaged");
            assert_eq!(status.code(), tonic::Code::DataLoss, "{status:?}");
            assert!(!h.health().is_serving());
        }
        let log = std::fs::read_to_string(dir.path().join("audit.log")).unwrap();
        let damaged: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("\"storage_damaged\""))
            .collect();
        assert_eq!(damaged.len(), 1, "{log}");
        assert!(damaged[0].contains("holding table app/t"), "{log}");
        let text = metrics.render(&engine);
        for line in [
            "photondb_storaged_serving 0",
            "photondb_storaged_damaged_pages_total 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} in:\n{text}");
        }
    }

    #[test]
    fn damage_is_described_in_one_line() {
        let damage = Damage {
            page: Some(1),
            catalog: true,
            owner: Some(engine::PageOwner::Tree {
                root: true,
                holds: engine::Holds {
                    names_unread: true,
                    ..engine::Holds::default()
                },
            }),
            detail: "page checksum mismatch".into(),
        };
        assert_eq!(
            damage.to_string(),
            "storage damaged: catalog page 1 (the root: everything) is unreadable: page \
             checksum mismatch"
        );
        let unpaged = Damage {
            page: None,
            catalog: false,
            owner: None,
            detail: "control file unreadable".into(),
        };
        assert_eq!(
            unpaged.to_string(),
            "storage damaged (no page named): control file unreadable"
        );
    }

    fn first_page() -> engine::List {
        engine::List {
            start_after: None,
            limit: 100,
        }
    }

    fn invalid<T: std::fmt::Debug>(result: Result<T, Status>) -> String {
        let status = result.expect_err("refused");
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        status.message().to_owned()
    }

    /// The name's shape is the wire contract's rule: the service refuses it before the engine
    /// (which only bounds a name's length) sees the call.
    #[tokio::test]
    async fn names_of_the_wrong_shape_are_refused_before_the_engine() {
        let (h, _dir) = handler();
        let create = |db: &str| Request::new(pb::CreateDatabaseRequest { db: db.into() });
        for bad in ["Bad Name", "UPPER", "a.b", ""] {
            let message = invalid(h.create_database(create(bad)).await);
            assert_eq!(
                message, "database name must match [a-z0-9_-]{1,64}",
                "{bad:?}"
            );
        }
        assert!(
            h.engine
                .list_databases(&first_page())
                .unwrap()
                .names
                .is_empty()
        );
        h.create_database(create("app")).await.unwrap();
        let table = Request::new(pb::CreateTableRequest {
            table: Some(pb::TableRef {
                db: "app".into(),
                table: "Users".into(),
            }),
        });
        let message = invalid(h.create_table(table).await);
        assert_eq!(message, "table name must match [a-z0-9_-]{1,64}");
        assert!(
            h.engine
                .list_tables("app", &first_page())
                .unwrap()
                .names
                .is_empty()
        );
    }

    /// Lists come in pages linked by `next_start_after` (empty on the last); limit 0 is the
    /// largest page, and a cursor that is not a name is refused before the engine.
    #[tokio::test]
    async fn lists_page_through_names_in_order() {
        let (h, _dir) = handler();
        let names: Vec<String> = (0..25).map(|i| format!("db{i:02}")).collect();
        for name in &names {
            h.engine.create_database(name).unwrap();
        }
        let list = |after: &str, limit| {
            Request::new(pb::ListDatabasesRequest {
                start_after: after.into(),
                limit,
            })
        };
        let (mut seen, mut after) = (Vec::new(), String::new());
        loop {
            let page = h.list_databases(list(after.as_str(), 10)).await.unwrap();
            let page = page.into_inner();
            assert!(page.databases.len() <= 10, "{page:?}");
            seen.extend(page.databases);
            if page.next_start_after.is_empty() {
                break;
            }
            after = page.next_start_after;
        }
        assert_eq!(seen, names);
        let all = h.list_databases(list("", 0)).await.unwrap().into_inner();
        assert_eq!(
            (all.databases, all.next_start_after),
            (names, String::new())
        );
        let message = invalid(h.list_databases(list("Bad", 0)).await);
        assert!(message.starts_with("list start_after"), "{message}");

        for table in ["a", "b", "c"] {
            h.engine.create_table("db00", table).unwrap();
        }
        let tables = |after: &str| {
            Request::new(pb::ListTablesRequest {
                db: "db00".into(),
                start_after: after.into(),
                limit: 2,
            })
        };
        let first = h.list_tables(tables("")).await.unwrap().into_inner();
        assert_eq!(first.tables, ["a", "b"]);
        assert_eq!(first.next_start_after, "b");
        let last = h.list_tables(tables("b")).await.unwrap().into_inner();
        assert_eq!(last.tables, ["c"]);
        assert_eq!(last.next_start_after, "");
    }

    /// A verify while another runs is refused at once with FAILED_PRECONDITION; once the
    /// other ends, the next one is served, request permits or not.
    #[tokio::test]
    async fn a_second_verify_is_refused_while_one_runs() {
        let (h, _dir) = handler();
        let engine = h.engine.clone();
        let (held_tx, held_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        // Stands in for a running verify: holds the engine's one-verify slot.
        let holder = std::thread::spawn(move || {
            let _slot = engine.verifying.lock().unwrap_or_else(|e| e.into_inner());
            held_tx.send(()).unwrap();
            let _ = release_rx.recv();
        });
        held_rx.recv().unwrap();
        let verify = || Request::new(pb::VerifyRequest {});
        let status = h.verify(verify()).await.expect_err("refused");
        assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
        assert_eq!(status.message(), "a verify is already running");
        release_tx.send(()).unwrap();
        holder.join().unwrap();
        // With every request permit taken, a verify is still served: it needs none.
        let _all = h.permits.clone().try_acquire_many_owned(8).unwrap();
        assert!(h.verify(verify()).await.unwrap().into_inner().clean);
    }

    #[tokio::test]
    async fn documents_and_batches_over_the_wire_limits_are_refused() {
        use photondb_proto::limits::{MAX_BATCH_OPERATIONS, MAX_DOCUMENT_BYTES};
        let (h, _dir) = handler();
        h.engine.create_database("app").unwrap();
        h.engine.create_table("app", "t").unwrap();
        let table = || {
            Some(pb::TableRef {
                db: "app".into(),
                table: "t".into(),
            })
        };
        let put = Request::new(pb::PutRequest {
            table: table(),
            key: "k".into(),
            value: vec![0; MAX_DOCUMENT_BYTES + 1],
            precondition: None,
        });
        let message = invalid(h.put(put).await);
        assert!(message.contains("at most"), "{message}");
        let op = |i: usize| pb::BatchOperation {
            op: Some(pb::batch_operation::Op::Delete(pb::BatchDelete {
                key: format!("k{i}"),
                precondition: None,
            })),
        };
        let batch = Request::new(pb::BatchRequest {
            table: table(),
            operations: (0..=MAX_BATCH_OPERATIONS).map(op).collect(),
        });
        let message = invalid(h.batch(batch).await);
        assert_eq!(
            message,
            format!("a batch may carry at most {MAX_BATCH_OPERATIONS} operations")
        );
    }
}
