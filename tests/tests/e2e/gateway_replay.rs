//! The replay guard of the real gateway (DESIGN §3.4, pipeline step 7): a signed request is
//! served once; the very same bytes sent again are 401 `replayed_request` — after a restart
//! too (the default sled store lives in the state directory), and at another gateway sharing
//! the same Redis; a request signed outside the time window is 401 `timestamp_out_of_window`
//! with the server's `Date`; a Redis outage is 503 `replay_store_unavailable` (never a pass),
//! and the gateway serves again by itself once Redis is back.

use std::time::{Duration, Instant};

use photondb_proto::signing::Timestamp;
use photondb_tests::gateway::{Gateway, RawConfig, Setup, SignedRequest};
use photondb_tests::redis::RedisServer;
use photondb_tests::{Overrides, Storaged, TestCerts};

/// A signed read that storaged answers 200.
const LIST: &str = "/v1/dbs";

/// Request ids are remembered in the Redis at `url` instead of the state directory.
fn replay_in_redis(url: String) -> impl Fn(&mut RawConfig) {
    move |c: &mut RawConfig| {
        c.replay.store = "redis".into();
        c.redis.url = Some(url.clone());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_signed_request_twice_is_refused_the_second_time() {
    let certs = TestCerts::new().unwrap();
    let storaged = Storaged::start(&certs, Overrides::default()).unwrap();
    let gw = Gateway::start(&certs, storaged.addr(), |_| {}).unwrap();

    let read = gw.signed_request("GET", LIST, b"");
    gw.send_signed(&read).await.unwrap().expect(200, None);
    let again = gw.send_signed(&read).await.unwrap();
    again.expect(401, Some("replayed_request"));

    // A replayed write never reaches storaged: 401, not storaged's 409 for a second create.
    let create = gw.signed_request("PUT", "/v1/dbs/once", b"");
    gw.send_signed(&create).await.unwrap().expect(201, None);
    let again = gw.send_signed(&create).await.unwrap();
    again.expect(401, Some("replayed_request"));
    // The same write under a fresh request id does reach it (the database exists once).
    let fresh = gw.signed_request("PUT", "/v1/dbs/once", b"");
    let r = gw.send_signed(&fresh).await.unwrap();
    r.expect(409, Some("already_exists"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_is_refused_after_a_restart() {
    let certs = TestCerts::new().unwrap();
    let storaged = Storaged::start(&certs, Overrides::default()).unwrap();
    // The default replay store: sled, in the gateway's state directory.
    let mut gw = Gateway::start(&certs, storaged.addr(), |_| {}).unwrap();

    let create = gw.signed_request("PUT", "/v1/dbs/before", b"");
    gw.send_signed(&create).await.unwrap().expect(201, None);

    // SIGTERM, then the same binary on the same config, ports and state directory. The
    // request is still inside its 60 s window, so only the remembered id can refuse it.
    gw.restart().unwrap();
    let again = gw.send_signed(&create).await.unwrap();
    again.expect(401, Some("replayed_request"));

    // The restarted gateway serves fresh requests.
    let read = gw.signed_request("GET", LIST, b"");
    gw.send_signed(&read).await.unwrap().expect(200, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_signed_two_minutes_off_is_out_of_window() {
    let certs = TestCerts::new().unwrap();
    let storaged = Storaged::start(&certs, Overrides::default()).unwrap();
    let gw = Gateway::start(&certs, storaged.addr(), |_| {}).unwrap();
    let signer = gw.signer();
    let now = Timestamp::now().unix();
    // The default window is 60 s either way; 120 s in the past (a captured request sent
    // later) and 120 s in the future (a client clock far ahead) are both refused.
    for skew in [-120, 120] {
        let stale = signer.request_at("GET", LIST, b"", Timestamp::from_unix(now + skew));
        let r = gw.send_signed(&stale).await.unwrap();
        r.expect(401, Some("timestamp_out_of_window"));
        // The server's time, so that the client can see how far off its clock is.
        let date = r
            .header("date")
            .unwrap_or_else(|| panic!("no Date header (skew {skew}): {r}"));
        assert!(
            date.len() == "Thu, 01 Jan 2026 00:00:00 GMT".len() && date.ends_with(" GMT"),
            "Date is not an HTTP date (skew {skew}): {date:?}"
        );
    }
    // The same request signed now is served.
    let read = signer.request("GET", LIST, b"");
    gw.send_signed(&read).await.unwrap().expect(200, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_sharing_redis_refuse_each_others_replays() {
    let redis = RedisServer::start().unwrap();
    let certs = TestCerts::new().unwrap();
    let storaged = Storaged::start(&certs, Overrides::default()).unwrap();
    let tweak = replay_in_redis(redis.url());
    let a = Gateway::start(&certs, storaged.addr(), &tweak).unwrap();
    // One signed request must be valid at both gateways: B is A's twin, so its policy
    // directory holds A's public key for the partner and its `hosts` list A's authority
    // besides its own. Every request below is signed with A's key for A's host; B is sent
    // those very bytes on its own address (`Host:` A's authority).
    let twin = Setup {
        twin: Some(&a),
        ..Setup::default()
    };
    let b = Gateway::start_with(&certs, storaged.addr(), twin, &tweak).unwrap();
    let signer = a.signer();

    let first = signer.request("GET", LIST, b"");
    a.send_signed(&first).await.unwrap().expect(200, None);
    let at_b = b.send_signed(&first).await.unwrap();
    at_b.expect(401, Some("replayed_request"));

    // The other way round; B serving the fresh request shows that it accepts A's key and
    // host, so the refusal above was the shared memory of ids and nothing else.
    let second = signer.request("GET", LIST, b"");
    b.send_signed(&second).await.unwrap().expect(200, None);
    let at_a = a.send_signed(&second).await.unwrap();
    at_a.expect(401, Some("replayed_request"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_is_503_and_the_gateway_recovers_by_itself() {
    let mut redis = RedisServer::start().unwrap();
    let certs = TestCerts::new().unwrap();
    let storaged = Storaged::start(&certs, Overrides::default()).unwrap();
    // The default `redis.timeout_ms` (500) bounds every Redis command during the outage.
    let gw = Gateway::start(&certs, storaged.addr(), replay_in_redis(redis.url())).unwrap();
    let fresh = || gw.signed_request("GET", LIST, b"");

    gw.send_signed(&fresh()).await.unwrap().expect(200, None);

    // Redis killed: a request whose id cannot be remembered is refused, never let through.
    redis.stop().unwrap();
    let r = gw.send_signed(&fresh()).await.unwrap();
    r.expect(503, Some("replay_store_unavailable"));
    assert_eq!(r.header("retry-after"), Some("1"), "{r}");

    // Redis back on the same port (empty): the gateway reconnects by itself, within its
    // client's reconnection backoff (a few seconds at most); until then, only 503s.
    redis.start_again().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let served: SignedRequest = loop {
        let request = fresh();
        let r = gw.send_signed(&request).await.unwrap();
        if r.status == 200 {
            break request;
        }
        r.expect(503, Some("replay_store_unavailable"));
        assert!(
            Instant::now() < deadline,
            "still 503 15 s after Redis came back: {r}\ngateway log:\n{}",
            gw.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    // And it remembers ids again: the request just served is a replay now.
    let again = gw.send_signed(&served).await.unwrap();
    again.expect(401, Some("replayed_request"));
}
