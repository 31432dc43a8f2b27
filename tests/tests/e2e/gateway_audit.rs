//! The audit logs of a real run (DESIGN §8): both daemons anchor and rotate them, one
//! request's id is in the gateway's and storaged's logs and in both audit logs, no signature
//! or document body is in any of them, a flood of 10,000 bad signatures makes a bounded number
//! of lines whose counts add up, and `photonctl audit verify` passes the untouched rotated
//! files and names a cut-off tail.

use std::path::{Path, PathBuf};
use std::process::Command;

use photondb_proto::signing::SecretKey;
use photondb_tests::gateway::Gateway;
use photondb_tests::{Overrides, Storaged, TestCerts};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const FLOOD: usize = 10_000;

fn photonctl() -> Command {
    let path = photondb_tests::workspace_binary("photondb-gateway", "photonctl")
        .expect("the photonctl binary");
    Command::new(path)
}

/// A new audit key in `dir`; returns its file and public key.
fn audit_key(dir: &Path, name: &str) -> (PathBuf, String) {
    let key = SecretKey::generate();
    let path = dir.join(name);
    std::fs::write(&path, key.to_pkcs8_pem().unwrap().as_bytes()).unwrap();
    (path, key.public_key().to_base64())
}

/// The log file and every rotated file beside it (not the anchor copy).
fn log_files(log: &Path) -> Vec<PathBuf> {
    let dir = log.parent().unwrap();
    let name = log.file_name().unwrap().to_string_lossy().into_owned();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n == name || (n.starts_with(&format!("{name}.")) && !n.contains("anchor"))
        })
        .collect();
    files.sort();
    files
}

fn events(files: &[PathBuf]) -> Vec<serde_json::Value> {
    files
        .iter()
        .flat_map(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            text.lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect::<Vec<_>>()
        })
        .collect()
}

fn verify(key: &str, files: &[PathBuf]) -> (i32, String) {
    let out = photonctl()
        .args(["audit", "verify", "--key", key])
        .args(files)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// The `X-Signature` value of a raw request.
fn signature_of(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let line = text
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("x-signature:"))
        .expect("a signed request");
    line.split_once(':').unwrap().1.trim().to_owned()
}

/// `raw` on a keep-alive connection, its signature changed so that it no longer verifies.
fn forged(raw: &[u8]) -> Vec<u8> {
    let sig = signature_of(raw);
    // Another character of the alphabet early on: still base64 of 64 bytes, another value.
    let mut bad = sig.clone().into_bytes();
    bad[10] = if bad[10] == b'A' { b'B' } else { b'A' };
    let text = String::from_utf8_lossy(raw)
        .replace(&sig, std::str::from_utf8(&bad).unwrap())
        .replace("Connection: close", "Connection: keep-alive");
    text.into_bytes()
}

/// Sends `raw` `n` times over one HTTP/1.1 keep-alive connection (a new one if the gateway
/// closes it); returns the statuses.
async fn send_many(gw: &Gateway, raw: &[u8], n: usize) -> Vec<u16> {
    let mut statuses = Vec::with_capacity(n);
    let mut tls = gw.tls(&[b"http/1.1"]).await.unwrap();
    let mut buf = Vec::new();
    while statuses.len() < n {
        if tls.write_all(raw).await.is_err() {
            tls = gw.tls(&[b"http/1.1"]).await.unwrap();
            continue;
        }
        // Read one whole response: its head, then Content-Length bytes.
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse().unwrap());
                if buf.len() >= end + 4 + length {
                    statuses.push(head[9..12].parse().unwrap());
                    buf.drain(..end + 4 + length);
                    break;
                }
            }
            let mut chunk = [0u8; 4096];
            match tls.read(&mut chunk).await {
                Ok(0) | Err(_) => {
                    tls = gw.tls(&[b"http/1.1"]).await.unwrap();
                    buf.clear();
                    break;
                }
                Ok(k) => buf.extend_from_slice(&chunk[..k]),
            }
        }
    }
    statuses
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_run_leaves_audit_logs_that_verify_carry_the_request_id_and_no_secret() {
    let keys = tempfile::tempdir().unwrap();
    let (storaged_key, storaged_public) = audit_key(keys.path(), "storaged-audit.key");
    let (gateway_key, gateway_public) = audit_key(keys.path(), "gateway-audit.key");
    let certs = TestCerts::new().unwrap();
    let mut storaged = Storaged::start(
        &certs,
        Overrides {
            extra_toml: format!(
                "\n[audit]\nsigning_key = {:?}\nanchor_lines = 5\nrotate_kib = 1\n",
                storaged_key.display().to_string()
            ),
            env: vec![
                ("PHOTONDB_LOG_FORMAT".into(), "json".into()),
                ("PHOTONDB_LOGGING".into(), "debug".into()),
            ],
            ..Overrides::default()
        },
    )
    .unwrap();
    let mut gw = Gateway::start(&certs, storaged.addr(), |c| {
        c.audit.signing_key = Some(gateway_key.clone());
        c.audit.anchor_lines = 5;
        c.audit.rotate_kib = 1;
    })
    .unwrap();

    // A few real requests, each signed once; the document's text is its own marker.
    let body = br#"{"secret-document-text":"ce5e1a-body-marker"}"#;
    let mut sent = Vec::new();
    for (method, target, body) in [
        ("PUT", "/v1/dbs/audited", &b""[..]),
        ("PUT", "/v1/dbs/audited/tables/t", b""),
        ("PUT", "/v1/dbs/audited/tables/t/docs/k", body),
        ("GET", "/v1/dbs/audited/tables/t/docs/k", b""),
    ] {
        let request = gw.signed_request(method, target, body);
        let reply = gw.send_signed(&request).await.unwrap();
        assert!(reply.status < 300, "{method} {target}: {}", reply.text());
        sent.push((request.request_id.clone(), signature_of(&request.bytes)));
    }

    // Authorized requests that storaged never sees are audited too: the health check, and a
    // body refused at step 10.
    let health = gw.signed_request("GET", "/v1/health", b"");
    assert_eq!(gw.send_signed(&health).await.unwrap().status, 200);
    let torn = gw.signed_request("PUT", "/v1/dbs/audited/tables/t/docs/j", br#"{"a":"#);
    let torn_code = gw.send_signed(&torn).await.unwrap().code().unwrap();

    // The flood: one signed request, its signature spoilt, sent 10,000 times.
    let bad = forged(&gw.signed_request("GET", "/v1/dbs", b"").bytes);
    let flood_signature = signature_of(&bad);
    let per = FLOOD / 4;
    let (a, b, c, d) = tokio::join!(
        send_many(&gw, &bad, per),
        send_many(&gw, &bad, per),
        send_many(&gw, &bad, per),
        send_many(&gw, &bad, per),
    );
    let statuses: Vec<u16> = [a, b, c, d].into_iter().flatten().collect();
    assert_eq!(statuses.len(), FLOOD);
    assert!(statuses.iter().all(|s| *s == 401), "every forgery is 401");

    // Clean stops: each daemon anchors what it has not signed for yet.
    gw.stop().unwrap();
    storaged.stop().unwrap();

    let gw_log = gw.work_dir().join("state/audit.log");
    let gw_files = log_files(&gw_log);
    let st_files = log_files(&storaged.audit_log_path());
    assert!(
        gw_files.len() > 1,
        "the gateway's log rotated: {gw_files:?}"
    );
    assert!(st_files.len() > 1, "storaged's log rotated: {st_files:?}");
    let gw_events = events(&gw_files);
    let st_events = events(&st_files);

    // One request's id, end to end: both daemons' logs and both audit logs.
    let (put_id, _) = &sent[2];
    assert!(gw.stderr().contains(put_id.as_str()), "gateway log");
    // storaged logs JSON lines here (at debug): the call's line carries the request id, and
    // so does the engine's own line from the blocking pool, through the call's span.
    let json_lines: Vec<serde_json::Value> = storaged
        .stderr()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    for message in ["call", "engine call returned"] {
        let logged = json_lines.iter().any(|l| {
            l["fields"]["message"] == message
                && (l["fields"]["request_id"] == put_id.as_str()
                    || l["span"]["request_id"] == put_id.as_str())
        });
        assert!(
            logged,
            "{message:?} in storaged's JSON log: {}",
            storaged.stderr()
        );
    }
    let access = gw_events
        .iter()
        .find(|e| e["kind"] == "access" && e["request_id"] == put_id.as_str())
        .expect("the gateway's access event");
    assert_eq!(access["principal"], "partner:e2e-tests");
    assert_eq!(access["resource"], "db:audited/table:t");
    assert_eq!(access["action"], "table.write");
    assert_eq!(access["code"], "ok");
    assert!(access["client_ip"].as_str().unwrap().starts_with("127."));
    let access_of = |id: &str| {
        gw_events
            .iter()
            .find(|e| e["kind"] == "access" && e["request_id"] == id)
            .unwrap_or_else(|| panic!("no access event for {id}"))
    };
    let checked = access_of(&health.request_id);
    assert_eq!(
        (&checked["action"], &checked["code"]),
        (&"health.read".into(), &"ok".into())
    );
    let refused = access_of(&torn.request_id);
    assert_eq!(refused["outcome"], "failed");
    assert_eq!(refused["code"], torn_code.as_str());
    let call = st_events
        .iter()
        .find(|e| e["kind"] == "call" && e["request_id"] == put_id.as_str())
        .expect("storaged's call event");
    assert_eq!(call["principal"], "partner:e2e-tests");
    assert_eq!(call["code"], "Ok");

    // The flood: a bounded number of lines, and every forgery accounted for.
    let refusals: Vec<&serde_json::Value> = gw_events
        .iter()
        .filter(|e| e["kind"] == "refusal" && e["code"] == "signature_invalid")
        .collect();
    let accounted: u64 = refusals
        .iter()
        .map(|e| e.get("count").map_or(1, |c| c.as_u64().unwrap()))
        .sum();
    assert_eq!(accounted, FLOOD as u64, "{refusals:#?}");
    assert!(
        refusals.len() <= 20,
        "{} lines for one peer and one code",
        refusals.len()
    );

    // No signature, body or key anywhere a reader of logs looks.
    let mut haystack = gw.stderr() + &storaged.stderr();
    for f in gw_files.iter().chain(&st_files) {
        haystack.push_str(&std::fs::read_to_string(f).unwrap());
    }
    let mut needles: Vec<String> = sent.iter().map(|(_, sig)| sig.clone()).collect();
    needles.push(flood_signature);
    needles.push("ce5e1a-body-marker".into());
    needles.push(std::fs::read_to_string(&gateway_key).unwrap());
    for needle in &needles {
        assert!(!haystack.contains(needle.as_str()), "{needle} was logged");
    }

    // Untouched, rotated logs verify against their keys and anchor copies.
    let (code, out) = verify(&gateway_public, &gw_files);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("matches"), "{out}");
    let (code, out) = verify(&storaged_public, &st_files);
    assert_eq!(code, 0, "{out}");
    // What the shell's `audit.log*` gives: the anchor copy among the files is not a log.
    let mut globbed = gw_files.clone();
    globbed.push(photondb_proto::audit::default_anchor_copy(&gw_log));
    let (code, out) = verify(&gateway_public, &globbed);
    assert_eq!(code, 0, "{out}");
    // The other daemon's key is not this log's.
    let (code, out) = verify(&storaged_public, &gw_files);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("not an audit key given"), "{out}");

    // Cut the live file short: the anchor copy outside it names the missing end.
    let live = gw_log;
    let text = std::fs::read_to_string(&live).unwrap();
    let kept: Vec<&str> = text.lines().collect();
    let cut: String = kept[..kept.len() - 1]
        .iter()
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&live, cut).unwrap();
    let (code, out) = verify(&gateway_public, &gw_files);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("truncated"), "{out}");
    // A usage error is 64.
    let out = photonctl()
        .args(["audit", "verify", "--key", "not-a-key"])
        .arg(&live)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
}
