//! Pipeline step 5: the request body, read completely before anything is decided on it,
//! bounded in size (413) and time (408), hashed as it arrives. `Content-Encoding` is refused.
//! The body comes from a [`BodySource`], so the pipeline never sees the server's types.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use photondb_proto::signing::{BodyDigest, BodyHasher};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::errors::Refusal;
use crate::pipeline::ip_limit::Network;

/// Where a request body comes from: the server adapter (pingora) or a test.
#[async_trait]
pub trait BodySource: Send {
    /// The next chunk, `None` once the body has ended, `Err` when the client broke it off.
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, BodyBroken>;

    /// Whether the whole body has been read, so the connection can carry another request.
    fn is_done(&mut self) -> bool;
}

/// The client's body could not be read (reset, malformed framing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyBroken;

/// A body read in full, with the SHA-256 that signatures cover. It holds its bytes' share of
/// the [`BodyBudget`] until the request is answered.
#[derive(Debug)]
pub struct Body {
    pub bytes: Bytes,
    pub digest: BodyDigest,
    _reserved: Reserved,
}

/// The bytes that request bodies being buffered may hold: all together, and per client
/// network (an IPv4 address or IPv6 /64). Past either, a request is refused at once (503
/// `overloaded`) instead of growing the gateway's memory: bodies are read before
/// authentication, so this is what bounds an unauthenticated client's memory. Only bytes that
/// arrived count: a client that declares a large `Content-Length` and sends nothing holds
/// nothing, and one network can hold at most its share.
#[derive(Debug, Clone)]
pub struct BodyBudget {
    total: Arc<Semaphore>,
    per_network: Arc<Mutex<HashMap<Network, usize>>>,
    share: usize,
}

/// Bytes of one body counted against the budget; given back when dropped.
#[derive(Debug)]
struct Reserved {
    permit: Option<OwnedSemaphorePermit>,
    network: Option<Network>,
    bytes: usize,
    budget: BodyBudget,
}

impl BodyBudget {
    /// `total` bytes in all, at most `share` of them for one client network.
    pub fn new(total: usize, share: usize) -> Self {
        Self {
            total: Arc::new(Semaphore::new(total.min(Semaphore::MAX_PERMITS))),
            per_network: Arc::default(),
            share,
        }
    }

    fn start(&self, client: Option<IpAddr>) -> Reserved {
        Reserved {
            permit: None,
            network: client.map(Network::from),
            bytes: 0,
            budget: self.clone(),
        }
    }
}

impl Reserved {
    /// Grows to `len` bytes, or refuses if the network's share or the total has no room.
    fn grow_to(&mut self, len: usize) -> Result<(), Refusal> {
        let more = len.saturating_sub(self.bytes);
        if more == 0 {
            return Ok(());
        }
        let n = u32::try_from(more).map_err(|_| Refusal::PayloadTooLarge)?;
        let budget = &self.budget;
        if let Some(net) = self.network {
            let mut per = budget
                .per_network
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let held = per.entry(net).or_default();
            if *held + more > budget.share {
                return Err(Refusal::Overloaded);
            }
            *held += more;
        }
        let permit = budget.total.clone().try_acquire_many_owned(n);
        let Ok(permit) = permit else {
            self.give_back_network(more);
            return Err(Refusal::Overloaded);
        };
        match &mut self.permit {
            Some(p) => p.merge(permit),
            None => self.permit = Some(permit),
        }
        self.bytes = len;
        Ok(())
    }

    fn give_back_network(&self, bytes: usize) {
        let Some(net) = self.network else {
            return;
        };
        let mut per = self
            .budget
            .per_network
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(held) = per.get_mut(&net) {
            *held = held.saturating_sub(bytes);
            if *held == 0 {
                per.remove(&net);
            }
        }
    }
}

impl Drop for Reserved {
    fn drop(&mut self) {
        self.give_back_network(self.bytes);
    }
}

/// Refuses request bodies with a `Content-Encoding` (other than `identity`).
pub fn refuse_content_encoding(headers: &http::HeaderMap) -> Result<(), Refusal> {
    let encoded = headers
        .get_all(http::header::CONTENT_ENCODING)
        .iter()
        .any(|v| v.as_bytes() != b"identity");
    if encoded {
        Err(Refusal::ContentEncoding)
    } else {
        Ok(())
    }
}

/// A declared `Content-Length` past the limit is refused before reading.
fn check_declared_length(headers: &http::HeaderMap, max: usize) -> Result<(), Refusal> {
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    match declared {
        Some(n) if n > max as u64 => Err(Refusal::PayloadTooLarge),
        _ => Ok(()),
    }
}

/// Reads the whole body: at most `max` bytes, within `timeout`, within the `budget` (what
/// has arrived so far, for `client`'s network and in total).
pub async fn read(
    headers: &http::HeaderMap,
    source: &mut dyn BodySource,
    max: usize,
    timeout: Duration,
    budget: &BodyBudget,
    client: Option<IpAddr>,
) -> Result<Body, Refusal> {
    check_declared_length(headers, max)?;
    let read = read_chunks(source, max, budget.start(client));
    match tokio::time::timeout(timeout, read).await {
        Ok(result) => result,
        Err(_) => Err(Refusal::BodyTimeout),
    }
}

async fn read_chunks(
    source: &mut dyn BodySource,
    max: usize,
    mut reserved: Reserved,
) -> Result<Body, Refusal> {
    let mut buf = BytesMut::new();
    let mut hasher = BodyHasher::default();
    while let Some(chunk) = source.next_chunk().await.map_err(|_| Refusal::BadBody)? {
        let len = buf.len() + chunk.len();
        if len > max {
            return Err(Refusal::PayloadTooLarge);
        }
        reserved.grow_to(len)?;
        hasher.update(&chunk);
        buf.extend_from_slice(&chunk);
    }
    Ok(Body {
        bytes: buf.freeze(),
        digest: hasher.finish(),
        _reserved: reserved,
    })
}
