//! Past `max_concurrent_requests`, storaged refuses at once with RESOURCE_EXHAUSTED instead of
//! queueing, and a refused write does nothing.

use photondb_tests::{Overrides, Storaged, TestCerts, pb, table};
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_over_the_limit_are_refused_and_not_written() -> anyhow::Result<()> {
    let certs = TestCerts::new()?;
    let overrides = Overrides {
        limits: vec!["max_concurrent_requests = 1".into()],
        ..Overrides::default()
    };
    let storaged = Storaged::start(&certs, overrides)?;
    let c = storaged.client().await?;
    let mut setup = c.clone();
    setup
        .create_database(pb::CreateDatabaseRequest { db: "app".into() })
        .await?;
    setup
        .create_table(pb::CreateTableRequest {
            table: table("app", "t"),
        })
        .await?;

    let (mut served, mut refused) = (Vec::new(), Vec::new());
    // Each burst sends 64 puts at once over one connection; a put holds its slot through an
    // fsync, so the others arrive while it is busy. Bounded: at most 10 bursts.
    for burst in 0..10 {
        let calls: Vec<_> = (0..64)
            .map(|i| {
                let mut c = c.clone();
                let key = format!("b{burst}-{i}");
                tokio::spawn(async move {
                    let r = c
                        .put(pb::PutRequest {
                            table: table("app", "t"),
                            key: key.clone(),
                            value: b"{}".to_vec(),
                            precondition: None,
                        })
                        .await;
                    (key, r)
                })
            })
            .collect();
        for call in calls {
            let (key, result) = call.await?;
            match result {
                Ok(r) => served.push((key, r.into_inner().version)),
                Err(status) => {
                    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                    assert_eq!(status.message(), "storaged is overloaded; retry later");
                    refused.push(key);
                }
            }
        }
        if !refused.is_empty() && !served.is_empty() {
            break;
        }
    }
    assert!(
        !refused.is_empty(),
        "nothing was refused at max_concurrent_requests = 1"
    );
    assert!(!served.is_empty(), "nothing was served");

    let mut check = c.clone();
    for key in &refused {
        let status = check
            .get(pb::GetRequest {
                table: table("app", "t"),
                key: key.clone(),
            })
            .await
            .expect_err("a refused put must not be written");
        assert_eq!(status.code(), Code::NotFound, "{key}: {status:?}");
    }
    photondb_tests::assert_versions(&mut check, "app", "t", &served).await?;
    // The refusals are counted by code on the metrics listener.
    let metrics = storaged.metrics_text().await?;
    assert!(
        metrics.contains("storaged_requests_total{code=\"ResourceExhausted\",method=\"Put\"}"),
        "{metrics}"
    );
    Ok(())
}
