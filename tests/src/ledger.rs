//! What concurrent writers were told, and the check that a restarted storaged holds exactly
//! that: shared by the crash tests (`storaged_kill9`, `storaged_power_cut`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use photondb_proto::limits::MAX_MESSAGE_BYTES;
use photondb_proto::v1::precondition::Condition;

use crate::{Storaged, pb, table};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Val {
    Absent,
    Present(u64, Vec<u8>),
}

#[derive(Debug, Clone)]
pub struct KeyState {
    pub acked: Val,
    /// A put (`Some(value)`) or delete (`None`) sent but not acknowledged.
    pub pending: Option<Option<Vec<u8>>>,
}

/// Every key the writers touched, by key.
pub type Ledger = Arc<Mutex<BTreeMap<String, KeyState>>>;

/// The precondition that makes a write apply only to the state the writer was told of.
pub fn precondition(acked: &Val) -> Option<pb::Precondition> {
    let condition = match acked {
        Val::Absent => Condition::IfAbsent(true),
        Val::Present(v, _) => Condition::IfVersion(*v),
    };
    Some(pb::Precondition {
        condition: Some(condition),
    })
}

/// Every document of `db/t` with its version, paged through scans.
pub async fn scan_all(
    storaged: &Storaged,
    db: &str,
    t: &str,
) -> anyhow::Result<BTreeMap<String, (u64, Vec<u8>)>> {
    // Pages of large documents pass tonic's default 4 MiB decoding limit.
    let mut c = storaged
        .client()
        .await?
        .max_decoding_message_size(MAX_MESSAGE_BYTES);
    let mut out = BTreeMap::new();
    let mut after = String::new();
    loop {
        let page = c
            .scan(pb::ScanRequest {
                table: table(db, t),
                prefix: String::new(),
                start_after: after,
                limit: 100,
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

/// A value for assertion messages: its length and first bytes, not 20 KiB of it.
fn preview(value: &[u8]) -> String {
    let head = String::from_utf8_lossy(&value[..value.len().min(48)]);
    format!("{} bytes {head:?}..", value.len())
}

fn show(v: &Val) -> String {
    match v {
        Val::Absent => "absent".into(),
        Val::Present(version, value) => format!("version {version}, {}", preview(value)),
    }
}

fn show_pending(p: &Option<Option<Vec<u8>>>) -> String {
    match p {
        None => "nothing in flight".into(),
        Some(None) => "a delete in flight".into(),
        Some(Some(value)) => format!("a put in flight of {}", preview(value)),
    }
}

/// Checks the recovered state against the ledger (every acknowledged write at its version, no
/// acknowledged delete, other differences only writes in flight, at most `max_in_flight`), then
/// makes it the ledger's new truth; returns how many in-flight writes turned out applied.
/// `run` names the round in messages.
pub fn check_and_resync(
    run: &str,
    ledger: &mut BTreeMap<String, KeyState>,
    found: &BTreeMap<String, (u64, Vec<u8>)>,
    max_in_flight: usize,
) -> usize {
    for key in found.keys() {
        assert!(
            ledger.contains_key(key),
            "{run}: expected only keys the writers sent, found {key} which none sent"
        );
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
                "{run}: {key}: expected the acknowledged {} (or {}), found {} after the restart",
                show(&state.acked),
                show_pending(&state.pending),
                show(&now),
            );
            in_flight_applied += 1;
        }
        state.acked = now;
        state.pending = None;
    }
    assert!(
        in_flight_applied <= max_in_flight,
        "{run}: expected at most {max_in_flight} in-flight writes applied (one per writer), found {in_flight_applied}"
    );
    in_flight_applied
}
