//! Shared test suites: port contracts that every adapter must pass, and the helpers end-to-end
//! tests share (the mock provider server on a free port, a webhook receiver, waiting with a
//! deadline). The test binaries in `tests/tests/` run the contracts against each adapter; the
//! `chorus` binary's tests in `cli/tests/` use the helpers.
//!
//! Each contract module holds its clauses, written once as `pub async fn`s that take a fresh
//! adapter, and a macro (`run_store_contract!`, `queue_contract!`, ...) that turns them into
//! one `#[tokio::test]` per clause for one adapter: `memory_run_store::creates_and_reads_back`,
//! so a report names the clause that broke and one broken clause hides no other.

// Test support: a failed expectation should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod aws;
pub mod blob_store_contract;
pub mod poll;
pub mod provider_contract;
pub mod queue_contract;
pub mod rate_limiter_contract;
pub mod run_store_contract;
pub mod tenant_directory_contract;
pub mod webhook_receiver;
pub mod workflow_registry_contract;

/// What the contract macros expand to: `mod $adapter` with one test per clause, each calling
/// `$crate::$contract::$clause($make().await)`, so every test gets an adapter (and resources)
/// of its own. `$test` is the test attribute (a runtime flavour), `$attrs` go on every test
/// (`#[ignore = "..."]`). Not for direct use: each contract's macro lists its clauses.
#[doc(hidden)]
#[macro_export]
macro_rules! contract_tests {
    ($contract:ident, $test:tt, $adapter:ident, $make:path, $attrs:tt, [$($clause:ident),+ $(,)?]) => {
        mod $adapter {
            // The factory, and whatever it names, live in the file that invokes the macro.
            #[allow(unused_imports)]
            use super::*;

            $( $crate::contract_test!($contract, $test, $make, $attrs, $clause); )+
        }
    };
}

/// One clause's test; see [`contract_tests!`].
#[doc(hidden)]
#[macro_export]
macro_rules! contract_test {
    ($contract:ident, [$($test:tt)*], $make:path, [$($attr:tt)*], $clause:ident) => {
        #[$($test)*]
        $($attr)*
        async fn $clause() {
            $crate::$contract::$clause($make().await).await;
        }
    };
}
