//! Per-machine request rate limit (`limits.requests_per_machine_per_minute`): one GCRA bucket
//! per machine id (governor's keyed limiter) whose burst is a whole minute's allowance, so a
//! 100,000-rule clean sync (about 100 pages) goes through in one go while a client hammering
//! the server gets 429 with `Retry-After`, which every Santa generation retries with back-off
//! (protocol reference §2.6). Checked before the body is read; buckets of machines not seen
//! for a while are dropped as the limiter goes.

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Checks between sweeps of idle buckets.
const SWEEP_EVERY: u64 = 4096;

/// Request budget per machine id.
pub struct MachineRateLimit {
    limiter: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
    checks: AtomicU64,
}

impl MachineRateLimit {
    /// A limit of `per_minute` requests per machine (burst: the same number); `None` for 0.
    pub fn new(per_minute: u32) -> Option<MachineRateLimit> {
        let n = NonZeroU32::new(per_minute)?;
        Some(MachineRateLimit {
            limiter: RateLimiter::keyed(Quota::per_minute(n)),
            clock: DefaultClock::default(),
            checks: AtomicU64::new(0),
        })
    }

    /// Takes one request from `machine_id`'s budget, or says how long until one is available.
    pub fn check(&self, machine_id: &str) -> Result<(), Duration> {
        if self.checks.fetch_add(1, Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.limiter.retain_recent();
        }
        self.limiter.check_key(&machine_id.to_owned()).map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_machine_gets_its_own_burst_then_waits() {
        let limit = MachineRateLimit::new(3).unwrap();
        for _ in 0..3 {
            limit.check("a").unwrap();
        }
        let wait = limit.check("a").unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(20), "{wait:?}");
        limit.check("b").unwrap();
        assert!(MachineRateLimit::new(0).is_none());
    }
}
