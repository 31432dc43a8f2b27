//! Pipeline step 12: the typed tonic client to storaged over mTLS — one lazily created,
//! pooled HTTP/2 channel, a deadline per call, the request id and principal in metadata,
//! and retries only for reads. [`endpoint`] is the one place a client to storaged is built
//! (photonctl's bench uses it too).

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use async_trait::async_trait;
use photondb_proto::limits::MAX_MESSAGE_BYTES;
use photondb_proto::metadata;
use photondb_proto::names::{Name, TableRef};
use photondb_proto::v1 as pb;
use photondb_proto::v1::admin_client::AdminClient;
use photondb_proto::v1::storage_client::StorageClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Status};

use crate::config::UpstreamConfig;
use crate::operation::{BatchOp, ListPage, Operation, Precondition, Reply};
use crate::pipeline::cleared::Cleared;
use crate::pipeline::gate::Admission;

/// Where forwarded operations go: storaged ([`Upstream`]) or, in the pipeline's tests, a fake.
#[async_trait]
pub trait Forward: Send + Sync {
    /// Forwards a cleared operation. Needs the proofs of steps 6–9 ([`Cleared`]) and of
    /// step 11 ([`Admission`]).
    async fn call(
        &self,
        op: &Operation,
        cleared: &Cleared,
        admitted: &Admission<'_>,
    ) -> Result<Reply, Status>;
}

/// The mTLS client identity and trust for storaged, as files.
#[derive(Debug, Clone, Copy)]
pub struct ClientTls<'a> {
    pub ca: &'a Path,
    pub cert: &'a Path,
    pub key: &'a Path,
    /// The name storaged's certificate must carry.
    pub server_name: &'a str,
}

/// An endpoint to storaged at `address` over mTLS (reads the files; connects on first use).
pub fn endpoint(address: &str, tls: ClientTls<'_>) -> Result<Endpoint, String> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("{}: {}", p.display(), e.kind()));
    let config = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read(tls.ca)?))
        .identity(Identity::from_pem(read(tls.cert)?, read(tls.key)?))
        .domain_name(tls.server_name.to_owned());
    Endpoint::from_shared(format!("https://{address}"))
        .and_then(|e| e.tls_config(config))
        .map_err(|_| "upstream: invalid endpoint or TLS settings".to_string())
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
        let tls = ClientTls {
            ca: &cfg.ca,
            cert: &cfg.client_cert,
            key: &cfg.client_key,
            server_name: &cfg.server_name,
        };
        let endpoint = endpoint(&cfg.address.to_string(), tls)?
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

    async fn call_with_retries(&self, op: &Operation, cleared: &Cleared) -> Result<Reply, Status> {
        let meta = CallMeta::of(cleared)?;
        let attempts = if op.is_retryable() {
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
        m.insert(metadata::REQUEST_ID, meta.request_id.clone());
        m.insert(metadata::PRINCIPAL, meta.principal.clone());
        req
    }

    async fn dispatch(&self, op: &Operation, cl: &CallMeta) -> Result<Reply, Status> {
        let mut s = StorageClient::new(self.channel())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        Ok(match op {
            Operation::ListDatabases(page) => Reply::ListDatabases(
                s.list_databases(self.request(
                    pb::ListDatabasesRequest {
                        start_after: list_after(page),
                        limit: page.limit,
                    },
                    cl,
                ))
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
            Operation::ListTables(db, page) => Reply::ListTables(
                s.list_tables(self.request(
                    pb::ListTablesRequest {
                        db: db.to_string(),
                        start_after: list_after(page),
                        limit: page.limit,
                    },
                    cl,
                ))
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
                    precondition: Precondition::to_pb(*precondition),
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
                    precondition: Precondition::to_pb(*precondition),
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
                let mut admin =
                    AdminClient::new(self.channel()).max_decoding_message_size(MAX_MESSAGE_BYTES);
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

/// storaged's health, asked by the server's background poll (`server.rs`).
#[cfg(feature = "server")]
impl Upstream {
    /// A channel of its own for the health poll, with the same mTLS endpoint as the calls:
    /// made inside the poll's runtime, so the calls' channel stays in the serving runtime.
    pub fn health_channel(&self) -> Channel {
        self.endpoint.connect_lazy()
    }

    /// `grpc.health.v1.Health/Check` for the overall service "": serving, not serving, or
    /// unknown (no answer within the upstream timeout, unreachable, or any other answer).
    pub async fn check_health(&self, channel: &Channel) -> crate::pipeline::gate::StorageStatus {
        use crate::pipeline::gate::StorageStatus;
        use tonic_health::pb::health_check_response::ServingStatus;
        use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
        let mut client = HealthClient::new(channel.clone());
        let mut request = tonic::Request::new(HealthCheckRequest {
            service: String::new(),
        });
        request.set_timeout(self.timeout);
        match tokio::time::timeout(self.timeout, client.check(request)).await {
            Ok(Ok(reply)) => match reply.into_inner().status() {
                ServingStatus::Serving => StorageStatus::Serving,
                ServingStatus::NotServing => StorageStatus::NotServing,
                _ => StorageStatus::Unknown,
            },
            _ => StorageStatus::Unknown,
        }
    }
}

#[async_trait]
impl Forward for Upstream {
    /// Reads are retried on `UNAVAILABLE`; writes and admin calls never are.
    async fn call(
        &self,
        op: &Operation,
        cleared: &Cleared,
        _admitted: &Admission<'_>,
    ) -> Result<Reply, Status> {
        self.call_with_retries(op, cleared).await
    }
}

/// A list page's cursor as the wire carries it (empty: from the first name).
fn list_after(page: &ListPage) -> String {
    page.after.as_ref().map(Name::to_string).unwrap_or_default()
}

fn pb_table(t: &TableRef) -> pb::TableRef {
    pb::TableRef {
        db: t.db.to_string(),
        table: t.table.to_string(),
    }
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
            precondition: Precondition::to_pb(*precondition),
        }),
        BatchOp::Delete { key, precondition } => Op::Delete(pb::BatchDelete {
            key: key.as_str().into(),
            precondition: Precondition::to_pb(*precondition),
        }),
    };
    pb::BatchOperation { op: Some(op) }
}
