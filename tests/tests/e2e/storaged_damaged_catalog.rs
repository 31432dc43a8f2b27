//! Damage that makes the catalog or a table unreadable is told, not hidden: storaged's gRPC
//! health says NOT_SERVING (for "" and `photondb.v1.Storage`), `photondb_storaged_serving` is
//! 0, its log names the damaged page and what lives in it (never "an interrupted drop" that
//! did not happen), and the gateway's health document reports `"storage": "not_serving"`.
//! A damaged catalog is found at start; a damaged table leaf by the first call that reads it.

use std::time::{Duration, Instant};

use photondb_tests::gateway::{Gateway, HttpsClient, Protocol};
use photondb_tests::{Overrides, Storaged, TestCerts, pb, table, wait_until};
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

const PAGE_SIZE: usize = 8192;
const LEAF: u8 = 2;
const TYPE_OFFSET: usize = 4;
/// The meta page's `root` (storaged/DESIGN.md §3.2): after the 16-byte header, the magic (8),
/// format (4), next_table_id (4), page_count (8) and free_head (8).
const ROOT_OFFSET: usize = 48;
/// How long the gateway may take to see storaged's health (it asks every 2 s).
const GATEWAY_SEES: Duration = Duration::from_secs(15);

fn key(i: usize) -> String {
    format!("doc-{i:04}")
}

/// The tree's root, from the meta page (page 0).
fn root_page(pages: &[u8]) -> usize {
    let field: [u8; 8] = pages[ROOT_OFFSET..ROOT_OFFSET + 8]
        .try_into()
        .expect("a meta page");
    usize::try_from(u64::from_le_bytes(field)).expect("a page number")
}

fn page(pages: &[u8], n: usize) -> &[u8] {
    &pages[n * PAGE_SIZE..(n + 1) * PAGE_SIZE]
}

/// The leaf pages whose bytes contain `needle`.
fn leaves_holding(pages: &[u8], needle: &[u8]) -> Vec<usize> {
    pages
        .chunks(PAGE_SIZE)
        .enumerate()
        .filter(|(_, p)| p.len() == PAGE_SIZE && p[TYPE_OFFSET] == LEAF)
        .filter(|(_, p)| p.windows(needle.len()).any(|w| w == needle))
        .map(|(n, _)| n)
        .collect()
}

/// Flips bytes in the middle of page `n`'s body (past the 16-byte header): its checksum fails.
fn flip(pages: &mut [u8], n: usize) {
    let start = n * PAGE_SIZE + PAGE_SIZE / 2;
    for b in &mut pages[start..start + 8] {
        *b ^= 0xA5;
    }
}

async fn health(storaged: &Storaged, service: &str) -> anyhow::Result<ServingStatus> {
    let mut client = HealthClient::new(storaged.channel().await?);
    let request = HealthCheckRequest {
        service: service.into(),
    };
    Ok(client.check(request).await?.into_inner().status())
}

/// The metrics body's lines.
async fn metrics(storaged: &Storaged) -> anyhow::Result<String> {
    let text = storaged.metrics_text().await?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned());
    Ok(body.unwrap_or(text))
}

fn has_line(text: &str, line: &str) -> bool {
    text.lines().any(|l| l == line)
}

/// `GET path` on the gateway until its `storage` is `want` (bounded); the last document.
async fn gateway_health(c: &HttpsClient, path: &str, want: &str) -> serde_json::Value {
    let deadline = Instant::now() + GATEWAY_SEES;
    loop {
        let v = c.get(path).await.unwrap().expect(200, None);
        if v["storage"] == want || Instant::now() >= deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_catalog_page_starts_storaged_not_serving() -> anyhow::Result<()> {
    let certs = TestCerts::new()?;
    let mut storaged = Storaged::start(&certs, Overrides::default())?;
    let mut c = storaged.client().await?;
    photondb_tests::create_table(&mut c, "app", "users").await?;
    for i in 0..10 {
        c.put(pb::PutRequest {
            table: table("app", "users"),
            key: key(i),
            value: br#"{"n":1}"#.to_vec(),
            precondition: None,
        })
        .await?;
    }
    drop(c);
    let status = storaged.stop()?;
    assert!(status.success(), "SIGTERM exit: {status}");

    // A small store is one leaf, the root, holding the catalog and the documents.
    let data_file = storaged.data_dir().join("pages.db");
    let mut pages = std::fs::read(&data_file)?;
    let root = root_page(&pages);
    let catalog = page(&pages, root);
    assert_eq!(
        catalog[TYPE_OFFSET], LEAF,
        "the root of a small store is a leaf"
    );
    assert!(
        catalog.windows(b"users".len()).any(|w| w == b"users"),
        "the root leaf holds the catalog's table entry"
    );
    flip(&mut pages, root);
    std::fs::write(&data_file, &pages)?;

    storaged.restart()?;
    for service in ["", "photondb.v1.Storage"] {
        assert_eq!(
            health(&storaged, service).await?,
            ServingStatus::NotServing,
            "service {service:?}"
        );
    }
    // Calls still answer DATA_LOSS, ListDatabases included.
    let status = storaged
        .client()
        .await?
        .list_databases(pb::ListDatabasesRequest::default())
        .await
        .expect_err("the catalog is damaged");
    assert_eq!(status.code(), Code::DataLoss, "{status:?}");

    let log = storaged.stderr();
    let named = format!("storage damaged: catalog page {root} (");
    let line = log.lines().find(|l| l.contains(&named));
    let line = line.unwrap_or_else(|| panic!("no line with {named:?} in:\n{log}"));
    assert!(line.contains("the root: everything"), "{line}");
    assert!(line.contains("is unreadable: "), "{line}");
    assert!(
        !log.contains("interrupted drop"),
        "no drop was interrupted:\n{log}"
    );
    let event = storaged
        .wait_for_audit(Duration::from_secs(10), |e| e["kind"] == "storage_damaged")
        .await?;
    assert_eq!(event["page"], root as u64, "{event}");
    assert_eq!(event["catalog"], true, "{event}");
    let text = metrics(&storaged).await?;
    assert!(has_line(&text, "photondb_storaged_serving 0"), "{text}");
    assert!(
        has_line(&text, "photondb_storaged_damaged_pages_total 1"),
        "{text}"
    );

    let gw = Gateway::start(&certs, storaged.addr(), |_| {})?;
    let http = gw.client(Protocol::Http2).await?;
    for path in ["/v1/health", "/public/health"] {
        let v = gateway_health(&http, path, "not_serving").await;
        assert_eq!(v["storage"], "not_serving", "{path}: {v}");
        assert_eq!(v["status"], "unavailable", "{path}: {v}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_store_is_serving_and_the_gateway_says_so() -> anyhow::Result<()> {
    let certs = TestCerts::new()?;
    let mut storaged = Storaged::start(&certs, Overrides::default())?;
    let mut c = storaged.client().await?;
    photondb_tests::create_table(&mut c, "app", "users").await?;
    drop(c);
    // Probed at start too: a restart of a healthy store is serving.
    storaged.restart()?;
    for service in ["", "photondb.v1.Storage"] {
        assert_eq!(
            health(&storaged, service).await?,
            ServingStatus::Serving,
            "service {service:?}"
        );
    }
    let text = metrics(&storaged).await?;
    assert!(has_line(&text, "photondb_storaged_serving 1"), "{text}");
    assert!(
        has_line(&text, "photondb_storaged_damaged_pages_total 0"),
        "{text}"
    );
    assert!(!storaged.stderr().contains("storage damaged"));

    let gw = Gateway::start(&certs, storaged.addr(), |_| {})?;
    let http = gw.client(Protocol::Http2).await?;
    for path in ["/v1/health", "/public/health"] {
        let v = gateway_health(&http, path, "serving").await;
        assert_eq!(v["storage"], "serving", "{path}: {v}");
        assert_eq!(v["status"], "ok", "{path}: {v}");
    }
    Ok(())
}

/// A damaged leaf of a table (not the catalog): storaged starts serving, the first read of it
/// is DATA_LOSS, and from then on it is NOT_SERVING, with the page and the table in the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_table_leaf_stops_serving_at_the_first_read_of_it() -> anyhow::Result<()> {
    let certs = TestCerts::new()?;
    let mut storaged = Storaged::start(&certs, Overrides::default())?;
    let mut c = storaged.client().await?;
    photondb_tests::create_table(&mut c, "app", "docs").await?;
    // Values of ~600 bytes: about a dozen per leaf, so 120 documents span several leaves.
    let value = format!("{{\"pad\":\"{}\"}}", "x".repeat(600));
    for i in 0..120 {
        c.put(pb::PutRequest {
            table: table("app", "docs"),
            key: key(i),
            value: value.clone().into_bytes(),
            precondition: None,
        })
        .await?;
    }
    drop(c);
    let status = storaged.stop()?;
    assert!(status.success(), "SIGTERM exit: {status}");

    let data_file = storaged.data_dir().join("pages.db");
    let mut pages = std::fs::read(&data_file)?;
    let victim = key(60);
    let holding = leaves_holding(&pages, victim.as_bytes());
    assert_eq!(holding.len(), 1, "leaf pages holding {victim}: {holding:?}");
    let bad_page = holding[0];
    assert_ne!(bad_page, root_page(&pages), "a store of several leaves");
    // "docs" is only in the catalog's entry for app/docs (keys are "doc-N").
    let catalog = leaves_holding(&pages, b"docs");
    assert_eq!(catalog.len(), 1, "the catalog's leaf: {catalog:?}");
    assert_ne!(
        catalog[0], bad_page,
        "the damaged leaf is not the catalog's"
    );
    flip(&mut pages, bad_page);
    std::fs::write(&data_file, &pages)?;

    storaged.restart()?;
    assert_eq!(
        health(&storaged, "").await?,
        ServingStatus::Serving,
        "the catalog is whole"
    );
    let text = metrics(&storaged).await?;
    assert!(has_line(&text, "photondb_storaged_serving 1"), "{text}");

    let mut c = storaged.client().await?;
    let status = c
        .get(pb::GetRequest {
            table: table("app", "docs"),
            key: victim.clone(),
        })
        .await
        .expect_err("a damaged page must not be served");
    assert_eq!(status.code(), Code::DataLoss, "{status:?}");
    let mut not_serving = false;
    for _ in 0..100 {
        if health(&storaged, "").await? == ServingStatus::NotServing {
            not_serving = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(not_serving, "health still SERVING after DATA_LOSS");
    assert_eq!(
        health(&storaged, "photondb.v1.Storage").await?,
        ServingStatus::NotServing
    );

    let named = format!("storage damaged: page {bad_page} (");
    let line = wait_until(Duration::from_secs(10), || {
        let log = storaged.stderr();
        log.lines().find(|l| l.contains(&named)).map(str::to_owned)
    })
    .await;
    let log = storaged.stderr();
    let line = line.unwrap_or_else(|| panic!("no line with {named:?} in:\n{log}"));
    assert!(line.contains("table app/docs"), "{line}");
    assert!(!log.contains("interrupted drop"), "{log}");
    // Another read of the same page: DATA_LOSS again, but no second report.
    let again = c
        .get(pb::GetRequest {
            table: table("app", "docs"),
            key: victim.clone(),
        })
        .await
        .expect_err("still damaged");
    assert_eq!(again.code(), Code::DataLoss, "{again:?}");
    let text = metrics(&storaged).await?;
    assert!(has_line(&text, "photondb_storaged_serving 0"), "{text}");
    assert!(
        has_line(&text, "photondb_storaged_damaged_pages_total 1"),
        "{text}"
    );
    let reports = storaged
        .audit_events()
        .into_iter()
        .filter(|e| e["kind"] == "storage_damaged")
        .count();
    assert_eq!(reports, 1, "{:#?}", storaged.audit_events());
    Ok(())
}
