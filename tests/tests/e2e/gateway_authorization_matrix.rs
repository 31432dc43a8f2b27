//! The gateway's authorization is the policy's one decision (DESIGN §4): for one partner per
//! built-in role, bound on `db:shop`, and every operation against a resource inside the
//! binding and outside it, the gateway answers 403 `forbidden` exactly when
//! `photonctl policy explain` over the same policy directory denies. And `anonymous` reads
//! only under `/public/*`, only what its binding covers.

use std::path::Path;
use std::process::Command;

use photondb_proto::signing::SecretKey;
use photondb_tests::gateway::{Gateway, HttpsClient, Protocol};
use photondb_tests::{Overrides, Storaged, TestCerts};

use crate::gateway_policy_reload::{
    RELOAD, append_policy, binding_entry, detail, partner_entry, poll_reply, read_policy, send_as,
    write_policy,
};

const ROLES: [&str; 5] = ["admin", "db-owner", "writer", "reader", "cluster-admin"];

fn photonctl() -> Command {
    let path = photondb_tests::workspace_binary("photondb-gateway", "photonctl")
        .expect("the photonctl binary");
    Command::new(path)
}

/// `photonctl policy explain`: `true` allow (exit 0), `false` deny (exit 1); anything else
/// (a bad argument, a directory that does not load) fails the test.
fn explain(dir: &Path, principal: &str, action: &str, resource: &str) -> bool {
    let out = photonctl()
        .args(["policy", "explain", "--dir"])
        .arg(dir)
        .args(["--principal", principal, "--action", action])
        .args(["--resource", resource])
        .output()
        .expect("running photonctl");
    match out.status.code() {
        Some(0) => true,
        Some(1) => false,
        _ => panic!(
            "photonctl policy explain {principal} {action} {resource}: {}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// One request and the permission and resource policy decides it on.
struct Op {
    name: String,
    method: &'static str,
    target: String,
    body: &'static str,
    action: &'static str,
    resource: String,
}

fn op(
    name: &str,
    method: &'static str,
    target: String,
    body: &'static str,
    action: &'static str,
    resource: String,
) -> Op {
    Op {
        name: name.to_owned(),
        method,
        target,
        body,
        action,
        resource,
    }
}

/// Every operation; those naming a database once inside the `db:shop` binding and once
/// outside it (db other). Deletes come after the reads of the same document.
fn operations() -> Vec<Op> {
    let mut ops = vec![
        op(
            "list dbs",
            "GET",
            "/v1/dbs".into(),
            "",
            "db.list",
            "*".into(),
        ),
        op(
            "verify",
            "GET",
            "/v1/storage/verify".into(),
            "",
            "storage.inspect",
            "*".into(),
        ),
        op(
            "create db shop2",
            "PUT",
            "/v1/dbs/shop2".into(),
            "",
            "db.create",
            "db:shop2".into(),
        ),
        op(
            "create db shop",
            "PUT",
            "/v1/dbs/shop".into(),
            "",
            "db.create",
            "db:shop".into(),
        ),
        op(
            "drop db other",
            "DELETE",
            "/v1/dbs/other".into(),
            "",
            "db.delete",
            "db:other".into(),
        ),
    ];
    for db in ["shop", "other"] {
        let tables = format!("/v1/dbs/{db}/tables");
        let t = format!("db:{db}/table:t");
        ops.extend([
            op(
                &format!("list tables in {db}"),
                "GET",
                tables.clone(),
                "",
                "db.list",
                format!("db:{db}"),
            ),
            op(
                &format!("create table in {db}"),
                "PUT",
                format!("{tables}/made"),
                "",
                "table.create",
                format!("db:{db}/table:made"),
            ),
            op(
                &format!("drop table in {db}"),
                "DELETE",
                format!("{tables}/dropme"),
                "",
                "table.delete",
                format!("db:{db}/table:dropme"),
            ),
            op(
                &format!("put doc in {db}"),
                "PUT",
                format!("{tables}/t/docs/k"),
                r#"{"v":1}"#,
                "table.write",
                t.clone(),
            ),
            op(
                &format!("get doc in {db}"),
                "GET",
                format!("{tables}/t/docs/k"),
                "",
                "table.read",
                t.clone(),
            ),
            op(
                &format!("scan in {db}"),
                "GET",
                format!("{tables}/t/docs?prefix=k"),
                "",
                "table.read",
                t.clone(),
            ),
            op(
                &format!("batch in {db}"),
                "POST",
                format!("{tables}/t/batch"),
                r#"{"operations":[{"op":"put","key":"b","value":{"v":2}}]}"#,
                "table.write",
                t.clone(),
            ),
            op(
                &format!("delete doc in {db}"),
                "DELETE",
                format!("{tables}/t/docs/k"),
                "",
                "table.write",
                t,
            ),
        ]);
    }
    ops
}

struct Stack {
    _certs: TestCerts,
    _storaged: Storaged,
    gw: Gateway,
}

/// storaged and a gateway with dbs shop and other, each with tables t (holding doc k) and
/// dropme, made by the harness's admin partner.
async fn stack() -> (Stack, HttpsClient) {
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
        for table in ["t", "dropme"] {
            admin
                .put(&format!("/v1/dbs/{db}/tables/{table}"), "")
                .await
                .unwrap()
                .expect(201, None);
        }
        admin
            .put(&format!("/v1/dbs/{db}/tables/t/docs/k"), r#"{"v":0}"#)
            .await
            .unwrap()
            .expect(200, None);
    }
    let stack = Stack {
        _certs: certs,
        _storaged: storaged,
        gw,
    };
    (stack, admin)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_forbids_exactly_what_policy_explain_denies() {
    let (stack, _admin) = stack().await;
    let gw = &stack.gw;
    let dir = gw.policy_dir();
    let partners: Vec<(String, &str, SecretKey)> = ROLES
        .iter()
        .map(|role| (format!("m-{role}"), *role, SecretKey::generate()))
        .collect();
    let mut partner_text = String::new();
    let mut binding_text = String::new();
    for (id, role, key) in &partners {
        let public = format!("\"{}\"", key.public_key().to_base64());
        partner_text.push_str(&partner_entry(id, &public, false));
        binding_text.push_str(&binding_entry(&format!("partner:{id}"), role, &["db:shop"]));
    }
    append_policy(&dir, "partners.toml", &partner_text);
    append_policy(&dir, "bindings.toml", &binding_text);

    // All bindings are in one file: once the reader's applies, every one does.
    let (reader_id, _, reader_key) = partners
        .iter()
        .find(|(_, role, _)| *role == "reader")
        .expect("a reader");
    poll_reply(
        "the matrix partners' bindings applied",
        RELOAD,
        || {
            send_as(
                gw,
                reader_id,
                reader_key,
                "GET",
                "/v1/dbs/shop/tables/t/docs/k",
                b"",
            )
        },
        |r| r.status == 200,
    )
    .await;

    let ops = operations();
    let (mut allowed, mut denied) = (0, 0);
    for (id, role, key) in &partners {
        let principal = format!("partner:{id}");
        for op in &ops {
            let allow = explain(&dir, &principal, op.action, &op.resource);
            let r = send_as(gw, id, key, op.method, &op.target, op.body.as_bytes()).await;
            let what = format!(
                "{role} ({principal}) {}: {} {} needs {} on {}",
                op.name, op.method, op.target, op.action, op.resource
            );
            if allow {
                allowed += 1;
                assert!(
                    !matches!(r.status, 401 | 403) && r.status < 500,
                    "{what}: explain allows, the gateway answered {r}"
                );
            } else {
                denied += 1;
                assert_eq!(
                    r.status, 403,
                    "{what}: explain denies, the gateway answered {r}"
                );
                r.expect(403, Some("forbidden"));
                let expected = format!("{} on {}", op.action, op.resource);
                assert!(detail(&r).contains(&expected), "{what}: {r}");
            }
        }
    }
    assert!(
        allowed >= 10 && denied >= 10,
        "the matrix exercises both outcomes: {allowed} allowed, {denied} denied"
    );
}

/// Replaces the harness's `anonymous` binding's resources with `resources`.
fn bind_anonymous(dir: &Path, resources: &[&str]) {
    let text = read_policy(dir, "bindings.toml");
    let mut doc: toml::Table = toml::from_str(&text).expect("bindings.toml parses");
    let bindings = doc
        .get_mut("binding")
        .and_then(toml::Value::as_array_mut)
        .expect("[[binding]] entries");
    let mut changed = 0;
    for binding in bindings.iter_mut() {
        let Some(table) = binding.as_table_mut() else {
            continue;
        };
        if table.get("principal").and_then(toml::Value::as_str) == Some("anonymous") {
            let list = resources
                .iter()
                .map(|r| toml::Value::String((*r).to_owned()))
                .collect();
            table.insert("resources".into(), toml::Value::Array(list));
            changed += 1;
        }
    }
    assert_eq!(changed, 1, "one anonymous binding in:\n{text}");
    write_policy(dir, "bindings.toml", &toml::to_string(&doc).expect("TOML"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_reads_only_public_routes_its_binding_covers() {
    let (stack, _admin) = stack().await;
    let gw = &stack.gw;
    const SHOP: &str = "/public/v1/dbs/shop/tables/t/docs/k";
    const OTHER: &str = "/public/v1/dbs/other/tables/t/docs/k";

    // Bound on db:*/table:* by the harness: public reads are served.
    for target in [SHOP, OTHER] {
        let r = gw.raw_request("GET", target).await.unwrap();
        // Served (200, or 404 were doc k missing): doc k exists, so 200.
        assert_eq!(r.status, 200, "{target}: {r}");
        assert_eq!(r.json()["value"]["v"], 0, "{r}");
    }
    // /public is read-only by route; /v1 needs credentials.
    gw.raw_request("PUT", SHOP)
        .await
        .unwrap()
        .expect(405, Some("method_not_allowed"));
    gw.raw_request("DELETE", SHOP)
        .await
        .unwrap()
        .expect(405, Some("method_not_allowed"));
    gw.raw_request("GET", "/v1/dbs/shop/tables/t/docs/k")
        .await
        .unwrap()
        .expect(401, Some("signature_missing"));

    // Narrowed to one table: others are forbidden, that one still served.
    bind_anonymous(&gw.policy_dir(), &["db:shop/table:t"]);
    let r = poll_reply(
        "the narrowed anonymous binding applied",
        RELOAD,
        move || async move { gw.raw_request("GET", OTHER).await.unwrap() },
        |r| r.status == 403,
    )
    .await;
    r.expect(403, Some("forbidden"));
    assert!(detail(&r).contains("table.read on db:other/table:t"), "{r}");
    let r = gw
        .raw_request("GET", "/public/v1/dbs/shop/tables/dropme/docs/k")
        .await
        .unwrap();
    r.expect(403, Some("forbidden"));
    let r = gw.raw_request("GET", SHOP).await.unwrap();
    assert_eq!(r.status, 200, "{r}");
    assert!(
        explain(
            &gw.policy_dir(),
            "anonymous",
            "table.read",
            "db:shop/table:t"
        ) && !explain(
            &gw.policy_dir(),
            "anonymous",
            "table.read",
            "db:other/table:t"
        ),
        "photonctl agrees with the gateway"
    );
}
