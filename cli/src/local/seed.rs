//! The API key `chorus local up` hands out: a tenant registered in the local table, so the
//! first request against the local API can authenticate.
//!
//! PENDING(lead): `seed_api_key` is a hook. It is called by `up` and its result printed, but
//! it registers nothing yet: the lead wires it to the DynamoDB tenants adapter.

use aws_config::SdkConfig;
use secrecy::SecretString;
use thiserror::Error;

/// The tenant `up` registers.
pub const LOCAL_TENANT: &str = "local";

/// A tenant and the API key it was registered with. `Debug` never shows the key.
#[derive(Debug)]
pub struct SeededKey {
    pub tenant: String,
    pub key: SecretString,
}

/// Why the key could not be registered.
#[derive(Debug, Error)]
pub enum SeedError {
    #[error("cannot register tenant {tenant} in table {table}")]
    Store {
        tenant: String,
        table: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Registers [`LOCAL_TENANT`] with a fresh API key in `table` and returns it; `Ok(None)` while
/// the hook is not wired, which `up` reports instead of a key.
pub async fn seed_api_key(config: &SdkConfig, table: &str) -> Result<Option<SeededKey>, SeedError> {
    // PENDING(lead): generate a key, store the tenant through the DynamoDB tenants adapter over a
    // client built from `config`, return `Some(SeededKey { .. })`.
    let _ = (config, table);
    Ok(None)
}
