//! storaged bounds what a peer can hold: a TCP peer that never completes the TLS handshake is
//! cut off at the handshake deadline (and audited), and connections beyond `max_connections`
//! are closed until a slot frees up.

use std::time::Duration;

use photondb_tests::{Overrides, Storaged, TestCerts, pb};
use tokio::io::AsyncReadExt as _;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_peer_is_cut_off_at_the_handshake_deadline() -> anyhow::Result<()> {
    let certs = TestCerts::new()?;
    let overrides = Overrides {
        limits: vec!["handshake_timeout_ms = 300".into()],
        ..Overrides::default()
    };
    let storaged = Storaged::start(&certs, overrides)?;
    let mut silent = tokio::net::TcpStream::connect(storaged.addr()).await?;
    let local = silent.local_addr()?;
    let mut buf = [0u8; 64];
    // The server closes without a byte: EOF (or a reset) well before our own deadline.
    let read = tokio::time::timeout(Duration::from_secs(10), silent.read(&mut buf)).await;
    match read {
        Ok(Ok(0)) | Ok(Err(_)) => {}
        Ok(Ok(n)) => panic!("the server sent {n} bytes to a silent peer"),
        Err(_) => panic!("a silent peer was not cut off"),
    }
    let event = storaged
        .wait_for_audit(Duration::from_secs(10), |e| {
            e["kind"] == "mtls_refused" && e["peer"] == local.to_string()
        })
        .await?;
    assert_eq!(event["reason"], "handshake timed out");
    // A real client is unaffected.
    storaged
        .client()
        .await?
        .list_databases(pb::ListDatabasesRequest {})
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_are_closed_until_a_slot_frees() -> anyhow::Result<()> {
    let certs = TestCerts::new()?;
    let overrides = Overrides {
        limits: vec!["max_connections = 2".into()],
        ..Overrides::default()
    };
    let storaged = Storaged::start(&certs, overrides)?;
    let mut first = storaged.client().await?;
    let mut second = storaged.client().await?;
    first.list_databases(pb::ListDatabasesRequest {}).await?;
    second.list_databases(pb::ListDatabasesRequest {}).await?;

    // A third connection is closed at accept: no handshake, no call.
    let third = storaged
        .endpoint(Some(storaged.gateway_client()))?
        .connect()
        .await;
    assert!(third.is_err(), "a third connection was accepted");
    // The two that hold slots keep working.
    first.list_databases(pb::ListDatabasesRequest {}).await?;
    second.list_databases(pb::ListDatabasesRequest {}).await?;

    // Closing one frees its slot: a new connection gets in (poll; the close is asynchronous).
    drop(second);
    let mut freed = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while freed.is_none() && tokio::time::Instant::now() < deadline {
        if let Ok(mut c) = storaged.client().await
            && c.list_databases(pb::ListDatabasesRequest {}).await.is_ok()
        {
            freed = Some(c);
        }
        if freed.is_none() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert!(freed.is_some(), "the freed slot was never reused");
    first.list_databases(pb::ListDatabasesRequest {}).await?;
    Ok(())
}
