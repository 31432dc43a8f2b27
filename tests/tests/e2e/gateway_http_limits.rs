//! The real gateway's connection-level limits (DESIGN §2 steps 1–3): a client trickling its
//! header is cut off at `header_timeout_ms`, one address past its rate gets 429
//! `ip_rate_limited`, and connections past `max_connections` are closed unanswered (before their TLS handshake).

use std::time::{Duration, Instant};

use photondb_tests::gateway::{Gateway, Protocol};
use photondb_tests::{Overrides, Storaged, TestCerts};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

struct Stack {
    _certs: TestCerts,
    _storaged: Storaged,
    gateway: Gateway,
}

fn stack(tweak: impl Fn(&mut photondb_tests::gateway::RawConfig)) -> Stack {
    let certs = TestCerts::new().unwrap();
    let storaged = Storaged::start(&certs, Overrides::default()).unwrap();
    let gateway = Gateway::start(&certs, storaged.addr(), tweak).unwrap();
    Stack {
        _certs: certs,
        _storaged: storaged,
        gateway,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_connection_is_closed() {
    let s = stack(|c| c.limits.header_timeout_ms = 1_000);
    let mut tls = s.gateway.tls(&[b"http/1.1"]).await.unwrap();
    let start = format!(
        "GET /public/health HTTP/1.1\r\nHost: {}\r\n",
        s.gateway.authority()
    );
    tls.write_all(start.as_bytes()).await.unwrap();
    let started = Instant::now();
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
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_ip_rate_limit_is_429() {
    let s = stack(|c| {
        c.limits.ip_rate_per_sec = 1;
        c.limits.ip_burst = 2;
    });
    let c = s.gateway.client(Protocol::Http1).await.unwrap();
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(c.get("/public/health").await.unwrap().status);
    }
    assert_eq!(
        &statuses[..2],
        &[200, 200],
        "the burst is served: {statuses:?}"
    );
    let r = c.get("/public/health").await.unwrap();
    r.expect(429, Some("ip_rate_limited"));
    assert!(r.header("retry-after").is_some(), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_limit_are_closed() {
    let s = stack(|c| c.limits.max_connections = 2);
    let gw = &s.gateway;
    let a = gw.tls(&[b"http/1.1"]).await.unwrap();
    let b = gw.tls(&[b"http/1.1"]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Counted from accept: the third is closed before its TLS handshake can finish.
    if let Ok(mut c) = gw.tls(&[b"http/1.1"]).await {
        let request = format!(
            "GET /public/health HTTP/1.1\r\nHost: {}\r\n\r\n",
            gw.authority()
        );
        let _ = c.write_all(request.as_bytes()).await;
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(Duration::from_secs(3), c.read(&mut buf)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
    }
    drop((a, b));

    // Positive control: once those are gone, a new connection is served.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let served = match gw.client(Protocol::Http1).await {
            Ok(client) => client.get("/public/health").await.ok(),
            Err(_) => None,
        };
        if let Some(r) = served {
            r.expect(200, None);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no connection was served after the others closed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
