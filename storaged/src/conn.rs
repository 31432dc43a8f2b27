//! Accepting connections. Before a peer has authenticated it holds only a place among the
//! handshakes in progress ([`Handshakes`]: bounded in all and per network, the oldest evicted
//! for a newcomer) for at most `handshake_timeout`; a slot among `max_connections` is taken
//! only once mTLS has succeeded, so peers that never authenticate cannot take one and every
//! slot is kept for gateways. Each refusal (a handshake cap, plaintext, no certificate, wrong
//! CA, expired, identity not allowed, timed out, no free slot) closes the connection, is
//! counted in metrics, and goes to the audit log through [`RefusalLog`], which aggregates.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_rustls::server::TlsStream;
use tonic::transport::server::Connected;

use crate::config::Limits;
use crate::handshakes::{Handshakes, Network, NetworkBusy, Pending};
use crate::metrics::Metrics;
use crate::refusals::RefusalLog;
use crate::tls::{Reloading, identities};

/// Idle time before the first TCP keepalive probe: a peer that vanished without a FIN (power
/// loss, a dropped route) frees its slot in minutes, not the kernel's default two hours.
const TCP_KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
/// Time between unanswered probes (the kernel gives up after its probe count, 9 on Linux).
const TCP_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// How long accepting pauses after it failed (out of descriptors), rather than spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Who is on the other end of a connection; handlers find it in request extensions.
#[derive(Debug, Clone)]
pub struct Peer {
    pub addr: SocketAddr,
    pub identity: String,
}

/// An authenticated connection that holds its slot until it closes.
pub struct Conn {
    stream: TlsStream<TcpStream>,
    peer: Peer,
    _slot: OwnedSemaphorePermit,
}

impl Connected for Conn {
    type ConnectInfo = Peer;

    fn connect_info(&self) -> Peer {
        self.peer.clone()
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// What accepting needs and holds: the TLS configuration, the handshakes in progress, the
/// slots of authenticated connections, and where refusals go.
pub struct Acceptor {
    tls: Arc<Reloading>,
    handshake_timeout: Duration,
    handshakes: Arc<Handshakes>,
    slots: Arc<Semaphore>,
    refusals: Arc<RefusalLog>,
    metrics: Arc<Metrics>,
}

/// Why a connection was closed before it could make a call.
#[derive(Debug)]
enum Refused {
    /// Its network had `max_pending_handshakes_per_ip` handshakes in progress already.
    NetworkBusy,
    /// A newer connection took its place among the `max_pending_handshakes`.
    Evicted,
    /// It did not finish its handshake within `handshake_timeout`.
    TimedOut,
    /// rustls refused it (plaintext, no certificate, wrong CA, expired, identity not allowed).
    Tls(String),
    /// It authenticated, but `max_connections` connections were open.
    NoSlot,
}

impl Refused {
    /// The audit line's `reason`.
    fn reason(&self) -> &str {
        match self {
            Self::NetworkBusy => "too many handshakes in progress from this network",
            Self::Evicted => "handshake evicted by a newer connection",
            Self::TimedOut => "handshake timed out",
            Self::Tls(reason) => reason.as_str(),
            Self::NoSlot => "connection limit reached",
        }
    }

    /// The refusal metric's label.
    fn label(&self) -> &'static str {
        match self {
            Self::NetworkBusy => "handshakes_per_ip",
            Self::Evicted => "handshake_evicted",
            Self::TimedOut => "handshake_timeout",
            Self::Tls(_) => "handshake_failed",
            Self::NoSlot => "max_connections",
        }
    }
}

impl Acceptor {
    pub fn new(
        tls: Arc<Reloading>,
        limits: &Limits,
        refusals: Arc<RefusalLog>,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        Arc::new(Self {
            tls,
            handshake_timeout: limits.handshake_timeout,
            handshakes: Handshakes::new(
                limits.max_pending_handshakes,
                limits.max_pending_handshakes_per_ip,
            ),
            slots: Arc::new(Semaphore::new(limits.max_connections)),
            refusals,
            metrics,
        })
    }

    /// Runs one connection's handshake; an authenticated connection goes to `out`.
    async fn handshake(
        &self,
        tcp: TcpStream,
        addr: SocketAddr,
        mut pending: Pending,
        out: &mpsc::Sender<io::Result<Conn>>,
    ) {
        tune(&tcp);
        let acceptor = tokio_rustls::TlsAcceptor::from(self.tls.current());
        let accept = acceptor.accept(tcp);
        let handshake = tokio::select! {
            finished = tokio::time::timeout(self.handshake_timeout, accept) => match finished {
                Ok(Ok(stream)) => Ok(stream),
                Ok(Err(err)) => Err(Refused::Tls(err.to_string())),
                Err(_) => Err(Refused::TimedOut),
            },
            () = pending.evicted() => Err(Refused::Evicted),
        };
        // Finished either way: its place goes to the next handshake before anything else.
        drop(pending);
        match handshake.and_then(|stream| self.admit(stream, addr)) {
            Ok(conn) => {
                let _ = out.send(Ok(conn)).await;
            }
            Err(refused) => self.refuse(addr, &refused),
        }
    }

    /// Gives an authenticated connection a slot, which it holds until it closes.
    fn admit(&self, stream: TlsStream<TcpStream>, addr: SocketAddr) -> Result<Conn, Refused> {
        let slot = self.slots.clone().try_acquire_owned();
        let slot = slot.map_err(|_| Refused::NoSlot)?;
        let peer = Peer {
            addr,
            identity: peer_identity(&stream),
        };
        tracing::debug!(%addr, identity = %peer.identity, "mTLS connection accepted");
        Ok(Conn {
            stream,
            peer,
            _slot: slot,
        })
    }

    /// Counts and audits a refusal; the caller drops the connection, which closes it.
    fn refuse(&self, addr: SocketAddr, refused: &Refused) {
        // Per refusal only at debug: the aggregated audit lines are logged at warn.
        tracing::debug!(%addr, reason = refused.reason(), "connection refused");
        self.metrics.connection_refused(refused.label());
        self.refusals.refused(addr, refused.reason());
    }
}

/// Accepts until the task is dropped, sending each authenticated connection to `out`.
pub async fn accept_loop(
    listener: TcpListener,
    acceptor: Arc<Acceptor>,
    out: mpsc::Sender<io::Result<Conn>>,
) {
    loop {
        let (tcp, addr) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                tracing::warn!(error = %err, "accepting a connection failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let pending = match acceptor.handshakes.begin(Network::of(addr.ip())) {
            Ok(pending) => pending,
            Err(NetworkBusy) => {
                acceptor.refuse(addr, &Refused::NetworkBusy);
                continue;
            }
        };
        let (acceptor, out) = (acceptor.clone(), out.clone());
        tokio::spawn(async move { acceptor.handshake(tcp, addr, pending, &out).await });
    }
}

/// No Nagle delay (gRPC frames are small), and TCP keepalive so that a peer gone without a
/// FIN is noticed below HTTP/2 too (HTTP/2 pings cover authenticated connections).
fn tune(tcp: &TcpStream) {
    let _ = tcp.set_nodelay(true);
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(TCP_KEEPALIVE_IDLE)
        .with_interval(TCP_KEEPALIVE_INTERVAL);
    let _ = socket2::SockRef::from(tcp).set_tcp_keepalive(&keepalive);
}

fn peer_identity(stream: &TlsStream<TcpStream>) -> String {
    let certs = stream.get_ref().1.peer_certificates().unwrap_or_default();
    certs
        .first()
        .map(|c| identities(c).join(","))
        .unwrap_or_default()
}
