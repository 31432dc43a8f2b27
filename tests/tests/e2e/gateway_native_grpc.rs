//! Native gRPC through the real gateway: a tonic client over TLS calls
//! `photondb.v1.Storage/Put` then `Get`; the gateway re-issues each call to the real storaged.
//! Refusals are gRPC statuses with the stable code: bad input, an unknown method, and
//! storaged being down.

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use photondb_proto::signing;
use photondb_tests::gateway::{GATEWAY_NAME, Gateway, PARTNER, Protocol};
use photondb_tests::pb::storage_client::StorageClient;
use photondb_tests::{Overrides, Storaged, TestCerts, pb, table};
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

/// A channel to the gateway whose `:authority` is the gateway's public host name.
pub(crate) async fn gateway_channel(gw: &Gateway) -> Channel {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(gw.ca_pem()))
        .domain_name(GATEWAY_NAME);
    let origin = format!("https://{}", gw.authority()).parse().unwrap();
    Endpoint::from_shared(format!("https://{}", gw.addr()))
        .unwrap()
        .origin(origin)
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// A request signed as partners sign native gRPC (DESIGN §3.2): method POST, the gRPC path,
/// no query, and the SHA-256 of the whole HTTP/2 body (the one framed message tonic sends).
pub(crate) fn signed<M: prost::Message>(gw: &Gateway, method: &str, msg: M) -> tonic::Request<M> {
    let encoded = msg.encode_to_vec();
    let mut body = vec![0u8];
    body.extend_from_slice(&(encoded.len() as u32).to_be_bytes());
    body.extend_from_slice(&encoded);
    let path = format!("/photondb.v1.Storage/{method}");
    let parts = signing::RequestParts {
        method: "POST",
        host: &gw.authority(),
        path: &path,
        query: "",
        body: signing::BodyDigest::of(&body),
    };
    let request_id = uuid::Uuid::new_v4().to_string();
    let timestamp = signing::Timestamp::now().format();
    let fields = signing::AuthFields::new(PARTNER, &request_id, &timestamp).unwrap();
    let headers = signing::signature_headers(&gw.partner_key(), &parts, &fields, None).unwrap();
    let mut req = tonic::Request::new(msg);
    for (name, value) in headers {
        req.metadata_mut().insert(name, value.parse().unwrap());
    }
    req
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_then_get_round_trips_to_storaged() {
    let certs = TestCerts::new().unwrap();
    let mut storaged = Storaged::start(&certs, Overrides::default()).unwrap();
    let gw = Gateway::start(&certs, storaged.addr(), |_| {}).unwrap();
    let mut client = StorageClient::new(gateway_channel(&gw).await);

    client
        .create_database(signed(
            &gw,
            "CreateDatabase",
            pb::CreateDatabaseRequest { db: "g".into() },
        ))
        .await
        .unwrap();
    client
        .create_table(signed(
            &gw,
            "CreateTable",
            pb::CreateTableRequest {
                table: table("g", "t"),
            },
        ))
        .await
        .unwrap();
    let put = client
        .put(signed(
            &gw,
            "Put",
            pb::PutRequest {
                table: table("g", "t"),
                key: "k1".into(),
                value: br#"{"via":"grpc"}"#.to_vec(),
                precondition: None,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(put.version > 0);

    let got = client
        .get(signed(
            &gw,
            "Get",
            pb::GetRequest {
                table: table("g", "t"),
                key: "k1".into(),
            },
        ))
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
        .get(signed(
            &gw,
            "Get",
            pb::GetRequest {
                table: table("g", "t"),
                key: "k1".into(),
            },
        ))
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
        .get(signed(
            &gw,
            "Get",
            pb::GetRequest {
                table: table("g", "t"),
                key: "nope".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(
        (missing.code(), missing.message()),
        (Code::NotFound, "not_found")
    );
    let bad = client
        .put(signed(
            &gw,
            "Put",
            pb::PutRequest {
                table: table("g", "T"),
                key: "k".into(),
                value: b"{}".to_vec(),
                precondition: None,
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(
        (bad.code(), bad.message()),
        (Code::InvalidArgument, "bad_name")
    );
    let not_json = client
        .put(signed(
            &gw,
            "Put",
            pb::PutRequest {
                table: table("g", "t"),
                key: "k2".into(),
                value: b"[1]".to_vec(),
                precondition: None,
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(
        (not_json.code(), not_json.message()),
        (Code::InvalidArgument, "document_not_object")
    );

    // A batch of 300,000 empty operations: 600 KB on the wire (under the body limit), some
    // 20 MB once decoded; counted on the wire first and refused before decoding.
    let empty_ops = client
        .batch(signed(
            &gw,
            "Batch",
            pb::BatchRequest {
                table: table("g", "t"),
                operations: vec![pb::BatchOperation::default(); 300_000],
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(
        (empty_ops.code(), empty_ops.message()),
        (Code::InvalidArgument, "batch_too_large")
    );

    // A method the service does not have: UNIMPLEMENTED (12), in an HTTP 200 answer.
    assert_eq!(
        raw_grpc_status(&gw, "/photondb.v1.Storage/Nope").await,
        (200, "12".to_owned())
    );

    // storaged down: UNAVAILABLE with the stable code.
    let status = storaged.stop().unwrap();
    assert!(status.success(), "{status:?}");
    let down = client
        .get(signed(
            &gw,
            "Get",
            pb::GetRequest {
                table: table("g", "t"),
                key: "k1".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(
        (down.code(), down.message()),
        (Code::Unavailable, "storage_unavailable")
    );
}

/// One gRPC call with an empty message, over a raw HTTP/2 connection (a tonic client cannot
/// call a method its service lacks); the HTTP status and the `grpc-status`.
async fn raw_grpc_status(gw: &Gateway, path: &str) -> (u16, String) {
    let tls = gw.tls(&[b"h2"]).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = http::Request::post(format!("https://{}{path}", gw.authority()))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(Bytes::from_static(&[0, 0, 0, 0, 0])))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let trailers = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .trailers()
        .cloned()
        .unwrap_or_default();
    // A trailers-only answer carries grpc-status in its headers.
    let grpc_status = trailers
        .get("grpc-status")
        .or_else(|| headers.get("grpc-status"))
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, grpc_status)
}
