//! The private metrics listener answers scrapes: request counts by method and code, and the
//! engine's counters; any other path is 404.

use photondb_tests::{Overrides, Storaged, TestCerts, pb};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_by_method_and_code() -> anyhow::Result<()> {
    let certs = TestCerts::new()?;
    let storaged = Storaged::start(&certs, Overrides::default())?;
    let mut c = storaged.client().await?;
    c.create_database(pb::CreateDatabaseRequest { db: "app".into() })
        .await?;
    for _ in 0..2 {
        let status = c
            .create_database(pb::CreateDatabaseRequest { db: "app".into() })
            .await
            .expect_err("exists");
        assert_eq!(status.code(), tonic::Code::AlreadyExists);
    }

    let text = storaged.metrics_text().await?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or(("", ""));
    assert!(head.starts_with("HTTP/1.1 200"), "{text}");
    for line in [
        "storaged_requests_total{code=\"Ok\",method=\"CreateDatabase\"} 1",
        "storaged_requests_total{code=\"AlreadyExists\",method=\"CreateDatabase\"} 2",
        "# TYPE storaged_commits_total counter",
        "# TYPE storaged_durable_lsn gauge",
        "storaged_corrupt_pages_total 0",
    ] {
        assert!(
            body.lines().any(|l| l == line),
            "{line:?} missing from:\n{body}"
        );
    }
    assert!(
        body.lines()
            .any(|l| l.starts_with("storaged_request_seconds_count{method=\"CreateDatabase\"} 3")),
        "{body}"
    );

    let other = storaged.http_get_metrics_path("/other").await?;
    assert!(other.starts_with("HTTP/1.1 404"), "{other}");
    Ok(())
}
