//! Every REST route of DESIGN §5 round-trips through the real gateway to the real storaged,
//! over HTTP/2 and over HTTP/1.1 keep-alive.

use photondb_tests::gateway::{Gateway, HttpsClient, Protocol};
use photondb_tests::{Overrides, Storaged, TestCerts, pb, table};
use serde_json::{Value, json};

struct Stack {
    _certs: TestCerts,
    storaged: Storaged,
    gateway: Gateway,
}

fn stack() -> Stack {
    let certs = TestCerts::new().unwrap();
    let storaged = Storaged::start(&certs, Overrides::default()).unwrap();
    let gateway = Gateway::start(&certs, storaged.addr(), |_| {}).unwrap();
    Stack {
        _certs: certs,
        storaged,
        gateway,
    }
}

fn version(v: &Value) -> u64 {
    v["version"]
        .as_u64()
        .unwrap_or_else(|| panic!("no version in {v}"))
}

fn etag(r: &photondb_tests::gateway::Reply) -> Option<String> {
    r.header("etag").map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_round_trips_over_http2() {
    let s = stack();
    let c = s.gateway.client(Protocol::Http2).await.unwrap();
    all_routes(&c, &s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_round_trips_over_http1() {
    let s = stack();
    let c = s.gateway.client(Protocol::Http1).await.unwrap();
    all_routes(&c, &s).await;
}

async fn all_routes(c: &HttpsClient, s: &Stack) {
    health(c).await;
    databases_and_tables(c).await;
    documents(c).await;
    scan(c).await;
    batch(c).await;
    verify(c, s).await;
    drop_table_and_db(c).await;
}

async fn health(c: &HttpsClient) {
    for path in ["/public/health", "/v1/health"] {
        let v = c.get(path).await.unwrap().expect(200, None);
        assert_eq!(v["status"], "ok", "{path}: {v}");
        assert_eq!(v["breaker"], "closed", "{path}: {v}");
        assert_eq!(v["read_only"], false, "{path}: {v}");
        assert_eq!(v["dev_mode"], false, "{path}: {v}");
        assert!(v.get("warning").is_none(), "no dev-mode warning: {v}");
    }
}

async fn databases_and_tables(c: &HttpsClient) {
    let v = c.get("/v1/dbs").await.unwrap().expect(200, None);
    assert_eq!(v, json!({ "databases": [], "next_after": null }));
    let v = c.put("/v1/dbs/shop", "").await.unwrap().expect(201, None);
    assert_eq!(v, json!({ "created": true }));
    c.put("/v1/dbs/shop", "")
        .await
        .unwrap()
        .expect(409, Some("already_exists"));
    c.put("/v1/dbs/other", "").await.unwrap().expect(201, None);
    let v = c.get("/v1/dbs").await.unwrap().expect(200, None);
    assert_eq!(
        v,
        json!({ "databases": ["other", "shop"], "next_after": null })
    );

    let v = c
        .get("/v1/dbs/shop/tables")
        .await
        .unwrap()
        .expect(200, None);
    assert_eq!(v, json!({ "tables": [], "next_after": null }));
    let v = c
        .put("/v1/dbs/shop/tables/items", "")
        .await
        .unwrap()
        .expect(201, None);
    assert_eq!(v, json!({ "created": true }));
    c.put("/v1/dbs/shop/tables/items", "")
        .await
        .unwrap()
        .expect(409, Some("already_exists"));
    let v = c
        .get("/v1/dbs/shop/tables")
        .await
        .unwrap()
        .expect(200, None);
    assert_eq!(v, json!({ "tables": ["items"], "next_after": null }));
    c.get("/v1/dbs/nope/tables")
        .await
        .unwrap()
        .expect(404, Some("not_found"));
}

const T: &str = "/v1/dbs/shop/tables/items";

async fn documents(c: &HttpsClient) {
    let doc = format!("{T}/docs/a1");
    let r = c.put(&doc, r#"{"n":1}"#).await.unwrap();
    let v1 = version(&r.expect(200, None));
    assert_eq!(etag(&r), Some(format!("\"{v1}\"")));

    let r = c.get(&doc).await.unwrap();
    let v = r.expect(200, None);
    assert_eq!(
        v,
        json!({ "key": "a1", "version": v1, "value": { "n": 1 } })
    );
    assert_eq!(etag(&r), Some(format!("\"{v1}\"")));
    let public = c
        .get("/public/v1/dbs/shop/tables/items/docs/a1")
        .await
        .unwrap();
    assert_eq!(public.expect(200, None), v);

    // Optimistic concurrency: the wrong version is refused and nothing changes.
    let wrong = format!("\"{}\"", v1 + 1000);
    let r = c
        .send("PUT", &doc, &[("if-match", &wrong)], r#"{"n":2}"#.into())
        .await
        .unwrap();
    r.expect(412, Some("version_mismatch"));
    let v = c.get(&doc).await.unwrap().expect(200, None);
    assert_eq!(
        v["value"],
        json!({ "n": 1 }),
        "a refused write changed nothing"
    );

    let right = format!("\"{v1}\"");
    let r = c
        .send("PUT", &doc, &[("if-match", &right)], r#"{"n":2}"#.into())
        .await
        .unwrap();
    let v2 = version(&r.expect(200, None));
    assert!(v2 > v1, "versions grow: {v1} then {v2}");
    let r = c
        .send("PUT", &doc, &[("if-match", &right)], r#"{"n":3}"#.into())
        .await
        .unwrap();
    r.expect(412, Some("version_mismatch"));

    // If-None-Match: * creates only.
    let fresh = format!("{T}/docs/a2");
    let r = c
        .send("PUT", &fresh, &[("if-none-match", "*")], "{}".into())
        .await
        .unwrap();
    version(&r.expect(200, None));
    let r = c
        .send("PUT", &fresh, &[("if-none-match", "*")], "{}".into())
        .await
        .unwrap();
    // storaged refuses a failed if-absent as a version mismatch, like a failed If-Match.
    r.expect(412, Some("version_mismatch"));

    // Missing documents.
    c.get(&format!("{T}/docs/missing"))
        .await
        .unwrap()
        .expect(404, Some("not_found"));

    // Delete: wrong version refused, then deleted with a new version, then gone.
    let v2s = format!("\"{v2}\"");
    c.send("DELETE", &doc, &[("if-match", &wrong)], "".into())
        .await
        .unwrap()
        .expect(412, Some("version_mismatch"));
    let r = c
        .send("DELETE", &doc, &[("if-match", &v2s)], "".into())
        .await
        .unwrap();
    let v3 = version(&r.expect(200, None));
    assert!(v3 > v2, "a delete is a new version: {v2} then {v3}");
    c.get(&doc).await.unwrap().expect(404, Some("not_found"));
    c.delete(&fresh).await.unwrap().expect(200, None);
}

async fn scan(c: &HttpsClient) {
    let keys: Vec<String> = (0..12).map(|i| format!("p-{i:02}")).collect();
    for (i, k) in keys.iter().enumerate() {
        let body = json!({ "i": i }).to_string();
        c.put(&format!("{T}/docs/{k}"), body)
            .await
            .unwrap()
            .expect(200, None);
    }
    c.put(&format!("{T}/docs/q-1"), "{}")
        .await
        .unwrap()
        .expect(200, None);

    // Follow the cursor to the end, five at a time.
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    for page in 0.. {
        assert!(page < 10, "the cursor never ended: {seen:?}");
        let mut target = format!("{T}/docs?prefix=p-&limit=5");
        if let Some(a) = &after {
            target.push_str(&format!("&after={a}"));
        }
        let v = c.get(&target).await.unwrap().expect(200, None);
        let docs = v["documents"].as_array().unwrap();
        assert!(docs.len() <= 5, "limit respected: {v}");
        for d in docs {
            let key = d["key"].as_str().unwrap().to_owned();
            let i = seen.len();
            assert_eq!(d["value"], json!({ "i": i }), "{v}");
            assert!(d["version"].as_u64().is_some(), "{v}");
            seen.push(key);
        }
        match v["next_after"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, keys, "every key under the prefix, in order, once");

    // `after` on its own, and no prefix: everything past it.
    let v = c
        .get(&format!("{T}/docs?after=p-09&limit=100"))
        .await
        .unwrap()
        .expect(200, None);
    let got: Vec<&str> = v["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["key"].as_str().unwrap())
        .collect();
    assert_eq!(got, ["p-10", "p-11", "q-1"], "{v}");
    assert_eq!(v["next_after"], Value::Null, "{v}");
}

async fn batch(c: &HttpsClient) {
    let b = format!("{T}/batch");
    let p00 = c
        .get(&format!("{T}/docs/p-00"))
        .await
        .unwrap()
        .expect(200, None);
    let ops = json!({ "operations": [
        { "op": "put", "key": "b1", "value": { "b": 1 } },
        { "op": "put", "key": "b2", "value": { "b": 2 }, "if_absent": true },
        { "op": "delete", "key": "p-00", "if_version": version(&p00) },
    ]});
    let v = c.post(&b, ops.to_string()).await.unwrap().expect(200, None);
    let vb = version(&v);
    for (key, value) in [("b1", json!({ "b": 1 })), ("b2", json!({ "b": 2 }))] {
        let d = c
            .get(&format!("{T}/docs/{key}"))
            .await
            .unwrap()
            .expect(200, None);
        assert_eq!((d["value"].clone(), version(&d)), (value, vb), "{d}");
    }
    c.get(&format!("{T}/docs/p-00"))
        .await
        .unwrap()
        .expect(404, Some("not_found"));

    // One failing precondition: nothing of the batch is written.
    let ops = json!({ "operations": [
        { "op": "put", "key": "c1", "value": { "c": 1 } },
        { "op": "delete", "key": "b2" },
        { "op": "put", "key": "b1", "value": { "b": 9 }, "if_version": vb + 1000 },
    ]});
    c.post(&b, ops.to_string())
        .await
        .unwrap()
        .expect(412, Some("version_mismatch"));
    c.get(&format!("{T}/docs/c1"))
        .await
        .unwrap()
        .expect(404, Some("not_found"));
    for key in ["b1", "b2"] {
        let d = c
            .get(&format!("{T}/docs/{key}"))
            .await
            .unwrap()
            .expect(200, None);
        assert_eq!(version(&d), vb, "{key} untouched by the refused batch: {d}");
    }
}

async fn verify(c: &HttpsClient, s: &Stack) {
    let r = c.get("/v1/storage/verify").await.unwrap();
    let data_dir = s.storaged.data_dir().display().to_string();
    r.assert_no_internal_text(&[&data_dir]);
    let v = r.expect(200, None);
    assert_eq!(v["clean"], true, "{v}");
    assert_eq!(v["bad_pages"], json!([]), "{v}");
    assert!(v["pages_checked"].as_u64().is_some(), "{v}");
}

async fn drop_table_and_db(c: &HttpsClient) {
    let r = c.delete(T).await.unwrap();
    r.expect(204, None);
    assert!(r.body.is_empty(), "204 has no body: {r}");
    let v = c
        .get("/v1/dbs/shop/tables")
        .await
        .unwrap()
        .expect(200, None);
    assert_eq!(v, json!({ "tables": [], "next_after": null }));
    c.get(&format!("{T}/docs/b1"))
        .await
        .unwrap()
        .expect(404, Some("not_found"));
    c.delete("/v1/dbs/shop").await.unwrap().expect(204, None);
    let v = c.get("/v1/dbs").await.unwrap().expect(200, None);
    assert_eq!(v, json!({ "databases": ["other"], "next_after": null }));
    c.delete("/v1/dbs/shop")
        .await
        .unwrap()
        .expect(404, Some("not_found"));
}

type Grpc = pb::storage_client::StorageClient<tonic::transport::Channel>;

/// Runs `create` for every item, 32 calls at a time, each on its own clone of the client.
async fn create_all<F, Fut>(c: &Grpc, items: Vec<String>, create: F)
where
    F: Fn(Grpc, String) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in items.chunks(items.len().div_ceil(32).max(1)) {
        let calls: Vec<Fut> = chunk.iter().map(|i| create(c.clone(), i.clone())).collect();
        tasks.spawn(async move {
            for call in calls {
                call.await;
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
}

/// Follows `next_after` from the first page of `path` to the last; returns the pages.
async fn pages(c: &HttpsClient, path: &str, field: &str, limit: usize) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut after: Option<String> = None;
    loop {
        assert!(pages.len() < 10, "the cursor never ended: {pages:?}");
        let target = match &after {
            Some(a) => format!("{path}?limit={limit}&after={a}"),
            None => format!("{path}?limit={limit}"),
        };
        let v = c.get(&target).await.unwrap().expect(200, None);
        let names: Vec<String> = v[field]
            .as_array()
            .unwrap_or_else(|| panic!("no {field} in {v}"))
            .iter()
            .map(|n| n.as_str().unwrap().to_owned())
            .collect();
        assert!(names.len() <= limit, "limit respected: {v}");
        pages.push(names);
        match v["next_after"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => return pages,
        }
    }
}

/// `GET /v1/dbs` is paged as a scan is: 2,050 databases (made directly over storaged's gRPC)
/// come back a page of 1,000 at a time, every name once and in order, `next_after` null on
/// the last page. Without a limit the page is the largest (what a client written before the
/// lists were paged gets); a larger limit is capped, and a cursor that is not a name refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_thousands_of_databases_pages_through_them_all() {
    let s = stack();
    let names: Vec<String> = (0..2050).map(|i| format!("db-{i:04}")).collect();
    let grpc = s.storaged.client().await.unwrap();
    create_all(&grpc, names.clone(), |mut c, db| async move {
        c.create_database(pb::CreateDatabaseRequest { db })
            .await
            .unwrap();
    })
    .await;

    let c = s.gateway.client(Protocol::Http2).await.unwrap();
    let got = pages(&c, "/v1/dbs", "databases", 1000).await;
    let lens: Vec<usize> = got.iter().map(Vec::len).collect();
    assert_eq!(lens, [1000, 1000, 50]);
    assert_eq!(got.concat(), names, "every database once, in order");

    for path in ["/v1/dbs", "/v1/dbs?limit=0", "/v1/dbs?limit=5000"] {
        let v = c.get(path).await.unwrap().expect(200, None);
        let first = v["databases"].as_array().map(Vec::len);
        assert_eq!(first, Some(1000), "{path}");
        assert_eq!(v["next_after"], "db-0999", "{path}");
    }
    for bad in [
        "/v1/dbs?after=Not-A-Name",
        "/v1/dbs?limit=-1",
        "/v1/dbs?prefix=db",
    ] {
        c.get(bad).await.unwrap().expect(400, Some("bad_query"));
    }
}

/// A database of many tables: its tables list in pages, and dropping it (several bounded
/// commits in storaged) removes it and every table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_of_many_tables_lists_in_pages_and_drops_whole() {
    let s = stack();
    let mut grpc = s.storaged.client().await.unwrap();
    grpc.create_database(pb::CreateDatabaseRequest { db: "many".into() })
        .await
        .unwrap();
    let tables: Vec<String> = (0..600).map(|i| format!("t-{i:04}")).collect();
    create_all(&grpc, tables.clone(), |mut c, t| async move {
        c.create_table(pb::CreateTableRequest {
            table: table("many", &t),
        })
        .await
        .unwrap();
    })
    .await;

    let c = s.gateway.client(Protocol::Http2).await.unwrap();
    let got = pages(&c, "/v1/dbs/many/tables", "tables", 250).await;
    let lens: Vec<usize> = got.iter().map(Vec::len).collect();
    assert_eq!(lens, [250, 250, 100]);
    assert_eq!(got.concat(), tables, "every table once, in order");

    c.delete("/v1/dbs/many").await.unwrap().expect(204, None);
    c.get("/v1/dbs/many/tables")
        .await
        .unwrap()
        .expect(404, Some("not_found"));
    let v = c.get("/v1/dbs").await.unwrap().expect(200, None);
    assert_eq!(v, json!({ "databases": [], "next_after": null }));
}

/// Percent-encodes every byte outside RFC 3986 "unreserved" (what normal form requires).
fn encode(key: &str) -> String {
    key.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusual_keys_and_large_documents_round_trip() {
    let s = stack();
    for p in Protocol::BOTH {
        let c = s.gateway.client(p).await.unwrap();
        let db = format!("/v1/dbs/u-{}", p as u8);
        c.put(&db, "").await.unwrap().expect(201, None);
        let t = format!("{db}/tables/t");
        c.put(&t, "").await.unwrap().expect(201, None);
        let keys = [
            "café ключ 🔑",
            "with space",
            "q?x=1&y#frag",
            "100%",
            "~tilde.dot-dash_",
            &"k".repeat(512),
            &"é".repeat(256),
        ];
        for key in keys {
            let target = format!("{t}/docs/{}", encode(key));
            let body = json!({ "key": key }).to_string();
            let v = c.put(&target, body).await.unwrap().expect(200, None);
            let got = c.get(&target).await.unwrap().expect(200, None);
            assert_eq!(got["key"], key, "{p:?}");
            assert_eq!(got["value"]["key"], key, "{p:?}");
            assert_eq!(got["version"], v["version"], "{p:?}");
        }
        // Scanning with a non-ASCII prefix finds exactly the key it names.
        let v = c
            .get(&format!("{t}/docs?prefix={}", encode("café")))
            .await
            .unwrap()
            .expect(200, None);
        assert_eq!(v["documents"].as_array().map(Vec::len), Some(1), "{v}");
        assert_eq!(v["documents"][0]["key"], keys[0]);

        // A document close to the default 1 MiB limit, with nested values, both ways.
        let big = json!({
            "blob": "z".repeat(900 * 1024),
            "nested": { "list": (0..1000).collect::<Vec<u32>>(), "utf8": "ü€😀" },
        });
        let target = format!("{t}/docs/big");
        let v = c
            .put(&target, big.to_string())
            .await
            .unwrap()
            .expect(200, None);
        let got = c.get(&target).await.unwrap().expect(200, None);
        assert_eq!(
            got["value"], big,
            "{p:?}: the large document came back intact"
        );
        assert_eq!(got["version"], v["version"]);
    }
}

/// A legal scan page always decodes: storaged pages up to 4 MiB plus the document that
/// crosses it (here five documents of ~1 MB, ~5 MB in all), and the gateway's client accepts
/// messages as large as storaged sends (photondb-proto's one MAX_MESSAGE_BYTES). With tonic's
/// 4 MiB default on the client this was a 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_page_of_large_documents_decodes() {
    let s = stack();
    let c = s.gateway.client(Protocol::Http2).await.unwrap();
    c.put("/v1/dbs/big", "").await.unwrap().expect(201, None);
    let t = "/v1/dbs/big/tables/t";
    c.put(t, "").await.unwrap().expect(201, None);
    let blob = "b".repeat(1_000_000);
    for i in 0..5 {
        let body = json!({ "i": i, "blob": blob }).to_string();
        assert!(body.len() <= 1 << 20);
        c.put(&format!("{t}/docs/d{i}"), body)
            .await
            .unwrap()
            .expect(200, None);
    }
    let page = c
        .get(&format!("{t}/docs?limit=10"))
        .await
        .unwrap()
        .expect(200, None);
    let docs = page["documents"].as_array().expect("documents");
    assert_eq!(docs.len(), 5, "the whole page came back");
    for (i, d) in docs.iter().enumerate() {
        assert_eq!(d["value"]["i"], i, "document {i} in key order");
        assert_eq!(d["value"]["blob"].as_str().map(str::len), Some(blob.len()));
    }
}

/// Keys holding `/` or `\` (DESIGN §3.3): `%2F` and `%5C` decode into the key's segment, so
/// a key written over gRPC is reachable over REST and a key written over REST is the decoded
/// text. Lowercase escapes stay refused, and a name cannot hold an escaped slash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_with_escaped_slashes_round_trip() {
    let s = stack();
    s.gateway
        .client(Protocol::Http2)
        .await
        .unwrap()
        .create_table("d", "t")
        .await;
    // Written over gRPC (storaged's own API, as a native client sends it), read over REST.
    let mut grpc = s.storaged.client().await.unwrap();
    let put = grpc
        .put(pb::PutRequest {
            table: table("d", "t"),
            key: "x/y\\z".into(),
            value: br#"{"via":"grpc"}"#.to_vec(),
            precondition: None,
        })
        .await
        .unwrap()
        .into_inner();

    for p in Protocol::BOTH {
        let c = s.gateway.client(p).await.unwrap();
        let got = c
            .get("/v1/dbs/d/tables/t/docs/x%2Fy%5Cz")
            .await
            .unwrap()
            .expect(200, None);
        assert_eq!(got["key"], "x/y\\z", "{p:?}: {got}");
        assert_eq!(got["version"], put.version, "{p:?}: {got}");
        assert_eq!(got["value"]["via"], "grpc", "{p:?}: {got}");

        let doc = "/v1/dbs/d/tables/t/docs/a%2Fb";
        let body = json!({ "p": p as u8 }).to_string();
        let v = c.put(doc, body).await.unwrap().expect(200, None);
        let got = c.get(doc).await.unwrap().expect(200, None);
        assert_eq!(got["key"], "a/b", "{p:?}: {got}");
        assert_eq!(got["version"], v["version"], "{p:?}: {got}");
        assert_eq!(got["value"]["p"], p as u8, "{p:?}: {got}");

        // A scan prefix with an escaped slash finds the key it names, and only that one.
        let v = c
            .get("/v1/dbs/d/tables/t/docs?prefix=x%2F")
            .await
            .unwrap()
            .expect(200, None);
        assert_eq!(v["documents"].as_array().map(Vec::len), Some(1), "{v}");
        assert_eq!(v["documents"][0]["key"], "x/y\\z", "{v}");

        c.get("/v1/dbs/d/tables/t/docs/a%2fb")
            .await
            .unwrap()
            .expect(400, Some("path_not_normal"));
        // Signed and in normal form, but "a/b" is not a name (names are [a-z0-9_-]).
        c.put("/v1/dbs/d/tables/a%2Fb", "")
            .await
            .unwrap()
            .expect(400, Some("bad_name"));
    }

    // The key REST wrote is the decoded text, not the escaped one.
    let direct = grpc
        .get(pb::GetRequest {
            table: table("d", "t"),
            key: "a/b".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .document
        .expect("REST wrote the key a/b");
    assert_eq!(direct.key, "a/b");
}
