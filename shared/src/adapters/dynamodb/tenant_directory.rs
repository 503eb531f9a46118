//! [`TenantDirectory`] on the same table: `APIKEY#<sha256>` items map a key's hash to its
//! tenant (the key itself is never stored), `TENANT#<id>` items hold the tenant's webhook
//! signing secret.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::expression::string;
use super::{from_item, to_item, unavailable};
use crate::domain::TenantId;
use crate::ports::{PortError, Tenant, TenantDirectory, hash_api_key};

const API_KEY_SK: &str = "APIKEY";
const TENANT_SK: &str = "TENANT";

#[derive(Serialize, Deserialize)]
struct ApiKeyItem {
    pk: String,
    sk: String,
    tenant: TenantId,
    created_at: jiff::Timestamp,
    /// A disabled key authenticates nobody; the item stays for the audit trail.
    #[serde(default)]
    disabled: bool,
}

#[derive(Serialize, Deserialize)]
struct TenantItem {
    pk: String,
    sk: String,
    webhook_secret: String,
}

/// API keys and tenants in DynamoDB.
pub struct DynamoTenantDirectory {
    client: Client,
    table: String,
}

impl DynamoTenantDirectory {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }

    /// Creates or updates `tenant` and adds `api_key` for it.
    pub async fn register(&self, tenant: &Tenant, api_key: &SecretString) -> Result<(), PortError> {
        let tenant_item = TenantItem {
            pk: tenant_pk(&tenant.id),
            sk: TENANT_SK.to_owned(),
            webhook_secret: tenant.webhook_secret.expose_secret().to_owned(),
        };
        let key_item = ApiKeyItem {
            pk: api_key_pk(api_key),
            sk: API_KEY_SK.to_owned(),
            tenant: tenant.id.clone(),
            created_at: jiff::Timestamp::now(),
            disabled: false,
        };
        for item in [to_item(&tenant_item)?, to_item(&key_item)?] {
            self.client.put_item().table_name(&self.table).set_item(Some(item)).send().await.map_err(unavailable)?;
        }
        Ok(())
    }

    async fn get(&self, pk: String, sk: &str) -> Result<Option<HashMap<String, AttributeValue>>, PortError> {
        let key = HashMap::from([("pk".to_owned(), string(pk)), ("sk".to_owned(), string(sk))]);
        let found =
            self.client.get_item().table_name(&self.table).set_key(Some(key)).send().await.map_err(unavailable)?;
        Ok(found.item)
    }
}

fn api_key_pk(api_key: &SecretString) -> String {
    format!("APIKEY#{}", hash_api_key(api_key))
}

fn tenant_pk(id: &TenantId) -> String {
    format!("TENANT#{id}")
}

#[async_trait]
impl TenantDirectory for DynamoTenantDirectory {
    async fn tenant_for_key(&self, api_key: &SecretString) -> Result<Option<Tenant>, PortError> {
        let Some(item) = self.get(api_key_pk(api_key), API_KEY_SK).await? else { return Ok(None) };
        let key: ApiKeyItem = from_item("API key item", item)?;
        if key.disabled {
            return Ok(None);
        }
        self.tenant(&key.tenant).await
    }

    async fn tenant(&self, id: &TenantId) -> Result<Option<Tenant>, PortError> {
        let Some(item) = self.get(tenant_pk(id), TENANT_SK).await? else { return Ok(None) };
        let item: TenantItem = from_item("tenant item", item)?;
        Ok(Some(Tenant { id: id.clone(), webhook_secret: SecretString::from(item.webhook_secret) }))
    }
}
