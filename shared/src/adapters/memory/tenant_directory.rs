//! [`TenantDirectory`] in memory, from keys given at start-up.

use std::collections::HashMap;

use async_trait::async_trait;
use secrecy::SecretString;

use crate::domain::TenantId;
use crate::ports::{PortError, Tenant, TenantDirectory, hash_api_key};

/// [`TenantDirectory`] from keys given at start-up (`chorus dev --api-key`).
#[derive(Default)]
pub struct MemoryTenantDirectory {
    by_key_hash: HashMap<String, TenantId>,
    tenants: HashMap<TenantId, Tenant>,
}

impl MemoryTenantDirectory {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a tenant (replacing its secret if known) and an API key for it.
    pub fn with_key(mut self, tenant: Tenant, api_key: &SecretString) -> Self {
        self.by_key_hash.insert(hash_api_key(api_key), tenant.id.clone());
        self.tenants.insert(tenant.id.clone(), tenant);
        self
    }
}

#[async_trait]
impl TenantDirectory for MemoryTenantDirectory {
    async fn tenant_for_key(&self, api_key: &SecretString) -> Result<Option<Tenant>, PortError> {
        Ok(self.by_key_hash.get(&hash_api_key(api_key)).and_then(|id| self.tenants.get(id)).cloned())
    }

    async fn tenant(&self, id: &TenantId) -> Result<Option<Tenant>, PortError> {
        Ok(self.tenants.get(id).cloned())
    }
}
