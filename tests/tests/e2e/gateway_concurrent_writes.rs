//! Optimistic concurrency end to end: many clients racing to update one document with the
//! same `If-Match` version — exactly one wins, the rest get 412, and the winner's value is
//! what storaged keeps.

use photondb_tests::gateway::{Gateway, Protocol};
use photondb_tests::{Overrides, Storaged, TestCerts};
use serde_json::json;

const RACERS: usize = 24;
const DOC: &str = "/v1/dbs/c/tables/t/docs/counter";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_conditional_write_wins_each_round() {
    let certs = TestCerts::new().unwrap();
    let storaged = Storaged::start(&certs, Overrides::default()).unwrap();
    let gw = Gateway::start(&certs, storaged.addr(), |_| {}).unwrap();
    let setup = gw.client(Protocol::Http2).await.unwrap();
    setup.put("/v1/dbs/c", "").await.unwrap().expect(201, None);
    setup
        .put("/v1/dbs/c/tables/t", "")
        .await
        .unwrap()
        .expect(201, None);
    let mut version = setup
        .put(DOC, r#"{"n":0}"#)
        .await
        .unwrap()
        .expect(200, None)["version"]
        .as_u64()
        .unwrap();

    // Half the racers share one HTTP/2 connection (concurrent streams), half use HTTP/1.1.
    let h2 = std::sync::Arc::new(gw.client(Protocol::Http2).await.unwrap());
    let mut h1 = Vec::new();
    for _ in 0..RACERS / 2 {
        h1.push(std::sync::Arc::new(
            gw.client(Protocol::Http1).await.unwrap(),
        ));
    }
    for round in 1..=3u64 {
        let if_match = format!("\"{version}\"");
        let mut tasks = Vec::new();
        for i in 0..RACERS {
            let client = if i % 2 == 0 {
                h2.clone()
            } else {
                h1[i / 2].clone()
            };
            let if_match = if_match.clone();
            let body = json!({ "n": round, "by": i }).to_string();
            tasks.push(tokio::spawn(async move {
                let r = client
                    .send("PUT", DOC, &[("if-match", &if_match)], body.into())
                    .await
                    .unwrap();
                (i, r)
            }));
        }
        let mut winners = Vec::new();
        for t in tasks {
            let (i, r) = t.await.unwrap();
            match r.status {
                200 => winners.push((i, r.json()["version"].as_u64().unwrap())),
                _ => {
                    r.expect(412, Some("version_mismatch"));
                }
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
        let (winner, new_version) = winners[0];
        assert!(new_version > version);
        let doc = setup.get(DOC).await.unwrap().expect(200, None);
        assert_eq!(
            doc,
            json!({ "key": "counter", "version": new_version, "value": { "n": round, "by": winner } })
        );
        version = new_version;
    }
}
