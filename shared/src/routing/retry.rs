//! When to try a model again: exponential backoff with full jitter, or the provider's own
//! `Retry-After`, and which waits are short enough to sleep through in process.

use std::time::Duration;

use crate::providers::ProviderError;

/// How long to wait between retries of one model, and which waits happen in process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The cap of the first backoff; it doubles with each retry.
    pub base_delay: Duration,
    /// No backoff is longer (a provider's `Retry-After` may be).
    pub max_delay: Duration,
    /// Waits up to this long are slept in process; longer ones re-enqueue the step.
    pub max_inline_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(60),
            max_inline_wait: Duration::from_secs(5),
        }
    }
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Move {
    /// Try the same model again after this long.
    RetryAfter(Duration),
    /// Give up on this model.
    NextCandidate,
}

/// The retry decision after attempt `attempt` (0-based) of a model allowed `retries` retries
/// failed with `error`. `jitter` in `[0, 1]` picks the backoff within its window (full jitter:
/// anywhere from zero to `min(max_delay, base_delay × 2^attempt)`); a provider's
/// `retry_after` replaces the backoff.
pub(super) fn next_move(error: &ProviderError, attempt: u32, retries: u32, policy: &RetryPolicy, jitter: f64) -> Move {
    if !error.is_retryable() || attempt >= retries {
        return Move::NextCandidate;
    }
    if let Some(wait) = error.retry_after() {
        return Move::RetryAfter(wait);
    }
    let factor = 2_u32.checked_pow(attempt).unwrap_or(u32::MAX);
    let window = policy.base_delay.saturating_mul(factor).min(policy.max_delay);
    Move::RetryAfter(window.mul_f64(jitter.clamp(0.0, 1.0)))
}
