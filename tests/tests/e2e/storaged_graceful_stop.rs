//! SIGTERM stops storaged cleanly under load: it exits 0 within a deadline even with client
//! connections open, records why it stopped, and every acknowledged write is there on restart.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use photondb_tests::{Overrides, Storaged, TestCerts, pb, table, wait_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_exits_0_and_keeps_acknowledged_writes() -> anyhow::Result<()> {
    let certs = TestCerts::new()?;
    let mut storaged = Storaged::start(&certs, Overrides::default())?;
    let mut c = storaged.client().await?;
    photondb_tests::create_table(&mut c, "app", "t").await?;
    // An idle connection stays open throughout.
    let mut idle = storaged.client().await?;
    idle.list_databases(pb::ListDatabasesRequest::default())
        .await?;

    let acked: Arc<Mutex<Vec<(String, u64)>>> = Arc::default();
    let writer = {
        let (mut c, acked) = (c.clone(), acked.clone());
        tokio::spawn(async move {
            for n in 0u64.. {
                let key = format!("k{n:06}");
                let reply = c
                    .put(pb::PutRequest {
                        table: table("app", "t"),
                        key: key.clone(),
                        value: b"{}".to_vec(),
                        precondition: None,
                    })
                    .await;
                match reply {
                    Ok(r) => acked
                        .lock()
                        .expect("acked")
                        .push((key, r.into_inner().version)),
                    Err(status) => return status,
                }
            }
            unreachable!("the loop only ends by returning")
        })
    };
    let started = wait_until(Duration::from_secs(30), || {
        (acked.lock().expect("acked").len() >= 20).then_some(())
    })
    .await;
    assert!(started.is_some(), "the load made no progress");

    let status = storaged.stop()?;
    assert_eq!(status.code(), Some(0), "SIGTERM exit status");
    let ended = tokio::time::timeout(Duration::from_secs(30), writer).await??;
    assert!(
        ended_by_the_connection(&ended),
        "the writer stopped on a served refusal: {ended:?}"
    );
    let stopped = storaged
        .wait_for_audit(Duration::from_secs(5), |e| e["kind"] == "stopped")
        .await?;
    assert_eq!(stopped["reason"], "Requested");

    storaged.restart()?;
    let mut c = storaged.client().await?;
    let acked = acked.lock().expect("acked").clone();
    photondb_tests::assert_versions(&mut c, "app", "t", &acked).await?;
    Ok(())
}

/// The call failed because the connection went away (GOAWAY, reset, refused), not because
/// storaged answered it with a refusal. A request racing the GOAWAY surfaces as INTERNAL
/// "h2 protocol error" with the transport error as its source.
fn ended_by_the_connection(status: &tonic::Status) -> bool {
    let transport = std::error::Error::source(status)
        .is_some_and(|source| source.is::<tonic::transport::Error>());
    transport
        || matches!(
            status.code(),
            tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled
        )
}
