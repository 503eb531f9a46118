//! [`TenantDirectory`] and [`SigningSecretStore`] in memory, from keys given at start-up.
//! Nothing here is at rest, so the secrets are kept as they are.

use std::collections::HashMap;

use async_trait::async_trait;
use secrecy::SecretString;

use crate::domain::TenantId;
use crate::ports::{PortError, SigningSecretStore, SigningSecrets, Tenant, TenantDirectory, hash_api_key};

/// Tenants, their keys and signing secrets, from start-up (`chorus dev --api-key`).
#[derive(Default)]
pub struct MemoryTenantDirectory {
    by_key_hash: HashMap<String, TenantId>,
    tenants: HashMap<TenantId, (Tenant, SigningSecrets)>,
}

impl MemoryTenantDirectory {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a tenant (replacing its secrets if known) and an API key for it.
    pub fn with_key(mut self, tenant: Tenant, secrets: SigningSecrets, api_key: &SecretString) -> Self {
        self.by_key_hash.insert(hash_api_key(api_key), tenant.id.clone());
        self.tenants.insert(tenant.id.clone(), (tenant, secrets));
        self
    }
}

#[async_trait]
impl TenantDirectory for MemoryTenantDirectory {
    async fn tenant_for_key(&self, api_key: &SecretString) -> Result<Option<Tenant>, PortError> {
        Ok(self.by_key_hash.get(&hash_api_key(api_key)).and_then(|id| self.tenants.get(id)).map(|(t, _)| t.clone()))
    }

    async fn tenant(&self, id: &TenantId) -> Result<Option<Tenant>, PortError> {
        Ok(self.tenants.get(id).map(|(tenant, _)| tenant.clone()))
    }
}

#[async_trait]
impl SigningSecretStore for MemoryTenantDirectory {
    async fn signing_secrets(&self, tenant: &TenantId) -> Result<Option<SigningSecrets>, PortError> {
        Ok(self.tenants.get(tenant).map(|(_, secrets)| secrets.clone()))
    }
}
