//! Faults the mock providers inject, and the book that decides when. A request fails when
//! its model is named `fault-<kind>` (stateless: the same model always fails the same way,
//! which the conformance suite uses), or when a fault was scripted for its provider with
//! `POST /_mock/faults` (the next `times` requests, which retry and failover tests use).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A failure a mock provider can produce, each rendered in that provider's own wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    /// 429 with `Retry-After` (and the provider's rate-limit headers).
    RateLimit,
    /// 500 with the provider's error body.
    ServerError,
    /// The provider's "busy" answer: 529 on Anthropic, 503 elsewhere; on Hugging Face, 503
    /// "model is loading" with `estimated_time`.
    Overloaded,
    /// Answers only after [`SLOW_DELAY`], past any sensible attempt timeout.
    Slow,
    /// 200 with a body that is not JSON.
    Malformed,
    /// The provider's "out of credit" error (OpenAI `insufficient_quota`, …).
    Quota,
    /// 401 with the provider's error body.
    Auth,
    /// 400 with the provider's error body.
    BadRequest,
    /// The provider's content-policy refusal.
    ContentFilter,
}

/// How long a `slow` fault makes the client wait.
pub const SLOW_DELAY: Duration = Duration::from_secs(5);

/// What a rate-limited answer asks the client to wait, in seconds.
pub const RETRY_AFTER_SECS: u64 = 1;

impl Fault {
    pub const ALL: [Fault; 9] = [
        Fault::RateLimit,
        Fault::ServerError,
        Fault::Overloaded,
        Fault::Slow,
        Fault::Malformed,
        Fault::Quota,
        Fault::Auth,
        Fault::BadRequest,
        Fault::ContentFilter,
    ];

    /// The kebab-case name used in `fault-<name>` models and the control API.
    pub fn name(self) -> &'static str {
        match self {
            Fault::RateLimit => "rate-limit",
            Fault::ServerError => "server-error",
            Fault::Overloaded => "overloaded",
            Fault::Slow => "slow",
            Fault::Malformed => "malformed",
            Fault::Quota => "quota",
            Fault::Auth => "auth",
            Fault::BadRequest => "bad-request",
            Fault::ContentFilter => "content-filter",
        }
    }

    /// The fault a model name asks for: `fault-rate-limit` → `RateLimit`.
    pub fn from_model(model: &str) -> Option<Fault> {
        let name = model.rsplit('/').next()?.strip_prefix("fault-")?;
        Fault::ALL.into_iter().find(|fault| fault.name() == name)
    }
}

/// A fault scripted for the next `times` requests to `provider`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Script {
    pub fault: Fault,
    #[serde(default = "one")]
    pub times: u32,
}

fn one() -> u32 {
    1
}

/// Scripted faults per provider, and how many requests each provider saw.
#[derive(Debug, Default)]
pub struct FaultBook {
    inner: Mutex<Book>,
}

#[derive(Debug, Default)]
struct Book {
    scripts: BTreeMap<String, VecDeque<Script>>,
    requests: BTreeMap<String, u64>,
}

impl FaultBook {
    /// Counts a request to `provider` for `model` and says which fault, if any, it gets.
    pub fn take(&self, provider: &str, model: &str) -> Option<Fault> {
        let mut book = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *book.requests.entry(provider.to_owned()).or_default() += 1;
        if let Some(fault) = Fault::from_model(model) {
            return Some(fault);
        }
        let queue = book.scripts.get_mut(provider)?;
        let script = queue.front_mut()?;
        let fault = script.fault;
        script.times = script.times.saturating_sub(1);
        if script.times == 0 {
            queue.pop_front();
        }
        Some(fault)
    }

    /// Queues `script` after any already queued for `provider`.
    pub fn push(&self, provider: &str, script: Script) {
        let mut book = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        book.scripts.entry(provider.to_owned()).or_default().push_back(script);
    }

    /// Forgets every script and count.
    pub fn clear(&self) {
        let mut book = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *book = Book::default();
    }

    /// Requests seen per provider.
    pub fn requests(&self) -> BTreeMap<String, u64> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner).requests.clone()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn given_fault_models_and_scripts_when_taken_then_models_win_and_scripts_run_out() {
        let book = FaultBook::default();
        assert_eq!(book.take("openai", "fault-rate-limit"), Some(Fault::RateLimit));
        assert_eq!(book.take("openai", "org/fault-slow"), Some(Fault::Slow));
        book.push("openai", Script { fault: Fault::ServerError, times: 2 });
        assert_eq!(book.take("cohere", "command-r"), None);
        assert_eq!(book.take("openai", "gpt-4o-mini"), Some(Fault::ServerError));
        assert_eq!(book.take("openai", "gpt-4o-mini"), Some(Fault::ServerError));
        assert_eq!(book.take("openai", "gpt-4o-mini"), None);
        assert_eq!(book.requests()["openai"], 5);
        book.clear();
        assert!(book.requests().is_empty());
    }
}
