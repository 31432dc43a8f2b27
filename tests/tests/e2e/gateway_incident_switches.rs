//! The operator's incident switches on the real gateway (hardening spec §13): `photonctl ops`
//! writes the ops file and each switch changes what clients get within a second, without a
//! restart — partners-only (503 public_disabled), closed (503 closed, health still answers),
//! read-only (503 read_only for writes), suspend/resume (403 partner_suspended) — each
//! change is audited with who made it, and `photonctl ops status` shows them.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use photondb_tests::gateway::Gateway;
use photondb_tests::{Overrides, Storaged, TestCerts};

const PUBLIC_DOC: &str = "/public/v1/dbs/ops/tables/t/docs/k";

fn photonctl(args: &[&str]) -> String {
    let path = photondb_tests::workspace_binary("photondb-gateway", "photonctl").unwrap();
    let out = Command::new(path).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "photonctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn switch(file: &Path, args: &[&str]) {
    let file = file.to_str().unwrap();
    let mut all = vec!["ops"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--file", file, "--by", "alice", "--reason", "INC-7"]);
    photonctl(&all);
}

/// A signed request's status and code.
async fn signed(gw: &Gateway, method: &str, target: &str, body: &[u8]) -> (u16, Option<String>) {
    let reply = gw
        .send_signed(&gw.signed_request(method, target, body))
        .await
        .unwrap();
    (reply.status, reply.code())
}

async fn public(gw: &Gateway, target: &str) -> (u16, Option<String>) {
    let reply = gw.raw_request("GET", target).await.unwrap();
    (reply.status, reply.code())
}

/// Waits until `probe` gives `want`; returns how long that took. Fails after 3 s.
async fn until<F, Fut>(want: (u16, Option<&str>), probe: F) -> Duration
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = (u16, Option<String>)>,
{
    let started = Instant::now();
    loop {
        let (status, code) = probe().await;
        if (status, code.as_deref()) == want {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "still {status} {code:?}, wanted {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_switch_changes_behaviour_within_a_second_and_is_audited() {
    let certs = TestCerts::new().unwrap();
    let storaged = Storaged::start(&certs, Overrides::default()).unwrap();
    let gw = Gateway::start(&certs, storaged.addr(), |_| {}).unwrap();
    let file = gw.work_dir().join("state/ops.json");
    for target in ["/v1/dbs/ops", "/v1/dbs/ops/tables/t"] {
        assert_eq!(signed(&gw, "PUT", target, b"").await.0, 201);
    }
    let doc = "/v1/dbs/ops/tables/t/docs/k";
    assert!(signed(&gw, "PUT", doc, br#"{"a":1}"#).await.0 < 300);
    assert_eq!(public(&gw, PUBLIC_DOC).await.0, 200);
    let mut took = Vec::new();

    // Partners only: the public endpoint is off, signed partners go on.
    switch(&file, &["mode", "partners-only"]);
    took.push(until((503, Some("public_disabled")), || public(&gw, PUBLIC_DOC)).await);
    assert_eq!(signed(&gw, "GET", doc, b"").await.0, 200);

    // Closed: only health answers.
    switch(&file, &["mode", "closed"]);
    took.push(until((503, Some("closed")), || signed(&gw, "GET", doc, b"")).await);
    assert_eq!(public(&gw, "/public/health").await.0, 200);
    assert_eq!(public(&gw, PUBLIC_DOC).await, (503, Some("closed".into())));

    // Re-enabled by tier: partners first, then everyone; then read-only.
    switch(&file, &["mode", "partners-only"]);
    took.push(until((200, None), || signed(&gw, "GET", doc, b"")).await);
    switch(&file, &["mode", "open"]);
    took.push(until((200, None), || public(&gw, PUBLIC_DOC)).await);
    switch(&file, &["read-only", "on"]);
    took.push(
        until((503, Some("read_only")), || {
            signed(&gw, "PUT", doc, br#"{"a":2}"#)
        })
        .await,
    );
    assert_eq!(signed(&gw, "GET", doc, b"").await.0, 200, "reads go on");
    let status = photonctl(&["ops", "status", "--gateway", &gw.metrics_addr().to_string()]);
    assert!(status.contains("read_only: true"), "{status}");
    assert!(status.contains("policy version: "), "{status}");
    assert!(status.contains("breaker: closed"), "{status}");
    switch(&file, &["read-only", "off"]);
    took.push(until((200, None), || signed(&gw, "PUT", doc, br#"{"a":3}"#)).await);

    // One partner suspended, then resumed.
    switch(&file, &["suspend", photondb_tests::gateway::PARTNER]);
    took.push(
        until((403, Some("partner_suspended")), || {
            signed(&gw, "GET", doc, b"")
        })
        .await,
    );
    assert_eq!(
        public(&gw, PUBLIC_DOC).await.0,
        200,
        "others are not suspended"
    );
    let status = photonctl(&["ops", "status", "--gateway", &gw.metrics_addr().to_string()]);
    assert!(
        status.contains(&format!(
            "suspended: partner:{}",
            photondb_tests::gateway::PARTNER
        )),
        "{status}"
    );
    switch(&file, &["resume", photondb_tests::gateway::PARTNER]);
    took.push(until((200, None), || signed(&gw, "GET", doc, b"")).await);
    eprintln!("switch delays: {took:?}");
    for delay in &took {
        // The gateway re-reads the file every second; the rest is the probe's own requests.
        assert!(*delay < Duration::from_millis(1_500), "{took:?}");
    }

    // Every change is in the audit log, with who and why.
    let log = std::fs::read_to_string(gw.work_dir().join("state/audit.log")).unwrap();
    let switches: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["kind"] == "operator_switch")
        .collect();
    assert_eq!(switches.len(), 8, "{switches:#?}");
    assert!(
        switches
            .iter()
            .all(|e| e["by"] == "alice" && e["reason"] == "INC-7")
    );
    assert_eq!(switches[1]["changes"][0], "mode partners-only -> closed");
    let suspended = format!("suspended partner:{}", photondb_tests::gateway::PARTNER);
    assert_eq!(switches[6]["changes"][0], suspended.as_str());
}
