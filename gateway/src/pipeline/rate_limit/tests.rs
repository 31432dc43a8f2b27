//! Step 8 by behaviour: plans, budgets, quotas and headers, under governor's fake clock and
//! chosen Unix times (no sleeps); the shared mode against a real `redis-server` when one is
//! installed.

use std::collections::BTreeMap;
use std::time::Duration;

use governor::clock::FakeRelativeClock;

use super::*;
use crate::policy::model::Partner;
use crate::redis_conn::test_server::RedisServer;

/// 2026-01-01T00:00:00Z.
const MIDNIGHT: i64 = 1_767_225_600;

fn plan(name: &str, rate_per_sec: u32, burst: u32, daily_quota: u64) -> (String, Plan) {
    let plan = Plan {
        name: name.into(),
        rate_per_sec,
        burst,
        daily_quota,
    };
    (name.to_owned(), plan)
}

fn partner(id: &str, plan: &str) -> (String, Partner) {
    let partner = Partner {
        id: id.into(),
        plan: plan.into(),
        keys: Vec::new(),
        at: "partners.toml:1".into(),
    };
    (id.to_owned(), partner)
}

/// `gold` 2/s burst 3; `metered` 100/s burst 100, 2 a day; `public` 1/s burst 1; the default
/// `basic` 1/s burst 2.
fn policy() -> PolicySet {
    PolicySet {
        plans: BTreeMap::from([
            plan("gold", 2, 3, 0),
            plan("metered", 100, 100, 2),
            plan("public", 1, 1, 0),
            plan("basic", 1, 2, 0),
        ]),
        partners: BTreeMap::from([partner("acme", "gold"), partner("meter", "metered")]),
        default_plan: "basic".into(),
        public_plan: Some("public".into()),
        ..PolicySet::default()
    }
}

struct Fixture {
    limits: PlanLimits<FakeRelativeClock>,
    clock: FakeRelativeClock,
    _dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let quota = QuotaStore::open(dir.path()).expect("quota store");
    let clock = FakeRelativeClock::default();
    Fixture {
        limits: PlanLimits::with_clock(quota, None, clock.clone()),
        clock,
        _dir: dir,
    }
}

impl Fixture {
    async fn admit(
        &self,
        principal: &str,
        policy: &PolicySet,
        now: i64,
    ) -> Result<Report, OverLimit> {
        self.limits
            .admit_principal(principal, false, policy, now)
            .await
    }
}

fn header(headers: &[(&'static str, String)], name: &str) -> Option<String> {
    headers
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.clone())
}

#[tokio::test]
async fn a_partners_burst_is_exact_and_refills_at_its_rate() {
    let f = fixture();
    let p = policy();
    for _ in 0..3 {
        assert!(f.admit("partner:acme", &p, MIDNIGHT).await.is_ok());
    }
    let refused = f
        .admit("partner:acme", &p, MIDNIGHT)
        .await
        .expect_err("4th");
    assert_eq!(refused.code, RATE_LIMITED);
    assert_eq!(refused.retry_after_secs, 1);
    f.clock.advance(Duration::from_millis(499));
    assert!(f.admit("partner:acme", &p, MIDNIGHT).await.is_err());
    f.clock.advance(Duration::from_millis(1));
    assert!(f.admit("partner:acme", &p, MIDNIGHT).await.is_ok());
    assert!(f.admit("partner:acme", &p, MIDNIGHT).await.is_err());
}

#[tokio::test]
async fn answers_carry_ratelimit_headers() {
    let f = fixture();
    let p = policy();
    let first = f.admit("partner:acme", &p, MIDNIGHT).await.expect("first");
    assert_eq!(
        first.headers(),
        vec![
            ("ratelimit-policy", "\"burst\";q=3;w=2".to_owned()),
            ("ratelimit", "\"burst\";r=2;t=1".to_owned()),
        ]
    );
    f.admit("partner:acme", &p, MIDNIGHT).await.expect("second");
    f.admit("partner:acme", &p, MIDNIGHT).await.expect("third");
    let refused = f
        .admit("partner:acme", &p, MIDNIGHT)
        .await
        .expect_err("4th");
    assert_eq!(
        header(&refused.headers, "ratelimit").as_deref(),
        Some("\"burst\";r=0;t=1")
    );
}

#[tokio::test]
async fn a_plan_change_takes_effect_on_the_next_request() {
    let f = fixture();
    let before = policy();
    for _ in 0..3 {
        f.admit("partner:acme", &before, MIDNIGHT)
            .await
            .expect("gold");
    }
    assert!(f.admit("partner:acme", &before, MIDNIGHT).await.is_err());
    let mut after = policy();
    after.plans.insert("gold".into(), plan("gold", 2, 5, 0).1);
    assert!(f.admit("partner:acme", &after, MIDNIGHT).await.is_ok());
    let mut moved = policy();
    moved
        .partners
        .insert("acme".into(), partner("acme", "public").1);
    assert!(f.admit("partner:acme", &moved, MIDNIGHT).await.is_ok());
    assert!(f.admit("partner:acme", &moved, MIDNIGHT).await.is_err());
}

#[tokio::test]
async fn anonymous_requests_share_the_public_budget() {
    let f = fixture();
    let p = policy();
    let first = Authenticated::anonymous("rid-1");
    let within = f
        .limits
        .admit(&first, None, &p, MIDNIGHT)
        .await
        .expect("first");
    assert_eq!(within.request_id(), "rid-1");
    assert_eq!(
        header(&within.headers, "ratelimit-policy").as_deref(),
        Some("\"burst\";q=1;w=1")
    );
    let second = Authenticated::anonymous("rid-2");
    let client = Some(std::net::IpAddr::from([192, 0, 2, 7]));
    let refused = f.limits.admit(&second, client, &p, MIDNIGHT).await;
    assert_eq!(refused.expect_err("shared budget").code, RATE_LIMITED);
    // Other principals are not in the anonymous budget.
    assert!(f.admit("key:ci", &p, MIDNIGHT).await.is_ok());
}

#[tokio::test]
async fn principals_without_a_plan_of_their_own_get_the_default() {
    let f = fixture();
    let p = policy();
    assert!(f.admit("key:ci", &p, MIDNIGHT).await.is_ok());
    assert!(f.admit("key:ci", &p, MIDNIGHT).await.is_ok());
    assert!(f.admit("key:ci", &p, MIDNIGHT).await.is_err());
    assert!(f.admit("partner:unknown", &p, MIDNIGHT).await.is_ok());
}

#[tokio::test]
async fn a_missing_plan_is_refused() {
    let f = fixture();
    let mut p = policy();
    p.plans.remove("basic");
    let refused = f.admit("key:ci", &p, MIDNIGHT).await.expect_err("no plan");
    assert_eq!(refused.code, RATE_LIMITED);
    p.plans.insert("basic".into(), plan("basic", 0, 1, 0).1);
    assert!(f.admit("key:ci", &p, MIDNIGHT).await.is_err());
}

#[tokio::test]
async fn the_daily_quota_ends_at_utc_midnight() {
    let f = fixture();
    let p = policy();
    let evening = MIDNIGHT + 86_399;
    let first = f.admit("partner:meter", &p, evening).await.expect("1st");
    assert_eq!(
        header(&first.headers(), "ratelimit").as_deref(),
        Some("\"burst\";r=99;t=1, \"daily\";r=1;t=1")
    );
    f.admit("partner:meter", &p, evening).await.expect("2nd");
    let refused = f
        .admit("partner:meter", &p, evening)
        .await
        .expect_err("3rd");
    assert_eq!(refused.code, QUOTA_EXHAUSTED);
    assert_eq!(refused.retry_after_secs, 1);
    assert!(f.admit("partner:meter", &p, evening + 1).await.is_ok());
}

#[tokio::test]
async fn the_daily_quota_survives_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = policy();
    let open = || QuotaStore::open(dir.path()).expect("quota store");
    let quota = open();
    let limits = PlanLimits::with_clock(quota.clone(), None, FakeRelativeClock::default());
    for _ in 0..2 {
        limits
            .admit_principal("partner:meter", false, &p, MIDNIGHT)
            .await
            .expect("today");
    }
    quota.flush().expect("flush");
    drop((limits, quota));
    let limits = PlanLimits::with_clock(open(), None, FakeRelativeClock::default());
    let refused = limits
        .admit_principal("partner:meter", false, &p, MIDNIGHT + 60)
        .await;
    assert_eq!(refused.expect_err("restarted").code, QUOTA_EXHAUSTED);
}

#[tokio::test]
async fn housekeeping_purges_days_before_yesterday() {
    let f = fixture();
    let p = policy();
    f.admit("partner:meter", &p, MIDNIGHT).await.expect("day 1");
    assert_eq!(f.limits.housekeeping(MIDNIGHT + 86_400), 0);
    assert_eq!(f.limits.housekeeping(MIDNIGHT + 2 * 86_400), 1);
}

fn dead_redis() -> SharedRedis {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let url = format!("redis://127.0.0.1:{port}/");
    SharedRedis::new(&url, Duration::from_millis(200)).expect("url")
}

fn shared_limits(
    redis: SharedRedis,
    on_error: OnRedisError,
    clock: &FakeRelativeClock,
) -> (PlanLimits<FakeRelativeClock>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let quota = QuotaStore::open(dir.path()).expect("quota store");
    let limits = PlanLimits::with_clock(quota, Some((redis, on_error)), clock.clone());
    (limits, dir)
}

#[tokio::test]
async fn a_failed_redis_falls_back_to_the_local_limiter() {
    let clock = FakeRelativeClock::default();
    let (limits, _dir) = shared_limits(dead_redis(), OnRedisError::Local, &clock);
    let p = policy();
    for _ in 0..3 {
        let admitted = limits
            .admit_principal("partner:acme", false, &p, MIDNIGHT)
            .await;
        assert!(admitted.is_ok());
    }
    let refused = limits
        .admit_principal("partner:acme", false, &p, MIDNIGHT)
        .await;
    assert_eq!(refused.expect_err("local burst").code, RATE_LIMITED);
    assert_eq!(limits.redis_fallbacks(), 4);
}

#[tokio::test]
async fn a_failed_redis_can_refuse_instead() {
    let clock = FakeRelativeClock::default();
    let (limits, _dir) = shared_limits(dead_redis(), OnRedisError::Refuse, &clock);
    let refused = limits
        .admit_principal("partner:acme", false, &policy(), MIDNIGHT)
        .await;
    assert_eq!(refused.expect_err("refuse").code, STORE_UNAVAILABLE);
    assert_eq!(limits.redis_fallbacks(), 0);
}

#[tokio::test]
async fn two_gateways_sharing_redis_enforce_one_budget() {
    let Some(server) = RedisServer::start("two_gateways_sharing_redis_enforce_one_budget") else {
        return;
    };
    let clock = FakeRelativeClock::default();
    let gateway = || {
        let redis = SharedRedis::new(&server.url, Duration::from_secs(2)).expect("url");
        shared_limits(redis, OnRedisError::Refuse, &clock)
    };
    let ((a, _da), (b, _db)) = (gateway(), gateway());
    let mut p = policy();
    p.plans.insert("gold".into(), plan("gold", 1, 5, 0).1);
    for i in 0..5 {
        let g = if i % 2 == 0 { &a } else { &b };
        let admitted = g.admit_principal("partner:acme", false, &p, MIDNIGHT).await;
        assert!(admitted.is_ok(), "request {i}");
    }
    let refused = b.admit_principal("partner:acme", false, &p, MIDNIGHT).await;
    let refused = refused.expect_err("6th");
    assert_eq!((refused.code, refused.retry_after_secs), (RATE_LIMITED, 1));
    assert!(
        a.admit_principal("partner:acme", false, &p, MIDNIGHT)
            .await
            .is_err()
    );
    clock.advance(Duration::from_secs(1));
    assert!(
        a.admit_principal("partner:acme", false, &p, MIDNIGHT)
            .await
            .is_ok()
    );
    assert!(
        b.admit_principal("partner:acme", false, &p, MIDNIGHT)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn two_gateways_sharing_redis_count_one_quota() {
    let Some(server) = RedisServer::start("two_gateways_sharing_redis_count_one_quota") else {
        return;
    };
    let clock = FakeRelativeClock::default();
    let gateway = || {
        let redis = SharedRedis::new(&server.url, Duration::from_secs(2)).expect("url");
        shared_limits(redis, OnRedisError::Refuse, &clock)
    };
    let ((a, _da), (b, _db)) = (gateway(), gateway());
    let p = policy();
    let first = a
        .admit_principal("partner:meter", false, &p, MIDNIGHT)
        .await
        .expect("1st");
    assert_eq!(
        header(&first.headers(), "ratelimit").as_deref(),
        Some("\"burst\";r=99;t=1, \"daily\";r=1;t=86400")
    );
    b.admit_principal("partner:meter", false, &p, MIDNIGHT)
        .await
        .expect("2nd");
    let refused = a
        .admit_principal("partner:meter", false, &p, MIDNIGHT)
        .await;
    assert_eq!(refused.expect_err("3rd").code, QUOTA_EXHAUSTED);
    let tomorrow = MIDNIGHT + 86_400;
    assert!(
        b.admit_principal("partner:meter", false, &p, tomorrow)
            .await
            .is_ok()
    );
}
