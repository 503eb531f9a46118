//! Property tests of the definition parser, validation and templates: generated workflows
//! (sound ones, and ones wrong in any member) and templates from a small grammar of minijinja,
//! checked for panics, hangs and broken invariants. `strategies` holds the generators, which
//! the HTTP properties (`crate::http::tests::properties`) share.
//!
//! Each property runs a few dozen to a few hundred cases, so `make test` stays fast;
//! `PROPTEST_CASES` sets another count for all of them (`make fuzz`). A failure is shrunk to
//! a small input, printed, and its seed saved under `shared/proptest-regressions/`, which is
//! committed: every later run tries the saved seeds first.

pub mod strategies;
mod templates;
mod validation;

use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::Duration;

use proptest::test_runner::{Config, TestCaseError};

/// Far beyond what any case takes (milliseconds): only a hang gets near it. A hang
/// detector, not a speed test.
const HANG: Duration = Duration::from_secs(30);

/// The stack a case runs on: tokio's worker threads' default, where the engine renders
/// templates and validates in production, so a case that needs more fails here too.
const STACK_BYTES: usize = 2 * 1024 * 1024;

/// A property's configuration: `cases` unless `PROPTEST_CASES` says otherwise (the
/// `proptest!` macro applies the environment over this). Shrinking a failure stops after two
/// minutes, since shrinking a hang costs [`HANG`] per try.
pub fn config(cases: u32) -> Config {
    Config { cases, max_shrink_time: 120_000, ..Config::default() }
}

/// Runs `work` on a thread of its own and waits at most [`HANG`] for it. A panic in `work`
/// is raised again here, so proptest reports and shrinks it like any other; a hang fails the
/// case (its thread is left running: nothing can stop it).
pub fn finishes<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, TestCaseError> {
    let (sender, receiver) = mpsc::channel();
    let worker = thread::Builder::new()
        .stack_size(STACK_BYTES)
        .spawn(move || {
            // The receiver is gone only after a timeout, which has already failed the case.
            let _ = sender.send(work());
        })
        .map_err(|err| TestCaseError::fail(format!("could not start a thread: {err}")))?;
    match receiver.recv_timeout(HANG) {
        Ok(value) => {
            let _ = worker.join();
            Ok(value)
        }
        Err(RecvTimeoutError::Timeout) => Err(TestCaseError::fail(format!("still running after {HANG:?}: a hang"))),
        Err(RecvTimeoutError::Disconnected) => match worker.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => Err(TestCaseError::fail("the worker thread ended without an answer")),
        },
    }
}
