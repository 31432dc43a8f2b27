//! Pipeline step 12: the typed tonic client to storaged over mTLS — one lazily created,
//! pooled HTTP/2 channel, a deadline per call, the request id and principal in metadata,
//! and retries only for reads.

use std::sync::OnceLock;
use std::time::Duration;

use photondb_proto::v1 as pb;
use photondb_proto::v1::admin_client::AdminClient;
use photondb_proto::v1::storage_client::StorageClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Status};

use crate::config::UpstreamConfig;
use crate::gate::Admission;
use crate::names::TableRef;
use crate::operation::{BatchOp, Operation};
use crate::pipeline::Cleared;
use crate::route::Precondition;

/// Metadata keys sent to storaged.
pub const META_REQUEST_ID: &str = "x-request-id";
pub const META_PRINCIPAL: &str = "x-photondb-principal";

/// storaged's answer, one variant per operation.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    ListDatabases(pb::ListDatabasesResponse),
    CreateDatabase(pb::CreateDatabaseResponse),
    DropDatabase(pb::DropDatabaseResponse),
    ListTables(pb::ListTablesResponse),
    CreateTable(pb::CreateTableResponse),
    DropTable(pb::DropTableResponse),
    Get(pb::GetResponse),
    Put(pb::PutResponse),
    Delete(pb::DeleteResponse),
    Scan(pb::ScanResponse),
    Batch(pb::BatchResponse),
    Verify(pb::VerifyResponse),
}

/// The request id and principal as gRPC metadata. A value that cannot be metadata is an
/// internal error: nothing is forwarded without the principal.
struct CallMeta {
    request_id: MetadataValue<Ascii>,
    principal: MetadataValue<Ascii>,
}

impl CallMeta {
    fn of(cleared: &Cleared) -> Result<Self, Status> {
        let bad = |_| Status::internal("metadata not encodable");
        Ok(Self {
            request_id: cleared.request_id().parse().map_err(bad)?,
            principal: cleared.principal().as_str().parse().map_err(bad)?,
        })
    }
}

/// The client side of the storaged connection.
pub struct Upstream {
    endpoint: Endpoint,
    channel: OnceLock<Channel>,
    timeout: Duration,
    read_retries: u32,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("uri", self.endpoint.uri())
            .finish_non_exhaustive()
    }
}

impl Upstream {
    /// Builds the endpoint (reads the CA and client identity); connects on first use.
    pub fn new(cfg: &UpstreamConfig) -> Result<Self, String> {
        let read = |p: &std::path::Path| {
            std::fs::read(p).map_err(|e| format!("{}: {}", p.display(), e.kind()))
        };
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read(&cfg.ca)?))
            .identity(Identity::from_pem(
                read(&cfg.client_cert)?,
                read(&cfg.client_key)?,
            ))
            .domain_name(cfg.server_name.clone());
        let endpoint = Endpoint::from_shared(format!("https://{}", cfg.address))
            .and_then(|e| e.tls_config(tls))
            .map_err(|_| "upstream: invalid endpoint or TLS settings".to_string())?
            .connect_timeout(cfg.connect_timeout)
            .timeout(cfg.timeout)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(true);
        Ok(Self {
            endpoint,
            channel: OnceLock::new(),
            timeout: cfg.timeout,
            read_retries: cfg.read_retries,
        })
    }

    /// The channel, created inside the serving runtime on first use (PINGORA.md).
    fn channel(&self) -> Channel {
        self.channel
            .get_or_init(|| self.endpoint.connect_lazy())
            .clone()
    }

    /// Forwards a cleared operation; reads are retried on `UNAVAILABLE`.
    /// Needs the proofs of steps 6–9 ([`Cleared`]) and of step 11 ([`Admission`]).
    pub async fn call(
        &self,
        op: &Operation,
        cleared: &Cleared,
        _admitted: &Admission<'_>,
    ) -> Result<Reply, Status> {
        let meta = CallMeta::of(cleared)?;
        let attempts = if op.is_read() {
            1 + self.read_retries
        } else {
            1
        };
        let mut attempt = 1;
        loop {
            match self.call_once(op, &meta).await {
                Err(s) if s.code() == Code::Unavailable && attempt < attempts => {
                    tokio::time::sleep(Duration::from_millis(20 * u64::from(attempt))).await;
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    async fn call_once(&self, op: &Operation, meta: &CallMeta) -> Result<Reply, Status> {
        match tokio::time::timeout(self.timeout, self.dispatch(op, meta)).await {
            Ok(result) => result,
            Err(_) => Err(Status::deadline_exceeded("upstream deadline")),
        }
    }

    fn request<M>(&self, msg: M, meta: &CallMeta) -> tonic::Request<M> {
        let mut req = tonic::Request::new(msg);
        req.set_timeout(self.timeout);
        let m = req.metadata_mut();
        m.insert(META_REQUEST_ID, meta.request_id.clone());
        m.insert(META_PRINCIPAL, meta.principal.clone());
        req
    }

    async fn dispatch(&self, op: &Operation, cl: &CallMeta) -> Result<Reply, Status> {
        let mut s = StorageClient::new(self.channel());
        Ok(match op {
            Operation::ListDatabases => Reply::ListDatabases(
                s.list_databases(self.request(pb::ListDatabasesRequest {}, cl))
                    .await?
                    .into_inner(),
            ),
            Operation::CreateDatabase(db) => Reply::CreateDatabase(
                s.create_database(
                    self.request(pb::CreateDatabaseRequest { db: db.to_string() }, cl),
                )
                .await?
                .into_inner(),
            ),
            Operation::DropDatabase(db) => Reply::DropDatabase(
                s.drop_database(self.request(pb::DropDatabaseRequest { db: db.to_string() }, cl))
                    .await?
                    .into_inner(),
            ),
            Operation::ListTables(db) => Reply::ListTables(
                s.list_tables(self.request(pb::ListTablesRequest { db: db.to_string() }, cl))
                    .await?
                    .into_inner(),
            ),
            Operation::CreateTable(t) => Reply::CreateTable(
                s.create_table(self.request(
                    pb::CreateTableRequest {
                        table: Some(pb_table(t)),
                    },
                    cl,
                ))
                .await?
                .into_inner(),
            ),
            Operation::DropTable(t) => Reply::DropTable(
                s.drop_table(self.request(
                    pb::DropTableRequest {
                        table: Some(pb_table(t)),
                    },
                    cl,
                ))
                .await?
                .into_inner(),
            ),
            Operation::Get { table, key } => {
                let msg = pb::GetRequest {
                    table: Some(pb_table(table)),
                    key: key.as_str().into(),
                };
                Reply::Get(s.get(self.request(msg, cl)).await?.into_inner())
            }
            Operation::Put {
                table,
                key,
                value,
                precondition,
            } => {
                let msg = pb::PutRequest {
                    table: Some(pb_table(table)),
                    key: key.as_str().into(),
                    value: value.bytes().to_vec(),
                    precondition: pb_precondition(*precondition),
                };
                Reply::Put(s.put(self.request(msg, cl)).await?.into_inner())
            }
            Operation::Delete {
                table,
                key,
                precondition,
            } => {
                let msg = pb::DeleteRequest {
                    table: Some(pb_table(table)),
                    key: key.as_str().into(),
                    precondition: pb_precondition(*precondition),
                };
                Reply::Delete(s.delete(self.request(msg, cl)).await?.into_inner())
            }
            Operation::Scan {
                table,
                prefix,
                after,
                limit,
            } => {
                let msg = pb::ScanRequest {
                    table: Some(pb_table(table)),
                    prefix: prefix.clone(),
                    start_after: after.clone(),
                    limit: *limit,
                };
                Reply::Scan(s.scan(self.request(msg, cl)).await?.into_inner())
            }
            Operation::Batch { table, ops } => {
                let msg = pb::BatchRequest {
                    table: Some(pb_table(table)),
                    operations: ops.iter().map(pb_batch_op).collect(),
                };
                Reply::Batch(s.batch(self.request(msg, cl)).await?.into_inner())
            }
            Operation::Verify => {
                let mut admin = AdminClient::new(self.channel());
                Reply::Verify(
                    admin
                        .verify(self.request(pb::VerifyRequest {}, cl))
                        .await?
                        .into_inner(),
                )
            }
        })
    }
}

fn pb_table(t: &TableRef) -> pb::TableRef {
    pb::TableRef {
        db: t.db.to_string(),
        table: t.table.to_string(),
    }
}

fn pb_precondition(p: Option<Precondition>) -> Option<pb::Precondition> {
    use pb::precondition::Condition;
    let condition = match p? {
        Precondition::IfVersion(v) => Condition::IfVersion(v),
        Precondition::IfAbsent => Condition::IfAbsent(true),
    };
    Some(pb::Precondition {
        condition: Some(condition),
    })
}

fn pb_batch_op(op: &BatchOp) -> pb::BatchOperation {
    use pb::batch_operation::Op;
    let op = match op {
        BatchOp::Put {
            key,
            value,
            precondition,
        } => Op::Put(pb::BatchPut {
            key: key.as_str().into(),
            value: value.bytes().to_vec(),
            precondition: pb_precondition(*precondition),
        }),
        BatchOp::Delete { key, precondition } => Op::Delete(pb::BatchDelete {
            key: key.as_str().into(),
            precondition: pb_precondition(*precondition),
        }),
    };
    pb::BatchOperation { op: Some(op) }
}
