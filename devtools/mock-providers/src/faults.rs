//! Faults the mock providers inject, and the book that decides when. A request fails when
//! its model is named `fault-<kind>` (stateless: the same model always fails the same way,
//! which the conformance suite uses), when a fault was scripted for its provider with
//! `POST /_mock/faults` (the next `times` requests, which retry and failover tests use), or
//! at random, when a rate was set for its provider (a share of all requests, drawn from a
//! list of kinds, until turned off: what the chaos soak uses). The book also counts requests
//! and the faults it handed out, per provider.

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
#[serde(deny_unknown_fields)]
pub struct Script {
    pub fault: Fault,
    #[serde(default = "one")]
    pub times: u32,
}

fn one() -> u32 {
    1
}

/// Faults for a share of a provider's requests, each drawn uniformly from `kinds`, until
/// replaced or turned off (`rate` 0). Set under the provider name `*`, they apply to every
/// provider that has none of its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandomFaults {
    /// The share of requests that fail, from 0 to 1.
    pub rate: f64,
    /// The faults to draw from (default [`RandomFaults::DEFAULT_KINDS`]).
    #[serde(default = "default_kinds")]
    pub kinds: Vec<Fault>,
}

impl RandomFaults {
    /// A provider's bad day: what a client must retry or fail over from.
    pub const DEFAULT_KINDS: [Fault; 5] =
        [Fault::ServerError, Fault::RateLimit, Fault::Overloaded, Fault::Slow, Fault::Malformed];

    /// Why these settings cannot be used, if they cannot.
    pub fn problem(&self) -> Option<&'static str> {
        if !(0.0..=1.0).contains(&self.rate) {
            Some("rate must be a number from 0 to 1")
        } else if self.kinds.is_empty() {
            Some("kinds must name at least one fault")
        } else {
            None
        }
    }
}

fn default_kinds() -> Vec<Fault> {
    RandomFaults::DEFAULT_KINDS.to_vec()
}

/// The provider name whose random faults apply to every provider without its own.
pub const ANY_PROVIDER: &str = "*";

/// What the book has seen: requests per provider, and the faults it handed out per provider
/// and kind (whatever asked for them: model name, script or dice).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub requests: BTreeMap<String, u64>,
    pub faults: BTreeMap<String, BTreeMap<String, u64>>,
}

/// Scripted and random faults per provider, and what each provider saw.
#[derive(Debug, Default)]
pub struct FaultBook {
    inner: Mutex<Book>,
}

#[derive(Debug, Default)]
struct Book {
    scripts: BTreeMap<String, VecDeque<Script>>,
    random: BTreeMap<String, RandomFaults>,
    stats: Stats,
}

impl Book {
    fn choose(&mut self, provider: &str, model: &str) -> Option<Fault> {
        if let Some(fault) = Fault::from_model(model) {
            return Some(fault);
        }
        if let Some(queue) = self.scripts.get_mut(provider)
            && let Some(script) = queue.front_mut()
        {
            let fault = script.fault;
            script.times = script.times.saturating_sub(1);
            if script.times == 0 {
                queue.pop_front();
            }
            return Some(fault);
        }
        let random = self.random.get(provider).or_else(|| self.random.get(ANY_PROVIDER))?;
        if rand::random::<f64>() >= random.rate {
            return None;
        }
        random.kinds.get(rand::random_range(0..random.kinds.len())).copied()
    }
}

impl FaultBook {
    /// Counts a request to `provider` for `model` and says which fault, if any, it gets.
    pub fn take(&self, provider: &str, model: &str) -> Option<Fault> {
        let mut book = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *book.stats.requests.entry(provider.to_owned()).or_default() += 1;
        let fault = book.choose(provider, model)?;
        let by_kind = book.stats.faults.entry(provider.to_owned()).or_default();
        *by_kind.entry(fault.name().to_owned()).or_default() += 1;
        Some(fault)
    }

    /// Fails a share of `provider`'s requests from now on (`*`: every provider without
    /// settings of its own); a rate of 0 turns it off.
    pub fn set_random(&self, provider: &str, random: RandomFaults) {
        let mut book = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if random.rate == 0.0 {
            book.random.remove(provider);
        } else {
            book.random.insert(provider.to_owned(), random);
        }
    }

    /// Queues `script` after any already queued for `provider`.
    pub fn push(&self, provider: &str, script: Script) {
        let mut book = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        book.scripts.entry(provider.to_owned()).or_default().push_back(script);
    }

    /// Forgets every script, random setting and count.
    pub fn clear(&self) {
        let mut book = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *book = Book::default();
    }

    /// Requests seen per provider.
    pub fn requests(&self) -> BTreeMap<String, u64> {
        self.stats().requests
    }

    /// Requests and faults handed out, per provider.
    pub fn stats(&self) -> Stats {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner).stats.clone()
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
        let faults = &book.stats().faults["openai"];
        assert_eq!((faults["rate-limit"], faults["slow"], faults["server-error"]), (1, 1, 2));
        book.clear();
        assert!(book.requests().is_empty());
        assert!(book.stats().faults.is_empty());
    }

    #[test]
    fn given_a_random_rate_when_many_requests_come_then_about_that_share_fails_with_the_kinds_asked() {
        let book = FaultBook::default();
        book.set_random(ANY_PROVIDER, RandomFaults { rate: 0.3, kinds: vec![Fault::ServerError, Fault::Slow] });
        book.set_random("cohere", RandomFaults { rate: 1.0, kinds: vec![Fault::Overloaded] });
        let failed = (0..2000).filter(|_| book.take("openai", "gpt-4o-mini").is_some()).count();
        assert!((450..750).contains(&failed), "{failed} of 2000 at 30%");
        let faults = &book.stats().faults["openai"];
        assert_eq!(faults.keys().map(String::as_str).collect::<Vec<_>>(), ["server-error", "slow"]);
        assert_eq!(faults.values().sum::<u64>(), failed as u64);
        // A provider's own setting wins over `*`; a rate of 0 turns it off.
        assert_eq!(book.take("cohere", "command-r"), Some(Fault::Overloaded));
        book.set_random("cohere", RandomFaults { rate: 0.0, kinds: vec![Fault::Overloaded] });
        book.set_random(ANY_PROVIDER, RandomFaults { rate: 0.0, kinds: vec![] });
        assert!((0..100).all(|_| book.take("cohere", "command-r").is_none()));
    }

    #[test]
    fn random_settings_parse_with_default_kinds_and_unusable_ones_say_why() {
        let random: RandomFaults = serde_json::from_str(r#"{"rate": 0.2}"#).unwrap();
        assert_eq!(random.kinds, RandomFaults::DEFAULT_KINDS);
        assert_eq!(random.problem(), None);
        assert!(RandomFaults { rate: 1.5, kinds: vec![Fault::Slow] }.problem().is_some());
        assert!(RandomFaults { rate: 0.5, kinds: vec![] }.problem().is_some());
        assert!(serde_json::from_str::<RandomFaults>(r#"{"rate": 0.2, "times": 3}"#).is_err());
    }
}
