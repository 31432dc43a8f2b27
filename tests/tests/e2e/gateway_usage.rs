//! Usage metering and detection on the real gateway (hardening spec §5, §9, §13).
//!
//! - After a scripted mix of signed and public requests, `photonctl usage` reports exactly
//!   what was sent per principal: requests by operation, body bytes in and out as the client
//!   counted them, refusals by code and the quota used. The counts survive a restart (they
//!   live in the state directory) and `photonctl usage` merges two gateways; the bounded
//!   per-principal Prometheus counters agree.
//! - A burst of bad signatures over the configured per-minute threshold raises the anomaly
//!   alert: the gauge, a warning and one `anomaly` audit line.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use photondb_tests::gateway::{Gateway, PARTNER, PartnerPlan, Setup};
use photondb_tests::{Overrides, Storaged, TestCerts};
use serde_json::Value;

/// What one principal was seen to do, summed over every hour: the test's own tally, and what
/// `photonctl usage --format json` rows add up to.
#[derive(Debug, Default, PartialEq, Eq)]
struct Tally {
    requests: BTreeMap<String, u64>,
    bytes_in: u64,
    bytes_out: u64,
    refusals: BTreeMap<String, u64>,
    quota_used: u64,
}

impl Tally {
    fn count(&mut self, operation: &str, sent: &[u8], answer: &[u8], refused: Option<&str>) {
        *self.requests.entry(operation.into()).or_default() += 1;
        self.bytes_in += sent.len() as u64;
        self.bytes_out += answer.len() as u64;
        if let Some(code) = refused {
            *self.refusals.entry(code.into()).or_default() += 1;
        }
    }

    /// Sums one principal's rows of `photonctl usage --format json`.
    fn of_rows(rows: &Value, principal: &str) -> Self {
        let mut t = Self::default();
        let add = |into: &mut BTreeMap<String, u64>, from: &Value| {
            for (k, v) in from.as_object().into_iter().flatten() {
                *into.entry(k.clone()).or_default() += v.as_u64().unwrap();
            }
        };
        for row in rows.as_array().unwrap() {
            if row["principal"] != principal {
                continue;
            }
            let c = &row["counts"];
            add(&mut t.requests, &c["requests"]);
            add(&mut t.refusals, &c["refusals"]);
            t.bytes_in += c["bytes_in"].as_u64().unwrap();
            t.bytes_out += c["bytes_out"].as_u64().unwrap();
            t.quota_used += c["quota_used"].as_u64().unwrap();
        }
        t
    }

    fn merged(&self, other: &Self) -> Self {
        let mut m = Self {
            bytes_in: self.bytes_in + other.bytes_in,
            bytes_out: self.bytes_out + other.bytes_out,
            quota_used: self.quota_used + other.quota_used,
            requests: self.requests.clone(),
            refusals: self.refusals.clone(),
        };
        for (k, v) in &other.requests {
            *m.requests.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.refusals {
            *m.refusals.entry(k.clone()).or_default() += v;
        }
        m
    }
}

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

fn usage(gateways: &[&Gateway]) -> Value {
    let addrs: Vec<String> = gateways
        .iter()
        .map(|g| g.metrics_addr().to_string())
        .collect();
    let mut args = vec!["usage", "--format", "json"];
    for a in &addrs {
        args.extend(["--gateway", a.as_str()]);
    }
    serde_json::from_str(&photonctl(&args)).unwrap()
}

/// One signed request as [`PARTNER`], counted into `tally` as the client saw it.
async fn signed(
    gw: &Gateway,
    tally: &mut Tally,
    op: &str,
    method: &str,
    target: &str,
    body: &[u8],
) {
    let reply = gw
        .send_signed(&gw.signed_request(method, target, body))
        .await
        .unwrap();
    let code = reply.code();
    assert!(
        reply.status < 500,
        "{method} {target}: {} {code:?}",
        reply.status
    );
    tally.count(op, body, &reply.body, code.as_deref());
}

/// The scripted mix, `docs` documents in table `db`/t; each request admitted by the plan
/// limiter counts as quota used.
async fn mix(gw: &Gateway, db: &str, docs: usize, tally: &mut Tally, anonymous: &mut Tally) {
    let table = format!("/v1/dbs/{db}/tables/t");
    signed(
        gw,
        tally,
        "create_database",
        "PUT",
        &format!("/v1/dbs/{db}"),
        b"",
    )
    .await;
    signed(gw, tally, "create_table", "PUT", &table, b"").await;
    for i in 0..docs {
        let body = format!(r#"{{"n":{i},"pad":"{}"}}"#, "x".repeat(i * 10));
        let target = format!("{table}/docs/d{i}");
        signed(gw, tally, "put", "PUT", &target, body.as_bytes()).await;
        signed(gw, tally, "get", "GET", &target, b"").await;
    }
    signed(
        gw,
        tally,
        "get",
        "GET",
        &format!("{table}/docs/missing"),
        b"",
    )
    .await;
    signed(
        gw,
        tally,
        "scan",
        "GET",
        &format!("{table}/docs?limit=2"),
        b"",
    )
    .await;
    signed(
        gw,
        tally,
        "delete",
        "DELETE",
        &format!("{table}/docs/d0"),
        b"",
    )
    .await;
    signed(gw, tally, "list_databases", "GET", "/v1/dbs", b"").await;
    // The mix stays within the daily quota: every request was admitted by the plan limiter.
    tally.quota_used = tally.requests.values().sum();
    for target in [
        format!("/public{table}/docs/d1"),
        format!("/public{table}/docs/gone"),
    ] {
        let reply = gw.raw_request("GET", &target).await.unwrap();
        anonymous.count("public_get", b"", &reply.body, reply.code().as_deref());
        anonymous.quota_used += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_counts_exactly_survives_a_restart_and_merges_two_gateways() {
    let certs = TestCerts::new().unwrap();
    let storaged = Storaged::start(&certs, Overrides::default()).unwrap();
    let plan = PartnerPlan {
        rate_per_sec: 1_000,
        burst: 1_000,
        daily_quota: 15,
    };
    let setup = Setup {
        plan: Some(plan),
        ..Setup::default()
    };
    let mut a = Gateway::start_with(&certs, storaged.addr(), setup, |_| {}).unwrap();
    let partner = format!("partner:{PARTNER}");
    let (mut on_a, mut anon_a) = (Tally::default(), Tally::default());
    mix(&a, "usage_a", 4, &mut on_a, &mut anon_a).await;
    // 2 + 4×2 + 4 = 14 admitted; the daily quota of 15 lets one more through, then refuses.
    assert_eq!(on_a.quota_used, 14);
    for admitted in [true, false] {
        let before = on_a.refusals.get("quota_exhausted").copied();
        signed(&a, &mut on_a, "list_databases", "GET", "/v1/dbs", b"").await;
        let refused = on_a.refusals.get("quota_exhausted").copied() != before;
        assert_eq!(refused, !admitted, "{on_a:?}");
        on_a.quota_used += u64::from(admitted);
    }
    assert_eq!(on_a.refusals["quota_exhausted"], 1);
    assert_eq!(on_a.refusals["not_found"], 1);

    let rows = usage(&[&a]);
    assert_eq!(Tally::of_rows(&rows, &partner), on_a, "{rows:#}");
    assert_eq!(Tally::of_rows(&rows, "anonymous"), anon_a, "{rows:#}");
    let metrics = a.metrics_text().await.unwrap();
    let ok = on_a.requests.values().sum::<u64>() - on_a.refusals.values().sum::<u64>();
    for (labels, want) in [
        (format!(r#"outcome="ok",principal="{partner}""#), ok),
        (
            format!(r#"outcome="refused",principal="{partner}""#),
            on_a.refusals.values().sum(),
        ),
    ] {
        let line = format!("photondb_gateway_principal_requests_total{{{labels}}} {want}");
        assert!(
            metrics.lines().any(|l| l == line),
            "no {line} in\n{metrics}"
        );
    }
    let line = format!(
        r#"photondb_gateway_principal_bytes_total{{direction="in",principal="{partner}"}} {}"#,
        on_a.bytes_in
    );
    assert!(
        metrics.lines().any(|l| l == line),
        "no {line} in\n{metrics}"
    );

    // A clean restart loses nothing counted.
    a.restart().unwrap();
    let rows = usage(&[&a]);
    assert_eq!(
        Tally::of_rows(&rows, &partner),
        on_a,
        "after a restart: {rows:#}"
    );
    assert_eq!(Tally::of_rows(&rows, "anonymous"), anon_a);

    // A second gateway for the same partner keeps its own counts; photonctl merges both.
    let twin = Setup {
        twin: Some(&a),
        plan: Some(plan),
    };
    let b = Gateway::start_with(&certs, storaged.addr(), twin, |_| {}).unwrap();
    let (mut on_b, mut anon_b) = (Tally::default(), Tally::default());
    mix(&b, "usage_b", 2, &mut on_b, &mut anon_b).await;
    assert_eq!(Tally::of_rows(&usage(&[&b]), &partner), on_b);
    let both = usage(&[&a, &b]);
    assert_eq!(
        Tally::of_rows(&both, &partner),
        on_a.merged(&on_b),
        "{both:#}"
    );
    assert_eq!(Tally::of_rows(&both, "anonymous"), anon_a.merged(&anon_b));

    // The table and CSV forms carry the same totals.
    let (ma, mb) = (a.metrics_addr().to_string(), b.metrics_addr().to_string());
    let csv = photonctl(&[
        "usage",
        "--gateway",
        &ma,
        "--gateway",
        &mb,
        "--principal",
        &partner,
        "--format",
        "csv",
    ]);
    let requests: u64 = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(2).unwrap().parse::<u64>().unwrap())
        .sum();
    let merged = on_a.merged(&on_b);
    assert_eq!(requests, merged.requests.values().sum::<u64>(), "{csv}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_bad_signatures_over_the_threshold_raises_the_anomaly_alert() {
    let certs = TestCerts::new().unwrap();
    let storaged = Storaged::start(&certs, Overrides::default()).unwrap();
    let gw = Gateway::start(&certs, storaged.addr(), |c| {
        c.alerts.signature_failures_per_min = 5;
    })
    .unwrap();
    let started = Instant::now();
    for i in 0..8 {
        let mut request = gw.signed_request("GET", "/v1/dbs", b"");
        // One character of the signature changed: still base64 of 64 bytes, another value.
        let text = String::from_utf8(request.bytes.clone()).unwrap();
        let at = text.to_ascii_lowercase().find("x-signature: ").unwrap() + 13 + i;
        request.bytes[at] = if request.bytes[at] == b'A' {
            b'B'
        } else {
            b'A'
        };
        let reply = gw.send_signed(&request).await.unwrap();
        reply.expect(401, Some("signature_invalid"));
    }
    // The minute ends on the gateway's reload tick (every second) once 60 s have passed.
    let gauge = r#"photondb_gateway_anomaly_alert{signal="signature_failures"} 1"#;
    let count = r#"photondb_gateway_anomaly_last_minute{signal="signature_failures"} 8"#;
    loop {
        let metrics = gw.metrics_text().await.unwrap();
        if metrics.lines().any(|l| l == gauge) {
            assert!(metrics.lines().any(|l| l == count), "{metrics}");
            assert!(
                metrics
                    .lines()
                    .any(|l| l == r#"photondb_gateway_anomaly_alert{signal="quota_bypass"} 0"#),
                "{metrics}"
            );
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(75),
            "no alert after {:?}:\n{metrics}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let audit = std::fs::read_to_string(gw.work_dir().join("state/audit.log")).unwrap();
    let anomalies: Vec<Value> = audit
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["kind"] == "anomaly")
        .collect();
    assert_eq!(anomalies.len(), 1, "{audit}");
    assert_eq!(anomalies[0]["signal"], "signature_failures", "{audit}");
    assert_eq!(anomalies[0]["count"], 8, "{audit}");
    assert!(
        gw.stderr().contains("signature_failures"),
        "{}",
        gw.stderr()
    );
}
