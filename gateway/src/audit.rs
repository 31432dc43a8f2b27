//! The gateway's audit log (DESIGN §8): hash-chained, anchored JSON lines written by
//! photondb-proto's one `AuditLog`. Every request that passed authorization is an `access`
//! event (request id, principal, client address, action, resource, outcome); every security
//! refusal (401, 403, 421, 429, and the 503s of a store the security pipeline needs) is a
//! `refusal` event with the code and the partner or key the request named — never a
//! signature, token, secret or body. Refusals are aggregated per client network and code
//! (`audit::flood`), so a flood of bad signatures writes a bounded number of lines.

use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use photondb_proto::audit::flood::{Noted, Window};
use photondb_proto::audit::{AuditLog, AuditOptions};
use photondb_proto::signing::{HEADER_PARTNER_ID, Timestamp};
use serde_json::Value;

use crate::clock::Clock;
use crate::errors::Refusal;
use crate::operation::Target;
use crate::pipeline::auth::Principal;
use crate::pipeline::head::RequestHead;

/// Refusals of one client network with one code are written once per interval, then counted.
pub const REFUSAL_INTERVAL: Duration = Duration::from_secs(10);

/// The gateway's event log; `None` inside: auditing off (dev mode without a state directory,
/// unit tests).
pub struct Audit {
    log: Option<AuditLog>,
    clock: Arc<dyn Clock>,
    refusals: Mutex<Window>,
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
    pub fn open(
        path: &Path,
        options: AuditOptions,
        clock: Arc<dyn Clock>,
    ) -> std::io::Result<Self> {
        let at = Timestamp::from_unix(clock.unix_secs());
        Ok(Self {
            log: Some(AuditLog::open(path, "gateway", options, at)?),
            refusals: Mutex::new(Window::starting(clock.now())),
            clock,
        })
    }

    /// Records nothing.
    pub fn off(clock: Arc<dyn Clock>) -> Self {
        Self {
            log: None,
            refusals: Mutex::new(Window::starting(clock.now())),
            clock,
        }
    }

    fn stamp(&self) -> Timestamp {
        Timestamp::from_unix(self.clock.unix_secs())
    }

    /// Appends one event.
    pub fn record<'a>(&self, kind: &str, fields: impl IntoIterator<Item = (&'a str, Value)>) {
        if let Some(log) = &self.log {
            log.record(self.stamp(), kind, fields);
        }
    }

    /// A request that passed authorization, with what came of it: `ok`, or the code it was
    /// answered with.
    pub fn access(
        &self,
        request_id: &str,
        principal: &Principal,
        client: Option<IpAddr>,
        target: &Target,
        outcome: Result<(), &Refusal>,
    ) {
        if self.log.is_none() {
            return;
        }
        let code = outcome.err().map_or("ok", |r| r.describe().code);
        self.record(
            "access",
            [
                ("request_id", request_id.into()),
                ("principal", principal.as_str().into()),
                ("client_ip", client.map(|ip| ip.to_string()).into()),
                ("action", target.action.as_str().into()),
                ("resource", target.resource.to_string().into()),
                ("outcome", if code == "ok" { "ok" } else { "failed" }.into()),
                ("code", code.into()),
            ],
        );
    }

    /// A security refusal, with what the request claimed to be (the partner id or the key id of
    /// its credential: names, never secrets). The first per client network and code in an
    /// interval is written in full; the rest are counted into one summary line.
    pub fn refusal(
        &self,
        refusal: &Refusal,
        head: &RequestHead,
        client: Option<IpAddr>,
        request_id: &str,
    ) {
        if self.log.is_none() || !is_security_refusal(refusal) {
            return;
        }
        let code = refusal.describe().code;
        let mut window = self.refusals.lock().unwrap_or_else(PoisonError::into_inner);
        self.roll(&mut window, REFUSAL_INTERVAL);
        let peer = client.map_or_else(|| "unknown".to_owned(), peer_network);
        if window.note(peer, code) == Noted::Counted {
            return;
        }
        let claimed = claimed_identity(head);
        self.record(
            "refusal",
            [
                ("request_id", request_id.into()),
                ("client_ip", client.map(|ip| ip.to_string()).into()),
                ("claimed", claimed.into()),
                ("code", code.into()),
                ("method", head.method.as_str().into()),
                ("path", head.path.clone().into()),
            ],
        );
    }

    /// Writes the summaries of an interval that has ended (any open one for `interval` 0).
    fn roll(&self, window: &mut Window, interval: Duration) {
        let Some(summaries) = window.roll(self.clock.now(), interval) else {
            return;
        };
        for s in summaries {
            self.record(
                "refusal",
                [
                    ("peer", s.peer.into()),
                    ("code", s.reason.into()),
                    ("count", s.count.into()),
                ],
            );
        }
    }

    /// Ends refusal intervals and anchors by time (the reload loop calls it every second).
    pub fn tick(&self) {
        let mut window = self.refusals.lock().unwrap_or_else(PoisonError::into_inner);
        self.roll(&mut window, REFUSAL_INTERVAL);
        drop(window);
        if let Some(log) = &self.log {
            log.tick(self.stamp());
        }
    }

    /// A clean stop: the open interval's summaries, then an anchor for every line not yet
    /// signed for.
    pub fn close(&self) {
        let mut window = self.refusals.lock().unwrap_or_else(PoisonError::into_inner);
        self.roll(&mut window, Duration::ZERO);
        drop(window);
        if let Some(log) = &self.log {
            log.close(self.stamp());
        }
    }
}

/// A client's network as the refusal summaries name it: an IPv4 address, an IPv6 /64.
fn peer_network(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            format!("{}/64", std::net::Ipv6Addr::from(bits))
        }
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
            | Refusal::PartnerSuspended
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
