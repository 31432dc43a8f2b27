//! The gateway's audit log (DESIGN §8): hash-chained JSON lines written by photondb-proto's
//! one `AuditLog`. Every security refusal (401, 403, 421, 429, and the 503s of a store the
//! security pipeline needs) is an event with the request id, the client address, the code and
//! the partner or key the request named — never a signature, token, secret or body.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use photondb_proto::audit::AuditLog;
use photondb_proto::signing::{HEADER_PARTNER_ID, Timestamp};
use serde_json::Value;

use crate::clock::Clock;
use crate::errors::Refusal;
use crate::pipeline::head::RequestHead;

/// The gateway's event log; `None` inside: auditing off (dev mode without a state directory,
/// unit tests).
pub struct Audit {
    log: Option<AuditLog>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Audit")
            .field("on", &self.log.is_some())
            .finish()
    }
}

impl Audit {
    /// Opens (or creates) the log at `path` and continues its chain.
    pub fn open(path: &Path, clock: Arc<dyn Clock>) -> std::io::Result<Self> {
        Ok(Self {
            log: Some(AuditLog::open(path, "gateway")?),
            clock,
        })
    }

    /// Records nothing.
    pub fn off(clock: Arc<dyn Clock>) -> Self {
        Self { log: None, clock }
    }

    /// Appends one event.
    pub fn record<'a>(&self, kind: &str, fields: impl IntoIterator<Item = (&'a str, Value)>) {
        if let Some(log) = &self.log {
            log.record(Timestamp::from_unix(self.clock.unix_secs()), kind, fields);
        }
    }

    /// A security refusal, with what the request claimed to be (the partner id or the key id of
    /// its credential: names, never secrets).
    pub fn refusal(
        &self,
        refusal: &Refusal,
        head: &RequestHead,
        client: Option<IpAddr>,
        request_id: &str,
    ) {
        if !is_security_refusal(refusal) {
            return;
        }
        let claimed = claimed_identity(head);
        self.record(
            "refusal",
            [
                ("request_id", request_id.into()),
                ("client_ip", client.map(|ip| ip.to_string()).into()),
                ("claimed", claimed.into()),
                ("code", refusal.describe().code.into()),
                ("method", head.method.as_str().into()),
                ("path", head.path.clone().into()),
            ],
        );
    }
}

fn is_security_refusal(r: &Refusal) -> bool {
    matches!(
        r,
        Refusal::HostNotAllowed
            | Refusal::DevModeProxied
            | Refusal::Unauthenticated(_)
            | Refusal::Replayed
            | Refusal::TimestampOutOfWindow { .. }
            | Refusal::ReplayStoreUnavailable
            | Refusal::RateLimited { .. }
            | Refusal::RateLimitStoreUnavailable
            | Refusal::Forbidden { .. }
            | Refusal::IpRateLimited { .. }
    )
}

/// Who the request said it was, before any check: `partner:<id>` from `X-Partner-Id`, the
/// `keyid` of an RFC 9421 signature, or `key:<id>` of an API key. Only names of the shape
/// the schemes allow are kept (nothing a client could use to inject into the log).
fn claimed_identity(head: &RequestHead) -> Option<String> {
    let name_ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'))
    };
    if let Some(p) = head.headers.get(HEADER_PARTNER_ID)
        && let Ok(p) = p.to_str()
        && name_ok(p)
    {
        return Some(format!("partner:{p}"));
    }
    if let Some(input) = head.headers.get("signature-input")
        && let Ok(input) = input.to_str()
        && let Some(rest) = input.split("keyid=\"").nth(1)
        && let Some(keyid) = rest.split('"').next()
        && name_ok(keyid)
    {
        return Some(format!("keyid:{keyid}"));
    }
    let bearer = head.header(http::header::AUTHORIZATION)?;
    let key_id = bearer.strip_prefix("Bearer pdb_")?.split('_').next()?;
    name_ok(key_id).then(|| format!("key:{key_id}"))
}
