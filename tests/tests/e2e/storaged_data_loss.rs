//! A damaged leaf page is never served as data: `Get` of a key on it returns DATA_LOSS with a
//! message that reveals no internals, other pages keep serving, and the offline `verify` names
//! the page. Through the real gateway, the same read is 500 `data_loss` and the verify report
//! names the page by number only.

use photondb_tests::gateway::{Gateway, Protocol};
use photondb_tests::{Overrides, Storaged, TestCerts, pb, run_storaged, table};
use tonic::Code;

const PAGE_SIZE: usize = 8192;
const LEAF: u8 = 2;
const TYPE_OFFSET: usize = 4;

fn key(i: usize) -> String {
    format!("doc-{i:04}")
}

/// The leaf pages of `pages.db` whose bytes contain `needle`.
fn leaves_holding(pages: &[u8], needle: &[u8]) -> Vec<usize> {
    pages
        .chunks(PAGE_SIZE)
        .enumerate()
        .filter(|(_, p)| p.len() == PAGE_SIZE && p[TYPE_OFFSET] == LEAF)
        .filter(|(_, p)| p.windows(needle.len()).any(|w| w == needle))
        .map(|(n, _)| n)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_leaf_page_is_data_loss_and_verify_names_it() -> anyhow::Result<()> {
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
    storaged
        .admin()
        .await?
        .checkpoint(pb::CheckpointRequest {})
        .await?;
    drop(c);
    let status = storaged.stop()?;
    assert!(status.success(), "SIGTERM exit: {status}");

    let data_file = storaged.data_dir().join("pages.db");
    let mut pages = std::fs::read(&data_file)?;
    let victim = key(60);
    let holding = leaves_holding(&pages, victim.as_bytes());
    assert_eq!(holding.len(), 1, "leaf pages holding {victim}: {holding:?}");
    let bad_page = holding[0];
    let survivor = (0..120)
        .map(key)
        .find(|k| !leaves_holding(&pages, k.as_bytes()).contains(&bad_page))
        .expect("a document on another leaf");
    // Flip bytes in the middle of the page body (past the 16-byte header).
    let start = bad_page * PAGE_SIZE + PAGE_SIZE / 2;
    for b in &mut pages[start..start + 8] {
        *b ^= 0xA5;
    }
    std::fs::write(&data_file, &pages)?;

    storaged.restart()?;
    let mut c = storaged.client().await?;
    let status = c
        .get(pb::GetRequest {
            table: table("app", "docs"),
            key: victim.clone(),
        })
        .await
        .expect_err("a damaged page must not be served");
    assert_eq!(status.code(), Code::DataLoss, "{status:?}");
    let message = status.message();
    assert_eq!(
        message,
        "data corruption detected; the operator has been alerted"
    );
    let data_dir = storaged.data_dir().display().to_string();
    for leak in [
        data_dir.as_str(),
        "pages.db",
        "page",
        &bad_page.to_string(),
        "crc",
    ] {
        assert!(!message.contains(leak), "{leak:?} leaked in {message:?}");
    }
    // The next call on the same connection still works, and a key on another leaf is served.
    let doc = c
        .get(pb::GetRequest {
            table: table("app", "docs"),
            key: survivor.clone(),
        })
        .await?
        .into_inner()
        .document
        .expect("survivor");
    assert_eq!(doc.value, value.as_bytes());
    // The corruption is audited with the page.
    let event = storaged
        .wait_for_audit(std::time::Duration::from_secs(10), |e| {
            e["kind"] == "corruption"
        })
        .await?;
    assert_eq!(event["page"], bad_page as u64);

    // Online verify reports it too.
    let report = storaged
        .admin()
        .await?
        .verify(pb::VerifyRequest {})
        .await?
        .into_inner();
    assert!(!report.clean);
    let bad: Vec<u64> = report.bad_pages.iter().map(|b| b.page).collect();
    assert_eq!(bad, vec![bad_page as u64], "{report:?}");

    // Through the gateway: a fixed problem, and the page number without storaged's reason.
    let gw = Gateway::start(&certs, storaged.addr(), |_| {})?;
    let http = gw.client(Protocol::Http2).await?;
    let work_dir = storaged.work_dir().display().to_string();
    let internals = [data_dir.as_str(), work_dir.as_str(), "pages.db", "crc"];
    let r = http
        .get(&format!("/v1/dbs/app/tables/docs/docs/{victim}"))
        .await?;
    r.expect(500, Some("data_loss"));
    r.assert_no_internal_text(&internals);
    r.assert_no_internal_text(&["page"]);
    let r = http.get("/v1/storage/verify").await?;
    let v = r.expect(200, None);
    r.assert_no_internal_text(&internals);
    assert_eq!(v["clean"], false, "{v}");
    assert_eq!(v["bad_pages"], serde_json::json!([bad_page]), "{v}");
    let reasons = report.bad_pages.iter().map(|b| b.reason.as_str());
    for reason in reasons.filter(|x| !x.is_empty()) {
        assert!(!r.text().contains(reason), "storaged's reason leaked: {r}");
    }
    drop(http);
    drop(gw);

    let status = storaged.stop()?;
    assert!(status.success(), "SIGTERM exit: {status}");
    let dir = storaged.data_dir();
    let out = run_storaged(&["verify", "--data-dir", dir.to_str().expect("utf-8 path")])?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let bad_lines: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("bad page "))
        .collect();
    assert_eq!(bad_lines.len(), 1, "{stdout}");
    assert!(
        bad_lines[0].starts_with(&format!("bad page {bad_page}: ")),
        "{stdout}"
    );
    Ok(())
}
