//! The circuit breaker: after repeated failures in a row a provider is skipped for a
//! cool-down, so steps fall through to their fallbacks at once instead of each spending its
//! retries on an outage. State is per process (per warm Lambda), which is enough to stop a
//! worker hammering a provider that is down; it is not shared.
//!
//! Only failures that say something about the provider's health count (retryable ones:
//! timeouts, 5xx, overload, rate limits); a bad request is the caller's problem.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Failures in a row that open the circuit.
pub const DEFAULT_THRESHOLD: u32 = 5;
/// How long an open circuit skips the provider before letting one call through to test it.
pub const DEFAULT_COOL_DOWN: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub struct CircuitBreaker {
    threshold: u32,
    cool_down: Duration,
    circuits: Mutex<HashMap<String, Circuit>>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Circuit {
    failures: u32,
    open_until: Option<Instant>,
}

impl Default for CircuitBreaker {
    fn default() -> Self {
        Self::new(DEFAULT_THRESHOLD, DEFAULT_COOL_DOWN)
    }
}

impl CircuitBreaker {
    pub fn new(threshold: u32, cool_down: Duration) -> Self {
        Self { threshold: threshold.max(1), cool_down, circuits: Mutex::default() }
    }

    /// `Err(remaining cool-down)` while `provider`'s circuit is open. Once the cool-down is
    /// over one call goes through; its outcome closes or reopens the circuit.
    pub fn check(&self, provider: &str) -> Result<(), Duration> {
        let circuits = self.circuits.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let open_until = circuits.get(provider).and_then(|c| c.open_until);
        match open_until {
            Some(until) if until > Instant::now() => Err(until - Instant::now()),
            _ => Ok(()),
        }
    }

    /// Records a call's outcome: `healthy` for a success or a failure that is not the
    /// provider's fault.
    pub fn record(&self, provider: &str, healthy: bool) {
        let mut circuits = self.circuits.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let circuit = circuits.entry(provider.to_owned()).or_default();
        if healthy {
            *circuit = Circuit::default();
            return;
        }
        circuit.failures = circuit.failures.saturating_add(1);
        if circuit.failures >= self.threshold {
            circuit.open_until = Some(Instant::now() + self.cool_down);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn given_failures_in_a_row_when_the_threshold_is_hit_then_the_circuit_opens_for_the_cool_down() {
        let breaker = CircuitBreaker::new(3, Duration::from_secs(30));
        breaker.record("openai", false);
        breaker.record("openai", false);
        assert_eq!(breaker.check("openai"), Ok(()));
        breaker.record("openai", false);
        assert_eq!(breaker.check("openai"), Err(Duration::from_secs(30)));
        assert_eq!(breaker.check("cohere"), Ok(()), "circuits are per provider");

        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(breaker.check("openai"), Ok(()), "one trial call after the cool-down");
        breaker.record("openai", false);
        assert!(breaker.check("openai").is_err(), "a failed trial reopens at once");

        tokio::time::advance(Duration::from_secs(30)).await;
        breaker.record("openai", true);
        breaker.record("openai", false);
        assert_eq!(breaker.check("openai"), Ok(()), "a success resets the count");
    }
}
