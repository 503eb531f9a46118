//! Per-provider rate limits as a token bucket: pure arithmetic on a bucket and a time, so
//! the memory and DynamoDB rate limiters share one definition of "may this call go now"
//! and it is tested without I/O or a clock.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A provider's limit: up to `burst` calls at once, then `per_minute` calls a minute.
/// Read from the configuration file under each provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub per_minute: u32,
    pub burst: u32,
}

/// A bucket as stored: the tokens it held at `refilled_at_ms` (epoch milliseconds).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    pub tokens: f64,
    pub refilled_at_ms: i64,
}

/// The arithmetic counts in 1/60 000ths of a token: a limit of `n` a minute then refills
/// exactly `n` units a millisecond, so refills, takes and waits are whole numbers and
/// "after the wait, a token is there" holds exactly, with no float rounding either way.
const UNITS_PER_TOKEN: i64 = 60_000;

/// Refills `bucket` (absent: a new, full one) up to `now_ms` and takes one token: the
/// bucket to store, or how long until a token is there (nothing to store then).
///
/// A zero `burst` or `per_minute` counts as one: a limit that can never grant would block
/// the provider forever instead of limiting it. A clock behind the bucket's
/// `refilled_at_ms` (another machine's clock ran ahead) refills nothing and keeps the later
/// time, so skew between workers never adds tokens.
pub fn take(limit: RateLimit, bucket: Option<Bucket>, now_ms: i64) -> Result<Bucket, Duration> {
    let capacity = i64::from(limit.burst.max(1)) * UNITS_PER_TOKEN;
    let rate = i64::from(limit.per_minute.max(1));
    let (units, refilled_at_ms) = match bucket {
        None => (capacity, now_ms),
        Some(bucket) => {
            let elapsed_ms = now_ms.saturating_sub(bucket.refilled_at_ms).max(0);
            let units = to_units(bucket.tokens).saturating_add(elapsed_ms.saturating_mul(rate));
            // A lowered burst also caps a bucket that was fuller.
            (units.min(capacity), bucket.refilled_at_ms.max(now_ms))
        }
    };
    if units >= UNITS_PER_TOKEN {
        return Ok(Bucket { tokens: to_tokens(units - UNITS_PER_TOKEN), refilled_at_ms });
    }
    let missing = u64::try_from(UNITS_PER_TOKEN - units).unwrap_or(u64::MAX);
    let refill_ms = missing.div_ceil(rate.unsigned_abs());
    // The refill starts at the bucket's time, which a clock behind it has yet to reach.
    let ahead_ms = u64::try_from(refilled_at_ms.saturating_sub(now_ms)).unwrap_or(0);
    Err(Duration::from_millis(refill_ms.saturating_add(ahead_ms)))
}

/// Stored tokens are always whole units divided by [`UNITS_PER_TOKEN`]; rounding recovers
/// the units exactly. `as` saturates (NaN becomes 0), which suits a corrupt value.
fn to_units(tokens: f64) -> i64 {
    (tokens * UNITS_PER_TOKEN as f64).round() as i64
}

fn to_tokens(units: i64) -> f64 {
    units as f64 / UNITS_PER_TOKEN as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: RateLimit = RateLimit { per_minute: 60, burst: 3 };
    const T0: i64 = 1_700_000_000_000;

    /// Takes until the bucket says wait: the grants and the wait.
    fn drain(limit: RateLimit, mut bucket: Option<Bucket>, now_ms: i64) -> (u32, Duration, Option<Bucket>) {
        let mut granted = 0;
        loop {
            match take(limit, bucket, now_ms) {
                Ok(next) => {
                    granted += 1;
                    bucket = Some(next);
                }
                Err(wait) => return (granted, wait, bucket),
            }
        }
    }

    #[test]
    fn a_new_bucket_grants_its_burst_then_waits_for_one_refill() {
        let (granted, wait, bucket) = drain(LIMIT, None, T0);
        assert_eq!(granted, 3);
        assert_eq!(wait, Duration::from_secs(1));
        assert_eq!(bucket, Some(Bucket { tokens: 0.0, refilled_at_ms: T0 }));
    }

    #[test]
    fn exhaustion_waits_for_the_missing_fraction_of_a_token() {
        let limit = RateLimit { per_minute: 40, burst: 1 };
        let bucket = take(limit, None, T0).unwrap();
        // One token every 1.5 s; 0.5 s later a third of it is there.
        assert_eq!(take(limit, Some(bucket), T0 + 500), Err(Duration::from_millis(1000)));
        assert_eq!(take(limit, Some(bucket), T0 + 1499), Err(Duration::from_millis(1)));
        assert!(take(limit, Some(bucket), T0 + 1500).is_ok());
    }

    #[test]
    fn after_the_wait_a_token_is_there_whatever_the_fraction() {
        // Rates whose per-millisecond refill is not a round number in binary.
        for per_minute in [1, 7, 13, 59, 61, 600, 7000, 59_999] {
            let limit = RateLimit { per_minute, burst: 2 };
            let mut now = T0;
            let (_, mut wait, mut bucket) = drain(limit, None, now);
            for _ in 0..50 {
                let wait_ms = i64::try_from(wait.as_millis()).unwrap();
                assert!(take(limit, bucket, now + wait_ms - 1).is_err(), "{per_minute}/min: granted early");
                now += wait_ms;
                let (granted, _, refilled) = drain(limit, bucket, now);
                assert!(granted >= 1, "{per_minute}/min: nothing after the wait at {now}");
                // Come back a few milliseconds later, so the bucket holds fractions.
                now += 7;
                (_, wait, bucket) = drain(limit, refilled, now);
            }
        }
    }

    #[test]
    fn refill_is_proportional_to_time_and_capped_at_the_burst() {
        let empty = Some(Bucket { tokens: 0.0, refilled_at_ms: T0 });
        let half_minute = take(RateLimit { per_minute: 60, burst: 100 }, empty, T0 + 30_000).unwrap();
        assert_eq!(half_minute, Bucket { tokens: 29.0, refilled_at_ms: T0 + 30_000 });

        // An hour idle refills to the burst, not beyond.
        let (granted, _, _) = drain(LIMIT, empty, T0 + 3_600_000);
        assert_eq!(granted, 3);
    }

    #[test]
    fn a_lowered_burst_caps_a_fuller_bucket() {
        let full = Some(Bucket { tokens: 10.0, refilled_at_ms: T0 });
        let (granted, _, _) = drain(LIMIT, full, T0);
        assert_eq!(granted, 3);
    }

    #[test]
    fn a_clock_behind_the_bucket_refills_nothing_and_keeps_the_later_time() {
        let bucket = Some(Bucket { tokens: 1.5, refilled_at_ms: T0 });
        assert_eq!(take(LIMIT, bucket, T0 - 5_000), Ok(Bucket { tokens: 0.5, refilled_at_ms: T0 }));

        // Empty: the wait counts from the bucket's time, which this clock has yet to reach.
        let empty = Some(Bucket { tokens: 0.0, refilled_at_ms: T0 });
        assert_eq!(take(LIMIT, empty, T0 - 5_000), Err(Duration::from_secs(6)));
    }

    #[test]
    fn zero_limits_count_as_one() {
        let limit = RateLimit { per_minute: 0, burst: 0 };
        let (granted, wait, _) = drain(limit, None, T0);
        assert_eq!((granted, wait), (1, Duration::from_secs(60)));
    }

    #[test]
    fn limits_read_from_configuration() {
        let limit: RateLimit = serde_json::from_str(r#"{"per_minute": 500, "burst": 20}"#).unwrap();
        assert_eq!(limit, RateLimit { per_minute: 500, burst: 20 });
        assert!(serde_json::from_str::<RateLimit>(r#"{"per_minute": 5, "burst": 1, "rpm": 3}"#).is_err());
    }
}
