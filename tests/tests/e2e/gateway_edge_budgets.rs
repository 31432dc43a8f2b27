//! The real gateway's budgets before authentication (issue "hardening the edges", items 1–3
//! and 7), each tried as an attacker would:
//! - connections counted from `accept`: silent sockets are closed at the handshake deadline,
//!   or at once past the per-IP cap, and never lock out a client that completes its
//!   handshake;
//! - request bodies: past the global byte budget or the per-connection body cap a request is
//!   refused at once with 503 `overloaded`, and the gateway's memory stays flat;
//! - early answers: curl, uploading, still prints the 413 over HTTP/2 and HTTP/1.1;
//! - overload at storaged is 503 `overloaded` and leaves the circuit breaker closed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use photondb_tests::gateway::{GATEWAY_NAME, Gateway, Protocol, RawConfig, tls_config};
use photondb_tests::{Overrides, Storaged, TestCerts};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};

struct Stack {
    _certs: TestCerts,
    _storaged: Storaged,
    gateway: Gateway,
}

fn stack(tweak: impl Fn(&mut RawConfig)) -> Stack {
    stack_with(Overrides::default(), tweak)
}

fn stack_with(storaged: Overrides, tweak: impl Fn(&mut RawConfig)) -> Stack {
    let certs = TestCerts::new().unwrap();
    let storaged = Storaged::start(&certs, storaged).unwrap();
    let gateway = Gateway::start(&certs, storaged.addr(), tweak).unwrap();
    Stack {
        _certs: certs,
        _storaged: storaged,
        gateway,
    }
}

/// The gateway process's resident memory, in KiB.
fn rss_kib(gw: &Gateway) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", gw.pid().unwrap())).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Whether the server closed `socket` (EOF or reset) before `deadline`.
async fn closed_by(socket: &mut TcpStream, deadline: Instant) -> bool {
    let mut buf = [0u8; 64];
    let left = deadline.saturating_duration_since(Instant::now());
    matches!(
        tokio::time::timeout(left, socket.read(&mut buf)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

/// A TCP connection to `to` from the loopback address `from` (Linux answers all of 127/8).
async fn connect_from(from: [u8; 4], to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((from, 0))).unwrap();
    socket.connect(to).await.unwrap()
}

/// `GET /public/health` over TLS on `tcp`; the status line's code.
async fn health_over(gw: &Gateway, tcp: TcpStream) -> anyhow::Result<u16> {
    let connector = tokio_rustls::TlsConnector::from(tls_config(gw.ca_pem(), &[b"http/1.1"])?);
    let mut tls = connector
        .connect(ServerName::try_from(GATEWAY_NAME)?, tcp)
        .await?;
    let request = format!(
        "GET /public/health HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        gw.authority()
    );
    tls.write_all(request.as_bytes()).await?;
    let mut answer = Vec::new();
    // The answer is what counts; how the connection then ends is not under test here.
    let ended = tls.read_to_end(&mut answer).await;
    if answer.is_empty() {
        ended?;
    }
    let text = String::from_utf8_lossy(&answer);
    let code = text.split_whitespace().nth(1).unwrap_or_default();
    Ok(code.parse()?)
}

async fn silent_sockets(to: SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut sockets = Vec::with_capacity(n);
    for _ in 0..n {
        sockets.push(connect_from([127, 0, 0, 1], to).await);
    }
    sockets
}

const HANDSHAKE_TIMEOUT: Duration = Duration::from_millis(1_500);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_sockets_are_closed_at_the_handshake_deadline_and_lock_no_one_out() {
    let s = stack(|c| {
        c.limits.max_connections = 64;
        c.limits.max_pending_handshakes = 32;
        c.limits.max_connections_per_ip = 1_000;
        c.limits.handshake_timeout_ms = HANDSHAKE_TIMEOUT.as_millis() as u64;
    });
    let gw = &s.gateway;
    let opened = Instant::now();
    let mut silent = silent_sockets(gw.addr(), 64 + 100).await;
    let started = Instant::now();
    let served = health_over(gw, connect_from([127, 0, 0, 1], gw.addr()).await).await;
    let served_in = started.elapsed();
    if served.is_err() {
        eprintln!("{}", gw.metrics_text().await.unwrap());
    }
    assert_eq!(served.unwrap(), 200);
    assert!(
        served_in < Duration::from_secs(1),
        "served in {served_in:?}"
    );

    let deadline = opened + HANDSHAKE_TIMEOUT + Duration::from_millis(800);
    for (i, socket) in silent.iter_mut().enumerate() {
        assert!(
            closed_by(socket, deadline).await,
            "silent socket {i} still open {:?} after it was opened",
            opened.elapsed()
        );
    }
    eprintln!(
        "164 silent sockets, max_connections 64: a real client served in {served_in:?}; all \
         closed {:?} after opening (handshake timeout {HANDSHAKE_TIMEOUT:?})",
        opened.elapsed()
    );
    let metrics = gw.metrics_text().await.unwrap();
    for code in ["handshake_evicted", "handshake_timeout"] {
        assert!(
            metrics.contains(code),
            "no {code} refusal counted:\n{metrics}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_per_ip_cap_connections_are_closed_at_once() {
    let s = stack(|c| {
        c.limits.max_connections_per_ip = 16;
        c.limits.handshake_timeout_ms = HANDSHAKE_TIMEOUT.as_millis() as u64;
    });
    let gw = &s.gateway;
    // The harness's start-up probes are gone by now (the sweeper forgets them within 100 ms).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let silent = silent_sockets(gw.addr(), 100).await;
    let opened = Instant::now();
    // Past the cap they are closed at accept, long before the handshake deadline. (Which 16
    // are kept depends on the order the gateway's tasks ran in, not the order of connects.)
    let soon = opened + Duration::from_millis(500);
    let mut kept = Vec::new();
    for mut socket in silent {
        if !closed_by(&mut socket, soon).await {
            kept.push(socket);
        }
    }
    assert_eq!(kept.len(), 16, "sockets past the per-IP cap kept open");
    let mut silent = kept;
    // Another client address is not affected.
    let started = Instant::now();
    let status = health_over(gw, connect_from([127, 0, 0, 2], gw.addr()).await).await;
    assert_eq!(status.unwrap(), 200);
    assert!(started.elapsed() < Duration::from_secs(1));
    // The 16 within the cap last until the deadline, not longer.
    let deadline = opened + HANDSHAKE_TIMEOUT + Duration::from_millis(800);
    for socket in silent.iter_mut() {
        assert!(
            closed_by(socket, deadline).await,
            "a pending handshake outlived its deadline"
        );
    }
    let metrics = gw.metrics_text().await.unwrap();
    assert!(metrics.contains("max_connections_per_ip"), "{metrics}");
}

/// The credential headers of a request signed for `body` (the body itself is never sent
/// whole: these requests stall or are refused before it ends).
fn signed_headers(gw: &Gateway, method: &str, target: &str, body: &[u8]) -> Vec<(String, String)> {
    let signed = gw.signed_request(method, target, body);
    let text = String::from_utf8_lossy(&signed.bytes);
    let head = text.split("\r\n\r\n").next().unwrap();
    head.lines()
        .skip(1)
        .filter_map(|l| l.split_once(": "))
        .filter(|(n, _)| !["host", "connection"].contains(&n.to_ascii_lowercase().as_str()))
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .collect()
}

const DOC: &str = "/v1/dbs/edge/tables/t/docs/k";

/// Reads an HTTP/1.1 answer's status and body text, within `within`.
async fn answer_of<S: tokio::io::AsyncRead + Unpin>(s: &mut S, within: Duration) -> Option<String> {
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(within, s.read(&mut buf))
        .await
        .ok()?
        .ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

type Tls = tokio_rustls::client::TlsStream<TcpStream>;

/// A TLS connection to the gateway from the loopback address `from`.
async fn tls_from(gw: &Gateway, from: [u8; 4], alpn: &[&[u8]]) -> Tls {
    let connector = tokio_rustls::TlsConnector::from(tls_config(gw.ca_pem(), alpn).unwrap());
    let tcp = connect_from(from, gw.addr()).await;
    let name = ServerName::try_from(GATEWAY_NAME).unwrap();
    connector.connect(name, tcp).await.unwrap()
}

/// Starts a signed PUT declaring 1 MiB from `from` and sends `sent` bytes of it; the answer
/// if one came within 500 ms (a refusal), else the stalled connection.
async fn stalled_upload(gw: &Gateway, from: [u8; 4], sent: usize) -> Result<Tls, String> {
    let full = vec![b' '; 1 << 20];
    let mut head = format!("PUT {DOC} HTTP/1.1\r\nHost: {}\r\n", gw.authority());
    for (n, v) in signed_headers(gw, "PUT", DOC, &full) {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut tls = tls_from(gw, from, &[b"http/1.1"]).await;
    tls.write_all(head.as_bytes()).await.unwrap();
    let _ = tls.write_all(&full[..sent]).await;
    match answer_of(&mut tls, Duration::from_millis(500)).await {
        Some(answer) => Err(answer),
        None => Ok(tls),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_body_budget_requests_are_refused_at_once_and_memory_stays_flat() {
    let s = stack(|c| {
        c.limits.max_body_bytes_in_flight = 4 << 20;
        c.limits.max_body_bytes_in_flight_per_ip = 2 << 20;
    });
    let gw = &s.gateway;
    // Declaring a large body and sending nothing holds nothing: 50 such connections from
    // one address do not stop the next upload from it.
    let mut idle = Vec::new();
    for _ in 0..50 {
        idle.push(
            stalled_upload(gw, [127, 0, 0, 3], 0)
                .await
                .expect("no answer yet"),
        );
    }
    let before = rss_kib(gw);
    // 40 uploads that stall after 512 KiB: one address may hold 2 MiB of them.
    let (mut refused, mut held) = (0, Vec::new());
    for _ in 0..40 {
        match stalled_upload(gw, [127, 0, 0, 1], 512 << 10).await {
            Ok(tls) => held.push(tls),
            Err(a) if a.starts_with("HTTP/1.1 503") && a.contains("\"overloaded\"") => refused += 1,
            Err(a) => panic!("unexpected answer: {a}"),
        }
    }
    let after = rss_kib(gw);
    eprintln!(
        "40 uploads stalled after 512 KiB from one address (its share 2 MiB, budget 4 MiB): {} \
         held, {refused} refused at once; RSS {before} -> {after} KiB",
        held.len()
    );
    assert_eq!(held.len(), 4, "one address holds its 2 MiB share");
    assert_eq!(refused, 36);
    assert!(
        after.saturating_sub(before) < 12 * 1024,
        "RSS grew from {before} to {after} KiB"
    );
    // Other addresses still have the rest of the budget, including the one holding idle
    // connections.
    for from in [[127, 0, 0, 2], [127, 0, 0, 3]] {
        let upload = stalled_upload(gw, from, 512 << 10).await;
        assert!(upload.is_ok(), "{from:?} was refused: {:?}", upload.err());
        held.push(upload.unwrap());
    }
    drop(idle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_per_connection_cap_streams_are_refused_at_once() {
    let s = stack(|c| c.limits.max_bodies_per_connection = 8);
    let gw = &s.gateway;
    let tls = gw.tls(&[b"h2"]).await.unwrap();
    let (client, conn) = h2::client::handshake(tls).await.unwrap();
    tokio::spawn(conn);
    let mut client = client.ready().await.unwrap();
    let full = vec![b' '; 1 << 20];
    let headers = signed_headers(gw, "PUT", DOC, &full);
    let before = rss_kib(gw);
    let mut responses = Vec::new();
    let mut streams = Vec::new();
    for _ in 0..60 {
        let mut req = http::Request::put(format!("https://{}{DOC}", gw.authority()));
        for (n, v) in &headers {
            if !n.eq_ignore_ascii_case("content-length") {
                req = req.header(n.as_str(), v.as_str());
            }
        }
        client = client.ready().await.unwrap();
        let (response, mut stream) = client.send_request(req.body(()).unwrap(), false).unwrap();
        let _ = stream.send_data(Bytes::from_static(&[b' '; 16 * 1024]), false);
        responses.push(response);
        streams.push(stream);
    }
    let mut refused = 0;
    let mut pending = 0;
    for response in responses {
        match tokio::time::timeout(Duration::from_millis(500), response).await {
            Ok(Ok(r)) if r.status() == 503 => refused += 1,
            Ok(other) => panic!("unexpected answer: {other:?}"),
            Err(_) => pending += 1,
        }
    }
    let after = rss_kib(gw);
    eprintln!(
        "60 stalled streams on one connection, 8 bodies per connection: {pending} read, \
         {refused} refused at once; RSS {before} -> {after} KiB"
    );
    assert_eq!(pending, 8);
    assert_eq!(refused, 52);
    assert!(
        after.saturating_sub(before) < 8 * 1024,
        "RSS {before} -> {after} KiB"
    );
    drop(streams);
}

/// curl from Debian, PUTting `size` bytes to a document with valid credentials.
fn curl_put(gw: &Gateway, http: &str, size: usize) -> (std::process::Output, Duration) {
    let dir = gw.work_dir();
    let ca = dir.join("curl-ca.pem");
    std::fs::write(&ca, gw.ca_pem()).unwrap();
    let file = dir.join(format!("upload-{size}"));
    let body = vec![b' '; size];
    std::fs::write(&file, &body).unwrap();
    let mut cmd = std::process::Command::new("curl");
    cmd.args(["-sS", "--max-time", "20", http, "-X", "PUT", "--cacert"])
        .arg(&ca)
        .arg("--resolve")
        .arg(format!("{GATEWAY_NAME}:{}:127.0.0.1", gw.addr().port()))
        .arg("--data-binary")
        .arg(format!("@{}", file.display()))
        .args(["-H", "content-type: application/json"]);
    for (n, v) in signed_headers(gw, "PUT", DOC, &body) {
        if !n.eq_ignore_ascii_case("content-length") && !n.eq_ignore_ascii_case("content-type") {
            cmd.arg("-H").arg(format!("{n}: {v}"));
        }
    }
    cmd.arg(format!("https://{}{DOC}", gw.authority()));
    let started = Instant::now();
    let out = cmd.output().expect("curl runs");
    (out, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_uploading_too_much_reads_the_413() {
    let s = stack(|_| {});
    let gw = &s.gateway;
    for http in ["--http2", "--http1.1"] {
        let (out, took) = curl_put(gw, http, 2 << 20);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        eprintln!(
            "curl {http} PUT 2 MiB: {took:?}, exit {:?}",
            out.status.code()
        );
        assert!(out.status.success(), "curl {http} failed: {stderr}");
        assert!(
            stdout.contains("\"payload_too_large\""),
            "curl {http} printed: {stdout}"
        );
    }
    // A very large upload still ends promptly, and the gateway does not hold it.
    let before = rss_kib(gw);
    let (out, took) = curl_put(gw, "--http2", 64 << 20);
    let after = rss_kib(gw);
    eprintln!(
        "curl --http2 PUT 64 MiB: ended in {took:?} (exit {:?}); RSS {before} -> {after} KiB",
        out.status.code()
    );
    assert!(
        took < Duration::from_secs(10),
        "a 64 MiB upload took {took:?}"
    );
    assert!(
        after.saturating_sub(before) < 16 * 1024,
        "RSS {before} -> {after} KiB"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_at_storaged_is_shed_without_opening_the_breaker() {
    let storaged = Overrides {
        limits: vec!["max_concurrent_requests = 2".into()],
        ..Overrides::default()
    };
    let s = stack_with(storaged, |c| {
        c.breaker.failure_threshold = 2;
    });
    let gw = &s.gateway;
    let setup = gw.client(Protocol::Http2).await.unwrap();
    setup.create_table("edge", "t").await;
    let flood = Arc::new(gw.client(Protocol::Http2).await.unwrap());
    let doc = format!("{{\"pad\":\"{}\"}}", "x".repeat(200_000));
    let mut tasks = Vec::new();
    for i in 0..64 {
        let (flood, doc) = (flood.clone(), doc.clone());
        tasks.push(tokio::spawn(async move {
            let target = format!("/v1/dbs/edge/tables/t/docs/flood{i}");
            flood.put(&target, doc).await.unwrap()
        }));
    }
    let (mut ok, mut overloaded) = (0, 0);
    for t in tasks {
        let r = t.await.unwrap();
        match r.status {
            200 => ok += 1,
            503 => {
                r.expect(503, Some("overloaded"));
                overloaded += 1;
            }
            _ => panic!("unexpected answer: {r}"),
        }
    }
    eprintln!(
        "64 concurrent puts, storaged at 2 concurrent requests: {ok} served, {overloaded} shed"
    );
    assert!(overloaded > 0, "the flood never reached storaged's limit");
    let health = setup.get("/v1/health").await.unwrap().expect(200, None);
    assert_eq!(health["breaker"], "closed", "{health}");
    // Other clients are served.
    let other = gw.client(Protocol::Http1).await.unwrap();
    other.put(DOC, "{\"a\":1}").await.unwrap().expect(200, None);
}
