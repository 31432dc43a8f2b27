//! The real gateway refuses what it must (DESIGN §2 steps 4, 5, 10) with problem+json, a
//! stable `code` and the request id, and never with internal text; refused writes write
//! nothing to the real storaged.

use photondb_tests::gateway::{Gateway, HttpsClient, Protocol, Reply};
use photondb_tests::{Overrides, Storaged, TestCerts};

const MAX_BODY: usize = 4096;
const T: &str = "/v1/dbs/shop/tables/items";

struct Stack {
    _certs: TestCerts,
    storaged: Storaged,
    gateway: Gateway,
}

async fn stack() -> Stack {
    let certs = TestCerts::new().unwrap();
    let storaged = Storaged::start(&certs, Overrides::default()).unwrap();
    let gateway = Gateway::start(&certs, storaged.addr(), |c| {
        c.limits.max_body_bytes = MAX_BODY;
        c.limits.max_json_depth = 8;
        c.limits.body_timeout_ms = 1_000;
    })
    .unwrap();
    let s = Stack {
        _certs: certs,
        storaged,
        gateway,
    };
    let c = s.gateway.client(Protocol::Http2).await.unwrap();
    c.put("/v1/dbs/shop", "").await.unwrap().expect(201, None);
    c.put(T, "").await.unwrap().expect(201, None);
    s
}

impl Stack {
    /// `status` + `code`, and nothing of storaged's data directory in the body.
    fn check(&self, r: &Reply, status: u16, code: &str) {
        r.expect(status, Some(code));
        let data_dir = self.storaged.data_dir().display().to_string();
        let work = self.storaged.work_dir().display().to_string();
        r.assert_no_internal_text(&[&data_dir, &work, "storaged", "grpc", "Connection"]);
    }
}

async fn nothing_stored(c: &HttpsClient, key: &str) {
    c.get(&format!("{T}/docs/{key}"))
        .await
        .unwrap()
        .expect(404, Some("not_found"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_body_is_413_and_not_written() {
    let s = stack().await;
    for p in Protocol::BOTH {
        let c = s.gateway.client(p).await.unwrap();
        let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(MAX_BODY));
        let r = c.put(&format!("{T}/docs/big"), big).await.unwrap();
        s.check(&r, 413, "payload_too_large");
        let batch = format!(
            r#"{{"operations":[{{"op":"put","key":"big","value":{{"pad":"{}"}}}}]}}"#,
            "x".repeat(MAX_BODY)
        );
        let r = c.post(&format!("{T}/batch"), batch).await.unwrap();
        s.check(&r, 413, "payload_too_large");
        nothing_stored(&c, "big").await;
        // Exactly at the limit is accepted.
        let pad = MAX_BODY - r#"{"pad":""}"#.len();
        let at_limit = format!(r#"{{"pad":"{}"}}"#, "y".repeat(pad));
        assert_eq!(at_limit.len(), MAX_BODY);
        let r = c.put(&format!("{T}/docs/limit"), at_limit).await.unwrap();
        r.expect(200, None);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_payloads_are_400() {
    let s = stack().await;
    let cases: &[(&str, &str, &str)] = &[
        ("/docs/k", r#"{"a":"#, "json_malformed"),
        ("/docs/k", r#"{"a":1} trailing"#, "json_malformed"),
        ("/docs/k", "", "json_malformed"),
        ("/docs/k", "[1,2]", "document_not_object"),
        ("/docs/k", "\"text\"", "document_not_object"),
        (
            "/docs/k",
            r#"{"a":{"a":{"a":{"a":{"a":{"a":{"a":{"a":{"a":{}}}}}}}}}}"#,
            "json_too_deep",
        ),
        ("/batch", "{", "json_malformed"),
        ("/batch", r#"{"ops":[]}"#, "bad_batch"),
        ("/batch", r#"{"operations":[]}"#, "bad_batch"),
        (
            "/batch",
            r#"{"operations":[{"op":"frobnicate","key":"k"}]}"#,
            "bad_batch",
        ),
        (
            "/batch",
            r#"{"operations":[{"op":"put","key":"k","value":[1]}]}"#,
            "document_not_object",
        ),
    ];
    for p in Protocol::BOTH {
        let c = s.gateway.client(p).await.unwrap();
        for (suffix, body, code) in cases {
            let target = format!("{T}{suffix}");
            let method = if *suffix == "/batch" { "POST" } else { "PUT" };
            let r = c
                .send(method, &target, &[], body.as_bytes().to_vec().into())
                .await
                .unwrap();
            assert_eq!(r.code().as_deref(), Some(*code), "{p:?} {body:?}: {r}");
            s.check(&r, 400, code);
        }
        // Not UTF-8 at all.
        let r = c
            .send(
                "PUT",
                &format!("{T}/docs/k"),
                &[],
                vec![b'{', 0xff, b'}'].into(),
            )
            .await
            .unwrap();
        s.check(&r, 400, "json_not_utf8");
        nothing_stored(&c, "k").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_names_keys_queries_and_headers_are_400() {
    let s = stack().await;
    let long_name = "a".repeat(65);
    let long_key = "k".repeat(513);
    let cases: Vec<(&str, String, &str)> = vec![
        ("PUT", "/v1/dbs/Shop".into(), "bad_name"),
        ("PUT", format!("/v1/dbs/{long_name}"), "bad_name"),
        ("PUT", "/v1/dbs/sh%20op".into(), "bad_name"),
        ("PUT", "/v1/dbs/shop/tables/it.ems".into(), "bad_name"),
        ("GET", "/v1/dbs/shop/tables/ITEMS/docs/k".into(), "bad_name"),
        ("GET", format!("{T}/docs/{long_key}"), "bad_key"),
        // Percent-decoding to bytes that are not UTF-8 fails the path check first.
        ("GET", format!("{T}/docs/%FF%FE"), "path_not_normal"),
        ("GET", "/v1/dbs?x=1".into(), "bad_query"),
        ("GET", format!("{T}/docs?limit=ten"), "bad_query"),
        ("GET", format!("{T}/docs?colour=red"), "bad_query"),
        ("GET", format!("{T}/docs?prefix={long_key}"), "bad_query"),
    ];
    for p in Protocol::BOTH {
        let c = s.gateway.client(p).await.unwrap();
        for (method, target, code) in &cases {
            let r = c.send(method, target, &[], "".into()).await.unwrap();
            assert_eq!(
                r.code().as_deref(),
                Some(*code),
                "{p:?} {method} {target}: {r}"
            );
            s.check(&r, 400, code);
        }
        let doc = format!("{T}/docs/k");
        for (name, value) in [
            ("if-match", "W/\"1\""),
            ("if-match", "\"one\""),
            ("if-none-match", "\"1\""),
        ] {
            let r = c
                .send("PUT", &doc, &[(name, value)], "{}".into())
                .await
                .unwrap();
            s.check(&r, 400, "bad_precondition");
        }
        let r = c
            .send("PUT", &doc, &[("content-encoding", "gzip")], "{}".into())
            .await
            .unwrap();
        s.check(&r, 415, "content_encoding_refused");
        let r = c.send("GET", &doc, &[], "{}".into()).await.unwrap();
        s.check(&r, 400, "unexpected_body");
        nothing_stored(&c, "k").await;
    }
    let v = s
        .gateway
        .client(Protocol::Http2)
        .await
        .unwrap()
        .get("/v1/dbs")
        .await
        .unwrap()
        .expect(200, None);
    assert_eq!(
        v["databases"],
        serde_json::json!(["shop"]),
        "no bad name was created"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_not_in_normal_form_are_400_never_normalised() {
    let s = stack().await;
    let c = s.gateway.client(Protocol::Http2).await.unwrap();
    c.put(&format!("{T}/docs/x"), "{}")
        .await
        .unwrap()
        .expect(200, None);
    let paths = [
        "/v1/dbs/../dbs",
        "/v1/dbs/shop/tables/../tables",
        "/v1/dbs/./shop/tables",
        "/v1/dbs/shop/tables/items/docs/.%2E",
        "/v1/dbs/shop/tables/items/docs/a%2fb",
        "/v1//dbs",
        "//v1/dbs",
        "/v1/dbs/",
        "/v1/dbs/shop/tables/items/docs/x/",
        "/v1/dbs/%73hop/tables",
        "/v1/dbs/shop/tables/items/docs/%2e%2e",
    ];
    for path in paths {
        let r = s.gateway.raw_request("GET", path).await.unwrap();
        s.check(&r, 400, "path_not_normal");
        let r = s.gateway.raw_request("DELETE", path).await.unwrap();
        s.check(&r, 400, "path_not_normal");
        let r = c.get(path).await.unwrap();
        s.check(&r, 400, "path_not_normal");
    }
    c.get(&format!("{T}/docs/x"))
        .await
        .unwrap()
        .expect(200, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_are_404_and_wrong_methods_405() {
    let s = stack().await;
    for p in Protocol::BOTH {
        let c = s.gateway.client(p).await.unwrap();
        for path in [
            "/",
            "/v2/dbs",
            "/v1",
            "/metrics",
            "/v1/dbs/shop/views",
            "/public",
        ] {
            let r = c.get(path).await.unwrap();
            s.check(&r, 404, "route_not_found");
        }
        let cases = [
            ("POST", "/v1/dbs", "GET"),
            ("DELETE", "/v1/dbs", "GET"),
            ("GET", "/v1/dbs/shop", "PUT, DELETE"),
            ("POST", T, "PUT, DELETE"),
            ("PATCH", &format!("{T}/docs/k"), "GET, PUT, DELETE"),
            ("GET", &format!("{T}/batch"), "POST"),
            ("PUT", "/v1/storage/verify", "GET"),
            ("DELETE", "/public/health", "GET"),
        ];
        for (method, path, allow) in cases {
            let r = c.send(method, path, &[], "".into()).await.unwrap();
            let v = r.expect(405, Some("method_not_allowed"));
            assert_eq!(r.header("allow"), Some(allow), "{method} {path}: {r}");
            assert_eq!(v["detail"], format!("allowed: {allow}"), "{r}");
            s.check(&r, 405, "method_not_allowed");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storaged_refusals_reach_the_client_without_their_text() {
    let s = stack().await;
    let c = s.gateway.client(Protocol::Http1).await.unwrap();
    let r = c.put("/v1/dbs/nope/tables/t/docs/k", "{}").await.unwrap();
    s.check(&r, 404, "not_found");
    let r = c.get("/v1/dbs/nope/tables").await.unwrap();
    s.check(&r, 404, "not_found");
    let r = c.put("/v1/dbs/shop", "").await.unwrap();
    s.check(&r, 409, "already_exists");
    let r = c.delete("/v1/dbs/shop/tables/nope").await.unwrap();
    s.check(&r, 404, "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_is_405_with_headers_and_no_body() {
    let s = stack().await;
    for p in Protocol::BOTH {
        let c = s.gateway.client(p).await.unwrap();
        for (path, status, allow) in [("/v1/health", 405, Some("GET")), ("/nope", 404, None)] {
            // Before edge.rs skipped the body for HEAD, HTTP/2 clients saw a stream error.
            let r = c.send("HEAD", path, &[], "".into()).await.unwrap();
            assert_eq!(r.status, status, "{p:?} {r}");
            assert_eq!(r.header("allow"), allow, "{r}");
            assert_eq!(r.header("content-type"), Some("application/problem+json"));
            assert_eq!(r.header("x-request-id"), r.sent_request_id.as_deref());
            assert!(r.body.is_empty(), "{p:?}: HEAD answered with a body: {r}");
        }
        // The connection is still good afterwards.
        c.get("/v1/health").await.unwrap().expect(200, None);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_that_are_not_uuids_are_replaced() {
    let s = stack().await;
    let c = s.gateway.client(Protocol::Http2).await.unwrap();
    let r = c
        .send(
            "GET",
            "/nope",
            &[("x-request-id", "../../etc/passwd")],
            "".into(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 404, "{r}");
    let rid = r.json()["request_id"].as_str().unwrap().to_owned();
    assert_eq!(r.header("x-request-id"), Some(rid.as_str()));
    assert!(uuid::Uuid::parse_str(&rid).is_ok(), "{r}");
    assert!(!r.text().contains("passwd"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_framing_refusals() {
    let s = stack().await;
    let host = s.gateway.authority();
    let doc = format!("{T}/docs/framed");
    // Well-formed credentials (they pass the pre-check; the body is refused before the
    // signature would be verified).
    let signed = s.gateway.signature_lines("PUT", &doc, b"{}");
    let head = |extra: &str| {
        format!("PUT {doc} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n{signed}{extra}\r\n")
    };

    // A declared length past the limit is refused before the body arrives.
    let raw = head(&format!("Content-Length: {}\r\n", MAX_BODY + 1)) + "{";
    let r = s.gateway.raw_http1(raw.as_bytes()).await.unwrap();
    s.check(&r, 413, "payload_too_large");

    // A chunked body that grows past the limit.
    let chunk = format!("{:x}\r\n{}\r\n", 1024, "a".repeat(1024));
    let raw = head("Transfer-Encoding: chunked\r\n") + &chunk.repeat(5) + "0\r\n\r\n";
    let r = s.gateway.raw_http1(raw.as_bytes()).await.unwrap();
    s.check(&r, 413, "payload_too_large");

    // A body that stops arriving: 408 after body_timeout_ms.
    let raw = head("Content-Length: 10\r\n") + "{}";
    let r = s.gateway.raw_http1(raw.as_bytes()).await.unwrap();
    s.check(&r, 408, "body_timeout");

    // Headers past max_header_bytes over HTTP/1.1.
    let c = s.gateway.client(Protocol::Http1).await.unwrap();
    let big = "a".repeat(20_000);
    let r = c
        .send("GET", "/v1/dbs", &[("x-big", &big)], "".into())
        .await
        .unwrap();
    s.check(&r, 431, "headers_too_large");

    // More headers than max_headers (64 by default), each of them small.
    let names: Vec<String> = (0..80).map(|i| format!("x-h{i}")).collect();
    let many: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "v")).collect();
    let c = s.gateway.client(Protocol::Http1).await.unwrap();
    let r = c
        .send("GET", "/public/health", &many, "".into())
        .await
        .unwrap();
    s.check(&r, 431, "headers_too_large");

    let c = s.gateway.client(Protocol::Http2).await.unwrap();
    nothing_stored(&c, "framed").await;
}

/// A refusal after the body was read to its end (409 from storaged, 412 on a stale version)
/// keeps the HTTP/1.1 connection: three requests one after another on one connection get
/// three answers. A refusal before the body was read (404 with a body still unread) closes
/// it (`Connection: close`, then end of stream), so the unread bytes are never taken for the
/// next request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_after_a_complete_body_keep_the_http1_connection() {
    let s = stack().await;
    let c = s.gateway.client(Protocol::Http2).await.unwrap();
    c.put(&format!("{T}/docs/k"), r#"{"a":1}"#)
        .await
        .unwrap()
        .expect(200, None);
    let host = s.gateway.authority();
    let body = r#"{"a":2}"#;
    let mut tls = s.gateway.tls(&[b"http/1.1"]).await.unwrap();
    let doc = format!("{T}/docs/k");
    let requests = [
        format!(
            "PUT /v1/dbs/shop HTTP/1.1\r\nHost: {host}\r\n{}Content-Length: 0\r\n\r\n",
            s.gateway.signature_lines("PUT", "/v1/dbs/shop", b"")
        ),
        format!(
            "PUT {doc} HTTP/1.1\r\nHost: {host}\r\nIf-Match: \"999999\"\r\n{}\
             Content-Length: {}\r\n\r\n{body}",
            s.gateway.signature_lines("PUT", &doc, body.as_bytes()),
            body.len()
        ),
        format!("GET /public/health HTTP/1.1\r\nHost: {host}\r\n\r\n"),
    ];
    for (raw, status) in requests.iter().zip([409, 412, 200]) {
        let (got, head) = exchange(&mut tls, raw).await;
        assert_eq!(got, status, "{head}");
        assert!(
            !head.to_ascii_lowercase().contains("connection: close"),
            "{head}"
        );
    }

    let mut tls = s.gateway.tls(&[b"http/1.1"]).await.unwrap();
    let raw = format!(
        "PUT /v1/nope HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let (got, head) = exchange(&mut tls, &raw).await;
    assert_eq!(got, 404);
    assert!(
        head.to_ascii_lowercase().contains("connection: close"),
        "{head}"
    );
    let mut rest = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tokio::io::AsyncReadExt::read_to_end(&mut tls, &mut rest),
    );
    assert!(read.await.is_ok(), "the gateway closes the connection");
}

/// Writes one request and reads exactly one response (header and `Content-Length` body);
/// returns its status and header.
async fn exchange(
    tls: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    raw: &str,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    tls.write_all(raw.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(std::time::Duration::from_secs(10), tls.read(&mut byte))
            .await
            .expect("an answer in time")
            .unwrap();
        assert_eq!(
            n,
            1,
            "the connection closed mid-answer: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).unwrap();
    let length = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length: ")
                .map(str::to_owned)
        })
        .map_or(0, |v| v.trim().parse::<usize>().unwrap());
    let mut body = vec![0u8; length];
    tls.read_exact(&mut body).await.unwrap();
    (head[9..12].parse().unwrap(), head)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_heads_get_an_answer_with_a_code_before_the_close() {
    let s = stack().await;
    let gw = &s.gateway;
    let host = gw.authority();
    let heads = [
        (
            "a fragment",
            format!("GET /v1/dbs#frag HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
            "path_not_normal",
        ),
        (
            "two Host headers",
            format!(
                "GET /public/health HTTP/1.1\r\nHost: {host}\r\nHost: evil.example\r\nConnection: close\r\n\r\n"
            ),
            "malformed_request",
        ),
        (
            "two different Content-Lengths",
            format!(
                "PUT {T}/docs/k HTTP/1.1\r\nHost: {host}\r\nContent-Length: 2\r\nContent-Length: 3\r\nConnection: close\r\n\r\n{{}}"
            ),
            "malformed_request",
        ),
        (
            "an absolute-form target naming another host",
            format!(
                "GET https://evil.example/public/health HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
            ),
            "malformed_request",
        ),
    ];
    for (what, raw, code) in heads {
        let r = gw.raw_http1(raw.as_bytes()).await;
        let r = r.unwrap_or_else(|e| panic!("{what}: no answer ({e})"));
        assert_eq!(
            (r.status, r.code().as_deref()),
            (400, Some(code)),
            "{what}: {r}"
        );
    }
}
