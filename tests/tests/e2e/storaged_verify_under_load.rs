//! A verify of a store over 200 MiB does not stall writes: PUT p99 while a verify runs stays
//! within 3x the unloaded p99 (20 ms at least), and a verify sent while another runs is
//! refused at once with FAILED_PRECONDITION "a verify is already running".

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use photondb_proto::limits::{MAX_BATCH_BYTES, MAX_DOCUMENT_BYTES};
use photondb_tests::pb::admin_client::AdminClient;
use photondb_tests::pb::storage_client::StorageClient;
use photondb_tests::{Overrides, Storaged, TestCerts, pb, table};
use tonic::Code;
use tonic::transport::Channel;

/// Four documents fill a batch (with room for their keys), so filling takes few commits.
const DOCS_PER_BATCH: usize = 4;
const DOC_BYTES: usize = MAX_BATCH_BYTES / DOCS_PER_BATCH - 1024;
const _: () = assert!(DOC_BYTES <= MAX_DOCUMENT_BYTES);
/// 208 documents of ~1 MiB: about 220 MB of pages once checkpointed.
const BATCHES: usize = 52;
const FILLERS: usize = 4;
const STORE_BYTES: u64 = 200 << 20;
/// PUTs measured, unloaded and during verifies.
const SAMPLES: usize = 200;
/// The bound is 3x the unloaded p99, but never under this: on a fast disk an unloaded put's p99
/// is about a millisecond, and 3 ms is within the noise of a 2-core machine's scheduler.
const FLOOR: Duration = Duration::from_millis(20);
const SMALL: &[u8] = br#"{"n":1}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn puts_keep_their_latency_during_a_verify_and_a_second_verify_is_refused()
-> anyhow::Result<()> {
    let certs = TestCerts::new()?;
    let storaged = Storaged::start(&certs, Overrides::default())?;
    let mut c = storaged.client().await?;
    photondb_tests::create_table(&mut c, "app", "docs").await?;

    let started = Instant::now();
    fill(&c).await?;
    // Everything on disk: the measured puts start from no dirty pages and no checkpoint due.
    storaged
        .admin()
        .await?
        .checkpoint(pb::CheckpointRequest {})
        .await?;
    let store_bytes = std::fs::metadata(storaged.data_dir().join("pages.db"))?.len();
    anyhow::ensure!(
        store_bytes >= STORE_BYTES,
        "pages.db holds {store_bytes} bytes"
    );
    let filled_in = started.elapsed();

    for i in 0..20 {
        timed_put(&mut c, format!("warm-{i}")).await?;
    }
    let mut unloaded = Vec::with_capacity(SAMPLES);
    for i in 0..SAMPLES {
        unloaded.push(timed_put(&mut c, format!("unloaded-{i}")).await?);
    }

    // Odd while the loop's verify is in flight; each call moves it on by two.
    let state = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let admin = storaged.admin().await?;
    let looping = tokio::spawn(verify_loop(admin, state.clone(), stop.clone()));

    let mut probe = storaged.admin().await?;
    let refused_in = second_verify_is_refused(&mut probe, &state).await?;

    // A sample counts when one verify was in flight from before the put was sent until after
    // its answer came.
    let mut during = Vec::with_capacity(SAMPLES);
    let mut sent = 0;
    while during.len() < SAMPLES {
        anyhow::ensure!(sent < 20 * SAMPLES, "too few puts overlapped a verify");
        let before = state.load(Ordering::SeqCst);
        let took = timed_put(&mut c, format!("during-{sent}")).await?;
        sent += 1;
        if before % 2 == 1 && state.load(Ordering::SeqCst) == before {
            during.push(took);
        }
    }
    stop.store(true, Ordering::Relaxed);
    let verifies = looping.await??;
    anyhow::ensure!(!verifies.is_empty(), "no verify finished");

    let (quiet, busy) = (p99(&mut unloaded), p99(&mut during));
    let bound = (quiet * 3).max(FLOOR);
    let slowest_verify = verifies.iter().map(|v| v.0).max().unwrap_or_default();
    let pages = verifies.iter().map(|v| v.1).max().unwrap_or_default();
    eprintln!(
        "store {} MB ({pages} pages) filled in {filled_in:?}; put p99 unloaded {quiet:?}, \
         during verify {busy:?} (bound {bound:?}, {} of {sent} puts overlapped a verify); \
         {} verifies, slowest {slowest_verify:?}; second verify refused in {refused_in:?}",
        store_bytes / 1_000_000,
        during.len(),
        verifies.len(),
    );
    assert!(
        busy <= bound,
        "put p99 during a verify {busy:?} > {bound:?} (unloaded {quiet:?})"
    );
    Ok(())
}

/// Writes `BATCHES` batches of large documents from `FILLERS` concurrent callers.
async fn fill(c: &StorageClient<Channel>) -> anyhow::Result<()> {
    let doc = vec![b'x'; DOC_BYTES];
    let fillers: Vec<_> = (0..FILLERS)
        .map(|f| {
            let (mut c, doc) = (c.clone(), doc.clone());
            tokio::spawn(async move {
                for b in (f..BATCHES).step_by(FILLERS) {
                    let put = |d: usize| pb::BatchOperation {
                        op: Some(pb::batch_operation::Op::Put(pb::BatchPut {
                            key: format!("big-{b:03}-{d}"),
                            value: doc.clone(),
                            precondition: None,
                        })),
                    };
                    let operations = (0..DOCS_PER_BATCH).map(put).collect();
                    c.batch(pb::BatchRequest {
                        table: table("app", "docs"),
                        operations,
                    })
                    .await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for filler in fillers {
        filler.await??;
    }
    Ok(())
}

async fn timed_put(c: &mut StorageClient<Channel>, key: String) -> anyhow::Result<Duration> {
    let started = Instant::now();
    c.put(pb::PutRequest {
        table: table("app", "docs"),
        key,
        value: SMALL.to_vec(),
        precondition: None,
    })
    .await?;
    Ok(started.elapsed())
}

/// Verifies back to back until told to stop; returns each finished verify's duration and
/// pages checked. A refusal is the probe's verify holding the slot.
async fn verify_loop(
    mut admin: AdminClient<Channel>,
    state: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<Vec<(Duration, u64)>> {
    let mut finished = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        state.fetch_add(1, Ordering::SeqCst);
        let started = Instant::now();
        let result = admin.verify(pb::VerifyRequest {}).await;
        state.fetch_add(1, Ordering::SeqCst);
        match result {
            Ok(r) => {
                let r = r.into_inner();
                anyhow::ensure!(r.clean, "a verify under writes reported damage: {r:?}");
                finished.push((started.elapsed(), r.pages_checked));
            }
            Err(s) if s.code() == Code::FailedPrecondition => {}
            Err(s) => anyhow::bail!("verify failed: {s:?}"),
        }
    }
    Ok(finished)
}

/// Sends a verify while the loop's is in flight until one is refused (the loop's may end just
/// before the probe arrives, and the probe then runs a whole verify); returns how long the
/// refusal took.
async fn second_verify_is_refused(
    probe: &mut AdminClient<Channel>,
    state: &AtomicU64,
) -> anyhow::Result<Duration> {
    for _ in 0..20 {
        let in_flight = || (state.load(Ordering::SeqCst) % 2 == 1).then_some(());
        photondb_tests::wait_until(Duration::from_secs(30), in_flight)
            .await
            .ok_or_else(|| anyhow::anyhow!("the loop's verify never started"))?;
        let started = Instant::now();
        match probe.verify(pb::VerifyRequest {}).await {
            Ok(r) => {
                let r = r.into_inner();
                anyhow::ensure!(r.clean, "the probe's own verify reported damage: {r:?}");
            }
            Err(s) => {
                assert_eq!(s.code(), Code::FailedPrecondition, "{s:?}");
                assert_eq!(s.message(), "a verify is already running");
                return Ok(started.elapsed());
            }
        }
    }
    anyhow::bail!("no verify sent while another ran was refused")
}

fn p99(samples: &mut [Duration]) -> Duration {
    samples.sort_unstable();
    samples[(samples.len() * 99).div_ceil(100) - 1]
}
