//! The API key `chorus local up` hands out: tenant `local`, registered in the local table
//! with a fresh key and webhook signing secret (sealed with the key the functions are given,
//! as the notifier opens it), so the first request can authenticate and notifications can be
//! verified.

use std::sync::Arc;

use aws_config::SdkConfig;
use chorus::adapters::DynamoSigningSecrets;
use chorus::adapters::sealing::{InvalidSealingKey, Sealer, SealingKey};
use chorus::domain::TenantId;
use chorus::ports::{PortError, SigningSecrets, Tenant, generate_api_key};
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
    #[error("CHORUS_TENANT_SECRETS_KEY {0}")]
    SealingKey(#[from] InvalidSealingKey),
    #[error("cannot register tenant {LOCAL_TENANT} in table {table}")]
    Store {
        table: String,
        #[source]
        source: PortError,
    },
}

/// Registers [`LOCAL_TENANT`] with a fresh API key and secret in `table`, the secret sealed
/// with `tenant_secrets_key` (the functions' `CHORUS_TENANT_SECRETS_KEY`).
pub async fn seed_api_key(config: &SdkConfig, table: &str, tenant_secrets_key: &str) -> Result<SeededKey, SeedError> {
    let tenant = TenantId::parse(LOCAL_TENANT)?;
    let key = generate_api_key();
    let webhook_secret = WebhookSecret::generate();
    let sealer = Arc::new(Sealer::new(SealingKey::parse(tenant_secrets_key)?, config));
    let tenants = DynamoSigningSecrets::new(aws_sdk_dynamodb::Client::new(config), table, sealer);
    let secrets = SigningSecrets::new(webhook_secret.to_whsec());
    tenants
        .register(&Tenant::new(tenant.clone()), &secrets, &key)
        .await
        .map_err(|source| SeedError::Store { table: table.to_owned(), source })?;
    Ok(SeededKey { tenant, key, webhook_secret })
}
