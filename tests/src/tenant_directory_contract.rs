//! The `TenantDirectory` contract, for the memory and DynamoDB adapters alike.

use std::sync::Arc;

use chorus::ports::{Tenant, TenantDirectory};
use secrecy::{ExposeSecret, SecretString};

/// One test per clause against the directories `$make` returns (an `async fn() ->
/// KnownTenant`, called once per test), in `mod $adapter`; attributes after the factory go on
/// every test.
#[macro_export]
macro_rules! tenant_directory_contract {
    ($adapter:ident, $make:path $(, #[$attr:meta])* $(,)?) => {
        $crate::contract_tests!(tenant_directory_contract, [tokio::test], $adapter, $make, [$(#[$attr])*], [
            a_registered_key_finds_its_tenant,
            an_unknown_key_finds_nobody,
            the_tenant_is_known_by_id,
        ]);
    };
}

/// A directory that knows `tenant` with `api_key`, and nothing about any other key.
pub struct KnownTenant {
    pub directory: Arc<dyn TenantDirectory>,
    pub tenant: Tenant,
    pub api_key: SecretString,
}

pub async fn a_registered_key_finds_its_tenant(known: KnownTenant) {
    let found = known.directory.tenant_for_key(&known.api_key).await.unwrap();
    let found = found.expect("a registered key finds its tenant");
    assert_eq!(found.id, known.tenant.id);
    assert_eq!(found.webhook_secret.expose_secret(), known.tenant.webhook_secret.expose_secret());
}

pub async fn an_unknown_key_finds_nobody(known: KnownTenant) {
    let unknown = SecretString::from(format!("{}-not", known.api_key.expose_secret()));
    assert!(known.directory.tenant_for_key(&unknown).await.unwrap().is_none(), "an unknown key finds nobody");
}

pub async fn the_tenant_is_known_by_id(known: KnownTenant) {
    let by_id = known.directory.tenant(&known.tenant.id).await.unwrap().expect("the tenant is known by id");
    assert_eq!(by_id.webhook_secret.expose_secret(), known.tenant.webhook_secret.expose_secret());
}
