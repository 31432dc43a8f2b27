//! The request id travels end to end (DESIGN §2 step 12, §8): the client's UUID comes back
//! in `X-Request-Id` and in problem bodies, and storaged logs the forwarded call under the same
//! id, with the principal the gateway authenticated: the dev-mode principal for `/v1`, and
//! `anonymous` for a `/public` read.

use std::time::Duration;

use photondb_tests::gateway::{Gateway, Protocol};
use photondb_tests::{Overrides, Storaged, TestCerts, wait_until};

use crate::gateway_policy_reload::strip_ansi;

/// storaged's log line for the call carrying `request_id`, ANSI colours removed.
pub(crate) async fn storaged_call_line(storaged: &Storaged, request_id: &str) -> String {
    let found = wait_until(Duration::from_secs(10), || {
        strip_ansi(&storaged.stderr())
            .lines()
            .find(|l| l.contains(request_id) && l.contains(" call"))
            .map(str::to_owned)
    })
    .await;
    found.unwrap_or_else(|| {
        panic!(
            "storaged logged no call for {request_id}:\n{}",
            storaged.stderr()
        )
    })
}

/// The `principal=` field of a storaged log line.
pub(crate) fn principal(line: &str) -> &str {
    line.split_once("principal=")
        .map(|(_, rest)| rest)
        .and_then(|rest| rest.split(|c: char| c.is_whitespace() || c == '}').next())
        .unwrap_or_else(|| panic!("no principal in {line}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_request_id_reaches_storaged_and_comes_back() {
    let certs = TestCerts::new().unwrap();
    let storaged = Storaged::start(
        &certs,
        Overrides {
            env: vec![("RUST_LOG".into(), "info".into())],
            ..Overrides::default()
        },
    )
    .unwrap();
    let gw = Gateway::start(&certs, storaged.addr(), |_| {}).unwrap();
    for p in Protocol::BOTH {
        let c = gw.client(p).await.unwrap();
        let db = format!("/v1/dbs/r{}", p as u8);
        let r = c.put(&db, "").await.unwrap();
        r.expect(201, None);
        let rid = r.sent_request_id.clone().unwrap();
        assert_eq!(r.header("x-request-id"), Some(rid.as_str()), "{r}");
        let line = storaged_call_line(&storaged, &rid).await;
        assert!(line.contains("CreateDatabase"), "{line}");
        assert!(line.contains("principal="), "{line}");
        assert!(
            !line.contains("principal=-"),
            "the principal is forwarded: {line}"
        );
        assert_eq!(principal(&line), "partner:e2e-tests", "{line}");

        // A refusal made by storaged carries the same id back to the client.
        let r = c.put(&db, "").await.unwrap();
        let v = r.expect(409, Some("already_exists"));
        let rid = r.sent_request_id.clone().unwrap();
        assert_eq!(v["request_id"], rid.as_str());
        let line = storaged_call_line(&storaged, &rid).await;
        assert!(line.contains("AlreadyExists"), "{line}");

        // A `/public` read is forwarded as `anonymous`, under the client's id too.
        c.put(&format!("{db}/tables/t"), "")
            .await
            .unwrap()
            .expect(201, None);
        c.put(&format!("{db}/tables/t/docs/k"), "{}")
            .await
            .unwrap()
            .expect(200, None);
        let r = c
            .get(&format!("/public{db}/tables/t/docs/k"))
            .await
            .unwrap();
        r.expect(200, None);
        let rid = r.sent_request_id.clone().unwrap();
        assert_eq!(r.header("x-request-id"), Some(rid.as_str()), "{r}");
        let line = storaged_call_line(&storaged, &rid).await;
        assert!(line.contains("Get"), "{line}");
        assert_eq!(principal(&line), "anonymous", "{line}");
    }
}
