//! The circuit breaker against a really stopped storaged: 503 `storage_unavailable` while it
//! is down, fast 503s (with `Retry-After`) once the breaker is open, and service again when
//! storaged comes back on the same port with the same data directory. The metrics listener
//! shows the open breaker and counts the 503s by route.

use std::time::{Duration, Instant};

use photondb_tests::gateway::{Gateway, HttpsClient, Protocol, Reply};
use photondb_tests::{Overrides, Storaged, TestCerts};
use serde_json::json;

const DOC: &str = "/v1/dbs/b/tables/t/docs/k";
const OPEN_MS: u64 = 1_000;
const DEADLINE: Duration = Duration::from_secs(30);

/// storaged binds `127.0.0.1:0`; from now on, restarts must come back on the port it got.
fn pin_port(storaged: &Storaged) {
    let path = storaged.config_path();
    let text = std::fs::read_to_string(&path).unwrap();
    let pinned: String = text
        .lines()
        .map(|line| match line {
            "listen = \"127.0.0.1:0\"" => format!("listen = \"{}\"\n", storaged.addr()),
            other => format!("{other}\n"),
        })
        .collect();
    assert_ne!(text, pinned, "the harness's storaged config changed shape");
    std::fs::write(path, pinned).unwrap();
}

async fn health(c: &HttpsClient) -> serde_json::Value {
    c.get("/v1/health").await.unwrap().expect(200, None)
}

fn unavailable(r: &Reply, storaged: &Storaged) {
    r.expect(503, Some("storage_unavailable"));
    let dir = storaged.work_dir().display().to_string();
    let port = storaged.addr().port().to_string();
    let leaks = [
        dir.as_str(),
        port.as_str(),
        "refused",
        "connect",
        "tcp",
        "dns",
        "error trying",
        "Unavailable",
    ];
    r.assert_no_internal_text(&leaks);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storaged_down_then_back() {
    let certs = TestCerts::new().unwrap();
    let mut storaged = Storaged::start(&certs, Overrides::default()).unwrap();
    let upstream = storaged.addr();
    let gw = Gateway::start(&certs, upstream, |c| {
        c.breaker.failure_threshold = 2;
        c.breaker.open_ms = OPEN_MS;
        c.breaker.half_open_probes = 1;
        c.upstream.read_retries = 0;
        c.upstream.timeout_ms = 2_000;
        c.upstream.connect_timeout_ms = 500;
    })
    .unwrap();
    let c = gw.client(Protocol::Http2).await.unwrap();
    c.put("/v1/dbs/b", "").await.unwrap().expect(201, None);
    c.put("/v1/dbs/b/tables/t", "")
        .await
        .unwrap()
        .expect(201, None);
    let v = c.put(DOC, r#"{"n":1}"#).await.unwrap().expect(200, None);
    assert_eq!(health(&c).await["breaker"], "closed");

    pin_port(&storaged);
    storaged.stop().unwrap();

    // Storage failures: 503 storage_unavailable, no Retry-After, until the breaker opens.
    let first = c.get(DOC).await.unwrap();
    unavailable(&first, &storaged);
    assert_eq!(first.header("retry-after"), None, "{first}");
    let second = c.put(DOC, r#"{"n":2}"#).await.unwrap();
    unavailable(&second, &storaged);
    let h = health(&c).await;
    assert_eq!(
        (h["breaker"].as_str(), h["status"].as_str()),
        (Some("open"), Some("unavailable")),
        "two failures open the breaker: {h}"
    );

    // Open: answered by the gateway at once, with Retry-After, for reads and writes alike.
    for (method, body) in [("GET", ""), ("PUT", r#"{"n":3}"#), ("DELETE", "")] {
        let started = Instant::now();
        let r = c.send(method, DOC, &[], body.into()).await.unwrap();
        let took = started.elapsed();
        unavailable(&r, &storaged);
        assert_eq!(r.header("retry-after"), Some("1"), "{method}: {r}");
        assert!(
            took < Duration::from_secs(1),
            "{method} while open took {took:?}"
        );
    }
    // The metrics listener tells the operator: the breaker is open, and every 503 is
    // counted under its route (two GETs, two PUTs, one DELETE since storaged stopped).
    let metrics = gw.metrics_text().await.unwrap();
    for line in [
        "photondb_gateway_breaker_state 2",
        r#"photondb_gateway_requests_total{route="get",status="503"} 2"#,
        r#"photondb_gateway_requests_total{route="put",status="503"} 2"#,
        r#"photondb_gateway_requests_total{route="delete",status="503"} 1"#,
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no {line:?} in:\n{metrics}"
        );
    }

    // Routes the gateway answers itself still work.
    c.get("/public/health").await.unwrap().expect(200, None);
    c.get("/nope")
        .await
        .unwrap()
        .expect(404, Some("route_not_found"));

    // Back on the same port and data directory: service resumes after a half-open probe.
    storaged.restart().unwrap();
    assert_eq!(storaged.addr(), upstream, "storaged came back on its port");
    let deadline = Instant::now() + DEADLINE;
    let got = loop {
        let r = c.get(DOC).await.unwrap();
        if r.status == 200 {
            break r;
        }
        unavailable(&r, &storaged);
        assert!(
            Instant::now() < deadline,
            "the gateway did not recover within {DEADLINE:?}: {r}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let doc = got.expect(200, None);
    assert_eq!(
        doc,
        json!({ "key": "k", "version": v["version"], "value": { "n": 1 } }),
        "the write acknowledged before the outage is there; the refused ones are not"
    );
    let h = health(&c).await;
    assert_eq!(
        (h["breaker"].as_str(), h["status"].as_str()),
        (Some("closed"), Some("ok")),
        "{h}"
    );
    c.put(DOC, r#"{"n":4}"#).await.unwrap().expect(200, None);
}
