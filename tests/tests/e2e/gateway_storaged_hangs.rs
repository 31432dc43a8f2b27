//! A storaged that stops answering (SIGSTOP, the process still holds its port): calls time
//! out as 504 `storage_timeout`, timeouts open the breaker (fast 503s), and after SIGCONT the
//! gateway serves again.

use std::process::Command;
use std::time::{Duration, Instant};

use photondb_tests::gateway::{Gateway, Protocol, Reply};
use photondb_tests::{Overrides, Storaged, TestCerts};

const DOC: &str = "/v1/dbs/h/tables/t/docs/k";
const TIMEOUT_MS: u64 = 800;
const DEADLINE: Duration = Duration::from_secs(30);

fn signal(storaged: &Storaged, sig: &str) {
    let pid = storaged.pid().unwrap().to_string();
    let ok = Command::new("kill").args([sig, &pid]).status().unwrap();
    assert!(ok.success(), "kill {sig} {pid}");
    if sig == "-STOP" {
        wait_stopped(&pid);
    }
}

/// `kill` returns before every thread has stopped; a thread still running could answer one
/// more call. Waits until each of the process's threads is in state T (stopped).
fn wait_stopped(pid: &str) {
    let stopped = || -> Option<bool> {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
        let mut all = true;
        for task in tasks {
            let stat = std::fs::read_to_string(task.ok()?.path().join("stat")).ok()?;
            // "pid (comm) S ...": the state follows the last ')'.
            let state = stat.rsplit_once(')')?.1.split_whitespace().next()?;
            all &= state == "T";
        }
        Some(all)
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while stopped() != Some(true) {
        assert!(Instant::now() < deadline, "storaged {pid} did not stop");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn no_leak(r: &Reply, storaged: &Storaged) {
    let dir = storaged.work_dir().display().to_string();
    let port = storaged.addr().port().to_string();
    r.assert_no_internal_text(&[&dir, &port, "Timeout expired", "deadline", "cancel"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_storaged_times_out_opens_the_breaker_and_recovers() {
    let certs = TestCerts::new().unwrap();
    let storaged = Storaged::start(&certs, Overrides::default()).unwrap();
    let gw = Gateway::start(&certs, storaged.addr(), |c| {
        c.upstream.timeout_ms = TIMEOUT_MS;
        c.upstream.read_retries = 0;
        c.breaker.failure_threshold = 2;
        c.breaker.open_ms = 1_000;
    })
    .unwrap();
    let c = gw.client(Protocol::Http2).await.unwrap();
    c.put("/v1/dbs/h", "").await.unwrap().expect(201, None);
    c.put("/v1/dbs/h/tables/t", "")
        .await
        .unwrap()
        .expect(201, None);
    let v1 = c.put(DOC, r#"{"n":1}"#).await.unwrap().expect(200, None);

    signal(&storaged, "-STOP");
    let started = Instant::now();
    let r = c.get(DOC).await.unwrap();
    let took = started.elapsed();
    r.expect(504, Some("storage_timeout"));
    no_leak(&r, &storaged);
    let timeout = Duration::from_millis(TIMEOUT_MS);
    assert!(
        took >= timeout - Duration::from_millis(100) && took < timeout * 4,
        "the per-call deadline decides: {took:?}"
    );
    let r = c.put(DOC, r#"{"n":2}"#).await.unwrap();
    r.expect(504, Some("storage_timeout"));
    no_leak(&r, &storaged);

    // Two timeouts opened the breaker: answered at once, without waiting for storaged.
    let started = Instant::now();
    let r = c.get(DOC).await.unwrap();
    r.expect(503, Some("storage_unavailable"));
    assert_eq!(r.header("retry-after"), Some("1"), "{r}");
    assert!(started.elapsed() < timeout, "{:?}", started.elapsed());
    let h = c.get("/v1/health").await.unwrap().expect(200, None);
    assert_eq!(h["breaker"], "open", "{h}");

    signal(&storaged, "-CONT");
    let deadline = Instant::now() + DEADLINE;
    let doc = loop {
        let r = c.get(DOC).await.unwrap();
        if r.status == 200 {
            break r.expect(200, None);
        }
        assert!(
            Instant::now() < deadline,
            "no recovery within {DEADLINE:?}: {r}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // A write answered 504 has an unknown outcome: storaged had the request and may apply it
    // once it runs again (it does, here: its deadline starts when it reads the request).
    let value = &doc["value"]["n"];
    assert!(
        (value == 1 && doc["version"] == v1["version"]) || value == 2,
        "either the old document or the timed-out write, nothing else: {doc}"
    );
    let h = c.get("/v1/health").await.unwrap().expect(200, None);
    assert_eq!(h["breaker"], "closed", "{h}");
    c.put(DOC, r#"{"n":3}"#).await.unwrap().expect(200, None);
}
