//! storaged re-reads its certificate files when they change: new connections get the new
//! certificate without a restart, and a broken file keeps the previous one.

use std::path::Path;
use std::time::Duration;

use photondb_tests::certs::files;
use photondb_tests::{Overrides, Storaged, TestCerts, pb};

const RELOAD_WAIT: Duration = Duration::from_secs(20);

/// Replaces `path` in one step (write a sibling, rename over), as deploy tools do.
fn replace(path: &Path, contents: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, contents)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// The DER of the certificate storaged presents to a new connection.
async fn served_certificate(storaged: &Storaged) -> anyhow::Result<Vec<u8>> {
    let tls = storaged.raw_tls(storaged.gateway_client()).await?;
    let certs = tls.get_ref().1.peer_certificates().unwrap_or_default();
    Ok(certs.first().map(|c| c.to_vec()).unwrap_or_default())
}

fn der_of(pem: &str) -> Vec<u8> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    CertificateDer::from_pem_slice(pem.as_bytes())
        .expect("certificate PEM")
        .to_vec()
}

async fn wait_served(storaged: &Storaged, want: &[u8]) -> bool {
    let deadline = tokio::time::Instant::now() + RELOAD_WAIT;
    loop {
        if served_certificate(storaged).await.ok().as_deref() == Some(want) {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_connections_get_the_reloaded_certificate() -> anyhow::Result<()> {
    let certs = TestCerts::new()?;
    let overrides = Overrides {
        reload_interval_ms: 1_000,
        ..Overrides::default()
    };
    let storaged = Storaged::start(&certs, overrides)?;
    let original = std::fs::read_to_string(certs.path(files::STORAGED_CERT))?;
    assert_eq!(served_certificate(&storaged).await?, der_of(&original));
    // The name the new certificate adds is not served yet.
    let early = storaged
        .endpoint_for(Some(storaged.gateway_client()), "reloaded.photondb.local")?
        .connect()
        .await;
    assert!(
        early.is_err(),
        "the old certificate does not name reloaded.photondb.local"
    );
    // A connection made before the reload keeps working across it.
    let mut before = storaged.client().await?;
    before
        .list_databases(pb::ListDatabasesRequest::default())
        .await?;

    // A broken key file: the reload fails, is audited, and the old certificate stays.
    replace(&certs.path(files::STORAGED_KEY), "not a key\n")?;
    storaged
        .wait_for_audit(RELOAD_WAIT, |e| e["kind"] == "tls_reload_failed")
        .await?;
    assert_eq!(served_certificate(&storaged).await?, der_of(&original));
    storaged
        .client()
        .await?
        .list_databases(pb::ListDatabasesRequest::default())
        .await?;

    // A new certificate from the same CA with an added name.
    let new = certs.issue_server(&[
        "storaged.photondb.local",
        "reloaded.photondb.local",
        "localhost",
        "127.0.0.1",
    ])?;
    assert_ne!(der_of(&new.cert_pem), der_of(&original));
    replace(&certs.path(files::STORAGED_KEY), &new.key_pem)?;
    replace(&certs.path(files::STORAGED_CERT), &new.cert_pem)?;
    assert!(
        wait_served(&storaged, &der_of(&new.cert_pem)).await,
        "storaged still serves the old certificate; audit: {:#?}",
        storaged.audit_events()
    );
    storaged
        .wait_for_audit(RELOAD_WAIT, |e| e["kind"] == "tls_reloaded")
        .await?;
    // Clients that verify the added name now connect and are served.
    let channel = storaged
        .endpoint_for(Some(storaged.gateway_client()), "reloaded.photondb.local")?
        .connect()
        .await?;
    let mut c = pb::storage_client::StorageClient::new(channel);
    c.list_databases(pb::ListDatabasesRequest::default())
        .await?;
    before
        .list_databases(pb::ListDatabasesRequest::default())
        .await?;
    Ok(())
}
