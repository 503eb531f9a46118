//! The models every entry point offers today: the offline `local` provider, so every
//! workflow runs without keys or network. No routes are configured: with one local model
//! per task, a route name would only be a second spelling of that model.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{LocalProvider, PriceTable, ProviderRouter, RetryPolicy};

/// The router `chorus dev`, `chorus validate` and the Lambda functions run steps with.
pub fn default_router() -> ProviderRouter {
    ProviderRouter::new(
        vec![Arc::new(LocalProvider::new())],
        BTreeMap::new(),
        RetryPolicy::default(),
        // Local models are free.
        PriceTable::default(),
    )
}
