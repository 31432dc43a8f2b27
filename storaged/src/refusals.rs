//! Refused connections on the audit log (DESIGN §8), aggregated by photondb-proto's
//! `audit::flood::Window` so that a flood of them cannot fill the disk the WAL is on: in each
//! interval the first refusal from a network for a reason is written at once (with the peer's
//! address and port), later ones are only counted, and when the interval ends one summary line
//! per (network, reason) carries their `count`. The bounds are that module's.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use photondb_proto::audit::flood::{Noted, Window};

use crate::audit::Audit;
use crate::engine::Clock;
use crate::handshakes::Network;

/// The audit kind of every line written here.
const KIND: &str = "mtls_refused";
/// The flusher's shortest period (validation keeps the interval far above it).
const MIN_FLUSH_PERIOD: Duration = Duration::from_millis(10);

/// The aggregating writer: one per daemon, shared by the accept loop and its handshakes.
pub struct RefusalLog {
    audit: Arc<Audit>,
    clock: Arc<dyn Clock>,
    interval: Duration,
    window: Mutex<Window>,
}

impl RefusalLog {
    /// Writes to `audit`, in intervals of `interval` as `clock` measures them.
    pub fn new(audit: Arc<Audit>, clock: Arc<dyn Clock>, interval: Duration) -> Arc<Self> {
        let window = Mutex::new(Window::starting(clock.now()));
        Arc::new(Self {
            audit,
            clock,
            interval,
            window,
        })
    }

    /// Records that `peer` was refused for `reason`.
    pub fn refused(&self, peer: SocketAddr, reason: &str) {
        let mut window = self.lock();
        self.roll(&mut window);
        if window.note(Network::of(peer.ip()).to_string(), reason) == Noted::FirstLine {
            tracing::warn!(%peer, reason, "connection refused");
            self.audit.record(
                KIND,
                [("peer", peer.to_string().into()), ("reason", reason.into())],
            );
        }
    }

    /// Ends the interval if it is over, writing its summaries.
    pub fn flush_due(&self) {
        let mut window = self.lock();
        self.roll(&mut window);
    }

    /// Calls [`RefusalLog::flush_due`] four times an interval, so an interval's summaries do
    /// not wait for the next refusal; the task holds a weak reference and ends with the log.
    pub fn spawn_flusher(log: &Arc<Self>) {
        let weak = Arc::downgrade(log);
        let period = (log.interval / 4).max(MIN_FLUSH_PERIOD);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            loop {
                tick.tick().await;
                match weak.upgrade() {
                    Some(log) => log.flush_due(),
                    None => return,
                }
            }
        });
    }

    fn roll(&self, window: &mut Window) {
        let Some(summaries) = window.roll(self.clock.now(), self.interval) else {
            return;
        };
        for s in summaries {
            let (peer, reason, count) = (&s.peer, &s.reason, s.count);
            tracing::warn!(%peer, %reason, count, "connections refused");
            self.audit.record(
                KIND,
                [
                    ("peer", s.peer.into()),
                    ("reason", s.reason.into()),
                    ("count", s.count.into()),
                ],
            );
        }
    }

    fn lock(&self) -> MutexGuard<'_, Window> {
        self.window.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::ManualClock;
    use photondb_proto::audit::flood;
    use serde_json::Value;
    use std::net::Ipv4Addr;
    use std::path::PathBuf;

    const INTERVAL: Duration = Duration::from_secs(10);
    const TIMED_OUT: &str = "handshake timed out";

    struct Fixture {
        _dir: tempfile::TempDir,
        path: PathBuf,
        clock: ManualClock,
        log: Arc<RefusalLog>,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let clock = ManualClock::default();
        let options = photondb_proto::audit::AuditOptions::default();
        let audit = Arc::new(Audit::open_with(&path, options, Arc::new(clock.clone())).unwrap());
        let log = RefusalLog::new(audit, Arc::new(clock.clone()), INTERVAL);
        Fixture {
            _dir: dir,
            path,
            clock,
            log,
        }
    }

    impl Fixture {
        fn lines(&self) -> Vec<Value> {
            let text = std::fs::read_to_string(&self.path).unwrap();
            text.lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect()
        }

        fn end_interval(&self) {
            self.clock.advance(INTERVAL);
            self.log.flush_due();
        }
    }

    fn peer(ip: [u8; 4], port: u16) -> SocketAddr {
        SocketAddr::from((ip, port))
    }

    /// The refusals `lines` stand for: one per first line, `count` per summary.
    fn accounted(lines: &[Value]) -> u64 {
        lines
            .iter()
            .map(|l| l.get("count").map_or(1, |c| c.as_u64().unwrap()))
            .sum()
    }

    #[test]
    fn the_first_refusal_is_written_at_once_and_repeats_make_one_summary() {
        let f = fixture();
        f.log.refused(peer([10, 0, 0, 1], 40_000), TIMED_OUT);
        let lines = f.lines();
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0]["kind"], "mtls_refused");
        assert_eq!(lines[0]["peer"], "10.0.0.1:40000");
        assert_eq!(lines[0]["reason"], TIMED_OUT);
        assert!(lines[0].get("count").is_none());

        for port in 40_001..40_005 {
            f.log.refused(peer([10, 0, 0, 1], port), TIMED_OUT);
        }
        f.clock.advance(INTERVAL - Duration::from_millis(1));
        f.log.flush_due();
        assert_eq!(
            f.lines().len(),
            1,
            "repeats within the interval are only counted"
        );
        f.clock.advance(Duration::from_millis(1));
        f.log.flush_due();
        let lines = f.lines();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1]["kind"], "mtls_refused");
        assert_eq!(lines[1]["peer"], "10.0.0.1");
        assert_eq!(lines[1]["reason"], TIMED_OUT);
        assert_eq!(lines[1]["count"], 4);

        f.end_interval();
        assert_eq!(f.lines().len(), 2, "a quiet interval writes nothing");
        f.log.refused(peer([10, 0, 0, 1], 40_009), TIMED_OUT);
        assert_eq!(
            f.lines().len(),
            3,
            "the next interval's first refusal is written at once"
        );
        assert_eq!(accounted(&f.lines()), 6);
    }

    #[test]
    fn each_network_and_reason_has_its_own_first_line() {
        let f = fixture();
        f.log.refused(peer([10, 0, 0, 1], 1), "a");
        f.log.refused(peer([10, 0, 0, 1], 2), "b");
        f.log.refused(peer([10, 0, 0, 2], 3), "a");
        let v6 = |ip: &str| SocketAddr::new(ip.parse().unwrap(), 443);
        f.log.refused(v6("2001:db8::1"), "a");
        f.log.refused(v6("2001:db8::2"), "a");
        assert_eq!(f.lines().len(), 4, "2001:db8::2 is in 2001:db8::1's /64");
        f.end_interval();
        let lines = f.lines();
        assert_eq!(lines.len(), 5);
        assert_eq!(lines[4]["peer"], "2001:db8::/64");
        assert_eq!(lines[4]["count"], 1);
    }

    #[test]
    fn a_flood_from_many_networks_writes_a_bounded_number_of_lines_and_counts_every_refusal() {
        let f = fixture();
        let networks = flood::MAX_KEYS as u32 + 500;
        let mut sent = 0u64;
        for round in 0..3u16 {
            for n in 0..networks {
                let ip = Ipv4Addr::from(0x0a00_0000 + n);
                f.log
                    .refused(SocketAddr::from((ip, 1000 + round)), TIMED_OUT);
                sent += 1;
            }
        }
        assert_eq!(f.lines().len(), flood::FIRST_LINES);
        assert_eq!(f.log.lock().pairs(), flood::MAX_KEYS, "memory is bounded");
        f.end_interval();
        let lines = f.lines();
        assert_eq!(lines.len(), flood::FIRST_LINES + flood::SUMMARY_LINES + 1);
        assert_eq!(lines[lines.len() - 1]["peer"], "other");
        assert_eq!(accounted(&lines), sent);
    }
}
