//! HTTP/2 at the real gateway's edge, frame by frame (the `h2` crate as the client): the
//! SETTINGS carry `h2_max_concurrent_streams`, and a rapid-reset flood (CVE-2023-44487) ends
//! the connection.

use std::time::Duration;

use photondb_tests::gateway::{Gateway, RawConfig};
use photondb_tests::{Overrides, Storaged, TestCerts};

struct Stack {
    _certs: TestCerts,
    _storaged: Storaged,
    gateway: Gateway,
}

fn stack(tweak: impl Fn(&mut RawConfig)) -> Stack {
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
async fn settings_carry_the_configured_stream_limit() {
    let s = stack(|c| c.limits.h2_max_concurrent_streams = 7);
    let tls = s.gateway.tls(&[b"h2"]).await.unwrap();
    let (client, conn) = h2::client::handshake(tls).await.unwrap();
    tokio::spawn(conn);
    let mut client = client.ready().await.unwrap();
    let req = http::Request::get(format!("https://{}/public/health", s.gateway.authority()))
        .body(())
        .unwrap();
    let (resp, _) = client.send_request(req, true).unwrap();
    assert_eq!(resp.await.unwrap().status(), 200);
    assert_eq!(client.current_max_send_streams(), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_reset_gets_goaway() {
    // h2's reset-stream budget (limits.h2_max_pending_reset_streams) answers a flood of
    // HEADERS + RST_STREAM with GOAWAY ENHANCE_YOUR_CALM.
    let s = stack(|_| {});
    let tls = s.gateway.tls(&[b"h2"]).await.unwrap();
    let (client, conn) = h2::client::handshake(tls).await.unwrap();
    let conn = tokio::spawn(conn);
    let mut client = client.ready().await.unwrap();
    let target = format!("https://{}/v1/dbs/db/tables/t/batch", s.gateway.authority());
    for _ in 0..2_000 {
        let req = http::Request::post(target.as_str()).body(()).unwrap();
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
    drop(client);
}
