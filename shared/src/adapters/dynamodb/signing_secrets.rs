//! Tenants' webhook signing secrets on their `TENANT#<id>` item, sealed with envelope
//! encryption ([`Sealer`]: a KMS data key on AWS). The item holds the ciphertext of the active
//! secrets (a JSON array of `whsec_` strings, newest first), the encrypted data key and the
//! nonce, never a secret in plain text. Registering a tenant, rotating and retiring its
//! secrets and reading them (the notifier) need the sealer; authenticating requests does not
//! ([`DynamoTenantDirectory`]).
//!
//! A rotation is read, open, change, seal, then a write on condition that the item's
//! `revision` (random, new with every write) is still the one read, so two rotations at once
//! cannot lose one another's secret.

use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use secrecy::zeroize::Zeroizing;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::expression::{Expression, string};
use super::tenant_directory::{API_KEY_SK, ApiKeyItem, DynamoTenantDirectory, TENANT_SK, api_key_pk, tenant_pk};
use super::{from_item, to_item, unavailable};
use crate::adapters::sealing::{KeyKind, SealContext, SealError, Sealed, Sealer};
use crate::domain::TenantId;
use crate::ports::{PortError, SigningSecretStore, SigningSecrets, Tenant};

/// What the sealed value is, bound into it (and into the KMS encryption context, which the
/// template's key policy checks).
pub const SEAL_PURPOSE: &str = "tenant-webhook-secrets";
/// A rotation that keeps losing the race to another is given up after this many tries.
const CHANGE_ATTEMPTS: usize = 3;

/// The `TENANT#<id>` item.
#[derive(Serialize, Deserialize)]
struct TenantItem {
    pk: String,
    sk: String,
    webhook_secrets: SealedItem,
    /// New with every write of the secrets: what a rotation's conditional write checks.
    revision: String,
    /// The tenant's own API request rate ([`Tenant::request_limit`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    request_limit: Option<crate::domain::RateLimit>,
}

/// [`Sealed`] as stored: binary fields in base64.
#[derive(Serialize, Deserialize)]
struct SealedItem {
    ciphertext: String,
    data_key: String,
    nonce: String,
    sealed_with: KeyKind,
}

/// Tenants' signing secrets in DynamoDB, sealed by `sealer`.
pub struct DynamoSigningSecrets {
    directory: DynamoTenantDirectory,
    sealer: Arc<Sealer>,
}

impl DynamoSigningSecrets {
    pub fn new(client: Client, table: impl Into<String>, sealer: Arc<Sealer>) -> Self {
        Self { directory: DynamoTenantDirectory::new(client, table), sealer }
    }

    /// The directory over the same table, for authenticating requests.
    pub fn directory(&self) -> &DynamoTenantDirectory {
        &self.directory
    }

    /// Creates or replaces `tenant` with `secrets`, and adds `api_key` for it.
    pub async fn register(
        &self,
        tenant: &Tenant,
        secrets: &SigningSecrets,
        api_key: &SecretString,
    ) -> Result<(), PortError> {
        let tenant_item = TenantItem {
            pk: tenant_pk(&tenant.id),
            sk: TENANT_SK.to_owned(),
            webhook_secrets: self.seal(&tenant.id, secrets).await?,
            revision: new_revision(),
            request_limit: tenant.request_limit,
        };
        let key_item = ApiKeyItem {
            pk: api_key_pk(api_key),
            sk: API_KEY_SK.to_owned(),
            tenant: tenant.id.clone(),
            created_at: jiff::Timestamp::now(),
            disabled: false,
        };
        let client = &self.directory.client;
        for item in [to_item(&tenant_item)?, to_item(&key_item)?] {
            client
                .put_item()
                .table_name(&self.directory.table)
                .set_item(Some(item))
                .send()
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }

    /// Starts a rotation: `secret` signs from now on, together with the newest secret so far
    /// until [`Self::retire_previous`]. `false` when the tenant is unknown.
    pub async fn rotate(&self, tenant: &TenantId, secret: SecretString) -> Result<bool, PortError> {
        self.change(tenant, move |secrets| secrets.rotate(secret.clone())).await
    }

    /// Ends a rotation: only the newest secret signs. `false` when the tenant is unknown.
    pub async fn retire_previous(&self, tenant: &TenantId) -> Result<bool, PortError> {
        self.change(tenant, SigningSecrets::retire_previous).await
    }

    /// Applies `change` to the tenant's secrets, retrying when another change got in between.
    async fn change(
        &self,
        tenant: &TenantId,
        change: impl Fn(SigningSecrets) -> SigningSecrets,
    ) -> Result<bool, PortError> {
        for _ in 0..CHANGE_ATTEMPTS {
            let Some(item) = self.item(tenant, true).await? else { return Ok(false) };
            let changed = change(self.open(tenant, &item.webhook_secrets).await?);
            let mut expression = Expression::default();
            expression.set("webhook_secrets", &self.seal(tenant, &changed).await?)?;
            expression.set("revision", &new_revision())?;
            let (revision, read) = (expression.name("revision"), expression.value(string(item.revision)));
            expression.require(format!("{revision} = {read}"));
            let written = self
                .directory
                .client
                .update_item()
                .table_name(&self.directory.table)
                .key("pk", string(tenant_pk(tenant)))
                .key("sk", string(TENANT_SK))
                .set_update_expression(expression.update_expression())
                .set_condition_expression(expression.condition_expression())
                .set_expression_attribute_names(expression.names())
                .set_expression_attribute_values(expression.values())
                .send()
                .await;
            match written {
                Ok(_) => return Ok(true),
                Err(SdkError::ServiceError(failure))
                    if matches!(failure.err(), UpdateItemError::ConditionalCheckFailedException(_)) => {}
                Err(err) => return Err(unavailable(err)),
            }
        }
        Err(PortError::Unavailable {
            what: "DynamoDB",
            source: format!("tenant {tenant}'s secrets kept changing during {CHANGE_ATTEMPTS} attempts").into(),
        })
    }

    async fn item(&self, tenant: &TenantId, consistent: bool) -> Result<Option<TenantItem>, PortError> {
        let found = self.directory.get(tenant_pk(tenant), TENANT_SK, consistent).await?;
        found.map(|item| from_item("tenant item", item)).transpose()
    }

    async fn seal(&self, tenant: &TenantId, secrets: &SigningSecrets) -> Result<SealedItem, PortError> {
        let listed: Vec<&str> = secrets.iter().map(ExposeSecret::expose_secret).collect();
        let plaintext = Zeroizing::new(serde_json::to_vec(&listed).map_err(|err| PortError::Corrupt {
            what: "webhook secrets",
            detail: format!("cannot be serialized: {err}"),
        })?);
        let sealed = self.sealer.seal(&plaintext, &context(tenant)).await.map_err(sealing_error)?;
        Ok(SealedItem {
            ciphertext: STANDARD.encode(&sealed.ciphertext),
            data_key: STANDARD.encode(&sealed.data_key),
            nonce: STANDARD.encode(&sealed.nonce),
            sealed_with: sealed.sealed_with,
        })
    }

    async fn open(&self, tenant: &TenantId, item: &SealedItem) -> Result<SigningSecrets, PortError> {
        let decode = |field: &str| {
            STANDARD.decode(field).map_err(|_| PortError::Corrupt {
                what: "tenant's sealed webhook secrets",
                detail: "a field is not base64".to_owned(),
            })
        };
        let sealed = Sealed {
            ciphertext: decode(&item.ciphertext)?,
            data_key: decode(&item.data_key)?,
            nonce: decode(&item.nonce)?,
            sealed_with: item.sealed_with,
        };
        let plaintext = self.sealer.open(&sealed, &context(tenant)).await.map_err(sealing_error)?;
        let listed: Vec<String> = serde_json::from_slice(&plaintext).map_err(|_| PortError::Corrupt {
            what: "tenant's sealed webhook secrets",
            detail: "the opened value is not a list of secrets".to_owned(),
        })?;
        let mut listed = listed.into_iter().map(SecretString::from);
        let newest = listed.next().ok_or_else(|| PortError::Corrupt {
            what: "tenant's sealed webhook secrets",
            detail: "the list of secrets is empty".to_owned(),
        })?;
        Ok(SigningSecrets::with_previous(newest, listed.next()))
    }
}

#[async_trait]
impl SigningSecretStore for DynamoSigningSecrets {
    async fn signing_secrets(&self, tenant: &TenantId) -> Result<Option<SigningSecrets>, PortError> {
        match self.item(tenant, false).await? {
            Some(item) => Ok(Some(self.open(tenant, &item.webhook_secrets).await?)),
            None => Ok(None),
        }
    }
}

fn context(tenant: &TenantId) -> SealContext<'_> {
    SealContext { purpose: SEAL_PURPOSE, owner: tenant.as_str() }
}

fn new_revision() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// KMS unreachable is worth retrying; a value that does not open is not.
fn sealing_error(err: SealError) -> PortError {
    if err.is_transient() {
        PortError::Unavailable { what: "KMS", source: Box::new(err) }
    } else {
        PortError::Corrupt { what: "tenant's sealed webhook secrets", detail: err.to_string() }
    }
}
