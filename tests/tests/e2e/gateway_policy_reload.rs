//! Policy edits apply to the running gateway without a restart (DESIGN §4): a partner added to
//! `partners.toml` and bound in `bindings.toml` is served within a bounded poll, a changed
//! binding changes what it may do, a broken edit is rejected (logged; the last good set keeps
//! serving) and a revoked key is refused within seconds.
//!
//! Also the helpers other policy tests of this folder share: an atomic policy edit, a signer
//! for partners other than the harness's, and a bounded poll on replies.

use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use photondb_proto::signing::{
    AuthFields, BodyDigest, RequestParts, SecretKey, Timestamp, signature_headers,
};
use photondb_tests::gateway::{Gateway, Protocol, Reply};
use photondb_tests::{Overrides, Storaged, TestCerts, wait_until};

/// How long a policy edit may take to reach the gateway (it polls every 200 ms).
pub(crate) const RELOAD: Duration = Duration::from_secs(10);

const SHOP_DOC: &str = "/v1/dbs/shop/tables/t/docs/k";
const OTHER_DOC: &str = "/v1/dbs/other/tables/t/docs/k";
const BODY: &[u8] = br#"{"n":1}"#;

/// Writes `dir/name` atomically: a hidden scratch file (the policy loader skips names starting
/// with `.`) renamed over the file, so a reload never reads half an edit.
pub(crate) fn write_policy(dir: &Path, name: &str, text: &str) {
    let scratch = dir.join(format!(".{name}.edit"));
    std::fs::write(&scratch, text).unwrap_or_else(|e| panic!("writing {name}: {e}"));
    std::fs::rename(&scratch, dir.join(name)).unwrap_or_else(|e| panic!("renaming {name}: {e}"));
}

/// The policy file `name` as it is now (empty if absent).
pub(crate) fn read_policy(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_default()
}

/// Appends `text` to `dir/name`, atomically.
pub(crate) fn append_policy(dir: &Path, name: &str, text: &str) {
    let mut current = read_policy(dir, name);
    current.push_str(text);
    write_policy(dir, name, &current);
}

/// A `partners.toml` entry: partner `id` on the harness's unlimited plan, one key (version 1).
/// `public_key` is written as given: a standard base64 key or a TOML multi-line string.
pub(crate) fn partner_entry(id: &str, public_key_toml: &str, revoked: bool) -> String {
    format!(
        "\n[[partner]]\nid = \"{id}\"\nplan = \"e2e-unlimited\"\n\n[[partner.key]]\nversion = 1\npublic_key = {public_key_toml}\nrevoked = {revoked}\n"
    )
}

/// A `bindings.toml` entry.
pub(crate) fn binding_entry(principal: &str, role: &str, resources: &[&str]) -> String {
    let resources: Vec<String> = resources.iter().map(|r| format!("\"{r}\"")).collect();
    format!(
        "\n[[binding]]\nprincipal = \"{principal}\"\nrole = \"{role}\"\nresources = [{}]\n",
        resources.join(", ")
    )
}

/// One raw HTTP/1.1 request (`Connection: close`) signed natively by `partner` with `key`
/// over `method`, `target` (path and query) and `body`; the reply remembers the request id.
pub(crate) async fn send_as(
    gw: &Gateway,
    partner: &str,
    key: &SecretKey,
    method: &str,
    target: &str,
    body: &[u8],
) -> Reply {
    let host = gw.authority();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let parts = RequestParts {
        method,
        host: &host,
        path,
        query,
        body: BodyDigest::of(body),
    };
    let request_id = uuid::Uuid::new_v4().to_string();
    let timestamp = Timestamp::now().format();
    let fields = AuthFields::new(partner, &request_id, &timestamp).expect("auth fields");
    let headers = signature_headers(key, &parts, &fields, None).expect("a normal-form request");
    let raw = gw.http1_request(method, target, &headers, body);
    let mut reply = gw
        .raw_http1(&raw)
        .await
        .unwrap_or_else(|e| panic!("{method} {target} as {partner}: {e:#}"));
    reply.sent_request_id = Some(request_id);
    reply
}

/// Sends with `send` every 50 ms until `done` holds for the reply (bounded by `timeout`), and
/// returns that reply; panics with the last one otherwise.
pub(crate) async fn poll_reply<F, Fut>(
    what: &str,
    timeout: Duration,
    mut send: F,
    done: impl Fn(&Reply) -> bool,
) -> Reply
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Reply>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let reply = send().await;
        if done(&reply) {
            return reply;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {timeout:?}; the last reply: {reply}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The `detail` of a problem body.
pub(crate) fn detail(reply: &Reply) -> String {
    reply.json()["detail"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

pub(crate) fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().find(|c| c.is_ascii_alphabetic());
        } else {
            out.push(c);
        }
    }
    out
}

/// The gateway's log lines that report a rejected policy edit.
fn rejections(gw: &Gateway) -> Vec<String> {
    strip_ansi(&gw.stderr())
        .lines()
        .filter(|l| l.contains("policy edit rejected"))
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_edits_apply_without_restart_and_a_broken_edit_keeps_the_last_good_set() {
    let certs = TestCerts::new().unwrap();
    let storaged = Storaged::start(&certs, Overrides::default()).unwrap();
    let gw = Gateway::start(&certs, storaged.addr(), |_| {}).unwrap();
    let admin = gw.client(Protocol::Http2).await.unwrap();
    for db in ["shop", "other"] {
        admin
            .put(&format!("/v1/dbs/{db}"), "")
            .await
            .unwrap()
            .expect(201, None);
        admin
            .put(&format!("/v1/dbs/{db}/tables/t"), "")
            .await
            .unwrap()
            .expect(201, None);
    }

    let dir = gw.policy_dir();
    let partners = read_policy(&dir, "partners.toml");
    let bindings = read_policy(&dir, "bindings.toml");
    let bob = SecretKey::generate();
    let bob_public = format!("\"{}\"", bob.public_key().to_base64());
    let bind_bob = |role: &str| {
        let text = format!(
            "{bindings}{}",
            binding_entry("partner:bob", role, &["db:shop"])
        );
        write_policy(&dir, "bindings.toml", &text);
    };
    // Partners first: a reload between the two edits sees bob without a binding (valid).
    write_policy(
        &dir,
        "partners.toml",
        &format!("{partners}{}", partner_entry("bob", &bob_public, false)),
    );
    bind_bob("writer");

    // (a) bob, a writer on db:shop, writes there, and not in db other.
    let r = poll_reply(
        "bob's write in db shop after the edit",
        RELOAD,
        || send_as(&gw, "bob", &bob, "PUT", SHOP_DOC, BODY),
        |r| r.status == 200,
    )
    .await;
    r.expect(200, None);
    let stored = admin.get(SHOP_DOC).await.unwrap().expect(200, None);
    assert_eq!(stored["value"]["n"], 1, "{stored}");
    let r = send_as(&gw, "bob", &bob, "PUT", OTHER_DOC, BODY).await;
    r.expect(403, Some("forbidden"));
    assert!(
        detail(&r).contains("table.write on db:other/table:t"),
        "the problem names the action and resource: {r}"
    );
    admin
        .get(OTHER_DOC)
        .await
        .unwrap()
        .expect(404, Some("not_found"));

    // (b) bob becomes a reader: writes are refused, reads served, without a restart.
    let pid = gw.pid();
    bind_bob("reader");
    // Until the edit applies these writes succeed; they write what is there already.
    poll_reply(
        "bob's write refused once he is a reader",
        RELOAD,
        || send_as(&gw, "bob", &bob, "PUT", SHOP_DOC, BODY),
        |r| r.status == 403,
    )
    .await;
    let r = send_as(&gw, "bob", &bob, "PUT", SHOP_DOC, br#"{"n":2}"#).await;
    r.expect(403, Some("forbidden"));
    assert!(detail(&r).contains("table.write on db:shop/table:t"), "{r}");
    let r = send_as(&gw, "bob", &bob, "GET", SHOP_DOC, b"").await;
    let v = r.expect(200, None);
    assert_eq!(v["value"]["n"], 1, "the refused write changed nothing: {r}");
    assert_eq!(gw.pid(), pid, "the same process serves");

    // (c) A broken edit (an unknown role) is rejected and logged; bob keeps the rights of the
    // last good set: a reader still, neither a writer nor nobody.
    let before = rejections(&gw).len();
    bind_bob("no-such-role");
    let logged = wait_until(RELOAD, || {
        let lines = rejections(&gw);
        (lines.len() > before).then(|| lines[before..].join("\n"))
    })
    .await;
    let logged = logged.unwrap_or_else(|| {
        panic!(
            "the gateway did not log the rejected edit within {RELOAD:?}; stderr:\n{}",
            gw.stderr()
        )
    });
    assert!(
        logged.contains("no-such-role"),
        "the log names the problem: {logged}"
    );
    let r = send_as(&gw, "bob", &bob, "PUT", SHOP_DOC, br#"{"n":3}"#).await;
    r.expect(403, Some("forbidden"));
    let r = send_as(&gw, "bob", &bob, "GET", SHOP_DOC, b"").await;
    let v = r.expect(200, None);
    assert_eq!(v["value"]["n"], 1, "{r}");

    // (d) Revoking bob's key (after repairing the bindings: a rejected directory applies no
    // edit at all) refuses him within seconds.
    bind_bob("reader");
    write_policy(
        &dir,
        "partners.toml",
        &format!("{partners}{}", partner_entry("bob", &bob_public, true)),
    );
    let r = poll_reply(
        "bob refused once his key is revoked",
        RELOAD,
        || send_as(&gw, "bob", &bob, "GET", SHOP_DOC, b""),
        |r| r.status == 401,
    )
    .await;
    r.expect(401, Some("key_revoked"));
    // The harness's partner is untouched by all of this.
    admin.get(SHOP_DOC).await.unwrap().expect(200, None);
}

/// How long an edit may take with the periodic check an hour away: only the file watch (200 ms
/// of quiet, then the reload) can apply it this soon.
const WATCHED: Duration = Duration::from_secs(5);

/// The file watch: with the periodic check an hour away and no SIGHUP, an editor's save (a
/// rename into the directory) applies within seconds, and so does a Kubernetes ConfigMap update
/// (every file a symlink through `..data`, which is swapped atomically to a new directory).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_watch_applies_edits_and_configmap_swaps_within_seconds() {
    let certs = TestCerts::new().unwrap();
    let storaged = Storaged::start(&certs, Overrides::default()).unwrap();
    let gw = Gateway::start(&certs, storaged.addr(), |c| {
        c.policy.reload_interval_ms = 3_600_000;
    })
    .unwrap();
    let admin = gw.client(Protocol::Http2).await.unwrap();
    admin.create_table("shop", "t").await;
    admin.put(SHOP_DOC, BODY).await.unwrap().expect(200, None);

    let dir = gw.policy_dir();
    let bob = SecretKey::generate();
    let bob_public = format!("\"{}\"", bob.public_key().to_base64());
    let r = send_as(&gw, "bob", &bob, "GET", SHOP_DOC, b"").await;
    r.expect(401, Some("unknown_partner"));

    // (a) An editor's save: bob and his binding appear.
    let bindings = format!(
        "{}{}",
        read_policy(&dir, "bindings.toml"),
        binding_entry("partner:bob", "reader", &["db:shop"])
    );
    write_policy(&dir, "bindings.toml", &bindings);
    append_policy(
        &dir,
        "partners.toml",
        &partner_entry("bob", &bob_public, false),
    );
    let r = poll_reply(
        "bob served after an edit, by the file watch",
        WATCHED,
        || send_as(&gw, "bob", &bob, "GET", SHOP_DOC, b""),
        |r| r.status == 200,
    )
    .await;
    r.expect(200, None);

    // (b) The directory as a ConfigMap mounts it: each file a symlink to `..data/<file>`,
    // `..data` a symlink to a hidden versioned directory.
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| !n.starts_with('.'))
        .collect();
    let v1 = dir.join("..v1");
    std::fs::create_dir(&v1).unwrap();
    for name in &names {
        std::fs::copy(dir.join(name), v1.join(name)).unwrap();
    }
    std::os::unix::fs::symlink("..v1", dir.join("..data")).unwrap();
    for name in &names {
        let scratch = dir.join(format!(".{name}.link"));
        std::os::unix::fs::symlink(format!("..data/{name}"), &scratch).unwrap();
        std::fs::rename(&scratch, dir.join(name)).unwrap();
    }
    // The same set: bob is still served.
    send_as(&gw, "bob", &bob, "GET", SHOP_DOC, b"")
        .await
        .expect(200, None);

    // (c) The ConfigMap changes: a new version where bob's key is revoked, swapped in by
    // renaming a fresh `..data` symlink over the old one, as the kubelet does.
    let v2 = dir.join("..v2");
    std::fs::create_dir(&v2).unwrap();
    for name in &names {
        std::fs::copy(v1.join(name), v2.join(name)).unwrap();
    }
    let partners = std::fs::read_to_string(v2.join("partners.toml")).unwrap();
    let revoked = partners.replace(
        &partner_entry("bob", &bob_public, false),
        &partner_entry("bob", &bob_public, true),
    );
    assert_ne!(partners, revoked, "bob's entry is in the copy");
    std::fs::write(v2.join("partners.toml"), revoked).unwrap();
    std::os::unix::fs::symlink("..v2", dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    let r = poll_reply(
        "bob refused after the ConfigMap swap, by the file watch",
        WATCHED,
        || send_as(&gw, "bob", &bob, "GET", SHOP_DOC, b""),
        |r| r.status == 401,
    )
    .await;
    r.expect(401, Some("key_revoked"));
    admin.get(SHOP_DOC).await.unwrap().expect(200, None);
}
