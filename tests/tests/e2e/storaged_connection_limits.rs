//! storaged bounds what a peer can hold before it has authenticated: a TCP peer that never
//! completes the TLS handshake is cut off at the handshake deadline (and audited); floods of
//! silent and failing peers neither lock gateways out nor fill the audit log; and
//! authenticated connections beyond `max_connections` are closed until a slot frees up.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use pb::storage_client::StorageClient;
use photondb_tests::{Overrides, Storaged, TestCerts, pb};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};
use tonic::transport::Channel;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_peer_is_cut_off_at_the_handshake_deadline() -> anyhow::Result<()> {
    let certs = TestCerts::new()?;
    let overrides = Overrides {
        limits: vec!["handshake_timeout_ms = 300".into()],
        ..Overrides::default()
    };
    let storaged = Storaged::start(&certs, overrides)?;
    let mut silent = tokio::net::TcpStream::connect(storaged.addr()).await?;
    let local = silent.local_addr()?;
    let mut buf = [0u8; 64];
    // The server closes without a byte: EOF (or a reset) well before our own deadline.
    let read = tokio::time::timeout(Duration::from_secs(10), silent.read(&mut buf)).await;
    match read {
        Ok(Ok(0)) | Ok(Err(_)) => {}
        Ok(Ok(n)) => panic!("the server sent {n} bytes to a silent peer"),
        Err(_) => panic!("a silent peer was not cut off"),
    }
    let event = storaged
        .wait_for_audit(Duration::from_secs(10), |e| {
            e["kind"] == "mtls_refused" && e["peer"] == local.to_string()
        })
        .await?;
    assert_eq!(event["reason"], "handshake timed out");
    // A real client is unaffected.
    storaged
        .client()
        .await?
        .list_databases(pb::ListDatabasesRequest::default())
        .await?;
    Ok(())
}

/// The flood: silent and failing connections.
const SILENT: usize = 2_000;
const FAILING: usize = 2_000;
/// Silent peers come from 127.0.0.2 to .9, failing ones from .10 to .13 (Linux routes all of
/// 127/8 to the loopback), so that the per-address cap and eviction both come into play; the
/// gateway is 127.0.0.1.
const SILENT_PEERS: std::ops::Range<u8> = 2..10;
const FAILING_PEERS: std::ops::Range<u8> = 10..14;
/// Silent sockets each silent peer keeps open (older ones it closes): enough to fill every
/// handshake place, few enough for the test process's descriptors.
const HELD_PER_PEER: usize = 32;
/// Every call on the gateway's connection must finish within this, flood or not.
const CALL_BOUND: Duration = Duration::from_secs(1);
const AUDIT_INTERVAL: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_neither_locks_out_a_gateway_nor_fills_the_audit_log() -> anyhow::Result<()> {
    let certs = TestCerts::new()?;
    let overrides = Overrides {
        limits: vec![
            // Longer than the flood: the last silent sockets still hold their places after it.
            "handshake_timeout_ms = 5000".into(),
            "max_pending_handshakes = 64".into(),
            "max_pending_handshakes_per_ip = 16".into(),
            format!("refusal_audit_interval_ms = {}", AUDIT_INTERVAL.as_millis()),
        ],
        ..Overrides::default()
    };
    let storaged = Storaged::start(&certs, overrides)?;
    let to = storaged.addr();
    let mut gateway = storaged.client().await?;
    gateway
        .list_databases(pb::ListDatabasesRequest::default())
        .await?;
    let audit_before = storaged.audit_events().len();
    let started = Instant::now();

    let stop = Arc::new(AtomicBool::new(false));
    let calls = tokio::spawn(keep_calling(gateway, stop.clone()));
    let per_silent = SILENT / SILENT_PEERS.len();
    let per_failing = FAILING / FAILING_PEERS.len();
    let silent: Vec<_> = SILENT_PEERS
        .map(|n| tokio::spawn(silent_peer(loopback(n), to, per_silent)))
        .collect();
    let failing: Vec<_> = FAILING_PEERS
        .map(|n| tokio::spawn(failing_peer(loopback(n), to, per_failing)))
        .collect();
    let mut held = Vec::new();
    for task in silent {
        held.extend(task.await??);
    }
    for task in failing {
        task.await??;
    }
    let sent = (per_silent * SILENT_PEERS.len() + per_failing * FAILING_PEERS.len()) as u64;

    // Silent sockets still fill every handshake place; a new gateway gets in by evicting one.
    let mut fresh = storaged.client().await?;
    fresh
        .list_databases(pb::ListDatabasesRequest::default())
        .await?;
    drop(held);
    stop.store(true, Ordering::SeqCst);
    let (calls, slowest) = calls.await??;
    eprintln!("slowest of {calls} calls during the flood: {slowest:?}");
    assert!(calls > 0, "no call was made during the flood");
    // Unloaded, a call takes a few ms; the gateway must keep working, not time out.
    assert!(
        slowest < std::time::Duration::from_secs(1),
        "slowest call {slowest:?}"
    );
    let metrics = storaged.metrics_text().await?;
    assert!(
        metrics.contains("storaged_connections_refused_total{reason=\"handshake_evicted\"}"),
        "no handshake was evicted, so the flood never filled the handshake places:\n{metrics}"
    );

    // Every refusal is on the log: a line without `count` is one, a summary is `count`.
    let lines = photondb_tests::wait_until(Duration::from_secs(20), || {
        let lines = refusal_lines(&storaged, audit_before);
        (accounted(&lines) >= sent).then_some(lines)
    })
    .await
    .with_context(|| {
        let lines = refusal_lines(&storaged, audit_before);
        format!("{} of {sent} refusals on the log", accounted(&lines))
    })?;
    assert_eq!(accounted(&lines), sent, "{lines:#?}");
    let intervals = (started.elapsed().as_millis() / AUDIT_INTERVAL.as_millis()) as usize + 2;
    let mut per_pair: HashMap<(String, String), usize> = HashMap::new();
    for line in &lines {
        let peer = network(line["peer"].as_str().unwrap_or_default());
        let reason = line["reason"].as_str().unwrap_or_default().to_owned();
        *per_pair.entry((peer, reason)).or_default() += 1;
    }
    for (pair, n) in &per_pair {
        assert!(
            *n <= 2 * intervals,
            "{pair:?} has {n} lines in {intervals} intervals"
        );
    }
    // 16 first lines and 17 summaries per interval at most, whatever arrives.
    assert!(lines.len() <= 33 * intervals, "{} lines", lines.len());
    assert!(
        (lines.len() as u64) * 5 < sent,
        "{} lines for {sent} refusals",
        lines.len()
    );
    storaged.audit_chain_len()?;
    Ok(())
}

fn loopback(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, n))
}

async fn connect_from(from: IpAddr, to: SocketAddr) -> anyhow::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    Ok(tokio::time::timeout(Duration::from_secs(10), socket.connect(to)).await??)
}

/// Opens `count` connections from `from` that never send a byte; returns the newest
/// [`HELD_PER_PEER`], still open (older ones are closed on the way).
async fn silent_peer(
    from: IpAddr,
    to: SocketAddr,
    count: usize,
) -> anyhow::Result<VecDeque<TcpStream>> {
    let mut held = VecDeque::new();
    for i in 0..count {
        held.push_back(connect_from(from, to).await?);
        if held.len() > HELD_PER_PEER {
            held.pop_front();
        }
        // Paced so the listener's accept queue never overflows (a connection the kernel
        // completed but storaged never accepted would be missing from the audit count).
        if i % 16 == 15 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    Ok(held)
}

/// Opens `count` connections from `from`, one at a time, that send an HTTP/1.1 request
/// instead of a TLS hello and wait for the server to close them.
async fn failing_peer(from: IpAddr, to: SocketAddr, count: usize) -> anyhow::Result<()> {
    for _ in 0..count {
        let mut s = connect_from(from, to).await?;
        // The server may have closed it already (evicted): the write may fail.
        let _ = s.write_all(b"GET / HTTP/1.1\r\n\r\n").await;
        let mut buf = [0u8; 256];
        loop {
            match tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await {
                Ok(Ok(0) | Err(_)) => break,
                Ok(Ok(_)) => {} // an alert
                Err(_) => anyhow::bail!("a failed handshake was kept open"),
            }
        }
    }
    Ok(())
}

/// Calls until `stop`, each call within [`CALL_BOUND`]; returns the count and the slowest.
async fn keep_calling(
    mut gateway: StorageClient<Channel>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<(usize, Duration)> {
    let (mut calls, mut slowest) = (0, Duration::ZERO);
    while !stop.load(Ordering::SeqCst) {
        let at = Instant::now();
        let call = gateway.list_databases(pb::ListDatabasesRequest::default());
        tokio::time::timeout(CALL_BOUND, call)
            .await
            .with_context(|| format!("call {calls} took longer than {CALL_BOUND:?}"))??;
        slowest = slowest.max(at.elapsed());
        calls += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok((calls, slowest))
}

/// The `mtls_refused` lines after the first `skip` events.
fn refusal_lines(storaged: &Storaged, skip: usize) -> Vec<serde_json::Value> {
    let events = storaged.audit_events().into_iter().skip(skip);
    events.filter(|e| e["kind"] == "mtls_refused").collect()
}

/// The refusals `lines` stand for.
fn accounted(lines: &[serde_json::Value]) -> u64 {
    let each = |l: &serde_json::Value| l.get("count").map_or(Some(1), |c| c.as_u64());
    lines.iter().map(|l| each(l).unwrap_or(0)).sum()
}

/// A line's network: the address without its port (first lines), or as written (summaries).
fn network(peer: &str) -> String {
    match peer.parse::<SocketAddr>() {
        Ok(addr) => addr.ip().to_string(),
        Err(_) => peer.to_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_are_closed_until_a_slot_frees() -> anyhow::Result<()> {
    let certs = TestCerts::new()?;
    let overrides = Overrides {
        limits: vec!["max_connections = 2".into()],
        ..Overrides::default()
    };
    let storaged = Storaged::start(&certs, overrides)?;
    let mut first = storaged.client().await?;
    let mut second = storaged.client().await?;
    first
        .list_databases(pb::ListDatabasesRequest::default())
        .await?;
    second
        .list_databases(pb::ListDatabasesRequest::default())
        .await?;

    // A third connection may finish its handshake (a slot is taken only once mTLS has
    // succeeded) but finds none free: it is closed before it can make a call, and audited.
    let endpoint = storaged.endpoint(Some(storaged.gateway_client()))?;
    let mut third = StorageClient::new(endpoint.connect_lazy());
    let refused = third
        .list_databases(pb::ListDatabasesRequest::default())
        .await;
    assert!(refused.is_err(), "a third connection was served");
    drop(third);
    storaged
        .wait_for_audit(Duration::from_secs(10), |e| {
            e["kind"] == "mtls_refused" && e["reason"] == "connection limit reached"
        })
        .await?;
    // The two that hold slots keep working.
    first
        .list_databases(pb::ListDatabasesRequest::default())
        .await?;
    second
        .list_databases(pb::ListDatabasesRequest::default())
        .await?;

    // Closing one frees its slot: a new connection gets in (poll; the close is asynchronous).
    drop(second);
    let mut freed = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while freed.is_none() && tokio::time::Instant::now() < deadline {
        if let Ok(mut c) = storaged.client().await
            && c.list_databases(pb::ListDatabasesRequest::default())
                .await
                .is_ok()
        {
            freed = Some(c);
        }
        if freed.is_none() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert!(freed.is_some(), "the freed slot was never reused");
    first
        .list_databases(pb::ListDatabasesRequest::default())
        .await?;
    Ok(())
}
