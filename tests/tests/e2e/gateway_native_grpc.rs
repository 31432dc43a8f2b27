//! Native gRPC through the real gateway: a tonic client over TLS calls
//! `photondb.v1.Storage/Put` then `Get`; the gateway re-issues each call to the real storaged.

use photondb_tests::gateway::{GATEWAY_NAME, Gateway, Protocol};
use photondb_tests::pb::storage_client::StorageClient;
use photondb_tests::{Overrides, Storaged, TestCerts, pb, table};
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

async fn gateway_channel(gw: &Gateway) -> Channel {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(gw.ca_pem()))
        .domain_name(GATEWAY_NAME);
    Endpoint::from_shared(format!("https://{}", gw.addr()))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_then_get_round_trips_to_storaged() {
    let certs = TestCerts::new().unwrap();
    let storaged = Storaged::start(&certs, Overrides::default()).unwrap();
    let gw = Gateway::start(&certs, storaged.addr(), |_| {}).unwrap();
    let mut client = StorageClient::new(gateway_channel(&gw).await);

    client
        .create_database(pb::CreateDatabaseRequest { db: "g".into() })
        .await
        .unwrap();
    client
        .create_table(pb::CreateTableRequest {
            table: table("g", "t"),
        })
        .await
        .unwrap();
    let put = client
        .put(pb::PutRequest {
            table: table("g", "t"),
            key: "k1".into(),
            value: br#"{"via":"grpc"}"#.to_vec(),
            precondition: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(put.version > 0);

    let got = client
        .get(pb::GetRequest {
            table: table("g", "t"),
            key: "k1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let doc = got.document.expect("a document");
    assert_eq!(
        (doc.key.as_str(), doc.value.as_slice(), doc.version),
        ("k1", &br#"{"via":"grpc"}"#[..], put.version)
    );

    // It really is in storaged: read it straight from storaged over mTLS.
    let direct = storaged
        .client()
        .await
        .unwrap()
        .get(pb::GetRequest {
            table: table("g", "t"),
            key: "k1".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .document
        .unwrap();
    assert_eq!(direct.version, put.version);

    // And REST sees the same document.
    let rest = gw.client(Protocol::Http2).await.unwrap();
    let v = rest
        .get("/v1/dbs/g/tables/t/docs/k1")
        .await
        .unwrap()
        .expect(200, None);
    assert_eq!(v["version"], put.version);
    assert_eq!(v["value"]["via"], "grpc");

    // Refusals are gRPC statuses carrying the stable code, never storaged's text.
    let missing = client
        .get(pb::GetRequest {
            table: table("g", "t"),
            key: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        (missing.code(), missing.message()),
        (Code::NotFound, "not_found")
    );
    let bad = client
        .put(pb::PutRequest {
            table: table("g", "T"),
            key: "k".into(),
            value: b"{}".to_vec(),
            precondition: None,
        })
        .await
        .unwrap_err();
    assert_eq!(
        (bad.code(), bad.message()),
        (Code::InvalidArgument, "bad_name")
    );
    let not_json = client
        .put(pb::PutRequest {
            table: table("g", "t"),
            key: "k2".into(),
            value: b"[1]".to_vec(),
            precondition: None,
        })
        .await
        .unwrap_err();
    assert_eq!(
        (not_json.code(), not_json.message()),
        (Code::InvalidArgument, "document_not_object")
    );
}
