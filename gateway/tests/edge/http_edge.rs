//! The edge over HTTP/1.1 + TLS against a real gateway whose storaged is down: routing and
//! validation refusals as problem+json, body limits, slowloris, read-only mode, the breaker,
//! health and metrics.

use crate::support;

use std::time::Duration;

use crate::support::{Gateway, request, send_raw, start};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn check(
    gw: &Gateway,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &[u8],
    status: u16,
    code: &str,
) {
    let r = request(gw, method, path, headers, body).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (status, code),
        "{method} {path}: {}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/problem+json")
    );
    assert!(
        r.json()["request_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn refusals_are_problem_json() {
    let gw = start("");
    check(&gw, "GET", "/v2/nothing", &[], b"", 404, "route_not_found").await;
    check(&gw, "POST", "/v1/dbs", &[], b"", 405, "method_not_allowed").await;
    check(
        &gw,
        "GET",
        "/v1/dbs/a/../b/tables",
        &[],
        b"",
        400,
        "path_not_normal",
    )
    .await;
    check(&gw, "GET", "/v1//dbs", &[], b"", 400, "path_not_normal").await;
    check(
        &gw,
        "GET",
        "/v1/dbs/a%2fb/tables",
        &[],
        b"",
        400,
        "path_not_normal",
    )
    .await;
    check(&gw, "PUT", "/v1/dbs/Bad.Name", &[], b"", 400, "bad_name").await;
    let doc = "/v1/dbs/db/tables/t/docs/k";
    check(
        &gw,
        "PUT",
        doc,
        &[],
        &[b'x'; 2048],
        413,
        "payload_too_large",
    )
    .await;
    check(
        &gw,
        "PUT",
        doc,
        &["Content-Encoding: gzip"],
        b"{}",
        415,
        "content_encoding_refused",
    )
    .await;
    check(&gw, "PUT", doc, &[], b"{\"a\":", 400, "json_malformed").await;
    check(&gw, "PUT", doc, &[], b"[1,2]", 400, "document_not_object").await;
    check(
        &gw,
        "PUT",
        doc,
        &[],
        b"{\"a\":\"\xff\"}",
        400,
        "json_not_utf8",
    )
    .await;
    check(
        &gw,
        "PUT",
        doc,
        &["If-Match: W/\"x\""],
        b"{}",
        400,
        "bad_precondition",
    )
    .await;
    check(
        &gw,
        "GET",
        "/v1/dbs/db/tables/t/docs?limit=abc",
        &[],
        b"",
        400,
        "bad_query",
    )
    .await;
    check(
        &gw,
        "POST",
        "/v1/dbs/db/tables/t/batch",
        &[],
        b"{\"operations\":[]}",
        400,
        "bad_batch",
    )
    .await;
    let r = request(&gw, "POST", "/v1/dbs", &[], b"").await;
    assert_eq!(r.header("allow").as_deref(), Some("GET"));
}

#[tokio::test(flavor = "multi_thread")]
async fn chunked_oversize_body_is_413() {
    let gw = start("");
    let mut raw = b"PUT /v1/dbs/db/tables/t/docs/k HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..3 {
        raw.extend_from_slice(b"200\r\n");
        raw.extend_from_slice(&[b' '; 0x200]);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    let r = send_raw(&gw, &raw).await;
    assert_eq!((r.status, r.code().as_str()), (413, "payload_too_large"));
}

#[tokio::test(flavor = "multi_thread")]
async fn public_health_is_loud_about_dev_mode() {
    let gw = start("");
    let r = request(&gw, "GET", "/public/health", &[], b"").await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["dev_mode"], true);
    assert!(v["warning"].as_str().unwrap().contains("DEV MODE"));
    assert_eq!(v["breaker"], "closed");
    let r = request(&gw, "GET", "/v1/health", &[], b"").await;
    assert_eq!((r.status, r.json()["dev_mode"].clone()), (200, true.into()));
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_down_is_503_then_the_breaker_opens() {
    let gw = start("");
    for _ in 0..2 {
        let r = request(&gw, "GET", "/v1/dbs", &[], b"").await;
        assert_eq!((r.status, r.code().as_str()), (503, "storage_unavailable"));
        assert!(
            !String::from_utf8_lossy(&r.body).contains("transport"),
            "no upstream text leaks"
        );
    }
    let health = request(&gw, "GET", "/public/health", &[], b"").await.json();
    assert_eq!(
        (health["breaker"].as_str(), health["status"].as_str()),
        (Some("open"), Some("unavailable"))
    );
    let r = request(&gw, "GET", "/v1/dbs", &[], b"").await;
    assert_eq!((r.status, r.code().as_str()), (503, "storage_unavailable"));
    assert_eq!(r.header("retry-after").as_deref(), Some("1"));
    let metrics = reqwest_metrics(&gw).await;
    assert!(
        metrics.contains("photondb_gateway_breaker_state 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("photondb_gateway_requests_total{route=\"list_dbs\",status=\"503\"} 3"),
        "{metrics}"
    );
}

/// Plain HTTP/1.0 to the private metrics listener.
async fn reqwest_metrics(gw: &Gateway) -> String {
    let mut tcp = tokio::net::TcpStream::connect(gw.metrics).await.unwrap();
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    tcp.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn read_only_flag_refuses_writes_hot() {
    let flag_dir = tempfile::tempdir().unwrap();
    let flag = flag_dir.path().join("read-only");
    let gw = start(&format!("read_only_flag = \"{}\"", flag.display()));
    let put = || request(&gw, "PUT", "/v1/dbs/db", &[], b"");
    assert_eq!(
        put().await.code(),
        "storage_unavailable",
        "writable before the flag"
    );
    std::fs::write(&flag, "1").unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let r = put().await;
        if r.code() == "read_only" {
            assert_eq!(r.status, 503);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "read-only never took effect"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let health = request(&gw, "GET", "/public/health", &[], b"").await.json();
    assert_eq!(
        (
            health["read_only"].as_bool(),
            health["read_only_reason"].as_str()
        ),
        (Some(true), Some("operator"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn slowloris_connection_is_closed() {
    let gw = start("");
    let mut tls = support::connect(&gw, &[b"http/1.1"]).await;
    tls.write_all(b"GET /public/health HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 64];
    for _ in 0..5 {
        // Keep trickling header bytes slower than the deadline allows in total.
        if tls.write_all(b"X-A: b\r\n").await.is_err() {
            break;
        }
        match tokio::time::timeout(Duration::from_millis(400), tls.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(_)) => panic!("no response expected for an incomplete header"),
            Err(_) => {}
        }
    }
    let closed = tokio::time::timeout(Duration::from_secs(3), tls.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "connection still open: {closed:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(4));
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_headers_are_431() {
    let gw = start("");
    let many: Vec<String> = (0..80).map(|i| format!("X-H{i}: v")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let r = request(&gw, "GET", "/public/health", &many, b"").await;
    assert_eq!((r.status, r.code().as_str()), (431, "headers_too_large"));
    let big = format!("X-Big: {}", "a".repeat(20_000));
    let r = request(&gw, "GET", "/public/health", &[&big], b"").await;
    assert_eq!((r.status, r.code().as_str()), (431, "headers_too_large"));
}

#[tokio::test(flavor = "multi_thread")]
async fn per_ip_rate_limit_is_429() {
    let gw = support::start_with_limits("ip_rate_per_sec = 1\nip_burst = 2\n");
    let codes: Vec<u16> = futures_statuses(&gw, 4).await;
    assert_eq!(&codes[..2], &[200, 200]);
    let r = request(&gw, "GET", "/public/health", &[], b"").await;
    assert_eq!((r.status, r.code().as_str()), (429, "ip_rate_limited"));
    assert!(r.header("retry-after").is_some());
}

async fn futures_statuses(gw: &Gateway, n: usize) -> Vec<u16> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(request(gw, "GET", "/public/health", &[], b"").await.status);
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_past_the_limit_are_closed() {
    let gw = support::start_with_limits("max_connections = 2\n");
    let _a = support::connect(&gw, &[b"http/1.1"]).await;
    let _b = support::connect(&gw, &[b"http/1.1"]).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut c = support::connect(&gw, &[b"http/1.1"]).await;
    let _ = c
        .write_all(b"GET /public/health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await;
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(3), c.read(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
    drop((_a, _b));
}
