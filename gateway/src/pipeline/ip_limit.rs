//! Pipeline step 3: per-client-IP token buckets (IPv6 grouped by /64), before any expensive
//! work. Time comes from an injected [`Clock`]; idle buckets are pruned.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::clock::Clock;

/// The unit a client is counted in everywhere (rate limits, connections, body memory): an
/// IPv4 address or an IPv6 /64 (one subscriber's prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Network {
    V4(u32),
    V6Prefix(u64),
}

impl From<IpAddr> for Network {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self::V4(v4.into()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self::V4(v4.into()),
                None => Self::V6Prefix((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

/// The bucket key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum ClientKey {
    Net(Network),
    /// New clients while the table is full share one bucket (memory stays bounded).
    Overflow,
}

impl From<IpAddr> for ClientKey {
    fn from(ip: IpAddr) -> Self {
        Self::Net(ip.into())
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Over the per-IP rate: retry after this many seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    pub retry_after_secs: u64,
}

/// Token buckets per client.
pub struct IpLimiter {
    rate: f64,
    burst: f64,
    clock: Arc<dyn Clock>,
    table: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    buckets: HashMap<ClientKey, Bucket>,
    last_prune: Option<Instant>,
}

impl std::fmt::Debug for IpLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IpLimiter")
            .field("rate", &self.rate)
            .field("burst", &self.burst)
            .finish()
    }
}

/// Past this many tracked clients, full buckets are dropped (at most once a second).
const PRUNE_AT: usize = 100_000;
/// Never more than this many buckets.
const MAX_CLIENTS: usize = 1_000_000;

impl IpLimiter {
    pub fn new(rate_per_sec: u32, burst: u32, clock: Arc<dyn Clock>) -> Self {
        Self {
            rate: rate_per_sec.into(),
            burst: burst.into(),
            clock,
            table: Mutex::default(),
        }
    }

    /// Takes one token for `ip`.
    pub fn admit(&self, ip: IpAddr) -> Result<(), Limited> {
        let now = self.clock.now();
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        self.maybe_prune(&mut table, now);
        let key = table.key_for(ip.into());
        let b = table.buckets.entry(key).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        b.tokens = self.refill(b, now);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            return Ok(());
        }
        let wait = ((1.0 - b.tokens) / self.rate).ceil().max(1.0);
        Err(Limited {
            retry_after_secs: wait as u64,
        })
    }

    fn refill(&self, b: &Bucket, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        (b.tokens + elapsed * self.rate).min(self.burst)
    }

    fn maybe_prune(&self, table: &mut Table, now: Instant) {
        let recently = table
            .last_prune
            .is_some_and(|t| now.saturating_duration_since(t) < Duration::from_secs(1));
        if table.buckets.len() < PRUNE_AT || recently {
            return;
        }
        table.last_prune = Some(now);
        table
            .buckets
            .retain(|_, b| self.refill(b, now) < self.burst);
    }
}

impl Table {
    fn key_for(&self, key: ClientKey) -> ClientKey {
        let full = self.buckets.len() >= MAX_CLIENTS && !self.buckets.contains_key(&key);
        if full { ClientKey::Overflow } else { key }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    #[test]
    fn buckets_refill_and_ipv6_groups_by_64() {
        let clock = ManualClock::default();
        let l = IpLimiter::new(1, 2, Arc::new(clock.clone()));
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let b: IpAddr = "2001:db8::2".parse().unwrap();
        assert!(l.admit(a).is_ok());
        assert!(l.admit(b).is_ok());
        assert_eq!(
            l.admit(a),
            Err(Limited {
                retry_after_secs: 1
            })
        );
        assert!(l.admit("10.0.0.1".parse().unwrap()).is_ok());
        clock.advance(Duration::from_secs(1));
        assert!(l.admit(b).is_ok());
    }
}
