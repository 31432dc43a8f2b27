//! Usage metering (hardening spec §5, §9): per principal and hour, requests by operation,
//! bytes in and out, refusals by code and the requests the plan limiter admitted (quota
//! used). Counted in memory per request and merged into the gateway's sled store every second
//! and at a clean stop, so a restart loses nothing already counted (a crash: at most the last
//! second). `/usage` on the private metrics listener serves the rows; `photonctl usage`
//! merges several gateways'. Prometheus gets per-principal counters with bounded labels:
//! principals the policy set defines by name, everything else as `other`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use prometheus::IntCounterVec;
use serde::{Deserialize, Serialize};

use crate::policy::model::PolicySet;

/// One principal's hour.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Counts {
    /// By operation (`get`, `put`, `scan`, ... as the metrics' routes name them).
    pub requests: BTreeMap<String, u64>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// By refusal code.
    pub refusals: BTreeMap<String, u64>,
    /// Requests the plan limiter admitted (what the daily quota counts).
    pub quota_used: u64,
}

impl Counts {
    pub fn merge(&mut self, other: &Self) {
        for (op, n) in &other.requests {
            *self.requests.entry(op.clone()).or_default() += n;
        }
        for (code, n) in &other.refusals {
            *self.refusals.entry(code.clone()).or_default() += n;
        }
        self.bytes_in += other.bytes_in;
        self.bytes_out += other.bytes_out;
        self.quota_used += other.quota_used;
    }
}

/// A stored row: the hour (Unix seconds of its start), the principal, the counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Row {
    pub hour: i64,
    pub principal: String,
    pub counts: Counts,
}

/// One finished request, as metering sees it.
#[derive(Debug, Clone, Copy)]
pub struct Metered<'a> {
    pub now_unix: i64,
    pub principal: &'a str,
    pub operation: &'a str,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// The refusal code, if it was refused.
    pub refused: Option<&'a str>,
    pub admitted: bool,
}

/// The meter: pending counts, the sled tree they go to, the bounded metrics.
pub struct Usage {
    tree: Option<sled::Tree>,
    pending: Mutex<HashMap<(i64, String), Counts>>,
    requests: IntCounterVec,
    bytes: IntCounterVec,
}

impl std::fmt::Debug for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Usage")
            .field("stored", &self.tree.is_some())
            .finish()
    }
}

/// The Prometheus label of a principal: its name if the policy set defines it, else `other`.
pub fn principal_label<'a>(principal: &'a str, policy: &PolicySet) -> &'a str {
    let known = match principal.split_once(':') {
        Some(("partner", id)) => policy.partners.contains_key(id),
        Some(("key", id)) => policy.api_keys.contains_key(id),
        _ => principal == "anonymous" || policy.bindings.iter().any(|b| b.principal == principal),
    };
    if known { principal } else { "other" }
}

impl Usage {
    /// Metering into `tree` (`None`: in memory only, dev mode), with its metrics in `registry`.
    pub fn new(tree: Option<sled::Tree>, registry: &prometheus::Registry) -> Self {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(prometheus::Opts::new(name, help), labels)
                .expect("static metric definition");
            registry
                .register(Box::new(c.clone()))
                .expect("metric names are unique");
            c
        };
        Self {
            tree,
            pending: Mutex::new(HashMap::new()),
            requests: counter(
                "photondb_gateway_principal_requests_total",
                "Requests by principal (named in the policy set, else other) and outcome",
                &["principal", "outcome"],
            ),
            bytes: counter(
                "photondb_gateway_principal_bytes_total",
                "Body bytes by principal (named in the policy set, else other) and direction",
                &["principal", "direction"],
            ),
        }
    }

    /// Counts one request of an authenticated principal.
    pub fn record(&self, m: &Metered<'_>, label: &str) {
        let hour = m.now_unix.div_euclid(3600) * 3600;
        {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            let c = pending.entry((hour, m.principal.to_owned())).or_default();
            *c.requests.entry(m.operation.to_owned()).or_default() += 1;
            if let Some(code) = m.refused {
                *c.refusals.entry(code.to_owned()).or_default() += 1;
            }
            c.bytes_in += m.bytes_in;
            c.bytes_out += m.bytes_out;
            c.quota_used += u64::from(m.admitted);
        }
        let outcome = if m.refused.is_some() { "refused" } else { "ok" };
        self.requests.with_label_values(&[label, outcome]).inc();
        self.bytes
            .with_label_values(&[label, "in"])
            .inc_by(m.bytes_in);
        self.bytes
            .with_label_values(&[label, "out"])
            .inc_by(m.bytes_out);
    }

    /// Merges the pending counts into the store (every second, and at a clean stop).
    pub fn persist(&self) -> Result<(), sled::Error> {
        let Some(tree) = &self.tree else {
            return Ok(());
        };
        let pending = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        if pending.is_empty() {
            return Ok(());
        }
        for ((hour, principal), counts) in pending {
            let key = format!("{hour:020}/{principal}");
            tree.update_and_fetch(key.as_bytes(), |old| {
                let mut merged: Counts = old
                    .and_then(|v| serde_json::from_slice(v).ok())
                    .unwrap_or_default();
                merged.merge(&counts);
                serde_json::to_vec(&merged).ok()
            })?;
        }
        tree.flush()?;
        Ok(())
    }

    /// Every stored row plus what is pending, in hour and principal order.
    pub fn rows(&self) -> Vec<Row> {
        let mut stored = Vec::new();
        if let Some(tree) = &self.tree {
            for (key, value) in tree.iter().flatten() {
                let key = String::from_utf8_lossy(&key).into_owned();
                let Some((hour, principal)) = key.split_once('/') else {
                    continue;
                };
                let (Ok(hour), Ok(counts)) = (hour.parse(), serde_json::from_slice(&value)) else {
                    continue;
                };
                stored.push(Row {
                    hour,
                    principal: principal.to_owned(),
                    counts,
                });
            }
        }
        let pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let pending = pending.iter().map(|((hour, principal), counts)| Row {
            hour: *hour,
            principal: principal.clone(),
            counts: counts.clone(),
        });
        merge_rows([stored, pending.collect()])
    }
}

/// Rows of several gateways summed by hour and principal.
pub fn merge_rows(sets: impl IntoIterator<Item = Vec<Row>>) -> Vec<Row> {
    let mut all: BTreeMap<(i64, String), Counts> = BTreeMap::new();
    for rows in sets {
        for row in rows {
            all.entry((row.hour, row.principal))
                .or_default()
                .merge(&row.counts);
        }
    }
    all.into_iter()
        .map(|((hour, principal), counts)| Row {
            hour,
            principal,
            counts,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metered<'a>(principal: &'a str, refused: Option<&'static str>) -> Metered<'a> {
        Metered {
            now_unix: 7_200 + 5,
            principal,
            operation: "get",
            bytes_in: 10,
            bytes_out: 100,
            refused,
            admitted: refused.is_none(),
        }
    }

    #[test]
    fn counts_survive_a_reopen_and_merge_across_gateways() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let registry = prometheus::Registry::new();
        let usage = Usage::new(Some(db.open_tree("usage").unwrap()), &registry);
        usage.record(&metered("partner:a", None), "partner:a");
        usage.persist().unwrap();
        usage.record(&metered("partner:a", Some("rate_limited")), "partner:a");
        usage.persist().unwrap();
        let rows = usage.rows();
        assert_eq!(rows.len(), 1);
        let c = &rows[0].counts;
        assert_eq!(
            (rows[0].hour, c.requests["get"], c.bytes_in, c.bytes_out),
            (7_200, 2, 20, 200)
        );
        assert_eq!((c.refusals["rate_limited"], c.quota_used), (1, 1));
        drop(usage);
        let registry = prometheus::Registry::new();
        let reopened = Usage::new(Some(db.open_tree("usage").unwrap()), &registry);
        assert_eq!(reopened.rows(), rows);
        let merged = merge_rows([rows.clone(), rows]);
        assert_eq!(merged[0].counts.requests["get"], 4);
    }
}
