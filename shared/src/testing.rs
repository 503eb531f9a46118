//! The test kit: the embedded backends, a clock tests move by hand, and engine parts with
//! defaults, so a test states only what it changes (`EngineParts { router, ..kit.engine_parts() }`).
//! For tests, in this crate and others; nothing in production uses it.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::engine::{Engine, EngineParts};
use crate::ports::Clock;
use crate::startup::{Embedded, EmbeddedOptions, default_router};
use crate::webhooks::DestinationPolicy;

/// A clock that stands still until told to move.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<jiff::Timestamp>,
}

impl ManualClock {
    /// A clock reading `start`.
    pub fn at(start: jiff::Timestamp) -> Self {
        Self { now: Mutex::new(start) }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(PoisonError::into_inner);
        *now = now.checked_add(by).unwrap_or(jiff::Timestamp::MAX);
    }
}

impl Default for ManualClock {
    /// Starts at the wall clock's time, so ids and timestamps look like real ones.
    fn default() -> Self {
        Self::at(jiff::Timestamp::now())
    }
}

impl Clock for ManualClock {
    fn now(&self) -> jiff::Timestamp {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Embedded backends and a manual clock.
pub struct TestKit {
    pub backends: Embedded,
    pub clock: Arc<ManualClock>,
}

impl TestKit {
    pub fn new() -> Self {
        Self { backends: Embedded::new(), clock: Arc::new(ManualClock::default()) }
    }

    /// Engine parts over the kit: the offline `local` provider with the built-in routes,
    /// notification URLs allowed on loopback, default limits.
    pub fn engine_parts(&self) -> EngineParts {
        self.backends.engine_parts(EmbeddedOptions {
            router: Arc::new(default_router()),
            clock: self.clock.clone(),
            destinations: DestinationPolicy::local_development(),
            public_url: None,
            quota: None,
        })
    }

    /// An engine with [`Self::engine_parts`].
    pub fn engine(&self) -> Engine {
        Engine::new(self.engine_parts())
    }
}

impl Default for TestKit {
    fn default() -> Self {
        Self::new()
    }
}
