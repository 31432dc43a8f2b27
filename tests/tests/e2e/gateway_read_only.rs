//! The operator's read-only switch (config `read_only_flag`), hot: while the file exists,
//! writes are 503 `read_only` and reads still succeed; removing it restores writes.

use std::time::{Duration, Instant};

use photondb_tests::gateway::{Gateway, HttpsClient, Protocol, Reply};
use photondb_tests::{Overrides, Storaged, TestCerts};
use serde_json::json;

const T: &str = "/v1/dbs/ro/tables/t";
const DEADLINE: Duration = Duration::from_secs(20);

/// Sends PUT `{T}/docs/probe` until `done` accepts the reply (bounded).
async fn put_until(c: &HttpsClient, what: &str, done: impl Fn(&Reply) -> bool) -> Reply {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let r = c.put(&format!("{T}/docs/probe"), "{}").await.unwrap();
        if done(&r) {
            return r;
        }
        assert!(Instant::now() < deadline, "{what} within {DEADLINE:?}: {r}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn read_only(r: &Reply) {
    r.expect(503, Some("read_only"));
    assert_eq!(r.header("retry-after"), Some("1"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flag_file_makes_writes_503_and_reads_still_work() {
    let certs = TestCerts::new().unwrap();
    let storaged = Storaged::start(&certs, Overrides::default()).unwrap();
    let flag_dir = tempfile::tempdir().unwrap();
    let flag = flag_dir.path().join("read-only");
    let gw = Gateway::start(&certs, storaged.addr(), |c| {
        c.read_only_flag = Some(flag.clone());
        c.tls.reload_interval_ms = 100;
    })
    .unwrap();
    let c = gw.client(Protocol::Http2).await.unwrap();
    let h1 = gw.client(Protocol::Http1).await.unwrap();
    c.put("/v1/dbs/ro", "").await.unwrap().expect(201, None);
    c.put(T, "").await.unwrap().expect(201, None);
    let v = c
        .put(&format!("{T}/docs/a"), r#"{"n":1}"#)
        .await
        .unwrap()
        .expect(200, None);

    std::fs::write(&flag, "1\n").unwrap();
    let r = put_until(&c, "read-only after the flag appeared", |r| r.status == 503).await;
    read_only(&r);

    // Every kind of write is refused, over both protocols; nothing reaches storaged.
    for client in [&c, &h1] {
        let writes = [
            ("PUT", format!("{T}/docs/a"), r#"{"n":2}"#),
            ("DELETE", format!("{T}/docs/a"), ""),
            (
                "POST",
                format!("{T}/batch"),
                r#"{"operations":[{"op":"delete","key":"a"}]}"#,
            ),
            ("PUT", "/v1/dbs/ro/tables/t2".to_owned(), ""),
            ("DELETE", T.to_owned(), ""),
            ("PUT", "/v1/dbs/other".to_owned(), ""),
            ("DELETE", "/v1/dbs/ro".to_owned(), ""),
        ];
        for (method, target, body) in &writes {
            let r = client
                .send(method, target, &[], (*body).into())
                .await
                .unwrap();
            read_only(&r);
        }
        // Reads go through.
        let doc = client
            .get(&format!("{T}/docs/a"))
            .await
            .unwrap()
            .expect(200, None);
        assert_eq!(
            doc,
            json!({ "key": "a", "version": v["version"], "value": { "n": 1 } })
        );
        let scan = client
            .get(&format!("{T}/docs?prefix=a&limit=10"))
            .await
            .unwrap()
            .expect(200, None);
        assert_eq!(
            scan["documents"].as_array().map(Vec::len),
            Some(1),
            "{scan}"
        );
        let dbs = client.get("/v1/dbs").await.unwrap().expect(200, None);
        assert_eq!(dbs, json!({ "databases": ["ro"], "next_after": null }));
        client
            .get("/public/v1/dbs/ro/tables/t/docs/a")
            .await
            .unwrap()
            .expect(200, None);
        client
            .get("/v1/storage/verify")
            .await
            .unwrap()
            .expect(200, None);
        // Refusals before step 11 keep their own codes.
        client
            .get(&format!("{T}/docs/nope"))
            .await
            .unwrap()
            .expect(404, Some("not_found"));
    }
    let h = c.get("/v1/health").await.unwrap().expect(200, None);
    assert_eq!(
        (&h["status"], &h["read_only"], &h["read_only_reason"]),
        (&json!("degraded"), &json!(true), &json!("operator")),
        "{h}"
    );

    // "0" switches it off without removing the file; "1" on again; removing it: off.
    std::fs::write(&flag, "0").unwrap();
    put_until(&c, "writable after the flag said 0", |r| r.status == 200).await;
    std::fs::write(&flag, "on").unwrap();
    let r = put_until(&c, "read-only again", |r| r.status == 503).await;
    read_only(&r);
    std::fs::remove_file(&flag).unwrap();
    put_until(&c, "writable after the flag was removed", |r| {
        r.status == 200
    })
    .await;
    let v2 = c
        .put(&format!("{T}/docs/a"), r#"{"n":2}"#)
        .await
        .unwrap()
        .expect(200, None);
    assert!(v2["version"].as_u64() > v["version"].as_u64());
    let h = c.get("/v1/health").await.unwrap().expect(200, None);
    assert_eq!(
        (&h["status"], &h["read_only"]),
        (&json!("ok"), &json!(false)),
        "{h}"
    );
}
