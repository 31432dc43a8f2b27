//! Per-principal plan limits of the real gateway (pipeline step 8): a partner's burst is
//! exact and the next request is 429 `rate_limited` with `Retry-After`; a daily quota is 429
//! `quota_exhausted` and survives a restart (counted in the state directory); two gateways
//! sharing one Redis enforce one budget together. Every answer carries the
//! `RateLimit-Policy` / `RateLimit` headers of draft-ietf-httpapi-ratelimit-headers
//! (`"burst";q=<burst>;w=<secs to refill>` [`, "daily";q=<quota>;w=86400`] and
//! `"burst";r=<left>;t=<secs>` [`, "daily";r=<left>;t=<secs to UTC midnight>`]).
//!
//! The partner starts on its plan ([`Setup::plan`]), so no request is spent finding out when
//! a policy edit took effect, and each test's budget starts whole.

use std::time::{Duration, Instant};

use photondb_tests::gateway::{Gateway, PartnerPlan, Protocol, RawConfig, Reply, Setup};
use photondb_tests::redis::RedisServer;
use photondb_tests::{Overrides, Storaged, TestCerts};

/// A signed read that storaged answers 200 (the limit headers come with successful answers
/// and with 429s).
const LIST: &str = "/v1/dbs";

fn on(plan: PartnerPlan) -> Setup<'static> {
    Setup {
        plan: Some(plan),
        ..Setup::default()
    }
}

/// The budgets of the `RateLimit` header, in order: `(name, r, t)` of each
/// `"name";r=<left>;t=<secs>` item. Panics with the reply if the header is absent or not in
/// exactly that form.
fn budgets(r: &Reply) -> Vec<(String, u64, u64)> {
    fn item(text: &str) -> Option<(String, u64, u64)> {
        let (name, rest) = text.strip_prefix('"')?.split_once("\";r=")?;
        let (left, reset) = rest.split_once(";t=")?;
        Some((name.to_owned(), left.parse().ok()?, reset.parse().ok()?))
    }
    let header = r
        .header("ratelimit")
        .unwrap_or_else(|| panic!("no RateLimit header: {r}"));
    header
        .split(", ")
        .map(|text| item(text).unwrap_or_else(|| panic!("{text:?} is not \"name\";r=N;t=N: {r}")))
        .collect()
}

fn retry_after(r: &Reply) -> u64 {
    r.header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no numeric Retry-After: {r}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_three_passes_and_the_fourth_is_429() {
    let certs = TestCerts::new().unwrap();
    let storaged = Storaged::start(&certs, Overrides::default()).unwrap();
    let plan = PartnerPlan {
        rate_per_sec: 1,
        burst: 3,
        daily_quota: 0,
    };
    let gw = Gateway::start_with(&certs, storaged.addr(), on(plan), |_| {}).unwrap();
    let c = gw.client(Protocol::Http2).await.unwrap();
    // 3 at once, then 1 a second: a drained bucket is whole again after 3 s (w=3). The four
    // requests below take milliseconds, far less than the one second one request's worth
    // of budget takes to come back, so the numbers are exact.
    let policy = "\"burst\";q=3;w=3";
    for (left, whole_in) in [(2, 1), (1, 2), (0, 3)] {
        let r = c.get(LIST).await.unwrap();
        r.expect(200, None);
        assert_eq!(r.header("ratelimit-policy"), Some(policy), "{r}");
        let want = format!("\"burst\";r={left};t={whole_in}");
        assert_eq!(r.header("ratelimit"), Some(want.as_str()), "{r}");
    }

    let r = c.get(LIST).await.unwrap();
    r.expect(429, Some("rate_limited"));
    // The next request's worth comes back within the second (rounded up, never 0).
    assert_eq!(retry_after(&r), 1, "{r}");
    assert_eq!(r.header("ratelimit-policy"), Some(policy), "{r}");
    assert_eq!(r.header("ratelimit"), Some("\"burst\";r=0;t=1"), "{r}");

    // The budget comes back at the plan's rate: served again within a few seconds.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = c.get(LIST).await.unwrap();
        if r.status == 200 {
            assert_eq!(r.header("ratelimit-policy"), Some(policy), "{r}");
            break;
        }
        r.expect(429, Some("rate_limited"));
        assert!(Instant::now() < deadline, "still limited after 5 s: {r}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daily_quota_survives_a_restart() {
    // (Run within seconds of UTC midnight, the day would start over mid-test.)
    let certs = TestCerts::new().unwrap();
    let storaged = Storaged::start(&certs, Overrides::default()).unwrap();
    let plan = PartnerPlan {
        rate_per_sec: 1000,
        burst: 1000,
        daily_quota: 3,
    };
    let mut gw = Gateway::start_with(&certs, storaged.addr(), on(plan), |_| {}).unwrap();
    let policy = "\"burst\";q=1000;w=1, \"daily\";q=3;w=86400";
    let day_over = |r: &Reply| {
        r.expect(429, Some("quota_exhausted"));
        assert_eq!(r.header("ratelimit-policy"), Some(policy), "{r}");
        let b = budgets(r);
        assert_eq!(b.len(), 2, "{r}");
        assert_eq!(b[0].0, "burst", "{r}");
        assert_eq!(b[1].0, "daily", "{r}");
        assert_eq!(b[1].1, 0, "nothing left today: {r}");
        // Retry at the next UTC midnight, which is when the daily budget starts over.
        let wait = retry_after(r);
        assert!((1..=86_400).contains(&wait), "{r}");
        assert_eq!(b[1].2, wait, "{r}");
    };

    let c = gw.client(Protocol::Http2).await.unwrap();
    for left in [2, 1, 0] {
        let r = c.get(LIST).await.unwrap();
        r.expect(200, None);
        assert_eq!(r.header("ratelimit-policy"), Some(policy), "{r}");
        let b = budgets(&r);
        assert_eq!(b.len(), 2, "{r}");
        // The burst is far from drained (its exact count depends on the refill meanwhile).
        assert_eq!(b[0].0, "burst", "{r}");
        assert!((990..1000).contains(&b[0].1), "{r}");
        assert_eq!(b[0].2, 1, "{r}");
        assert_eq!(b[1].0, "daily", "{r}");
        assert_eq!(b[1].1, left, "{r}");
        assert!((1..=86_400).contains(&b[1].2), "{r}");
    }
    day_over(&c.get(LIST).await.unwrap());
    drop(c);

    // SIGTERM, then the same binary on the same state directory: the day's count is still
    // there (the in-process burst starts whole, the quota does not).
    gw.restart().unwrap();
    let c = gw.client(Protocol::Http2).await.unwrap();
    day_over(&c.get(LIST).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_sharing_redis_enforce_one_budget() {
    let redis = RedisServer::start().unwrap();
    let certs = TestCerts::new().unwrap();
    let storaged = Storaged::start(&certs, Overrides::default()).unwrap();
    let url = redis.url();
    let tweak = move |c: &mut RawConfig| {
        c.rate_limit.store = "redis".into();
        // A Redis failure is then a 503, never a silent fall back to a budget per gateway
        // (which would pass the first half of this test for the wrong reason).
        c.rate_limit.on_redis_error = "refuse".into();
        c.redis.url = Some(url.clone());
        // Each gateway opens its Redis connection on its first request.
        c.redis.timeout_ms = 2_000;
    };
    let plan = PartnerPlan {
        rate_per_sec: 1,
        burst: 4,
        daily_quota: 0,
    };
    let a = Gateway::start_with(&certs, storaged.addr(), on(plan), &tweak).unwrap();
    // B is A's twin: the same partner (same id and key, so the same principal and the same
    // Redis budget), and it serves its own host name besides A's; each client below signs
    // for the gateway it talks to.
    let twin = Setup {
        twin: Some(&a),
        plan: Some(plan),
    };
    let b = Gateway::start_with(&certs, storaged.addr(), twin, &tweak).unwrap();
    let (ca, cb) = (
        a.client(Protocol::Http2).await.unwrap(),
        b.client(Protocol::Http2).await.unwrap(),
    );

    // Burst 4 in total: 2 at A, 2 at B, counted down in one budget.
    let policy = "\"burst\";q=4;w=4";
    for (who, c, left) in [("A", &ca, 3), ("A", &ca, 2), ("B", &cb, 1), ("B", &cb, 0)] {
        let r = c.get(LIST).await.unwrap();
        assert_eq!(r.status, 200, "at {who}: {r}");
        r.expect(200, None);
        assert_eq!(r.header("ratelimit-policy"), Some(policy), "at {who}: {r}");
        let items = budgets(&r);
        assert_eq!(items.len(), 1, "at {who}: {r}");
        let burst = (items[0].0.as_str(), items[0].1);
        assert_eq!(burst, ("burst", left), "at {who}: {r}");
    }
    // The budget is spent at both.
    for (who, c) in [("A", &ca), ("B", &cb)] {
        let r = c.get(LIST).await.unwrap();
        assert_eq!(r.status, 429, "at {who}: {r}");
        r.expect(429, Some("rate_limited"));
        assert_eq!(retry_after(&r), 1, "at {who}: {r}");
        assert_eq!(r.header("ratelimit-policy"), Some(policy), "at {who}: {r}");
        assert_eq!(
            budgets(&r),
            vec![("burst".to_owned(), 0, 1)],
            "at {who}: {r}"
        );
    }
}
