//! An in-memory stand-in for storaged: the real `photondb.v1.Storage`/`Admin` services over
//! mTLS (client certificate required), recording the metadata the gateway sends.
#![allow(dead_code, unreachable_pub)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use photondb_proto::v1 as pb;
use photondb_proto::v1::admin_server::{Admin, AdminServer};
use photondb_proto::v1::storage_server::{Storage, StorageServer};
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status};

use super::Certs;

type Key = (String, String, String);

#[derive(Default)]
struct State {
    dbs: BTreeSet<String>,
    tables: BTreeSet<(String, String)>,
    docs: BTreeMap<Key, (Vec<u8>, u64)>,
    lsn: u64,
    /// (request id, principal) of every call.
    seen: Vec<(String, String)>,
}

/// The fake storaged; clones share state.
#[derive(Clone, Default)]
pub struct Fake(Arc<Mutex<State>>);

/// Keys that make the fake misbehave.
pub const KEY_DATA_LOSS: &str = "corrupt";
pub const KEY_SLOW: &str = "slow";

impl Fake {
    pub fn seen(&self) -> Vec<(String, String)> {
        self.0.lock().unwrap().seen.clone()
    }

    fn record<T>(&self, req: &Request<T>) {
        let get = |k: &str| {
            req.metadata()
                .get(k)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        let entry = (get("x-request-id"), get("x-photondb-principal"));
        self.0.lock().unwrap().seen.push(entry);
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap()
    }
}

/// Starts the fake on a free loopback port; returns the port.
pub async fn start(certs: &Certs, fake: Fake) -> u16 {
    let read = |n: &str| std::fs::read(certs.path(n)).unwrap();
    let tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(
            read("storaged.pem"),
            read("storaged-key.pem"),
        ))
        .client_ca_root(Certificate::from_pem(read("ca.pem")));
    let incoming = TcpIncoming::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = incoming.local_addr().unwrap().port();
    let router = Server::builder()
        .tls_config(tls)
        .unwrap()
        .add_service(StorageServer::new(fake.clone()))
        .add_service(AdminServer::new(fake));
    tokio::spawn(router.serve_with_incoming(incoming));
    port
}

fn table_key(t: &Option<pb::TableRef>) -> (String, String) {
    let t = t.clone().unwrap_or_default();
    (t.db, t.table)
}

fn check(p: &Option<pb::Precondition>, current: Option<u64>) -> Result<(), Status> {
    use pb::precondition::Condition;
    let ok = match p.as_ref().and_then(|p| p.condition) {
        None => true,
        Some(Condition::IfVersion(v)) => current == Some(v),
        Some(Condition::IfAbsent(_)) => current.is_none(),
    };
    if ok {
        Ok(())
    } else {
        Err(Status::failed_precondition(
            "version mismatch at /var/lib/secret",
        ))
    }
}

impl State {
    fn table(&self, t: &Option<pb::TableRef>) -> Result<(String, String), Status> {
        let t = table_key(t);
        if self.tables.contains(&t) {
            Ok(t)
        } else {
            Err(Status::not_found("no table"))
        }
    }

    fn put(&mut self, t: &(String, String), key: String, value: Vec<u8>, lsn: u64) {
        self.docs
            .insert((t.0.clone(), t.1.clone(), key), (value, lsn));
    }

    fn next_lsn(&mut self) -> u64 {
        self.lsn += 10;
        self.lsn
    }
}

#[tonic::async_trait]
impl Storage for Fake {
    async fn list_databases(
        &self,
        r: Request<pb::ListDatabasesRequest>,
    ) -> Result<Response<pb::ListDatabasesResponse>, Status> {
        self.record(&r);
        let databases = self.state().dbs.iter().cloned().collect();
        Ok(Response::new(pb::ListDatabasesResponse { databases }))
    }

    async fn create_database(
        &self,
        r: Request<pb::CreateDatabaseRequest>,
    ) -> Result<Response<pb::CreateDatabaseResponse>, Status> {
        self.record(&r);
        if !self.state().dbs.insert(r.into_inner().db) {
            return Err(Status::already_exists("exists"));
        }
        Ok(Response::new(pb::CreateDatabaseResponse {}))
    }

    async fn drop_database(
        &self,
        r: Request<pb::DropDatabaseRequest>,
    ) -> Result<Response<pb::DropDatabaseResponse>, Status> {
        self.record(&r);
        if !self.state().dbs.remove(&r.into_inner().db) {
            return Err(Status::not_found("no db"));
        }
        Ok(Response::new(pb::DropDatabaseResponse {}))
    }

    async fn list_tables(
        &self,
        r: Request<pb::ListTablesRequest>,
    ) -> Result<Response<pb::ListTablesResponse>, Status> {
        self.record(&r);
        let db = r.into_inner().db;
        let s = self.state();
        let tables = s
            .tables
            .iter()
            .filter(|t| t.0 == db)
            .map(|t| t.1.clone())
            .collect();
        Ok(Response::new(pb::ListTablesResponse { tables }))
    }

    async fn create_table(
        &self,
        r: Request<pb::CreateTableRequest>,
    ) -> Result<Response<pb::CreateTableResponse>, Status> {
        self.record(&r);
        let t = table_key(&r.into_inner().table);
        let mut s = self.state();
        if !s.dbs.contains(&t.0) {
            return Err(Status::not_found("no db"));
        }
        if !s.tables.insert(t) {
            return Err(Status::already_exists("exists"));
        }
        Ok(Response::new(pb::CreateTableResponse {}))
    }

    async fn drop_table(
        &self,
        r: Request<pb::DropTableRequest>,
    ) -> Result<Response<pb::DropTableResponse>, Status> {
        self.record(&r);
        let t = table_key(&r.into_inner().table);
        if !self.state().tables.remove(&t) {
            return Err(Status::not_found("no table"));
        }
        Ok(Response::new(pb::DropTableResponse {}))
    }

    async fn get(&self, r: Request<pb::GetRequest>) -> Result<Response<pb::GetResponse>, Status> {
        self.record(&r);
        let m = r.into_inner();
        match m.key.as_str() {
            KEY_DATA_LOSS => return Err(Status::data_loss("page 7 of /var/lib/photondb bad")),
            KEY_SLOW => tokio::time::sleep(Duration::from_secs(3)).await,
            _ => {}
        }
        let s = self.state();
        let t = s.table(&m.table)?;
        let (value, version) = s
            .docs
            .get(&(t.0, t.1, m.key.clone()))
            .cloned()
            .ok_or_else(|| Status::not_found("no doc"))?;
        let document = Some(pb::Document {
            key: m.key,
            value,
            version,
        });
        Ok(Response::new(pb::GetResponse { document }))
    }

    async fn put(&self, r: Request<pb::PutRequest>) -> Result<Response<pb::PutResponse>, Status> {
        self.record(&r);
        let m = r.into_inner();
        let mut s = self.state();
        let t = s.table(&m.table)?;
        let current = s
            .docs
            .get(&(t.0.clone(), t.1.clone(), m.key.clone()))
            .map(|d| d.1);
        check(&m.precondition, current)?;
        let version = s.next_lsn();
        s.put(&t, m.key, m.value, version);
        Ok(Response::new(pb::PutResponse { version }))
    }

    async fn delete(
        &self,
        r: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        self.record(&r);
        let m = r.into_inner();
        let mut s = self.state();
        let t = s.table(&m.table)?;
        let k = (t.0, t.1, m.key);
        let current = s.docs.get(&k).map(|d| d.1);
        current.ok_or_else(|| Status::not_found("no doc"))?;
        check(&m.precondition, current)?;
        s.docs.remove(&k);
        let version = s.next_lsn();
        Ok(Response::new(pb::DeleteResponse { version }))
    }

    async fn scan(
        &self,
        r: Request<pb::ScanRequest>,
    ) -> Result<Response<pb::ScanResponse>, Status> {
        self.record(&r);
        let m = r.into_inner();
        let s = self.state();
        let t = s.table(&m.table)?;
        let mut documents: Vec<pb::Document> = s
            .docs
            .iter()
            .filter(|(k, _)| k.0 == t.0 && k.1 == t.1)
            .filter(|(k, _)| k.2.starts_with(&m.prefix) && k.2 > m.start_after)
            .map(|(k, (value, version))| pb::Document {
                key: k.2.clone(),
                value: value.clone(),
                version: *version,
            })
            .take(m.limit as usize + 1)
            .collect();
        let more = documents.len() > m.limit as usize;
        documents.truncate(m.limit as usize);
        let next_start_after = match (more, documents.last()) {
            (true, Some(d)) => d.key.clone(),
            _ => String::new(),
        };
        Ok(Response::new(pb::ScanResponse {
            documents,
            next_start_after,
        }))
    }

    async fn batch(
        &self,
        r: Request<pb::BatchRequest>,
    ) -> Result<Response<pb::BatchResponse>, Status> {
        use pb::batch_operation::Op;
        self.record(&r);
        let m = r.into_inner();
        let mut s = self.state();
        let t = s.table(&m.table)?;
        let version = s.next_lsn();
        for op in m.operations {
            match op.op {
                Some(Op::Put(p)) => s.put(&t, p.key, p.value, version),
                Some(Op::Delete(d)) => {
                    s.docs.remove(&(t.0.clone(), t.1.clone(), d.key));
                }
                None => return Err(Status::invalid_argument("empty op")),
            }
        }
        Ok(Response::new(pb::BatchResponse { version }))
    }
}

#[tonic::async_trait]
impl Admin for Fake {
    async fn verify(
        &self,
        r: Request<pb::VerifyRequest>,
    ) -> Result<Response<pb::VerifyResponse>, Status> {
        self.record(&r);
        let bad_pages = vec![pb::BadPage {
            page: 7,
            reason: "/var/lib/secret".into(),
        }];
        Ok(Response::new(pb::VerifyResponse {
            clean: false,
            pages_checked: 9,
            bad_pages,
        }))
    }

    async fn stats(
        &self,
        _r: Request<pb::StatsRequest>,
    ) -> Result<Response<pb::StatsResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn checkpoint(
        &self,
        _r: Request<pb::CheckpointRequest>,
    ) -> Result<Response<pb::CheckpointResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }
}
