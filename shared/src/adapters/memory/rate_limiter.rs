//! [`RateLimiter`] for one process: a token bucket per scope under one mutex, with the same
//! arithmetic as the DynamoDB limiter.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::poisoned;
use crate::domain::{Bucket, RateLimit, rate};
use crate::ports::{Acquired, Clock, PortError, RateLimiter};

/// [`RateLimiter`](RateLimiter) for one process (`chorus dev`, tests): a
/// bucket per scope under one mutex, with the same arithmetic as the DynamoDB limiter.
pub struct MemoryRateLimiter {
    clock: Arc<dyn Clock>,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl MemoryRateLimiter {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self { clock, buckets: Mutex::default() }
    }
}

#[async_trait]
impl RateLimiter for MemoryRateLimiter {
    async fn acquire(&self, scope: &str, limit: RateLimit) -> Result<Acquired, PortError> {
        let now_ms = self.clock.now().as_millisecond();
        let mut buckets = self.buckets.lock().map_err(|_| poisoned("memory rate limiter"))?;
        match rate::take(limit, buckets.get(scope).copied(), now_ms) {
            Ok(bucket) => {
                buckets.insert(scope.to_owned(), bucket);
                Ok(Acquired::Granted)
            }
            Err(wait) => Ok(Acquired::Wait(wait)),
        }
    }
}
