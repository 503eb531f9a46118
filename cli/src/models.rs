//! The models `chorus dev` offers: the offline `local` provider and nothing else, so every
//! workflow runs without keys or network. No routes are configured: with one local model
//! per task, a route name would only be a second spelling of that model.

use std::collections::BTreeMap;
use std::sync::Arc;

use chorus::providers::{LocalProvider, PriceTable, ProviderRouter, RetryPolicy};

/// The router `dev` and `validate` check and run steps with.
pub fn router() -> ProviderRouter {
    ProviderRouter::new(
        vec![Arc::new(LocalProvider::new())],
        BTreeMap::new(),
        RetryPolicy::default(),
        // Local models are free.
        PriceTable::default(),
    )
}
