//! The `RateLimit-Policy` and `RateLimit` response headers, in the structured-field form of
//! draft-ietf-httpapi-ratelimit-headers-08: one list item per budget, `"burst"` (the plan's
//! GCRA: `q` requests per `w` seconds, the time a drained bucket takes to refill) and, when
//! the plan has one, `"daily"` (the UTC-day quota). `r` is what is left, `t` the seconds until
//! the budget is whole again (burst) or starts over (daily).

use std::time::Duration;

use crate::policy::model::Plan;

/// What one answer reports of a principal's budgets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Report {
    pub(crate) burst: u32,
    pub(crate) refill_secs: u64,
    /// `None`: the request was refused before its burst state was known.
    pub(crate) burst_left: Option<(u32, u64)>,
    pub(crate) daily: Option<Daily>,
}

/// The daily budget of a plan that has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Daily {
    pub(crate) quota: u64,
    /// `None`: not counted for this request (it was refused by the burst limit).
    pub(crate) left: Option<u64>,
    pub(crate) reset_secs: u64,
}

impl Report {
    pub(crate) fn new(plan: &Plan) -> Self {
        let rate = u64::from(plan.rate_per_sec.max(1));
        Self {
            burst: plan.burst,
            refill_secs: u64::from(plan.burst).div_ceil(rate).max(1),
            burst_left: None,
            daily: None,
        }
    }

    pub(crate) fn headers(&self) -> Vec<(&'static str, String)> {
        use std::fmt::Write as _;
        // Written into one buffer each: this runs on every request of a limited principal.
        let mut policy = String::with_capacity(48);
        let _ = write!(policy, "\"burst\";q={};w={}", self.burst, self.refill_secs);
        let mut now = String::new();
        if let Some((left, reset)) = self.burst_left {
            let _ = write!(now, "\"burst\";r={left};t={reset}");
        }
        if let Some(daily) = &self.daily {
            let _ = write!(policy, ", \"daily\";q={};w=86400", daily.quota);
            if let Some(left) = daily.left {
                let sep = if now.is_empty() { "" } else { ", " };
                let _ = write!(now, "{sep}\"daily\";r={left};t={}", daily.reset_secs);
            }
        }
        let mut headers = vec![("ratelimit-policy", policy)];
        if !now.is_empty() {
            headers.push(("ratelimit", now));
        }
        headers
    }
}

/// Whole seconds, rounded up: a client told to wait 0 s would retry at once.
pub(crate) fn ceil_secs(d: Duration) -> u64 {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(rate_per_sec: u32, burst: u32, daily_quota: u64) -> Plan {
        Plan {
            name: "p".into(),
            rate_per_sec,
            burst,
            daily_quota,
        }
    }

    #[test]
    fn burst_only() {
        let mut r = Report::new(&plan(2, 3, 0));
        r.burst_left = Some((2, 1));
        assert_eq!(
            r.headers(),
            vec![
                ("ratelimit-policy", "\"burst\";q=3;w=2".to_owned()),
                ("ratelimit", "\"burst\";r=2;t=1".to_owned()),
            ]
        );
    }

    #[test]
    fn burst_and_daily() {
        let mut r = Report::new(&plan(10, 20, 1000));
        r.burst_left = Some((19, 1));
        r.daily = Some(Daily {
            quota: 1000,
            left: Some(998),
            reset_secs: 3600,
        });
        assert_eq!(
            r.headers(),
            vec![
                (
                    "ratelimit-policy",
                    "\"burst\";q=20;w=2, \"daily\";q=1000;w=86400".to_owned()
                ),
                (
                    "ratelimit",
                    "\"burst\";r=19;t=1, \"daily\";r=998;t=3600".to_owned()
                ),
            ]
        );
    }

    #[test]
    fn waits_round_up_to_a_whole_second() {
        assert_eq!(ceil_secs(Duration::ZERO), 1);
        assert_eq!(ceil_secs(Duration::from_millis(500)), 1);
        assert_eq!(ceil_secs(Duration::from_secs(2)), 2);
        assert_eq!(ceil_secs(Duration::from_millis(2_001)), 3);
    }
}
