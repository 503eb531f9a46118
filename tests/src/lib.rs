//! Shared test suites: port contracts that every adapter must pass, and the helpers end-to-end
//! tests share (the mock provider server on a free port, a webhook receiver). The test binaries
//! in `tests/tests/` run them against each adapter; the `chorus` binary's tests in `cli/tests/`
//! use the helpers.

// Test support: a failed expectation should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod aws;
pub mod blob_store_contract;
pub mod provider_contract;
pub mod queue_contract;
pub mod rate_limiter_contract;
pub mod run_store_contract;
pub mod tenant_directory_contract;
pub mod webhook_receiver;
