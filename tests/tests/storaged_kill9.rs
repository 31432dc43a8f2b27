//! `kill -9` under concurrent write load loses nothing that was acknowledged: after a restart on
//! the same data directory every acknowledged write is there with its acknowledged version, and
//! nothing appears that was never sent.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use photondb_tests::{Overrides, Storaged, TestCerts, pb, table, wait_until};
use rand::Rng as _;

const WRITERS: usize = 4;

#[derive(Default)]
struct Ledger {
    /// key -> (version, value) of every acknowledged put.
    acked: BTreeMap<String, (u64, Vec<u8>)>,
    /// Every key a put was sent for, acknowledged or not.
    sent: BTreeSet<String>,
}

async fn writer(
    mut c: pb::storage_client::StorageClient<tonic::transport::Channel>,
    ledger: Arc<Mutex<Ledger>>,
    round: usize,
    w: usize,
) {
    for n in 0.. {
        let key = format!("r{round}-w{w}-{n:06}");
        let value = format!("{{\"round\":{round},\"writer\":{w},\"n\":{n}}}").into_bytes();
        ledger.lock().expect("ledger").sent.insert(key.clone());
        let reply = c
            .put(pb::PutRequest {
                table: table("app", "load"),
                key: key.clone(),
                value: value.clone(),
                precondition: None,
            })
            .await;
        match reply {
            Ok(r) => {
                let version = r.into_inner().version;
                ledger
                    .lock()
                    .expect("ledger")
                    .acked
                    .insert(key, (version, value));
            }
            // The daemon was killed: this put is unacknowledged.
            Err(_) => return,
        }
    }
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_write_survives_kill_9() -> anyhow::Result<()> {
    let rounds: usize = std::env::var("PHOTONDB_KILL9_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let certs = TestCerts::new()?;
    let mut storaged = Storaged::start(&certs, Overrides::default())?;
    {
        let mut c = storaged.client().await?;
        c.create_database(pb::CreateDatabaseRequest { db: "app".into() })
            .await?;
        c.create_table(pb::CreateTableRequest {
            table: table("app", "load"),
        })
        .await?;
    }
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    for round in 0..rounds {
        let channel = storaged.channel().await?;
        let tasks: Vec<_> = (0..WRITERS)
            .map(|w| {
                let c = pb::storage_client::StorageClient::new(channel.clone());
                tokio::spawn(writer(c, ledger.clone(), round, w))
            })
            .collect();
        // Kill once a random number of writes of this round were acknowledged.
        let base = ledger.lock().expect("ledger").acked.len();
        let target = base + rand::thread_rng().gen_range(10..150);
        let reached = wait_until(Duration::from_secs(30), || {
            (ledger.lock().expect("ledger").acked.len() >= target).then_some(())
        })
        .await;
        assert!(
            reached.is_some(),
            "round {round}: the load made no progress"
        );
        storaged.kill9()?;
        for t in tasks {
            tokio::time::timeout(Duration::from_secs(30), t).await??;
        }
        storaged.restart()?;

        let found = everything(&storaged).await?;
        let ledger = ledger.lock().expect("ledger");
        for (key, (version, value)) in &ledger.acked {
            match found.get(key) {
                Some((v, val)) => {
                    assert_eq!(
                        (v, val),
                        (version, value),
                        "round {round}: {key} changed after kill -9"
                    );
                }
                None => panic!(
                    "round {round}: acknowledged {key} (version {version}) lost after kill -9"
                ),
            }
        }
        for key in found.keys() {
            assert!(ledger.sent.contains(key), "round {round}: {key} never sent");
        }
        eprintln!(
            "round {round}: {} acknowledged, {} present, {} sent",
            ledger.acked.len(),
            found.len(),
            ledger.sent.len()
        );
    }
    let status = storaged.stop()?;
    assert!(status.success(), "{status}");
    Ok(())
}
