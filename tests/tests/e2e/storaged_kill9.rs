//! `kill -9` under concurrent load (inserts, conditional updates, deletes, checkpoints) loses
//! nothing that was acknowledged: after a restart on the same data directory every
//! acknowledged write is there with its acknowledged version, every acknowledged delete is
//! gone, and the only other differences are writes that were in flight at the kill.

use std::sync::Arc;
use std::time::Duration;

use pb::storage_client::StorageClient;
use photondb_tests::ledger::{KeyState, Ledger, Val, check_and_resync, precondition, scan_all};
use photondb_tests::{Overrides, Storaged, TestCerts, pb, table, wait_until};
use rand::Rng as _;
use tonic::Code;
use tonic::transport::Channel;

const WRITERS: usize = 4;
/// Keys each writer updates and deletes again and again (besides its unique inserts).
const HOT_KEYS: usize = 8;

/// Runs until the daemon dies; returns the status that ended it.
async fn writer(
    mut c: StorageClient<Channel>,
    ledger: Ledger,
    round: usize,
    w: usize,
) -> tonic::Status {
    for n in 0u64.. {
        let roll = rand::thread_rng().gen_range(0..10);
        let key = if roll < 6 {
            format!("r{round}-w{w}-{n:06}")
        } else {
            format!("hot-w{w}-{}", n as usize % HOT_KEYS)
        };
        let acked = {
            let mut l = ledger.lock().expect("ledger");
            let state = l.entry(key.clone()).or_insert(KeyState {
                acked: Val::Absent,
                pending: None,
            });
            let delete = roll == 9 && state.acked != Val::Absent;
            let value = format!("{{\"round\":{round},\"writer\":{w},\"n\":{n}}}").into_bytes();
            state.pending = Some((!delete).then_some(value));
            state.clone()
        };
        let pre = precondition(&acked.acked);
        let result = match acked.pending.clone().expect("just set") {
            Some(value) => c
                .put(pb::PutRequest {
                    table: table("app", "load"),
                    key: key.clone(),
                    value: value.clone(),
                    precondition: pre,
                })
                .await
                .map(|r| Val::Present(r.into_inner().version, value)),
            None => c
                .delete(pb::DeleteRequest {
                    table: table("app", "load"),
                    key: key.clone(),
                    precondition: pre,
                })
                .await
                .map(|_| Val::Absent),
        };
        match result {
            Ok(val) => {
                let mut l = ledger.lock().expect("ledger");
                let state = l.get_mut(&key).expect("entry");
                state.acked = val;
                state.pending = None;
            }
            Err(status) => return status,
        }
    }
    unreachable!("the loop only ends by returning")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_write_survives_kill_9() -> anyhow::Result<()> {
    let rounds: usize = std::env::var("PHOTONDB_KILL9_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let certs = TestCerts::new()?;
    let overrides = Overrides {
        // Small WAL budget: checkpoints run during the load too.
        extra_toml: "[checkpoint]\nwal_mib = 1\n".into(),
        ..Overrides::default()
    };
    let mut storaged = Storaged::start(&certs, overrides)?;
    {
        let mut c = storaged.client().await?;
        photondb_tests::create_table(&mut c, "app", "load").await?;
    }
    let ledger: Ledger = Arc::default();
    let mut acked_total = 0usize;
    for round in 0..rounds {
        let channel = storaged.channel().await?;
        let acked = || {
            ledger
                .lock()
                .expect("ledger")
                .values()
                .filter(|s| s.pending.is_none())
                .count()
        };
        let base = acked();
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let c = StorageClient::new(channel.clone());
                tokio::spawn(writer(c, ledger.clone(), round, w))
            })
            .collect();
        let mut admin = pb::admin_client::AdminClient::new(channel.clone());
        let checkpoints = tokio::spawn(async move {
            while admin.checkpoint(pb::CheckpointRequest {}).await.is_ok() {}
        });
        // Kill once a random amount of this round's work was acknowledged.
        let target = base + rand::thread_rng().gen_range(10..150);
        let reached = wait_until(Duration::from_secs(30), || {
            (acked() >= target).then_some(())
        })
        .await;
        assert!(
            reached.is_some(),
            "round {round}: the load made no progress"
        );
        storaged.kill9()?;
        for t in writers {
            let status = tokio::time::timeout(Duration::from_secs(30), t).await??;
            assert!(
                matches!(
                    status.code(),
                    Code::Unavailable | Code::Unknown | Code::Cancelled
                ),
                "round {round}: a writer stopped on a served refusal: {status:?}"
            );
        }
        tokio::time::timeout(Duration::from_secs(30), checkpoints).await??;
        storaged.restart()?;

        let found = scan_all(&storaged, "app", "load").await?;
        let mut ledger = ledger.lock().expect("ledger");
        check_and_resync(&format!("round {round}"), &mut ledger, &found, WRITERS);
        acked_total = ledger.len();
        eprintln!(
            "round {round}: {} keys known, {} present",
            ledger.len(),
            found.len()
        );
    }
    assert!(acked_total > 0);
    let status = storaged.stop()?;
    assert!(status.success(), "{status}");
    // One recovery event per start, and the chain survived every kill.
    let events = storaged.audit_events();
    let recoveries = events.iter().filter(|e| e["kind"] == "recovery").count();
    assert_eq!(recoveries, rounds + 1, "{events:#?}");
    assert_eq!(storaged.audit_chain_len()?, events.len());
    Ok(())
}
