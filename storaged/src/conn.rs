//! Accepting connections: a bounded number, each with a TLS handshake under a deadline; a
//! refused handshake (plaintext, no certificate, wrong CA, expired, identity not allowed) is
//! audited with the peer's address.

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

use crate::audit::Audit;
use crate::tls::{Reloading, identities};

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

/// Accepts forever, sending each authenticated connection to `out`.
pub async fn accept_loop(
    listener: TcpListener,
    tls: Arc<Reloading>,
    max_connections: usize,
    handshake_timeout: Duration,
    audit: Arc<Audit>,
    out: mpsc::Sender<io::Result<Conn>>,
) {
    let slots = Arc::new(Semaphore::new(max_connections));
    loop {
        let Ok((tcp, addr)) = listener.accept().await else {
            continue;
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%addr, "connection limit reached; closing");
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (tls, audit, out) = (tls.clone(), audit.clone(), out.clone());
        tokio::spawn(async move {
            let acceptor = tokio_rustls::TlsAcceptor::from(tls.current());
            match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    let peer = Peer {
                        addr,
                        identity: peer_identity(&stream),
                    };
                    tracing::debug!(%addr, identity = %peer.identity, "mTLS connection accepted");
                    let _ = out
                        .send(Ok(Conn {
                            stream,
                            peer,
                            _slot: slot,
                        }))
                        .await;
                }
                Ok(Err(err)) => refused(&audit, addr, &err.to_string()),
                Err(_) => refused(&audit, addr, "handshake timed out"),
            }
        });
    }
}

fn peer_identity(stream: &TlsStream<TcpStream>) -> String {
    let certs = stream.get_ref().1.peer_certificates().unwrap_or_default();
    certs
        .first()
        .map(|c| identities(c).join(","))
        .unwrap_or_default()
}

fn refused(audit: &Audit, addr: SocketAddr, reason: &str) {
    tracing::warn!(%addr, reason, "connection refused");
    audit.record(
        "mtls_refused",
        [("peer", addr.to_string().into()), ("reason", reason.into())],
    );
}
