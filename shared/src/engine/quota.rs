//! Fair sharing between tenants. Every tenant has two token buckets in the shared rate
//! limiter (DynamoDB on AWS, memory in `chorus dev`), so one tenant's flood slows that
//! tenant only:
//! - **API requests**: each authenticated request takes a token from `tenant:<id>:api`; with
//!   none left the client gets a 429 with `Retry-After` and the `RateLimit` headers. The
//!   tenant record may set its own limit; otherwise the deployment's default applies.
//! - **Step starts**: the worker takes a token from `tenant:<id>:steps` before it claims a
//!   step; with none left the step's message goes back on the queue, delayed until a token
//!   is due, without being claimed. A tenant that queues 10,000 steps therefore runs them at
//!   its own pace, and the worker's concurrency and the providers' buckets stay free for the
//!   others' steps in between.
//!
//! A limiter that cannot be reached lets the work through: these are fairness guards, and
//! an outage of the limiter must not become an outage of the service.

use std::sync::Arc;
use std::time::Duration;

use crate::domain::{RateLimit, TenantId};
use crate::ports::{Acquired, RateLimiter};

/// API requests a tenant may make by default: 600 a minute after a burst of 100.
pub const DEFAULT_REQUEST_LIMIT: RateLimit = RateLimit { per_minute: 600, burst: 100 };
/// Steps a tenant may start by default: 1,200 a minute after a burst of 200.
pub const DEFAULT_STEP_LIMIT: RateLimit = RateLimit { per_minute: 1200, burst: 200 };

/// The deployment's per-tenant limits and the limiter that keeps their buckets.
#[derive(Clone)]
pub struct TenantQuota {
    pub limiter: Arc<dyn RateLimiter>,
    /// For tenants whose record sets no request limit of its own.
    pub requests: RateLimit,
    pub steps: RateLimit,
}

impl std::fmt::Debug for TenantQuota {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantQuota").field("requests", &self.requests).field("steps", &self.steps).finish()
    }
}

/// A request that must wait: how long, and the limit that applied (for the headers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    pub retry_after: Duration,
    pub limit: RateLimit,
}

/// Reads a limit written `PER_MINUTE/BURST` (`600/100`), as the configuration takes it.
pub fn parse_limit(text: &str) -> Result<RateLimit, String> {
    let parsed = text.trim().split_once('/').and_then(|(per_minute, burst)| {
        Some(RateLimit { per_minute: per_minute.trim().parse().ok()?, burst: burst.trim().parse().ok()? })
    });
    parsed
        .filter(|limit| limit.per_minute > 0 && limit.burst > 0)
        .ok_or_else(|| format!("`{text}` is not PER_MINUTE/BURST with both above zero, e.g. 600/100"))
}

impl TenantQuota {
    pub fn new(limiter: Arc<dyn RateLimiter>) -> Self {
        Self { limiter, requests: DEFAULT_REQUEST_LIMIT, steps: DEFAULT_STEP_LIMIT }
    }

    /// Takes a request token for `tenant` (its own limit if it has one).
    pub async fn admit_request(&self, tenant: &TenantId, own: Option<RateLimit>) -> Result<RateLimit, Throttled> {
        let limit = own.unwrap_or(self.requests);
        self.take(&format!("tenant:{tenant}:api"), limit).await.map(|()| limit)
    }

    /// Takes a step-start token for `tenant`.
    pub async fn admit_step(&self, tenant: &TenantId) -> Result<(), Throttled> {
        self.take(&format!("tenant:{tenant}:steps"), self.steps).await
    }

    async fn take(&self, scope: &str, limit: RateLimit) -> Result<(), Throttled> {
        match self.limiter.acquire(scope, limit).await {
            Ok(Acquired::Granted) => Ok(()),
            Ok(Acquired::Wait(retry_after)) => Err(Throttled { retry_after, limit }),
            Err(err) => {
                tracing::warn!(%scope, error = %err, "tenant limiter unavailable; letting the work through");
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::MemoryRateLimiter;
    use crate::testing::ManualClock;

    #[test]
    fn limits_read_as_per_minute_slash_burst() {
        assert_eq!(parse_limit(" 600/100 "), Ok(RateLimit { per_minute: 600, burst: 100 }));
        for bad in ["600", "0/10", "10/0", "a/b", "600/100/1"] {
            assert!(parse_limit(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn each_tenant_has_its_own_bucket_and_its_own_limit_overrides_the_default() {
        let clock = Arc::new(ManualClock::default());
        let quota = TenantQuota {
            requests: RateLimit { per_minute: 60, burst: 2 },
            ..TenantQuota::new(Arc::new(MemoryRateLimiter::new(clock)))
        };
        let (flood, calm) = (TenantId::parse("flood").unwrap(), TenantId::parse("calm").unwrap());
        assert!(quota.admit_request(&flood, None).await.is_ok());
        assert!(quota.admit_request(&flood, None).await.is_ok());
        let throttled = quota.admit_request(&flood, None).await.unwrap_err();
        assert_eq!(throttled.retry_after, Duration::from_secs(1));
        assert!(quota.admit_request(&calm, None).await.is_ok(), "another tenant is not slowed");
        let big = TenantId::parse("big").unwrap();
        let own = RateLimit { per_minute: 600, burst: 10 };
        for _ in 0..10 {
            assert_eq!(quota.admit_request(&big, Some(own)).await, Ok(own), "a bigger bucket of its own");
        }
        assert!(quota.admit_request(&big, Some(own)).await.is_err());
    }
}
