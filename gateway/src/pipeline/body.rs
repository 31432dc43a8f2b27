//! Pipeline step 5: the request body, read completely before anything is decided on it,
//! bounded in size (413) and time (408), hashed as it arrives. `Content-Encoding` is refused.
//! The body comes from a [`BodySource`], so the pipeline never sees the server's types.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use photondb_proto::signing::{BodyDigest, BodyHasher};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::errors::Refusal;

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
    _reserved: Option<OwnedSemaphorePermit>,
}

/// The bytes that all request bodies being buffered may hold together. Past it a request is
/// refused at once (503 `overloaded`) instead of growing the gateway's memory: bodies are
/// read before authentication, so this is what bounds an unauthenticated client's memory.
#[derive(Debug, Clone)]
pub struct BodyBudget(Arc<Semaphore>);

impl BodyBudget {
    pub fn new(bytes: usize) -> Self {
        Self(Arc::new(Semaphore::new(bytes.min(Semaphore::MAX_PERMITS))))
    }

    /// Bytes not reserved now.
    pub fn available(&self) -> usize {
        self.0.available_permits()
    }

    /// Adds `n` bytes to `held`, or refuses if the budget has no room for them.
    fn reserve(&self, held: &mut Option<OwnedSemaphorePermit>, n: usize) -> Result<(), Refusal> {
        if n == 0 {
            return Ok(());
        }
        let n = u32::try_from(n).map_err(|_| Refusal::PayloadTooLarge)?;
        let more = self.0.clone().try_acquire_many_owned(n);
        let more = more.map_err(|_| Refusal::Overloaded)?;
        match held {
            Some(permit) => permit.merge(more),
            None => *held = Some(more),
        }
        Ok(())
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

/// The declared `Content-Length`, refused before reading if past the limit.
fn declared_length(headers: &http::HeaderMap, max: usize) -> Result<usize, Refusal> {
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    match declared {
        Some(n) if n > max as u64 => Err(Refusal::PayloadTooLarge),
        Some(n) => Ok(n as usize),
        None => Ok(0),
    }
}

/// Reads the whole body: at most `max` bytes, within `timeout`, within the `budget` (a
/// declared length is reserved before the first byte is read).
pub async fn read(
    headers: &http::HeaderMap,
    source: &mut dyn BodySource,
    max: usize,
    timeout: Duration,
    budget: &BodyBudget,
) -> Result<Body, Refusal> {
    let mut reserved = None;
    budget.reserve(&mut reserved, declared_length(headers, max)?)?;
    let read = read_chunks(source, max, budget, reserved);
    match tokio::time::timeout(timeout, read).await {
        Ok(result) => result,
        Err(_) => Err(Refusal::BodyTimeout),
    }
}

async fn read_chunks(
    source: &mut dyn BodySource,
    max: usize,
    budget: &BodyBudget,
    mut reserved: Option<OwnedSemaphorePermit>,
) -> Result<Body, Refusal> {
    let mut buf = BytesMut::new();
    let mut hasher = BodyHasher::default();
    while let Some(chunk) = source.next_chunk().await.map_err(|_| Refusal::BadBody)? {
        let len = buf.len() + chunk.len();
        if len > max {
            return Err(Refusal::PayloadTooLarge);
        }
        let held = reserved.as_ref().map_or(0, |p| p.num_permits());
        budget.reserve(&mut reserved, len.saturating_sub(held))?;
        hasher.update(&chunk);
        buf.extend_from_slice(&chunk);
    }
    Ok(Body {
        bytes: buf.freeze(),
        digest: hasher.finish(),
        _reserved: reserved,
    })
}
