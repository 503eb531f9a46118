//! [`TenantDirectory`] on the same table: `APIKEY#<sha256>` items map a key's hash to its
//! tenant (the key itself is never stored), and a `TENANT#<id>` item says the tenant exists.
//! That item also holds the tenant's webhook signing secrets, sealed; this side never opens
//! them and needs no key to run (see [`super::DynamoSigningSecrets`]).

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::expression::string;
use super::{from_item, unavailable};
use crate::domain::TenantId;
use crate::ports::{PortError, Tenant, TenantDirectory, hash_api_key};

pub(super) const API_KEY_SK: &str = "APIKEY";
pub(super) const TENANT_SK: &str = "TENANT";

#[derive(Serialize, Deserialize)]
pub(super) struct ApiKeyItem {
    pub pk: String,
    pub sk: String,
    pub tenant: TenantId,
    pub created_at: jiff::Timestamp,
    /// A disabled key authenticates nobody; the item stays for the audit trail.
    #[serde(default)]
    pub disabled: bool,
}

/// The parts of a `TENANT#<id>` item the directory reads (serde skips the sealed secrets).
#[derive(Deserialize)]
struct TenantLimitsItem {
    #[serde(default)]
    request_limit: Option<crate::domain::RateLimit>,
}

/// API keys and tenants in DynamoDB: what authenticating a request needs, and no more.
#[derive(Clone)]
pub struct DynamoTenantDirectory {
    pub(super) client: Client,
    pub(super) table: String,
}

impl DynamoTenantDirectory {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }

    /// The item at `pk`/`sk`; `consistent` for a read that must see the latest write.
    pub(super) async fn get(
        &self,
        pk: String,
        sk: &str,
        consistent: bool,
    ) -> Result<Option<HashMap<String, AttributeValue>>, PortError> {
        let key = HashMap::from([("pk".to_owned(), string(pk)), ("sk".to_owned(), string(sk))]);
        let found = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .consistent_read(consistent)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(found.item)
    }
}

pub(super) fn api_key_pk(api_key: &SecretString) -> String {
    format!("APIKEY#{}", hash_api_key(api_key))
}

pub(super) fn tenant_pk(id: &TenantId) -> String {
    format!("TENANT#{id}")
}

#[async_trait]
impl TenantDirectory for DynamoTenantDirectory {
    async fn tenant_for_key(&self, api_key: &SecretString) -> Result<Option<Tenant>, PortError> {
        let Some(item) = self.get(api_key_pk(api_key), API_KEY_SK, false).await? else { return Ok(None) };
        let key: ApiKeyItem = from_item("API key item", item)?;
        if key.disabled {
            return Ok(None);
        }
        self.tenant(&key.tenant).await
    }

    async fn tenant(&self, id: &TenantId) -> Result<Option<Tenant>, PortError> {
        // Only whether the item exists and its limit: its sealed secrets are not this side's
        // to read.
        let Some(item) = self.get(tenant_pk(id), TENANT_SK, false).await? else { return Ok(None) };
        let limits: TenantLimitsItem = from_item("tenant item", item)?;
        Ok(Some(Tenant { id: id.clone(), request_limit: limits.request_limit }))
    }
}
