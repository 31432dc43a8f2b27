//! TLS and HTTP/2 at the edge: TLS 1.3 with ALPN h2, TLS 1.2 still offered, certificate
//! reload without restart, and native gRPC re-issued through the pipeline.

use crate::support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::{Gateway, connect, start};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::Message;
use rustls::ProtocolVersion;
use rustls::pki_types::ServerName;

#[tokio::test(flavor = "multi_thread")]
async fn tls13_with_alpn_h2() {
    let gw = start("");
    let tls = connect(&gw, &[b"h2", b"http/1.1"]).await;
    let (_, conn) = tls.get_ref();
    assert_eq!(conn.protocol_version(), Some(ProtocolVersion::TLSv1_3));
    assert_eq!(conn.alpn_protocol(), Some(&b"h2"[..]));
    let tls = connect(&gw, &[b"http/1.1"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
}

#[tokio::test(flavor = "multi_thread")]
async fn tls12_offers_only_aead_suites() {
    let gw = start("");
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::pem::PemObject::from_pem_slice(gw.certs.ca_pem.as_bytes()).unwrap())
        .unwrap();
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS12])
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let suite = tls.get_ref().1.negotiated_cipher_suite().unwrap();
    let name = format!("{:?}", suite.suite());
    assert!(
        name.contains("GCM") || name.contains("CHACHA20_POLY1305"),
        "{name}"
    );
}

fn served_cert(tls: &tokio_rustls::client::TlsStream<tokio::net::TcpStream>) -> Vec<u8> {
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

#[tokio::test(flavor = "multi_thread")]
async fn certificate_reloads_without_restart() {
    let gw = start("");
    let before = served_cert(&connect(&gw, &[b"h2"]).await);
    // A new key pair from the same CA, written over the old files.
    let fresh = support::certs();
    let reissue = |name: &str| std::fs::copy(fresh.path(name), gw.certs.path(name)).unwrap();
    std::fs::write(gw.certs.path("ca.pem"), &fresh.ca_pem).unwrap();
    reissue("gateway.pem");
    reissue("gateway-key.pem");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        if let Ok(tls) = support::connector(&fresh, &[b"h2"])
            .connect(name, tcp)
            .await
        {
            assert_ne!(served_cert(&tls), before);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One unary gRPC call over HTTP/2; returns (grpc-status, grpc-message).
async fn grpc_call(gw: &Gateway, method: &str, msg: &impl Message) -> (String, String) {
    let tls = connect(gw, &[b"h2"]).await;
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
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let trailers = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .trailers()
        .cloned()
        .unwrap_or_default();
    let get = |k: &str| {
        trailers
            .get(k)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    (get("grpc-status"), get("grpc-message"))
}

#[tokio::test(flavor = "multi_thread")]
async fn native_grpc_goes_through_the_pipeline() {
    use photondb_proto::v1 as pb;
    let gw = start("");
    let table = Some(pb::TableRef {
        db: "db".into(),
        table: "t".into(),
    });
    let get = pb::GetRequest {
        table: table.clone(),
        key: "k".into(),
    };
    assert_eq!(
        grpc_call(&gw, "Get", &get).await,
        ("14".into(), "storage_unavailable".into())
    );
    let bad = pb::CreateDatabaseRequest { db: "No!".into() };
    assert_eq!(
        grpc_call(&gw, "CreateDatabase", &bad).await,
        ("3".into(), "bad_name".into())
    );
    let put = pb::PutRequest {
        table,
        key: "k".into(),
        value: b"[1]".to_vec(),
        precondition: None,
    };
    assert_eq!(
        grpc_call(&gw, "Put", &put).await,
        ("3".into(), "document_not_object".into())
    );
    assert_eq!(grpc_call(&gw, "Nope", &get).await.0, "12");
}

#[tokio::test(flavor = "multi_thread")]
async fn http2_settings_carry_the_configured_stream_limit() {
    let gw = support::start_with_limits("h2_max_concurrent_streams = 7\n");
    let tls = connect(&gw, &[b"h2"]).await;
    let (client, conn) = h2::client::handshake(tls).await.unwrap();
    tokio::spawn(conn);
    let mut client = client.ready().await.unwrap();
    let req = http::Request::get("https://localhost/public/health")
        .body(())
        .unwrap();
    let (resp, _) = client.send_request(req, true).unwrap();
    assert_eq!(resp.await.unwrap().status(), 200);
    assert_eq!(client.current_max_send_streams(), 7);
}

#[test]
fn sigterm_shuts_down_gracefully() {
    let mut gw = start("");
    let pid = gw.child.id().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = gw.child.try_wait().unwrap() {
            assert!(status.success(), "{status:?}");
            break;
        }
        assert!(Instant::now() < deadline, "still running after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn http2_rapid_reset_gets_goaway() {
    // CVE-2023-44487: h2's reset-stream budget (max_pending_accept_reset_streams) answers a
    // flood of HEADERS + RST_STREAM with GOAWAY ENHANCE_YOUR_CALM.
    let gw = start("");
    let tls = connect(&gw, &[b"h2"]).await;
    let (client, conn) = h2::client::handshake(tls).await.unwrap();
    let conn = tokio::spawn(conn);
    let mut client = client.ready().await.unwrap();
    for _ in 0..2_000 {
        let req = http::Request::post("https://localhost/v1/dbs/db/tables/t/batch")
            .body(())
            .unwrap();
        match client.send_request(req, false) {
            Ok((_, mut stream)) => stream.send_reset(h2::Reason::CANCEL),
            Err(_) => break,
        }
    }
    // `client` is still held: only the server can end the connection.
    let ended = tokio::time::timeout(Duration::from_secs(5), conn).await;
    // The GOAWAY frame itself can be lost when the server closes the socket right after it.
    match ended {
        Ok(Ok(Err(e))) if e.is_io() => {}
        Ok(Ok(Err(e))) => assert_eq!(e.reason(), Some(h2::Reason::ENHANCE_YOUR_CALM), "{e:?}"),
        other => panic!("connection did not end with an error: {other:?}"),
    }
}
