//! What the gateway tells storaged about a call: request id, principal, deadline.

use std::time::{Duration, Instant};

use photondb_proto::metadata::{PRINCIPAL, REQUEST_ID};

use crate::engine::Clock;

#[derive(Debug, Clone)]
pub struct CallContext {
    pub method: &'static str,
    pub request_id: String,
    pub principal: String,
    pub deadline: Option<Instant>,
    pub started: Instant,
}

impl CallContext {
    /// Reads the call's metadata; the deadline counts from `clock`'s now.
    pub fn from_metadata(
        method: &'static str,
        metadata: &tonic::metadata::MetadataMap,
        clock: &dyn Clock,
    ) -> Self {
        let text = |key: &str| {
            metadata
                .get(key)
                .and_then(|v| v.to_str().ok())
                .filter(|v| !v.is_empty() && v.len() <= 128)
                .map(str::to_owned)
        };
        let started = clock.now();
        Self {
            method,
            request_id: text(REQUEST_ID).unwrap_or_else(|| "-".into()),
            principal: text(PRINCIPAL).unwrap_or_else(|| "-".into()),
            deadline: text("grpc-timeout")
                .and_then(|t| parse_grpc_timeout(&t))
                .map(|d| started + d),
            started,
        }
    }

    pub fn expired(&self, clock: &dyn Clock) -> bool {
        self.deadline.is_some_and(|d| clock.now() >= d)
    }
}

/// `grpc-timeout`: up to 8 digits and a unit (H, M, S, m, u, n).
pub fn parse_grpc_timeout(text: &str) -> Option<Duration> {
    let (digits, unit) = text.split_at(text.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::ManualClock;

    #[test]
    fn the_deadline_passes_when_the_clock_does() {
        let clock = ManualClock::default();
        let mut metadata = tonic::metadata::MetadataMap::new();
        metadata.insert("grpc-timeout", "250m".parse().unwrap());
        metadata.insert(REQUEST_ID, "req-1".parse().unwrap());
        let ctx = CallContext::from_metadata("Get", &metadata, &clock);
        assert_eq!(ctx.request_id, "req-1");
        assert_eq!(ctx.principal, "-");
        assert!(!ctx.expired(&clock));
        clock.advance(Duration::from_millis(249));
        assert!(!ctx.expired(&clock));
        clock.advance(Duration::from_millis(1));
        assert!(ctx.expired(&clock));
    }

    #[test]
    fn grpc_timeouts() {
        assert_eq!(parse_grpc_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("1n"), Some(Duration::from_nanos(1)));
        for bad in ["", "S", "5", "5s", "123456789S", "-1S"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad}");
        }
    }
}
