//! Pipeline step 5: the request body, read completely before anything is decided on it,
//! bounded in size (413) and time (408), hashed as it arrives. `Content-Encoding` is refused.
//! The body comes from a [`BodySource`], so the pipeline never sees the server's types.

use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use photondb_proto::signing::{BodyDigest, BodyHasher};

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

/// A body read in full, with the SHA-256 that signatures cover.
#[derive(Debug, Clone)]
pub struct Body {
    pub bytes: Bytes,
    pub digest: BodyDigest,
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

/// Reads the whole body: at most `max` bytes, within `timeout`.
pub async fn read(
    headers: &http::HeaderMap,
    source: &mut dyn BodySource,
    max: usize,
    timeout: Duration,
) -> Result<Body, Refusal> {
    check_declared_length(headers, max)?;
    match tokio::time::timeout(timeout, read_chunks(source, max)).await {
        Ok(result) => result,
        Err(_) => Err(Refusal::BodyTimeout),
    }
}

async fn read_chunks(source: &mut dyn BodySource, max: usize) -> Result<Body, Refusal> {
    let mut buf = BytesMut::new();
    let mut hasher = BodyHasher::default();
    while let Some(chunk) = source.next_chunk().await.map_err(|_| Refusal::BadBody)? {
        if buf.len() + chunk.len() > max {
            return Err(Refusal::PayloadTooLarge);
        }
        hasher.update(&chunk);
        buf.extend_from_slice(&chunk);
    }
    Ok(Body {
        bytes: buf.freeze(),
        digest: hasher.finish(),
    })
}
