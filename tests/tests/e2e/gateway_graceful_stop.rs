//! SIGTERM stops the real gateway cleanly: it exits 0 within a deadline.

use std::time::{Duration, Instant};

use photondb_tests::gateway::{Gateway, Protocol};
use photondb_tests::{Overrides, Storaged, TestCerts};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_0() {
    let certs = TestCerts::new().unwrap();
    let storaged = Storaged::start(&certs, Overrides::default()).unwrap();
    let mut gw = Gateway::start(&certs, storaged.addr(), |_| {}).unwrap();
    let c = gw.client(Protocol::Http2).await.unwrap();
    c.put("/v1/dbs/stop", "").await.unwrap().expect(201, None);
    drop(c);

    let started = Instant::now();
    let status = gw.stop().unwrap();
    let took = started.elapsed();
    assert!(status.success(), "{status:?}; stderr:\n{}", gw.stderr());
    assert!(took < Duration::from_secs(10), "SIGTERM took {took:?}");
}
