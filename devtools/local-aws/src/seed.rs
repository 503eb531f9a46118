//! The API key `chorus local up` hands out: tenant `local`, registered in the local table
//! with a fresh key and webhook signing secret, so the first request can authenticate and
//! notifications can be verified.

use aws_config::SdkConfig;
use chorus::adapters::DynamoTenantDirectory;
use chorus::domain::TenantId;
use chorus::ports::{PortError, Tenant, generate_api_key};
use chorus::webhooks::WebhookSecret;
use secrecy::SecretString;
use thiserror::Error;

/// The tenant `up` registers.
pub const LOCAL_TENANT: &str = "local";

/// A tenant, its API key and its signing secret. `Debug` shows neither secret.
#[derive(Debug)]
pub struct SeededKey {
    pub tenant: TenantId,
    pub key: SecretString,
    pub webhook_secret: WebhookSecret,
}

/// Why the key could not be registered.
#[derive(Debug, Error)]
pub enum SeedError {
    #[error("the local tenant name is invalid")]
    Tenant(#[from] chorus::domain::InvalidId),
    #[error("cannot register tenant {LOCAL_TENANT} in table {table}")]
    Store {
        table: String,
        #[source]
        source: PortError,
    },
}

/// Registers [`LOCAL_TENANT`] with a fresh API key and secret in `table`.
pub async fn seed_api_key(config: &SdkConfig, table: &str) -> Result<SeededKey, SeedError> {
    let tenant = TenantId::parse(LOCAL_TENANT)?;
    let key = generate_api_key();
    let webhook_secret = WebhookSecret::generate();
    let tenants = DynamoTenantDirectory::new(aws_sdk_dynamodb::Client::new(config), table);
    let registered = Tenant { id: tenant.clone(), webhook_secret: webhook_secret.to_whsec() };
    tenants.register(&registered, &key).await.map_err(|source| SeedError::Store { table: table.to_owned(), source })?;
    Ok(SeededKey { tenant, key, webhook_secret })
}
