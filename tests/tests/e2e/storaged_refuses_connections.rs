//! storaged serves only mutual TLS with a client certificate that chains to the internal CA and
//! names an allowed gateway: every other connection fails at the transport, is audited, and
//! leaves the daemon serving correct clients.

use std::time::Duration;

use pb::storage_client::StorageClient;
use photondb_tests::{ClientCert, Overrides, Storaged, TestCerts, pb};
use tonic::Code;
use tonic::transport::Endpoint;

const AUDIT_WAIT: Duration = Duration::from_secs(10);

/// Makes one call on a lazily connected channel; it must fail before any server answered.
async fn call_fails_at_transport(endpoint: Endpoint) -> tonic::Status {
    let mut client = StorageClient::new(endpoint.connect_lazy());
    let status = client
        .list_databases(pb::ListDatabasesRequest::default())
        .await
        .expect_err("the call must not be served");
    // A served refusal would come as a gRPC status from the server; a transport failure is
    // made on the client side (connection closed during or right after the handshake), with
    // the transport error as its source.
    assert!(
        matches!(
            status.code(),
            Code::Unavailable | Code::Unknown | Code::Cancelled
        ),
        "not a transport failure: {status:?}"
    );
    let transport = std::error::Error::source(&status)
        .and_then(|e| e.downcast_ref::<tonic::transport::Error>());
    assert!(
        transport.is_some(),
        "status has no transport error behind it: {status:?}"
    );
    assert!(
        status.metadata().get("content-type").is_none(),
        "the server answered: {status:?}"
    );
    status
}

fn refused_events(storaged: &Storaged, kind: &str) -> usize {
    storaged
        .audit_events()
        .iter()
        .filter(|e| e["kind"] == kind)
        .count()
}

async fn wait_refused(storaged: &Storaged, kind: &str, at_least: usize) -> serde_json::Value {
    let events = photondb_tests::wait_until(AUDIT_WAIT, || {
        let all: Vec<_> = storaged
            .audit_events()
            .into_iter()
            .filter(|e| e["kind"] == kind)
            .collect();
        (all.len() >= at_least).then(|| all.last().cloned().expect("non-empty"))
    })
    .await;
    match events {
        Some(e) => e,
        None => panic!(
            "no {kind} audit event #{at_least}; audit log: {:#?}",
            storaged.audit_events()
        ),
    }
}

async fn correct_client_works(storaged: &Storaged) {
    let mut c = storaged.client().await.expect("correct client connects");
    c.list_databases(pb::ListDatabasesRequest::default())
        .await
        .expect("correct client is served");
}

fn assert_reason(event: &serde_json::Value, needles: &[&str]) {
    let reason = event["reason"].as_str().unwrap_or_default().to_lowercase();
    assert!(
        needles.iter().any(|n| reason.contains(&n.to_lowercase())),
        "audit reason {reason:?} names none of {needles:?}"
    );
    let peer = event["peer"].as_str().unwrap_or_default();
    assert!(peer.starts_with("127.0.0.1:"), "peer {peer:?}");
}

async fn refuse_with_cert(storaged: &Storaged, cert: Option<&ClientCert>) -> serde_json::Value {
    let before = refused_events(storaged, "mtls_refused");
    let endpoint = storaged.endpoint(cert).expect("endpoint");
    call_fails_at_transport(endpoint).await;
    let event = wait_refused(storaged, "mtls_refused", before + 1).await;
    correct_client_works(storaged).await;
    let chained = storaged.audit_chain_len().expect("audit chain intact");
    assert_eq!(chained, storaged.audit_events().len());
    event
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_http2_is_refused_and_audited() -> anyhow::Result<()> {
    let certs = TestCerts::new()?;
    let storaged = Storaged::start(&certs, Overrides::default())?;
    let endpoint = Endpoint::from_shared(format!("http://{}", storaged.addr()))?
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(10));
    call_fails_at_transport(endpoint).await;
    let event = wait_refused(&storaged, "mtls_refused", 1).await;
    assert_eq!(event["source"], "storaged");
    // rustls reads the HTTP/2 preface as a record of an unknown content type.
    assert_reason(
        &event,
        &["corrupt message", "content type", "invalidcontenttype"],
    );
    correct_client_works(&storaged).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_client_certificate_is_refused_and_audited() -> anyhow::Result<()> {
    let certs = TestCerts::new()?;
    let storaged = Storaged::start(&certs, Overrides::default())?;
    let event = refuse_with_cert(&storaged, None).await;
    assert_reason(&event, &["no certificates", "certificate required"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_from_another_ca_is_refused_and_audited() -> anyhow::Result<()> {
    let certs = TestCerts::new()?;
    let storaged = Storaged::start(&certs, Overrides::default())?;
    let event = refuse_with_cert(&storaged, Some(&certs.foreign_client()?)).await;
    assert_reason(&event, &["unknownissuer", "unknown issuer"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_certificate_is_refused_and_audited() -> anyhow::Result<()> {
    let certs = TestCerts::new()?;
    let storaged = Storaged::start(&certs, Overrides::default())?;
    let event = refuse_with_cert(&storaged, Some(&certs.expired_client()?)).await;
    assert_reason(&event, &["expired"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_not_on_the_allowlist_is_refused_and_audited() -> anyhow::Result<()> {
    let certs = TestCerts::new()?;
    let storaged = Storaged::start(&certs, Overrides::default())?;
    let event = refuse_with_cert(&storaged, Some(&certs.unlisted_client()?)).await;
    assert_reason(
        &event,
        &["applicationverificationfailure", "application verification"],
    );
    let identity = wait_refused(&storaged, "mtls_identity_refused", 1).await;
    assert_eq!(identity["identities"], "spiffe://photondb.local/intruder");
    Ok(())
}
