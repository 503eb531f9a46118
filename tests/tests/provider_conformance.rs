//! Every provider adapter against the mock provider server, through the one contract in
//! `chorus_tests::provider_contract`: each task, each fault mapped onto the taxonomy, the
//! retry and fallback decisions that follow, usage and cost recorded.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chorus_tests::provider_contract::{MockServer, ProviderCase, check_provider, usual_faults};
