//! A client with the gateway's certificate can do every Storage and Admin operation over the
//! real daemon, and each refusal carries the exact gRPC code.

use std::time::Duration;

use pb::precondition::Condition;
use photondb_tests::{Overrides, Storaged, TestCerts, pb, table};
use tonic::{Code, Request};

fn if_version(v: u64) -> Option<pb::Precondition> {
    Some(pb::Precondition {
        condition: Some(Condition::IfVersion(v)),
    })
}

fn if_absent() -> Option<pb::Precondition> {
    Some(pb::Precondition {
        condition: Some(Condition::IfAbsent(true)),
    })
}

fn put(db: &str, t: &str, key: &str, value: &str, pre: Option<pb::Precondition>) -> pb::PutRequest {
    pb::PutRequest {
        table: table(db, t),
        key: key.into(),
        value: value.as_bytes().to_vec(),
        precondition: pre,
    }
}

fn get(db: &str, t: &str, key: &str) -> pb::GetRequest {
    pb::GetRequest {
        table: table(db, t),
        key: key.into(),
    }
}

fn batch_put(key: &str, value: &str, pre: Option<pb::Precondition>) -> pb::BatchOperation {
    pb::BatchOperation {
        op: Some(pb::batch_operation::Op::Put(pb::BatchPut {
            key: key.into(),
            value: value.as_bytes().to_vec(),
            precondition: pre,
        })),
    }
}

fn batch_delete(key: &str, pre: Option<pb::Precondition>) -> pb::BatchOperation {
    pb::BatchOperation {
        op: Some(pb::batch_operation::Op::Delete(pb::BatchDelete {
            key: key.into(),
            precondition: pre,
        })),
    }
}

#[track_caller]
fn assert_code<T: std::fmt::Debug>(result: Result<T, tonic::Status>, code: Code) -> tonic::Status {
    match result {
        Ok(v) => panic!("expected {code:?}, got a response: {v:?}"),
        Err(status) => {
            assert_eq!(status.code(), code, "wrong code: {status:?}");
            status
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_works_and_every_refusal_has_its_code() -> anyhow::Result<()> {
    let certs = TestCerts::new()?;
    let storaged = Storaged::start(&certs, Overrides::default())?;
    let mut c = storaged.client().await?;

    // Databases and tables.
    c.create_database(pb::CreateDatabaseRequest { db: "app".into() })
        .await?;
    c.create_database(pb::CreateDatabaseRequest { db: "other".into() })
        .await?;
    let s = assert_code(
        c.create_database(pb::CreateDatabaseRequest { db: "app".into() })
            .await,
        Code::AlreadyExists,
    );
    assert_eq!(s.message(), "database already exists");
    let s = assert_code(
        c.create_database(pb::CreateDatabaseRequest {
            db: "Bad Name".into(),
        })
        .await,
        Code::InvalidArgument,
    );
    assert_eq!(s.message(), "database name must match [a-z0-9_-]{1,64}");
    let dbs = c
        .list_databases(pb::ListDatabasesRequest::default())
        .await?
        .into_inner()
        .databases;
    assert_eq!(dbs, vec!["app".to_owned(), "other".to_owned()]);

    c.create_table(pb::CreateTableRequest {
        table: table("app", "users"),
    })
    .await?;
    c.create_table(pb::CreateTableRequest {
        table: table("app", "tmp"),
    })
    .await?;
    assert_code(
        c.create_table(pb::CreateTableRequest {
            table: table("app", "users"),
        })
        .await,
        Code::AlreadyExists,
    );
    let s = assert_code(
        c.create_table(pb::CreateTableRequest {
            table: table("app", "UPPER"),
        })
        .await,
        Code::InvalidArgument,
    );
    assert_eq!(s.message(), "table name must match [a-z0-9_-]{1,64}");
    let s = assert_code(
        c.create_table(pb::CreateTableRequest {
            table: table("nope", "users"),
        })
        .await,
        Code::NotFound,
    );
    assert_eq!(s.message(), "database not found");
    let s = assert_code(
        c.create_table(pb::CreateTableRequest { table: None }).await,
        Code::InvalidArgument,
    );
    assert_eq!(s.message(), "table reference is required");
    let tables = c
        .list_tables(pb::ListTablesRequest {
            db: "app".into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .tables;
    assert_eq!(tables, vec!["tmp".to_owned(), "users".to_owned()]);
    c.drop_table(pb::DropTableRequest {
        table: table("app", "tmp"),
    })
    .await?;
    assert_code(
        c.drop_table(pb::DropTableRequest {
            table: table("app", "tmp"),
        })
        .await,
        Code::NotFound,
    );
    c.drop_database(pb::DropDatabaseRequest { db: "other".into() })
        .await?;
    assert_code(
        c.drop_database(pb::DropDatabaseRequest { db: "other".into() })
            .await,
        Code::NotFound,
    );
    let dbs = c
        .list_databases(pb::ListDatabasesRequest::default())
        .await?
        .into_inner()
        .databases;
    assert_eq!(dbs, vec!["app".to_owned()]);

    // Documents with versions; request id and principal metadata are accepted.
    let mut req = Request::new(put("app", "users", "alice", r#"{"n":1}"#, None));
    req.metadata_mut().insert(
        photondb_proto::metadata::REQUEST_ID,
        "req-ops-0001".parse()?,
    );
    req.metadata_mut().insert(
        photondb_proto::metadata::PRINCIPAL,
        "key:test-principal".parse()?,
    );
    let v1 = c.put(req).await?.into_inner().version;
    assert!(v1 > 0);
    let doc = c
        .get(get("app", "users", "alice"))
        .await?
        .into_inner()
        .document
        .expect("document");
    assert_eq!(
        (doc.key.as_str(), doc.value.as_slice(), doc.version),
        ("alice", br#"{"n":1}"#.as_slice(), v1)
    );
    let v2 = c
        .put(put("app", "users", "alice", r#"{"n":2}"#, if_version(v1)))
        .await?
        .into_inner()
        .version;
    assert!(v2 > v1, "versions grow: {v1} then {v2}");
    // If-Match with the old version.
    let s = assert_code(
        c.put(put("app", "users", "alice", r#"{"n":3}"#, if_version(v1)))
            .await,
        Code::FailedPrecondition,
    );
    assert_eq!(s.message(), "version mismatch");
    // If-None-Match: * on an existing document.
    assert_code(
        c.put(put("app", "users", "alice", r#"{"n":3}"#, if_absent()))
            .await,
        Code::FailedPrecondition,
    );
    // If-Match on a missing document is a precondition failure, not NOT_FOUND.
    assert_code(
        c.put(put("app", "users", "ghost", "{}", if_version(v1)))
            .await,
        Code::FailedPrecondition,
    );
    let doc = c
        .get(get("app", "users", "alice"))
        .await?
        .into_inner()
        .document
        .expect("document");
    assert_eq!(
        (doc.value.as_slice(), doc.version),
        (br#"{"n":2}"#.as_slice(), v2)
    );
    let vb = c
        .put(put("app", "users", "bob", r#"{"b":1}"#, if_absent()))
        .await?
        .into_inner()
        .version;
    assert!(vb > v2);

    let s = assert_code(c.get(get("app", "users", "nobody")).await, Code::NotFound);
    assert_eq!(s.message(), "document not found");
    let s = assert_code(c.get(get("app", "nope", "alice")).await, Code::NotFound);
    assert_eq!(s.message(), "table not found");
    let s = assert_code(c.get(get("app", "users", "")).await, Code::InvalidArgument);
    assert_eq!(s.message(), "key must be 1 to 512 bytes of UTF-8");
    assert_code(
        c.get(get("app", "users", &"k".repeat(513))).await,
        Code::InvalidArgument,
    );

    // Delete with a stale version, then with the right one, then again.
    assert_code(
        c.delete(pb::DeleteRequest {
            table: table("app", "users"),
            key: "bob".into(),
            precondition: if_version(vb - 1),
        })
        .await,
        Code::FailedPrecondition,
    );
    let vd = c
        .delete(pb::DeleteRequest {
            table: table("app", "users"),
            key: "bob".into(),
            precondition: if_version(vb),
        })
        .await?
        .into_inner()
        .version;
    assert!(vd > vb);
    assert_code(c.get(get("app", "users", "bob")).await, Code::NotFound);
    assert_code(
        c.delete(pb::DeleteRequest {
            table: table("app", "users"),
            key: "bob".into(),
            precondition: None,
        })
        .await,
        Code::NotFound,
    );

    // Paged scan: prefix, start_after and limit across pages.
    c.create_table(pb::CreateTableRequest {
        table: table("app", "items"),
    })
    .await?;
    for i in 0..25 {
        c.put(put("app", "items", &format!("item-{i:03}"), "{}", None))
            .await?;
    }
    for i in 0..5 {
        c.put(put("app", "items", &format!("other-{i}"), "{}", None))
            .await?;
    }
    let mut seen = Vec::new();
    let mut after = String::new();
    let mut pages = 0;
    loop {
        let page = c
            .scan(pb::ScanRequest {
                table: table("app", "items"),
                prefix: "item-".into(),
                start_after: after.clone(),
                limit: 10,
            })
            .await?
            .into_inner();
        pages += 1;
        assert!(page.documents.len() <= 10);
        seen.extend(page.documents.iter().map(|d| d.key.clone()));
        if page.next_start_after.is_empty() {
            break;
        }
        assert_eq!(
            Some(&page.next_start_after),
            seen.last(),
            "next_start_after is the last key of the page"
        );
        after = page.next_start_after;
        assert!(pages < 10, "scan does not terminate");
    }
    let expected: Vec<String> = (0..25).map(|i| format!("item-{i:03}")).collect();
    assert_eq!(seen, expected);
    assert_eq!(pages, 3);
    let all = c
        .scan(pb::ScanRequest {
            table: table("app", "items"),
            prefix: String::new(),
            start_after: "item-020".into(),
            limit: 0,
        })
        .await?
        .into_inner();
    let keys: Vec<&str> = all.documents.iter().map(|d| d.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "item-021", "item-022", "item-023", "item-024", "other-0", "other-1", "other-2",
            "other-3", "other-4"
        ]
    );
    assert!(all.next_start_after.is_empty());

    // Atomic batch: one failing precondition changes nothing.
    let before = c
        .get(get("app", "users", "alice"))
        .await?
        .into_inner()
        .document
        .expect("alice");
    let s = assert_code(
        c.batch(pb::BatchRequest {
            table: table("app", "users"),
            operations: vec![
                batch_put("carol", r#"{"c":1}"#, None),
                batch_put("alice", r#"{"n":99}"#, None),
                batch_put("dave", "{}", if_version(12345)),
            ],
        })
        .await,
        Code::FailedPrecondition,
    );
    assert_eq!(s.message(), "version mismatch");
    assert_code(c.get(get("app", "users", "carol")).await, Code::NotFound);
    let after_fail = c
        .get(get("app", "users", "alice"))
        .await?
        .into_inner()
        .document
        .expect("alice");
    assert_eq!(after_fail, before, "a failed batch changed a document");
    let vbatch = c
        .batch(pb::BatchRequest {
            table: table("app", "users"),
            operations: vec![
                batch_put("carol", r#"{"c":1}"#, if_absent()),
                batch_put("alice", r#"{"n":3}"#, if_version(before.version)),
                batch_delete("carol-missing-is-fine?", None),
            ],
        })
        .await;
    // Deleting a missing document fails the whole batch (NOT_FOUND) and writes nothing.
    assert_code(vbatch, Code::NotFound);
    assert_code(c.get(get("app", "users", "carol")).await, Code::NotFound);
    let vbatch = c
        .batch(pb::BatchRequest {
            table: table("app", "users"),
            operations: vec![
                batch_put("carol", r#"{"c":1}"#, if_absent()),
                batch_put("alice", r#"{"n":3}"#, if_version(before.version)),
            ],
        })
        .await?
        .into_inner()
        .version;
    for key in ["carol", "alice"] {
        let d = c
            .get(get("app", "users", key))
            .await?
            .into_inner()
            .document
            .expect(key);
        assert_eq!(d.version, vbatch, "{key} carries the batch's version");
    }
    let s = assert_code(
        c.batch(pb::BatchRequest {
            table: table("app", "users"),
            operations: vec![pb::BatchOperation { op: None }],
        })
        .await,
        Code::InvalidArgument,
    );
    assert_eq!(s.message(), "batch operation without put or delete");

    // Admin.
    let mut admin = storaged.admin().await?;
    let stats = admin.stats(pb::StatsRequest {}).await?.into_inner();
    assert!(
        stats.commits > 0 && stats.durable_lsn >= vbatch,
        "{stats:?}"
    );
    let cp = admin
        .checkpoint(pb::CheckpointRequest {})
        .await?
        .into_inner();
    assert!(cp.pages_written > 0, "{cp:?}");
    let verify = admin.verify(pb::VerifyRequest {}).await?.into_inner();
    assert!(verify.clean, "{verify:?}");
    assert!(verify.pages_checked > 0);
    assert!(verify.bad_pages.is_empty());
    let stats2 = admin.stats(pb::StatsRequest {}).await?.into_inner();
    assert!(stats2.checkpoints > stats.checkpoints, "{stats2:?}");

    // A refused call is logged under the gateway's request id (the log is on stderr).
    let mut req = Request::new(get("app", "users", "nobody"));
    req.metadata_mut().insert(
        photondb_proto::metadata::REQUEST_ID,
        "req-ops-0002".parse()?,
    );
    req.metadata_mut().insert(
        photondb_proto::metadata::PRINCIPAL,
        "key:test-principal".parse()?,
    );
    assert_code(c.get(req).await, Code::NotFound);
    let logged = photondb_tests::wait_until(Duration::from_secs(10), || {
        storaged.stderr().contains("req-ops-0002").then_some(())
    })
    .await;
    assert!(
        logged.is_some(),
        "request id not in logs:\n{}",
        storaged.stderr()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_serving_and_reflection_lists_the_services() -> anyhow::Result<()> {
    use tokio_stream::StreamExt as _;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let certs = TestCerts::new()?;
    let storaged = Storaged::start(&certs, Overrides::default())?;
    let channel = storaged.channel().await?;

    let mut health = HealthClient::new(channel.clone());
    for service in ["", "photondb.v1.Storage"] {
        let r = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await?
            .into_inner();
        assert_eq!(r.status(), ServingStatus::Serving, "service {service:?}");
    }
    let s = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "no.such.Service".into(),
        })
        .await
        .expect_err("unknown service");
    assert_eq!(s.code(), Code::NotFound);

    let mut reflection = ServerReflectionClient::new(channel);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = reflection
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await?
        .into_inner();
    let reply = stream.next().await.expect("one reply")?;
    let Some(MessageResponse::ListServicesResponse(list)) = reply.message_response else {
        panic!("unexpected reflection reply: {reply:?}");
    };
    let names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
    for expected in [
        "photondb.v1.Storage",
        "photondb.v1.Admin",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    Ok(())
}
