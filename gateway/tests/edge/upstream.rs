//! REST and native gRPC through the gateway to a storaged stand-in over mTLS: every route
//! maps to its typed call, answers map back, metadata carries the request id and principal,
//! and upstream errors map to fixed codes without leaking upstream text.

use crate::support;

use std::sync::Arc;

use crate::support::storaged::{self, Fake, KEY_DATA_LOSS, KEY_SLOW};
use crate::support::{Gateway, request, start_with};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use photondb_proto::v1 as pb;
use prost::Message;

async fn gateway_with_fake() -> (Gateway, Fake) {
    let certs = Arc::new(support::certs());
    let fake = Fake::default();
    let port = storaged::start(&certs, fake.clone()).await;
    (start_with(certs, port, ""), fake)
}

async fn ok(
    gw: &Gateway,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &[u8],
    status: u16,
) -> serde_json::Value {
    let r = request(gw, method, path, headers, body).await;
    assert_eq!(
        r.status,
        status,
        "{method} {path}: {}",
        String::from_utf8_lossy(&r.body)
    );
    r.json()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_rest_route_round_trips() {
    let (gw, fake) = gateway_with_fake().await;
    let t = "/v1/dbs/shop/tables/items";
    ok(&gw, "PUT", "/v1/dbs/shop", &[], b"", 201).await;
    assert_eq!(
        request(&gw, "PUT", "/v1/dbs/shop", &[], b"").await.code(),
        "already_exists"
    );
    ok(&gw, "PUT", t, &[], b"", 201).await;
    assert_eq!(
        ok(&gw, "GET", "/v1/dbs", &[], b"", 200).await["databases"][0],
        "shop"
    );
    assert_eq!(
        ok(&gw, "GET", "/v1/dbs/shop/tables", &[], b"", 200).await["tables"][0],
        "items"
    );

    let v1 = ok(&gw, "PUT", &format!("{t}/docs/a1"), &[], br#"{"n":1}"#, 200).await["version"]
        .as_u64()
        .unwrap();
    let r = request(&gw, "GET", &format!("{t}/docs/a1"), &[], b"").await;
    assert_eq!(r.header("etag"), Some(format!("\"{v1}\"")));
    assert_eq!(
        (
            r.json()["value"]["n"].as_u64(),
            r.json()["version"].as_u64()
        ),
        (Some(1), Some(v1))
    );

    let stale = format!("If-Match: \"{}\"", v1 + 1);
    assert_eq!(
        request(&gw, "PUT", &format!("{t}/docs/a1"), &[&stale], b"{}")
            .await
            .code(),
        "version_mismatch"
    );
    let fresh = format!("If-Match: \"{v1}\"");
    ok(&gw, "PUT", &format!("{t}/docs/a1"), &[&fresh], b"{}", 200).await;
    let absent = request(
        &gw,
        "PUT",
        &format!("{t}/docs/a1"),
        &["If-None-Match: *"],
        b"{}",
    )
    .await;
    assert_eq!(
        (absent.status, absent.code().as_str()),
        (412, "version_mismatch")
    );

    let batch = br#"{"operations":[{"op":"put","key":"a2","value":{"n":2}},{"op":"put","key":"b1","value":{}},{"op":"delete","key":"a1"}]}"#;
    ok(&gw, "POST", &format!("{t}/batch"), &[], batch, 200).await;
    let page = ok(
        &gw,
        "GET",
        &format!("{t}/docs?prefix=a&limit=1"),
        &[],
        b"",
        200,
    )
    .await;
    assert_eq!(
        (
            page["documents"][0]["key"].as_str(),
            page["next_after"].as_str()
        ),
        (Some("a2"), None)
    );
    let page = ok(&gw, "GET", &format!("{t}/docs?limit=1"), &[], b"", 200).await;
    assert_eq!(page["next_after"], "a2");
    let public = ok(&gw, "GET", &format!("/public{t}/docs/a2"), &[], b"", 200).await;
    assert_eq!(public["value"]["n"], 2);

    ok(&gw, "DELETE", &format!("{t}/docs/a2"), &[], b"", 200).await;
    assert_eq!(
        request(&gw, "GET", &format!("{t}/docs/a2"), &[], b"")
            .await
            .code(),
        "not_found"
    );
    let verify = request(&gw, "GET", "/v1/storage/verify", &[], b"").await;
    assert_eq!(verify.json()["bad_pages"][0], 7);
    assert!(!String::from_utf8_lossy(&verify.body).contains("/var/lib"));
    assert_eq!(request(&gw, "DELETE", t, &[], b"").await.status, 204);
    assert_eq!(
        request(&gw, "DELETE", "/v1/dbs/shop", &[], b"")
            .await
            .status,
        204
    );

    let seen = fake.seen();
    assert!(
        seen.iter()
            .all(|(_, p)| p == "dev:anonymous-unauthenticated" || p == "anonymous"),
        "{seen:?}"
    );
    assert!(
        seen.iter().any(|(_, p)| p == "anonymous"),
        "the /public read is anonymous"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn request_id_reaches_storaged() {
    let (gw, fake) = gateway_with_fake().await;
    let id = "6f1c1f8e-5b0e-4a57-9d55-0c1f4f1d2a10";
    let r = request(
        &gw,
        "GET",
        "/v1/dbs",
        &[&format!("X-Request-Id: {id}")],
        b"",
    )
    .await;
    assert_eq!(r.header("x-request-id").as_deref(), Some(id));
    assert_eq!(fake.seen().last().unwrap().0, id);
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_errors_map_without_leaking() {
    let (gw, _fake) = gateway_with_fake().await;
    ok(&gw, "PUT", "/v1/dbs/d", &[], b"", 201).await;
    ok(&gw, "PUT", "/v1/dbs/d/tables/t", &[], b"", 201).await;
    let r = request(
        &gw,
        "GET",
        &format!("/v1/dbs/d/tables/t/docs/{KEY_DATA_LOSS}"),
        &[],
        b"",
    )
    .await;
    assert_eq!((r.status, r.code().as_str()), (500, "data_loss"));
    assert!(!String::from_utf8_lossy(&r.body).contains("/var/lib"));
    let r = request(
        &gw,
        "GET",
        &format!("/v1/dbs/d/tables/t/docs/{KEY_SLOW}"),
        &[],
        b"",
    )
    .await;
    assert_eq!((r.status, r.code().as_str()), (504, "storage_timeout"));
    let r = request(&gw, "PUT", "/v1/dbs/d/tables/none/docs/k", &[], b"{}").await;
    assert_eq!((r.status, r.code().as_str()), (404, "not_found"));
}

async fn grpc<M: Message, R: Message + Default>(
    gw: &Gateway,
    method: &str,
    msg: &M,
) -> Result<R, String> {
    let tls = support::connect(gw, &[b"h2"]).await;
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut body = vec![0u8];
    body.extend_from_slice(&(msg.encoded_len() as u32).to_be_bytes());
    msg.encode(&mut body).unwrap();
    let req = http::Request::post(format!("https://localhost/photondb.v1.Storage/{method}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let collected = sender
        .send_request(req)
        .await
        .unwrap()
        .into_body()
        .collect()
        .await
        .unwrap();
    let status = collected
        .trailers()
        .and_then(|t| t.get("grpc-status"))
        .map(|v| v.to_str().unwrap().to_string());
    let bytes = collected.to_bytes();
    match status.as_deref() {
        Some("0") => Ok(R::decode(&bytes[5..]).unwrap()),
        other => Err(other.unwrap_or_default().to_string()),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn native_grpc_round_trips() {
    let (gw, _fake) = gateway_with_fake().await;
    let table = Some(pb::TableRef {
        db: "g".into(),
        table: "t".into(),
    });
    let _: pb::CreateDatabaseResponse = grpc(
        &gw,
        "CreateDatabase",
        &pb::CreateDatabaseRequest { db: "g".into() },
    )
    .await
    .unwrap();
    let _: pb::CreateTableResponse = grpc(
        &gw,
        "CreateTable",
        &pb::CreateTableRequest {
            table: table.clone(),
        },
    )
    .await
    .unwrap();
    let put = pb::PutRequest {
        table: table.clone(),
        key: "k".into(),
        value: br#"{"x":true}"#.to_vec(),
        precondition: None,
    };
    let put: pb::PutResponse = grpc(&gw, "Put", &put).await.unwrap();
    let got: pb::GetResponse = grpc(
        &gw,
        "Get",
        &pb::GetRequest {
            table: table.clone(),
            key: "k".into(),
        },
    )
    .await
    .unwrap();
    let doc = got.document.unwrap();
    assert_eq!(
        (doc.value.as_slice(), doc.version),
        (&br#"{"x":true}"#[..], put.version)
    );
    let missing = grpc::<_, pb::GetResponse>(
        &gw,
        "Get",
        &pb::GetRequest {
            table,
            key: "nope".into(),
        },
    )
    .await;
    assert_eq!(missing.unwrap_err(), "5");
}
