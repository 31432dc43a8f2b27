//! A call whose deadline has already passed is refused and does no work: the document is not
//! written.

use std::time::Duration;

use photondb_tests::{Overrides, Storaged, TestCerts, pb, table};
use tonic::{Code, Request};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_past_its_deadline_is_refused_and_not_written() -> anyhow::Result<()> {
    let certs = TestCerts::new()?;
    let storaged = Storaged::start(&certs, Overrides::default())?;
    let mut c = storaged.client().await?;
    photondb_tests::create_table(&mut c, "app", "t").await?;

    let mut admin = storaged.admin().await?;
    let before = admin.stats(pb::StatsRequest {}).await?.into_inner();
    for i in 0..5 {
        let key = format!("late-{i}");
        let mut req = Request::new(pb::PutRequest {
            table: table("app", "t"),
            key: key.clone(),
            value: b"{}".to_vec(),
            precondition: None,
        });
        // Sent as `grpc-timeout: 1n`: expired by the time the server looks at it.
        req.set_timeout(Duration::from_nanos(1));
        let status = c.put(req).await.expect_err("a put past its deadline");
        assert!(
            matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled),
            "{status:?}"
        );
        let missing = c
            .get(pb::GetRequest {
                table: table("app", "t"),
                key: key.clone(),
            })
            .await
            .expect_err("the late put must not be written");
        assert_eq!(missing.code(), Code::NotFound, "{missing:?}");
        assert_eq!(missing.message(), "document not found");
    }

    // Nothing was committed.
    let after = admin.stats(pb::StatsRequest {}).await?.into_inner();
    assert_eq!(after.commits, before.commits, "{before:?} -> {after:?}");

    // The same put with a generous deadline is served.
    let mut req = Request::new(pb::PutRequest {
        table: table("app", "t"),
        key: "on-time".into(),
        value: b"{}".to_vec(),
        precondition: None,
    });
    req.set_timeout(Duration::from_secs(30));
    let version = c.put(req).await?.into_inner().version;
    assert!(version > 0);
    Ok(())
}

/// Sends one unary call over raw HTTP/2 with `grpc-timeout: 1n`, so the request certainly
/// reaches the server (tonic's client would give up locally), and returns the `grpc-status`
/// the server answered with.
async fn raw_put_with_expired_deadline(storaged: &Storaged, key: &str) -> anyhow::Result<u32> {
    let tls = storaged.raw_tls(storaged.gateway_client()).await?;
    let (send, conn) = h2::client::handshake(tls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut send = send.ready().await?;
    let message = prost::Message::encode_to_vec(&pb::PutRequest {
        table: table("app", "t"),
        key: key.into(),
        value: b"{}".to_vec(),
        precondition: None,
    });
    let mut body = Vec::with_capacity(5 + message.len());
    body.push(0);
    body.extend_from_slice(&u32::try_from(message.len())?.to_be_bytes());
    body.extend_from_slice(&message);
    let request = http::Request::builder()
        .method("POST")
        .uri(format!(
            "https://{}/photondb.v1.Storage/Put",
            photondb_tests::STORAGED_NAME
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-timeout", "1n")
        .body(())?;
    let (response, mut stream) = send.send_request(request, false)?;
    stream.send_data(body.into(), true)?;
    let response = tokio::time::timeout(Duration::from_secs(10), response).await??;
    let status_of = |h: &http::HeaderMap| {
        h.get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u32>().ok())
    };
    if let Some(code) = status_of(response.headers()) {
        return Ok(code);
    }
    let mut body = response.into_body();
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        anyhow::ensure!(
            chunk.is_empty(),
            "the server answered with a message: {chunk:?}"
        );
    }
    let trailers = body.trailers().await?.unwrap_or_default();
    status_of(&trailers).ok_or_else(|| anyhow::anyhow!("no grpc-status in {trailers:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_refuses_work_whose_deadline_passed() -> anyhow::Result<()> {
    let certs = TestCerts::new()?;
    let storaged = Storaged::start(&certs, Overrides::default())?;
    let mut c = storaged.client().await?;
    photondb_tests::create_table(&mut c, "app", "t").await?;
    for i in 0..5 {
        let key = format!("raw-late-{i}");
        let code = raw_put_with_expired_deadline(&storaged, &key).await?;
        assert!(
            code == Code::DeadlineExceeded as u32 || code == Code::Cancelled as u32,
            "grpc-status {code}"
        );
        let missing = c
            .get(pb::GetRequest {
                table: table("app", "t"),
                key,
            })
            .await
            .expect_err("the late put must not be written");
        assert_eq!(missing.code(), Code::NotFound, "{missing:?}");
    }
    Ok(())
}
