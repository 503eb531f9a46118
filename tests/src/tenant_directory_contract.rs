//! The `TenantDirectory` and `SigningSecretStore` contract, for the memory and DynamoDB
//! adapters alike.

use std::sync::Arc;

use chorus::domain::TenantId;
use chorus::ports::{SigningSecretStore, SigningSecrets, Tenant, TenantDirectory};
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
            the_signing_secrets_read_back_newest_first,
            an_unknown_tenant_has_no_secrets,
        ]);
    };
}

/// A directory that knows `tenant` with `api_key` and `secrets` (two: it is rotating), and
/// nothing about any other key or tenant.
pub struct KnownTenant {
    pub directory: Arc<dyn TenantDirectory>,
    pub secrets_store: Arc<dyn SigningSecretStore>,
    pub tenant: Tenant,
    pub secrets: SigningSecrets,
    pub api_key: SecretString,
}

/// A request rate of the tenant's own: the directory returns it with the tenant (the
/// clauses below compare whole tenants).
pub fn own_request_limit() -> chorus::domain::RateLimit {
    chorus::domain::RateLimit { per_minute: 30, burst: 5 }
}

/// Two secrets, newest first, as a tenant has while rotating.
pub fn rotating_secrets() -> SigningSecrets {
    SigningSecrets::new(SecretString::from("whsec_b2xkZXI=")).rotate(SecretString::from("whsec_bmV3ZXI="))
}

fn listed(secrets: &SigningSecrets) -> Vec<String> {
    secrets.iter().map(|secret| secret.expose_secret().to_owned()).collect()
}

pub async fn a_registered_key_finds_its_tenant(known: KnownTenant) {
    let found = known.directory.tenant_for_key(&known.api_key).await.unwrap();
    assert_eq!(found.expect("a registered key finds its tenant"), known.tenant);
}

pub async fn an_unknown_key_finds_nobody(known: KnownTenant) {
    let unknown = SecretString::from(format!("{}-not", known.api_key.expose_secret()));
    assert!(known.directory.tenant_for_key(&unknown).await.unwrap().is_none(), "an unknown key finds nobody");
}

pub async fn the_tenant_is_known_by_id(known: KnownTenant) {
    let by_id = known.directory.tenant(&known.tenant.id).await.unwrap().expect("the tenant is known by id");
    assert_eq!(by_id, known.tenant);
}

pub async fn the_signing_secrets_read_back_newest_first(known: KnownTenant) {
    let secrets = known.secrets_store.signing_secrets(&known.tenant.id).await.unwrap().expect("the tenant's secrets");
    assert_eq!(listed(&secrets), listed(&known.secrets));
    assert_eq!(listed(&secrets).len(), 2, "both secrets of a rotation are kept");
}

pub async fn an_unknown_tenant_has_no_secrets(known: KnownTenant) {
    let stranger = TenantId::parse(&format!("{}-not", known.tenant.id)).unwrap();
    assert!(known.secrets_store.signing_secrets(&stranger).await.unwrap().is_none());
    assert!(known.directory.tenant(&stranger).await.unwrap().is_none());
}
