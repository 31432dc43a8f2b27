//! The gRPC services `photondb.v1.Storage` and `photondb.v1.Admin` on the engine. Each handler
//! converts its message, runs one blocking engine call, and maps the result in one place.

use std::sync::Arc;

use photondb_proto::v1 as pb;
use photondb_proto::v1::admin_server::Admin;
use photondb_proto::v1::storage_server::Storage;
use tokio::sync::{Notify, Semaphore};
use tonic::{Request, Response, Status};
use tracing::Instrument as _;

use crate::audit::Audit;
use crate::context::CallContext;
use crate::engine::{self, Engine};
use crate::metrics::Metrics;
use crate::status::{self, Refusal};

/// Scan pages: the default and the most a client can ask for.
const DEFAULT_SCAN_LIMIT: usize = 100;
const MAX_SCAN_LIMIT: usize = 1000;

/// Shared by both services.
#[derive(Clone)]
pub struct Handler {
    engine: Arc<Engine>,
    permits: Arc<Semaphore>,
    metrics: Arc<Metrics>,
    audit: Arc<Audit>,
    /// Signalled when the disk failed: the daemon stops and recovery runs on restart.
    fatal: Arc<Notify>,
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
        Self {
            engine,
            permits,
            metrics,
            audit,
            fatal,
        }
    }

    /// Runs `work` on the blocking pool, unless overloaded or past the deadline.
    async fn run<T, F>(&self, ctx: CallContext, work: F) -> Result<T, Status>
    where
        T: Send + 'static,
        F: FnOnce(&Engine) -> Result<T, engine::Error> + Send + 'static,
    {
        let span = tracing::info_span!("call", method = ctx.method, request_id = %ctx.request_id, principal = %ctx.principal);
        let result = self.run_inner(&ctx, work).instrument(span).await;
        let code = result
            .as_ref()
            .map_or_else(|s| s.code(), |_| tonic::Code::Ok);
        let elapsed = ctx.started.elapsed();
        self.metrics.observe(ctx.method, code, elapsed);
        tracing::info!(
            method = ctx.method,
            request_id = %ctx.request_id,
            principal = %ctx.principal,
            code = ?code,
            micros = elapsed.as_micros() as u64,
            "call"
        );
        result
    }

    async fn run_inner<T, F>(&self, ctx: &CallContext, work: F) -> Result<T, Status>
    where
        T: Send + 'static,
        F: FnOnce(&Engine) -> Result<T, engine::Error> + Send + 'static,
    {
        let Ok(_permit) = self.permits.clone().try_acquire_owned() else {
            return Err(status::from_refusal(Refusal::Overloaded));
        };
        if ctx.expired() {
            return Err(status::from_refusal(Refusal::DeadlineExceeded));
        }
        let engine = self.engine.clone();
        let outcome = tokio::task::spawn_blocking(move || work(&engine))
            .await
            .map_err(|_| Status::internal("internal error"))?;
        outcome.map_err(|err| self.refuse(&err, ctx))
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

fn table_ref(table: Option<pb::TableRef>) -> Result<(String, String), Status> {
    table
        .map(|t| (t.db, t.table))
        .ok_or_else(|| status::from_refusal(Refusal::MissingTable))
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

fn batch_op(op: pb::BatchOperation) -> Result<engine::BatchOp, Status> {
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
        None => Err(Status::invalid_argument(
            "batch operation without put or delete",
        )),
    }
}

fn scan_limit(requested: u32) -> usize {
    match requested {
        0 => DEFAULT_SCAN_LIMIT,
        n => usize::try_from(n)
            .unwrap_or(MAX_SCAN_LIMIT)
            .min(MAX_SCAN_LIMIT),
    }
}

#[tonic::async_trait]
impl Storage for Handler {
    async fn list_databases(
        &self,
        req: Request<pb::ListDatabasesRequest>,
    ) -> Result<Response<pb::ListDatabasesResponse>, Status> {
        let ctx = CallContext::from_metadata("ListDatabases", req.metadata());
        let databases = self.run(ctx, |e| e.list_databases()).await?;
        Ok(Response::new(pb::ListDatabasesResponse { databases }))
    }

    async fn create_database(
        &self,
        req: Request<pb::CreateDatabaseRequest>,
    ) -> Result<Response<pb::CreateDatabaseResponse>, Status> {
        let ctx = CallContext::from_metadata("CreateDatabase", req.metadata());
        let db = req.into_inner().db;
        self.run(ctx, move |e| e.create_database(&db)).await?;
        Ok(Response::new(pb::CreateDatabaseResponse {}))
    }

    async fn drop_database(
        &self,
        req: Request<pb::DropDatabaseRequest>,
    ) -> Result<Response<pb::DropDatabaseResponse>, Status> {
        let ctx = CallContext::from_metadata("DropDatabase", req.metadata());
        let db = req.into_inner().db;
        self.run(ctx, move |e| e.drop_database(&db)).await?;
        Ok(Response::new(pb::DropDatabaseResponse {}))
    }

    async fn list_tables(
        &self,
        req: Request<pb::ListTablesRequest>,
    ) -> Result<Response<pb::ListTablesResponse>, Status> {
        let ctx = CallContext::from_metadata("ListTables", req.metadata());
        let db = req.into_inner().db;
        let tables = self.run(ctx, move |e| e.list_tables(&db)).await?;
        Ok(Response::new(pb::ListTablesResponse { tables }))
    }

    async fn create_table(
        &self,
        req: Request<pb::CreateTableRequest>,
    ) -> Result<Response<pb::CreateTableResponse>, Status> {
        let ctx = CallContext::from_metadata("CreateTable", req.metadata());
        let (db, table) = table_ref(req.into_inner().table)?;
        self.run(ctx, move |e| e.create_table(&db, &table)).await?;
        Ok(Response::new(pb::CreateTableResponse {}))
    }

    async fn drop_table(
        &self,
        req: Request<pb::DropTableRequest>,
    ) -> Result<Response<pb::DropTableResponse>, Status> {
        let ctx = CallContext::from_metadata("DropTable", req.metadata());
        let (db, table) = table_ref(req.into_inner().table)?;
        self.run(ctx, move |e| e.drop_table(&db, &table)).await?;
        Ok(Response::new(pb::DropTableResponse {}))
    }

    async fn get(&self, req: Request<pb::GetRequest>) -> Result<Response<pb::GetResponse>, Status> {
        let ctx = CallContext::from_metadata("Get", req.metadata());
        let r = req.into_inner();
        let (db, table) = table_ref(r.table)?;
        let missing = engine::Error::NotFound(engine::What::Document);
        let doc = self
            .run(ctx, move |e| e.get(&db, &table, &r.key)?.ok_or(missing))
            .await?;
        Ok(Response::new(pb::GetResponse {
            document: Some(document(doc)),
        }))
    }

    async fn put(&self, req: Request<pb::PutRequest>) -> Result<Response<pb::PutResponse>, Status> {
        let ctx = CallContext::from_metadata("Put", req.metadata());
        let r = req.into_inner();
        let (db, table) = table_ref(r.table)?;
        let cond = condition(r.precondition);
        let version = self
            .run(ctx, move |e| e.put(&db, &table, &r.key, &r.value, cond))
            .await?;
        Ok(Response::new(pb::PutResponse { version }))
    }

    async fn delete(
        &self,
        req: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let ctx = CallContext::from_metadata("Delete", req.metadata());
        let r = req.into_inner();
        let (db, table) = table_ref(r.table)?;
        let cond = condition(r.precondition);
        let version = self
            .run(ctx, move |e| e.delete(&db, &table, &r.key, cond))
            .await?;
        Ok(Response::new(pb::DeleteResponse { version }))
    }

    async fn scan(
        &self,
        req: Request<pb::ScanRequest>,
    ) -> Result<Response<pb::ScanResponse>, Status> {
        let ctx = CallContext::from_metadata("Scan", req.metadata());
        let r = req.into_inner();
        let (db, table) = table_ref(r.table)?;
        let scan = engine::Scan {
            prefix: r.prefix,
            start_after: Some(r.start_after).filter(|s| !s.is_empty()),
            limit: scan_limit(r.limit),
        };
        let page = self.run(ctx, move |e| e.scan(&db, &table, &scan)).await?;
        Ok(Response::new(pb::ScanResponse {
            documents: page.docs.into_iter().map(document).collect(),
            next_start_after: page.next_start_after.unwrap_or_default(),
        }))
    }

    async fn batch(
        &self,
        req: Request<pb::BatchRequest>,
    ) -> Result<Response<pb::BatchResponse>, Status> {
        let ctx = CallContext::from_metadata("Batch", req.metadata());
        let r = req.into_inner();
        let (db, table) = table_ref(r.table)?;
        let ops = r
            .operations
            .into_iter()
            .map(batch_op)
            .collect::<Result<Vec<_>, _>>()?;
        let version = self.run(ctx, move |e| e.batch(&db, &table, ops)).await?;
        Ok(Response::new(pb::BatchResponse { version }))
    }
}

#[tonic::async_trait]
impl Admin for Handler {
    async fn verify(
        &self,
        req: Request<pb::VerifyRequest>,
    ) -> Result<Response<pb::VerifyResponse>, Status> {
        let ctx = CallContext::from_metadata("Verify", req.metadata());
        let report = self.run(ctx, |e| e.verify()).await?;
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
        let ctx = CallContext::from_metadata("Stats", req.metadata());
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

    async fn checkpoint(
        &self,
        req: Request<pb::CheckpointRequest>,
    ) -> Result<Response<pb::CheckpointResponse>, Status> {
        let ctx = CallContext::from_metadata("Checkpoint", req.metadata());
        let c = self.run(ctx, |e| e.checkpoint()).await?;
        Ok(Response::new(pb::CheckpointResponse {
            redo_lsn: c.redo_lsn,
            pages_written: c.pages_written as u64,
            duration_micros: u64::try_from(c.duration.as_micros()).unwrap_or(u64::MAX),
        }))
    }
}
