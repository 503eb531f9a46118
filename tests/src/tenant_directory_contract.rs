//! The `TenantDirectory` contract, for the memory and DynamoDB adapters alike.

use chorus::ports::{Tenant, TenantDirectory};
use secrecy::{ExposeSecret, SecretString};

/// `directory` must know `tenant` with `api_key`, and nothing about the key `unknown`.
pub async fn check_tenant_directory(directory: &dyn TenantDirectory, tenant: &Tenant, api_key: &SecretString) {
    let found = directory.tenant_for_key(api_key).await.unwrap().expect("a registered key finds its tenant");
    assert_eq!(found.id, tenant.id);
    assert_eq!(found.webhook_secret.expose_secret(), tenant.webhook_secret.expose_secret());

    let unknown = SecretString::from(format!("{}-not", api_key.expose_secret()));
    assert!(directory.tenant_for_key(&unknown).await.unwrap().is_none(), "an unknown key finds nobody");

    let by_id = directory.tenant(&tenant.id).await.unwrap().expect("the tenant is known by id");
    assert_eq!(by_id.webhook_secret.expose_secret(), tenant.webhook_secret.expose_secret());
}
