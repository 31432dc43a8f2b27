//! Which connections the public listener keeps, counted from `accept`, before TLS: a cap in
//! total and per client IP (an IPv6 client per /64), a bound on pending TLS handshakes and on
//! how long each may take, and how many request bodies one connection may buffer at once.
//!
//! pingora 0.9.1 gives every handshake a fixed 60 s with no cap on how many are pending, and
//! hands the app a connection only once its handshake is done. So the listener's pre-TLS
//! callback ([`PreTls`], right after `accept`) admits the connection and registers it as
//! pending together with a duplicate of its socket; the edge app claims the registration when
//! the handshake has finished ([`Connections::established`]). [`Connections::sweep`] closes the
//! handshakes still pending at their deadline (shutting the duplicate down ends the
//! handshake's reads) and forgets those whose connection pingora has already dropped. When
//! the pending handshakes or all connections reach their cap, a pending handshake of the
//! network holding the most is closed to make room (its oldest silent one first): a network
//! that floods or churns connections evicts its own, not a client elsewhere that completes
//! its handshake in a round trip.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::listeners::PreTlsProcess;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::{GetSocketDigest, SocketDigest};

use crate::clock::Clock;
use crate::pipeline::ip_limit::Network;

/// The bounds, from `[limits]`.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub max_per_ip: usize,
    pub max_pending: usize,
    pub handshake_timeout: Duration,
    pub bodies_per_connection: usize,
}

/// Why a connection or a body was not admitted: the refusal metric's code.
pub type Reason = &'static str;

/// A connection: the gateway's address and the client's (one client address may reach
/// several of the gateway's).
pub type ConnKey = (SocketAddr, SocketAddr);

/// The listener's connection accounting; shared by the pre-TLS callback, the edge app and
/// the sweeper.
pub struct Connections {
    limits: ConnectionLimits,
    counts: Arc<Mutex<Counts>>,
    pending: Mutex<HashMap<ConnKey, Pending>>,
    open: Mutex<HashMap<ConnKey, Arc<AtomicUsize>>>,
    clock: Arc<dyn Clock>,
    on_refuse: Box<dyn Fn(Reason) + Send + Sync>,
}

/// Connections by client, pending and established together.
#[derive(Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<Network, usize>,
}

/// One admitted connection's place in the counts; given back when dropped.
struct Ticket {
    counts: Arc<Mutex<Counts>>,
    key: Network,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut counts = lock(&self.counts);
        counts.total -= 1;
        if let Some(n) = counts.per_ip.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                counts.per_ip.remove(&self.key);
            }
        }
    }
}

/// A connection whose TLS handshake is still running.
struct Pending {
    ticket: Ticket,
    /// A duplicate of the connection's socket, to shut it down at the deadline.
    socket: std::net::TcpStream,
    /// Gone once pingora dropped the connection (a failed handshake).
    alive: Weak<SocketDigest>,
    deadline: Instant,
    /// The client has sent its first bytes.
    spoke: bool,
}

/// A connection the edge serves; it keeps its place in the counts until dropped.
pub struct Connection {
    _ticket: Ticket,
    key: ConnKey,
    bodies: Arc<AtomicUsize>,
    connections: Arc<Connections>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        let mut open = lock(&self.connections.open);
        // A newer connection from the same address may have replaced this entry already.
        if open
            .get(&self.key)
            .is_some_and(|b| Arc::ptr_eq(b, &self.bodies))
        {
            open.remove(&self.key);
        }
    }
}

/// One request body being buffered on a connection.
pub struct BodySlot(Arc<AtomicUsize>);

impl Drop for BodySlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Connections {
    pub fn new(
        limits: ConnectionLimits,
        clock: Arc<dyn Clock>,
        on_refuse: Box<dyn Fn(Reason) + Send + Sync>,
    ) -> Self {
        Self {
            limits,
            counts: Arc::default(),
            pending: Mutex::default(),
            open: Mutex::default(),
            clock,
            on_refuse,
        }
    }

    /// Connections counted now (pending handshakes included).
    #[cfg(test)]
    fn connections(&self) -> usize {
        lock(&self.counts).total
    }

    /// Admits a connection from `peer` into the counts. A network at its own cap is refused
    /// before anything else happens; when the pending handshakes or all connections are at
    /// their cap, one pending handshake of the busiest network is closed to make room.
    fn admit(&self, peer: IpAddr) -> Result<Ticket, Reason> {
        let key = Network::from(peer);
        let at_cap =
            |c: &Counts| c.per_ip.get(&key).copied().unwrap_or(0) >= self.limits.max_per_ip;
        if at_cap(&lock(&self.counts)) {
            return Err("max_connections_per_ip");
        }
        if lock(&self.pending).len() >= self.limits.max_pending {
            self.evict();
        }
        if lock(&self.counts).total >= self.limits.max_connections && !self.evict() {
            return Err("max_connections");
        }
        let mut counts = lock(&self.counts);
        if at_cap(&counts) {
            return Err("max_connections_per_ip");
        }
        if counts.total >= self.limits.max_connections {
            return Err("max_connections");
        }
        counts.total += 1;
        *counts.per_ip.entry(key).or_default() += 1;
        Ok(Ticket {
            counts: self.counts.clone(),
            key,
        })
    }

    fn refused(&self, reason: Reason) -> Reason {
        (self.on_refuse)(reason);
        reason
    }

    /// Closes one pending handshake, false if none is pending. It is taken from the network
    /// with the most pending handshakes (an attacker churning connections evicts its own),
    /// and there the oldest of those whose client has sent nothing yet, else the oldest. A
    /// client whose first bytes wait in the socket counts as having spoken, even if its task
    /// has not run yet.
    fn evict(&self) -> bool {
        let evicted = {
            let mut pending = lock(&self.pending);
            let mut per_net: HashMap<Network, usize> = HashMap::new();
            for p in pending.values() {
                *per_net.entry(p.ticket.key).or_default() += 1;
            }
            let busiest = per_net.into_iter().max_by_key(|(_, n)| *n).map(|(k, _)| k);
            let mut order: Vec<_> = pending
                .iter()
                .filter(|(_, p)| Some(p.ticket.key) == busiest)
                .map(|(key, p)| (p.spoke, p.deadline, *key))
                .collect();
            order.sort_unstable();
            let mut victim = None;
            for (_, _, key) in &order {
                let Some(p) = pending.get_mut(key) else {
                    continue;
                };
                if !p.spoke && has_bytes_waiting(&p.socket) {
                    p.spoke = true;
                    continue;
                }
                victim = Some(*key);
                break;
            }
            let victim = victim.or_else(|| order.first().map(|(_, _, k)| *k));
            victim.and_then(|key| pending.remove(&key))
        };
        match evicted {
            Some(p) => {
                (self.on_refuse)("handshake_evicted");
                let _ = p.socket.shutdown(std::net::Shutdown::Both);
                true
            }
            None => false,
        }
    }

    /// Registers a connection right after `accept` (TLS listeners); returns its key and a
    /// duplicate of its socket to wait on.
    fn pending(&self, stream: &L4Stream) -> Result<(ConnKey, std::net::TcpStream), Reason> {
        let digest = stream.get_socket_digest().ok_or("no_peer_address")?;
        let key = key_of(&digest).ok_or("no_peer_address")?;
        let ticket = self.admit(key.1.ip()).map_err(|r| self.refused(r))?;
        let duplicated = duplicate(stream).and_then(|s| Ok((s.try_clone()?, s)));
        let (socket, watch) = duplicated.map_err(|_| self.refused("socket_duplicate_failed"))?;
        let entry = Pending {
            ticket,
            socket,
            alive: Arc::downgrade(&digest),
            deadline: self.clock.now() + self.limits.handshake_timeout,
            spoke: false,
        };
        // Both addresses name one live TCP connection, so an entry under the same key is a
        // connection that has ended since.
        let replaced = lock(&self.pending).insert(key, entry);
        drop(replaced);
        Ok((key, watch))
    }

    /// Waits, within the handshake deadline, for the client's first bytes (its ClientHello),
    /// so a socket that says nothing never reaches the TLS handshake. Once it has spoken, the
    /// connection is evicted only after every silent one.
    async fn first_bytes(&self, key: ConnKey, watch: std::net::TcpStream) -> Result<(), Reason> {
        let spoke = async {
            let watch = tokio::net::TcpStream::from_std(watch)?;
            watch.peek(&mut [0u8; 1]).await
        };
        let spoke = tokio::time::timeout(self.limits.handshake_timeout, spoke).await;
        let mut pending = lock(&self.pending);
        match (spoke, pending.get_mut(&key)) {
            (Ok(Ok(n)), Some(p)) if n > 0 => {
                p.spoke = true;
                Ok(())
            }
            (spoke, entry) => {
                // Gone silent, closed, or evicted meanwhile (then the entry is gone too).
                let ours = entry.is_some();
                let removed = if ours { pending.remove(&key) } else { None };
                drop(pending);
                drop(removed);
                let reason = match spoke {
                    Err(_) => "handshake_timeout",
                    _ => "closed_before_handshake",
                };
                if ours && reason == "handshake_timeout" {
                    (self.on_refuse)(reason);
                }
                Err(reason)
            }
        }
    }

    /// The edge app's claim on a connection whose handshake finished (or, on a listener
    /// without TLS, that was just accepted). `Err` means it must be closed.
    pub fn established(self: &Arc<Self>, key: Option<ConnKey>) -> Result<Connection, Reason> {
        let key = key.ok_or_else(|| self.refused("no_peer_address"))?;
        let claimed = lock(&self.pending).remove(&key);
        let ticket = match claimed {
            Some(p) => p.ticket,
            None => self.admit(key.1.ip()).map_err(|r| self.refused(r))?,
        };
        let bodies = Arc::new(AtomicUsize::new(0));
        lock(&self.open).insert(key, bodies.clone());
        Ok(Connection {
            _ticket: ticket,
            key,
            bodies,
            connections: self.clone(),
        })
    }

    /// A place for one more request body on this connection, if it has one free; a
    /// connection this accounting does not know gets none.
    pub fn body_slot(&self, key: Option<ConnKey>) -> Result<BodySlot, Reason> {
        let bodies = key.and_then(|k| lock(&self.open).get(&k).cloned());
        let bodies = bodies.ok_or_else(|| self.refused("untracked_connection"))?;
        let max = self.limits.bodies_per_connection;
        let taken = bodies.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        });
        match taken {
            Ok(_) => Ok(BodySlot(bodies)),
            Err(_) => Err(self.refused("max_bodies_per_connection")),
        }
    }

    /// Closes pending handshakes past their deadline and forgets those pingora dropped.
    pub fn sweep(&self, now: Instant) {
        let done: Vec<Pending> = {
            let mut pending = lock(&self.pending);
            let finished: Vec<ConnKey> = pending
                .iter()
                .filter(|(_, p)| p.deadline <= now || p.alive.strong_count() == 0)
                .map(|(a, _)| *a)
                .collect();
            finished.iter().filter_map(|a| pending.remove(a)).collect()
        };
        for p in done {
            if p.alive.strong_count() > 0 {
                (self.on_refuse)("handshake_timeout");
                let _ = p.socket.shutdown(std::net::Shutdown::Both);
            }
        }
    }

    /// Runs [`Self::sweep`] until the accounting is dropped.
    pub async fn sweep_forever(this: Weak<Self>) {
        loop {
            let every = match this.upgrade() {
                Some(a) => {
                    a.sweep(a.clock.now());
                    (a.limits.handshake_timeout / 20)
                        .clamp(Duration::from_millis(10), Duration::from_millis(100))
                }
                None => return,
            };
            tokio::time::sleep(every).await;
        }
    }
}

/// A connection's key from its socket digest.
pub fn key_of(digest: &SocketDigest) -> Option<ConnKey> {
    let local = *digest.local_addr()?.as_inet()?;
    let peer = *digest.peer_addr()?.as_inet()?;
    Some((local, peer))
}

/// Whether the client has sent bytes not read yet (the socket is non-blocking).
fn has_bytes_waiting(socket: &std::net::TcpStream) -> bool {
    matches!(socket.peek(&mut [0u8; 1]), Ok(n) if n > 0)
}

/// A second descriptor for the connection's socket.
fn duplicate(stream: &L4Stream) -> std::io::Result<std::net::TcpStream> {
    let fd = stream.as_raw_fd();
    if fd < 0 {
        // A virtual stream has no descriptor.
        return Err(std::io::ErrorKind::Unsupported.into());
    }
    // SAFETY: `fd` is the (non-negative) socket of `stream`, which the caller borrows to us for
    // this call, so it stays open while it is duplicated; the duplicate is a new descriptor
    // we own.
    #[allow(unsafe_code)]
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    Ok(std::net::TcpStream::from(borrowed.try_clone_to_owned()?))
}

/// The pre-TLS callback: admission right after `accept`.
pub struct PreTls(pub Arc<Connections>);

#[async_trait]
impl PreTlsProcess for PreTls {
    async fn process(&self, stream: &mut L4Stream) -> pingora::Result<()> {
        let refused = |reason| pingora::Error::explain(pingora::ErrorType::AcceptError, reason);
        let (peer, watch) = self.0.pending(stream).map_err(refused)?;
        self.0.first_bytes(peer, watch).await.map_err(refused)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    const LIMITS: ConnectionLimits = ConnectionLimits {
        max_connections: 4,
        max_per_ip: 3,
        max_pending: 2,
        handshake_timeout: Duration::from_secs(5),
        bodies_per_connection: 2,
    };

    fn connections(clock: &ManualClock) -> (Arc<Connections>, Arc<Mutex<Vec<Reason>>>) {
        let refused = Arc::new(Mutex::new(Vec::new()));
        let log = refused.clone();
        let on_refuse = Box::new(move |r| lock(&log).push(r));
        let c = Connections::new(LIMITS, Arc::new(clock.clone()), on_refuse);
        (Arc::new(c), refused)
    }

    /// A connection from `ip:port` to the gateway's 127.0.0.1:8443.
    fn addr(ip: [u8; 4], port: u16) -> Option<ConnKey> {
        let local = SocketAddr::from(([127, 0, 0, 1], 8443));
        Some((local, SocketAddr::from((ip, port))))
    }

    /// A connected socket pair: the server side as pingora hands it to the pre-TLS callback.
    async fn accepted() -> (L4Stream, tokio::net::TcpStream) {
        accepted_from([127, 0, 0, 1]).await
    }

    /// The same, from the loopback address `from`.
    async fn accepted_from(from: [u8; 4]) -> (L4Stream, tokio::net::TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::from((from, 0))).unwrap();
        let client = socket.connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        let (server, _) = accepted.unwrap();
        let fd = server.as_raw_fd();
        let mut stream = L4Stream::from(server);
        stream.set_socket_digest(SocketDigest::from_raw_fd(fd));
        (stream, client.unwrap())
    }

    #[test]
    fn ipv6_clients_are_counted_per_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(Network::from(a), Network::from(b));
        assert_ne!(Network::from(a), Network::from(other));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(
            Network::from(mapped),
            Network::from("192.0.2.7".parse::<IpAddr>().unwrap())
        );
    }

    #[test]
    fn connections_are_capped_per_ip_and_in_total_until_they_close() {
        let clock = ManualClock::default();
        let (c, refused) = connections(&clock);
        let mut open: Vec<_> = (1..=3)
            .map(|port| c.established(addr([10, 0, 0, 1], port)).unwrap())
            .collect();
        assert!(c.established(addr([10, 0, 0, 1], 4)).is_err());
        open.push(c.established(addr([10, 0, 0, 2], 1)).unwrap());
        assert!(c.established(addr([10, 0, 0, 3], 1)).is_err());
        assert_eq!(
            *lock(&refused),
            ["max_connections_per_ip", "max_connections"]
        );
        assert_eq!(c.connections(), 4);
        open.pop();
        assert_eq!(c.connections(), 3);
        c.established(addr([10, 0, 0, 3], 1)).unwrap();
    }

    #[test]
    fn a_connection_buffers_a_bounded_number_of_bodies() {
        let clock = ManualClock::default();
        let (c, refused) = connections(&clock);
        let peer = addr([10, 0, 0, 1], 1);
        let _conn = c.established(peer).unwrap();
        let first = c.body_slot(peer).unwrap();
        let _second = c.body_slot(peer).unwrap();
        assert!(c.body_slot(peer).is_err());
        assert_eq!(*lock(&refused), ["max_bodies_per_connection"]);
        drop(first);
        assert!(c.body_slot(peer).is_ok());
        // Bodies on another connection are counted apart.
        let other = addr([10, 0, 0, 1], 2);
        let _other_conn = c.established(other).unwrap();
        assert!(c.body_slot(other).is_ok());
    }

    #[tokio::test]
    async fn pending_handshakes_end_at_their_deadline_or_make_room_silent_first() {
        let clock = ManualClock::default();
        let (c, refused) = connections(&clock);
        let (first, _first_client) = accepted().await;
        let (second, mut second_client) = accepted().await;
        c.pending(&first).unwrap();
        clock.advance(Duration::from_secs(1));
        c.pending(&second).unwrap();
        // The older one has said something: the younger, silent one makes room.
        let (talker, mut talker_client) = accepted().await;
        talker_client.write_all(b"\x16\x03\x01").await.unwrap();
        drop(first);
        // `first` was dropped by "pingora": the sweep forgets it, without a refusal.
        c.sweep(clock.now());
        assert_eq!(lock(&c.pending).len(), 1);
        c.pending(&talker).unwrap();
        assert_eq!(lock(&c.pending).len(), 2);
        // Full: the next arrival evicts `second` (silent), not `talker` (bytes waiting).
        let (third, _third_client) = accepted().await;
        c.pending(&third).unwrap();
        assert_eq!(*lock(&refused), ["handshake_evicted"]);
        let talker_key = key_of(&talker.get_socket_digest().unwrap()).unwrap();
        assert!(lock(&c.pending).contains_key(&talker_key));
        let mut buf = [0u8; 1];
        assert_eq!(
            second_client.read(&mut buf).await.unwrap(),
            0,
            "evicted: closed"
        );
        // Past the deadline the rest are shut down.
        clock.advance(LIMITS.handshake_timeout);
        c.sweep(clock.now());
        assert!(lock(&c.pending).is_empty());
        assert_eq!(
            lock(&refused)
                .iter()
                .filter(|r| **r == "handshake_timeout")
                .count(),
            2
        );
        assert_eq!(c.connections(), 0);
        // A handshake that finished is claimed and counted until it closes.
        let (done, _done_client) = accepted().await;
        c.pending(&done).unwrap();
        let key = key_of(&done.get_socket_digest().unwrap());
        let conn = c.established(key).unwrap();
        assert!(lock(&c.pending).is_empty());
        assert_eq!(c.connections(), 1);
        drop(conn);
        assert_eq!(c.connections(), 0);
    }

    #[tokio::test]
    async fn a_churning_network_evicts_its_own_handshakes_not_others() {
        let clock = ManualClock::default();
        let limits = ConnectionLimits {
            max_connections: 100,
            max_per_ip: 100,
            max_pending: 4,
            ..LIMITS
        };
        let c = Arc::new(Connections::new(
            limits,
            Arc::new(clock.clone()),
            Box::new(|_| ()),
        ));
        // A real client's handshake started first, and has spoken.
        let (real, mut real_client) = accepted_from([127, 0, 0, 2]).await;
        real_client.write_all(b"\x16\x03\x01").await.unwrap();
        c.pending(&real).unwrap();
        let real_key = key_of(&real.get_socket_digest().unwrap()).unwrap();
        // An attacker churns connections that also speak.
        let mut flood = Vec::new();
        for _ in 0..20 {
            clock.advance(Duration::from_millis(1));
            let (s, mut client) = accepted_from([127, 0, 0, 9]).await;
            client.write_all(b"\x16").await.unwrap();
            c.pending(&s).unwrap();
            flood.push((s, client));
        }
        assert!(
            lock(&c.pending).contains_key(&real_key),
            "the real client was evicted"
        );
        assert_eq!(lock(&c.pending).len(), 4);
    }
}
