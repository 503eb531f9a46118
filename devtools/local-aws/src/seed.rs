//! The API key `chorus local up` hands out: tenant `local`, registered in the local table
//! with a fresh key and webhook signing secret, so the first request can authenticate and
//! notifications can be verified; and [`generate_api_key`], which `chorus dev` uses too.

use aws_config::SdkConfig;
use chorus::adapters::DynamoTenants;
use chorus::domain::TenantId;
use chorus::notify::WebhookSecret;
use chorus::ports::{PortError, Tenant};
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

/// A new random API key (`ck_` + 32 hex digits, 128 bits) from the operating system's CSPRNG,
/// as `WebhookSecret::generate` makes signing secrets. `chorus dev` hands out the same kind.
pub fn generate_api_key() -> SecretString {
    let mut bytes = [0_u8; 16];
    rand::fill(&mut bytes[..]);
    SecretString::from(format!("ck_{}", hex::encode(bytes)))
}

/// Registers [`LOCAL_TENANT`] with a fresh API key and secret in `table`.
pub async fn seed_api_key(config: &SdkConfig, table: &str) -> Result<SeededKey, SeedError> {
    let tenant = TenantId::parse(LOCAL_TENANT)?;
    let key = generate_api_key();
    let webhook_secret = WebhookSecret::generate();
    let tenants = DynamoTenants::new(aws_sdk_dynamodb::Client::new(config), table);
    let registered = Tenant { id: tenant.clone(), webhook_secret: webhook_secret.to_whsec() };
    tenants.register(&registered, &key).await.map_err(|source| SeedError::Store { table: table.to_owned(), source })?;
    Ok(SeededKey { tenant, key, webhook_secret })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn generated_keys_look_like_chorus_keys() {
        let key = generate_api_key();
        let key = key.expose_secret();
        assert!(key.starts_with("ck_"));
        assert_eq!(key.len(), 35);
        assert!(key[3..].chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(key, generate_api_key().expose_secret());
    }
}
