//! `kill -9` under concurrent load (inserts, conditional updates, deletes, checkpoints) loses
//! nothing that was acknowledged: after a restart on the same data directory every
//! acknowledged write is there with its acknowledged version, every acknowledged delete is
//! gone, and the only other differences are writes that were in flight at the kill.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pb::precondition::Condition;
use pb::storage_client::StorageClient;
use photondb_tests::{Overrides, Storaged, TestCerts, pb, table, wait_until};
use rand::Rng as _;
use tonic::Code;
use tonic::transport::Channel;

const WRITERS: usize = 4;
/// Keys each writer updates and deletes again and again (besides its unique inserts).
const HOT_KEYS: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Val {
    Absent,
    Present(u64, Vec<u8>),
}

#[derive(Debug, Clone)]
struct KeyState {
    acked: Val,
    /// A put (`Some(value)`) or delete (`None`) sent but not acknowledged.
    pending: Option<Option<Vec<u8>>>,
}

type Ledger = Arc<Mutex<BTreeMap<String, KeyState>>>;

fn precondition(acked: &Val) -> Option<pb::Precondition> {
    let condition = match acked {
        Val::Absent => Condition::IfAbsent(true),
        Val::Present(v, _) => Condition::IfVersion(*v),
    };
    Some(pb::Precondition {
        condition: Some(condition),
    })
}

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

async fn everything(storaged: &Storaged) -> anyhow::Result<BTreeMap<String, (u64, Vec<u8>)>> {
    let mut c = storaged.client().await?;
    let mut out = BTreeMap::new();
    let mut after = String::new();
    loop {
        let page = c
            .scan(pb::ScanRequest {
                table: table("app", "load"),
                prefix: String::new(),
                start_after: after,
                limit: 1000,
            })
            .await?
            .into_inner();
        for d in page.documents {
            out.insert(d.key, (d.version, d.value));
        }
        if page.next_start_after.is_empty() {
            return Ok(out);
        }
        after = page.next_start_after;
    }
}

/// Checks the recovered state against the ledger, then makes it the ledger's new truth.
fn check_and_resync(
    round: usize,
    ledger: &mut BTreeMap<String, KeyState>,
    found: &BTreeMap<String, (u64, Vec<u8>)>,
) {
    for key in found.keys() {
        assert!(ledger.contains_key(key), "round {round}: {key} never sent");
    }
    let mut in_flight_applied = 0;
    for (key, state) in ledger.iter_mut() {
        let now = match found.get(key) {
            Some((v, val)) => Val::Present(*v, val.clone()),
            None => Val::Absent,
        };
        if now != state.acked {
            let newer = match (&state.acked, &now) {
                (Val::Present(old, _), Val::Present(new, _)) => new > old,
                _ => true,
            };
            let explained = match (&state.pending, &now) {
                (Some(Some(sent)), Val::Present(_, val)) => sent == val && newer,
                (Some(None), Val::Absent) => true,
                _ => false,
            };
            assert!(
                explained,
                "round {round}: {key} acknowledged as {:?} but recovered as {now:?} (in flight: {:?})",
                state.acked, state.pending
            );
            in_flight_applied += 1;
        }
        state.acked = now;
        state.pending = None;
    }
    assert!(
        in_flight_applied <= WRITERS,
        "{in_flight_applied} in-flight writes applied"
    );
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

        let found = everything(&storaged).await?;
        let mut ledger = ledger.lock().expect("ledger");
        check_and_resync(round, &mut ledger, &found);
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
