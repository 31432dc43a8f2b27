//! The limits shared by several gateways through Redis: one Lua script (run by `EVALSHA`,
//! loaded on first use) does the plan's GCRA on `rl:<principal>` exactly as governor computes
//! it in process, then, if the request passes, counts it in `q:<principal>:<yyyy-mm-dd>`
//! (`INCR`, with `EXPIRE` of two days on the day's first request) — atomically, one round
//! trip. Time is the caller's clock in microseconds (Unix time in production; gateways'
//! clocks agree to NTP precision, far finer than any plan's interval).

use std::time::Duration;

use redis::Script;

use super::Outcome;
use super::local::{Rate, RateOutcome};
use super::quota::Day;
use crate::redis_conn::{RedisDown, SharedRedis};

/// KEYS: the GCRA state, the day's counter. ARGV: interval µs, burst, now µs, daily quota
/// (0: none), counter TTL s. Returns {allowed 0/1, retry µs, remaining, refill µs, count}.
/// Numbers written back go through `%.0f`: Lua's default formatting would turn a 16-digit
/// microsecond time into `1.7e+15`.
const GCRA_LUA: &str = r"
local t = tonumber(ARGV[1])
local tau = t * (tonumber(ARGV[2]) - 1)
local now = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if now < tat - tau then
  return {0, tat - tau - now, 0, tat - now, 0}
end
local next_tat = math.max(tat, now) + t
local ttl_ms = math.ceil((next_tat - now) / 1000)
redis.call('SET', KEYS[1], string.format('%.0f', next_tat), 'PX', string.format('%.0f', ttl_ms))
local remaining = math.floor(math.min(now + t + tau - next_tat, tau) / t)
local count = 0
if tonumber(ARGV[4]) > 0 then
  count = redis.call('INCR', KEYS[2])
  if count == 1 then redis.call('EXPIRE', KEYS[2], ARGV[5]) end
end
return {1, 0, remaining, next_tat - now, count}
";

/// A day's counter outlives its day by one, for clocks a little apart.
const QUOTA_TTL_SECS: u64 = 2 * 86_400;

pub(crate) struct SharedLimiter {
    redis: SharedRedis,
    script: Script,
}

impl SharedLimiter {
    pub(crate) fn new(redis: SharedRedis) -> Self {
        Self {
            redis,
            script: Script::new(GCRA_LUA),
        }
    }

    pub(crate) async fn check(
        &self,
        principal: &str,
        rate: Rate,
        daily_quota: u64,
        day: &Day,
        now_micros: i64,
    ) -> Result<Outcome, RedisDown> {
        let interval = u64::try_from(rate.interval().as_micros()).unwrap_or(u64::MAX);
        let mut call = self.script.prepare_invoke();
        call.key(format!("rl:{principal}"))
            .key(format!("q:{principal}:{}", day.date))
            .arg(interval.max(1))
            .arg(rate.burst.get())
            .arg(now_micros)
            .arg(daily_quota)
            .arg(QUOTA_TTL_SECS);
        let reply: Vec<i64> = self.redis.invoke(&call).await?;
        decode(&reply, daily_quota).ok_or(RedisDown::BadReply)
    }
}

fn decode(reply: &[i64], daily_quota: u64) -> Option<Outcome> {
    let &[allowed, retry, remaining, refill, count] = reply else {
        return None;
    };
    let micros = |v: i64| Duration::from_micros(v.max(0).unsigned_abs());
    let outcome = if allowed == 1 {
        let rate = RateOutcome::Allowed {
            remaining: u32::try_from(remaining.max(0)).unwrap_or(u32::MAX),
            refill: micros(refill),
        };
        let count = (daily_quota > 0).then(|| count.max(0).unsigned_abs());
        Outcome { rate, count }
    } else {
        let rate = RateOutcome::Limited {
            retry_after: micros(retry),
        };
        Outcome { rate, count: None }
    };
    Some(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_decode_into_outcomes() {
        let allowed = decode(&[1, 0, 4, 200_000, 7], 10).expect("shape");
        assert_eq!(
            allowed,
            Outcome {
                rate: RateOutcome::Allowed {
                    remaining: 4,
                    refill: Duration::from_millis(200),
                },
                count: Some(7),
            }
        );
        let limited = decode(&[0, 1_500_000, 0, 2_000_000, 0], 10).expect("shape");
        assert_eq!(
            limited.rate,
            RateOutcome::Limited {
                retry_after: Duration::from_millis(1_500)
            }
        );
        assert_eq!(limited.count, None);
        assert_eq!(
            decode(&[1, 0, 4, 200_000, 0], 0).expect("shape").count,
            None
        );
        assert_eq!(decode(&[1, 0], 0), None);
    }
}
