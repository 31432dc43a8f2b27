//! TLS handshakes in progress, bounded before a peer has proven who it is: at most
//! `max_pending_handshakes` in all and `max_pending_handshakes_per_ip` per [`Network`]. A
//! newcomer that finds them all taken evicts the oldest handshake of the network holding the
//! most, so sockets held open by peers that never finish cannot keep a gateway from
//! reconnecting: a flooding network churns out its own handshakes, not the gateway's. A
//! network past its own share is refused instead.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::oneshot;

/// What per-peer limits count by: an IPv4 address, or an IPv6 /64 (one host's usual share, so
/// that one peer cannot count as 2^64 peers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Network(IpAddr);

impl Network {
    pub fn of(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V6(v6) => {
                let [a, b, c, d, ..] = v6.segments();
                Self(IpAddr::V6(Ipv6Addr::new(a, b, c, d, 0, 0, 0, 0)))
            }
            v4 => Self(v4),
        }
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => write!(f, "{v4}"),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

/// The handshakes in progress.
pub struct Handshakes {
    max: usize,
    max_per_network: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    next_id: u64,
    /// Oldest first. Dropping a sender tells its handshake that it was evicted.
    pending: BTreeMap<u64, (Network, oneshot::Sender<()>)>,
    per_network: HashMap<Network, usize>,
}

/// One network already has `max_pending_handshakes_per_ip` handshakes in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetworkBusy;

/// A handshake's place among those in progress, given back when dropped.
pub struct Pending {
    id: u64,
    network: Network,
    of: Arc<Handshakes>,
    evicted: oneshot::Receiver<()>,
}

impl Handshakes {
    pub fn new(max: usize, max_per_network: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            max_per_network,
            state: Mutex::default(),
        })
    }

    /// A place for a new handshake from `network`; if all are taken, the oldest of the
    /// busiest network's is evicted.
    pub fn begin(self: &Arc<Self>, network: Network) -> Result<Pending, NetworkBusy> {
        let mut state = self.lock();
        let held = state.per_network.get(&network).copied().unwrap_or(0);
        if held >= self.max_per_network {
            return Err(NetworkBusy);
        }
        if state.pending.len() >= self.max {
            // Dropping the evicted one's sender wakes it in `Pending::evicted`.
            // Among networks holding equally many, the oldest handshake goes.
            let most = state.per_network.values().copied().max().unwrap_or(0);
            let per = &state.per_network;
            let victim = state
                .pending
                .iter()
                .find(|(_, (net, _))| per.get(net) == Some(&most));
            if let Some(id) = victim.map(|(id, _)| *id) {
                state.pending.remove(&id);
            }
        }
        let id = state.next_id;
        state.next_id += 1;
        let (evict, evicted) = oneshot::channel();
        state.pending.insert(id, (network, evict));
        *state.per_network.entry(network).or_default() += 1;
        Ok(Pending {
            id,
            network,
            of: self.clone(),
            evicted,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Pending {
    /// Resolves once a newer handshake has taken this one's place.
    pub async fn evicted(&mut self) {
        let _ = (&mut self.evicted).await;
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        let mut state = self.of.lock();
        state.pending.remove(&self.id);
        if let Some(held) = state.per_network.get_mut(&self.network) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                state.per_network.remove(&self.network);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::oneshot::error::TryRecvError;

    fn v4(last: u8) -> Network {
        Network::of(IpAddr::from([10, 0, 0, last]))
    }

    fn is_evicted(p: &mut Pending) -> bool {
        matches!(p.evicted.try_recv(), Err(TryRecvError::Closed))
    }

    #[test]
    fn a_newcomer_past_the_cap_evicts_the_oldest() {
        let handshakes = Handshakes::new(3, 3);
        let mut held: Vec<Pending> = (1..=3).map(|i| handshakes.begin(v4(i)).unwrap()).collect();
        assert!(held.iter_mut().all(|p| !is_evicted(p)));
        let mut newcomer = handshakes.begin(v4(4)).unwrap();
        assert!(is_evicted(&mut held[0]), "the oldest keeps its place");
        assert!(!is_evicted(&mut held[1]) && !is_evicted(&mut held[2]));
        assert!(!is_evicted(&mut newcomer));
        assert_eq!(handshakes.lock().pending.len(), 3);
    }

    #[test]
    fn a_flooding_network_evicts_its_own_handshakes() {
        let handshakes = Handshakes::new(4, 3);
        let mut gateway = handshakes.begin(v4(1)).unwrap();
        let mut flood: Vec<Pending> = (0..3).map(|_| handshakes.begin(v4(9)).unwrap()).collect();
        // Full: every newcomer evicts the flood's oldest, never the gateway's older one.
        for _ in 0..5 {
            if let Ok(p) = handshakes.begin(v4(8)) {
                flood.push(p);
            }
        }
        assert!(
            !is_evicted(&mut gateway),
            "the gateway's handshake was evicted"
        );
        assert!(is_evicted(&mut flood[0]));
    }

    #[test]
    fn one_network_past_its_share_is_refused_and_evicts_nobody() {
        let handshakes = Handshakes::new(4, 2);
        let mut other = handshakes.begin(v4(9)).unwrap();
        let first = handshakes.begin(v4(1)).unwrap();
        let second = handshakes.begin(v4(1)).unwrap();
        assert!(matches!(handshakes.begin(v4(1)), Err(NetworkBusy)));
        assert!(!is_evicted(&mut other));
        drop(first);
        assert!(
            handshakes.begin(v4(1)).is_ok(),
            "a finished handshake gives its share back"
        );
        drop(other);
        drop(second);
        let state = handshakes.lock();
        assert!(state.pending.is_empty() && state.per_network.is_empty());
    }

    #[test]
    fn an_ipv6_peer_counts_by_its_64_and_a_mapped_ipv4_peer_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(Network::of(a), Network::of(b));
        assert_ne!(Network::of(a), Network::of(c));
        assert_eq!(Network::of(a).to_string(), "2001:db8:1:2::/64");
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(Network::of(mapped), v4(1));
        assert_eq!(v4(1).to_string(), "10.0.0.1");
    }
}
